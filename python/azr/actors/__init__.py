"""The self-play loop as actors on :mod:`azr.runtime`, talking only through messages.

One module per actor (``proposer``, ``solver``, ``verifier``, ``buffer``, ``learner``,
``coordinator``) and :mod:`azr.actors.messages` for everything they send each other;
:mod:`azr.train` wires them together. Each actor is a class whose instances are actor runs
(``system.start_actor(name, Actor(...), mailboxes=[inbox])``).
"""

from azr.actors.buffer import BufferActor as BufferActor
from azr.actors.coordinator import Coordinator as Coordinator
from azr.actors.learner import CheckpointStore as CheckpointStore
from azr.actors.learner import LearnerActor as LearnerActor
from azr.actors.proposer import Proposer as Proposer
from azr.actors.solver import Solver as Solver
from azr.actors.verifier import VerifierActor as VerifierActor

__all__ = [
    "BufferActor",
    "CheckpointStore",
    "Coordinator",
    "LearnerActor",
    "Proposer",
    "Solver",
    "VerifierActor",
]

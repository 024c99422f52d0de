"""What a training run keeps on disk and how it starts and stops safely.

``checkpoints``  the run's checkpoint folders, ``latest``, committing a step, picking a resume
``lock``         one trainer per output folder
``resume``       which settings a resumed run may change
``signals``      stop signals recorded from the first instruction of start-up
``disk``         a full disk reported as such

Names are loaded on first use: the command line imports :mod:`azr.run.signals` before anything
heavy (torch, the executor), so that a stop signal is handled from its first instruction.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from azr.run.checkpoints import CheckpointChoice as CheckpointChoice
    from azr.run.checkpoints import CheckpointStore as CheckpointStore
    from azr.run.checkpoints import recorded_checkpoints as recorded_checkpoints
    from azr.run.disk import disk_full_errors as disk_full_errors
    from azr.run.lock import hold_run_lock as hold_run_lock
    from azr.run.resume import ResumeChanges as ResumeChanges
    from azr.run.resume import resume_changes as resume_changes
    from azr.run.signals import StopRequested as StopRequested
    from azr.run.signals import capture_stop_signals as capture_stop_signals
    from azr.run.signals import pending_stop as pending_stop

_HOMES = {
    "CheckpointChoice": "checkpoints",
    "CheckpointStore": "checkpoints",
    "recorded_checkpoints": "checkpoints",
    "disk_full_errors": "disk",
    "hold_run_lock": "lock",
    "ResumeChanges": "resume",
    "resume_changes": "resume",
    "StopRequested": "signals",
    "capture_stop_signals": "signals",
    "pending_stop": "signals",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'azr.run' has no attribute {name!r}")
    return getattr(importlib.import_module(f"azr.run.{home}"), name)

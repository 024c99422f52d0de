"""Adapters that embed the verifier in RL trainers. Each module imports only what it needs:

* :mod:`azr.adapters.plain`: score responses from any Python code (a process-wide verifier).
* :mod:`azr.adapters.trl`: a ``reward_funcs`` entry for TRL's ``GRPOTrainer``.
* :mod:`azr.adapters.verl`: a veRL ``compute_score`` (custom reward function).
* :mod:`azr.adapters.openrlhf`: dataset rows and labels for OpenRLHF's ``--remote_rm_url``
  pointed at ``azr serve``, and a local ``reward_func`` for its Python-file form.

Every adapter carries a task through the trainer's dataset as one JSON text column
(:func:`encode_task`); the prompt for it is :func:`azr.tasks.solve_prompt`.
"""

from azr.adapters._tasks import InvalidTask as InvalidTask
from azr.adapters._tasks import decode_task as decode_task
from azr.adapters._tasks import encode_task as encode_task

__all__ = ["InvalidTask", "decode_task", "encode_task"]

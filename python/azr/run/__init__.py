"""What a training run keeps on disk and how it starts and stops safely.

``checkpoints``  the run's checkpoint folders, ``latest``, committing a step, picking a resume
``lock``         one trainer per output folder
``resume``       which settings a resumed run may change
``signals``      stop signals recorded from the first instruction of start-up
``disk``         a full disk reported as such
"""

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

__all__ = [
    "CheckpointChoice",
    "CheckpointStore",
    "ResumeChanges",
    "StopRequested",
    "capture_stop_signals",
    "disk_full_errors",
    "hold_run_lock",
    "pending_stop",
    "recorded_checkpoints",
    "resume_changes",
]

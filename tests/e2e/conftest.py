from __future__ import annotations

import torch
import transformers

# Two cores: more threads only adds contention for these tiny tensors.
torch.set_num_threads(2)
transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]

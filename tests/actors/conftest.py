from __future__ import annotations

import pytest
import torch
import transformers

from azr.models import Tokenizer

# Two cores: more threads only adds contention for these tiny tensors.
torch.set_num_threads(2)
transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]


@pytest.fixture(scope="session")
def tokenizer() -> Tokenizer:
    return Tokenizer.byte_level()

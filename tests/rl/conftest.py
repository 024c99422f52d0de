from __future__ import annotations

import pytest
import torch
import transformers

from azr.models import TinyModelSpec

# Two cores: more threads only adds contention for these tiny tensors.
torch.set_num_threads(2)
transformers.utils.logging.disable_progress_bar()


@pytest.fixture(scope="session")
def tiny_spec() -> TinyModelSpec:
    return TinyModelSpec(
        hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=128
    )

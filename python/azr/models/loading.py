"""Loading and saving causal LMs as Hugging Face model directories.

A saved directory (config.json, model.safetensors, generation_config.json and tokenizer files) is
the one interchange format between the learner, the in-process backend and an inference server.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from azr.models.tiny import TinyModelSpec, build_tiny_model
from azr.models.tokenizer import Tokenizer

__all__ = ["load_model", "load_state_dict_into", "load_weights_into", "save_model"]


def load_model(
    path: str | os.PathLike[str] | None,
    *,
    spec: TinyModelSpec | None = None,
    seed: int = 0,
    dtype: Any = None,
    device: Any = None,
) -> tuple[Any, Tokenizer]:
    """Return ``(model, tokenizer)``.

    With a local directory, load a Hugging Face causal LM and its tokenizer from it (never from
    the network). With ``None``, build the tiny byte-level model from ``spec`` and ``seed``.
    ``dtype`` defaults to float32: the learner keeps full-precision master weights and uses
    autocast for speed where a GPU is present.
    """
    import torch
    from transformers import AutoModelForCausalLM

    dtype = dtype if dtype is not None else torch.float32
    if path is None:
        tokenizer = Tokenizer.byte_level()
        model = build_tiny_model(
            len(tokenizer),
            spec,
            seed,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ).to(dtype=dtype)
    else:
        if spec is not None:
            raise ValueError("spec only applies to the tiny model (path=None)")
        path = os.fspath(path)
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=dtype)
        tokenizer = Tokenizer.from_pretrained(path)
    if device is not None:
        model = model.to(device)
    return model, tokenizer


def save_model(model: Any, tokenizer: Tokenizer, path: str | os.PathLike[str]) -> None:
    """Write a Hugging Face model directory (safetensors weights) that ``load_model`` reads back."""
    model.save_pretrained(os.fspath(path), safe_serialization=True)
    tokenizer.save_pretrained(path)


def load_weights_into(model: Any, path: str | os.PathLike[str]) -> None:
    """Copy the safetensors weights of a model directory into an existing model, in place.

    See :func:`load_state_dict_into` for the rules; only top-level ``*.safetensors`` files are read.
    """
    from safetensors.torch import load_file

    files = sorted(Path(path).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no .safetensors files in {os.fspath(path)!r}")
    state: dict[str, Any] = {}
    for f in files:
        state.update(load_file(os.fspath(f), device="cpu"))
    load_state_dict_into(model, state)


def load_state_dict_into(model: Any, state: Mapping[str, Any]) -> None:
    """Copy ``state`` into ``model``'s parameters and buffers in place, all or nothing.

    Parameters keep their identity (optimizers and other references stay valid), dtype and device.
    Every name and shape is checked before anything is copied, so a bad state dict leaves the model
    untouched. A tied parameter may be absent (``save_pretrained`` writes shared tensors once) as
    long as the tensor it shares storage with is present.
    """
    import torch

    own = model.state_dict(keep_vars=True)
    unexpected = sorted(set(state) - set(own))
    if unexpected:
        raise ValueError(f"unexpected weights: {unexpected[:5]}")
    present_ptrs = {own[n].data_ptr() for n in state}
    missing = sorted(n for n in own if n not in state and own[n].data_ptr() not in present_ptrs)
    if missing:
        raise ValueError(f"missing weights: {missing[:5]}")
    wrong = [n for n, t in state.items() if tuple(t.shape) != tuple(own[n].shape)]
    if wrong:
        n = wrong[0]
        raise ValueError(
            f"shape mismatch for {n}: {tuple(state[n].shape)} vs {tuple(own[n].shape)}"
        )
    with torch.no_grad():
        for n, t in state.items():
            own[n].copy_(t)

"""Model directories for inference servers and for ``transformers``: bfloat16 safetensors.

The learner keeps float32 master weights (sharded over ranks under torchrun); what leaves it is
a Hugging Face directory that any server or ``AutoModelForCausalLM.from_pretrained`` loads:
``config.json`` (dtype bfloat16), ``generation_config.json``, the tokenizer files, and the
weights in safetensors files of at most ``max_shard_bytes`` (with the usual
``model.safetensors.index.json`` when there are several). Serving in bfloat16 is what servers
do anyway; writing it halves the bytes of every weight sync.

``azr export CHECKPOINT OUT_DIR`` writes such a directory from a training checkpoint of either
format (one process, or torch.distributed.checkpoint shards of any world size).
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

from azr.models.tokenizer import Tokenizer

__all__ = ["export_checkpoint", "find_learner_dir", "write_model_directory"]

_SHARD_BYTES: Final = 5 << 30
_INDEX_FILE: Final = "model.safetensors.index.json"


def write_model_directory(
    out: str | os.PathLike[str],
    buckets: Iterable[list[tuple[str, Any]]],
    model: Any,
    tokenizer: Tokenizer,
    *,
    max_shard_bytes: int = _SHARD_BYTES,
) -> list[Path]:
    """Write the tensors of ``buckets`` (lists of ``(name, tensor)``, e.g.
    :meth:`azr.rl.Learner.weight_buckets`) into ``out`` as a Hugging Face directory, with
    ``model``'s config and generation config and ``tokenizer``. Returns the weight files."""
    import torch
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # Each shard is written as soon as it is full: a model larger than one shard never sits
    # whole in host memory. Provisional names, as the count is known only at the end.
    written: list[tuple[Path, list[str]]] = []
    current: dict[str, Any] = {}
    size = 0
    dtype: Any = None

    def flush() -> None:
        path = out / f".shard-{len(written):05d}.safetensors"
        save_file(current, os.fspath(path), metadata={"format": "pt"})
        written.append((path, list(current)))

    for bucket in buckets:
        for name, tensor in bucket:
            nbytes = tensor.numel() * tensor.element_size()
            if current and size + nbytes > max_shard_bytes:
                flush()
                current, size = {}, 0
            # Own contiguous storage on the host: safetensors refuses views and shared memory.
            current[name] = tensor.detach().to("cpu").contiguous().clone()
            size += nbytes
            if tensor.is_floating_point():
                dtype = tensor.dtype
    if current or not written:
        flush()
    total = len(written)
    files: list[Path] = []
    weight_map: dict[str, str] = {}
    for i, (path, names) in enumerate(written):
        final = out / (
            "model.safetensors" if total == 1 else f"model-{i + 1:05d}-of-{total:05d}.safetensors"
        )
        path.rename(final)
        files.append(final)
        weight_map.update(dict.fromkeys(names, final.name))
    if total > 1:
        index = {
            "metadata": {"total_size": sum(f.stat().st_size for f in files)},
            "weight_map": dict(sorted(weight_map.items())),
        }
        (out / _INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")

    config = copy.deepcopy(model.config)
    config.dtype = dtype if dtype is not None else torch.bfloat16
    config.save_pretrained(os.fspath(out))
    generation = getattr(model, "generation_config", None)
    if generation is not None:
        generation.save_pretrained(os.fspath(out))
    tokenizer.save_pretrained(out)
    return files


def find_learner_dir(path: str | os.PathLike[str]) -> Path:
    """The learner directory of ``path``: a run folder (its newest committed checkpoint), a
    checkpoint folder ``step-NNNNNN`` (verified against its manifest), or a learner directory.
    Raises CheckpointError (damaged or missing) or FileNotFoundError."""
    from azr.errors import CheckpointError
    from azr.rl.checkpoint import MANIFEST_FILE, resolve_checkpoint, verify_manifest
    from azr.run.checkpoints import CheckpointStore

    path = Path(path)
    if (path / "checkpoints").is_dir():
        store = CheckpointStore(path / "checkpoints")
        latest = store.latest()
        if latest is None:
            raise CheckpointError(f"{path} has no committed checkpoint")
        path = latest
    if (path / MANIFEST_FILE).is_file():
        try:
            verify_manifest(path)
        except CheckpointError as exc:
            raise CheckpointError(f"{path.name}: {exc}") from None
    if (path / "learner").is_dir():
        path = path / "learner"
    return resolve_checkpoint(path)


def export_checkpoint(checkpoint: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path:
    """Write the policy of a training checkpoint (see :func:`find_learner_dir`) to ``out`` as a
    bfloat16 Hugging Face directory, atomically; returns ``out``. Only the weights are read:
    no optimiser state is loaded."""
    import torch
    import transformers

    from azr.models import load_model
    from azr.rl.checkpoint import atomic_directory
    from azr.rl.distributed import full_tensors, weight_buckets
    from azr.rl.sharded_checkpoint import empty_model, is_sharded, load_model_weights

    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    learner_dir = find_learner_dir(checkpoint)
    if is_sharded(learner_dir):
        model, tokenizer = empty_model(learner_dir)
        load_model_weights(model, learner_dir)
    else:
        model, tokenizer = load_model(learner_dir)
    buckets = weight_buckets(full_tensors(model, dtype=torch.bfloat16), 1 << 30)
    with atomic_directory(out) as tmp:
        write_model_directory(tmp, buckets, model, tokenizer)
    return Path(out).absolute()

"""Checks of a resolved configuration that its types cannot express, run before anything starts.

:func:`azr.config.load_config` already refuses unknown keys, wrong types and the ranges each
section checks for itself. :func:`check_config` adds what needs the whole configuration or the
machine: every number finite, sizes positive, attention heads dividing the hidden size, sandbox
limits the executor accepts and the machine can give, batch sizes a step can hold, an output
folder that can be written. Each failure is a :class:`~azr.errors.ConfigError` whose message
starts with the dotted key, so ``azr train`` exits 2 naming it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import msgspec

from azr.config import Config
from azr.errors import ConfigError

__all__ = ["check_config", "machine_memory_bytes"]

_MIB: Final = 1 << 20
# What one token of a step's rollouts costs the trainer, generously: ids held as Python ints and
# tensors in several places (rollout, sample, batch), plus its share of a prompt.
_BYTES_PER_TOKEN: Final = 64
_PROMPT_TOKENS: Final = 1024


def machine_memory_bytes() -> int | None:
    """Physical memory available to this process: the machine's, or its cgroup's limit if
    lower; None when neither can be read."""
    found: list[int] = []
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    found.append(int(line.split()[1]) * 1024)
                    break
    except (OSError, ValueError, IndexError):
        pass
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text(encoding="ascii").strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < (1 << 60):
            found.append(int(text))
        break
    return min(found) if found else None


def _leaves(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, msgspec.Struct):
        for name in value.__struct_fields__:
            yield from _leaves(getattr(value, name), f"{prefix}{name}.")
    elif isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            yield from _leaves(item, f"{prefix}{i}.")
    else:
        yield prefix[:-1], value


class _Checks:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def require(self, ok: bool, key: str, message: str) -> None:
        # The first problem of a key is the one worth reading.
        if not ok and not any(e.startswith(f"{key}: ") for e in self.errors):
            self.errors.append(f"{key}: {message}")


def _numbers(c: _Checks, config: Config) -> None:
    for key, value in _leaves(config):
        if isinstance(value, float) and not math.isfinite(value):
            c.require(False, key, f"must be a finite number (got {value})")
        # Seeds may be negative; the model's sizes get their own checks below.
        elif (
            isinstance(value, int)
            and not isinstance(value, bool)
            and not key.endswith("seed")
            and not key.startswith("model.tiny.")
        ):
            c.require(value >= 0, key, f"must be >= 0 (got {value})")


def _model(c: _Checks, config: Config) -> None:
    model = config.model
    if model.path is not None:
        path = Path(model.path)
        c.require(path.is_dir(), "model.path", f"{model.path} is not a local model directory")
        return
    t = model.tiny
    sizes = {
        "hidden_size": t.hidden_size,
        "num_layers": t.num_layers,
        "num_heads": t.num_heads,
        "num_kv_heads": t.num_kv_heads,
        "intermediate_size": t.intermediate_size,
        "max_position_embeddings": t.max_position_embeddings,
    }
    for name, size in sizes.items():
        c.require(size >= 1, f"model.tiny.{name}", f"must be >= 1 (got {size})")
    if t.hidden_size >= 1 and t.num_heads >= 1:
        c.require(
            t.hidden_size % t.num_heads == 0,
            "model.tiny.num_heads",
            f"{t.num_heads} heads do not divide hidden_size {t.hidden_size}",
        )
        head_dim = t.hidden_size // t.num_heads
        c.require(
            head_dim % 2 == 0 or t.hidden_size % t.num_heads != 0,
            "model.tiny.num_heads",
            f"the head size hidden_size / num_heads = {head_dim} must be even (rotary "
            "embeddings rotate pairs of dimensions)",
        )
    if t.num_heads >= 1 and t.num_kv_heads >= 1:
        c.require(
            t.num_heads % t.num_kv_heads == 0,
            "model.tiny.num_kv_heads",
            f"{t.num_kv_heads} key/value heads do not divide num_heads {t.num_heads}",
        )
    c.require(t.rope_theta > 0, "model.tiny.rope_theta", f"must be > 0 (got {t.rope_theta})")


def _limits(c: _Checks, config: Config, memory: int | None) -> None:
    # The executor's own rules (checked again when it starts), so that they fail here, by key.
    limits = config.verifier.limits
    key = "verifier.limits."
    for name in ("wall_timeout_s", "cpu_time_s"):
        value = getattr(limits, name)
        c.require(0 < value <= 3600, key + name, f"must be in (0, 3600] seconds (got {value})")
    c.require(
        limits.memory_bytes >= 64 * _MIB,
        key + "memory_bytes",
        f"must be at least 64 MiB (got {limits.memory_bytes})",
    )
    if memory is not None:
        c.require(
            limits.memory_bytes <= memory,
            key + "memory_bytes",
            f"{limits.memory_bytes} is more than this machine's memory ({memory // _MIB} MiB)",
        )
    c.require(
        limits.max_output_bytes <= 64 * _MIB, key + "max_output_bytes", "must be at most 64 MiB"
    )
    c.require(
        64 <= limits.max_value_bytes <= 64 * _MIB,
        key + "max_value_bytes",
        "must be in [64, 64 MiB]",
    )
    c.require(
        1 <= limits.max_source_bytes <= 256 * _MIB,
        key + "max_source_bytes",
        "must be in [1, 256 MiB]",
    )
    c.require(
        50 <= limits.recursion_limit <= 1_000_000,
        key + "recursion_limit",
        "must be in [50, 1000000]",
    )
    c.require(
        limits.int_max_str_digits == 0 or limits.int_max_str_digits >= 640,
        key + "int_max_str_digits",
        "must be 0 or at least 640",
    )
    cpus = os.cpu_count() or 1
    workers = config.verifier.workers
    c.require(
        workers is None or workers <= 64 * cpus,
        "verifier.workers",
        f"{workers} sandbox processes for {cpus} CPUs",
    )


def _batches(c: _Checks, config: Config, memory: int | None) -> None:
    sp = config.selfplay
    c.require(
        sp.batch_size <= sp.buffer_capacity,
        "selfplay.batch_size",
        f"{sp.batch_size} proposals per task type and step do not fit a buffer of "
        f"selfplay.buffer_capacity = {sp.buffer_capacity}",
    )
    if memory is None:
        return
    sequences = 3 * sp.batch_size * (1 + config.rewards.solver_rollouts)
    tokens = sequences * (config.generation.max_new_tokens + _PROMPT_TOKENS)
    need = tokens * _BYTES_PER_TOKEN
    c.require(
        need <= memory,
        "selfplay.batch_size",
        f"a step of {sequences} sequences of up to "
        f"{config.generation.max_new_tokens + _PROMPT_TOKENS} tokens needs about "
        f"{need // _MIB} MiB, more than this machine's {memory // _MIB} MiB",
    )


def _output_dir(c: _Checks, config: Config) -> None:
    key = "run.output_dir"
    out = Path(config.run.output_dir).absolute()
    if out.exists() and not out.is_dir():
        c.require(False, key, f"{out} exists and is not a folder")
        return
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        c.require(False, key, f"{existing} is not a folder")
        return
    try:
        read_only = bool(os.statvfs(existing).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    c.require(not read_only, key, f"{existing} is on a read-only file system")
    c.require(
        read_only or os.access(existing, os.W_OK | os.X_OK),
        key,
        f"{existing} is not writable",
    )


def check_config(config: Config, *, machine: bool = True) -> None:
    """Raise :class:`ConfigError` (``key: problem``, problems joined by ``; ``) unless ``config``
    can run; with ``machine``, also against this machine (memory, the output folder)."""
    c = _Checks()
    _numbers(c, config)
    _model(c, config)
    memory = machine_memory_bytes() if machine else None
    _limits(c, config, memory)
    _batches(c, config, memory)
    sglang = config.generation.sglang
    c.require(1 <= sglang.port <= 65535, "generation.sglang.port", "must be in [1, 65535]")
    for name in ("max_concurrency", "max_batch_sequences"):
        value = getattr(sglang, name)
        c.require(value >= 1, f"generation.sglang.{name}", f"must be >= 1 (got {value})")
    for name in ("ready_timeout_s", "request_timeout_s"):
        value = getattr(sglang, name)
        c.require(value > 0, f"generation.sglang.{name}", f"must be > 0 (got {value})")
    c.require(
        config.learner.lr <= 1.0,
        "learner.lr",
        f"must be <= 1 (got {config.learner.lr}); Adam steps that large only diverge",
    )
    if machine:
        _output_dir(c, config)
    if c.errors:
        raise ConfigError("; ".join(c.errors))

"""What a resumed run may change: settings compared with the checkpoint's own configuration.

A checkpoint fixes some settings for good: the model (its shape, its weights' source, the
tokenizer that comes with it), the buffers' capacity (stored with the buffers), the run's seed
(every random state is restored from the checkpoint instead), and whether a KL reference model
exists. Changing one of those on ``--resume`` cannot take effect, so the resume is refused and
the keys are named. Everything else (steps, schedule, batch sizes, sampling, rewards, optimiser
settings, limits, logging) applies from the next step on; such changes are listed, not refused.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from azr.config import Config

__all__ = ["ResumeChanges", "resume_changes"]

_FIXED_PREFIXES: Final = ("model.",)
_FIXED_KEYS: Final = frozenset({"run.seed", "selfplay.buffer_capacity"})
# Where the run is, not what it does: a run folder may be moved.
_IGNORED: Final = frozenset({"run.output_dir"})


class ResumeChanges(msgspec.Struct, frozen=True, kw_only=True):
    """Settings that differ from the checkpoint's, as ``key (old -> new)``: ``refused`` cannot
    apply to a resumed run, ``allowed`` apply from its next step."""

    refused: tuple[str, ...] = ()
    allowed: tuple[str, ...] = ()


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, msgspec.Struct):
        value = {name: getattr(value, name) for name in value.__struct_fields__}
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for name, item in value.items():
            out.update(_flatten(item, f"{prefix}{name}."))
        return out
    return {prefix[:-1]: _freeze(value)}


def _freeze(value: Any) -> Any:
    # JSON gives lists where the config holds tuples: compare them as equals.
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(item) for item in value)
    return value


def _saved(raw: bytes) -> dict[str, Any]:
    try:
        return _flatten(msgspec.json.decode(raw, type=Config))
    except msgspec.ValidationError:
        # Written by another version: compare what both still have, key by key.
        return _flatten(msgspec.json.decode(raw))


def _fixed(key: str, before: Any, now: Any) -> bool:
    if key.startswith(_FIXED_PREFIXES) or key in _FIXED_KEYS:
        return True
    if key == "learner.kl_coef":  # a reference model exists only when it is positive
        return bool(before) != bool(now)
    return False


def resume_changes(saved: bytes, config: Config) -> ResumeChanges:
    """Compare ``config`` with the configuration a checkpoint recorded (its ``config.json``).

    Raises ``msgspec.DecodeError`` when ``saved`` is not JSON.
    """
    before = _saved(saved)
    now = _flatten(config)
    missing = object()
    refused: list[str] = []
    allowed: list[str] = []
    for key in sorted(now.keys() | before.keys()):
        old, new = before.get(key, missing), now.get(key, missing)
        if isinstance(new, (set, frozenset)) and isinstance(old, tuple):
            old = frozenset(old)  # JSON has no sets: an array in any order
        if old == new or key in _IGNORED:
            continue
        shown = f"{key} ({'unset' if old is missing else repr(old)} -> "
        shown += f"{'unset' if new is missing else repr(new)})"
        (refused if _fixed(key, old, new) else allowed).append(shown)
    return ResumeChanges(refused=tuple(refused), allowed=tuple(allowed))

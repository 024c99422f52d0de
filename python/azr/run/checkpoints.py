"""The checkpoints of one run: numbered folders, the ``latest`` pointer, and how a resume picks one.

Layout (``<output_dir>/checkpoints``)::

    step-000050/          one complete checkpoint, its manifest written last (azr.rl.checkpoint)
    latest                the name of the newest committed checkpoint ("step-000050")
    set-aside/            damaged checkpoints, and those a --resume-from rewound past (kept, unused)

A step is committed in this order: its folder is written (atomically, with its manifest), its
metrics line is appended to ``metrics.jsonl`` and synced, then ``latest`` is pointed at it. A
stop anywhere in between leaves a state that :meth:`CheckpointStore.choose` resolves without
losing or repeating a metrics line:

* a folder newer than anything committed (no metrics line yet) is removed and the step redone;
* a folder whose metrics line was written but which ``latest`` does not name yet is committed;
* temporary folders of a save that never finished are removed.

``latest`` is only ever read as a bare ``step-NNNNNN`` name of a folder directly inside
``checkpoints``: anything else in it is reported and ignored.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Final

import msgspec

from azr.errors import CheckpointError
from azr.rl.checkpoint import atomic_directory, verify_manifest, write_manifest

__all__ = [
    "LATEST_FILE",
    "SET_ASIDE_DIR",
    "CheckpointChoice",
    "CheckpointStore",
    "recorded_checkpoints",
]

LATEST_FILE: Final = "latest"
SET_ASIDE_DIR: Final = "set-aside"
_NAME: Final = re.compile(r"step-(\d{6,})")
_TMP: Final = re.compile(r"\.step-\d{6,}\.tmp-[0-9a-f]+")
_OLD: Final = re.compile(r"\.(step-\d{6,})\.old")


class CheckpointChoice(msgspec.Struct, frozen=True, kw_only=True):
    """The checkpoint a resume continues from (None: none is left, start afresh), and one line
    for everything done to get there."""

    step: int | None
    path: Path | None
    notes: tuple[str, ...] = ()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class CheckpointStore:
    """The checkpoints under ``root`` (``<output_dir>/checkpoints``)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    @staticmethod
    def name(step: int) -> str:
        return f"step-{step:06d}"

    def path(self, step: int) -> Path:
        return self.root / self.name(step)

    def steps(self) -> list[int]:
        """The steps that have a checkpoint folder (complete or not), oldest first."""
        if not self.root.is_dir():
            return []
        found = []
        for entry in self.root.iterdir():
            match = _NAME.fullmatch(entry.name)
            if match and entry.is_dir() and not entry.is_symlink():
                found.append(int(match.group(1)))
        return sorted(found)

    # -- writing ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def write(self, step: int) -> Iterator[Path]:
        """An empty folder to fill; on normal exit its manifest is written and it becomes
        ``step``'s checkpoint (not yet committed: see :meth:`publish`)."""
        with atomic_directory(self.path(step)) as tmp:
            yield tmp
            write_manifest(tmp)

    def publish(self, step: int, keep: int) -> None:
        """Point ``latest`` at ``step`` (atomically, durably), then delete the oldest committed
        checkpoints beyond ``keep``. Folders newer than ``step`` are left alone."""
        pointer = self.root / LATEST_FILE
        tmp = pointer.with_name(f".{LATEST_FILE}.tmp")
        with tmp.open("w", encoding="utf-8") as f:
            f.write(self.name(step))
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(pointer)
        _fsync_dir(self.root)
        committed = [s for s in self.steps() if s <= step]
        for old in committed[: max(len(committed) - keep, 0)]:
            shutil.rmtree(self.path(old), ignore_errors=True)

    # -- reading ----------------------------------------------------------------------------

    def published(self) -> int | None:
        """The step ``latest`` names, None without a pointer; CheckpointError when it names
        anything but a checkpoint folder of this run."""
        pointer = self.root / LATEST_FILE
        try:
            text = pointer.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{pointer} cannot be read: {exc}") from None
        match = _NAME.fullmatch(text)
        if match is None:
            raise CheckpointError(
                f"{pointer} names {text[:200]!r}, not a checkpoint folder of this run"
            )
        return int(match.group(1))

    def latest(self) -> Path | None:
        """The folder ``latest`` names, if it names one (not verified: see :meth:`choose`)."""
        try:
            step = self.published()
        except CheckpointError:
            return None
        if step is None or not self.path(step).is_dir():
            return None
        return self.path(step)

    def verify(self, step: int) -> Path:
        """``step``'s folder, checked against its manifest (CheckpointError naming it if not)."""
        path = self.path(step)
        if not path.is_dir():
            raise CheckpointError(f"{path.name}: missing")
        try:
            verify_manifest(path)
        except CheckpointError as exc:
            raise CheckpointError(f"{path.name}: {exc}") from None
        return path

    # -- resuming ---------------------------------------------------------------------------

    def sweep(self) -> list[str]:
        """Remove what interrupted saves left behind; a line for each thing done."""
        notes: list[str] = []
        if not self.root.is_dir():
            return notes
        for entry in sorted(self.root.iterdir()):
            if _TMP.fullmatch(entry.name) or entry.name == f".{LATEST_FILE}.tmp":
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
                notes.append(f"removed {entry.name}, left by a save that was interrupted")
            elif (old := _OLD.fullmatch(entry.name)) and entry.is_dir():
                target = self.root / old.group(1)
                if target.exists():
                    shutil.rmtree(entry, ignore_errors=True)
                else:  # the swap stopped between its two renames: the old folder is the one
                    entry.rename(target)
                    notes.append(f"restored {target.name} from an interrupted replacement")
        return notes

    def _set_aside(self, step: int) -> Path:
        aside = self.root / SET_ASIDE_DIR
        aside.mkdir(exist_ok=True)
        target = aside / self.name(step)
        n = 1
        while target.exists():
            n += 1
            target = aside / f"{self.name(step)}.{n}"
        self.path(step).rename(target)
        return target

    def choose(
        self, *, resume_from: int | None = None, recorded: Iterable[int] | None = None
    ) -> CheckpointChoice:
        """The checkpoint to resume from, verified (``step`` None when there is none).

        ``recorded`` are the steps whose metrics line names a checkpoint (a line is written
        before ``latest`` moves); None when there are no metrics at all. Without
        ``resume_from`` the newest committed checkpoint is taken, and a damaged one is set
        aside for the newest intact one before it; with it, exactly that checkpoint, and newer
        ones are set aside. CheckpointError when nothing
        intact is left, or ``resume_from`` is missing or damaged.
        """
        notes = self.sweep()
        steps = self.steps()
        try:
            pointer = self.published()
        except CheckpointError as exc:
            notes.append(f"ignoring it: {exc}")
            pointer = None
        if pointer is not None and pointer not in steps:
            notes.append(f"{LATEST_FILE} names {self.name(pointer)}, which is missing")
        if resume_from is not None:
            return self._choose_exactly(resume_from, steps, notes)
        if not steps:
            return CheckpointChoice(step=None, path=None, notes=tuple(notes))
        committed = {s for s in recorded or () if s in steps}
        if pointer is not None and pointer in steps:
            committed.add(pointer)
        if recorded is None and pointer is None:
            # Nothing says which folders were committed (the pointer and the metrics are
            # gone, say a folder of checkpoints copied on its own): every complete one counts.
            committed = set(steps)
        top = max(committed, default=-1)
        for step in steps:
            if step > top:
                shutil.rmtree(self.path(step), ignore_errors=True)
                notes.append(
                    f"removed {self.name(step)}: written, but the run stopped before recording "
                    "it (the step is redone)"
                )
        problems: list[str] = []
        for step in sorted((s for s in steps if s <= top), reverse=True):
            try:
                path = self.verify(step)
            except CheckpointError as exc:
                problems.append(str(exc))
                aside = self._set_aside(step)
                notes.append(
                    f"checkpoint {exc} -- set aside as {aside.relative_to(self.root)}, "
                    "falling back to the one before"
                )
                continue
            return CheckpointChoice(step=step, path=path, notes=tuple(notes))
        if not problems:  # only uncommitted folders: a fresh start
            return CheckpointChoice(step=None, path=None, notes=tuple(notes))
        raise CheckpointError(
            f"no intact checkpoint left in {self.root} ({'; '.join(problems)}); the damaged ones "
            f"are in {self.root / SET_ASIDE_DIR}"
        )

    def _choose_exactly(self, step: int, steps: list[int], notes: list[str]) -> CheckpointChoice:
        if step not in steps:
            have = ", ".join(str(s) for s in steps) or "none"
            raise CheckpointError(
                f"--resume-from {step}: no checkpoint {self.name(step)} in {self.root} "
                f"(steps with one: {have})"
            )
        path = self.verify(step)
        for newer in (s for s in steps if s > step):
            aside = self._set_aside(newer)
            notes.append(f"set aside {self.name(newer)} as {aside.relative_to(self.root)}")
        return CheckpointChoice(step=step, path=path, notes=tuple(notes))


class _Line(msgspec.Struct):
    step: int
    checkpoint: str | None = None


def recorded_checkpoints(metrics: str | os.PathLike[str]) -> set[int] | None:
    """The steps whose line in a ``metrics.jsonl`` names a checkpoint (torn lines skipped);
    None when there is no such file."""
    decoder = msgspec.json.Decoder(_Line)
    found: set[int] = set()
    try:
        data = Path(metrics).read_bytes()
    except FileNotFoundError:
        return None
    for line in data.splitlines():
        try:
            record = decoder.decode(line)
        except msgspec.DecodeError:
            continue
        if record.checkpoint is not None:
            found.add(record.step)
    return found

"""Crash-safe directory writes for checkpoints and exported weights, and their manifests.

A checkpoint is written into a temporary sibling directory and moved into place with ``rename``,
so the directory at the target path is always either the previous complete checkpoint or the new
complete one. POSIX cannot atomically swap two non-empty directories, so replacing an existing
checkpoint takes two renames; if the process dies between them, the previous checkpoint survives
under a fixed backup name and :func:`resolve_checkpoint` finds it.

A checkpoint folder also carries a manifest (:data:`MANIFEST_FILE`), written last: the size and
SHA-256 of every other file in the folder, whatever wrote them (a Hugging Face directory,
``torch.save`` files, ``torch.distributed.checkpoint`` shards). :func:`verify_manifest` checks a
folder against it before anything is loaded, so a torn, truncated or bit-flipped checkpoint is
reported as such instead of failing later, or worse, loading.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Final

import msgspec

from azr.errors import CheckpointError

__all__ = [
    "MANIFEST_FILE",
    "Manifest",
    "ManifestEntry",
    "atomic_directory",
    "resolve_checkpoint",
    "verify_manifest",
    "write_manifest",
]

MANIFEST_FILE: Final = "manifest.json"
_CHUNK: Final = 4 << 20


class ManifestEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One file of a checkpoint folder: its path relative to the folder (``/``-separated)."""

    path: str
    size: int
    sha256: str


class Manifest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Every file of a checkpoint folder but the manifest itself, sorted by path."""

    format: int = 1
    files: tuple[ManifestEntry, ...]


_MANIFEST_ENCODER: Final = msgspec.json.Encoder()
_MANIFEST_DECODER: Final = msgspec.json.Decoder(Manifest)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        # hashlib releases the GIL on large updates: files hash in parallel threads.
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _files(root: Path) -> list[str]:
    found = []
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            rel = Path(dirpath, name).relative_to(root).as_posix()
            if rel != MANIFEST_FILE:
                found.append(rel)
    return sorted(found)


def _hash_all(root: Path, names: list[str]) -> list[str]:
    if len(names) <= 1:
        return [_sha256(root / name) for name in names]
    with ThreadPoolExecutor(max_workers=min(8, len(names), os.cpu_count() or 1)) as pool:
        return list(pool.map(lambda name: _sha256(root / name), names))


def write_manifest(root: str | os.PathLike[str]) -> Manifest:
    """Record every file under ``root`` in ``root/manifest.json``; call it once the folder is
    otherwise complete (a folder without a manifest is an incomplete checkpoint)."""
    root = Path(root)
    names = _files(root)
    sizes = [(root / name).stat().st_size for name in names]
    digests = _hash_all(root, names)
    manifest = Manifest(
        files=tuple(
            ManifestEntry(path=n, size=s, sha256=d)
            for n, s, d in zip(names, sizes, digests, strict=True)
        )
    )
    with (root / MANIFEST_FILE).open("wb") as f:
        f.write(_MANIFEST_ENCODER.encode(manifest))
        f.flush()
        os.fsync(f.fileno())
    return manifest


def _safe(entry: str) -> bool:
    path = PurePosixPath(entry)
    return bool(entry) and not path.is_absolute() and ".." not in path.parts and "\\" not in entry


def verify_manifest(root: str | os.PathLike[str]) -> Manifest:
    """Check the files under ``root`` against its manifest: all present, none added, sizes and
    checksums equal. Raises :class:`~azr.errors.CheckpointError` naming the first problem."""
    root = Path(root)
    try:
        raw = (root / MANIFEST_FILE).read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"incomplete: no {MANIFEST_FILE} (its save never finished)") from None
    except OSError as exc:
        raise CheckpointError(f"{MANIFEST_FILE} cannot be read: {exc.strerror or exc}") from None
    try:
        manifest = _MANIFEST_DECODER.decode(raw)
    except msgspec.DecodeError as exc:
        raise CheckpointError(f"{MANIFEST_FILE} is damaged: {exc}") from None
    if manifest.format != 1:
        raise CheckpointError(f"{MANIFEST_FILE} has an unknown format {manifest.format}")
    listed = {entry.path: entry for entry in manifest.files}
    bad = [name for name in listed if not _safe(name)]
    if bad:
        raise CheckpointError(f"{MANIFEST_FILE} names a path outside the checkpoint: {bad[0]!r}")
    present = _files(root)
    extra = sorted(set(present) - set(listed))
    if extra:
        raise CheckpointError(f"{extra[0]}: not in {MANIFEST_FILE} (added after the save)")
    for name, entry in listed.items():
        try:
            size = (root / name).stat().st_size
        except FileNotFoundError:
            raise CheckpointError(f"{name}: missing") from None
        if size != entry.size:
            raise CheckpointError(f"{name}: {size} bytes, {entry.size} expected (truncated?)")
    names = list(listed)
    for name, digest in zip(names, _hash_all(root, names), strict=True):
        if digest != listed[name].sha256:
            raise CheckpointError(f"{name}: checksum mismatch (the data is damaged)")
    return manifest


def _backup_path(target: Path) -> Path:
    return target.with_name(f".{target.name}.old")


def _fsync_tree(root: Path) -> None:
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty temporary directory; on normal exit it replaces ``target`` atomically.

    On an exception the temporary directory is removed and ``target`` is left untouched.
    """
    target = Path(target).absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex}")
    tmp.mkdir()
    try:
        yield tmp
        # Data must be on disk before the rename makes it visible as complete.
        _fsync_tree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    backup = _backup_path(target)
    if target.exists():
        # A leftover backup is older than the current target (a swap that was interrupted after
        # its second rename); it is safe to drop.
        shutil.rmtree(backup, ignore_errors=True)
        target.rename(backup)
    tmp.rename(target)
    _fsync_dir(target.parent)
    shutil.rmtree(backup, ignore_errors=True)


def resolve_checkpoint(path: str | os.PathLike[str]) -> Path:
    """The complete checkpoint directory to read for ``path``.

    Normally ``path`` itself; if a save was interrupted between its two renames, the previous
    checkpoint's backup.
    """
    path = Path(path).absolute()
    if path.is_dir():
        return path
    backup = _backup_path(path)
    if backup.is_dir():
        return backup
    raise FileNotFoundError(f"no checkpoint at {os.fspath(path)!r}")

"""The checkpoint store on its own: manifests over whatever files a folder holds, the commit
order, cleaning up after interrupted saves, choosing a checkpoint to resume, and a ``latest``
that can only name a folder of this run. Real files on disk; no model needed (a sharded
learner's checkpoint is just other files)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from azr.errors import CheckpointError
from azr.rl.checkpoint import MANIFEST_FILE, verify_manifest
from azr.run.checkpoints import CheckpointStore, recorded_checkpoints

FILES = {
    "state.json": b'{"step": 0}',
    "learner/model.safetensors": bytes(range(256)) * 64,
    "learner/__0_0.distcp": b"\x00" * 1000,
    "learner/.metadata": b"shard index",
    "buffers/empty.msgpack": b"",
}


def _write(store: CheckpointStore, step: int) -> Path:
    with store.write(step) as tmp:
        for name, data in FILES.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(data.replace(b"0", str(step).encode()))
    return store.path(step)


@pytest.fixture
def store(tmp_path: Path) -> CheckpointStore:
    store = CheckpointStore(tmp_path / "checkpoints")
    for step in (1, 2, 3):
        _write(store, step)
        store.publish(step, keep=3)
    return store


def test_the_manifest_lists_every_file_with_size_and_checksum(store: CheckpointStore) -> None:
    manifest = verify_manifest(store.path(3))
    assert sorted(e.path for e in manifest.files) == sorted(FILES)
    entry = {e.path: e for e in manifest.files}["learner/model.safetensors"]
    assert entry.size == len(FILES["learner/model.safetensors"]) and len(entry.sha256) == 64
    assert (store.root / "latest").read_text() == "step-000003"
    choice = store.choose()
    assert choice.step == 3 and choice.notes == ()


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGE = {"flipped": _flip, "truncated": _truncate, "deleted": Path.unlink}


@pytest.mark.parametrize("how", sorted(DAMAGE))
@pytest.mark.parametrize("name", [*sorted(FILES), MANIFEST_FILE])
def test_damage_to_any_file_falls_back_to_the_previous_checkpoint(
    store: CheckpointStore, name: str, how: str
) -> None:
    target = store.path(3) / name
    if how != "deleted" and target.stat().st_size == 0:
        pytest.skip("an empty file has nothing to flip or cut")
    DAMAGE[how](target)
    with pytest.raises(CheckpointError):
        store.verify(3)
    choice = store.choose()
    assert choice.step == 2
    (note,) = choice.notes
    assert "step-000003" in note and "\n" not in note
    if name != MANIFEST_FILE:
        assert name in note
    # Set aside, not deleted: nothing is thrown away, and it is not chosen again.
    assert (store.root / "set-aside" / "step-000003").is_dir()
    assert store.steps() == [1, 2]


def test_a_file_added_after_the_save_is_damage(store: CheckpointStore) -> None:
    (store.path(3) / "learner" / "extra.bin").write_bytes(b"x")
    choice = store.choose()
    assert choice.step == 2
    assert "learner/extra.bin: not in manifest.json" in choice.notes[0]


def test_nothing_intact_is_an_error_not_a_fresh_start(store: CheckpointStore) -> None:
    for step in (1, 2, 3):
        (store.path(step) / "state.json").unlink()
    with pytest.raises(CheckpointError, match="no intact checkpoint left"):
        store.choose()


@pytest.mark.parametrize(
    "pointer",
    [
        "../../other/checkpoints/step-000004",
        "/etc",
        "step-000002/../../..",
        "set-aside/step-000003",
        "",
        "\x00\xff garbage",
    ],
)
def test_latest_never_names_anything_outside_the_run(
    store: CheckpointStore, tmp_path: Path, pointer: str
) -> None:
    outside = tmp_path / "other" / "checkpoints" / "step-000004"
    outside.mkdir(parents=True)
    (store.root / "latest").write_text(pointer, encoding="utf-8", errors="surrogateescape")
    assert store.latest() is None
    choice = store.choose()
    # Ignored with a note; the newest folder of this run is used.
    assert choice.path == store.path(3)
    assert any("not a checkpoint folder of this run" in note for note in choice.notes)
    assert outside.is_dir()


def test_a_symlinked_step_folder_is_not_a_checkpoint(
    store: CheckpointStore, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (store.root / "step-000009").symlink_to(elsewhere)
    assert store.steps() == [1, 2, 3]


def test_interrupted_saves_are_swept(store: CheckpointStore) -> None:
    torn = store.root / ".step-000004.tmp-0123abcd"
    (torn / "learner").mkdir(parents=True)
    (torn / "learner" / "model.safetensors").write_bytes(b"half")
    (store.root / ".latest.tmp").write_text("step-000004")
    # A replacement stopped between its renames: the previous folder is the backup.
    store.path(2).rename(store.root / ".step-000002.old")
    notes = store.sweep()
    assert not torn.exists() and not (store.root / ".latest.tmp").exists()
    assert store.steps() == [1, 2, 3]
    assert len(notes) == 3 and all("\n" not in n for n in notes)


def test_commit_order_decides_what_a_resume_continues_from(store: CheckpointStore) -> None:
    # Written but never recorded (stopped before its metrics line): removed, the step redone.
    _write(store, 4)
    choice = store.choose(recorded={1, 2, 3})
    assert choice.step == 3 and store.steps() == [1, 2, 3]
    assert "step-000004" in choice.notes[0] and "redone" in choice.notes[0]
    # Recorded but ``latest`` not yet moved (stopped right between the two): committed.
    _write(store, 4)
    choice = store.choose(recorded={1, 2, 3, 4})
    assert choice.step == 4


def test_publish_keeps_the_newest_committed_and_never_touches_newer(
    store: CheckpointStore,
) -> None:
    _write(store, 4)
    _write(store, 5)  # the next step, written while step 4 is committed
    store.publish(4, keep=2)
    assert store.steps() == [3, 4, 5] and store.published() == 4


def test_resume_from_a_chosen_step_sets_newer_ones_aside(store: CheckpointStore) -> None:
    choice = store.choose(resume_from=1)
    assert choice.step == 1 and store.steps() == [1]
    assert sorted(p.name for p in (store.root / "set-aside").iterdir()) == [
        "step-000002",
        "step-000003",
    ]
    with pytest.raises(CheckpointError, match="steps with one: 1"):
        store.choose(resume_from=7)
    _flip(store.path(1) / "state.json")
    with pytest.raises(CheckpointError, match=r"state\.json: checksum mismatch"):
        store.choose(resume_from=1)


def test_recorded_checkpoints_read_metrics_lines(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics.jsonl"
    lines = [
        json.dumps({"step": 0}),
        json.dumps({"step": 1, "checkpoint": "/x/step-000001"}),
        json.dumps({"step": 2}),
        '{"step": 3, "checkp',  # torn by a kill
    ]
    metrics.write_text("\n".join(lines))
    assert recorded_checkpoints(metrics) == {1}
    assert recorded_checkpoints(tmp_path / "missing.jsonl") is None
    assert os.path.exists(metrics)


def test_a_first_checkpoint_never_recorded_is_no_checkpoint(tmp_path: Path) -> None:
    """Killed after step 1's folder but before its metrics line and before any ``latest``:
    the metrics say nothing was committed, so the run starts afresh rather than continue
    from a step whose line is missing."""
    store = CheckpointStore(tmp_path / "checkpoints")
    _write(store, 1)
    choice = store.choose(recorded=set())  # metrics.jsonl holds step 0 only
    assert choice.step is None and store.steps() == []
    assert "step-000001" in choice.notes[0]
    # With no metrics and no pointer at all (a folder of checkpoints on its own), it counts.
    _write(store, 1)
    assert store.choose(recorded=None).step == 1

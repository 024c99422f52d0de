"""Runs that lose nothing, tried the way an operator breaks them: real ``azr train`` processes
killed (SIGKILL, SIGTERM, SIGINT) at the moments a step is being committed, stopped during
start-up, two trainers on one folder, a damaged newest checkpoint, a changed model on resume, a
full disk. After every stop the metrics and the checkpoints agree, and the finished run has each
step's metrics line exactly once.

``AZR_KILL_TRIALS=N`` adds N kills at random moments (default 0; the fixed points run always).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from azr.cli import main
from azr.run.checkpoints import CheckpointStore

BASE = ["--set", "run.progress=false", "--set", "run.checkpoint_every=1"]


def _steps(output: Path) -> list[int]:
    path = output / "metrics.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line)["step"])
        except json.JSONDecodeError:
            continue  # torn by a SIGKILL; the next start drops it
    return out


def _consistent(output: Path) -> int | None:
    """What must hold after any stop: ``latest`` names an intact checkpoint and every step up
    to it has its metrics line, once and in order. Returns the step ``latest`` holds."""
    store = CheckpointStore(output / "checkpoints")
    steps = _steps(output)
    assert steps == sorted(set(steps)), steps
    latest = store.published()
    if latest is not None:
        store.verify(latest)
        assert set(range(latest + 1)) <= set(steps), (latest, steps)
    return latest


class Trainer:
    """``python -m azr.cli train`` in a subprocess, output to files (no pipe to fill)."""

    def __init__(self, output: Path, *extra: str, tag: str = "run") -> None:
        self.output = output
        self.out = output.parent / f"{output.name}.{tag}.out"
        self.err = output.parent / f"{output.name}.{tag}.err"
        command = [sys.executable, "-m", "azr.cli", "train", "--set", f"run.output_dir={output}"]
        with self.out.open("w") as out, self.err.open("w") as err:
            self.process = subprocess.Popen([*command, *BASE, *extra], stdout=out, stderr=err)

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_until(self, ready: Callable[[], bool], timeout: float = 180) -> bool:
        """Poll ``ready`` every 2 ms; False if the trainer exited first."""
        deadline = time.monotonic() + timeout
        while not ready():
            if self.process.poll() is not None:
                return False
            assert time.monotonic() < deadline, f"timed out; stderr: {self.stderr()}"
            time.sleep(0.002)
        return True

    def stop(self, signum: int, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signum)
        return self.wait(timeout)

    def wait(self, timeout: float = 240) -> int:
        try:
            return self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()

    def stderr(self) -> str:
        return self.err.read_text()

    def stdout(self) -> str:
        return self.out.read_text()


def _latest_is_not(store: CheckpointStore, step: int | None) -> Callable[[], bool]:
    def ready() -> bool:
        try:
            return store.published() not in (step, None)
        except Exception:
            return False

    return ready


def _folders(store: CheckpointStore) -> dict[int, int]:
    found = {}
    for step in store.steps():
        try:
            found[step] = store.path(step).stat().st_ino
        except FileNotFoundError:
            continue
    return found


def _new_folder_after(
    store: CheckpointStore, step: int | None, existing: dict[int, int]
) -> Callable[[], bool]:
    """A checkpoint folder newer than ``step`` that was not there (as that inode) before."""

    def ready() -> bool:
        now = _folders(store)
        return any(s > (step or 0) and existing.get(s) != ino for s, ino in now.items())

    return ready


def _no_traceback(text: str) -> None:
    assert "Traceback" not in text, text


def test_stops_at_each_commit_point_lose_and_repeat_nothing(tmp_path: Path) -> None:
    """Killed right as a checkpoint folder appears (before its metrics line) and right as
    ``latest`` moves, by SIGKILL, SIGTERM and SIGINT; then resumed to the end."""
    output = tmp_path / "run"
    store = CheckpointStore(output / "checkpoints")
    total = 4
    plan: list[tuple[str, int]] = [
        ("folder", signal.SIGKILL),
        ("latest", signal.SIGKILL),
        ("folder", signal.SIGTERM),
        ("latest", signal.SIGINT),
    ]
    trials = int(os.environ.get("AZR_KILL_TRIALS", "0"))
    rng = random.Random(trials)
    signals = [signal.SIGKILL, signal.SIGTERM, signal.SIGINT]
    plan += [
        (rng.choice(["folder", "latest", "random"]), rng.choice(signals)) for _ in range(trials)
    ]
    outcomes: list[str] = []
    for i, (moment, signum) in enumerate(plan):
        before = _consistent(output)
        if before == total:
            shutil.rmtree(output)  # a finished run: start the next trial afresh
            before = None
        folders = _folders(store)
        trainer = Trainer(output, "--set", f"run.steps={total}", "--resume", tag=str(i))
        if moment == "folder":
            hit = trainer.wait_until(_new_folder_after(store, before, folders))
        elif moment == "latest":
            hit = trainer.wait_until(_latest_is_not(store, before))
        else:
            hit = trainer.wait_until(lambda: store.root.is_dir())
            time.sleep(rng.uniform(0, 6))
        status = trainer.stop(signum)
        after = _consistent(output)
        err = trainer.stderr()
        _no_traceback(err)
        if signum != signal.SIGKILL and status != 0:
            assert status == 128 + signum, err
            # The stop message names the step ``latest`` holds.
            named = (
                f"checkpoint step {after} is the newest" if after is not None else "no checkpoint"
            )
            assert named in err, (after, err)
        outcomes.append(f"{moment}/{signal.Signals(signum).name}: {before}->{after} hit={hit}")
    before = _consistent(output)
    if before == total:
        shutil.rmtree(output)
    final = Trainer(output, "--set", f"run.steps={total}", "--resume", tag="final")
    assert final.wait() == 0, final.stderr()
    _no_traceback(final.stderr())
    assert _steps(output) == list(range(total + 1)), outcomes
    assert _consistent(output) == total
    assert not [p for p in store.root.iterdir() if p.name.startswith(".step-")]
    print("\n".join(outcomes))


def _catches(pid: int, signum: int) -> bool:
    """Whether process ``pid`` has a handler installed for ``signum`` (/proc's SigCgt mask)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    except FileNotFoundError:
        pass
    return False


@pytest.mark.parametrize(
    ("signum", "delay"),
    [(signal.SIGTERM, 0.0), (signal.SIGTERM, 2.0), (signal.SIGINT, 1.0)],
)
def test_a_stop_during_start_up_is_clean(tmp_path: Path, signum: int, delay: float) -> None:
    """From the moment the interpreter hands over to azr (its handler is installed; before
    that only Python itself runs), a stop signal never kills by its default action."""
    output = tmp_path / "run"
    trainer = Trainer(output, "--set", "run.steps=3")
    assert trainer.wait_until(lambda: _catches(trainer.pid, signum), timeout=60)
    time.sleep(delay)
    sent = time.monotonic()
    status = trainer.stop(signum, timeout=60)
    took = time.monotonic() - sent
    err = trainer.stderr()
    _no_traceback(err)
    if status == 0:
        pytest.skip(f"the run finished within {delay} s")
    assert status == 128 + signum, err
    assert f"stopped by signal {signal.Signals(signum).name}" in err, err
    assert took < 30, f"{took:.1f} s to stop"
    if output.exists():
        _consistent(output)


def test_two_trainers_on_one_folder(tmp_path: Path) -> None:
    output = tmp_path / "run"
    store = CheckpointStore(output / "checkpoints")
    first = Trainer(output, "--set", "run.steps=1000", tag="first")
    try:
        assert first.wait_until(lambda: store.published() is not None), first.stderr()
        for tag, extra in [("second", []), ("resume", ["--resume"])]:
            second = Trainer(output, "--set", "run.steps=1000", *extra, tag=tag)
            assert second.wait(timeout=120) == 75, second.stderr()
            err = second.stderr()
            assert f"is in use by another trainer (pid {first.pid})" in err, err
            assert err.count("\n") == 1
        assert first.process.poll() is None  # the refused ones touched nothing of it
    finally:
        first.stop(signal.SIGKILL)
    held = _consistent(output)
    assert held is not None
    # Killed, the first one holds nothing any more.
    third = Trainer(output, "--set", f"run.steps={held + 1}", "--resume", tag="third")
    assert third.wait() == 0, third.stderr()
    assert _steps(output) == list(range(held + 2))


def _run(output: Path, *extra: str) -> int:
    return main(["train", "--set", f"run.output_dir={output}", *BASE, *extra])


def test_a_damaged_checkpoint_and_a_changed_model_on_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "run"
    store = CheckpointStore(output / "checkpoints")
    assert _run(output, "--set", "run.steps=2") == 0
    capsys.readouterr()

    # A model change cannot apply to a resumed run: refused, naming the keys, nothing touched.
    assert _run(output, "--set", "run.steps=3", "--set", "model.tiny.num_layers=3", "--resume") == 2
    err = capsys.readouterr().err
    assert "model.tiny.num_layers (2 -> 3)" in err and err.count("\n") == 1, err
    assert store.published() == 2 and _steps(output) == [0, 1, 2]

    # Flipped bits in the newest weights: one line says so, the run goes on from step 1.
    weights = store.path(2) / "learner" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0x40
    weights.write_bytes(bytes(data))
    assert _run(output, "--set", "run.steps=3", "--set", "learner.lr=0.001", "--resume") == 0
    err = capsys.readouterr().err
    _no_traceback(err)
    (damage,) = [line for line in err.splitlines() if "step-000002" in line]
    assert "learner/model.safetensors: checksum mismatch" in damage, err
    assert "learner.lr (0.003 -> 0.001)" in err  # allowed, and said
    assert _steps(output) == [0, 1, 2, 3]
    assert (store.root / "set-aside" / "step-000002").is_dir()
    assert store.published() == 3


def _tmpfs_runner() -> list[str] | None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return None
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"],
        capture_output=True,
    )
    return ["unshare", "-m", "sh", "-c"] if probe.returncode == 0 else None


CHECK = """
import json, sys
from azr.run.checkpoints import CheckpointStore
store = CheckpointStore(sys.argv[1] + "/checkpoints")
latest = store.published()
store.verify(latest)
print(json.dumps({"latest": latest}))
"""


def test_a_full_disk_is_reported_and_latest_stays_intact(tmp_path: Path) -> None:
    runner = _tmpfs_runner()
    if runner is None:
        pytest.skip("needs root and a mount namespace (unshare -m) for a small tmpfs")
    disk = tmp_path / "disk"
    disk.mkdir()
    run = disk / "run"
    # Room for one checkpoint of the tiny model (~1.2 MB) but not two.
    script = (
        f"mount -t tmpfs -o size=1800k tmpfs {disk} && "
        f"{sys.executable} -m azr.cli train --set run.output_dir={run} "
        f"{' '.join(BASE)} --set run.steps=3; rc=$?; "
        f"{sys.executable} -c '{CHECK}' {run}; echo rc=$rc"
    )
    done = subprocess.run([*runner, script], capture_output=True, text=True, timeout=300)
    _no_traceback(done.stderr)
    assert "rc=1" in done.stdout, (done.stdout, done.stderr)
    assert "azr: disk full: no space left on the device writing checkpoint step-000002" in (
        done.stderr
    ), done.stderr
    assert '{"latest": 1}' in done.stdout, done.stdout

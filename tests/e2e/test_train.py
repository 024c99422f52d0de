"""``azr train`` end to end on CPU with the tiny model: steps, metrics, checkpoints, an exact
resume, configuration errors, and a clean stop on SIGTERM.

Everything is real: the tiny Qwen2-style model samples (seeded), the sandbox checks, the
learner updates. A random model writes nothing well-formed, so every reward is the format
penalty and every TRR++ advantage is 0; the tiny-cpu preset's entropy bonus still moves the
weights every step, which is what makes "resume reproduces step 3" a real test: step 3 samples
from, and updates, weights that steps 1 and 2 changed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from azr.actors.coordinator import STATE_DECODER
from azr.actors.learner import LEARNER_DIR
from azr.actors.messages import STATE_FILE
from azr.cli import main
from azr.rl import Learner

from ._records import deterministic, read_records

TYPES = ("deduction", "abduction", "induction")
GROUPS = [f"{role}/{t}/reward" for role in ("propose", "solve") for t in TYPES]


def _run(output: Path, *extra: str) -> int:
    return main(
        [
            "train",
            "--preset",
            "tiny-cpu",
            "--set",
            f"run.output_dir={output}",
            "--set",
            "run.progress=false",
            *extra,
        ]
    )


def test_three_steps_and_an_exact_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    full, split = tmp_path / "full", tmp_path / "split"

    assert _run(full, "--set", "run.steps=3") == 0
    out = capsys.readouterr().out
    assert f"metrics: {full / 'metrics.jsonl'}" in out
    assert f"checkpoint: {full / 'checkpoints' / 'step-000003'}" in out
    assert out.count("step ") >= 3

    records = read_records(full)
    assert [r["step"] for r in records] == [0, 1, 2, 3]
    for record in records[1:]:
        assert all(key in record for key in GROUPS), sorted(record)
        assert record["learner/samples"] > 0 and record["learner/grad_norm"] > 0
        assert record["weights/version"] == record["step"]
        assert record["gen/generated_tokens"] > 0
    checkpoints = full / "checkpoints"
    assert (checkpoints / "latest").read_text() == "step-000003"
    # keep_checkpoints = 2 in the preset: step 1's checkpoint is gone, 2 and 3 remain.
    assert sorted(p.name for p in checkpoints.glob("step-*")) == ["step-000002", "step-000003"]
    newest = checkpoints / "step-000003"
    state = STATE_DECODER.decode((newest / STATE_FILE).read_bytes())
    assert state.step == 3 and state.seeded
    assert Learner.from_checkpoint(newest / LEARNER_DIR).step_count == 3

    # The same run in two pieces: stopped after step 2, then resumed for step 3.
    assert _run(split, "--set", "run.steps=2") == 0
    assert _run(split, "--set", "run.steps=3", "--resume") == 0
    resumed = read_records(split)
    assert [r["step"] for r in resumed] == [0, 1, 2, 3]
    assert deterministic(resumed[3]) == deterministic(records[3])
    weights = [
        load_file(d / "checkpoints" / "step-000003" / LEARNER_DIR / "model.safetensors")
        for d in (full, split)
    ]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])

    # A finished run refuses to start again over its own checkpoints.
    assert _run(full, "--set", "run.steps=3") == 2
    assert "--resume" in capsys.readouterr().err


def test_configuration_errors_exit_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "never"
    assert _run(output, "--set", "selfplay.batch_sise=3") == 2
    err = capsys.readouterr().err
    assert "unknown key 'selfplay.batch_sise'" in err and "batch_size" in err
    assert _run(output, "--set", "run.steps=many") == 2
    assert "run.steps" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("[learner]\nlr = -1.0\n")
    assert _run(output, "--config", str(bad)) == 2
    assert "lr must be > 0" in capsys.readouterr().err
    assert not output.exists()


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found: set[int] = set()
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_sigterm_stops_cleanly(tmp_path: Path) -> None:
    """A real ``python -m azr.cli train`` process, stopped by SIGTERM mid-run: it exits within
    seconds with 143, leaves no process behind, and its newest checkpoint is complete."""
    output = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "azr.cli",
        "train",
        "--set",
        f"run.output_dir={output}",
        "--set",
        "run.steps=1000",
        "--set",
        "run.progress=false",
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1
    )
    try:
        deadline = time.monotonic() + 120
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("step 1/"):  # printed once step 1 is checkpointed
                break
            assert time.monotonic() < deadline, "no step within two minutes"
        else:
            raise AssertionError(f"exited early: {process.wait()} {process.stderr.read()}")  # type: ignore[union-attr]
        spawned = _descendants(process.pid)
        assert spawned, "the sandbox's processes should be running"
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        rest, err = process.communicate(timeout=30)
        stopped = time.monotonic() - sent
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 128 + signal.SIGTERM, err
    assert stopped < 15, f"took {stopped:.1f} s to stop"
    assert "signal SIGTERM" in err
    time.sleep(0.2)
    assert not [pid for pid in spawned if _alive(pid)], "processes outlived the run"

    checkpoints = output / "checkpoints"
    latest = checkpoints / (checkpoints / "latest").read_text()
    state = STATE_DECODER.decode((latest / STATE_FILE).read_bytes())
    assert state.step >= 1
    assert Learner.from_checkpoint(latest / LEARNER_DIR).step_count == state.step
    assert not [p for p in checkpoints.iterdir() if p.name.startswith(".")]  # no torn writes
    assert f"checkpoint: {latest}" in rest

"""The FSDP2 learner on two real gloo ranks against the one-process learner.

One torchrun job (`_learner_ranks.py`, about ten seconds) runs a sharded step, a sharded save,
resumes at world 2 from both checkpoint formats and exports; this process runs the same steps
without torchrun and compares.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest
import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from _learner_ranks import CONFIG, SEED, SPEC, batch  # noqa: E402

from azr.rl import Learner  # noqa: E402
from azr.rl.learner import StepMetrics  # noqa: E402

TOLERANCE = 1e-5


def _weights(learner: Learner) -> dict[str, torch.Tensor]:
    return {n: t.detach().clone() for n, t in learner.model.state_dict().items()}


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    shared = [n for n in a if n in b]
    assert len(shared) >= len(a) - 1, "the two sides name different weights"
    return max(float((a[n].float() - b[n].float()).abs().max()) for n in shared)


class World2(msgspec.Struct):
    out: Path
    initial: dict[str, torch.Tensor]
    after_a: dict[str, torch.Tensor]
    after_b: dict[str, torch.Tensor]
    metrics_a: StepMetrics
    metrics_b: StepMetrics


def run_ranks(script: Path, *args: str, nproc: int = 2, timeout: float = 120) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += [f"--nproc-per-node={nproc}", str(script), *args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]


@pytest.fixture(scope="module")
def world2(tmp_path_factory: pytest.TempPathFactory) -> World2:
    out = tmp_path_factory.mktemp("world2")
    one = Learner.from_pretrained(None, CONFIG, spec=SPEC, seed=SEED)
    initial = _weights(one)
    metrics_a = one.step(batch(0))
    after_a = _weights(one)
    one.save_checkpoint(out / "ckpt1")
    metrics_b = one.step(batch(1))
    run_ranks(HERE / "_learner_ranks.py", str(out), str(out / "ckpt1"))
    assert json.loads((out / "done.json").read_text()) == {"world": 2}
    return World2(out, initial, after_a, _weights(one), metrics_a, metrics_b)


def _load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = torch.load(path, weights_only=True)
    return loaded


def test_sharded_update_equals_one_process_update(world2: World2) -> None:
    sharded = _load(world2.out / "p1.pt")
    assert _max_diff(world2.initial, world2.after_a) > 50 * TOLERANCE  # the step moved them
    assert _max_diff(sharded, world2.after_a) < TOLERANCE
    for name, one in (("m1.json", world2.metrics_a), ("m2.json", world2.metrics_b)):
        two = msgspec.json.decode((world2.out / name).read_bytes(), type=StepMetrics)
        assert (two.samples, two.tokens, two.total_tokens) == (
            one.samples,
            one.tokens,
            one.total_tokens,
        )
        for field in ("loss", "pg_loss", "entropy", "clip_frac", "ratio_mean", "grad_norm"):
            assert getattr(two, field) == pytest.approx(getattr(one, field), rel=1e-4, abs=1e-7)
        assert two.ratio_max_dev == pytest.approx(one.ratio_max_dev, rel=1e-4)
    assert _max_diff(_load(world2.out / "p2.pt"), world2.after_b) < TOLERANCE


def test_sharded_checkpoint_loads_in_one_process(world2: World2) -> None:
    ckpt = world2.out / "ckpt2"
    assert (ckpt / "shards" / ".metadata").is_file()
    assert sorted(p.name for p in (ckpt / "shards").glob("*.distcp")) == [
        "__0_0.distcp",
        "__1_0.distcp",
    ]
    resumed = Learner.from_checkpoint(ckpt)
    assert resumed.step_count == 1
    assert _max_diff(_weights(resumed), _load(world2.out / "p1.pt")) == 0.0
    # The optimiser's moments came back too: the next step is the uninterrupted one.
    resumed.step(batch(1))
    assert _max_diff(_weights(resumed), _load(world2.out / "p2.pt")) < TOLERANCE


def test_sharded_resume_is_exact(world2: World2) -> None:
    assert _max_diff(_load(world2.out / "r2.pt"), _load(world2.out / "p2.pt")) == 0.0


def test_one_process_checkpoint_resumes_sharded(world2: World2) -> None:
    assert _max_diff(_load(world2.out / "q2.pt"), world2.after_b) < TOLERANCE


def test_sharded_export_is_a_bf16_model_directory(world2: World2) -> None:
    from transformers import AutoModelForCausalLM

    export = world2.out / "export"
    config = json.loads((export / "config.json").read_text())
    assert config["dtype"] == "bfloat16"
    model = AutoModelForCausalLM.from_pretrained(export, local_files_only=True)
    assert model.dtype == torch.bfloat16
    got = {n: t.float() for n, t in model.state_dict().items()}
    want = _load(world2.out / "q2.pt")
    for name, tensor in want.items():
        assert torch.equal(got[name], tensor.to(torch.bfloat16).float()), name


def test_azr_export_reads_a_sharded_checkpoint(world2: World2, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    from azr.cli import main

    assert main(["export", str(world2.out / "ckpt2"), str(tmp_path / "hf")]) == 0
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "hf", local_files_only=True)
    got = model.state_dict()
    for name, tensor in _load(world2.out / "p1.pt").items():
        assert torch.equal(got[name], tensor.to(torch.bfloat16)), name


def test_damage_to_any_file_of_a_sharded_checkpoint_falls_back(
    world2: World2, tmp_path: Path
) -> None:
    # The run's store verifies whatever files a step holds: here the real files of a sharded
    # save (distcp shards, their index, the learner's metadata), each damaged in turn.
    import shutil

    from azr.errors import CheckpointError
    from azr.rl.sharded_checkpoint import is_sharded
    from azr.run.checkpoints import CheckpointStore

    source = world2.out / "ckpt2"
    assert is_sharded(source)
    names = sorted(str(p.relative_to(source)) for p in source.rglob("*") if p.is_file())
    assert any(name.endswith(".distcp") for name in names)
    for i, name in enumerate(names):
        store = CheckpointStore(tmp_path / f"run{i}" / "checkpoints")
        for step in (1, 2):
            with store.write(step) as tmp:
                shutil.copytree(source, tmp / "learner")
                (tmp / "state.json").write_text(json.dumps({"step": step}))
            store.publish(step, keep=3)
        target = store.path(2) / "learner" / name
        data = bytearray(target.read_bytes())
        if data:
            data[len(data) // 2] ^= 0x01
            target.write_bytes(bytes(data))
        else:
            target.unlink()
        with pytest.raises(CheckpointError):
            store.verify(2)
        choice = store.choose()
        assert choice.step == 1, name
        assert f"learner/{name}" in choice.notes[0] and "\n" not in choice.notes[0]

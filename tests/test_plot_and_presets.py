"""``azr plot`` and the configuration keys of the learning run (``cpu-base`` preset)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from azr.cli import main
from azr.config import load_config
from azr.errors import ConfigError


def _write_run(path: Path, slope: float) -> None:
    path.mkdir()
    lines = []
    for step in range(0, 6):
        record: dict[str, float] = {"step": step}
        for t in ("deduction", "abduction", "induction"):
            if step:
                record[f"solve/{t}/reward"] = -1 + slope * step
                record[f"solve/{t}/accuracy"] = slope * step / 2
                record[f"propose/{t}/valid"] = slope * step
            if step % 5 == 0:
                record[f"eval/{t}/accuracy"] = slope * step
        lines.append(json.dumps(record))
    lines.append('{"step": 6, "torn')  # a killed run's last line is skipped
    (path / "metrics.jsonl").write_text("\n".join(lines))


def test_plot_overlays_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write_run(tmp_path / "a", 0.1)
    _write_run(tmp_path / "b", 0.05)
    out = tmp_path / "both.png"
    assert main(["plot", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    assert str(out) in capsys.readouterr().out
    assert main(["plot", str(tmp_path / "missing"), "--out", str(out)]) == 1
    assert "no metrics.jsonl" in capsys.readouterr().err


def test_cpu_base_preset_and_its_keys() -> None:
    config = load_config(preset="cpu-base")
    assert config.model.base == "cpu-base" and config.model.path is None
    assert config.run.eval_every > 0 and config.run.time_limit_s is not None
    assert config.run.curves and config.run.samples_per_step > 0
    estimator = load_config(overrides=["learner.advantage_estimator=reinforce++"])
    assert estimator.learner.advantage_estimator == "reinforce++"
    for bad, key in [
        ("run.eval_every=-1", "eval_every"),
        ("run.samples_per_step=-2", "samples_per_step"),
        ("run.time_limit_s=0", "time_limit_s"),
        ("learner.advantage_estimator=ppo", "advantage_estimator"),
    ]:
        with pytest.raises(ConfigError, match=key):
            load_config(preset="cpu-base", overrides=[bad])
    with pytest.raises(ConfigError, match="alternatives"):
        load_config(preset="cpu-base", overrides=["model.path=/models/x"])

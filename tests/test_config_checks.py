"""Configurations that type-check but cannot run are refused before anything starts, by key."""

from __future__ import annotations

from pathlib import Path

import pytest

from azr.cli import main
from azr.config import load_config
from azr.config_checks import check_config, machine_memory_bytes

BAD = [
    ("model.tiny.num_heads=0", "model.tiny.num_heads: must be >= 1"),
    ("model.tiny.hidden_size=-8", "model.tiny.hidden_size: must be >= 1"),
    ("model.tiny.num_heads=3", "model.tiny.num_heads: 3 heads do not divide hidden_size 64"),
    ("model.tiny.num_kv_heads=3", "model.tiny.num_kv_heads: 3 key/value heads do not divide"),
    ("model.tiny.hidden_size=68", "model.tiny.num_heads: the head size"),
    ("verifier.limits.memory_bytes=-1", "verifier.limits.memory_bytes: must be >= 0"),
    ("verifier.limits.memory_bytes=1000", "verifier.limits.memory_bytes: must be at least 64"),
    ("verifier.limits.memory_bytes=1000000000000000000", "more than this machine's memory"),
    ("verifier.limits.int_max_str_digits=10", "verifier.limits.int_max_str_digits"),
    ("verifier.limits.wall_timeout_s=inf", "verifier.limits.wall_timeout_s: must be a finite"),
    ("learner.lr=inf", "learner.lr: must be a finite number"),
    ("learner.lr=nan", "learner: lr must be > 0"),
    ("learner.lr=5.0", "learner.lr: must be <= 1"),
    ("selfplay.batch_size=1000000", "selfplay.batch_size: 1000000 proposals"),
    ("generation.sglang.port=0", "generation.sglang.port"),
    ("run.grace_period_s=inf", "run.grace_period_s: must be a finite"),
    ("model.path=/no/such/model", "model.path: /no/such/model is not a local model directory"),
]


@pytest.mark.parametrize(("override", "message"), BAD)
def test_bad_values_exit_2_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], override: str, message: str
) -> None:
    output = tmp_path / "never"
    argv = ["train", "--set", f"run.output_dir={output}", "--set", override]
    if override.startswith("model.path"):
        argv += ["--set", "generation.template=plain"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("azr: configuration error: ") and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not output.exists()


def test_an_output_folder_that_cannot_be_written(tmp_path: Path) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("")
    for where, why in [
        (a_file, "exists and is not a folder"),
        (a_file / "run", "is not a folder"),
    ]:
        with pytest.raises(Exception, match=f"run.output_dir: .*{why}"):
            check_config(load_config(overrides=[f"run.output_dir={where}"]))


def test_the_presets_pass() -> None:
    check_config(load_config())
    memory = machine_memory_bytes()
    assert memory is None or memory > 64 << 20

"""The command line: parsing, printing the resolved configuration, exit statuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from azr.cli import main


def test_print_config_shows_the_resolved_configuration(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    file = tmp_path / "c.toml"
    file.write_text("[selfplay]\nbatch_size = 6\n")
    code = main(["train", "--config", str(file), "--set", "run.steps=7", "--print-config"])
    assert code == 0
    config = json.loads(capsys.readouterr().out)
    assert config["run"]["steps"] == 7
    assert config["selfplay"]["batch_size"] == 6
    assert config["model"]["tiny"]["hidden_size"] == 64  # the default preset


def test_configuration_errors_exit_2_with_the_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--set", "learner.lrr=1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("azr: configuration error: unknown key 'learner.lrr'")
    assert main(["train", "--preset", "paper"]) == 2
    assert "model.path" in capsys.readouterr().err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--bogus"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2
    capsys.readouterr()


def test_help_lists_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for option in ("--config", "--preset", "--set", "--resume", "--print-config"):
        assert option in out


def test_serve_subcommand_hands_over_to_the_service_parser(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from azr.cli import main

    with pytest.raises(SystemExit) as info:
        main(["serve", "--help"])
    assert info.value.code == 0
    assert "usage: azr serve" in capsys.readouterr().out

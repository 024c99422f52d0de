"""Seeding: induction drawn from the finished program pool, seed files written and reused."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from azr.buffer import Buffers
from azr.cli import main
from azr.errors import ConfigError
from azr.models import Tokenizer
from azr.seeds import SeedFile, read_seed_file, seed_async, write_seed_file
from azr.tasks import SEED_TRIPLET, Triplet
from azr.train import train_async

from ._support import ScriptedBackend, tiny_config, trio_test

IDENTITY = SEED_TRIPLET.program


@trio_test(timeout=120)
async def test_seeding_writes_a_seed_file_and_induction_uses_the_finished_pool(
    tmp_path: Path, tokenizer: Tokenizer
) -> None:
    # One round per phase: were induction seeded alongside deduction and abduction, its only
    # round would draw from buffers holding nothing but the identity program.
    config = tiny_config(
        tmp_path / "run",
        "selfplay.batch_size=8",
        "selfplay.seed_buffer_size=4",
        "selfplay.seed_max_rounds=1",
    )
    out = tmp_path / "seeds.json"
    seeds = await seed_async(config, out, backend=ScriptedBackend(tokenizer))
    assert read_seed_file(out) == seeds
    programs = {t.program for t in (*seeds.deduction, *seeds.abduction)}
    assert {"def f(x):\n    return x * 2", "def f(s):\n    return s[::-1]"} <= programs
    induction_programs = {t.program for t in seeds.induction}
    assert induction_programs - {IDENTITY}, "induction saw only the identity program"
    assert induction_programs <= programs | {IDENTITY}
    for task in seeds.induction:  # every requested input made it, at least half hidden
        assert len(task.shown) + len(task.hidden) == 4 and len(task.hidden) >= len(task.shown)
    # Deduplicated, and nothing but the seeding stage ran (no step, no checkpoint).
    assert len({(t.program, t.input) for t in seeds.deduction}) == len(seeds.deduction)
    assert not (tmp_path / "run").exists()


@trio_test(timeout=120)
async def test_a_run_starts_from_a_seed_file_and_revalidates_it(
    tmp_path: Path, tokenizer: Tokenizer
) -> None:
    good = [Triplet(f"def f(x):\n    return x + {n}  # comment", "1", str(n + 1)) for n in range(4)]
    forged = Triplet("def f(x):\n    return x * 3", "2", "7")  # the file lies about the output
    clocked = Triplet("import datetime\ndef f(x):\n    return datetime.date.today().day", "0", "1")
    seeds = SeedFile(deduction=(*good, forged, clocked), abduction=tuple(good))
    path = tmp_path / "seeds.json"
    write_seed_file(path, seeds)
    config = tiny_config(
        tmp_path / "run",
        "run.steps=1",
        "selfplay.seed_buffer_size=4",
        "selfplay.seed_max_rounds=1",
        f"selfplay.seed_file={path}",
    )
    loaded: list[Buffers] = []
    result = await train_async(config, backend=ScriptedBackend(tokenizer), on_buffers=loaded.append)
    assert result.completed
    seed_report = json.loads(Path(result.metrics).read_text().splitlines()[0])
    # Deduction and abduction came full from the file: only induction needed a seeding round.
    assert seed_report["seed/rounds"] == 1
    assert "seed/deduction/count" not in seed_report
    deduction = {(t.program, t.input): t.output for t in loaded[0].deduction}
    assert deduction[("def f(x):\n    return x + 3", "1")] == "4"  # canonical, comment gone
    assert deduction[("def f(x):\n    return x * 3", "2")] == "6"  # recomputed, not the file's
    assert not any("datetime" in program for program, _ in deduction)


def test_a_broken_seed_file_is_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "seeds.json"
    path.write_text('{"deduction": [{"program": 1}]}')
    with pytest.raises(ConfigError, match=r"seeds\.json"):
        read_seed_file(path)
    path.write_text(msgspec.json.encode({"format": 99}).decode())
    with pytest.raises(ConfigError, match="format 99"):
        read_seed_file(path)
    with pytest.raises(ConfigError, match="cannot read"):
        read_seed_file(tmp_path / "missing.json")


def test_azr_seed_needs_an_output_file(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["seed"])
    assert exit_info.value.code == 2 and "--out" in capsys.readouterr().err


def test_azr_seed_writes_a_file_a_run_can_start_from(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The real tiny model on the CPU: it proposes nothing valid yet, so the file holds the
    # seeds of every buffer, deduplicated, and loads back.
    out = tmp_path / "seeds.json"
    status = main(["seed", "--out", str(out), "--set", "generation.max_new_tokens=8"])
    assert status == 0, capsys.readouterr().err
    assert str(out) in capsys.readouterr().out
    seeds = read_seed_file(out)
    assert SEED_TRIPLET in seeds.deduction and SEED_TRIPLET in seeds.abduction
    assert len(seeds.induction) >= 1
    assert main(["seed", "--out", str(out), "--set", "selfplay.nope=1"]) == 2

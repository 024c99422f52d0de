"""Configuration: presets, TOML layering, ``--set`` overrides, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from azr.config import PRESETS, Config, config_to_json, load_config, parse_override
from azr.errors import ConfigError
from azr.executor import Limits


def test_tiny_cpu_is_the_default_preset() -> None:
    config = load_config()
    assert config == load_config(preset="tiny-cpu")
    assert config.model.path is None and config.model.tiny.hidden_size == 64
    assert config.generation.backend == "torch" and config.generation.max_new_tokens <= 64
    assert (config.selfplay.batch_size, config.solver_rollouts) == (4, 2)
    assert config.learner.device == "cpu"


def test_the_paper_preset_needs_a_model_and_has_the_papers_schedule() -> None:
    with pytest.raises(ConfigError, match=r"model\.path"):
        load_config(preset="paper")
    config = load_config(preset="paper", overrides=["model.path=/models/qwen2.5-7b"])
    assert config.generation.backend == "sglang"
    sp = config.selfplay
    assert (sp.batch_size, sp.references, sp.induction_inputs) == (64, 6, 10)
    assert config.solver_rollouts == 8
    assert config.learner.lr == 1e-6
    assert config.run.mode == "sync"
    assert set(PRESETS) == {"tiny-cpu", "cpu-base", "paper"}


def test_the_paper_preset_matches_its_readme_table() -> None:
    # The table in the README ("The paper preset") lists these; a change to either must change
    # both.
    c = load_config(preset="paper", overrides=["model.path=/m"])
    learner, sp, gen = c.learner, c.selfplay, c.generation
    assert (learner.lr, learner.weight_decay, learner.max_grad_norm) == (1e-6, 0.0, 1.0)
    assert (learner.clip_low, learner.clip_high) == (0.2, 0.28)
    assert (learner.entropy_coef, learner.kl_coef, learner.warmup_steps) == (0.001, 0.0, 0)
    assert (sp.batch_size, sp.references, sp.induction_inputs) == (64, 6, 10)
    assert (sp.seed_buffer_size, sp.buffer_capacity) == (256, 16_384)
    assert (gen.max_new_tokens, gen.temperature, gen.top_p) == (8096, 1.0, 1.0)
    assert gen.max_prompt_tokens == 6144
    assert (c.rewards.profile, c.rewards.solver_rollouts, c.run.steps) == ("paper", 8, 500)
    assert c.verifier.validation.induction_min_inputs is None  # every requested input


def test_a_file_layers_over_the_preset_and_set_over_the_file(tmp_path: Path) -> None:
    file = tmp_path / "run.toml"
    file.write_text(
        'preset = "tiny-cpu"\n'
        "[run]\nsteps = 7\nseed = 3\n"
        "[verifier.limits]\nwall_timeout_s = 1.5\n"
        "[learner]\nbetas = [0.9, 0.95]\n"
    )
    config = load_config(file, overrides=["run.steps=9"])
    assert (config.run.steps, config.run.seed) == (9, 3)
    assert config.verifier.limits == Limits(wall_timeout_s=1.5)  # the rest keeps its defaults
    assert config.learner.betas == (0.9, 0.95)
    assert config.selfplay.batch_size == 4  # from the preset


@pytest.mark.parametrize(
    ("text", "path", "value"),
    [
        ("run.steps=12", ("run", "steps"), 12),
        ("learner.lr=3e-4", ("learner", "lr"), 3e-4),
        ("run.progress=false", ("run", "progress"), False),
        ("model.path=/data/models/qwen", ("model", "path"), "/data/models/qwen"),
        ("model.path=null", ("model", "path"), None),
        ("run.output_dir=123", ("run", "output_dir"), "123"),  # a string field keeps text
        ("run.output_dir='quoted'", ("run", "output_dir"), "quoted"),
        ("generation.backend=sglang", ("generation", "backend"), "sglang"),
        ("learner.betas=[0.8, 0.9]", ("learner", "betas"), (0.8, 0.9)),
        (
            "generation.sglang.extra_args=['--tp-size', '2']",
            ("generation", "sglang", "extra_args"),
            ("--tp-size", "2"),
        ),
        ("verifier.workers=null", ("verifier", "workers"), None),
        ("verifier.limits={cpu_time_s = 2.0}", ("verifier", "limits"), {"cpu_time_s": 2.0}),
    ],
)
def test_overrides_take_the_fields_type(text: str, path: tuple[str, ...], value: object) -> None:
    assert parse_override(text) == (path, value)


def test_a_partial_table_override_merges() -> None:
    config = load_config(overrides=["verifier.limits={cpu_time_s = 2.0}"])
    assert config.verifier.limits.cpu_time_s == 2.0
    assert config.verifier.limits.wall_timeout_s == Limits().wall_timeout_s


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["run.stepz=3"], r"unknown key 'run.stepz' \(keys of run: .*steps"),
        (["nope.x=1"], r"unknown key 'nope.x' \(keys of the top level: .*learner"),
        (["run.steps.x=1"], r"'run.steps' has no sub-keys"),
        (["run.steps=three"], r"run.steps: Expected `int`, got `str`"),
        (["run.mode=sometimes"], r"run.mode: Invalid enum value 'sometimes'"),
        (["selfplay.batch_size=0"], r"selfplay: batch_size must be >= 1"),
        (["learner.lr=-1"], r"learner: lr must be > 0"),
        (["rewards.solver_rollouts=0"], r"solver_rollouts must be at least 1"),
        (["run.steps"], r"expects key=value"),
        (["verifier.limits={wall_timeout_s = 'x'}"], r"verifier.limits.wall_timeout_s"),
        (["generation.template=markers", "model.path=/m"], r"markers"),
        (["generation.sglang.weight_sync=nfs"], r"weight_sync: Invalid enum value 'nfs'"),
        (["generation.sglang.weight_group.backend=mpi"], r"backend: Invalid enum value 'mpi'"),
        (["generation.sglang.weight_group.master_port=70000"], r"master_port must be in"),
        (["generation.sglang.weight_group.world_size=1"], r"world_size must be >= 2"),
        (["generation.sglang.weight_group.group_name=' '"], r"group_name must not be empty"),
        (["generation.sglang.weight_group.bucket_mb=0"], r"bucket_mb must be >= 1"),
        (["generation.sglang.weight_group.rank_offsets={a = 1}"], r"rank_offsets needs world_size"),
        (
            [
                "generation.sglang.weight_group.world_size=3",
                "generation.sglang.weight_group.rank_offsets={a = 1, b = 1}",
            ],
            r"different first rank",
        ),
        (
            [
                "generation.sglang.weight_group.world_size=3",
                "generation.sglang.weight_group.rank_offsets={a = 0}",
            ],
            r"rank_offsets must be in 1..world_size-1",
        ),
    ],
)
def test_bad_overrides_are_config_errors(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=overrides)


def test_bad_files_are_config_errors_naming_the_file(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text("[run]\nsteps = 'x'\n")
    with pytest.raises(ConfigError, match=r"c\.toml: run.steps: Expected `int`"):
        load_config(file)
    file.write_text("[runn]\nsteps = 1\n")
    with pytest.raises(ConfigError, match="unknown field `runn`"):
        load_config(file)
    file.write_text("[run\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(file)
    file.write_text("preset = 3\n")
    with pytest.raises(ConfigError, match="preset must be a string"):
        load_config(file)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="unknown preset 'huge'"):
        load_config(preset="huge")


def test_a_file_error_fixed_by_an_override_is_no_error(tmp_path: Path) -> None:
    file = tmp_path / "paper.toml"
    file.write_text('preset = "paper"\n')
    config = load_config(file, overrides=["model.path=/m"])
    assert config.model.path == "/m"


def test_the_resolved_config_round_trips_through_json() -> None:
    config = load_config(preset="paper", overrides=["model.path=/m", "run.steps=5"])
    assert msgspec.json.decode(config_to_json(config), type=Config) == config
    distributed = load_config(
        preset="paper",
        overrides=[
            "model.path=/m",
            "generation.sglang.weight_sync=distributed",
            "generation.sglang.weight_group.world_size=5",
            "generation.sglang.weight_group.rank_offsets="
            "{'http://g1:30000' = 1, 'http://g2:30000' = 3}",
        ],
    )
    assert distributed.generation.sglang.weight_group.rank_offsets == {
        "http://g1:30000": 1,
        "http://g2:30000": 3,
    }
    assert msgspec.json.decode(config_to_json(distributed), type=Config) == distributed

"""Which settings a resumed run may change, and which a checkpoint fixes."""

from __future__ import annotations

from azr.config import config_to_json, load_config
from azr.run.resume import resume_changes

SAVED = config_to_json(load_config(overrides=["run.output_dir=/runs/a"]))


def _changes(*overrides: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    changes = resume_changes(SAVED, load_config(overrides=list(overrides)))
    return changes.refused, changes.allowed


def test_the_same_settings_and_a_moved_folder_are_no_change() -> None:
    assert _changes("run.output_dir=/elsewhere") == ((), ())


def test_model_shape_tokenizer_seed_and_buffers_are_fixed() -> None:
    refused, allowed = _changes(
        "model.tiny.hidden_size=128",
        "model.tiny.num_layers=3",
        "model.path=/models/other",
        "run.seed=7",
        "selfplay.buffer_capacity=2048",
        "learner.kl_coef=0.01",  # a reference model that the checkpoint does not have
    )
    keys = [entry.split(" ")[0] for entry in refused]
    assert keys == [
        "learner.kl_coef",
        "model.path",
        "model.tiny.hidden_size",
        "model.tiny.num_layers",
        "run.seed",
        "selfplay.buffer_capacity",
    ]
    assert "model.tiny.hidden_size (64 -> 128)" in refused
    assert allowed == ()


def test_schedule_batch_sampling_and_optimiser_changes_are_allowed_and_listed() -> None:
    refused, allowed = _changes(
        "run.steps=10",
        "run.mode=async",
        "selfplay.batch_size=8",
        "learner.lr=0.001",
        "generation.temperature=0.7",
    )
    assert refused == ()
    assert [entry.split(" ")[0] for entry in allowed] == [
        "generation.temperature",
        "learner.lr",
        "run.mode",
        "run.steps",
        "selfplay.batch_size",
    ]


def test_a_checkpoint_from_another_version_is_compared_key_by_key() -> None:
    old = SAVED.replace(b'"selfplay": {', b'"selfplay": {\n    "retired_key": 1,')
    changes = resume_changes(old, load_config())
    assert changes.refused == ()
    assert changes.allowed == ("selfplay.retired_key (1 -> unset)",)

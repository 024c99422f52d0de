"""The base model's recipe: the committed weights are the recipe's, and the recipe reproduces
them (its first training steps give the recorded losses); the pipeline builds and caches."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from azr.models import Tokenizer, load_model
from azr.pretrain.recipe import (
    LOG_FILE,
    RECIPES,
    build,
    corpus_digest,
    describe,
    load_corpus,
    recipe_hash,
    resolve_base,
    weights_dir,
)

pytest.importorskip("azr._executor", reason="the compiled executor is not built")


def test_committed_base_matches_its_recipe() -> None:
    base = weights_dir("cpu-base")
    meta = describe(base)
    assert meta["hash"] == recipe_hash(RECIPES["cpu-base"])
    assert resolve_base("cpu-base") == base  # used as committed, never rebuilt
    size = sum(f.stat().st_size for f in base.iterdir())
    assert size <= 25 * 2**20


def test_recipe_first_steps_reproduce_the_recorded_loss() -> None:
    from azr.models.tiny import build_tiny_model
    from azr.pretrain.tokenizer import train_tokenizer
    from azr.pretrain.training import pack, train_model

    recipe = RECIPES["cpu-base"]
    base = weights_dir("cpu-base")
    recorded = json.loads((base / LOG_FILE).read_text())["losses"]
    docs = load_corpus(recipe)
    # A changed corpus (prompt wording, generator, validation) needs new weights, not a looser
    # tolerance: say so before comparing anything else.
    assert corpus_digest(docs) == describe(base)["corpus_digest"], (
        "the cpu-base corpus changed since the committed weights were built; rebuild them with "
        "`azr pretrain --recipe cpu-base --out python/azr/pretrain/weights/cpu-base`"
    )
    tokenizer = train_tokenizer((d.context + d.target for d in docs), recipe.vocab_size)
    committed = Tokenizer.from_pretrained(base)
    assert tokenizer.hf.get_vocab() == committed.hf.get_vocab()
    rows, masks = pack(docs, tokenizer, recipe.train.seq_len)
    model = build_tiny_model(
        len(tokenizer),
        recipe.model,
        recipe.init_seed,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    log = train_model(model, rows, masks, recipe.train, tokenizer.pad_token_id, max_steps=3)
    assert log.losses == pytest.approx(recorded[:3], rel=2e-3)


def test_a_recipe_builds_into_the_cache_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZR_CACHE", str(tmp_path))
    lines: list[str] = []
    path = resolve_base("smoke", log=lines.append)
    assert path.parent == tmp_path / "pretrain" and recipe_hash(RECIPES["smoke"]) in path.name
    assert any("building" in line for line in lines)
    log = json.loads((path / LOG_FILE).read_text())
    assert log["steps"] == len(log["losses"]) > 0
    assert log["losses"][-1] < log["losses"][0]  # it learned something
    model, tokenizer = load_model(path)
    ids = tokenizer.encode("<|user|>hello<|end|><|assistant|><think>")
    assert tokenizer.decode(ids) == "<|user|>hello<|end|><|assistant|><think>"
    assert model.config.vocab_size == len(tokenizer)
    lines.clear()
    assert resolve_base("smoke", log=lines.append) == path and not lines  # cached: no rebuild
    with pytest.raises(KeyError, match="unknown base recipe"):
        resolve_base("no-such-recipe")


def test_build_replaces_the_output_directory(tmp_path: Path) -> None:
    out = tmp_path / "base"
    out.mkdir()
    (out / "stale").write_text("x")
    build(RECIPES["smoke"], out, log=lambda _: None, max_steps=2)
    assert not (out / "stale").exists()
    assert describe(out)["hash"] == recipe_hash(RECIPES["smoke"])

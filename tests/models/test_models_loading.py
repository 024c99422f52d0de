"""The tiny model and the Hugging Face loading/saving path."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from azr.models import (
    TinyModelSpec,
    load_model,
    load_state_dict_into,
    load_weights_into,
    save_model,
)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_tiny_model_is_seeded_and_leaves_global_rng_alone(tiny_spec: TinyModelSpec) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a, tok = load_model(None, spec=tiny_spec, seed=1)
    assert torch.equal(torch.rand(3), expected)
    b, _ = load_model(None, spec=tiny_spec, seed=1)
    c, _ = load_model(None, spec=tiny_spec, seed=2)
    assert _same_weights(a, b)
    assert not _same_weights(a, c)
    assert a.config.vocab_size == len(tok)
    assert a.config.eos_token_id == tok.eos_token_id


def test_default_tiny_model_has_a_few_million_parameters() -> None:
    model, _ = load_model(None)
    n = sum(p.numel() for p in model.parameters())
    assert 1_000_000 < n < 10_000_000
    assert type(model).__name__ == "Qwen2ForCausalLM"


def test_save_then_load_from_disk_gives_the_same_model(
    tmp_path: Path, tiny_spec: TinyModelSpec
) -> None:
    model, tok = load_model(None, spec=tiny_spec, seed=3)
    save_model(model, tok, tmp_path)
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {
        p.name for p in tmp_path.iterdir()
    }
    loaded, loaded_tok = load_model(tmp_path)
    assert type(loaded) is type(model)
    assert _same_weights(model, loaded)
    ids = torch.tensor([loaded_tok.encode("<|user|>hello<|assistant|>")])
    model.eval()
    loaded.eval()
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, loaded(input_ids=ids).logits)
    # What an inference server would load: AutoTokenizer must agree on ids and vocabulary size.
    auto = AutoTokenizer.from_pretrained(str(tmp_path), local_files_only=True)
    assert len(auto) == loaded.config.vocab_size
    text = "x = f(3) <think>ok</think>"
    assert auto.encode(text, add_special_tokens=False) == loaded_tok.encode(text)


def test_load_weights_into_copies_in_place(tmp_path: Path, tiny_spec: TinyModelSpec) -> None:
    source, tok = load_model(None, spec=tiny_spec, seed=4)
    save_model(source, tok, tmp_path)
    target, _ = load_model(None, spec=tiny_spec, seed=5)
    params_before = [id(p) for p in target.parameters()]
    load_weights_into(target, tmp_path)
    assert _same_weights(source, target)
    assert [id(p) for p in target.parameters()] == params_before
    assert target.lm_head.weight is target.model.embed_tokens.weight  # still tied


def test_bad_state_dict_changes_nothing(tiny_spec: TinyModelSpec) -> None:
    model, _ = load_model(None, spec=tiny_spec, seed=6)
    snapshot = {k: v.clone() for k, v in model.state_dict().items()}
    good = {k: torch.zeros_like(v) for k, v in snapshot.items()}

    wrong_shape = dict(good)
    wrong_shape["model.norm.weight"] = torch.zeros(3)
    missing = {k: v for k, v in good.items() if k != "model.norm.weight"}
    extra = {**good, "surprise": torch.zeros(1)}
    for bad in (wrong_shape, missing, extra):
        with pytest.raises(ValueError):
            load_state_dict_into(model, bad)
        assert all(torch.equal(model.state_dict()[k], v) for k, v in snapshot.items())

    # A tied weight may be omitted when its partner is present.
    del good["lm_head.weight"]
    load_state_dict_into(model, good)
    assert float(model.lm_head.weight.detach().abs().sum()) == 0.0


def test_spec_with_a_path_is_rejected(tmp_path: Path, tiny_spec: TinyModelSpec) -> None:
    with pytest.raises(ValueError):
        load_model(tmp_path, spec=tiny_spec)

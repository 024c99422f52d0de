"""The byte-level tokenizer: exact round trips, atomic special tokens, save/load."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from azr.models import BYTE_SPECIAL_TOKENS, Tokenizer

TOK = Tokenizer.byte_level()


@settings(deadline=None)  # timing is not what these properties are about
@given(st.text(alphabet=st.characters(codec="utf-8")))
def test_round_trip_arbitrary_text(text: str) -> None:
    assert TOK.decode(TOK.encode(text)) == text


@settings(deadline=None)  # timing is not what these properties are about
@given(st.text(alphabet=st.characters(codec="utf-8", exclude_characters="<")))
def test_plain_text_ids_are_its_utf8_bytes(text: str) -> None:
    # Without '<' no special token can match, so the ids are exactly the bytes.
    assert TOK.encode(text) == list(text.encode("utf-8"))


def test_unencodable_text_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="surrogate"):
        TOK.encode("ok \ud800")


@settings(deadline=None)  # timing is not what these properties are about
@given(
    st.lists(
        st.one_of(
            st.text(alphabet=st.characters(codec="utf-8"), max_size=8),
            st.sampled_from(BYTE_SPECIAL_TOKENS),
        ),
        max_size=8,
    )
)
def test_special_tokens_survive_inside_text(parts: list[str]) -> None:
    text = "".join(parts)
    ids = TOK.encode(text)
    assert TOK.decode(ids) == text
    for part in parts:
        if part in BYTE_SPECIAL_TOKENS:
            assert TOK.token_to_id(part) in ids


def test_special_tokens_are_single_ids_after_the_bytes() -> None:
    assert len(TOK) == 256 + len(BYTE_SPECIAL_TOKENS)
    for i, token in enumerate(BYTE_SPECIAL_TOKENS):
        assert TOK.encode(token) == [256 + i]
        assert TOK.decode([256 + i]) == token
    assert TOK.pad_token_id == TOK.token_to_id("<|pad|>")
    assert TOK.bos_token_id == TOK.token_to_id("<|bos|>")
    assert TOK.eos_token_id == TOK.token_to_id("<|endoftext|>")
    assert TOK.decode([TOK.token_to_id("<think>") or 0, 104, 105], skip_special_tokens=True) == "hi"


def test_invalid_utf8_decodes_with_replacement() -> None:
    assert TOK.decode([0xFF, 104]) == "\ufffdh"


@pytest.mark.parametrize("text", ["", "plain", "e\u0301 x", "<think>a</think><answer>1</answer>"])
def test_save_and_load_keeps_the_exact_tokenizer(tmp_path: Path, text: str) -> None:
    TOK.save_pretrained(tmp_path)
    loaded = Tokenizer.from_pretrained(tmp_path)
    assert len(loaded) == len(TOK)
    assert (loaded.pad_token_id, loaded.bos_token_id, loaded.eos_token_id) == (
        TOK.pad_token_id,
        TOK.bos_token_id,
        TOK.eos_token_id,
    )
    assert loaded.encode(text) == TOK.encode(text)
    assert loaded.decode(loaded.encode(text)) == text

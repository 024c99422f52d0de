"""Tokenizers: a byte-level tokenizer defined in code, and a small interface over HF tokenizers.

The byte-level tokenizer maps byte ``b`` to id ``b`` (0-255) and appends a handful of special
tokens. It is expressed as a ``tokenizers`` byte-level BPE with no merges, so it saves to a
standard ``tokenizer.json`` that ``AutoTokenizer`` (and therefore an inference server) loads back
without any azr code.

The learner and the generation backends only use :class:`Tokenizer`, which wraps either that
tokenizer or one loaded from a pretrained model directory.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["BYTE_SPECIAL_TOKENS", "Tokenizer", "build_byte_tokenizer"]

# Ids 256.. in this order. The role markers and think/answer tags are what the self-play prompts
# use; making them single tokens keeps them atomic under sampling. The end-of-sequence token is
# spelled as in Qwen2 vocabularies because the Qwen2 tokenizer class (which ``AutoTokenizer``
# picks for a qwen2 config, e.g. inside an inference server) adds that token if it is missing.
BYTE_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|pad|>",
    "<|bos|>",
    "<|endoftext|>",
    "<think>",
    "</think>",
    "<answer>",
    "</answer>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "<|end|>",
)


@functools.cache
def _bytes_to_unicode() -> dict[int, str]:
    # Byte-level BPE represents every byte by a printable unicode character: printable latin-1
    # bytes stand for themselves, the rest are shifted above 255. This is the fixed convention the
    # ``tokenizers`` ByteLevel pre-tokenizer and decoder implement, so the vocabulary must use it.
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    mapping: dict[int, str] = {b: chr(b) for b in printable}
    shift = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + shift)
            shift += 1
    return mapping


def build_byte_tokenizer(model_max_length: int = 4096) -> Any:
    """A ``PreTrainedTokenizerFast`` over raw UTF-8 bytes plus :data:`BYTE_SPECIAL_TOKENS`."""
    from tokenizers import AddedToken, decoders, models, pre_tokenizers
    from tokenizers import Tokenizer as RawTokenizer
    from transformers import PreTrainedTokenizerFast

    to_unicode = _bytes_to_unicode()
    raw = RawTokenizer(models.BPE(vocab={to_unicode[b]: b for b in range(256)}, merges=[]))
    # No regex split and no prefix space: the text is exactly its bytes.
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    raw.decoder = decoders.ByteLevel()
    raw.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in BYTE_SPECIAL_TOKENS]
    )
    fast: Any = PreTrainedTokenizerFast
    return fast(
        tokenizer_object=raw,
        pad_token="<|pad|>",
        bos_token="<|bos|>",
        eos_token="<|endoftext|>",
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )


class Tokenizer:
    """The few tokenizer operations azr needs, over any Hugging Face tokenizer.

    ``encode`` adds no special tokens of its own: prompt templates spell out every marker they need,
    so the ids a backend generates from and the ids the learner trains on are the same.
    """

    def __init__(self, hf_tokenizer: Any) -> None:
        self.hf = hf_tokenizer
        eos = hf_tokenizer.eos_token_id
        if eos is None:
            raise ValueError("the tokenizer has no end-of-sequence token")
        self.eos_token_id: int = int(eos)
        pad = hf_tokenizer.pad_token_id
        # Many causal LMs ship without a pad token; padding is always masked, so eos serves.
        self.pad_token_id: int = int(pad) if pad is not None else self.eos_token_id
        bos = hf_tokenizer.bos_token_id
        self.bos_token_id: int | None = int(bos) if bos is not None else None
        self.special_token_ids: frozenset[int] = frozenset(
            int(i) for i in hf_tokenizer.all_special_ids
        )

    @classmethod
    def byte_level(cls) -> Tokenizer:
        return cls(build_byte_tokenizer())

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str]) -> Tokenizer:
        """Load the tokenizer saved in a model directory.

        A directory whose ``tokenizer_config.json`` names the generic ``TokenizersBackend`` class
        (as the byte-level tokenizer saves itself) is loaded from its ``tokenizer.json`` exactly.
        ``AutoTokenizer`` would substitute the Qwen2 tokenizer class for a qwen2 config, which
        adds NFC normalisation and so breaks exact byte round trips.
        """
        from transformers import AutoTokenizer, PreTrainedTokenizerFast

        path = os.fspath(path)
        config_file = Path(path, "tokenizer_config.json")
        declared = None
        if config_file.is_file() and Path(path, "tokenizer.json").is_file():
            declared = json.loads(config_file.read_text(encoding="utf-8")).get("tokenizer_class")
        if declared == "TokenizersBackend":
            return cls(PreTrainedTokenizerFast.from_pretrained(path, local_files_only=True))
        return cls(AutoTokenizer.from_pretrained(path, local_files_only=True))

    def __len__(self) -> int:
        return len(self.hf)

    def encode(self, text: str) -> list[int]:
        try:
            return list(self.hf.encode(text, add_special_tokens=False))
        except TypeError as e:
            # Lone surrogates have no UTF-8 form; say so instead of the binding's generic error.
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as u:
                raise ValueError(f"text is not valid Unicode (lone surrogate at {u.start})") from e
            raise

    @functools.cached_property
    def adds_bos(self) -> bool:
        """Whether the tokenizer, left to itself, starts every text with its BOS token (as
        Llama's do): then a prompt must start with it too, as in pre-training."""
        if self.bos_token_id is None:
            return False
        ids = list(self.hf.encode("a", add_special_tokens=True))
        return bool(ids) and ids[0] == self.bos_token_id

    def encode_prompt(self, text: str) -> list[int]:
        """The token ids of a prompt: :meth:`encode`, with the BOS token in front where the
        tokenizer adds one and the text does not already spell it (a chat template may). These
        ids are what the generator conditions on and what the learner trains on."""
        ids = self.encode(text)
        if self.adds_bos and (not ids or ids[0] != self.bos_token_id):
            assert self.bos_token_id is not None
            ids.insert(0, self.bos_token_id)
        return ids

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = False) -> str:
        return str(
            self.hf.decode(
                list(ids),
                skip_special_tokens=skip_special_tokens,
                clean_up_tokenization_spaces=False,
            )
        )

    def token_to_id(self, token: str) -> int | None:
        i = self.hf.convert_tokens_to_ids(token)
        return None if i is None or i == self.hf.unk_token_id else int(i)

    def save_pretrained(self, path: str | os.PathLike[str]) -> None:
        self.hf.save_pretrained(os.fspath(path))

"""Training the base model's tokenizer: a byte-level BPE learned from the corpus.

The text is split into lines (each keeps its newline) and every line is read as bytes, so any
text encodes and decodes back exactly, and merges may cross spaces within a line: the fixed
sentences of the self-play prompts and common code lines become a few tokens each, which keeps
sequences short enough for a CPU. The special tokens are those of the built-in byte tokenizer
(:data:`azr.models.BYTE_SPECIAL_TOKENS`), so the ``markers`` turn format works unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from azr.models.tokenizer import BYTE_SPECIAL_TOKENS, Tokenizer, _bytes_to_unicode

__all__ = ["train_tokenizer"]


def train_tokenizer(
    texts: Iterable[str], vocab_size: int, model_max_length: int = 4096
) -> Tokenizer:
    """A byte-level BPE of ``vocab_size`` tokens (bytes, merges and specials) trained on ``texts``.

    Deterministic for the same texts and size (the ``tokenizers`` trainer breaks frequency ties
    by the pair itself).
    """
    from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers, trainers
    from tokenizers import Tokenizer as RawTokenizer
    from transformers import PreTrainedTokenizerFast

    raw = RawTokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex("\n"), behavior="merged_with_previous"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        show_progress=False,
        special_tokens=[AddedToken(t, special=True, normalized=False) for t in BYTE_SPECIAL_TOKENS],
        initial_alphabet=sorted(_bytes_to_unicode().values()),
    )
    raw.train_from_iterator(texts, trainer=trainer)
    fast: Any = PreTrainedTokenizerFast
    hf = fast(
        tokenizer_object=raw,
        pad_token="<|pad|>",
        bos_token="<|bos|>",
        eos_token="<|endoftext|>",
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )
    return Tokenizer(hf)

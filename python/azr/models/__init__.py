"""Policy models: loading Hugging Face causal LMs, the tiny test model, and tokenizers."""

from azr.models.loading import load_model, load_state_dict_into, load_weights_into, save_model
from azr.models.tiny import TinyModelSpec, build_tiny_model
from azr.models.tokenizer import BYTE_SPECIAL_TOKENS, Tokenizer, build_byte_tokenizer

__all__ = [
    "BYTE_SPECIAL_TOKENS",
    "TinyModelSpec",
    "Tokenizer",
    "build_byte_tokenizer",
    "build_tiny_model",
    "load_model",
    "load_state_dict_into",
    "load_weights_into",
    "save_model",
]

"""The recipe of the in-house base model, building it, and finding it: committed or cached.

A :class:`Recipe` names everything the base depends on (corpus, held-out exclusion, tokenizer
size, model shape, optimisation); its :func:`recipe_hash` keys the result. :func:`build` runs
the whole pipeline (corpus through the sandbox, tokenizer, training) and writes a Hugging Face
model directory plus ``recipe.json`` and ``log.json`` (losses per step, tokens, seconds).

:func:`resolve_base` returns a directory holding the base for a recipe name: the committed copy
under ``azr/pretrain/weights/<name>`` when its recorded recipe hash matches, else a cache entry
(``$AZR_CACHE`` or ``~/.cache/azr``, ``pretrain/<name>-<hash>``), built there on first use.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import msgspec

from azr.eval.heldout import HeldOutSpec, heldout_hashes
from azr.models.tiny import TinyModelSpec
from azr.pretrain.corpus import (
    STDLIB_MODULES,
    CorpusSpec,
    Document,
    build_corpus,
    stdlib_fingerprint,
)
from azr.pretrain.training import TrainLog, TrainSpec

__all__ = [
    "RECIPES",
    "Recipe",
    "build",
    "cache_root",
    "corpus_digest",
    "load_corpus",
    "recipe_hash",
    "resolve_base",
    "weights_dir",
]

RECIPE_FILE: Final = "recipe.json"
LOG_FILE: Final = "log.json"


class Recipe(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Everything a base model is a function of (besides the interpreter and the libraries)."""

    name: str
    corpus: CorpusSpec = CorpusSpec()
    heldout: HeldOutSpec = HeldOutSpec()
    vocab_size: int = 4096
    model: TinyModelSpec = TinyModelSpec(
        hidden_size=192,
        num_layers=4,
        num_heads=4,
        num_kv_heads=2,
        intermediate_size=528,
        max_position_embeddings=1024,
    )
    init_seed: int = 0
    train: TrainSpec = TrainSpec()
    save_dtype: str = "bfloat16"


RECIPES: Final[dict[str, Recipe]] = {
    # Most of the corpus is solver conversations and asserts (answers are a few tokens each, so
    # they are what the model reads its prompt for), with one-line copy-and-transform programs
    # among them; proposer conversations for every third program; eight standard-library
    # modules. Four solver turns per program and type. The prompt is trained on at a quarter
    # weight. One and a half epochs of short rows.
    "cpu-base": Recipe(
        name="cpu-base",
        corpus=CorpusSpec(
            programs=2400,
            solve_per_program=4,
            propose_every=3,
            warmup_programs=600,
            stdlib_modules=(*STDLIB_MODULES[:7], "functools.py"),
        ),
        train=TrainSpec(seq_len=256, batch_rows=16, epochs=1.5, context_weight=0.25),
    ),
    # A few steps of the same pipeline, for tests of the machinery itself.
    "smoke": Recipe(
        name="smoke",
        corpus=CorpusSpec(programs=40, stdlib_modules=("bisect.py",)),
        vocab_size=600,
        model=TinyModelSpec(
            hidden_size=32,
            num_layers=1,
            num_heads=2,
            num_kv_heads=1,
            intermediate_size=64,
            max_position_embeddings=1024,
        ),
        train=TrainSpec(seq_len=256, batch_rows=4, epochs=0.5, warmup_steps=2),
    ),
}
"""Named recipes; ``cpu-base`` is what ``model.base = "cpu-base"`` trains from."""


def recipe_hash(recipe: Recipe) -> str:
    """SHA-256 (16 hex digits) of the recipe and the standard-library files its corpus reads."""
    payload = {
        "recipe": msgspec.to_builtins(recipe),
        "stdlib": stdlib_fingerprint(recipe.corpus.stdlib_modules),
        "format": 1,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def weights_dir(name: str) -> Path:
    """Where the committed weights of recipe ``name`` live (may not exist)."""
    return Path(__file__).resolve().parent / "weights" / name


def cache_root() -> Path:
    return Path(os.environ.get("AZR_CACHE") or Path.home() / ".cache" / "azr") / "pretrain"


def load_corpus(recipe: Recipe, *, workers: int | None = 2) -> list[Document]:
    """The recipe's corpus, generated through a fresh sandbox."""
    from azr.verify import Verifier

    with Verifier(workers=workers) as verifier:
        return build_corpus(recipe.corpus, verifier, exclude=heldout_hashes(recipe.heldout))


def corpus_digest(docs: list[Document]) -> str:
    """SHA-256 (16 hex digits) of the corpus text, in order.

    The recipe hash covers the recipe, not the code that writes the corpus (prompt wording,
    the program generator, validation rules): recorded next to the weights, this digest tells
    a changed corpus apart from irreproducible training when the recorded losses stop matching.
    """
    h = hashlib.sha256()
    for d in docs:
        h.update(msgspec.json.encode(d))
        h.update(b"\n")
    return h.hexdigest()[:16]


def _recorded_hash(path: Path) -> str | None:
    try:
        return str(json.loads((path / RECIPE_FILE).read_text())["hash"])
    except (OSError, ValueError, KeyError):
        return None


def build(
    recipe: Recipe,
    out: str | os.PathLike[str],
    *,
    log: Callable[[str], None] = print,
    max_steps: int | None = None,
) -> TrainLog:
    """Build the base model of ``recipe`` into ``out`` (replaced atomically)."""
    import torch
    import transformers

    from azr.models.loading import save_model
    from azr.models.tiny import build_tiny_model
    from azr.pretrain.tokenizer import train_tokenizer
    from azr.pretrain.training import pack, train_model

    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    out = Path(out)
    started = time.perf_counter()
    docs = load_corpus(recipe)
    t_corpus = time.perf_counter() - started
    log(f"corpus: {len(docs)} documents in {t_corpus:.1f} s")
    tokenizer = train_tokenizer((d.context + d.target for d in docs), recipe.vocab_size)
    rows, masks = pack(docs, tokenizer, recipe.train.seq_len)
    t_tok = time.perf_counter() - started - t_corpus
    log(f"tokenizer: {len(tokenizer)} tokens, {len(rows)} rows of <= {recipe.train.seq_len}")
    model = build_tiny_model(
        len(tokenizer),
        recipe.model,
        recipe.init_seed,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    params = sum(p.numel() for p in model.parameters())
    log(f"model: {params / 1e6:.2f}M parameters")

    def progress(step: int, loss: float) -> None:
        if step % 25 == 0:
            log(f"  step {step:4d}  loss {loss:.4f}  ({time.perf_counter() - started:.0f} s)")

    train_log = train_model(
        model, rows, masks, recipe.train, tokenizer.pad_token_id,
        max_steps=max_steps, on_step=progress,
    )  # fmt: skip
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_model(model.to(getattr(torch, recipe.save_dtype)), tokenizer, tmp)
    meta = {
        "hash": recipe_hash(recipe),
        "recipe": msgspec.to_builtins(recipe),
        "stdlib": stdlib_fingerprint(recipe.corpus.stdlib_modules),
        "license_notes": [
            "Python standard library source: PSF License Version 2 (PSF-2.0)",
            "Generated programs and conversations: produced by azr's own generator and sandbox",
        ],
        "built_with": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "machine": platform.machine(),
            "threads": recipe.train.threads,
        },
        "parameters": params,
        "documents": len(docs),
        "corpus_digest": corpus_digest(docs),
        "rows": len(rows),
    }
    (tmp / RECIPE_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    times = {"corpus_s": t_corpus, "tokenizer_s": t_tok, "train_s": train_log.seconds}
    record = {**msgspec.to_builtins(train_log), **times, "total_s": time.perf_counter() - started}
    (tmp / LOG_FILE).write_text(json.dumps(record) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    log(f"built {out} in {record['total_s']:.0f} s (final loss {train_log.losses[-1]:.4f})")
    return train_log


def resolve_base(name: str, *, log: Callable[[str], None] = print) -> Path:
    """A model directory holding the base of recipe ``name``, building it into the cache if
    neither the committed copy nor the cache has it."""
    recipe = RECIPES.get(name)
    if recipe is None:
        raise KeyError(f"unknown base recipe {name!r} (known: {', '.join(sorted(RECIPES))})")
    wanted = recipe_hash(recipe)
    committed = weights_dir(name)
    if _recorded_hash(committed) == wanted:
        return committed
    cached = cache_root() / f"{name}-{wanted}"
    if _recorded_hash(cached) == wanted:
        return cached
    log(f"building the base model {name!r} (recipe {wanted}) into {cached}; this runs once")
    build(recipe, cached, log=log)
    return cached


def describe(path: Path) -> dict[str, Any]:
    """The recorded recipe metadata of a built base."""
    meta: dict[str, Any] = json.loads((path / RECIPE_FILE).read_text())
    return meta

"""The in-house base model: a small Qwen2 model pretrained on a seeded corpus (``azr pretrain``).

Real base models cannot be assumed downloadable, so the project makes its own stand-in for a
pretrained LLM: it knows Python and the self-play conversation form, and is weak at the tasks,
leaving self-play room to improve it. One file per step:

``programs``  the seeded generator of small typed functions
``corpus``    the corpus (standard-library source, programs with outputs, conversations)
``tokenizer`` the byte-level BPE trained on the corpus
``training``  next-token training of the model
``recipe``    recipes, their hashes, building, and finding a base (committed or cached)
"""

from typing import Any

__all__ = ["RECIPES", "Recipe", "build", "recipe_hash", "resolve_base"]


def __getattr__(name: str) -> Any:
    # Imported on first use: the held-out evaluation imports the program generator from this
    # package, and the recipe imports the held-out evaluation (whose set the corpus excludes).
    if name in __all__:
        from azr.pretrain import recipe

        return getattr(recipe, name)
    raise AttributeError(f"module 'azr.pretrain' has no attribute {name!r}")

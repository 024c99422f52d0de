"""Imports flow one way: the pure layers never reach up into the actors or the wiring."""

from __future__ import annotations

import ast
from pathlib import Path

import azr

PACKAGE = Path(azr.__file__).parent
UPPER = ("azr.actors", "azr.train", "azr.cli", "azr.config")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _modules(*parts: str) -> list[Path]:
    out: list[Path] = []
    for part in parts:
        path = PACKAGE / part
        out += sorted(path.rglob("*.py")) if path.is_dir() else [path.with_suffix(".py")]
    return out


def test_pure_layers_do_not_import_the_loop() -> None:
    for path in _modules("tasks", "rl", "rewards", "buffer", "verify", "executor", "runtime"):
        bad = {m for m in _imports(path) if m.startswith(UPPER)}
        assert not bad, f"{path.relative_to(PACKAGE)} imports {sorted(bad)}"


def test_the_runtime_knows_no_reinforcement_learning() -> None:
    for path in _modules("runtime"):
        bad = {m for m in _imports(path) if m.startswith(("azr.rl", "azr.tasks", "torch"))}
        assert not bad, f"{path.relative_to(PACKAGE)} imports {sorted(bad)}"


def test_actors_only_share_messages_and_helpers() -> None:
    """An actor module may import the messages and the shared helpers, never another actor."""
    allowed = {"azr.actors.messages", "azr.actors._common"}
    for path in _modules("actors"):
        if path.name == "__init__.py":
            continue
        own = f"azr.actors.{path.stem}"
        bad = {m for m in _imports(path) if m.startswith("azr.actors") and m not in allowed | {own}}
        assert not bad, f"{path.name} imports {sorted(bad)}"

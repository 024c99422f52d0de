"""Normalisation of proposed and predicted programs into the canonical form the executor runs.

A model writes programs in many shapes: the entry point named ``solve``, imports halfway down,
a trailing ``print(f(3))``, a ``__main__`` guard. Normalisation turns each into one canonical
source: imports first, then the definitions, with the entry function renamed to ``f`` (recursive
calls too). The canonical text is what validation runs, what the buffers deduplicate on, and what
solvers see, so the gold output always belongs to exactly the program shown.

Rules (see :class:`ProgramPolicy`):

* The entry function is the top-level function named ``f`` if there is one, otherwise the last
  top-level function (helpers are usually written before the function that uses them).
* Top-level statements allowed: imports, function and class definitions, assignments (module
  constants). Bare expressions (docstrings, test calls such as ``print(f(3))``), ``pass`` and the
  ``if __name__ == "__main__":`` guard are dropped; since validation runs the normalised text,
  dropping them cannot make a gold output disagree with its program. Anything else (loops,
  ``try``) is rejected as ``invalid_program``.
* Renaming is refused (``invalid_program``) when the name ``f`` is already used, or when the old
  name is also a parameter, keyword, import alias or class name: plain textual renaming would
  then change behaviour.
* Module-level bindings may not rebind builtins (``set = ...``, ``def sorted(...)``, ``global
  len``): expected values are written with ``set()`` and ``frozenset()`` and must mean the real
  ones wherever they are evaluated.
* The safety policy (:class:`~azr.tasks.ast_checks.SafetyPolicy`) applies to the whole tree.

Normalisation is idempotent: normalising a normalised program returns it unchanged.
"""

from __future__ import annotations

import ast
from typing import Final

import msgspec

from azr.tasks.ast_checks import BUILTIN_NAMES, Rejected, SafetyPolicy, check_safety, parse
from azr.tasks.types import Reason

__all__ = ["NormalizedProgram", "ProgramPolicy", "callable_without_arguments", "normalize_program"]

ENTRY: Final = "f"


class ProgramPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How programs are normalised and what they may contain.

    ``max_bytes`` bounds the source before it is parsed. ``allow_helpers`` permits top-level
    functions and classes besides the entry function.
    """

    max_bytes: int = 16_384
    allow_helpers: bool = True
    safety: SafetyPolicy = SafetyPolicy()


DEFAULT_POLICY: Final = ProgramPolicy()


class NormalizedProgram(msgspec.Struct, frozen=True):
    """A program in canonical form.

    ``source`` is the complete text to run (imports first); ``imports`` are its top-level import
    statements, one per entry; ``entry_name`` is what the entry function was called before it was
    renamed to ``f``.
    """

    source: str
    imports: tuple[str, ...]
    entry_name: str


def normalize_program(
    source: str, policy: ProgramPolicy = DEFAULT_POLICY
) -> NormalizedProgram | Rejected:
    """Bring ``source`` into canonical form, or say why it cannot be used."""
    tree = parse(source, "exec", max_bytes=policy.max_bytes, what="program")
    if isinstance(tree, Rejected):
        return tree
    assert isinstance(tree, ast.Module)

    imports: list[ast.stmt] = []
    body: list[ast.stmt] = []
    for stmt in tree.body:
        match stmt:
            case ast.Import() | ast.ImportFrom():
                imports.append(stmt)
            case ast.FunctionDef() | ast.AsyncFunctionDef() | ast.ClassDef():
                body.append(stmt)
            case ast.Assign() | ast.AnnAssign() | ast.AugAssign():
                body.append(stmt)
            case ast.Expr() | ast.Pass():
                pass
            case ast.If() if _is_main_guard(stmt):
                pass
            case _:
                return Rejected(
                    Reason.INVALID_PROGRAM,
                    f"top-level {type(stmt).__name__} statement (line {stmt.lineno})",
                )

    functions = [s for s in body if isinstance(s, ast.FunctionDef)]
    if not functions:
        return Rejected(Reason.INVALID_PROGRAM, "no top-level function defined")
    named = [s for s in functions if s.name == ENTRY]
    entry = (named or functions)[-1]
    entry_name = entry.name
    if not policy.allow_helpers:
        extra = [
            s
            for s in body
            if isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            and s.name != entry_name
        ]
        if extra:
            return Rejected(Reason.INVALID_PROGRAM, f"extra top-level definition {extra[0].name!r}")

    module = ast.Module(body=[*imports, *body], type_ignores=[])
    if entry_name != ENTRY:
        clash = _rename(module, entry_name, ENTRY)
        if clash is not None:
            return Rejected(Reason.INVALID_PROGRAM, clash)

    shadow = _shadowed_builtin(module)
    if shadow is not None:
        return Rejected(Reason.INVALID_PROGRAM, f"rebinds the builtin {shadow!r}")
    unsafe = check_safety(module, policy.safety)
    if unsafe is not None:
        return unsafe

    try:
        import_lines = tuple(dict.fromkeys(ast.unparse(s) for s in imports))
        rest = ast.unparse(ast.Module(body=body, type_ignores=[]))
    except (RecursionError, MemoryError, ValueError) as exc:
        return Rejected(Reason.TOO_LARGE, f"program too deeply nested ({type(exc).__name__})")
    text = "\n".join(import_lines) + "\n\n" + rest if import_lines else rest
    return NormalizedProgram(source=text, imports=import_lines, entry_name=entry_name)


def callable_without_arguments(source: str, max_bytes: int = DEFAULT_POLICY.max_bytes) -> bool:
    """Whether the entry function ``f`` of ``source`` (a normalised program) can be called with
    an empty argument list: every parameter it declares has a default, or is ``*args`` or
    ``**kwargs``. Then an empty input is a well-formed input for it. False when ``source`` does
    not parse or defines no top-level ``f``."""
    tree = parse(source, "exec", max_bytes=max_bytes, what="program")
    if isinstance(tree, Rejected):
        return False
    assert isinstance(tree, ast.Module)
    entries = [
        s for s in tree.body if isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef)
        and s.name == ENTRY
    ]  # fmt: skip
    if not entries:
        return False
    args = entries[-1].args
    positional = [*args.posonlyargs, *args.args]
    required_positional = len(positional) - len(args.defaults)
    required_keyword = sum(d is None for d in args.kw_defaults)
    return required_positional == 0 and required_keyword == 0


def _is_main_guard(stmt: ast.If) -> bool:
    test = stmt.test
    return (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and len(test.comparators) == 1
        and isinstance(test.comparators[0], ast.Constant)
        and test.comparators[0].value == "__main__"
    )


def _rename(module: ast.Module, old: str, new: str) -> str | None:
    """Rename every reference to ``old`` into ``new`` in place; a reason string when unsafe.

    Works on ``ast.walk`` (iterative) rather than a recursive visitor so that deeply nested
    hostile code cannot overflow the host's stack.
    """
    nodes = list(ast.walk(module))
    for node in nodes:
        names: list[str] = []
        match node:
            case ast.Name(id=name):
                names = [name]
            case ast.FunctionDef(name=name) | ast.AsyncFunctionDef(name=name):
                names = [name]
            case ast.Global(names=gnames) | ast.Nonlocal(names=gnames):
                names = list(gnames)
            case ast.ClassDef(name=name):
                if name in (old, new):
                    return f"class {name!r} clashes with renaming {old!r} to {new!r}"
            case ast.arg(arg=name) | ast.keyword(arg=str() as name):
                if name in (old, new):
                    return f"parameter or keyword {name!r} clashes with renaming {old!r}"
            case ast.alias(name=name, asname=asname):
                if (asname or name.partition(".")[0]) in (old, new):
                    return f"import of {name!r} clashes with renaming {old!r}"
            case ast.ExceptHandler(name=str() as name) | ast.MatchAs(name=str() as name):
                if name in (old, new):
                    return f"name {name!r} clashes with renaming {old!r}"
            case ast.MatchStar(name=str() as name):
                if name in (old, new):
                    return f"name {name!r} clashes with renaming {old!r}"
        if new in names:
            return f"the name {new!r} is already used"
    for node in nodes:
        match node:
            case ast.Name(id=name) if name == old:
                node.id = new
            case ast.FunctionDef(name=name) | ast.AsyncFunctionDef(name=name) if name == old:
                node.name = new
            case ast.Global() | ast.Nonlocal():
                node.names = [new if n == old else n for n in node.names]
    return None


def _shadowed_builtin(module: ast.Module) -> str | None:
    """The first builtin name bound at module level (directly or through ``global``), if any."""
    for stmt in module.body:
        for name in _bound_names(stmt):
            if name in BUILTIN_NAMES:
                return name
    for node in ast.walk(module):
        if isinstance(node, ast.Global):
            for name in node.names:
                if name in BUILTIN_NAMES:
                    return name
    return None


def _bound_names(stmt: ast.stmt) -> list[str]:
    match stmt:
        case ast.FunctionDef(name=name) | ast.AsyncFunctionDef(name=name) | ast.ClassDef(name=name):
            return [name]
        case ast.Import(names=names) | ast.ImportFrom(names=names):
            return [a.asname or a.name.partition(".")[0] for a in names]
        case ast.Assign(targets=targets):
            return [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
        case ast.AnnAssign(target=target) | ast.AugAssign(target=target):
            return [n.id for n in ast.walk(target) if isinstance(n, ast.Name)]
    return []

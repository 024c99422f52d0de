"""Checking that a value text from a sandbox is a pure literal, without evaluating it.

A candidate controls the ``repr`` text its job hands back (it can even forge the report). Before
that text is spliced into a trusted comparator job it must be data and nothing else: only
numbers, strings, bytes, None/True/False, containers of those, ``inf``/``nan``, complex numbers
and ``set()``/``frozenset(...)``. The text is parsed (``ast.parse``), never evaluated, here.
"""

from __future__ import annotations

import ast

__all__ = ["NotLiteral", "check_literal", "tuple_items"]

_CONTAINERS = (ast.Expression, ast.Tuple, ast.List, ast.Set, ast.Dict, ast.Load)
_OPERATORS = (ast.USub, ast.UAdd, ast.Add, ast.Sub)
_NUMBER = (int, float, complex)
_NAMES = frozenset({"inf", "nan"})
_SET_CALLS = frozenset({"set", "frozenset"})


class NotLiteral(ValueError):
    """The text is not a plain-data literal (or cannot be parsed within the parser's limits)."""


def _signed_number(node: ast.expr) -> bool:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        node = node.operand
    if isinstance(node, ast.Constant):
        return type(node.value) in _NUMBER
    return isinstance(node, ast.Name) and node.id in _NAMES


def _allowed(node: ast.AST) -> bool:
    if isinstance(node, (_CONTAINERS, _OPERATORS)):
        return True
    if isinstance(node, ast.Constant):
        return node.value is None or type(node.value) in (bool, int, float, complex, str, bytes)
    if isinstance(node, ast.Name):
        # set/frozenset only ever appear as the callee of an allowed call (or as a harmless
        # type object); nothing else is nameable.
        return node.id in _NAMES | _SET_CALLS and isinstance(node.ctx, ast.Load)
    if isinstance(node, ast.UnaryOp):
        return isinstance(node.op, (ast.USub, ast.UAdd)) and _signed_number(node.operand)
    if isinstance(node, ast.BinOp):
        # complex reprs: (1+2j), (-0-1j), (inf+nanj)
        return (
            isinstance(node.op, (ast.Add, ast.Sub))
            and _signed_number(node.left)
            and isinstance(node.right, ast.Constant)
            and type(node.right.value) is complex
        )
    if isinstance(node, ast.Call):
        return (
            isinstance(node.func, ast.Name)
            and node.func.id in _SET_CALLS
            and len(node.args) <= 1
            and not node.keywords
        )
    return False


def check_literal(text: str) -> ast.Expression:
    """Parses ``text`` and raises :class:`NotLiteral` unless every node is plain data."""
    try:
        tree = ast.parse(text, "<value>", "eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        raise NotLiteral(f"not parseable as a literal: {type(e).__name__}") from None
    for node in ast.walk(tree):
        if not _allowed(node):
            raise NotLiteral(f"not plain data: {type(node).__name__} node")
    return tree


def tuple_items(text: str, arity: int) -> list[str]:
    """The source texts of the items of a literal tuple of exactly ``arity`` items."""
    if "\n" in text or "\r" in text:
        # A repr is one line; anything else did not come from repr.
        raise NotLiteral("a value text spans several lines")
    tree = check_literal(text)
    body = tree.body
    if not isinstance(body, ast.Tuple) or len(body.elts) != arity:
        raise NotLiteral(f"expected a tuple of {arity} items")
    # Offsets are in UTF-8 bytes (ast.get_source_segment is quadratic on long lines).
    data = text.encode("utf-8", "surrogatepass")
    return [
        data[elt.col_offset : elt.end_col_offset].decode("utf-8", "surrogatepass")
        for elt in body.elts
    ]

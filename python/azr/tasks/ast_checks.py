"""Static checks on untrusted Python text: guarded parsing, the safety policy, literal values.

Nothing here runs the text. ``ast.parse`` only builds a tree, but hostile text can still make it
raise (``RecursionError`` and ``MemoryError`` on deep nesting, ``ValueError`` on NUL bytes) or emit
warnings, so every parse goes through :func:`parse`, which sizes the text first and turns every
failure into a :class:`~azr.tasks.types.Reason`.

The safety policy is not the security boundary (the sandbox is); it keeps tasks pure and
deterministic and closes the obvious routes by which an answer could reach outside its own value:
importing ``os``, calling ``eval``, walking ``__subclasses__``, rebinding builtins.
"""

from __future__ import annotations

import ast
import builtins
import warnings
from collections.abc import Iterator
from typing import Final, Literal

import msgspec

from azr.tasks.types import Reason

__all__ = [
    "BUILTIN_NAMES",
    "AnswerForm",
    "Rejected",
    "SafetyPolicy",
    "canonical_arguments",
    "canonical_value",
    "check_safety",
    "is_literal",
    "parse",
    "parse_arguments",
    "utf8_size",
]

BUILTIN_NAMES: Final[frozenset[str]] = frozenset(dir(builtins))

_DEFAULT_MODULES: Final = frozenset(
    {
        # processes, files and the interpreter itself
        "os", "posix", "nt", "sys", "subprocess", "shutil", "pathlib", "io", "tempfile", "glob",
        "builtins", "importlib", "imp", "pkgutil", "runpy", "zipimport", "site", "sysconfig",
        "ctypes", "cffi", "mmap", "signal", "resource", "pty", "tty", "termios", "fcntl", "pwd",
        "grp", "gc", "inspect", "code", "codeop", "pdb", "trace", "tracemalloc", "faulthandler",
        "atexit", "platform", "getpass", "pickle", "marshal", "shelve", "dbm", "sqlite3",
        # concurrency and the network
        "threading", "_thread", "multiprocessing", "concurrent", "asyncio", "socket", "ssl",
        "select", "selectors", "http", "urllib", "ftplib", "smtplib", "poplib", "imaplib",
        "telnetlib", "xmlrpc", "webbrowser", "socketserver",
        # sources of nondeterminism
        "random", "secrets", "uuid", "time",
    }
)  # fmt: skip

_DEFAULT_NAMES: Final = frozenset(
    {
        "__import__", "eval", "exec", "compile", "open", "input", "breakpoint", "globals",
        "locals", "vars", "getattr", "setattr", "delattr", "exit", "quit", "help", "id",
        "__builtins__", "__build_class__", "__loader__", "__spec__",
    }
)  # fmt: skip

_DEFAULT_ATTRIBUTES: Final = frozenset(
    {
        "__subclasses__", "__globals__", "__builtins__", "__code__", "__closure__", "__bases__",
        "__base__", "__mro__", "__dict__", "__getattribute__", "__self__", "__func__",
        "__import__", "__loader__", "__spec__", "__traceback__", "__reduce__", "__reduce_ex__",
        "f_globals", "f_locals", "f_builtins", "f_back", "f_code", "gi_frame", "gi_code",
        "cr_frame", "ag_frame", "tb_frame", "tb_next",
    }
)  # fmt: skip


class SafetyPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What a program or answer may not mention (checked on the syntax tree, never by running).

    ``forbidden_modules`` are matched on the first component of an import (``os.path`` -> ``os``).
    When ``allowed_modules`` is set, only those modules may be imported at all. ``forbidden_names``
    are matched on every identifier, so aliasing (``e = eval``) is caught too.
    ``forbidden_attributes`` are the introspection routes from a plain object to the interpreter.
    """

    forbidden_modules: frozenset[str] = _DEFAULT_MODULES
    forbidden_names: frozenset[str] = _DEFAULT_NAMES
    forbidden_attributes: frozenset[str] = _DEFAULT_ATTRIBUTES
    allowed_modules: frozenset[str] | None = None
    allow_relative_imports: bool = False


class Rejected(msgspec.Struct, frozen=True):
    """A static check failed: the reason code and a short human-readable explanation."""

    reason: Reason
    detail: str = ""


_PARSE_ERRORS: Final = (SyntaxError, ValueError, OverflowError)


def utf8_size(text: str) -> int | None:
    """Length of ``text`` in UTF-8 bytes, or None when it holds lone surrogates."""
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return None


def parse(
    text: str, mode: Literal["exec", "eval"], *, max_bytes: int, what: str = "text"
) -> ast.AST | Rejected:
    """Parse untrusted text into a tree; every failure becomes a :class:`Rejected`.

    The size is checked before parsing because the parser's memory use grows with the text.
    Warnings (invalid escape sequences and the like) are silenced: they must not change the
    verdict depending on the caller's warning filters.
    """
    size = utf8_size(text)
    if size is None:
        return Rejected(Reason.FORMAT, f"{what} is not valid UTF-8")
    if size > max_bytes:
        return Rejected(Reason.TOO_LARGE, f"{what} is {size} bytes, over the {max_bytes} limit")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ast.parse(text, mode=mode)
    except _PARSE_ERRORS as exc:
        return Rejected(Reason.SYNTAX, f"{what}: {type(exc).__name__}: {_first_line(exc)}")
    except (RecursionError, MemoryError) as exc:
        return Rejected(Reason.TOO_LARGE, f"{what} is too deeply nested ({type(exc).__name__})")


def parse_arguments(text: str, *, max_bytes: int) -> ast.Call | Rejected:
    """Parse an argument list (the text inside ``f(...)``) into the call ``f(<text>)``.

    Text that closes the parenthesis early (``0) or (5``) parses into something other than a
    single call of ``f`` and is rejected, so what is accepted is exactly one argument list.
    The newline before the closing parenthesis keeps a trailing comment from swallowing it.
    """
    if not text.strip():
        return Rejected(Reason.FORMAT, "empty argument list")
    size = utf8_size(text)
    if size is None:
        return Rejected(Reason.FORMAT, "argument list is not valid UTF-8")
    if size > max_bytes:
        return Rejected(Reason.TOO_LARGE, f"argument list is {size} bytes, over {max_bytes}")
    tree = parse(f"f(\n{text}\n)", "eval", max_bytes=max_bytes + 4, what="argument list")
    if isinstance(tree, Rejected):
        return tree
    assert isinstance(tree, ast.Expression)
    body = tree.body
    if not (isinstance(body, ast.Call) and isinstance(body.func, ast.Name) and body.func.id == "f"):
        return Rejected(Reason.SYNTAX, "not a single argument list")
    return body


def check_safety(
    tree: ast.AST, policy: SafetyPolicy, *, expression: bool = False
) -> Rejected | None:
    """The first thing in ``tree`` the policy forbids, or None.

    A forbidden name is allowed where the code binds it itself in an enclosing function, lambda
    or comprehension (``def f(input): return input``): there it is a local variable, not the
    builtin. Module-level rebinding of builtins is refused by normalisation instead.

    With ``expression`` (answers that are evaluated inside ``f(...)`` in the program's globals)
    assignment expressions are refused too: ``(sorted := ...)`` would rebind a global the program
    relies on and so change what it computes.
    """
    scopes: _Scopes | None = None
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in policy.forbidden_names:
            if scopes is None:
                scopes = _Scopes(tree)
            if not scopes.binds_locally(node):
                return Rejected(Reason.FORBIDDEN, f"uses {node.id!r}")
            continue
        if expression and isinstance(node, ast.NamedExpr):
            return Rejected(Reason.FORBIDDEN, "assignment expression (:=) in an answer")
        found = _forbidden(node, policy)
        if found is not None:
            return Rejected(Reason.FORBIDDEN, found)
    return None


_FUNCTIONS: Final = (ast.FunctionDef, ast.AsyncFunctionDef)
_COMPREHENSIONS: Final = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


class _Scopes:
    """Which names each function, lambda and comprehension binds (built only when needed).

    Decorators, defaults and annotations of a function, and the first iterable of a
    comprehension, are evaluated in the *enclosing* scope; :meth:`_enclosing` accounts for
    that, so ``def g(eval=eval)`` does not launder the builtin. All walks are iterative.
    """

    def __init__(self, tree: ast.AST) -> None:
        self._parents: dict[ast.AST, ast.AST] = {}
        for node in ast.walk(tree):
            for child in ast.iter_child_nodes(node):
                self._parents[child] = node
        self._bound: dict[ast.AST, set[str]] = {}
        for node in ast.walk(tree):
            match node:
                case ast.arg(arg=name):
                    owner = self._parents.get(self._parents.get(node, node))
                    if owner is not None:
                        self._bound.setdefault(owner, set()).add(name)
                case ast.Name(id=name, ctx=ast.Store() | ast.Del()):
                    self._bind(node, name)
                case ast.FunctionDef(name=name) | ast.AsyncFunctionDef(name=name):
                    self._bind(node, name)
                case ast.ClassDef(name=name) | ast.ExceptHandler(name=str() as name):
                    self._bind(node, name)
                case ast.Import(names=aliases) | ast.ImportFrom(names=aliases):
                    for alias in aliases:
                        self._bind(node, alias.asname or alias.name.partition(".")[0])

    def _bind(self, node: ast.AST, name: str) -> None:
        scope = next(self._enclosing(node), None)
        if scope is not None:
            self._bound.setdefault(scope, set()).add(name)

    def _enclosing(self, node: ast.AST) -> Iterator[ast.AST]:
        """The function-like scopes whose body contains ``node``, innermost first."""
        prev, child = node, node
        parent = self._parents.get(child)
        while parent is not None:
            if isinstance(parent, _FUNCTIONS):
                if any(child is stmt for stmt in parent.body):
                    yield parent
            elif isinstance(parent, ast.Lambda):
                if child is parent.body:
                    yield parent
            elif isinstance(parent, _COMPREHENSIONS):
                first = parent.generators[0]
                if not (child is first and prev is first.iter):
                    yield parent
            prev, child = child, parent
            parent = self._parents.get(child)

    def binds_locally(self, name: ast.Name) -> bool:
        if isinstance(name.ctx, ast.Store | ast.Del):
            return next(self._enclosing(name), None) is not None
        return any(name.id in self._bound.get(s, ()) for s in self._enclosing(name))


def _forbidden(node: ast.AST, policy: SafetyPolicy) -> str | None:
    match node:
        case ast.Attribute(attr=attr) if attr in policy.forbidden_attributes:
            return f"accesses attribute {attr!r}"
        case ast.Import(names=names):
            for alias in names:
                bad = _bad_module(alias.name, policy)
                if bad:
                    return bad
        case ast.ImportFrom(module=module, level=level, names=names):
            if level and not policy.allow_relative_imports:
                return "relative import"
            bad = _bad_module(module or "", policy)
            if bad:
                return bad
            for alias in names:
                if alias.name in policy.forbidden_names:
                    return f"imports {alias.name!r}"
    return None


def _bad_module(dotted: str, policy: SafetyPolicy) -> str | None:
    top = dotted.partition(".")[0]
    if not top:
        return None
    if top in policy.forbidden_modules:
        return f"imports forbidden module {top!r}"
    if policy.allowed_modules is not None and top not in policy.allowed_modules:
        return f"imports module {top!r}, which is not allowed"
    return None


AnswerForm = Literal["literal", "expression"]
"""How freely a value or argument list may be written: as a literal display of plain data only,
or as any expression the safety policy allows (lambdas, ``dict(a=1)``, ``'ab' * 3``...)."""


def canonical_arguments(
    text: str, *, form: AnswerForm, max_bytes: int, safety: SafetyPolicy
) -> str | Rejected:
    """Check an argument list and return it in canonical form (what the executor is given).

    The canonical text is the argument list as ``ast.unparse`` writes it: comments and layout
    are gone, so equal inputs deduplicate, and nothing the model wrote outside the arguments
    themselves reaches the sandbox (which builds ``"f(" + inputs + ")"``, where a trailing
    comment would swallow the parenthesis). ``unparse`` recurses, so expressions nested a few
    hundred levels deep are refused as ``too_large``.
    """
    call = parse_arguments(text.strip(), max_bytes=max_bytes)
    if isinstance(call, Rejected):
        return call
    if form == "literal":
        values = [*call.args, *(k.value for k in call.keywords)]
        unpacked = any(isinstance(a, ast.Starred) for a in call.args) or any(
            k.arg is None for k in call.keywords
        )
        if unpacked or not all(is_literal(v) for v in values):
            return Rejected(Reason.NOT_LITERAL, "arguments must be literal values")
    else:
        unsafe = check_safety(call, safety, expression=True)
        if unsafe is not None:
            return unsafe
    try:
        return ast.unparse(call)[2:-1]
    except (RecursionError, MemoryError, ValueError) as exc:
        return Rejected(Reason.TOO_LARGE, f"argument list too deeply nested ({type(exc).__name__})")


def canonical_value(
    text: str, *, form: AnswerForm, max_bytes: int, safety: SafetyPolicy
) -> str | Rejected:
    """Check a value (a predicted output) and return the text to evaluate: ``text`` stripped.

    Unlike argument lists, a value needs no rewriting: it is compiled on its own, so nothing
    around it (a comment, a newline) can change how it parses.
    """
    stripped = text.strip()
    if not stripped:
        return Rejected(Reason.FORMAT, "empty value")
    tree = parse(stripped, "eval", max_bytes=max_bytes, what="value")
    if isinstance(tree, Rejected):
        return tree
    assert isinstance(tree, ast.Expression)
    if form == "literal":
        if not is_literal(tree.body):
            return Rejected(Reason.NOT_LITERAL, "the value must be a literal, as repr writes it")
    else:
        unsafe = check_safety(tree, safety, expression=True)
        if unsafe is not None:
            return unsafe
    return stripped


_NUMBER: Final = (int, float, complex)
_FLOAT_NAMES: Final = frozenset({"inf", "nan"})


def is_literal(node: ast.AST) -> bool:
    """Whether ``node`` is a literal display of plain data, as ``repr`` writes one.

    Accepted: constants, ``inf`` and ``nan``, tuples, lists, sets, dicts of literals, a sign on a
    number, complex numbers written ``a+bj``, and ``set()`` / ``frozenset(<literal>)``, the only
    calls ``repr`` produces for plain data. Iterative, so deep nesting cannot exhaust the host's
    stack.
    """
    stack = [node]
    while stack:
        item = stack.pop()
        match item:
            case ast.Constant():
                pass
            case ast.Name() if _is_number(item):
                pass
            case ast.Tuple(elts=elts) | ast.List(elts=elts) | ast.Set(elts=elts):
                stack.extend(elts)
            case ast.Dict(keys=keys, values=values):
                if any(k is None for k in keys):  # ``**mapping`` unpacking
                    return False
                stack.extend(k for k in keys if k is not None)
                stack.extend(values)
            case ast.UnaryOp(op=ast.USub() | ast.UAdd(), operand=operand):
                if not _is_number(operand):
                    return False
            case ast.BinOp(op=ast.Add() | ast.Sub(), left=left, right=right):
                # Only the ``a+bj`` form of complex numbers; ``1+1`` is arithmetic, not a literal.
                left_ok = _is_number(left) or (
                    isinstance(left, ast.UnaryOp)
                    and isinstance(left.op, ast.USub | ast.UAdd)
                    and _is_number(left.operand)
                )
                right_ok = isinstance(right, ast.Constant) and type(right.value) is complex
                if not (left_ok and right_ok):
                    return False
            case ast.Call(func=ast.Name(id="set" | "frozenset"), args=args, keywords=[]):
                if len(args) > 1 or any(isinstance(a, ast.Starred) for a in args):
                    return False
                stack.extend(args)
            case _:
                return False
    return True


def _is_number(node: ast.AST) -> bool:
    # ``inf`` and ``nan`` are how ``repr`` writes those floats; the sandbox evaluates values
    # with both names defined, so they count as literals.
    if isinstance(node, ast.Name):
        return node.id in _FLOAT_NAMES
    return isinstance(node, ast.Constant) and type(node.value) in _NUMBER


def _first_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200] if text.strip() else type(exc).__name__

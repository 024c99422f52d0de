"""Program normalisation: renaming to ``f``, import hoisting, rejections, idempotence."""

from __future__ import annotations

import ast
import keyword
import string

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from azr.tasks import (
    NormalizedProgram,
    ProgramPolicy,
    Reason,
    Rejected,
    SafetyPolicy,
    normalize_program,
)
from azr.tasks.ast_checks import BUILTIN_NAMES

DEFAULT = ProgramPolicy()


def _ok(source: str, policy: ProgramPolicy = DEFAULT) -> NormalizedProgram:
    result = normalize_program(source, policy)
    assert isinstance(result, NormalizedProgram), result
    return result


def _rejected(source: str, policy: ProgramPolicy = DEFAULT) -> Rejected:
    result = normalize_program(source, policy)
    assert isinstance(result, Rejected), result
    return result


def test_renames_entry_and_recursive_calls() -> None:
    source = (
        "def fact(n):\n    return 1 if n <= 1 else n * fact(n - 1)\n\n"
        "import math\n\nprint(fact(3))\n"
    )
    out = _ok(source)
    assert out.entry_name == "fact"
    assert out.imports == ("import math",)
    assert out.source == ("import math\n\ndef f(n):\n    return 1 if n <= 1 else n * f(n - 1)")


def test_entry_is_f_when_present_else_last_function() -> None:
    helper = "def helper(x):\n    return x + 1\n"
    assert _ok(helper + "def f(x):\n    return helper(x)\n").entry_name == "f"
    out = _ok(helper + "def main(x):\n    return helper(x)\n")
    assert out.entry_name == "main"
    assert "def helper(x)" in out.source and "def f(x)" in out.source


def test_drops_docstrings_tests_and_main_guard() -> None:
    source = (
        '"""Module doc."""\nfrom collections import Counter\n'
        "def f(s):\n    return sorted(Counter(s).items())\n"
        "pass\nf('abc')\nif __name__ == '__main__':\n    print(f('aab'))\n"
    )
    out = _ok(source)
    assert out.source == (
        "from collections import Counter\n\ndef f(s):\n    return sorted(Counter(s).items())"
    )


def test_duplicate_imports_collapse() -> None:
    out = _ok("import math\nimport math\ndef f(x):\n    return math.floor(x)\n")
    assert out.imports == ("import math",)


@pytest.mark.parametrize(
    ("source", "detail"),
    [
        ("x = 1\n", "no top-level function"),
        ("def f(x):\n    return x\nfor i in range(3):\n    pass\n", "top-level For"),
        ("def g(f):\n    return f\n", "clashes"),
        ("def g(x):\n    f = 2\n    return x\n", "already used"),
        ("def g(x):\n    return x\nclass g2:\n    pass\nf = 1\n", "already used"),
        ("def g(x, g=1):\n    return x\n", "clashes"),
        ("def f(x):\n    return x\nset = frozenset\n", "rebinds the builtin 'set'"),
        ("def sorted(x):\n    return x\ndef f(x):\n    return x\n", "rebinds the builtin"),
        ("def f(x):\n    global len\n    len = 3\n    return x\n", "rebinds the builtin 'len'"),
    ],
)
def test_invalid_programs(source: str, detail: str) -> None:
    result = _rejected(source)
    assert result.reason is Reason.INVALID_PROGRAM
    assert detail in result.detail


def test_helpers_can_be_disallowed() -> None:
    source = "def helper(x):\n    return x\ndef f(x):\n    return helper(x)\n"
    assert _ok(source)
    result = _rejected(source, ProgramPolicy(allow_helpers=False))
    assert result.reason is Reason.INVALID_PROGRAM and "helper" in result.detail


@pytest.mark.parametrize(
    "body",
    [
        "import os\n    return os.getcwd()",
        "import os.path\n    return 1",
        "from subprocess import run\n    return 1",
        "return __import__('os').system('true')",
        "return eval('1')",
        "exec('y = 1')\n    return 1",
        "return compile('1', 's', 'eval')",
        "return open('/etc/passwd').read()",
        "import importlib\n    return 1",
        "import sys\n    return 1",
        "import random\n    return random.random()",
        "import time\n    return time.time()",
        "import threading\n    return 1",
        "import multiprocessing\n    return 1",
        "import socket\n    return 1",
        "import ctypes\n    return 1",
        "return ().__class__.__bases__[0].__subclasses__()",
        "return getattr(x, 'real')",
        "return f.__globals__",
        "e = eval\n    return e('1')",
        "from . import sibling\n    return 1",
    ],
)
def test_forbidden(body: str) -> None:
    result = _rejected(f"def f(x):\n    {body}\n")
    assert result.reason is Reason.FORBIDDEN, result


def test_safety_policy_is_configuration() -> None:
    source = "import random\ndef f(x):\n    return x\n"
    allow_random = SafetyPolicy(forbidden_modules=SafetyPolicy().forbidden_modules - {"random"})
    assert _ok(source, ProgramPolicy(safety=allow_random))
    only_math = ProgramPolicy(safety=SafetyPolicy(allowed_modules=frozenset({"math"})))
    assert _ok("import math\ndef f(x):\n    return math.floor(x)\n", only_math)
    assert _rejected("import re\ndef f(x):\n    return x\n", only_math).reason is Reason.FORBIDDEN


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("(" * 100_000 + ")" * 100_000, Reason.SYNTAX),  # the parser's nesting limit
        ("[" * 3_000 + "]" * 3_000, Reason.SYNTAX),
        ("def f(x):\n    return x" + " + x" * 20_000, Reason.TOO_LARGE),  # unparse recursion
        ("def f(x):\n    return '\x00'", Reason.SYNTAX),
        ("def f(x):\n    return '\ud800'", Reason.FORMAT),
        ("def f(x):\n    return 1" + "0" * 5_000, Reason.SYNTAX),  # int digits limit
    ],
)
def test_hostile_text_is_rejected_not_raised(source: str, reason: Reason) -> None:
    result = normalize_program(source, ProgramPolicy(max_bytes=1 << 20))
    assert isinstance(result, Rejected)
    assert result.reason is reason, result


def test_size_is_checked_before_parsing() -> None:
    result = normalize_program("x" * 20_000)
    assert isinstance(result, Rejected) and result.reason is Reason.TOO_LARGE


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=string.printable, max_size=200))
def test_never_raises_on_arbitrary_text(source: str) -> None:
    result = normalize_program(source)
    assert isinstance(result, NormalizedProgram | Rejected)
    if isinstance(result, NormalizedProgram):
        assert normalize_program(result.source) == NormalizedProgram(
            result.source, result.imports, "f"
        )


_IDENT = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True).filter(
    lambda s: not keyword.iskeyword(s) and s not in BUILTIN_NAMES
)

_TEMPLATE = """\
import math
from functools import lru_cache

def {h}(v):
    return v * 2

@lru_cache(maxsize=None)
def {name}({a}, {b}=3):
    '''Doc.'''
    if {a} <= 0:
        return {h}({b})
    total = math.floor({a} / 2)
    return total + {name}({a} - 1, {b}=[{b}][0])
"""


@settings(max_examples=150, deadline=None)
@given(_IDENT, _IDENT, _IDENT, _IDENT)
def test_renaming_preserves_structure_and_is_idempotent(name: str, a: str, b: str, h: str) -> None:
    assume(len({name, a, b, h, "f", "v", "total"}) == 7)
    assume(not {name, a, b, h} & {"math", "lru_cache", "functools"})
    original = _TEMPLATE.format(name=name, a=a, b=b, h=h)
    expected = _TEMPLATE.format(name="f", a=a, b=b, h=h)
    out = _ok(original)
    assert out.entry_name == name
    # Same tree as the program written with ``f`` in the first place (docstrings dropped by
    # neither, comments by both), and a fixed point of normalisation.
    assert ast.dump(ast.parse(out.source)) == ast.dump(ast.parse(_ok(expected).source))
    assert _ok(out.source).source == out.source
    tree = ast.parse(out.source)
    assert not any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(tree))


def test_cruxeval_programs_normalise_idempotently(cruxeval_rows: list[dict[str, str]]) -> None:
    results = [normalize_program(row["code"]) for row in cruxeval_rows]
    normalized = [r for r in results if isinstance(r, NormalizedProgram)]
    # A few rows use names like ``list`` at module level or top-level statements; all others
    # must normalise, and every normalised program is a fixed point.
    assert len(normalized) >= 390
    for out in normalized:
        assert _ok(out.source).source == out.source

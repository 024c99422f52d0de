"""Static checks on answers: literal values, argument lists, the safety policy."""

from __future__ import annotations

import ast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from azr.tasks import (
    AnswerForm,
    Reason,
    Rejected,
    SafetyPolicy,
    canonical_arguments,
    canonical_value,
    check_safety,
)
from azr.tasks.ast_checks import is_literal

SAFE = SafetyPolicy()

# Plain data of the kinds ``repr`` round-trips; their reprs must all count as literals.
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.complex_numbers(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.binary(max_size=8),
)
_HASHABLE = st.recursive(
    st.one_of(st.none(), st.integers(), st.text(max_size=4)),
    lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3),
    max_leaves=6,
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner)
        | st.tuples(inner, inner)
        | st.dictionaries(_HASHABLE, inner, max_size=3)
        | st.sets(_HASHABLE, max_size=3)
        | st.frozensets(_HASHABLE, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(_VALUES)
def test_every_plain_repr_is_a_literal(value: object) -> None:
    text = repr(value)
    tree = ast.parse(text, mode="eval")
    assert is_literal(tree.body), text
    assert canonical_value(text, form="literal", max_bytes=1 << 20, safety=SAFE) == text


@pytest.mark.parametrize(
    "text",
    ["1 + 1", "f(1)", "(lambda: 5)()", "x", "[i for i in range(3)]", "{**{}}", "'a' * 3",
     "set([1]) if 1 else 2", "frozenset(*[[1]])", "sum([1, 2])", "-'a'", "1 + 2", "(1+2j) * 2"],
)  # fmt: skip
def test_computed_values_are_not_literals(text: str) -> None:
    result = canonical_value(text, form="literal", max_bytes=1000, safety=SAFE)
    assert isinstance(result, Rejected) and result.reason is Reason.NOT_LITERAL


def test_special_floats_and_complex_are_literals() -> None:
    for text in ["inf", "-inf", "nan", "(1+2j)", "-1-2j", "1j", "frozenset({1, 2})", "set()"]:
        assert canonical_value(text, form="literal", max_bytes=100, safety=SAFE) == text


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("1, 2", "1, 2"),
        ("[1,-2], 'x'  # a trailing comment", "[1, -2], 'x'"),
        ('"a"', "'a'"),
        ("\n  (1,\n 2)\n", "(1, 2)"),
        ("x=1, *[2]", "*[2], x=1"),
    ],
)
def test_argument_lists_are_canonicalised(text: str, canonical: str) -> None:
    result = canonical_arguments(text, form="expression", max_bytes=1000, safety=SAFE)
    assert result == canonical


@pytest.mark.parametrize(
    "text", ["0) or (5", "1)(2", "1), f(2", "1)[0", "1).real + (2", ")", "1,) if 0 else (2"]
)
def test_argument_injection_is_refused(text: str) -> None:
    forms: tuple[AnswerForm, ...] = ("literal", "expression")
    for form in forms:
        result = canonical_arguments(text, form=form, max_bytes=1000, safety=SAFE)
        assert isinstance(result, Rejected) and result.reason is Reason.SYNTAX


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('true')",
        "(x := 3)",
        "[].__class__.__base__.__subclasses__()",
        "getattr(1, 'real')",
        "eval('1')",
        "globals()",
        "__builtins__",
        "open('/etc/passwd')",
    ],
)
def test_expressions_respect_the_safety_policy(text: str) -> None:
    for result in (
        canonical_arguments(text, form="expression", max_bytes=1000, safety=SAFE),
        canonical_value(text, form="expression", max_bytes=1000, safety=SAFE),
    ):
        assert isinstance(result, Rejected) and result.reason is Reason.FORBIDDEN, (text, result)


def test_expression_form_accepts_ordinary_expressions() -> None:
    text = "[6, 4], (lambda x: x.reverse()), dict(a=1), range(3), 'ab'.upper()"
    result = canonical_arguments(text, form="expression", max_bytes=1000, safety=SAFE)
    assert isinstance(result, str)
    assert isinstance(
        canonical_arguments(text, form="literal", max_bytes=1000, safety=SAFE), Rejected
    )


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60), st.sampled_from(["literal", "expression"]))
def test_never_raise(text: str, form: AnswerForm) -> None:
    for result in (
        canonical_arguments(text, form=form, max_bytes=200, safety=SAFE),
        canonical_value(text, form=form, max_bytes=200, safety=SAFE),
    ):
        assert isinstance(result, str | Rejected)


def test_size_and_encoding_limits() -> None:
    big = "'" + "a" * 2_000 + "'"
    for result in (
        canonical_value(big, form="literal", max_bytes=1000, safety=SAFE),
        canonical_arguments(big, form="literal", max_bytes=1000, safety=SAFE),
    ):
        assert isinstance(result, Rejected) and result.reason is Reason.TOO_LARGE
    for result in (
        canonical_value("'\udcff'", form="literal", max_bytes=1000, safety=SAFE),
        canonical_arguments("'\udcff'", form="literal", max_bytes=1000, safety=SAFE),
    ):
        assert isinstance(result, Rejected) and result.reason is Reason.FORMAT


@pytest.mark.parametrize(
    "source",
    [
        "def f(input):\n    return input",
        "def f(id, open=1):\n    return [id, open]",
        "def f(x):\n    compile = str\n    return compile(x)",
        "def f(x):\n    def g():\n        return vars\n    vars = x\n    return g()",
        "def f(x):\n    return [input for input in x]",
        "def f(x):\n    return (lambda eval: eval)(x)",
        "def f(x):\n    return (y := x)",
    ],
)
def test_locally_bound_names_are_variables(source: str) -> None:
    assert check_safety(ast.parse(source), SAFE) is None


@pytest.mark.parametrize(
    "source",
    [
        "def f(eval=eval):\n    return eval('1')",
        "def f(x):\n    return (lambda e=eval: e)(x)",
        "def f(x):\n    return [eval('1') for eval in [eval]]",
        "@exec\ndef f(x):\n    return x",
        "class A:\n    open = 1\n    def m(self):\n        return open('x')",
        "def f(x):\n    return eval",
    ],
)
def test_builtins_cannot_be_laundered(source: str) -> None:
    result = check_safety(ast.parse(source), SAFE)
    assert result is not None and result.reason is Reason.FORBIDDEN

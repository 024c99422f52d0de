# ruff: noqa: E501, E731
"""A seeded generator of small typed Python functions, their inputs and a hint about each.

The base model learns Python and the self-play format from these programs, and the held-out
evaluation draws its tasks from the same generator with another seed, so the two share a
distribution (as a pretrained model's knowledge and a benchmark do) but not items.

Every program is one short typed function ``f`` over ints, strings, lists or dicts, built from a
family (a loop, a comprehension, a conditional, a string or dict operation) with random
constants, operators and argument names. :func:`generate` is a pure function of its seed; the
outputs of the programs are not computed here but by the sandbox (see :mod:`.corpus`).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator
from typing import Final

import msgspec

__all__ = ["GeneratedProgram", "generate", "generate_warmup", "program_hash", "program_stream"]


class GeneratedProgram(msgspec.Struct, frozen=True):
    """A program defining ``f``, inputs for it (argument-list text) and a one-line hint."""

    program: str
    inputs: tuple[str, ...]
    message: str
    family: str


_LIST_NAMES: Final = ("xs", "nums", "values", "items", "arr", "data")
_STR_NAMES: Final = ("s", "text", "word", "line", "name")
_INT_NAMES: Final = ("n", "k", "x", "a", "m")
_WORDS: Final = (
    "apple", "banana", "cat", "dog", "hello", "world", "python", "code", "tree", "river",
    "stone", "light", "sun", "moon", "red", "blue", "green", "abc", "level", "data",
)  # fmt: skip
_CMP: Final = {">": "greater than", "<": "less than", ">=": "at least", "<=": "at most"}


def _int_list(
    rng: random.Random, lo: int = -9, hi: int = 20, size: tuple[int, int] = (0, 6)
) -> str:
    return repr([rng.randint(lo, hi) for _ in range(rng.randint(*size))])


def _raw_word(rng: random.Random) -> str:
    w = rng.choice(_WORDS)
    if rng.random() < 0.3:
        w = w + rng.choice(_WORDS)
    if rng.random() < 0.2:
        w = w.capitalize()
    return w


def _word(rng: random.Random) -> str:
    return repr(_raw_word(rng))


def _inputs(rng: random.Random, draw: Callable[[], str], count: int) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for _ in range(count * 4):
        seen.setdefault(draw(), None)
        if len(seen) == count:
            break
    return tuple(seen)


Family = Callable[[random.Random, int], GeneratedProgram]


def _sum_filter(rng: random.Random, k: int) -> GeneratedProgram:
    xs, op, c = rng.choice(_LIST_NAMES), rng.choice(list(_CMP)), rng.randint(-3, 10)
    agg = rng.choice(["sum", "len", "max_or_zero"])
    if agg == "max_or_zero":
        body = f"    kept = [v for v in {xs} if v {op} {c}]\n    return max(kept) if kept else 0"
        what = "the largest"
    else:
        body = f"    return {agg}([v for v in {xs} if v {op} {c}])"
        what = "the sum" if agg == "sum" else "the count"
    program = f"def f({xs}: list[int]) -> int:\n{body}"
    message = f"Gives {what} of the numbers {_CMP[op]} {c}."
    return GeneratedProgram(program, _inputs(rng, lambda: _int_list(rng), k), message, "sum_filter")


def _map_list(rng: random.Random, k: int) -> GeneratedProgram:
    xs = rng.choice(_LIST_NAMES)
    a, b = rng.randint(2, 5), rng.randint(-5, 9)
    kind = rng.choice(["mul_add", "square", "mod", "neg_abs"])
    expr, message = {
        "mul_add": (f"v * {a} + {b}", f"Multiplies every number by {a} and adds {b}."),
        "square": ("v * v", "Squares every number."),
        "mod": (f"v % {a}", f"Replaces every number by its remainder modulo {a}."),
        "neg_abs": ("abs(v) - 1", "Takes one less than the absolute value of every number."),
    }[kind]
    program = f"def f({xs}: list[int]) -> list[int]:\n    return [{expr} for v in {xs}]"
    return GeneratedProgram(program, _inputs(rng, lambda: _int_list(rng), k), message, "map_list")


def _loop_acc(rng: random.Random, k: int) -> GeneratedProgram:
    xs = rng.choice(_LIST_NAMES)
    start, c = rng.randint(0, 3), rng.randint(1, 4)
    kind = rng.choice(["alt", "running_max", "count_up", "weighted"])
    if kind == "alt":
        body = (
            f"    total = {start}\n    for i, v in enumerate({xs}):\n"
            f"        if i % 2 == 0:\n            total += v\n        else:\n"
            f"            total -= v\n    return total"
        )
        message = f"Starts at {start}, adds the numbers at even positions, subtracts the others."
    elif kind == "running_max":
        body = (
            f"    best = {start}\n    out = []\n    for v in {xs}:\n        best = max(best, v)\n"
            f"        out.append(best)\n    return out"
        )
        message = f"The running maximum of the list, starting from {start}."
    elif kind == "count_up":
        body = (
            f"    count = 0\n    for i in range(1, len({xs})):\n"
            f"        if {xs}[i] > {xs}[i - 1]:\n            count += {c}\n    return count"
        )
        message = f"Counts {c} for every number larger than the one before it."
    else:
        body = (
            f"    total = {start}\n    for i, v in enumerate({xs}):\n"
            f"        total += (i + {c}) * v\n    return total"
        )
        message = f"A weighted sum: each number times its position plus {c}, plus {start}."
    ret = "list[int]" if kind == "running_max" else "int"
    program = f"def f({xs}: list[int]) -> {ret}:\n{body}"
    return GeneratedProgram(
        program, _inputs(rng, lambda: _int_list(rng, -5, 9), k), message, "loop_acc"
    )


def _int_branch(rng: random.Random, k: int) -> GeneratedProgram:
    n, op, c = rng.choice(_INT_NAMES), rng.choice(list(_CMP)), rng.randint(-5, 15)
    a, b = rng.randint(2, 4), rng.randint(1, 9)
    program = (
        f"def f({n}: int) -> int:\n    if {n} {op} {c}:\n        return {n} * {a}\n"
        f"    return {n} - {b}"
    )
    message = f"Multiplies by {a} when the number is {_CMP[op]} {c}, otherwise subtracts {b}."
    return GeneratedProgram(
        program, _inputs(rng, lambda: str(rng.randint(-10, 30)), k), message, "int_branch"
    )


def _int_loop(rng: random.Random, k: int) -> GeneratedProgram:
    n = rng.choice(_INT_NAMES)
    kind = rng.choice(["digits", "sum_range", "collatz", "div_count"])
    c = rng.randint(2, 4)
    if kind == "digits":
        body = f"    total = 0\n    for ch in str(abs({n})):\n        total += int(ch)\n    return total"
        message = "Adds up the decimal digits of the number."
        draw = lambda: str(rng.randint(-999, 9999))
    elif kind == "sum_range":
        body = f"    return sum(i for i in range({n}) if i % {c} == 0)"
        message = f"Sums the multiples of {c} below the number."
        draw = lambda: str(rng.randint(0, 30))
    elif kind == "collatz":
        body = (
            f"    steps = 0\n    while {n} > 1:\n        {n} = {n} // 2 if {n} % 2 == 0 else 3 * {n} + 1\n"
            f"        steps += 1\n    return steps"
        )
        message = "Counts the Collatz steps until the number reaches 1."
        draw = lambda: str(rng.randint(1, 30))
    else:
        body = f"    count = 0\n    while {n} % {c} == 0 and {n} > 0:\n        {n} //= {c}\n        count += 1\n    return count"
        message = f"How many times the number divides by {c}."
        draw = lambda: str(
            rng.choice([rng.randint(0, 50), c ** rng.randint(0, 4) * rng.randint(1, 5)])
        )
    program = f"def f({n}: int) -> int:\n{body}"
    return GeneratedProgram(program, _inputs(rng, draw, k), message, "int_loop")


def _two_ints(rng: random.Random, k: int) -> GeneratedProgram:
    a, b = rng.sample(_INT_NAMES, 2)
    kind = rng.choice(["lin", "minmax", "pow_mod", "floordiv"])
    p, q = rng.randint(1, 5), rng.randint(2, 7)
    expr, message = {
        "lin": (f"{a} * {p} - {b}", f"{p} times the first number minus the second."),
        "minmax": (
            f"max({a}, {b}) - min({a}, {b}) + {p}",
            f"The distance between the numbers plus {p}.",
        ),
        "pow_mod": (
            f"({a} * {a} + {b}) % {q}",
            f"The square of the first plus the second, modulo {q}.",
        ),
        "floordiv": (f"({a} + {b}) // {q}", f"The sum of the numbers floor-divided by {q}."),
    }[kind]
    program = f"def f({a}: int, {b}: int) -> int:\n    return {expr}"
    draw = lambda: f"{rng.randint(-10, 20)}, {rng.randint(-10, 20)}"
    return GeneratedProgram(program, _inputs(rng, draw, k), message, "two_ints")


def _string_op(rng: random.Random, k: int) -> GeneratedProgram:
    s = rng.choice(_STR_NAMES)
    kind = rng.choice(["rev_up", "vowels", "slice", "replace", "caesar", "dedup", "palin"])
    ch = rng.choice("aeiou")
    i, j = rng.randint(0, 2), rng.randint(3, 6)
    ret = "str"
    if kind == "rev_up":
        body, message = f"    return {s}[::-1].upper()", "Reverses the text and upper-cases it."
    elif kind == "vowels":
        body, message = f"    return sum(1 for c in {s} if c in 'aeiou')", "Counts the vowels."
        ret = "int"
    elif kind == "slice":
        body, message = (
            f"    return {s}[{i}:{j}] + {s}[:{i}]",
            f"Characters {i} to {j}, then the first {i}.",
        )
    elif kind == "replace":
        rep = rng.choice(["*", "-", "_", "x"])
        body, message = (
            f"    return {s}.replace('{ch}', '{rep}')",
            f"Replaces each '{ch}' with '{rep}'.",
        )
    elif kind == "caesar":
        body = f"    return ''.join(chr((ord(c) - 97 + {j}) % 26 + 97) if c.islower() else c for c in {s})"
        message = f"Shifts every lower-case letter {j} places forward in the alphabet."
    elif kind == "dedup":
        body = f"    out = ''\n    for c in {s}:\n        if c not in out:\n            out += c\n    return out"
        message = "Keeps the first occurrence of each character."
    else:
        body, message = f"    return {s} == {s}[::-1]", "Whether the text reads the same backwards."
        ret = "bool"
    program = f"def f({s}: str) -> {ret}:\n{body}"
    return GeneratedProgram(program, _inputs(rng, lambda: _word(rng), k), message, "string_op")


def _string_list(rng: random.Random, k: int) -> GeneratedProgram:
    xs = rng.choice(("words", "names", "parts", "tokens"))
    kind = rng.choice(["join", "lengths", "longest", "first_letters", "sorted_len"])
    sep = rng.choice([" ", "-", ", ", ""])
    n = rng.randint(3, 6)
    if kind == "join":
        body, message = (
            f"    return {sep!r}.join(w for w in {xs} if len(w) < {n})",
            f"Joins the words shorter than {n} with {sep!r}.",
        )
        ret = "str"
    elif kind == "lengths":
        body, message = f"    return [len(w) for w in {xs}]", "The length of every word."
        ret = "list[int]"
    elif kind == "longest":
        body = f"    best = ''\n    for w in {xs}:\n        if len(w) > len(best):\n            best = w\n    return best"
        message, ret = "The first longest word (empty when there is none).", "str"
    elif kind == "first_letters":
        body, message = (
            f"    return ''.join(w[0] for w in {xs} if w)",
            "The first letters of the words.",
        )
        ret = "str"
    else:
        body, message = f"    return sorted({xs}, key=len)", "The words sorted by length, stable."
        ret = "list[str]"
    program = f"def f({xs}: list[str]) -> {ret}:\n{body}"
    draw = lambda: repr([_raw_word(rng) for _ in range(rng.randint(0, 4))])
    return GeneratedProgram(program, _inputs(rng, draw, k), message, "string_list")


def _dict_op(rng: random.Random, k: int) -> GeneratedProgram:
    kind = rng.choice(["count_chars", "invert", "group_parity", "sum_values", "max_key"])
    if kind == "count_chars":
        s = rng.choice(_STR_NAMES)
        program = (
            f"def f({s}: str) -> dict[str, int]:\n    counts = {{}}\n    for c in {s}:\n"
            f"        counts[c] = counts.get(c, 0) + 1\n    return counts"
        )
        message = "Counts how often each character occurs, in order of first appearance."
        draw = lambda: _word(rng)
    elif kind == "group_parity":
        xs = rng.choice(_LIST_NAMES)
        program = (
            f"def f({xs}: list[int]) -> dict[str, list[int]]:\n    out = {{'even': [], 'odd': []}}\n"
            f"    for v in {xs}:\n        out['even' if v % 2 == 0 else 'odd'].append(v)\n    return out"
        )
        message = "Splits the numbers into even and odd ones."
        draw = lambda: _int_list(rng)
    else:
        d = rng.choice(("d", "table", "scores", "counts"))
        if kind == "invert":
            program = f"def f({d}: dict[str, int]) -> dict[int, str]:\n    return {{v: key for key, v in {d}.items()}}"
            message = "Swaps keys and values (later keys win)."
        elif kind == "sum_values":
            c = rng.randint(0, 5)
            program = f"def f({d}: dict[str, int]) -> int:\n    return sum(v for v in {d}.values() if v > {c})"
            message = f"Sums the values greater than {c}."
        else:
            program = (
                f"def f({d}: dict[str, int]) -> str:\n    best = ''\n    for key in sorted({d}):\n"
                f"        if best == '' or {d}[key] > {d}[best]:\n            best = key\n    return best"
            )
            message = "The alphabetically first key with the largest value."
        draw = lambda: repr({_raw_word(rng): rng.randint(-3, 9) for _ in range(rng.randint(0, 4))})
    return GeneratedProgram(program, _inputs(rng, draw, k), message, "dict_op")


def _nested(rng: random.Random, k: int) -> GeneratedProgram:
    xs = rng.choice(_LIST_NAMES)
    kind = rng.choice(["pairs", "sort_slice", "zip_diff", "set_ops"])
    c = rng.randint(1, 3)
    if kind == "pairs":
        program = (
            f"def f({xs}: list[int]) -> int:\n    count = 0\n    for i in range(len({xs})):\n"
            f"        for j in range(i + 1, len({xs})):\n            if {xs}[i] + {xs}[j] == {c * 3}:\n"
            f"                count += 1\n    return count"
        )
        message = f"Counts the pairs of positions whose numbers add up to {c * 3}."
    elif kind == "sort_slice":
        program = (
            f"def f({xs}: list[int]) -> list[int]:\n    return sorted({xs}, reverse=True)[:{c + 1}]"
        )
        message = f"The {c + 1} largest numbers, largest first."
    elif kind == "zip_diff":
        program = f"def f({xs}: list[int]) -> list[int]:\n    return [b - a for a, b in zip({xs}, {xs}[{c}:])]"
        message = f"Differences between numbers {c} positions apart."
    else:
        program = (
            f"def f({xs}: list[int]) -> list[int]:\n    return sorted(set({xs}) - {{{c}, {c + 1}}})"
        )
        message = f"The distinct numbers other than {c} and {c + 1}, sorted."
    return GeneratedProgram(
        program, _inputs(rng, lambda: _int_list(rng, 0, 9), k), message, "nested"
    )


_FAMILIES: Final[tuple[Family, ...]] = (
    _sum_filter,
    _map_list,
    _loop_acc,
    _int_branch,
    _int_loop,
    _two_ints,
    _string_op,
    _string_list,
    _dict_op,
    _nested,
)


def _warmup(rng: random.Random, k: int) -> GeneratedProgram:
    # One-line functions whose results copy or lightly change their argument (the list itself,
    # reversed, sorted, one element, a length, a small sum). A model can only learn to read its
    # prompt where the answer depends on the prompt in a way it can compute; these give it that
    # (copying circuits), and the harder families then build on them.
    c = rng.randint(1, 5)
    kind = rng.choice(["list", "str", "int"])
    if kind == "list":
        xs = rng.choice(_LIST_NAMES)
        expr, ret, message = rng.choice([
            (xs, "list[int]", "Returns the list unchanged."),
            (f"{xs}[::-1]", "list[int]", "The list reversed."),
            (f"sorted({xs})", "list[int]", "The numbers sorted, smallest first."),
            (f"{xs} + [{c}]", "list[int]", f"The list with {c} appended."),
            (f"[{c}] + {xs}", "list[int]", f"The list with {c} put in front."),
            (f"{xs}[:{c}]", "list[int]", f"The first {c} numbers."),
            (f"{xs}[{c}:]", "list[int]", f"Everything after the first {c} numbers."),
            (f"{xs}[0] if {xs} else {c}", "int", f"The first number, or {c} for an empty list."),
            (f"{xs}[-1] if {xs} else {c}", "int", f"The last number, or {c} for an empty list."),
            (f"len({xs})", "int", "How many numbers there are."),
            (f"len({xs}) + {c}", "int", f"The length of the list plus {c}."),
        ])  # fmt: skip
        draw = lambda: _int_list(rng, 0, 9)
        arg = f"{xs}: list[int]"
    elif kind == "str":
        s = rng.choice(_STR_NAMES)
        expr, ret, message = rng.choice([
            (s, "str", "Returns the text unchanged."),
            (f"{s}.upper()", "str", "The text in upper case."),
            (f"{s}[::-1]", "str", "The text reversed."),
            (f"{s} + {s}", "str", "The text twice."),
            (f"{s}[:{c}]", "str", f"The first {c} characters."),
            (f"len({s})", "int", "The number of characters."),
            (f"{s}[0] if {s} else ''", "str", "The first character (empty text stays empty)."),
        ])  # fmt: skip
        draw = lambda: _word(rng)
        arg = f"{s}: str"
    else:
        n = rng.choice(_INT_NAMES)
        expr, ret, message = rng.choice([
            (f"{n} + {c}", "int", f"Adds {c}."),
            (f"{n} - {c}", "int", f"Subtracts {c}."),
            (f"{n} * {c}", "int", f"Multiplies by {c}."),
            (f"-{n}", "int", "The negated number."),
            (f"{n} // 2", "int", "Half the number, rounded down."),
            (f"{n} % 10", "int", "The last decimal digit."),
        ])  # fmt: skip
        draw = lambda: str(rng.randint(-10, 30))
        arg = f"{n}: int"
    program = f"def f({arg}) -> {ret}:\n    return {expr}"
    return GeneratedProgram(program, _inputs(rng, draw, k), message, "warmup")


def generate_warmup(seed: int, count: int, inputs_per_program: int = 6) -> list[GeneratedProgram]:
    """``count`` one-line copy-and-transform programs (a pure function of ``seed``); not part of
    :func:`generate`, so the held-out set, drawn from :func:`generate`, does not change."""
    rng = random.Random(seed)
    return [_warmup(rng, inputs_per_program) for _ in range(count)]


def generate(seed: int, count: int, inputs_per_program: int = 6) -> list[GeneratedProgram]:
    """``count`` programs (a pure function of ``seed``), families in a seeded random order."""
    rng = random.Random(seed)
    return [rng.choice(_FAMILIES)(rng, inputs_per_program) for _ in range(count)]


def program_stream(seed: int, inputs_per_program: int = 6) -> Iterator[GeneratedProgram]:
    """An endless :func:`generate`."""
    rng = random.Random(seed)
    while True:
        yield rng.choice(_FAMILIES)(rng, inputs_per_program)


def program_hash(source: str) -> str:
    """SHA-256 of the normalised program (entry renamed to ``f``, comments and layout gone), so
    that the same function written differently hashes the same; the raw text if it does not
    normalise."""
    from azr.tasks.normalize import normalize_program

    normalized = normalize_program(source)
    text = normalized.source if hasattr(normalized, "source") else source
    return hashlib.sha256(text.encode("utf-8")).hexdigest()

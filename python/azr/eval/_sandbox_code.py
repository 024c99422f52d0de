"""Trusted code that runs INSIDE the sandbox (never imported by the host for its behaviour).

The host reads this file's text and sends it as the program of a sandboxed job; the job then
calls ``f(...)``. Two roles, never mixed in one job:

* ``f("run", ...)``: load a candidate's source with ``exec`` and call it once per test input,
  each call under its own interval timer, collecting ``(statuses, outputs)``. The candidate runs
  in this interpreter and may tamper with anything here; that is harmless, because all this job
  can hand back is a value the host checks to be a pure literal (no code, no objects).
* ``f("compare", ...)``: a fresh sandbox that holds only this trusted code, the expected values
  and the candidate's outputs as literal data, and decides one verdict per input.

Only the standard library is used (numpy would cost ~100 ms per job to import).
"""

# mypy: ignore-errors

import copy
import hashlib
import io
import itertools
import json
import marshal
import signal
import sys
import time
from decimal import Decimal, InvalidOperation

_OK, _RAISED, _TIMEOUT, _UNREPRESENTABLE, _NOT_RUN = 0, 1, 2, 3, 4
_PLAIN_SCALARS = (type(None), bool, int, float, complex, str, bytes)
_MAX_DEPTH = 100
# Names the literal texts spliced into a comparator job may use (see azr.eval._literal).
inf = float("inf")
nan = float("nan")


class _Timeout(BaseException):
    """Raised by the interval timer inside a test call (BaseException: not caught by
    a candidate's ``except Exception``)."""


def _alarm(signum, frame):
    raise _Timeout()


_SCALAR_SET = frozenset(_PLAIN_SCALARS)
# Containers of only these have their repr as canonical text (computed at C speed).
_STR_ONLY = frozenset({str})
_INT_ONLY = frozenset({int})
_TUPLE_ONLY = frozenset({tuple})
_SEQUENCES = frozenset({tuple, list})
_LIST_ONLY = frozenset({list})


def _plain(x, depth=0):
    t = type(x)
    if t in _PLAIN_SCALARS:
        return True
    if depth > _MAX_DEPTH:
        return False
    if t is list or t is tuple or t is set or t is frozenset:
        # Containers of scalars (the common case, often millions of them) at C speed.
        kinds = set(map(type, x))
        if kinds <= _SCALAR_SET:
            return True
        if kinds <= _SEQUENCES and set(map(type, itertools.chain.from_iterable(x))) <= _SCALAR_SET:
            return True
        return all(_plain(v, depth + 1) for v in x)
    if t is dict:
        return all(_plain(k, depth + 1) and _plain(v, depth + 1) for k, v in x.items())
    return False


def _scalars_repr_safe(items):
    kinds = set(map(type, items))
    if kinds <= _STR_ONLY:
        return True
    return kinds == _INT_ONLY and max(map(abs, items)).bit_length() <= 20000


def _repr_is_canonical(x):
    # Flat containers of ints or of strings, or containers of those (lists of tuples of ints,
    # say): checked without a Python-level loop over the elements.
    kinds = set(map(type, x))
    if not kinds or kinds <= _STR_ONLY:
        return True
    if kinds == _INT_ONLY:
        return _scalars_repr_safe(x)
    if kinds in (_TUPLE_ONLY, _LIST_ONLY):
        inner = list(itertools.chain.from_iterable(x))
        return not inner or _scalars_repr_safe(inner)
    return False


def _canon(x, parts):
    # A text that is equal for two plain values exactly when they are ==: ints, int-valued
    # floats and bools alike, dicts and sets in sorted order, and otherwise the repr (so a
    # container of ints and strings is its repr, computed at C speed). Huge ints as hex
    # (linear time; a decimal repr never starts with 0x).
    t = type(x)
    if t is bool:
        parts.append("1" if x else "0")
    elif t is int:
        parts.append(hex(x) if x.bit_length() > 20000 else repr(x))
    elif t is float:
        if x == x and x not in (inf, -inf) and x == int(x):
            _canon(int(x), parts)
        else:
            parts.append(repr(x))
    elif t is complex:
        if x.imag == 0:
            _canon(x.real, parts)
        else:
            parts.append(repr(x))
    elif t is list or t is tuple:
        if _repr_is_canonical(x):
            parts.append(repr(x))
            return parts
        parts.append("[" if t is list else "(")
        for j, v in enumerate(x):
            if j:
                parts.append(", ")
            _canon(v, parts)
        parts.append("]" if t is list else (",)" if len(x) == 1 else ")"))
    elif t is dict:
        items = sorted("".join(_canon(k, [])) + ": " + "".join(_canon(v, [])) for k, v in x.items())
        parts.append("{" + ", ".join(items) + "}")
    elif t is set or t is frozenset:
        parts.append(
            "{" + ", ".join(sorted("".join(_canon(v, [])) for v in x)) + "}" if x else "set()"
        )
    else:
        parts.append(repr(x))
    return parts


def _digest(x):
    return (
        "sha256:"
        + hashlib.sha256("".join(_canon(x, [])).encode("utf-8", "surrogatepass")).hexdigest()
    )


def _big(x, budget):
    # Whether the repr of x would exceed budget characters, without building it (a huge int's
    # decimal repr alone can take seconds). Returns the budget left, negative when over.
    t = type(x)
    if t is int:
        return budget - (x.bit_length() * 3 // 10 + 2)
    if t is str or t is bytes:
        return budget - len(x) - 3
    if t is list or t is tuple or t is set or t is frozenset:
        budget -= 2
        for v in x:
            budget = _big(v, budget - 2)
            if budget < 0:
                break
        return budget
    if t is dict:
        budget -= 2
        for k, v in x.items():
            budget = _big(v, _big(k, budget - 4))
            if budget < 0:
                break
        return budget
    return budget - 24


# Outputs whose repr is longer than this travel as a digest of their canonical text (only where
# the comparison is exact): a candidate can match a digest only by producing an equal value.
_DIGEST_OVER = 2048


def _plainify(x, depth=0):
    # Subclasses of the plain types (Counter, OrderedDict, defaultdict, namedtuple, IntEnum)
    # compare equal to their plain counterparts; they travel as those. Anything else: None.
    t = type(x)
    if t in _PLAIN_SCALARS:
        return x
    if depth > _MAX_DEPTH:
        raise ValueError("too deeply nested")
    if isinstance(x, dict):
        return {_plainify(k, depth + 1): _plainify(v, depth + 1) for k, v in dict.items(x)}
    if isinstance(x, tuple):
        return tuple(_plainify(v, depth + 1) for v in tuple.__iter__(x))
    if isinstance(x, list):
        return [_plainify(v, depth + 1) for v in list.__iter__(x)]
    if isinstance(x, frozenset):
        return frozenset(_plainify(v, depth + 1) for v in frozenset.__iter__(x))
    if isinstance(x, set):
        return {_plainify(v, depth + 1) for v in set.__iter__(x)}
    if isinstance(x, bool):
        return bool(x)
    for base in (int, float, complex, str, bytes):
        if isinstance(x, base):
            return base(x)
    raise ValueError("not plain data")


def _lists(x):
    # LiveCodeBench compares JSON values, in which tuples are lists.
    if type(x) is tuple or type(x) is list:
        return [_lists(v) for v in x]
    if type(x) is dict:
        return {k: _lists(v) for k, v in x.items()}
    return x


# ---------------------------------------------------------------------------------------------
# Argument decoding: EvalPlus stores inputs as JSON, which has no tuples, sets or complex
# numbers; MBPP+ names, per task, which argument shapes must be rebuilt (a fact of the dataset).
# ---------------------------------------------------------------------------------------------


def _copy(x):
    # A deep copy at C speed (plain data only, which JSON inputs are); deepcopy otherwise.
    try:
        return marshal.loads(marshal.dumps(x))
    except (ValueError, TypeError):
        return copy.deepcopy(x)


def _tuples_deep(x):
    if isinstance(x, list):
        return tuple(_tuples_deep(v) for v in x)
    return x


def _convert(conv, args):
    if not conv:
        return args
    if conv == "args_to_tuples":
        return [tuple(a) for a in args]
    if conv == "args_items_to_tuples":
        return [[tuple(x) for x in a] for a in args]
    if conv == "first_items_to_tuples":
        return [[tuple(x) for x in args[0]], args[1]]
    if conv == "second_to_tuple":
        return [args[0], tuple(args[1])]
    if conv == "first_items_to_sets":
        return [[set(x) if isinstance(x, list) and len(x) else {} for x in args[0]]]
    if conv == "float_complex":
        return [float(args[0]), complex(args[1])]
    if conv == "first_to_tuple":
        return [tuple(args[0]), *args[1:]]
    if conv == "nested_then_args_to_tuples":
        return [tuple(tuple(x) for x in a) for a in args]
    if conv == "mixed_items_to_tuples":
        return [tuple(tuple(x) if isinstance(x, list) else x for x in args[0])]
    if conv == "dict_values_to_tuples":
        return [{k: tuple(v) for k, v in args[0].items()}, *args[1:]]
    if conv == "complex":
        return [complex(args[0])]
    if conv == "all_lists_to_tuples":
        return _tuples_deep(args)
    raise ValueError("unknown input conversion " + repr(conv))


# ---------------------------------------------------------------------------------------------
# Running a candidate
# ---------------------------------------------------------------------------------------------


def _call_stdio(code, text):
    # A fresh module namespace per test, stdin from the test, stdout captured.
    out = io.BytesIO()
    stdout = io.TextIOWrapper(out, encoding="utf-8", write_through=True)
    stdin = io.TextIOWrapper(io.BytesIO(text.encode("utf-8")), encoding="utf-8")
    saved = sys.stdin, sys.stdout
    sys.stdin, sys.stdout = stdin, stdout
    try:
        try:
            exec(code, {"__name__": "__main__", "__builtins__": __builtins__})
        except SystemExit as e:
            if e.code not in (None, 0):
                raise
        stdout.flush()
    finally:
        sys.stdin, sys.stdout = saved
    return out.getvalue().decode("utf-8", "replace")


def _run(mode, source, entry, inputs, conv, limits, budget, record_times, not_none, digest):
    """Returns ``(statuses, outputs, times, digested)``; ``times`` is empty unless
    ``record_times``. ``digest`` is a list of input indices whose outputs are sent as digests,
    or None to choose (reference runs): large outputs without floats."""
    if type(inputs) is str:
        inputs = json.loads(inputs)
    n = len(inputs)
    statuses = [_NOT_RUN] * n
    outputs = [None] * n
    times = []
    choose = digest is None
    digested = [] if choose else digest
    wanted = set(digested)
    signal.signal(signal.SIGALRM, _alarm)
    prelude = ""
    if mode == "method":
        # LiveCodeBench's functional problems assume these names (typing, collections, ...).
        prelude = (
            "from typing import *\nfrom collections import *\nfrom functools import *\n"
            "from itertools import *\nfrom heapq import *\nfrom bisect import *\n"
            "import math, string, re, collections, heapq, bisect, itertools, functools\n"
        )
    code = compile(prelude + source, "<solution>", "exec")
    fn = None
    if mode != "stdio":
        env = {"__name__": "__main__", "__builtins__": __builtins__}
        sink = io.StringIO()
        saved = sys.stdout
        sys.stdout = sink
        try:
            exec(code, env)
        finally:
            sys.stdout = saved
        fn = env[entry] if mode == "function" else getattr(env["Solution"](), entry)
    start = time.perf_counter()
    for i in range(n):
        if time.perf_counter() - start > budget:
            break
        raw = inputs[i]
        if mode == "stdio":
            args = raw
        elif mode == "method":
            args = [json.loads(line) for line in raw.split("\n") if line.strip()]
        else:
            args = _convert(conv, _copy(raw))
        sink = io.StringIO()
        saved = sys.stdout
        t0 = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, limits[i])
        try:
            try:
                if mode == "stdio":
                    out = _call_stdio(code, args)
                else:
                    sys.stdout = sink
                    out = fn(*args)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                sys.stdout = saved
        except _Timeout:
            statuses[i] = _TIMEOUT
            times.append(time.perf_counter() - t0)
            break  # the rest would only burn the problem's budget
        except BaseException:
            statuses[i] = _RAISED
            times.append(time.perf_counter() - t0)
            continue
        times.append(time.perf_counter() - t0)
        if not_none:
            out = out if type(out) is bool else out is not None
        if mode == "method":
            out = _lists(out)
        if not _plain(out):
            try:
                out = _plainify(out)
            except BaseException:
                statuses[i] = _UNREPRESENTABLE
                continue
        statuses[i] = _OK
        # Digests only where EvalPlus compares exactly: not a float or a flat list of floats
        # (those get a tolerance); floats nested deeper compare exactly, as in EvalPlus.
        if choose and not _is_floats(out) and _big(out, _DIGEST_OVER) < 0:
            digested.append(i)
            wanted.add(i)
        outputs[i] = _digest(out) if i in wanted else out
    return statuses, outputs, (times if record_times else []), digested


# ---------------------------------------------------------------------------------------------
# Comparing (trusted job: no candidate code here, only its outputs as literal data)
# ---------------------------------------------------------------------------------------------


def _is_number(x):
    return type(x) in (int, float, bool)


def _close(a, b, atol, rtol):
    # numpy.allclose semantics on scalars and (nested) sequences: |a - b| <= atol + rtol * |b|,
    # equal infinities are close, NaN is never close.
    if _is_number(a) and _is_number(b):
        if a == b:
            return True
        if (
            a != a
            or b != b
            or a in (float("inf"), float("-inf"))
            or b
            in (
                float("inf"),
                float("-inf"),
            )
        ):
            return False
        return abs(a - b) <= atol + rtol * abs(b)
    if type(a) in (list, tuple) and type(b) in (list, tuple):
        return len(a) == len(b) and all(
            _close(x, y, atol, rtol) for x, y in zip(a, b, strict=False)
        )
    return False


def _is_floats(x):
    if type(x) is float:
        return True
    if type(x) in (list, tuple) and x:
        return all(type(v) is float for v in x)
    return False


def _poly(xs, x):
    import math

    return sum(c * math.pow(x, i) for i, c in enumerate(xs))


def _surface_area(base_edge, height):
    import math

    slant = math.sqrt((base_edge / 2) ** 2 + height**2)
    return round(base_edge**2 + 2 * base_edge * slant)


def _digit_distance(a, b):
    x, y = str(a), str(b)
    width = max(len(x), len(y))
    return sum(abs(int(p) - int(q)) for p, q in zip(x.zfill(width), y.zfill(width), strict=False))


def _evalplus_match(out, exp, atol, oracle, args):
    # EvalPlus's differential test for one input, with its documented special oracles.
    if oracle == "poly_root":
        return abs(_poly(args[0], out)) <= atol
    exact = out == exp
    if oracle == "any":
        exact = True
    elif oracle == "zero_or_equal":
        exact = exact or out == 0
    elif oracle == "surface_area":
        exact = exact or abs(out - _surface_area(*args)) <= atol
    elif oracle == "digit_distance":
        exact = exact or out == _digit_distance(*args)
    elif oracle == "set_equal":
        exact = set(out) == set(exp)
    if atol == 0 and _is_floats(exp):
        atol = 1e-6
    if exact is True:
        return True
    if atol != 0:
        if type(out) is not type(exp):
            return False
        return _close(out, exp, atol, 1e-7)
    return False


def _stdout_match(out, exp):
    # LiveCodeBench's rule: compare stripped lines; failing that, compare whitespace-separated
    # tokens, numerically (as decimals) where both parse as numbers.
    a = [line.strip() for line in out.strip().split("\n")]
    b = [line.strip() for line in exp.strip().split("\n")]
    if a == b:
        return True
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=False):
        if x == y:
            continue
        tx, ty = x.split(), y.split()
        if len(tx) != len(ty):
            return False
        for p, q in zip(tx, ty, strict=False):
            if p == q:
                continue
            try:
                if Decimal(p) != Decimal(q):
                    return False
            except (InvalidOperation, ValueError):
                return False
    return True


def _compare(kind, expected, outputs, statuses, atol, oracle, inputs, conv):
    if type(inputs) is str:
        inputs = json.loads(inputs) if inputs else []
    verdicts = []
    for i, exp in enumerate(expected):
        if i >= len(statuses) or statuses[i] != _OK:
            verdicts.append(False)
            continue
        out = outputs[i]
        try:
            if kind == "evalplus":
                args = _convert(conv, _copy(inputs[i])) if oracle else None
                ok = _evalplus_match(out, exp, atol, oracle, args)
            elif kind == "json":
                ok = out == json.loads(exp)
            else:
                ok = type(out) is str and _stdout_match(out, exp)
            verdicts.append(ok is True)
        except BaseException:
            verdicts.append(False)
    return verdicts


def f(role, *args):
    if role == "run":
        return _run(*args)
    if role == "compare":
        return _compare(*args)
    raise ValueError("unknown role " + repr(role))

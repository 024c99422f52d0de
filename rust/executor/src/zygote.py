# The zygote: run as `python -s -S -P -c <this> EXTENSION STAGING CONFIG [READ_PATH...]`.
#
# It loads the compiled executor module from its file (no site-packages: programs see only the
# standard library), imports what programs commonly use once, freezes the heap for cheap forks,
# and hands control to the Rust loop. That loop returns here only inside a forked, sandboxed
# child, which runs exactly one job, reports on fd 3 and exits without any interpreter teardown.
import sys


def _load(path):
    # The import system's own frozen modules, already loaded: `importlib.util` would add about
    # 0.75 MiB to the heap that every fork copies and every child tears down.
    import _frozen_importlib as bootstrap
    import _frozen_importlib_external as external

    loader = external.ExtensionFileLoader("azr._executor", path)
    spec = external.spec_from_file_location("azr._executor", path, loader=loader)
    mod = bootstrap.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


_ext = _load(sys.argv[1])
# Read by the dynamic loader at start only; programs see the environment without it.
import os  # noqa: E402

os.environ.pop("LD_BIND_NOW", None)
_staging = sys.argv[2]
_config = sys.argv[3]
_extra_paths = sys.argv[4:]

# Preloaded so that children fork with them already imported (and never need to read files).
# Every module here costs each execution its pages (copied page tables at fork, torn down at
# exit): `ast` (0.7 MiB; the parser is `_ast`) and `traceback` (0.4 MiB) stay out, and a
# program that imports them reads them from the standard library.
import _ast  # noqa: E402
import bisect  # noqa: E402,F401
import builtins  # noqa: E402
import collections  # noqa: E402,F401
import copy  # noqa: E402,F401
import datetime  # noqa: E402
import functools  # noqa: E402,F401
import gc  # noqa: E402
import heapq  # noqa: E402,F401
import itertools  # noqa: E402,F401
import marshal  # noqa: E402
import math  # noqa: E402,F401
import operator  # noqa: E402,F401
import os  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402,F401
import string  # noqa: E402,F401
import time  # noqa: E402
import typing  # noqa: E402,F401
import unicodedata  # noqa: E402,F401


def _quit(code=None):
    raise SystemExit(code)


# `site` (skipped with -S) normally provides these; programs call them.
builtins.exit = builtins.quit = _quit

# Child report codes (mirrored in outcome.rs).
_OK, _ERROR, _MEMORY, _TOO_LARGE, _VIOLATION = 0, 1, 2, 3, 4
_ERROR_CAP = 4000

# Bound now, before any program runs: a program may rebind names in these modules, but not
# these references.
_write = os.write
_exit = os._exit
_dumps = marshal.dumps
_repr = repr
_type = type
_len = len
_isinstance = isinstance
_str_slice = str.__getitem__
_stdout = sys.stdout
_compile = compile
_AST_ONLY = _ast.PyCF_ONLY_AST
_Call, _Name = _ast.Call, _ast.Name
_EPERM = {1, 13, 30}  # EPERM, EACCES, EROFS: what the sandbox answers


def _exact(s, cap):
    # An exact str of at most cap characters, even from a str subclass with odd methods.
    return _str_slice(s, slice(0, cap))


def _describe(e):
    try:
        name = _type(e).__name__
        text = str(e)
        msg = f"{name}: {text}" if text else name
    except BaseException:  # noqa: BLE001 - a hostile __str__ must not break the report
        msg = "an exception whose text could not be formatted"
    return _exact(msg, _ERROR_CAP)


def _code_for(e):
    if _isinstance(e, MemoryError):
        return _MEMORY
    if _isinstance(e, OSError) and getattr(e, "errno", None) in _EPERM:
        return _VIOLATION
    if _isinstance(e, RuntimeError) and "can't start new thread" in str(e):
        return _VIOLATION
    return _ERROR


def _call_code(inputs):
    # The input must be an argument list: "f(" + inputs + ")" has to parse as exactly one call
    # of f. Anything else ("0) or (5") would let an answer compute the output itself.
    tree = _compile("f(" + inputs + ")", "<input>", "eval", _AST_ONLY)
    body = tree.body
    if not (
        _isinstance(body, _Call)
        and _isinstance(body.func, _Name)
        and body.func.id == "f"
        and body.func.col_offset == 0
        and body.func.lineno == 1
    ):
        raise ValueError("inputs must be an argument list for f")
    return _compile(tree, "<input>", "eval")


def _execute(kind, program, inputs, value_cap, entry="f"):
    if kind == 0:
        env = {"__name__": "__main__", "__builtins__": builtins}
        exec(compile(program, "<program>", "exec"), env)
        call = env
        if entry != "f":
            if entry not in env:
                raise NameError(f"the program defines no {entry!r}")
            # The call (and only the call) sees the entry point as f; the program's own
            # globals are untouched.
            call = dict(env)
            call["f"] = env[entry]
        value = eval(_call_code(inputs), call)
    else:
        env = {"__builtins__": builtins, "inf": float("inf"), "nan": float("nan")}
        value = eval(compile(program, "<value>", "eval"), env)
    try:
        text = _repr(value)
    except BaseException as e:  # noqa: BLE001
        return _code_for(e), None, None, "the return value has no repr: " + _describe(e)
    text = _exact(text, value_cap + 1)
    if _len(text) > value_cap:
        return _TOO_LARGE, text[:value_cap], None, "the return value's repr exceeds max_value_bytes"
    try:
        blob = _dumps(value, 4)
    except BaseException:  # noqa: BLE001 - not plain data: compared by nothing
        blob = None
    if blob is not None and _len(blob) > 2 * value_cap:
        return _TOO_LARGE, text, None, "the return value exceeds max_value_bytes"
    return _OK, text, blob, None


# A shifted wall clock (Job.clock_offset_s), so that two validation runs of one program see
# different dates and times. Built here once; a job with an offset only rebinds names.
_OFF = [0.0, 0]
_real = {n: getattr(time, n) for n in (
    "time", "time_ns", "localtime", "gmtime", "ctime", "asctime", "strftime", "clock_gettime",
    "clock_gettime_ns",
)}
_RealDateTime, _RealDate = datetime.datetime, datetime.date
_WALL_CLOCKS = {time.CLOCK_REALTIME, getattr(time, "CLOCK_TAI", -1),
                getattr(time, "CLOCK_REALTIME_COARSE", -1)} - {-1}


def _time():
    return _real["time"]() + _OFF[0]


def _time_ns():
    return _real["time_ns"]() + _OFF[1]


def _localtime(secs=None):
    return _real["localtime"](_time() if secs is None else secs)


def _gmtime(secs=None):
    return _real["gmtime"](_time() if secs is None else secs)


def _ctime(secs=None):
    return _real["ctime"](_time() if secs is None else secs)


def _asctime(t=None):
    return _real["asctime"](_localtime() if t is None else t)


def _strftime(fmt, t=None):
    return _real["strftime"](fmt, _localtime() if t is None else t)


def _clock_gettime(clk):
    r = _real["clock_gettime"](clk)
    return r + _OFF[0] if clk in _WALL_CLOCKS else r


def _clock_gettime_ns(clk):
    r = _real["clock_gettime_ns"](clk)
    return r + _OFF[1] if clk in _WALL_CLOCKS else r


class _Real(type):
    # isinstance(x, datetime.datetime) stays true for every real datetime.
    def __instancecheck__(cls, obj):
        return isinstance(obj, cls.__bases__[0])

    def __subclasscheck__(cls, sub):
        return issubclass(sub, cls.__bases__[0])


class _DateTime(_RealDateTime, metaclass=_Real):
    # Everything it makes is a plain datetime (same repr, same type).
    def __new__(cls, *args, **kwargs):
        return _RealDateTime(*args, **kwargs)

    @classmethod
    def now(cls, tz=None):
        return _RealDateTime.fromtimestamp(_time(), tz)

    @classmethod
    def today(cls):
        return _RealDateTime.fromtimestamp(_time())

    @classmethod
    def utcnow(cls):
        return _RealDateTime.utcfromtimestamp(_time())


class _Date(_RealDate, metaclass=_Real):
    def __new__(cls, *args, **kwargs):
        return _RealDate(*args, **kwargs)

    @classmethod
    def today(cls):
        return _RealDate.fromtimestamp(_time())


for _c, _real_c in ((_DateTime, _RealDateTime), (_Date, _RealDate)):
    _c.__name__, _c.__qualname__, _c.__module__ = _real_c.__name__, _real_c.__qualname__, "datetime"


def _shift_clock(offset_ns):
    _OFF[0], _OFF[1] = offset_ns / 1e9, offset_ns
    time.time, time.time_ns, time.localtime, time.gmtime = _time, _time_ns, _localtime, _gmtime
    time.ctime, time.asctime, time.strftime = _ctime, _asctime, _strftime
    time.clock_gettime, time.clock_gettime_ns = _clock_gettime, _clock_gettime_ns
    datetime.datetime, datetime.date = _DateTime, _Date


def _run(job):
    kind, program, inputs, random_seed, recursion_limit, digits, value_cap, clock_ns, entry = job
    try:
        if clock_ns:
            _shift_clock(clock_ns)
        random.seed(random_seed)
        sys.setrecursionlimit(recursion_limit)
        sys.set_int_max_str_digits(digits)
        report = _execute(kind, program, inputs, value_cap, entry)
    except BaseException as e:  # noqa: BLE001 - SystemExit and KeyboardInterrupt included
        report = (_code_for(e), None, None, _describe(e))
    try:
        _stdout.flush()
    except BaseException:  # noqa: BLE001
        pass
    try:
        data = _dumps(report, 4)
    except BaseException:  # noqa: BLE001
        data = _dumps((_ERROR, None, None, "the result could not be encoded"), 4)
    view = memoryview(data)
    while view:
        n = _write(3, view)
        view = view[n:]
    _exit(0)


# Trusted warm-up programs, run once in the zygote before it freezes its heap: the interpreter's
# lazily built state (parser tables, method caches, interned names, codec and repr machinery)
# then lives in pages every child shares, instead of being rebuilt, and copied, in each child.
_WARMUP = [
    ("def f(s, n):\n    return sorted(set(s.split()), key=len)[:n]", "'a bb ccc a', 2"),
    ("def f(d):\n    return {k: v * 2 for k, v in d.items() if k.isalpha()}", "{'a': 1, '2': 3}"),
    ("def f(xs):\n    out = []\n    for i, x in enumerate(xs):\n        out.append((x, i))\n"
     "    return tuple(out), xs.count(1), ''.join(map(str, xs)).zfill(8)", "[3, 1, 2, 1]"),
    ("def f(t):\n    return t.replace('a', 'b').upper().strip().find('B'), t[::-1], f'{t!r:>5}'",
     "' abc '"),
    ("def f(a, b=2.5):\n    return [a ** b, divmod(a, 3), abs(-a), round(b), 1e300 * 10, None]", "7"),
]


def _warm_up():
    for program, inputs in _WARMUP:
        _execute(0, program, inputs, 1 << 16)
    _execute(1, "[{1: (2.0, 'x', b'y', None, True)}, {3}, frozenset(), -1j, inf]", "", 1 << 16)
    random.seed(0)


def _main():
    _warm_up()
    # The standard library lives under the base prefixes; a virtual environment's own prefix
    # (its site-packages) is of no use to programs started with -s -S.
    paths = sorted({sys.base_prefix, sys.base_exec_prefix, *_extra_paths})
    version = sys.version.split()[0]
    workdir = _ext._zygote_prepare(paths, _staging, _config)
    os.environ["HOME"] = os.environ["TMPDIR"] = workdir
    gc.collect()
    gc.freeze()
    job = _ext._zygote_serve(version)
    if job is None:
        _exit(0)
    try:
        _run(job)
    finally:
        _exit(1)


_main()

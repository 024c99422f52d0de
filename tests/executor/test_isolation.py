"""The sandbox under attack: one regression test per hole the attack report found (issue 9),
written from its description. Each program plays the attacker; each test asserts that the
attack fails and that the verdict is the program's, never the executor's (`internal`)."""

from __future__ import annotations

import ast
import os
import resource
import secrets
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from executor_support import FAST, child_pids, descendants

from azr.executor import Execution, Executor, Job, Limits, Status, values_equal

ROOT = os.geteuid() == 0


def prog(body: str) -> str:
    return "def f():\n" + textwrap.indent(textwrap.dedent(body).strip(), "    ")


def layer(ex: Executor, name: str) -> bool:
    return bool(ex.isolation().get(name))


@pytest.fixture(scope="module")
def one() -> Iterator[Executor]:
    """One worker: consecutive jobs run on children of the same zygote."""
    with Executor(workers=1, limits=Limits(wall_timeout_s=20, cpu_time_s=20)) as e:
        yield e


def test_isolation_reports_every_layer(one: Executor) -> None:
    iso = one.isolation()
    layers = [
        "unprivileged_uid",
        "mount_namespace",
        "ipc_namespace",
        "network_namespace",
        "uts_namespace",
        "minimal_filesystem",
        "fresh_workdir",
    ]
    for name in [*layers, "seccomp", "rlimits", "process_session", "private_job_data"]:
        assert isinstance(iso[name], bool), name
    unavailable = iso["unavailable"]
    assert isinstance(unavailable, dict)
    # A layer is either on or explained.
    assert {n for n in layers if not iso[n]} == set(unavailable)
    assert all(isinstance(v, str) and v for v in unavailable.values())
    if ROOT:
        # CI runs as root on a kernel that allows every layer.
        assert unavailable == {}, unavailable
        assert iso["sandbox_uid"] != 0


# ---- 1, 2: no job's data in any later child ---------------------------------------------------

# Reads this process's own memory through allowed means only: mincore() finds mapped pages and
# write() into a pipe copies them out (EFAULT, not a crash, for unreadable ones). It scans the
# heap and a window around the interpreter's objects and libraries, as an attacker would. Each
# needle is given as two halves, so the scanner itself never holds one whole.
SELF_SCAN = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
libc.sbrk.restype = ctypes.c_void_p
libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
libc.write.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]
PAGE = 4096
needles = [(a.encode(), b.encode()) for a, b in NEEDLES]
r, w = os.pipe()
vec = ctypes.create_string_buffer(1)
found, pages = set(), 0
anchors = [libc.sbrk(0), id(object()), id(os), ctypes.cast(libc.write, ctypes.c_void_p).value]
seen = set()
for a in anchors:
    base = a & ~(PAGE - 1)
    for p in range(base - (96 << 20), base + (96 << 20), PAGE):
        if p <= 0 or p in seen or libc.mincore(p, PAGE, vec) != 0:
            continue
        seen.add(p)
        if libc.write(w, p, PAGE) != PAGE:
            continue
        data = os.read(r, PAGE)
        pages += 1
        for a, b in needles:
            i = data.find(a)
            while i >= 0:
                if data[i + len(a) : i + len(a) + len(b)] == b:
                    found.add(a.decode())
                i = data.find(a, i + 1)
return sorted(found), pages
"""


def test_a_later_child_cannot_read_earlier_jobs(one: Executor) -> None:
    secret = [secrets.token_hex(12) for _ in range(4)]
    program = prog(f"x = {secret[0]!r}\nreturn x + {secret[1]!r}")
    r = one.run(program, "", expected=repr(secret[2]))
    assert r.status is Status.OK and r.matched is False
    # A gold value computed for an induction pair, then an answer on the same worker.
    gold = one.run(f"def f(a):\n    return a + {secret[3]!r}", "'p'")
    assert gold.ok
    # Positive control: a value the scanning child builds itself must be found.
    mine = "mine" + secrets.token_hex(8)
    halves = [(s[:12], s[12:]) for s in [*secret, mine]]
    body = f"NEEDLES = {halves!r}\nhold = ''.join(['mine', {mine[4:]!r}])\n" + SELF_SCAN
    found = one.run(prog(body))
    assert found.ok, found
    names, pages = ast.literal_eval(found.value or "")
    assert pages > 1000
    assert names == [mine[:12]]


def memory_of(pid: int) -> bytes:
    """Every readable mapping of a process (the host is root, so ptrace rules allow it)."""
    out = bytearray()
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            span, perms = line.split()[:2]
            if "r" not in perms or line.rstrip().endswith("[vvar]"):
                continue
            lo, hi = (int(x, 16) for x in span.split("-"))
            try:
                mem.seek(lo)
                out += mem.read(hi - lo)
            except OSError:
                continue
    return bytes(out)


def zygote_family() -> list[int]:
    """The executor's zygotes and their waiting children: everything later children fork from."""
    zygotes = child_pids()
    return sorted(zygotes | {p for z in zygotes for p, _ in descendants(z)})


@pytest.fixture(scope="module")
def two() -> Iterator[Executor]:
    with Executor(workers=2, limits=FAST) as e:
        yield e


@pytest.mark.skipif(not ROOT, reason="reading the zygotes' memory needs root")
def test_no_canary_survives_in_any_zygote(two: Executor) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.binary(min_size=12, max_size=12), st.sampled_from(["program", "inputs", "both"]))
    def check(raw: bytes, where: str) -> None:
        canary = "cy" + raw.hex()
        parts = {
            "program": (f"def f(a):\n    return a + {canary + 'P'!r}", "'x'"),
            "inputs": ("def f(a):\n    return a[::-1]", repr(canary + "I")),
            "both": (f"def f(a):\n    return {canary + 'P'!r} + a", repr(canary + "I")),
        }
        program, inputs = parts[where]
        rs = two.run_batch(
            [
                Job(program, inputs, expected=repr(canary + "E")),
                Job(program, inputs, expected=repr(canary + "E"), hash_seed=7),
            ]
        )
        assert all(r.ok for r in rs), rs
        needle = canary.encode()
        for pid in zygote_family():
            try:
                memory = memory_of(pid)
            except (FileNotFoundError, ProcessLookupError):
                continue  # a child that exited while we looked
            assert needle not in memory, f"canary in process {pid}"

    check()


# ---- 3, 4: poisoning the zygote -------------------------------------------------------------

PRLIMIT_PARENT = """
import os, resource
try:
    resource.prlimit(os.getppid(), resource.{res}, ({lim}, {lim}))
    done = 'lowered'
except OSError as e:
    done = e.errno
print('x' * 100000)
return done
"""


@pytest.mark.parametrize(("res", "lim"), [("RLIMIT_AS", 1 << 20), ("RLIMIT_FSIZE", 1 << 20)])
def test_lowering_the_zygotes_limits_is_refused(res: str, lim: int) -> None:
    limits = Limits(wall_timeout_s=5, cpu_time_s=5, max_output_bytes=1 << 20)
    with Executor(workers=1, limits=limits) as e:
        r = e.run(prog(PRLIMIT_PARENT.format(res=res, lim=lim)))
        assert r.status is Status.OK and r.value in ("1", "13"), r
        # Later jobs are unaffected: large output, large files, memory.
        big = prog(
            "open('f', 'wb').write(b'x' * (4 << 20))\n"
            "x = bytearray(100 << 20)\n"
            "print('y' * 100000)\n"
            "import os\n"
            "return os.path.getsize('f')"
        )
        for _ in range(3):
            r = e.run(big)
            assert (r.status, r.value) == (Status.OK, str(4 << 20)), r
        assert e.statistics()["internal_errors"] == 0


def test_a_lost_zygote_is_rechecked_not_reported() -> None:
    others = child_pids()
    with Executor(workers=1, limits=Limits(wall_timeout_s=10, cpu_time_s=10)) as e:
        e.run(prog("return 0"))
        (zygote,) = child_pids() - others
        import threading
        import time

        killer = threading.Timer(0.3, os.kill, (zygote, 9))
        killer.start()
        t = time.monotonic()
        r = e.run(prog("import time\ntime.sleep(1.0)\nreturn 5"))
        killer.join()
        # The executor failed under the job, so it re-ran on a fresh zygote: a verdict, not
        # `internal`.
        assert (r.status, r.value) == (Status.OK, "5"), r
        assert time.monotonic() - t >= 1.0
        stats = e.statistics()
        assert stats["rechecks"] == 1 and stats["internal_errors"] == 0
        assert stats["zygotes_lost"] == 1


PROVOCATIONS = {
    "prlimit on the zygote": "import os, resource\n"
    "resource.prlimit(os.getppid(), resource.RLIMIT_NOFILE, (3, 3))",
    "signal the zygote": "import os\nos.kill(os.getppid(), 19)",
    "close the result channel": "import os\nos.close(3)\nreturn 1",
    "garbage then exit": "import os\nos.write(3, b'\\xff' * 100)\nos._exit(3)",
    "stop itself": "import os, signal\nos.kill(os.getpid(), signal.SIGSTOP)",
    "fill the work directory": "open('big', 'wb').write(b'x' * (80 << 20))",
    "exhaust descriptors": "fs = [open('/dev/null') for _ in range(10000)]",
    "nice the zygote": "import os\nos.setpriority(os.PRIO_PROCESS, os.getppid(), 19)",
}


@pytest.mark.parametrize("body", PROVOCATIONS.values(), ids=PROVOCATIONS.keys())
def test_no_program_can_make_its_verdict_internal(two: Executor, body: str) -> None:
    r = two.run(prog(body))
    assert r.status is not Status.INTERNAL, r
    assert two.run(prog("return 'fine'")).value == "'fine'"


# ---- 5, 9: the host is out of reach -----------------------------------------------------------

CAPS = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
hdr = (ctypes.c_uint32 * 2)(0x20080522, 0)
data = (ctypes.c_uint32 * 6)()
assert libc.capget(hdr, data) == 0
return os.getuid(), os.geteuid(), os.getgid(), os.getgroups(), list(data)
"""


def test_children_run_unprivileged(one: Executor) -> None:
    if not layer(one, "unprivileged_uid"):
        pytest.skip(one.isolation()["unavailable"]["unprivileged_uid"])  # type: ignore[index]
    uid = one.isolation()["sandbox_uid"]
    r = one.run(prog(CAPS))
    assert r.ok, r
    assert eval(r.value or "") == (uid, uid, uid, [], [0] * 6)


HOST_ATTACKS = {
    "lower the host's open-file limit": "import resource\n"
    "return resource.prlimit({host}, resource.RLIMIT_NOFILE, (16, 16))",
    "renice the host": "import os\nos.setpriority(os.PRIO_PROCESS, {host}, 19)",
    "re-pin the host": "import os\nos.sched_setaffinity({host}, {{0}})",
    "real-time policy on itself": "import os\n"
    "os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(50))",
    "real-time policy on the host": "import os\n"
    "os.sched_setscheduler({host}, os.SCHED_RR, os.sched_param(1))",
    "raise its own priority": "import os\nos.nice(-10)",
    "lower its own priority": "import os\nos.nice(5)",
    "raise its own hard limit": "import resource\n"
    "resource.setrlimit(resource.RLIMIT_NOFILE, (1 << 20, 1 << 20))",
    "signal the host": "import os\nos.kill({host}, 0)",
    "io priority": "import ctypes\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "assert libc.syscall(251, 1, {host}, (1 << 13) | 0) == 0",
}


@pytest.mark.parametrize("body", HOST_ATTACKS.values(), ids=HOST_ATTACKS.keys())
def test_the_host_is_out_of_reach(two: Executor, body: str) -> None:
    host = os.getpid()
    before = (
        resource.getrlimit(resource.RLIMIT_NOFILE),
        os.getpriority(os.PRIO_PROCESS, host),
        os.sched_getaffinity(host),
        os.sched_getscheduler(host),
    )
    r = two.run(prog(body.format(host=host)))
    assert r.status in (Status.VIOLATION, Status.ERROR), r
    after = (
        resource.getrlimit(resource.RLIMIT_NOFILE),
        os.getpriority(os.PRIO_PROCESS, host),
        os.sched_getaffinity(host),
        os.sched_getscheduler(host),
    )
    assert after == before


def test_real_time_scheduling_cannot_stretch_a_timeout(fast: Executor) -> None:
    body = """
        import os
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(99))
        except OSError:
            pass
        while True:
            pass
    """
    r = fast.run(prog(body))
    assert r.status is Status.TIMEOUT
    # Far below the stretch the report saw (a 1.5 s limit reaching 2 s); generous for CI.
    assert r.wall_ms < FAST.wall_timeout_s * 1000 * 1.3


# ---- 6: IPC that outlives the program --------------------------------------------------------


def sysvipc_entries() -> int:
    n = 0
    for kind in ("shm", "msg", "sem"):
        with open(f"/proc/sysvipc/{kind}") as f:
            n += len(f.readlines()) - 1
    return n


SYSV = {
    "shared memory": "return libc.shmget(0, 200 << 20, 0o1600)",
    "message queue": "return libc.msgget(0, 0o1600)",
    "semaphores": "return libc.semget(0, 4, 0o1600)",
    "posix message queue": "return libc.mq_open(b'/azr', 0o100 | 2, 0o600, None)",
}


@pytest.mark.parametrize("call", SYSV.values(), ids=SYSV.keys())
def test_ipc_objects_cannot_be_created(two: Executor, call: str) -> None:
    before = sysvipc_entries()
    body = "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nr = " + call.removeprefix(
        "return "
    )
    r = two.run(prog(body + "\nreturn r, ctypes.get_errno()"))
    assert r.ok and r.value is not None
    assert eval(r.value)[0] == -1, r
    assert sysvipc_entries() == before


# ---- 7, 8: nothing about the work directory survives a run ----------------------------------

SABOTAGE = """
import fcntl, os, struct
out = {}
fd = os.open('.', os.O_RDONLY)
for name, call in [
    ('immutable', lambda: fcntl.ioctl(fd, 0x40086602, struct.pack('i', 0x10))),
    ('xattr', lambda: os.setxattr('.', 'user.runs', b'1')),
    ('chmod', lambda: os.chmod('.', 0o777)),
    ('utime', lambda: os.utime('.', (0, 0))),
    ('file', lambda: open('marker', 'w').write('seen')),
]:
    try:
        call()
        out[name] = 'done'
    except OSError as e:
        out[name] = e.errno
return out
"""

OBSERVE = """
import ast
import os
st = os.stat('.')
return (oct(st.st_mode), st.st_mtime > 1e9, st.st_ino, os.listdir('.'), os.getcwd())
"""


def test_work_directory_is_new_for_every_run(one: Executor) -> None:
    first = one.run(prog(OBSERVE))
    assert first.ok, first
    sab = one.run(prog(SABOTAGE))
    assert sab.ok, sab
    done = ast.literal_eval(sab.value or "")
    assert done["immutable"] != "done" and done["xattr"] != "done"
    for _ in range(2):
        after = one.run(prog(OBSERVE))
        assert after.value == first.value, (first, sab, after)
    # And writing files still works.
    r = one.run(prog("open('x', 'w').write('ok')\nreturn open('x').read()"))
    assert r.value == "'ok'"


# ---- 11: the clock ------------------------------------------------------------------------

CLOCKS = """
import datetime, time
now = datetime.datetime.now()
return (
    datetime.date.today().isoformat(), now.minute, now.second, int(time.time()),
    time.time_ns() // 10**9, time.localtime().tm_yday, time.strftime('%Y-%m-%d'),
    type(now) is datetime.datetime, isinstance(now, datetime.datetime),
    repr(datetime.datetime(2020, 1, 2)), datetime.datetime.utcnow().year,
    int(time.clock_gettime(time.CLOCK_REALTIME)),
)
"""


def test_clock_offsets_make_runs_see_different_times(one: Executor) -> None:
    import time

    offset = 37_315_951.3
    a, b = one.run_batch([Job(prog(CLOCKS)), Job(prog(CLOCKS), clock_offset_s=offset)])
    assert a.ok and b.ok, (a, b)
    va, vb = ast.literal_eval(a.value or ""), ast.literal_eval(b.value or "")
    assert abs(va[3] - time.time()) < 60  # no offset: the real clock
    assert va[0] != vb[0] and va[5] != vb[5] and va[6] != vb[6]
    assert (va[1], va[2]) != (vb[1], vb[2])
    for i in (3, 4, 11):
        assert abs(vb[i] - va[i] - offset) < 60
    # Values are real datetimes with their usual reprs in both runs (only the identity test
    # `type(x) is datetime.datetime` tells a shifted clock).
    assert va[8:10] == vb[8:10] == (True, "datetime.datetime(2020, 1, 2, 0, 0)")
    # A clock-reading program fails a determinism check; a pure one passes it.
    pure = "def f():\n    return sorted([3, 1, 2])"
    x, y = one.run_batch([Job(pure), Job(pure, clock_offset_s=offset)])
    assert x.value == y.value


def test_bad_clock_offsets_are_invalid_jobs(one: Executor) -> None:
    from azr.errors import InvalidJob

    for bad in (float("nan"), float("inf"), 1e13):
        with pytest.raises(InvalidJob):
            one.run("def f():\n    return 1", clock_offset_s=bad)


# ---- 13: metadata of the host ---------------------------------------------------------------


def test_host_paths_cannot_even_be_stat_ed(one: Executor) -> None:
    if not layer(one, "minimal_filesystem"):
        pytest.skip("the host forbids the minimal filesystem")
    for path in ["/etc/shadow", "/etc/passwd", str(Path(__file__)), "/proc/1", "/home", "/var"]:
        r = one.run(prog(f"import os\nreturn os.stat({path!r}).st_size"))
        assert r.status is Status.ERROR and "FileNotFoundError" in (r.error or ""), (path, r)
    # The standard library is still there, read-only.
    r = one.run(prog("import json, os\nreturn json.dumps([os.path.exists('/usr')])"))
    assert r.value == "'[true]'"


# ---- 12: comparison work linear in a value's size --------------------------------------------


def doubling(levels: int, leaf: object) -> bytes:
    import marshal

    a: object = [leaf]
    for _ in range(levels):
        a = [a, a]
    return marshal.dumps(a, 4)


def as_execution(blob: bytes) -> Execution:
    return Execution(Status.OK, "v", None, "", 0.0, 0.0, 0, None, blob)


def test_shared_values_compare_by_value_in_linear_work() -> None:
    a, b, c = doubling(60, 1), doubling(60, 1), doubling(60, 2)
    assert len(a) < 1000  # 2**60 leaves, a few hundred bytes
    x, y, z = (as_execution(v) for v in (a, b, c))
    assert values_equal(x, y) and values_equal(x, x)
    assert not values_equal(x, z)
    assert values_equal(x, as_execution(doubling(60, 1.0)))
    assert values_equal(x, as_execution(doubling(60, 1.0000001)), atol=1e-3)
    # A 100 KiB forged blob of many shared parts, then an ordinary comparison: both right.
    import marshal

    parts = [[i, str(i)] for i in range(2000)]
    forged = marshal.dumps([parts] * 5000, 4)
    assert len(forged) > 20_000
    f1, f2 = as_execution(forged), as_execution(marshal.dumps([parts] * 5000, 4))
    assert values_equal(f1, f2)
    five = as_execution(marshal.dumps(5))
    assert values_equal(five, five)


def test_expected_values_with_a_float_tolerance(two: Executor) -> None:
    from azr.errors import InvalidJob

    body = "def f(x):\n    return [x / 3, {'k': x * 0.1}]"
    assert two.run(body, "1.0", expected="[0.3333, {'k': 0.1}]").matched is False
    assert two.run(body, "1.0", expected="[0.3333, {'k': 0.1}]", atol=1e-3).matched is True
    assert two.run(body, "1.0", expected="[0.3, {'k': 0.1}]", atol=1e-3).matched is False
    assert two.run(body, "3.0", expected="[1, {'k': 0.3}]", rtol=1e-9).matched is True
    with pytest.raises(InvalidJob):
        two.run(body, "1.0", expected="1", atol=-1.0)

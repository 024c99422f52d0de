"""Hostile programs: each must end with a status, never hang or harm the host, and leave the pool
healthy. Statuses are asserted exactly, so a weaker sandbox shows up as a failing test."""

from __future__ import annotations

import ast
import contextlib
import os
import socket
import textwrap
import threading
from pathlib import Path

import pytest
from executor_support import FAST, child_pids, descendants, open_fds

from azr.errors import SourceTooLarge
from azr.executor import Executor, Job, Limits, Status, values_equal


def prog(body: str) -> str:
    """A zero-argument f whose body is the given (dedented) code."""
    return "def f():\n" + textwrap.indent(textwrap.dedent(body).strip(), "    ")


def expect(ex: Executor, body: str, status: Status, *, setup: str = "") -> str:
    r = ex.run(setup + prog(body))
    assert r.status is status, (body, r)
    return r.error or ""


HOSTILE_TIMEOUTS = {
    "python loop": "while True: pass",
    "C loop ignoring signals": "return sum(range(10**12))",
    "SIGALRM ignored": """
        import signal
        signal.signal(signal.SIGALRM, signal.SIG_IGN)
        signal.alarm(1)
        while True: pass
    """,
    "SIGALRM reset": """
        import signal
        signal.setitimer(signal.ITIMER_REAL, 0)
        while True: pass
    """,
    "BaseException swallowed": """
        import time
        while True:
            try:
                time.sleep(10)
            except BaseException:
                pass
    """,
    "long sleep": "import time\ntime.sleep(10**6)",
    "SIGSTOP to itself": "import os, signal\nos.kill(os.getpid(), signal.SIGSTOP)\nreturn 1",
}


@pytest.mark.parametrize("body", HOSTILE_TIMEOUTS.values(), ids=HOSTILE_TIMEOUTS.keys())
def test_runaway_programs_time_out(fast: Executor, body: str) -> None:
    expect(fast, body, Status.TIMEOUT)


def test_stdin_is_empty(fast: Executor) -> None:
    assert "EOFError" in expect(fast, "return input()", Status.ERROR)
    assert fast.run(prog("import sys\nreturn sys.stdin.read()")).value == "''"


PROCESS_CREATION = {
    "os.fork": "import os\nreturn os.fork()",
    "posix.fork": "import posix\nreturn posix.fork()",
    "fork bomb": "import os\nwhile True:\n    os.fork()",
    "subprocess": "import subprocess\nreturn subprocess.run(['true']).returncode",
    "multiprocessing": """
        import multiprocessing
        p = multiprocessing.Process(target=print)
        p.start()
        p.join()
    """,
    "posix_spawn": "import os\nreturn os.posix_spawn('/bin/true', ['true'], {})",
    "double fork daemon": """
        import os
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                import time
                time.sleep(100)
        return 1
    """,
    "thread": "import threading, time\nthreading.Thread(target=time.sleep, args=(100,)).start()",
    "thread bomb": """
        import threading, time
        for _ in range(10000):
            threading.Thread(target=time.sleep, args=(100,)).start()
    """,
    "kill parent": "import os\nos.kill(os.getppid(), 9)",
    "kill everything": "import os\nos.kill(-1, 9)",
}


@pytest.mark.parametrize("body", PROCESS_CREATION.values(), ids=PROCESS_CREATION.keys())
def test_process_creation_and_foreign_signals_are_refused(fast: Executor, body: str) -> None:
    expect(fast, body, Status.VIOLATION)
    assert not [p for p, state in descendants(os.getpid()) if state == "Z"]
    assert fast.run(prog("return 7")).value == "7"


def test_shell_commands_do_not_run(fast: Executor, tmp_path: Path) -> None:
    r = fast.run(prog(f"import os\nreturn os.system('touch {tmp_path}/ran')"))
    assert r.status is Status.OK and r.value != "0"
    assert not (tmp_path / "ran").exists()


def test_killing_its_own_group_only_kills_itself(fast: Executor) -> None:
    before = child_pids()
    assert "SIGKILL" in expect(fast, "import os\nos.killpg(os.getpgid(0), 9)", Status.CRASHED)
    assert child_pids() == before  # every zygote survived
    assert fast.run(prog("return 1")).value == "1"


def test_atexit_hooks_do_not_run(fast: Executor) -> None:
    r = fast.run(prog("import atexit, time\natexit.register(time.sleep, 100)\nreturn 3"))
    assert (r.status, r.value) == (Status.OK, "3")
    assert r.wall_ms < 1000


def test_memory_bombs(fast: Executor) -> None:
    expect(fast, "return [0] * 10**10", Status.MEMORY_LIMIT)
    expect(fast, "x = []\nwhile True:\n    x.append(' ' * 10**6)", Status.MEMORY_LIMIT)
    expect(fast, "return bytearray(10**9)", Status.MEMORY_LIMIT)


def test_output_floods_are_cut(fast: Executor) -> None:
    r = fast.run(prog("while True:\n    print('x' * 1000)"))
    assert r.status is Status.OUTPUT_LIMIT
    assert len(r.stdout) == FAST.max_output_bytes
    r = fast.run(prog("import os\nwhile True:\n    os.write(1, b'y' * 65536)"))
    assert r.status is Status.OUTPUT_LIMIT
    r = fast.run(prog("return 'z' * 10**7"))
    assert r.status is Status.OUTPUT_LIMIT and r.value is not None
    assert len(r.value) == FAST.max_value_bytes
    r = fast.run(prog("raise ValueError('v' * 10**7)"))
    assert r.status is Status.ERROR and r.error is not None and len(r.error) <= 4000


def test_binary_output_is_kept_readable(fast: Executor) -> None:
    r = fast.run(prog("import sys\nsys.stdout.buffer.write(b'\\xff\\x00ok\\xc3')\nreturn 1"))
    assert (r.status, r.stdout) == (Status.OK, "\ufffd\x00ok\ufffd")
    r = fast.run(prog("return '\\udcff\\x00'"))
    assert r.status is Status.OK and r.value == "'\\udcff\\x00'"


def test_huge_and_deeply_nested_sources(fast: Executor) -> None:
    big = "s = '" + "a" * (10 << 20) + "'\n" + prog("return len(s)")
    with pytest.raises(SourceTooLarge):
        fast.run(big)
    with Executor(workers=1, limits=Limits(max_source_bytes=16 << 20)) as big_ex:
        r = big_ex.run(big)
        assert (r.status, r.value) == (Status.OK, str(10 << 20))
    nested = prog("return " + "(" * 5000 + "1" + ")" * 5000)
    r = fast.run(nested)
    assert r.status is Status.ERROR and r.error is not None and "SyntaxError" in r.error
    deep_list = prog("return " + "[" * 100_000 + "]" * 100_000)
    assert fast.run(deep_list).status in (Status.ERROR, Status.MEMORY_LIMIT)


def test_crashes(fast: Executor) -> None:
    # Python-to-Python calls no longer use the C stack; comparing deep lists does.
    deep = """
        import sys
        sys.setrecursionlimit(10**6)
        x, y = [], []
        for _ in range(300000):
            x, y = [x], [y]
        return x == y
    """
    assert "SIGSEGV" in expect(fast, deep, Status.CRASHED)
    assert "SIGSEGV" in expect(fast, "import ctypes\nreturn ctypes.string_at(0)", Status.CRASHED)
    assert "SIGABRT" in expect(fast, "import os\nos.abort()", Status.CRASHED)


def test_filesystem_outside_its_directory_is_off_limits(fast: Executor, tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    # Outside its directory a program sees a read-only minimal filesystem: host paths do not
    # exist there (ENOENT), and what does exist cannot be changed (EACCES, EROFS).
    refused = (Status.VIOLATION, Status.ERROR)
    for body in [
        f"import os\nos.remove({str(victim)!r})",
        f"open({str(victim)!r}, 'w').write('x')",
        f"return open({str(victim)!r}).read()",
        f"open({str(tmp_path / 'new')!r}, 'w')",
        "open('/tmp/azr-escape', 'w')",
        "open('/usr/azr-escape', 'w')",
        "open('/dev/azr-escape', 'w')",
        f"return open({__file__!r}).read()",
    ]:
        r = fast.run(prog(body))
        assert r.status in refused and "precious" not in (r.value or ""), (body, r)
    assert victim.read_text() == "precious"
    assert not (tmp_path / "new").exists()
    # Its own directory is writable and starts empty every time.
    body = (
        "import os\nopen('x.txt', 'w').write('hi')\nreturn (os.listdir('.'), open('x.txt').read())"
    )
    r = fast.run(prog(body))
    assert r.value == "(['x.txt'], 'hi')"
    assert fast.run(prog("import os\nreturn os.listdir('.')")).value == "[]"


def test_files_a_program_writes_are_capped_and_dropped(fast: Executor) -> None:
    cap = fast.isolation()["workdir_limit_bytes"]
    body = "for i in range(1000):\n    open(f'x{i}', 'wb').write(b'x' * (8 << 20))"
    r = fast.run(prog(body))
    if cap:
        # A private tmpfs: the disk never sees more than the cap.
        assert r.status is Status.ERROR and "No space left on device" in (r.error or "")
    else:
        assert r.status in (Status.ERROR, Status.TIMEOUT)
    assert fast.run(prog("import os\nreturn os.listdir('.')")).value == "[]"


def test_host_environment_is_invisible(fast: Executor) -> None:
    os.environ["AZR_TEST_SECRET"] = "s3cret"
    try:
        with Executor(workers=1, limits=FAST) as e:
            r = e.run(prog("import os\nreturn dict(os.environ)"))
            assert r.status is Status.OK and "s3cret" not in (r.value or "")
            env = ast.literal_eval(r.value or "{}")
            assert "PATH" not in env and "AZR_TEST_SECRET" not in env
            r = e.run(prog(f"return open('/proc/{os.getpid()}/environ', 'rb').read()"))
            assert r.status in (Status.VIOLATION, Status.ERROR) and r.value is None
    finally:
        del os.environ["AZR_TEST_SECRET"]


def test_no_network() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.1)
    port = server.getsockname()[1]
    accepted: list[object] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            accepted.append(server.accept())

    t = threading.Thread(target=accept)
    t.start()
    try:
        with Executor(workers=1, limits=FAST) as e:
            body = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)"
            expect(e, body, Status.VIOLATION)
            r = e.run(prog("import socket\nreturn socket.getaddrinfo('example.com', 80)"))
            assert r.status in (Status.ERROR, Status.VIOLATION)
            r = e.run(prog("import socket\nreturn socket.gethostbyname('localhost')"))
            assert r.status in (Status.ERROR, Status.VIOLATION)
    finally:
        t.join()
        server.close()
    assert accepted == []


def test_exiting_before_returning(fast: Executor) -> None:
    assert expect(fast, "exit(0)", Status.ERROR) == "SystemExit: 0"
    assert expect(fast, "import sys\nsys.exit(3)", Status.ERROR) == "SystemExit: 3"
    assert "before returning" in expect(fast, "import os\nos._exit(0)", Status.ERROR)
    assert "before returning" in expect(fast, "import os\nos.close(3)\nos._exit(0)", Status.ERROR)


def test_lying_values_never_match(fast: Executor) -> None:
    liar = """
        class Liar:
            def __eq__(self, other): return True
            def __ne__(self, other): return False
            def __hash__(self): return 0
            def __repr__(self): return '5'
        return Liar()
    """
    r = fast.run(prog(liar), expected="5")
    assert (r.status, r.value, r.matched) == (Status.OK, "5", False)
    five = fast.run(prog("return 5"))
    assert not values_equal(r, five)
    sub = "class S(str):\n    def __eq__(self, o): return True\nreturn S('x')"
    assert fast.run(prog(sub), expected="'y'").matched is False
    # Forging a report on the result channel gains nothing: the expected value never enters the
    # child, and the report is decoded (not unpickled) outside it.
    report = "marshal.dumps((0, '5', marshal.dumps(6), None))"
    forge = f"import os, marshal\nos.write(3, {report})\nos._exit(0)"
    r = fast.run(prog(forge), expected="5")
    assert r.matched is False
    garbage = "import os\nos.write(3, b'\\x00garbage')\nos._exit(0)"
    assert fast.run(prog(garbage)).status is Status.VIOLATION


def test_monkey_patching_does_not_leak(fast: Executor) -> None:
    patch = """
        import builtins, math
        builtins.print = None
        builtins.repr = lambda x: 'patched'
        builtins.len = lambda x: 0
        math.pi = 3
        return 4
    """
    r = fast.run(prog(patch))
    assert (r.status, r.value) == (Status.OK, "4")
    r = fast.run(prog("import math\nprint('ok')\nreturn (len('abc'), repr(1), math.pi)"))
    assert (r.value, r.stdout) == ("(3, '1', 3.141592653589793)", "ok\n")


def test_awkward_return_values(fast: Executor) -> None:
    err = expect(fast, "class B:\n    def __repr__(self): return 1 / 0\nreturn B()", Status.ERROR)
    assert err.startswith("the return value has no repr: ZeroDivisionError")
    r = fast.run(prog("return lambda: 1"))
    assert r.status is Status.OK and r.encoded is None and (r.value or "").startswith("<function")
    r = fast.run(prog("x = []\nx.append(x)\nreturn x"))
    assert (r.status, r.value) == (Status.OK, "[[...]]")
    assert "Exceeds the limit" in expect(fast, "return 10**100000", Status.ERROR)
    assert "Exceeds the limit" in expect(fast, "return str(10**100000)", Status.ERROR)


def test_the_pool_replaces_a_lost_worker() -> None:
    others = child_pids()
    with Executor(workers=1, limits=FAST) as e:
        assert e.run(prog("return 1")).value == "1"
        (zygote,) = child_pids() - others
        os.kill(zygote, 9)
        r = e.run(prog("return 2"))
        assert (r.status, r.value) == (Status.OK, "2")
        assert zygote not in child_pids()
        assert e.statistics()["zygotes_lost"] == 1


def test_no_leaks_after_a_hostile_battery(fast: Executor) -> None:
    fast.run(prog("return 0"))
    fds, procs = open_fds(), child_pids()
    bodies = [*HOSTILE_TIMEOUTS.values(), *PROCESS_CREATION.values()]
    for r in fast.run_batch([Job(prog(textwrap.dedent(b).strip())) for b in bodies]):
        assert r.status in (Status.TIMEOUT, Status.VIOLATION)
    assert open_fds() == fds
    assert child_pids() == procs
    tree = descendants(os.getpid())
    # Zygotes, each with at most its one waiting spare child, and nothing else: no zombie, no
    # orphaned grandchild.
    spares = [p for p, _ in tree if p not in procs]
    assert len(spares) <= len(procs)
    assert all(ppid_of(p) in procs for p in spares)
    assert all(state != "Z" for _, state in tree)


def ppid_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(") ", 1)[1].split()[1])

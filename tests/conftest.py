"""Suite-wide settings and fixtures. Under CI, hypothesis replays a fixed set of examples, so a
run's outcome depends on the code alone; locally it keeps exploring new ones.

The receiving server of the weight-sync tests (generation, and the sharded learner's in
``distributed/``): ``generation/weight_receiver.py`` in a process of its own, answering SGLang's
control endpoints over HTTP and receiving tensors over gloo."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

RECEIVER = Path(__file__).parent / "generation" / "weight_receiver.py"


@pytest.fixture
def free_port() -> int:
    """A loopback port nobody listens on (for a rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def receiver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The receiver's URL and the folder where it records requests and received tensors;
    parametrised indirectly with N, it refuses its N-th distributed update."""
    out = tmp_path / "received"
    out.mkdir()
    port_file = tmp_path / "port"
    refuse = [str(request.param)] if hasattr(request, "param") else []
    proc = subprocess.Popen([sys.executable, str(RECEIVER), str(port_file), str(out), *refuse])
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text():
            assert proc.poll() is None, "the receiver exited"
            assert time.monotonic() < deadline, "the receiver did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port_file.read_text()}", out
    finally:
        proc.kill()
        proc.wait()

"""The learner actor gathers a sharded learner's weights off the trio loop.

Two real gloo ranks (`_push_ranks.py`, about ten seconds): rank 1 joins the gather only once
rank 0's loop has run another task, which it can only do while the gather runs in a thread.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from test_sharded_learner import run_ranks  # noqa: E402


def test_the_weight_push_leaves_the_loop_free(tmp_path: Path) -> None:
    run_ranks(HERE / "_push_ranks.py", str(tmp_path))
    assert json.loads((tmp_path / "rank1.json").read_text()) == {"ticked_first": True}
    # And the backend got the gathered weights of version 1.
    assert json.loads((tmp_path / "rank0.json").read_text()) == {"version": 1, "same": True}

"""Reading a run's ``metrics.jsonl`` in the end-to-end tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# Keys that depend on wall-clock time or on the machine's load, not on the run.
TIMING = ("time/", "actor/", "mailbox/", "executor/executions_per_s")
TIMING_KEYS = {"time", "gen/tokens_per_s", "learner/tokens_per_s", "checkpoint"}


def read_records(output: Path) -> list[dict[str, Any]]:
    """Every line of the run's metrics, in order."""
    return [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]


def deterministic(record: dict[str, Any]) -> dict[str, Any]:
    """The record without its timing keys: what two runs of the same seed must agree on."""
    return {k: v for k, v in record.items() if not k.startswith(TIMING) and k not in TIMING_KEYS}

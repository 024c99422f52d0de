"""Learning curves of one or more runs (``azr plot RUN_DIR...``, and ``curves.png`` of a run).

Four panels against the step, each per task type: solver reward, solver accuracy on the
training tasks, proposal validity and held-out accuracy. Several runs overlay on one figure:
runs are told apart by colour, task types by line style.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

__all__ = ["load_metrics", "plot_runs"]

_TYPES = ("deduction", "abduction", "induction")
_STYLES = {"deduction": "-", "abduction": "--", "induction": ":"}


def load_metrics(run_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of ``run_dir/metrics.jsonl`` (a torn last line is skipped)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{os.fspath(run_dir)!r} has no metrics.jsonl")
    out = []
    for line in path.read_bytes().splitlines():
        try:
            record = msgspec.json.decode(line)
        except msgspec.DecodeError:
            continue
        if isinstance(record, dict) and "step" in record:
            out.append(record)
    return out


def _series(records: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    points = [(int(r["step"]), float(r[key])) for r in records if key in r]
    return [s for s, _ in points], [v for _, v in points]


def plot_runs(run_dirs: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str]) -> Path:
    """Draw the curves of ``run_dirs`` into the image ``out``; returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("solver reward", "solve/{t}/reward"),
        ("solver accuracy (training tasks)", "solve/{t}/accuracy"),
        ("proposal validity", "propose/{t}/valid"),
        ("held-out accuracy (greedy)", "eval/{t}/accuracy"),
    ]
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), sharex=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for n, run_dir in enumerate(run_dirs):
        records = load_metrics(run_dir)
        color = colors[n % len(colors)]
        name = Path(run_dir).name or os.fspath(run_dir)
        for ax, (title, pattern) in zip(axes.flat, panels, strict=True):
            for t in _TYPES:
                x, y = _series(records, pattern.format(t=t))
                if x:
                    label = f"{name} {t}" if len(run_dirs) > 1 else t
                    marker = "." if len(x) < 30 else None
                    # One run: a colour per type; several: a colour per run, a style per type.
                    c = colors[_TYPES.index(t)] if len(run_dirs) == 1 else color
                    ax.plot(x, y, _STYLES[t], color=c, label=label, marker=marker)
            ax.set_title(title)
            ax.grid(alpha=0.3)
    for ax in axes.flat:
        ax.set_xlabel("step")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    axes.flat[3].set_ylim(-0.02, 1.02)
    axes.flat[2].set_ylim(-0.02, 1.02)
    axes.flat[1].set_ylim(-0.02, 1.02)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out

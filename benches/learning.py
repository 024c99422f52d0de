"""Does self-play make the in-house base better? TRR++ against REINFORCE++, three seeds each.

From the same base (``model.base = "cpu-base"``, the ``cpu-base`` preset), each run self-plays a
fixed number of steps (no time limit) and evaluates the held-out tasks greedily at step 0 and at
the end. Printed per advantage estimator: held-out accuracy per task type at step 0 and at the
end (mean and min/max over seeds), proposal validity over the first and the last steps, and
wall time per run. Targets: with TRR++ the held-out accuracy averaged over types and seeds rises
by at least 10 points within 10 minutes per run on 2 cores; validity at the end is at least
twice its start; TRR++ is not worse than REINFORCE++.

    python benches/learning.py [--steps 20] [--seeds 0 1 2] [--estimators trr++ reinforce++]
                               [--set key=value ...] [--keep DIR] [--oracle-buffers]

``--oracle-buffers`` is a diagnostic, not self-play: the buffers start with one task per type
for each of about 1,500 programs of the base's own generator (another seed; held-out programs
left out), and the solver draws its tasks from all of them (``selfplay.recent_fraction=0``),
as if the proposer wrote exactly the held-out distribution. What the solver gains then bounds
what a better proposer could add.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from azr.config import load_config
from azr.plot import load_metrics
from azr.train import train

TYPES = ("deduction", "abduction", "induction")


def run_once(
    estimator: str, seed: int, steps: int, out: Path, overrides: Sequence[str]
) -> dict[str, Any]:
    config = load_config(
        preset="cpu-base",
        overrides=[
            f"run.steps={steps}",
            f"run.seed={seed}",
            f"run.eval_every={steps}",
            "run.time_limit_s=null",
            "run.curves=false",
            "run.progress=false",
            f"run.output_dir={out}",
            f"run.checkpoint_every={steps}",
            f"learner.advantage_estimator={estimator}",
            *overrides,
        ],
    )
    started = time.perf_counter()
    result = train(config, console=io.StringIO())
    wall = time.perf_counter() - started
    if not result.completed:
        raise RuntimeError(f"run {estimator}/{seed} stopped: {result.stop_reason}")
    records = load_metrics(out)
    evals = [r for r in records if "eval/accuracy" in r]
    trained = [r for r in records if r["step"] >= 1]
    k = max(1, len(trained) // 4)

    def validity(rs: Sequence[dict[str, Any]]) -> float:
        values = [r[f"propose/{t}/valid"] for r in rs for t in TYPES if f"propose/{t}/valid" in r]
        return statistics.fmean(values) if values else 0.0

    return {
        "before": {t: evals[0][f"eval/{t}/accuracy"] for t in TYPES},
        "after": {t: evals[-1][f"eval/{t}/accuracy"] for t in TYPES},
        "valid_start": validity(trained[:k]),
        "valid_end": validity(trained[-k:]),
        "wall_s": wall,
    }


ORACLE_SEED = 424_242


def write_oracle_seed_file(path: Path, draws: int = 4000) -> int:
    """A seed file of generator tasks (:mod:`azr.seeds` format): per program one deduction and one
    abduction triplet and an induction task showing two pairs and hiding two; the held-out
    programs are left out. Returns the number of programs."""
    from azr.eval.heldout import heldout_hashes
    from azr.pretrain.programs import generate, program_hash
    from azr.seeds import SeedFile, write_seed_file
    from azr.tasks.types import InductionTask, IOPair
    from azr.verify import Verifier

    held_out, seen, programs = heldout_hashes(), set(), []
    for p in generate(ORACLE_SEED, draws):
        h = program_hash(p.program)
        if h not in held_out and h not in seen:
            seen.add(h)
            programs.append(p)
    flat = [(p, i) for p in programs for i in p.inputs]
    with Verifier() as verifier:
        checked = verifier.validate_batch([p.program for p, _ in flat], [i for _, i in flat])
    by_program: dict[str, list[Any]] = {}
    for (p, _), v in zip(flat, checked, strict=True):
        if v.valid and v.triplet is not None:
            by_program.setdefault(p.program, []).append(v.triplet)
    messages = {p.program: p.message for p in programs}
    deduction, abduction, induction = [], [], []
    for program, ts in by_program.items():
        if len(ts) < 4:
            continue
        deduction.append(ts[0])
        abduction.append(ts[1])
        pairs = [IOPair(t.input, t.output) for t in ts[:4]]
        induction.append(
            InductionTask(program, messages[program], tuple(pairs[:2]), tuple(pairs[2:]))
        )
    seeds = SeedFile(
        deduction=tuple(deduction), abduction=tuple(abduction), induction=tuple(induction)
    )
    write_seed_file(path, seeds)
    return len(deduction)


def _fmt(values: Sequence[float], pct: bool = True) -> str:
    scale = 100 if pct else 1
    mean = statistics.fmean(values) * scale
    return f"{mean:5.1f} [{min(values) * scale:5.1f}, {max(values) * scale:5.1f}]"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--estimators", nargs="+", default=["trr++", "reinforce++"])
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--keep", metavar="DIR", help="keep the run directories here")
    parser.add_argument(
        "--oracle-buffers", action="store_true", help="start from generator tasks (diagnostic)"
    )
    args = parser.parse_args(argv)

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="azr-learning-"))
    if args.oracle_buffers:
        seed_file = root / "oracle-seed.json"
        count = write_oracle_seed_file(seed_file)
        print(f"oracle buffers: {count} generator programs per type in {seed_file}", flush=True)
        args.overrides += [f"selfplay.seed_file={seed_file}", "selfplay.recent_fraction=0"]
    results: dict[str, list[dict[str, Any]]] = {}
    for estimator in args.estimators:
        for seed in args.seeds:
            out = root / f"{estimator.replace('+', 'p')}-seed{seed}"
            r = run_once(estimator, seed, args.steps, out, args.overrides)
            results.setdefault(estimator, []).append(r)
            mean_b = statistics.fmean(r["before"].values()) * 100
            mean_a = statistics.fmean(r["after"].values()) * 100
            print(
                f"{estimator:<12} seed {seed}: held-out {mean_b:.1f}% -> {mean_a:.1f}%, validity "
                f"{r['valid_start']:.2f} -> {r['valid_end']:.2f}, {r['wall_s']:.0f} s",
                flush=True,
            )

    print(f"\n{args.steps} steps per run, seeds {args.seeds}; mean [min, max] over seeds, percent")
    header = f"{'estimator':<12} {'type':<10} {'step 0':>20} {'end':>20} {'change':>8}"
    print(header)
    print("-" * len(header))
    gains: dict[str, float] = {}
    for estimator, runs in results.items():
        for t in (*TYPES, "mean"):
            if t == "mean":
                before = [statistics.fmean(r["before"].values()) for r in runs]
                after = [statistics.fmean(r["after"].values()) for r in runs]
            else:
                before = [r["before"][t] for r in runs]
                after = [r["after"][t] for r in runs]
            change = (statistics.fmean(after) - statistics.fmean(before)) * 100
            if t == "mean":
                gains[estimator] = change
            print(f"{estimator:<12} {t:<10} {_fmt(before):>20} {_fmt(after):>20} {change:+8.1f}")
        vs = [r["valid_start"] for r in runs]
        ve = [r["valid_end"] for r in runs]
        walls = [r["wall_s"] for r in runs]
        print(
            f"{estimator:<12} validity   {_fmt(vs):>20} {_fmt(ve):>20}   "
            f"wall {_fmt(walls, pct=False)} s"
        )
    print(f"\nrun directories: {root}")
    if "trr++" in gains:
        print(f"TRR++ held-out gain: {gains['trr++']:+.1f} points (target >= +10)")
    if "trr++" in gains and "reinforce++" in gains:
        print(f"TRR++ - REINFORCE++: {gains['trr++'] - gains['reinforce++']:+.1f} points (>= 0)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

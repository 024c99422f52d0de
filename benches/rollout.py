"""The self-play loop's own overhead: what a step spends outside generation and the update.

Generation is replaced by :class:`ReplayBackend`, a real ``GenerationBackend`` that answers each
prompt with a stored completion built from the CRUXEval programs (proposals of those programs,
answers that are right a given fraction of the time) after sleeping as long as a server decoding
``--tokens-per-s`` tokens per second per sequence would take. Everything else is the real loop:
the actors and their mailboxes, the sandbox validating proposals and checking answers, the
buffers, the TRR++ update of the tiny model on CPU, the weight pushes.

    python benches/rollout.py [--steps 3] [--batch 8] [--rollouts 4] [--chunk 4]
                              [--tokens-per-s 300] [--latency 0.05] [--think 300]

Per step it prints the responses generated and checked (proposals, learnability rollouts and
solver rollouts), the samples trained, the wall time, the time generation was running (the union
of the backend's busy intervals), the update (with the weight push and any checkpoint), and the
rest: the loop's overhead, whose share of the step the design targets below 5%. With
``--mode async`` the update overlaps the next step's generation: then compare throughput only
(the rest is measured in sync mode, the paper's schedule). Steps after the first are summed;
the first pays for warming up.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio

from azr.config import load_config
from azr.generation.base import Completion, SamplingParams
from azr.models import Tokenizer
from azr.tasks import Rejected, fenced_blocks, format_blocks, format_response, normalize_program
from azr.train import train_async

DATA = (
    Path(__file__).resolve().parents[1].parent
    / "shared"
    / "data"
    / "cruxeval"
    / "cruxeval-dev.jsonl"
)


def load_rows() -> list[dict[str, str]]:
    with DATA.open() as f:
        return [json.loads(line) for line in f if line.strip()]


class ReplayBackend:
    """Replays stored completions at a fixed decoding rate.

    A call sleeps ``latency_s`` plus the longest of its responses (in tokens) divided by
    ``tokens_per_s``: the rows of one call decode side by side, as on a batching server, and
    concurrent calls overlap. ``busy`` records the intervals during which at least one call was
    running (``time.time()`` seconds).
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        rows: Sequence[dict[str, str]],
        *,
        tokens_per_s: float,
        latency_s: float,
        think_chars: int,
        correct_fraction: float = 0.5,
        seed: int = 0,
    ) -> None:
        self.tokenizer = tokenizer
        self.rows = list(rows)
        self.by_program: dict[str, dict[str, str]] = {}
        for row in self.rows:
            norm = normalize_program(row["code"])
            if not isinstance(norm, Rejected):
                self.by_program[norm.source] = row
        self.tokens_per_s = tokens_per_s
        self.latency_s = latency_s
        self.think = ("Let me trace this step by step. " * (think_chars // 32 + 1))[:think_chars]
        self.correct_fraction = correct_fraction
        self.random = random.Random(seed)
        self.proposals = itertools.cycle(self.rows)
        self.weight_version = 0
        self.busy: list[tuple[float, float]] = []
        self._running = 0
        self._since = 0.0
        self.closed = False

    # -- the stored completions -------------------------------------------------------------

    def _other(self) -> dict[str, str]:
        return self.rows[self.random.randrange(len(self.rows))]

    def _blocks(self, prompt: str) -> dict[str, str]:
        return {b.tag: b.content for b in fenced_blocks(prompt)}

    def _answer(self, prompt: str) -> str:
        blocks = self._blocks(prompt)
        if "Design a new code-reasoning puzzle" in prompt:
            row = next(self.proposals)
            return format_blocks([("python", row["code"]), ("input", row["input"])])
        if "different inputs for `f`" in prompt:
            own = self.by_program.get(blocks.get("python", ""))
            inputs = [own["input"]] if own else []
            inputs += [self._other()["input"] for _ in range(10 - len(inputs))]
            parts = [("input", i) for i in inputs]
            return format_blocks([*parts, ("message", "Work out the rule from the examples.")])
        right = self.random.random() < self.correct_fraction
        gold = self.by_program.get(blocks.get("python", ""))
        row = gold if right and gold is not None else self._other()
        if "What does this Python function return" in prompt:
            return row["output"]
        if "Find an input for which" in prompt:
            return row["input"]
        if "Write a Python function `f` that behaves" in prompt:
            return format_blocks([("python", self._other()["code"])])
        raise ValueError(f"unknown prompt: {prompt[:120]!r}")

    # -- the protocol ---------------------------------------------------------------------

    async def generate(
        self, prompts: Sequence[str], params: SamplingParams
    ) -> list[list[Completion]]:
        eos = self.tokenizer.eos_token_id
        out: list[list[Completion]] = []
        longest = 0
        for prompt in prompts:
            row = []
            for _ in range(params.n):
                text = format_response(self._answer(prompt), think=self.think)
                ids = (*self.tokenizer.encode(text), eos)
                longest = max(longest, len(ids))
                row.append(Completion(text, ids, (-1.0,) * len(ids), "stop", self.weight_version))
            out.append(row)
        if self._running == 0:
            self._since = time.time()
        self._running += 1
        try:
            await trio.sleep(self.latency_s + longest / self.tokens_per_s)
        finally:
            self._running -= 1
            if self._running == 0:
                self.busy.append((self._since, time.time()))
        return out

    async def generate_ids(
        self, prompt_ids: Sequence[Sequence[int]], params: SamplingParams
    ) -> list[list[Completion]]:
        return await self.generate([self.tokenizer.decode(ids) for ids in prompt_ids], params)

    async def update_weights(self, source: Any) -> int:
        self.weight_version = source.version
        return self.weight_version

    async def aclose(self) -> None:
        self.closed = True

    def busy_within(self, start: float, end: float) -> float:
        return sum(max(0.0, min(b, end) - max(a, start)) for a, b in self.busy)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8, help="B: proposals and solver tasks per type")
    ap.add_argument("--rollouts", type=int, default=4, help="n: learnability rollouts")
    ap.add_argument("--chunk", type=int, default=4, help="prompts per backend call")
    ap.add_argument("--concurrent", type=int, default=4, help="calls in flight per actor")
    ap.add_argument("--tokens-per-s", type=float, default=300.0, help="per sequence")
    ap.add_argument("--latency", type=float, default=0.05, help="seconds per call")
    ap.add_argument("--think", type=int, default=300, help="reasoning characters per response")
    ap.add_argument("--mode", choices=("sync", "async"), default="sync")
    args = ap.parse_args()

    rows = load_rows()
    tokenizer = Tokenizer.byte_level()
    backend = ReplayBackend(
        tokenizer,
        rows,
        tokens_per_s=args.tokens_per_s,
        latency_s=args.latency,
        think_chars=args.think,
    )
    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(
            preset="tiny-cpu",
            overrides=[
                f"run.output_dir={tmp}",
                f"run.steps={args.steps}",
                f"run.mode={args.mode}",
                "run.progress=false",
                "run.checkpoint_every=1000000",
                f"selfplay.batch_size={args.batch}",
                f"selfplay.seed_buffer_size={args.batch}",
                "selfplay.seed_max_rounds=2",
                f"rewards.solver_rollouts={args.rollouts}",
                f"generation.chunk_size={args.chunk}",
                f"generation.concurrent_chunks={args.concurrent}",
                "learner.micro_batch_size=8",
            ],
        )
        quiet = open(Path(tmp) / "console.txt", "w")  # noqa: SIM115 - closed below
        try:
            result = trio.run(lambda: train_async(config, console=quiet, backend=backend))
        finally:
            quiet.close()
        records = [json.loads(line) for line in Path(result.metrics).read_text().splitlines()]

    print(
        f"replay: {args.tokens_per_s:g} tokens/s per sequence, {args.latency * 1000:.0f} ms per "
        f"call, ~{args.think + 120} tokens per response; B={args.batch}, n={args.rollouts}, "
        f"chunk {args.chunk} x {args.concurrent} in flight, {args.mode}; tiny model update on CPU"
    )
    print()
    print(
        "| step | responses | trained | step s | generating s | update s | other s | other % "
        "| responses/s | executions/s |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    # In async mode generation and the update overlap, so "the rest" is only measured in sync.
    sync = args.mode == "sync"
    totals = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    previous = records[0]["time"]
    for record in records[1:]:
        end = record["time"]
        step_s = end - previous
        generating = backend.busy_within(previous, end)
        update = (
            record.get("time/update", 0.0)
            + record.get("time/weight_sync", 0.0)
            + record.get("time/checkpoint", 0.0)
        )
        other = max(step_s - generating - update, 0.0)
        responses = record["gen/responses"]
        trained = record.get("learner/samples", 0.0)
        share = f"{100 * other / step_s:.1f}%" if sync else "-"
        rest = f"{other:.2f}" if sync else "-"
        print(
            f"| {record['step']} | {responses:.0f} | {trained:.0f} | {step_s:.2f} | "
            f"{generating:.2f} | {update:.2f} | {rest} | {share} | "
            f"{responses / step_s:.1f} | {record.get('executor/executions_per_s', 0.0):.0f} |"
        )
        if record["step"] > 1:  # step 1 pays for warm-up
            for i, value in enumerate((responses, trained, step_s, generating, update, other)):
                totals[i] += value
        previous = end
    if totals[2] > 0:
        responses, trained, step_s, generating, update, other = totals
        share = f"**{100 * other / step_s:.1f}%**" if sync else "-"
        rest = f"{other:.2f}" if sync else "-"
        print(
            f"| steps 2+ | {responses:.0f} | {trained:.0f} | {step_s:.2f} | {generating:.2f} | "
            f"{update:.2f} | {rest} | {share} | {responses / step_s:.1f} | |"
        )
    seed = records[0]
    sizes = "/".join(
        f"{records[-1].get(f'buffer/{t}/size', 0):.0f}"
        for t in ("deduction", "abduction", "induction")
    )
    rollout_s = sum(r["time/rollout"] for r in records[1:])
    responses_all = sum(r["gen/responses"] for r in records[1:])
    print()
    print(
        f"rollout phases (propose -> validate -> learnability -> solve -> check): "
        f"{responses_all / rollout_s:.1f} responses/s"
    )
    print(
        f"seeding: {seed.get('seed/rounds', 0):.0f} round(s), {seed.get('time/seed', 0):.1f} s; "
        f"final buffer sizes d/a/i: {sizes}"
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()

"""``azr train``: build the model, the backend and the actors, run the self-play loop, report.

The wiring, in start order (the actor system stops them in reverse, so a producer always stops
before what it feeds)::

    [sglang server]  learner  buffer  verifier  solver  proposer  coordinator

The loop's own output goes through :class:`RunOutput`: a summary line per step on the console,
every metric as one JSON line per step in ``<output_dir>/metrics.jsonl`` (and TensorBoard
event files when enabled and installed), progress bars on an interactive terminal.

Stopping: the first Ctrl-C or SIGTERM stops the system gracefully (queued work is dropped,
running work gets ``run.grace_period_s`` to finish, checkpoints being written are completed),
the second cancels at once. Either way the sandbox's processes and any server are terminated,
and the newest complete checkpoint stays as it was.
"""

from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import IO, Any, Final

import msgspec
import trio

from azr.actors._common import ANSWER_STOP, PromptFormat, Template
from azr.actors.buffer import BufferActor, load_buffers
from azr.actors.coordinator import STATE_DECODER, Coordinator, RunState
from azr.actors.learner import LEARNER_DIR, CheckpointStore, LearnerActor, WeightSync
from azr.actors.messages import (
    CONFIG_FILE,
    STATE_FILE,
    BufferRequest,
    CoordinatorEvent,
    LearnerRequest,
    ProposeChunk,
    Report,
    RunFinished,
    SolveChunk,
    StageProgress,
    StepReport,
    VerifierWork,
)
from azr.actors.proposer import Proposer
from azr.actors.solver import Solver
from azr.actors.verifier import VerifierActor
from azr.buffer import Buffers
from azr.config import Config, config_to_json
from azr.errors import ConfigError
from azr.generation.base import GenerationBackend, SamplingParams
from azr.runtime import ActorSystem, ChildProcessActor, open_actor_system
from azr.verify import Verifier

__all__ = ["METRICS_FILE", "RunOutput", "TrainResult", "train", "train_async"]

METRICS_FILE: Final = "metrics.jsonl"
SAMPLES_FILE: Final = "samples.jsonl"


class TrainResult(msgspec.Struct, frozen=True, kw_only=True):
    """How a run ended. ``completed`` is False when it was stopped (``stop_reason`` says why);
    ``checkpoint`` is the newest complete checkpoint (possibly from before this run)."""

    completed: bool
    last_step: int
    output_dir: str
    metrics: str
    checkpoint: str | None
    stop_reason: str | None


# --------------------------------------------------------------------------------------------
# Output: console, JSONL, TensorBoard, progress bars
# --------------------------------------------------------------------------------------------


class RunOutput:
    """Where a run's reports go. ``resume_step`` drops metrics lines of steps after it (those of
    an interrupted run, which the resumed run is about to redo)."""

    def __init__(
        self,
        output_dir: Path,
        *,
        console: IO[str],
        progress: bool,
        tensorboard: bool,
        resume_step: int | None = None,
    ) -> None:
        self.path = output_dir / METRICS_FILE
        self._console = console
        self._encoder = msgspec.json.Encoder()
        if resume_step is not None and self.path.exists():
            _truncate_metrics(self.path, resume_step)
        elif resume_step is None:
            self.path.unlink(missing_ok=True)
        self._file = self.path.open("ab")
        samples_path = output_dir / SAMPLES_FILE
        if resume_step is None:
            samples_path.unlink(missing_ok=True)
        self._samples = samples_path.open("ab")
        self._bars: dict[tuple[int, str], Any] = {}
        self._tqdm: Any = None
        if progress and sys.stderr.isatty():
            try:
                from tqdm import tqdm

                self._tqdm = tqdm
            except ImportError:
                pass
        self._tb: Any = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(log_dir=str(output_dir / "tensorboard"))
            except ImportError:
                print("tensorboard is not installed; metrics go to JSONL only", file=sys.stderr)

    def handle(self, report: Report) -> None:
        match report:
            case StageProgress():
                self._progress(report)
            case StepReport():
                self._step(report)
            case _:
                pass

    def _progress(self, report: StageProgress) -> None:
        if self._tqdm is None:
            return
        key = (report.step, report.stage)
        bar = self._bars.get(key)
        if bar is None:
            label = "seed" if report.step == 0 else f"step {report.step} {report.stage}"
            bar = self._bars[key] = self._tqdm(total=report.total, desc=label, leave=False)
        bar.update(report.done - bar.n)
        if report.done >= report.total:
            bar.close()
            del self._bars[key]

    def _step(self, report: StepReport) -> None:
        record: dict[str, Any] = {"step": report.step, "time": time.time()}
        if report.checkpoint is not None:
            record["checkpoint"] = report.checkpoint
        record.update(report.metrics)
        self._file.write(self._encoder.encode(record) + b"\n")
        self._file.flush()
        if report.samples:
            self._samples.write(b"".join(self._encoder.encode(s) + b"\n" for s in report.samples))
            self._samples.flush()
        if self._tb is not None:
            for key, value in report.metrics.items():
                self._tb.add_scalar(key, value, report.step)
            self._tb.flush()
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()
        print(report.summary, file=self._console, flush=True)

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()
        self._file.close()
        self._samples.close()
        if self._tb is not None:
            self._tb.close()


class _StepOnly(msgspec.Struct):
    step: int


def _truncate_metrics(path: Path, keep_through: int) -> None:
    decoder = msgspec.json.Decoder(_StepOnly)
    kept = []
    for line in path.read_bytes().splitlines():
        try:
            if decoder.decode(line).step <= keep_through:
                kept.append(line)
        except msgspec.DecodeError:
            continue  # a torn last line of a killed run
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(b"".join(line + b"\n" for line in kept))
    tmp.replace(path)


# --------------------------------------------------------------------------------------------
# Set-up
# --------------------------------------------------------------------------------------------


class _Resumed(msgspec.Struct, frozen=True):
    path: Path
    state: RunState


def _find_checkpoint(config: Config, resume: bool) -> _Resumed | None:
    store = CheckpointStore(Path(config.run.output_dir) / "checkpoints")
    latest = store.latest()
    if latest is None:
        if resume:
            print(f"no checkpoint in {store.root}; starting a fresh run", file=sys.stderr)
        return None
    if not resume:
        raise ConfigError(
            f"{config.run.output_dir} already holds checkpoints (newest: {latest.name}); pass "
            "--resume to continue that run, or choose another run.output_dir"
        )
    state = STATE_DECODER.decode((latest / STATE_FILE).read_bytes())
    _warn_config_changes(latest / CONFIG_FILE, config)
    return _Resumed(latest, state)


def _fields(value: Any, prefix: str = "") -> dict[str, Any]:
    """Leaf settings of a config struct by dotted key (sets compare as sets, whatever their
    order in a file)."""
    if isinstance(value, msgspec.Struct):
        out: dict[str, Any] = {}
        for name in value.__struct_fields__:
            out.update(_fields(getattr(value, name), f"{prefix}{name}."))
        return out
    return {prefix[:-1]: value}


def _warn_config_changes(saved: Path, config: Config) -> None:
    if not saved.is_file():
        return
    try:
        before = _fields(msgspec.json.decode(saved.read_bytes(), type=Config))
    except msgspec.ValidationError:
        print("warning: the checkpoint's configuration no longer loads", file=sys.stderr)
        return
    now = _fields(config)
    # Extending a run, or watching it differently, is not a change of the experiment.
    harmless = {"run.steps", "run.progress", "run.tensorboard", "run.grace_period_s"}
    changed = [k for k in now if before.get(k) != now[k] and k not in harmless]
    if changed:
        listed = ", ".join(f"{k} ({before.get(k)!r} -> {now[k]!r})" for k in changed[:8])
        print(f"warning: resuming with changed settings: {listed}", file=sys.stderr)


def _template(config: Config) -> Template:
    chosen = config.generation.template
    if chosen == "auto":
        return "markers" if config.model.path is None else "plain"
    return chosen


def _sampling(config: Config) -> SamplingParams:
    gen = config.generation
    return SamplingParams(
        n=1,
        temperature=gen.temperature,
        top_p=gen.top_p,
        max_new_tokens=gen.max_new_tokens,
        stop=(ANSWER_STOP,) if gen.stop_at_answer else (),
    )


@asynccontextmanager
async def _open_backend(backend: Any) -> AsyncIterator[Any]:
    try:
        yield backend
    finally:
        with trio.CancelScope(shield=True):
            await backend.aclose()


async def _start_server(system: ActorSystem, config: Config, model_path: str) -> str:
    """Launch the SGLang server as a supervised child; its URL once it answers."""
    import httpx

    from azr.generation.sglang import launch_sglang_server

    settings = config.generation.sglang
    launch = launch_sglang_server(model_path, settings.port, settings.extra_args)

    async def healthy() -> bool:
        async with httpx.AsyncClient(trust_env=False) as client:
            try:
                response = await client.get(f"{launch.url}/health", timeout=30.0)
            except httpx.TransportError:
                return False
            return response.status_code == 200

    server = ChildProcessActor(
        launch.argv,
        ready=healthy,
        ready_timeout=settings.ready_timeout_s,
        poll_interval=2.0,
        env={**os.environ, **launch.env},
    )
    await system.start_actor("sglang", server)
    return launch.url


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


async def _make_backend(
    system: ActorSystem, config: Config, learner: Any, resumed: _Resumed | None, out_dir: Path
) -> tuple[Any, WeightSync]:
    """The configured generation backend (launching its server first if need be), and how the
    learner's weights reach it."""
    gen = config.generation
    if gen.backend == "torch":
        import torch

        from azr.generation.torch import TorchBackend

        device = gen.torch.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        backend = TorchBackend(
            learner.model,
            learner.tokenizer,
            device=device,
            max_batch_size=gen.torch.max_batch_size,
            weight_version=learner.weight_version,
        )
        return backend, "in_process"

    from azr.generation.sglang import SGLangBackend, SGLangConfig

    settings = gen.sglang
    url = settings.url
    if settings.launch:
        served = config.model.path
        if resumed is not None:
            # The server must start from the resumed weights, not from the base model.
            exported = await trio.to_thread.run_sync(
                learner.export_weights, out_dir / "weights" / f"v{learner.weight_version:06d}"
            )
            served = exported.path
        assert served is not None
        url = await _start_server(system, config, served)
    client = SGLangConfig(
        url=url,
        max_concurrency=settings.max_concurrency,
        max_batch_sequences=settings.max_batch_sequences,
        request_timeout_s=settings.request_timeout_s,
    )
    return SGLangBackend(client, initial_weight_version=learner.weight_version), "checkpoint"


async def train_async(
    config: Config,
    *,
    resume: bool = False,
    console: IO[str] | None = None,
    backend: GenerationBackend | None = None,
) -> TrainResult:
    """Run (or, with ``resume``, continue) the self-play loop that ``config`` describes.

    ``backend`` replaces the configured generation backend (benchmarks, tests); it receives the
    learner's weights in process (:class:`~azr.generation.base.InProcessWeights`) and is closed
    at the end of the run.
    """
    import torch
    import transformers

    from azr.rl.learner import Learner

    # Saving a checkpoint would otherwise draw a progress bar of its own on every save.
    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]

    console = console if console is not None else sys.stdout
    run = config.run
    out_dir = Path(run.output_dir)
    resumed = _find_checkpoint(config, resume)
    out_dir.mkdir(parents=True, exist_ok=True)
    config_json = config_to_json(config)
    (out_dir / CONFIG_FILE).write_bytes(config_json)
    if run.torch_threads is not None:
        torch.set_num_threads(run.torch_threads)
    random.seed(run.seed)
    torch.manual_seed(run.seed)

    # Loading a model takes seconds to minutes: off the event loop, so signals are still seen.
    if resumed is not None:
        learner = await trio.to_thread.run_sync(
            partial(Learner.from_checkpoint, resumed.path / LEARNER_DIR, config.learner)
        )
        buffers, rng = load_buffers(resumed.path, resumed.state.buffer_rng)
        start_step, seeded = resumed.state.step, resumed.state.seeded
    else:
        model = config.model
        model_path = model.path
        if model.base is not None:
            from azr.pretrain import resolve_base

            model_path = str(await trio.to_thread.run_sync(resolve_base, model.base))
        learner = await trio.to_thread.run_sync(
            partial(
                Learner.from_pretrained,
                model_path,
                config.learner,
                spec=model.tiny if model_path is None else None,
                seed=model.init_seed,
            )
        )
        rng = random.Random(run.seed)
        buffers = Buffers(rng, capacity=config.selfplay.buffer_capacity)
        start_step, seeded = 0, False

    eval_tasks: tuple[Any, ...] = ()
    if run.eval_every > 0:
        from azr.eval.heldout import load_heldout_tasks

        eval_tasks = await trio.to_thread.run_sync(load_heldout_tasks, config.verifier)
    tokenizer = learner.tokenizer
    prompt_format = PromptFormat(_template(config), tokenizer)
    sampling = _sampling(config)
    store = CheckpointStore(out_dir / "checkpoints")
    output = RunOutput(
        out_dir,
        console=console,
        progress=run.progress,
        tensorboard=run.tensorboard,
        resume_step=start_step if resumed is not None else None,
    )
    finished: RunFinished | None = None
    last_step = start_step
    system: ActorSystem | None = None
    try:
        async with open_actor_system(grace_period=run.grace_period_s) as system:
            await system.stop_on_signals()
            gen = config.generation
            weight_sync: WeightSync = "in_process"
            if backend is None:
                backend, weight_sync = await _make_backend(
                    system, config, learner, resumed, out_dir
                )
            await system.enter_async_context(_open_backend(backend))

            chunks = -(-config.selfplay.batch_size // gen.chunk_size) * 3
            coordinator_inbox = system.open_mailbox(CoordinatorEvent, 64, name="coordinator")
            proposer_inbox = system.open_mailbox(ProposeChunk, chunks, name="proposer")
            solver_inbox = system.open_mailbox(SolveChunk, 2 * chunks, name="solver")
            verifier_inbox = system.open_mailbox(
                VerifierWork, 2 * config.verifier.max_concurrent_batches, name="verifier"
            )
            buffer_inbox = system.open_mailbox(BufferRequest, 8, name="buffer")
            learner_inbox = system.open_mailbox(LearnerRequest, 8, name="learner")
            reports = system.open_mailbox(Report, 256, name="reports")

            await system.start_actor(
                "learner",
                LearnerActor(
                    learner=learner,
                    backend=backend,
                    weight_sync=weight_sync,
                    store=store,
                    inbox=learner_inbox,
                    coordinator=coordinator_inbox,
                    weights_dir=out_dir / "weights",
                ),
                mailboxes=[learner_inbox],
            )
            await system.start_actor(
                "buffer",
                BufferActor(
                    buffers=buffers, rng=rng, inbox=buffer_inbox, coordinator=coordinator_inbox
                ),
                mailboxes=[buffer_inbox],
            )
            vcfg = config.verifier
            await system.start_actor(
                "verifier",
                VerifierActor(
                    make_verifier=lambda: Verifier(
                        workers=vcfg.workers,
                        limits=vcfg.limits,
                        checks=vcfg.checks,
                        validation=vcfg.validation,
                        rewards=config.rewards,
                    ),
                    inbox=verifier_inbox,
                    coordinator=coordinator_inbox,
                    max_concurrent=vcfg.max_concurrent_batches,
                ),
                mailboxes=[verifier_inbox],
            )
            await system.start_actor(
                "solver",
                Solver(
                    backend=backend,
                    tokenizer=tokenizer,
                    prompt_format=prompt_format,
                    sampling=sampling,
                    inbox=solver_inbox,
                    verifier=verifier_inbox,
                    concurrency=gen.concurrent_chunks,
                ),
                mailboxes=[solver_inbox],
            )
            await system.start_actor(
                "proposer",
                Proposer(
                    backend=backend,
                    tokenizer=tokenizer,
                    prompt_format=prompt_format,
                    sampling=sampling,
                    inbox=proposer_inbox,
                    verifier=verifier_inbox,
                    concurrency=gen.concurrent_chunks,
                ),
                mailboxes=[proposer_inbox],
            )
            await system.start_actor(
                "coordinator",
                Coordinator(
                    config=config,
                    inbox=coordinator_inbox,
                    proposer=proposer_inbox,
                    solver=solver_inbox,
                    buffer=buffer_inbox,
                    learner=learner_inbox,
                    reports=reports,
                    start_step=start_step,
                    seeded=seeded,
                    config_json=config_json,
                    eval_tasks=eval_tasks,
                ),
                mailboxes=[coordinator_inbox],
            )
            while finished is None:
                report = await reports.receive()
                output.handle(report)
                if isinstance(report, StepReport):
                    last_step = max(last_step, report.step)
                elif isinstance(report, RunFinished):
                    finished = report
    finally:
        output.close()
    _report_end(config, out_dir, output.path, console)
    latest = store.latest()
    return TrainResult(
        completed=finished is not None,
        last_step=last_step,
        output_dir=str(out_dir),
        metrics=str(output.path),
        checkpoint=str(latest) if latest is not None else None,
        stop_reason=system.stop_reason if system is not None and finished is None else None,
    )


def _report_end(config: Config, out_dir: Path, metrics: Path, console: IO[str]) -> None:
    """The held-out before -> after summary and the curves, when the run asked for them."""
    if config.run.eval_every > 0:
        from azr.eval.heldout import run_summary

        text = run_summary(metrics)
        if text:
            print(text, file=console, flush=True)
    if config.run.curves:
        from azr.plot import plot_runs

        try:
            written = plot_runs([out_dir], out_dir / "curves.png")
        except ImportError:
            print("matplotlib is not installed; no curves.png", file=sys.stderr)
        else:
            print(f"curves: {written}", file=console, flush=True)


def train(
    config: Config,
    *,
    resume: bool = False,
    console: IO[str] | None = None,
    backend: GenerationBackend | None = None,
) -> TrainResult:
    """:func:`train_async` under ``trio.run``."""
    return trio.run(partial(train_async, config, resume=resume, console=console, backend=backend))

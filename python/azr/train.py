"""``azr train``: build the model, the backend and the actors, run the self-play loop, report.

The wiring, in start order (the actor system stops them in reverse, so a producer always stops
before what it feeds)::

    [sglang server]  learner  buffer  verifier  solver  proposer  coordinator

The loop's own output goes through :class:`RunOutput`: a summary line per step on the console,
every metric as one JSON line per step in ``<output_dir>/metrics.jsonl`` (and TensorBoard
event files when enabled and installed), progress bars on an interactive terminal.

Stopping: the first Ctrl-C or SIGTERM stops the system gracefully (queued work is dropped,
running work gets ``run.grace_period_s`` to finish, checkpoints being written are completed),
the second cancels at once; during set-up either one ends the run before it starts. Either way
the sandbox's processes and any server are terminated, and the newest committed checkpoint
stays as it was.

A step is committed when its metrics line is written and synced; ``latest`` is moved after
that (see :mod:`azr.run.checkpoints`). The configuration is checked against the machine before
anything is touched (:func:`azr.config_checks.check_config`), and the output folder is locked
for the whole run (:func:`azr.run.lock.hold_run_lock`).
"""

from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import IO, Any, Final

import msgspec
import trio

from azr.actors._common import ANSWER_STOP, PromptFormat, Template
from azr.actors.buffer import BufferActor, load_buffers
from azr.actors.coordinator import STATE_DECODER, Coordinator, RunState, seed_counts
from azr.actors.learner import LEARNER_DIR, LearnerActor, WeightSync
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
from azr.config_checks import check_config
from azr.errors import CheckpointError, ConfigError
from azr.generation.base import GenerationBackend, SamplingParams
from azr.generation.weight_sync import DistributedWeightSync
from azr.run.checkpoints import CheckpointStore, recorded_checkpoints
from azr.run.disk import disk_full_errors
from azr.run.lock import hold_run_lock
from azr.run.resume import resume_changes
from azr.run.signals import open_startup_stop
from azr.runtime import ActorSystem, ChildProcessActor, open_actor_system
from azr.verify import Verifier

__all__ = ["METRICS_FILE", "RunOutput", "TrainResult", "train", "train_async"]

METRICS_FILE: Final = "metrics.jsonl"
SAMPLES_FILE: Final = "samples.jsonl"


class TrainResult(msgspec.Struct, frozen=True, kw_only=True):
    """How a run ended. ``completed`` is False when it was stopped (``stop_reason`` says why);
    ``checkpoint`` is the newest committed checkpoint (possibly from before this run), of step
    ``checkpoint_step``; ``last_step`` is the newest step with a metrics line."""

    completed: bool
    last_step: int
    output_dir: str
    metrics: str
    checkpoint: str | None
    stop_reason: str | None
    checkpoint_step: int | None = None


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
        with disk_full_errors("metrics", self.path):
            self._file.write(self._encoder.encode(record) + b"\n")
            self._file.flush()
            if report.checkpoint is not None:
                # Durable before ``latest`` names the checkpoint: the step is committed.
                os.fsync(self._file.fileno())
            if report.samples:
                self._samples.write(
                    b"".join(self._encoder.encode(s) + b"\n" for s in report.samples)
                )
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


def _note(text: str) -> None:
    print(f"azr: {text}", file=sys.stderr, flush=True)


def _find_checkpoint(config: Config, resume: bool, resume_from: int | None) -> _Resumed | None:
    """The checkpoint to continue from (verified, its configuration compatible), or None for a
    fresh run; interrupted saves are cleaned up either way. Called with the run lock held."""
    out_dir = Path(config.run.output_dir)
    store = CheckpointStore(out_dir / "checkpoints")
    if not resume:
        for note in store.sweep():
            _note(note)
        steps = store.steps()
        if steps:
            raise ConfigError(
                f"{config.run.output_dir} already holds checkpoints (newest: "
                f"{store.name(steps[-1])}); pass --resume to continue that run, or choose "
                "another run.output_dir"
            )
        return None
    recorded = recorded_checkpoints(out_dir / METRICS_FILE)
    choice = store.choose(resume_from=resume_from, recorded=recorded)
    for note in choice.notes:
        _note(note)
    if choice.path is None:
        _note(f"no checkpoint in {store.root}; starting a fresh run")
        return None
    name = choice.path.name
    try:
        state = STATE_DECODER.decode((choice.path / STATE_FILE).read_bytes())
        saved = (choice.path / CONFIG_FILE).read_bytes()
        changes = resume_changes(saved, config)
    except (OSError, msgspec.DecodeError) as exc:
        raise CheckpointError(f"{name}: its state cannot be read: {exc}") from None
    if changes.refused:
        raise ConfigError(
            f"cannot resume {name} with changed settings that a checkpoint fixes: "
            f"{', '.join(changes.refused)}; start a new run (another run.output_dir) to change them"
        )
    if changes.allowed:
        _note(f"resuming {name} with changed settings: {', '.join(changes.allowed)}")
    else:
        _note(f"resuming from {name}")
    return _Resumed(choice.path, state)


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


async def _benchmark_hook(system: ActorSystem, config: Config, backend: Any, learner: Any) -> Any:
    """``azr eval``'s benchmarks on the run's own backend every run.eval_every steps, or None."""
    run = config.run
    if not (run.eval_every and run.eval_benchmarks):
        return None
    from azr.eval.during_training import BenchmarkEvaluator, benchmark_hook

    @asynccontextmanager
    async def opened() -> AsyncIterator[BenchmarkEvaluator]:
        evaluator = BenchmarkEvaluator(
            run.eval_benchmarks,
            data_dir=run.eval_data_dir,
            limit=run.eval_limit,
            max_new_tokens=run.eval_max_new_tokens,
            template=_template(config),
        )
        try:
            yield evaluator
        finally:
            evaluator.close()

    evaluator = await system.enter_async_context(opened())
    return benchmark_hook(evaluator, backend, learner.tokenizer)


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


def _load_seed_file(config: Config, buffers: Buffers) -> None:
    from azr.seeds import load_seed_file

    assert config.selfplay.seed_file is not None
    vcfg = config.verifier
    with Verifier(workers=vcfg.workers, limits=vcfg.limits, validation=vcfg.validation) as v:
        load_seed_file(buffers, config.selfplay.seed_file, v)


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


async def _make_backend(
    system: ActorSystem, config: Config, learner: Any, resumed: _Resumed | None, out_dir: Path
) -> tuple[Any, WeightSync | DistributedWeightSync]:
    """The configured generation backend (launching its server first if need be), and how the
    learner's weights reach it."""
    gen = config.generation
    if gen.backend == "torch":
        import torch

        from azr.generation.torch import TorchBackend

        device = gen.torch.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        model = learner.model
        if learner.sharded:  # generation needs whole weights, here on rank 0 alone
            model = await trio.to_thread.run_sync(learner.unsharded_model)
        backend = TorchBackend(
            model,
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
        router=settings.router,
        max_concurrency=settings.max_concurrency,
        max_batch_sequences=settings.max_batch_sequences,
        request_timeout_s=settings.request_timeout_s,
    )
    sglang = SGLangBackend(client, initial_weight_version=learner.weight_version)
    if settings.weight_sync == "disk":
        return sglang, "checkpoint"
    group = settings.weight_group
    bucket_mb = group.bucket_mb or config.learner.distributed.weight_bucket_mb
    sync = DistributedWeightSync(
        sglang,
        bucket_bytes=bucket_mb << 20,
        master_address=group.master_address,
        master_port=group.master_port,
        group_name=group.group_name,
        collective_backend=group.backend,
        world_size=group.world_size,
        rank_offsets=group.rank_offsets,
        timeout_s=group.timeout_s,
    )
    return sglang, sync


async def train_async(
    config: Config,
    *,
    resume: bool = False,
    resume_from: int | None = None,
    console: IO[str] | None = None,
    backend: GenerationBackend | None = None,
    on_buffers: Callable[[Buffers], None] | None = None,
) -> TrainResult:
    """Run (or, with ``resume``, continue) the self-play loop that ``config`` describes.

    ``resume_from`` picks the checkpoint of that step instead of the newest. ``backend``
    replaces the configured generation backend (benchmarks, tests); it receives the learner's
    weights in process (:class:`~azr.generation.base.InProcessWeights`) and is closed at the
    end of the run. ``on_buffers`` is handed the buffers when a run completes (:mod:`azr.seeds`
    writes them to a seed file). Raises ConfigError (bad or incompatible settings),
    CheckpointError (nothing intact to resume), RunLocked (another trainer has the output
    folder), DiskFull.
    """
    check_config(config)
    out_dir = Path(config.run.output_dir)
    result: TrainResult | None = None
    async with open_startup_stop() as startup:
        with disk_full_errors("the run folder", out_dir):
            out_dir.mkdir(parents=True, exist_ok=True)
        with hold_run_lock(out_dir):
            result = await _train(config, resume, resume_from, console, backend, on_buffers)
    if result is not None:
        return result
    store = CheckpointStore(out_dir / "checkpoints")
    latest = store.latest()
    return TrainResult(
        completed=False,
        last_step=0,
        output_dir=str(out_dir),
        metrics=str(out_dir / METRICS_FILE),
        checkpoint=str(latest) if latest is not None else None,
        stop_reason=f"{startup.reason} during start-up",
        checkpoint_step=store.published() if latest is not None else None,
    )


async def _train(
    config: Config,
    resume: bool,
    resume_from: int | None,
    console: IO[str] | None,
    backend: GenerationBackend | None,
    on_buffers: Callable[[Buffers], None] | None,
) -> TrainResult:
    import torch
    import transformers

    from azr.rl.distributed import FromCheckpoint, FromPretrained
    from azr.rl.follower import build_learner

    # Saving a checkpoint would otherwise draw a progress bar of its own on every save.
    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]

    console = console if console is not None else sys.stdout
    run = config.run
    out_dir = Path(run.output_dir)
    resumed = _find_checkpoint(config, resume, resume_from)
    config_json = config_to_json(config)
    with disk_full_errors("the configuration", out_dir):
        (out_dir / CONFIG_FILE).write_bytes(config_json)
    if run.torch_threads is not None:
        torch.set_num_threads(run.torch_threads)
    random.seed(run.seed)
    torch.manual_seed(run.seed)

    learner_config = config.learner.for_backend(config.generation.backend)
    # Loading a model takes seconds to minutes: off the event loop, so signals are still seen,
    # and abandoned on a stop (it changes nothing on disk).
    if resumed is not None:
        try:
            source = FromCheckpoint(str(resumed.path / LEARNER_DIR))
            learner = await trio.to_thread.run_sync(
                partial(build_learner, source, learner_config), abandon_on_cancel=True
            )
            buffers, rng = load_buffers(resumed.path, resumed.state.buffer_rng)
        except (OSError, ValueError, RuntimeError, KeyError, msgspec.DecodeError) as exc:
            # Verified against its manifest, so written this way: by another version, or with
            # settings this one cannot load.
            raise CheckpointError(f"{resumed.path.name} cannot be loaded: {exc}") from None
        start_step, seeded = resumed.state.step, resumed.state.seeded
        counts = resumed.state.counts
    else:
        model = config.model
        model_path = model.path
        if model.base is not None:
            from azr.pretrain import resolve_base

            model_path = str(await trio.to_thread.run_sync(resolve_base, model.base))
        pretrained = FromPretrained(
            model_path, spec=model.tiny if model_path is None else None, seed=model.init_seed
        )
        learner = await trio.to_thread.run_sync(
            partial(build_learner, pretrained, learner_config), abandon_on_cancel=True
        )
        rng = random.Random(run.seed)
        buffers = Buffers(rng, capacity=config.selfplay.buffer_capacity)
        counts = None
        if config.selfplay.seed_file is not None:
            await trio.to_thread.run_sync(_load_seed_file, config, buffers)
            counts = seed_counts(config, buffers)
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
            weight_sync: WeightSync | DistributedWeightSync = "in_process"
            if backend is None:
                backend, weight_sync = await _make_backend(
                    system, config, learner, resumed, out_dir
                )
            await system.enter_async_context(_open_backend(backend))
            evaluate = await _benchmark_hook(system, config, backend, learner)

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
                    max_prompt_tokens=gen.max_prompt_tokens,
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
                    max_prompt_tokens=gen.max_prompt_tokens,
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
                    counts=counts,
                    config_json=config_json,
                    evaluate=evaluate,
                    eval_tasks=eval_tasks,
                ),
                mailboxes=[coordinator_inbox],
            )
            while finished is None:
                report = await reports.receive()
                output.handle(report)
                if isinstance(report, StepReport):
                    last_step = max(last_step, report.step)
                    if report.checkpoint is not None:
                        # Its metrics line is on disk: now ``latest`` may name it.
                        await trio.to_thread.run_sync(
                            store.publish, report.step, run.keep_checkpoints
                        )
                elif isinstance(report, RunFinished):
                    finished = report
    finally:
        output.close()
    if finished is not None and on_buffers is not None:
        on_buffers(buffers)
    _report_end(config, out_dir, output.path, console)
    latest = store.latest()
    return TrainResult(
        completed=finished is not None,
        last_step=last_step,
        output_dir=str(out_dir),
        metrics=str(output.path),
        checkpoint=str(latest) if latest is not None else None,
        stop_reason=system.stop_reason if system is not None and finished is None else None,
        checkpoint_step=store.published() if latest is not None else None,
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
    resume_from: int | None = None,
    console: IO[str] | None = None,
    backend: GenerationBackend | None = None,
) -> TrainResult:
    """:func:`train_async` under ``trio.run``."""
    return trio.run(
        partial(
            train_async,
            config,
            resume=resume,
            resume_from=resume_from,
            console=console,
            backend=backend,
        )
    )

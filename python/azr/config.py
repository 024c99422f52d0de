"""The configuration of a self-play run: one tree of frozen msgspec Structs, presets, overrides.

A run's configuration is resolved in layers, each on top of the previous one::

    preset (tiny-cpu unless named)  ->  TOML file  ->  --set key=value overrides

:func:`load_config` does the resolution and raises :class:`~azr.errors.ConfigError`, naming the
key, for anything unknown or malformed, before any model, process or file is touched.

The struct defaults are the paper's settings where the paper gives one (B = 64 proposals and
solver tasks per task type, n = 8 solver rollouts for learnability, K = 6 reference triplets,
10 inputs per induction proposal, learning rate 1e-6); the ``paper`` preset adds what a
billion-parameter run needs on top (an SGLang server and a base-model prompt template), and
``tiny-cpu`` shrinks everything so that a few steps finish in minutes on two CPU cores.
Sections:

``model``      what to train: a local Hugging Face directory, or the tiny model built in code
``generation`` rollout backend, sampling, prompt template, streaming chunk size
``selfplay``   batch sizes of the six (task type, role) groups, references, buffer seeding
``rewards``    :class:`azr.rewards.RewardConfig` (reward shaping and ``solver_rollouts`` = n)
``verifier``   executor workers and limits, answer checks, proposal validation
``learner``    :class:`azr.rl.LearnerConfig` (optimiser and objective)
``run``        steps, seed, output directory, checkpoints, sync/async schedule, logging
"""

from __future__ import annotations

import re
import tomllib
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Literal

import msgspec

from azr.errors import ConfigError
from azr.executor import Limits
from azr.models.tiny import TinyModelSpec
from azr.rewards import RewardConfig
from azr.rl.config import LearnerConfig
from azr.tasks.checking import CheckConfig
from azr.tasks.validation import ValidationConfig

__all__ = [
    "PRESETS",
    "Config",
    "GenerationConfig",
    "ModelConfig",
    "RunConfig",
    "SGLangSettings",
    "SelfPlayConfig",
    "TorchGenerationConfig",
    "VerifierSettings",
    "WeightGroupSettings",
    "config_to_json",
    "load_config",
    "parse_override",
]


def _require(checks: Sequence[tuple[bool, str]]) -> None:
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


class _Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Base of every section: immutable, and unknown keys are errors rather than ignored."""


class ModelConfig(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The policy. ``path`` is a local Hugging Face model directory (never downloaded); when it is
    None the tiny byte-level model is built in code from ``tiny`` and ``init_seed``."""

    path: str | None = None
    tiny: TinyModelSpec = TinyModelSpec()
    init_seed: int = 0
    # The in-house base model: a recipe name of azr.pretrain ("cpu-base"), an in-house stand-in
    # for a pretrained LLM, loaded from its committed weights (or built into the cache once).
    base: str | None = None


class TorchGenerationConfig(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The in-process torch backend: ``device`` ("auto": CUDA when present) and the most rows
    (prompt x sample) decoded together."""

    device: str = "auto"
    max_batch_size: int = 64

    def __post_init__(self) -> None:
        _require([(self.max_batch_size >= 1, "max_batch_size must be >= 1")])


class WeightGroupSettings(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The collective group of ``weight_sync = "distributed"`` (SGLang's
    ``/init_weights_update_group``): the learner is rank 0 and the servers join it.

    ``master_address`` is where the servers reach the learner's rendezvous (None: this host's
    name); ``master_port`` 0 picks a free port. ``world_size`` None means 1 + the number of
    servers (each with one GPU, tensor parallelism 1); with tensor parallelism give it, and
    ``rank_offsets`` (server URL -> its first rank) when the servers differ. ``bucket_mb``
    (None: ``learner.distributed.weight_bucket_mb``) bounds each request's tensors;
    ``timeout_s`` bounds the rendezvous and every broadcast, so a lost server fails the run
    instead of hanging it. ``backend`` is ``nccl`` (GPUs); ``gloo`` runs the same code on CPU.
    """

    master_address: str | None = None
    master_port: int = 0
    group_name: str = "azr_weights"
    backend: Literal["nccl", "gloo"] = "nccl"
    world_size: int | None = None
    rank_offsets: dict[str, int] | None = None
    bucket_mb: int | None = None
    timeout_s: float = 600.0

    def __post_init__(self) -> None:
        offsets = self.rank_offsets or {}
        _require(
            [
                (
                    self.master_address is None or bool(self.master_address.strip()),
                    "master_address must be a host name or address (or unset for this host)",
                ),
                (0 <= self.master_port <= 65535, "master_port must be in 0..65535 (0: any)"),
                (bool(self.group_name.strip()), "group_name must not be empty"),
                (
                    self.world_size is None or self.world_size >= 2,
                    "world_size must be >= 2 (the learner and at least one server rank)",
                ),
                (
                    self.rank_offsets is None or self.world_size is not None,
                    "rank_offsets needs world_size (the ranks of every server, plus 1)",
                ),
                (
                    self.rank_offsets is None or bool(offsets),
                    "rank_offsets must name at least one server",
                ),
                (
                    all(1 <= o < (self.world_size or 0) for o in offsets.values()),
                    "rank_offsets must be in 1..world_size-1 (rank 0 is the learner)",
                ),
                (
                    len(set(offsets.values())) == len(offsets),
                    "rank_offsets must give each server a different first rank",
                ),
                (self.bucket_mb is None or self.bucket_mb >= 1, "bucket_mb must be >= 1"),
                (self.timeout_s > 0, "timeout_s must be > 0"),
            ]
        )


class SGLangSettings(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """An SGLang server. With ``launch`` the run starts ``python -m sglang.launch_server`` on
    ``port`` as a supervised child process serving ``model.path`` (``extra_args`` are appended,
    e.g. ``["--tp-size", "2"]``) and stops it at the end; otherwise it connects to ``url``,
    which with ``router`` is an ``sglang-router`` in front of several servers (weight syncs then
    go to every server it lists).

    ``weight_sync`` is how new weights reach the servers after each update: ``disk`` writes a
    bf16 safetensors directory that every server loads (``/update_weights_from_disk``; the
    servers need the learner's filesystem), ``distributed`` broadcasts the tensors over a
    collective group (NCCL) set up once with the servers, per ``weight_group``."""

    launch: bool = True
    url: str = "http://127.0.0.1:30000"
    router: bool = False
    port: int = 30000
    extra_args: tuple[str, ...] = ()
    ready_timeout_s: float = 1800.0
    max_concurrency: int = 8
    max_batch_sequences: int = 256
    request_timeout_s: float = 3600.0
    weight_sync: Literal["disk", "distributed"] = "disk"
    weight_group: WeightGroupSettings = WeightGroupSettings()


class GenerationConfig(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Rollout generation.

    ``template`` wraps each prompt into the model's turn format: ``markers`` uses the special
    tokens of the built-in byte tokenizer, ``plain`` a short plain-text exchange suited to base
    models (which the paper trains), ``chat`` the tokenizer's own chat template; ``auto`` is
    ``markers`` for the tiny model and ``plain`` otherwise. ``stop_at_answer`` ends a response at
    ``</answer>`` (nothing after it is ever read). ``chunk_size`` prompts go to the backend per
    call; each chunk is checked as soon as it is generated, while the next one is generated.
    The proposer and the solver each keep up to ``concurrent_chunks`` calls in flight (an
    inference server batches them; the in-process backend runs them one after the other, and
    a second one queued keeps it from idling between them). A task whose prompt is longer than
    ``max_prompt_tokens`` (the paper's 6,144; None: no limit) is not generated for: it is dropped,
    unscored, and counted (``gen/prompts_too_long`` and reason ``prompt_too_long``), so that one
    reference-laden prompt cannot fail a whole backend call.
    """

    backend: Literal["torch", "sglang"] = "torch"
    template: Literal["auto", "markers", "plain", "chat"] = "auto"
    max_new_tokens: int = 8096
    max_prompt_tokens: int | None = 6144
    temperature: float = 1.0
    top_p: float = 1.0
    stop_at_answer: bool = True
    chunk_size: int = 16
    concurrent_chunks: int = 2
    torch: TorchGenerationConfig = TorchGenerationConfig()
    sglang: SGLangSettings = SGLangSettings()

    def __post_init__(self) -> None:
        _require(
            [
                (self.max_new_tokens >= 1, "max_new_tokens must be >= 1"),
                (
                    self.max_prompt_tokens is None or self.max_prompt_tokens >= 1,
                    "max_prompt_tokens must be >= 1 (or unset for no limit)",
                ),
                (self.temperature >= 0, "temperature must be >= 0"),
                (0 < self.top_p <= 1, "top_p must be in (0, 1]"),
                (self.chunk_size >= 1, "chunk_size must be >= 1"),
                (self.concurrent_chunks >= 1, "concurrent_chunks must be >= 1"),
            ]
        )


class SelfPlayConfig(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """What one step proposes and solves.

    Per task type and step: ``batch_size`` (B) proposals, each deduction or abduction proposal
    conditioned on ``references`` (K) triplets from its buffer, each induction proposal asked for
    ``induction_inputs`` inputs to a program drawn from the deduction and abduction buffers; then
    B solver tasks drawn from the buffer, ``recent_fraction`` of them the newest entries.

    Before the first step, buffers holding fewer than ``seed_buffer_size`` entries are filled by
    proposing without training (from the identity triplet), at most ``seed_max_rounds`` rounds of
    B proposals per type, so that a model that rarely proposes anything valid still starts;
    deduction and abduction first, then induction from the finished pool of programs.
    ``error_prediction`` adds the optional fourth task type (see
    :mod:`azr.tasks.error_prediction`): B more proposals and solver tasks per step, in two
    TRR++ groups of their own.
    ``seed_file`` (written by ``azr seed --out FILE``, see :mod:`azr.seeds`) fills the buffers
    from an earlier seeding stage instead, each entry validated again; seeding then proposes
    only what is still missing.
    ``train_learnability`` also trains the solver on the ``rewards.solver_rollouts`` answers
    sampled for each valid proposal's learnability estimate (off in the paper, which uses them
    only for the proposer's reward): each joins the solver group of its task type with its own
    correctness reward, so every step trains on about n times more solver answers at no extra
    generation cost.
    """

    batch_size: int = 64
    references: int = 6
    induction_inputs: int = 10
    seed_buffer_size: int = 256
    seed_max_rounds: int = 16
    recent_fraction: float = 0.5
    buffer_capacity: int = 16_384
    seed_file: str | None = None
    error_prediction: bool = False
    train_learnability: bool = False

    def __post_init__(self) -> None:
        _require(
            [
                (self.batch_size >= 1, "batch_size must be >= 1"),
                (self.references >= 0, "references must be >= 0"),
                (self.induction_inputs >= 2, "induction_inputs must be >= 2"),
                (self.seed_buffer_size >= 0, "seed_buffer_size must be >= 0"),
                (self.seed_max_rounds >= 0, "seed_max_rounds must be >= 0"),
                (0 <= self.recent_fraction <= 1, "recent_fraction must be in [0, 1]"),
                (self.buffer_capacity >= 2, "buffer_capacity must be >= 2"),
            ]
        )


class VerifierSettings(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The sandbox. ``workers`` parallel executions (None: one per CPU), ``limits`` per
    execution, at most ``max_concurrent_batches`` chunks being checked at once."""

    workers: int | None = None
    max_concurrent_batches: int = 4
    limits: Limits = Limits()
    checks: CheckConfig = CheckConfig()
    validation: ValidationConfig = ValidationConfig()

    def __post_init__(self) -> None:
        _require(
            [
                (self.workers is None or self.workers >= 1, "workers must be >= 1"),
                (self.max_concurrent_batches >= 1, "max_concurrent_batches must be >= 1"),
            ]
        )


class RunConfig(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The run itself.

    ``mode = "sync"`` is the paper's schedule: every rollout of step t uses the weights after
    step t - 1. ``mode = "async"`` generates step t + 1 while step t is being trained, on weights
    at most ``max_staleness`` updates old; samples carry the version that generated them and the
    staleness is logged. Checkpoints go to ``output_dir/checkpoints`` every ``checkpoint_every``
    steps (and after the last), keeping the newest ``keep_checkpoints``. Metrics go to
    ``output_dir/metrics.jsonl`` (and TensorBoard when ``tensorboard`` and it is installed).
    ``grace_period_s`` bounds how long a stop (Ctrl-C, SIGTERM) lets running work finish.
    Every ``eval_every`` steps (0: never) the run's evaluation hooks run on the current policy;
    ``eval_benchmarks`` names ``azr eval`` benchmarks for one of them (greedy pass@1, logged as
    ``eval/<benchmark>``), read from ``eval_data_dir``, the first ``eval_limit`` problems each.
    """

    steps: int = 1000
    seed: int = 0
    output_dir: str = "runs/azr"
    checkpoint_every: int = 50
    keep_checkpoints: int = 3
    mode: Literal["sync", "async"] = "sync"
    max_staleness: int = 1
    progress: bool = True
    tensorboard: bool = True
    torch_threads: int | None = None
    grace_period_s: float = 5.0
    # Held-out evaluation (azr.eval.heldout): every eval_every steps, before the first and after
    # the last (0: never); greedy answers from the backend being trained, eval/<type>/accuracy.
    eval_every: int = 0
    # Benchmarks (azr.eval, `azr eval` names) also scored every eval_every steps (none: skip).
    eval_benchmarks: tuple[str, ...] = ()
    eval_data_dir: str = "data/eval"
    eval_limit: int | None = None
    eval_max_new_tokens: int = 1024
    # Responses per step (and per type and role) written to samples.jsonl (0: none).
    samples_per_step: int = 0
    # Start no new step once this many seconds of steps have passed or the next would not fit
    # (None: run all steps); the step that ends the run is evaluated like the last one.
    time_limit_s: float | None = None
    # Draw curves.png (azr.plot) in output_dir at the end of the run.
    curves: bool = False

    def __post_init__(self) -> None:
        _require(
            [
                (self.steps >= 0, "steps must be >= 0"),
                (self.eval_every >= 0, "eval_every must be >= 0"),
                (self.eval_limit is None or self.eval_limit >= 1, "eval_limit must be >= 1"),
                (self.eval_max_new_tokens >= 1, "eval_max_new_tokens must be >= 1"),
                (self.checkpoint_every >= 1, "checkpoint_every must be >= 1"),
                (self.keep_checkpoints >= 1, "keep_checkpoints must be >= 1"),
                (self.max_staleness >= 1, "max_staleness must be >= 1"),
                (self.torch_threads is None or self.torch_threads >= 1, "torch_threads >= 1"),
                (self.grace_period_s >= 0, "grace_period_s must be >= 0"),
                (self.eval_every >= 0, "eval_every must be >= 0"),
                (self.samples_per_step >= 0, "samples_per_step must be >= 0"),
                (self.time_limit_s is None or self.time_limit_s > 0, "time_limit_s must be > 0"),
                (bool(self.output_dir), "output_dir must not be empty"),
            ]
        )


class Config(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A complete run configuration; see the module docstring for the sections."""

    model: ModelConfig = ModelConfig()
    generation: GenerationConfig = GenerationConfig()
    selfplay: SelfPlayConfig = SelfPlayConfig()
    rewards: RewardConfig = RewardConfig()
    verifier: VerifierSettings = VerifierSettings()
    learner: LearnerConfig = LearnerConfig()
    run: RunConfig = RunConfig()

    def __post_init__(self) -> None:
        gen = self.generation
        _require(
            [
                (
                    gen.backend != "sglang" or self.model.path is not None,
                    "generation.backend = 'sglang' needs model.path (a local Hugging Face model "
                    "directory, e.g. a Qwen2.5-7B checkpoint)",
                ),
                (
                    self.model.base is None or self.model.path is None,
                    "model.base and model.path are alternatives: set one of them",
                ),
                (
                    gen.template != "markers" or self.model.path is None,
                    "generation.template = 'markers' uses the tiny byte tokenizer's special "
                    "tokens; use 'plain' or 'chat' with model.path",
                ),
            ]
        )
        if self.run.eval_benchmarks:
            from azr.eval.benchmarks import parse_benchmarks

            try:
                parse_benchmarks(self.run.eval_benchmarks)
            except ValueError as e:
                raise ConfigError(f"run.eval_benchmarks: {e}") from None

    @property
    def solver_rollouts(self) -> int:
        """n: solver rollouts per valid proposal (kept in ``rewards`` beside the reward it
        feeds, so that the two can never disagree)."""
        return self.rewards.solver_rollouts


# --------------------------------------------------------------------------------------------
# Presets
# --------------------------------------------------------------------------------------------


def _tiny_cpu() -> dict[str, Any]:
    # hidden 64, 2 layers: a forward over a 2,000-byte prompt costs milliseconds. Prompts are
    # long in bytes, so micro-batches stay small to bound the attention memory of the update.
    # The entropy bonus keeps the updates of a random model (whose rewards are all equal, so
    # every TRR++ advantage is 0) from being exactly zero: weights really change every step.
    learner = LearnerConfig.tiny_cpu(micro_batch_size=4, entropy_coef=1e-3)
    return {
        "model": {
            "tiny": {
                "hidden_size": 64,
                "num_layers": 2,
                "num_heads": 4,
                "num_kv_heads": 2,
                "intermediate_size": 128,
            }
        },
        "generation": {
            "max_new_tokens": 48,
            "chunk_size": 4,
            "torch": {"device": "cpu", "max_batch_size": 16},
        },
        "selfplay": {
            "batch_size": 4,
            "references": 2,
            "induction_inputs": 4,
            "seed_buffer_size": 4,
            "seed_max_rounds": 1,
            "buffer_capacity": 1024,
        },
        "rewards": {"solver_rollouts": 2},
        "verifier": {"workers": 2, "max_concurrent_batches": 2},
        "learner": msgspec.to_builtins(learner),
        "run": {
            "steps": 3,
            "output_dir": "runs/tiny-cpu",
            "checkpoint_every": 1,
            "keep_checkpoints": 2,
            "torch_threads": 2,
            "tensorboard": False,
        },
    }


def _cpu_base() -> dict[str, Any]:
    # Self-play from the in-house pretrained base (azr.pretrain) for about five minutes on two
    # cores, with held-out evaluation, samples and curves: what `make run` shows.
    # The base is a 2.45M-parameter model. Sampled at the paper's temperature 1 about two thirds
    # of its proposals are valid in the first steps (85% at 0.7, which leaves validity no room
    # to grow). Above 2e-4 the policy breaks within 20-40 steps (at 5e-4 and 1e-3 induction
    # validity falls to 0 and the held-out accuracy with it).
    learner = LearnerConfig.tiny_cpu(lr=1e-4, micro_batch_size=16, entropy_coef=0.0)
    return {
        "model": {"base": "cpu-base"},
        "generation": {
            "template": "markers",
            "temperature": 1.0,
            "max_new_tokens": 64,
            "chunk_size": 16,
            "torch": {"device": "cpu", "max_batch_size": 64},
        },
        "selfplay": {
            "batch_size": 16,
            "references": 2,
            "induction_inputs": 4,
            "seed_buffer_size": 16,
            "seed_max_rounds": 6,
            "buffer_capacity": 4096,
            # The solver also trains on the learnability answers (about 4x its samples per step
            # for no extra generation). The seeded 6-step e2e run then ends above its step-0
            # held-out accuracy (it did not without); it does not stop proposer and solver from
            # collapsing onto one input within 100 steps (README).
            "train_learnability": True,
        },
        # The program-shape novelty bonus keeps the proposer off the one program family it
        # otherwise settles on within 30 steps (README, "What else was tried").
        "rewards": {"solver_rollouts": 4, "intrinsic": {"novelty": {"coef": 0.5, "max": 0.5}}},
        "verifier": {"workers": 2, "max_concurrent_batches": 2},
        "learner": msgspec.to_builtins(learner),
        "run": {
            "steps": 200,
            "output_dir": "runs/cpu-base",
            "checkpoint_every": 10,
            "keep_checkpoints": 1,
            "torch_threads": 2,
            "tensorboard": False,
            "eval_every": 5,
            "samples_per_step": 2,
            "time_limit_s": 240.0,
            "curves": True,
        },
    }


def _paper() -> dict[str, Any]:
    # Every value that defines the experiment is spelled out here, even where it equals a
    # struct default, so that the preset can be read (and checked) against the paper and the
    # authors' scripts in one place; the README's "The paper preset" table gives the sources and
    # says why where they differ. The model path is left unset on purpose: the run refuses to
    # start until it names a local directory.
    return {
        "generation": {
            "backend": "sglang",
            "concurrent_chunks": 8,
            "max_new_tokens": 8096,  # paper and scripts: max response length 8096
            "max_prompt_tokens": 6144,  # paper: max prompt length 6144
            "temperature": 1.0,
            "top_p": 1.0,
        },
        "selfplay": {
            "batch_size": 64,  # B per task type and role: 64 x 6
            "references": 6,  # K
            "induction_inputs": 10,  # N inputs per induction proposal
            "seed_buffer_size": 256,  # seed batch factor 4 x B
            "buffer_capacity": 16_384,  # max programs
        },
        "rewards": {"profile": "paper", "solver_rollouts": 8, "scheme": "composite"},
        "verifier": {"validation": {"induction_min_inputs": None}},
        "learner": {
            "lr": 1e-6,
            "warmup_steps": 0,
            "weight_decay": 0.0,
            "max_grad_norm": 1.0,
            "clip_low": 0.2,
            "clip_high": 0.28,
            "kl_coef": 0.0,
            "entropy_coef": 0.001,
            "advantage_weighting": "token",
            "update_epochs": 1,
            # Sized for Qwen2.5-7B and -14B on 8 x 80 GB learner GPUs (`azr plan`, README):
            # with 8096-token responses the logits of a micro-batch dominate the activations.
            "micro_batch_size": 2,
            "gradient_checkpointing": True,
            "distributed": {"mixed_precision": True, "cpu_offload": False},
        },
        "run": {"steps": 500, "mode": "sync", "output_dir": "runs/paper", "checkpoint_every": 50},
    }


PRESETS: Final[Mapping[str, Callable[[], dict[str, Any]]]] = {
    "tiny-cpu": _tiny_cpu,
    "cpu-base": _cpu_base,
    "paper": _paper,
}
"""Named starting points, as tables applied over the struct defaults; ``tiny-cpu`` is the
default. A preset is only checked together with what is layered on it, so ``paper`` may leave
``model.path`` for the user to fill in."""

DEFAULT_PRESET: Final = "tiny-cpu"


# --------------------------------------------------------------------------------------------
# Resolution
# --------------------------------------------------------------------------------------------

_AT = re.compile(r" - at `\$\.?([^`]*)`$")


def _config_error(exc: msgspec.ValidationError, source: str) -> ConfigError:
    """A ConfigError naming the dotted key msgspec reports (``$.run.steps`` -> ``run.steps``)."""
    text = str(exc)
    match = _AT.search(text)
    if match is None:
        return ConfigError(f"{source}: {text}")
    key = re.sub(r"\[(\d+)\]", r".\1", match.group(1))
    message = text[: match.start()]
    return ConfigError(f"{source}: {key}: {message}" if key else f"{source}: {message}")


_DEFAULTS: Final = Config()


def _as_dict(config: Config) -> dict[str, Any]:
    builtins = msgspec.to_builtins(config)
    assert isinstance(builtins, dict)
    return builtins


def config_to_json(config: Config) -> bytes:
    """The resolved configuration as indented JSON (what a run records in its output dir)."""
    return msgspec.json.format(msgspec.json.encode(config), indent=2)


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _struct_type(tp: Any) -> type[msgspec.Struct] | None:
    """The Struct class within ``tp`` (``X`` or ``X | None``), if any."""
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return tp
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        found = [t for t in typing.get_args(tp) if isinstance(t, type)]
        structs = [t for t in found if issubclass(t, msgspec.Struct)]
        return structs[0] if len(structs) == 1 else None
    return None


def _accepts(tp: Any, kind: type) -> bool:
    """Whether ``tp`` admits values of ``kind`` (str, or NoneType for None)."""
    if tp is kind:
        return True
    if typing.get_origin(tp) is Literal:
        return any(isinstance(v, kind) for v in typing.get_args(tp))
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        return any(_accepts(t, kind) for t in typing.get_args(tp))
    return False


def _field_type(path: Sequence[str]) -> Any:
    """The annotation of the field at ``path`` in :class:`Config`; ConfigError if unknown."""
    struct: type[msgspec.Struct] | None = Config
    tp: Any = Config
    for depth, name in enumerate(path):
        if struct is None:
            prefix = ".".join(path[:depth])
            raise ConfigError(f"unknown key {'.'.join(path)!r}: {prefix!r} has no sub-keys")
        fields = {f.name: f.type for f in msgspec.structs.fields(struct)}
        if name not in fields:
            where = ".".join(path[:depth]) or "the top level"
            known = ", ".join(sorted(fields))
            raise ConfigError(f"unknown key {'.'.join(path)!r} (keys of {where}: {known})")
        tp = fields[name]
        struct = _struct_type(tp)
    return tp


def parse_override(text: str) -> tuple[tuple[str, ...], Any]:
    """Parse one ``--set a.b.c=value`` into the key path and a value of the field's type.

    The value is read as a TOML value (``3``, ``1e-6``, ``true``, ``[0.9, 0.99]``,
    ``{wall_timeout_s = 2}``) unless the field takes strings and the value is not quoted, in
    which case it is the text itself (``model.path=/models/qwen``); ``null`` sets an optional
    field to None. msgspec then converts it to the field's type.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set expects key=value, got {text!r}")
    path = tuple(part.strip() for part in key.split("."))
    if any(not part for part in path):
        raise ConfigError(f"--set {text!r}: malformed key {key!r}")
    tp = _field_type(path)
    raw = raw.strip()
    value: Any
    if raw in ("null", "none", "None") and _accepts(tp, type(None)):
        value = None
    elif _accepts(tp, str) and not raw.startswith(("'", '"')):
        value = raw
    else:
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw  # let the type check below say what was expected
    if _struct_type(tp) is not None and isinstance(value, dict):
        return path, value  # a partial table: merged into the current one, checked as a whole
    try:
        return path, msgspec.convert(value, tp, strict=False)
    except msgspec.ValidationError as exc:
        raise _config_error(exc, f"--set {key}") from None


def _nested(path: Sequence[str], value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {path[-1]: value}
    for name in reversed(path[:-1]):
        out = {name: out}
    return out


def load_config(
    file: str | Path | None = None,
    *,
    preset: str | None = None,
    overrides: Sequence[str] = (),
) -> Config:
    """Resolve a configuration: ``preset``, then ``file`` (TOML), then ``overrides``.

    A file may name its own base with a top-level ``preset = "..."``; ``preset`` here wins over
    it. Raises :class:`ConfigError` for an unknown preset or key, a value of the wrong type or
    out of range, or an unreadable file.
    """
    table: dict[str, Any] = {}
    source: str | None = None
    if file is not None:
        source = str(file)
        try:
            table = tomllib.loads(Path(file).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read config file {source}: {exc.strerror or exc}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{source}: not valid TOML: {exc}") from None
        file_preset = table.pop("preset", None)
        if file_preset is not None and not isinstance(file_preset, str):
            raise ConfigError(f"{source}: preset must be a string")
        preset = preset or file_preset
    name = preset or DEFAULT_PRESET
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r} (known: {', '.join(sorted(PRESETS))})")
    layered = _merge(_merge(_as_dict(_DEFAULTS), PRESETS[name]()), table)
    merged = layered
    for text in overrides:
        path, value = parse_override(text)
        merged = _merge(merged, _nested(path, msgspec.to_builtins(value)))
    try:
        return msgspec.convert(merged, Config)
    except msgspec.ValidationError as exc:
        error = exc
    if source is not None:
        # Name the file when the file alone is already wrong (overrides may fix some of it).
        try:
            msgspec.convert(layered, Config)
        except msgspec.ValidationError as exc:
            raise _config_error(exc, source) from None
    raise _config_error(error, "--set" if overrides else f"preset {name!r}") from None

"""The ``azr`` command line.

    azr train [--config FILE.toml] [--preset NAME] [--set key=value ...] [--resume]
              [--resume-from STEP] [--print-config] [--nproc N]
              (--nproc N: the learner sharded over N local processes, via torchrun; see azr.launch)
    azr seed --out FILE [--config FILE.toml] [--preset NAME] [--set key=value ...]
              (run only the seeding stage and write its buffers; see azr.seeds)
    azr serve [--host HOST] [--port PORT] [...]      (the HTTP reward service; see azr serve -h)
    azr eval --model PATH --benchmarks humaneval+,aime24,... [...]   (see azr eval -h)
    azr pretrain [--recipe NAME] [--out DIR]         (build the in-house base model)
    azr plot RUN_DIR... [--out FILE.png]             (overlay the learning curves of runs)
    azr export CHECKPOINT OUT_DIR                    (a checkpoint's policy as a bf16 HF model)
    azr plan --model DIR_OR_NAME --nproc N [...]     (per-rank learner memory; see azr.plan)

The configuration is resolved (see :mod:`azr.config`) and checked completely, against the
machine too (:mod:`azr.config_checks`), before anything starts; a configuration error exits with
status 2 and names the offending key. A run stopped by Ctrl-C or SIGTERM, at any moment from
the first instruction on, exits with 130 or 143 (as if killed by the signal), after writing
nothing half-way, and names the step its newest checkpoint holds; ``--resume`` continues it from
there (``--resume-from STEP`` from an older checkpoint). Exit statuses: 0 done, 1 failed (a
damaged run folder, a full disk, a crash), 2 configuration error, 75 the output folder is in use
by another trainer, 130/143 stopped.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from azr.errors import CheckpointError, ConfigError, DiskFull, RunLocked
from azr.run.signals import StopRequested, capture_stop_signals, raise_if_stop_pending

if TYPE_CHECKING:
    from azr.config import Config

__all__ = ["main"]

_EXIT_CONFIG = 2
_EXIT_FAILED = 1
_EXIT_BUSY = 75  # EX_TEMPFAIL: try again once the other trainer has ended


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="azr", description="Absolute Zero self-play reasoning with a sandboxed executor."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train = commands.add_parser(
        "train",
        help="run (or resume) self-play training",
        description="Run self-play training: propose, validate, solve, check, update.",
    )
    _config_arguments(train)
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue from the newest intact checkpoint in run.output_dir",
    )
    train.add_argument(
        "--resume-from",
        type=int,
        metavar="STEP",
        help="continue from the checkpoint of STEP (newer ones are set aside); implies --resume",
    )
    train.add_argument(
        "--print-config", action="store_true", help="print the resolved configuration and exit"
    )
    train.add_argument(
        "--nproc",
        type=int,
        metavar="N",
        help="shard the learner over N processes on this machine (runs torchrun; rank 0 runs "
        "everything else)",
    )
    seed = commands.add_parser(
        "seed",
        help="run only the seeding stage and write its buffers to a seed file",
        description="Seed the buffers (proposals without training) and write them as a seed "
        "file that selfplay.seed_file starts later runs from.",
    )
    seed.add_argument("--out", metavar="FILE", required=True, help="the seed file to write")
    _config_arguments(seed)
    # Listed for help only: main() hands `serve` and its arguments to azr.serve's own parser.
    commands.add_parser("serve", help="run the HTTP reward service (see azr serve -h)")
    commands.add_parser("eval", help="score a model on the paper's benchmarks (see azr eval -h)")
    pretrain = commands.add_parser(
        "pretrain",
        help="build the in-house base model from its recipe",
        description="Generate the corpus, train the tokenizer and the model of a recipe, and "
        "write a model directory (default: the recipe's cache entry, used by model.base).",
    )
    pretrain.add_argument("--recipe", default="cpu-base", help="recipe name (default cpu-base)")
    pretrain.add_argument("--out", metavar="DIR", help="write the model directory here instead")
    plot = commands.add_parser(
        "plot",
        help="draw the learning curves of one or more runs, overlaid",
        description="Rewards, solver accuracy, proposal validity and held-out accuracy per "
        "task type against the step, from each RUN_DIR/metrics.jsonl.",
    )
    plot.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    plot.add_argument("--out", default="curves.png", metavar="FILE", help="image to write")
    export = commands.add_parser(
        "export",
        help="write a checkpoint's policy as a Hugging Face model directory (bf16)",
        description="Write the policy of a training checkpoint (a run folder: its newest "
        "committed checkpoint; a step-NNNNNN folder; or its learner folder), of one process or "
        "sharded, as a Hugging Face model directory with bfloat16 safetensors and the tokenizer.",
    )
    export.add_argument("checkpoint", metavar="CHECKPOINT")
    export.add_argument("out_dir", metavar="OUT_DIR")
    plan = commands.add_parser(
        "plan",
        help="the sharded learner's memory per rank, and whether it fits",
        description="Per-rank memory of the learner (weights, gradients, AdamW states, gathered "
        "layers, activations with and without activation checkpointing, logits) for a model "
        "config sharded over N ranks, with the micro-batch and lengths of the configuration.",
    )
    plan.add_argument(
        "--model",
        required=True,
        metavar="DIR_OR_NAME",
        help="a Hugging Face model directory (only config.json is read) or a known name "
        "(Qwen/Qwen2.5-3B, -7B, -14B and their Coder variants)",
    )
    plan.add_argument("--nproc", type=int, required=True, metavar="N", help="learner ranks")
    plan.add_argument("--gpu-mem", type=float, default=80.0, metavar="GIB", help="per GPU")
    plan.add_argument(
        "--prompt-tokens",
        type=int,
        default=1024,
        metavar="P",
        help="prompt length to plan for (responses: generation.max_new_tokens)",
    )
    _config_arguments(plan)
    return parser


def _config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="a TOML file layered over the preset")
    parser.add_argument(
        "--preset", metavar="NAME", help="starting configuration: tiny-cpu (default) or paper"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one setting, e.g. --set run.steps=10 (repeatable; applied last)",
    )


def _seed(config: Any, out: str) -> int:
    import trio

    from azr.runtime import ActorFailed
    from azr.seeds import seed_async

    try:
        seeds = trio.run(seed_async, config, out)
    except ConfigError as exc:
        print(f"azr: configuration error: {exc}", file=sys.stderr)
        return _EXIT_CONFIG
    except (ActorFailed, RuntimeError) as exc:
        print(f"azr: seeding failed: {exc}", file=sys.stderr)
        return _EXIT_FAILED
    sizes = f"{len(seeds.deduction)}/{len(seeds.abduction)}/{len(seeds.induction)}"
    print(f"seed file: {out} (deduction/abduction/induction entries {sizes})")
    return 0


def _pretrain(recipe_name: str, out: str | None) -> int:
    from azr.pretrain.recipe import RECIPES, build, cache_root, recipe_hash

    recipe = RECIPES.get(recipe_name)
    if recipe is None:
        known = ", ".join(sorted(RECIPES))
        print(f"azr: unknown recipe {recipe_name!r} (known: {known})", file=sys.stderr)
        return _EXIT_CONFIG
    target = out or str(cache_root() / f"{recipe.name}-{recipe_hash(recipe)}")
    build(recipe, target)
    return 0


def _plot(run_dirs: Sequence[str], out: str) -> int:
    from azr.plot import plot_runs

    try:
        written = plot_runs(run_dirs, out)
    except FileNotFoundError as exc:
        print(f"azr: {exc}", file=sys.stderr)
        return _EXIT_FAILED
    print(written)
    return 0


def _plan(config: Config, model: str, nproc: int, gpu_mem: float, prompt_tokens: int) -> int:
    from azr.plan import model_shape, plan_memory, render

    try:
        shape = model_shape(model)
        plans = [
            plan_memory(
                shape,
                nproc=nproc,
                micro_batch_size=config.learner.micro_batch_size,
                prompt_tokens=prompt_tokens,
                response_tokens=config.generation.max_new_tokens,
                activation_checkpointing=checkpointing,
            )
            for checkpointing in (False, True)
        ]
    except (ValueError, OSError) as exc:
        return _fail("cannot plan", exc, _EXIT_CONFIG)
    print(render(shape, plans, gpu_mem))
    return 0


def _export(checkpoint: str, out_dir: str) -> int:
    from azr.export import export_checkpoint

    try:
        written = export_checkpoint(checkpoint, out_dir)
    except (CheckpointError, FileNotFoundError, ValueError) as exc:
        return _fail("cannot export", exc, _EXIT_FAILED)
    print(written)
    return 0


def _exec_nproc(nproc: int, argv: Sequence[str]) -> int:
    from azr.launch import exec_torchrun, launched

    if nproc < 1:
        return _fail("usage", "--nproc takes a number of processes >= 1", _EXIT_CONFIG)
    if launched():
        return _fail("usage", "--nproc inside a torchrun job: give one or the other", _EXIT_CONFIG)
    rest = _without_nproc(argv)
    if nproc == 1:
        return main(rest)
    exec_torchrun(nproc, rest)


def _without_nproc(argv: Sequence[str]) -> list[str]:
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def _exit_status(stop_reason: str | None) -> int:
    for sig in (signal.SIGINT, signal.SIGTERM):
        if stop_reason is not None and sig.name in stop_reason:
            return 128 + sig.value
    return _EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    # First: from here on a stop signal is recorded, never the default action (death mid-write).
    with capture_stop_signals():
        try:
            return _main(argv)
        except StopRequested as stop:
            print(f"azr: stopped by {stop} during start-up", file=sys.stderr)
            return 128 + stop.signum


def _held(config: Config) -> str:
    from azr.run.checkpoints import CheckpointStore

    store = CheckpointStore(Path(config.run.output_dir) / "checkpoints")
    latest = store.latest()
    if latest is None:
        return "no checkpoint yet"
    return f"checkpoint step {store.published()} is the newest (continue with --resume)"


def _fail(kind: str, exc: BaseException | str, status: int) -> int:
    print(f"azr: {kind}: {exc}", file=sys.stderr)
    return status


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        from azr.serve.cli import main as serve_main

        return serve_main(argv[1:], prog="azr serve")
    if argv[:1] == ["eval"]:
        from azr.eval.cli import main as eval_main

        return eval_main(argv[1:], prog="azr eval")
    args = _parser().parse_args(argv)
    if args.command == "pretrain":
        return _pretrain(args.recipe, args.out)
    if args.command == "plot":
        return _plot(args.run_dirs, args.out)
    if args.command == "export":
        return _export(args.checkpoint, args.out_dir)
    if args.command == "train" and args.nproc is not None:
        return _exec_nproc(args.nproc, argv)
    from azr.config import config_to_json, load_config
    from azr.config_checks import check_config

    if args.command == "plan":
        # The model under plan stands in for model.path (which the paper preset leaves unset);
        # nothing is run, so the configuration is not checked against this machine.
        try:
            config = load_config(
                args.config,
                preset=args.preset,
                overrides=[f"model.path={args.model}", *args.overrides],
            )
        except ConfigError as exc:
            return _fail("configuration error", exc, _EXIT_CONFIG)
        return _plan(config, args.model, args.nproc, args.gpu_mem, args.prompt_tokens)
    try:
        config = load_config(args.config, preset=args.preset, overrides=args.overrides)
        if getattr(args, "print_config", False):
            sys.stdout.write(config_to_json(config).decode() + "\n")
            return 0
        check_config(config)
    except ConfigError as exc:
        return _fail("configuration error", exc, _EXIT_CONFIG)
    if args.command == "seed":
        return _seed(config, args.out)
    if args.resume_from is not None and args.resume_from < 0:
        return _fail("usage", "--resume-from takes a step number >= 0", _EXIT_CONFIG)
    try:
        raise_if_stop_pending()
        # Seconds of imports (torch, transformers): a stop during them is seen right after.
        import azr.runtime
        import azr.train  # noqa: F401

        raise_if_stop_pending()
    except StopRequested as stop:
        print(f"azr: stopped by {stop} during start-up; {_held(config)}", file=sys.stderr)
        return 128 + stop.signum
    resume = args.resume or args.resume_from is not None
    from azr.launch import launched, run_rank

    if launched():  # one rank of a torchrun job: rank 0 runs the run, the others follow
        return run_rank(config, lambda: _train(config, resume, args.resume_from))
    return _train(config, resume, args.resume_from)


def _train(config: Config, resume: bool, resume_from: int | None) -> int:
    from azr.runtime import ActorFailed
    from azr.train import train

    try:
        result = train(config, resume=resume, resume_from=resume_from)
    except ConfigError as exc:
        return _fail("configuration error", exc, _EXIT_CONFIG)
    except RunLocked as exc:
        return _fail("refused", exc, _EXIT_BUSY)
    except CheckpointError as exc:
        return _fail("checkpoint error", exc, _EXIT_FAILED)
    except DiskFull as exc:
        return _fail("disk full", exc, _EXIT_FAILED)
    except ActorFailed as exc:
        if isinstance(exc.__cause__, DiskFull):
            return _fail("disk full", exc.__cause__, _EXIT_FAILED)
        return _fail("training failed", exc, _EXIT_FAILED)
    print(f"metrics: {result.metrics}")
    print(f"checkpoint: {result.checkpoint or 'none written yet'}")
    if result.completed:
        return 0
    print(
        f"stopped by {result.stop_reason} after step {result.last_step}; {_held(config)}",
        file=sys.stderr,
    )
    return _exit_status(result.stop_reason)


if __name__ == "__main__":
    sys.exit(main())

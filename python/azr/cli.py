"""The ``azr`` command line.

    azr train [--config FILE.toml] [--preset NAME] [--set key=value ...] [--resume]
              [--print-config]
    azr serve [--host HOST] [--port PORT] [...]      (the HTTP reward service; see azr serve -h)
    azr pretrain [--recipe NAME] [--out DIR]         (build the in-house base model)
    azr plot RUN_DIR... [--out FILE.png]             (overlay the learning curves of runs)

The configuration is resolved (see :mod:`azr.config`) and checked completely before anything
starts; a configuration error exits with status 2 and names the offending key. A run stopped
by Ctrl-C or SIGTERM exits with 130 or 143 (as if killed by the signal), after writing nothing
half-way; ``--resume`` continues it from its newest checkpoint.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence

from azr.errors import ConfigError

__all__ = ["main"]

_EXIT_CONFIG = 2
_EXIT_FAILED = 1


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
    train.add_argument("--config", metavar="FILE", help="a TOML file layered over the preset")
    train.add_argument(
        "--preset", metavar="NAME", help="starting configuration: tiny-cpu (default) or paper"
    )
    train.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one setting, e.g. --set run.steps=10 (repeatable; applied last)",
    )
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue from the newest checkpoint in run.output_dir",
    )
    train.add_argument(
        "--print-config", action="store_true", help="print the resolved configuration and exit"
    )
    # Listed for help only: main() hands `serve` and its arguments to azr.serve's own parser.
    commands.add_parser("serve", help="run the HTTP reward service (see azr serve -h)")
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
    return parser


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


def _exit_status(stop_reason: str | None) -> int:
    for sig in (signal.SIGINT, signal.SIGTERM):
        if stop_reason is not None and sig.name in stop_reason:
            return 128 + sig.value
    return _EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        from azr.serve.cli import main as serve_main

        return serve_main(argv[1:], prog="azr serve")
    args = _parser().parse_args(argv)
    if args.command == "pretrain":
        return _pretrain(args.recipe, args.out)
    if args.command == "plot":
        return _plot(args.run_dirs, args.out)
    from azr.config import config_to_json, load_config

    try:
        config = load_config(args.config, preset=args.preset, overrides=args.overrides)
    except ConfigError as exc:
        print(f"azr: configuration error: {exc}", file=sys.stderr)
        return _EXIT_CONFIG
    if args.print_config:
        sys.stdout.write(config_to_json(config).decode() + "\n")
        return 0

    from azr.runtime import ActorFailed
    from azr.train import train

    try:
        result = train(config, resume=args.resume)
    except ConfigError as exc:
        print(f"azr: configuration error: {exc}", file=sys.stderr)
        return _EXIT_CONFIG
    except ActorFailed as exc:
        print(f"azr: training failed: {exc}", file=sys.stderr)
        return _EXIT_FAILED
    except KeyboardInterrupt:
        # Only before the actor system is up (loading the model); after that Ctrl-C is a stop.
        print("azr: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT.value
    print(f"metrics: {result.metrics}")
    print(f"checkpoint: {result.checkpoint or 'none written yet'}")
    if result.completed:
        return 0
    print(f"stopped after step {result.last_step}: {result.stop_reason}", file=sys.stderr)
    return _exit_status(result.stop_reason)


if __name__ == "__main__":
    sys.exit(main())

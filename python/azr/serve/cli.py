"""``azr serve`` / ``python -m azr.serve``: the reward service from the command line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import msgspec

from azr.errors import ConfigError
from azr.executor import Limits
from azr.rewards import RewardConfig
from azr.serve.config import ServeConfig
from azr.tasks.checking import CheckConfig
from azr.tasks.parsing import ParseConfig

__all__ = ["build_parser", "config_from_args", "main"]

_MIB = 1024 * 1024


def build_parser(prog: str = "azr serve") -> argparse.ArgumentParser:
    d = ServeConfig()
    p = argparse.ArgumentParser(
        prog=prog,
        description="HTTP reward service over the azr verifier: POST /v1/verify (verdicts), "
        "POST /get_reward (OpenRLHF --remote_rm_url), GET /health, GET /metrics. "
        "SIGTERM or SIGINT drains in-flight requests and stops; a second signal stops at once.",
    )
    p.add_argument("--host", default=d.host, help="address to listen on (default %(default)s)")
    p.add_argument(
        "--port", type=int, default=d.port, help="0 picks a free port (default %(default)s)"
    )
    p.add_argument(
        "--workers", type=int, default=None, help="sandbox workers (default: one per CPU)"
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=d.limits.wall_timeout_s,
        metavar="S",
        help="wall-clock seconds per execution (default %(default)s)",
    )
    p.add_argument(
        "--memory-mb",
        type=int,
        default=d.limits.memory_bytes // _MIB,
        metavar="MB",
        help="memory limit per execution (default %(default)s)",
    )
    p.add_argument(
        "--reward-scheme",
        choices=["composite", "binary"],
        default=d.rewards.scheme,
        help="composite: 1 / -0.5 / -1; binary: 1 / 0 (default %(default)s)",
    )
    p.add_argument(
        "--no-require-think",
        action="store_true",
        help="accept responses without </think> before the <answer>",
    )
    p.add_argument(
        "--max-body-mb",
        type=float,
        default=d.max_body_bytes / _MIB,
        metavar="MB",
        help="largest request body (default %(default)s)",
    )
    p.add_argument(
        "--max-items", type=int, default=d.max_items, help="items per request (default %(default)s)"
    )
    p.add_argument(
        "--max-inflight",
        type=int,
        default=d.max_inflight,
        help="requests verified at once (default %(default)s)",
    )
    p.add_argument(
        "--max-queued",
        type=int,
        default=d.max_queued,
        help="requests waiting beyond those; more get 503 (default %(default)s)",
    )
    p.add_argument(
        "--max-connections",
        type=int,
        default=d.max_connections,
        help="open connections (default %(default)s)",
    )
    p.add_argument(
        "--grace",
        type=float,
        default=d.grace_s,
        metavar="S",
        help="seconds in-flight requests get on shutdown (default %(default)s)",
    )
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def config_from_args(args: argparse.Namespace) -> ServeConfig:
    """The :class:`ServeConfig` the parsed arguments describe (raises ConfigError)."""
    try:
        limits = Limits(wall_timeout_s=args.timeout, memory_bytes=args.memory_mb * _MIB)
        checks = CheckConfig(parse=ParseConfig(require_think=not args.no_require_think))
        return ServeConfig(
            host=args.host,
            port=args.port,
            workers=args.workers,
            limits=limits,
            checks=checks,
            rewards=RewardConfig(scheme=args.reward_scheme),
            max_body_bytes=int(args.max_body_mb * _MIB),
            max_items=args.max_items,
            max_inflight=args.max_inflight,
            max_queued=args.max_queued,
            max_connections=args.max_connections,
            grace_s=args.grace,
        )
    except (msgspec.ValidationError, ValueError) as exc:
        raise ConfigError(str(exc)) from exc


def main(argv: Sequence[str] | None = None, *, prog: str = "azr serve") -> int:
    """Parse ``argv`` and serve until SIGTERM/SIGINT. Returns the exit status."""
    from azr.serve._server import serve

    parser = build_parser(prog)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        parser.error(str(exc))
    try:
        serve(config)
    except OSError as exc:  # the address is taken, or not ours to bind
        print(f"{parser.prog}: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0

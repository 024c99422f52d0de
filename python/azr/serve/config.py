"""Settings of the reward service: where it listens, what it accepts, how it checks."""

from __future__ import annotations

import msgspec

from azr.errors import ConfigError
from azr.executor import Limits
from azr.rewards import DEFAULT_REWARDS, RewardConfig
from azr.tasks.checking import DEFAULT_CHECKS, CheckConfig

__all__ = ["ServeConfig"]

_MIB = 1024 * 1024


class ServeConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How ``azr serve`` runs. Every limit answers a client that exceeds it with a 4xx or 503
    and goes on serving the others.

    The defaults suit a trainer on the same network: OpenRLHF sends one query per request and
    opens a connection for each; TRL-style batch clients send thousands of items at once.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    """0 picks a free port (see ``RewardServer.port``)."""
    workers: int | None = None
    """Sandboxed executor workers; None means one per available CPU."""
    limits: Limits = Limits()
    """Resource limits of every sandboxed execution."""
    checks: CheckConfig = DEFAULT_CHECKS
    rewards: RewardConfig = DEFAULT_REWARDS

    max_body_bytes: int = 32 * _MIB
    """Largest request body; larger ones get 413 before being read."""
    max_header_bytes: int = 16 * 1024
    """Largest request line plus headers; larger ones get 431."""
    max_items: int = 8192
    """Most items (or OpenRLHF queries) in one request; more get 413."""
    max_parse_chars: int = 2 * _MIB
    """Most characters of answers the host parses for one request (dense code costs about 2 s
    of host CPU per MiB); more get 413 ``too_much_code`` before any work."""
    max_pairs: int = 8192
    """Most induction pairs (each one sandboxed execution) in one request; more get 413
    ``too_many_pairs``. One item's pairs are also capped by ``checks.max_induction_pairs``."""
    max_connections: int = 512
    """Open connections; further clients wait in the listen backlog."""
    max_inflight: int = 32
    """Requests being verified at once (all share the executor's workers)."""
    max_queued: int = 512
    """Requests waiting for an in-flight slot; beyond that, 503 with ``Retry-After``."""
    chunk_items: int = 16
    """Items per executor batch. Requests take turns a chunk at a time, so a request of
    thousands of items delays a small one by a few chunks, not by all of it."""

    header_timeout_s: float = 10.0
    """From the first byte of a request to the end of its headers (slow-header clients)."""
    body_timeout_s: float = 60.0
    """To receive a whole body once its headers are in."""
    keepalive_timeout_s: float = 30.0
    """How long an idle keep-alive connection is kept open."""
    write_timeout_s: float = 60.0
    """To hand a whole response to a client that reads slowly."""
    grace_s: float = 30.0
    """On shutdown, how long in-flight requests get to finish before they are cancelled."""

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be in 0..65535, not {self.port}")
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"workers must be at least 1, not {self.workers}")
        for name in (
            "max_body_bytes",
            "max_header_bytes",
            "max_items",
            "max_parse_chars",
            "max_pairs",
            "max_connections",
            "max_inflight",
            "chunk_items",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.max_queued < 0:
            raise ConfigError(f"max_queued must be at least 0, not {self.max_queued}")
        for name in (
            "header_timeout_s",
            "body_timeout_s",
            "keepalive_timeout_s",
            "write_timeout_s",
        ):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, not {getattr(self, name)}")
        if not self.grace_s >= 0:
            raise ConfigError(f"grace_s must be at least 0, not {self.grace_s}")

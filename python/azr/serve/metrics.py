"""Service metrics in the Prometheus text exposition format (``GET /metrics``).

Counters and histograms live in plain dicts: the service runs on one trio thread, so nothing
here needs a lock, and rendering is cheap enough to do on every scrape.
"""

from __future__ import annotations

import bisect
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Final

from azr.tasks.types import Reason

__all__ = ["Metrics"]

_BUCKETS: Final = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
"""Request latency buckets in seconds: a single cached verdict takes about a millisecond, a
large batch of executions many seconds."""


class _Histogram:
    __slots__ = ("count", "counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(_BUCKETS) + 1)
        self.count = 0
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(_BUCKETS, value)] += 1
        self.count += 1
        self.total += value


def _labels(**labels: str) -> str:
    inner = ",".join(
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in labels.items()
    )
    return "{" + inner + "}"


class Metrics:
    """What ``azr serve`` counts."""

    def __init__(self) -> None:
        self.started = time.time()
        self.requests: Counter[tuple[str, int]] = Counter()
        self.latency: dict[str, _Histogram] = {}
        self.items: Counter[str] = Counter()
        self.verdicts: Counter[Reason] = Counter()
        self.rejected: Counter[str] = Counter()

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        self.requests[(route, status)] += 1
        histogram = self.latency.get(route)
        if histogram is None:
            histogram = self.latency[route] = _Histogram()
        histogram.observe(seconds)

    def observe_verdicts(self, route: str, reasons: Iterable[Reason]) -> None:
        n = 0
        for reason in reasons:
            self.verdicts[reason] += 1
            n += 1
        self.items[route] += n

    def render(
        self, gauges: Mapping[str, tuple[str, float]], http_errors: Mapping[int, int]
    ) -> str:
        """The exposition text; ``gauges`` maps a metric name to (help, value)."""
        out: list[str] = []

        def family(name: str, kind: str, help_text: str) -> None:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")

        family("azr_requests_total", "counter", "Requests answered, by route and status.")
        for (route, status), n in sorted(self.requests.items()):
            out.append(f"azr_requests_total{_labels(route=route, status=str(status))} {n}")
        family(
            "azr_request_duration_seconds", "histogram", "Time from request to response, by route."
        )
        for route, h in sorted(self.latency.items()):
            cumulative = 0
            for bound, count in zip((*_BUCKETS, float("inf")), h.counts, strict=True):
                cumulative += count
                le = "+Inf" if bound == float("inf") else repr(bound)
                out.append(
                    f"azr_request_duration_seconds_bucket{_labels(route=route, le=le)} {cumulative}"
                )
            out.append(f"azr_request_duration_seconds_sum{_labels(route=route)} {h.total}")
            out.append(f"azr_request_duration_seconds_count{_labels(route=route)} {h.count}")
        family("azr_items_total", "counter", "Items (answers) checked, by route.")
        for route, n in sorted(self.items.items()):
            out.append(f"azr_items_total{_labels(route=route)} {n}")
        family("azr_verdicts_total", "counter", "Verdicts given, by reason code.")
        for reason, n in sorted(self.verdicts.items()):
            out.append(f"azr_verdicts_total{_labels(reason=reason.value)} {n}")
        family("azr_rejected_total", "counter", "Requests refused before any work, by code.")
        for code, n in sorted(self.rejected.items()):
            out.append(f"azr_rejected_total{_labels(code=code)} {n}")
        family("azr_http_errors_total", "counter", "Errors of the HTTP layer, by status.")
        for status, n in sorted(http_errors.items()):
            out.append(f"azr_http_errors_total{_labels(status=str(status))} {n}")
        for name, (help_text, value) in gauges.items():
            family(name, "gauge", help_text)
            out.append(f"{name} {value}")
        family("azr_start_time_seconds", "gauge", "When the service started (Unix time).")
        out.append(f"azr_start_time_seconds {self.started}")
        return "\n".join(out) + "\n"

"""Live lookup rate and latency for the health page, from the server's own metrics (when the
console is mounted in ``featurestore serve --ui``): this process's request histogram."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from featurestore.serving.metrics import ServingMetrics

# The lookup methods of each transport (pushes, health checks and the console are left out).
LOOKUPS = {
    "grpc": "/featurestore.serving.v1.FeatureServing/GetOnlineFeatures",
    "http": "POST /v1/online-features",
}
WINDOW = 60.0  # seconds the rate is taken over (as far back as the page has looked)


@dataclass(frozen=True)
class Lookups:
    """One transport's answered lookups since the server started, and their rate lately."""

    transport: str
    requests: int
    rate: float  # per second over the last WINDOW seconds (or since the first look)
    p50: float | None  # seconds, from the histogram's buckets (upper bound of the bucket)
    p99: float | None


class LookupRates:
    """Reads the request histogram; remembers earlier reads so a rate covers the last minute."""

    def __init__(self, metrics: ServingMetrics) -> None:
        self.metrics = metrics
        self.started = time.monotonic()
        self._seen: deque[tuple[float, dict[str, int]]] = deque([(self.started, {})])
        self._lock = threading.Lock()

    def read(self) -> list[Lookups]:
        counts: dict[str, int] = {t: 0 for t in LOOKUPS}
        buckets: dict[str, dict[float, float]] = {t: {} for t in LOOKUPS}
        for metric in self.metrics.requests.collect():
            for sample in metric.samples:
                transport = sample.labels.get("transport", "")
                if LOOKUPS.get(transport) != sample.labels.get("method"):
                    continue
                if sample.labels.get("status") not in ("OK", "200"):
                    continue  # refused or failed: not a lookup answered
                if sample.name.endswith("_count"):
                    counts[transport] += int(sample.value)
                elif sample.name.endswith("_bucket"):
                    bound = float(sample.labels["le"])
                    buckets[transport][bound] = buckets[transport].get(bound, 0.0) + sample.value
        now = time.monotonic()
        with self._lock:
            while len(self._seen) > 1 and now - self._seen[1][0] >= WINDOW:
                self._seen.popleft()  # keep one read at least WINDOW old, if there is one
            then, before = self._seen[0]
            self._seen.append((now, counts))
        elapsed = max(now - then, 1e-9)
        return [
            Lookups(
                t,
                counts[t],
                (counts[t] - before.get(t, 0)) / elapsed,
                _quantile(buckets[t], counts[t], 0.5),
                _quantile(buckets[t], counts[t], 0.99),
            )
            for t in LOOKUPS
        ]


def _quantile(cumulative: dict[float, float], total: int, q: float) -> float | None:
    """The upper bound of the first bucket holding the ``q`` quantile (None: no requests)."""
    if total == 0:
        return None
    for bound, count in sorted(cumulative.items()):
        if count >= q * total:
            return bound
    return None

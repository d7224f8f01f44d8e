"""Time-window aggregations in plain Python: the independent reference the engine's aggregation
queries are tested against. Obviously correct, not fast: every entity row scans every event."""

from __future__ import annotations

import hashlib
import math
import statistics
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from tests.offline.reference import SourceRow

# (column, function, window, n): an Aggregation's arguments; window None is the lifetime; n is
# approx_count_distinct's k too.
Spec = tuple[str, str, timedelta | None, int | None]

FUNCTIONS = (  # the exact ones; approx_count_distinct (a sketch) is tested on its own
    "count", "count_distinct", "sum", "mean", "min", "max", "variance", "stddev", "first", "last", "last_n",
)
# Largest whole unit first: 7 days is "7d", 90 minutes "90m" (not "1.5h").
UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def window_label(window: timedelta | None) -> str:
    """The window as the largest whole unit among d, h, m, s, or "lifetime"."""
    if window is None:
        return "lifetime"
    seconds, rest = divmod(window, timedelta(seconds=1))
    if rest or seconds <= 0:
        raise ValueError(f"a window must be a positive whole number of seconds, got {window}")
    return next(f"{seconds // size}{unit}" for unit, size in UNITS if seconds % size == 0)


def feature_name(column: str, function: str, window: timedelta | None, n: int | None = None) -> str:
    """The default name of an aggregation's feature, e.g. amount_sum_30m or merchant_last3_1h."""
    part = f"last{n}" if function == "last_n" else function
    return f"{column}_{part}_{window_label(window)}"


def _version(row: SourceRow) -> tuple[bool, datetime, tuple[int, int]]:
    # A null created time is older than any (its event time only fills the slot); then the row
    # ingested last wins.
    return (row.created_ts is not None, row.created_ts or row.event_ts, row.seq)


def latest_versions(rows: Sequence[SourceRow]) -> list[SourceRow]:
    """One row per event (keys, event time): its winning version, whole (even its null values)."""
    best: dict[tuple[tuple[Any, ...], datetime], SourceRow] = {}
    for row in rows:
        event = (row.keys, row.event_ts)
        if event not in best or _version(row) > _version(best[event]):
            best[event] = row
    return sorted(best.values(), key=lambda r: r.event_ts)


def in_window(event: SourceRow, keys: tuple[Any, ...], at: datetime | None, window: timedelta | None) -> bool:
    """Whether an event is in the window (at - window, at] of an entity row (keys, at)."""
    if at is None or any(k is None for k in keys) or event.keys != keys:
        return False
    return event.event_ts <= at and (window is None or event.event_ts > at - window)


def is_null(value: Any) -> bool:
    """Null for an aggregation: None, or NaN in a float column."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def sketch_hash(value: Any) -> int:
    """approx_count_distinct's hash: the top 63 bits of the MD5 of the value's text, the MD5
    read as a little-endian number (ints, strings and bools only: a float's text is DuckDB's)."""
    if isinstance(value, float):
        raise ValueError("the reference hashes ints, strings and bools, not floats")
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return int.from_bytes(hashlib.md5(text.encode()).digest(), "little") >> 65


def approx_count_distinct(values: list[Any], k: int) -> int:
    """The k-minimum-values estimate: exact below k distinct hashes, else (k - 1) / (the kth
    smallest hash as a fraction of 2^63), rounded half up."""
    hashes = sorted({sketch_hash(v) for v in values})
    if len(hashes) < k:
        return len(hashes)
    return math.floor((k - 1) * 2.0**63 / float(hashes[k - 1]) + 0.5)


def apply(function: str, values: list[Any], n: int | None) -> Any:
    """One function over a window's non-null values, ordered by event time (oldest first)."""
    if function == "count":
        return len(values)
    if function == "count_distinct":
        return len(set(values))
    if function == "approx_count_distinct":
        return approx_count_distinct(values, n or 1024)
    if function in ("variance", "stddev"):
        if len(values) < 2:
            return None
        variance = float(statistics.variance(values))  # exact, then rounded once
        return variance if function == "variance" else math.sqrt(variance)
    if not values:
        return None
    if function == "sum":
        return sum(values)  # ints stay ints
    if function == "mean":
        return sum(values) / len(values)
    if function == "min":
        return min(values)
    if function == "max":
        return max(values)
    if function == "first":
        return values[0]
    if function == "last":
        return values[-1]
    if function == "last_n":
        if n is None:
            raise ValueError("last_n needs n")
        return values[::-1][:n]
    raise ValueError(f"unknown aggregation function {function!r}")


def aggregate(
    entity_keys: Sequence[tuple[Any, ...]],
    entity_ts: Sequence[datetime | None],
    rows: Sequence[SourceRow],
    aggregations: Sequence[Spec],
) -> list[dict[str, Any]]:
    """For each entity row, each aggregation's feature (by default name) over its window's events."""
    events = latest_versions(rows)
    out = []
    for keys, at in zip(entity_keys, entity_ts, strict=True):
        features = {}
        for column, function, window, n in aggregations:
            window_events = [e for e in events if in_window(e, keys, at, window)]
            values = [e.values[column] for e in window_events if not is_null(e.values[column])]
            features[feature_name(column, function, window, n)] = apply(function, values, n)
        out.append(features)
    return out

"""A plain-Python point-in-time join: the independent reference the DuckDB query is tested against."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any


@dataclass(frozen=True)
class SourceRow:
    keys: tuple[Any, ...]
    event_ts: datetime
    created_ts: datetime | None
    seq: tuple[int, int]  # (file index in path order, row in file): ingestion order
    values: dict[str, Any]


def point_in_time(
    entity_keys: Sequence[tuple[Any, ...]],
    entity_ts: Sequence[datetime | None],
    rows: Sequence[SourceRow],
    features: Sequence[str],
    ttl: timedelta | None,
) -> list[dict[str, Any]]:
    """For each entity row, the newest source row not after it (and within ttl), or nulls.

    An entity row with a null key or time has no candidate (source rows never have null keys).
    """
    out = []
    for keys, ts in zip(entity_keys, entity_ts, strict=True):
        candidates = [
            r
            for r in rows
            if ts is not None
            and r.keys == keys
            and r.event_ts <= ts
            and (ttl is None or r.event_ts >= ts - ttl)
        ]
        if not candidates:
            out.append(dict.fromkeys(features))
            continue
        best = max(
            candidates,
            key=lambda r: (r.event_ts, r.created_ts or datetime.min.replace(tzinfo=r.event_ts.tzinfo), r.seq),
        )
        out.append({f: best.values[f] for f in features})
    return out

"""Validation test helpers: a repo of two views over hand-made Parquet files, and the
plain-Python reference of every check the ``trips`` view declares."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from featurestore import FeatureStore
from tests.support.clock import minutes_after
from tests.support.repos import make_store

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TZ = pa.timestamp("us", tz="UTC")
PROJECT = "val"

DEFS = """
from datetime import timedelta
from pandera.pandas import Check
from featurestore import Entity, FeatureView, Field, Float64, Int64, ParquetSource, String

driver = Entity("driver", join_keys=["driver_id"])
customer = Entity("customer", join_keys=["customer_id"])

# A re-delivered row must differ in created time; the same key and both times twice is a bug upstream.
unique_row = Check(lambda df: ~df.duplicated(["driver_id", "ts", "created"], keep=False),
                   name="unique_key_ts_created")

trips = FeatureView(
    "trips", entities=[driver], on_invalid="POLICY",
    source=ParquetSource("trips_src", path="data/trips", timestamp_field="ts",
                         created_timestamp_field="created"),
    schema=[
        Field("rate", Float64, checks=[Check.in_range(0, 1)]),
        Field("kind", String, checks=[Check.isin(["bike", "car"])]),
        Field("trips", Int64, nullable=False, checks=[Check.ge(0)]),EXTRA
    ],
    checks=[unique_row],
)
profile = FeatureView(
    "profile", entities=[customer], ttl=timedelta(days=3650),
    source=ParquetSource("profile_src", path="data/profile", timestamp_field="ts"),
    schema=[Field("balance", Float64)],
)
"""

# The names pandera gives the checks, as reports and quarantine files show them.
NOT_NULL = "not_nullable"
RANGE = "in_range(0, 1)"
ISIN = "isin(['bike', 'car'])"
GE = "greater_than_or_equal_to(0)"
UNIQUE = "unique_key_ts_created"

# A trips row: driver_id, event minute, created minute (after T0), rate, kind, trips.
Row = tuple[int | None, int | None, int | None, float | None, str | None, int | None]
COLUMNS = ("driver_id", "ts", "created", "rate", "kind", "trips")

GOOD: list[Row] = [
    (1, 0, 0, 0.5, "car", 3),
    (1, 10, 11, 0.0, "bike", 0),
    (2, 5, 5, None, None, 7),
    (3, 5, 6, 1.0, "car", 2),
]

# Invalid rows of every kind among valid ones: drivers 1-3 get newer valid rows, driver 5's
# newest row is invalid (an older valid one must be served), driver 6 has no valid row at all.
MIXED: list[Row] = [
    (1, 20, 20, 0.25, "bike", 5),
    (1, 30, 30, 1.5, "car", 1),  # rate out of range: driver 1 keeps the row at minute 20
    (2, 20, 20, 0.5, "scooter", 1),  # kind not allowed
    (2, 25, 25, 0.75, "car", 1),
    (3, 20, 20, 0.5, "car", None),  # trips is declared not nullable
    (None, 20, 20, 0.5, "car", 1),  # null join key
    (5, None, 20, 0.5, "car", 1),  # null event time
    (5, 1, 1, 0.5, "bike", 8),
    (5, 40, 40, 0.5, "car", -2),  # trips >= 0
    (6, 9, 9, 0.1, "car", 1),  # the same key and times twice
    (6, 9, 9, 0.2, "car", 2),
    (7, 3, None, None, None, 0),  # nulls where they are allowed
]


_minutes = minutes_after(T0)


def at(minutes: int | None) -> datetime | None:
    return None if minutes is None else _minutes(minutes)


def trips_table(rows: Sequence[Row], numbered: bool = False) -> pa.Table:
    """The rows as a typed Parquet table; ``numbered`` adds an ``n`` column (the row number)."""
    cols = list(zip(*rows, strict=True)) if rows else [()] * len(COLUMNS)
    table = pa.table(
        {
            "driver_id": pa.array(cols[0], pa.int64()),
            "ts": pa.array([at(m) for m in cols[1]], TZ),
            "created": pa.array([at(m) for m in cols[2]], TZ),
            "rate": pa.array(cols[3], pa.float64()),
            "kind": pa.array(cols[4], pa.string()),
            "trips": pa.array(cols[5], pa.int64()),
        }
    )
    return table.append_column("n", pa.array(range(len(rows)), pa.int64())) if numbered else table


def profile_table(rows: Sequence[tuple[int, int, float]]) -> pa.Table:
    return pa.table(
        {
            "customer_id": pa.array([r[0] for r in rows], pa.int64()),
            "ts": pa.array([at(r[1]) for r in rows], TZ),
            "balance": pa.array([r[2] for r in rows], pa.float64()),
        }
    )


def trips_store(
    repo: Path,
    policy: str = "fail",
    trips: dict[str, Sequence[Row]] | None = None,
    numbered: bool = False,
    apply: bool = True,
) -> FeatureStore:
    """A repo with the two views, trips files under data/trips and one profile file."""
    extra = '\n        Field("n", Int64),' if numbered else ""
    files = trips or {"a.parquet": GOOD}
    tables = {f"trips/{name}": trips_table(rows, numbered) for name, rows in files.items()}
    tables["profile/p1.parquet"] = profile_table([(10, 0, 5.0), (11, 3, 7.5)])
    defs = DEFS.replace("POLICY", policy).replace("EXTRA", extra)
    return make_store(repo, defs, tables, project=PROJECT, apply=apply)


def expected_reasons(rows: Sequence[Row]) -> dict[int, set[str]]:
    """Every check of the trips view evaluated in plain Python: invalid row -> its reasons."""
    seen = Counter((r[0], r[1], r[2]) for r in rows)
    out: dict[int, set[str]] = {}
    for i, (key, ts, created, rate, kind, trips) in enumerate(rows):
        reasons = set()
        if key is None:
            reasons.add(f"driver_id: {NOT_NULL}")
        if ts is None:
            reasons.add(f"ts: {NOT_NULL}")
        if rate is not None and not 0 <= rate <= 1:  # checks skip nulls; rate may be null
            reasons.add(f"rate: {RANGE}")
        if kind is not None and kind not in ("bike", "car"):
            reasons.add(f"kind: {ISIN}")
        if trips is None:
            reasons.add(f"trips: {NOT_NULL}")
        elif trips < 0:
            reasons.add(f"trips: {GE}")
        if seen[(key, ts, created)] > 1:
            reasons.add(UNIQUE)
        if reasons:
            out[i] = reasons
    return out


def newest_valid(rows: Sequence[Row]) -> dict[int, Row]:
    """Per driver, the valid row with the newest (event, created) time: what should be served."""
    bad = expected_reasons(rows)
    newest: dict[int, Row] = {}
    for i, row in enumerate(rows):
        key = row[0]
        if i in bad or key is None:
            continue
        if key not in newest or (row[1], row[2]) > (newest[key][1], newest[key][2]):
            newest[key] = row
    return newest


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()

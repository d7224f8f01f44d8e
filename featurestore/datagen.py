"""Seeded example data: drivers and customers, shared by the demo, the tests and the benchmarks.

``python -m featurestore.datagen OUT --scale small`` writes Parquet files under OUT:
``driver_stats/part-*.parquet`` (13 features, ~1% re-delivered rows that share entity and
event time but differ in created time), ``customer_profile/part-*.parquet`` (3 features),
``trips/part-*.parquet`` (one row per completed trip: the events of the example's
aggregation view) and ``entity_rows.parquet`` (labelled events for training sets).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


@dataclass(frozen=True)
class Scale:
    drivers: int
    driver_rows: int
    customers: int
    customer_rows: int
    entity_rows: int
    trips: int = 0


SCALES = {
    "tiny": Scale(100, 5_000, 200, 2_000, 1_000, trips=5_000),
    "demo": Scale(1_000, 100_000, 5_000, 40_000, 20_000, trips=100_000),
    "small": Scale(10_000, 1_000_000, 10_000, 200_000, 100_000, trips=1_000_000),
    "medium": Scale(100_000, 10_000_000, 100_000, 2_000_000, 1_000_000, trips=10_000_000),
    "large": Scale(1_000_000, 90_000_000, 1_000_000, 10_000_000, 10_000_000, trips=90_000_000),
}
PAYMENTS = ["card", "cash", "wallet"]
CITIES = ["Berlin", "Lisbon", "Madrid", "Paris", "Rome", "Vienna", "Warsaw", "Zagreb"]
VEHICLES = ["bike", "car", "scooter", "van"]
WINDOW = timedelta(days=30)
ROWS_PER_FILE = 1_000_000
FIRST_DRIVER = 1001
FIRST_CUSTOMER = 5001


def default_end() -> datetime:
    """The current hour: demo data ends now, so the latest values are fresh when served."""
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def driver_batches(scale: Scale, end: datetime, seed: int = 7) -> Iterator[pa.Table]:
    """Driver rows in chunks; ~1% of rows are re-deliveries of an earlier (driver, time)."""
    rng = np.random.default_rng(seed)
    for n in _chunks(scale.driver_rows):
        dup = max(1, n // 100) if n >= 100 else 0
        base = n - dup
        ids = rng.integers(FIRST_DRIVER, FIRST_DRIVER + scale.drivers, base)
        ts = _timestamps(rng, base, end)
        pick = rng.integers(0, base, dup)
        ids = np.concatenate([ids, ids[pick]])
        ts = np.concatenate([ts, ts[pick]])
        created = ts + rng.integers(1, 3_600_000_000, n)  # up to an hour later, in us
        created[base:] += rng.integers(1, 600_000_000, dup) + 3_600_000_000  # re-delivered later
        order = np.argsort(ts, kind="stable")
        yield pa.table(
            {
                "driver_id": pa.array(ids[order], pa.int64()),
                "event_timestamp": _ts_array(ts[order]),
                "created": _ts_array(created[order]),
                "conv_rate": pa.array(rng.random(n, np.float32)),
                "acc_rate": pa.array(rng.random(n, np.float32)),
                "avg_daily_trips": pa.array(rng.integers(0, 60, n, np.int32)),
                "rating": pa.array((1 + 4 * rng.random(n, np.float32)).astype(np.float32)),
                "trips_today": pa.array(rng.integers(0, 40, n, np.int32)),
                "earnings_today": pa.array(np.round(rng.gamma(2.0, 60.0, n), 2)),
                "online_hours": pa.array((12 * rng.random(n, np.float32)).astype(np.float32)),
                "cancellations_7d": pa.array(rng.integers(0, 10, n, np.int32)),
                "completed_trips_total": pa.array(rng.integers(0, 20_000, n, np.int64)),
                "last_trip_km": pa.array(np.round(rng.exponential(7.0, n), 3)),
                "city": pa.array(np.array(CITIES)[rng.integers(0, len(CITIES), n)]),
                "vehicle_type": pa.array(np.array(VEHICLES)[rng.integers(0, len(VEHICLES), n)]),
                "is_active": pa.array(rng.random(n) < 0.9),
            }
        )


def customer_batches(scale: Scale, end: datetime, seed: int = 11) -> Iterator[pa.Table]:
    rng = np.random.default_rng(seed)
    for n in _chunks(scale.customer_rows):
        ids = rng.integers(FIRST_CUSTOMER, FIRST_CUSTOMER + scale.customers, n)
        ts = np.sort(_timestamps(rng, n, end))
        yield pa.table(
            {
                "customer_id": pa.array(ids, pa.int64()),
                "event_timestamp": _ts_array(ts),
                "created": _ts_array(ts + rng.integers(1, 600_000_000, n)),
                "current_balance": pa.array(np.round(rng.normal(100.0, 40.0, n), 2)),
                "lifetime_orders": pa.array(rng.integers(0, 500, n, np.int64)),
                "avg_order_value": pa.array((5 + 45 * rng.random(n, np.float32)).astype(np.float32)),
            }
        )


def trip_batches(scale: Scale, end: datetime, seed: int = 17) -> Iterator[pa.Table]:
    """Completed trips: driver, customer, fare, distance, payment and a tip (null for ~40%)."""
    rng = np.random.default_rng(seed)
    for n in _chunks(scale.trips):
        distance = np.round(rng.exponential(7.0, n), 3)
        tip = np.round(rng.gamma(1.5, 2.0, n), 2)
        yield pa.table(
            {
                "driver_id": pa.array(
                    rng.integers(FIRST_DRIVER, FIRST_DRIVER + scale.drivers, n), pa.int64()
                ),
                "event_timestamp": _ts_array(np.sort(_timestamps(rng, n, end))),
                "customer_id": pa.array(
                    rng.integers(FIRST_CUSTOMER, FIRST_CUSTOMER + scale.customers, n), pa.int64()
                ),
                "fare": pa.array(np.round(3.0 + 1.6 * distance + rng.normal(0, 1.0, n).clip(-2, 2), 2)),
                "distance_km": pa.array(distance),
                "payment": pa.array(np.array(PAYMENTS)[rng.integers(0, len(PAYMENTS), n)]),
                "tip": pa.array(tip, mask=rng.random(n) < 0.4),
            }
        )


def entity_rows(scale: Scale, end: datetime, seed: int = 13) -> pa.Table:
    """Labelled events: a driver, a customer, a time and the trip's length (a request field of
    the on-demand view ``trip_fit``), as training code would bring."""
    rng = np.random.default_rng(seed)
    n = scale.entity_rows
    trip_km = np.round(np.random.default_rng(seed + 1).gamma(2.0, 4.0, n), 2)  # its own draws
    return pa.table(
        {
            "driver_id": pa.array(rng.integers(FIRST_DRIVER, FIRST_DRIVER + scale.drivers, n), pa.int64()),
            "customer_id": pa.array(
                rng.integers(FIRST_CUSTOMER, FIRST_CUSTOMER + scale.customers, n), pa.int64()
            ),
            "event_timestamp": _ts_array(_timestamps(rng, n, end)),
            "trip_completed": pa.array(rng.random(n) < 0.7),
            "trip_km": pa.array(trip_km, pa.float64()),
        }
    )


def generate(out: Path, scale: str | Scale = "demo", end: datetime | None = None) -> dict[str, int]:
    """Write the example data set under ``out``; returns rows written per table."""
    size = SCALES[scale] if isinstance(scale, str) else scale
    end = end or default_end()
    counts = {}
    for name, batches in (
        ("driver_stats", driver_batches(size, end)),
        ("customer_profile", customer_batches(size, end)),
        ("trips", trip_batches(size, end)),
    ):
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("part-*.parquet"):
            old.unlink()
        total = 0
        for i, table in enumerate(batches):
            pq.write_table(table, folder / f"part-{i:05d}.parquet", row_group_size=256_000)
            total += table.num_rows
        counts[name] = total
    rows = entity_rows(size, end)
    pq.write_table(rows, out / "entity_rows.parquet")
    counts["entity_rows"] = rows.num_rows
    return counts


def _chunks(total: int) -> Iterator[int]:
    while total > 0:
        n = min(total, ROWS_PER_FILE)
        yield n
        total -= n


def _timestamps(rng: np.random.Generator, n: int, end: datetime) -> np.ndarray:
    end_us = int(end.timestamp() * 1_000_000)
    start_us = end_us - int(WINDOW.total_seconds() * 1_000_000)
    # Whole seconds: the shape real event logs have, and it makes exact ties likely.
    return (rng.integers(start_us // 1_000_000, end_us // 1_000_000, n) * 1_000_000).astype(np.int64)


def _ts_array(us: np.ndarray) -> pa.Array:
    return pa.array(us, pa.timestamp("us", tz="UTC"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--scale", choices=sorted(SCALES), default="demo")
    parser.add_argument("--end", help="ISO time the data ends at (default: the current hour, UTC)")
    args = parser.parse_args()
    end = datetime.fromisoformat(args.end) if args.end else None
    if end is not None and end.tzinfo is None:
        end = end.replace(tzinfo=UTC)
    counts = generate(args.out, args.scale, end)
    print(", ".join(f"{name}: {rows:,} rows" for name, rows in counts.items()) + f" -> {args.out}")


if __name__ == "__main__":
    main()

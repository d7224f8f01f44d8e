"""NaN is a float value, not a null: a declared check refuses it unless the field allows NaN.

pandas shows NaN and null alike, so pandera's checks skipped NaN as "missing": a NaN in a
column declared ``in_range(0, 1)`` passed validation and was served.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st
from pandera.pandas import Check

from featurestore import Entity, FeatureStore, FeatureView, Field, Float64, Int64, ParquetSource
from featurestore.errors import DefinitionError
from featurestore.validation.validate import validate_file
from tests.validation.support import RANGE, trips_store, trips_table

NAN = float("nan")
NOT_NAN = "not_nan"  # the check a refused NaN fails, as reports and quarantine files name it

# Every built-in check that applies to a number, with its meaning in plain Python.
CHECKS: dict[str, tuple[Callable[[], Check], Callable[[float], bool]]] = {
    "in_range": (lambda: Check.in_range(0, 1), lambda v: 0 <= v <= 1),
    "ge": (lambda: Check.ge(0), lambda v: v >= 0),
    "gt": (lambda: Check.gt(0), lambda v: v > 0),
    "le": (lambda: Check.le(1), lambda v: v <= 1),
    "lt": (lambda: Check.lt(1), lambda v: v < 1),
    "eq": (lambda: Check.eq(0.5), lambda v: v == 0.5),
    "ne": (lambda: Check.ne(0.5), lambda v: v != 0.5),
    "isin": (lambda: Check.isin([0.0, 0.5]), lambda v: v in (0.0, 0.5)),
    "notin": (lambda: Check.notin([0.5]), lambda v: v not in (0.5,)),
}
VALUES = st.sampled_from([NAN, math.inf, -math.inf, None, 0.0, 0.5, 1.0, -1.0, 2.0])


def expected_valid(value: float | None, check: str | None, nullable: bool, allow_nan: bool) -> bool:
    """The rule README states: null is up to ``nullable``; NaN fails any check unless allowed."""
    if value is None:
        return nullable
    if math.isnan(value):
        return check is None or allow_nan
    return check is None or CHECKS[check][1](value)


def view(check: str | None, nullable: bool, allow_nan: bool) -> FeatureView:
    checks = [CHECKS[check][0]()] if check else []
    return FeatureView(
        "v",
        entities=[Entity("e", join_keys=["id"])],
        source=ParquetSource("s", path="data", timestamp_field="ts"),
        schema=[Field("x", Float64, checks=checks, nullable=nullable, allow_nan=allow_nan)],
    )


@settings(max_examples=150, deadline=None)
@given(
    values=st.lists(VALUES, min_size=1, max_size=12),
    check=st.none() | st.sampled_from(sorted(CHECKS)),
    nullable=st.booleans(),
    allow_nan=st.booleans(),
)
def test_every_builtin_check_refuses_nan_and_keeps_null_apart(
    values: list[float | None], check: str | None, nullable: bool, allow_nan: bool
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "x.parquet"
        stamp = datetime(2026, 1, 1, tzinfo=UTC)
        pq.write_table(
            pa.table(
                {
                    "id": pa.array(range(len(values)), pa.int64()),
                    "ts": pa.array([stamp] * len(values), pa.timestamp("us", tz="UTC")),
                    "x": pa.array(values, pa.float64()),  # None is a null, NAN a NaN value
                }
            ),
            path,
        )
        result = validate_file(view(check, nullable, allow_nan), path)
    invalid = {int(r) for r in result.invalid_rows}
    expected = {i for i, v in enumerate(values) if not expected_valid(v, check, nullable, allow_nan)}
    assert invalid == expected, (values, check, nullable, allow_nan, result.report.failures)


def test_a_nan_in_a_checked_column_is_quarantined_not_served(
    tmp_path: Path, redis_client: redis.Redis
) -> None:
    # driver 1: a valid rate at minute 0, a NaN at minute 10 (the newest row).
    fs = trips_store(tmp_path / "repo", "quarantine", {"a.parquet": [(1, 0, 0, 0.5, "car", 3)]})
    pq.write_table(trips_table([(1, 10, 10, NAN, "car", 1)]), tmp_path / "repo/data/trips/b.parquet")
    result = fs.materialize()
    [trips] = [r for r in result.ingestion if r.view == "trips"]
    assert trips.rows_quarantined == 1
    assert trips.validation is not None
    [quarantined] = pq.read_table(trips.validation.quarantined_to[0]).to_pylist()
    assert quarantined["__reason"] == f"rate: {NOT_NAN}" and math.isnan(quarantined["rate"])
    assert fs.get_online_features(["trips:rate"], {"driver_id": [1]}).to_dict()["rate"] == [0.5]
    assert RANGE not in quarantined["__reason"]  # named once, as the NaN it is


def test_allow_nan_is_declared_applied_and_honoured(tmp_path: Path, redis_client: redis.Redis) -> None:
    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    (repo / "featurestore.toml").write_text('project = "nan"\n')
    (repo / "defs.py").write_text(
        "from pandera.pandas import Check\n"
        "from featurestore import Entity, FeatureView, Field, Float64, ParquetSource\n"
        "v = FeatureView('v', entities=[Entity('e', join_keys=['id'])],\n"
        "    source=ParquetSource('s', path='data', timestamp_field='ts'),\n"
        "    schema=[Field('x', Float64, checks=[Check.in_range(0, 1)], allow_nan=True)])\n"
    )
    stamp = datetime(2026, 1, 1, tzinfo=UTC)
    pq.write_table(
        pa.table({"id": [1, 2], "ts": pa.array([stamp] * 2, pa.timestamp("us", tz="UTC")), "x": [NAN, 0.5]}),
        repo / "data" / "a.parquet",
    )
    fs = FeatureStore(repo)
    fs.apply()
    assert fs.registry().views["v"].features[0].allow_nan  # kept by the registry
    fs.materialize()
    served = fs.get_online_features(["v:x"], {"id": [1, 2]}).to_dict()["x"]
    assert math.isnan(served[0]) and served[1] == 0.5


def test_allow_nan_is_only_for_float_fields() -> None:
    with pytest.raises(DefinitionError, match="allow_nan is for Float32 and Float64"):
        Field("n", Int64, allow_nan=True)

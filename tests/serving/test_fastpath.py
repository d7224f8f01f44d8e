"""The gRPC fast path's bytes against the general path (assemble + to_response), on random values."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from featurestore import FeatureStore
from featurestore.online.codec import FORMAT_VERSION, layout_of, with_header
from featurestore.online.lookup import PRESENT, LookupPlan
from featurestore.serving import convert
from featurestore.serving.fastpath import fast_encoder
from featurestore.serving.v1 import serving_pb2 as pb
from tests.support.repos import make_store

DEFS = """
from datetime import timedelta
from featurestore import (Bool, Bytes, Entity, FeatureService, FeatureView, Field, Float32, Float64,
    Int32, Int64, List, ParquetSource, String, Timestamp)

driver = Entity("driver", join_keys=["driver_id"])
zone = Entity("zone", join_keys=["zone"])
every = FeatureView(
    "every", entities=[driver], ttl=timedelta(hours=1),
    source=ParquetSource("every_src", path="data/every.parquet", timestamp_field="ts"),
    schema=[Field("i32", Int32), Field("s", String), Field("i64", Int64), Field("f32", Float32),
            Field("f64", Float64), Field("b", Bool), Field("raw", Bytes), Field("t", Timestamp),
            Field("ints", List(Int64)), Field("words", List(String)), Field("s2", String)])
zones = FeatureView(
    "zones", entities=[zone],
    source=ParquetSource("zones_src", path="data/zones.parquet", timestamp_field="ts"),
    schema=[Field("label", String), Field("score", Float64)])
scalars = FeatureService("scalars", features=[
    every[["i32", "s", "i64", "f32", "f64", "b", "raw", "t", "s2"]], zones])
with_lists = FeatureService("with_lists", features=[every[["f64", "ints"]]])
with_words = FeatureService("with_words", features=[every[["s", "words"]]])
"""

HOUR_US = 3_600_000_000

int32s = st.integers(-(2**31), 2**31 - 1)
int64s = st.integers(-(2**63), 2**63 - 1)
float32s = st.floats(width=32, allow_nan=False)
texts = st.text(max_size=200)
# the values of one stored row of each view, column by column (None: null)
EVERY = {
    "i32": (int32s, pa.int32()),
    "s": (texts, pa.string()),
    "i64": (int64s, pa.int64()),
    "f32": (float32s, pa.float32()),
    "f64": (st.floats(allow_nan=False), pa.float64()),
    "b": (st.booleans(), pa.bool_()),
    "raw": (st.binary(max_size=300), pa.binary()),
    "t": (st.integers(0, 2**52), pa.int64()),
    # lists (null items included) stored between two strings: the fast path skips over them
    "ints": (st.lists(st.none() | int64s, max_size=10), pa.list_(pa.int64())),
    "words": (st.lists(st.none() | st.text(max_size=5), max_size=10), pa.list_(pa.string())),
    "s2": (texts, pa.string()),
}
ZONES = {"label": (texts, pa.string()), "score": (st.floats(allow_nan=False), pa.float64())}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> FeatureStore:
    ts = pa.array([0], pa.timestamp("us", tz="UTC"))
    every = {name: pa.array([None], arrow) for name, (_, arrow) in EVERY.items()}
    every["t"] = every["t"].cast(pa.timestamp("us", tz="UTC"))
    zones = {name: pa.array([None], arrow) for name, (_, arrow) in ZONES.items()}
    data = {
        "every.parquet": pa.table({"driver_id": pa.array([1], pa.int64()), "ts": ts, **every}),
        "zones.parquet": pa.table({"zone": ["a"], "ts": ts, **zones}),
    }
    return make_store(tmp_path_factory.mktemp("fastpath") / "repo", DEFS, data, project="fast")


@st.composite
def stored(
    draw: st.DrawFn, spec: dict[str, Any], n: int, nulls: bool
) -> tuple[list[dict[str, Any]], list[bool]]:
    rows = []
    for _ in range(n):
        row = {}
        for name, (values, _) in spec.items():
            null = nulls and draw(st.integers(0, 9)) == 0
            row[name] = None if null else draw(values)
        rows.append(row)
    found = [draw(st.integers(0, 19)) > 0 for _ in range(n)]  # ~5% missing
    return rows, found


def _encode(
    plan: LookupPlan, vi: int, spec: dict[str, Any], rows: list[dict[str, Any]], ages: list[int]
) -> list[bytes]:
    codec = plan.views[vi].codec
    columns = {}
    for name, (_, arrow) in spec.items():
        array = pa.array([r[name] for r in rows], arrow)
        columns[name] = array.cast(pa.timestamp("us", tz="UTC")) if name == "t" else array
    now_us = time.time_ns() // 1000
    events = np.array([now_us - age for age in ages], dtype=np.int64)
    created = np.zeros(len(rows), dtype=np.int64)
    return [v.as_py() for v in codec.encode(pa.table(columns), events, created, run_id=3)]


@settings(max_examples=150, deadline=None)
@given(data=st.data(), n=st.integers(1, 12), nulls=st.booleans(), expire=st.booleans())
def test_fast_bytes_equal_the_general_path(
    store: FeatureStore, data: st.DataObject, n: int, nulls: bool, expire: bool
) -> None:
    plan = store.online_registry().plan("scalars")
    encoder = fast_encoder(plan)
    assert encoder is not None
    every_rows, every_found = data.draw(stored(EVERY, n, nulls))
    zone_rows, zone_found = data.draw(stored(ZONES, n, nulls))
    # ages in microseconds: "every" has a one-hour TTL; a few of its values are past it
    # (never within a second of the TTL, where the two paths' clocks could disagree)
    fresh, stale = st.integers(0, HOUR_US - 10**6), st.integers(HOUR_US + 10**6, 2 * HOUR_US)
    ages = [data.draw(fresh | stale if expire else fresh) for _ in range(n)]
    every_raw = _encode(plan, 0, EVERY, every_rows, ages)
    zone_raw = _encode(plan, 1, ZONES, zone_rows, [0] * n)
    raw: list[bytes | None] = [v if f else None for v, f in zip(every_raw, every_found, strict=True)]
    raw += [v if f else None for v, f in zip(zone_raw, zone_found, strict=True)]
    entities = {"driver_id": list(range(n)), "zone": [f"z{i}" for i in range(n)]}

    now_us = time.time_ns() // 1000
    answer = encoder.encode(n, raw, registry_version=5, now_us=now_us)
    fast = None if answer is None else answer.data
    n_, columns = plan.entity_columns(entities)
    general = convert.to_response(plan.assemble(n_, columns, raw), 5)
    all_present = all(s == PRESENT for col in general.features for s in col.statuses)
    if fast is not None:
        assert all_present
        assert pb.GetOnlineFeaturesResponse.FromString(fast) == general
        assert fast == general.SerializeToString()
        assert answer is not None and answer.events == [
            list(general.features[0].event_timestamps),
            list(general.features[-1].event_timestamps),
        ]
    else:  # the fast path may only decline lookups that are not all present, or have nulls
        has_nulls = any(v is None for row in every_rows + zone_rows for v in row.values())
        assert not all_present or has_nulls
    # a lookup with every value present and no nulls anywhere must take the fast path
    if all_present and not any(v is None for row in every_rows + zone_rows for v in row.values()):
        assert fast is not None


def test_list_features_take_the_general_path(store: FeatureStore) -> None:
    assert fast_encoder(store.online_registry().plan("with_lists")) is None
    assert fast_encoder(store.online_registry().plan("with_words")) is None


def test_other_layout_is_declined(store: FeatureStore) -> None:
    plan = store.online_registry().plan("scalars")
    encoder = fast_encoder(plan)
    assert encoder is not None
    row = dict.fromkeys(EVERY)  # every feature null
    every = _encode(plan, 0, EVERY, [row], [0])[0]
    zone = _encode(plan, 1, ZONES, [{"label": "a", "score": 1.0}], [0])[0]
    assert encoder.encode(1, [every, zone], 1, time.time_ns() // 1000) is None  # nulls
    full = {
        "i32": 1,
        "s": "x",
        "i64": 2,
        "f32": 0.5,
        "f64": 0.25,
        "b": True,
        "raw": b"r",
        "t": 5,
        "s2": "",
        "ints": [1],
        "words": ["w", None],
    }
    every = _encode(plan, 0, EVERY, [full], [0])[0]
    assert encoder.encode(1, [every, zone], 1, time.time_ns() // 1000) is not None
    other = with_header(every, layout=layout_of(every) ^ 1)  # type: ignore[operator]
    assert encoder.encode(1, [other, zone], 1, time.time_ns() // 1000) is None
    newer = with_header(every, format_version=FORMAT_VERSION + 1)  # a format it does not know
    assert encoder.encode(1, [newer, zone], 1, time.time_ns() // 1000) is None
    assert encoder.encode(1, [every[:30], zone], 1, time.time_ns() // 1000) is None  # truncated

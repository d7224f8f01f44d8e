"""The quick Arrow pass of pushes: whenever it clears a batch, pandera (the full validation,
the independent judge here) finds no failing cell; clean batches of the checks it reads are
cleared; checks it does not read are left to pandera."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pandera.pandas import Check

from featurestore import Entity, FeatureView, Field, Float32, Float64, Int32, Int64, ParquetSource, String
from featurestore.validation.quick import certainly_valid
from featurestore.validation.schema import pandera_schema
from featurestore.validation.validate import validate_batch

TZ = pa.timestamp("us", tz="UTC")
ITEM = Entity("item", join_keys=["id"])
SOURCE = ParquetSource("src", path="data/x", timestamp_field="ts")
# Bounds that Float32 cannot hold exactly (0.1, 0.7) and Int64 values a double cannot (2**53 + 1).
FIELDS = [
    Field("f32", Float32, checks=[Check.in_range(0.1, 0.7)]),
    Field("f64", Float64, checks=[Check.ge(0.1)], nullable=False),
    Field("i32", Int32, checks=[Check.le(5), Check.ge(-2)]),
    Field("i64", Int64, checks=[Check.ge(2**53 + 1)]),
    Field("s", String, checks=[Check.isin(["car", "van"])], nullable=False),
    Field("free", Float64),
]
KEYS = (Field("id", Int64),)  # resolved, as an applied view's (what pushes validate)
VIEW = FeatureView("v", entities=[ITEM], source=SOURCE, schema=[Field("id", Int64), *FIELDS], join_keys=KEYS)
F32_EDGES = [
    0.1,
    0.7,
    float(np.float32(0.1)),
    float(np.float32(0.7)),
    float(np.nextafter(np.float32(0.1), 0, dtype=np.float32)),
    float(np.nextafter(np.float32(0.7), 1, dtype=np.float32)),
    0.4,
    float("nan"),
]


def maybe(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), values, values, values)


ROWS = st.lists(
    st.tuples(
        maybe(st.integers(1, 3)),
        maybe(st.sampled_from(F32_EDGES) | st.floats(0, 1, width=32)),
        maybe(st.sampled_from([0.1, float(np.nextafter(0.1, 0)), 1.0, float("nan")])),
        maybe(st.integers(-3, 6)),
        maybe(st.sampled_from([2**53, 2**53 + 1, 2**53 + 2, 2**62])),
        maybe(st.sampled_from(["car", "van", "bike", ""])),
        maybe(st.sampled_from([1.0, float("nan")])),
    ),
    min_size=1,
    max_size=6,
)


def batch(rows: list[tuple[Any, ...]], view: FeatureView = VIEW) -> pa.RecordBatch:
    columns = list(zip(*rows, strict=True))
    types = [pa.int64(), pa.float32(), pa.float64(), pa.int32(), pa.int64(), pa.string(), pa.float64()]
    arrays = {"id": pa.array(columns[0], types[0])}
    arrays["ts"] = pa.array([0] * len(rows), pa.int64()).cast(TZ)
    for f, values, t in zip(FIELDS, columns[1:], types[1:], strict=True):
        arrays[f.name] = pa.array(values, t, from_pandas=False)
    return pa.record_batch(arrays)


def pandera_cells(view: FeatureView, b: pa.RecordBatch) -> list[tuple[int, str | None, str]]:
    return validate_batch(view, pandera_schema(view), b, np.arange(b.num_rows)).cells


@settings(max_examples=300, deadline=None)
@given(ROWS)
def test_a_cleared_batch_is_one_pandera_passes(rows: list[tuple[Any, ...]]) -> None:
    b = batch(rows)
    if certainly_valid(VIEW, b):
        assert pandera_cells(VIEW, b) == []


def test_clean_batches_are_cleared_and_each_kind_of_failure_is_not() -> None:
    good = (1, float(np.float32(0.4)), 0.1, 5, 2**53 + 1, "car", None)
    assert certainly_valid(VIEW, batch([good, good]))
    assert pandera_cells(VIEW, batch([good])) == []
    failing = {
        "f32 below": (1, float(np.float32(0.1)) - 1e-3, 0.1, 5, 2**53 + 1, "car", 1.0),
        "f64 below": (1, 0.4, float(np.nextafter(0.1, 0)), 5, 2**53 + 1, "car", 1.0),
        "i32 above": (1, 0.4, 0.1, 6, 2**53 + 1, "car", 1.0),
        "i64 below": (1, 0.4, 0.1, 5, 2**53, "car", 1.0),
        "s not in": (1, 0.4, 0.1, 5, 2**53 + 1, "bike", 1.0),
        "s null": (1, 0.4, 0.1, 5, 2**53 + 1, None, 1.0),
        "f64 null": (1, 0.4, None, 5, 2**53 + 1, "car", 1.0),
        "key null": (None, 0.4, 0.1, 5, 2**53 + 1, "car", 1.0),
        "nan": (1, 0.4, 0.1, 5, 2**53 + 1, "car", float("nan")),
    }
    for why, row in failing.items():
        assert not certainly_valid(VIEW, batch([good, row])), why


@pytest.mark.parametrize(
    "check",
    [
        Check.gt(0),  # strict: a Float32 may equal the rounded bound
        Check.in_range(0, 10, include_max=False),
        # a function of its own under a built-in's name, statistics and arguments
        Check(
            lambda s, min_value: s < min_value,
            name="greater_than_or_equal_to",
            statistics={"min_value": 0},
            min_value=0,
        ),
        Check.ge(0, ignore_na=False),
    ],
)
def test_checks_it_does_not_read_go_to_pandera(check: Check) -> None:
    fields = [replace_checks(f, [check] if f.name == "free" else f.checks) for f in FIELDS]
    view = FeatureView(
        "v", entities=[ITEM], source=SOURCE, schema=[Field("id", Int64), *fields], join_keys=KEYS
    )
    good = (1, 0.4, 0.1, 5, 2**53 + 1, "car", 1.0)
    assert not certainly_valid(view, batch([good]))


def test_view_level_checks_go_to_pandera() -> None:
    view = FeatureView(
        "v",
        entities=[ITEM],
        source=SOURCE,
        schema=[Field("id", Int64), *FIELDS],
        checks=[Check(lambda df: df["i32"] >= 0, name="positive")],
        join_keys=KEYS,
    )
    assert not certainly_valid(view, batch([(1, 0.4, 0.1, 5, 2**53 + 1, "car", 1.0)]))


def replace_checks(f: Field, checks: list[Check]) -> Field:
    from dataclasses import replace

    return replace(f, checks=checks)

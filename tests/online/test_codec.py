"""The value codec: every dtype with nulls survives encode -> decode, unit-level and end to end."""

from __future__ import annotations

import math
import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from featurestore import (
    Bool,
    Bytes,
    Entity,
    FeatureStore,
    FeatureView,
    Field,
    Float32,
    Float64,
    Int32,
    Int64,
    List,
    ParquetSource,
    String,
    Timestamp,
)
from featurestore.online.codec import (
    FORMAT_BYTE,
    FORMAT_VERSION,
    HEADER,
    MAX_RUN_ID,
    NO_CREATED,
    ViewCodec,
    format_of,
    header_of,
    with_header,
)
from tests.online.helpers import TZ, lookup
from tests.support.repos import edit, make_store, write_parquet

FIELDS = [
    Field("i32", Int32),
    Field("i64", Int64),
    Field("f32", Float32),
    Field("f64", Float64),
    Field("s", String),
    Field("b", Bool),
    Field("raw", Bytes),
    Field("t", Timestamp),
    Field("emb", List(Float32)),
    Field("ids", List(Int64)),
]
VIEW = FeatureView(
    "every",
    entities=[Entity("thing", join_keys=["id"])],
    schema=FIELDS,
    source=ParquetSource("every_src", path="data/every.parquet", timestamp_field="ts"),
)
ARROW = {f.name: f.dtype.arrow for f in FIELDS}

float32s = st.floats(width=32)
VALUES: dict[str, st.SearchStrategy[Any]] = {
    "i32": st.integers(-(2**31), 2**31 - 1),
    "i64": st.integers(-(2**63), 2**63 - 1),
    "f32": float32s,
    "f64": st.floats(),
    "s": st.text(),  # any unicode, the empty string included
    "b": st.booleans(),
    "raw": st.binary(),
    "t": st.integers(-(2**62), 2**62),  # microseconds since the epoch
    "emb": st.lists(st.none() | float32s, max_size=5),  # an empty list is a value, not a null
    "ids": st.lists(st.none() | st.integers(-(2**63), 2**63 - 1), max_size=5),
}
rows = st.lists(st.fixed_dictionaries({k: st.none() | v for k, v in VALUES.items()}), min_size=1, max_size=12)


def same(a: Any, b: Any) -> bool:
    """Equality where NaN equals NaN, also inside lists."""
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return type(a) is type(b) and a == b


def table_of(data: list[dict[str, Any]]) -> pa.Table:
    return pa.table({name: pa.array([r[name] for r in data], dtype) for name, dtype in ARROW.items()})


def as_stored(name: str, value: Any) -> Any:
    """What decoding gives back for a value: timestamps as microseconds."""
    if name == "t" and value is not None:
        return int(pa.scalar(value, TZ).cast(pa.int64()).as_py())
    return value


def other_layout_value() -> bytes:
    """A value written when feature i32 was declared Int64."""
    retyped = FeatureView(
        "every", entities=VIEW.entities, source=VIEW.source, schema=[Field("i32", Int64), *FIELDS[1:]]
    )
    one = np.zeros(1, np.int64)
    return bytes(ViewCodec(retyped).encode(table_of([dict.fromkeys(ARROW)]), one, one, 1).to_pylist()[0])


def all_same(got: list[Any], expected: list[Any]) -> bool:
    return len(got) == len(expected) and all(same(a, b) for a, b in zip(got, expected, strict=True))


@settings(max_examples=60, deadline=None)
@given(
    data=rows,
    skip=st.integers(0, 3),
    run_id=st.integers(0, MAX_RUN_ID),  # the header's run word keeps its top byte for the format
    positions=st.lists(st.integers(0, len(FIELDS) - 1), unique=True),
)
def test_every_dtype_round_trips_with_nulls(
    data: list[dict[str, Any]], skip: int, run_id: int, positions: list[int]
) -> None:
    # A sliced batch has non-zero offsets, as Arrow batches often do.
    padding = [dict.fromkeys(ARROW, None) | {"emb": [1.0], "s": "x"}] * skip
    batch = table_of(padding + data).slice(skip)
    n = batch.num_rows
    codec = ViewCodec(VIEW)
    event = np.arange(n, dtype=np.int64) * 7 - 3
    created = np.arange(n, dtype=np.int64) - 2**40
    created[::2] = NO_CREATED
    encoded = codec.encode(batch, event, created, run_id).to_pylist()
    expected = [[as_stored(f.name, row[f.name]) for f in FIELDS] for row in data]
    for i, value in enumerate(encoded):
        decoded = codec.decode(value)
        assert decoded is not None
        assert (decoded.event_ts_us, decoded.created_us, decoded.run_id) == (event[i], created[i], run_id)
        assert header_of(value) == (event[i], created[i], run_id)
        assert all_same(list(decoded.values), expected[i]), (decoded.values, expected[i])
    # Serving decodes many values at once, only the requested features, and sets apart a
    # value of another layout and one too short to hold this one.
    got = codec.decode_columns([*encoded, other_layout_value(), b"short"], positions)
    assert (got.good, got.other, got.corrupt) == (list(range(n)), [n], [n + 1])
    assert got.event_ts_us == event.tolist() and got.run_ids == [run_id] * n
    for p, column in zip(positions, got.columns, strict=True):
        assert all_same(column, [e[p] for e in expected]), FIELDS[p].name


LIST_FIELDS = [
    Field("l32", List(Int32)),
    Field("l64", List(Int64)),
    Field("lf32", List(Float32)),
    Field("lf64", List(Float64)),
    Field("ls", List(String)),
    Field("lb", List(Bool)),
    Field("lx", List(Bytes)),
    Field("lt", List(Timestamp)),
]
LIST_VIEW = FeatureView(
    "lists",
    entities=VIEW.entities,
    schema=LIST_FIELDS,
    source=ParquetSource("lists_src", path="data/lists.parquet", timestamp_field="ts"),
)
LIST_ITEMS: dict[str, st.SearchStrategy[Any]] = {
    "l32": st.integers(-(2**31), 2**31 - 1),
    "l64": st.integers(-(2**63), 2**63 - 1),
    "lf32": float32s,
    "lf64": st.floats(),
    "ls": st.text(max_size=8),  # unicode and the empty string
    "lb": st.booleans(),
    "lx": st.binary(max_size=8),
    "lt": st.integers(-(2**62), 2**62),  # microseconds, as served
}
# long enough for validity bitmaps of several bytes; some lists all null, some never null
list_rows = st.lists(
    st.fixed_dictionaries(
        {
            k: st.none()
            | st.lists(st.none() | v, max_size=20)
            | st.lists(v, max_size=3)
            | st.lists(st.none(), max_size=10)
            for k, v in LIST_ITEMS.items()
        }
    ),
    min_size=1,
    max_size=10,
)


@settings(max_examples=80, deadline=None)
@given(data=list_rows, skip=st.integers(0, 2))
def test_lists_with_null_items_round_trip(data: list[dict[str, Any]], skip: int) -> None:
    types = {f.name: f.dtype.arrow for f in LIST_FIELDS}
    padding = [
        {"l32": [None, 1], "l64": None, "lf32": [None], "lf64": [0.5], "ls": ["p", None], "lb": [True],
         "lx": None, "lt": [None, 7]}
    ] * skip
    batch = pa.table({k: pa.array([r[k] for r in padding + data], t) for k, t in types.items()}).slice(skip)
    codec = ViewCodec(LIST_VIEW)
    n = batch.num_rows
    encoded = codec.encode(batch, np.zeros(n, np.int64), np.zeros(n, np.int64), 1).to_pylist()
    for value, row in zip(encoded, data, strict=True):
        decoded = codec.decode(value)
        assert decoded is not None
        assert all_same(list(decoded.values), [row[f.name] for f in LIST_FIELDS])
    got = codec.decode_columns(encoded, [3, 0, 6, 2, 4, 7])
    for p, column in zip([3, 0, 6, 2, 4, 7], got.columns, strict=True):
        assert all_same(column, [row[LIST_FIELDS[p].name] for row in data])


def test_a_list_without_nulls_is_stored_as_before_and_one_with_nulls_says_so() -> None:
    # Values written before lists could hold nulls must still decode: such a list's bytes
    # are a plain length and its items; a list with a null sets the length's high bit.
    view = FeatureView(
        "one", entities=VIEW.entities, schema=[Field("l", List(Int32))], source=LIST_VIEW.source
    )
    codec = ViewCodec(view)
    batch = pa.table({"l": pa.array([[1, 2], [None, 3, None]], pa.list_(pa.int32()))})
    plain, nulls = codec.encode(batch, np.zeros(2, np.int64), np.zeros(2, np.int64), 1).to_pylist()
    assert plain[codec.prefix_size :] == bytes.fromhex("08000000" "01000000" "02000000")
    assert nulls[codec.prefix_size :] == bytes.fromhex("0d000080" "00000000" "03000000" "00000000" "02")
    old = plain[: codec.prefix_size] + bytes.fromhex("0c000000" "07000000" "00000000" "09000000")
    decoded = codec.decode(old)
    assert decoded is not None and decoded.values == ([7, 0, 9],)


def test_a_value_of_another_layout_is_not_decoded() -> None:
    assert ViewCodec(VIEW).decode(other_layout_value()) is None


def _one_value(run_id: int) -> bytes:
    one = np.zeros(1, np.int64)
    row = dict.fromkeys(ARROW) | {"i32": 3, "s": "x"}
    return bytes(ViewCodec(VIEW).encode(table_of([row]), one, one, run_id).to_pylist()[0])


def test_a_value_written_before_the_format_version_existed_still_decodes() -> None:
    # Commit 7905112 wrote the header as <qqII (event, created, run id, layout): its run ids
    # are below 2**24, so the byte that now holds the format version was 0.
    value = _one_value(7)
    event, created, run_id, layout = HEADER.unpack_from(value)
    old = struct.pack("<qqII", event, created, 7, layout) + value[HEADER.size :]
    assert old == value and value[FORMAT_BYTE] == FORMAT_VERSION == 0
    decoded = ViewCodec(VIEW).decode(old)
    assert decoded is not None and decoded.run_id == 7 and decoded.values[0] == 3
    assert ViewCodec(VIEW).decode_columns([old], [0]).columns == [[3]]


def test_a_value_of_an_unknown_format_version_is_corrupt_never_misread() -> None:
    codec = ViewCodec(VIEW)
    value = _one_value(MAX_RUN_ID)
    newer = with_header(value, format_version=FORMAT_VERSION + 1)
    assert format_of(newer) == FORMAT_VERSION + 1 and header_of(newer) == header_of(value)
    got = codec.decode_columns([value, newer, newer[: HEADER.size + 1]], [0, 1])
    assert (got.good, got.other, got.corrupt) == ([0], [], [1, 2])
    assert got.run_ids == [MAX_RUN_ID]
    with pytest.raises(ValueError, match="format version"):
        codec.decode(newer)
    with pytest.raises(ValueError, match="does not fit"):
        _one_value(MAX_RUN_ID + 1)


# -- end to end ----------------------------------------------------------------------------

DEFS = """
from datetime import timedelta
from featurestore import (Bool, Bytes, Entity, FeatureView, Field, Float32, Float64, Int32, Int64, List,
                          ParquetSource, String, Timestamp)

thing = Entity("thing", join_keys=["id"])
every = FeatureView(
    "every", entities=[thing], ttl=timedelta(days=1),
    source=ParquetSource("every_src", path="data/every.parquet", timestamp_field="ts"),
    schema=[Field("i32", Int32), Field("i64", Int64), Field("f32", Float32), Field("f64", Float64),
            Field("s", String), Field("b", Bool), Field("raw", Bytes), Field("t", Timestamp),
            Field("emb", List(Float32)), Field("ids", List(Int64))])
"""
WHEN = datetime(2026, 3, 1, 12, 30, 0, 123456, tzinfo=UTC)
EXAMPLES = [
    {
        "i32": -(2**31),
        "i64": 2**63 - 1,
        "f32": 1.5,
        "f64": -0.1,
        "s": "ünï:{c}ode",
        "b": True,
        "raw": b"\x00\xff",
        "t": WHEN,
        "emb": [0.25, -1.0],
        "ids": [2**40, -1],
    },
    {
        "i32": 0,
        "i64": 0,
        "f32": 0.0,
        "f64": 0.0,
        "s": "",
        "b": False,
        "raw": b"",
        "t": datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC),
        "emb": [],
        "ids": [],
    },
    dict.fromkeys(ARROW),
]


def every_table(examples: list[dict[str, Any]], at: datetime) -> pa.Table:
    """Ids 1, 2, ... with one event time, then the examples' feature columns."""
    keys = pa.table(
        {"id": pa.array(range(1, len(examples) + 1), pa.int64()), "ts": pa.array([at] * len(examples), TZ)}
    )
    features = table_of(examples)
    for name in features.column_names:
        keys = keys.append_column(name, features.column(name))
    return keys


def every_store(repo: Path, examples: list[dict[str, Any]]) -> FeatureStore:
    return make_store(
        repo, DEFS, {"every.parquet": every_table(examples, datetime.now(UTC) - timedelta(hours=1))},
        project="online",
    )


def test_every_dtype_is_served_as_it_was_written(tmp_path: Path, redis_client: redis.Redis) -> None:
    fs = every_store(tmp_path / "repo", EXAMPLES)
    fs.materialize()
    refs = [f"every:{f.name}" for f in FIELDS]
    values, statuses = lookup(fs, refs, {"id": [1, 2, 3, 4]})
    for f in FIELDS:
        expected = [e[f.name] for e in EXAMPLES] + [None]
        assert all(same(a, b) for a, b in zip(values[f.name], expected, strict=True)), f.name
        assert statuses[f.name] == ["PRESENT", "PRESENT", "NULL_VALUE", "NOT_FOUND"], f.name
    table = fs.get_online_features(refs, {"id": [1, 2, 3, 4]}).to_arrow()
    assert table.schema == pa.schema([("id", pa.int64()), *ARROW.items()])
    assert table.slice(0, 3).drop_columns(["id"]).equals(table_of(EXAMPLES))


def test_a_changed_schema_is_not_misread_before_rematerializing(
    tmp_path: Path, redis_client: redis.Redis
) -> None:
    fs = every_store(tmp_path / "repo", EXAMPLES)
    fs.materialize()
    # i32 becomes an Int64 column: the bytes in Redis are laid out for Int32.
    path = fs.config.repo / "data" / "every.parquet"
    data = pq.read_table(path)
    write_parquet(
        path, data.set_column(data.schema.get_field_index("i32"), "i32", data.column("i32").cast(pa.int64()))
    )
    edit(tmp_path / "repo" / "defs.py", 'Field("i32", Int32)', 'Field("i32", Int64)')
    fs.apply(allow_breaking=True)
    fresh = FeatureStore(fs.config.repo)
    assert lookup(fresh, ["every:i32"], {"id": [1]})[1] == {"i32": ["NOT_FOUND"]}
    fresh.materialize()
    assert lookup(fresh, ["every:i32"], {"id": [1]}) == ({"id": [1], "i32": [-(2**31)]}, {"i32": ["PRESENT"]})


def test_a_null_inside_a_list_is_served_as_the_training_set_has_it(
    tmp_path: Path, redis_client: redis.Redis
) -> None:
    fs = every_store(tmp_path / "repo", [dict.fromkeys(ARROW) | {"emb": [1.0, None], "ids": [None, 5]}])
    fs.materialize()
    entity = pa.table({"id": pa.array([1], pa.int64()), "event_timestamp": pa.array([datetime.now(UTC)], TZ)})
    with fs.get_training_set(entity, ["every:emb", "every:ids"]) as ts:
        offline = ts.to_arrow().to_pydict()
    assert offline["emb"] == [[1.0, None]] and offline["ids"] == [[None, 5]]
    online = lookup(fs, ["every:emb", "every:ids"], {"id": [1]})[0]
    assert (online["emb"], online["ids"]) == (offline["emb"], offline["ids"])


@settings(max_examples=30, deadline=None)
@given(data=rows, pick=st.integers(0, 11), positions=st.lists(st.integers(0, len(FIELDS) - 1), unique=True))
def test_a_value_cut_short_or_with_bytes_to_spare_is_corrupt_and_the_others_decode(
    data: list[dict[str, Any]], pick: int, positions: list[int]
) -> None:
    codec = ViewCodec(VIEW)
    n = len(data)
    i = pick % n
    zeros = np.zeros(n, np.int64)
    encoded = codec.encode(table_of(data), zeros, zeros, 1).to_pylist()
    whole = codec.decode_columns(encoded, positions)
    keep = [j for j in range(n) if j != i]
    value = encoded[i]
    for bad in (*(value[:cut] for cut in range(len(value))), value + b"\x00"):
        got = codec.decode_columns([*encoded[:i], bad, *encoded[i + 1 :]], positions)
        assert (got.corrupt, got.other, got.good) == ([i], [], keep), (len(bad), len(value))
        for column, full in zip(got.columns, whole.columns, strict=True):
            assert all_same(column, [full[j] for j in keep])


@pytest.mark.parametrize(
    ("feature", "stored"),
    [("s", b"\xff\xfe"), ("emb", b"\x00\x00\x80")],  # not UTF-8; not a whole number of float32s
)
def test_a_requested_feature_that_does_not_parse_is_corrupt(feature: str, stored: bytes) -> None:
    codec = ViewCodec(VIEW)
    row = dict.fromkeys(ARROW) | {"s": "ok", "emb": [1.0]}
    (value,) = codec.encode(table_of([row]), np.zeros(1, np.int64), np.zeros(1, np.int64), 1).to_pylist()
    # Rewrite the feature's bytes in place of the original ones, keeping the framing valid.
    original = {"s": b"ok", "emb": np.array([1.0], "<f4").tobytes()}[feature]
    start = value.index(struct.pack("<I", len(original)) + original, codec.prefix_size)
    bad = value[:start] + struct.pack("<I", len(stored)) + stored + value[start + 4 + len(original) :]
    position = [f.name for f in FIELDS].index(feature)
    assert codec.decode_columns([bad], [position]).corrupt == [0]
    # Not asked for, it is only skipped by its length: the value serves the other features.
    assert codec.decode_columns([bad], [0]).good == [0]

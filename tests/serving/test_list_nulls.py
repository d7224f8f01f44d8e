"""Every list type, with nulls inside lists, reaches every serving surface as the training set has it."""

from __future__ import annotations

import base64
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import redis

import featurestore
from featurestore.serving.v1 import serving_pb2 as pb
from tests.serving.support import ServeProcess
from tests.support.cli import run_cli
from tests.support.redis import RedisServer
from tests.support.repos import make_store

DEFS = """
from featurestore import (Bool, Bytes, Entity, FeatureView, Field, Float32, Float64, Int32, Int64, List,
    ParquetSource, String, Timestamp)

thing = Entity("thing", join_keys=["id"])
lists = FeatureView(
    "lists", entities=[thing],
    source=ParquetSource("lists_src", path="data/lists.parquet", timestamp_field="ts"),
    schema=[Field("l32", List(Int32)), Field("l64", List(Int64)), Field("lf32", List(Float32)),
            Field("lf64", List(Float64)), Field("ls", List(String)), Field("lb", List(Bool)),
            Field("lx", List(Bytes)), Field("lt", List(Timestamp))])
"""
UTC_US = pa.timestamp("us", tz="UTC")
TYPES = {
    "l32": pa.list_(pa.int32()),
    "l64": pa.list_(pa.int64()),
    "lf32": pa.list_(pa.float32()),
    "lf64": pa.list_(pa.float64()),
    "ls": pa.list_(pa.string()),
    "lb": pa.list_(pa.bool_()),
    "lx": pa.list_(pa.binary()),
    "lt": pa.list_(UTC_US),
}
T0 = datetime(2024, 2, 29, 23, 59, 59, 999_999, tzinfo=UTC)
# per entity: nulls inside, no nulls, empty, a null list, only nulls, a long list (2-byte bitmap)
ROWS: list[dict[str, Any]] = [
    {"l32": [1, None, 3], "l64": [None, 2**40], "lf32": [0.5, None], "lf64": [None, -1.25, None],
     "ls": ["a", None, "ü"], "lb": [True, None, False], "lx": [None, b"\x00\xff"], "lt": [T0, None]},
    {"l32": [4], "l64": [5, 6], "lf32": [1.5], "lf64": [2.5, 3.5],
     "ls": ["", "日本語", "🦀 x"], "lb": [False], "lx": [b"", b"ab"], "lt": [T0 - timedelta(days=20_000)]},
    {"l32": [], "l64": [], "lf32": [], "lf64": [], "ls": [], "lb": [], "lx": [], "lt": []},
    {"l32": None, "l64": None, "lf32": None, "lf64": None, "ls": None, "lb": None, "lx": None, "lt": None},
    {"l32": [None], "l64": [None, None], "lf32": [None] * 3, "lf64": [None] * 9,
     "ls": [None] * 4, "lb": [None], "lx": [None, None], "lt": [None] * 2},
    {
        "l32": [None if i % 3 == 0 else i for i in range(11)],
        "l64": [-(2**63), None, 2**63 - 1],
        "lf32": [float(i) if i != 8 else None for i in range(10)],
        "lf64": [0.0] * 8 + [None],
        "ls": [None if i % 4 == 1 else "x" * i for i in range(17)],
        "lb": [None if i == 9 else i % 2 == 0 for i in range(12)],
        "lx": [bytes([i]) * i for i in range(9)] + [None],
        "lt": [T0 + timedelta(microseconds=i) for i in range(9)] + [None],
    },
]


def _generated(seed: int, n: int) -> list[dict[str, Any]]:
    """Random rows: null lists, empty lists, nulls inside, any unicode, empty strings and bytes."""
    rng = random.Random(seed)
    items = {
        "l32": lambda: rng.randint(-(2**31), 2**31 - 1),
        "l64": lambda: rng.randint(-(2**63), 2**63 - 1),
        "lf32": lambda: float(rng.randint(-1000, 1000)) / 8,  # exact in float32
        "lf64": lambda: rng.uniform(-1e300, 1e300),
        # any code point but surrogates (which have no UTF-8), the empty string often
        "ls": lambda: "".join(
            chr(rng.choice([rng.randint(0, 0xD7FF), rng.randint(0xE000, 0x10FFFF)]))
            for _ in range(rng.choice([0, 0, 1, 3, 12]))
        ),
        "lb": lambda: rng.random() < 0.5,
        "lx": lambda: rng.randbytes(rng.choice([0, 0, 1, 5, 40])),
        "lt": lambda: T0 + timedelta(microseconds=rng.randint(-(2**52), 2**52)),
    }
    rows = []
    for _ in range(n):
        row: dict[str, Any] = {}
        for name, item in items.items():
            shape = rng.random()
            if shape < 0.1:
                row[name] = None
            elif shape < 0.2:
                row[name] = []
            else:
                row[name] = [None if rng.random() < 0.2 else item() for _ in range(rng.randint(1, 20))]
        rows.append(row)
    return rows


ALL_ROWS = ROWS + _generated(seed=15, n=40)
IDS = list(range(1, len(ALL_ROWS) + 1))
FEATURES = [f"lists:{name}" for name in TYPES]


def _store(repo: Path) -> featurestore.FeatureStore:
    ts = datetime.now(UTC) - timedelta(hours=1)
    table = pa.table(
        {
            "id": pa.array(IDS, pa.int64()),
            "ts": pa.array([ts] * len(IDS), UTC_US),
            **{name: pa.array([r[name] for r in ALL_ROWS], t) for name, t in TYPES.items()},
        }
    )
    return make_store(repo, DEFS, {"lists.parquet": table}, project="listnulls")


def _as_json(name: str, value: Any) -> Any:
    """A value as the HTTP API writes it: bytes in base64, timestamps in ISO 8601."""
    if value is None:
        return None
    if isinstance(value, list):
        return [_as_json(name, v) for v in value]
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def test_every_surface_serves_lists_and_nulls_inside_them_as_the_training_set(
    tmp_path: Path, redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    fs = _store(tmp_path / "repo")
    fs.materialize()
    entity = pa.table(
        {"id": pa.array(IDS, pa.int64()), "event_timestamp": pa.array([datetime.now(UTC)] * len(IDS))}
    )
    with fs.get_training_set(entity, FEATURES) as ts:
        offline = ts.to_arrow().sort_by("id").to_pydict()
    assert {name: offline[name] for name in TYPES} == {name: [r[name] for r in ALL_ROWS] for name in TYPES}

    entities = {"id": [*IDS, 999]}  # and one entity never materialized
    expected = {name: [*offline[name], None] for name in TYPES}
    expected_arrow = pa.table({name: pa.array(values, TYPES[name]) for name, values in expected.items()})
    statuses = {
        name: ["NULL_VALUE" if v is None else "PRESENT" for v in offline[name]] + ["NOT_FOUND"]
        for name in TYPES
    }
    local = fs.get_online_features(FEATURES, entities)
    assert {name: local.to_dict()[name] for name in TYPES} == expected
    assert local.to_arrow().select(list(TYPES)).equals(expected_arrow)
    assert local.statuses == statuses

    server = ServeProcess(fs.config.repo, redis_server.url)
    try:
        server.start()
        with featurestore.Client(server.target, timeout=5) as client:
            remote = client.get_online_features(FEATURES, entities)
            ids = pb.Values(int64_values=pb.Int64List(values=entities["id"]))
            request = pb.GetOnlineFeaturesRequest(features=FEATURES, entities={"id": ids})
            raw = client.stub.GetOnlineFeatures(request, timeout=5)
        body = {"features": FEATURES, "entities": entities}
        http = httpx.post(f"{server.http_url}/v1/online-features", json=body, timeout=5)
    finally:
        server.stop()
    assert {name: remote.columns[name] for name in TYPES} == expected
    assert remote.to_arrow().select(list(TYPES)).equals(expected_arrow)
    assert remote.statuses == statuses
    assert http.status_code == 200, http.text
    columns = http.json()["features"]
    assert {col["name"]: col["values"] for col in columns} == {
        name: _as_json(name, values) for name, values in expected.items()
    }
    assert {col["name"]: col["statuses"] for col in columns} == statuses
    assert {col["name"]: col["type"] for col in columns} == {
        name: f"List({kind})"
        for name, kind in zip(TYPES, ["Int32", "Int64", "Float32", "Float64", "String", "Bool", "Bytes",
                                      "Timestamp"], strict=True)
    }

    # On the wire a null item is the type's zero value plus its position: a client that
    # predates null_positions reads the zero it always did.
    by_name = {col.name: col for col in raw.features}
    first = by_name["l32"].values.list_values.values[0]
    assert list(first.int32_values.values) == [1, 0, 3] and list(first.null_positions) == [1]
    no_nulls = by_name["l32"].values.list_values.values[1]
    assert no_nulls == pb.Values(int32_values=pb.Int32List(values=[4]))
    words = by_name["ls"]
    assert words.type == pb.STRING_LIST
    assert words.values.list_values.values[0] == pb.Values(
        string_values=pb.StringList(values=["a", "", "ü"]), null_positions=[1]
    )
    flags = by_name["lb"].values.list_values.values[0]
    assert list(flags.bool_values.values) == [True, False, False] and list(flags.null_positions) == [1]
    blobs = by_name["lx"].values.list_values.values[0]
    assert list(blobs.bytes_values.values) == [b"", b"\x00\xff"] and list(blobs.null_positions) == [0]
    times = by_name["lt"].values.list_values.values[0]
    micros = (T0 - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    assert list(times.timestamp_values.values) == [micros, 0] and list(times.null_positions) == [1]
    # an absent list (never materialized, or a null list) is an empty list with its status
    absent = by_name["ls"].values.list_values.values[-1]
    assert list(absent.string_values.values) == [] and list(absent.null_positions) == []
    assert by_name["ls"].statuses[-1] == pb.NOT_FOUND


def test_featurestore_get_prints_text_lists(
    tmp_path: Path, redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    fs = _store(tmp_path / "repo")
    env = {"FEATURESTORE_REDIS_URL": redis_server.url}
    result = run_cli("materialize", "--repo", str(fs.config.repo), env=env)
    assert result.returncode == 0, result.stderr
    result = run_cli(
        "get", "--repo", str(fs.config.repo), "--entity", "id=2", "--features", "lists:ls,lists:lb", env=env
    )
    assert result.returncode == 0, result.stderr
    assert "['', '日本語', '🦀 x']" in result.stdout and "[False]" in result.stdout

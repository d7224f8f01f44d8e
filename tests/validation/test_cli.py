"""The command line, as a user runs it: validate (table and --json) and materialize with quarantine."""

from __future__ import annotations

import json
import struct
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import redis

from tests.support.cli import run_cli
from tests.support.repos import write_parquet
from tests.validation.support import (
    GOOD,
    ISIN,
    MIXED,
    NOT_NULL,
    RANGE,
    UNIQUE,
    expected_reasons,
    trips_store,
    trips_table,
)


def test_validate_reports_without_writing(tmp_path: Path) -> None:
    fs = trips_store(tmp_path / "repo", "quarantine", {"a.parquet": GOOD, "b.parquet": MIXED}, apply=False)
    repo = str(fs.config.repo)

    done = run_cli("validate", "--repo", repo, "--json")
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["passed"] is False
    views = {v["view"]: v for v in report["views"]}
    assert views["profile"]["passed"] and views["profile"]["invalid_rows"] == 0
    trips = views["trips"]
    assert (trips["policy"], trips["rows"], trips["invalid_rows"]) == (
        "quarantine", len(GOOD) + len(MIXED), len(expected_reasons(MIXED)))
    [_, b] = trips["files"]
    assert Path(b["path"]).name == "b.parquet"
    failures = {(f["column"], f["check"]): f for f in b["failures"]}
    assert {k: f["failing_rows"] for k, f in failures.items()} == {
        ("rate", RANGE): 1, ("kind", ISIN): 1, ("trips", NOT_NULL): 1, ("driver_id", NOT_NULL): 1,
        ("ts", NOT_NULL): 1, ("trips", "greater_than_or_equal_to(0)"): 1, (None, UNIQUE): 2}
    assert failures[("rate", RANGE)]["examples"] == [{
        "row": 1, "driver_id": 1, "ts": "2026-01-01T00:30:00+00:00", "created": "2026-01-01T00:30:00+00:00",
        "rate": 1.5, "kind": "car", "trips": 1}]
    assert [e["row"] for e in failures[(None, UNIQUE)]["examples"]] == [9, 10]

    done = run_cli("validate", "--repo", repo)
    assert done.returncode == 1, done.stderr
    for part in ("Failures", "failed", "b.parquet", "rate", RANGE, "row 1: rate=1.5", "(view)", UNIQUE,
                 "kind='scooter'"):
        assert part in done.stdout, part
    # A row failing the view's own check shows its key (driver 6 fails only that check).
    assert "driver_id=6" in done.stdout

    done = run_cli("validate", "--repo", repo, "--views", "profile", "--json")
    assert done.returncode == 0, done.stderr
    assert [(v["view"], v["passed"]) for v in json.loads(done.stdout)["views"]] == [("profile", True)]
    assert not fs.config.store_dir.exists()  # validate wrote nothing, not even a store


def test_materialize_with_quarantine(tmp_path: Path, redis_client: redis.Redis) -> None:
    fs = trips_store(tmp_path / "repo", "quarantine", {"a.parquet": GOOD, "b.parquet": MIXED})
    repo = str(fs.config.repo)
    folder = fs.config.store_dir / "quarantine" / "trips"

    done = run_cli("materialize", "--repo", repo)
    assert done.returncode == 0, done.stderr
    [quarantined] = folder.iterdir()
    assert f"trips: 8 invalid rows quarantined to {quarantined}" in done.stdout
    assert redis_client.dbsize() == 2 + 5 + 1  # profile customers, trips drivers with a valid row, marker

    data = fs.config.repo / "data" / "trips"
    write_parquet(data / "c.parquet", trips_table([(8, 1, 1, 0.5, "car", 1), (9, 1, 1, 0.5, "car", -1)]))
    done = run_cli("materialize", "--repo", repo, "--offline")
    assert done.returncode == 0, done.stderr
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in done.stdout.splitlines()]
    [row] = [c for c in cells if c[:1] == ["trips"]]
    assert row[1:7] == ["1", "0", "0", "1", "0", "1"]  # files + ~ -, rows in, rows out, invalid
    assert "trips: 1 invalid rows quarantined to" in done.stdout and len(list(folder.iterdir())) == 2

    # Drift is refused under any policy, naming what the declaration expects and what the file has.
    table = trips_table(GOOD)
    write_parquet(data / "d.parquet", table.set_column(5, "trips", table.column("trips").cast(pa.float64())))
    done = run_cli("materialize", "--repo", repo)
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0
    for part in ("'trips'", "d.parquet", "is double", "declared Int64"):
        assert part in done.stderr, part


LIST_DEFS = """
from pandera.pandas import Check
from featurestore import Entity, FeatureView, Field, Float64, List, ParquetSource, String

driver = Entity("driver", join_keys=["driver_id"])
tagged = FeatureView(
    "tagged", entities=[driver],
    source=ParquetSource("tagged_src", path="data/tagged", timestamp_field="ts"),
    schema=[Field("score", Float64, checks=[Check.ge(0)]), Field("labels", List(String))],
)
"""


def test_validate_goes_on_past_an_unreadable_file_and_writes_lists_as_json(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "data" / "tagged").mkdir(parents=True)
    (repo / "featurestore.toml").write_text('project = "val"\n')
    (repo / "defs.py").write_text(LIST_DEFS)
    rows = pa.table({
        "driver_id": pa.array([1, 2], pa.int64()),
        "ts": pa.array([datetime(2026, 1, 1, tzinfo=UTC)] * 2, pa.timestamp("us", tz="UTC")),
        "score": [0.5, -1.0],
        "labels": pa.array([["a"], ["x", "y"]], pa.list_(pa.string())),
    })
    # a.parquet: a readable footer over garbage pages, so only reading its rows fails.
    broken = repo / "data" / "tagged" / "a.parquet"
    pq.write_table(rows, broken, compression="none")
    data = bytearray(broken.read_bytes())
    footer = struct.unpack("<I", data[-8:-4])[0]
    for i in range(8, len(data) - 8 - footer, 7):
        data[i] ^= 0x5A
    broken.write_bytes(bytes(data))
    pq.write_table(rows, repo / "data" / "tagged" / "b.parquet")

    done = run_cli("validate", "--repo", str(repo), "--json")
    assert done.returncode == 1, done.stderr
    [view] = json.loads(done.stdout)["views"]
    a, b = view["files"]
    assert (Path(a["path"]).name, a["rows"]) == ("a.parquet", 0)
    assert "is not a readable Parquet file" in a["error"]
    assert (Path(b["path"]).name, b["rows"], b["invalid_rows"], b["error"]) == ("b.parquet", 2, 1, None)
    [failure] = b["failures"]
    assert failure["examples"] == [{"row": 1, "driver_id": 2, "ts": "2026-01-01T00:00:00+00:00",
                                    "score": -1.0, "labels": ["x", "y"]}]

    table = run_cli("validate", "--repo", str(repo))
    assert table.returncode == 1, table.stderr
    for part in ("a.parquet", "unreadable", "not a readable Parquet file", "b.parquet", "row 1: score=-1.0"):
        assert part in table.stdout, part

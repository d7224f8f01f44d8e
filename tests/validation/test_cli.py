"""The command line, as a user runs it: validate (table and --json) and materialize with quarantine."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import redis

from tests.helpers import run_cli
from tests.validation.conftest import (
    GOOD,
    ISIN,
    NOT_NULL,
    RANGE,
    UNIQUE,
    expected_reasons,
    make_store,
    trips_table,
    write,
)
from tests.validation.test_policies import MIXED


def test_validate_reports_without_writing(tmp_path: Path) -> None:
    fs = make_store(tmp_path / "repo", "quarantine", {"a.parquet": GOOD, "b.parquet": MIXED}, apply=False)
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
    fs = make_store(tmp_path / "repo", "quarantine", {"a.parquet": GOOD, "b.parquet": MIXED})
    repo = str(fs.config.repo)
    folder = fs.config.store_dir / "quarantine" / "trips"

    done = run_cli("materialize", "--repo", repo)
    assert done.returncode == 0, done.stderr
    [quarantined] = folder.iterdir()
    assert f"trips: 8 invalid rows quarantined to {quarantined}" in done.stdout
    assert redis_client.dbsize() == 2 + 5 + 1  # profile customers, trips drivers with a valid row, marker

    data = fs.config.repo / "data" / "trips"
    write(data / "c.parquet", trips_table([(8, 1, 1, 0.5, "car", 1), (9, 1, 1, 0.5, "car", -1)]))
    done = run_cli("materialize", "--repo", repo, "--offline")
    assert done.returncode == 0, done.stderr
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in done.stdout.splitlines()]
    [row] = [c for c in cells if c[:1] == ["trips"]]
    assert row[1:7] == ["1", "0", "0", "1", "0", "1"]  # files + ~ -, rows in, rows out, invalid
    assert "trips: 1 invalid rows quarantined to" in done.stdout and len(list(folder.iterdir())) == 2

    # Drift is refused under any policy, naming what the declaration expects and what the file has.
    table = trips_table(GOOD)
    write(data / "d.parquet", table.set_column(5, "trips", table.column("trips").cast(pa.float64())))
    done = run_cli("materialize", "--repo", repo)
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0
    for part in ("'trips'", "d.parquet", "is double", "declared Int64"):
        assert part in done.stderr, part

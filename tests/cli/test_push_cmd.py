"""`featurestore push --view V FILE`: a Parquet or CSV file through the push core, in process."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis

from featurestore import FeatureStore
from featurestore.offline import push_log
from tests.online.helpers import TZ
from tests.support.cli import one_line_error, run_cli
from tests.support.repos import make_store

DEFS = """
from datetime import timedelta
from pandera.pandas import Check
from featurestore import Entity, FeatureView, Field, Int64, ParquetSource, String

account = Entity("account", join_keys=["code"])
balances = FeatureView("balances", entities=[account], ttl=timedelta(days=1),
                       schema=[Field("code", String), Field("v", Int64, checks=[Check.ge(0)])],
                       source=ParquetSource("b_src", path="data/b.parquet", timestamp_field="ts"))
from featurestore import Aggregation
counts = FeatureView("counts", entities=[account], source=balances.source,
                     schema=[Field("code", String), Field("v", Int64, checks=[Check.ge(0)])],
                     aggregations=[Aggregation("v", "count", window=timedelta(hours=2))])
"""
NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)


@pytest.fixture
def store(tmp_path: Path, redis_client: redis.Redis) -> FeatureStore:
    fs = make_store(
        tmp_path / "repo",
        DEFS,
        {"b.parquet": pa.table({"code": ["a"], "ts": pa.array([NOW - timedelta(hours=1)], TZ), "v": [1]})},
        project="clipush",
    )
    fs.materialize()
    return fs


def served(fs: FeatureStore, codes: list[str]) -> list[object]:
    return list(
        FeatureStore(fs.config.repo).get_online_features(["balances:v"], {"code": codes}).to_dict()["v"]
    )


def test_a_parquet_file_is_pushed_and_served(store: FeatureStore, tmp_path: Path) -> None:
    path = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"code": ["a", "007"], "ts": pa.array([NOW, NOW], TZ), "v": [5, 7]}), path)
    result = run_cli("push", "--repo", str(store.config.repo), "--view", "balances", str(path))
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip()
    assert line.startswith("pushed 2 row(s) to balances (offline in ") and "2 written online" in line
    assert served(store, ["a", "007"]) == [5, 7]
    assert len(push_log.pushed_files(store.config.store_dir, "balances")) == 1


def test_a_csv_file_is_read_by_the_declared_types(store: FeatureStore, tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text(f"code,ts,v\n007,{NOW.isoformat()},9\n")  # "007" stays a String key
    result = run_cli("push", "--repo", str(store.config.repo), "--view", "balances", str(path))
    assert result.returncode == 0, result.stderr
    assert served(store, ["007", "7"]) == [9, None]


def test_errors_are_one_line_and_write_nothing(store: FeatureStore, tmp_path: Path) -> None:
    repo = str(store.config.repo)
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"code": ["b", "c"], "ts": pa.array([NOW, NOW], TZ), "v": [1, -1]}), bad)
    one_line_error(
        run_cli("push", "--repo", repo, "--view", "balances", str(bad)),
        "refused, nothing written",
        "row 1: column 'v' failed greater_than_or_equal_to(0)",
    )
    one_line_error(
        run_cli("push", "--repo", repo, "--view", "nope", str(bad)), "no feature view named 'nope'"
    )
    one_line_error(
        run_cli("push", "--repo", repo, "--view", "balances", str(tmp_path / "x.parquet")), "no such file"
    )
    (tmp_path / "rows.json").write_text("{}")
    one_line_error(
        run_cli("push", "--repo", repo, "--view", "balances", str(tmp_path / "rows.json")),
        "reads .parquet or .csv",
    )
    assert push_log.pushed_files(store.config.store_dir, "balances") == []
    assert served(store, ["b", "c"]) == [None, None]


def test_a_file_of_events_is_pushed_to_an_aggregation_view(store: FeatureStore, tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    times = pa.array([NOW, NOW - timedelta(days=1)], TZ)  # the second is past the only window
    pq.write_table(pa.table({"code": ["a", "a"], "ts": times, "v": [5, 7]}), path)
    result = run_cli("push", "--repo", str(store.config.repo), "--view", "counts", str(path))
    assert result.returncode == 0, result.stderr
    assert "pushed 2 row(s) to counts" in result.stdout and "1 written online" in result.stdout
    fresh = FeatureStore(store.config.repo)
    assert fresh.get_online_features(["counts:v_count_2h"], {"code": ["a"]}).to_dict()["v_count_2h"] == [2]

"""`featurestore materialize` with --end, --views, --start and --incremental, through the real CLI.

What each flag did is read back from Redis and from the source files, not from the command's
own report: the summary is checked against them.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest
import redis

from featurestore import datagen
from featurestore.online.materialize import EXPIRED_GRACE
from tests.serving.support import open_store
from tests.support.cli import on_terminal, one_line_error, run_cli
from tests.support.redis import RedisServer
from tests.support.repos import copy_example_repo

TTL = timedelta(days=2)  # driver_stats, in definitions/drivers.py
SUMMARY = re.compile(r"Run (\d+): ([\d,]+) rows read, ([\d,]+) entities written in [\d.]+s\.")


@pytest.fixture
def repo(tmp_path: Path, redis_client: redis.Redis, redis_server: RedisServer) -> Path:
    data = tmp_path / "data"
    datagen.generate(data, "tiny")  # ends at the current hour: within the views' TTLs
    repo = copy_example_repo(tmp_path / "repo", data, redis_server.url)
    assert run_cli("apply", "--repo", str(repo)).returncode == 0
    return repo


def summary(stdout: str) -> tuple[int, int, int]:
    match = SUMMARY.search(stdout)
    assert match, stdout
    run, rows, written = (int(g.replace(",", "")) for g in match.groups())
    return run, rows, written


def view_keys(client: redis.Redis, view: str) -> list[bytes]:
    return list(client.scan_iter(match="{rides:*}:" + view, count=1000))


def newest_event(repo: Path, ids: list[int]) -> dict[int, datetime | None]:
    """The event time of each driver's value in Redis (None: not there)."""
    got = open_store(repo).get_online_features(["driver_stats:conv_rate"], {"driver_id": ids})
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    micros = got.features[0].event_ts_us
    return {
        i: None if t is None else epoch + timedelta(microseconds=t) for i, t in zip(ids, micros, strict=True)
    }


def test_end_views_then_incremental(repo: Path, redis_client: redis.Redis) -> None:
    source = ds.dataset(repo / "data" / "driver_stats", format="parquet").to_table()
    times = source.column("event_timestamp")
    end = pc.min_max(times)["max"].as_py() - timedelta(hours=3)
    assert pc.sum(pc.greater_equal(times, end)).as_py() > 0  # rows the --end must hold back

    first = run_cli("materialize", "--repo", str(repo), "--views", "driver_stats", "--end", end.isoformat())
    assert first.returncode == 0, first.stderr
    run, rows, written = summary(first.stdout)
    keys = view_keys(redis_client, "driver_stats")
    assert written == len(keys) > 0 and rows >= written
    assert view_keys(redis_client, "customer_profile") == []  # --views left it alone
    assert "driver_stats" in first.stdout and "customer_profile" not in first.stdout
    drivers = sorted(set(source.column("driver_id").to_pylist()))
    served = newest_event(repo, drivers)
    assert all(t is None or t < end for t in served.values())

    # Incremental: driver_stats from its watermark (the --end above), customer_profile from the start.
    second = run_cli("materialize", "--repo", str(repo), "--incremental")
    assert second.returncode == 0, second.stderr
    run2, rows2, written2 = summary(second.stdout)
    assert run2 == run + 1 and written2 > 0
    assert end.isoformat(timespec="seconds") in second.stdout  # the "from" column of driver_stats
    assert len(view_keys(redis_client, "customer_profile")) > 0
    # Independently: each driver's newest source row, unless it is too old to be written at all
    # (older than TTL + grace); drivers within a minute of that line are left out as ambiguous.
    ids = source.column("driver_id").to_pylist()
    newest = {d: max(t for t, i in zip(times.to_pylist(), ids, strict=True) if i == d) for d in drivers}
    cutoff = datetime.now(UTC) - TTL - EXPIRED_GRACE
    clear = {d: t for d, t in newest.items() if abs(t - cutoff) > timedelta(minutes=1)}
    expected = {d: t if t >= cutoff else None for d, t in clear.items()}
    served = newest_event(repo, list(expected))
    assert served == expected and sum(t is not None for t in served.values()) > 0

    third = run_cli("materialize", "--repo", str(repo), "--incremental")
    assert summary(third.stdout)[1:] == (0, 0)  # nothing new since the last watermark


def test_start_after_end_and_start_with_incremental_are_one_line_errors(repo: Path) -> None:
    now = datetime.now(UTC)
    one_line_error(
        run_cli("materialize", "--repo", str(repo), "--start", now.isoformat(),
                "--end", (now - timedelta(hours=1)).isoformat()),
        "is not before end",
    )
    one_line_error(
        run_cli("materialize", "--repo", str(repo), "--incremental", "--start", now.isoformat()),
        "--incremental", "drop --start",
    )
    one_line_error(run_cli("materialize", "--repo", str(repo), "--end", "yesterday"), "--end 'yesterday'")


def test_progress_bar_on_a_terminal(repo: Path) -> None:
    # On a terminal the bar counts entities per view on stderr; stdout still ends with the summary.
    returncode, seen, stdout = on_terminal(
        "materialize", "--repo", str(repo), "--views", "customer_profile", columns=120, stream="stderr"
    )
    assert returncode == 0, seen
    _, _, written = summary(stdout)
    text = re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b"", seen).decode(errors="replace")
    assert "customer_profile" in text
    assert f"{written}/{written}" in text, text  # the bar reached every entity of the view


def test_rows_older_than_the_ttl_are_counted_as_expired_per_view(
    tmp_path: Path, redis_client: redis.Redis, redis_server: RedisServer
) -> None:
    # Historical data: every row older than both views' TTLs (driver_stats 2d, customer_profile 30d).
    data = tmp_path / "data"
    datagen.generate(data, "tiny", end=datetime.now(UTC) - timedelta(days=60))
    repo = copy_example_repo(tmp_path / "repo", data, redis_server.url)
    assert run_cli("apply", "--repo", str(repo)).returncode == 0
    expected = {}
    for view, folder, key in (("driver_stats", "driver_stats", "driver_id"),
                              ("customer_profile", "customer_profile", "customer_id")):
        rows = ds.dataset(repo / "data" / folder, format="parquet").to_table()
        has_key = pc.and_(pc.is_valid(rows.column(key)), pc.is_valid(rows.column("event_timestamp")))
        expected[view] = pc.sum(has_key).as_py()
        assert expected[view] > 0

    done = run_cli("materialize", "--repo", str(repo), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    # The aggregation view's windows are all past too, but each driver's lifetime count stays.
    trips = ds.dataset(repo / "data" / "trips", format="parquet").to_table()
    drivers = len(pc.unique(trips.column("driver_id")))
    assert {v["view"]: (v["rows_read"], v["expired"], v["written"]) for v in report["views"]} == {
        **{view: (0, n, 0) for view, n in expected.items()}, "driver_trips": (len(trips), 0, drivers)}
    assert (report["written"], report["expired"]) == (drivers, sum(expected.values()))
    assert view_keys(redis_client, "driver_stats") == []

    again = run_cli("materialize", "--repo", str(repo))
    assert again.returncode == 0, again.stderr
    assert summary(again.stdout)[1:] == (len(trips), drivers)  # a full run: lifetimes again
    n = expected["driver_stats"]
    assert (f"driver_stats: {n:,} rows skipped as expired: older than the view's TTL (2d), "
            "so they would not be served.") in again.stdout.splitlines()
    assert f"customer_profile: {expected['customer_profile']:,} rows skipped as expired" in again.stdout

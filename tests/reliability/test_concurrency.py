"""Real CLI processes at once on one store: ingestions, an apply against a busy store, and
materializations of overlapping ranges. A waiter gets the store within its bounded wait; a
loser fails with one line naming the busy file and its holder, and the winner's result stands."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from featurestore import FeatureStore
from featurestore.errors import ConfigError
from featurestore.runlock import lock_path
from featurestore.storage import default_lock_timeout
from tests.online.helpers import on_db
from tests.reliability.support import (
    DEFS,
    PROJECT,
    armed_cli,
    cli_env,
    finish,
    fire,
    hours_ago,
    ingested_rows,
    items_file,
    items_repo,
    one_error_line,
    opened,
    parquet_rows,
    query,
    start_cli,
    wait_until,
)
from tests.support.redis import RedisServer, redis_dump

ROWS = 100_000


@pytest.fixture
def pending(tmp_path: Path) -> Iterator[FeatureStore]:
    """Applied, with four files of items not ingested yet."""
    repo = items_repo(tmp_path / "repo")
    for i in range(4):
        items_file(
            repo / "data" / "items" / f"part-{i}.parquet", ROWS, 50_000, i * ROWS, hours_ago(1), seed=i
        )
    fs = FeatureStore(repo)
    fs.apply()
    yield fs


def ingestion_statuses(fs: FeatureStore) -> list[tuple[str, int]]:
    sql = f"SELECT status, rows_inserted FROM {PROJECT}.ingestion_runs ORDER BY run_id"
    return [(str(s), int(n or 0)) for s, n in query(fs.config.duckdb_path, sql)]


def test_two_ingestions_at_once_the_second_waits_then_finds_nothing_to_do(pending: FeatureStore) -> None:
    repo, db = str(pending.config.repo), pending.config.duckdb_path
    env = cli_env(FEATURESTORE_LOCK_TIMEOUT="120")  # a generous wait: both must get their turn
    processes = [start_cli("materialize", "--offline", "--repo", repo, env=env) for _ in range(2)]
    for code, _, err in [finish(p) for p in processes]:
        assert code == 0, err
    files = sorted((pending.config.repo / "data" / "items").glob("*.parquet"))
    assert ingested_rows(db).equals(parquet_rows(files))  # once, not twice
    assert ingestion_statuses(pending) == [("succeeded", 4 * ROWS), ("succeeded", 0)]


def test_a_writer_that_cannot_wait_loses_with_one_clear_line(pending: FeatureStore) -> None:
    repo, db = pending.config.repo, pending.config.duckdb_path
    (repo / "other.py").write_text(
        "from featurestore import Entity\nstore = Entity('store', join_keys=['store_id'])\n"
    )
    impatient = cli_env(FEATURESTORE_LOCK_TIMEOUT="0")
    losers = [
        armed_cli("apply", "--repo", str(repo), env=impatient),
        armed_cli("versions", "--repo", str(repo), env=impatient),  # a reader cannot open it either
    ]
    # An ingestion is no loser: runs take turns on the run lock, however long the first takes.
    waiter = armed_cli("materialize", "--offline", "--repo", str(repo), env=impatient)
    winner = start_cli("materialize", "--offline", "--repo", str(repo))
    assert wait_until(winner, opened(db))  # it holds the file from here to its end
    fire(*losers, waiter)
    results = [finish(p) for p in losers]
    code, _, err = finish(winner)
    assert code == 0, err
    for code, _, err in results:
        assert code == 1, err
        assert one_error_line(err) == (
            f"error: the store {db} is busy: another featurestore process (pid {winner.pid}) is using "
            "it (waited 0s); try again when it finishes, or set FEATURESTORE_LOCK_TIMEOUT to wait longer"
        )
    code, _, err = finish(waiter)
    assert code == 0, err
    assert f"(pid {winner.pid}) to finish" in err, err
    # The winner's result stands; the losing apply wrote nothing, the waiter found nothing new.
    assert ingested_rows(db).equals(parquet_rows(sorted((repo / "data" / "items").glob("*.parquet"))))
    assert ingestion_statuses(pending) == [("succeeded", 4 * ROWS), ("succeeded", 0)]
    assert [r[0] for r in query(db, f"SELECT version FROM {PROJECT}.registry_versions")] == [1]


def test_the_lock_timeout_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FEATURESTORE_LOCK_TIMEOUT", raising=False)
    assert default_lock_timeout() == 10.0
    monkeypatch.setenv("FEATURESTORE_LOCK_TIMEOUT", "2.5")
    assert default_lock_timeout() == 2.5
    for bad in ("soon", "-1", "nan"):
        monkeypatch.setenv("FEATURESTORE_LOCK_TIMEOUT", bad)
        with pytest.raises(
            ConfigError, match=f"FEATURESTORE_LOCK_TIMEOUT={bad!r} is not a number of seconds >= 0"
        ):
            default_lock_timeout()


def test_overlapping_materializations_at_once_end_as_one_run_of_their_union(
    tmp_path: Path, redis_client: redis.Redis
) -> None:
    repo = items_repo(tmp_path / "repo")
    data = repo / "data" / "items"
    items_file(data / "part-0.parquet", 20_000, 10_000, 0, hours_ago(3), seed=0, span_hours=2)
    items_file(data / "part-1.parquet", 20_000, 10_000, 10**6, hours_ago(0.5), seed=1, span_hours=1)
    fs = FeatureStore(repo)
    fs.apply()
    fs.ingest()
    # Ranges [beginning, 1h ago) and [2h ago, now) overlap; the union is everything.
    env = cli_env(FEATURESTORE_LOCK_TIMEOUT="120")
    ranges = [["--end", hours_ago(1).isoformat()], ["--start", hours_ago(2).isoformat()]]
    processes = [start_cli("materialize", "--repo", str(repo), *r, env=env) for r in ranges]
    for code, _, err in [finish(p) for p in processes]:
        assert code == 0, err
    sql = f"SELECT status FROM {PROJECT}.materialization_runs"
    assert [r[0] for r in query(fs.config.duckdb_path, sql)] == ["succeeded", "succeeded"]

    clean = on_db(fs, 1)
    clean.materialize()
    clean.close()
    together = redis_dump(redis.Redis.from_url(fs.config.redis_url))
    assert len(together) > 9_000 and together == redis_dump(redis.Redis.from_url(clean.config.redis_url))


def test_two_applies_fired_at_the_same_moment_one_wins(tmp_path: Path) -> None:
    """Two repos (different owners: not breaking either way) apply to one store at once: one
    wins; the other fails with one clear line, unless it started after the winner finished."""
    repos = [
        items_repo(tmp_path / name, DEFS.replace("ttl=", f"owner='{name}@example.com', ttl="))
        for name in "ab"
    ]
    for repo in repos:
        items_file(repo / "data" / "items" / "part-0.parquet", 10, 5, 0, hours_ago(1), seed=0)
    shared = tmp_path / "shared" / "store.duckdb"
    env = cli_env(FEATURESTORE_DUCKDB_PATH=str(shared), FEATURESTORE_LOCK_TIMEOUT="120")
    snapshots = [FeatureStore(repo).load_definitions() for repo in repos]
    compiled = {s.content_hash: sum(len(objs) for objs in s.by_kind().values()) for s in snapshots}
    assert len(compiled) == 2
    applies = [armed_cli("apply", "--repo", str(repo), env=env) for repo in repos]
    fire(*applies)
    outcomes = [finish(p) for p in applies]
    won = [out for code, out, _ in outcomes if code == 0]
    assert won, outcomes
    for code, out, err in outcomes:
        if code == 0:
            assert "Applied registry version" in out
        else:
            assert code == 1 and out == ""
            assert "while this one ran" in one_error_line(err)
    versions = query(
        shared, f"SELECT version, content_hash FROM {PROJECT}.registry_versions ORDER BY version"
    )
    assert [v for v, _ in versions] == list(range(1, len(won) + 1))
    assert {h for _, h in versions} <= set(compiled) and len({h for _, h in versions}) == len(won)
    for version, content_hash in versions:  # each version complete: every object of its repo
        rows = query(shared, f"SELECT count(*) FROM {PROJECT}.registry_objects WHERE version = {version}")
        assert rows == [(compiled[content_hash],)]


def test_a_second_materialization_waits_for_the_first_as_long_as_it_takes_or_skips_if_idle(
    tmp_path: Path, redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    repo = items_repo(tmp_path / "repo")
    data = repo / "data" / "items"
    items_file(data / "part-0.parquet", 2_000, 1_000, 0, hours_ago(2), seed=0)
    fs = FeatureStore(repo)
    fs.apply()
    fs.materialize()  # run 1
    items_file(data / "part-1.parquet", 2_000, 1_000, 10**6, hours_ago(1), seed=1)
    # The first run's Redis writes wait while Redis pauses writes (its client waits up to 300 s
    # for an answer). The DuckDB lock is not waited for at all (timeout 0): any wait is the run lock's.
    env = cli_env(
        FEATURESTORE_REDIS_URL=f"{redis_server.url}?socket_timeout=300", FEATURESTORE_LOCK_TIMEOUT="0"
    )
    lock = lock_path(fs.config.duckdb_path)
    redis_client.client_pause(600_000, all=False)
    try:
        first = start_cli("materialize", "--incremental", "--repo", str(repo), env=env)
        # Handshake: the first names its run in the lock once it is recorded, then blocks on Redis.
        assert wait_until(
            first, lambda _: lock.exists() and "materialization run 2" in lock.read_text(), timeout=300
        )
        holder = f"materialization run 2 (pid {first.pid})"

        skipped = start_cli("materialize", "--incremental", "--if-idle", "--repo", str(repo), env=env)
        code, out, err = finish(skipped)
        assert (code, out.strip(), err) == (0, f"skip: {holder} is in progress", "")

        second = start_cli("materialize", "--incremental", "--repo", str(repo), env=env)
        assert second.stderr is not None
        assert second.stderr.readline().strip() == f"waiting for {holder} to finish"
        assert first.poll() is None and second.poll() is None
    finally:
        redis_client.client_unpause()
    for process in (first, second):
        code, out, err = finish(process)
        assert code == 0, err
    rows = query(
        fs.config.duckdb_path,
        f"SELECT run_id, status, started_at, finished_at FROM {PROJECT}.materialization_runs ORDER BY run_id",
    )
    assert [(r[0], r[1]) for r in rows] == [(1, "succeeded"), (2, "succeeded"), (3, "succeeded")]
    assert rows[2][2] >= rows[1][3]  # the second started once the first had finished
    assert lock.read_text() == ""  # released: nobody is named as holding it

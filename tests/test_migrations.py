"""The store file's schema version: older files migrate (after a backup), newer ones are refused."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis

from featurestore import FeatureStore, migrations
from featurestore.errors import StoreVersionError
from featurestore.migrations import CURRENT_VERSION, VERSION_TABLE, Migration
from featurestore.storage import connect, connection, migrate, sandbox
from tests.support.cli import run_cli
from tests.support.repos import write_repo

ROOT = Path(__file__).resolve().parent.parent
# The last commit before the store recorded its schema version: its files are version 0.
OLD_COMMIT = "7905112896e5c52c360f7ad8687aa28024f4e73b"
FIXTURE = Path(__file__).parent / "fixtures" / "store_v0"
Step = Callable[[duckdb.DuckDBPyConnection], None]


def old_code(dest: Path) -> Path | None:
    """The package as of OLD_COMMIT, extracted under ``dest``; None without git or that commit."""
    if shutil.which("git") is None:
        return None
    have = subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{OLD_COMMIT}^{{commit}}"],
                          capture_output=True)
    if have.returncode != 0:  # a shallow clone, an exported tree
        return None
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", OLD_COMMIT, "featurestore"],
                             capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def build_old_store(tmp_path: Path) -> tuple[Path, bool]:
    """A store made by the old release: (its folder, whether it was moved from where it was built).

    Built here by the code of OLD_COMMIT when git has it (CI's clones do); else the committed
    output of the same script (tests/fixtures/store_v0), whose recorded file paths then point
    elsewhere.
    """
    out = tmp_path / "old"
    code = old_code(tmp_path / "old-code")
    if code is None:
        with tarfile.open(FIXTURE / "store_v0.tar.gz") as tar:
            tar.extractall(out, filter="data")
        return out, True
    env = {**os.environ, "PYTHONPATH": str(code)}
    done = subprocess.run(
        [sys.executable, str(FIXTURE / "build_store.py"), str(out), "--expect-code", str(code)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return out, False


def version_in(path: Path) -> int | None:
    """The version recorded in the file, read as any DuckDB client would (None: no record)."""
    with duckdb.connect(str(path), read_only=True) as con:
        tables = con.execute("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'").fetchall()
        if (VERSION_TABLE,) not in tables:
            return None
        row = con.execute(f"SELECT version FROM {VERSION_TABLE}").fetchone()
        return int(row[0]) if row else None


REGISTRY = ("CREATE TABLE test.registry_versions (version INTEGER PRIMARY KEY, content_hash VARCHAR, "
            "created_at TIMESTAMPTZ, author VARCHAR, summary VARCHAR)")


def write_v0_tables(con: duckdb.DuckDBPyConnection) -> None:
    """The smallest file the old release could have made: a registry and one table of its own."""
    con.execute("CREATE SCHEMA test")
    con.execute(REGISTRY)
    con.execute("CREATE TABLE test.online_epoch (epoch VARCHAR NOT NULL)")
    con.execute("INSERT INTO test.online_epoch VALUES ('e1')")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def data(table: pa.Table) -> pa.Table:
    """The rows alone: no manifest, no required flags (DuckDB sets them when reading Parquet)."""
    return table.cast(pa.schema([f.with_nullable(True) for f in table.schema]))


def test_a_store_made_by_the_previous_release_migrates_and_serves_the_same_training_sets(
    tmp_path: Path, redis_client: redis.Redis
) -> None:
    out, moved = build_old_store(tmp_path)
    repo, store_file = out / "repo", out / "repo" / ".featurestore" / "store.duckdb"
    old_training_set = data(pq.read_table(out / "training_set.parquet"))
    assert old_training_set.num_rows == 24
    assert version_in(store_file) is None  # the old code records none: version 0
    before = digest(store_file)

    # Readers of version 0 are compatible: read-only work goes on, and leaves the file as it was.
    store = FeatureStore(repo)
    assert [v.version for v in store.versions()] == [1]
    with store.get_training_set(str(repo / "entities.parquet"), "driver_model") as ts:
        assert data(ts.to_arrow()).equals(old_training_set)
    assert version_in(store_file) is None and digest(store_file) == before

    dry = run_cli("migrate", "--dry-run", "--repo", str(repo))
    assert dry.returncode == 0, dry.stderr
    assert "Would migrate" in dry.stdout and "from schema version 0 to 1" in dry.stdout
    assert version_in(store_file) is None and not list(store_file.parent.glob("*backup*"))

    done = run_cli("migrate", "--repo", str(repo))
    assert done.returncode == 0, done.stderr
    backup = store_file.with_name("store.duckdb.v0-backup")
    assert f"from schema version 0 to {CURRENT_VERSION}" in done.stdout and str(backup) in done.stdout
    assert digest(backup) == before  # the file as the old release left it
    assert version_in(store_file) == CURRENT_VERSION
    again = run_cli("migrate", "--repo", str(repo))
    assert again.returncode == 0 and "nothing to migrate" in again.stdout

    # The migrated store serves the same training set, fresh and as recorded.
    store = FeatureStore(repo)
    with store.get_training_set(str(repo / "entities.parquet"), "driver_model") as ts:
        assert data(ts.to_arrow()).equals(old_training_set)
    (record,) = store.training_sets()
    rebuilt = store.reproduce_training_set(record["id"], tmp_path / "rebuilt.parquet", force=moved)
    assert rebuilt.identical or moved  # moved: its recorded source paths are elsewhere now
    assert data(pq.read_table(rebuilt.path)).equals(old_training_set)
    # The runs the old release recorded are still listed...
    for run in ("ingest-1", "materialize-1"):
        graph = store.lineage(run)
        (node,) = [n for n in graph["nodes"] if n["id"] == graph["root"]]
        assert node["kind"] == "run" and node["status"] == "succeeded", node
    # ...and its writers work on the migrated file.
    store.ingest()
    store.materialize()
    with store.get_training_set(str(repo / "entities.parquet"), "driver_model") as ts:
        assert data(ts.to_arrow()).equals(old_training_set)
    (latest,) = store.get_online_features("driver_model", {"driver_id": [1001]}).to_dict()["conv_rate"]
    assert latest == pytest.approx(0.14)  # the last day's value


def test_a_writable_open_of_an_old_store_migrates_it_and_says_where_the_backup_is(
    tmp_path: Path, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    out, _ = build_old_store(tmp_path)
    store_file = out / "repo" / ".featurestore" / "store.duckdb"
    before = digest(store_file)
    with caplog.at_level(logging.WARNING, logger="featurestore.migrations"):
        assert FeatureStore(out / "repo").apply().version is None  # nothing to apply, but it writes
    backup = store_file.with_name("store.duckdb.v0-backup")
    (line,) = [r.getMessage() for r in caplog.records]
    assert "from schema version 0 to 1" in line and str(backup) in line
    assert digest(backup) == before and version_in(store_file) == CURRENT_VERSION


def test_a_new_store_records_the_current_version_at_its_first_writable_open(tmp_path: Path) -> None:
    path = tmp_path / "store.duckdb"
    duckdb.connect(str(path)).close()  # an empty file: read-only opens leave it so
    with connection(path, read_only=True):
        pass
    assert version_in(path) is None
    with connection(path):
        pass
    assert version_in(path) == CURRENT_VERSION
    assert not list(tmp_path.glob("*backup*"))  # nothing to keep of an empty file


def set_version(path: Path, version: int) -> None:
    with duckdb.connect(str(path)) as con:
        con.execute(f"UPDATE {VERSION_TABLE} SET version = ?, written_by = '9.9.9'", [version])


def test_a_store_of_a_newer_version_is_refused_in_both_modes(tmp_path: Path, tiny_data: Path) -> None:
    repo = write_repo(tmp_path / "repo", {}, tiny_data)
    path = repo / ".featurestore" / "store.duckdb"
    connect(path).close()
    set_version(path, CURRENT_VERSION + 1)
    before = digest(path)
    for read_only in (False, True):
        with pytest.raises(StoreVersionError) as e:
            connect(path, read_only=read_only)
        assert f"schema version {CURRENT_VERSION + 1} (written by featurestore 9.9.9)" in e.value.message
        assert f"up to {CURRENT_VERSION}" in e.value.message and "upgrade featurestore" in e.value.message
    with pytest.raises(StoreVersionError):
        with sandbox(path):
            pass
    for argv in (["versions"], ["migrate"], ["migrate", "--dry-run"]):
        result = run_cli(*argv, "--repo", str(repo))
        assert result.returncode == 1 and result.stdout == "", result
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith("error: the store") and "newer than this featurestore" in line
    assert digest(path) == before and not list(path.parent.glob("*backup*"))


@pytest.fixture
def v2(monkeypatch: pytest.MonkeyPatch) -> Callable[[Step, bool], None]:
    """Pretend this code is at version 2: ``v2(apply, readers_compatible)``."""
    released = migrations.MIGRATIONS

    def install(apply: Step, readers_compatible: bool) -> None:
        step = Migration(2, "add a column", readers_compatible, apply)
        monkeypatch.setattr(migrations, "MIGRATIONS", (*released, step))
        monkeypatch.setattr(migrations, "CURRENT_VERSION", 2)

    return install


def v1_store(tmp_path: Path) -> Path:
    path = tmp_path / "store.duckdb"
    with connection(path) as con:
        con.execute("CREATE SCHEMA test")
        con.execute("CREATE TABLE test.online_epoch (epoch VARCHAR NOT NULL)")
        con.execute("INSERT INTO test.online_epoch VALUES ('e1')")
    return path


def add_column(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("ALTER TABLE test.online_epoch ADD COLUMN since TIMESTAMPTZ")


def test_a_read_only_open_of_an_older_store_reads_it_only_if_the_migrations_allow(
    tmp_path: Path, v2: Callable[..., None]
) -> None:
    path = v1_store(tmp_path)
    v2(add_column, True)
    with connection(path, read_only=True) as con:  # compatible: read as it is
        assert con.execute("SELECT epoch FROM test.online_epoch").fetchall() == [("e1",)]
    assert version_in(path) == 1
    v2(add_column, False)
    for opened in (lambda: connect(path, read_only=True), lambda: sandbox(path).__enter__()):
        with pytest.raises(StoreVersionError) as e:
            opened()
        assert "schema version 1" in e.value.message and "reads version 2" in e.value.message
        assert "run 'featurestore migrate --repo DIR'" in e.value.message
    assert version_in(path) == 1
    with connection(path) as con:  # a writable open migrates
        assert [c[0] for c in con.execute("DESCRIBE test.online_epoch").fetchall()] == ["epoch", "since"]
    assert version_in(path) == 2
    assert (tmp_path / "store.duckdb.v1-backup").is_file()
    with connection(path, read_only=True) as con:
        assert con.execute("SELECT epoch FROM test.online_epoch").fetchall() == [("e1",)]


@pytest.mark.parametrize("failure", ["SELECT * FROM test.no_such_table", "a bug in the migration"])
def test_a_failed_migration_leaves_the_file_as_it_was(
    tmp_path: Path, v2: Callable[..., None], failure: str
) -> None:
    path = v1_store(tmp_path)

    def half_done(con: duckdb.DuckDBPyConnection) -> None:
        add_column(con)
        con.execute("INSERT INTO test.online_epoch VALUES ('e2', now())")
        if failure.startswith("SELECT"):
            con.execute(failure)  # DuckDB's error: said in a StoreVersionError
        raise RuntimeError(failure)  # ours: raised as it is

    v2(half_done, True)
    before = digest(path)
    with pytest.raises((StoreVersionError, RuntimeError)) as e:
        connect(path)
    if isinstance(e.value, StoreVersionError):
        message = e.value.message
        assert "cannot migrate the store" in message and "from schema version 1 to 2" in message
        assert "the file is unchanged" in message and "no_such_table" in message
    else:
        assert str(e.value) == failure
    assert digest(path) == before
    assert not list(tmp_path.glob("*backup*"))  # the file is as it was: no copy to keep
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT * FROM test.online_epoch").fetchall() == [("e1",)]
    assert version_in(path) == 1


def test_a_duckdb_file_that_is_not_a_store_is_refused_and_left_alone(tmp_path: Path, tiny_data: Path) -> None:
    repo = write_repo(tmp_path / "repo", {}, tiny_data)
    path = tmp_path / "analytics.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE users (id INTEGER, name VARCHAR)")
        con.execute("CREATE SCHEMA test")
        con.execute("CREATE TABLE test.registry_versions (version INTEGER)")  # ours in name only
    (repo / "featurestore.toml").write_text(f'project = "test"\n[offline]\npath = "{path}"\n')
    before = digest(path)
    with pytest.raises(StoreVersionError) as e:
        connect(path)
    assert "not a featurestore store" in e.value.message
    assert "table test.registry_versions lacks column(s) content_hash, created_at" in e.value.message
    result = run_cli("migrate", "--repo", str(repo))
    assert result.returncode == 1 and result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: cannot migrate the store {path}") and "not a featurestore store" in line
    assert digest(path) == before and not list(tmp_path.glob("*backup*"))


def test_an_earlier_backup_is_never_replaced(tmp_path: Path) -> None:
    path = tmp_path / "store.duckdb"
    with duckdb.connect(str(path)) as con:
        write_v0_tables(con)
    earlier = tmp_path / "store.duckdb.v0-backup"
    earlier.write_bytes(b"an earlier backup")
    result = migrate(path)
    assert result is not None and result.backup == tmp_path / "store.duckdb.v0-backup-2"
    assert earlier.read_bytes() == b"an earlier backup" and result.backup.is_file()
    assert migrate(tmp_path / "none.duckdb") is None  # no store yet: nothing to do


def test_the_backup_holds_what_the_write_ahead_log_had_not_yet_put_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "store.duckdb"
    con = duckdb.connect(str(path))
    con.execute("PRAGMA disable_checkpoint_on_shutdown")  # as if the process had been killed
    con.execute("SET wal_autocheckpoint = '1TB'")
    write_v0_tables(con)
    con.close()
    assert (tmp_path / "store.duckdb.wal").is_file()
    result = migrate(path)
    assert result is not None and result.backup == tmp_path / "store.duckdb.v0-backup"
    assert (tmp_path / "store.duckdb.v0-backup.wal").is_file()
    with duckdb.connect(str(result.backup), read_only=True) as backup:
        assert backup.execute("SELECT epoch FROM test.online_epoch").fetchall() == [("e1",)]


def test_a_duckdb_file_without_a_registry_is_no_store_and_one_with_a_table_of_the_users_is(
    tmp_path: Path,
) -> None:
    other = tmp_path / "other.duckdb"
    with duckdb.connect(str(other)) as con:
        con.execute("CREATE TABLE users (id INTEGER)")
        con.execute("CREATE VIEW adults AS SELECT * FROM users")
    with pytest.raises(StoreVersionError) as e:
        connect(other)
    assert "it has no registry (table registry_versions), only tables featurestore does not make: " \
        "main.adults, main.users" in e.value.message
    assert version_in(other) is None
    store = tmp_path / "store.duckdb"
    with duckdb.connect(str(store)) as con:  # a store of the old release, and a table of its user
        con.execute("CREATE SCHEMA test")
        con.execute(REGISTRY)
        con.execute("CREATE TABLE test.offline_trips (id BIGINT, __event_ts TIMESTAMPTZ, __file_id INTEGER)")
        con.execute("CREATE TABLE main.my_entities (driver_id BIGINT)")
    with connection(store) as con:
        assert con.execute("SELECT count(*) FROM main.my_entities").fetchall() == [(0,)]
    assert version_in(store) == CURRENT_VERSION

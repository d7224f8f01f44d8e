"""The demo store the console's tests browse: the example repo with its runs, a second
registry version, a training set, a refused ingestion and a view with a TTL of seconds."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis
from selenium import webdriver

from featurestore import FeatureStore
from featurestore.config import load_config
from featurestore.errors import StoreLockedError, ViewsFailedError
from featurestore.storage import connection
from tests.support.browser import submit, wait_for
from tests.support.cli import FEATURESTORE
from tests.support.repos import copy_example_repo, edit

# Set by the conftest's report hook: whether a test's call failed (for its screenshot).
FAILED = pytest.StashKey[bool]()


@dataclass(frozen=True)
class Demo:
    """The demo store and the console serving it."""

    repo: Path
    training_set: str
    url: str  # the console, which asks for a token
    redis_url: str


def log_in(driver: webdriver.Chrome, url: str, token: str) -> None:
    driver.get(f"{url}/login")
    wait_for(driver, "#token").send_keys(token)
    submit(driver, "#login")


TOKEN = "ui-test-token-0123456789abcdef"  # read scope
PUSH_ONLY = "ui-push-only-token-0123456789"
HEARTBEAT_TTL = timedelta(seconds=6)
# Shown as text on the view's page, never run: descriptions come from users' code.
SCRIPT_DESCRIPTION = "Hourly stats <script>window.pwned = 1</script><b>not bold</b>"

HEARTBEAT = f'''
"""A view refreshed by the freshness test, with a TTL of seconds."""
from datetime import timedelta
from drivers import driver
from featurestore import FeatureView, Field, Float64, ParquetSource

heartbeat = FeatureView(
    "heartbeat",
    entities=[driver],
    source=ParquetSource("heartbeat_source", path="data/heartbeat", timestamp_field="event_timestamp"),
    ttl=timedelta(seconds={HEARTBEAT_TTL.total_seconds():g}),
    schema=[Field("beat", Float64)],
    description="Turns stale seconds after each materialization",
)
'''


def write_heartbeat(repo: Path, at: datetime) -> Path:
    """One more heartbeat row for driver 1001, at ``at``."""
    folder = repo / "data" / "heartbeat"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"beat-{len(list(folder.iterdir())) + 1}.parquet"
    pq.write_table(
        pa.table(
            {
                "driver_id": pa.array([1001], pa.int64()),
                "event_timestamp": pa.array([at], pa.timestamp("us", tz="UTC")),
                "beat": pa.array([1.0]),
            }
        ),
        path,
    )
    return path


def build(dest: Path, data: Path, redis_url: str) -> tuple[Path, str]:
    """The demo repo, and the id of its training set."""
    repo = copy_example_repo(dest, data, redis_url)
    (repo / "heartbeat.py").write_text(HEARTBEAT)
    write_heartbeat(repo, datetime.now(UTC) - timedelta(days=1))
    fs = FeatureStore(repo)
    fs.apply()
    # Version 2: a description with markup, and a feature removed from an online view (breaking).
    edit(repo / "drivers.py", '"Hourly driver activity and quality statistics"', repr(SCRIPT_DESCRIPTION))
    edit(repo / "drivers.py", '        Field("is_active", Bool),\n', "")
    fs.apply(allow_breaking=True)
    fs.materialize()
    (repo / "out").mkdir()
    with fs.get_training_set(repo / "data" / "entity_rows.parquet", "trip_model") as ts:
        ts.to_parquet(repo / "out" / "trip_model_training.parquet")
        training_set = str(ts.manifest["id"])
    # A file whose rates are out of range: validation refuses driver_stats' ingestion.
    bad = pq.read_table(next((repo / "data" / "driver_stats").rglob("*.parquet"))).slice(0, 3)
    bad = bad.set_column(
        bad.schema.get_field_index("conv_rate"), "conv_rate", pa.array([5.0, 6.0, 7.0], pa.float32())
    )
    pq.write_table(bad, repo / "data" / "driver_stats" / "zz_bad_rates.parquet")
    try:
        fs.materialize()
    except ViewsFailedError:
        pass
    else:
        raise AssertionError("the bad file was not refused")
    fs.close()
    return repo, training_set


# How long a materialization may take to record its run on a loaded machine: a bound, not a
# measure (a test goes on as soon as the run is recorded).
RECORD_WAIT = 120.0


@contextmanager
def held_materialization(demo: Demo, *views: str) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """A ``featurestore materialize`` process held at a known point: it has recorded its run
    (status running) and let go of the store file, and waits at its first Redis write, which
    Redis holds back (``CLIENT PAUSE ... WRITE``). Yields the process and its run id; on exit
    Redis takes writes again and the process, unless killed, goes on."""
    online = redis.Redis.from_url(demo.redis_url)
    online.execute_command("CLIENT", "PAUSE", int(RECORD_WAIT * 1000), "WRITE")
    args = [FEATURESTORE, "materialize", "--repo", str(demo.repo)]
    for view in views:
        args += ["--views", view]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + RECORD_WAIT
        while (run_id := _running_run(demo, process.pid)) is None:
            assert process.poll() is None, f"the materialization ended: {process.stderr.read()!r}"  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the materialization recorded no run"
            time.sleep(0.05)
        yield process, run_id
    except BaseException:
        process.kill()
        raise
    finally:
        online.execute_command("CLIENT", "UNPAUSE")
        online.close()


def _running_run(demo: Demo, pid: int) -> int | None:
    """The materialization run process ``pid`` recorded as running, None if none (yet)."""
    config = load_config(demo.repo)
    try:
        with connection(config.duckdb_path, read_only=True, lock_timeout=0.2) as con:
            row = con.execute(
                f"SELECT run_id FROM {config.project}.materialization_runs "
                "WHERE status = 'running' AND pid = ?",
                [pid],
            ).fetchone()
    except StoreLockedError:  # the run is writing its record: ask again
        return None
    return None if row is None else int(row[0])

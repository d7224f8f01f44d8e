"""Helpers for the reliability tests: repos big enough to interrupt, the reference states
computed from the Parquet files alone, and real processes killed at chosen moments."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import redis

from featurestore.online.codec import header_of
from featurestore.storage import connection
from tests.support.cli import FEATURESTORE
from tests.support.redis import RedisServer, free_port
from tests.support.repos import write_repo

PROJECT = "rel"
DEFS = """
from datetime import timedelta
from featurestore import Entity, FeatureService, FeatureView, Field, Float64, Int64, ParquetSource

item = Entity("item", join_keys=["id"])
items = FeatureView(
    "items", entities=[item], ttl=timedelta(days=30),
    source=ParquetSource("items_src", path="data/items", timestamp_field="ts"),
    schema=[Field("v", Int64), Field("x", Float64)],
)
item_model = FeatureService("item_model", features=[items])
"""
TZ = pa.timestamp("us", tz="UTC")


def items_repo(repo: Path, defs: str = DEFS) -> Path:
    """The items repo (``defs``), its data/items folder still empty."""
    (repo / "data" / "items").mkdir(parents=True, exist_ok=True)
    return write_repo(repo, {"defs.py": defs}, project=PROJECT)


def items_file(
    path: Path, rows: int, entities: int, first_v: int, newest: datetime, seed: int, span_hours: float = 24
) -> Path:
    """``rows`` rows over ``entities`` ids with event times in the ``span_hours`` before
    ``newest``; ``v`` counts up from ``first_v``, so every row of a test is unique by ``v``."""
    rng = np.random.default_rng(seed)
    end_us = int(newest.timestamp() * 1_000_000)
    ts = end_us - rng.integers(0, int(span_hours * 3600 * 1_000_000), rows)
    table = pa.table(
        {
            "id": pa.array(rng.integers(0, entities, rows), pa.int64()),
            "ts": pa.array(ts, pa.int64()).cast(TZ),
            "v": pa.array(np.arange(first_v, first_v + rows), pa.int64()),
            "x": pa.array(rng.random(rows)),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def hours_ago(hours: float) -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(hours=hours)


# -- reference states ---------------------------------------------------------------------------


def parquet_rows(files: Sequence[Path]) -> pa.Table:
    """The rows of ``files`` as the view's table must hold them: (id, ts, v, x) sorted by v."""
    if not files:
        return pa.table(
            {
                "id": pa.array([], pa.int64()),
                "ts": pa.array([], TZ),
                "v": pa.array([], pa.int64()),
                "x": pa.array([], pa.float64()),
            }
        )
    table = pa.concat_tables(pq.read_table(f, columns=["id", "ts", "v", "x"]) for f in files)
    return table.sort_by("v")


def ingested_rows(db: Path, order: str = "v") -> pa.Table:
    """The items table in the DuckDB file, in the reference's shape (sorted by ``order``)."""
    with connection(db, read_only=True) as con:
        sql = f"SELECT id, __event_ts AS ts, v, x FROM {PROJECT}.offline_items ORDER BY {order}"
        table = con.sql(sql).to_arrow_table()
    return table.cast(pa.schema([("id", pa.int64()), ("ts", TZ), ("v", pa.int64()), ("x", pa.float64())]))


def ingested_files(db: Path) -> list[str]:
    with connection(db, read_only=True) as con:
        rows = con.execute(f"SELECT path FROM {PROJECT}.offline_files ORDER BY path").fetchall()
    return [Path(r[0]).name for r in rows]


def query(db: Path, sql: str) -> list[tuple[object, ...]]:
    with connection(db, read_only=True) as con:
        return con.execute(sql).fetchall()


# -- processes -----------------------------------------------------------------------------------


def cli_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "COLUMNS": "200", **extra}
    env.pop("FEATURESTORE_DEBUG", None)
    return env


def start_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [FEATURESTORE, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env or cli_env(),
    )


def has_open(pid: int, path: Path) -> bool:
    """Whether process ``pid`` holds ``path`` open (it is inside a DuckDB connection)."""
    target = str(path.resolve())
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except (FileNotFoundError, ProcessLookupError):
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                return True
        except OSError:
            continue
    return False


def wait_until(process: subprocess.Popen[str], ready: Callable[[int], bool], timeout: float = 60) -> bool:
    """Poll until ``ready(pid)``: True, or False if the process ended first."""
    deadline = time.monotonic() + timeout
    while not ready(process.pid):
        if process.poll() is not None:
            return False
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("the process never got to the point looked for")
        time.sleep(0.002)
    return True


def kill_after(
    process: subprocess.Popen[str], ready: Callable[[int], bool], delay: float, timeout: float = 60
) -> int:
    """SIGKILL ``process`` ``delay`` seconds after ``ready(pid)`` first holds.

    Returns its exit code: -9 when killed, else what it exited with first (finished early)."""
    if not wait_until(process, ready, timeout):
        process.communicate(timeout=30)
        return process.returncode
    time.sleep(delay)
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    return process.returncode


def opened(db: Path) -> Callable[[int], bool]:
    """Ready when the process has the DuckDB file open (it is inside a connection)."""
    return lambda pid: has_open(pid, db)


def writing(db: Path) -> Callable[[int], bool]:
    """Ready when the process has committed a first write to ``db``: DuckDB's write-ahead log
    appears (closing a connection checkpoints and removes it)."""
    wal = db.with_name(db.name + ".wal")
    return lambda pid: wal.exists() and has_open(pid, db)



def grown(db: Path, size: int) -> Callable[[int], bool]:
    """Ready when ``db`` is larger than ``size`` bytes while the process holds it: it has
    written blocks (rows not necessarily committed)."""
    return lambda pid: _size(db) > size and has_open(pid, db)


def logged(db: Path, size: int) -> Callable[[int], bool]:
    """Ready when DuckDB's write-ahead log is past ``size`` bytes: a big transaction committed
    and not yet checkpointed into the file."""
    wal = db.with_name(db.name + ".wal")
    return lambda pid: _size(wal) > size and has_open(pid, db)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0

class OpenWatch:
    """Counts the times any process opens ``path`` from now on (Linux inotify): a process that
    tries a file another one has locked shows up here, though it closes it again at once."""

    _IN_OPEN = 0x20

    def __init__(self, path: Path) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self._fd < 0 or self._libc.inotify_add_watch(self._fd, os.fsencode(path), self._IN_OPEN) < 0:
            raise OSError(ctypes.get_errno(), f"cannot watch {path}")
        self._opens = 0

    def opens(self) -> int:
        while True:
            try:
                events = os.read(self._fd, 4096)
            except BlockingIOError:
                return self._opens
            self._opens += len(events) // 16  # struct inotify_event without a name: 16 bytes

    def close(self) -> None:
        os.close(self._fd)

def finish(process: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def one_error_line(err: str) -> str:
    """The single ``error: ...`` line a failed command prints (and nothing else)."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


# -- Redis ---------------------------------------------------------------------------------------


class DurableRedis(RedisServer):
    """A redis-server that logs every write to its append-only file before answering
    (``appendfsync always``), so a SIGKILLed server restarts with every write it acknowledged."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(free_port(), workdir, "--appendonly", "yes", "--appendfsync", "always")

    def start(self) -> DurableRedis:  # type: ignore[override]  # returns itself, for chaining
        self.workdir.mkdir(parents=True, exist_ok=True)
        super().start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with redis.Redis(port=self.port, socket_timeout=1) as client:
                    if client.ping():  # refused while it loads its file: LOADING
                        return self
            except redis.RedisError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
            self.process = None

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis(port=self.port, db=db)


def script_calls(client: redis.Redis) -> int:
    """How many EVALSHA calls the server has answered (materialization's writes)."""
    stats = client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


def materializing(server: DurableRedis) -> Callable[[int], bool]:
    """Ready once a materialization's first writes reached Redis."""
    client = server.client()
    start = script_calls(client)
    return lambda pid: script_calls(client) > start


def event_times(dump: dict[bytes, tuple[bytes, int]]) -> dict[bytes, int]:
    """Each key's event time (microseconds), from the value header."""
    return {k: header_of(v)[0] for k, (v, _) in dump.items()}


# The CLI's own entry point, imported first, then run on a newline on stdin: a process that
# tries the store within milliseconds of being told, not after seconds of imports.
_ARMED = """
import sys
from featurestore.cli import main
sys.stdin.readline()
sys.argv = ["featurestore", *sys.argv[1:]]
main()
"""


def armed_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """``featurestore ARGS`` ready to go; ``fire`` starts it."""
    return subprocess.Popen(
        [sys.executable, "-c", _ARMED, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env or cli_env(),
    )


def fire(*processes: subprocess.Popen[str]) -> None:
    for p in processes:
        assert p.stdin is not None
        p.stdin.write("\n")
        p.stdin.close()
        p.stdin = None  # communicate() would flush it again

"""A "running" materialization run is only recorded interrupted when its process is gone, and a
pid now held by another process (pids are reused) does not keep a dead run "running"."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime

import duckdb
import pytest

from featurestore.runs.materialization import MaterializationRunState, process_identity


@pytest.fixture
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect()
    MaterializationRunState(connection, "p").ensure_table()
    yield connection
    connection.close()


@pytest.fixture
def other_process() -> Iterator[subprocess.Popen[bytes]]:
    """A live process that did not start any run (the one a reused pid now belongs to)."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process
    process.kill()
    process.wait(10)


def _running(con: duckdb.DuckDBPyConnection, run_id: int, pid: int, process: str | None) -> None:
    con.execute(
        "INSERT INTO p.materialization_runs (run_id, registry_version, views, end_ts, incremental, status, "
        "started_at, pid, host, process) VALUES (?, 1, ['v'], ?, false, 'running', ?, ?, ?, ?)",
        [run_id, datetime.now(UTC), datetime.now(UTC), pid, socket.gethostname(), process],
    )


def _statuses(con: duckdb.DuckDBPyConnection) -> dict[int, str]:
    return dict(con.execute("SELECT run_id, status FROM p.materialization_runs").fetchall())


def test_identity_names_one_process(other_process: subprocess.Popen[bytes]) -> None:
    mine, other = process_identity(os.getpid()), process_identity(other_process.pid)
    if mine is None:
        pytest.skip("no /proc here: pids alone decide")
    assert other is not None and mine != other
    assert mine == process_identity(os.getpid())  # stable for one process
    # Independent reference: field 22 of /proc/PID/stat is the start time in clock ticks.
    with open(f"/proc/{other_process.pid}/stat") as f:
        assert other.endswith(":" + f.read().rsplit(")", 1)[1].split()[19])


def test_a_reused_pid_does_not_keep_a_dead_run_running(
    con: duckdb.DuckDBPyConnection, other_process: subprocess.Popen[bytes]
) -> None:
    if process_identity(other_process.pid) is None:
        pytest.skip("no /proc here: pids alone decide")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(10)
    ours = process_identity(os.getpid())
    _running(con, 1, other_process.pid, ours)  # the run's process ended; its pid went to another
    _running(con, 2, other_process.pid, process_identity(other_process.pid))  # still its own
    _running(con, 3, os.getpid(), ours)
    _running(con, 4, gone.pid, None)  # recorded before identities: the pid decides
    _running(con, 5, other_process.pid, None)
    assert sorted(MaterializationRunState(con, "p").mark_dead_runs()) == [1, 4]
    assert _statuses(con) == {1: "interrupted", 2: "running", 3: "running", 4: "interrupted", 5: "running"}


def test_start_run_records_the_identity_of_its_process(con: duckdb.DuckDBPyConnection) -> None:
    run_id, _ = MaterializationRunState(con, "p").start(1, ["v"], None, datetime.now(UTC), False)
    row = con.execute("SELECT pid, process FROM p.materialization_runs WHERE run_id = ?", [run_id]).fetchone()
    assert row == (os.getpid(), process_identity(os.getpid()))
    assert MaterializationRunState(con, "p").mark_dead_runs() == []  # its own process: alive

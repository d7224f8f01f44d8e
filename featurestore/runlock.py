"""One ingestion or materialization at a time per store, the next one waiting for as long as it takes.

DuckDB's own lock is held only in phases (a materialization reads the file while it writes
Redis), and a second writer gives up after a bounded wait: two long runs would fail "busy".
A run therefore first takes an exclusive ``flock`` on ``<store file>.run.lock``, which the kernel
releases when the process ends however it ends (no stale lock after a kill). The holder
writes who it is into the file, so a waiter can say whom it waits for, and a run started
with ``if_idle`` can skip instead of waiting.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from featurestore.errors import RunInProgressError


class RunLock:
    """The held lock: ``describe`` tells waiters what the holder is doing now."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def describe(self, what: str) -> None:
        text = f"{what} (pid {os.getpid()})".encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, text, 0)


@contextmanager
def exclusive_run(
    duckdb_path: Path, what: str, if_idle: bool = False, on_wait: Callable[[str], None] | None = None
) -> Iterator[RunLock]:
    """Hold the store's run lock for the block, waiting for the current holder if there is one.

    ``if_idle``: raise RunInProgressError (naming the holder) instead of waiting.
    ``on_wait(line)`` is told once whom this run waits for.
    """
    duckdb_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path(duckdb_path), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            if if_idle:
                raise RunInProgressError(f"skip: {holder} is in progress") from None
            if on_wait is not None:
                on_wait(f"waiting for {holder} to finish")
            fcntl.flock(fd, fcntl.LOCK_EX)
        lock = RunLock(fd)
        lock.describe(what)
        try:
            yield lock
        finally:
            os.ftruncate(fd, 0)  # no stale description for the next waiter to read
    finally:
        os.close(fd)  # releases the lock


def lock_path(duckdb_path: Path) -> Path:
    """The run lock of a store file: beside it, so stores sharing a folder do not share it."""
    return duckdb_path.with_name(duckdb_path.name + ".run.lock")


def _holder(fd: int) -> str:
    text = os.pread(fd, 500, 0).decode(errors="replace").strip()
    return text or "another run"

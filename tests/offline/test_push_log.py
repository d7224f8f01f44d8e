"""The push log: each batch one complete Parquet file or none, in push order, never clobbered."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from featurestore.offline import push_log


def batch(i: int, n: int = 2000) -> pa.Table:
    return pa.table({"id": pa.array([i] * n, pa.int64()), "v": pa.array(range(n), pa.int64())})


def test_files_are_listed_in_push_order_even_within_a_microsecond(tmp_path: Path) -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    paths = [push_log.append(tmp_path, "v", batch(i, 3), now=at) for i in range(5)]
    listed = push_log.pushed_files(tmp_path, "v")
    assert [f.path for f in listed] == [str(p.resolve()) for p in paths]
    assert [pq.read_table(f.path).column("id")[0].as_py() for f in listed] == list(range(5))
    assert push_log.pushed_files(tmp_path, "other") == []


def test_concurrent_pushes_never_clobber_and_readers_only_see_complete_files(tmp_path: Path) -> None:
    """Writers in threads; a reader lists and reads every listed file in a loop meanwhile."""
    writers, per_writer = 4, 15
    errors: list[BaseException] = []
    done = threading.Event()
    reads = 0

    def write(w: int) -> None:
        try:
            for i in range(per_writer):
                push_log.append(tmp_path, "v", batch(w * 100 + i))
        except BaseException as e:  # reported below
            errors.append(e)

    def read() -> None:
        nonlocal reads
        try:
            while not done.is_set():
                for f in push_log.pushed_files(tmp_path, "v"):
                    assert pq.read_table(f.path).num_rows == 2000  # whole, never partial
                    reads += 1
        except BaseException as e:
            errors.append(e)

    reader = threading.Thread(target=read)
    reader.start()
    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    reader.join()
    assert errors == []
    files = push_log.pushed_files(tmp_path, "v")
    assert len(files) == writers * per_writer
    ids = sorted(pq.read_table(f.path).column("id")[0].as_py() for f in files)
    assert ids == sorted(w * 100 + i for w in range(writers) for i in range(per_writer))
    assert [p.name for p in push_log.push_folder(tmp_path, "v").iterdir() if p.name.startswith(".")] == []
    assert reads > 0

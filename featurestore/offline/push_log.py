"""The push log: rows pushed to a view, one Parquet file per batch under the store's folder.

``<store_dir>/push/<view>/<UTC time>-<random>.parquet``. A file is written to a hidden
temporary name in the same folder, fsynced, renamed into place and the folder fsynced, so a
crash leaves the whole file or none of it, and a reader never lists a partial one. Names sort
in push order (time first), and a random part keeps concurrent pushes apart: no lock is
taken, so pushes go on while an ingestion or materialization runs.

The view's ingestion reads these files as part of its source (``offline/plan.py``), after the
source's own files: they are validated, recorded and snapshotted like any source file.
"""

from __future__ import annotations

import os
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from featurestore.source_files import SourceFile

PUSH_DIR = "push"
_TEMP_PREFIX = "."
# Names carry microseconds; pushes of one process within the same microsecond are spaced
# apart, so their files sort in the order they were pushed (the tie-breaker offline).
_clock = threading.Lock()
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_last_us = 0


def push_folder(store_dir: Path, view: str) -> Path:
    """Where the pushed files of ``view`` live."""
    return store_dir / PUSH_DIR / view


def pushed_files(store_dir: Path, view: str) -> list[SourceFile]:
    """The view's complete pushed files, in push order (temporary files are never listed)."""
    folder = push_folder(store_dir, view)
    if not folder.is_dir():
        return []
    files = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(_TEMP_PREFIX) or path.suffix != ".parquet":
            continue
        try:
            stat = path.stat()
        except FileNotFoundError:  # removed by hand meanwhile
            continue
        files.append(SourceFile(str(path.resolve()), stat.st_size, stat.st_mtime))
    return files


def append(store_dir: Path, view: str, table: pa.Table, now: datetime | None = None) -> Path:
    """Write ``table`` as a new pushed file of ``view``, atomically and durably; its path."""
    folder = push_folder(store_dir, view)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = _stamp(now or datetime.now(UTC))
    name = f"{stamp}-{uuid.uuid4().hex[:16]}.parquet"
    final = folder / name
    temp = folder / f"{_TEMP_PREFIX}{name}.tmp"
    try:
        with open(temp, "wb") as out:
            pq.write_table(table, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, final)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_dir(folder)
    return final


def _stamp(now: datetime) -> str:
    global _last_us
    with _clock:
        _last_us = max((now - _EPOCH) // _US, _last_us + 1)
        us = _last_us
    return (_EPOCH + us * _US).strftime("%Y%m%dT%H%M%S%fZ")


def _fsync_dir(folder: Path) -> None:
    """Makes the rename durable: without it a crash can lose the directory entry."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

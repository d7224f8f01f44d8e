"""A log of served requests (every one, or a sample), written to Parquet off the request path.

A request is logged with probability ``sample`` (1.0, mode "complete": every request); a
logged one is handed as it is (the entity columns and the lookup result, no copy, no
conversion) to a bounded queue, and a background thread turns queued requests into rows and
writes them in files. Serving never waits for the log: when the queue holds ``queue_requests``
requests or ``queue_values`` feature values (entities x features, so one huge request cannot
fill memory), a request is dropped and counted (``on_dropped``; the next file's metadata
says how many were dropped before it). "Complete" therefore means every request the
server could log without waiting; the drop count says how complete. ``close`` (graceful
shutdown) writes what is queued.

One row per (request, entity, feature), so requests for different features share one
schema; ``featurestore skew`` and ``FeatureLog`` (training sets) read these files. Values are
JSON text (``value_json``) so every dtype fits one column and compares exactly: floats
round-trip, bytes are base64, timestamps are microseconds since the epoch. Each row also
holds the run that wrote the served value (``run_id``), the caller's request id when it sent
one (``x-request-id``), else a generated one, and the entity's request data, if any.
On-demand features are logged as served, computed from the looked-up values and the request
data (status PRESENT or NULL_VALUE, no event time, no run), beside the looked-up features
(their inputs included); files say so with ``META_VERSION`` 2.

Files rotate at ``file_rows`` rows or ``flush_seconds`` seconds; with ``max_bytes`` the
oldest ``*.parquet`` files in the folder (any process's) are deleted after each write until
the folder holds at most ``max_bytes`` (``on_deleted`` counts them).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq

from featurestore.config import RequestLogLimits
from featurestore.offline.request_log_format import (
    EPOCH,
    FORMAT_VERSION,
    META_DROPPED,
    META_MODE,
    META_SAMPLE,
    META_VERSION,
    SCHEMA,
    json_column,
    value_json,
)
from featurestore.online.lookup import LookupPlan, OnlineResult, Status

log = logging.getLogger("featurestore.serving")

_STATUS = {int(s): s.name for s in Status}
MAX_REQUEST_ID = 128
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=@-]+")


def request_id_from(value: str | bytes | None) -> str | None:
    """A caller's request id (``x-request-id``) as the log keeps it: at most ``MAX_REQUEST_ID``
    characters of letters, digits and ``._:/+=@-``; None (the log generates one) otherwise."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not value or len(value) > MAX_REQUEST_ID or not _REQUEST_ID.fullmatch(value):
        return None
    return value


class _Item(NamedTuple):
    transport: str
    now: float
    entities: dict[str, list[Any]]
    result: OnlineResult | Callable[[], OnlineResult]  # or how to decode it, off the request path
    runs: Callable[[], dict[str, list[int | None]]] | None  # run ids when ``result`` lacks them
    request_id: str | None
    request_data: dict[str, list[Any]] | None
    computed: OnlineResult | None  # the answer with its on-demand features, if any were computed
    values: int  # entities x features: what it holds of the queue's ``queue_values``


class RequestLog:
    """Log requests into a bounded queue; a thread writes them as Parquet files under ``directory``."""

    def __init__(
        self,
        directory: Path,
        sample: float,
        queue_size: int = 1000,
        batch_rows: int = 100_000,
        flush_seconds: float = 10.0,
        max_bytes: int | None = None,
        queue_values: int = 1_000_000,
    ) -> None:
        self.directory = directory
        self.sample = sample
        self.batch_rows = batch_rows
        self.flush_seconds = flush_seconds
        self.max_bytes = max_bytes
        self.queue_values = queue_values
        self.on_dropped: Callable[[], None] = lambda: None
        self.on_written: Callable[[int], None] = lambda n: None
        self.on_deleted: Callable[[int], None] = lambda n: None  # files deleted to stay under max_bytes
        self.on_lost: Callable[[int], None] = lambda n: None  # rows a failed write lost
        directory.mkdir(parents=True, exist_ok=True)
        self._queue: queue.Queue[_Item | None] = queue.Queue(queue_size)
        self._lock = threading.Lock()  # the two counters below: the request path and the writer
        self._queued_values = 0
        self._dropped = 0  # since the last file written
        self._seq = 0
        self._files = 0
        self._prefix = f"{os.getpid()}-{int(time.time() * 1000)}"
        self._thread = threading.Thread(target=self._run, name="featurestore-request-log", daemon=True)
        self._thread.start()

    @classmethod
    def from_limits(cls, directory: Path, sample: float, limits: RequestLogLimits) -> RequestLog:
        """A log bounded as the config's [request_log] says."""
        return cls(
            directory,
            sample,
            queue_size=limits.queue_requests,
            batch_rows=limits.file_rows,
            flush_seconds=limits.flush_seconds,
            max_bytes=limits.max_bytes,
            queue_values=limits.queue_values,
        )

    @property
    def mode(self) -> str:
        """"complete" (every request is offered to the queue) or "sampled"."""
        return "complete" if self.sample >= 1.0 else "sampled"

    def sampled(self) -> bool:
        """Whether this request is one of the sample."""
        return self.sample >= 1.0 or random.random() < self.sample

    def offer(
        self,
        transport: str,
        now: float,
        entities: dict[str, list[Any]],
        result: OnlineResult,
        sampled: bool | None = None,
        *,
        plan: LookupPlan | None = None,
        raw: Sequence[bytes | None] | None = None,
        request_id: str | None = None,
        request_data: dict[str, list[Any]] | None = None,
        computed: OnlineResult | None = None,
    ) -> None:
        """On the request path: sample (unless decided already), then enqueue without waiting
        (drop and count when full). When ``result`` was built without run ids, ``plan`` and
        ``raw`` (the Redis values it was decoded from) let the writer thread read them.
        ``computed``: the answer as sent, with on-demand features (``Lookup.computed``); the
        writer thread logs the ones ``result`` lacks."""
        if not (self.sampled() if sampled is None else sampled):
            return
        runs = None
        n = len(result.features[0].values) if result.features else 0
        if not result.run_ids and plan is not None and raw is not None and n:
            runs = _runs(plan, n, entities, raw, int(now * 1_000_000))
        values = len(result.features) * n
        if computed is result:  # nothing was computed: ``computed`` returns its argument
            computed = None
        elif computed is not None:  # at most: the answer's looked-up features are counted twice
            values += len(computed.features) * n
        self._put(_Item(transport, now, entities, result, runs, request_id, request_data, computed, values))

    def offer_lookup(
        self,
        transport: str,
        now_us: int,
        plan: LookupPlan,
        n: int,
        entities: dict[str, list[Any]],
        raw: Sequence[bytes | None],
        request_id: str | None = None,
        request_data: dict[str, list[Any]] | None = None,
    ) -> None:
        """``offer`` for a sampled request answered without decoding (the gRPC fast path): the
        writer thread decodes the Redis values, judging TTLs at ``now_us`` as the answer did."""
        at = EPOCH + timedelta(microseconds=now_us)

        def decode() -> OnlineResult:
            return plan.assemble(n, entities, raw, now=at, with_run_ids=True)

        values = n * len(plan.outputs)
        item = _Item(transport, now_us / 1e6, entities, decode, None, request_id, request_data, None, values)
        self._put(item)

    def _put(self, item: _Item) -> None:
        with self._lock:
            if self._queued_values + item.values > self.queue_values:
                self._dropped += 1
                full = True
            else:
                self._queued_values += item.values
                full = False
        if not full:
            try:
                self._queue.put_nowait(item)
                return
            except queue.Full:
                with self._lock:
                    self._queued_values -= item.values
                    self._dropped += 1
        self.on_dropped()

    def close(self) -> None:
        """Write everything queued, then stop the thread."""
        self._queue.put(None)
        self._thread.join()

    # -- the writer thread -------------------------------------------------------------------

    def _run(self) -> None:
        rows: dict[str, list[Any]] = {name: [] for name in SCHEMA.names}
        deadline = None
        while True:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = ...  # type: ignore[assignment]
            if item is None:
                self._write(rows)
                return
            if item is not ...:
                try:
                    self._add(rows, item)
                except Exception:  # noqa: BLE001 - one odd request must not stop the log
                    log.exception("request log: a request could not be logged")
                finally:
                    with self._lock:
                        self._queued_values -= item.values
                if deadline is None:
                    deadline = time.monotonic() + self.flush_seconds
            if len(rows["request_id"]) >= self.batch_rows or (
                deadline is not None and time.monotonic() >= deadline
            ):
                self._write(rows)
                deadline = None

    def _add(self, rows: dict[str, list[Any]], item: _Item) -> None:
        result = item.result() if callable(item.result) else item.result  # decoded here, off the request path
        run_ids = result.run_ids or (item.runs() if item.runs is not None else {})
        self._seq += 1
        request_id = item.request_id or f"{self._prefix}-{self._seq}"
        request_time = int(item.now * 1_000_000)
        entities = item.entities
        names = list(entities)
        n = len(entities[names[0]]) if names else 0
        keys = [
            json.dumps({k: entities[k][i] for k in names}, separators=(",", ":"), sort_keys=True)
            for i in range(n)
        ]
        data = item.request_data
        request_json: list[str | None] = [None] * n
        if data:
            request_json = [
                value_json({k: v[i] if i < len(v) else None for k, v in data.items()}) for i in range(n)
            ]
        columns = result.features
        if item.computed is not None:  # the on-demand features, as computed for the answer
            looked_up = {col.ref for col in columns}
            columns = columns + [col for col in item.computed.features if col.ref not in looked_up]
        for col in columns:
            rows["request_id"] += [request_id] * n
            rows["request_time"] += [request_time] * n
            rows["transport"] += [item.transport] * n
            rows["entity_index"] += range(n)
            rows["entity_json"] += keys
            rows["feature"] += [col.ref] * n
            rows["value_json"] += json_column(col.field.dtype.name, col.values)
            rows["status"] += [_STATUS[s] for s in col.statuses]
            rows["event_timestamp"] += col.event_ts_us
            rows["run_id"] += run_ids.get(col.ref.split(":", 1)[0]) or [None] * n
            rows["request_json"] += request_json
            if len(rows["request_id"]) >= self.batch_rows:  # a huge request spans files
                self._write(rows)

    def _write(self, rows: dict[str, list[Any]]) -> None:
        count = len(rows["request_id"])
        if not count:
            return
        with self._lock:
            dropped, self._dropped = self._dropped, 0
        if dropped:
            log.warning("request log: %d requests dropped (queue full) since the previous file", dropped)
        try:
            table = pa.table(
                {
                    name: pa.array(rows[name], pa.int64()).cast(SCHEMA.field(name).type)
                    if name in ("request_time", "event_timestamp")
                    else pa.array(rows[name], SCHEMA.field(name).type)
                    for name in SCHEMA.names
                },
                schema=SCHEMA.with_metadata(
                    {
                        META_MODE: self.mode,
                        META_SAMPLE: str(self.sample),
                        META_DROPPED: str(dropped),
                        META_VERSION: str(FORMAT_VERSION),
                    }
                ),
            )
            self._files += 1
            target = self.directory / f"requests-{self._prefix}-{self._files:06d}.parquet"
            partial = target.with_suffix(".parquet.partial")  # readers glob *.parquet: never a half file
            pq.write_table(table, partial)
            partial.rename(target)
            self.on_written(count)
        except Exception:  # noqa: BLE001 - a full disk loses these rows, not the server
            log.exception("request log: %d rows not written to %s", count, self.directory)
            self.on_lost(count)
        finally:
            for values in rows.values():
                values.clear()
        if self.max_bytes is not None:
            self._trim(self.max_bytes)

    def _trim(self, max_bytes: int) -> None:
        """Delete the oldest files until the folder's *.parquet files hold at most ``max_bytes``."""
        files = []
        for entry in os.scandir(self.directory):
            if entry.name.endswith(".parquet") and entry.is_file():
                try:
                    stat = entry.stat()
                except FileNotFoundError:  # another worker deleted it
                    continue
                files.append((stat.st_mtime_ns, entry.name, stat.st_size))
        files.sort()
        total = sum(size for *_, size in files)
        deleted = 0
        for _, name, size in files:
            if total <= max_bytes:
                break
            try:
                (self.directory / name).unlink()
                deleted += 1
            except FileNotFoundError:  # another worker of the same server trimmed it first
                pass
            except OSError:
                log.exception("request log: cannot delete %s to stay under max_bytes", name)
                continue
            total -= size
        if deleted:
            self.on_deleted(deleted)


def _runs(
    plan: LookupPlan, n: int, entities: dict[str, list[Any]], raw: Sequence[bytes | None], now_us: int
) -> Callable[[], dict[str, list[int | None]]]:
    """The run ids of an answer built without them, decoded again from the same values (in the
    writer thread): the same bytes hold the same runs."""
    at = EPOCH + timedelta(microseconds=now_us)
    return lambda: plan.assemble(n, entities, raw, now=at, with_run_ids=True).run_ids

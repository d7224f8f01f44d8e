"""A sampled log of served requests, written to Parquet off the request path.

A request is sampled with probability ``sample``; a sampled one is handed as it is (the
entity columns and the lookup result, no copy, no conversion) to a bounded queue, and a
background thread turns queued requests into rows and writes them in batches. When the
queue is full the request is dropped and counted, so a slow disk never slows serving.
``close`` (graceful shutdown) writes what is queued.

One row per (request, entity, feature), so requests for different features share one
schema; ``featurestore skew`` reads these files. Values are JSON text (``value_json``) so
every dtype fits one column and compares exactly: floats round-trip, bytes are base64,
timestamps are microseconds since the epoch.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import random
import threading
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from featurestore.monitoring.request_log_format import EPOCH, SCHEMA, value_json
from featurestore.online.lookup import LookupPlan, OnlineResult, Status

log = logging.getLogger("featurestore.serving")

_STATUS = {int(s): s.name for s in Status}
# (transport, request time, entity columns, the result or how to decode it)
_Item = tuple[str, float, dict[str, list[Any]], OnlineResult | Callable[[], OnlineResult]]


class RequestLog:
    """Sample requests into a queue; a thread writes them as Parquet files under ``directory``."""

    def __init__(
        self,
        directory: Path,
        sample: float,
        queue_size: int = 1000,
        batch_rows: int = 100_000,
        flush_seconds: float = 10.0,
    ) -> None:
        self.directory = directory
        self.sample = sample
        self.batch_rows = batch_rows
        self.flush_seconds = flush_seconds
        self.on_dropped: Callable[[], None] = lambda: None
        self.on_written: Callable[[int], None] = lambda n: None
        directory.mkdir(parents=True, exist_ok=True)
        self._queue: queue.Queue[_Item | None] = queue.Queue(queue_size)
        self._seq = 0
        self._files = 0
        self._prefix = f"{os.getpid()}-{int(time.time() * 1000)}"
        self._thread = threading.Thread(target=self._run, name="featurestore-request-log", daemon=True)
        self._thread.start()

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
    ) -> None:
        """On the request path: sample (unless decided already), then enqueue without waiting
        (drop and count when full)."""
        if not (self.sampled() if sampled is None else sampled):
            return
        try:
            self._queue.put_nowait((transport, now, entities, result))
        except queue.Full:
            self.on_dropped()

    def offer_lookup(
        self,
        transport: str,
        now_us: int,
        plan: LookupPlan,
        n: int,
        entities: dict[str, list[Any]],
        raw: Sequence[bytes | None],
    ) -> None:
        """``offer`` for a sampled request answered without decoding (the gRPC fast path): the
        writer thread decodes the Redis values, judging TTLs at ``now_us`` as the answer did."""
        at = EPOCH + timedelta(microseconds=now_us)

        def decode() -> OnlineResult:
            return plan.assemble(n, entities, raw, now=at)

        try:
            self._queue.put_nowait((transport, now_us / 1e6, entities, decode))
        except queue.Full:
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
                    self._add(rows, *item)
                except Exception:  # noqa: BLE001 - one odd request must not stop the log
                    log.exception("request log: a request could not be logged")
                if deadline is None:
                    deadline = time.monotonic() + self.flush_seconds
            if len(rows["request_id"]) >= self.batch_rows or (
                deadline is not None and time.monotonic() >= deadline
            ):
                self._write(rows)
                deadline = None

    def _add(
        self,
        rows: dict[str, list[Any]],
        transport: str,
        now: float,
        entities: dict[str, list[Any]],
        result: OnlineResult | Callable[[], OnlineResult],
    ) -> None:
        if callable(result):  # decoded here, off the request path (offer_lookup)
            result = result()
        self._seq += 1
        request_id = f"{self._prefix}-{self._seq}"
        request_time = int(now * 1_000_000)
        names = list(entities)
        n = len(entities[names[0]]) if names else 0
        keys = [
            json.dumps({k: entities[k][i] for k in names}, separators=(",", ":"), sort_keys=True)
            for i in range(n)
        ]
        for col in result.features:
            rows["request_id"] += [request_id] * n
            rows["request_time"] += [request_time] * n
            rows["transport"] += [transport] * n
            rows["entity_index"] += range(n)
            rows["entity_json"] += keys
            rows["feature"] += [col.ref] * n
            if col.field.dtype.name == "Timestamp":  # served as microseconds already
                rows["value_json"] += [None if v is None else json.dumps(v) for v in col.values]
            else:
                rows["value_json"] += [value_json(v) for v in col.values]
            rows["status"] += [_STATUS[s] for s in col.statuses]
            rows["event_timestamp"] += col.event_ts_us

    def _write(self, rows: dict[str, list[Any]]) -> None:
        count = len(rows["request_id"])
        if not count:
            return
        try:
            table = pa.table(
                {
                    name: pa.array(rows[name], pa.int64()).cast(SCHEMA.field(name).type)
                    if name in ("request_time", "event_timestamp")
                    else pa.array(rows[name], SCHEMA.field(name).type)
                    for name in SCHEMA.names
                },
                schema=SCHEMA,
            )
            self._files += 1
            target = self.directory / f"requests-{self._prefix}-{self._files:06d}.parquet"
            partial = target.with_suffix(".parquet.partial")  # readers glob *.parquet: never a half file
            pq.write_table(table, partial)
            partial.rename(target)
            self.on_written(count)
        except Exception:  # noqa: BLE001 - a full disk loses these rows, not the server
            log.exception("request log: %d rows not written to %s", count, self.directory)
        finally:
            for values in rows.values():
                values.clear()

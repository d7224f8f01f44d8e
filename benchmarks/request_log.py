"""What complete request logging costs: the request path, the writer thread, the disk, and a
training set built from the log.

    .venv/bin/python benchmarks/request_log.py [--requests 20000] [--entities 10] [--on-demand]
    .venv/bin/python benchmarks/request_log.py --memory   # what a writer that falls behind holds

In process, no servers: synthetic answers of ``--entities`` entities x 16 features (distinct
floats, strings, ints; run ids as the lookup gives them). Times ``RequestLog.offer`` on the request
path (a put on a queue; wall time, and the calling thread's CPU time, which leaves out its
waits for the GIL the writer thread holds), the writer thread's rows per second until ``close`` returns, the
bytes per row on disk, and turning the log back into entity rows (``logged_entities``: the
pivot and typed values a training set from the log starts with). ``--on-demand``: each answer
also carries 2 on-demand features (handed over as ``computed``, the answer a server sends),
logged beside the 16. ``--held``: the writer thread waits until every request is offered, so
that ``offer`` is timed without the writer competing for the GIL. ``--memory``: the Python
memory (tracemalloc) the log holds when its writer is held and the queue fills to its default
bounds with 100-entity answers.
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

from featurestore.definitions import Field, Float64, Int64, String
from featurestore.offline.feature_log import FeatureLog, logged_entities
from featurestore.online.lookup import FeatureColumn, OnlineResult
from featurestore.serving.request_log import RequestLog

N_FEATURES = 16
N_ON_DEMAND = 2


def answer(n: int, first: int) -> OnlineResult:
    """Distinct values, as a real answer has: floats, city names, counts."""
    columns = []
    for j in range(N_FEATURES):
        f = Field(f"f{j}", (Float64, String, Int64)[j % 3])
        values: list[object] = [
            (random.random(), f"city-{random.randrange(10**6)}", random.randrange(10**9))[j % 3]
            for _ in range(n)
        ]
        stamps: list[int | None] = [1_700_000_000_000_000 + i for i in range(n)]
        columns.append(FeatureColumn(f.name, f"v:{f.name}", f, values, [1] * n, stamps))
    return OnlineResult({"driver_id": list(range(first, first + n))}, columns, {"v": [7] * n})


class _Held:
    """A plan whose decoding (in the writer thread) waits for ``event``: holds the writer."""

    outputs: tuple[()] = ()

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def assemble(self, *args: object, **kwargs: object) -> OnlineResult:
        self.event.wait()
        return OnlineResult({}, [])


def with_on_demand(looked_up: OnlineResult) -> OnlineResult:
    """The answer with on-demand features, as ``Lookup.computed`` makes it: computed columns
    (no event time) after the looked-up ones."""
    n = len(looked_up.features[0].values)
    columns = list(looked_up.features)
    for j in range(N_ON_DEMAND):
        f = Field(f"od{j}", Float64)
        values: list[object] = [random.random() for _ in range(n)]
        columns.append(FeatureColumn(f.name, f"od:{f.name}", f, values, [1] * n, [None] * n))
    return OnlineResult(looked_up.entities, columns, looked_up.run_ids)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--entities", type=int, default=10)
    parser.add_argument("--memory", action="store_true")
    parser.add_argument("--on-demand", action="store_true", help="answers with 2 on-demand features")
    parser.add_argument("--held", action="store_true", help="time offer alone: the writer held until the end")
    args = parser.parse_args()
    if args.memory:
        return memory()
    work = Path(tempfile.mkdtemp(prefix="fs-request-log-bench-"))
    try:
        n = args.entities
        answers = [answer(n, i * n) for i in range(1000)]  # each repeats every 1000 requests
        computed = [with_on_demand(a) if args.on_demand else None for a in answers]
        per_request = N_FEATURES + (N_ON_DEMAND if args.on_demand else 0)
        log = RequestLog(work / "log", 1.0, queue_size=args.requests + 2, queue_values=10**12)
        held = threading.Event()
        if args.held:  # the writer waits on its first item until every request is offered
            log.offer_lookup("grpc", 0, _Held(held), 0, {}, [])  # type: ignore[arg-type]
        start, cpu = time.perf_counter(), time.thread_time()
        if args.on_demand:
            for i in range(args.requests):
                a = answers[i % 1000]
                log.offer("grpc", time.time(), a.entities, a, sampled=True, computed=computed[i % 1000])
        else:  # the call as before the option, so that the package before it runs this harness too
            for i in range(args.requests):
                a = answers[i % 1000]
                log.offer("grpc", time.time(), a.entities, a, sampled=True)
        offered, offered_cpu = time.perf_counter() - start, time.thread_time() - cpu
        held.set()
        log.close()
        total = time.perf_counter() - start
        rows = args.requests * n * per_request
        files = sorted((work / "log").glob("*.parquet"))
        size = sum(f.stat().st_size for f in files)
        print(f"requests {args.requests} x {n} entities x {per_request} features = {rows:,} rows")
        print(f"offer (request path): {offered / args.requests * 1e6:.1f} us per request")
        # The calling thread's CPU only: without the waits for the GIL the writer thread holds.
        print(f"offer CPU (request thread): {offered_cpu / args.requests * 1e6:.1f} us per request")
        print(
            f"writer: {rows / total:,.0f} rows/s ({args.requests / total:,.0f} requests/s), "
            f"{len(files)} files"
        )
        print(f"disk: {size / rows:.1f} bytes per row, {size / 2**20:.1f} MiB")
        start = time.perf_counter()
        table = _entity_rows(work / "log", n)
        print(f"log -> entity rows: {table:,} rows in {time.perf_counter() - start:.2f}s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def memory() -> None:
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    release, busy = threading.Event(), threading.Event()

    def hold(rows: int) -> None:  # the writer stops after its first file, as on a stalled disk
        busy.set()
        release.wait()

    work = Path(tempfile.mkdtemp(prefix="fs-request-log-bench-"))
    log = RequestLog(work, 1.0, flush_seconds=3600)  # the default bounds
    log.on_written = hold
    dropped: list[int] = []
    log.on_dropped = lambda: dropped.append(1)
    i = 0
    try:
        while not dropped:  # a file's worth of rows, then the queue fills until a request is dropped
            a = answer(100, i * 100)
            log.offer("grpc", time.time(), a.entities, a, sampled=True)
            i += 1
            if not busy.is_set():
                time.sleep(0.001)
        held = tracemalloc.get_traced_memory()[0] - base
        print(f"{i} requests of 100 entities x {N_FEATURES} features offered; held {held / 2**20:.0f} MiB")
    finally:
        release.set()
        log.close()
        shutil.rmtree(work, ignore_errors=True)


def _entity_rows(folder: Path, n: int) -> int:
    from datetime import timedelta

    from featurestore.definitions import Entity, FeatureView, ParquetSource
    from featurestore.registry import ViewRequest

    driver = Entity("driver", join_keys=["driver_id"])
    fields = [Field(f"f{j}", (Float64, String, Int64)[j % 3]) for j in range(N_FEATURES)]
    source = ParquetSource("v", "data/v.parquet", "ts")
    view = FeatureView("v", [driver], [Field("driver_id", Int64), *fields], source, ttl=timedelta(days=1))
    logged = logged_entities(FeatureLog(folder), [ViewRequest(view, tuple(view.features))], False)
    return logged.table.num_rows


if __name__ == "__main__":
    main()

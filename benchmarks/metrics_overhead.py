"""What /metrics costs a lookup: the per-request hooks, timed in process beside plan.assemble.

    .venv/bin/python benchmarks/metrics_overhead.py             # single-process values
    .venv/bin/python benchmarks/metrics_overhead.py --multiprocess  # as with serve --workers N

Times ServingMetrics.request() + served() (latency, Redis, per-view outcomes, sampled age)
for trip_model lookups of 1 and 100 entities of real encoded values, and plan.assemble()
of the same reply for scale. No servers: the figure is the hooks' own CPU time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--multiprocess", action="store_true", help="prometheus-client multiprocess mode")
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fs-metrics-bench-"))
    if args.multiprocess:  # before prometheus_client is first imported
        (work / "prom").mkdir()
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(work / "prom")
    try:
        run(work, args.calls, args.multiprocess)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(work: Path, calls: int, multiprocess: bool) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from featurestore import datagen
    from featurestore.config import load_config
    from featurestore.online.codec import ViewCodec, timestamps_us
    from featurestore.online.lookup import OnlineRegistry
    from featurestore.registry import compile_repo
    from featurestore.repo import load_repo
    from featurestore.serving.metrics import ServingMetrics

    repo = work / "repo"
    shutil.copytree(ROOT / "definitions", repo, ignore=shutil.ignore_patterns("data", ".featurestore"))
    datagen.generate(repo / "data", "tiny")
    snapshot = compile_repo(load_repo(repo), repo)
    registry = OnlineRegistry("rides", snapshot, 1)
    plan = registry.plan("trip_model")
    metrics = ServingMetrics(None, load_config(repo, env={}))  # type: ignore[arg-type]
    print(f"prometheus-client {'multiprocess' if metrics.multiprocess else 'single-process'} mode")
    for n in (1, 100):
        raw: list[Any] = []
        for view in plan.views:
            table = pa.concat_tables(
                pq.read_table(f) for f in sorted((repo / "data" / view.name).glob("*.parquet"))
            )
            rows = table.slice(0, n)
            codec = ViewCodec(snapshot.views[view.name])
            event_us = timestamps_us(rows.column("event_timestamp"))
            raw += codec.encode(rows, event_us, np.zeros(n, dtype=np.int64), 1).to_pylist()
        entities = {"driver_id": list(range(1001, 1001 + n)), "customer_id": list(range(5001, 5001 + n))}
        result = plan.assemble(n, entities, raw)
        started = time.perf_counter()
        for _ in range(calls):
            plan.assemble(n, entities, raw)
        assemble_us = (time.perf_counter() - started) / calls * 1e6
        started = time.perf_counter()
        for _ in range(calls):
            metrics.request("grpc", "/featurestore.serving.v1.FeatureServing/GetOnlineFeatures", "OK", 0.001)
            metrics.served("grpc", plan, entities, result, 0.0002)
        hooks_us = (time.perf_counter() - started) / calls * 1e6
        print(f"{n:>3} entities: hooks {hooks_us:.1f} us/request, assemble {assemble_us:.1f} us/request")


if __name__ == "__main__":
    main()

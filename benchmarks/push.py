"""Push (issue requirement): a push of 1 row beside a lookup of 1 entity, and batches of 1,000
rows beside the raw writes they cannot avoid, in the same run.

    .venv/bin/python benchmarks/push.py --scale demo --runs 3

The example repo (definitions/) over generated data ending now, applied and materialized
(driver_stats, 14 features, its pandera checks), a private redis-server and
``featurestore serve`` (one worker) on free loopback ports. Pushes go to driver_stats with
event times after every stored one, so each row is written online (newer-wins).

  one row       FeatureStore.push(driver_stats, 1 row) beside FeatureStore.get_online_features
                of the view's 14 features for 1 driver, interleaved, in process; the same over
                gRPC (featurestore.Client.push beside Client.get_online_features).
                Target: push p50 within 3x of the lookup p50, in process and over gRPC.
  batch         pushes of 1,000 rows (1,000 drivers) in process and over gRPC, beside the limit:
                the same rows written by hand where a push writes them, i.e. a pyarrow Parquet
                write of the validated table to a temporary file, fsync, rename and fsync of the
                folder, then a redis-py pipeline of plain SETs of the same encoded values (the
                encoding done outside the clock). Interleaved. Target: over gRPC >= 50,000 rows/s.
                Then a cProfile of in-process batch pushes.
  aggregation   FeatureStore.push of 1 event to driver_trips (the example's aggregation view:
                the pushed driver's tiles recomputed from the store file) beside a lookup of
                its 9 features for that driver, after an ingestion in each run (so the i-th
                push also reads i push files not ingested yet). No target: for the record.

Each run repeats every series (``--iterations`` one-row calls, ``--batches`` batch calls);
the figures are the medians over runs of each run's p50 (rows/s: of each run's median).

Results: benchmarks/results/push-SCALE.json and Markdown tables on stdout.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from online import (
    BIN,
    OUT,
    ROOT,
    background,
    free_port,
    percentiles,
    redis_server,
    run_cli,
    serve_command,
    wait_port,
)

VIEW = "driver_stats"
AGG_VIEW = "driver_trips"  # the example's aggregation view: 9 aggregations, 3 hop groups
BATCH = 1_000
TARGETS = {"one_row_ratio": 3.0, "grpc_rows_per_s": 50_000.0}


def prepare(scale: str) -> Path:
    """The example repo over data ending now (driver_stats' TTL keeps it servable)."""
    import subprocess

    base = OUT / f"push-{scale}"
    repo = base / "repo"
    shutil.rmtree(base, ignore_errors=True)
    repo.mkdir(parents=True)
    for f in (ROOT / "definitions").glob("*.py"):
        shutil.copy(f, repo)
    shutil.copy(ROOT / "definitions" / "featurestore.toml", repo)
    subprocess.run(
        [BIN / "python", "-m", "featurestore.datagen", repo / "data", "--scale", scale],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return repo


class Rows:
    """Batches of driver_stats rows that pass its checks, each newer than every one before."""

    def __init__(self, drivers: list[int]) -> None:
        self.drivers = drivers
        self.clock = datetime.now(UTC) + timedelta(seconds=1)

    def batch(self, n: int) -> Any:
        import pyarrow as pa

        self.clock += timedelta(milliseconds=1)
        ids = [self.drivers[i % len(self.drivers)] for i in range(n)]
        ts = pa.array([self.clock] * n, pa.timestamp("us", tz="UTC"))
        return pa.table(
            {
                "driver_id": pa.array(ids, pa.int64()),
                "event_timestamp": ts,
                "created": ts,
                "conv_rate": pa.array([0.5] * n, pa.float32()),
                "acc_rate": pa.array([0.9] * n, pa.float32()),
                "avg_daily_trips": pa.array([12] * n, pa.int32()),
                "rating": pa.array([4.5] * n, pa.float32()),
                "trips_today": pa.array([3] * n, pa.int32()),
                "earnings_today": pa.array([81.5] * n, pa.float64()),
                "online_hours": pa.array([6.0] * n, pa.float32()),
                "cancellations_7d": pa.array([1] * n, pa.int32()),
                "completed_trips_total": pa.array([1234] * n, pa.int64()),
                "last_trip_km": pa.array([7.25] * n, pa.float64()),
                "city": pa.array(["Lyon"] * n, pa.string()),
                "vehicle_type": pa.array(["car"] * n, pa.string()),
                "is_active": pa.array([True] * n, pa.bool_()),
            }
        )


def trip(driver: int) -> Any:
    """One trip event of ``driver``, now (driver_trips' source columns)."""
    import pyarrow as pa

    return pa.table(
        {
            "driver_id": pa.array([driver], pa.int64()),
            "event_timestamp": pa.array([datetime.now(UTC)], pa.timestamp("us", tz="UTC")),
            "customer_id": pa.array([5], pa.int64()),
            "fare": [12.5],
            "distance_km": [3.2],
            "payment": ["card"],
            "tip": [1.0],
        }
    )


def aggregation_run(
    store: Any, repo: Path, env: dict[str, str], drivers: list[int], n: int
) -> dict[str, Any]:
    """1-event pushes to the aggregation view beside 1-entity lookups of its features, after
    an ingestion (so the i-th push reads i pending push files, besides the entity's rows)."""
    run_cli(env, "materialize", "--offline", "--repo", str(repo), "--views", AGG_VIEW)
    features = [f"{AGG_VIEW}:{f.name}" for f in store.get_feature_view(AGG_VIEW).features]
    series: dict[str, list[float]] = {"agg_push": [], "agg_lookup": []}
    for i in range(n):
        driver = drivers[i % len(drivers)]
        series["agg_push"].append(_timed(store.push, AGG_VIEW, trip(driver)))
        series["agg_lookup"].append(_timed(store.get_online_features, features, {"driver_id": [driver]}))
    return {name: percentiles(xs) for name, xs in series.items()}


def _timed(fn: Callable[..., Any], *args: Any) -> float:
    t = time.perf_counter_ns()
    fn(*args)
    return (time.perf_counter_ns() - t) / 1000


def raw_write(store: Any, client: Any, folder: Path) -> Callable[[Any], Callable[[], None]]:
    """The limit of a batch: for a table, a call writing it as a push must (Parquet file,
    fsync, rename, folder fsync; Redis SETs of its encoded values), encoded beforehand."""
    import pyarrow.parquet as pq

    from featurestore.offline.layout import CREATED_TS, EVENT_TS
    from featurestore.online.codec import PUSHED_RUN_ID, ViewCodec
    from featurestore.online.materialize import encode_rows

    view = store.get_feature_view(VIEW)
    codec = ViewCodec(view)
    folder.mkdir(parents=True, exist_ok=True)

    def prepared(table: Any) -> Callable[[], None]:
        import pyarrow as pa

        columns = {
            "driver_id": table.column("driver_id"),
            EVENT_TS: table.column("event_timestamp"),
            CREATED_TS: table.column("created"),
        }
        columns.update({f.name: table.column(f.name) for f in view.features})
        batch = pa.table(columns).to_batches()[0]
        keys, values, _ = encode_rows(
            store.config.project, view, codec, batch, PUSHED_RUN_ID, datetime.now(UTC)
        )

        def write() -> None:
            name = f"{uuid.uuid4().hex}.parquet"
            temp = folder / f".{name}.tmp"
            with open(temp, "wb") as out:
                pq.write_table(table, out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, folder / name)
            fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            pipe = client.pipeline(transaction=False)
            for k, v in zip(keys, values, strict=True):
                pipe.set(k, v)
            pipe.execute()

        return write

    return prepared


def one_run(store: Any, remote: Any, rows: Rows, limit: Any, iterations: int, batches: int) -> dict[str, Any]:
    """One pass of every series, interleaved. Rows are built outside the clock, as a caller
    holds its rows already."""
    features = [f"{VIEW}:{f.name}" for f in store.get_feature_view(VIEW).features]
    entity = {"driver_id": rows.drivers[:1]}
    names = ("push", "lookup", "grpc_push", "grpc_lookup", "limit_1")
    series: dict[str, list[float]] = {k: [] for k in names}
    cpu = []  # CPU seconds of the process per in-process push: steadier than wall time when
    # the machine is shared (others' load and disk writes lengthen waits, fsync above all)
    for _ in range(iterations):
        began = time.process_time()
        series["push"].append(_timed(store.push, VIEW, rows.batch(1)))
        cpu.append((time.process_time() - began) * 1e3)
        series["lookup"].append(_timed(store.get_online_features, features, entity))
        series["grpc_push"].append(_timed(remote.push, VIEW, rows.batch(1)))
        series["grpc_lookup"].append(_timed(remote.get_online_features, features, entity))
        series["limit_1"].append(_timed(limit(rows.batch(1))))
    rates: dict[str, list[float]] = {"push": [], "grpc_push": [], "limit": []}
    for _ in range(batches):
        rates["push"].append(BATCH / _timed(store.push, VIEW, rows.batch(BATCH)) * 1e6)
        rates["grpc_push"].append(BATCH / _timed(remote.push, VIEW, rows.batch(BATCH)) * 1e6)
        rates["limit"].append(BATCH / _timed(limit(rows.batch(BATCH))) * 1e6)
    out: dict[str, Any] = {name: percentiles(xs) for name, xs in series.items()}
    out["rows_per_s"] = {name: statistics.median(xs) for name, xs in rates.items()}
    out["push_cpu_ms"] = statistics.median(cpu)
    return out


def profile_batches(store: Any, rows: Rows, n: int = 30) -> list[str]:
    profile = cProfile.Profile()
    tables = [rows.batch(BATCH) for _ in range(n)]
    profile.enable()
    for table in tables:
        store.push(VIEW, table)
    profile.disable()
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("cumulative").print_stats(25)
    lines = [line.rstrip() for line in text.getvalue().splitlines() if line.strip()]
    return [line.replace(str(ROOT) + "/", "").replace(sys.prefix + "/", "") for line in lines]


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def med(name: str, q: str) -> float:
        return statistics.median(r[name][q] for r in runs)

    s: dict[str, Any] = {}
    for name in ("push", "lookup", "grpc_push", "grpc_lookup", "limit_1", "agg_push", "agg_lookup"):
        if name not in runs[0]:  # --agg-iterations 0
            continue
        s[name] = {q: med(name, q) for q in ("p50_ms", "p99_ms")}
    s["rows_per_s"] = {
        name: statistics.median(r["rows_per_s"][name] for r in runs)
        for name in ("push", "grpc_push", "limit")
    }
    s["push_cpu_ms"] = statistics.median(r["push_cpu_ms"] for r in runs)
    s["ratio_in_process"] = s["push"]["p50_ms"] / s["lookup"]["p50_ms"]
    s["ratio_grpc"] = s["grpc_push"]["p50_ms"] / s["grpc_lookup"]["p50_ms"]
    return s


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def markdown(result: dict[str, Any]) -> str:
    s = result["summary"]
    t = TARGETS["one_row_ratio"]
    rate = s["rows_per_s"]
    aggregation = []
    if "agg_push" in s:
        aggregation = [
            f"| in process, push 1 event to {AGG_VIEW} (tiles recomputed; 1..{result['agg_iterations']} "
            f"pending push files) | {s['agg_push']['p50_ms']:.3f} | {s['agg_push']['p99_ms']:.3f} | "
            f"{s['agg_push']['p50_ms'] / s['agg_lookup']['p50_ms']:.2f}× its lookup (no target) |",
            f"| in process, lookup 1 entity of {AGG_VIEW} (9 aggregations) | "
            f"{s['agg_lookup']['p50_ms']:.3f} | {s['agg_lookup']['p99_ms']:.3f} | 1.00 |",
        ]
    lines = [
        f"driver_stats (14 features, pandera checks); {result['iterations']:,} one-row calls and "
        f"{result['batches']} batches of {BATCH:,} rows per series and run, {result['runs']} runs, "
        "interleaved; medians over runs.",
        "",
        "| one row / one entity | p50 ms | p99 ms | push p50 / lookup p50 |",
        "|---|---|---|---|",
        f"| in process, push 1 row | {s['push']['p50_ms']:.3f} | {s['push']['p99_ms']:.3f} | "
        f"{s['ratio_in_process']:.2f}× (target {t}×: {verdict(s['ratio_in_process'] <= t)}) |",
        f"| in process, push 1 row: CPU time of the process, median | {s['push_cpu_ms']:.3f} | | |",
        f"| in process, lookup 1 entity | {s['lookup']['p50_ms']:.3f} | {s['lookup']['p99_ms']:.3f} | 1.00 |",
        f"| gRPC, push 1 row | {s['grpc_push']['p50_ms']:.3f} | {s['grpc_push']['p99_ms']:.3f} | "
        f"{s['ratio_grpc']:.2f}× (target {t}×: {verdict(s['ratio_grpc'] <= t)}) |",
        f"| gRPC, lookup 1 entity | {s['grpc_lookup']['p50_ms']:.3f} | "
        f"{s['grpc_lookup']['p99_ms']:.3f} | 1.00 |",
        f"| limit: 1 row by hand (Parquet + fsync + rename + folder fsync, Redis SET) | "
        f"{s['limit_1']['p50_ms']:.3f} | {s['limit_1']['p99_ms']:.3f} | "
        f"{s['limit_1']['p50_ms'] / s['lookup']['p50_ms']:.2f}× the in-process lookup |",
        *aggregation,
        "",
        f"| batch of {BATCH:,} rows | rows/s (median) | share of the limit | target |",
        "|---|---|---|---|",
        f"| in process, FeatureStore.push | {rate['push']:,.0f} | {rate['push'] / rate['limit']:.2f} | |",
        f"| gRPC, Client.push | {rate['grpc_push']:,.0f} | {rate['grpc_push'] / rate['limit']:.2f} | "
        f"≥ 50,000: {verdict(rate['grpc_push'] >= TARGETS['grpc_rows_per_s'])} |",
        f"| limit: Parquet write + fsync + rename, Redis pipeline SETs | {rate['limit']:,.0f} | 1.00 | |",
        "",
        "cProfile of 30 in-process pushes of 1,000 rows (cumulative):",
        "",
        "```",
        *result["profile"][:40],
        "```",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", default="demo")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=300, help="one-row calls per series and run")
    parser.add_argument("--batches", type=int, default=20, help="batches per series and run")
    parser.add_argument("--agg-iterations", type=int, default=50, help="aggregation pushes per run (0: none)")
    parser.add_argument("--tag", default="", help="added to the results file's name (push-SCALE-TAG.json)")
    args = parser.parse_args()
    if shutil.which("redis-server") is None:
        sys.exit("redis-server is missing: run `make bench`")
    import duckdb
    import grpc
    import pyarrow
    import redis

    from featurestore import Client, FeatureStore
    from featurestore.config import load_config
    from featurestore.datagen import FIRST_DRIVER, SCALES

    repo = prepare(args.scale)
    result: dict[str, Any] = {
        "command": " ".join([".venv/bin/python", "benchmarks/push.py", *sys.argv[1:]]),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "scale": args.scale,
        "runs": args.runs,
        "iterations": args.iterations,
        "batches": args.batches,
        "agg_iterations": args.agg_iterations,
        "machine": {"cpus": os.cpu_count(), "loadavg_at_start": os.getloadavg()},
        "versions": {
            "python": platform.python_version(),
            "duckdb": duckdb.__version__,
            "grpcio": grpc.__version__,
            "pyarrow": pyarrow.__version__,
            "redis-py": redis.__version__,
        },
    }
    with redis_server() as port:
        os.environ["FEATURESTORE_REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
        env = dict(os.environ)
        run_cli(env, "apply", "--repo", str(repo))
        run_cli(env, "materialize", "--repo", str(repo), "--views", f"{VIEW},{AGG_VIEW}")
        store = FeatureStore(repo, config=load_config(repo, env=env))
        drivers = list(range(FIRST_DRIVER, FIRST_DRIVER + min(BATCH, SCALES[args.scale].drivers)))
        rows = Rows(drivers)
        raw = redis.Redis.from_url(env["FEATURESTORE_REDIS_URL"])
        grpc_port, http_port = free_port(), free_port()
        serve = serve_command(repo, grpc_port, http_port, "--workers", "1")
        with background(serve, grpc_port, env), Client(f"127.0.0.1:{grpc_port}", timeout=30) as remote:
            wait_port(http_port)
            with tempfile.TemporaryDirectory(dir=repo) as scratch:
                limit = raw_write(store, raw, Path(scratch))
                one_run(store, remote, rows, limit, 30, 3)  # warm-up: imports, plans, connections
                runs = []
                if args.agg_iterations:
                    aggregation_run(store, repo, env, drivers, 5)  # warm-up
                for i in range(args.runs):
                    runs.append(one_run(store, remote, rows, limit, args.iterations, args.batches))
                    if args.agg_iterations:
                        runs[-1].update(aggregation_run(store, repo, env, drivers, args.agg_iterations))
                    print(f"  run {i + 1}/{args.runs} done", file=sys.stderr, flush=True)
        result["profile"] = profile_batches(store, rows)
        check = store.get_online_features([f"{VIEW}:city"], {"driver_id": drivers[:1]}).to_dict()
        result["last_pushed_served"] = check
        raw.close()
        store.close()
    result["per_run"] = runs
    result["summary"] = summarize(runs)
    result["machine"]["loadavg_at_end"] = os.getloadavg()
    results = ROOT / "benchmarks" / "results"
    results.mkdir(exist_ok=True)
    (results / f"push-{args.scale}{'-' + args.tag if args.tag else ''}.json").write_text(
        json.dumps(result, indent=2, default=str) + "\n"
    )
    print(markdown(result))


if __name__ == "__main__":
    main()

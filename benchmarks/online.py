"""The online path: materialization into Redis and lookups over gRPC, HTTP and in process.

    .venv/bin/python benchmarks/online.py --scale small --runs 3
    .venv/bin/python benchmarks/online.py --scale small --runs 3 --materialize-only --engine duckdb,spark

Every figure is measured beside its limit in the same run, and reported as a ratio:

  materialize   FeatureStore.materialize() in process and `featurestore materialize` as a
                whole process (rows/s, entities/s, peak RSS)
                limit: DuckDB's newest-row-per-entity query to Arrow + pipelined plain SETs
                of the same encoded bytes (what materialization cannot avoid doing)
                With --engine spark (or duckdb,spark), api and cli also run on a copy of the
                repo switched to Spark local[2] (benchmarks/spark_engine.py) and ingested by
                Spark, as spark-api and spark-cli, into the same Redis, beside the same limit.
                spark-api says where Spark's time goes: the session's start (JVM), Spark's
                compute alone, the hand-off of its rows to the Python tasks, and the rest (the
                tasks' encoding and Redis writes, the run's bookkeeping); and Spark's job and
                stage figures from its REST API. Memory of Spark modes is the process tree's
                (Python, JVM, Python workers), sampled.
  grpc          GetOnlineFeatures, 1 and 100 entities x 16 features (the trip_model service),
                at concurrency 1, 8 and 64, load from h2load (nghttp2, C, one process)
                limits: a bare grpc.aio server answering the same response bytes, driven
                by the same h2load command; redis-benchmark running the same MGET
  http          POST /v1/online-features, same lookups, h2load --h1
  in-process    FeatureStore.get_online_features, one caller
                limit: redis-py MGET of the same keys, same loop
  --cluster     instead of all the above: gRPC lookups (1 and 100 entities, concurrency 1
                and 8) served from one Redis and from a local 3-master Redis Cluster
                (scripts/redis_cluster.sh) holding the same keys, in the same run;
                limit on each: the serving client alone (one MGET, or one MGET per slot
                pipelined to every node), same keys, same concurrency.
                Then materialization (rows/s, and per master) into each, FeatureStore.materialize()
                in process; limit on each: the newer-wins write of the same keys, values and
                expiries through the same backend (RedisBackend / RedisClusterBackend), with
                the same DuckDB query

Results: benchmarks/out/online-SCALE/results.json and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = ROOT / "benchmarks" / "out"
BIN = Path(sys.executable).parent
SERVICE = "trip_model"
METHOD = "/featurestore.serving.v1.FeatureServing/GetOnlineFeatures"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_command(repo: Path, grpc_port: int, http_port: int | str, *extra: str) -> list[str]:
    """``featurestore serve`` of ``repo`` on these ports (http_port "0": gRPC only)."""
    return [
        str(BIN / "featurestore"), "serve", "--repo", str(repo),
        "--grpc-port", str(grpc_port), "--http-port", str(http_port), *extra,
    ]


def run_header(script: str, load_before: tuple[float, float, float]) -> dict[str, Any]:
    """What every result JSON opens with: the command, when, the load average around the run
    and the commit measured."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return {
        "command": " ".join([".venv/bin/python", f"benchmarks/{script}", *sys.argv[1:]]),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "commit": commit.stdout.strip(),
    }


def percentiles(latencies_us: list[float]) -> dict[str, float]:
    xs = sorted(latencies_us)

    def at(q: float) -> float:
        return xs[min(len(xs) - 1, int(q * len(xs)))] / 1000.0

    return {"p50_ms": at(0.50), "p99_ms": at(0.99), "p999_ms": at(0.999)}


# -- processes -------------------------------------------------------------------------------


@contextmanager
def redis_server() -> Iterator[int]:
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_port(port)
        yield port
    finally:
        proc.terminate()
        proc.wait()


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


@contextmanager
def background(
    cmd: list[str], port: int, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_port(port)
        time.sleep(0.5)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def timed_process(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(seconds, peak RSS in MiB) of one whole process."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    if status != 0:
        raise RuntimeError(f"{cmd} failed: {proc.stderr.read().decode() if proc.stderr else ''}")
    return seconds, usage.ru_maxrss / 1024


# -- setup ---------------------------------------------------------------------------------


def prepare(scale: str) -> Path:
    """The example repo over freshly generated data ending now (so TTLs keep it servable)."""
    base = OUT / f"online-{scale}"
    repo = base / "repo"
    if base.exists():
        shutil.rmtree(base)
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


def run_cli(env: dict[str, str], *args: str) -> None:
    subprocess.run([BIN / "featurestore", *args], check=True, env=env, stdout=subprocess.DEVNULL)


# -- materialization -------------------------------------------------------------------------

# The first call of a process also pays one-time imports (pyarrow.compute loads pandas, the
# OpenLineage client); the second, after wiping Redis and the watermarks again, is what a
# long-lived process (a scheduler's worker) pays per run. Arguments: the repo, this folder
# (to import flush_online) and, optionally, the views to materialize (comma-separated).
MATERIALIZE_CHILD = """
import json, sys, time
import duckdb
sys.path.insert(0, sys.argv[2])
from online import flush_online
from featurestore import FeatureStore
store = FeatureStore(sys.argv[1])
views = sys.argv[3].split(",") if len(sys.argv) > 3 else None  # default: every view
t = time.perf_counter()
r = store.materialize(views=views)
first = time.perf_counter() - t
flush_online(store.config.redis_url)
con = duckdb.connect(str(store.config.duckdb_path))
con.execute("DELETE FROM rides.online_watermarks")
con.close()
t = time.perf_counter()
r = store.materialize(views=views)
print(json.dumps({"seconds": time.perf_counter() - t, "first_call_s": first, "rows": r.rows_read,
                  "entities": sum(v.entities for v in r.views)}))
"""

# argv[2]: "set", plain pipelined SETs through redis-py (one Redis only), or "newer_wins", the
# backend materialization writes through (RedisBackend or RedisClusterBackend, by the URL)
# with its newer-wins scripts, the same batches and expiries: what a run cannot avoid on that
# target. The keys, values and expiries are those a run writes (materialize.encode_rows).
LIMIT_CHILD = """
import json, sys, time
import redis
from featurestore import FeatureStore
from featurestore.online.codec import ViewCodec
from featurestore.online.materialize import BATCH_ROWS, _Plan, encode_rows, newest_rows_sql
from featurestore.online.store import OnlineStore
from featurestore.storage import connection
from datetime import UTC, datetime
store = FeatureStore(sys.argv[1])
newer_wins = sys.argv[2] == "newer_wins"
snapshot = store.registry()
project = store.config.project
if newer_wins:
    backend = OnlineStore.connect(store.config.redis_url, project).backend
else:
    client = redis.Redis.from_url(store.config.redis_url)
now = datetime.now(UTC)
# Encode outside the clock: the limit is the query plus the writes of the same bytes.
query_s = write_s = 0.0
rows = 0
with connection(store.config.duckdb_path, read_only=True) as con:
    for view in snapshot.views.values():
        if view.aggregations:  # tiles, not newest rows: the api and cli modes skip them too
            continue
        sql, params = newest_rows_sql(project, _Plan(view, None, now, None), now)
        t = time.perf_counter()
        table = con.sql(sql, params=params).to_arrow_table()
        query_s += time.perf_counter() - t
        keys, values, expire_at = encode_rows(project, view, ViewCodec(view), table, 0, now)
        rows += len(keys)
        t = time.perf_counter()
        for i in range(0, len(keys), BATCH_ROWS):
            part = slice(i, i + BATCH_ROWS)
            if newer_wins:
                backend.write(keys[part], values[part], expire_at[part], newer_wins=True)
                continue
            pipe = client.pipeline(transaction=False)
            for k, v in zip(keys[part], values[part]):
                pipe.set(k, v)
            pipe.execute()
        write_s += time.perf_counter() - t
print(json.dumps({"seconds": query_s + write_s, "query_s": query_s, "write_s": write_s, "entities": rows}))
"""


# spark-api's child: spark_materialize_worker below, with the benchmarks folder importable.
SPARK_CHILD = """
import sys
sys.path.insert(0, sys.argv[2])
from online import spark_materialize_worker
spark_materialize_worker(sys.argv[1])
"""

# What each mode of bench_materialize runs: FeatureStore.materialize() in process, the whole
# `featurestore materialize` command, and two limits (LIMIT_CHILD's argument); spark-api and
# spark-cli are the first two on the Spark engine (spark_run).
MATERIALIZE_MODES = {"api": "", "cli": "", "limit": "set", "raw": "newer_wins"}
# The views api and cli materialize: those the limit writes (an aggregation view's tiles have
# no plain-SET equivalent).
PLAIN_VIEWS = "driver_stats,customer_profile"


def bench_materialize(
    repo: Path,
    env: dict[str, str],
    runs: int,
    modes: tuple[str, ...] = ("limit", "api", "cli"),
    spark_repo: Path | None = None,
) -> dict[str, Any]:
    """Each mode ``runs`` times, interleaved, into the online store at FEATURESTORE_REDIS_URL
    (one Redis or a cluster), emptied before each; ``modes`` must include "api" or "spark-api"
    (spark modes run on ``spark_repo``)."""
    url = env["FEATURESTORE_REDIS_URL"]
    results: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
    for i in range(runs):
        for mode in modes:
            flush_online(url)
            if mode.startswith("spark-"):
                assert spark_repo is not None
                wipe_online_state(spark_repo)
                results[mode].append(spark_run(mode, spark_repo, env, i))
                continue
            wipe_online_state(repo)
            if mode == "cli":
                seconds, rss = timed_process(
                    [str(BIN / "featurestore"), "materialize", "--views", PLAIN_VIEWS, "--repo", str(repo)],
                    env,
                )
                results[mode].append({"seconds": seconds, "peak_rss_mib": rss})
                continue
            code, arg = (
                (MATERIALIZE_CHILD, str(HERE)) if mode == "api" else (LIMIT_CHILD, MATERIALIZE_MODES[mode])
            )
            views = [PLAIN_VIEWS] if mode == "api" else []
            proc = subprocess.Popen(
                [str(BIN / "python"), "-c", code, str(repo), arg, *views],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            _, status, usage = os.wait4(proc.pid, 0)
            assert proc.stdout is not None and proc.stderr is not None
            if status != 0:
                raise RuntimeError(proc.stderr.read().decode())
            # The last line: DuckDB draws its progress bar on stdout when a query takes seconds.
            row = json.loads(proc.stdout.read().splitlines()[-1])
            row["peak_rss_mib"] = usage.ru_maxrss / 1024
            results[mode].append(row)
    # The whole-command runs read as many rows as the in-process ones.
    api = results["api" if "api" in results else "spark-api"]
    rows = api[0]["rows"]
    entities = api[0]["entities"]
    summary: dict[str, Any] = {"rows": rows, "entities": entities}
    for mode, rs in results.items():
        secs = [r["seconds"] for r in rs]
        summary[mode] = {
            "seconds_median": statistics.median(secs),
            "seconds_min": min(secs),
            "seconds_max": max(secs),
            "rows_per_s": rows / statistics.median(secs),
            "entities_per_s": entities / statistics.median(secs),
            "peak_rss_mib": max(r["peak_rss_mib"] for r in rs),
        }
        if mode.startswith("spark-"):
            for key in ("peak_python_rss_mib", "peak_jvm_rss_mib", "peak_tree_rss_mib"):
                summary[mode][key] = max(r[key] for r in rs)
            summary[mode]["runs"] = rs
    for mode in ("api", "spark-api"):
        if mode in results:
            summary[mode]["first_call_s"] = statistics.median(r["first_call_s"] for r in results[mode])
    if "spark-api" in results:
        summary["spark-api"].update(spark_parts(results["spark-api"]))
    for mode in ("limit", "raw"):
        if mode in results:
            summary[mode]["query_s"] = statistics.median(r["query_s"] for r in results[mode])
            summary[mode]["write_s"] = statistics.median(r["write_s"] for r in results[mode])
            summary[mode]["keys_written"] = results[mode][0]["entities"]  # = entities: the same keys
    return summary


def spark_parts(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Where spark-api's time went, from its median run (by the measured run's seconds)."""
    run = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
    keys = ("session_s", "first_call_s", "views_s", "job_s", "cpu_s", "compute_s", "instrumented_s",
            "writing_s", "slowest_writing_s")
    return {"median_run": {"run_s": run["seconds"], "bookkeeping_s": run["seconds"] - run["views_s"],
                           **{k: run[k] for k in keys}}}


def spark_run(mode: str, repo: Path, env: dict[str, str], i: int) -> dict[str, Any]:
    """One spark-api or spark-cli run, its process tree's memory sampled (the JVM is a child)."""
    from training_sets import measure, worker_output

    if mode == "spark-cli":
        cmd = [str(BIN / "featurestore"), "materialize", "--repo", str(repo)]
    else:
        cmd = [str(BIN / "python"), "-c", SPARK_CHILD, str(repo), str(HERE)]
    log = repo.parent / f"{mode}-{i}.log"
    run = measure(cmd, repo.parent / "spark-tmp", log, recursive=True, env=env)
    row: dict[str, Any] = {
        "seconds": run.seconds,
        "peak_rss_mib": run.peak_rss_mib,
        "peak_python_rss_mib": run.peak_python_rss_mib,
        "peak_jvm_rss_mib": run.peak_jvm_rss_mib,
        "peak_tree_rss_mib": run.peak_tree_rss_mib,
    }
    if mode == "spark-api":
        row.update(worker_output(log))  # its seconds are the measured run's, not the process's
        row["process_s"] = run.seconds
    return row


def spark_materialize_worker(repo_text: str) -> None:
    """spark-api, in its own process: where a Spark materialization's time goes.

    The session's start (JVM); a first ``materialize()`` (Python workers start and import
    featurestore, code warms up); then, Redis and the watermarks wiped, the measured run and
    Spark's figures for its jobs. Then the run's data step again, twice each, the faster kept:
    Spark's compute alone (each view's newest rows to Spark's no-op sink), and, Redis wiped
    again, the run's own task function (``_write_partition``) timed inside each task, which
    splits the task's time into waiting for its rows (Spark's compute and the hand-off to
    Python) and encoding and writing them to Redis.
    """
    from datetime import UTC, datetime

    import pyspark.sql  # noqa: F401  (imports are start-up, not materialization)
    from spark_engine import spark_figures

    from featurestore import FeatureStore
    from featurestore.offline.spark.session import spark_session, stop_sessions
    from featurestore.offline.spark.warehouse import live_dirs
    from featurestore.online.spark_materialize import SparkRange, _write_partition, _WriteTask, newest_rows
    from featurestore.storage import connection

    repo = Path(repo_text)
    store = FeatureStore(repo)
    started = time.perf_counter()
    spark = spark_session(store.config.spark)
    session = time.perf_counter() - started
    started = time.perf_counter()
    store.materialize()
    first = time.perf_counter() - started
    flush_online(store.config.redis_url)
    wipe_online_state(repo)
    context = spark.sparkContext
    context.setJobGroup("run", "the measured materialize()")
    started = time.perf_counter()
    result = store.materialize()
    seconds = time.perf_counter() - started
    jobs = context.statusTracker().getJobIdsForGroup("run")

    config = store.config
    now = datetime.now(UTC)
    views = [v for v in store.registry().views.values() if v.online]
    with connection(config.duckdb_path, read_only=True) as con:
        dirs = {v.name: live_dirs(con, config.project, v.name, config.spark.warehouse) for v in views}
    ranges = [SparkRange(v, None, now, None) for v in views if dirs[v.name]]
    frames = [(r.view, newest_rows(spark, dirs[r.view.name], r, now)) for r in ranges]

    def timed(task: Any) -> Any:
        def run(batches: Any) -> Any:
            import time

            import pyarrow as pa

            waited = 0.0

            def feed() -> Any:  # the batches, the time spent waiting for each counted
                nonlocal waited
                source = iter(batches)
                while True:
                    began = time.perf_counter()
                    batch = next(source, None)
                    waited += time.perf_counter() - began
                    if batch is None:
                        return
                    yield batch

            began = time.perf_counter()
            for _ in _write_partition(feed(), task):
                pass
            total = time.perf_counter() - began
            yield pa.RecordBatch.from_pydict({"waited": [waited], "writing": [total - waited]})

        return run

    compute = instrumented = writing = slowest = float("inf")
    for _ in range(2):
        started = time.perf_counter()
        for _view, frame in frames:
            frame.write.format("noop").mode("overwrite").save()
        compute = min(compute, time.perf_counter() - started)
        flush_online(config.redis_url)
        started = time.perf_counter()
        tasks = []
        for view, frame in frames:
            task = _WriteTask(config.redis_url, config.project, view, result.run_id, now)
            tasks += frame.mapInArrow(timed(task), "waited double, writing double").collect()
        if time.perf_counter() - started < instrumented:
            instrumented = time.perf_counter() - started
            writing = sum(t.writing for t in tasks)
            slowest = max(t.writing for t in tasks)
    figures = spark_figures(spark, result.rows_read, job_ids=jobs)
    stop_sessions()
    parts = {
        "session_s": session,
        "views_s": sum(v.seconds for v in result.views),  # the run's data steps
        "job_s": figures.get("job_seconds", 0.0),  # the run's Spark jobs, wall
        "cpu_s": figures.get("executor_cpu_seconds", 0.0),  # the run's tasks, JVM CPU
        "compute_s": compute,  # alone, after the run
        "instrumented_s": instrumented,  # the data steps' jobs again, tasks timed inside
        "writing_s": writing,  # their encoding and Redis writes, summed over tasks
        "slowest_writing_s": slowest,  # the same, the longest of one task
    }
    print(json.dumps({
        "seconds": seconds,
        "first_call_s": first,
        "rows": result.rows_read,
        "entities": sum(v.entities for v in result.views),
        **parts,
        "spark": figures,
    }))


def prepare_spark(repo: Path, scale: str, env: dict[str, str]) -> Path:
    """``repo`` copied beside it as repo-spark, over the same data, switched to Spark local[2],
    applied and ingested by Spark (timed: printed)."""
    from spark_engine import use_spark

    spark_repo = repo.parent / "repo-spark"
    shutil.rmtree(spark_repo, ignore_errors=True)
    spark_repo.mkdir()
    for item in repo.iterdir():
        if item.suffix == ".py" or item.name == "featurestore.toml":
            shutil.copy(item, spark_repo / item.name)
    (spark_repo / "data").symlink_to(Path("..") / repo.name / "data")
    use_spark(spark_repo, scale)
    run_cli(env, "apply", "--repo", str(spark_repo))
    started = time.perf_counter()
    run_cli(env, "materialize", "--offline", "--repo", str(spark_repo))
    print(f"spark ingestion: {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return spark_repo


def flush_online(url: str) -> None:
    """Empty the online store at ``url``: one Redis, or every master of a cluster (the
    replicas follow). The materialization children import it too."""
    import redis
    from redis.cluster import RedisCluster

    from featurestore.redis_urls import is_cluster, parse_cluster_url

    if not is_cluster(url):
        client = redis.Redis.from_url(url)
        client.flushall()
        client.close()
        return
    host, port = parse_cluster_url(url).seeds[0]
    cluster = RedisCluster(host=host, port=port)
    cluster.flushall(target_nodes=RedisCluster.PRIMARIES)
    cluster.close()


def wipe_online_state(repo: Path) -> None:
    """Forget watermarks so each materialization run does the whole window again."""
    import duckdb

    con = duckdb.connect(str(repo / ".featurestore" / "store.duckdb"))
    try:
        con.execute("DELETE FROM rides.online_watermarks")
    except duckdb.CatalogException:
        pass
    finally:
        con.close()


# -- lookups ------------------------------------------------------------------------------------


def grpc_body(driver_ids: list[int], customer_ids: list[int]) -> bytes:
    from featurestore.serving.v1 import serving_pb2 as pb

    request = pb.GetOnlineFeaturesRequest(feature_service=SERVICE)
    request.entities["driver_id"].int64_values.values.extend(driver_ids)
    request.entities["customer_id"].int64_values.values.extend(customer_ids)
    message = request.SerializeToString()
    return b"\x00" + len(message).to_bytes(4, "big") + message


def h2load_command(
    url: str, body_file: Path | str, concurrency: int, seconds: float, *extra: str
) -> list[str]:
    """h2load with ``concurrency`` connections of one stream each, one thread, for ``seconds``,
    sending ``body_file`` in every request."""
    return [
        "h2load", "-c", str(concurrency), "-m", "1", "-t", "1", "-D", str(seconds),
        "-d", str(body_file), *extra, url,
    ]


def h2load(url: str, body: bytes, concurrency: int, seconds: float, extra: list[str]) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "body"
        data.write_bytes(body)
        log = Path(tmp) / "log"
        logged = ["--warm-up-time", "1", "--log-file", str(log)]
        cmd = h2load_command(url, data, concurrency, seconds, *logged, *extra)
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        lines = [line.split("\t") for line in log.read_text().splitlines() if line]
    ok = [float(f[2]) for f in lines if f[1] == "200"]
    if not ok or "succeeded" not in out:
        raise RuntimeError(f"h2load failed: {out}")
    failed = len(lines) - len(ok)
    return {"rps": len(ok) / seconds, "failed": failed, **percentiles(ok)}


def redis_benchmark(port: int, keys: list[str], concurrency: int, requests: int) -> dict[str, float]:
    out = (
        subprocess.run(
            [
                "redis-benchmark",
                "-p",
                str(port),
                "-c",
                str(concurrency),
                "-n",
                str(requests),
                "--csv",
                "MGET",
                *keys,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .splitlines()
    )
    header = [h.strip('"') for h in out[0].split(",")]
    values = [v.strip('"') for v in out[-1].split(",")]
    row = dict(zip(header, values, strict=True))
    return {
        "rps": float(row["rps"]),
        "p50_ms": float(row["p50_latency_ms"]),
        "p99_ms": float(row["p99_latency_ms"]),
    }


ECHO_SERVER = """
import asyncio, sys, grpc
response = open(sys.argv[2], "rb").read()
async def handler(request, context):
    return response
async def main():
    server = grpc.aio.server(options=[("grpc.so_reuseport", 1)])
    method = grpc.unary_unary_rpc_method_handler(handler, request_deserializer=None, response_serializer=None)
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        "featurestore.serving.v1.FeatureServing", {"GetOnlineFeatures": method})])
    server.add_insecure_port("127.0.0.1:" + sys.argv[1])
    await server.start()
    await server.wait_for_termination()
asyncio.run(main())
"""


def bench_lookups(
    repo: Path, env: dict[str, str], redis_port: int, seconds: float, concurrencies: list[int], workers: int
) -> dict[str, Any]:
    import pyarrow.parquet as pq

    from featurestore import Client, FeatureStore
    from featurestore.config import load_config
    from featurestore.serving.v1 import serving_pb2 as pb

    rows = pq.read_table(repo / "data" / "entity_rows.parquet", columns=["driver_id", "customer_id"])
    drivers = rows.column("driver_id").to_pylist()
    customers = rows.column("customer_id").to_pylist()
    store = FeatureStore(repo, config=load_config(repo, env=env))  # this process's env has no Redis URL
    results: dict[str, Any] = {"workers": workers, "seconds_per_point": seconds, "points": []}
    grpc_port, http_port = free_port(), free_port()
    serve_cmd = serve_command(repo, grpc_port, http_port, "--workers", str(workers))
    with background(serve_cmd, grpc_port, env):
        wait_port(http_port)
        for n in (1, 100):
            entities = {"driver_id": drivers[:n], "customer_id": customers[:n]}
            body = grpc_body(drivers[:n], customers[:n])
            with Client(f"127.0.0.1:{grpc_port}") as client:  # the body answers, with values
                answer = client.get_online_features(SERVICE, entities)
                present = sum(s == "PRESENT" for s in answer.statuses["conv_rate"])
            response = store.get_online_features(SERVICE, entities)
            plan = store.online_registry().plan(SERVICE)
            keys = plan.keys(*plan.entity_columns(entities))
            echo_bytes = _response_bytes(pb, grpc_port, body)
            json_body = json.dumps({"feature_service": SERVICE, "entities": entities}).encode()
            del response
            for c in concurrencies:
                point: dict[str, Any] = {"entities": n, "concurrency": c, "present": present}
                point["grpc"] = h2load(
                    f"http://127.0.0.1:{grpc_port}{METHOD}",
                    body,
                    c,
                    seconds,
                    ["-H", "content-type: application/grpc", "-H", "te: trailers"],
                )
                point["http"] = h2load(
                    f"http://127.0.0.1:{http_port}/v1/online-features",
                    json_body,
                    c,
                    seconds,
                    ["--h1", "-H", "content-type: application/json"],
                )
                point["echo"] = echo_limit(echo_bytes, body, c, seconds, workers)
                point["redis"] = redis_benchmark(redis_port, keys, c, max(2000, int(seconds * 5000)))
                results["points"].append(point)
                print(
                    f"  {n} entities, concurrency {c}: grpc {point['grpc']['rps']:.0f}/s "
                    f"p99 {point['grpc']['p99_ms']:.2f} ms; echo {point['echo']['rps']:.0f}/s; "
                    f"http {point['http']['rps']:.0f}/s",
                    file=sys.stderr,
                )
            results.setdefault("in_process", []).append(in_process(store, entities, keys, env))
    store.close()
    return results


def _response_bytes(pb: Any, port: int, body: bytes) -> bytes:
    import grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
        return bytes(call(body[5:], timeout=5))


def echo_limit(
    response: bytes, body: bytes, concurrency: int, seconds: float, workers: int
) -> dict[str, float]:
    port = free_port()
    with tempfile.NamedTemporaryFile() as f:
        f.write(response)
        f.flush()
        procs = [
            subprocess.Popen([str(BIN / "python"), "-c", ECHO_SERVER, str(port), f.name])
            for _ in range(workers)
        ]
        try:
            wait_port(port)
            time.sleep(0.5)
            return h2load(
                f"http://127.0.0.1:{port}{METHOD}",
                body,
                concurrency,
                seconds,
                ["-H", "content-type: application/grpc", "-H", "te: trailers"],
            )
        finally:
            for p in procs:
                p.terminate()
                p.wait()


def in_process(
    store: Any, entities: dict[str, list[int]], keys: list[str], env: dict[str, str], iterations: int = 3000
) -> dict[str, Any]:
    import redis

    raw = redis.Redis.from_url(env["FEATURESTORE_REDIS_URL"])
    ours: list[float] = []
    limit: list[float] = []
    for _ in range(iterations):  # interleaved so both see the same machine
        t = time.perf_counter_ns()
        store.get_online_features(SERVICE, entities)
        ours.append((time.perf_counter_ns() - t) / 1000)
        t = time.perf_counter_ns()
        raw.mget(keys)
        limit.append((time.perf_counter_ns() - t) / 1000)
    raw.close()
    return {
        "entities": len(entities["driver_id"]),
        "ours": percentiles(ours),
        "redis_mget": percentiles(limit),
    }


# -- one Redis against a Redis Cluster -----------------------------------------------------------


def _cluster_port() -> int:
    """A free port whose cluster bus port (10000 above) is free too."""
    while True:
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port + 10000)) != 0:
                return port


@contextmanager
def redis_cluster(workdir: Path) -> Iterator[str]:
    """A local cluster of 3 masters and 3 replicas; its redis+cluster:// URL."""
    ports = [str(_cluster_port()) for _ in range(6)]
    script = ROOT / "scripts" / "redis_cluster.sh"
    subprocess.run([str(script), "start", str(workdir), *ports], check=True, stdout=subprocess.DEVNULL)
    try:
        yield f"redis+cluster://127.0.0.1:{ports[0]},127.0.0.1:{ports[1]}/"
    finally:
        subprocess.run([str(script), "stop", str(workdir)], check=True)


def copy_keys(source_url: str, cluster_url: str) -> int:
    """Every key of one Redis into the cluster (value and expiry): the same bytes on both."""
    import redis
    from redis.cluster import RedisCluster

    from featurestore.redis_urls import parse_cluster_url

    host, port = parse_cluster_url(cluster_url).seeds[0]
    source, target = redis.Redis.from_url(source_url), RedisCluster(host=host, port=port)
    n = 0
    for key in source.scan_iter(count=1000):
        target.restore(key, max(int(source.pttl(key)), 0), source.dump(key), replace=True)
        n += 1
    source.close()
    target.close()
    return n


def masters(url: str) -> int:
    """How many masters serve the online store at ``url`` (1 for one Redis)."""
    from redis.cluster import RedisCluster

    from featurestore.redis_urls import is_cluster, parse_cluster_url

    if not is_cluster(url):
        return 1
    host, port = parse_cluster_url(url).seeds[0]
    cluster = RedisCluster(host=host, port=port)
    try:
        return len(cluster.get_primaries())
    finally:
        cluster.close()


def cluster_materialize(
    repo: Path, env: dict[str, str], targets: dict[str, str], runs: int
) -> dict[str, Any]:
    """FeatureStore.materialize() beside the raw newer-wins write of the same keys through the
    same backend (bench_materialize's "api" and "raw"), on each target; rows/s per master too."""
    result: dict[str, Any] = {}
    for where, url in targets.items():
        m = bench_materialize(repo, {**env, "FEATURESTORE_REDIS_URL": url}, runs, ("raw", "api"))
        m["masters"] = masters(url)
        for mode in ("raw", "api"):
            m[mode]["rows_per_s_per_master"] = m[mode]["rows_per_s"] / m["masters"]
        m["api_over_raw"] = m["api"]["rows_per_s"] / m["raw"]["rows_per_s"]
        result[where] = m
        print(
            f"  {where} ({m['masters']} master(s)): materialize {m['api']['rows_per_s']:,.0f} rows/s, "
            f"raw newer-wins write {m['raw']['rows_per_s']:,.0f} rows/s (whole/raw {m['api_over_raw']:.2f})",
            file=sys.stderr,
        )
    result["cluster_over_one"] = {
        mode: result["cluster"][mode]["rows_per_s"] / result["one"][mode]["rows_per_s"]
        for mode in ("raw", "api")
    }
    return result


def client_limit(url: str, keys: list[str], concurrency: int, seconds: float) -> dict[str, float]:
    """The serving client alone: ``concurrency`` callers reading ``keys`` in a loop."""
    import asyncio

    from featurestore.online.aiocluster import AsyncRedisCluster
    from featurestore.online.aioredis import AsyncRedis
    from featurestore.redis_urls import is_cluster

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        cluster = AsyncRedisCluster(url) if is_cluster(url) else None
        single = None if cluster else AsyncRedis(url)

        async def read() -> object:
            if cluster is not None:
                return await cluster.mget(keys, loop.time() + 5)
            assert single is not None
            return await single.mget(keys)

        await read()  # connections (and the slot map) first
        latencies: list[float] = []
        end = loop.time() + seconds

        async def caller() -> None:
            while loop.time() < end:
                t = time.perf_counter_ns()
                await read()
                latencies.append((time.perf_counter_ns() - t) / 1000)

        await asyncio.gather(*(caller() for _ in range(concurrency)))
        await (cluster or single).aclose()  # type: ignore[union-attr]
        return latencies

    latencies = asyncio.run(main())
    return {"rps": len(latencies) / seconds, **percentiles(latencies)}


def bench_cluster(
    repo: Path, env: dict[str, str], seconds: float, concurrencies: list[int], runs: int
) -> dict[str, Any]:
    import pyarrow.parquet as pq

    from featurestore import FeatureStore
    from featurestore.config import load_config

    rows = pq.read_table(repo / "data" / "entity_rows.parquet", columns=["driver_id", "customer_id"])
    drivers = rows.column("driver_id").to_pylist()
    customers = rows.column("customer_id").to_pylist()
    store = FeatureStore(repo, config=load_config(repo, env=env))
    plan = store.online_registry().plan(SERVICE)
    single_url = env["FEATURESTORE_REDIS_URL"]
    points: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, redis_cluster(Path(tmp)) as cluster_url:
        copied = copy_keys(single_url, cluster_url)
        print(f"  {copied:,} keys copied into the cluster", file=sys.stderr)
        for where, url in (("one", single_url), ("cluster", cluster_url)):
            grpc_port, http_port = free_port(), free_port()
            serve = [
                str(BIN / "featurestore"), "serve", "--repo", str(repo),
                "--grpc-port", str(grpc_port), "--http-port", str(http_port),
            ]
            with background(serve, grpc_port, {**env, "FEATURESTORE_REDIS_URL": url}):
                for n in (1, 100):
                    entities = {"driver_id": drivers[:n], "customer_id": customers[:n]}
                    keys = plan.keys(*plan.entity_columns(entities))
                    body = grpc_body(drivers[:n], customers[:n])
                    for c in concurrencies:
                        grpc_point = h2load(
                            f"http://127.0.0.1:{grpc_port}{METHOD}", body, c, seconds,
                            ["-H", "content-type: application/grpc", "-H", "te: trailers"],
                        )
                        limit = client_limit(url, keys, c, seconds)
                        point = {"where": where, "entities": n, "concurrency": c}
                        points.append({**point, "grpc": grpc_point, "client": limit})
                        print(
                            f"  {where}: {n} entities, concurrency {c}: grpc {grpc_point['rps']:.0f}/s "
                            f"p99 {grpc_point['p99_ms']:.2f} ms; client alone {limit['rps']:.0f}/s",
                            file=sys.stderr,
                        )
        store.close()
        # After the lookups: each run empties the target first.
        print("  materialization ...", file=sys.stderr)
        materialize = cluster_materialize(repo, env, {"one": single_url, "cluster": cluster_url}, runs)
    return {
        "seconds_per_point": seconds,
        "keys_copied": copied,
        "points": points,
        "runs": runs,
        "materialize": materialize,
    }


def cluster_markdown(result: dict[str, Any]) -> str:
    """One Redis beside the cluster per point; cost ratio = one Redis's req/s / the cluster's."""
    points = {(p["where"], p["entities"], p["concurrency"]): p for p in result["cluster"]["points"]}
    lines = [
        "| entities | conc. | gRPC req/s one Redis | gRPC req/s cluster | cost ratio | p99 ms one | "
        "p99 ms cluster | client req/s one | client req/s cluster | client cost ratio |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (where, n, c), one in points.items():
        if where != "one":
            continue
        cl = points[("cluster", n, c)]
        lines.append(
            f"| {n} | {c} | {one['grpc']['rps']:,.0f} | {cl['grpc']['rps']:,.0f} | "
            f"{one['grpc']['rps'] / cl['grpc']['rps']:.2f} | {one['grpc']['p99_ms']:.2f} | "
            f"{cl['grpc']['p99_ms']:.2f} | {one['client']['rps']:,.0f} | {cl['client']['rps']:,.0f} | "
            f"{one['client']['rps'] / cl['client']['rps']:.2f} |"
        )
    m = result["cluster"]["materialize"]
    one, cl = m["one"], m["cluster"]
    lines += [
        "",
        f"Materialization: {one['rows']:,} rows, {one['entities']:,} keys; "
        f"{result['cluster']['runs']} run(s), median. raw: the newer-wins write of the same keys through "
        "the same backend (with the DuckDB query); whole: FeatureStore.materialize() in process.",
        "",
        f"| materialization | rows/s one Redis | rows/s cluster | cluster/one | "
        f"rows/s per master, one ({one['masters']}) | rows/s per master, cluster ({cl['masters']}) |",
        "|---|---|---|---|---|---|",
    ]
    for mode, label in (("raw", "raw newer-wins write"), ("api", "whole (materialize)")):
        lines.append(
            f"| {label} | {one[mode]['rows_per_s']:,.0f} | {cl[mode]['rows_per_s']:,.0f} | "
            f"{m['cluster_over_one'][mode]:.2f} | {one[mode]['rows_per_s_per_master']:,.0f} | "
            f"{cl[mode]['rows_per_s_per_master']:,.0f} |"
        )
    lines.append(f"| whole/raw | {one['api_over_raw']:.2f} | {cl['api_over_raw']:.2f} | | | |")
    return "\n".join(lines)


# -- report --------------------------------------------------------------------------------------


def markdown(result: dict[str, Any]) -> str:
    m = result["materialize"]
    lines = [
        f"Scale {result['scale']}: {m['rows']:,} rows in the window, {m['entities']:,} entities; "
        f"{result['lookups']['workers']} server worker(s); {result['runs']} runs (median, min-max).",
        "",
        "| materialization | seconds | rows/s | entities/s | peak RSS MiB | limit / ours |",
        "|---|---|---|---|---|---|",
    ]
    for mode in ("api", "cli", "spark-api", "spark-cli", "limit"):
        if mode not in m:
            continue
        r = m[mode]
        ratio = m["limit"]["seconds_median"] / r["seconds_median"]
        # Spark's JVM is a child the driver never waits for: its memory is the sampled tree's.
        rss = r.get("peak_tree_rss_mib", r["peak_rss_mib"])
        lines.append(
            f"| {mode} | {r['seconds_median']:.2f} ({r['seconds_min']:.2f}-{r['seconds_max']:.2f}) | "
            f"{r['rows_per_s']:,.0f} | {r['entities_per_s']:,.0f} | {rss:.0f} | {ratio:.2f} |"
        )
        first = r.get("first_call_s")
        if first is not None:
            lines.append(
                f"| {mode}, first call of a process | {first:.2f} | {m['rows'] / first:,.0f} | "
                f"{m['entities'] / first:,.0f} | | {m['limit']['seconds_median'] / first:.2f} |"
            )
    spark = m.get("spark-api", {}).get("median_run")
    if spark:
        parts = ("session_s", "first_call_s", "run_s", "bookkeeping_s", "views_s", "job_s", "cpu_s",
                 "compute_s", "instrumented_s", "writing_s", "slowest_writing_s")
        lines += [
            "",
            "spark-api's median run, where the time goes (s): the run is its views' data steps "
            "(Spark jobs, and the driver's planning and listing around them) plus bookkeeping; "
            "after it, the data steps again: Spark's compute alone (no-op sink), and the run's task "
            "function timed inside each task (encode + Redis writes, summed over tasks and the "
            "slowest task's).",
            "",
            "| session start (JVM) | first call | the run | bookkeeping | views' data steps "
            "| their Spark jobs, wall | JVM task CPU | again: compute alone | again: with writes, timed "
            "| encode + Redis writes, all tasks | slowest task's |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
            "| " + " | ".join(f"{spark[k]:.2f}" for k in parts) + " |",
        ]
    if not result["lookups"]["points"]:
        return "\n".join(lines)
    lines += [
        "",
        "| entities | conc. | gRPC req/s | p50 ms | p99 ms | p999 ms | echo req/s | gRPC/echo | "
        "Redis MGET req/s | Redis p99 ms | HTTP req/s | HTTP p99 ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in result["lookups"]["points"]:
        g, e, r, h = p["grpc"], p["echo"], p["redis"], p["http"]
        lines.append(
            f"| {p['entities']} | {p['concurrency']} | {g['rps']:,.0f} | {g['p50_ms']:.2f} | "
            f"{g['p99_ms']:.2f} | "
            f"{g['p999_ms']:.2f} | {e['rps']:,.0f} | {g['rps'] / e['rps']:.2f} | {r['rps']:,.0f} | "
            f"{r['p99_ms']:.2f} | {h['rps']:,.0f} | {h['p99_ms']:.2f} |"
        )
    lines += [
        "",
        "| in process, entities | ours p50 ms | ours p99 ms | raw MGET p50 ms | raw p99 ms |",
        "|---|---|---|---|---|",
    ]
    for r in result["lookups"]["in_process"]:
        lines.append(
            f"| {r['entities']} | {r['ours']['p50_ms']:.3f} | {r['ours']['p99_ms']:.3f} | "
            f"{r['redis_mget']['p50_ms']:.3f} | {r['redis_mget']['p99_ms']:.3f} |"
        )
    return "\n".join(lines)


def chart(result: dict[str, Any], path: Path) -> None:
    """Latency percentiles against concurrency, gRPC beside its echo limit and HTTP."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no chart (make bench installs it)", file=sys.stderr)
        return
    points = result["lookups"]["points"]
    sizes = sorted({p["entities"] for p in points})
    fig, axes = plt.subplots(1, len(sizes), figsize=(6 * len(sizes), 4.5), squeeze=False)
    for ax, n in zip(axes[0], sizes, strict=True):
        ps = [p for p in points if p["entities"] == n]
        xs = [p["concurrency"] for p in ps]
        for kind, style in (("grpc", "-"), ("echo", ":"), ("http", "--")):
            for q, marker in (("p50_ms", "o"), ("p99_ms", "s"), ("p999_ms", "^")):
                ax.plot(xs, [p[kind][q] for p in ps], style, marker=marker, label=f"{kind} {q[:-3]}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.set_xlabel("concurrent callers")
        ax.set_ylabel("latency (ms)")
        ax.set_title(f"GetOnlineFeatures, {n} entit{'y' if n == 1 else 'ies'} x 16 features")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][-1].legend(fontsize=7, ncol=3)
    fig.suptitle(f"{result['command']} ({result['when']})", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", default="small")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5, help="per lookup measurement point")
    parser.add_argument("--concurrency", default="1,8,64")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--materialize-only", action="store_true", help="skip the lookup measurements")
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="only gRPC lookups and materialization: one Redis against a 3-master cluster",
    )
    parser.add_argument(
        "--engine",
        default="duckdb",
        help="comma-separated, of duckdb,spark: the engines materialization's api and cli run on "
        "(spark: spark-api, spark-cli); the limit is DuckDB's either way",
    )
    args = parser.parse_args()
    from spark_engine import engines_arg

    engines = engines_arg(parser, args.engine)
    if args.cluster and engines != ("duckdb",):
        parser.error("--cluster runs on DuckDB only")
    for tool in ("h2load", "redis-server", "redis-benchmark"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is missing: run `make bench` (installs nghttp2-client and redis-server)")
    repo = prepare(args.scale)
    import duckdb
    import grpc
    import redis

    with redis_server() as port:
        # In-process FeatureStore objects read the environment too, not only the subprocesses.
        os.environ["FEATURESTORE_REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
        env = dict(os.environ)
        run_cli(env, "apply", "--repo", str(repo))
        run_cli(env, "materialize", "--offline", "--repo", str(repo))
        if args.cluster:
            run_cli(env, "materialize", "--repo", str(repo))  # into the one Redis, copied to the cluster
            given = args.concurrency != parser.get_default("concurrency")
            concurrencies = [int(c) for c in args.concurrency.split(",")] if given else [1, 8]
            cluster_result = bench_cluster(repo, env, args.seconds, concurrencies, args.runs)
            out = {
                "command": " ".join([".venv/bin/python", "benchmarks/online.py", *sys.argv[1:]]),
                "when": datetime.now(UTC).isoformat(timespec="seconds"),
                "cpus": os.cpu_count(),
                "scale": args.scale,
                "cluster": cluster_result,
            }
            results = ROOT / "benchmarks" / "results"
            results.mkdir(exist_ok=True)
            (results / f"online-{args.scale}-cluster.json").write_text(json.dumps(out, indent=2) + "\n")
            print(cluster_markdown(out))
            return
        spark_repo = prepare_spark(repo, args.scale, env) if "spark" in engines else None
        modes = ("limit", *[m if e == "duckdb" else f"{e}-{m}" for e in engines for m in ("api", "cli")])
        print("materialization ...", file=sys.stderr)
        materialize = bench_materialize(repo, env, args.runs, modes, spark_repo)
        print("lookups ...", file=sys.stderr)
        lookups = (
            {"workers": args.workers, "points": [], "in_process": []}
            if args.materialize_only
            else bench_lookups(
                repo, env, port, args.seconds, [int(c) for c in args.concurrency.split(",")], args.workers
            )
        )
    result = {
        "command": " ".join([".venv/bin/python", "benchmarks/online.py", *sys.argv[1:]]),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "ram_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30),
        },
        "versions": {
            "python": platform.python_version(),
            "duckdb": duckdb.__version__,
            "grpcio": grpc.__version__,
            "redis-py": redis.__version__,
            "redis-server": subprocess.run(
                ["redis-server", "--version"], capture_output=True, text=True
            ).stdout.split()[2],
        },
        "scale": args.scale,
        "runs": args.runs,
        "materialize": materialize,
        "lookups": lookups,
    }
    results = ROOT / "benchmarks" / "results"
    results.mkdir(exist_ok=True)
    name = f"online-{args.scale}" + ("-materialize" if args.materialize_only else "")
    if engines != ("duckdb",):
        name += "-" + "-".join(engines)
        result["versions"]["pyspark"] = __import__("pyspark").__version__
    (results / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    if not args.materialize_only:
        chart(result, results / f"{name}-latency.png")
    print(markdown(result))


if __name__ == "__main__":
    main()

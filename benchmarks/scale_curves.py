"""Scale curves (issue 22, targets 6 and 7): each path's time against its size, beside its limit.

    .venv/bin/python benchmarks/scale_curves.py                       # every point but the large ones
    .venv/bin/python benchmarks/scale_curves.py --lookup-points 1,10,100,1000 \\
        --materialize-points small,medium,large --training-points small,medium,large

Three curves, each point measured beside its limit in the same invocation, interleaved:

  lookup        entities per request (--lookup-points) -> latency of one caller, p50/p99:
                FeatureStore.get_online_features in process and GetOnlineFeatures over gRPC
                (featurestore serve, our Client), service trip_model (16 features, 2 keys
                per entity); limit: redis-py (hiredis) MGET of the same keys, same loop.
                Data: the example repo at --lookup-scale, materialized.
  materialize   data scale (--materialize-points: small 1M driver rows, medium 10M, large
                90M + 10M customer rows) -> the whole `featurestore materialize --views
                driver_stats,customer_profile` process: seconds and peak RSS (ru_maxrss of the
                process, i.e. VmHWM; DuckDB runs inside it). Limits, each its own process that
                reads the newest row per entity with the same DuckDB query, encodes the same
                values and writes them with redis-py/hiredis, whole-process time (query,
                encode and write seconds apart): raw-set, a pipelined SET per key; raw-mset,
                pipelined MSETs of 1,000 keys (the stricter). The aggregation view
                (driver_trips, tiles) is left out of all three: it has no plain-SET
                equivalent. Data ends now (TTLs keep it live), regenerated per scale unless
                --reuse; --memory-limit sets DuckDB's memory_limit for the cli mode.
  training      entity rows (--training-points: small 100k, medium 1M, large 10M) -> seconds
                of benchmarks/training_sets.py's api (in process), cli (process) and its
                hand-written ASOF query (limit), read from its results.json. Points not run
                but on record (--recorded, default: large, from RESULTS.md) are drawn hollow.

Results: benchmarks/results/OUT.json and OUT.png (log-log; --out, default scale-curves), a
Markdown table on stdout. --merge adds the materialization points of other invocations' JSON
(e.g. a large run on its own) to the table and chart; --chart-only JSON redraws without
measuring. Generated data stays under benchmarks/out unless --clean.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from online import (
    BIN,
    OUT,
    ROOT,
    background,
    free_port,
    percentiles,
    prepare,
    redis_server,
    run_cli,
    timed_process,
    wait_port,
    wipe_online_state,
)

HERE = Path(__file__).resolve().parent
SERVICE = "trip_model"
PLAIN_VIEWS = "driver_stats,customer_profile"
SCALE_ROWS = {"small": 1_000_000, "medium": 10_000_000, "large": 100_000_000}
ENTITY_ROWS = {"small": 100_000, "medium": 1_000_000, "large": 10_000_000}

# Training sets at large, on record (RESULTS.md, "Training sets", "Large: 90M driver rows + 10M
# customer rows", default memory_limit, one run each, 2026-11): regenerating 100M rows and
# running the 10M-row join takes ~15 minutes on this machine.
RECORDED_TRAINING = {
    "large": {
        "api": {"seconds": 198.3, "inner_seconds": 197.0, "peak_rss_mib": 20010},
        "cli": {"seconds": 241.4, "inner_seconds": None, "peak_rss_mib": 19952},
        "limit": {"seconds": 174.6, "inner_seconds": 174.3, "peak_rss_mib": 19858},
        "source": "RESULTS.md, Training sets, Large (training_sets.py --scale large --runs 1 --reuse)",
    }
}

# The raw limit of materialization: argv repo, views (comma-separated), "set" (a pipelined SET
# per key) or "mset" (pipelined MSETs of 1,000 keys: fewer Python command objects, the stricter
# limit). Imports are part of the process's time, as they are of the CLI's; the codec is ours
# so the bytes are the same. No expiries: plain writes are what any writer must at least do.
RAW_CHILD = """
import json, sys, time
from datetime import UTC, datetime
import duckdb, redis
from featurestore import FeatureStore
from featurestore.online.codec import ViewCodec
from featurestore.online.materialize import BATCH_ROWS, _Plan, encode_rows, newest_rows_sql
store = FeatureStore(sys.argv[1])
wanted = sys.argv[2].split(",")
mset = sys.argv[3] == "mset"
views = [v for v in store.registry().views.values() if v.name in wanted]
project = store.config.project
client = redis.Redis.from_url(store.config.redis_url)
now = datetime.now(UTC)
query_s = encode_s = write_s = 0.0
keys_written = 0
con = duckdb.connect(str(store.config.duckdb_path), read_only=True)
con.execute("SET enable_progress_bar = false")  # it draws on stdout, where the result goes
for view in views:
    codec = ViewCodec(view)
    sql, params = newest_rows_sql(project, _Plan(view, None, now, None), now)
    t = time.perf_counter()
    reader = con.sql(sql, params=params).to_arrow_reader(BATCH_ROWS)
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            query_s += time.perf_counter() - t
            break
        u = time.perf_counter()
        query_s += u - t
        keys, values, expire_at = encode_rows(project, view, codec, batch, 0, now)
        t = time.perf_counter()
        encode_s += t - u
        pipe = client.pipeline(transaction=False)
        if mset:  # the cheapest form for the client: one command per 1,000 keys
            for i in range(0, len(keys), 1000):
                pipe.mset(dict(zip(keys[i : i + 1000], values[i : i + 1000])))
        else:
            for k, v in zip(keys, values):
                pipe.set(k, v)
        pipe.execute()
        keys_written += len(keys)
        u = time.perf_counter()
        write_s += u - t
        t = u
con.close()
print(json.dumps({"query_s": query_s, "encode_s": encode_s, "write_s": write_s, "keys": keys_written}))
"""


# -- materialization ----------------------------------------------------------------------------


def flush_online(url: str) -> None:
    """Empty the one Redis: FLUSHALL of millions of keys (large) outlasts redis-py's timeout."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=600)
    client.flushall()
    client.close()


def raw_process(repo: Path, env: dict[str, str], write: str) -> dict[str, Any]:
    """The raw limit (``write``: set or mset) as a whole process: seconds, peak RSS, its parts."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [str(BIN / "python"), "-c", RAW_CHILD, str(repo), PLAIN_VIEWS, write],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    assert proc.stdout is not None and proc.stderr is not None
    if status != 0:
        raise RuntimeError(proc.stderr.read().decode())
    row = json.loads(next(x for x in proc.stdout.read().splitlines() if x.startswith(b'{"query_s"')))
    return {"seconds": seconds, "peak_rss_mib": usage.ru_maxrss / 1024, **row}


def prepared_repo(scale: str, env: dict[str, str], reuse: bool) -> tuple[Path, float | None, float | None]:
    """The example repo at ``scale``, generated, applied and ingested (with ``reuse``, an earlier
    one if there is one): (repo, generate seconds, ingest seconds; None when reused)."""
    repo = OUT / f"online-{scale}" / "repo"
    if reuse and (repo / ".featurestore" / "store.duckdb").exists():
        return repo, None, None
    t = time.perf_counter()
    repo = prepare(scale)
    generate_s = time.perf_counter() - t
    run_cli(env, "apply", "--repo", str(repo))
    t = time.perf_counter()
    run_cli(env, "materialize", "--offline", "--repo", str(repo))
    return repo, generate_s, time.perf_counter() - t


MODES = ("raw-set", "raw-mset", "cli")  # cli last: Redis then holds a run's values for the lookups


def bench_materialize(
    scale: str, runs: int, env: dict[str, str], memory_limit: str | None, reuse: bool
) -> dict[str, Any]:
    """Prepare ``scale`` (generate, apply, ingest; with ``reuse`` an earlier prepared repo),
    then each mode interleaved ``runs`` times, Redis emptied and watermarks wiped before each."""
    repo, generate_s, ingest_s = prepared_repo(scale, env, reuse)
    cli_env = {**env, "FEATURESTORE_DUCKDB_MEMORY_LIMIT": memory_limit} if memory_limit else env
    url = env["FEATURESTORE_REDIS_URL"]
    runs_of: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    cmd = [str(BIN / "featurestore"), "materialize", "--views", PLAIN_VIEWS, "--repo", str(repo)]
    for i in range(runs):
        for mode in MODES:
            flush_online(url)
            wipe_online_state(repo)
            loadavg = float(Path("/proc/loadavg").read_text().split()[0])
            if mode == "cli":
                seconds, rss = timed_process(cmd, cli_env)
                row: dict[str, Any] = {"seconds": seconds, "peak_rss_mib": rss}
            else:
                row = raw_process(repo, env, mode.removeprefix("raw-"))
            runs_of[mode].append({**row, "loadavg": loadavg})
            print(
                f"  {scale} run {i + 1}/{runs} {mode}: {row['seconds']:.2f} s, "
                f"peak RSS {row['peak_rss_mib']:.0f} MiB (load {loadavg})",
                file=sys.stderr,
            )
    import duckdb

    con = duckdb.connect(str(repo / ".featurestore" / "store.duckdb"), read_only=True)
    rows = {
        v: con.execute(f"SELECT count(*) FROM rides.offline_{v}").fetchone()[0]  # type: ignore[index]
        for v in PLAIN_VIEWS.split(",")
    }
    con.close()
    summary: dict[str, Any] = {
        "scale": scale,
        "repo": str(repo),
        "offline_rows": rows,
        "keys_written": runs_of["raw-set"][0]["keys"],
        "generate_s": generate_s,
        "ingest_s": ingest_s,
        "memory_limit": memory_limit,
        "runs": runs_of,
    }
    for mode, rs in runs_of.items():
        summary[mode] = {
            "seconds_median": statistics.median(r["seconds"] for r in rs),
            "seconds_min": min(r["seconds"] for r in rs),
            "seconds_max": max(r["seconds"] for r in rs),
            "peak_rss_mib": max(r["peak_rss_mib"] for r in rs),
        }
        if mode != "cli":
            for part in ("query_s", "encode_s", "write_s"):
                summary[mode][part] = statistics.median(r[part] for r in rs)
    for mode in ("raw-set", "raw-mset"):
        summary[f"cli_over_{mode}"] = summary["cli"]["seconds_median"] / summary[mode]["seconds_median"]
    return summary


# -- lookups -------------------------------------------------------------------------------------


def bench_lookups(repo: Path, env: dict[str, str], sizes: list[int], iterations: int) -> list[dict[str, Any]]:
    """One caller, interleaved: in process, over gRPC, and the raw MGET of the same keys."""
    import pyarrow.parquet as pq
    import redis

    from featurestore import Client, FeatureStore
    from featurestore.config import load_config

    rows = pq.read_table(repo / "data" / "entity_rows.parquet", columns=["driver_id", "customer_id"])
    drivers = rows.column("driver_id").to_pylist()
    customers = rows.column("customer_id").to_pylist()
    store = FeatureStore(repo, config=load_config(repo, env=env))
    raw = redis.Redis.from_url(env["FEATURESTORE_REDIS_URL"])
    grpc_port, http_port = free_port(), free_port()
    serve = [
        str(BIN / "featurestore"), "serve", "--repo", str(repo),
        "--grpc-port", str(grpc_port), "--http-port", str(http_port),
    ]  # fmt: skip
    points = []
    with background(serve, grpc_port, env), Client(f"127.0.0.1:{grpc_port}") as client:
        wait_port(http_port)
        for n in sizes:
            entities = {"driver_id": drivers[:n], "customer_id": customers[:n]}
            plan = store.online_registry().plan(SERVICE)
            keys = plan.keys(*plan.entity_columns(entities))
            answer = store.get_online_features(SERVICE, entities)
            present = sum(s == "PRESENT" for s in answer.statuses["conv_rate"])
            # Fewer calls for large requests, so each point takes seconds, not minutes.
            calls = max(200, iterations // max(1, n // 10))
            timings: dict[str, list[float]] = {"in_process": [], "grpc": [], "mget": []}
            for _ in range(20):  # warm-up
                store.get_online_features(SERVICE, entities)
                client.get_online_features(SERVICE, entities)
                raw.mget(keys)
            for _ in range(calls):
                t = time.perf_counter_ns()
                store.get_online_features(SERVICE, entities)
                timings["in_process"].append((time.perf_counter_ns() - t) / 1000)
                t = time.perf_counter_ns()
                client.get_online_features(SERVICE, entities)
                timings["grpc"].append((time.perf_counter_ns() - t) / 1000)
                t = time.perf_counter_ns()
                raw.mget(keys)
                timings["mget"].append((time.perf_counter_ns() - t) / 1000)
            point = {
                "entities": n,
                "keys": len(keys),
                "present": present,
                "calls": calls,
                "loadavg": float(Path("/proc/loadavg").read_text().split()[0]),
                **{k: percentiles(v) for k, v in timings.items()},
            }
            points.append(point)
            print(
                f"  lookup {n}: in process p50 {point['in_process']['p50_ms']:.3f} ms, gRPC "
                f"{point['grpc']['p50_ms']:.3f}, MGET {point['mget']['p50_ms']:.3f} ({calls} calls)",
                file=sys.stderr,
            )
    raw.close()
    store.close()
    return points


# -- training sets -------------------------------------------------------------------------------


def bench_training(scale: str, runs: int) -> dict[str, Any]:
    """training_sets.py at ``scale`` (its data and ingested store are kept under benchmarks/out)."""
    subprocess.run(
        [
            str(BIN / "python"),
            str(HERE / "training_sets.py"),
            "--scale",
            scale,
            "--runs",
            str(runs),
            "--reuse",
        ],
        check=True,
        stdout=sys.stderr,
    )
    report = json.loads((OUT / scale / "results.json").read_text())
    point: dict[str, Any] = {"source": f"training_sets.py --scale {scale} --runs {runs} --reuse (this run)"}
    for mode in ("api", "cli", "limit"):
        rs = report["runs"][mode]
        inner = [r["inner_seconds"] for r in rs if r["inner_seconds"] is not None]
        point[mode] = {
            "seconds": statistics.median(r["seconds"] for r in rs),
            "inner_seconds": statistics.median(inner) if inner else None,
            "peak_rss_mib": max(r["peak_rss_mib"] for r in rs),
        }
    return point


# -- report ------------------------------------------------------------------------------------


def markdown(result: dict[str, Any]) -> str:
    lines: list[str] = []
    if result["lookups"]:
        lines += [
            "| entities | keys | in process p50 / p99 ms | gRPC p50 / p99 ms | raw MGET p50 / p99 ms | "
            "in process / MGET (p50) | gRPC / MGET (p50) |",
            "|---|---|---|---|---|---|---|",
        ]
        for p in result["lookups"]:
            i, g, m = p["in_process"], p["grpc"], p["mget"]
            lines.append(
                f"| {p['entities']:,} | {p['keys']:,} | {i['p50_ms']:.3f} / {i['p99_ms']:.3f} | "
                f"{g['p50_ms']:.3f} / {g['p99_ms']:.3f} | {m['p50_ms']:.3f} / {m['p99_ms']:.3f} | "
                f"{i['p50_ms'] / m['p50_ms']:.2f} | {g['p50_ms'] / m['p50_ms']:.2f} |"
            )
        lines.append("")
    if result["materialize"]:
        lines += [
            "| scale (feature rows) | keys written | cli s (median, min-max) | raw SET s | raw MSET s | "
            "cli / raw SET | cli / raw MSET | raw MSET query + encode + write s | peak RSS MiB cli | "
            "raw SET | raw MSET |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for m in result["materialize"]:
            c, rs, rm = m["cli"], m["raw-set"], m["raw-mset"]
            lines.append(
                f"| {m['scale']} ({sum(m['offline_rows'].values()):,}) | {m['keys_written']:,} | "
                f"{c['seconds_median']:.2f} ({c['seconds_min']:.2f}-{c['seconds_max']:.2f}) | "
                f"{rs['seconds_median']:.2f} | {rm['seconds_median']:.2f} | {m['cli_over_raw-set']:.2f} | "
                f"{m['cli_over_raw-mset']:.2f} | "
                f"{rm['query_s']:.2f} + {rm['encode_s']:.2f} + {rm['write_s']:.2f} | "
                f"{c['peak_rss_mib']:,.0f} | {rs['peak_rss_mib']:,.0f} | {rm['peak_rss_mib']:,.0f} |"
            )
        lines.append("")
    if result["training"]:
        lines += [
            "| entity rows | api s in process | cli s | limit s in process / process | "
            "api / limit (in process) | cli / limit (process) | source |",
            "|---|---|---|---|---|---|---|",
        ]
        for scale, t in result["training"].items():
            a, c, li = t["api"], t["cli"], t["limit"]
            lines.append(
                f"| {ENTITY_ROWS[scale]:,} | {a['inner_seconds']:.2f} | {c['seconds']:.2f} | "
                f"{li['inner_seconds']:.2f} / {li['seconds']:.2f} | "
                f"{a['inner_seconds'] / li['inner_seconds']:.2f} | {c['seconds'] / li['seconds']:.2f} | "
                f"{t['source']} |"
            )
    return "\n".join(lines)


def chart(result: dict[str, Any], path: Path) -> None:
    """Four log-log panels: each curve beside its limit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(22, 5))
    ax = axes[0]
    if result["lookups"]:
        xs = [p["entities"] for p in result["lookups"]]
        for kind, label, style in (("in_process", "ours, in process", "-o"), ("grpc", "ours, gRPC", "-s"),
                                   ("mget", "limit: raw MGET", ":^")):  # fmt: skip
            ax.plot(xs, [p[kind]["p50_ms"] for p in result["lookups"]], style, label=f"{label} p50")
            ax.plot(
                xs, [p[kind]["p99_ms"] for p in result["lookups"]], style, alpha=0.35, label=f"{label} p99"
            )
    ax.set(
        xlabel="entities per request", ylabel="latency (ms), one caller", title="Online lookup (trip_model)"
    )
    ms = result["materialize"]
    xs = [sum(m["offline_rows"].values()) for m in ms]
    for ax, key, ylabel, title in (
        (axes[1], "seconds_median", "seconds (whole process)", "Materialization"),
        (axes[2], "peak_rss_mib", "peak RSS (MiB)", "Materialization: memory"),
    ):
        for mode, label, style in (("cli", "ours: featurestore materialize", "-o"),
                                   ("raw-set", "limit: raw query + pipelined SETs", ":^"),
                                   ("raw-mset", "limit: raw query + pipelined MSETs", ":v")):  # fmt: skip
            ax.plot(xs, [m[mode][key] for m in ms], style, label=label)
        ax.set(xlabel="feature rows in the offline store", ylabel=ylabel, title=title)
    ax = axes[3]
    training = result["training"]
    scales = list(training)
    xs = [ENTITY_ROWS[s] for s in scales]
    curves = (
        ("api", "inner_seconds", "ours, in process", "-o"),
        ("cli", "seconds", "ours, CLI process", "-s"),
        ("limit", "inner_seconds", "limit: hand-written ASOF query", ":^"),
    )
    for mode, key, label, style in curves:
        (line,) = ax.plot(xs, [training[s][mode][key] for s in scales], style, label=label)
        recorded = [
            (x, training[s][mode][key])
            for x, s in zip(xs, scales, strict=True)
            if "this run" not in training[s]["source"]
        ]
        if recorded:
            ax.plot(*zip(*recorded, strict=True), "o", mfc="white", color=line.get_color(), ms=10)
    ax.set(xlabel="entity rows (hollow: on record)", ylabel="seconds", title="Training set (trip_model)")
    for ax in axes:
        if not any(len(line.get_xdata()) for line in ax.lines):  # not measured in this invocation
            continue
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(
        f"{result['command']} ({result['when']}, load average at start {result['loadavg_start']})", fontsize=8
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lookup-points", default="1,10,100,1000", help="entities per request ('' to skip)")
    parser.add_argument("--lookup-scale", default="small", help="the data the lookups read")
    parser.add_argument(
        "--lookup-iterations", type=int, default=2000, help="calls per point at 1-10 entities"
    )
    parser.add_argument(
        "--materialize-points", default="small,medium", help="of small,medium,large ('' to skip)"
    )
    parser.add_argument(
        "--training-points", default="small,medium", help="of small,medium,large ('' to skip)"
    )
    parser.add_argument(
        "--recorded", default="large", help="training points taken from RESULTS.md if not run"
    )
    parser.add_argument("--runs", type=int, default=3, help="materialization and training runs per point")
    parser.add_argument("--large-runs", type=int, default=1, help="runs at large (one each: shared machine)")
    parser.add_argument("--memory-limit", help="DuckDB memory_limit for the CLI's materialization (e.g. 1GB)")
    parser.add_argument("--reuse", action="store_true", help="materialize from an earlier prepared repo")
    parser.add_argument("--clean", action="store_true", help="delete the generated data afterwards")
    parser.add_argument(
        "--out", default="scale-curves", help="name of the JSON and PNG in benchmarks/results"
    )
    parser.add_argument(
        "--merge",
        default="",
        help="comma-separated JSON files of earlier invocations (e.g. benchmarks/results/"
        "scale-curves-large.json): their materialization points join this one's table and chart",
    )
    parser.add_argument(
        "--chart-only", metavar="JSON", help="measure nothing: redraw this result file (with --merge)"
    )
    args = parser.parse_args()
    if args.chart_only:
        result = json.loads(Path(args.chart_only).read_text())
        report(merged(result, args.merge), Path(args.chart_only).with_suffix(""))
        return

    def names(text: str) -> list[str]:
        return [x for x in text.split(",") if x]

    lookups = [int(n) for n in names(args.lookup_points)]
    materialize_points = names(args.materialize_points)
    if lookups and args.lookup_scale not in materialize_points:
        materialize_points.insert(0, args.lookup_scale)  # the lookups read a materialized repo
    result: dict[str, Any] = {
        "command": " ".join([".venv/bin/python", "benchmarks/scale_curves.py", *sys.argv[1:]]),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "loadavg_start": Path("/proc/loadavg").read_text().split()[0],
        "lookups": [],
        "materialize": [],
        "training": {},
    }
    with redis_server() as port:
        os.environ["FEATURESTORE_REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
        env = dict(os.environ)
        for scale in materialize_points:
            runs = args.large_runs if scale == "large" else args.runs
            print(f"materialization at {scale} ...", file=sys.stderr)
            point = bench_materialize(scale, runs, env, args.memory_limit, args.reuse)
            if scale == args.lookup_scale and lookups:
                result["lookups"] = bench_lookups(Path(point["repo"]), env, lookups, args.lookup_iterations)
            if scale in names(args.materialize_points):
                result["materialize"].append(point)
            if args.clean:
                shutil.rmtree(OUT / f"online-{scale}", ignore_errors=True)
    for scale in names(args.training_points):
        runs = args.large_runs if scale == "large" else args.runs
        print(f"training sets at {scale} ...", file=sys.stderr)
        result["training"][scale] = bench_training(scale, runs)
        if args.clean:
            shutil.rmtree(OUT / scale, ignore_errors=True)
    for scale in names(args.recorded):
        if scale not in result["training"] and scale in RECORDED_TRAINING:
            result["training"][scale] = RECORDED_TRAINING[scale]
    result["loadavg_end"] = Path("/proc/loadavg").read_text().split()[0]
    results = ROOT / "benchmarks" / "results"
    results.mkdir(exist_ok=True)
    (results / f"{args.out}.json").write_text(json.dumps(result, indent=2) + "\n")
    report(merged(result, args.merge), results / args.out)


def merged(result: dict[str, Any], files: str) -> dict[str, Any]:
    """``result`` with the materialization points of other invocations' JSON files added, in
    scale order; each keeps its own "command", "when" and load averages."""
    points = list(result["materialize"])
    for name in (f for f in files.split(",") if f):
        other = json.loads(Path(name).read_text())
        for m in other["materialize"]:
            if m["scale"] not in {p["scale"] for p in points}:
                points.append({**m, "from": {k: other[k] for k in ("command", "when", "loadavg_start")}})
    order = list(SCALE_ROWS)
    return {**result, "materialize": sorted(points, key=lambda m: order.index(m["scale"]))}


def report(result: dict[str, Any], stem: Path) -> None:
    chart(result, stem.with_suffix(".png"))
    print(markdown(result))


if __name__ == "__main__":
    main()

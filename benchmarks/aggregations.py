"""Aggregation views (issue 19): lookups, training sets and tile materialization, each beside
a limit measured in the same run.

    .venv/bin/python benchmarks/aggregations.py --scale small --runs 3
    .venv/bin/python benchmarks/aggregations.py --scale medium --parts training --runs 3

The example repo (definitions/) is copied to benchmarks/out/aggregations-SCALE/repo with one
more file, bench_aggregations.py (BENCH_DEFINITIONS below): ``trip_windows``, an aggregation
view over the example's trips with 10 aggregations over 1 h, 1 d and 7 d windows (default
hops: 5 min for 1 h, 1 h for the others, so two tile groups, two keys per entity), and three
services: bench_aggregates (its 10 features), bench_plain (10 plain features of driver_stats)
and bench_training (5 of the aggregations: count, sum, mean, max, stddev). The data is
generated ending now (so the windows of a lookup hold events) and ingested
with ``featurestore materialize --offline`` for the views a part needs; a private
redis-server and ``featurestore serve`` listen on free loopback ports.

  materialize   FeatureStore.materialize(views=["trip_windows"]) (tiles) beside
                FeatureStore.materialize(views=["driver_stats"]) (plain values), interleaved,
                each in its own process, Redis emptied before each (online.py's
                MATERIALIZE_CHILD: the second call of the process is timed). Redis memory
                (INFO used_memory) and keys after each, MEMORY USAGE of sampled keys.
                Target: tiles within 3x of plain.
  lookups       100 drivers (the first whose keys exist in every tile group) x 10 features:
                bench_aggregates against bench_plain, interleaved, in process
                (FeatureStore.get_online_features; target 2x) and over gRPC (featurestore.Client
                against `featurestore serve`, one worker; target 1.5x); redis-py MGET of each
                lookup's keys as the floor. Then a cProfile of the aggregation lookup.
  training      get_training_set(entity_rows, "bench_training").to_parquet in a worker
                process (api) beside a hand-written DuckDB query with window aggregates over
                RANGE frames on the same ingested table (limit), interleaved, each under
                /usr/bin/time -v with the process tree's RSS sampled (training_sets.measure);
                the two outputs are compared value for value. Target: api within 1.5x.

Results: benchmarks/results/aggregations-SCALE[-PARTS].json and Markdown tables on stdout.
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
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from online import (
    BIN,
    MATERIALIZE_CHILD,
    OUT,
    ROOT,
    background,
    flush_online,
    free_port,
    percentiles,
    redis_server,
    run_cli,
    wait_port,
    wipe_online_state,
)
from training_sets import Run, compare, measure

HERE = Path(__file__).resolve().parent
PARTS = ("materialize", "lookups", "training")
VIEW = "trip_windows"
AGG_SERVICE, PLAIN_SERVICE, TRAINING_SERVICE = "bench_aggregates", "bench_plain", "bench_training"
TARGETS = {"materialize": 3.0, "in_process": 2.0, "grpc": 1.5, "training": 1.5}

BENCH_DEFINITIONS = '''"""Objects of benchmarks/aggregations.py: trips aggregated over 1 h, 1 d and 7 d."""

from datetime import timedelta

from drivers import driver, driver_stats
from trips import trips_source

from featurestore import Aggregation, FeatureService, FeatureView, Field, Float64, Int64, String

HOUR, DAY, WEEK = timedelta(hours=1), timedelta(days=1), timedelta(days=7)

trip_windows = FeatureView(
    "trip_windows",
    entities=[driver],
    source=trips_source,
    schema=[
        Field("customer_id", Int64),
        Field("fare", Float64),
        Field("distance_km", Float64),
        Field("payment", String),
        Field("tip", Float64),
    ],
    aggregations=[
        Aggregation("fare", "count", window=HOUR, name="trips_1h"),
        Aggregation("fare", "sum", window=HOUR, name="fare_sum_1h"),
        Aggregation("fare", "count", window=DAY, name="trips_1d"),
        Aggregation("fare", "sum", window=DAY, name="fare_sum_1d"),
        Aggregation("fare", "mean", window=DAY, name="fare_mean_1d"),
        Aggregation("payment", "last_n", window=DAY, n=3, name="payment_last3_1d"),
        Aggregation("fare", "mean", window=WEEK, name="fare_mean_7d"),
        Aggregation("distance_km", "max", window=WEEK, name="distance_km_max_7d"),
        Aggregation("tip", "stddev", window=WEEK, name="tip_stddev_7d"),
        Aggregation("customer_id", "count_distinct", window=WEEK, name="customers_7d"),
    ],
)

bench_aggregates = FeatureService("bench_aggregates", features=[trip_windows])
bench_plain = FeatureService(
    "bench_plain",
    features=[
        driver_stats[
            [
                "conv_rate", "acc_rate", "avg_daily_trips", "rating", "trips_today",
                "earnings_today", "online_hours", "cancellations_7d", "completed_trips_total",
                "last_trip_km",
            ]
        ]
    ],
)
bench_training = FeatureService(
    "bench_training",
    features=[
        trip_windows[["trips_1h", "fare_sum_1d", "fare_mean_7d", "distance_km_max_7d", "tip_stddev_7d"]]
    ],
)
'''

# The training service's 5 aggregations written by hand: the events deduplicated as every
# view's rows are (newest created, then last ingested; NaN read as null), one stream per driver
# of entity rows and events ordered by time, and each aggregate over the frame (t - window, t].
LIMIT_SQL = """
WITH events AS MATERIALIZED (
    SELECT driver_id, __event_ts AS t,
           CASE WHEN isnan(fare) THEN NULL ELSE fare END AS fare,
           CASE WHEN isnan(distance_km) THEN NULL ELSE distance_km END AS distance_km,
           CASE WHEN isnan(tip) THEN NULL ELSE tip END AS tip
    FROM rides.offline_trip_windows
    QUALIFY row_number() OVER (
        PARTITION BY driver_id, __event_ts ORDER BY __created_ts DESC NULLS LAST, __seq DESC) = 1
),
entity_rows AS (  -- every column of the entity rows, as a training set keeps them
    SELECT * EXCLUDE (file_row_number), file_row_number AS r
    FROM read_parquet('{entities}', file_row_number = true)
),
stream AS (
    SELECT driver_id, event_timestamp AS t, r, NULL::DOUBLE AS fare, NULL::DOUBLE AS distance_km,
           NULL::DOUBLE AS tip
    FROM entity_rows WHERE driver_id IS NOT NULL AND event_timestamp IS NOT NULL
    UNION ALL
    SELECT driver_id, t, NULL, fare, distance_km, tip FROM events
),
at_rows AS (
    SELECT r,
           count(fare) OVER hour AS trips_1h,
           sum(fare) OVER day AS fare_sum_1d,
           avg(fare) OVER week AS fare_mean_7d,
           max(distance_km) OVER week AS distance_km_max_7d,
           stddev_samp(tip) OVER week AS tip_stddev_7d
    FROM stream
    WINDOW
        hour AS (PARTITION BY driver_id ORDER BY t
                 RANGE BETWEEN INTERVAL 3599999999 MICROSECOND PRECEDING AND CURRENT ROW),
        day AS (PARTITION BY driver_id ORDER BY t
                RANGE BETWEEN INTERVAL 86399999999 MICROSECOND PRECEDING AND CURRENT ROW),
        week AS (PARTITION BY driver_id ORDER BY t
                 RANGE BETWEEN INTERVAL 604799999999 MICROSECOND PRECEDING AND CURRENT ROW)
    QUALIFY r IS NOT NULL
)
SELECT e.* EXCLUDE (r),
       coalesce(a.trips_1h, 0)::BIGINT AS trips_1h, a.fare_sum_1d, a.fare_mean_7d,
       a.distance_km_max_7d, a.tip_stddev_7d
FROM entity_rows e LEFT JOIN at_rows a USING (r)
ORDER BY e.r
"""


# -- setup --------------------------------------------------------------------------------------


def prepare(scale: str, reuse: bool) -> Path:
    """The example repo plus BENCH_DEFINITIONS over data ending at the current hour, applied;
    with ``reuse``, the data (and the ingested store) of an earlier invocation."""
    base = OUT / f"aggregations-{scale}"
    repo = base / "repo"
    data = base / "data"
    if not reuse or not data.exists():
        shutil.rmtree(base, ignore_errors=True)
        print(f"generating {scale} data ...", file=sys.stderr, flush=True)
        # Ending now (to the minute): the 1 h windows of a lookup hold the last hour's trips.
        end = datetime.now(UTC).replace(second=0, microsecond=0).isoformat()
        subprocess.run(
            [BIN / "python", "-m", "featurestore.datagen", data, "--scale", scale, "--end", end],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    if not reuse:
        shutil.rmtree(repo, ignore_errors=True)
    if not repo.exists():
        repo.mkdir(parents=True)
        for f in (ROOT / "definitions").glob("*.py"):
            shutil.copy(f, repo)
        shutil.copy(ROOT / "definitions" / "featurestore.toml", repo)
        (repo / "bench_aggregations.py").write_text(BENCH_DEFINITIONS)
        (repo / "data").symlink_to(Path("..") / "data")
    return repo


def ingest(repo: Path, env: dict[str, str], views: list[str]) -> float:
    """``featurestore materialize --offline --views ...`` (unchanged files are skipped); seconds."""
    run_cli(env, "apply", "--repo", str(repo))
    started = time.perf_counter()
    run_cli(env, "materialize", "--offline", "--repo", str(repo), "--views", ",".join(views))
    return time.perf_counter() - started


# -- materialization ----------------------------------------------------------------------------


def redis_memory(client: Any) -> int:
    return int(client.info("memory")["used_memory"])


def key_sizes(client: Any, sample: int = 200) -> dict[str, dict[str, float]]:
    """Per kind of key (what follows the entity tag: ``driver_stats``, ``trip_windows@300``):
    how many, and MEMORY USAGE of a sample (mean and max bytes)."""
    kinds: dict[str, list[bytes]] = {}
    for key in client.scan_iter(count=1000):
        kind = key.split(b"}:", 1)[-1].decode()
        kinds.setdefault(kind, []).append(key)
    out = {}
    for kind, keys in sorted(kinds.items()):
        sizes = [int(client.memory_usage(k, samples=0) or 0) for k in keys[:sample]]
        out[kind] = {"keys": len(keys), "mean_bytes": statistics.mean(sizes), "max_bytes": max(sizes)}
    return out


def bench_materialize(repo: Path, env: dict[str, str], runs: int) -> dict[str, Any]:
    """Tiles (trip_windows) beside plain values (driver_stats), interleaved, ``runs`` times."""
    import redis

    url = env["FEATURESTORE_REDIS_URL"]
    client = redis.Redis.from_url(url)
    modes = {"plain": "driver_stats", "tiles": VIEW}
    results: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
    for _ in range(runs):
        for mode, view in modes.items():
            flush_online(url)
            wipe_online_state(repo)
            before = redis_memory(client)
            proc = subprocess.run(
                [str(BIN / "python"), "-c", MATERIALIZE_CHILD, str(repo), str(HERE), view],
                env=env,
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0:
                raise RuntimeError(proc.stderr)
            row = json.loads(proc.stdout.splitlines()[-1])
            row["redis_bytes"] = redis_memory(client) - before
            row["keys"] = int(client.dbsize())
            results[mode].append(row)
            print(f"  {mode}: {row['seconds']:.2f} s, {row['rows']:,} rows", file=sys.stderr, flush=True)
    sizes = key_sizes(client)  # the last run's keys: the tiles'
    flush_online(url)
    wipe_online_state(repo)
    subprocess.run(
        [str(BIN / "python"), "-c", MATERIALIZE_CHILD, str(repo), str(HERE), modes["plain"]],
        env=env, check=True, capture_output=True,
    )
    sizes.update(key_sizes(client))
    client.close()
    summary: dict[str, Any] = {"key_sizes": sizes}
    for mode, rs in results.items():
        secs = [r["seconds"] for r in rs]
        summary[mode] = {
            "view": modes[mode],
            "seconds": secs,
            "seconds_median": statistics.median(secs),
            "first_call_s": statistics.median(r["first_call_s"] for r in rs),
            "rows": rs[0]["rows"],
            "entities": rs[0]["entities"],
            "keys": rs[0]["keys"],
            "redis_bytes": statistics.median(r["redis_bytes"] for r in rs),
        }
    summary["ratio"] = summary["tiles"]["seconds_median"] / summary["plain"]["seconds_median"]
    return summary


# -- lookups ------------------------------------------------------------------------------------


def pick_drivers(store: Any, n: int = 100) -> list[int]:
    """The first ``n`` drivers (by id) with a stored value in every tile group and in driver_stats."""
    import redis

    from featurestore.datagen import FIRST_DRIVER, SCALES

    candidates = list(range(FIRST_DRIVER, FIRST_DRIVER + max(s.drivers for s in SCALES.values())))
    client = redis.Redis.from_url(store.config.redis_url)
    chosen: list[int] = []
    registry = store.online_registry()
    for start in range(0, len(candidates), 2000):
        ids = candidates[start : start + 2000]
        keys = []
        for service in (AGG_SERVICE, PLAIN_SERVICE):
            plan = registry.plan(service)
            keys += plan.keys(*plan.entity_columns({"driver_id": ids}))
        values = client.mget(keys)
        per_driver = len(keys) // len(ids)
        for i, driver in enumerate(ids):
            if all(values[k * len(ids) + i] is not None for k in range(per_driver)):
                chosen.append(driver)
                if len(chosen) == n:
                    client.close()
                    return chosen
    client.close()
    raise RuntimeError(f"fewer than {n} drivers have every value")


def _timed(fn: Any) -> float:
    t = time.perf_counter_ns()
    fn()
    return (time.perf_counter_ns() - t) / 1000


def bench_lookups(repo: Path, env: dict[str, str], iterations: int) -> dict[str, Any]:
    import redis

    from featurestore import Client, FeatureStore
    from featurestore.config import load_config

    store = FeatureStore(repo, config=load_config(repo, env=env))
    drivers = pick_drivers(store)
    entities = {"driver_id": drivers}
    registry = store.online_registry()
    keys = {}
    for service in (AGG_SERVICE, PLAIN_SERVICE):
        plan = registry.plan(service)
        keys[service] = plan.keys(*plan.entity_columns(entities))
    raw = redis.Redis.from_url(env["FEATURESTORE_REDIS_URL"])
    checks = {}
    for service in (AGG_SERVICE, PLAIN_SERVICE):
        result = store.get_online_features(service, entities)
        statuses = [s for col in result.features for s in col.statuses]
        checks[service] = {
            "features": len(result.features),
            "keys": len(keys[service]),
            "present": sum(s == 1 for s in statuses),
            "values": len(statuses),
        }
    series: dict[str, list[float]] = {"agg": [], "plain": [], "agg_mget": [], "plain_mget": []}
    calls = {
        "agg": lambda: store.get_online_features(AGG_SERVICE, entities),
        "plain": lambda: store.get_online_features(PLAIN_SERVICE, entities),
        "agg_mget": lambda: raw.mget(keys[AGG_SERVICE]),
        "plain_mget": lambda: raw.mget(keys[PLAIN_SERVICE]),
    }
    for _ in range(50):  # warm-up: plans cached, connections open
        for call in calls.values():
            call()
    print(f"  in process, {iterations} calls each ...", file=sys.stderr, flush=True)
    for _ in range(iterations):  # interleaved so every series sees the same machine
        for name, call in calls.items():
            series[name].append(_timed(call))
    in_process = {name: percentiles(xs) for name, xs in series.items()}

    grpc_port, http_port = free_port(), free_port()
    serve = [
        str(BIN / "featurestore"), "serve", "--repo", str(repo),
        "--grpc-port", str(grpc_port), "--http-port", str(http_port), "--workers", "1",
    ]
    over_grpc: dict[str, list[float]] = {"agg": [], "plain": []}
    with background(serve, grpc_port, env), Client(f"127.0.0.1:{grpc_port}", timeout=10) as client:
        wait_port(http_port)
        answer = client.get_online_features(AGG_SERVICE, entities)
        present = sum(s == "PRESENT" for col in answer.statuses.values() for s in col)
        remote = {
            "agg": lambda: client.get_online_features(AGG_SERVICE, entities),
            "plain": lambda: client.get_online_features(PLAIN_SERVICE, entities),
        }
        for _ in range(50):
            for call in remote.values():
                call()
        print(f"  gRPC, {iterations} calls each ...", file=sys.stderr, flush=True)
        for _ in range(iterations):
            for name, call in remote.items():
                over_grpc[name].append(_timed(call))
    grpc_result = {name: percentiles(xs) for name, xs in over_grpc.items()}
    grpc_result["agg_present"] = present

    profile = cProfile.Profile()
    profile.enable()
    for _ in range(300):
        store.get_online_features(AGG_SERVICE, entities)
    profile.disable()
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(20)
    raw.close()
    store.close()
    return {
        "drivers": drivers,
        "iterations": iterations,
        "checks": checks,
        "in_process": in_process,
        "grpc": grpc_result,
        "ratio_in_process": in_process["agg"]["p50_ms"] / in_process["plain"]["p50_ms"],
        "ratio_grpc": grpc_result["agg"]["p50_ms"] / grpc_result["plain"]["p50_ms"],
        "profile": _profile_lines(text.getvalue()),
    }


def _profile_lines(text: str) -> list[str]:
    """The table of a pstats print, without the header's blank lines and paths shortened."""
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    return [line.replace(str(ROOT) + "/", "").replace(sys.prefix + "/", "") for line in lines]


# -- training sets ------------------------------------------------------------------------------


def worker(mode: str, repo: Path, out: Path) -> None:
    """One training set in this process; prints {"seconds": ...} (the work, not start-up)."""
    entities = repo / "data" / "entity_rows.parquet"
    if mode == "api":
        from featurestore import FeatureStore  # before the clock starts

        store = FeatureStore(repo)
        started = time.perf_counter()
        with store.get_training_set(entities, TRAINING_SERVICE) as ts:
            ts.to_parquet(out)
    else:
        import duckdb

        db = repo / ".featurestore" / "store.duckdb"
        con = duckdb.connect(str(db), read_only=True)
        con.execute("SET TimeZone = 'UTC'")  # the settings featurestore's connections use
        con.execute(f"SET temp_directory = '{db.parent / 'tmp'}'")
        started = time.perf_counter()
        sql = LIMIT_SQL.format(entities=str(entities).replace("'", "''"))
        con.execute(f"COPY ({sql}) TO '{out}' (FORMAT parquet)")
        con.close()
    print(json.dumps({"seconds": time.perf_counter() - started}))


def close_values(ours: Path, limit: Path, tolerance: float = 1e-9) -> dict[str, Any]:
    """Row by row (input order), per feature column: values exactly equal, equal within a
    relative ``tolerance`` (floats summed in another order), or different (nulls must match)."""
    import duckdb

    con = duckdb.connect()
    features = ["trips_1h", "fare_sum_1d", "fare_mean_7d", "distance_km_max_7d", "tip_stddev_7d"]
    scan = "(SELECT *, file_row_number AS r FROM read_parquet('{}', file_row_number = true))"
    counts = []
    for f in features:
        a, b = f"o.{f}", f"l.{f}"
        counts.append(
            f"count(*) FILTER ({a} IS NOT DISTINCT FROM {b}) AS {f}_exact, "
            f"count(*) FILTER ({a} IS DISTINCT FROM {b} AND abs({a} - {b}) <= "
            f"{tolerance} * greatest(abs({a}), abs({b}), 1)) AS {f}_close, "
            f"count(*) FILTER ({a} IS NULL) AS {f}_nulls, "
            f"coalesce(max(abs({a} - {b}) / greatest(abs({b}), 1e-300)), 0) AS {f}_worst"
        )
    row = con.execute(
        f"SELECT count(*) AS rows, count(*) FILTER (o.driver_id IS DISTINCT FROM l.driver_id "
        f"OR o.event_timestamp IS DISTINCT FROM l.event_timestamp) AS keys_differ, {', '.join(counts)} "
        f"FROM {scan.format(ours)} o FULL JOIN {scan.format(limit)} l USING (r)"
    )
    names = [d[0] for d in row.description]
    values = dict(zip(names, row.fetchone(), strict=True))  # type: ignore[arg-type]
    rows = values["rows"]
    out: dict[str, Any] = {"rows": rows, "keys_differ": values["keys_differ"], "columns": {}}
    equal = values["keys_differ"] == 0
    for f in features:
        exact, close = values[f"{f}_exact"], values[f"{f}_close"]
        out["columns"][f] = {"exact": exact, "close": close, "differ": rows - exact - close,
                             "nulls": values[f"{f}_nulls"], "max_relative_difference": values[f"{f}_worst"]}
        equal = equal and exact + close == rows
    out["equal"] = equal
    return out


def bench_training(repo: Path, runs: int, modes: list[str]) -> dict[str, Any]:
    results = repo.parent / "results"
    results.mkdir(exist_ok=True)
    me = [sys.executable, str(Path(__file__).resolve())]
    spill = repo / ".featurestore" / "tmp"
    report: dict[str, Any] = {"runs": {}}
    for i in range(runs):
        for mode in modes:  # interleaved: load falls alike
            out = results / f"{mode}.parquet"
            out.unlink(missing_ok=True)
            run = measure([*me, "--worker", mode, str(repo), str(out)], spill, results / f"{mode}-{i}.log")
            report["runs"].setdefault(mode, []).append(run)
            print(
                f"  run {i + 1}/{runs} {mode}: {run.inner_seconds or 0:.1f} s in process "
                f"({run.seconds:.1f} s whole), peak RSS tree {(run.peak_tree_rss_mib or 0):,.0f} MiB, "
                f"spill {run.peak_spill_mib:,.0f} MiB",
                file=sys.stderr,
                flush=True,
            )
    summary: dict[str, Any] = {}
    for mode, rs in report["runs"].items():
        summary[mode] = _runs_summary(rs)
    if "api" in summary and "limit" in summary:
        summary["ratio"] = summary["api"]["seconds_median"] / summary["limit"]["seconds_median"]
        ours, limit = results / "api.parquet", results / "limit.parquet"
        summary["exact"] = compare(ours, limit, nulls={"tips": "tip_stddev_7d", "fares": "fare_sum_1d"})
        summary["check"] = close_values(ours, limit)
        print(f"  check: {summary['exact']}", file=sys.stderr)
    return summary


def _runs_summary(runs: list[Run]) -> dict[str, Any]:
    inner = [r.inner_seconds or 0.0 for r in runs]
    return {
        "seconds": inner,
        "seconds_median": statistics.median(inner),
        "process_seconds_median": statistics.median(r.seconds for r in runs),
        "peak_rss_mib": max(r.peak_rss_mib for r in runs),
        "peak_tree_rss_mib": max(r.peak_tree_rss_mib or 0.0 for r in runs),
        "peak_spill_mib": max(r.peak_spill_mib for r in runs),
    }


# -- report -------------------------------------------------------------------------------------


def verdict(ratio: float, target: float) -> str:
    return f"{ratio:.2f}× (target {target}×: {'met' if ratio <= target else 'MISSED'})"


def markdown(result: dict[str, Any]) -> str:
    lines: list[str] = []
    m = result.get("materialize")
    if m:
        lines += [
            "| materialization | view | seconds, median (runs) | rows read | keys | Redis MiB | ratio |",
            "|---|---|---|---|---|---|---|",
        ]
        for mode in ("plain", "tiles"):
            r = m[mode]
            runs = ", ".join(f"{s:.2f}" for s in r["seconds"])
            ratio = verdict(m["ratio"], TARGETS["materialize"]) if mode == "tiles" else "1.00"
            lines.append(
                f"| {mode} | {r['view']} | {r['seconds_median']:.2f} ({runs}) | {r['rows']:,} | "
                f"{r['keys']:,} | {r['redis_bytes'] / 2**20:.1f} | {ratio} |"
            )
        lines += ["", "| key kind | keys | MEMORY USAGE mean B | max B |", "|---|---|---|---|"]
        for kind, s in m["key_sizes"].items():
            lines.append(f"| {kind} | {s['keys']:,} | {s['mean_bytes']:,.0f} | {s['max_bytes']:,} |")
        lines.append("")
    lk = result.get("lookups")
    if lk:
        ip, g = lk["in_process"], lk["grpc"]
        lines += [
            f"100 drivers; {lk['iterations']:,} calls per series, interleaved. Present values: "
            + ", ".join(
                f"{s} {c['present']:,}/{c['values']:,} ({c['keys']} keys)" for s, c in lk["checks"].items()
            ),
            "",
            "| lookup, 100 entities × 10 features | p50 ms | p99 ms | ratio of p50s |",
            "|---|---|---|---|",
            f"| in process, aggregations | {ip['agg']['p50_ms']:.3f} | {ip['agg']['p99_ms']:.3f} | "
            f"{verdict(lk['ratio_in_process'], TARGETS['in_process'])} |",
            f"| in process, plain | {ip['plain']['p50_ms']:.3f} | {ip['plain']['p99_ms']:.3f} | 1.00 |",
            f"| Redis MGET, aggregations' keys | {ip['agg_mget']['p50_ms']:.3f} | "
            f"{ip['agg_mget']['p99_ms']:.3f} | {ip['agg_mget']['p50_ms'] / ip['plain']['p50_ms']:.2f} |",
            f"| Redis MGET, plain keys | {ip['plain_mget']['p50_ms']:.3f} | "
            f"{ip['plain_mget']['p99_ms']:.3f} | "
            f"{ip['plain_mget']['p50_ms'] / ip['plain']['p50_ms']:.2f} |",
            f"| gRPC, aggregations | {g['agg']['p50_ms']:.3f} | {g['agg']['p99_ms']:.3f} | "
            f"{verdict(lk['ratio_grpc'], TARGETS['grpc'])} |",
            f"| gRPC, plain | {g['plain']['p50_ms']:.3f} | {g['plain']['p99_ms']:.3f} | 1.00 |",
            "",
            "cProfile of 300 in-process aggregation lookups (by own time):",
            "",
            "```",
            *lk["profile"][:30],
            "```",
            "",
        ]
    t = result.get("training")
    if t:
        lines += [
            "| training set | seconds in process, median (runs) | whole process s | peak RSS MiB (tree) "
            "| spill MiB | ratio |",
            "|---|---|---|---|---|---|",
        ]
        for mode in ("api", "limit"):
            if mode not in t:
                continue
            r = t[mode]
            ratio = verdict(t["ratio"], TARGETS["training"]) if mode == "api" and "ratio" in t else "1.00"
            runs = ", ".join(f"{s:.2f}" for s in r["seconds"])
            lines.append(
                f"| {mode} | {r['seconds_median']:.2f} ({runs}) | {r['process_seconds_median']:.1f} | "
                f"{r['peak_tree_rss_mib']:,.0f} | {r['peak_spill_mib']:,.0f} | {ratio} |"
            )
        if "check" in t:
            c = t["check"]
            per_column = "; ".join(
                f"{k} {v['exact']:,} exact, {v['close']:,} within 1e-9 (largest relative difference "
                f"{v['max_relative_difference']:.1e}), {v['differ']:,} differ"
                for k, v in c["columns"].items()
            )
            verdict_text = "EQUAL" if c["equal"] else "DIFFERENT"
            lines += ["", f"Check: {t['exact']}", "", f"Values: {verdict_text}: {per_column}"]
    return "\n".join(lines)


def main() -> None:
    if sys.argv[1:2] == ["--worker"]:  # a child process: --worker MODE REPO OUT
        worker(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", default="small")
    parser.add_argument("--runs", type=int, default=3, help="materialization and training-set runs")
    parser.add_argument("--iterations", type=int, default=2000, help="lookups per series")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {','.join(PARTS)}")
    parser.add_argument("--modes", default="api,limit", help="training-set modes: api,limit")
    parser.add_argument("--reuse", action="store_true", help="keep the data and store of an earlier run")
    args = parser.parse_args()
    parts = [p for p in args.parts.split(",") if p]
    if set(parts) - set(PARTS):
        parser.error(f"--parts takes {','.join(PARTS)}")
    modes = [m for m in args.modes.split(",") if m]
    if not modes or set(modes) - {"api", "limit"}:
        parser.error("--modes takes api,limit")
    for tool in ("redis-server", "/usr/bin/time"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is missing: run `make bench`")
    import duckdb
    import grpc
    import redis

    repo = prepare(args.scale, args.reuse)
    result: dict[str, Any] = {
        "command": " ".join([".venv/bin/python", "benchmarks/aggregations.py", *sys.argv[1:]]),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "scale": args.scale,
        "machine": {"cpus": os.cpu_count(), "loadavg_at_start": os.getloadavg()},
        "versions": {
            "python": platform.python_version(),
            "duckdb": duckdb.__version__,
            "grpcio": grpc.__version__,
            "redis-py": redis.__version__,
        },
    }
    with redis_server() as port:
        os.environ["FEATURESTORE_REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
        env = dict(os.environ)
        online = [p for p in parts if p != "training"]
        views = [VIEW, "driver_stats"] if online else [VIEW]
        result["ingest_seconds"] = ingest(repo, env, views)
        print(f"ingested {views} in {result['ingest_seconds']:.1f} s", file=sys.stderr, flush=True)
        if "materialize" in parts:
            print("materialization ...", file=sys.stderr, flush=True)
            result["materialize"] = bench_materialize(repo, env, args.runs)
        if "lookups" in parts:
            run_cli(env, "materialize", "--repo", str(repo), "--views", f"{VIEW},driver_stats")
            print("lookups ...", file=sys.stderr, flush=True)
            result["lookups"] = bench_lookups(repo, env, args.iterations)
    if "training" in parts:
        print("training sets ...", file=sys.stderr, flush=True)
        result["training"] = bench_training(repo, args.runs, modes)
    result["machine"]["loadavg_at_end"] = os.getloadavg()
    results = ROOT / "benchmarks" / "results"
    results.mkdir(exist_ok=True)
    name = f"aggregations-{args.scale}" + ("" if parts == list(PARTS) else "-" + "-".join(parts))
    (results / f"{name}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(markdown(result))


if __name__ == "__main__":
    main()

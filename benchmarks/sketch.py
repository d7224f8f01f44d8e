"""approx_count_distinct (issue 19): its error, and what it costs beside exact count_distinct.

    .venv/bin/python benchmarks/sketch.py --runs 2

  accuracy   the estimator alone, in DuckDB with the product's SQL (offline/sketch.py): for
             n distinct integers (20 disjoint sets per n), the relative error against the
             standard error 1 / sqrt(k - 2), at k = 256 and 1,024.
  training   a repo with two views over the same events (EVENTS events of USERS users over 30
             days, values from VALUES merchants): exact count_distinct and the sketch (k =
             1,024), each over 1 d and 30 d; get_training_set(...).to_arrow() for ENTITY_ROWS
             entity rows, in process, interleaved: sketch against exact.
  online     both views materialized to a private redis-server: Redis bytes per entity
             (MEMORY USAGE of every 1-day-hop key) and lookups of 100 users x 2 features,
             sketch against exact, in process, interleaved; the MGET of the same keys as the floor.

Results: benchmarks/results/sketch.json and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from online import OUT, percentiles, redis_server

from featurestore.offline import sketch

HERE = Path(__file__).resolve().parent
USERS, EVENTS, VALUES, ENTITY_ROWS = 2_000, 1_000_000, 50_000, 100_000
DEFS = """
from datetime import timedelta
from featurestore import Aggregation, Entity, FeatureView, Field, Int64, ParquetSource

user = Entity("user", join_keys=["user_id"])
txns = ParquetSource("txns", path="data/txns", timestamp_field="ts")
schema = [Field("merchant", Int64)]
exact = FeatureView("exact", entities=[user], source=txns, schema=schema, aggregations=[
    Aggregation("merchant", "count_distinct", window=timedelta(days=1), hop=timedelta(days=1)),
    Aggregation("merchant", "count_distinct", window=timedelta(days=30), hop=timedelta(days=1)),
])
sketched = FeatureView("sketched", entities=[user], source=txns, schema=schema, aggregations=[
    Aggregation("merchant", "approx_count_distinct", window=timedelta(days=1), hop=timedelta(days=1)),
    Aggregation("merchant", "approx_count_distinct", window=timedelta(days=30), hop=timedelta(days=1)),
])
"""
EXACT = ["exact:merchant_count_distinct_1d", "exact:merchant_count_distinct_30d"]
SKETCHED = ["sketched:merchant_approx_count_distinct_1d", "sketched:merchant_approx_count_distinct_30d"]


def accuracy() -> list[dict[str, Any]]:
    con = duckdb.connect()
    out = []
    for k in (256, 1024):
        for n in (500, 2_000, 10_000, 100_000, 1_000_000):
            errors = []
            for s in range(20):
                h = sketch.hash_sql("v", _int64())
                sql = (
                    f"SELECT {sketch.estimate_sql('d', 'm[' + str(k) + ']', k)} FROM (SELECT count(DISTINCT "
                    f"{h}) AS d, min(DISTINCT {h}, {k}) AS m FROM range({s * n}, {(s + 1) * n}) r(v))"
                )
                [(estimate,)] = con.sql(sql).fetchall()
                errors.append((estimate - n) / n)
            rms = statistics.fmean(e * e for e in errors) ** 0.5
            out.append(
                {
                    "k": k,
                    "n": n,
                    "rms_error": rms,
                    "max_abs_error": max(map(abs, errors)),
                    "standard_error": 0.0 if n < k else 1 / (k - 2) ** 0.5,
                }
            )
    return out


def _int64() -> Any:
    from featurestore.definitions.types import Int64

    return Int64


def make_repo(root: Path) -> Path:
    repo = root / "repo"
    if repo.exists():
        shutil.rmtree(repo)
    (repo / "data" / "txns").mkdir(parents=True)
    # a bound well below the machine's: the sketch must not need more than exact counts do
    (repo / "featurestore.toml").write_text('project = "sketch"\n[offline]\nmemory_limit = "3GB"\n')
    (repo / "defs.py").write_text(DEFS)
    rng = random.Random(19)
    end = datetime.now(UTC).replace(microsecond=0)
    seconds = 30 * 86400
    ts = [end - timedelta(seconds=rng.randrange(seconds)) for _ in range(EVENTS)]
    # half the events go to 5 heavy users (~100,000 each in 30 days, ~3,300 a day: a day's
    # tile holds more than k distinct merchants), the rest spread over all (~250 each: exact)
    users = [rng.randint(1, 5) if rng.random() < 0.5 else rng.randint(1, USERS) for _ in range(EVENTS)]
    merchants = [rng.randrange(VALUES) for _ in range(EVENTS)]
    table = pa.table(
        {
            "user_id": pa.array(users, pa.int64()),
            "ts": pa.array(ts, pa.timestamp("us", "UTC")),
            "merchant": pa.array(merchants, pa.int64()),
        }
    )
    pq.write_table(table, repo / "data" / "txns" / "part-0.parquet")
    return repo


def entity_rows(n: int) -> pa.Table:
    rng = random.Random(5)
    end = datetime.now(UTC)
    return pa.table(
        {
            "user_id": pa.array([rng.randint(1, USERS) for _ in range(n)], pa.int64()),
            "event_timestamp": pa.array(
                [end - timedelta(seconds=rng.randrange(30 * 86400)) for _ in range(n)],
                pa.timestamp("us", "UTC"),
            ),
        }
    )


def bench_training(fs: Any, runs: int) -> dict[str, Any]:
    rows = entity_rows(ENTITY_ROWS)
    times: dict[str, list[float]] = {"exact": [], "sketched": []}
    for _ in range(runs):
        for name, features in (("exact", EXACT), ("sketched", SKETCHED)):
            began = time.perf_counter()
            with fs.get_training_set(rows, features) as ts:
                ts.to_arrow()
            times[name].append(time.perf_counter() - began)
    exact, sketched = statistics.median(times["exact"]), statistics.median(times["sketched"])
    return {"seconds": times, "exact_s": exact, "sketched_s": sketched, "ratio": sketched / exact}


def bench_online(fs: Any, port: int, iterations: int) -> dict[str, Any]:
    import redis

    client = redis.Redis(port=port)
    fs.materialize()
    sizes: dict[str, list[int]] = {"exact": [], "sketched": []}
    for key in client.scan_iter(count=1000):
        view = key.split(b"}:")[-1].split(b"@")[0].decode()
        if view in sizes:
            sizes[view].append(int(client.memory_usage(key) or 0))
    users = list(range(1, 101))
    keys = {v: [k for k in client.scan_iter(match=f"*:{v}@*", count=1000)][:100] for v in sizes}
    lat: dict[str, list[float]] = {"exact": [], "sketched": [], "mget": []}
    for _ in range(iterations):
        for name, features in (("exact", EXACT), ("sketched", SKETCHED)):
            began = time.perf_counter_ns()
            fs.get_online_features(features, {"user_id": users})
            lat[name].append((time.perf_counter_ns() - began) / 1000)
        began = time.perf_counter_ns()
        client.mget(keys["sketched"])
        lat["mget"].append((time.perf_counter_ns() - began) / 1000)
    p = {name: percentiles(values) for name, values in lat.items()}
    return {
        "bytes_per_entity": {v: statistics.fmean(s) if s else 0 for v, s in sizes.items()},
        "max_bytes": {v: max(s, default=0) for v, s in sizes.items()},
        "lookup": p,
        "ratio_p50": p["sketched"]["p50_ms"] / p["exact"]["p50_ms"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    root = OUT / "sketch"
    root.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "load": os.getloadavg(),
    }
    result["accuracy"] = accuracy()
    repo = make_repo(root)
    from featurestore import FeatureStore

    with redis_server() as port:
        os.environ["FEATURESTORE_REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
        fs = FeatureStore(repo)
        fs.apply()
        fs.ingest()
        result["training"] = bench_training(fs, args.runs)
        result["online"] = bench_online(fs, port, args.calls)
        fs.close()
    result["load_after"] = os.getloadavg()
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "sketch.json").write_text(json.dumps(result, indent=2))
    print("| k | distinct | rms error | max error | 1/sqrt(k-2) |\n|---|---|---|---|---|")
    for a in result["accuracy"]:
        print(
            f"| {a['k']} | {a['n']:,} | {a['rms_error']:.2%} | {a['max_abs_error']:.2%} "
            f"| {a['standard_error']:.2%} |"
        )
    t, o = result["training"], result["online"]
    print(
        f"\ntraining set, {ENTITY_ROWS:,} rows x 2 features over {EVENTS:,} events: sketch "
        f"{t['sketched_s']:.2f} s vs exact {t['exact_s']:.2f} s = {t['ratio']:.2f}x"
    )
    print(
        f"online bytes per entity (1-day hop, 30 tiles): sketch {o['bytes_per_entity']['sketched']:.0f} "
        f"(max {o['max_bytes']['sketched']}) vs exact {o['bytes_per_entity']['exact']:.0f} "
        f"(max {o['max_bytes']['exact']})"
    )
    lk = o["lookup"]
    print(
        f"lookup 100 users x 2 features p50: sketch {lk['sketched']['p50_ms']:.3f} ms vs exact "
        f"{lk['exact']['p50_ms']:.3f} ms = {o['ratio_p50']:.2f}x; "
        f"MGET of the keys {lk['mget']['p50_ms']:.3f} ms"
    )
    print(f"load average {result['load']} -> {result['load_after']}")


if __name__ == "__main__":
    main()

"""Cost flat in repo size (issue 22): a lookup must not slow down as the registry grows.

    .venv/bin/python benchmarks/repo_size.py --calls 2000 --seconds 5 --runs 2

Repos of 1, 10 and 50 feature views on one entity (``user_id``), generated here: view v0 has
250 features, every other view 25 (Float32, Int64, String in turn), one feature service per
view, and one small Parquet file per view (1,000 users, one row each, written by pyarrow).
Each repo is applied and materialized into one Redis (a project per repo). Lookups of one
entity, columns named view__feature (the views share feature names):

  1 view x 16      v0:f0..f15                       (1 key)
  1 view x 250     v0:f0..f249                      (1 key)
  10 views x 25    v0..v9, f0..f24 of each: 250     (10 keys; repos of 10 and 50 views)

  in process  FeatureStore.get_online_features, beside redis-py MGET of the same keys (the
              limit), call by call, interleaved over every repo and request
  gRPC        a real `featurestore serve` per repo on free loopback ports, GetOnlineFeatures
              driven by h2load (-c 1, --log-file latencies), points interleaved over repos
              and requests in each round; beside redis-benchmark MGET of the same keys, c=1

What must hold: the same request costs the same in every repo (50 views / 1 view ~ 1.0), and
a view more in a request costs about what one key more costs the MGET (``10 views x 25``
against ``1 view x 250``: the same features, 9 keys more).

Results: benchmarks/results/repo-size.json and Markdown on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from online import (
    METHOD,
    OUT,
    ROOT,
    background,
    free_port,
    h2load,
    percentiles,
    redis_benchmark,
    redis_server,
    run_cli,
    run_header,
    serve_command,
)

SIZES = (1, 10, 50)
USERS = 1_000
WIDE = 250  # v0's features
NARROW = 25  # every other view's
REQUESTS: dict[str, tuple[str, ...]] = {
    "1 view x 16": tuple(f"v0:f{j}" for j in range(16)),
    "1 view x 250": tuple(f"v0:f{j}" for j in range(WIDE)),
    "10 views x 25": tuple(f"v{i}:f{j}" for i in range(10) for j in range(NARROW)),
}
USER = 42  # the entity every lookup asks for

DEFINITIONS = '''"""{views} generated feature views on one entity (benchmarks/repo_size.py)."""

from datetime import timedelta

from featurestore import Entity, FeatureService, FeatureView, Field, Float32, Int64, ParquetSource, String

user = Entity("user", join_keys=["user_id"])
TYPES = [Float32, Int64, String]

for i in range({views}):
    width = {wide} if i == 0 else {narrow}
    view = FeatureView(
        f"v{{i}}",
        entities=[user],
        source=ParquetSource(
            f"v{{i}}_source", path=f"data/v{{i}}.parquet", timestamp_field="event_timestamp"
        ),
        ttl=timedelta(days=30),
        schema=[Field("user_id", Int64), *[Field(f"f{{j}}", TYPES[j % 3]) for j in range(width)]],
    )
    globals()[f"v{{i}}"] = view
    globals()[f"s{{i}}"] = FeatureService(f"s{{i}}", features=[view])
'''


def make_repo(base: Path, views: int) -> Path:
    """A repo of ``views`` views over fresh Parquet files (values end an hour ago)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    repo = base / f"views-{views}"
    (repo / "data").mkdir(parents=True)
    (repo / "featurestore.toml").write_text(
        f'project = "size{views}"\n\n[offline]\npath = ".featurestore/store.duckdb"\n\n'
        '[online]\nredis_url = "redis://127.0.0.1:6379/0"\n'
    )
    (repo / "views.py").write_text(DEFINITIONS.format(views=views, wide=WIDE, narrow=NARROW))
    rng = np.random.default_rng(views)
    stamp = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    for i in range(views):
        columns: dict[str, pa.Array] = {
            "user_id": pa.array(np.arange(1, USERS + 1), pa.int64()),
            "event_timestamp": pa.array([stamp] * USERS, pa.timestamp("us", tz="UTC")),
        }
        for j in range(WIDE if i == 0 else NARROW):
            kind = j % 3
            if kind == 0:
                columns[f"f{j}"] = pa.array(rng.random(USERS, dtype=np.float32))
            elif kind == 1:
                columns[f"f{j}"] = pa.array(rng.integers(0, 1_000_000, USERS), pa.int64())
            else:
                columns[f"f{j}"] = pa.array([f"value-{x}" for x in rng.integers(0, 100, USERS)])
        pq.write_table(pa.table(columns), repo / "data" / f"v{i}.parquet")
    return repo


def grpc_body(features: tuple[str, ...]) -> bytes:
    from featurestore.serving.v1 import serving_pb2 as pb

    request = pb.GetOnlineFeaturesRequest(features=list(features), full_feature_names=True)
    request.entities["user_id"].int64_values.values.append(USER)
    message = request.SerializeToString()
    return b"\x00" + len(message).to_bytes(4, "big") + message


def cases() -> list[tuple[int, str]]:
    """(repo size, request) pairs: a request over 10 views needs a repo that has them."""
    return [(n, r) for n in SIZES for r in REQUESTS if not (r.startswith("10 views") and n < 10)]


def in_process(
    stores: dict[int, Any], keys: dict[tuple[int, str], list[str]], url: str, calls: int
) -> dict[str, Any]:
    """Every case's lookup and its MGET, call by call, round-robin over the cases."""
    import redis

    client = redis.Redis.from_url(url)
    ours: dict[tuple[int, str], list[float]] = {c: [] for c in cases()}
    limit: dict[tuple[int, str], list[float]] = {c: [] for c in cases()}
    entities = {"user_id": [USER]}
    for i in range(calls + 100):  # the first 100 warm up (and fill the plan caches)
        for case in ours:
            n, request = case
            t = time.perf_counter_ns()
            result = stores[n].get_online_features(list(REQUESTS[request]), entities, full_feature_names=True)
            a = time.perf_counter_ns() - t
            t = time.perf_counter_ns()
            client.mget(keys[case])
            b = time.perf_counter_ns() - t
            if i == 0:
                statuses = {s for col in result.features for s in col.statuses}
                if statuses != {1}:  # PRESENT only: a lookup that finds nothing is no lookup
                    raise RuntimeError(f"{case}: statuses {statuses}")
            if i >= 100:
                ours[case].append(a / 1000)
                limit[case].append(b / 1000)
    client.close()
    return {
        f"{n} | {r}": {"ours": percentiles(ours[(n, r)]), "mget": percentiles(limit[(n, r)])} for n, r in ours
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=2000, help="in-process calls per case")
    parser.add_argument("--seconds", type=int, default=5, help="per gRPC point")
    parser.add_argument("--runs", type=int, default=2, help="gRPC rounds over every case")
    parser.add_argument("--profile", action="store_true", help="cProfile the in-process lookups per repo")
    args = parser.parse_args()
    for tool in ("h2load", "redis-server", "redis-benchmark"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is missing: run `make bench` (installs nghttp2-client and redis-server)")
    base = OUT / "repo-size"
    shutil.rmtree(base, ignore_errors=True)
    repos = {n: make_repo(base, n) for n in SIZES}
    load_before = os.getloadavg()

    from featurestore import FeatureStore

    with redis_server() as redis_port, ExitStack() as stack:
        url = f"redis://127.0.0.1:{redis_port}/0"
        env = {**os.environ, "FEATURESTORE_REDIS_URL": url}
        os.environ["FEATURESTORE_REDIS_URL"] = url  # for the in-process stores too
        for repo in repos.values():
            run_cli(env, "apply", "--repo", str(repo))
            run_cli(env, "materialize", "--repo", str(repo))
        stores = {n: stack.enter_context(_closing(FeatureStore(repo))) for n, repo in repos.items()}
        keys = {}
        for n, request in cases():
            plan = stores[n].online_registry().plan(REQUESTS[request], full_feature_names=True)
            keys[(n, request)] = plan.keys(*plan.entity_columns({"user_id": [USER]}))
            assert len(keys[(n, request)]) == len(plan.views)  # one key per view per entity
        print("in process ...", file=sys.stderr)
        local = in_process(stores, keys, url, args.calls)
        if args.profile:
            for n in SIZES:
                profile(stores[n], n, base)

        ports = {}
        for n, repo in repos.items():
            g = free_port()
            stack.enter_context(background(serve_command(repo, g, "0"), g, env))  # gRPC only
            ports[n] = g
        remote: dict[str, dict[str, list[dict[str, float]]]] = {}
        for run in range(args.runs):
            print(f"gRPC round {run + 1} ...", file=sys.stderr)
            for n, request in cases():
                point = remote.setdefault(f"{n} | {request}", {"grpc": [], "mget": []})
                point["grpc"].append(
                    h2load(
                        f"http://127.0.0.1:{ports[n]}{METHOD}",
                        grpc_body(REQUESTS[request]),
                        1,
                        args.seconds,
                        ["-H", "content-type: application/grpc", "-H", "te: trailers"],
                    )
                )
                point["mget"].append(redis_benchmark(redis_port, keys[(n, request)], 1, 5000))

    result = {
        **run_header("repo_size.py", load_before),
        "in_process": local,
        "grpc": {case: {kind: _median(points) for kind, points in p.items()} for case, p in remote.items()},
    }
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / "repo-size.json").write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))


class _closing:
    def __init__(self, store: Any) -> None:
        self.store = store

    def __enter__(self) -> Any:
        return self.store

    def __exit__(self, *exc: object) -> None:
        self.store.close()


def _median(points: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(p[k] for p in points) for k in ("p50_ms", "p99_ms")}


def profile(store: Any, n: int, base: Path) -> None:
    """cProfile of 2,000 in-process lookups of ``1 view x 16`` in the repo of ``n`` views."""
    import cProfile
    import pstats

    path = base / f"profile-{n}.prof"
    features = list(REQUESTS["1 view x 16"])
    with cProfile.Profile() as prof:
        for _ in range(2000):
            store.get_online_features(features, {"user_id": [USER]}, full_feature_names=True)
    prof.dump_stats(path)
    print(f"-- profile, repo of {n} views ({path})", file=sys.stderr)
    pstats.Stats(str(path), stream=sys.stderr).sort_stats("tottime").print_stats(8)


def markdown(result: dict[str, Any]) -> str:
    local, remote = result["in_process"], result["grpc"]
    lines = [
        f"{result['when']}, load average {result['load_average_before']} -> {result['load_average_after']}",
        "",
        "| repo views | request | in-process p50 / p99 µs | MGET p50 / p99 µs | ours/MGET p50 "
        "| vs 1-view repo | gRPC p50 / p99 ms | redis-benchmark MGET p50 ms | gRPC vs 1-view repo |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for case in local:
        n, request = case.split(" | ")
        first = local.get(f"{SIZES[1] if request.startswith('10 views') else SIZES[0]} | {request}")
        ours, mget = local[case]["ours"], local[case]["mget"]
        g = remote[case]
        g_first = remote[f"{SIZES[1] if request.startswith('10 views') else SIZES[0]} | {request}"]
        lines.append(
            f"| {n} | {request} | {ours['p50_ms'] * 1000:.0f} / {ours['p99_ms'] * 1000:.0f} "
            f"| {mget['p50_ms'] * 1000:.0f} / {mget['p99_ms'] * 1000:.0f} "
            f"| {ours['p50_ms'] / mget['p50_ms']:.2f} | **{ours['p50_ms'] / first['ours']['p50_ms']:.2f}** "  # type: ignore[index]
            f"| {g['grpc']['p50_ms']:.3f} / {g['grpc']['p99_ms']:.3f} | {g['mget']['p50_ms']:.3f} "
            f"| **{g['grpc']['p50_ms'] / g_first['grpc']['p50_ms']:.2f}** |"
        )
    lines += [
        "",
        "A view more in a request against a key more in the MGET (p50, 10 views x 25 less "
        "1 view x 250, the same 250 features, over the 9 views or keys more):",
        "",
    ]
    for n in SIZES[1:]:
        wide, split = f"{n} | 1 view x 250", f"{n} | 10 views x 25"
        per_view = (local[split]["ours"]["p50_ms"] - local[wide]["ours"]["p50_ms"]) / 9 * 1000
        per_key = (local[split]["mget"]["p50_ms"] - local[wide]["mget"]["p50_ms"]) / 9 * 1000
        grpc_view = (remote[split]["grpc"]["p50_ms"] - remote[wide]["grpc"]["p50_ms"]) / 9 * 1000
        grpc_key = (remote[split]["mget"]["p50_ms"] - remote[wide]["mget"]["p50_ms"]) / 9 * 1000
        lines.append(
            f"- repo of {n} views: in process {per_view:.1f} µs per view (MGET {per_key:.1f} µs per key); "
            f"gRPC {grpc_view:.1f} µs per view (redis-benchmark {grpc_key:.1f} µs per key)"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()

"""What one on-demand feature adds to a lookup, against the same lookup without it.

    .venv/bin/python benchmarks/on_demand.py --scale small --runs 3 --seconds 5

The example repo (definitions/) over generated data, served by `featurestore serve`. For 1 and
100 entities, three feature lists, measured in the same run, interleaved run by run:

  without       the on-demand view's three input features (driver_stats), looked up: the
                same Redis read as the two below (answered by the gRPC fast path)
  pandas        trip_fit:earnings_per_trip (the example's view, mode="pandas": a DataFrame
                in, a DataFrame out) and its request field trip_km
  arrow         the same computation in an mode="arrow" view (pyarrow.compute), added to the
                repo copy for this benchmark

Each over gRPC (a Python stub, one request at a time, its request built once), over HTTP
(httpx, one at a time) and in process (FeatureStore.get_online_features). Reported: p50 and
p99 latency and each p50 as a ratio of the "without" p50 of the same transport and size.

Results: benchmarks/out/on-demand-SCALE/results.json and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from online import (  # noqa: E402
    OUT,
    background,
    free_port,
    percentiles,
    prepare,
    redis_server,
    run_cli,
    wait_port,
)

ARROW_VIEW = """
import pyarrow as pa
import pyarrow.compute as pc
from drivers import driver_stats
from pricing import trip_request

from featurestore import Field, Float64, on_demand_view


@on_demand_view(
    sources=[driver_stats[["earnings_today", "trips_today", "last_trip_km"]], trip_request],
    schema=[Field("earnings_per_trip", Float64)],
    mode="arrow",
)
def trip_fit_arrow(t: pa.Table) -> pa.Table:
    trips = pc.if_else(pc.greater(t["trips_today"], 0), pc.cast(t["trips_today"], pa.float64()), None)
    return pa.table({"earnings_per_trip": pc.divide(t["earnings_today"], trips)})
"""
CASES = {
    "without": ["driver_stats:earnings_today", "driver_stats:trips_today", "driver_stats:last_trip_km"],
    "pandas": ["trip_fit:earnings_per_trip"],
    "arrow": ["trip_fit_arrow:earnings_per_trip"],
}
FIRST_DRIVER = 1001


def entities(n: int) -> tuple[list[int], list[float]]:
    return [FIRST_DRIVER + i for i in range(n)], [1.0 + i % 17 for i in range(n)]


def grpc_loop(target: str, case: str, n: int, seconds: float) -> list[float]:
    import grpc

    from featurestore.serving.v1 import serving_pb2 as pb
    from featurestore.serving.v1 import serving_pb2_grpc as pb_grpc

    ids, km = entities(n)
    request = pb.GetOnlineFeaturesRequest(features=CASES[case])
    request.entities["driver_id"].int64_values.values.extend(ids)
    if case != "without":
        request.request_data["trip_km"].double_values.values.extend(km)
    with grpc.insecure_channel(target) as channel:
        call = pb_grpc.FeatureServingStub(channel).GetOnlineFeatures
        for _ in range(20):  # warm: the plan cache, the connection
            call(request, timeout=5)
        return _timed(lambda: call(request, timeout=5), seconds)


def http_loop(url: str, case: str, n: int, seconds: float) -> list[float]:
    import httpx

    ids, km = entities(n)
    body: dict[str, Any] = {"features": CASES[case], "entities": {"driver_id": ids}}
    if case != "without":
        body["request_data"] = {"trip_km": km}
    with httpx.Client(base_url=url, timeout=5) as client:

        def one() -> None:
            client.post("/v1/online-features", json=body).raise_for_status()

        for _ in range(20):
            one()
        return _timed(one, seconds)


def in_process_loop(repo: Path, case: str, n: int, seconds: float) -> list[float]:
    from featurestore import FeatureStore

    ids, km = entities(n)
    store = FeatureStore(repo)
    request_data = None if case == "without" else {"trip_km": km}

    def one() -> None:
        store.get_online_features(CASES[case], {"driver_id": ids}, request_data=request_data)

    for _ in range(20):
        one()
    try:
        return _timed(one, seconds)
    finally:
        store.close()


def _timed(call: Any, seconds: float) -> list[float]:
    latencies_us: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        call()
        latencies_us.append((time.perf_counter() - t) * 1e6)
    return latencies_us


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "| transport | entities | lookup | requests | p50 ms | p99 ms | p50 vs without |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['transport']} | {row['entities']} | {row['case']} | {row['requests']:,} | "
            f"{row['p50_ms']:.3f} | {row['p99_ms']:.3f} | {row['ratio']:.2f}x |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", default="small")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5, help="per measurement point and run")
    args = parser.parse_args()

    repo = prepare(args.scale)
    (repo / "bench_on_demand.py").write_text(ARROW_VIEW)
    out = OUT / f"on-demand-{args.scale}"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    with redis_server() as port:
        env = {**os.environ, "FEATURESTORE_REDIS_URL": f"redis://127.0.0.1:{port}/0"}
        os.environ["FEATURESTORE_REDIS_URL"] = env["FEATURESTORE_REDIS_URL"]
        run_cli(env, "apply", "--repo", str(repo))
        run_cli(env, "materialize", "--repo", str(repo))
        grpc_port, http_port = free_port(), free_port()
        serve = [
            str(Path(sys.executable).parent / "featurestore"),
            "serve",
            "--repo",
            str(repo),
            "--grpc-port",
            str(grpc_port),
            "--http-port",
            str(http_port),
        ]
        with background(serve, grpc_port, env):
            wait_port(http_port)
            samples: dict[tuple[str, int, str], list[float]] = {}
            for run in range(args.runs):
                for n in (1, 100):
                    for case in CASES:
                        for transport, loop in (
                            ("grpc", lambda c, k: grpc_loop(f"127.0.0.1:{grpc_port}", c, k, args.seconds)),
                            (
                                "http",
                                lambda c, k: http_loop(f"http://127.0.0.1:{http_port}", c, k, args.seconds),
                            ),
                            ("in-process", lambda c, k: in_process_loop(repo, c, k, args.seconds)),
                        ):
                            samples.setdefault((transport, n, case), []).extend(loop(case, n))
                print(f"run {run + 1}/{args.runs} done", file=sys.stderr)
    rows = []
    for (transport, n, case), latencies in samples.items():
        p = percentiles(latencies)
        base = percentiles(samples[(transport, n, "without")])["p50_ms"]
        rows.append(
            {
                "transport": transport,
                "entities": n,
                "case": case,
                "requests": len(latencies),
                **p,
                "ratio": p["p50_ms"] / base,
            }
        )
    rows.sort(key=lambda r: (r["transport"], r["entities"], list(CASES).index(r["case"])))
    result = {
        "scale": args.scale,
        "runs": args.runs,
        "seconds": args.seconds,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load": os.getloadavg()},
        "rows": rows,
    }
    (out / "results.json").write_text(json.dumps(result, indent=2))
    print(markdown(result))


if __name__ == "__main__":
    main()

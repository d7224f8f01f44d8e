"""On paper (issue 22): CPU per lookup of our server, a bare Python gRPC echo and a compiled one.

    benchmarks/compiled_echo/build.sh           # once: Debian's libgrpc++-dev, g++; builds the echo
    .venv/bin/python benchmarks/compiled.py --seconds 5 --runs 2

Three servers answer GetOnlineFeatures with the same bytes, driven by the same h2load command
(`-c N -m 1`, gRPC over h2c), interleaved point by point:

  ours      `featurestore serve` (one process, gRPC only), real Redis holding the demo repo's
            materialized features
  python    the bare grpc.aio echo of benchmarks/online.py and tail.py: our exact response bytes
            for the same request, no Redis (the Python floor)
  compiled  benchmarks/compiled_echo/echo_server.cc (C++, Debian's grpc++): the same bytes from a
            callback generic service (the floor of a compiled serving core)

for 1 entity (16 features of trip_model) and 100 entities. Per point: requests/s, p50/p99 (from
h2load's --log-file), and CPU seconds per request of the server, of redis-server and of h2load
itself, from /proc/<pid>/stat (utime + stime of the process and its children's threads) read
before and after the measured run (a warm-up run of the same shape goes first, unmeasured).
CPU per request holds on any machine: 1 / (CPU seconds per request) is what one core serves
at full use. Also raw Redis: redis-benchmark sending MGET of the same keys, redis-server's CPU
per MGET (the per-shard limit).

The client side of Redis in C: redis-benchmark's own CPU per MGET (hiredis, what a compiled
server's Redis client would cost at least).

Results: benchmarks/results/compiled.json (--name), and Markdown on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from online import (
    BIN,
    ECHO_SERVER,
    METHOD,
    ROOT,
    SERVICE,
    background,
    free_port,
    grpc_body,
    prepare,
    redis_server,
    run_cli,
    run_header,
)

TICK = os.sysconf("SC_CLK_TCK")
BUILD = ROOT / "benchmarks" / "compiled_echo" / "build.sh"
GRPC_HEADERS = ["-H", "content-type: application/grpc", "-H", "te: trailers"]


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (all its threads) and of its descendants, in seconds."""
    total = 0.0
    stack = [pid]
    while stack:
        p = stack.pop()
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
            children = [
                int(c)
                for task in Path(f"/proc/{p}/task").iterdir()
                for c in (task / "children").read_text().split()
            ]
        except (FileNotFoundError, ProcessLookupError):
            continue
        fields = stat.rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (fields 14, 15)
        stack.extend(children)
    return total


def run_h2load(url: str, body: Path, concurrency: int, seconds: float, log: Path | None) -> tuple[str, float]:
    """h2load's output and its own CPU seconds (rusage of the child)."""
    cmd = ["h2load", "-c", str(concurrency), "-m", "1", "-t", "1", "-d", str(body), *GRPC_HEADERS]
    cmd += ["-D", str(int(seconds))] if log else ["-n", str(max(200, int(seconds * 1000)))]
    if log:
        cmd += ["--log-file", str(log)]
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen([*cmd, url], stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
    if proc.returncode or " 0 failed, 0 errored" not in text:
        raise RuntimeError(f"h2load failed: {text}")
    return text, usage.ru_utime + usage.ru_stime


def redis_info(port: int, section: str) -> str:
    cmd = ["redis-cli", "-p", str(port), "info", section]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def mget_stats(redis_port: int) -> tuple[int, int]:
    """(calls, microseconds) of MGET inside Redis so far (INFO commandstats)."""
    for line in redis_info(redis_port, "commandstats").splitlines():
        if line.startswith("cmdstat_mget:"):
            stats = dict(kv.split("=") for kv in line.split(":", 1)[1].split(","))
            return int(stats["calls"]), int(stats["usec"])
    return 0, 0


def point(
    port: int, server_pid: int, redis: tuple[int, int], body: Path, concurrency: int, seconds: float
) -> dict[str, Any]:
    redis_port, redis_pid = redis
    url = f"http://127.0.0.1:{port}{METHOD}"
    run_h2load(url, body, concurrency, 1.0, None)  # warm-up, not measured
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "log"
        mget0 = mget_stats(redis_port)
        server0, redis0 = cpu_seconds(server_pid), cpu_seconds(redis_pid)
        _, h2load_cpu = run_h2load(url, body, concurrency, seconds, log)
        server_cpu = cpu_seconds(server_pid) - server0
        redis_cpu = cpu_seconds(redis_pid) - redis0
        mget1 = mget_stats(redis_port)
        rows = [line.split("\t") for line in log.read_text().splitlines() if line]
    ms = sorted(float(r[2]) / 1000 for r in rows if r[1] == "200")
    # The server's CPU covers every request it answered in the run, cut-off ones included.
    n = len(rows)
    return {
        "requests": len(ms),
        "rps": len(ms) / seconds,
        "p50_ms": ms[len(ms) // 2],
        "p99_ms": ms[min(len(ms) - 1, int(0.99 * len(ms)))],
        "server_cpu_us": server_cpu / n * 1e6,
        "server_cores": server_cpu / seconds,
        "redis_cpu_us": redis_cpu / n * 1e6,
        "mgets_per_request": (mget1[0] - mget0[0]) / n,
        "mget_exec_us": (mget1[1] - mget0[1]) / max(1, mget1[0] - mget0[0]),  # inside Redis, per MGET
        "h2load_cpu_us": h2load_cpu / n * 1e6,
    }


def redis_mget(port: int, redis_pid: int, keys: list[str], concurrency: int, requests: int) -> dict[str, Any]:
    """redis-server's CPU per MGET of ``keys`` under redis-benchmark."""
    cmd = ["redis-benchmark", "-p", str(port), "-c", str(concurrency), "-n", str(requests), "--csv"]
    mget0 = mget_stats(port)
    before = cpu_seconds(redis_pid)
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as f:
        proc = subprocess.Popen([*cmd, "MGET", *keys], stdout=f)
        _, status, usage = os.wait4(proc.pid, 0)
        f.seek(0)
        out = f.read()
    wall = time.perf_counter() - started
    if status:
        raise RuntimeError(f"redis-benchmark failed: {out}")
    cpu = cpu_seconds(redis_pid) - before
    mget1 = mget_stats(port)
    header, values = (line.replace('"', "").split(",") for line in out.strip().splitlines()[-2:])
    row = dict(zip(header, values, strict=True))
    return {
        "requests": requests,
        "rps": float(row["rps"]),
        "p50_ms": float(row["p50_latency_ms"]),
        "p99_ms": float(row["p99_latency_ms"]),
        "redis_cpu_us": cpu / requests * 1e6,
        "mget_exec_us": (mget1[1] - mget0[1]) / max(1, mget1[0] - mget0[0]),
        "redis_cores": cpu / wall,
        # the client: C, hiredis, one connection per -c (what a compiled server's Redis client costs)
        "client_cpu_us": (usage.ru_utime + usage.ru_stime) / requests * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=5, help="per measured h2load point")
    parser.add_argument("--runs", type=int, default=2, help="rounds, every point in each")
    parser.add_argument("--concurrency", default="1,8,64")
    parser.add_argument("--entities", default="1,100")
    parser.add_argument("--name", default="compiled", help="results/NAME.json")
    args = parser.parse_args()
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    sizes = [int(n) for n in args.entities.split(",")]
    echo_bin = Path(subprocess.run([BUILD], check=True, capture_output=True, text=True).stdout.split()[-1])
    repo = prepare("demo")
    load_before = os.getloadavg()
    samples: dict[str, list[dict[str, Any]]] = {}
    mgets: dict[str, list[dict[str, Any]]] = {}

    with redis_server() as redis_port, ExitStack() as stack:
        redis_pid = int(redis_info(redis_port, "server").split("process_id:")[1].split()[0])
        os.environ["FEATURESTORE_REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
        env = dict(os.environ)
        run_cli(env, "apply", "--repo", str(repo))
        run_cli(env, "materialize", "--repo", str(repo))
        import pyarrow.parquet as pq

        from featurestore import Client, FeatureStore
        from featurestore.config import load_config

        rows = pq.read_table(repo / "data" / "entity_rows.parquet", columns=["driver_id", "customer_id"])
        drivers = rows.column("driver_id").to_pylist()
        customers = rows.column("customer_id").to_pylist()
        store = FeatureStore(repo, config=load_config(repo, env=env))
        plan = store.online_registry().plan(SERVICE)
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))

        port = free_port()
        serve = [str(BIN / "featurestore"), "serve", "--repo", str(repo), "--grpc-port", str(port)]
        ours = stack.enter_context(background([*serve, "--http-port", "0"], port, env))
        targets: dict[tuple[int, str], tuple[int, int]] = {}  # (entities, name) -> (port, pid)
        bodies: dict[int, Path] = {}
        keys: dict[int, list[str]] = {}
        for n in sizes:
            entities = {"driver_id": drivers[:n], "customer_id": customers[:n]}
            with Client(f"127.0.0.1:{port}") as client:  # the bytes answer, with values
                answer = client.get_online_features(SERVICE, entities)
                if not all(s == "PRESENT" for s in answer.statuses["conv_rate"]):
                    raise RuntimeError(f"not every entity of {n} is served: {answer.statuses['conv_rate']}")
            body = grpc_body(drivers[:n], customers[:n])
            bodies[n] = tmp / f"body-{n}"
            bodies[n].write_bytes(body)
            response = tmp / f"response-{n}"
            response.write_bytes(_response_bytes(port, body))
            keys[n] = [
                k if isinstance(k, str) else k.decode() for k in plan.keys(*plan.entity_columns(entities))
            ]
            targets[(n, "ours")] = (port, ours.pid)
            for name, cmd in (
                ("python echo", [str(BIN / "python"), "-c", ECHO_SERVER]),
                ("compiled echo", [str(echo_bin)]),
            ):
                p = free_port()
                proc = stack.enter_context(background([*cmd, str(p), str(response)], p))
                if _response_bytes(p, body) != response.read_bytes():
                    raise RuntimeError(f"{name} answers other bytes")
                targets[(n, name)] = (p, proc.pid)
        store.close()

        for run in range(args.runs):
            for n in sizes:
                for c in concurrencies:
                    for name in ("ours", "python echo", "compiled echo"):  # interleaved
                        p, pid = targets[(n, name)]
                        s = point(p, pid, (redis_port, redis_pid), bodies[n], c, args.seconds)
                        samples.setdefault(f"{n} {c} {name}", []).append(s)
                        print(
                            f"  run {run + 1} {n} entities c={c} {name}: {s['rps']:.0f}/s, "
                            f"{s['server_cpu_us']:.0f} us CPU/request",
                            file=sys.stderr,
                        )
                    m = redis_mget(redis_port, redis_pid, keys[n], c, max(20_000, int(args.seconds * 10_000)))
                    mgets.setdefault(f"{n} {c}", []).append(m)
        redis_keys = {n: len(k) for n, k in keys.items()}

    result = {
        **run_header("compiled.py", load_before),
        "seconds_per_point": args.seconds,
        "redis_keys_per_lookup": redis_keys,
        "points": {k: _median(v) for k, v in samples.items()},
        "runs": samples,
        "redis_mget": {k: _median(v) for k, v in mgets.items()},
        "redis_mget_runs": mgets,
    }
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))


def _response_bytes(port: int, body: bytes) -> bytes:
    import grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
        return bytes(call(body[5:], timeout=5))


def _median(runs: list[dict[str, Any]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"{result['when']}, load average {result['load_average_before']} -> {result['load_average_after']}, "
        f"commit {result['commit']}; medians of the runs; CPU in microseconds per request",
        "",
        "| entities | c | server | req/s | p50 ms | p99 ms | server CPU µs/req | server cores busy "
        "| Redis CPU µs/req | MGETs/req, µs in Redis each | h2load CPU µs/req | server CPU / ours |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    points = result["points"]
    for key, s in points.items():
        n, c, name = key.split(" ", 2)
        ours = points[f"{n} {c} ours"]["server_cpu_us"]
        lines.append(
            f"| {n} | {c} | {name} | {s['rps']:,.0f} | {s['p50_ms']:.2f} | {s['p99_ms']:.2f} "
            f"| {s['server_cpu_us']:.1f} | {s['server_cores']:.2f} | {s['redis_cpu_us']:.1f} "
            f"| {s['mgets_per_request']:.2f}, {s['mget_exec_us']:.1f} "
            f"| {s['h2load_cpu_us']:.1f} | **{s['server_cpu_us'] / ours:.2f}** |"
        )
    lines += [
        "",
        "Raw Redis, redis-benchmark MGET of the same keys "
        f"(keys per lookup: {result['redis_keys_per_lookup']}):",
        "",
        "| entities | c | MGET/s | p50 ms | p99 ms | redis-server CPU µs/MGET | µs in Redis each "
        "| redis cores busy | redis-benchmark CPU µs/MGET |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, m in result["redis_mget"].items():
        n, c = key.split()
        lines.append(
            f"| {n} | {c} | {m['rps']:,.0f} | {m['p50_ms']:.3f} | {m['p99_ms']:.3f} "
            f"| {m['redis_cpu_us']:.1f} | {m['mget_exec_us']:.1f} | {m['redis_cores']:.2f} "
            f"| {m['client_cpu_us']:.1f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()

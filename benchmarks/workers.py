"""Workers that scale (issue 22, target 3): `serve --workers 2` beside one worker, by client connections.

    .venv/bin/python benchmarks/workers.py --seconds 6 --runs 2

`--workers N` shares the ports with SO_REUSEPORT: the kernel hashes each connection to one
worker, once. h2load (`-c C -m 1`, one thread) opens C connections and sends GetOnlineFeatures
(one entity of trip_model) on each; for C = 2, 8 and 64 this measures, in the same rounds:

  1 worker         requests per second, the server's CPU
  2 workers        the same, with each worker's CPU and how many of h2load's connections it
                   holds (sampled from /proc/net/tcp during the run): the balance
  2 workers, aged  the same with `--max-connection-age` (short, so a few-second run shows it):
                   connections are asked to reconnect and are hashed afresh

and h2load's own CPU per second of wall time: near 1.0 it has a core to itself and is the
bottleneck, not the server. Results: benchmarks/results/workers.json and Markdown on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from cpu import GRPC_HEADERS, children, cpu_of, load
from online import (
    BIN,
    METHOD,
    ROOT,
    background,
    free_port,
    grpc_body,
    prepare,
    redis_server,
    run_cli,
    run_header,
    serve_command,
    wait_port,
)

# A Python load generator (grpc.aio): C channels, each its own connection and one caller. Unlike
# h2load it reconnects after a GOAWAY, as every gRPC client does. Prints calls, failures, CPU.
PY_LOAD = """
import asyncio, json, sys, time, grpc
port, conns, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
body = open(sys.argv[4], "rb").read()
METHOD = "/featurestore.serving.v1.FeatureServing/GetOnlineFeatures"
ok = failed = 0
async def caller(channel, end):
    global ok, failed
    call = channel.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
    while time.monotonic() < end:
        try:
            await call(body, timeout=10)
            ok += 1
        except grpc.RpcError:
            failed += 1
async def main():
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options) for _ in range(conns)]
    for ch in channels:
        await ch.channel_ready()
    cpu, wall = time.process_time(), time.monotonic()
    await asyncio.gather(*(caller(ch, wall + seconds) for ch in channels))
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    print(json.dumps({"ok": ok, "failed": failed, "cpu_s": cpu, "wall_s": wall}))
    for ch in channels:
        await ch.close()
asyncio.run(main())
"""


def py_load(port: int, body: bytes, c: int, seconds: int, pids: list[int]) -> dict[str, Any]:
    """The Python load generator's run: requests answered, each worker's CPU, the generator's CPU."""
    with tempfile.NamedTemporaryFile() as data:
        data.write(body[5:])  # the message, without gRPC's 5-byte frame header
        data.flush()
        before = [cpu_of(p) for p in pids]
        started = time.monotonic()
        out = subprocess.run(
            [str(BIN / "python"), "-c", PY_LOAD, str(port), str(c), str(seconds), data.name],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        after = [cpu_of(p) for p in pids]
    found = json.loads(out)
    cpu = [b - a for a, b in zip(before, after, strict=True)]
    return {
        "requests": found["ok"],
        "failed": found["failed"],
        "rps": found["ok"] / found["wall_s"],
        "wall_s": time.monotonic() - started,  # the server's CPU is over the whole process's life
        "server_cpu_s": sum(cpu),
        "per_process_cpu_s": cpu,
        "generator_cpu_per_wall": found["cpu_s"] / found["wall_s"],
    }


def connections(pids: list[int], port: int) -> list[int]:
    """Established connections on local ``port`` held by each process."""
    inodes: list[set[str]] = []
    for pid in pids:
        found = set()
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                found.add(target[8:-1])
        inodes.append(found)
    counts = [0] * len(pids)
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] == "01" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                for i, held in enumerate(inodes):
                    if cols[9] in held:
                        counts[i] += 1
    return counts


def placement(pids: list[int], port: int, c: int, trials: int) -> list[list[int]]:
    """Where the kernel puts ``c`` fresh TCP connections, ``trials`` times: per trial, the
    connections each worker accepted. SO_REUSEPORT places a connection when it is made,
    whatever it will carry, so plain connections show what a client's channels get."""
    found = []
    for _ in range(trials):
        socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(c)]
        try:
            deadline = time.monotonic() + 5
            while sum(held := connections(pids, port)) < c and time.monotonic() < deadline:
                time.sleep(0.01)  # each worker accepts on its own event loop
            found.append(held)
        finally:
            for s in socks:
                s.close()
    return found


def point(pids: list[int], port: int, body: bytes, c: int, seconds: int, generator: str) -> dict[str, Any]:
    """One run of the load generator with the connections per worker sampled every 0.5 s."""
    samples: list[list[int]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.5):
            samples.append(connections(pids, port))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        if generator == "h2load":
            result = load(f"http://127.0.0.1:{port}{METHOD}", body, c, seconds, GRPC_HEADERS, pids)
        else:
            result = py_load(port, body, c, seconds, pids)
    finally:
        done.set()
        sampler.join()
    held = [sum(s[i] for s in samples) for i in range(len(pids))]  # connection-samples per worker
    result["connections_per_worker"] = [round(h / max(1, len(samples)), 1) for h in held]
    result["cpu_share_per_worker"] = [
        x / max(1e-9, sum(result["per_process_cpu_s"])) for x in result["per_process_cpu_s"]
    ]
    if generator == "h2load":
        result["generator_cpu_per_wall"] = result["h2load_cpu_s"] / result["wall_s"]
    result["server_cpu_per_wall"] = result["server_cpu_s"] / result["wall_s"]
    return result


GENERATORS = ("h2load", "python")
SERIES = ("1 worker", "2 workers", "2 workers, aged")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=6, help="per h2load point")
    parser.add_argument("--runs", type=int, default=2, help="rounds, every point in each")
    parser.add_argument("--connections", default="2,8,64")
    parser.add_argument("--age", type=float, default=1.0, help="--max-connection-age of the aged series, s")
    parser.add_argument("--trials", type=int, default=50, help="fresh sets of connections placed")
    parser.add_argument("--name", default="workers", help="results/NAME.json")
    args = parser.parse_args()
    counts = [int(c) for c in args.connections.split(",")]
    repo = prepare("demo")
    load_before = os.getloadavg()
    points: dict[str, list[dict[str, Any]]] = {}

    with redis_server() as redis_port, ExitStack() as stack:
        env = {**os.environ, "FEATURESTORE_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0"}
        run_cli(env, "apply", "--repo", str(repo))
        run_cli(env, "materialize", "--repo", str(repo))
        import pyarrow.parquet as pq

        rows = pq.read_table(repo / "data" / "entity_rows.parquet", columns=["driver_id", "customer_id"])
        body = grpc_body(rows.column("driver_id").to_pylist()[:1], rows.column("customer_id").to_pylist()[:1])
        series = {  # SERIES
            "1 worker": ["--workers", "1"],
            "2 workers": ["--workers", "2", "--max-connection-age", "0"],
            "2 workers, aged": ["--workers", "2", "--max-connection-age", str(args.age)],
        }
        servers: dict[str, tuple[int, list[int]]] = {}
        for name, extra in series.items():
            g, h = free_port(), free_port()
            proc = stack.enter_context(background(serve_command(repo, g, h, *extra), g, env))
            wait_port(h)
            spawned = [
                p for p in children(proc.pid) if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()
            ]
            workers = spawned if extra[1] != "1" else [proc.pid]
            servers[name] = (g, workers)
        port, pids = servers["2 workers"]
        trials = {str(c): placement(pids, port, c, args.trials) for c in counts if c <= 8}
        for run in range(args.runs):
            for c, generator in ((c, g) for c in counts for g in GENERATORS):
                for name, (port, pids) in servers.items():
                    if generator == "h2load" and name.endswith("aged"):
                        continue  # h2load does not reconnect after a GOAWAY: its connections die
                    if run == 0:
                        load(f"http://127.0.0.1:{port}{METHOD}", body, c, 1, GRPC_HEADERS, pids)
                    p = point(pids, port, body, c, args.seconds, generator)
                    points.setdefault(f"c={c} {generator} {name}", []).append(p)
                    print(
                        f"  run {run + 1} c={c} {generator} {name}: {p['rps']:.0f}/s, "
                        f"connections {p['connections_per_worker']}, "
                        f"CPU share {[round(x, 2) for x in p['cpu_share_per_worker']]}, "
                        f"generator CPU/wall {p['generator_cpu_per_wall']:.2f}, failed {p['failed']}",
                        file=sys.stderr,
                    )

    result = {
        **run_header("workers.py", load_before),
        "cpus": os.cpu_count(),
        "points": points,
        "placement": trials,
    }
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result, counts))


def markdown(result: dict[str, Any], counts: list[int]) -> str:
    lines = [
        f"{result['when']}, commit {result['commit']}, {result['cpus']} CPUs, load average "
        f"{result['load_average_before']} -> {result['load_average_after']}; medians over rounds "
        "(ratios per round in brackets)",
        "",
        "| connections | load generator | series | req/s | vs 1 worker | server CPU/wall "
        "| CPU share per worker "
        "| connections per worker | generator CPU/wall | failed |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    points = result["points"]
    for c, generator, name in ((c, g, n) for c in counts for g in GENERATORS for n in SERIES):
        if f"c={c} {generator} {name}" in points:
            one = points[f"c={c} {generator} 1 worker"]
            ps = points[f"c={c} {generator} {name}"]
            ratio = [p["rps"] / o["rps"] for p, o in zip(ps, one, strict=True)]
            shares = " / ".join(
                f"{statistics.median(p['cpu_share_per_worker'][i] for p in ps):.2f}"
                for i in range(len(ps[0]["cpu_share_per_worker"]))
            )
            held = " / ".join(
                f"{statistics.median(p['connections_per_worker'][i] for p in ps):g}"
                for i in range(len(ps[0]["connections_per_worker"]))
            )
            lines.append(
                f"| {c} | {generator} | {name} | {statistics.median(p['rps'] for p in ps):,.0f} "
                f"| **{statistics.median(ratio):.2f}** ({', '.join(f'{r:.2f}' for r in ratio)}) "
                f"| {statistics.median(p['server_cpu_per_wall'] for p in ps):.2f} | {shares} | {held} "
                f"| {statistics.median(p['generator_cpu_per_wall'] for p in ps):.2f} "
                f"| {sum(p['failed'] for p in ps)} |"
            )
    lines += [
        "",
        "Where the kernel puts fresh connections (2 workers, no connection age):",
        "",
        "| connections | trials | all on one worker | expected (2^(1-c)) | mean share of the busier worker |",
        "|---|---|---|---|---|",
    ]
    for c, found in result["placement"].items():
        lopsided = sum(0 in held for held in found)
        busier = statistics.mean(max(held) / max(1, sum(held)) for held in found)
        lines.append(
            f"| {c} | {len(found)} | {lopsided} ({lopsided / len(found):.0%}) | {2 ** (1 - int(c)):.1%} "
            f"| {busier:.2f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()

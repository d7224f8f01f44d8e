"""CPU per lookup (issue 22, target 1): server CPU seconds per request beside echo limits.

    .venv/bin/python benchmarks/cpu.py --seconds 5 --runs 3

Requests per second move with whatever else runs on a shared machine; CPU per request moves
much less, and it is what a fleet pays. For every point, the CPU (utime + stime from
/proc/<pid>/stat) of the serving process over an h2load run, divided by the requests h2load
saw answered; h2load's own CPU (its rusage) is reported beside it, to show the load generator.

  ours     `featurestore serve` (one process), GetOnlineFeatures and POST /v1/online-features
           of trip_model (16 features), 1 and 100 entities
  echo     a bare grpc.aio server answering our exact response bytes; a bare uvicorn app (the
           server and options we run) answering our exact JSON bytes: the transport's cost
  mget     a plain redis-py (hiredis) client process issuing the MGET of the same keys the
           lookup reads, in a loop: its CPU per call (time.process_time) is the raw Redis cost

Targets: 1 entity, ours/echo CPU per request <= 1.5; 100 entities, ours/(echo + mget) <= 2;
throughput at concurrency 8, ours/echo >= 0.75 (one worker). Every point is measured in the
same rounds, interleaved. Results: benchmarks/results/cpu.json and Markdown on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
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
    METHOD,
    ROOT,
    SERVICE,
    background,
    free_port,
    grpc_body,
    h2load_command,
    prepare,
    redis_server,
    run_cli,
    run_header,
    serve_command,
    wait_port,
)
from tail import GRPC_ECHO, HTTP_ECHO, grpc_response, http_response

TICK = os.sysconf("SC_CLK_TCK")
GRPC_HEADERS = ["-H", "content-type: application/grpc", "-H", "te: trailers"]
HTTP_HEADERS = ["--h1", "-H", "content-type: application/json"]

# The raw Redis cost: the same MGET from a plain client, CPU per call of this process alone.
MGET_CHILD = """
import json, sys, time, redis
port, seconds, keys = int(sys.argv[1]), float(sys.argv[2]), json.loads(sys.argv[3])
r = redis.Redis(port=port)
for _ in range(500):
    r.mget(keys)
calls, cpu0, end = 0, time.process_time(), time.monotonic() + seconds
while time.monotonic() < end:
    for _ in range(100):
        r.mget(keys)
    calls += 100
print(json.dumps({"calls": calls, "cpu_s": time.process_time() - cpu0}))
"""

# The same MGET from an event loop (featurestore's own asyncio client, as the server reads
# Redis), C callers at once: what a Redis round trip costs inside asyncio, per call.
ASYNC_MGET_CHILD = """
import asyncio, json, sys, time
from featurestore.online.aioredis import AsyncRedis
port, seconds, keys, c = int(sys.argv[1]), float(sys.argv[2]), json.loads(sys.argv[3]), int(sys.argv[4])
async def caller(r, end, counts):
    while time.monotonic() < end:
        for _ in range(20):
            await r.mget(keys)
        counts.append(20)
async def main():
    r = AsyncRedis(f"redis://127.0.0.1:{port}/0")
    await asyncio.gather(*(caller(r, time.monotonic() + 0.5, []) for _ in range(c)))
    counts, cpu0 = [], time.process_time()
    await asyncio.gather(*(caller(r, time.monotonic() + seconds, counts) for _ in range(c)))
    print(json.dumps({"calls": sum(counts), "cpu_s": time.process_time() - cpu0}))
asyncio.run(main())
"""


def cpu_of(pid: int) -> float:
    """CPU seconds (user + system, all threads) a live process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime: fields 14 and 15


def main_thread_cpu(pid: int) -> float:
    """CPU seconds of a process's main thread alone (Python's event loop; the rest is grpc's
    C-core threads and thread pools)."""
    return cpu_of_task(pid, pid)


def cpu_of_task(pid: int, tid: int) -> float:
    fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def children(pid: int) -> list[int]:
    """Direct children of a process (the workers of `serve --workers N`)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return sorted(found)


def load(
    url: str, body: bytes, concurrency: int, seconds: float, extra: list[str], pids: list[int]
) -> dict[str, Any]:
    """One h2load run: requests answered, and the CPU each of ``pids`` and h2load spent on them."""
    with tempfile.NamedTemporaryFile() as data:
        data.write(body)
        data.flush()
        cmd = h2load_command(url, data.name, concurrency, round(seconds), *extra)
        before = [cpu_of(p) for p in pids]
        main_before = main_thread_cpu(pids[0])
        started = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - started
        after = [cpu_of(p) for p in pids]
        main_after = main_thread_cpu(pids[0])
    found = re.search(
        r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored", out
    )
    if status != 0 or not found or int(found.group(1)) == 0:
        raise RuntimeError(f"h2load failed: {out}")
    ok = int(found.group(1))
    cpu = [b - a for a, b in zip(before, after, strict=True)]
    return {
        "requests": ok,
        "failed": int(found.group(2)) + int(found.group(3)),
        "rps": ok / seconds,
        "wall_s": wall,
        "server_cpu_s": sum(cpu),
        "per_process_cpu_s": cpu,
        "server_cpu_us_per_request": sum(cpu) / ok * 1e6,
        "main_thread_cpu_us_per_request": (main_after - main_before) / ok * 1e6,
        "h2load_cpu_s": usage.ru_utime + usage.ru_stime,
        "h2load_cpu_us_per_request": (usage.ru_utime + usage.ru_stime) / ok * 1e6,
    }


def profile(pid: int, url: str, body: bytes, seconds: int, n: int) -> None:
    """Our server under h2load -c 8, sampled twice: py-spy (wall time, Python frames and native
    ones) to results/cpu-profile-nN.txt, then perf (on-CPU time only, by library and symbol,
    kernel included; Python 3.11's frames show as the interpreter) to cpu-perf-nN.txt."""
    out = ROOT / "benchmarks" / "results"
    path = out / f"cpu-profile-n{n}.raw"  # collapsed stacks; the summary goes beside it as .txt
    spy = subprocess.Popen(
        [str(BIN / "py-spy"), "record", "-p", str(pid), "-d", str(seconds), "-r", "200", "--native",
         "--format", "raw", "-o", str(path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(1)
    load(url, body, 8, seconds, GRPC_HEADERS, [pid])
    spy.wait()
    path.with_suffix(".txt").write_text(summarize(path, 60) + "\n")
    path.unlink()
    print(f"profile, {n} entities: {path.with_suffix('.txt')}", file=sys.stderr)
    if shutil.which("perf") is None:
        return
    data = out / f"cpu-perf-n{n}.data"
    perf = subprocess.Popen(
        ["perf", "record", "-F", "999", "-p", str(pid), "-o", str(data), "--", "sleep", str(seconds)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    load(url, body, 8, seconds, GRPC_HEADERS, [pid])
    perf.wait()
    report = "".join(
        subprocess.run(
            ["perf", "report", "-i", str(data), "--no-children", "--sort", sort, "--stdio",
             "--percent-limit", "0.5"],
            capture_output=True, text=True,
        ).stdout
        for sort in ("dso", "dso,symbol")
    )  # fmt: skip
    data.unlink()
    (out / f"cpu-perf-n{n}.txt").write_text(report)
    print(f"perf, {n} entities: {out / f'cpu-perf-n{n}.txt'}", file=sys.stderr)


# Leaf frames of a thread waiting (py-spy samples wall time): left out of the shares.
WAITING = ("epoll_wait", "PyThread_acquire_lock_timed", "pthread_cond_timedwait", "pthread_cond_wait")


def summarize(path: Path, top: int = 25) -> str:
    """Share of busy samples per function: self (leaf frame) and inclusive (anywhere in the
    stack). py-spy samples wall time, so a thread descheduled inside a syscall (send to Redis
    wakes redis-server, which may run first) counts there: syscall shares are upper bounds."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = busy = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [re.sub(r" \(.*?\)$", "", f) for f in stack.split(";")]
        total += int(count)
        if any(f.startswith(WAITING) for f in frames[-3:]):
            continue
        busy += int(count)
        own[frames[-1]] = own.get(frames[-1], 0) + int(count)
        for f in set(frames):
            if not f.startswith("0x"):  # unnamed native frames (grpc's Cython module)
                inclusive[f] = inclusive.get(f, 0) + int(count)
    lines = [f"{total} samples, {busy} busy; self:"]
    lines += [f"  {c / busy:6.1%}  {f}" for f, c in sorted(own.items(), key=lambda x: -x[1])[:top]]
    lines.append("inclusive:")
    lines += [f"  {c / busy:6.1%}  {f}" for f, c in sorted(inclusive.items(), key=lambda x: -x[1])[:top]]
    return "\n".join(lines)


def mget_cpu(port: int, keys: list[str], seconds: float, c: int = 0) -> dict[str, float]:
    """CPU per MGET call of a plain redis-py client (c=0), or of our asyncio client with c callers."""
    child = [MGET_CHILD] if c == 0 else [ASYNC_MGET_CHILD]
    out = subprocess.run(
        [
            str(BIN / "python"),
            "-c",
            *child,
            str(port),
            str(seconds),
            json.dumps(keys),
            *([str(c)] if c else []),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    found = json.loads(out)
    return {"calls": found["calls"], "cpu_us_per_call": found["cpu_s"] / found["calls"] * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=5, help="per h2load point")
    parser.add_argument("--runs", type=int, default=3, help="rounds, every point in each")
    parser.add_argument("--concurrency", default="1,8")
    parser.add_argument("--entities", default="1,100")
    parser.add_argument("--no-http", action="store_true", help="gRPC only")
    parser.add_argument("--name", default="cpu", help="results/NAME.json")
    parser.add_argument(
        "--profile", type=int, default=0, help="then py-spy our server this many seconds per size (gRPC, c=8)"
    )
    args = parser.parse_args()
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    sizes = [int(n) for n in args.entities.split(",")]
    transports = ["grpc"] if args.no_http else ["grpc", "http"]
    repo = prepare("demo")
    load_before = os.getloadavg()
    points: dict[str, list[dict[str, Any]]] = {}
    mget: dict[int, list[dict[str, float]]] = {}
    amget: dict[tuple[int, int], list[dict[str, float]]] = {}

    with redis_server() as redis_port, ExitStack() as stack:
        os.environ["FEATURESTORE_REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
        env = dict(os.environ)
        run_cli(env, "apply", "--repo", str(repo))
        run_cli(env, "materialize", "--repo", str(repo))
        import pyarrow.parquet as pq

        from featurestore import FeatureStore

        rows = pq.read_table(repo / "data" / "entity_rows.parquet", columns=["driver_id", "customer_id"])
        drivers, customers = rows.column("driver_id").to_pylist(), rows.column("customer_id").to_pylist()
        g, h = free_port(), free_port()
        ours = stack.enter_context(background(serve_command(repo, g, h), g, env))
        wait_port(h)
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        store = FeatureStore(repo)
        plan = store.online_registry().plan(SERVICE)
        cases: dict[int, dict[str, Any]] = {}
        for n in sizes:
            entities = {"driver_id": drivers[:n], "customer_id": customers[:n]}
            body = grpc_body(drivers[:n], customers[:n])
            json_body = json.dumps({"feature_service": SERVICE, "entities": entities}).encode()
            (tmp / f"grpc-{n}").write_bytes(grpc_response(g, body))
            (tmp / f"http-{n}").write_bytes(http_response(h, json_body))
            keys = plan.keys(*plan.entity_columns(entities))
            cases[n] = {"body": body, "json": json_body, "keys": keys, "servers": {}}
            for kind, script in (("grpc", GRPC_ECHO), ("http", HTTP_ECHO)):
                if kind not in transports:
                    continue
                port = free_port()
                echo = stack.enter_context(
                    background([str(BIN / "python"), "-c", script, str(port), str(tmp / f"{kind}-{n}")], port)
                )
                cases[n]["servers"][kind] = {
                    "ours": (ours.pid, g if kind == "grpc" else h),
                    "echo": (echo.pid, port),
                }
        store.close()

        for run in range(args.runs):
            for n, case in cases.items():
                for c in concurrencies:
                    for kind in transports:
                        for name, (pid, port) in case["servers"][kind].items():  # ours, then echo
                            if kind == "grpc":
                                url, body, extra = (
                                    f"http://127.0.0.1:{port}{METHOD}",
                                    case["body"],
                                    GRPC_HEADERS,
                                )
                            else:
                                url, body, extra = (
                                    f"http://127.0.0.1:{port}/v1/online-features",
                                    case["json"],
                                    HTTP_HEADERS,
                                )
                            if run == 0:  # warm up (caches, plans) outside the measured runs
                                load(url, body, c, 1, extra, [pid])
                            point = load(url, body, c, args.seconds, extra, [pid])
                            points.setdefault(f"{kind} n={n} c={c} {name}", []).append(point)
                            print(
                                f"  run {run + 1} {kind} n={n} c={c} {name}: {point['rps']:.0f}/s, "
                                f"{point['server_cpu_us_per_request']:.0f} us CPU/request, "
                                f"h2load {point['h2load_cpu_us_per_request']:.0f} us",
                                file=sys.stderr,
                            )
                mget.setdefault(n, []).append(mget_cpu(redis_port, case["keys"], min(args.seconds, 3)))
                for c in concurrencies:
                    amget.setdefault((n, c), []).append(
                        mget_cpu(redis_port, case["keys"], min(args.seconds, 3), c)
                    )
        if args.profile:
            for n, case in cases.items():
                profile(ours.pid, f"http://127.0.0.1:{g}{METHOD}", case["body"], args.profile, n)

    result = {
        **run_header("cpu.py", load_before),
        "cpus": os.cpu_count(),
        "points": points,
        "mget": {str(n): v for n, v in mget.items()},
        "async_mget": {f"n={n} c={c}": v for (n, c), v in amget.items()},
        "ratios": ratios(points, mget, amget, concurrencies, sizes, transports),
    }
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))


def ratios(
    points: dict[str, list[dict[str, Any]]],
    mget: dict[int, list[dict[str, float]]],
    amget: dict[tuple[int, int], list[dict[str, float]]],
    concurrencies: list[int],
    sizes: list[int],
    transports: list[str],
) -> list[dict[str, Any]]:
    """Per transport, size and concurrency: ratios round by round (ours and its limits ran
    back to back), and their median."""
    rows = []
    for kind in transports:
        for n in sizes:
            for c in concurrencies:
                ours, echo = points[f"{kind} n={n} c={c} ours"], points[f"{kind} n={n} c={c} echo"]
                raw = [m["cpu_us_per_call"] for m in mget[n]]
                cpu = [
                    o["server_cpu_us_per_request"] / e["server_cpu_us_per_request"]
                    for o, e in zip(ours, echo, strict=True)
                ]
                cpu_mget = [
                    o["server_cpu_us_per_request"] / (e["server_cpu_us_per_request"] + m)
                    for o, e, m in zip(ours, echo, raw, strict=True)
                ]
                rps = [o["rps"] / e["rps"] for o, e in zip(ours, echo, strict=True)]
                aio = [m["cpu_us_per_call"] for m in amget[(n, c)]]
                cpu_amget = [
                    o["server_cpu_us_per_request"] / (e["server_cpu_us_per_request"] + m)
                    for o, e, m in zip(ours, echo, aio, strict=True)
                ]
                rows.append(
                    {
                        "transport": kind,
                        "entities": n,
                        "concurrency": c,
                        "ours_cpu_us": statistics.median(o["server_cpu_us_per_request"] for o in ours),
                        "echo_cpu_us": statistics.median(e["server_cpu_us_per_request"] for e in echo),
                        "mget_cpu_us": statistics.median(raw),
                        "async_mget_cpu_us": statistics.median(aio),
                        "cpu_over_echo_async_mget": cpu_amget,
                        "ours_rps": statistics.median(o["rps"] for o in ours),
                        "echo_rps": statistics.median(e["rps"] for e in echo),
                        "h2load_cpu_us_ours": statistics.median(o["h2load_cpu_us_per_request"] for o in ours),
                        "h2load_cpu_us_echo": statistics.median(e["h2load_cpu_us_per_request"] for e in echo),
                        "ours_main_us": statistics.median(o["main_thread_cpu_us_per_request"] for o in ours),
                        "echo_main_us": statistics.median(e["main_thread_cpu_us_per_request"] for e in echo),
                        "ours_cpu_share": statistics.median(o["server_cpu_s"] / o["wall_s"] for o in ours),
                        "cpu_over_echo": cpu,
                        "cpu_over_echo_mget": cpu_mget,
                        "rps_over_echo": rps,
                    }
                )
    return rows


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"{result['when']}, commit {result['commit']}, load average {result['load_average_before']} -> "
        f"{result['load_average_after']}; ratios per round, median in bold",
        "",
        "| transport | entities | c | ours µs CPU/req | echo | MGET client | ours/echo CPU "
        "| ours/(echo+MGET) CPU | ours req/s | echo req/s | ours/echo req/s "
        "| h2load µs/req (ours, echo) | ours CPU/wall |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def rounds(xs: list[float]) -> str:
        return f"**{statistics.median(xs):.2f}** ({', '.join(f'{x:.2f}' for x in xs)})"

    for r in result["ratios"]:
        lines.append(
            f"| {r['transport']} | {r['entities']} | {r['concurrency']} | {r['ours_cpu_us']:.0f} "
            f"| {r['echo_cpu_us']:.0f} "
            f"| {r['mget_cpu_us']:.0f} | {rounds(r['cpu_over_echo'])} | {rounds(r['cpu_over_echo_mget'])} "
            f"| {r['ours_rps']:,.0f} | {r['echo_rps']:,.0f} | {rounds(r['rps_over_echo'])} "
            f"| {r['h2load_cpu_us_ours']:.0f}, {r['h2load_cpu_us_echo']:.0f} | {r['ours_cpu_share']:.2f} |"
        )
    lines += [
        "",
        "The Redis round trip inside an event loop (our asyncio client, c callers), µs CPU per call:",
        "",
        "| transport | entities | c | ours | echo | async MGET | ours/(echo+async MGET) CPU |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["ratios"]:
        lines.append(
            f"| {r['transport']} | {r['entities']} | {r['concurrency']} | {r['ours_cpu_us']:.0f} "
            f"| {r['echo_cpu_us']:.0f} | {r['async_mget_cpu_us']:.0f} "
            f"| {rounds(r['cpu_over_echo_async_mget'])} |"
        )
    lines += [
        "",
        "Main thread (the event loop) / other threads (grpc core, pools), µs CPU per request:",
        "",
        "| transport | entities | c | ours main | ours other | echo main | echo other |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["ratios"]:
        lines.append(
            f"| {r['transport']} | {r['entities']} | {r['concurrency']} | {r['ours_main_us']:.0f} "
            f"| {r['ours_cpu_us'] - r['ours_main_us']:.0f} | {r['echo_main_us']:.0f} "
            f"| {r['echo_cpu_us'] - r['echo_main_us']:.0f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()

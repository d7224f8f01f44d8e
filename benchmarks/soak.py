"""Soak: the gRPC server under sustained load for minutes while materialization runs again and again.

    .venv/bin/python benchmarks/soak.py --seconds 180          # make soak

Loopback only. Starts a private redis-server and `featurestore serve` on free ports over a
generated repo (one view of ITEMS entities, six features), then for ``--seconds``:

  load          h2load (nghttp2, C) sends GetOnlineFeatures for 20 entities at a steady
                ``--rps`` per connection over ``--connections`` connections; without h2load,
                the same number of Python client processes do (closed loop).
  checker       one more client process asks for random entities in a loop with real gRPC
                calls (no retries), counting every non-OK status, and checks that no entity's
                value ever goes back to an older event time (a stale value after a newer one).
                h2load sees HTTP statuses only, not grpc-status: the checker sees those.
  writer        writes a Parquet file of newer values for random entities, runs
                `featurestore materialize --incremental` as a process, pauses, repeats.
  memory        the server's RSS (/proc/PID/status VmRSS), sampled every second.

Reports per ``--window`` seconds: requests, p50/p99/max latency, errors, RSS, materializations;
totals; and whether errors are 0 and RSS stayed bounded (second-half growth under 10% of the
RSS at the start of the measurement and under 32 MiB). Writes benchmarks/results/soak.json
(``--out``) and prints a Markdown table. Exit status 1 if errors or unbounded growth.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from online import free_port, redis_server, wait_port

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
METHOD = "/featurestore.serving.v1.FeatureServing/GetOnlineFeatures"
SERVICE = "item_model"
ENTITIES_PER_REQUEST = 20
DEFS = """
from datetime import timedelta
from featurestore import (Entity, FeatureService, FeatureView, Field, Float32, Float64, Int64,
                          ParquetSource, String)

item = Entity("item", join_keys=["id"])
items = FeatureView(
    "items", entities=[item], ttl=timedelta(days=1),
    source=ParquetSource("items_src", path="data/items", timestamp_field="ts"),
    schema=[Field("v", Int64), Field("a", Float64), Field("b", Float32), Field("c", Int64),
            Field("d", Float64), Field("name", String)],
)
item_model = FeatureService("item_model", features=[items])
"""


def percentile(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    ordered = sorted(xs)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


# -- data ------------------------------------------------------------------------------------


def write_items(path: Path, ids: list[int], first_v: int, newest_us: int, seed: int) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    n = len(ids)
    ts = newest_us - rng.integers(0, 1_000_000, n)  # within the second before newest
    table = pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "ts": pa.array(ts, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            "v": pa.array(np.arange(first_v, first_v + n), pa.int64()),
            "a": pa.array(rng.random(n)),
            "b": pa.array(rng.random(n).astype("float32")),
            "c": pa.array(rng.integers(0, 1000, n), pa.int64()),
            "d": pa.array(rng.random(n)),
            "name": pa.array([f"item-{i}" for i in ids]),
        }
    )
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp)
    tmp.rename(path)  # the writer never shows an ingestion half a file


def now_us() -> int:
    return int(time.time() * 1_000_000)


def prepare(workdir: Path, items: int) -> Path:
    repo = workdir / "repo"
    if repo.exists():
        shutil.rmtree(repo)
    (repo / "data" / "items").mkdir(parents=True)
    (repo / "featurestore.toml").write_text('project = "soak"\n')
    (repo / "defs.py").write_text(textwrap.dedent(DEFS))
    write_items(
        repo / "data" / "items" / "part-00000.parquet", list(range(items)), 0, now_us() - 60_000_000, 0
    )
    return repo


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "featurestore"), *args], env=env, capture_output=True, text=True)


# -- processes --------------------------------------------------------------------------------


@contextmanager
def process(cmd: list[str], env: dict[str, str] | None = None, **kw: Any) -> Iterator[subprocess.Popen[Any]]:
    """A child process, stopped (SIGTERM, then SIGKILL) on the way out."""
    proc = subprocess.Popen(cmd, env=env, **kw)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def request_body(ids: list[int]) -> bytes:
    from featurestore.serving.v1 import serving_pb2 as pb

    request = pb.GetOnlineFeaturesRequest(feature_service=SERVICE)
    request.entities["id"].int64_values.values.extend(ids)
    message = request.SerializeToString()
    return b"\x00" + len(message).to_bytes(4, "big") + message  # gRPC framing: uncompressed, length


# -- the checker (also the fallback load): a client process --------------------------------------


def run_client(target: str, seconds: float, items: int, seed: int, out: Path) -> None:
    """Real gRPC calls until ``seconds`` pass; one JSON line per call to ``out``."""
    import grpc

    from featurestore.serving.v1 import serving_pb2 as pb
    from featurestore.serving.v1 import serving_pb2_grpc as pb_grpc

    rng = random.Random(seed)
    newest: dict[int, int] = {}  # id -> newest event time seen
    deadline = time.monotonic() + seconds
    with grpc.insecure_channel(target) as channel, out.open("w") as log:
        stub = pb_grpc.FeatureServingStub(channel)
        while time.monotonic() < deadline:
            ids = rng.sample(range(items), ENTITIES_PER_REQUEST)
            request = pb.GetOnlineFeaturesRequest(feature_service=SERVICE)
            request.entities["id"].int64_values.values.extend(ids)
            started, t = time.time(), time.perf_counter()
            error = None
            try:
                response = stub.GetOnlineFeatures(request, timeout=2.0)
            except grpc.RpcError as e:
                error = f"{e.code().name}: {e.details()}"
            latency_us = (time.perf_counter() - t) * 1e6
            if error is None:
                column = response.features[0]
                for i, status, ts in zip(ids, column.statuses, column.event_timestamps, strict=True):
                    if status != pb.PRESENT:
                        error = f"entity {i}: {pb.FieldStatus.Name(status)}"
                    elif ts < newest.get(i, 0):
                        error = f"entity {i}: event time went back from {newest[i]} to {ts}"
                    else:
                        newest[i] = ts
            log.write(json.dumps({"t": started, "us": latency_us, "error": error}) + "\n")


# -- the soak ------------------------------------------------------------------------------------


def writer_loop(
    repo: Path,
    env: dict[str, str],
    items: int,
    stop: threading.Event,
    pause: float,
    runs: list[dict[str, Any]],
) -> None:
    """New values for a random quarter of the items, then an incremental materialization; repeat."""
    rng = random.Random(1)
    k = 0
    while not stop.is_set():
        k += 1
        ids = sorted(rng.sample(range(items), items // 4))
        write_items(repo / "data" / "items" / f"part-{k:05d}.parquet", ids, k * items, now_us() - 1000, k)
        started = time.time()
        done = cli(env, "materialize", "--incremental", "--repo", str(repo))
        runs.append(
            {
                "t": started,
                "seconds": time.time() - started,
                "ok": done.returncode == 0,
                "error": done.stderr.strip().splitlines()[-1] if done.returncode else None,
            }
        )
        stop.wait(pause)


def sample_rss(pid: int, stop: threading.Event, samples: list[tuple[float, float]]) -> None:
    while not stop.is_set():
        try:
            samples.append((time.time(), rss_mib(pid)))
        except (FileNotFoundError, ProcessLookupError):
            return
        stop.wait(1.0)


def soak(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    repo = prepare(workdir, args.items)
    use_h2load = shutil.which("h2load") is not None and not args.no_h2load
    grpc_port = free_port()
    with ExitStack() as stack:
        redis_port = stack.enter_context(redis_server())
        env = {**os.environ, "FEATURESTORE_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0"}
        env.pop("FEATURESTORE_DEBUG", None)
        from featurestore import FeatureStore
        from featurestore.config import load_config

        store = FeatureStore(repo, config=load_config(repo, env=env))
        store.apply()
        store.materialize()  # every item present before the first request
        store.close()
        server = stack.enter_context(
            process(
                [
                    str(BIN / "featurestore"),
                    "serve",
                    "--repo",
                    str(repo),
                    "--grpc-port",
                    str(grpc_port),
                    "--http-port",
                    "0",
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=open(workdir / "serve.log", "w"),  # noqa: SIM115 - closed with the process
            )
        )
        wait_port(grpc_port, timeout=60.0)
        target = f"127.0.0.1:{grpc_port}"
        # Warm up (connections, first lookups), then measure from a settled RSS.
        run_client(target, min(2.0, args.seconds / 3), args.items, 99, workdir / "warmup.jsonl")
        stop = threading.Event()
        rss: list[tuple[float, float]] = []
        runs: list[dict[str, Any]] = []
        t0 = time.time()
        threads = [
            threading.Thread(target=sample_rss, args=(server.pid, stop, rss)),
            threading.Thread(target=writer_loop, args=(repo, env, args.items, stop, args.pause, runs)),
        ]
        for t in threads:
            t.start()
        clients = 1 if use_h2load else 1 + args.connections
        client_logs = [workdir / f"client-{i}.jsonl" for i in range(clients)]
        me = [sys.executable, str(Path(__file__).resolve()), "--client", target, "--items", str(args.items)]
        procs = [
            stack.enter_context(
                process([*me, "--seconds", str(args.seconds), "--seed", str(i), "--client-out", str(log)])
            )
            for i, log in enumerate(client_logs)
        ]
        h2_log = workdir / "h2load.log"
        h2: subprocess.Popen[str] | None = None
        if use_h2load:
            body = workdir / "body"
            body.write_bytes(request_body(random.Random(7).sample(range(args.items), ENTITIES_PER_REQUEST)))
            h2 = stack.enter_context(
                process(
                    [
                        "h2load",
                        "-c",
                        str(args.connections),
                        "-m",
                        "1",
                        "-t",
                        "1",
                        "--rps",
                        str(args.rps),
                        "-D",
                        str(args.seconds),
                        "-d",
                        str(body),
                        "--log-file",
                        str(h2_log),
                        "-H",
                        "content-type: application/grpc",
                        "-H",
                        "te: trailers",
                        f"http://{target}{METHOD}",
                    ],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
            )
        for p in procs:
            p.wait(args.seconds + 60)
        h2_out = h2.communicate(timeout=60)[0] if h2 is not None else ""
        if h2 is not None and h2.returncode:
            raise RuntimeError(f"h2load failed: {h2_out}")
        stop.set()
        for t in threads:
            t.join(120)
        t_end = time.time()
        server_alive = server.poll() is None
    return report(args, t0, t_end, use_h2load, h2_log, h2_out, client_logs, rss, runs, server_alive)


def report(
    args: argparse.Namespace,
    t0: float,
    t_end: float,
    use_h2load: bool,
    h2_log: Path,
    h2_out: str,
    client_logs: list[Path],
    rss: list[tuple[float, float]],
    runs: list[dict[str, Any]],
    server_alive: bool,
) -> dict[str, Any]:
    # Client calls (the checker, and the load without h2load) and the load's calls, each as
    # (start seconds since t0, latency ms, failed).
    checker = [json.loads(line) for log in client_logs for line in log.read_text().splitlines()]
    checked = [(c["t"] - t0, c["us"] / 1000, c["error"] is not None) for c in checker]
    if use_h2load:
        load = []
        for line in h2_log.read_text().splitlines():
            start_us, status, us = line.split("\t")[:3]
            load.append((int(start_us) / 1e6 - t0, int(us) / 1000, status != "200"))
        # Counted apart from the log: a stream that never got a status may not be logged.
        h2_failed = _h2load_failed(h2_out)
        failed_calls = [*load, *checked]
    else:
        load, h2_failed, failed_calls = checked, 0, checked
    errors = [c["error"] for c in checker if c["error"]]
    windows = []
    n_windows = max(1, math.ceil(args.seconds / args.window))  # the load's duration
    for w in range(n_windows):
        lo, hi = w * args.window, (w + 1) * args.window
        lat = [ms for s, ms, _ in load if lo <= s < hi]
        in_rss = [m for t, m in rss if lo <= t - t0 < hi]
        windows.append(
            {
                "from_s": lo,
                "requests": len(lat),
                "rps": len(lat) / args.window,
                "p50_ms": percentile(lat, 0.50),
                "p99_ms": percentile(lat, 0.99),
                "max_ms": max(lat) if lat else float("nan"),
                "failed": sum(f for s, _, f in failed_calls if lo <= s < hi),
                "rss_mib": in_rss[-1] if in_rss else None,
                "materializations": sum(1 for r in runs if lo <= r["t"] - t0 < hi),
            }
        )
    rss_values = [m for _, m in rss]
    start_rss, end_rss = rss_values[0], rss_values[-1]
    half = rss_values[len(rss_values) // 2]
    growth_second_half = end_rss - half
    bounded = growth_second_half < max(0.0, min(0.10 * start_rss, 32.0))
    all_latency = [ms for _, ms, _ in load]
    failed_runs = [r for r in runs if not r["ok"]]
    total_errors = max(h2_failed, sum(f for _, _, f in load)) * use_h2load + len(errors) + len(failed_runs)
    return {
        "command": " ".join([".venv/bin/python", "benchmarks/soak.py", *sys.argv[1:]]),
        "when": datetime.fromtimestamp(t0, UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_at_end": os.getloadavg(),
        },
        "settings": {
            "seconds": args.seconds,
            "window_s": args.window,
            "items": args.items,
            "entities_per_request": ENTITIES_PER_REQUEST,
            "load": (
                f"h2load, {args.connections} connections x {args.rps} req/s"
                if use_h2load
                else f"{args.connections} Python client processes, closed loop"
            ),
            "checker": "1 Python client process, closed loop, no retries",
            "materialize_pause_s": args.pause,
        },
        "totals": {
            "requests": len(load),
            "checker_requests": len(checker),
            "errors": total_errors,
            "error_examples": (errors + [r["error"] for r in failed_runs])[:5],
            "p50_ms": percentile(all_latency, 0.50),
            "p99_ms": percentile(all_latency, 0.99),
            "p999_ms": percentile(all_latency, 0.999),
            "max_ms": max(all_latency) if all_latency else float("nan"),
            "checker_p99_ms": percentile([c["us"] / 1000 for c in checker], 0.99),
            "materializations": len(runs),
            "materializations_failed": len(failed_runs),
            "materialize_seconds_median": percentile([r["seconds"] for r in runs], 0.5),
            "rss_start_mib": start_rss,
            "rss_end_mib": end_rss,
            "rss_max_mib": max(rss_values),
            "rss_growth_second_half_mib": growth_second_half,
            "rss_bounded": bounded,
            "server_alive_at_end": server_alive,
            "wall_seconds": t_end - t0,  # the load, then the materialization still running
        },
        "windows": windows,
    }


def _h2load_failed(out: str) -> int:
    """Failed and errored requests from h2load's summary line ("requests: ... N failed, M errored")."""
    for line in out.splitlines():
        if line.startswith("requests:"):
            words = line.replace(",", "").split()
            return int(words[words.index("failed") - 1]) + int(words[words.index("errored") - 1])
    raise RuntimeError(f"no summary from h2load: {out}")


def markdown(result: dict[str, Any]) -> str:
    t = result["totals"]
    lines = [
        f"{result['settings']['seconds']} s, load: {result['settings']['load']}, plus the checker; "
        f"{t['requests']:,} load requests, {t['checker_requests']:,} checker requests, "
        f"**{t['errors']} errors**; {t['materializations']} materializations "
        f"({t['materializations_failed']} failed, median {t['materialize_seconds_median']:.1f} s).",
        "",
        f"Latency over the whole run: p50 {t['p50_ms']:.2f} ms, p99 {t['p99_ms']:.2f} ms, "
        f"p99.9 {t['p999_ms']:.2f} ms, max {t['max_ms']:.1f} ms. Server RSS: {t['rss_start_mib']:.1f} MiB at "
        f"start, {t['rss_end_mib']:.1f} MiB at end (max {t['rss_max_mib']:.1f}; second half "
        f"{t['rss_growth_second_half_mib']:+.1f} MiB: {'bounded' if t['rss_bounded'] else 'GROWING'}).",
        "",
        "| from s | requests | req/s | p50 ms | p99 ms | max ms | failed | RSS MiB | materializations |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for w in result["windows"]:
        rss = f"{w['rss_mib']:.1f}" if w["rss_mib"] is not None else "-"
        lines.append(
            f"| {w['from_s']:g} | {w['requests']:,} | {w['rps']:,.0f} | {w['p50_ms']:.2f} | "
            f"{w['p99_ms']:.2f} | {w['max_ms']:.1f} | {w['failed']} | {rss} | {w['materializations']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=180, help="how long the load runs")
    parser.add_argument("--window", type=float, default=10.0, help="seconds per reported window")
    parser.add_argument("--items", type=int, default=20_000, help="entities in the view")
    parser.add_argument("--connections", type=int, default=4, help="h2load connections (or client processes)")
    parser.add_argument("--rps", type=int, default=100, help="h2load requests per second per connection")
    parser.add_argument("--pause", type=float, default=2.0, help="seconds between materializations")
    parser.add_argument("--no-h2load", action="store_true", help="load from Python client processes")
    parser.add_argument("--workdir", help="where the repo and logs go (default: a new temporary folder)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "soak.json"))
    parser.add_argument("--client", help=argparse.SUPPRESS)  # internal: run one client process
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--client-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        run_client(args.client, args.seconds, args.items, args.seed, Path(args.client_out))
        return
    if shutil.which("redis-server") is None:
        sys.exit("redis-server is missing: run `make setup`")
    result = soak(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))
    t = result["totals"]
    if t["errors"] or not t["rss_bounded"] or not t["server_alive_at_end"]:
        sys.exit(1)


if __name__ == "__main__":
    main()

"""The web console's page times on benchmark data: every page under 300 ms of server time?

    .venv/bin/python benchmarks/ui.py --scale small --requests 20

Builds the example repo at ``--scale`` under benchmarks/out/ui-SCALE (generated data, applied,
materialized into a private redis-server, a training set written), starts the console, and asks
each page ``--requests`` times after two warm-ups, one after the other. Server time is the
console's own ``Server-Timing`` header (from the request reaching the app to the response
leaving it); the client time adds HTTP over loopback. Results: benchmarks/results/ui-SCALE.json.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import socket
import statistics
import subprocess
import time
from pathlib import Path

import httpx

from featurestore import FeatureStore, datagen
from featurestore.config import load_config
from featurestore.ui.server import ConsoleServer

ROOT = Path(__file__).resolve().parent.parent
LIMIT_MS = 300.0
TIMING = re.compile(r"app;dur=([0-9.]+)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build(work: Path, scale: str, redis_url: str) -> tuple[Path, str]:
    repo = work / "repo"
    shutil.rmtree(repo, ignore_errors=True)
    shutil.copytree(
        ROOT / "definitions",
        repo,
        ignore=shutil.ignore_patterns("data", "out", ".featurestore", "__pycache__"),
    )
    toml = repo / "featurestore.toml"
    toml.write_text(toml.read_text().replace("redis://127.0.0.1:6379/0", redis_url))
    data = work / "data"
    if not data.exists():
        datagen.generate(data, scale)
    (repo / "data").symlink_to(data)
    store = FeatureStore(repo)
    store.apply()
    store.materialize()
    (repo / "out").mkdir()
    with store.get_training_set(repo / "data" / "entity_rows.parquet", "trip_model") as ts:
        ts.to_parquet(repo / "out" / "trip_model_training.parquet")
        training_set = str(ts.manifest["id"])
    store.close()
    return repo, training_set


def pages(training_set: str) -> list[str]:
    return [
        "/",
        "/?q=rate&tag=team",
        "/catalog/feature_view/driver_stats",
        "/versions",
        "/versions/diff?new=1",
        "/lineage",
        f"/lineage?node=training_set:{training_set}",
        "/lineage?node=view:driver_stats",
        "/runs",
        "/runs/ingest-2",
        "/runs/materialize-1",
        "/health",
        "/statistics",
        "/statistics/driver_stats",
        f"/drift?target=driver_stats&baseline={training_set}",
        f"/drift/report?target=driver_stats&baseline={training_set}",
    ]


def measure(url: str, paths: list[str], requests: int) -> list[dict[str, object]]:
    out = []
    with httpx.Client(base_url=url, timeout=60) as http:
        for path in paths:
            server, client = [], []
            for i in range(requests + 2):
                started = time.perf_counter()
                response = http.get(path)
                elapsed = (time.perf_counter() - started) * 1000
                if response.status_code != 200:
                    raise SystemExit(f"{path}: HTTP {response.status_code}")
                if i >= 2:  # two warm-ups: the first read of a registry version parses it
                    match = TIMING.search(response.headers["server-timing"])
                    assert match is not None
                    server.append(float(match.group(1)))
                    client.append(elapsed)
            server.sort()
            out.append(
                {
                    "page": path,
                    "server_ms_median": round(statistics.median(server), 1),
                    "server_ms_p95": round(server[min(len(server) - 1, int(0.95 * len(server)))], 1),
                    "server_ms_max": round(server[-1], 1),
                    "client_ms_median": round(statistics.median(client), 1),
                    "bytes": len(response.content),
                }
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", default="small", choices=sorted(datagen.SCALES))
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args()
    work = ROOT / "benchmarks" / "out" / f"ui-{args.scale}"
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    redis = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.3)
        started = time.perf_counter()
        repo, training_set = build(work, args.scale, f"redis://127.0.0.1:{port}/0")
        print(f"store built in {time.perf_counter() - started:.0f} s")
        with ConsoleServer(load_config(repo)) as server:
            results = measure(server.url.rstrip("/"), pages(training_set), args.requests)
    finally:
        redis.terminate()
        redis.wait(10)
    print(f"{'page':<62} {'server ms p50':>13} {'p95':>7} {'max':>7} {'client p50':>10}")
    for r in results:
        print(
            f"{str(r['page'])[:62]:<62} {r['server_ms_median']:>13} {r['server_ms_p95']:>7} "
            f"{r['server_ms_max']:>7} {r['client_ms_median']:>10}"
        )
    slow = [r["page"] for r in results if float(r["server_ms_p95"]) > LIMIT_MS]  # type: ignore[arg-type]
    print(f"pages over {LIMIT_MS:.0f} ms at p95: {', '.join(map(str, slow)) or 'none'}")
    out = ROOT / "benchmarks" / "results" / f"ui-{args.scale}.json"
    out.write_text(
        json.dumps({"scale": args.scale, "requests": args.requests, "pages": results}, indent=2) + "\n"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

"""The web console's page times on benchmark data: every page under 300 ms of server time?

    .venv/bin/python benchmarks/ui.py --scale medium --requests 30

Builds the example repo at ``--scale`` under benchmarks/out/ui-SCALE (generated data, applied,
materialized into a private redis-server, a training set written) and gives it a history:
``--versions`` registry versions in all (each apply after the first changes one view's
description, as a real edit would) and ``--runs`` runs in all (ingestion and materialization
runs of a small view fed one new file at a time; a few refused by validation). The built store
and its Redis (saved to an RDB file beside it) are reused by the next run at the same scale
and history; ``--rebuild`` builds anew. Then it starts the console and asks each page
``--requests`` times after two warm-ups (the first load's time is kept apart: the console's
caches empty but for the pages before it), one after the other. Server time is the console's
own ``Server-Timing`` header (from the request reaching the app to the response leaving it);
the client time adds HTTP over loopback, beside a bare static file's (the floor of HTTP alone).
Results: benchmarks/results/ui-SCALE.json.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import socket
import statistics
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import redis

from featurestore import FeatureStore, datagen
from featurestore.config import load_config
from featurestore.errors import ViewsFailedError
from featurestore.runs.ingestion import read_rejected
from featurestore.storage import connection
from featurestore.ui.server import ConsoleServer

ROOT = Path(__file__).resolve().parent.parent
LIMIT_MS = 300.0
TIMING = re.compile(r"app;dur=([0-9.]+)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# A small online view that the history's runs feed, one file at a time: ingestion and
# materialization runs of a view this size cost a fraction of a second, so 200 of them build
# in minutes beside the big views at any scale. Its check lets a bad file be refused.
BEACON = """
\"\"\"A small view fed one file per run (benchmarks/ui.py's history).\"\"\"
from datetime import timedelta
from pandera.pandas import Check
from drivers import driver
from featurestore import FeatureView, Field, Float64, ParquetSource

beacon = FeatureView(
    "beacon",
    entities=[driver],
    source=ParquetSource("beacon_source", path="beacon", timestamp_field="event_timestamp"),
    ttl=timedelta(days=2),
    schema=[Field("level", Float64, checks=[Check.in_range(0, 1)])],
    description="revision 1",
)
"""
BAD_EVERY = 40  # one file in this many is refused by validation (a failed run with its report)


def redis_url(port: int) -> str:
    return f"redis://127.0.0.1:{port}/0"


def point_at(repo: Path, url: str) -> None:
    toml = repo / "featurestore.toml"
    toml.write_text(re.sub(r"redis://127\.0\.0\.1:\d+/0", url, toml.read_text()))


def build(work: Path, scale: str, url: str, versions: int, runs: int) -> str:
    """The store under work/repo at ``scale`` with its history; the id of its training set."""
    repo = work / "repo"
    shutil.rmtree(repo, ignore_errors=True)
    shutil.copytree(
        ROOT / "definitions",
        repo,
        ignore=shutil.ignore_patterns("data", "out", ".featurestore", "__pycache__"),
    )
    point_at(repo, url)
    data = work / "data"
    if not data.exists():
        started = time.perf_counter()
        datagen.generate(data, scale)
        print(f"data generated in {time.perf_counter() - started:.0f} s", flush=True)
    (repo / "data").symlink_to(data)
    (repo / "beacon.py").write_text(BEACON)
    write_beacon(repo, 0, good=True)
    store = FeatureStore(repo)
    store.apply()
    started = time.perf_counter()
    store.materialize()
    print(f"applied and materialized in {time.perf_counter() - started:.0f} s", flush=True)
    (repo / "out").mkdir()
    with store.get_training_set(repo / "data" / "entity_rows.parquet", "trip_model") as ts:
        ts.to_parquet(repo / "out" / "trip_model_training.parquet")
        training_set = str(ts.manifest["id"])
    history(store, repo, versions, runs)
    store.close()
    return training_set


def write_beacon(repo: Path, n: int, good: bool) -> Path:
    folder = repo / "beacon"
    folder.mkdir(exist_ok=True)
    path = folder / f"beacon-{n:05d}.parquet"
    pq.write_table(
        pa.table(
            {
                "driver_id": pa.array([datagen.FIRST_DRIVER + n % 100], pa.int64()),
                "event_timestamp": pa.array([datetime.now(UTC)], pa.timestamp("us", tz="UTC")),
                "level": pa.array([0.5 if good else 5.0]),
            }
        ),
        path,
    )
    return path


def counts(store: FeatureStore) -> tuple[int, int]:
    """(registry versions, runs: ingestions, refused ingestions and materializations)."""
    config = store.config
    with connection(config.duckdb_path, read_only=True) as con:
        row = con.execute(
            f"""SELECT (SELECT count(*) FROM {config.project}.registry_versions),
                       (SELECT count(*) FROM {config.project}.ingestion_runs)
                     + (SELECT count(*) FROM {config.project}.materialization_runs)"""
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]) + len(read_rejected(config.store_dir))


def history(store: FeatureStore, repo: Path, versions: int, runs: int) -> None:
    """Registry versions and runs until there are ``versions`` and ``runs``, interleaved."""
    started = time.perf_counter()
    n = 0
    have_versions, have_runs = counts(store)
    while have_versions < versions or have_runs < runs:
        n += 1
        if have_versions < versions:  # an additive edit: the view's description
            edit = (repo / "beacon.py").read_text()
            (repo / "beacon.py").write_text(
                re.sub(r'description="revision \d+"', f'description="revision {n + 1}"', edit)
            )
            store.apply()
        if have_runs < runs:
            bad = n % BAD_EVERY == 0
            path = write_beacon(repo, n, good=not bad)
            try:
                store.materialize_incremental(views=["beacon"])
            except ViewsFailedError:
                assert bad, "a good beacon file was refused"
                path.unlink()  # as an operator would: the bad file taken back
        have_versions, have_runs = counts(store)
    print(
        f"history: {have_versions} versions, {have_runs} runs in {time.perf_counter() - started:.0f} s",
        flush=True,
    )


def pages(training_set: str) -> list[str]:
    return [
        "/static/style.css",  # the floor: the app's middleware and a file, no store read
        "/",
        "/?q=rate&tag=team",
        "/catalog/feature_view/driver_stats",
        "/catalog/feature_view/beacon",
        "/versions",
        "/versions?offset=40",
        "/versions/diff?new=1",
        "/versions/diff",
        "/versions/diff?old=1",
        "/lineage",
        f"/lineage?node=training_set:{training_set}",
        "/lineage?node=view:driver_stats",
        "/lineage?node=view:beacon",
        "/lineage?node=materialize-1",
        "/runs",
        "/runs?kind=ingest&limit=500",
        "/runs?kind=materialize&offset=50",
        "/runs?view=beacon",
        "/runs/ingest-1",
        "/runs/materialize-1",
        "/runs/ingest-rejected-1",
        "/health",
        "/statistics",
        "/statistics/driver_stats",
        "/statistics/beacon",
        f"/drift?target=driver_stats&baseline={training_set}",
        f"/drift/report?target=driver_stats&baseline={training_set}",
    ]


def rank(sorted_ms: list[float], q: float) -> float:
    """The nearest-rank quantile ``q`` of sorted values."""
    return sorted_ms[min(len(sorted_ms) - 1, max(0, math.ceil(q * len(sorted_ms)) - 1))]


def measure(url: str, paths: list[str], requests: int) -> list[dict[str, object]]:
    out = []
    with httpx.Client(base_url=url, timeout=60) as http:
        for path in paths:
            server, client, first = [], [], 0.0
            for i in range(requests + 2):
                started = time.perf_counter()
                response = http.get(path)
                elapsed = (time.perf_counter() - started) * 1000
                if response.status_code != 200:
                    raise SystemExit(f"{path}: HTTP {response.status_code}: {response.text[:500]}")
                match = TIMING.search(response.headers["server-timing"])
                assert match is not None
                if i == 0:  # the page's first load since the console started: caches empty
                    first = float(match.group(1))
                if i >= 2:  # two warm-ups: the first read of a registry version parses it
                    server.append(float(match.group(1)))
                    client.append(elapsed)
            server.sort()
            client.sort()
            out.append(
                {
                    "page": path,
                    "server_ms_median": round(statistics.median(server), 1),
                    "server_ms_p99": round(rank(server, 0.99), 1),
                    "server_ms_max": round(server[-1], 1),
                    "client_ms_median": round(statistics.median(client), 1),
                    "client_ms_max": round(client[-1], 1),
                    "server_ms_first": round(first, 1),
                    "bytes": len(response.content),
                }
            )
    return out


def start_redis(work: Path, port: int) -> subprocess.Popen[bytes]:
    """A private redis-server that loads (and SAVE writes) work/redis.rdb."""
    server = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(work),
            "--dbfilename",
            "redis.rdb",
        ],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port, socket_timeout=60)
    for _ in range(600):  # loading a saved medium store takes seconds
        try:
            if client.ping() and client.info("persistence")["loading"] == 0:
                break
        except (redis.ConnectionError, redis.BusyLoadingError):
            pass
        time.sleep(0.1)
    else:
        raise SystemExit("redis-server did not answer")
    client.close()
    return server


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", default="small", choices=sorted(datagen.SCALES))
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--versions", type=int, default=50, help="registry versions in all")
    parser.add_argument(
        "--runs", type=int, default=200, help="runs in all (ingestions, refused ones, materializations)"
    )
    parser.add_argument("--rebuild", action="store_true", help="build the store anew (data kept)")
    args = parser.parse_args()
    work = ROOT / "benchmarks" / "out" / f"ui-{args.scale}"
    work.mkdir(parents=True, exist_ok=True)
    built = work / "built.json"
    wanted = {"scale": args.scale, "versions": args.versions, "runs": args.runs}
    reuse = not args.rebuild and built.exists() and json.loads(built.read_text())["history"] == wanted
    if not reuse:
        built.unlink(missing_ok=True)
        (work / "redis.rdb").unlink(missing_ok=True)
    port = free_port()
    server = start_redis(work, port)
    try:
        repo = work / "repo"
        if reuse:
            training_set = str(json.loads(built.read_text())["training_set"])
            point_at(repo, redis_url(port))
            print(f"reusing the store in {repo}")
        else:
            started = time.perf_counter()
            training_set = build(work, args.scale, redis_url(port), args.versions, args.runs)
            print(f"store built in {time.perf_counter() - started:.0f} s", flush=True)
            redis.Redis(port=port, socket_timeout=600).save()  # seconds at medium, on a busy machine
            built.write_text(json.dumps({"history": wanted, "training_set": training_set}) + "\n")
        store = FeatureStore(repo)
        have_versions, have_runs = counts(store)
        store.close()
        store_mib = load_config(repo).duckdb_path.stat().st_size / 2**20
        with ConsoleServer(load_config(repo)) as console:
            results = measure(console.url.rstrip("/"), pages(training_set), args.requests)
    finally:
        server.terminate()
        server.wait(10)
    print(f"store: {store_mib:.0f} MiB, {have_versions} registry versions, {have_runs} runs")
    print(f"{'page':<62} {'server ms p50':>13} {'p99':>7} {'max':>7} {'client p50':>10} {'first':>7}")
    for r in results:
        print(
            f"{str(r['page'])[:62]:<62} {r['server_ms_median']:>13} {r['server_ms_p99']:>7} "
            f"{r['server_ms_max']:>7} {r['client_ms_median']:>10} {r['server_ms_first']:>7}"
        )
    slow = [r["page"] for r in results if float(r["server_ms_max"]) > LIMIT_MS]  # type: ignore[arg-type]
    print(f"pages over {LIMIT_MS:.0f} ms at max: {', '.join(map(str, slow)) or 'none'}")
    out = ROOT / "benchmarks" / "results" / f"ui-{args.scale}.json"
    summary = {
        "scale": args.scale,
        "requests": args.requests,
        "store_mib": round(store_mib),
        "registry_versions": have_versions,
        "runs": have_runs,
        "pages": results,
    }
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

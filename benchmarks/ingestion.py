"""Ingestion Parquet -> DuckDB: with validation (as shipped), without it, and the limit.

    .venv/bin/python benchmarks/ingestion.py --scale small --runs 3

Each run ingests the example data (the same data as benchmarks/training_sets.py, under
benchmarks/out/SCALE/data) into a fresh DuckDB file, in its own process under
/usr/bin/time -v (peak RSS per run):

  cli        ``featurestore materialize --offline`` as a whole process
  api        ``FeatureStore.ingest()`` in process; the store reports the part of each view's
             time spent validating (pandera, batch by batch), so the same run also gives
             ingestion with validation off: the write phase alone, which reads the files
             again and does not validate
  limit      one hand-written ``CREATE TABLE ... AS SELECT * FROM read_parquet(...)`` per
             source: DuckDB loading the same files with no checks and no bookkeeping

Results: benchmarks/out/SCALE/ingestion.json and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
from training_sets import BIN, OUT, ROOT, Run, environment, measure, prepare


def worker(mode: str, repo: Path) -> None:
    if mode == "api":
        from featurestore import FeatureStore  # imports are start-up, not ingestion

        started = time.perf_counter()
        results = FeatureStore(repo).ingest()
        seconds = time.perf_counter() - started
        validation = sum(r.validation_seconds for r in results)
        rows = sum(r.rows_inserted for r in results)
        print(json.dumps({"seconds": seconds, "validation_seconds": validation, "rows": rows}))
    elif mode == "limit":
        started = time.perf_counter()
        con = duckdb.connect(str(repo / ".featurestore" / "store.duckdb"))
        rows = 0
        for name in ("driver_stats", "customer_profile"):
            files = sorted(str(p) for p in (repo / "data" / name).rglob("*.parquet"))
            con.execute(f"CREATE TABLE {name} AS SELECT * FROM read_parquet(?)", [files])
            rows += con.execute(f"SELECT count(*) FROM {name}").fetchone()[0]  # type: ignore[index]
        con.close()
        print(json.dumps({"seconds": time.perf_counter() - started, "rows": rows}))
    else:
        raise SystemExit(f"unknown worker mode {mode!r}")


def fresh_repo(base: Path, prepared: Path) -> Path:
    """The example repo with its registry applied and nothing ingested."""
    repo = base / "ingest-repo"
    shutil.rmtree(repo, ignore_errors=True)
    repo.mkdir(parents=True)
    for item in prepared.iterdir():
        if item.suffix == ".py" or item.name == "featurestore.toml":
            shutil.copy(item, repo / item.name)
    (repo / "data").symlink_to(prepared.resolve() / "data")
    subprocess.run(
        [str(BIN / "featurestore"), "apply", "--repo", str(repo)], check=True, stdout=subprocess.DEVNULL
    )
    return repo


def inner(log: Path) -> dict[str, Any]:
    for line in log.read_text().splitlines():
        if line.startswith('{"seconds"'):
            return dict(json.loads(line))
    return {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="small")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--worker", nargs=2, metavar=("MODE", "REPO"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], Path(args.worker[1]))
        return

    prepared, report = prepare(args.scale, reuse=True)
    base = OUT / args.scale
    me = [sys.executable, str(Path(__file__).resolve())]
    figures: dict[str, list[dict[str, Any]]] = {"cli": [], "api": [], "limit": []}
    for i in range(args.runs):
        for mode in figures:  # interleaved, so drift in the machine's load hits every mode
            repo = fresh_repo(base, prepared)
            if mode == "cli":
                cmd = [str(BIN / "featurestore"), "materialize", "--offline", "--repo", str(repo)]
            else:
                cmd = [*me, "--worker", mode, str(repo)]
            log = base / f"ingestion-{mode}.log"
            run: Run = measure(cmd, repo / ".featurestore" / "tmp", log)
            figures[mode].append(
                {"process_seconds": run.seconds, "peak_rss_mib": run.peak_rss_mib, **inner(log)}
            )
            print(f"run {i + 1} {mode}: {run.seconds:.2f} s", file=sys.stderr)
    shutil.rmtree(base / "ingest-repo", ignore_errors=True)

    result = {
        "command": " ".join([".venv/bin/python", "benchmarks/ingestion.py", *sys.argv[1:]]),
        "scale": args.scale,
        "counts": report.counts,
        "runs": figures,
        "environment": environment(),
    }
    (base / "ingestion.json").write_text(json.dumps(result, indent=2))
    results_dir = ROOT / "benchmarks" / "results"
    results_dir.mkdir(exist_ok=True)
    (results_dir / f"ingestion-{args.scale}.json").write_text(json.dumps(result, indent=2))
    print(markdown(figures))


def _cell(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def markdown(figures: dict[str, list[dict[str, Any]]]) -> str:
    limit = statistics.median(r["seconds"] for r in figures["limit"])
    api = figures["api"]
    rows = [
        ("cli, validation on (whole process)", [r["process_seconds"] for r in figures["cli"]]),
        ("api, validation on", [r["seconds"] for r in api]),
        ("api, validation phase alone", [r["validation_seconds"] for r in api]),
        ("api, validation off (write phase)", [r["seconds"] - r["validation_seconds"] for r in api]),
        ("limit: CREATE TABLE AS read_parquet", [r["seconds"] for r in figures["limit"]]),
    ]
    rss = {
        "cli": statistics.median(r["peak_rss_mib"] for r in figures["cli"]),
        "api": statistics.median(r["peak_rss_mib"] for r in api),
        "limit": statistics.median(r["peak_rss_mib"] for r in figures["limit"]),
    }
    lines = [
        f"rows ingested: {api[0]['rows']:,}; peak RSS MiB: cli {rss['cli']:.0f}, api {rss['api']:.0f}, "
        f"limit {rss['limit']:.0f}",
        "",
        "| ingestion | seconds, median (min-max) | / limit |",
        "|---|---|---|",
    ]
    for name, values in rows:
        lines.append(f"| {name} | {_cell(values)} | {statistics.median(values) / limit:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()

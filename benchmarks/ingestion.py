"""Ingestion Parquet -> DuckDB: with validation (as shipped), without it, and the limit.

    .venv/bin/python benchmarks/ingestion.py --scale small --runs 3
    .venv/bin/python benchmarks/ingestion.py --scale small --runs 3 --engine duckdb,spark

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

With ``--engine spark`` (or ``duckdb,spark``) cli and api also run on a repo switched to Spark
local[2] (benchmarks/spark_engine.py), as spark-cli and spark-api: validation in Spark's tasks,
rows written to the Parquet warehouse. spark-api times the session's start (the JVM) apart and
reads Spark's job times from its REST API; every mode samples the peak RSS of the Python
process, of the JVM and of the whole process tree. The limit stays DuckDB's.

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
from spark_engine import ENGINES, engines_arg, spark_figures, use_spark
from training_sets import BIN, OUT, ROOT, Run, environment, measure, prepare, worker_output


def worker(mode: str, repo: Path) -> None:
    if mode == "api":
        from featurestore import FeatureStore  # imports are start-up, not ingestion

        store = FeatureStore(repo)
        spark = store.config.offline_engine == "spark"
        if spark:
            import pyspark.sql  # noqa: F401

            from featurestore.offline.spark.session import spark_session, stop_sessions
        started = time.perf_counter()
        figures: dict[str, Any] = {}
        if spark:  # the session's start (JVM) apart from the ingestion
            session = spark_session(store.config.spark)
            figures["session_seconds"] = time.perf_counter() - started
        results = store.ingest()
        seconds = time.perf_counter() - started
        validation = sum(r.validation_seconds for r in results)
        rows = sum(r.rows_inserted for r in results)
        if spark:
            figures["spark"] = spark_figures(session, rows)
            stop_sessions()
        print(json.dumps({"seconds": seconds, "validation_seconds": validation, "rows": rows, **figures}))
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


def fresh_repo(base: Path, prepared: Path, engine: str = "duckdb") -> Path:
    """The example repo with its registry applied and nothing ingested."""
    repo = base / ("ingest-repo" if engine == "duckdb" else f"ingest-repo-{engine}")
    shutil.rmtree(repo, ignore_errors=True)
    repo.mkdir(parents=True)
    for item in prepared.iterdir():
        if item.suffix == ".py" or item.name == "featurestore.toml":
            shutil.copy(item, repo / item.name)
    (repo / "data").symlink_to(prepared.resolve() / "data")
    if engine == "spark":
        use_spark(repo, base.name)
    subprocess.run(
        [str(BIN / "featurestore"), "apply", "--repo", str(repo)], check=True, stdout=subprocess.DEVNULL
    )
    return repo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="small")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--worker", nargs=2, metavar=("MODE", "REPO"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--engine", default="duckdb", help=f"comma-separated, of {','.join(ENGINES)}: where cli and api run"
    )
    args = parser.parse_args()
    engines = list(engines_arg(parser, args.engine))
    if args.worker:
        worker(args.worker[0], Path(args.worker[1]))
        return

    prepared, report = prepare(args.scale, reuse=True)
    base = OUT / args.scale
    me = [sys.executable, str(Path(__file__).resolve())]
    names = [m if e == "duckdb" else f"{e}-{m}" for m in ("cli", "api") for e in engines]
    figures: dict[str, list[dict[str, Any]]] = {name: [] for name in [*names, "limit"]}
    for i in range(args.runs):
        for name in figures:  # interleaved, so drift in the machine's load hits every mode
            engine, mode = name.split("-") if "-" in name else ("duckdb", name)
            repo = fresh_repo(base, prepared, engine)
            if mode == "cli":
                cmd = [str(BIN / "featurestore"), "materialize", "--offline", "--repo", str(repo)]
            else:
                cmd = [*me, "--worker", mode, str(repo)]
            log = base / f"ingestion-{name}.log"
            spark = engine == "spark"
            spill = base / "spark-tmp" if spark else repo / ".featurestore" / "tmp"
            run: Run = measure(cmd, spill, log, recursive=spark)
            figures[name].append(
                {
                    "process_seconds": run.seconds,
                    "peak_rss_mib": run.peak_rss_mib,
                    "peak_python_rss_mib": run.peak_python_rss_mib,
                    "peak_jvm_rss_mib": run.peak_jvm_rss_mib,
                    "peak_tree_rss_mib": run.peak_tree_rss_mib,
                    **worker_output(log),
                }
            )
            print(f"run {i + 1} {name}: {run.seconds:.2f} s", file=sys.stderr)
    for engine in engines:
        shutil.rmtree(base / ("ingest-repo" if engine == "duckdb" else f"ingest-repo-{engine}"), True)

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
    suffix = "" if engines == ["duckdb"] else "-" + "-".join(engines)
    (results_dir / f"ingestion-{args.scale}{suffix}.json").write_text(json.dumps(result, indent=2))
    print(markdown(figures))


def _cell(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def markdown(figures: dict[str, list[dict[str, Any]]]) -> str:
    limit = statistics.median(r["seconds"] for r in figures["limit"])
    rows: list[tuple[str, list[float]]] = []
    for prefix, label in (("", ""), ("spark-", "spark ")):
        cli, api = figures.get(f"{prefix}cli"), figures.get(f"{prefix}api")
        if not cli or not api:
            continue
        rows += [
            (f"{label}cli, validation on (whole process)", [r["process_seconds"] for r in cli]),
            (f"{label}api, validation on", [r["seconds"] for r in api]),
        ]
        if prefix:
            rows.append((f"{label}api, of which session start (JVM)", [r["session_seconds"] for r in api]))
            rows.append((f"{label}api, Spark jobs' wall time", [r["spark"]["job_seconds"] for r in api]))
        rows += [
            (f"{label}api, validation phase alone", [r["validation_seconds"] for r in api]),
            (
                f"{label}api, validation off (write phase)",
                [r["seconds"] - r["validation_seconds"] - r.get("session_seconds", 0.0) for r in api],
            ),
        ]
    rows.append(("limit: CREATE TABLE AS read_parquet", [r["seconds"] for r in figures["limit"]]))

    def peak(name: str, key: str) -> str:
        values = [r[key] for r in figures[name] if r.get(key) is not None]
        return f"{max(values):,.0f}" if values else "–"

    first = figures.get("api") or figures["spark-api"]
    lines = [
        f"rows ingested: {first[0]['rows']:,}",
        "",
        "| peak RSS MiB (max of runs) | time -v | Python | JVM | process tree |",
        "|---|---|---|---|---|",
        *[
            f"| {name} | {peak(name, 'peak_rss_mib')} | {peak(name, 'peak_python_rss_mib')} "
            f"| {peak(name, 'peak_jvm_rss_mib')} | {peak(name, 'peak_tree_rss_mib')} |"
            for name in figures
        ],
        "",
        "| ingestion | seconds, median (min-max) | / limit |",
        "|---|---|---|",
    ]
    for name, values in rows:
        lines.append(f"| {name} | {_cell(values)} | {statistics.median(values) / limit:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()

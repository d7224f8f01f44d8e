"""What the monitoring statistics cost: their share of an ingestion and of writing a training set.

    .venv/bin/python benchmarks/training_sets.py --scale small --prepare-only   # the data, once
    .venv/bin/python benchmarks/ingest_statistics.py --scale small --runs 3

Each run copies the prepared repo (without its store), applies and ingests it into a fresh
DuckDB file with ``FeatureStore.ingest`` and reads ``IngestResult.statistics_seconds`` (the
statistics of the rows ingested, measured inside the ingestion), then writes the trip_model
training set and times the statistics of its columns separately.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from featurestore import FeatureStore
from featurestore.profiling import output_statistics

ROOT = Path(__file__).resolve().parent.parent


def one_run(prepared: Path, work: Path) -> dict[str, float]:
    repo = work / "repo"
    shutil.rmtree(repo, ignore_errors=True)
    shutil.copytree(prepared, repo, symlinks=True, ignore=shutil.ignore_patterns(".featurestore", "data"))
    (repo / "data").symlink_to(prepared.parent / "data")
    store = FeatureStore(repo)
    store.apply()
    started = time.perf_counter()
    results = store.ingest()
    ingest = time.perf_counter() - started
    stats = sum(r.statistics_seconds for r in results)
    out = work / "train.parquet"
    with store.get_training_set(repo / "data" / "entity_rows.parquet", "trip_model") as ts:
        started = time.perf_counter()
        ts.to_parquet(out)
        written = time.perf_counter() - started
        columns = ts.manifest["columns"]
    started = time.perf_counter()
    output_statistics(out, columns)
    ts_stats = time.perf_counter() - started
    return {"ingest": ingest, "ingest_stats": stats, "training_set": written, "training_set_stats": ts_stats}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="small")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    prepared = ROOT / "benchmarks" / "out" / args.scale / "repo"
    if not prepared.is_dir():
        hint = f"run benchmarks/training_sets.py --scale {args.scale} --prepare-only"
        raise SystemExit(f"no {prepared}: {hint}")
    with tempfile.TemporaryDirectory() as tmp:
        runs = [one_run(prepared, Path(tmp)) for _ in range(args.runs)]
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(f"scale {args.scale}, median of {args.runs} runs:")
    print(
        f"  ingestion {med['ingest']:.2f} s, of which statistics {med['ingest_stats']:.2f} s "
        f"({100 * med['ingest_stats'] / med['ingest']:.0f}%)"
    )
    print(
        f"  training set to_parquet {med['training_set']:.2f} s, of which statistics "
        f"{med['training_set_stats']:.2f} s ({100 * med['training_set_stats'] / med['training_set']:.0f}%)"
    )


if __name__ == "__main__":
    main()

"""Point-in-time training sets at scale: ours against a hand-written DuckDB ASOF query.

    .venv/bin/python benchmarks/training_sets.py --scale medium --runs 3 --check

For one scale of the example data (featurestore.datagen) this
  1. generates the data under benchmarks/out/SCALE/data (kept between invocations),
  2. copies definitions/ into benchmarks/out/SCALE/repo, applies it and ingests it with
     ``featurestore materialize --offline`` (a fresh DuckDB file unless --reuse),
  3. measures, each in its own process under /usr/bin/time -v so that peak RSS is per run:
       api    FeatureStore.get_training_set(entity_rows.parquet, "trip_model").to_parquet(out)
       cli    ``featurestore training-set ... --service trip_model`` as a whole process
       limit  one hand-written DuckDB ASOF query with the same semantics (inclusive TTL,
              created-timestamp tie-break, input order) over the same ingested tables
       plain  (with --plain) the ASOF join on the event time alone: no tie-break, so not
              the same result; it shows what the tie-break costs
     and the peak size of DuckDB's spill folder during each run,
  4. with --check, compares the api output with the limit output row for row.

Results go to benchmarks/out/SCALE/results.json (results-memory-LIMIT.json with --memory-limit)
and are printed as a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

# featurestore is imported where it is used: the limit's worker process imports DuckDB only,
# so its start-up time is Python's and DuckDB's, not the package's.
SCALES = ["tiny", "demo", "small", "medium", "large"]

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"
BIN = Path(sys.executable).parent
# Fixed, so every invocation at a scale sees the same data.
DATA_END = datetime(2026, 1, 31, tzinfo=UTC)
SERVICE = "trip_model"
MODES = ("api", "cli", "limit", "plain")

DRIVER_FEATURES = [
    "conv_rate",
    "acc_rate",
    "avg_daily_trips",
    "rating",
    "trips_today",
    "earnings_today",
    "online_hours",
    "cancellations_7d",
    "completed_trips_total",
    "last_trip_km",
    "city",
    "vehicle_type",
    "is_active",
]
CUSTOMER_FEATURES = ["current_balance", "lifetime_orders", "avg_order_value"]


# -- the hand-written query ---------------------------------------------------------------


def limit_sql(entities: Path, tie_break: bool = True) -> str:
    """The training set of trip_model written by hand against the ingested tables.

    With ``tie_break`` the ASOF ordering key is (event time, created time, ingestion order),
    exactly the semantics featurestore documents; without it the key is the event time alone.
    TTLs are those of definitions/: driver_stats 2 days, customer_profile 30 days, inclusive.
    """

    def side(table: str, key: str, features: list[str]) -> str:
        order = (
            "{'t': __event_ts, 'c': coalesce(__created_ts, '-infinity'::TIMESTAMPTZ), 's': __seq}"
            if tie_break
            else "__event_ts"
        )
        return f"SELECT {key}, __event_ts AS ts, {order} AS o, {', '.join(features)} FROM rides.{table}"

    probe = (
        "{'t': e.event_timestamp, 'c': 'infinity'::TIMESTAMPTZ, 's': 9223372036854775807::BIGINT}"
        if tie_break
        else "e.event_timestamp"
    )
    d = [
        f"CASE WHEN d.ts >= e.event_timestamp - INTERVAL 48 HOUR THEN d.{f} END AS {f}"
        for f in DRIVER_FEATURES
    ]
    c = [
        f"CASE WHEN c.ts >= e.event_timestamp - INTERVAL 720 HOUR THEN c.{f} END AS {f}"
        for f in CUSTOMER_FEATURES
    ]
    path = str(entities).replace("'", "''")
    return f"""
        SELECT e.driver_id, e.customer_id, e.event_timestamp, e.trip_completed, {", ".join(d + c)}
        FROM read_parquet('{path}', file_row_number = true) e
        ASOF LEFT JOIN ({side("offline_driver_stats", "driver_id", DRIVER_FEATURES)}) d
            ON e.driver_id = d.driver_id AND {probe} >= d.o
        ASOF LEFT JOIN ({side("offline_customer_profile", "customer_id", CUSTOMER_FEATURES)}) c
            ON e.customer_id = c.customer_id AND {probe} >= c.o
        ORDER BY e.file_row_number"""


# -- workers: one measurement each, run in a child process ------------------------------


def worker(mode: str, repo: Path, entities: Path, out: Path, memory_limit: str | None = None) -> None:
    if mode == "api":
        from featurestore import FeatureStore  # before the clock starts: start-up is not the join

    started = time.perf_counter()
    if mode == "api":
        with FeatureStore(repo).get_training_set(entities, SERVICE) as ts:
            if memory_limit:  # no public setting: the experiment reaches into the connection
                ts._con.execute(f"SET memory_limit = '{memory_limit}'")
            ts.to_parquet(out)
    elif mode in ("limit", "plain"):
        db = repo / ".featurestore" / "store.duckdb"
        con = duckdb.connect(str(db), read_only=True)
        # The settings featurestore's own connections use: UTC, and spills beside the file.
        con.execute("SET TimeZone = 'UTC'")
        con.execute(f"SET temp_directory = '{db.parent / 'tmp'}'")
        if memory_limit:
            con.execute(f"SET memory_limit = '{memory_limit}'")
        sql = limit_sql(entities, tie_break=mode == "limit")
        con.execute(f"COPY ({sql}) TO '{out}' (FORMAT parquet)")
        con.close()
    else:
        raise SystemExit(f"unknown worker mode {mode!r}")
    print(json.dumps({"seconds": time.perf_counter() - started}))


# -- measuring a child process -----------------------------------------------------------


@dataclass
class Run:
    seconds: float  # wall time of the whole process
    inner_seconds: float | None  # time inside the worker (api, limit): no interpreter start-up
    peak_rss_mib: float
    peak_spill_mib: float


def measure(cmd: list[str], spill_dir: Path, log: Path) -> Run:
    """Run ``cmd`` under /usr/bin/time -v, polling the spill folder's size meanwhile."""
    timing = log.with_suffix(".time")
    started = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(
            ["/usr/bin/time", "-v", "-o", str(timing), *cmd], stdout=out, stderr=subprocess.STDOUT
        )
        spill = 0
        while proc.poll() is None:
            spill = max(spill, _folder_size(spill_dir))
            time.sleep(0.2)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}); see {log}")
    rss_kib = next(
        int(line.split(":")[1])
        for line in timing.read_text().splitlines()
        if "Maximum resident set size" in line
    )
    inner = None
    for line in log.read_text().splitlines():
        if line.startswith('{"seconds"'):
            inner = float(json.loads(line)["seconds"])
    return Run(seconds, inner, rss_kib / 1024, spill / 2**20)


def _folder_size(folder: Path) -> int:
    total = 0
    try:
        for entry in os.scandir(folder):
            try:
                total += entry.stat(follow_symlinks=False).st_size
            except FileNotFoundError:
                pass
    except FileNotFoundError:
        return 0
    return total


# -- the benchmark ------------------------------------------------------------------------


@dataclass
class Report:
    scale: str
    counts: dict[str, int]
    generate_seconds: float | None
    ingest: Run | None
    runs: dict[str, list[Run]] = field(default_factory=dict)
    check: str | None = None
    environment: dict[str, Any] = field(default_factory=dict)


def prepare(scale: str, reuse: bool) -> tuple[Path, Report]:
    base = OUT / scale
    data = base / "data"
    marker = data / ".generated.json"
    generated = json.loads(marker.read_text()) if marker.exists() else None
    if generated is None or generated.get("scale") != scale or generated.get("end") != DATA_END.isoformat():
        from featurestore import datagen

        print(f"generating {scale} data into {data} ...", flush=True)
        started = time.perf_counter()
        counts = datagen.generate(data, scale, end=DATA_END)
        generated = {
            "scale": scale,
            "end": DATA_END.isoformat(),
            "counts": counts,
            "seconds": round(time.perf_counter() - started, 1),
        }
        marker.write_text(json.dumps(generated))
    report = Report(scale, generated["counts"], generated.get("seconds"), None)

    repo = base / "repo"
    store = repo / ".featurestore"
    ingest_file = base / "ingest.json"
    if reuse and (store / "store.duckdb").exists():
        if ingest_file.exists():  # the figures of the ingestion that built this store
            report.ingest = Run(**json.loads(ingest_file.read_text()))
        return repo, report
    shutil.rmtree(repo, ignore_errors=True)
    repo.mkdir(parents=True)
    for item in (ROOT / "definitions").iterdir():
        if item.suffix == ".py" or item.name == "featurestore.toml":
            shutil.copy(item, repo / item.name)
    (repo / "data").symlink_to(Path("..") / "data")
    fs = str(BIN / "featurestore")
    subprocess.run([fs, "apply", "--repo", str(repo)], check=True, stdout=subprocess.DEVNULL)
    print("ingesting (materialize --offline) ...", flush=True)
    report.ingest = measure(
        [fs, "materialize", "--offline", "--repo", str(repo)], store / "tmp", base / "ingest.log"
    )
    ingest_file.write_text(json.dumps(asdict(report.ingest)))
    return repo, report


def run_benchmark(scale: str, runs: int, modes: list[str], reuse: bool, check: bool) -> Report:
    repo, report = prepare(scale, reuse)
    base = OUT / scale
    entities = repo / "data" / "entity_rows.parquet"
    spill = repo / ".featurestore" / "tmp"
    results = base / "results"
    results.mkdir(exist_ok=True)
    me = [sys.executable, str(Path(__file__).resolve())]
    commands = {
        "api": [*me, "--worker", "api", str(repo), str(results / "api.parquet")],
        "cli": [
            str(BIN / "featurestore"),
            "training-set",
            "--repo",
            str(repo),
            "--entities",
            str(entities),
            "--service",
            SERVICE,
            "--out",
            str(results / "cli.parquet"),
        ],
        "limit": [*me, "--worker", "limit", str(repo), str(results / "limit.parquet")],
        "plain": [*me, "--worker", "plain", str(repo), str(results / "plain.parquet")],
    }
    for i in range(runs):
        for mode in modes:  # interleaved, so background load falls on every mode alike
            (results / f"{mode}.parquet").unlink(missing_ok=True)
            run = measure(commands[mode], spill, results / f"{mode}-{i}.log")
            report.runs.setdefault(mode, []).append(run)
            print(
                f"run {i + 1}/{runs} {mode}: {run.seconds:.1f}s, peak RSS {run.peak_rss_mib:,.0f} MiB, "
                f"spill {run.peak_spill_mib:,.0f} MiB",
                flush=True,
            )
    if check:
        report.check = compare(results / "api.parquet", results / "limit.parquet")
        print("check:", report.check)
    report.environment = environment()
    limit = os.environ.get("BENCH_MEMORY_LIMIT")
    report.environment["duckdb_memory_limit"] = limit or "default (80% of RAM)"
    name = f"results-memory-{limit}.json" if limit else "results.json"
    (base / name).write_text(json.dumps(asdict(report), indent=2))
    return report


def compare(ours: Path, limit: Path) -> str:
    """Row for row: same row count, same columns and types, every value equal (nulls included)."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    a = con.execute(f"DESCRIBE SELECT * FROM '{ours}'").fetchall()
    b = con.execute(f"DESCRIBE SELECT * FROM '{limit}'").fetchall()
    if [r[:2] for r in a] != [r[:2] for r in b]:
        return f"DIFFERENT columns: {[r[:2] for r in a]} vs {[r[:2] for r in b]}"
    rows = [con.execute(f"SELECT count(*) FROM '{p}'").fetchone()[0] for p in (ours, limit)]  # type: ignore[index]
    # file_row_number pins the position; EXCEPT ALL treats nulls as equal and keeps duplicates.
    scan = "SELECT * FROM read_parquet('{}', file_row_number = true)"
    differ = con.execute(
        f"SELECT count(*) FROM (({scan.format(ours)} EXCEPT ALL {scan.format(limit)}) "
        f"UNION ALL ({scan.format(limit)} EXCEPT ALL {scan.format(ours)}))"
    ).fetchone()[0]  # type: ignore[index]
    nulls = con.execute(
        f"SELECT count(*) FILTER (conv_rate IS NULL), count(*) FILTER (current_balance IS NULL) FROM '{ours}'"
    ).fetchone()
    verdict = "IDENTICAL" if rows[0] == rows[1] and differ == 0 else "DIFFERENT"
    return (
        f"{verdict}: {rows[0]:,} vs {rows[1]:,} rows, {len(a)} columns, {differ:,} differing rows "
        f"(null driver features: {nulls[0]:,}, null customer features: {nulls[1]:,})"  # type: ignore[index]
    )


def environment() -> dict[str, Any]:
    import pyarrow as pa

    mem = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    return {
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "pyarrow": pa.__version__,
        "nproc": os.cpu_count(),
        "mem_gib": round(mem / 2**20, 1),
        "cpu": _cpu_model(),
        "loadavg_at_end": os.getloadavg(),
    }


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def markdown(report: Report) -> str:
    """The report as a Markdown table; ``ours/limit`` compares whole processes, and in-process
    times where both have them (api and limit), so interpreter start-up does not blur it."""
    lines = [
        f"Scale {report.scale}: " + ", ".join(f"{k} {v:,}" for k, v in report.counts.items()),
        "",
        "| measurement | runs | median s (process) | min–max s | median s (in process) | ours/limit "
        "| peak RSS MiB (median, max) | peak spill MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    if report.ingest:
        r = report.ingest
        lines.append(
            f"| ingest (materialize --offline) | 1 | {r.seconds:.1f} | – | – | – | {r.peak_rss_mib:,.0f} "
            f"| {r.peak_spill_mib:,.0f} |"
        )
    base = report.runs.get("limit", [])
    limit_whole = statistics.median(r.seconds for r in base) if base else None
    limit_inner = statistics.median(r.inner_seconds or 0.0 for r in base) if base else None
    for mode, runs in report.runs.items():
        secs = [r.seconds for r in runs]
        inner = [r.inner_seconds for r in runs if r.inner_seconds is not None]
        rss = [r.peak_rss_mib for r in runs]
        med = statistics.median(secs)
        inner_med = statistics.median(inner) if inner else None
        ratio = "–"
        if limit_whole and mode != "limit":
            ratio = f"{med / limit_whole:.2f}× process"
            if inner_med and limit_inner:
                ratio += f", {inner_med / limit_inner:.2f}× in process"
        lines.append(
            f"| {mode} | {len(runs)} | {med:.1f} | {min(secs):.1f}–{max(secs):.1f} "
            f"| {'–' if inner_med is None else f'{inner_med:.1f}'} | {ratio} "
            f"| {statistics.median(rss):,.0f}, {max(rss):,.0f} | {max(r.peak_spill_mib for r in runs):,.0f} |"
        )
    if report.check:
        lines += ["", f"Check (api vs limit): {report.check}"]
    return "\n".join(lines)


def main() -> None:
    if sys.argv[1:2] == ["--worker"]:  # a child process: --worker MODE REPO OUT
        mode, repo, out = sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
        worker(mode, repo, repo / "data" / "entity_rows.parquet", out, os.environ.get("BENCH_MEMORY_LIMIT"))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=SCALES, default="small")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--modes", default="api,cli,limit", help=f"comma-separated, of {','.join(MODES)}")
    parser.add_argument("--plain", action="store_true", help="also time the ASOF join without tie-break")
    parser.add_argument("--check", action="store_true", help="compare api and limit outputs row for row")
    parser.add_argument("--reuse", action="store_true", help="keep an ingested store from an earlier run")
    parser.add_argument(
        "--memory-limit",
        help="DuckDB memory_limit for api, limit and plain (e.g. 8GB; the CLI cannot take one). "
        "Default: DuckDB's, 80%% of RAM",
    )
    parser.add_argument("--prepare-only", action="store_true", help="generate, apply and ingest; no runs")
    args = parser.parse_args()
    modes = [m for m in args.modes.split(",") if m] + (["plain"] if args.plain else [])
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        parser.error(f"unknown modes {unknown}")
    if args.prepare_only:
        _, report = prepare(args.scale, args.reuse)
        print(json.dumps(asdict(report), indent=2))
        return
    if args.memory_limit:
        os.environ["BENCH_MEMORY_LIMIT"] = args.memory_limit  # the workers inherit it
        if "cli" in modes:
            parser.error("--memory-limit cannot apply to the cli mode; pass --modes api,limit")
    report = run_benchmark(args.scale, args.runs, modes, args.reuse, args.check)
    print()
    print(markdown(report))


if __name__ == "__main__":
    main()

"""Point-in-time training sets at scale: ours against a hand-written DuckDB ASOF query.

    .venv/bin/python benchmarks/training_sets.py --scale medium --runs 3 --check
    .venv/bin/python benchmarks/training_sets.py --scale small --runs 3 --engine duckdb,spark

For one scale of the example data (featurestore.datagen) this
  1. generates the data under benchmarks/out/SCALE/data (kept between invocations),
  2. copies definitions/ into benchmarks/out/SCALE/repo, applies it and ingests it with
     ``featurestore materialize --offline`` (a fresh DuckDB file unless --reuse); with the
     Spark engine (``--engine spark``) the same into benchmarks/out/SCALE/repo-spark, its toml
     switched to Spark local[2] (benchmarks/spark_engine.py), ingested by Spark,
  3. measures, each in its own process under /usr/bin/time -v so that peak RSS is per run:
       api    FeatureStore.get_training_set(entity_rows.parquet, "trip_model").to_parquet(out)
       cli    ``featurestore training-set ... --service trip_model`` as a whole process
       limit  one hand-written DuckDB ASOF query with the same semantics (inclusive TTL,
              created-timestamp tie-break, input order) over the same ingested tables
       plain  (with --plain) the ASOF join on the event time alone: no tie-break, so not
              the same result; it shows what the tie-break costs
     and the peak size of DuckDB's spill folder during each run. On Spark, api and cli run
     against repo-spark (reported as spark-api and spark-cli); the limit is DuckDB's in every
     case, so both engines are ratios to the same query of the same invocation. The api
     worker times the SparkSession's start (the JVM) apart from the work, and reads Spark's
     job times and shuffle bytes from its REST API; the peak RSS of the Python process, of the
     JVM and of the whole process tree are sampled from /proc every 0.2 s,
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
from spark_engine import ENGINES, TreeMemory, engines_arg, spark_figures, use_spark

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

        store = FeatureStore(repo)
        if store.config.offline_engine == "spark":
            spark_worker(store, entities, out)
            return

    started = time.perf_counter()
    if mode == "api":
        with store.get_training_set(entities, SERVICE) as ts:
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


def spark_worker(store: Any, entities: Path, out: Path) -> None:
    """The api mode on Spark: the session's start (JVM) timed apart from the training set."""
    import pyarrow.parquet as pq
    import pyspark.sql  # noqa: F401  (imports are start-up, not the join)

    from featurestore.offline.spark.session import spark_session, stop_sessions

    started = time.perf_counter()
    spark = spark_session(store.config.spark)
    session = time.perf_counter() - started
    with store.get_training_set(entities, SERVICE) as ts:
        ts.to_parquet(out)
    seconds = time.perf_counter() - started
    figures = spark_figures(spark, pq.ParquetFile(entities).metadata.num_rows)
    stop_sessions()
    print(json.dumps({"seconds": seconds, "session_seconds": session, "spark": figures}))


# -- measuring a child process -----------------------------------------------------------


@dataclass
class Run:
    seconds: float  # wall time of the whole process
    inner_seconds: float | None  # time inside the worker (api, limit): no interpreter start-up
    peak_rss_mib: float  # /usr/bin/time -v: the largest single process it reaped
    peak_spill_mib: float
    # Sampled every 0.2 s: the measured process, the JVM below it (Spark), the whole tree.
    peak_python_rss_mib: float | None = None
    peak_jvm_rss_mib: float | None = None
    peak_tree_rss_mib: float | None = None
    session_seconds: float | None = None  # Spark: starting the session (JVM) in the worker
    spark: dict[str, Any] | None = None  # Spark's job times and shuffle bytes (spark_engine.py)


def measure(
    cmd: list[str], spill_dir: Path, log: Path, recursive: bool = False, env: dict[str, str] | None = None
) -> Run:
    """Run ``cmd`` under /usr/bin/time -v, polling the spill folder's size and the process
    tree's memory meanwhile (``recursive``: the folder's subfolders too, as Spark's local dir)."""
    timing = log.with_suffix(".time")
    size = _tree_size if recursive else _folder_size
    started = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(
            ["/usr/bin/time", "-v", "-o", str(timing), *cmd], stdout=out, stderr=subprocess.STDOUT, env=env
        )
        spill = 0
        memory = TreeMemory(proc.pid)
        while proc.poll() is None:
            spill = max(spill, size(spill_dir))
            memory.sample()
            time.sleep(0.2)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}); see {log}")
    rss_kib = next(
        int(line.split(":")[1])
        for line in timing.read_text().splitlines()
        if "Maximum resident set size" in line
    )
    found = worker_output(log)
    mib = 2**20
    return Run(
        seconds,
        found.get("seconds"),
        rss_kib / 1024,
        spill / mib,
        memory.python / mib,
        memory.jvm / mib,
        memory.tree / mib,
        found.get("session_seconds"),
        found.get("spark"),
    )


def worker_output(log: Path) -> dict[str, Any]:
    """What a worker printed as its result: the last JSON line starting ``{"seconds"``."""
    found: dict[str, Any] = {}
    for line in log.read_text().splitlines():
        if line.startswith('{"seconds"'):
            found = json.loads(line)
    return found


def _tree_size(folder: Path) -> int:
    total = 0
    for parent, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.stat(os.path.join(parent, name), follow_symlinks=False).st_size
            except FileNotFoundError:
                pass
    return total


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
    ingest_spark: Run | None = None
    check: str | None = None
    environment: dict[str, Any] = field(default_factory=dict)


def prepare(scale: str, reuse: bool, engine: str = "duckdb") -> tuple[Path, Report]:
    """The data of ``scale`` and a repo ingested by ``engine`` (repo, or repo-spark)."""
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
    repo, ingest = prepare_repo(scale, reuse, engine)
    if engine == "spark":
        report.ingest_spark = ingest
    else:
        report.ingest = ingest
    return repo, report


def prepare_repo(scale: str, reuse: bool, engine: str) -> tuple[Path, Run | None]:
    """definitions/ copied, applied and ingested by ``engine``; with ``reuse``, an earlier one."""
    base = OUT / scale
    spark = engine == "spark"
    repo = base / ("repo-spark" if spark else "repo")
    store = repo / ".featurestore"
    ingest_file = base / ("ingest-spark.json" if spark else "ingest.json")
    if reuse and (store / "store.duckdb").exists():
        if ingest_file.exists():  # the figures of the ingestion that built this store
            return repo, Run(**json.loads(ingest_file.read_text()))
        return repo, None
    shutil.rmtree(repo, ignore_errors=True)
    repo.mkdir(parents=True)
    for item in (ROOT / "definitions").iterdir():
        if item.suffix == ".py" or item.name == "featurestore.toml":
            shutil.copy(item, repo / item.name)
    (repo / "data").symlink_to(Path("..") / "data")
    if spark:
        use_spark(repo, scale)
    fs = str(BIN / "featurestore")
    subprocess.run([fs, "apply", "--repo", str(repo)], check=True, stdout=subprocess.DEVNULL)
    print(f"ingesting (materialize --offline, {engine}) ...", flush=True)
    spill = base / "spark-tmp" if spark else store / "tmp"
    log = base / ("ingest-spark.log" if spark else "ingest.log")
    ingest = measure([fs, "materialize", "--offline", "--repo", str(repo)], spill, log, recursive=spark)
    ingest_file.write_text(json.dumps(asdict(ingest)))
    return repo, ingest


def run_benchmark(
    scale: str, runs: int, modes: list[str], reuse: bool, check: bool, engines: tuple[str, ...] = ("duckdb",)
) -> Report:
    needs_duckdb = "duckdb" in engines or {"limit", "plain"} & set(modes)
    report = None
    if needs_duckdb:
        repo, report = prepare(scale, reuse)
    if "spark" in engines:
        spark_repo, spark_report = prepare(scale, reuse, "spark")
        if report is None:
            repo, report = spark_repo, spark_report
        report.ingest_spark = spark_report.ingest_spark
    assert report is not None
    base = OUT / scale
    entities = repo / "data" / "entity_rows.parquet"
    results = base / "results"
    results.mkdir(exist_ok=True)
    me = [sys.executable, str(Path(__file__).resolve())]

    def training_set(repo: Path, out: str) -> list[str]:
        return [
            str(BIN / "featurestore"),
            "training-set",
            "--repo",
            str(repo),
            "--entities",
            str(entities),
            "--service",
            SERVICE,
            "--out",
            str(results / out),
        ]

    # name -> (command, spill folder, whether that folder has subfolders: Spark's local dir)
    commands: dict[str, tuple[list[str], Path, bool]] = {}
    duckdb_spill = repo.parent / "repo" / ".featurestore" / "tmp"
    for mode in modes:
        if mode in ("api", "cli"):
            for engine in engines:
                name = mode if engine == "duckdb" else f"{engine}-{mode}"
                target = repo.parent / ("repo" if engine == "duckdb" else "repo-spark")
                if mode == "api":
                    cmd = [*me, "--worker", "api", str(target), str(results / f"{name}.parquet")]
                else:
                    cmd = training_set(target, f"{name}.parquet")
                spill = duckdb_spill if engine == "duckdb" else base / "spark-tmp"
                commands[name] = (cmd, spill, engine == "spark")
        else:
            duck = repo.parent / "repo"
            commands[mode] = (
                [*me, "--worker", mode, str(duck), str(results / f"{mode}.parquet")],
                duckdb_spill,
                False,
            )
    for i in range(runs):
        for name, (cmd, spill, recursive) in commands.items():  # interleaved: load falls alike
            out = results / f"{name}.parquet"
            shutil.rmtree(out, ignore_errors=True) if out.is_dir() else out.unlink(missing_ok=True)
            run = measure(cmd, spill, results / f"{name}-{i}.log", recursive)
            report.runs.setdefault(name, []).append(run)
            print(
                f"run {i + 1}/{runs} {name}: {run.seconds:.1f}s, peak RSS {run.peak_rss_mib:,.0f} MiB "
                f"(tree {run.peak_tree_rss_mib:,.0f}, JVM {run.peak_jvm_rss_mib:,.0f}), "
                f"spill {run.peak_spill_mib:,.0f} MiB",
                flush=True,
            )
    if check:
        for name in ("api", "spark-api"):
            if name in commands and "limit" in commands:
                verdict = compare(results / f"{name}.parquet", results / "limit.parquet")
                report.check = (report.check + "; " if report.check else "") + f"{name}: {verdict}"
        print("check:", report.check)
    report.environment = environment()
    limit = os.environ.get("BENCH_MEMORY_LIMIT")
    report.environment["duckdb_memory_limit"] = limit or "default (80% of RAM)"
    name = f"results-memory-{limit}.json" if limit else "results.json"
    if tuple(engines) != ("duckdb",):
        name = name.replace("results", "results-" + "-".join(engines))
    (base / name).write_text(json.dumps(asdict(report), indent=2))
    return report


NULL_COUNTS = {"driver features": "conv_rate", "customer features": "current_balance"}


def compare(ours: Path, limit: Path, nulls: dict[str, str] = NULL_COUNTS) -> str:
    """Row for row: same row count, same columns and types, every value equal (nulls included).
    ``ours`` may be a dataset folder (Spark's): its rows in file-name order. ``nulls``: label ->
    a column of ``ours`` whose nulls the verdict counts."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    if ours.is_dir():
        con.execute(
            "CREATE TEMP VIEW ours AS SELECT * EXCLUDE (filename, file_row_number) FROM "
            f"read_parquet('{ours}/part-*.parquet', filename = true, file_row_number = true) "
            "ORDER BY filename, file_row_number"
        )
        con.execute("CREATE TEMP TABLE ours_file AS SELECT * FROM ours")
        ours = Path(str(ours) + ".check.parquet")
        con.execute(f"COPY ours_file TO '{ours}' (FORMAT parquet)")
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
    filters = ", ".join(f'count(*) FILTER ("{column}" IS NULL)' for column in nulls.values())
    counts = con.execute(f"SELECT {filters} FROM '{ours}'").fetchone()
    assert counts is not None
    verdict = "IDENTICAL" if rows[0] == rows[1] and differ == 0 else "DIFFERENT"
    described = ", ".join(f"null {label}: {n:,}" for label, n in zip(nulls, counts, strict=True))
    return (
        f"{verdict}: {rows[0]:,} vs {rows[1]:,} rows, {len(a)} columns, {differ:,} differing rows "
        f"({described})"
    )


def environment() -> dict[str, Any]:
    import pyarrow as pa

    mem = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    try:
        import pyspark

        spark_version: str | None = pyspark.__version__
    except ImportError:
        spark_version = None
    return {
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "pyspark": spark_version,
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
    times where both have them (api and limit), so interpreter start-up does not blur it.
    Memory: /usr/bin/time's peak (largest process), then sampled Python, JVM and tree peaks."""
    lines = [
        f"Scale {report.scale}: " + ", ".join(f"{k} {v:,}" for k, v in report.counts.items()),
        "",
        "| measurement | runs | median s (process) | min–max s | median s (in process) "
        "| of which session start | ours/limit | peak RSS MiB, time -v (median, max) "
        "| peak MiB Python / JVM / tree (max) | peak spill MiB | shuffle write B/row |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def mib(value: float | None) -> str:
        return "–" if value is None else f"{value:,.0f}"

    for label, ingest in (
        ("ingest (materialize --offline)", report.ingest),
        ("spark ingest (materialize --offline)", report.ingest_spark),
    ):
        if ingest:
            lines.append(
                f"| {label} | 1 | {ingest.seconds:.1f} | – | – | – | – | {ingest.peak_rss_mib:,.0f} "
                f"| {mib(ingest.peak_python_rss_mib)} / {mib(ingest.peak_jvm_rss_mib)} / "
                f"{mib(ingest.peak_tree_rss_mib)} | {ingest.peak_spill_mib:,.0f} | – |"
            )
    base = report.runs.get("limit", [])
    limit_whole = statistics.median(r.seconds for r in base) if base else None
    limit_inner = statistics.median(r.inner_seconds or 0.0 for r in base) if base else None
    for mode, runs in report.runs.items():
        secs = [r.seconds for r in runs]
        inner = [r.inner_seconds for r in runs if r.inner_seconds is not None]
        session = [r.session_seconds for r in runs if r.session_seconds is not None]
        rss = [r.peak_rss_mib for r in runs]
        shuffle = [r.spark.get("shuffle_write_bytes_per_row") for r in runs if r.spark]
        med = statistics.median(secs)
        inner_med = statistics.median(inner) if inner else None
        ratio = "–"
        if limit_whole and mode != "limit":
            ratio = f"{med / limit_whole:.2f}× process"
            if inner_med and limit_inner:
                ratio += f", {inner_med / limit_inner:.2f}× in process"

        def peak(attr: str, runs: list[Run] = runs) -> str:
            values = [getattr(r, attr) for r in runs if getattr(r, attr) is not None]
            return mib(max(values)) if values else "–"

        lines.append(
            f"| {mode} | {len(runs)} | {med:.1f} | {min(secs):.1f}–{max(secs):.1f} "
            f"| {'–' if inner_med is None else f'{inner_med:.1f}'} "
            f"| {f'{statistics.median(session):.1f}' if session else '–'} | {ratio} "
            f"| {statistics.median(rss):,.0f}, {max(rss):,.0f} "
            f"| {peak('peak_python_rss_mib')} / {peak('peak_jvm_rss_mib')} / {peak('peak_tree_rss_mib')} "
            f"| {max(r.peak_spill_mib for r in runs):,.0f} "
            f"| {f'{statistics.median(x for x in shuffle if x is not None):,.0f}' if any(shuffle) else '–'} |"
        )
    if report.check:
        lines += ["", f"Check (vs limit): {report.check}"]
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
    parser.add_argument(
        "--engine",
        default="duckdb",
        help=f"comma-separated, of {','.join(ENGINES)}: the engines api and cli run on (spark: "
        "spark-api, spark-cli); limit and plain are DuckDB's either way",
    )
    args = parser.parse_args()
    engines = engines_arg(parser, args.engine)
    modes = [m for m in args.modes.split(",") if m] + (["plain"] if args.plain else [])
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        parser.error(f"unknown modes {unknown}")
    if args.prepare_only:
        for engine in engines:
            _, report = prepare(args.scale, args.reuse, engine)
            print(json.dumps(asdict(report), indent=2))
        return
    if args.memory_limit:
        os.environ["BENCH_MEMORY_LIMIT"] = args.memory_limit  # the workers inherit it
        if "cli" in modes:
            parser.error("--memory-limit cannot apply to the cli mode; pass --modes api,limit")
    report = run_benchmark(args.scale, args.runs, modes, args.reuse, args.check, engines)
    print()
    print(markdown(report))


if __name__ == "__main__":
    main()

"""Where materialization's memory goes: DuckDB's newest-row query alone, one process per query.

    .venv/bin/python benchmarks/materialize_memory.py benchmarks/out/online-medium/repo
    .venv/bin/python benchmarks/materialize_memory.py REPO --shapes window --setting "memory_limit='512MB'"

For each view and query shape, a fresh process opens the repo's DuckDB file read-only, runs
the query as materialization does (an Arrow reader of 20,000-row batches, drained) and prints
its peak RSS (VmHWM) before and after, and the seconds:
  scan     the rows in the view's TTL window (the query without its QUALIFY)
  window   materialization's query (newest_rows_sql: QUALIFY row_number() per key)
  argmax   the same newest row per key as an aggregate (arg_max over a struct, GROUP BY key):
           its state is per entity, not per row; its rows are not checked against window's
Repos: those benchmarks/scale_curves.py prepares (benchmarks/out/online-SCALE/repo).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

CHILD = """
import sys, time
from datetime import UTC, datetime
from pathlib import Path
import duckdb
from featurestore import FeatureStore
from featurestore.online.materialize import BATCH_ROWS, _Plan, newest_rows_sql

def hwm():
    status = Path("/proc/self/status").read_text().splitlines()
    return next(int(line.split()[1]) // 1024 for line in status if line.startswith("VmHWM"))

repo, name, shape, settings = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
store = FeatureStore(repo)
view = store.registry().views[name]
now = datetime.now(UTC)
sql, params = newest_rows_sql(store.config.project, _Plan(view, None, now, None), now)
scan = sql.split(" QUALIFY ")[0]
if shape == "scan":
    sql = scan
elif shape == "argmax":
    keys = ", ".join(k.name for k in view.join_keys)
    cols = ["__event_ts", "__created_ts"] + [f.name for f in view.features]
    packed = ", ".join(f"'{c}': {c}" for c in cols)
    order = "(__event_ts, coalesce(__created_ts, '-infinity'::TIMESTAMPTZ), __seq)"
    table_where = scan.split(" FROM ", 1)[1]
    sql = f"SELECT {keys}, UNNEST(arg_max({{{packed}}}, {order})) FROM {table_where} GROUP BY {keys}"
con = duckdb.connect(str(store.config.duckdb_path), read_only=True)
con.execute("SET enable_progress_bar = false")
for setting in settings:
    con.execute(f"SET {setting}")
before = hwm()
t = time.perf_counter()
with con.sql(sql, params=params).to_arrow_reader(BATCH_ROWS) as reader:
    rows = sum(batch.num_rows for batch in reader)
seconds = time.perf_counter() - t
print(f"| {name} | {shape} | {' '.join(settings) or 'default'} | {rows:,} | {before} | {hwm()} | "
      f"+{hwm() - before} | {seconds:.2f} |")
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("repo", type=Path)
    parser.add_argument("--views", default="driver_stats,customer_profile")
    parser.add_argument("--shapes", default="scan,window,argmax")
    parser.add_argument(
        "--setting", action="append", default=[], help="a DuckDB SET, e.g. memory_limit='512MB'"
    )
    args = parser.parse_args()
    print("| view | query | settings | rows out | VmHWM before MiB | after MiB | query's MiB | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for view in args.views.split(","):
        for shape in args.shapes.split(","):
            subprocess.run(
                [sys.executable, "-c", CHILD, str(args.repo), view, shape, *args.setting], check=True
            )


if __name__ == "__main__":
    main()

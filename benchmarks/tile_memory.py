"""One tile group's query alone, in this process: its rows in range, seconds and VmHWM growth
while draining it in a given number of buckets under a memory limit (how BYTES_PER_EVENT and
BYTES_PER_LISTED of featurestore/online/tile_writer.py were calibrated).

    .venv/bin/python benchmarks/tile_memory.py REPO VIEW GROUP BUCKETS [MEMORY_LIMIT]

GROUP: the group's index in tile_groups (hop ascending, lifetime last). Run each in a fresh
process (VmHWM never goes down). Prints one line; an out-of-memory error fails the process.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta

from featurestore import FeatureStore
from featurestore.offline.layout import view_table
from featurestore.online import tile_writer
from featurestore.online.tiles import tile_groups
from featurestore.storage import connection


def hwm_mib() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) // 1024
    return 0


def main() -> None:
    repo, name, index, buckets = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    store = FeatureStore(repo)
    view = store.get_feature_view(name)
    group = tile_groups(view)[index]
    project = store.config.project
    now = datetime.now(UTC)
    now_us = (now - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    with connection(store.config.duckdb_path, read_only=True) as con:
        if len(sys.argv) > 5:
            con.execute("SET memory_limit = ?", [sys.argv[5]])
        where, params = tile_writer._group_where(group, now, now_us, [])
        table = view_table(project, view.name)
        [(rows,)] = con.execute(
            f"SELECT count(*) FROM {table} WHERE {' AND '.join(where)}", params
        ).fetchall()
        before, started, tiles = hwm_mib(), time.perf_counter(), 0
        for b in range(buckets):
            sql, p = tile_writer._group_sql(project, view, group, now, now_us, [], None, (b, buckets))
            with con.sql(sql, params=p).to_arrow_reader(tile_writer.BATCH_ROWS) as reader:
                tiles += sum(batch.num_rows for batch in reader)
    print(
        f"{group.key_name} (estimate {tile_writer._bytes_per_event(group)} B/event), {rows:,} rows, "
        f"{buckets} buckets, limit {sys.argv[5] if len(sys.argv) > 5 else 'unset'}: {tiles:,} tiles, "
        f"{time.perf_counter() - started:.1f} s, VmHWM {before} -> {hwm_mib()} MiB"
    )


if __name__ == "__main__":
    main()

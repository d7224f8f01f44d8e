"""The statistics of each ingestion run (``featurestore.profiling``), kept in DuckDB (``feature_statistics``).

One row per run, view and feature, queryable like the runs themselves::

    SELECT feature, count, nulls, mean, std, quantiles[51] AS median
    FROM rides.feature_statistics WHERE run_id = 3

A run that ingested no rows (nothing changed, only removals) has no rows here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from featurestore.catalog import table_exists
from featurestore.profiling import FeatureStats
from featurestore.storage import ProjectTables, fetch_one

TABLE = "feature_statistics"
_COLUMNS = (
    "run_id",
    "view",
    "feature",
    "dtype",
    "kind",
    "count",
    "nulls",
    "distinct_estimate",
    "min",
    "max",
    "mean",
    "std",
    "quantiles",
    "top_values",
    "computed_at",
    "non_finite",
)


@dataclass(frozen=True)
class StatisticsState(ProjectTables):
    """Owns ``feature_statistics``."""

    def ensure_table(self) -> None:
        self.con.execute(
            f"""CREATE TABLE IF NOT EXISTS {self.schema}.{TABLE} (
                run_id INTEGER NOT NULL,          -- ingestion_runs.run_id
                view VARCHAR NOT NULL,
                feature VARCHAR NOT NULL,
                dtype VARCHAR NOT NULL,           -- the DuckDB type
                kind VARCHAR NOT NULL,            -- numeric, categorical or other
                count BIGINT NOT NULL,            -- rows the run ingested, nulls included
                nulls BIGINT NOT NULL,
                distinct_estimate BIGINT,
                min DOUBLE,
                max DOUBLE,
                mean DOUBLE,                      -- booleans: the share of true
                std DOUBLE,
                quantiles DOUBLE[],               -- numeric: 0%, 1%, ..., 100%
                top_values JSON,                  -- categorical: [[value, count], ...], most frequent first
                                                  -- non_finite BIGINT (added below): NaN and +-inf
                computed_at TIMESTAMPTZ NOT NULL,
                PRIMARY KEY (run_id, view, feature))"""
        )
        # Added later: files written before have no such column (read() copes).
        self.con.execute(
            f"ALTER TABLE {self.schema}.{TABLE} ADD COLUMN IF NOT EXISTS non_finite BIGINT"
        )

    def record(self, run_id: int, view: str, stats: Sequence[FeatureStats]) -> None:
        """Keep a run's statistics."""
        if not stats:
            return
        self.ensure_table()
        now = datetime.now(UTC)
        self.con.executemany(
            f"INSERT OR REPLACE INTO {self.schema}.{TABLE} ({', '.join(_COLUMNS)}) "
            f"VALUES ({', '.join(['?'] * len(_COLUMNS))})",
            [
                [
                    run_id,
                    view,
                    s.name,
                    s.dtype,
                    s.kind,
                    s.count,
                    s.nulls,
                    s.distinct,
                    s.min,
                    s.max,
                    s.mean,
                    s.std,
                    list(s.quantiles) or None,
                    json.dumps([[v, n] for v, n in s.top]) if s.top else None,
                    now,
                    s.non_finite,
                ]
                for s in stats
            ],
        )

    def read(self, run_id: int) -> dict[str, FeatureStats]:
        """A run's statistics by feature name; empty if it has none."""
        if not table_exists(self.con, self.project, TABLE):
            return {}
        # SELECT *: a file written before non_finite existed has no such column.
        result = self.con.execute(
            f"SELECT * FROM {self.schema}.{TABLE} WHERE run_id = ? ORDER BY feature", [run_id]
        )
        names = [d[0] for d in result.description]
        out = {}
        for values in result.fetchall():
            row = dict(zip(names, values, strict=True))
            name, dtype, kind, count, nulls = (row[k] for k in ("feature", "dtype", "kind", "count", "nulls"))
            distinct, lo, hi, mean, std = (row[k] for k in ("distinct_estimate", "min", "max", "mean", "std"))
            quantiles, top = row["quantiles"], row["top_values"]
            out[name] = FeatureStats(
                name,
                dtype,
                kind,
                int(count),
                int(nulls),
                distinct,
                lo,
                hi,
                mean,
                std,
                tuple(quantiles or ()),
                tuple((str(v), int(n)) for v, n in json.loads(top)) if top else (),
                int(row.get("non_finite") or 0),
            )
        return out

    def latest_run(self, view: str) -> int | None:
        """The most recent run of ``view`` that has statistics (ingested rows), or None."""
        if not table_exists(self.con, self.project, TABLE):
            return None
        row = fetch_one(
            self.con, f"SELECT max(run_id) FROM {self.schema}.{TABLE} WHERE view = ?", [view]
        )
        return None if row is None or row[0] is None else int(row[0])

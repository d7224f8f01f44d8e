"""The online materializer's state in DuckDB: per-view watermarks, pending removals, and the
store's online epoch (the value of its markers in Redis, see online/presence.py).

They describe what Redis holds, and change in step with what a materialization writes there,
so they stay with the materializer; the runs themselves are recorded by
``featurestore.runs.materialization``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from featurestore.catalog import table_exists
from featurestore.runs.materialization import MaterializationRunState
from featurestore.storage import ProjectTables, fetch_one


@dataclass(frozen=True)
class Watermark:
    watermark: datetime
    run_started_at: datetime
    run_id: int


@dataclass(frozen=True)
class OnlineState(ProjectTables):
    """Owns ``online_watermarks``, ``online_removals`` and ``online_epoch``."""

    def ensure_tables(self) -> None:
        schema, con = self.schema, self.con
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        # The runs that write them: their table belongs to the run bookkeeping.
        MaterializationRunState(con, self.project).ensure_table()
        con.execute(
            f"""CREATE TABLE IF NOT EXISTS {schema}.online_watermarks (
                view VARCHAR PRIMARY KEY,
                watermark TIMESTAMPTZ NOT NULL,   -- event times before it are in Redis
                run_started_at TIMESTAMPTZ NOT NULL,  -- files ingested later may hold late rows
                run_id INTEGER NOT NULL)"""
        )
        # One row: the id a materialization writes into Redis beside each view it completed, so a
        # Redis that lost its data (or holds another store's) is told apart from an up-to-date one.
        con.execute(f"CREATE TABLE IF NOT EXISTS {schema}.online_epoch (epoch VARCHAR NOT NULL)")
        con.execute(
            f"""CREATE TABLE IF NOT EXISTS {schema}.online_removals (
                view VARCHAR PRIMARY KEY,
                requested_at TIMESTAMPTZ NOT NULL)"""
        )

    # -- watermarks ------------------------------------------------------------------------

    def watermark(self, view: str) -> Watermark | None:
        """The view's watermark; None if it has none (or nothing was ever materialized)."""
        if not table_exists(self.con, self.project, "online_watermarks"):
            return None
        row = fetch_one(
            self.con,
            f"SELECT watermark, run_started_at, run_id FROM {self.schema}.online_watermarks WHERE view = ?",
            [view],
        )
        return Watermark(*row) if row else None

    def advance_watermark(self, view: str, end: datetime, started_at: datetime, run_id: int) -> None:
        """Move the watermark forward only: an older range materialized later never moves it back."""
        self.con.execute(
            f"""INSERT INTO {self.schema}.online_watermarks VALUES (?, ?, ?, ?)
                ON CONFLICT (view) DO UPDATE SET
                  watermark = greatest(watermark, excluded.watermark),
                  run_started_at = CASE WHEN excluded.watermark >= watermark
                                        THEN excluded.run_started_at ELSE run_started_at END,
                  run_id = CASE WHEN excluded.watermark >= watermark THEN excluded.run_id ELSE run_id END""",
            [view, end, started_at, run_id],
        )

    def watermark_run_ids(self) -> set[int]:
        """The materialization runs behind the views' watermarks (kept by ``featurestore gc``)."""
        if not table_exists(self.con, self.project, "online_watermarks"):
            return set()
        rows = self.con.execute(f"SELECT run_id FROM {self.schema}.online_watermarks").fetchall()
        return {int(r[0]) for r in rows}

    # -- the online epoch ------------------------------------------------------------------

    def epoch(self) -> str | None:
        """The store's online epoch, None if no materialization has recorded one yet."""
        if not table_exists(self.con, self.project, "online_epoch"):
            return None
        row = fetch_one(self.con, f"SELECT epoch FROM {self.schema}.online_epoch LIMIT 1")
        return str(row[0]) if row else None

    def ensure_epoch(self) -> str:
        """The store's online epoch, created on first use (the caller has run ensure_tables)."""
        current = self.epoch()
        if current is None:
            current = uuid.uuid4().hex
            self.con.execute(f"INSERT INTO {self.schema}.online_epoch VALUES (?)", [current])
        return current

    # -- removals --------------------------------------------------------------------------

    def request_removal(self, views: list[str]) -> None:
        """Views gone from the registry: the next materialization deletes their values."""
        for view in views:
            self.con.execute(
                f"INSERT OR REPLACE INTO {self.schema}.online_removals VALUES (?, ?)",
                [view, datetime.now(UTC)],
            )
            self.con.execute(f"DELETE FROM {self.schema}.online_watermarks WHERE view = ?", [view])

    def pending_removals(self) -> list[str]:
        return [r[0] for r in self.con.execute(f"SELECT view FROM {self.schema}.online_removals").fetchall()]

    def removal_done(self, view: str) -> None:
        self.con.execute(f"DELETE FROM {self.schema}.online_removals WHERE view = ?", [view])

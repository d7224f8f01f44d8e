"""The validation of each file an ingestion read (``validation_results``): counts per check,
kept with the ingestion for lineage and monitoring."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from featurestore.storage import ProjectTables
from featurestore.validation import ViewReport


@dataclass(frozen=True)
class ValidationResultState(ProjectTables):
    """Owns ``validation_results``."""

    def ensure_table(self) -> None:
        self.con.execute(
            f"""CREATE TABLE IF NOT EXISTS {self.schema}.validation_results (
                view VARCHAR NOT NULL, path VARCHAR NOT NULL, checked_at TIMESTAMPTZ NOT NULL,
                policy VARCHAR NOT NULL, rows BIGINT NOT NULL, invalid_rows BIGINT NOT NULL,
                failures JSON NOT NULL)"""
        )

    def record(self, report: ViewReport) -> None:
        """Counts per check of each file of ``report`` (inside the ingestion's transaction)."""
        self.ensure_table()
        now = datetime.now(UTC)
        for f in report.files:
            failures = json.dumps(
                [{"column": c.column, "check": c.check, "failing_rows": c.failing_rows} for c in f.failures]
            )
            self.con.execute(
                f"INSERT INTO {self.schema}.validation_results VALUES (?, ?, ?, ?, ?, ?, ?)",
                [report.view, f.path, now, report.policy, f.rows, f.invalid_rows, failures],
            )

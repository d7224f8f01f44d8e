"""Validation reports: per view, per file, per failing check, with example rows."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

MAX_EXAMPLES = 3


@dataclass
class CheckFailure:
    """One check that some rows of a file failed."""

    column: str | None  # None for a view-level check
    check: str
    failing_rows: int
    examples: list[dict[str, Any]] = field(default_factory=list)  # a few failing rows, with values

    @property
    def reason(self) -> str:
        return f"{self.column}: {self.check}" if self.column else self.check


@dataclass
class FileReport:
    path: str
    rows: int
    invalid_rows: int
    failures: list[CheckFailure] = field(default_factory=list)
    error: str | None = None  # the file is not readable Parquet (or lacks a declared column): unchecked


@dataclass
class ViewReport:
    view: str
    policy: str  # "fail" or "quarantine"
    files: list[FileReport] = field(default_factory=list)
    quarantined_to: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)

    @property
    def invalid_rows(self) -> int:
        return sum(f.invalid_rows for f in self.files)

    @property
    def passed(self) -> bool:
        return self.invalid_rows == 0 and not self.unreadable()

    def unreadable(self) -> list[FileReport]:
        """Files that could not be checked at all (not Parquet, a declared column missing)."""
        return [f for f in self.files if f.error is not None]

    def failures(self) -> list[tuple[str, CheckFailure]]:
        return [(f.path, c) for f in self.files for c in f.failures]

    def summary(self) -> str:
        """One line naming the view, file, column, check and count of the first failures."""
        parts = [
            f"{path}: column {c.column!r} failed {c.check} in {c.failing_rows:,} row(s)"
            if c.column
            else f"{path}: {c.check} failed in {c.failing_rows:,} row(s)"
            for path, c in self.failures()[:3]
        ]
        more = len(self.failures()) - 3
        tail = f"; and {more} more" if more > 0 else ""
        if not self.failures():
            return "; ".join(str(f.error) for f in self.unreadable())
        return f"feature view {self.view!r}: {self.invalid_rows:,} invalid row(s): " + "; ".join(parts) + tail


@dataclass
class ValidationReport:
    views: list[ViewReport] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(v.passed for v in self.views)

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "views": [
                {**asdict(v), "rows": v.rows, "invalid_rows": v.invalid_rows, "passed": v.passed}
                for v in self.views
            ],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)

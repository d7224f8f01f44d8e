"""ParquetSource: where a feature view's rows come from."""

from __future__ import annotations

import glob
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from featurestore.definitions.base import caller_location, check_name, fingerprint
from featurestore.errors import DefinitionError
from featurestore.uris import is_remote, local_form, names_host


@dataclass(frozen=True, eq=False)
class ParquetSource:
    """Parquet rows with an event timestamp; ``path`` is a file, a folder or a glob.

    ``path`` may be a ``file://`` URI, or a URI only the Spark engine reads (``s3a://``,
    ``hdfs://``, ``abfss://``...); relative paths are from the repo. ``path=None``: a source
    of pushed rows only (its views' push logs), whose views declare the join keys' types.
    """

    name: str
    path: str | None
    timestamp_field: str
    created_timestamp_field: str | None = None
    description: str = ""
    defined_in: str = field(default="", compare=False, repr=False)

    def __post_init__(self) -> None:
        check_name("source", self.name)
        if self.path is not None and (not isinstance(self.path, str) or not self.path):
            raise DefinitionError(
                [f"source {self.name!r} needs a path (or path=None: rows arrive only by push)"]
            )
        if self.path is not None and names_host(self.path):
            raise DefinitionError(
                [f"source {self.name!r}: a file:// URI names a local path, not a host ({self.path!r})"]
            )
        check_name(f"source {self.name!r} timestamp_field", self.timestamp_field)
        if self.created_timestamp_field is not None:
            check_name(f"source {self.name!r} created_timestamp_field", self.created_timestamp_field)
            if self.created_timestamp_field == self.timestamp_field:
                raise DefinitionError(
                    [f"source {self.name!r}: created_timestamp_field equals timestamp_field"]
                )
        if not self.defined_in:
            object.__setattr__(self, "defined_in", caller_location())

    @property
    def remote(self) -> bool:
        return self.path is not None and is_remote(self.path)

    @property
    def push_only(self) -> bool:
        """Rows arrive only by push: no path, no files."""
        return self.path is None

    def files(self, repo: Path) -> list[Path]:
        """The local Parquet files the path names today, sorted; relative paths are from the
        repo. A remote URI is listed by the Spark engine instead (source_files.py)."""
        if self.path is None:
            return []
        if self.remote:
            raise ValueError(f"source {self.name!r}: {self.path!r} is listed by the Spark engine")
        local = local_form(self.path)
        base = Path(local) if Path(local).is_absolute() else repo / local
        if base.is_file():
            return [base]
        if base.is_dir():
            return sorted(p for p in base.rglob("*.parquet") if p.is_file())
        return sorted(Path(p) for p in glob.glob(str(base), recursive=True) if Path(p).is_file())

    def to_spec(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": self.path,
            "timestamp_field": self.timestamp_field,
            "created_timestamp_field": self.created_timestamp_field,
            "description": self.description,
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> ParquetSource:
        return cls(
            spec["name"],
            spec.get("path"),
            spec["timestamp_field"],
            spec.get("created_timestamp_field"),
            spec.get("description", ""),
            defined_in="registry",
        )

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.to_spec())

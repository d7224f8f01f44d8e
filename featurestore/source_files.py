"""A source's files, read where they live: local paths here, other URIs by the Spark engine.

A ``ParquetSource`` path is a local path (relative to the repo, a file, a folder or a glob),
a ``file://`` URI (the same, spelt as a URI), or a URI only Spark reads (``s3a://``,
``hdfs://``, ``abfss://``, ...). Everything that lists, stats, fingerprints or reads the
schema of a source file goes through ``SourceFiles``, so a remote URI never reaches pathlib
or pyarrow: the Spark engine passes its ``RemoteFiles`` (offline/spark/files.py), and on the
DuckDB engine a remote URI is refused with one line saying so.

Remote files have no content fingerprint: reading a whole object to hash it would cost as
much as ingesting it. Their fingerprint hashes the URI, size and modification time (what
object stores and HDFS report), so a rewritten object is always seen as changed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from featurestore.definitions import ParquetSource
from featurestore.errors import SourceError
from featurestore.fingerprints import file_fingerprint
from featurestore.uris import is_remote, scheme

__all__ = ["RemoteFiles", "SourceFile", "SourceFiles", "is_remote", "remote_fingerprint", "scheme"]


@dataclass(frozen=True)
class SourceFile:
    """One file of a source: an absolute local path or a URI, its size and mtime (epoch s)."""

    path: str
    size: int
    mtime: float

    @property
    def remote(self) -> bool:
        return is_remote(self.path)

    @property
    def stat(self) -> tuple[int, float]:
        return self.size, self.mtime


class RemoteFiles(Protocol):
    """What an engine that reads URIs provides (the Spark engine: offline/spark/files.py)."""

    def list(self, uri: str) -> list[SourceFile]:
        """The files a URI (a file, a folder, a glob) names, sorted; SourceError if unreadable."""

    def schema(self, uri: str) -> pa.Schema:
        """One file's Arrow schema; SourceError naming the file and the reason if unreadable."""


class SourceFiles:
    """Lists, stats, fingerprints and reads the schemas of source files where they live."""

    def __init__(self, remote: RemoteFiles | None = None) -> None:
        self.remote = remote

    def list(self, source: ParquetSource, repo: Path) -> list[SourceFile]:
        """The source's files today, sorted by path; empty if its path matches none (or it
        has no path: rows arrive only by push)."""
        if source.path is None:
            return []
        if is_remote(source.path):
            return self._remote(source.path, f"source {source.name!r}").list(source.path)
        files = []
        for f in source.files(repo):
            stat = f.stat()
            files.append(SourceFile(str(f.resolve()), stat.st_size, stat.st_mtime))
        return files

    def schema(self, path: str) -> pa.Schema:
        """A file's Parquet schema; OSError or ArrowException (local) / SourceError (remote)."""
        if is_remote(path):
            return self._remote(path, "file").schema(path)
        return pq.read_schema(path)

    def fingerprint(self, file: SourceFile) -> str:
        """Content hash of a local file; URI, size and mtime of a remote one (see module doc)."""
        if file.remote:
            return remote_fingerprint(file)
        return file_fingerprint(Path(file.path))

    def _remote(self, path: str, what: str) -> RemoteFiles:
        if self.remote is None:
            raise SourceError(
                f"{what}: {path!r} is a {scheme(path)}:// URI, which only the Spark engine reads "
                '(set [offline] engine = "spark"; local paths and file:// URIs work on both engines)'
            )
        return self.remote


def remote_fingerprint(file: SourceFile) -> str:
    digest = hashlib.blake2b(f"{file.path}\0{file.size}\0{file.mtime!r}".encode(), digest_size=16)
    return digest.hexdigest()

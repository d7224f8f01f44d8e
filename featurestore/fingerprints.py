"""Content fingerprints of files: change detection (ingestion) and lineage (runs, training sets)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_fingerprint(path: Path) -> str:
    """A content hash of a file (BLAKE2b, streamed), for lineage and change detection.

    A folder (a Parquet dataset the Spark engine wrote) hashes its files' relative names and
    contents in name order, skipping hidden files (``.``-prefixed checksums, partial writes).
    """
    digest = hashlib.blake2b(digest_size=16)
    for name, file in _files(path):
        if path.is_dir():
            digest.update(name.encode() + b"\0")
        with file.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def size_of(path: Path) -> int:
    """The bytes of a file, or of the files of a folder counted by ``file_fingerprint``."""
    return sum(file.stat().st_size for _, file in _files(path))


def _files(path: Path) -> list[tuple[str, Path]]:
    if not path.is_dir():
        return [(path.name, path)]
    found = [p for p in path.rglob("*") if p.is_file()]
    named = [(p.relative_to(path).as_posix(), p) for p in found]
    return sorted((n, p) for n, p in named if not any(part.startswith(".") for part in n.split("/")))

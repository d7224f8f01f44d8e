"""Content fingerprints of files: change detection (ingestion) and lineage (runs, training sets)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_fingerprint(path: Path) -> str:
    """A content hash of a file (BLAKE2b, streamed), for lineage and change detection."""
    digest = hashlib.blake2b(digest_size=16)
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()

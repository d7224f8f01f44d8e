"""Source paths that are URIs: ``file://`` names a local path; any other scheme only Spark reads."""

from __future__ import annotations

import re
from urllib.parse import unquote, urlparse

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def scheme(path: str) -> str | None:
    """The URI scheme of a source path, lower case; None for a plain path."""
    m = _SCHEME.match(path)
    return m.group(1).lower() if m else None


def is_remote(path: str) -> bool:
    """A URI other than ``file://``: only the Spark engine lists and reads it (source_files.py)."""
    return scheme(path) not in (None, "file")


def local_form(path: str) -> str:
    """A ``file://`` URI as the local path it names (``file:///data/x`` -> ``/data/x``); any
    other path as given. A ``file://`` URI naming a host is refused by ParquetSource."""
    return unquote(urlparse(path).path) if scheme(path) == "file" else path


def names_host(path: str) -> bool:
    """A ``file://`` URI with a host (``file://server/x``), which no local path can name."""
    return scheme(path) == "file" and urlparse(path).netloc not in ("", "localhost")

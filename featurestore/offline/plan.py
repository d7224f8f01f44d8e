"""Plan an ingestion: which of a view's source files are new, changed, removed or only touched.

Each file is tracked by path, size and mtime (``offline_files``): new files are inserted,
changed files have their rows replaced, removed files have their rows deleted; a changed view
definition rebuilds the table. Reads only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from featurestore.definitions import FeatureView
from featurestore.errors import SourceError
from featurestore.fingerprints import file_fingerprint

if TYPE_CHECKING:  # the owner of the tables passes itself in
    from featurestore.offline.offline_store import OfflineStore

_RACY_SECONDS = 2.0


@dataclass(frozen=True)
class FileState:
    """An ingested file as ``offline_files`` recorded it."""

    file_id: int
    size: int
    mtime: float
    checked_at: float  # epoch seconds when size, mtime and content were last read

    def maybe_changed(self, stat: tuple[int, float]) -> bool:
        # Git's "racy clean" rule: a file written within the filesystem's timestamp
        # granularity of being read can change again keeping its size and mtime, so its
        # content is compared unless its mtime is safely older than that read.
        return (self.size, self.mtime) != stat or self.mtime >= self.checked_at - _RACY_SECONDS


@dataclass
class FilePlan:
    """Which files an ingestion of one view reads, replaces and deletes."""

    on_disk: dict[str, tuple[int, float]]  # path -> (size, mtime)
    stat_time: datetime  # before the stat: what the racy-clean rule compares with
    known: dict[str, FileState]
    rebuild: bool
    added: list[str]
    changed: list[str]
    removed: list[str]
    # Files touched but not changed: (path, stat, when read); their check time is refreshed.
    touched: list[tuple[str, tuple[int, float], datetime]]


def source_files(view: FeatureView, repo: Path) -> list[Path]:
    """The view's source files; SourceError if its path matches none."""
    files = view.source.files(repo)
    if not files:
        raise SourceError(
            f"source {view.source.name!r} of feature view {view.name!r}: "
            f"path {view.source.path!r} matches no Parquet files"
        )
    return files


def plan_files(store: OfflineStore, view: FeatureView, repo: Path) -> FilePlan:
    """Compare the view's source files with what its table holds."""
    files = source_files(view, repo)
    stat_time = datetime.now(UTC)
    on_disk = {str(f.resolve()): (f.stat().st_size, f.stat().st_mtime) for f in files}
    known = store.known_files(view.name)
    rebuild = not store.up_to_date(view)
    touched: list[tuple[str, tuple[int, float], datetime]] = []
    changed: list[str] = []
    if rebuild:
        added, removed = sorted(on_disk), sorted(p for p in known if p not in on_disk)
    else:
        added = sorted(p for p in on_disk if p not in known)
        for p in sorted(on_disk):
            if p not in known or not known[p].maybe_changed(on_disk[p]):
                continue
            read_at = datetime.now(UTC)
            if _same_content(store, view.name, p, known[p], on_disk[p]):
                touched.append((p, on_disk[p], read_at))
            else:
                changed.append(p)
        removed = sorted(p for p in known if p not in on_disk)
        # Full ties are won by the later file in path order, so file ids follow path order:
        # a new file that sorts before a kept one cannot get a fitting id, and rebuilds.
        kept = [p for p in known if p not in removed]
        if added and kept and added[0] < max(kept):
            added, changed, rebuild, touched = sorted(on_disk), [], True, []
    return FilePlan(on_disk, stat_time, known, rebuild, added, changed, removed, touched)


def _same_content(
    store: OfflineStore, view: str, path: str, known: FileState, stat: tuple[int, float]
) -> bool:
    """A file touched but not changed (a re-copy, a checkout) is not re-ingested."""
    if known.size != stat[0]:
        return False
    stored = store.stored_fingerprint(view, path)
    return stored is not None and stored == file_fingerprint(Path(path))

"""Plan an ingestion: which of a view's source files are new, changed, removed or only touched.

Each file is tracked by path, size and mtime (``offline_files``): new files are inserted,
changed files have their rows replaced, removed files have their rows deleted; a changed view
definition rebuilds the table. Reads only. Paths are absolute local paths or remote URIs
(listed by Spark, see source_files.py). A view's files are its source's files, then the
files pushed to it (``push_log.py``), in that order: file ids follow it, so at a full tie a
pushed row beats a source row and a later push an earlier one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from featurestore.config import SparkSettings
from featurestore.definitions import FeatureView
from featurestore.errors import SourceError
from featurestore.offline.push_log import push_folder, pushed_files
from featurestore.source_files import SourceFile, SourceFiles

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


def source_files_for(spark: SparkSettings | None) -> SourceFiles:
    """How an engine reaches source files: with Spark settings, remote URIs through Spark."""
    if spark is None:
        return SourceFiles()
    from featurestore.offline.spark.files import SparkFiles

    return SourceFiles(SparkFiles(spark))


def view_files(
    view: FeatureView, repo: Path, files: SourceFiles | None = None, store_dir: Path | None = None
) -> list[SourceFile]:
    """The view's source files (sorted by path), then its pushed files (in push order)."""
    found = (files or SourceFiles()).list(view.source, repo)
    return found + (pushed_files(store_dir, view.name) if store_dir is not None else [])


def source_files(
    view: FeatureView, repo: Path, files: SourceFiles | None = None, store_dir: Path | None = None
) -> list[SourceFile]:
    """The view's files (``view_files``); SourceError if there are none, unless its source
    has no path (rows arrive only by push)."""
    found = view_files(view, repo, files, store_dir)
    if not found and not view.source.push_only:  # push only: no rows yet, an empty table
        pushed = f" and nothing was pushed to {push_folder(store_dir, view.name)}" if store_dir else ""
        raise SourceError(
            f"source {view.source.name!r} of feature view {view.name!r}: "
            f"path {view.source.path!r} matches no Parquet files{pushed}"
        )
    return found


def plan_files(store: OfflineStore, view: FeatureView, repo: Path) -> FilePlan:
    """Compare the view's source files with what its table holds."""
    stat_time = datetime.now(UTC)
    files = store.source_files
    found = {f.path: f for f in source_files(view, repo, files, store.store_dir)}
    order = {path: i for i, path in enumerate(found)}  # source files by path, then pushed files
    on_disk = {path: f.stat for path, f in found.items()}
    known = store.known_files(view.name)
    rebuild = not store.up_to_date(view)
    touched: list[tuple[str, tuple[int, float], datetime]] = []
    changed: list[str] = []
    if rebuild:
        added, removed = list(on_disk), sorted(p for p in known if p not in on_disk)
    else:
        added = [p for p in on_disk if p not in known]
        for p in on_disk:
            if p not in known or not known[p].maybe_changed(on_disk[p]):
                continue
            read_at = datetime.now(UTC)
            if _same_content(store, view.name, found[p], known[p], files):
                touched.append((p, on_disk[p], read_at))
            else:
                changed.append(p)
        removed = sorted(p for p in known if p not in on_disk)
        # Full ties are won by the later file in that order, so file ids follow it: a new file
        # that comes before a kept one cannot get a fitting id, and rebuilds.
        kept = [p for p in known if p not in removed]
        if added and kept and order[added[0]] < max(order[p] for p in kept):
            added, changed, rebuild, touched = list(on_disk), [], True, []
    return FilePlan(on_disk, stat_time, known, rebuild, added, changed, removed, touched)


def _same_content(
    store: OfflineStore, view: str, file: SourceFile, known: FileState, files: SourceFiles
) -> bool:
    """A file touched but not changed (a re-copy, a checkout) is not re-ingested. A remote
    file's content is not compared (its fingerprint is its stat): it is read again."""
    if known.size != file.size or file.remote:
        return False
    stored = store.stored_fingerprint(view, file.path)
    return stored is not None and stored == files.fingerprint(file)

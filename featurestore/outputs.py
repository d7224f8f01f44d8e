"""Files written where the user says: never over the store or a source, never half written.

``OutputGuard.check`` refuses a path inside the store's folder (the one holding the DuckDB
file, its spills, runs and records) or one a registered source reads or would read
(compared after resolving symlinks and ``..``): ``training-set --out``, ``training-set
reproduce --out`` and ``drift --html`` go through it. ``atomic_write`` writes beside the
target and renames, so an interrupted write leaves the old file or none, never half of one:
those outputs, ``init``'s files and the store's own records use it. A Parquet dataset folder
(the Spark engine's training sets) is checked with ``folder=True`` and written with
``atomic_folder`` the same way.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from featurestore.errors import InvalidRequestError
from featurestore.uris import is_remote, local_form

DATASET_MARK = "_common_metadata"  # the file that makes a folder a Parquet dataset we wrote


class Source(Protocol):
    """What the guard needs of a source (``definitions.ParquetSource``, a layer above this one)."""

    @property
    def name(self) -> str: ...

    @property
    def path(self) -> str | None: ...

    def files(self, repo: Path) -> Sequence[Path]: ...


@dataclass(frozen=True)
class OutputGuard:
    """What an output may not touch: the store's folder and every file a source reads."""

    store_dir: Path
    repo: Path
    sources: tuple[Source, ...] = ()

    def check(self, path: str | os.PathLike[str], folder: bool = False) -> Path:
        """``path`` as given, or InvalidRequestError naming what writing it would destroy.

        With ``folder``, the output is a Parquet dataset folder: it may replace only a folder
        that is one (it has ``_common_metadata``), and may hold neither the store nor a source.
        """
        target = Path(path)
        if folder:
            if target.is_file():
                raise InvalidRequestError(f"output {target} is a file: give a folder path to write")
            if target.is_dir() and not (target / DATASET_MARK).is_file():
                raise InvalidRequestError(
                    f"output {target} is a folder that is not a Parquet dataset (no {DATASET_MARK}): "
                    "give a new folder path"
                )
        elif target.is_dir():
            raise InvalidRequestError(f"output {target} is a directory: give a file path to write")
        resolved = _resolve(target)
        store = _resolve(self.store_dir)
        if resolved == store or store in resolved.parents:
            raise InvalidRequestError(
                f"output {target} is inside the store's folder {self.store_dir}: write it elsewhere"
            )
        if folder and resolved in store.parents:
            raise InvalidRequestError(
                f"output {target} holds the store's folder {self.store_dir}: write it elsewhere"
            )
        for source in self.sources:
            if _reads(source, self.repo, resolved) or (folder and _holds(source, self.repo, resolved)):
                raise InvalidRequestError(
                    f"output {target} would overwrite data of source {source.name!r} "
                    f"({source.path}): write it elsewhere"
                )
        return target


@contextmanager
def atomic_write(target: Path) -> Iterator[Path]:
    """Yield a hidden path beside ``target`` to write; renamed over ``target`` if the block succeeds."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.partial")
    try:
        yield partial
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


@contextmanager
def atomic_folder(target: Path) -> Iterator[Path]:
    """``atomic_write`` for a folder: yield a hidden sibling path (not created) to fill; if the
    block succeeds it takes ``target``'s place (an old folder there is removed after the swap)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:12]
    partial = target.with_name(f".{target.name}.{tag}.partial")
    old = target.with_name(f".{target.name}.{tag}.old")
    try:
        yield partial
        if target.exists():
            os.replace(target, old)
        os.replace(partial, target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def write_text(target: Path, text: str) -> None:
    """``target.write_text(text)``, appearing complete or not at all."""
    with atomic_write(target) as partial:
        partial.write_text(text, encoding="utf-8")


def _resolve(path: Path) -> Path:
    return Path(os.path.realpath(path.absolute()))


def _holds(source: Source, repo: Path, target: Path) -> bool:
    """Whether the folder ``target`` (resolved) holds files ``source`` reads."""
    if source.path is None or is_remote(source.path):  # no files, or not on this machine's
        return False
    base = Path(local_form(source.path))
    base = base if base.is_absolute() else repo / base
    first = next((i for i, part in enumerate(base.parts) if glob.has_magic(part)), len(base.parts))
    fixed = _resolve(Path(*base.parts[:first]))
    return target == fixed or target in fixed.parents or any(
        target in _resolve(f).parents for f in source.files(repo)
    )


def _reads(source: Source, repo: Path, target: Path) -> bool:
    """Whether ``target`` (resolved) is, or would become, a file ``source`` reads."""
    if source.path is None or is_remote(source.path):
        return False
    base = Path(local_form(source.path))  # as ParquetSource.files reads it
    base = base if base.is_absolute() else repo / base
    if any(_resolve(f) == target for f in source.files(repo)):
        return True
    if not glob.has_magic(str(base)):  # a file or a folder (read recursively)
        where = _resolve(base)
        return target == where or where in target.parents
    # A pattern: fnmatch's "*" also crosses "/", which only makes the refusal wider.
    parts = base.parts
    first = next(i for i, part in enumerate(parts) if glob.has_magic(part))
    pattern = _resolve(Path(*parts[:first])).joinpath(*parts[first:])
    return fnmatch.fnmatchcase(str(target), str(pattern))

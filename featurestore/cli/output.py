"""How the CLI writes: tables that never cut data, JSON for scripts, durations as people say them."""

from __future__ import annotations

import dataclasses
import json
from datetime import date, datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import Any, TextIO

import typer
from rich.console import Console
from rich.table import Table

# Without a terminal (a pipe, a log, CI) nothing is wrapped or cut at 80 columns: each line is
# as long as its data, and scripts that want structure use --json.
UNLIMITED_WIDTH = 1_000_000


def make_console(stream: TextIO, stderr: bool = False) -> Console:
    """A console as wide as the terminal, or unlimited when ``stream`` is not one."""
    width = None if stream.isatty() else UNLIMITED_WIDTH
    return Console(stderr=stderr, highlight=False, soft_wrap=stderr, width=width)


def data_table(*headers: str, **options: Any) -> Table:
    """A table whose cells wrap on a narrow terminal, long words folded rather than cut to ``...``."""
    t = Table(*headers, **options)
    for column in t.columns:
        column.overflow = "fold"
    return t


def to_json(data: Any) -> str:
    """``data`` as indented JSON: dataclasses as objects, numpy arrays as lists, times in ISO 8601."""
    return json.dumps(data, indent=2, default=_plain)


def print_json(data: Any) -> None:
    typer.echo(to_json(data))


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # numpy arrays and scalars, pyarrow arrays
        return value.tolist()
    return str(value)


def duration(seconds: float, parts: int = 4) -> str:
    """``30d``, ``1d 12h``, ``2h 30m``, ``45s``: exact, or rounded down to the ``parts`` largest units."""
    sign, rest = ("-" if seconds < 0 else ""), abs(int(seconds))
    units: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size or (unit == "s" and not units):
            units.append(f"{rest // size}{unit}")
            rest %= size
        if units and (len(units) == parts or not rest):
            break
    return sign + " ".join(units)

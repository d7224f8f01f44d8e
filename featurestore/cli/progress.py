"""A rich progress bar that library code reports to through a plain callback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from featurestore.cli.app import err_console


@contextmanager
def progress_bar() -> Iterator[object]:
    """Yields ``report(what, done, total)``; the bar goes to stderr so stdout stays data."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        # Not on a terminal (a pipe, a log, CI) a bar is noise: it left a blank line before errors.
        disable=not err_console.is_terminal,
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def report(what: str, done: int, total: int) -> None:
            key = what.split(":")[0]
            if key not in tasks:
                tasks[key] = bar.add_task(what, total=total)
            bar.update(tasks[key], description=what, completed=done, total=total)

        yield report

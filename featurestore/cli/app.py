"""The Typer app and the one error handler every command shares."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from featurestore.errors import DefinitionError, FeatureStoreError
from featurestore.secrets import mask_text
from featurestore.store import FeatureStore

app = typer.Typer(
    name="featurestore",
    help="Declare features in Python, build point-in-time training sets, serve the latest values.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

RepoOption = Annotated[
    Path,
    typer.Option(
        "--repo",
        "-r",
        help="The feature repo folder (holds featurestore.toml).",
        envvar="FEATURESTORE_REPO",
        show_default="current folder",
    ),
]


def open_store(repo: Path) -> FeatureStore:
    return FeatureStore(repo)


def main() -> None:
    """Console entry point: user errors print one line and exit 1, never a traceback."""
    debug = os.environ.get("FEATURESTORE_DEBUG") == "1"
    try:
        code = app(standalone_mode=False)  # typer returns, not raises, an Exit code here
        if isinstance(code, int) and code:
            sys.exit(code)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.TyperException as e:  # usage errors: typer prints them as click did
        show = getattr(e, "show", None)
        if callable(show):
            show()
        else:
            err_console.print(f"error: {e.format_message()}", markup=False)
        sys.exit(e.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except DefinitionError as e:
        if debug:
            raise
        if len(e.problems) == 1:
            err_console.print(f"error: {e.problems[0]}", markup=False)
        else:
            err_console.print(f"error: {len(e.problems)} problems in definitions:", markup=False)
            for problem in e.problems:
                err_console.print(f"  {problem}", markup=False)
        sys.exit(1)
    except FeatureStoreError as e:
        if debug:
            raise
        err_console.print(f"error: {mask_text(e.message)}", markup=False)
        sys.exit(1)
    except Exception as e:  # a bug: still one line, with a way to see the traceback
        if debug:
            raise
        err_console.print(
            f"internal error: {type(e).__name__}: {mask_text(str(e))} "
            "(set FEATURESTORE_DEBUG=1 for a traceback)",
            markup=False,
        )
        sys.exit(2)

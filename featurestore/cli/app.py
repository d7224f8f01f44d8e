"""The Typer app and the one error handler every command shares."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
import typer.core

from featurestore.cli.output import make_console
from featurestore.errors import DefinitionError, FeatureStoreError
from featurestore.secrets import mask_text

if TYPE_CHECKING:
    from featurestore.serving.client import Client
    from featurestore.store import FeatureStore

# --help lists the commands by the task they serve, in the order a new user meets them.
DEFINE = "Define features"
BUILD = "Build data"
SERVE = "Serve online"
MONITOR = "Monitor and trace"
MAINTAIN = "Maintain the store"
PANELS = (DEFINE, BUILD, SERVE, MONITOR, MAINTAIN)

app = typer.Typer(
    name="featurestore",
    help="Declare features in Python, build point-in-time training sets, serve the latest values.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
console = make_console(sys.stdout)
err_console = make_console(sys.stderr, stderr=True)


def _flag_type(self: typer.core.TyperOption, ctx: typer.Context) -> str | None:
    # Typer labels a flag such as --json with "<bool>", as if it took a value: a flag shows none.
    return None if self.is_flag else _option_type(self, ctx)


_option_type = typer.core.TyperOption.display_type_rich
typer.core.TyperOption.display_type_rich = _flag_type  # type: ignore[method-assign,assignment]


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"featurestore {version('featurestore')}")
        raise typer.Exit()


@app.callback()
def _root(
    _version: Annotated[
        bool,
        typer.Option("--version", "-V", callback=_print_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Declare features in Python, build point-in-time training sets, serve the latest values."""


def order_commands() -> None:
    """Commands in the order of PANELS (stable within one), whatever order their modules load in."""
    rank = {panel: i for i, panel in enumerate(PANELS)}
    app.registered_commands.sort(key=lambda c: rank.get(c.rich_help_panel, len(PANELS)))  # type: ignore[arg-type]

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
    from featurestore.store import FeatureStore  # pyarrow, DuckDB: not for --help

    return FeatureStore(repo)


def server_client(
    server: str, auth_token: str | None, tls: bool, tls_ca: Path | None, timeout: float | None = None
) -> Client:
    """A client of ``--server`` with the command's token and TLS options (the token is kept
    out of every message and log from here on)."""
    from featurestore.serving.client import Client  # grpc: only for commands given --server

    if auth_token:
        from featurestore.secrets import remember

        remember(auth_token)
    if timeout is None:  # the client's own default
        return Client(server, token=auth_token, tls=tls, root_certificates=tls_ca)
    return Client(server, timeout=timeout, token=auth_token, tls=tls, root_certificates=tls_ca)


def main() -> None:
    """Console entry point: user errors print one line and exit 1, never a traceback."""
    debug = os.environ.get("FEATURESTORE_DEBUG") == "1"
    # `plan --exit-code` gives 2 and 3 meanings (changes, breaking changes): any error must be 1.
    failed = 1 if "--exit-code" in sys.argv[1:] else 2
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
        sys.exit(min(e.exit_code, failed))
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
        sys.exit(failed)

"""ui: the web console (catalog, versions, lineage, runs, health, statistics) in a browser."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from featurestore.cli.app import MONITOR, RepoOption, app, err_console, open_store
from featurestore.cli.numbers import PORT_MAX


@app.command("ui", rich_help_panel=MONITOR)
def ui_cmd(
    repo: RepoOption = Path("."),
    port: Annotated[int, typer.Option(min=0, max=PORT_MAX, help="HTTP port (0: any free port).")] = 8888,
    host: Annotated[
        str, typer.Option(help="Address to listen on (0.0.0.0 for every interface: configure tokens first).")
    ] = "127.0.0.1",
    auth_tokens_file: Annotated[
        Path | None,
        typer.Option(help="Ask for a bearer token from this file, one a line (or FEATURESTORE_AUTH_TOKENS)"),
    ] = None,
    tls_cert: Annotated[Path | None, typer.Option(help="Serve TLS with this certificate (PEM).")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="The TLS certificate's private key (PEM).")] = None,
) -> None:
    """Browse the store in a browser: read-only, it never holds the store while runs write it."""
    from featurestore.serving.auth import load_tokens
    from featurestore.serving.tls import load_tls
    from featurestore.ui.server import run

    store = open_store(repo)
    tokens = load_tokens(store.config, auth_tokens_file)
    tls = load_tls(store.config, tls_cert, tls_key)
    run(store.config, host, port, tokens, tls, on_ready=lambda line: err_console.print(line, markup=False))

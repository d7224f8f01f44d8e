"""push: rows of a Parquet or CSV file to a feature view, in process or through a server."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from featurestore.cli.app import SERVE, RepoOption, app, console, open_store, server_client
from featurestore.cli.numbers import server_target
from featurestore.errors import InvalidRequestError


def _read(path: Path, types: dict[str, Any] | None) -> Any:
    """The file's rows as an Arrow table: Parquet as written, CSV read by the view's declared
    types when the local registry knows them (else as pyarrow infers, and the push casts)."""
    import pyarrow as pa

    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            from pyarrow import csv

            options = csv.ConvertOptions(column_types=types or {}, timestamp_parsers=[csv.ISO8601])
            return csv.read_csv(path, convert_options=options)
        if suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            return pq.read_table(path)
    except FileNotFoundError:
        raise InvalidRequestError(f"{path}: no such file") from None
    except (OSError, pa.ArrowException) as e:
        reason = " ".join(str(e).split())
        raise InvalidRequestError(f"{path} cannot be read as {suffix[1:].upper()}: {reason}") from None
    raise InvalidRequestError(f"{path}: push reads .parquet or .csv files, not {suffix or 'no suffix'}")


def _declared_types(repo: Path, view: str, required: bool) -> dict[str, Any] | None:
    from featurestore.errors import FeatureStoreError
    from featurestore.online.push import declared_columns

    try:
        definition = open_store(repo).online_registry().snapshot.get("feature_view", view)
    except FeatureStoreError:
        if required:
            raise
        return None  # --server without a local repo: the server reads the columns
    return {name: dtype.arrow for name, dtype, _ in declared_columns(definition)}


@app.command(rich_help_panel=SERVE)
def push(
    file: Annotated[Path, typer.Argument(help="A Parquet (.parquet) or CSV (.csv) file of rows.")],
    view: Annotated[str, typer.Option("--view", help="The feature view to push the rows to.")],
    server: Annotated[
        str | None,
        typer.Option(callback=server_target, help="host:port of a gRPC server (default: push in process)."),
    ] = None,
    repo: RepoOption = Path("."),
    auth_token: Annotated[
        str | None,
        typer.Option(
            envvar="FEATURESTORE_AUTH_TOKEN", show_envvar=True, show_default=False,
            help="Bearer token with the push scope for --server (prefer the environment variable).",
        ),
    ] = None,
    tls: Annotated[bool, typer.Option("--tls", help="Connect to --server with TLS (system CAs).")] = False,
    tls_ca: Annotated[
        Path | None, typer.Option(help="Connect to --server with TLS, trusting this CA certificate (PEM).")
    ] = None,
) -> None:
    """Push a file's rows to a view: validated, durable offline, written online at once."""
    types = _declared_types(repo, view, required=not server) if file.suffix.lower() == ".csv" else None
    rows = _read(file, types)
    if server:
        with server_client(server, auth_token, tls, tls_ca, timeout=30.0) as client:
            r = client.push(view, rows)
        where = f"through {server}"
        n, written, kept, expired = r.rows, r.written, r.kept_newer, r.expired
    else:
        result = open_store(repo).push(view, rows)
        where = f"offline in {result.file}"
        n, written, kept, expired = result.rows, result.written, result.kept_newer, result.expired
    console.print(
        f"pushed {n:,} row(s) to {view} ({where}): {written:,} written online, "
        f"{kept:,} kept out by newer values, {expired:,} expired",
        markup=False,
        soft_wrap=True,
    )

"""serve and get: the online commands."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from featurestore.cli.app import SERVE, RepoOption, app, console, err_console, open_store, server_client
from featurestore.cli.monitoring_online_cmds import request_log_options
from featurestore.cli.numbers import PORT_MAX, number_in, server_target
from featurestore.cli.offline_cmds import FeaturesOption, ServiceOption, features_or_service
from featurestore.cli.output import data_table, duration
from featurestore.errors import InvalidRequestError


@app.command(rich_help_panel=SERVE)
def serve(
    repo: RepoOption = Path("."),
    grpc_port: Annotated[
        int, typer.Option("--grpc-port", min=0, max=PORT_MAX, help="gRPC port (0: any free port).")
    ] = 6566,
    http_port: Annotated[
        int, typer.Option("--http-port", min=0, max=PORT_MAX, help="HTTP port (0: no HTTP server).")
    ] = 6567,
    host: Annotated[
        str, typer.Option(help="Address to listen on (0.0.0.0 for every interface).")
    ] = "127.0.0.1",
    workers: Annotated[
        int, typer.Option(min=1, help="Server processes sharing the ports (one per core).")
    ] = 1,
    max_connection_age: Annotated[
        float | None,
        typer.Option(
            callback=number_in(0),
            help="Seconds before a gRPC client is asked to reconnect, so the kernel spreads clients "
            "over the workers again (default 30 with --workers > 1, else never; 0: never).",
        ),
    ] = None,
    max_entities: Annotated[int, typer.Option(min=1, help="Most entities one request may ask for.")] = 10_000,
    redis_timeout: Annotated[
        float, typer.Option(callback=number_in(0, lo_open=True), help="Seconds a lookup waits for Redis.")
    ] = 1.0,
    on_demand_timeout: Annotated[
        float,
        typer.Option(
            callback=number_in(0, lo_open=True),
            help="Seconds on-demand functions get per request, at most (less by a sooner deadline).",
        ),
    ] = 1.0,
    auth_tokens_file: Annotated[
        Path | None,
        typer.Option(help="Require a bearer token from this file, one a line (or FEATURESTORE_AUTH_TOKENS)"),
    ] = None,
    tls_cert: Annotated[Path | None, typer.Option(help="Serve TLS with this certificate (PEM).")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="The TLS certificate's private key (PEM).")] = None,
    request_log: Annotated[
        Path | None,
        typer.Option(help="Log a sample of requests as Parquet in this folder (for 'featurestore skew')."),
    ] = None,
    request_log_sample: Annotated[
        float | None, typer.Option(
            help="Share of requests logged, in (0, 1]; 1 logs every request (default 0.01 or the "
            "config's [request_log] mode and sample)."
        )
    ] = None,
    ui: Annotated[
        bool, typer.Option("--ui", help="Also serve the web console at /ui on the HTTP port (same tokens).")
    ] = False,
) -> None:
    """Serve online features over gRPC and HTTP until SIGTERM (graceful shutdown)."""
    from featurestore.serving.auth import load_tokens
    from featurestore.serving.server import ServeOptions
    from featurestore.serving.server import serve as run
    from featurestore.serving.tls import load_tls

    store = open_store(repo)
    if ui and not http_port:
        raise InvalidRequestError("--ui serves the console on the HTTP port: give --http-port (not 0)")
    console = None
    if ui:
        from featurestore.ui.app import MOUNT, mounted

        console = (MOUNT, mounted)
    options = ServeOptions(
        host=host,
        grpc_port=grpc_port,
        http_port=http_port or None,
        workers=workers,
        max_connection_age=max_connection_age,
        max_entities=max_entities,
        redis_timeout=redis_timeout,
        on_demand_timeout=on_demand_timeout,
        tokens=load_tokens(store.config, auth_tokens_file),
        tls=load_tls(store.config, tls_cert, tls_key),
        limits=store.config.serving_limits,
        **request_log_options(store.config, request_log, request_log_sample),
        console=console,
    )
    run(store.config, options, on_ready=lambda line: err_console.print(line, markup=False))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _entity_value(text: str, dtype: str | None = None) -> Any:
    """A join key value typed as its declared dtype; with none known, digits mean an integer."""
    if dtype is None:
        return int(text) if text.lstrip("-").isdigit() else text
    if dtype not in ("Int32", "Int64"):  # a String key such as "007" stays text
        return text
    try:
        return int(text)
    except ValueError:
        raise InvalidRequestError(f"--entity: join key value {text!r} is not an integer ({dtype})") from None


def _join_key_types(repo: Path, wanted: list[str] | str, required: bool) -> dict[str, str] | None:
    """Join key and request field -> dtype name, from the repo's registry; None if it has none
    and not ``required``."""
    from featurestore.errors import FeatureStoreError

    try:
        plan = open_store(repo).online_registry().plan(wanted if isinstance(wanted, str) else tuple(wanted))
    except FeatureStoreError:
        if required:
            raise
        return None  # --server without a local repo: the server checks the types
    types = {k.name: k.dtype.name for k in plan.join_keys}
    if plan.on_demand is not None:
        types.update({name: f.dtype.name for name, (f, _) in plan.on_demand.request_fields.items()})
    return types


def _request_value(text: str, dtype: str | None) -> Any:
    """A --request value typed as its request field's dtype; with none known, as a number if it is one."""
    if text.lower() in ("", "null"):
        return None
    if dtype in ("Int32", "Int64") or (dtype is None and text.lstrip("-").isdigit()):
        return int(text)
    if dtype in ("Float32", "Float64") or dtype is None:
        try:
            return float(text)
        except ValueError:
            if dtype is not None:
                raise InvalidRequestError(f"--request value {text!r} is not a number") from None
            return text
    if dtype == "Bool":
        if text.lower() not in ("true", "false"):
            raise InvalidRequestError(f"--request value {text!r} is not true or false")
        return text.lower() == "true"
    return text


@app.command(rich_help_panel=SERVE)
def get(
    entity: Annotated[
        list[str], typer.Option("--entity", "-e", help="join_key=value (repeat; comma-separate values).")
    ],
    features: FeaturesOption = None,
    service: ServiceOption = None,
    server: Annotated[
        str | None,
        typer.Option(
            callback=server_target, help="host:port of a gRPC server (default: read Redis directly)."
        ),
    ] = None,
    repo: RepoOption = Path("."),
    auth_token: Annotated[
        str | None,
        typer.Option(
            envvar="FEATURESTORE_AUTH_TOKEN", show_envvar=True, show_default=False,
            help="Bearer token for --server (prefer the environment variable: arguments show in ps).",
        ),
    ] = None,
    tls: Annotated[bool, typer.Option("--tls", help="Connect to --server with TLS (system CAs).")] = False,
    tls_ca: Annotated[
        Path | None, typer.Option(help="Connect to --server with TLS, trusting this CA certificate (PEM).")
    ] = None,
    request: Annotated[
        list[str] | None,
        typer.Option(
            "--request", "-r",
            help="field=value, a request field of on-demand features (repeat; comma-separate values).",
        ),
    ] = None,
) -> None:
    """Print the online values of features for some entities, with their status and age."""
    wanted = features_or_service(features, service)
    texts: dict[str, list[str]] = {}
    for item in entity:
        key, sep, values = item.partition("=")
        if not sep or not key or not values:
            raise InvalidRequestError(f"--entity {item!r}: expected join_key=value[,value...]")
        texts.setdefault(key.strip(), []).extend(v.strip() for v in values.split(","))
    fields: dict[str, list[str]] = {}
    for item in request or []:
        key, sep, values = item.partition("=")
        if not sep or not key:
            raise InvalidRequestError(f"--request {item!r}: expected field=value[,value...]")
        fields.setdefault(key.strip(), []).extend(v.strip() for v in values.split(","))
    types = _join_key_types(repo, wanted, required=not server) or {}
    entities = {k: [_entity_value(v, types.get(k)) for v in vs] for k, vs in texts.items()}
    request_data = {k: [_request_value(v, types.get(k)) for v in vs] for k, vs in fields.items()} or None
    if server:
        with server_client(server, auth_token, tls, tls_ca) as client:
            response = client.get_online_features(wanted, entities, request_data=request_data)
        columns, statuses, stamps = response.columns, response.statuses, response.event_timestamps
    else:
        result = open_store(repo).get_online_features(wanted, entities, request_data=request_data)
        columns, statuses = (
            {c: v for c, v in result.to_dict().items() if c not in entities},
            result.statuses,
        )
        stamps = {
            col.name: [None if t is None else _EPOCH + timedelta(microseconds=t) for t in col.event_ts_us]
            for col in result.features
        }
    now = datetime.now(UTC)
    n = len(next(iter(entities.values())))
    for i in range(n):
        title = ", ".join(f"{k}={v[i]}" for k, v in entities.items())
        table = data_table("feature", "value", "status", "age", title=title, title_justify="left")
        for name, column in columns.items():
            stamp = stamps[name][i]
            age = "" if stamp is None else duration((now - stamp).total_seconds(), parts=1)
            table.add_row(name, "" if column[i] is None else str(column[i]), statuses[name][i], age)
        console.print(table)

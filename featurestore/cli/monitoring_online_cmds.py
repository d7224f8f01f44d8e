"""freshness and skew: how old the online values are, and whether serving agrees with training."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from featurestore.cli.app import MONITOR, RepoOption, app, console, err_console, open_store
from featurestore.cli.offline_cmds import FeaturesOption, ServiceOption, split_names
from featurestore.cli.output import data_table, duration
from featurestore.config import Config
from featurestore.errors import InvalidRequestError

JsonOption = Annotated[bool, typer.Option("--json", help="Print the report as JSON.")]


def request_log_options(config: Config, folder: Path | None, sample: float | None) -> dict[str, Any]:
    """ServeOptions' request log fields: the flags, else featurestore.toml / the environment."""
    if sample is not None and not 0 < sample <= 1:
        raise InvalidRequestError(f"--request-log-sample {sample} must be a share in (0, 1], e.g. 0.01")
    return {
        "request_log": folder.resolve() if folder is not None else config.request_log_path,
        "request_log_sample": sample if sample is not None else config.request_log_sample,
        "request_log_limits": config.request_log_limits,
    }


def _age(seconds: float | None) -> str:
    if seconds is None:
        return ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


@app.command(rich_help_panel=MONITOR)
def freshness(
    views: Annotated[
        list[str] | None, typer.Option("--views", help="Online views to check (default: all).")
    ] = None,
    sample: Annotated[int, typer.Option(min=0, help="Keys per view to read from Redis (0: none).")] = 1000,
    fail_on_stale: Annotated[
        bool, typer.Option("--fail-on-stale", help="Exit 1 when a view is stale (for cron and CI).")
    ] = False,
    as_json: JsonOption = False,
    repo: RepoOption = Path("."),
) -> None:
    """Per online view: the age of the newest materialized value and of values in Redis; stale past TTL."""
    from featurestore.monitoring.freshness import offline_only

    store = open_store(repo)
    names = split_names(views) or None
    states = store.freshness(names, sample)
    # Named views are checked to be online; of all, say which were left out and why.
    skipped = [] if names else offline_only(list(store.registry().views.values()))
    note = f"not checked (offline only, online=False): {', '.join(skipped)}" if skipped else ""
    if as_json:
        print(json.dumps([s.to_dict() for s in states], indent=2))
        if note:
            err_console.print(note)  # stdout stays the JSON alone
    else:
        table = data_table(
            "view",
            "TTL",
            "newest value",
            "age",
            "materialized",
            "sampled",
            "p50 age",
            "max age",
            "expired",
            "state",
            title="online freshness",
            title_justify="left",
        )
        for s in states:
            d = s.to_dict()
            ages = d["sample_age_seconds"]
            reason = s.reason()
            table.add_row(
                s.view,
                "none" if d["ttl_seconds"] is None else duration(d["ttl_seconds"]),
                d["newest_event"] or "",
                _age(d["newest_age_seconds"]),
                d["materialized_at"] or "",
                str(s.sampled),
                _age(ages["p50"]),
                _age(ages["max"]),
                str(s.sample_expired),
                f"[red]stale[/red]: {reason}" if reason else "[green]fresh[/green]",
            )
        console.print(table)
        if note:
            console.print(f"[dim]{note}[/dim]")
    if fail_on_stale and any(s.is_stale() for s in states):
        raise typer.Exit(1)


@app.command(rich_help_panel=MONITOR)
def skew(
    log: Annotated[Path, typer.Option("--log", help="The request log folder (serve --request-log).")],
    features: FeaturesOption = None,
    service: ServiceOption = None,
    as_json: JsonOption = False,
    fail_on_skew: Annotated[
        bool, typer.Option("--fail-on-skew", help="Exit 1 when a served value differs from offline.")
    ] = False,
    repo: RepoOption = Path("."),
) -> None:
    """Compare logged served values with the offline store point in time at each request's time."""
    refs = split_names(features)
    if refs and service:
        raise InvalidRequestError("give --features or --service, not both")
    report = open_store(repo).skew(log, service or refs or None)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        table = data_table(
            "feature",
            "compared",
            "mismatches",
            "rate",
            "example (entity @ time: served / offline)",
            title=f"training/serving skew: {report.requests} logged requests in {report.files} files",
            title_justify="left",
        )
        for f in report.features:
            example = ""
            if f.examples:
                e = f.examples[0]
                example = (
                    f"{e['entity']} @ {e['request_time']}: {e['served']} / {e['offline']} ({e['status']})"
                )
            rate = f"{f.mismatch_rate:.2%}"
            table.add_row(
                f.feature,
                str(f.compared),
                str(f.mismatches),
                f"[red]{rate}[/red]" if f.mismatches else rate,
                example,
            )
        console.print(table)
    if fail_on_skew and report.skewed:
        raise typer.Exit(1)

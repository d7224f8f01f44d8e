"""init, plan, apply, list, describe, versions: the registry commands."""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from featurestore.cli.app import DEFINE, RepoOption, app, console, open_store
from featurestore.cli.output import data_table, duration, print_json
from featurestore.errors import ConfigError

if TYPE_CHECKING:
    from featurestore.registry import Plan

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON, for scripts.")]


@app.command(rich_help_panel=DEFINE)
def init(
    directory: Annotated[
        Path | None,
        typer.Argument(
            metavar="DIR", help="Folder to create the feature repo in (default: --repo).", show_default=False
        ),
    ] = None,
    project: Annotated[str | None, typer.Option(help="Project name (default: from the folder).")] = None,
    repo: RepoOption = Path("."),
) -> None:
    """Scaffold a new feature repo with example definitions and data."""
    if directory is not None and repo != Path(".") and directory.resolve() != repo.resolve():
        raise ConfigError(f"init got two folders, {directory} and --repo {repo}: give one")
    directory = repo if directory is None else directory
    name = project or re.sub(r"[^a-z0-9_]", "_", directory.resolve().name.lower()).strip("_")[:60]
    if not name or not name[0].isalpha():
        name = f"fs_{name}" if name else "features"
    if (directory / "featurestore.toml").exists():
        raise ConfigError(f"{directory} already holds a featurestore.toml")
    from featurestore.scaffold import scaffold

    written = scaffold(directory, name)
    console.print(f"Created feature repo [bold]{name}[/] in {directory}:")
    for path in written:
        console.print(f"  {path}")
    console.print(f"Next: featurestore plan --repo {directory}")


@app.command(rich_help_panel=DEFINE)
def plan(
    repo: RepoOption = Path("."),
    exit_code: Annotated[
        bool,
        typer.Option(
            "--exit-code",
            help="Exit 0 with no changes, 2 with changes, 3 with breaking changes (1 is an error), for CI.",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Show what apply would change, field by field; changes nothing."""
    result = open_store(repo).plan()
    if as_json:
        print_json(plan_dict(result))
    else:
        print_plan(result)
    if exit_code and result.exit_code:
        raise typer.Exit(result.exit_code)


@app.command(rich_help_panel=DEFINE)
def apply(
    repo: RepoOption = Path("."),
    allow_breaking: Annotated[
        bool, typer.Option("--allow-breaking", help="Apply even if the plan breaks consumers.")
    ] = False,
) -> None:
    """Record the repo's definitions as a new registry version."""
    result = open_store(repo).apply(allow_breaking=allow_breaking)
    print_plan(result.plan)
    if result.version is None:
        console.print("Registry unchanged.")
    else:
        v = result.version
        console.print(f"Applied registry version {v.version} ({v.content_hash}) by {v.author}.")


@app.command("list", rich_help_panel=DEFINE)
def list_objects(
    repo: RepoOption = Path("."),
    kind: Annotated[
        str | None,
        typer.Option(help="Only this kind: entity, source, feature_view, feature_service."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """List the applied entities, sources, feature views and services."""
    snapshot = open_store(repo).registry()
    chosen = [
        (k, name, obj)
        for k, objs in snapshot.by_kind().items()
        if not kind or kind in (k, k + "s")
        for name, obj in objs.items()
    ]
    if as_json:
        print_json([{"kind": k, "name": name, "spec": obj.to_spec()} for k, name, obj in chosen])
        return
    listing = data_table("kind", "name", "details")
    for k, name, obj in chosen:
        listing.add_row(k, name, _details(k, obj))
    console.print(listing, markup=False)


@app.command(rich_help_panel=DEFINE)
def describe(
    name: Annotated[str, typer.Argument(help="Name of an entity, source, view or service.")],
    repo: RepoOption = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Print an applied object's full spec as JSON."""
    spec = open_store(repo).describe(name)
    if as_json:
        print_json(spec)
    else:
        console.print_json(json.dumps(spec))


@app.command(rich_help_panel=DEFINE)
def versions(repo: RepoOption = Path("."), as_json: JsonOption = False) -> None:
    """List every applied registry version; BREAKING marks those that broke consumers of the one before."""
    store = open_store(repo)
    applied, breaking = store.versions(), store.breaking_versions()
    if as_json:
        print_json([{**asdict(v), "breaking": breaking.get(v.version, [])} for v in applied])
        return
    listing = data_table("version", "hash", "applied at (UTC)", "author", "summary")
    for v in applied:
        summary = v.summary + "".join(f"\nBREAKING: {reason}" for reason in breaking.get(v.version, []))
        applied_at = f"{v.created_at:%Y-%m-%d %H:%M:%S}"
        listing.add_row(str(v.version), v.content_hash, applied_at, v.author, summary)
    console.print(listing, markup=False)


def plan_dict(plan: Plan) -> dict[str, Any]:
    """A plan for ``--json``: its changes field by field, and what breaks consumers."""
    return {**asdict(plan), "summary": plan.summary(), "breaking": plan.breaking, "exit_code": plan.exit_code}


def print_plan(plan: Plan) -> None:
    base = "nothing applied yet" if plan.base_version is None else f"version {plan.base_version}"
    if plan.is_empty:
        console.print(f"No changes against {base}.")
        return
    console.print(f"Plan against {base}: {plan.summary()}")
    marks = {"add": "[green]+[/]", "remove": "[red]-[/]", "change": "[yellow]~[/]"}
    for change in plan.changes:
        console.print(f"  {marks[change.action]} {change.kind.replace('_', ' ')} [bold]{change.name}[/]")
        for f in change.fields:
            console.print(f"      {f.path}: {_show(f.old)} -> {_show(f.new)}", markup=False)
        for reason in change.breaking:
            console.print(f"      [red]BREAKING[/]: {reason}")
    if plan.breaking:
        console.print("[red]This plan breaks consumers; apply needs --allow-breaking.[/]")


def _show(value: object) -> str:
    from featurestore.registry import PRESENT

    if value is None:
        return "(none)"
    if value is PRESENT:
        return PRESENT.value
    return json.dumps(value) if not isinstance(value, str) else value


def _details(kind: str, obj: object) -> str:
    spec = obj.to_spec()  # type: ignore[attr-defined]
    if kind == "entity":
        return "join keys: " + ", ".join(spec["join_keys"])
    if kind == "source":
        return f"{spec['path']} (time: {spec['timestamp_field']})"
    if kind == "feature_view":
        ttl = "none" if spec["ttl_seconds"] is None else duration(spec["ttl_seconds"])
        online = "online" if spec["online"] else "offline only"
        return f"{len(spec['features'])} features of {', '.join(spec['entities'])}; ttl {ttl}; {online}"
    return f"{len(spec['features'])} features"

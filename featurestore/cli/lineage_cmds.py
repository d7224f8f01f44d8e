"""lineage: the graph around a view, feature, service, training set or run, as a tree or JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.tree import Tree

from featurestore.cli.app import MONITOR, RepoOption, app, console, open_store
from featurestore.cli.output import print_json

# Deep enough for file -> run -> view -> feature -> service / training set.
MAX_DEPTH = 6


@app.command("lineage", rich_help_panel=MONITOR)
def lineage_cmd(
    name: Annotated[
        str,
        typer.Argument(help="A view, view:feature, feature service, training set id or run (ingest-N)."),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the graph as JSON (nodes, edges).")] = False,
    repo: RepoOption = Path("."),
) -> None:
    """Print where NAME's data comes from (source files, runs) and what uses it downstream."""
    store = open_store(repo)
    graph = store.lineage(name)
    if as_json:
        print_json(graph)
        return
    nodes = {n["id"]: n for n in graph["nodes"]}
    parents: dict[str, list[tuple[str, str]]] = {}
    children: dict[str, list[tuple[str, str]]] = {}
    for e in graph["edges"]:
        children.setdefault(e["from"], []).append((e["to"], e["relation"]))
        parents.setdefault(e["to"], []).append((e["from"], e["relation"]))
    root = graph["root"]
    tree = Tree(_label(nodes[root], store.config.repo))
    for title, links in (("upstream", parents), ("downstream", children)):
        if root in links:
            branch = tree.add(f"[bold]{title}[/]")
            _grow(branch, root, links, nodes, store.config.repo, {root}, 1, title == "upstream")
    console.print(tree)


def _grow(
    branch: Tree,
    node: str,
    links: dict[str, list[tuple[str, str]]],
    nodes: dict[str, dict[str, Any]],
    repo: Path,
    path: set[str],
    depth: int,
    upstream: bool,
) -> None:
    for other, relation in sorted(links.get(node, [])):
        label, how = _label(nodes[other], repo), f"[dim]{escape(relation)}[/]"
        sub = branch.add(f"{label} {how}" if upstream else f"{how} {label}")
        if other not in path and depth < MAX_DEPTH:
            _grow(sub, other, links, nodes, repo, path | {other}, depth + 1, upstream)


def _label(node: dict[str, Any], repo: Path) -> str:
    kind, name = node["kind"], escape(str(node["name"]))
    if kind == "source_file":
        try:
            name = escape(str(Path(node["name"]).relative_to(repo.resolve())))
        except ValueError:
            pass
        status = node.get("status", "")
        mark = "" if status in ("", "unchanged") else f" [bold red]{escape(status)}[/]"
        rows = f" {node['rows']:,} rows" if node.get("rows") is not None else ""
        return f"file [cyan]{name}[/]{rows}{mark}"
    if kind == "feature_view":
        quiet = node.get("unchanged_runs") or 0
        notes = ["online"] if node.get("online") else []
        notes += [f"{quiet:,} run{'s' * (quiet != 1)} that changed nothing not listed"] if quiet else []
        return f"view [bold]{name}[/]" + (f" ({'; '.join(notes)})" if notes else "")
    if kind == "feature":
        return f"feature [green]{name}[/]" + (f" {node['dtype']}" if node.get("dtype") else "")
    if kind == "feature_service":
        return f"service [magenta]{name}[/]"
    if kind == "training_set":
        stale = node.get("source_changes") or []
        mark = f" [bold red]sources changed: {escape('; '.join(stale))}[/]" if stale else ""
        return f"training set [yellow]{name}[/] (registry v{node.get('registry_version')}){mark}"
    if kind == "push":  # online values with this run id were pushed; their rows are in its files
        return f"[blue]pushed[/] (online values with run id {node.get('run_id')} came from a push)"
    status = escape(str(node.get("status")))
    color = "green" if status == "succeeded" else "red"
    target = " -> redis" if node.get("writes_to") else ""
    quiet = " [dim]changed nothing[/]" if node.get("changed") is False else ""
    version = node.get("registry_version")
    return f"run [blue]{name}[/] [{color}]{status}[/]{quiet} (registry v{version}){target}"

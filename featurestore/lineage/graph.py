"""The lineage graph: source files -> runs -> feature views -> features -> services, training sets.

An on-demand view reads features and request sources (``request_source:name``) and computes its
own features, which services and training sets use like any other.

Derived from what the store already records -- the registry, ``offline_files``, ``run_sources``,
the run tables and training set records -- never written by hand. Nodes are named
``kind:name`` (``file:/abs/path``, ``view:stats``, ``feature:stats:score``, ``service:svc``,
``training_set:ID``, ``run:ingest-3``, ``run:materialize-7``); edges point downstream.
"""

from __future__ import annotations

from collections import deque
from dataclasses import fields
from pathlib import Path
from typing import Any

import duckdb

from featurestore.config import Config
from featurestore.errors import NotFoundError
from featurestore.fingerprints import file_fingerprint
from featurestore.lineage.reproduce import file_changes
from featurestore.offline.offline_store import OfflineStore
from featurestore.offline.plan import view_files
from featurestore.offline.push_log import push_folder, pushed_files
from featurestore.online.codec import PUSHED_RUN_ID
from featurestore.registry import Snapshot
from featurestore.runs import INGEST, MATERIALIZE, run_name
from featurestore.runs.ingestion import IngestionRunState, read_rejected
from featurestore.runs.materialization import MaterializationRunState
from featurestore.runs.sources import RunSourceState
from featurestore.runs.training_set_records import list_records
from featurestore.source_files import SourceFiles, is_remote
from featurestore.storage import connection

# Runs per view shown (newest first) of those that changed something; a run asked for by name
# is always included.
RECENT_RUNS = 5


class _Graph:
    def __init__(self) -> None:
        self.nodes: dict[str, dict[str, Any]] = {}
        self.edges: dict[tuple[str, str], str] = {}

    def node(self, node_id: str, kind: str, name: str, **attrs: Any) -> str:
        self.nodes.setdefault(node_id, {"id": node_id, "kind": kind, "name": name}).update(attrs)
        return node_id

    def edge(self, upstream: str, downstream: str, relation: str) -> None:
        self.edges.setdefault((upstream, downstream), relation)


def lineage(config: Config, snapshot: Snapshot, name: str) -> dict[str, Any]:
    """The graph upstream and downstream of ``name`` (a view, ``view:feature``, service, training set id
    or run ``ingest-N`` / ``materialize-N``): ``{"root", "nodes", "edges"}``."""
    g = _Graph()
    _definitions(g, snapshot)
    # (path, size, mtime) -> fingerprint of the files as ingested: a training set's file that
    # still has them is not read again to hash it (gigabytes at scale), as _disk_status trusts.
    hashes: dict[tuple[str, int, float], str] = {}
    if config.duckdb_path.exists():
        with connection(config.duckdb_path, read_only=True) as con:
            hashes = _files(g, con, config, snapshot)
            _runs(g, con, config.project, name)
    _pushes(g, config, snapshot)
    _rejected(g, config)
    _training_sets(g, config, snapshot, hashes)
    root = _resolve(g, name)
    keep = {root} | _reach(g, root, upstream=True) | _reach(g, root, upstream=False)
    return {
        "root": root,
        "nodes": [g.nodes[n] for n in sorted(keep)],
        "edges": [
            {"from": a, "to": b, "relation": r}
            for (a, b), r in sorted(g.edges.items())
            if a in keep and b in keep
        ],
    }


def _definitions(g: _Graph, snapshot: Snapshot) -> None:
    for view in snapshot.views.values():
        v = g.node(
            f"view:{view.name}",
            "feature_view",
            view.name,
            online=view.online,
            fingerprint=view.fingerprint,
            source=view.source.name,
        )
        for f in view.features:
            g.edge(
                v,
                g.node(
                    f"feature:{view.name}:{f.name}", "feature", f"{view.name}:{f.name}", dtype=f.dtype.name
                ),
                "has",
            )
    for od in snapshot.on_demand_views.values():
        # computed from features of views and request fields: those are upstream of it
        v = g.node(
            f"view:{od.name}",
            "on_demand_view",
            od.name,
            fingerprint=od.fingerprint,
            code_fingerprint=od.code_fingerprint,
            mode=od.mode,
        )
        for ref in od.feature_inputs:
            g.edge(g.node(f"feature:{ref}", "feature", ref), v, "read by")
        for request in od.request_sources:
            fields = [f"{f.name} ({f.dtype.name})" for f in request.schema]
            r = g.node(f"request_source:{request.name}", "request_source", request.name, fields=fields)
            g.edge(r, v, "read by")
        for f in od.features:
            ref = f"{od.name}:{f.name}"
            g.edge(v, g.node(f"feature:{ref}", "feature", ref, dtype=f.dtype.name), "computes")
    for service in snapshot.services.values():
        s = g.node(f"service:{service.name}", "feature_service", service.name)
        for ref in service.feature_refs():
            g.edge(f"feature:{ref}", s, "served by")


def _files(
    g: _Graph, con: duckdb.DuckDBPyConnection, config: Config, snapshot: Snapshot
) -> dict[tuple[str, int, float], str]:
    """Each view's ingested files, with whether the file on disk still matches what was ingested;
    returns their fingerprints by (path, size, mtime)."""
    rows = OfflineStore(con, config.project).ingested_files()
    if rows is None:
        return {}
    ingested: dict[str, set[str]] = {}
    known = {}
    for row in rows:
        known[(row.path, row.size, row.mtime)] = row.fingerprint
        ingested.setdefault(row.view, set()).add(row.path)
        f = g.node(
            f"file:{row.path}",
            "source_file",
            row.path,
            size=row.size,
            fingerprint=row.fingerprint,
            rows=row.rows,
            min_event_ts=row.min_event_ts,
            max_event_ts=row.max_event_ts,
            status=_disk_status(row.path, row.size, row.mtime, row.fingerprint),
        )
        if f"view:{row.view}" in g.nodes:
            g.edge(f, f"view:{row.view}", "ingested into")
    for view in snapshot.views.values():
        if view.source.remote:  # listing it takes Spark; ingestion lists it
            continue
        for p in view.source.files(config.repo):
            path = str(p.resolve())
            if path not in ingested.get(view.name, set()):
                g.edge(
                    g.node(f"file:{path}", "source_file", path, status="not ingested"),
                    f"view:{view.name}",
                    "source of",
                )
    return known


def _pushes(g: _Graph, config: Config, snapshot: Snapshot) -> None:
    """Pushed files, each from the node ``run:pushed``: online values whose header carries the
    run id ``PUSHED_RUN_ID`` were written by a push, and their rows are in these files."""
    for view in snapshot.views.values():
        files = pushed_files(config.store_dir, view.name)
        if not files:
            continue
        pushed = g.node(
            "run:pushed",
            "push",
            "pushed",
            run_id=PUSHED_RUN_ID,
            note="online values a push wrote carry this run id; their rows are in these files",
        )
        g.edge(pushed, f"view:{view.name}", "pushed to")
        for f in files:
            node = f"file:{f.path}"
            if node not in g.nodes:  # ingested ones are already there, with their status
                g.node(node, "source_file", f.path, status="not ingested")
                g.edge(node, f"view:{view.name}", "source of")
            g.nodes[node]["pushed"] = True
            g.edge(pushed, node, "wrote")
        g.nodes[pushed].setdefault("folders", []).append(str(push_folder(config.store_dir, view.name)))


def _disk_status(where: str, size: int, mtime: float, fingerprint: str) -> str:
    if is_remote(where):  # listing it takes Spark: the next ingestion sees any change
        return "remote (not checked)"
    path = Path(where)
    if not path.exists():
        return "removed"
    stat = path.stat()
    if stat.st_size != size:
        return "changed"
    if stat.st_mtime == mtime:
        return "unchanged"
    return "unchanged" if file_fingerprint(path) == fingerprint else "changed"


def _run_node(g: _Graph, kind: str, run_id: int, run: Any, omit: tuple[str, ...], **extra: Any) -> str:
    """A run's node: its record's fields (those not drawn as edges) become the node's."""
    name = run_name(kind, run_id)
    record = {f.name: getattr(run, f.name) for f in fields(run) if f.name not in omit}
    return g.node(f"run:{name}", "run", name, run_type=kind, **record, **extra)


def _runs(g: _Graph, con: duckdb.DuckDBPyConnection, project: str, name: str) -> None:
    unchanged: dict[str, int] = {}  # view -> runs that changed nothing (not shown)
    ingestions = IngestionRunState(con, project)
    for i in ingestions.recent(RECENT_RUNS, name):
        r = _run_node(g, INGEST, i.run_id, i, omit=("run_id", "view"))
        if f"view:{i.view}" in g.nodes:
            g.edge(r, f"view:{i.view}", "wrote")
    for view, n in ingestions.unchanged_per_view().items():
        unchanged[view] = unchanged.get(view, 0) + n
    materializations = MaterializationRunState(con, project)
    for m in materializations.recent(RECENT_RUNS, name):
        r = _run_node(
            g, MATERIALIZE, m.run_id, m, omit=("run_id", "views", "ingestion_runs"), writes_to="redis"
        )
        for ingestion in m.ingestion_runs or []:  # the ingestion it ran first fed it
            fed = f"run:{run_name(INGEST, ingestion)}"
            if fed in g.nodes:
                g.edge(fed, r, "fed")
        for view in m.views:
            if f"view:{view}" in g.nodes:
                g.edge(f"view:{view}", r, "materialized by")
    for view, n in materializations.unchanged_per_view().items():
        unchanged[view] = unchanged.get(view, 0) + n
    for view, n in unchanged.items():
        if f"view:{view}" in g.nodes:
            g.nodes[f"view:{view}"]["unchanged_runs"] = n
    # An ingestion lists every file of its view; the ones it did not touch are kept, not read.
    shown = [n.removeprefix("run:") for n in g.nodes if n.startswith("run:")]
    for source, kept in RunSourceState(con, project).of_runs(shown):
        r = f"run:{run_name(source.kind, source.run_id)}"
        f = g.node(f"file:{source.path}", "source_file", source.path)
        g.nodes[f].setdefault("status", "not ingested now")
        g.edge(f, r, f"{'kept' if kept else 'read'} ({source.fingerprint[:8]})")


def _rejected(g: _Graph, config: Config) -> None:
    """Ingestions validation refused: kept beside the store, which they left untouched."""
    for r in read_rejected(config.store_dir)[-RECENT_RUNS:]:
        run = g.node(
            f"run:{r['run']}",
            "run",
            r["run"],
            run_type=INGEST,
            registry_version=r["registry_version"],
            status=r["status"],
            started_at=r["started_at"],
            finished_at=r["finished_at"],
            validation=r["validation"],
            error=r["error"],
        )
        if f"view:{r['view']}" in g.nodes:
            g.edge(run, f"view:{r['view']}", "rejected")


def _training_sets(
    g: _Graph, config: Config, snapshot: Snapshot, hashes: dict[tuple[str, int, float], str]
) -> None:
    hashes = dict(hashes)  # and each file not known from ingestion hashed once, however many sets read it
    local = SourceFiles()  # remote sources are not listed here (that takes Spark): reproduce checks them
    for record in list_records(config.store_dir):
        manifest = record["manifest"]
        changes = []
        for view, files in sorted(manifest["sources"].items()):
            definition = snapshot.views.get(view)
            if definition is not None and definition.source.remote:
                continue
            on_disk = view_files(definition, config.repo, local, config.store_dir) if definition else []
            changes += file_changes(view, files, on_disk, local, hashes)
        t = g.node(
            f"training_set:{record['id']}",
            "training_set",
            record["id"],
            registry_version=manifest["registry_version"],
            rows=manifest.get("rows"),
            output=record["output"]["path"],
            output_fingerprint=record["output"]["fingerprint"],
            created_at=record["created_at"],
            source_changes=changes,
        )
        for ref in manifest["features"]:
            feature = g.node(f"feature:{ref}", "feature", ref)
            g.edge(feature, t, "used by")
        for files in manifest["sources"].values():
            for f in files:
                g.edge(
                    g.node(f"file:{f['path']}", "source_file", f["path"]),
                    t,
                    f"read ({str(f['fingerprint'])[:8]})",
                )
        logged = manifest.get("feature_log")
        if logged:  # the entity frame was a request log: its files, and the values served from it
            for f in logged["files"]:
                path = f"{logged['path']}/{f['path']}"
                g.edge(g.node(f"log_file:{path}", "feature_log_file", path), t, "logged requests")
            for ref in logged["served"]:
                g.edge(g.node(f"feature:{ref}", "feature", ref), t, "served values used by")


def _resolve(g: _Graph, name: str) -> str:
    if name in g.nodes:
        return name
    if name in ("pushed", f"materialize-{PUSHED_RUN_ID}") and "run:pushed" in g.nodes:
        return "run:pushed"  # the run id an online value written by a push carries
    for candidate in (
        f"view:{name}",
        f"feature:{name}",
        f"service:{name}",
        f"training_set:{name}",
        f"run:{name}",
        f"request_source:{name}",
    ):
        if candidate in g.nodes:
            return candidate
    raise NotFoundError(
        f"nothing named {name!r} in the lineage: give a feature view, view:feature, feature service, "
        "training set id or run (ingest-N, materialize-N, or pushed)"
    )


def _reach(g: _Graph, start: str, upstream: bool) -> set[str]:
    nbrs: dict[str, list[str]] = {}
    for a, b in g.edges:
        if upstream:
            nbrs.setdefault(b, []).append(a)
        else:
            nbrs.setdefault(a, []).append(b)
    seen: set[str] = set()
    todo = deque([start])
    while todo:
        for n in nbrs.get(todo.popleft(), []):
            if n not in seen:
                seen.add(n)
                todo.append(n)
    return seen

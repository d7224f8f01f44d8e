"""Lineage: the graph around a training set, view, service, run or file, and the lists of
training sets, views and services to start from (each a page at a time, as in the catalog)."""

from __future__ import annotations

from typing import Any

from duckdb import DuckDBPyConnection as Connection
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup

from featurestore.lineage.graph import lineage
from featurestore.runs.training_set_records import list_records
from featurestore.ui import lineage_svg
from featurestore.ui.app import Console
from featurestore.ui.catalog import Catalog
from featurestore.ui.paging import Page, only_kind

MAX_NAME = 2000  # characters of a node name (a file's path)
# What a node's page links to besides its graph: the catalog, a run's page.
CATALOG_KINDS = {"feature_view": "feature_view", "feature_service": "feature_service"}
# The start page's lists: ?kind= shows one of them alone; each node name's prefix.
START_KINDS = {"training_set": "training_set:", "feature_view": "view:", "feature_service": "service:"}
START_TITLES = {
    "training_set": "Training sets",
    "feature_view": "Feature views",
    "feature_service": "Services",
}


def register(app: FastAPI, console: Console) -> None:
    reader, config = console.reader, console.config

    def start(request: Request) -> HTMLResponse:
        q = request.query_params
        page = Page.of(q)
        only = only_kind(q, tuple(START_KINDS), "a list of this page")
        read = reader.read("catalog", lambda con: reader.snapshot(con))
        found = Catalog(read.value[1]).search()
        shown = (only,) if only else tuple(START_KINDS)
        every: dict[str, list[Any]] = {k: found[k] for k in shown if k in found}
        if "training_set" in shown:
            every["training_set"] = sorted(
                list_records(config.store_dir), key=lambda r: r["created_at"], reverse=True
            )
        return console.page(
            request,
            "lineage_start.html",
            read=read,
            order=shown,
            only=only,
            titles=START_TITLES,
            prefixes=START_KINDS,
            sections={
                k: (every[k][page.offset : page.offset + page.limit], page.with_total(len(every[k])))
                for k in shown
            },
        )

    @app.get(console.url("/lineage"), response_class=HTMLResponse)
    def graph(request: Request) -> HTMLResponse:
        node = request.query_params.get("node", "").strip()[:MAX_NAME]
        if not node:
            return start(request)

        def read_graph(con: Connection) -> dict[str, Any]:
            return lineage(config, reader.snapshot(con)[1], node)

        done = reader.read(("lineage", node), read_graph)
        root_id, nodes, edges = lineage_svg.fold_features(done.value)
        root = next(n for n in nodes if n["id"] == root_id)
        details = {k: v for k, v in root.items() if k not in ("id", "kind", "name")}
        return console.page(
            request,
            "lineage.html",
            read=done,
            root=root,
            details=details,
            svg=Markup(lineage_svg.render(root_id, nodes, edges, console.prefix)),  # its texts are escaped
            upstream=[(a, label) for a, b, label in edges if b == root_id],
            downstream=[(b, label) for a, b, label in edges if a == root_id],
            names={n["id"]: n["name"] for n in nodes},
            catalog_kind=CATALOG_KINDS.get(root["kind"]),
        )

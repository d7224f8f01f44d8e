"""Runs: ingestions (with the ones validation refused) and materializations, newest first, and
one run's page with its counts, error and validation report. Failed and interrupted runs stand out."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from duckdb import DuckDBPyConnection as Connection
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

from featurestore.errors import NotFoundError
from featurestore.offline.quarantine import failed_report
from featurestore.runs.ingestion import IngestionRunState, read_rejected
from featurestore.runs.materialization import MaterializationRunState
from featurestore.ui.app import Console
from featurestore.ui.paging import Page, only_kind

SECTIONS = ("ingest", "rejected", "materialize")
RUN_NAME = re.compile(r"(ingest|materialize|ingest-rejected)-(\d{1,10})")


def register(app: FastAPI, console: Console) -> None:
    reader, project = console.reader, console.config.project

    @app.get(console.url("/runs"), response_class=HTMLResponse)
    def runs(request: Request) -> HTMLResponse:
        q = request.query_params
        page = Page.of(q)
        only = only_kind(q, SECTIONS, "a kind of run")
        view = q.get("view") or None
        shown = (only,) if only else SECTIONS

        def read(con: Connection) -> tuple[dict[str, tuple[list[Any], int]], dict[int, dict[str, str]]]:
            out: dict[str, tuple[list[Any], int]] = {}
            left_out: dict[int, dict[str, str]] = {}
            if "ingest" in shown:
                out["ingest"] = IngestionRunState(con, project).page(page.limit, page.offset, view)
            if "materialize" in shown and view is None:
                state = MaterializationRunState(con, project)
                out["materialize"] = state.page(page.limit, page.offset)
                left_out = state.failed_views_of([r.run_id for r in out["materialize"][0]])
            return out, left_out

        done = reader.read(("runs", page, only, view), read)
        sections, left_out = dict(done.value[0]), done.value[1]
        if "rejected" in shown:
            refused = [
                r for r in reversed(read_rejected(console.config.store_dir)) if view in (None, r["view"])
            ]
            sections["rejected"] = (refused[page.offset : page.offset + page.limit], len(refused))
        return console.page(
            request,
            "runs.html",
            read=done,
            sections={k: (rows, page.with_total(total)) for k, (rows, total) in sections.items()},
            order=[s for s in SECTIONS if s in sections],
            only=only,
            view=view,
            left_out=left_out,
        )

    @app.get(console.url("/runs/{name}"), response_class=HTMLResponse)
    def run(request: Request, name: str) -> HTMLResponse:
        match = RUN_NAME.fullmatch(name)
        if match is None:
            raise NotFoundError(
                f"no run named {name[:60]!r}: runs are named ingest-N, ingest-rejected-N or materialize-N"
            )
        kind, number = match.group(1), int(match.group(2))
        if kind == "ingest-rejected":
            records = read_rejected(console.config.store_dir)
            if not 1 <= number <= len(records):
                raise NotFoundError(f"no refused ingestion {name!r} (there are {len(records)})")
            record = records[number - 1]
            report = failed_report(
                console.config.store_dir,
                record["view"],
                datetime.fromisoformat(record["started_at"]),
                datetime.fromisoformat(record["finished_at"]),
            )
            return console.page(
                request, "run.html", kind=kind, name=name, run=record, report=report, failed={}
            )

        def read(con: Connection) -> tuple[Any, dict[str, str]]:
            if kind == "ingest":
                return IngestionRunState(con, project).get(number), {}
            state = MaterializationRunState(con, project)
            return state.get(number), state.failed_views(number)

        done = reader.read(("run", name), read)
        found, failed = done.value
        if found is None:
            raise NotFoundError(f"no run named {name!r}")
        return console.page(
            request, "run.html", read=done, kind=kind, name=name, run=found, report=None, failed=failed
        )

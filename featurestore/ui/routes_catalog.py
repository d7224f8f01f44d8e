"""Catalog and registry history: the objects of the latest version (each kind a page at a
time), each object's page, the versions with author and time, and the field-by-field diff
between any two (``plan``'s diff)."""

from __future__ import annotations

from duckdb import DuckDBPyConnection as Connection
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

from featurestore.errors import NotFoundError
from featurestore.registry import Plan, Version, make_plan
from featurestore.registry.versions import RegistryState
from featurestore.ui.app import Console
from featurestore.ui.catalog import KINDS, TITLES, Catalog, check_text
from featurestore.ui.paging import Page, integer, only_kind

MAX_SEARCH = 200  # characters of a search field
MAX_VERSION = 2**31 - 1


def register(app: FastAPI, console: Console) -> None:
    reader = console.reader

    @app.get(console.url("/"), response_class=HTMLResponse)
    def catalog(request: Request) -> HTMLResponse:
        q = request.query_params
        text, tag, owner = (q.get(k, "").strip()[:MAX_SEARCH] for k in ("q", "tag", "owner"))
        page = Page.of(q)
        only = only_kind(q, KINDS, "a kind of object")
        read = reader.read("catalog", lambda con: reader.snapshot(con))
        version, snapshot = read.value
        catalog = Catalog(snapshot)
        found = catalog.search(text, tag, owner)
        shown = (only,) if only else KINDS
        return console.page(
            request,
            "catalog.html",
            read=read,
            version=version,
            order=shown,
            titles=TITLES,
            sections={
                k: (found[k][page.offset : page.offset + page.limit], page.with_total(len(found[k])))
                for k in shown
            },
            only=only,
            q=text,
            tag=tag,
            owner=owner,
            all_tags=catalog.tags(),
            all_owners=catalog.owners(),
        )

    @app.get(console.url("/catalog/{kind}/{name}"), response_class=HTMLResponse)
    def entry(request: Request, kind: str, name: str) -> HTMLResponse:
        if kind not in KINDS:
            raise NotFoundError(f"no kind of object named {kind!r}: give one of {', '.join(KINDS)}")
        page = Page.of(request.query_params)
        read = reader.read("catalog", lambda con: reader.snapshot(con))
        version, snapshot = read.value
        found = Catalog(snapshot).get(kind, name)
        if found is None:
            raise NotFoundError(
                f"no {kind.replace('_', ' ')} named {name!r} in registry version {version.version}"
            )
        # A view's features (or a service's) may be many: shown a page at a time.
        items = found.spec.get("features") or []
        return console.page(
            request,
            "entry.html",
            read=read,
            version=version,
            entry=found,
            features=items[page.offset : page.offset + page.limit],
            page=page.with_total(len(items)),
            titles=TITLES,
            check_text=check_text,
        )

    @app.get(console.url("/versions"), response_class=HTMLResponse)
    def versions(request: Request) -> HTMLResponse:
        page = Page.of(request.query_params)

        def history(con: Connection) -> tuple[int, list[Version], dict[int, list[str]]]:
            every = RegistryState(con, console.config.project).versions()
            by_number = {v.version: v for v in every}
            shown = list(reversed(every))[page.offset : page.offset + page.limit]
            breaking: dict[int, list[str]] = {}
            for v in shown:  # only the shown versions and the ones before them are parsed
                reasons = reader.breaking(con, v.version, by_number)
                if reasons:
                    breaking[v.version] = reasons
            return len(every), shown, breaking

        read = reader.read(("versions", page), history)
        total, shown, breaking = read.value
        return console.page(
            request,
            "versions.html",
            read=read,
            versions=shown,
            breaking=breaking,
            page=page.with_total(total),
        )

    @app.get(console.url("/versions/diff"), response_class=HTMLResponse)
    def diff(request: Request) -> HTMLResponse:
        q = request.query_params
        new = integer(q, "new", None, 1, MAX_VERSION)
        old = integer(q, "old", None, 0, MAX_VERSION)

        def read_diff(con: Connection) -> tuple[Version | None, Version, Plan]:
            n = reader.snapshot(con)[0].version if new is None else new
            o = max(n - 1, 0) if old is None else old
            new_version, new_snapshot = reader.snapshot(con, n)
            old_version, old_snapshot = reader.snapshot(con, o) if o else (None, None)
            return old_version, new_version, make_plan(old_snapshot, new_snapshot, o or None)

        read = reader.read(("diff", old, new), read_diff)
        old_version, new_version, plan = read.value
        return console.page(request, "diff.html", read=read, old=old_version, new=new_version, plan=plan)

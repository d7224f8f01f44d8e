"""Online health (freshness per view against its TTL, values Redis lost), per-feature
statistics with histograms, and the drift report (monitoring/report.py) embedded."""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Any

from duckdb import DuckDBPyConnection as Connection
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup

from featurestore.definitions import FeatureView
from featurestore.errors import InvalidRequestError, NotFoundError, OnlineStoreUnavailable
from featurestore.monitoring.check import check_drift
from featurestore.monitoring.drift import Thresholds
from featurestore.monitoring.freshness import check_presence, offline_only, online_state, sample_redis
from featurestore.monitoring.report import render_html
from featurestore.online import presence
from featurestore.online.state import Watermark
from featurestore.online.store import OnlineStore
from featurestore.runs.ingestion import IngestionRunState
from featurestore.runs.statistics import StatisticsState
from featurestore.runs.training_set_records import list_records
from featurestore.ui import charts
from featurestore.ui.app import Console
from featurestore.ui.paging import integer

SAMPLE = 100  # Redis values and known keys checked per view (the CLI checks 1000; a page stays quick)
# Keys SCAN goes through per view for its sample: finding a view's keys by pattern goes through
# the whole keyspace (~1 s for a view with few keys among 500k at medium); the page shows how
# many values it sampled.
SCAN_BUDGET = 10_000
MAX_SPEC = 100  # characters of a drift side (ingest-N, a training set id, latest)
# The drift report is a whole HTML page with its own inline styles and no script: it is shown
# in a frame, under a policy that allows exactly that.
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'"


# How long the health page reuses a view's sample of known keys (a DuckDB query over the TTL
# window: ~30 ms per view at medium, more on a busy machine) while its watermark stands. Safe
# well within EXPIRED_GRACE: a key with a row in the TTL window when chosen keeps its value in
# Redis at least an hour past that window.
KEEP_KNOWN_KEYS = 300.0


class RecentKnownKeys:
    """``presence.known_keys``, each view's sample reused for KEEP_KNOWN_KEYS seconds."""

    def __init__(self) -> None:
        self._found: dict[tuple[Any, ...], tuple[float, list[str]]] = {}
        self._lock = threading.Lock()

    def __call__(
        self, con: Connection, project: str, view: FeatureView, mark: Watermark, now: datetime, sample: int
    ) -> list[str]:
        key = (project, view.name, view.fingerprint, mark.run_id, mark.watermark, sample)
        at = time.monotonic()
        with self._lock:
            found = self._found.get(key)
        if found is not None and at - found[0] < KEEP_KNOWN_KEYS:
            return found[1]
        keys = presence.known_keys(con, project, view, mark, now, sample)
        with self._lock:
            self._found = {k: v for k, v in self._found.items() if at - v[0] < KEEP_KNOWN_KEYS}
            self._found[key] = (at, keys)
        return keys


def register(app: FastAPI, console: Console) -> None:
    reader, config = console.reader, console.config
    known_keys = RecentKnownKeys()

    @app.get(console.url("/health"), response_class=HTMLResponse)
    def health(request: Request) -> HTMLResponse:
        def read(con: Connection) -> tuple[list[Any], list[str], str | None]:
            snapshot = reader.snapshot(con)[1]
            views = list(snapshot.views.values())
            states = online_state(con, config.project, views)
            problem = None
            if states:
                try:
                    with OnlineStore.connect(config.redis_url, config.project) as store:
                        check_presence(con, store, views, states, SAMPLE, known_keys)
                        sample_redis(store, states, SAMPLE, SCAN_BUDGET)
                except OnlineStoreUnavailable as e:
                    problem = e.message
            return states, offline_only(views), problem

        done = reader.read("health", read)
        states, offline, problem = done.value
        metrics = console.lookups.read() if console.lookups is not None else None
        return console.page(
            request,
            "health.html",
            read=done,
            states=states,
            offline=offline,
            problem=problem,
            metrics=metrics,
            sample=SAMPLE,
            scan_budget=SCAN_BUDGET,
        )

    @app.get(console.url("/statistics"), response_class=HTMLResponse)
    def statistics_index(request: Request) -> HTMLResponse:
        def read(con: Connection) -> list[tuple[str, int | None]]:
            stats = StatisticsState(con, config.project)
            return [(name, stats.latest_run(name)) for name in sorted(reader.snapshot(con)[1].views)]

        done = reader.read("statistics", read)
        sets = sorted(list_records(config.store_dir), key=lambda r: r["created_at"], reverse=True)
        return console.page(request, "statistics_index.html", read=done, views=done.value, training_sets=sets)

    @app.get(console.url("/statistics/{view}"), response_class=HTMLResponse)
    def statistics(request: Request, view: str) -> HTMLResponse:
        wanted = integer(request.query_params, "run", None, 1, 2**31 - 1)

        def read(con: Connection) -> tuple[int | None, dict[str, Any], list[Any]]:
            if view not in reader.snapshot(con)[1].views:
                raise NotFoundError(f"no feature view named {view!r}")
            state = StatisticsState(con, config.project)
            run = state.latest_run(view) if wanted is None else wanted
            found = state.read(run) if run is not None else {}
            if wanted is not None and not found:
                raise NotFoundError(f"ingestion run ingest-{wanted} recorded no statistics of {view!r}")
            runs = [
                r
                for r in IngestionRunState(con, config.project).page(20, 0, view)[0]
                if r.status == "succeeded"
            ]
            return run, found, runs

        done = reader.read(("statistics", view, wanted), read)
        run, found, runs = done.value
        rows = []
        for stats in found.values():
            if stats.quantiles:
                chart = charts.numeric_chart(stats.quantiles)
            elif stats.top:
                chart = charts.top_values_chart(stats.top, stats.values)
            else:
                chart = ""
            rows.append((stats, Markup(chart)))  # the chart's texts are escaped
        sets = [
            r["id"]
            for r in sorted(list_records(config.store_dir), key=lambda r: r["created_at"], reverse=True)
        ]
        return console.page(
            request,
            "statistics.html",
            read=done,
            view=view,
            run=run,
            rows=rows,
            runs=runs,
            training_sets=sets,
        )

    def drift_args(request: Request) -> tuple[str, str, str]:
        q = request.query_params
        target, baseline, current = (
            q.get(k, "").strip()[:MAX_SPEC] for k in ("target", "baseline", "current")
        )
        if not target or not baseline:
            raise InvalidRequestError(
                "give target (a view or service) and baseline (ingest-N, a training set id)"
            )
        return target, baseline, current or "latest"

    @app.get(console.url("/drift"), response_class=HTMLResponse)
    def drift(request: Request) -> HTMLResponse:
        target, baseline, current = drift_args(request)
        report = reader.read(
            ("drift", target, baseline, current), lambda con: _drift(con, target, baseline, current)
        )
        return console.page(
            request,
            "drift.html",
            read=report,
            report=report.value,
            query=str(request.url.query),
        )

    @app.get(console.url("/drift/report"), response_class=HTMLResponse)
    def drift_report(request: Request) -> HTMLResponse:
        target, baseline, current = drift_args(request)
        report = reader.read(
            ("drift", target, baseline, current), lambda con: _drift(con, target, baseline, current)
        )
        return HTMLResponse(render_html(report.value), headers={"Content-Security-Policy": REPORT_CSP})

    def _drift(con: Connection, target: str, baseline: str, current: str) -> Any:
        thresholds = Thresholds(config.psi_threshold, config.p_value_threshold)
        return check_drift(config, reader.snapshot(con)[1], target, baseline, current, thresholds)

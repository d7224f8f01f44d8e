"""Server metrics in the Prometheus text format, served at ``/metrics`` on the HTTP port.

What a request costs here is a few increments of prometheus-client values, done after the
answer is built: a latency observation per request (gRPC interceptor, ASGI middleware), a
Redis round-trip observation, and per view one counter increment per status seen plus one
sampled age. Label children are cached, so no label lookup happens per request.

With ``serve --workers N`` the workers are separate processes: ``serve`` gives them a
private folder in ``PROMETHEUS_MULTIPROC_DIR`` (see ``multiprocess_dir``) where
prometheus-client keeps each process's values in memory-mapped files, and whichever worker
answers a scrape sums them all. Materialization runs in other processes, so its figures are
read at scrape time from the run state in the DuckDB file (``StateCollector``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

import grpc
from fastapi import FastAPI
from fastapi.responses import Response
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from featurestore.config import Config
from featurestore.errors import FeatureStoreError, OnlineStoreUnavailable
from featurestore.online.lookup import CORRUPT, EXPIRED, NOT_FOUND, LookupPlan, OnlineResult
from featurestore.online.registry_holder import RegistryHolder
from featurestore.serving.request_log import RequestLog
from featurestore.serving.v1 import serving_pb2

if TYPE_CHECKING:
    from featurestore.monitoring.freshness import ViewFreshness

log = logging.getLogger("featurestore.serving")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
REDIS_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
KNOWN_GRPC_METHODS = frozenset(
    f"/{service.full_name}/{m.name}"
    for service in (
        serving_pb2.DESCRIPTOR.services_by_name["FeatureServing"],
        health_pb2.DESCRIPTOR.services_by_name["Health"],
        reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"],
    )
    for m in service.methods
)
# A caller may send any method name (uvicorn takes any token): only these become labels.
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"})
# Per view of a plan: its first output column, then its children (found, not found, expired, age, corrupt)
_ViewMetrics = tuple[int, Any, Any, Any, Any, Any]
_HOUR, _DAY = 3600.0, 86400.0
AGE_BUCKETS = (
    60.0,
    300.0,
    900.0,
    _HOUR,
    3 * _HOUR,
    6 * _HOUR,
    12 * _HOUR,
    _DAY,
    2 * _DAY,
    7 * _DAY,
    30 * _DAY,
)


@contextlib.contextmanager
def multiprocess_dir() -> Iterator[Path]:
    """A private metrics folder for the workers of one ``serve``, removed when it ends.

    prometheus-client picks its mode when first imported, from the environment: workers are
    spawned, so they import it afresh and inherit the variable set here.
    """
    path = Path(tempfile.mkdtemp(prefix=f"featurestore-metrics-{os.getpid()}-"))
    previous = os.environ.get(MULTIPROC_ENV)
    os.environ[MULTIPROC_ENV] = str(path)
    try:
        yield path
    finally:
        if previous is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = previous
        shutil.rmtree(path, ignore_errors=True)


def _multiprocess() -> bool:
    from prometheus_client import values

    return values.ValueClass is not values.MutexValue


class ServingMetrics:
    """The metrics of one server process, and the hooks the transports call."""

    def __init__(self, holder: RegistryHolder, config: Config, request_log: RequestLog | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.multiprocess = _multiprocess()
        self.request_log = request_log
        r = self.registry
        self.requests = Histogram(
            "featurestore_request_duration_seconds",
            "Requests by transport, method (gRPC method or HTTP route) and status; _count counts them.",
            ["transport", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.redis = Histogram(
            "featurestore_redis_duration_seconds",
            "Round trip of the one MGET an online lookup makes.",
            buckets=REDIS_BUCKETS,
            registry=r,
        )
        self.lookups = Counter(
            "featurestore_online_lookups",
            "Entities looked up per view by outcome: FOUND (within TTL), NOT_FOUND, EXPIRED or CORRUPT "
            "(a stored value that cannot be decoded).",
            ["view", "status"],
            registry=r,
        )
        self.served_age = Histogram(
            "featurestore_served_value_age_seconds",
            "Age (now - event time) of served values: one sampled entity per view per request.",
            ["view"],
            buckets=AGE_BUCKETS,
            registry=r,
        )
        self.log_dropped = Counter(
            "featurestore_request_log_dropped",
            "Requests not logged (sampled, or every one in mode complete) because the request "
            "log's queue was full (its queue_requests or queue_values).",
            registry=r,
        )
        self.log_lost = Counter(
            "featurestore_request_log_rows_lost",
            "Request log rows whose file could not be written (a full disk, a folder gone).",
            registry=r,
        )
        self.log_deleted = Counter(
            "featurestore_request_log_files_deleted",
            "Request log files deleted, oldest first, to keep the folder under its max_bytes.",
            registry=r,
        )
        self.log_rows = Counter(
            "featurestore_request_log_rows", "Rows written to the request log's Parquet files.", registry=r
        )
        self.pushes = Counter(
            "featurestore_pushes",
            "Push requests by transport and outcome: ok; invalid (refused, nothing written); "
            "not_found (unknown view); denied (not from loopback on a server without tokens); "
            "online_unavailable (durable offline, not written online); offline_unavailable "
            "(nothing written); error.",
            ["transport", "outcome"],
            registry=r,
        )
        self.pushed_rows = Counter(
            "featurestore_pushed_rows",
            "Rows of pushes durable offline, per view, by what happened online: written, "
            "kept_newer (Redis held a newer value), expired (past the TTL), not_online (the view "
            "is offline only, or Redis was unavailable).",
            ["view", "result"],
            registry=r,
        )
        if request_log is not None:
            request_log.on_dropped = self.log_dropped.inc
            request_log.on_written = self.log_rows.inc
            request_log.on_deleted = self.log_deleted.inc
            request_log.on_lost = self.log_lost.inc
        self.state = StateCollector(holder, config)
        if not self.multiprocess:
            r.register(self.state)
        self._children: dict[tuple[str, str, str], Any] = {}
        self._routes: set[str] = set()
        self._views: MutableMapping[LookupPlan, list[_ViewMetrics]] = WeakKeyDictionary()
        self._tick = 0

    # -- hooks ---------------------------------------------------------------------------

    def request(self, transport: str, method: str, status: str, seconds: float) -> None:
        key = (transport, method, status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.requests.labels(transport, method, status)
        child.observe(seconds)

    def pushed(self, transport: str, outcome: str, rows: Mapping[str, int] = {}, view: str = "") -> None:  # noqa: B006
        """A push's outcome (one of PUSH_OUTCOMES) and, once durable, its rows by online result
        (``view``: a registered view, the only names that become labels)."""
        self.pushes.labels(transport, outcome).inc()
        for result, n in rows.items():
            if n:
                self.pushed_rows.labels(view, result).inc(n)

    def served(
        self,
        transport: str,
        plan: LookupPlan,
        entities: dict[str, list[Any]],
        result: OnlineResult,
        redis_seconds: float,
        logged: bool | None = None,
        raw: Sequence[bytes | None] | None = None,
        request_id: str | None = None,
        request_data: dict[str, list[Any]] | None = None,
        computed: OnlineResult | None = None,
    ) -> None:
        """After a lookup: Redis round trip, outcomes per view, a sampled age, the request log
        (``logged``: whether the request was sampled for it, None to decide here; ``raw``: the
        Redis values, for the log's run ids; ``request_id``: the caller's, if it sent one;
        ``request_data``: the request's data columns, one value per entity, logged with each;
        ``computed``: the answer with its on-demand features, logged as served)."""
        self.redis.observe(redis_seconds)
        views = self._plan_views(plan)
        columns = result.features
        now = time.time()
        self._tick += 1
        for j, found, not_found, expired, age, corrupt in views:
            col = columns[j]
            statuses = col.statuses
            n = len(statuses)
            missing = statuses.count(NOT_FOUND)
            old = statuses.count(EXPIRED)
            broken = statuses.count(CORRUPT)
            if missing:
                not_found.inc(missing)
            if old:
                expired.inc(old)
            if broken:
                corrupt.inc(broken)
            if n - missing - old - broken:
                found.inc(n - missing - old - broken)
                # One served entity per request, rotating: the cost does not grow with the batch.
                # An aggregation over no events is served (count 0) but has no age.
                stamps = col.event_ts_us
                i = self._tick % n
                for _ in range(n):
                    if statuses[i] not in (NOT_FOUND, EXPIRED, CORRUPT) and stamps[i] is not None:
                        age.observe(max(0.0, now - stamps[i] / 1e6))  # type: ignore[operator]
                        break
                    i = (i + 1) % n
        if self.request_log is not None and logged is not False:
            self.request_log.offer(
                transport, now, entities, result, sampled=logged, plan=plan, raw=raw,
                request_id=request_id, request_data=request_data, computed=computed,
            )

    def sample_request(self) -> bool:
        """Whether this request goes to the request log (decided before the answer is built)."""
        return self.request_log is not None and self.request_log.sampled()

    def served_present(self, plan: LookupPlan, n: int, events: list[list[int]], redis_seconds: float) -> None:
        """``served`` for a lookup where every value was present (the gRPC fast path)."""
        self.redis.observe(redis_seconds)
        views = self._plan_views(plan)
        now = time.time()
        self._tick += 1
        for vi, (_, found, _, _, age, _) in enumerate(views):
            found.inc(n)
            age.observe(max(0.0, now - events[vi][self._tick % n] / 1e6))

    def log_lookup(
        self,
        transport: str,
        now_us: int,
        plan: LookupPlan,
        n: int,
        entities: dict[str, list[Any]],
        raw: Any,
        request_id: str | None = None,
        request_data: dict[str, list[Any]] | None = None,
    ) -> None:
        """A sampled request answered by the fast path, to the request log (decoded there)."""
        if self.request_log is not None:
            self.request_log.offer_lookup(transport, now_us, plan, n, entities, raw, request_id, request_data)

    def _plan_views(self, plan: LookupPlan) -> list[_ViewMetrics]:
        """Per view of the plan: its first output column and its metric children (cached)."""
        views = self._views.get(plan)
        if views is None:
            views = self._views[plan] = self._label_views(plan)
        return views

    def _label_views(self, plan: LookupPlan) -> list[_ViewMetrics]:
        first: dict[int, int] = {}
        for j, (vi, _, _) in enumerate(plan.outputs):
            first.setdefault(vi, j)
        out = []
        for vi, j in sorted(first.items()):
            name = plan.views[vi].name
            out.append(
                (
                    j,
                    self.lookups.labels(name, "FOUND"),
                    self.lookups.labels(name, "NOT_FOUND"),
                    self.lookups.labels(name, "EXPIRED"),
                    self.served_age.labels(name),
                    self.lookups.labels(name, "CORRUPT"),
                )
            )
        return out

    # -- exposition ----------------------------------------------------------------------

    def exposition(self) -> bytes:
        """The text a scrape gets: this process's metrics, or every worker's summed."""
        if not self.multiprocess:
            return generate_latest(self.registry)
        registry = CollectorRegistry(auto_describe=True)
        MultiProcessCollector(registry)
        registry.register(self.state)
        return generate_latest(registry)

    def grpc_interceptor(self) -> grpc.aio.ServerInterceptor:
        return _GrpcMetrics(self)

    def mount(self, app: FastAPI) -> None:
        """Serve ``/metrics`` on the app (``instrument`` times what it answers)."""

        def scrape() -> Response:  # a plain def: FastAPI runs it in a thread, off the event loop
            return Response(self.exposition(), media_type=CONTENT_TYPE_LATEST)

        app.add_api_route("/metrics", scrape, methods=["GET"], include_in_schema=False)
        self._routes = {path for r in app.routes if isinstance(path := getattr(r, "path", None), str)}

    def instrument(self, app: Any) -> Any:
        """``app`` (the mounted app, wrapped in whatever answers before it, such as the bearer
        check) timed: wrapping the outside counts every answer, 401s included."""
        return _HttpMetrics(app, self, self._routes)

    def close(self) -> None:
        if self.request_log is not None:
            self.request_log.close()


class _GrpcMetrics(grpc.aio.ServerInterceptor):
    """Times every unary RPC and records its status code; wrapped handlers are built once per method."""

    def __init__(self, metrics: ServingMetrics) -> None:
        self.metrics = metrics
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        handler = await continuation(handler_call_details)
        refusal = getattr(handler, "refusal", None)  # refused by the bearer check (auth.py): counted too
        if refusal is not None:  # no or a wrong token (UNAUTHENTICATED), or not the method's scope
            return self._denied(method, handler, refusal)
        if handler is None or handler.unary_unary is None:  # streams (reflection, Watch): not timed
            return handler
        wrapped = self._wrapped.get(method)
        if wrapped is None or wrapped._inner is not handler.unary_unary:
            wrapped = self._wrapped[method] = self._wrap(method, handler)
        return wrapped

    def _denied(self, method: str, handler: grpc.RpcMethodHandler, code: str) -> grpc.RpcMethodHandler:
        # A caller without a token may name any method: only ours become labels.
        label = method if method in KNOWN_GRPC_METHODS else "other"
        key = f"{code} {label}"
        wrapped = self._wrapped.get(key)
        if wrapped is None:
            inner, record = handler.stream_stream, self.metrics.request

            async def timed(requests: Any, context: grpc.aio.ServicerContext) -> None:
                started = time.perf_counter()
                try:
                    await inner(requests, context)
                finally:
                    record("grpc", label, code, time.perf_counter() - started)

            wrapped = self._wrapped[key] = grpc.stream_stream_rpc_method_handler(timed)
        return wrapped

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        inner = handler.unary_unary
        record = self.metrics.request

        async def timed(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            status = "OK"
            try:
                return await inner(request, context)
            except BaseException:
                code = context.code()
                status = code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
                raise
            finally:
                record("grpc", method, status, time.perf_counter() - started)

        out = grpc.unary_unary_rpc_method_handler(
            timed,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
        out._inner = inner
        return out


class _HttpMetrics:
    """ASGI middleware: times each HTTP request and records its route and status code."""

    def __init__(self, app: Any, metrics: ServingMetrics, routes: set[str]) -> None:
        self.app = app
        self.metrics = metrics
        # Only declared routes and standard methods become labels: a scan of random paths or
        # made-up methods adds none (statuses come from our own answers, views from the registry).
        self.routes = routes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            method = scope["method"] if scope["method"] in HTTP_METHODS else "other"
            route = f"{method} {scope['path'] if scope['path'] in self.routes else 'other'}"
            self.metrics.request("http", route, str(status), time.perf_counter() - started)


class StateCollector(Collector):
    """Materialization runs and online freshness per view, read from the DuckDB file on scrape.

    Read at most every ``min_interval`` seconds; when the file is locked by a writer the
    last figures are served again (a scrape never waits on an ingestion).
    """

    def __init__(self, holder: RegistryHolder, config: Config, min_interval: float = 5.0) -> None:
        self.holder = holder
        self.config = config
        self.min_interval = min_interval
        self._lock = threading.Lock()
        self._read_at = -float("inf")
        self._metrics: list[Metric] = []

    def describe(self) -> list[Metric]:
        return []  # collected at scrape time only: registering must not read the file

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            if time.monotonic() - self._read_at >= self.min_interval:
                try:
                    self._metrics = self._read()
                    self._read_at = time.monotonic()
                except FeatureStoreError as e:
                    log.warning("metrics: materialization state not read: %s", e.message)
                except Exception:  # noqa: BLE001 - a scrape must not fail over the state
                    log.exception("metrics: materialization state not read")
            metrics = self._metrics
        yield from metrics

    def _read(self) -> list[Metric]:
        from featurestore.monitoring.freshness import online_state, recent_runs
        from featurestore.online.state import OnlineState
        from featurestore.storage import connection

        snapshot = self.holder.current.snapshot
        views = [v for v in snapshot.views.values() if v.online]
        with connection(self.config.duckdb_path, read_only=True, lock_timeout=0.2) as con:
            states = online_state(con, self.config.project, views)
            runs, totals = recent_runs(con, self.config.project)
            epoch = OnlineState(con, self.config.project).epoch()
        self._mark_lost(states, epoch)
        runs_total = CounterMetricFamily(
            "featurestore_materialization_runs", "Materialization runs by status.", labels=["status"]
        )
        for status, (count, _, _, _) in sorted(totals.items()):
            runs_total.add_metric([status], count)
        rows = CounterMetricFamily(
            "featurestore_materialization_rows_read", "Offline rows read by finished materialization runs."
        )
        written = CounterMetricFamily(
            "featurestore_materialization_entities_written", "Entities written to Redis by finished runs."
        )
        seconds = CounterMetricFamily(
            "featurestore_materialization_duration_seconds", "Wall time of finished materialization runs."
        )
        rows.add_metric([], sum(t[1] for t in totals.values()))
        written.add_metric([], sum(t[2] for t in totals.values()))
        seconds.add_metric([], sum(t[3] for t in totals.values()))
        recent = {
            name: GaugeMetricFamily(
                f"featurestore_materialization_run_{name}", text, labels=["run", "status"]
            )
            for name, text in (
                ("rows_read", "Offline rows one recent run read."),
                ("entities_written", "Entities one recent run wrote to Redis."),
                ("duration_seconds", "Wall time of one recent run (so far, while running)."),
                ("started_timestamp_seconds", "When one recent run started."),
            )
        }
        now = datetime.now(UTC)
        for run in runs:
            labels = [f"materialize-{run.run_id}", run.status]
            recent["rows_read"].add_metric(labels, run.rows_read or 0)
            recent["entities_written"].add_metric(labels, run.entities_written or 0)
            recent["duration_seconds"].add_metric(
                labels, ((run.finished_at or now) - run.started_at).total_seconds()
            )
            recent["started_timestamp_seconds"].add_metric(labels, run.started_at.timestamp())
        per_view = {
            name: GaugeMetricFamily(f"featurestore_online_{name}", text, labels=["view"])
            for name, text in (
                ("watermark_timestamp_seconds", "Event times before this are materialized."),
                ("newest_event_timestamp_seconds", "Event time of the newest materialized value."),
                ("materialized_timestamp_seconds", "When the run that set the watermark finished."),
                ("ttl_seconds", "The view's TTL (absent: values never expire)."),
                ("stale", "1 when the newest value is older than the TTL, none is, or Redis lost them."),
                ("lost", "1 when Redis no longer holds the view's values (marker gone: flushed, restarted)."),
            )
        }
        for s in states:
            if s.watermark is not None:
                per_view["watermark_timestamp_seconds"].add_metric([s.view], s.watermark.timestamp())
            if s.newest_event is not None:
                per_view["newest_event_timestamp_seconds"].add_metric([s.view], s.newest_event.timestamp())
            if s.materialized_at is not None:
                per_view["materialized_timestamp_seconds"].add_metric([s.view], s.materialized_at.timestamp())
            if s.ttl is not None:
                per_view["ttl_seconds"].add_metric([s.view], s.ttl.total_seconds())
            per_view["stale"].add_metric([s.view], 1.0 if s.is_stale(now) else 0.0)
            per_view["lost"].add_metric([s.view], 1.0 if s.lost else 0.0)
        return [runs_total, rows, written, seconds, *recent.values(), *per_view.values()]

    def _mark_lost(self, states: list[ViewFreshness], epoch: str | None) -> None:
        """Markers of the materialized views in Redis (one HMGET): a missing one means lost.

        Redis down is not "lost" (the lookup metrics show an outage): the views are left as read.
        """
        from featurestore.online.store import OnlineStore

        marked = [s for s in states if s.watermark is not None]
        if not marked:
            return
        config = self.config
        store = OnlineStore.connect(config.redis_url, config.project, check=False, socket_timeout=0.5)
        try:
            lost = store.unmarked([s.view for s in marked], epoch)
        except OnlineStoreUnavailable as e:
            log.warning("metrics: online markers not read: %s", e.message)
            return
        finally:
            store.close()
        for s in marked:
            s.lost = lost.get(s.view)

"""The same lookups over HTTP: FastAPI, JSON in and out, OpenAPI docs at /docs."""

from __future__ import annotations

import base64
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr
from starlette.exceptions import HTTPException

from featurestore.errors import FeatureStoreError, InvalidRowsError, PermissionDeniedError
from featurestore.online.lookup import LookupPlan, OnlineResult, Status
from featurestore.online.on_demand import DEFAULT_ON_DEMAND_TIMEOUT
from featurestore.online.registry_holder import RegistryHolder
from featurestore.online.request import lookup_async
from featurestore.online.store import AsyncOnlineStore
from featurestore.serving import push_input
from featurestore.serving.failures import Failures
from featurestore.serving.limits import (
    MAX_BODY_BYTES,
    TAKEN,
    BodyLimit,
    ByteBudget,
    answer_bytes,
    check_answer,
    shorten,
)
from featurestore.serving.pushes import PushService, result_fields
from featurestore.serving.request_log import request_id_from

if TYPE_CHECKING:
    from featurestore.serving.metrics import ServingMetrics


class OnlineFeaturesRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    features: list[StrictStr] = Field(default_factory=list, description='Feature references "view:feature".')
    feature_service: StrictStr | None = Field(
        None, description="A feature service name (instead of features)."
    )
    entities: dict[StrictStr, list[StrictInt | StrictStr]] = Field(
        description='Join key -> one value per entity, e.g. {"driver_id": [1001, 1002]}.'
    )
    full_feature_names: bool = Field(False, description="Name columns view__feature, as training sets do.")
    include_run_ids: bool = Field(False, description="Return the materialization run behind each value.")
    request_data: dict[StrictStr, list[Any]] = Field(
        default_factory=dict,
        description="Request field -> one value per entity, for on-demand features, e.g. "
        '{"trip_km": [3.5, 12.0]}; read by the declared types as push columns are (times as ISO '
        '8601 or microseconds, bytes as base64, "NaN"/"Infinity"); null for null.',
    )


class FeatureColumnOut(BaseModel):
    name: str
    reference: str
    type: str
    values: list[Any]
    statuses: list[str]
    event_timestamps: list[str | None]


class OnlineFeaturesResponse(BaseModel):
    registry_version: int
    features: list[FeatureColumnOut]
    runs: dict[str, list[int | None]] | None = None


MAX_ROW_ERRORS = 100  # failing cells listed in a refused push's error body


class PushRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    view: StrictStr = Field(description="The feature view to push rows to.")
    columns: dict[StrictStr, list[Any]] = Field(
        description="Column -> one value per row: the view's join keys, its source's event time "
        "(ISO 8601 or microseconds since the epoch), optionally its created time, every feature. "
        'Bytes as base64, non-finite floats as "NaN", "Infinity", "-Infinity"; null for null.'
    )


class PushResponse(BaseModel):
    view: str
    rows: int = Field(description="Rows pushed: all durable offline.")
    written: int = Field(description="Rows written online.")
    kept_newer: int = Field(description="Rows not written online: Redis held a newer value.")
    expired: int = Field(description="Rows not written online: older than the view's TTL.")
    registry_version: int


class RowErrorOut(BaseModel):
    row: int
    column: str | None
    check: str


class ErrorOut(BaseModel):
    code: str = Field(description="The gRPC status name: INVALID_ARGUMENT, UNAVAILABLE, ...")
    message: str
    rows: list[RowErrorOut] | None = Field(
        None, description=f"A refused push: its failing cells (the first {MAX_ROW_ERRORS})."
    )


class ErrorResponse(BaseModel):
    error: ErrorOut


# Every error answers ErrorResponse; the spec says so, so clients (and schemathesis) can rely on it.
_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Unknown features, services or join keys; bad values"},
    413: {"model": ErrorResponse, "description": "Request body or answer over the size limit"},
    422: {
        "model": ErrorResponse,
        "description": "Body does not match the request schema; an on-demand function failed",
    },
    429: {"model": ErrorResponse, "description": "The server is at its bytes-in-flight budget: retry"},
    503: {"model": ErrorResponse, "description": "The online store does not answer"},
    504: {"model": ErrorResponse, "description": "An on-demand function did not finish in time"},
}
_PUSH_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    **_ERROR_RESPONSES,
    400: {"model": ErrorResponse, "description": "Invalid rows (nothing written), bad columns or types"},
    403: {"model": ErrorResponse, "description": "The token may not push (or, without tokens, not loopback)"},
    404: {"model": ErrorResponse, "description": "No such feature view"},
    503: {
        "model": ErrorResponse,
        "description": "Redis does not answer (the rows are durable offline), or the push log "
        "cannot be written (nothing written)",
    },
}


def _json_value(dtype: str) -> Callable[[Any], Any]:
    # Bytes as base64 and non-finite floats as strings, as protobuf's JSON mapping does.
    if dtype == "Bytes":  # also an item of a list, which may be null
        return lambda v: None if v is None else base64.b64encode(v).decode()
    if dtype == "Timestamp":
        return lambda v: None if v is None else _iso(v)
    if dtype.startswith("Float"):
        return lambda v: (
            v if v is None or math.isfinite(v) else ("NaN" if v != v else str(v).replace("inf", "Infinity"))
        )
    if dtype.startswith("List(") and dtype[5:-1] in ("Bytes", "Timestamp", "Float32", "Float64"):
        one = _json_value(dtype[5:-1])
        return lambda v: None if v is None else [one(x) for x in v]
    return lambda v: v


_STATUS_NAMES = {int(s): s.name for s in Status}


def _iso(micros: int) -> str:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)).isoformat()


def _response(result: OnlineResult, version: int) -> dict[str, Any]:
    features = []
    stamps: dict[int, list[str | None]] = {}  # the features of a view share one list of times
    for col in result.features:
        iso = stamps.get(id(col.event_ts_us))
        if iso is None:
            iso = stamps[id(col.event_ts_us)] = [None if t is None else _iso(t) for t in col.event_ts_us]
        conv = _json_value(col.field.dtype.name)
        features.append(
            {
                "name": col.name,
                "reference": col.ref,
                "type": col.field.dtype.name,
                "values": [conv(v) for v in col.values],
                "statuses": [_STATUS_NAMES[s] for s in col.statuses],
                "event_timestamps": iso,
            }
        )
    body: dict[str, Any] = {"registry_version": version, "features": features}
    if result.run_ids:
        body["runs"] = result.run_ids
    return body


# Starlette's own errors (bad routes, unparsable bodies) in the gRPC vocabulary our errors use.
_HTTP_CODES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "UNIMPLEMENTED",
    413: "RESOURCE_EXHAUSTED",
    429: "RESOURCE_EXHAUSTED",
    503: "UNAVAILABLE",
}


def _error(status: int, code: str, message: str, rows: list[dict[str, Any]] | None = None) -> JSONResponse:
    error: dict[str, Any] = {"code": code, "message": shorten(message)}
    if rows is not None:
        error["rows"] = rows
    return JSONResponse({"error": error}, status_code=status)


def build_app(
    holder: RegistryHolder,
    store: AsyncOnlineStore,
    redis_timeout: float,
    is_healthy: Callable[[], bool],
    metrics: ServingMetrics | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    budget: ByteBudget | None = None,  # None: no bound on the bytes in flight
    failures: Failures | None = None,
    pushes: PushService | None = None,  # None: POST /v1/push answers 403
    on_demand_timeout: float = DEFAULT_ON_DEMAND_TIMEOUT,  # seconds on-demand functions get
) -> FastAPI:
    failures = failures or Failures()
    app = FastAPI(
        title="featurestore online features",
        version="1",
        description="The latest feature values per entity, from the online store.",
    )
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes, budget=budget)

    @app.exception_handler(FeatureStoreError)
    async def _store_error(request: Request, exc: FeatureStoreError) -> JSONResponse:
        rows = None
        if isinstance(exc, InvalidRowsError):
            rows = [
                {"row": row, "column": column, "check": shorten(check, 200)}
                for row, column, check in exc.rows[:MAX_ROW_ERRORS]
            ]
        response = _error(exc.http_status, exc.grpc_status, failures.client_message(exc), rows)
        if exc.http_status == 429:
            response.headers["retry-after"] = "1"
        return response

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in exc.errors()[:5]
        )
        return _error(422, "INVALID_ARGUMENT", problems)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        # One error body for every answer, not FastAPI's {"detail": ...} for some of them.
        code = _HTTP_CODES.get(exc.status_code, "INVALID_ARGUMENT" if exc.status_code < 500 else "INTERNAL")
        cause = exc.__cause__  # FastAPI's "error parsing the body" hides why
        message = f"{exc.detail}: {type(cause).__name__}: {cause}" if cause else str(exc.detail)
        response = _error(exc.status_code, code, message)
        response.headers.update(exc.headers or {})
        return response

    @app.post("/v1/online-features", response_model=OnlineFeaturesResponse, responses=_ERROR_RESPONSES)
    async def online_features(body: OnlineFeaturesRequest, request: Request) -> JSONResponse:
        try:
            return await lookup(body, request)
        except FeatureStoreError:
            raise  # _store_error answers it
        except Exception as e:  # noqa: BLE001 - a bug: a JSON 500 with a request id, the detail logged
            return _error(500, "INTERNAL", failures.unexpected(e))

    async def lookup(body: OnlineFeaturesRequest, request: Request) -> JSONResponse:
        taken = 0

        def admit(plan: LookupPlan, n: int) -> None:
            nonlocal taken
            least, answer = answer_bytes(plan, n, body.include_run_ids)
            check_answer(least, at_least=True)  # as gRPC: the same request gets the same answer on both
            if budget is not None:
                budget.take(answer, "an answer", held=request.scope.get(TAKEN, 0))
                taken = answer

        try:
            found = await lookup_async(
                holder.current,
                store,
                body.features,
                body.feature_service,
                body.entities,
                redis_timeout,
                body.full_feature_names,
                admit,
                body.request_data or None,
                push_input.json_request_column,
            )
            result = found.result(with_run_ids=body.include_run_ids)
            answer = await found.computed_async(result, on_demand_timeout)
            if metrics is not None:
                metrics.served(
                    "http", found.plan, found.columns, result, found.read_seconds, raw=found.raw,
                    request_id=request_id_from(request.headers.get("x-request-id")),
                    request_data=found.request_data(), computed=answer,
                )
            return JSONResponse(_response(answer, found.registry.version))
        finally:
            if taken:
                assert budget is not None
                budget.give(taken)

    @app.post("/v1/push", response_model=PushResponse, responses=_PUSH_ERROR_RESPONSES)
    async def push(body: PushRequest, request: Request) -> JSONResponse:
        try:
            if pushes is None:
                raise PermissionDeniedError("this server does not take pushes")
            peer = request.client.host if request.client else None
            pushed = await pushes.push(
                "http", peer, body.view, lambda view: push_input.from_json(view, body.columns)
            )
        except FeatureStoreError:
            raise  # _store_error answers it
        except Exception as e:  # noqa: BLE001 - a bug: a JSON 500 with a request id, the detail logged
            return _error(500, "INTERNAL", failures.unexpected(e))
        return JSONResponse(result_fields(pushed))

    @app.get("/v1/features")
    async def features() -> dict[str, Any]:
        registry = holder.current
        out = []
        for ref, field in registry.servable():
            view = registry.snapshot.views[ref.split(":", 1)[0]]
            out.append(
                {
                    "reference": ref,
                    "view": view.name,
                    "name": field.name,
                    "type": field.dtype.name,
                    "join_keys": [k.name for k in view.join_keys],
                    "join_key_types": {k.name: k.dtype.name for k in view.join_keys},
                    "entities": list(view.entity_names),
                    "description": field.description,
                    "ttl_seconds": None if view.ttl is None else int(view.ttl.total_seconds()),
                }
            )
        for ref, field, od, reads in registry.on_demand_servable():
            keys = list(dict.fromkeys(k for v in reads for k in v.join_keys))
            out.append(
                {
                    "reference": ref,
                    "view": od.name,
                    "name": field.name,
                    "type": field.dtype.name,
                    "join_keys": [k.name for k in keys],
                    "join_key_types": {k.name: k.dtype.name for k in keys},
                    "entities": list(dict.fromkeys(e for v in reads for e in v.entity_names)),
                    "description": field.description,
                    "ttl_seconds": None,
                    "on_demand": True,
                    "request_fields": {f.name: f.dtype.name for f in od.request_fields},
                }
            )
        services = {name: s.feature_refs() for name, s in sorted(registry.snapshot.services.items())}
        entities = {
            name: {"join_keys": list(e.join_keys), "description": e.description}
            for name, e in sorted(registry.snapshot.entities.items())
        }
        return {
            "registry_version": registry.version,
            "features": out,
            "services": services,
            "entities": entities,
        }

    @app.get("/healthz", responses={503: {"description": "Not serving: the online store does not answer"}})
    async def healthz() -> JSONResponse:
        ok = is_healthy()
        return JSONResponse(
            {"status": "SERVING" if ok else "NOT_SERVING", "registry_version": holder.current.version},
            status_code=200 if ok else 503,
        )

    return app

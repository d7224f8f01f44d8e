"""The gRPC FeatureServing service on grpc.aio, with health checking and reflection."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

import grpc
from google.protobuf.message import DecodeError
from grpc._cython import cygrpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from featurestore.errors import FeatureStoreError, InvalidRequestError, PermissionDeniedError
from featurestore.online.lookup import LookupPlan
from featurestore.online.on_demand import DEFAULT_ON_DEMAND_TIMEOUT
from featurestore.online.registry_holder import RegistryHolder
from featurestore.online.request import lookup_async
from featurestore.online.store import AsyncOnlineStore
from featurestore.serving import convert, push_input
from featurestore.serving.failures import Failures
from featurestore.serving.fastpath import fast_encoder
from featurestore.serving.limits import ByteBudget, answer_bytes, check_answer, shorten
from featurestore.serving.pushes import PushService, result_fields
from featurestore.serving.request_log import request_id_from
from featurestore.serving.v1 import serving_pb2 as pb
from featurestore.serving.v1 import serving_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from featurestore.serving.metrics import ServingMetrics

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["FeatureServing"].full_name
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


class FeatureServingServicer(pb_grpc.FeatureServingServicer):
    def __init__(
        self,
        holder: RegistryHolder,
        store: AsyncOnlineStore,
        redis_timeout: float,
        metrics: ServingMetrics | None = None,
        budget: ByteBudget | None = None,  # None: no bound on the bytes in flight
        failures: Failures | None = None,
        pushes: PushService | None = None,  # None: PushFeatures answers PERMISSION_DENIED
        on_demand_timeout: float = DEFAULT_ON_DEMAND_TIMEOUT,
    ) -> None:
        self.holder = holder
        self.on_demand_timeout = on_demand_timeout
        self.store = store
        self.redis_timeout = redis_timeout
        self.metrics = metrics
        self.budget = budget
        self.failures = failures or Failures()
        self.pushes = pushes

    async def GetOnlineFeatures(  # noqa: N802 - gRPC method name
        self, received: Received | Malformed | FeatureStoreError, context: grpc.aio.ServicerContext
    ) -> pb.GetOnlineFeaturesResponse:
        taken = received.nbytes if isinstance(received, Received) else 0
        try:
            if isinstance(received, FeatureStoreError):  # refused before parsing
                raise received
            if isinstance(received, Malformed):
                raise InvalidRequestError(f"malformed {received.message}: {received.error}")
            request: pb.GetOnlineFeaturesRequest = received.message

            def admit(plan: LookupPlan, n: int) -> None:
                nonlocal taken
                least, answer = answer_bytes(plan, n, request.include_run_ids)
                check_answer(least, at_least=True)  # before any work: it could not be sent
                if self.budget is not None:
                    self.budget.take(answer, "an answer", held=taken)
                    taken += answer

            # Fail within the caller's deadline (or ours) rather than hang on a dead Redis.
            remaining = context.time_remaining()
            timeout = self.redis_timeout
            if remaining is not None:
                timeout = max(0.001, min(remaining, timeout))
            found = await lookup_async(
                self.holder.current,
                self.store,
                request.features,
                request.feature_service,
                lambda: convert.entity_columns(request.entities),  # after the plan (request.py)
                timeout,
                request.full_feature_names,
                admit,
                request.request_data if len(request.request_data) else None,
                push_input.request_column,
            )
            plan, n, raw, version = found.plan, found.n, found.raw, found.registry.version
            logged = self.metrics is not None and self.metrics.sample_request()
            request_id = _request_id(context) if logged else None
            if not request.include_run_ids:
                encoder, now_us = fast_encoder(plan), time.time_ns() // 1000
                fast = None if encoder is None else encoder.encode(n, raw, version, now_us)
                if fast is not None:
                    check_answer(len(fast.data))  # its exact size, known only now
                    if self.metrics is not None:
                        self.metrics.served_present(plan, n, fast.events, found.read_seconds)
                        if logged:  # the log's thread decodes what it needs, off this path
                            self.metrics.log_lookup("grpc", now_us, plan, n, found.columns, raw, request_id)
                    return fast.data  # type: ignore[return-value]  # bytes: _serialize passes them on
            result = found.result(with_run_ids=request.include_run_ids)
            # On-demand functions within the caller's deadline, and at most the server's bound.
            remaining = context.time_remaining()
            deadline = self.on_demand_timeout if remaining is None else min(remaining, self.on_demand_timeout)
            answer = await found.computed_async(result, max(0.001, deadline))
            data = convert.to_response(answer, version).SerializeToString()
            check_answer(len(data))  # as above: refused with a status, not failed in grpc's send
            if self.metrics is not None:
                self.metrics.served(
                    "grpc", plan, found.columns, result, found.read_seconds, logged, raw, request_id,
                    found.request_data() if logged else None, answer,
                )
            return data  # bytes: _serialize passes them on
        except FeatureStoreError as e:
            await _abort(context, e, self.failures)
        except Exception as e:  # noqa: BLE001 - a bug: INTERNAL with a request id, not UNKNOWN with its text
            await _send_status(context, grpc.StatusCode.INTERNAL, self.failures.unexpected(e))
        finally:
            if taken:
                assert self.budget is not None
                self.budget.give(taken)

    async def ListFeatures(  # noqa: N802 - gRPC method name
        self, received: Received | Malformed | FeatureStoreError, context: grpc.aio.ServicerContext
    ) -> pb.ListFeaturesResponse:
        try:
            if isinstance(received, FeatureStoreError):
                await _abort(context, received, self.failures)
            if isinstance(received, Malformed):
                error = InvalidRequestError(f"malformed {received.message}: {received.error}")
                await _abort(context, error, self.failures)
            return convert.list_features(self.holder.current)
        finally:
            if isinstance(received, Received) and received.nbytes:
                assert self.budget is not None
                self.budget.give(received.nbytes)


    async def PushFeatures(  # noqa: N802 - gRPC method name
        self, received: Received | Malformed | FeatureStoreError, context: grpc.aio.ServicerContext
    ) -> pb.PushFeaturesResponse:
        try:
            if isinstance(received, FeatureStoreError):  # refused before parsing
                raise received
            if isinstance(received, Malformed):
                raise InvalidRequestError(f"malformed {received.message}: {received.error}")
            if self.pushes is None:
                raise PermissionDeniedError("this server does not take pushes")
            request: pb.PushFeaturesRequest = received.message
            columns = request.columns
            pushed = await self.pushes.push(
                "grpc", context.peer(), request.view, lambda view: push_input.from_values(view, columns)
            )
            return pb.PushFeaturesResponse(**result_fields(pushed))
        except FeatureStoreError as e:
            await _abort(context, e, self.failures)
        except Exception as e:  # noqa: BLE001 - a bug: INTERNAL with a request id, not UNKNOWN with its text
            await _send_status(context, grpc.StatusCode.INTERNAL, self.failures.unexpected(e))
        finally:
            if isinstance(received, Received) and received.nbytes:
                assert self.budget is not None
                self.budget.give(received.nbytes)


@dataclass(frozen=True)
class Malformed:
    """A request whose bytes are not the message they claim to be."""

    message: str
    error: str


@dataclass(frozen=True)
class Received:
    """A parsed request, and the bytes it took from the budget (the handler gives them back)."""

    message: Any
    nbytes: int


def _lenient(message: type[Any], budget: ByteBudget | None) -> Any:
    # grpc answers a deserializer's exception with UNKNOWN and logs a traceback; bad bytes
    # are the caller's mistake, so the handler answers INVALID_ARGUMENT instead. The bytes
    # are counted before they are parsed: over the budget the request is refused unparsed.
    # grpc runs this on its event loop, in the call's task, just before the handler.
    def parse(data: bytes) -> Received | Malformed | FeatureStoreError:
        if budget is not None:
            try:
                budget.take(len(data))
            except FeatureStoreError as e:
                return e
        try:
            return Received(message.FromString(data), len(data) if budget is not None else 0)
        except DecodeError as e:
            if budget is not None:
                budget.give(len(data))
            return Malformed(message.DESCRIPTOR.name, str(e))

    return parse


def _request_id(context: grpc.aio.ServicerContext) -> str | None:
    """The caller's ``x-request-id`` metadata, as the request log keeps it (None: generated)."""
    for key, value in context.invocation_metadata() or ():
        if key == "x-request-id":
            return request_id_from(value)
    return None


def _serialize(response: pb.GetOnlineFeaturesResponse | bytes) -> bytes:
    # The fast path (fastpath.py) hands over the response already serialized.
    return response if isinstance(response, bytes) else response.SerializeToString()


def _add_servicer(servicer: FeatureServingServicer, server: grpc.aio.Server) -> None:
    """pb_grpc.add_FeatureServingServicer_to_server, with lenient, budgeted request parsing."""
    handlers = {
        "GetOnlineFeatures": grpc.unary_unary_rpc_method_handler(
            servicer.GetOnlineFeatures,
            request_deserializer=_lenient(pb.GetOnlineFeaturesRequest, servicer.budget),
            response_serializer=_serialize,
        ),
        "ListFeatures": grpc.unary_unary_rpc_method_handler(
            servicer.ListFeatures,
            request_deserializer=_lenient(pb.ListFeaturesRequest, servicer.budget),
            response_serializer=pb.ListFeaturesResponse.SerializeToString,
        ),
        "PushFeatures": grpc.unary_unary_rpc_method_handler(
            servicer.PushFeatures,
            request_deserializer=_lenient(pb.PushFeaturesRequest, servicer.budget),
            response_serializer=pb.PushFeaturesResponse.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
    server.add_registered_method_handlers(SERVICE_NAME, handlers)


async def _abort(context: grpc.aio.ServicerContext, error: FeatureStoreError, failures: Failures) -> NoReturn:
    code = getattr(grpc.StatusCode, error.grpc_status, grpc.StatusCode.INTERNAL)
    await _send_status(context, code, shorten(failures.client_message(error)))


async def _send_status(context: grpc.aio.ServicerContext, code: grpc.StatusCode, details: str) -> NoReturn:
    try:
        await context.abort(code, details)
    except cygrpc.ExecuteBatchError:
        # The call ended (caller gone, deadline passed) while we failed it, and grpc has not
        # seen that yet: it would log this as a servicer bug with a traceback. There is no
        # one to answer: end the handler as a cancelled call, which grpc drops quietly.
        raise asyncio.CancelledError from None
    raise AssertionError("unreachable")


def build_server(
    servicer: FeatureServingServicer,
    health: HealthServicer,
    port: int,
    host: str = "127.0.0.1",
    reuse_port: bool = False,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    credentials: grpc.ServerCredentials | None = None,  # None: plaintext
    options: Sequence[tuple[str, int]] = (),  # more core options (connections.grpc_options)
) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server(
        interceptors=interceptors,
        options=[
            ("grpc.so_reuseport", 1 if reuse_port else 0),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            *options,
        ]
    )
    _add_servicer(servicer, server)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
        server,
    )
    if credentials is not None:
        bound = server.add_secure_port(f"{host}:{port}", credentials)
    else:
        bound = server.add_insecure_port(f"{host}:{port}")
    return server, bound


SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

"""One online lookup, whatever the transport: the only place a lookup is sequenced.

In process (``FeatureStore.get_online_features``) calls ``lookup``; gRPC and HTTP call
``lookup_async``, its event-loop face: the same steps (a wire request's features xor a
service, the cached plan, the entity columns, keys, one read under a deadline), only the
read differs. Transports only translate: they build the
arguments from their request and the response from the returned ``Lookup``, either
through ``Lookup.result()`` (decoded, column-wise) or, for the gRPC fast path, by cutting
the response from ``Lookup.raw`` without decoding. ``admit`` runs after the request is
checked and before the read, so a server refuses an answer it could not send (or hold in
memory) before any work.

On-demand features are computed from the decoded result (``Lookup.computed``; servers call
``computed_async``, which bounds the functions by the request's deadline), with the request's
``request_data`` checked with the entities, before the read.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from featurestore.errors import InvalidRequestError
from featurestore.online.lookup import MAX_FEATURES, LookupPlan, OnlineRegistry, OnlineResult
from featurestore.online.on_demand import ColumnReader
from featurestore.online.store import AsyncOnlineStore, OnlineStore

Admit = Callable[[LookupPlan, int], None]
# A request's entity columns, or how to make them: a transport whose columns cost memory in
# proportion to the request (gRPC's protobuf lists become Python objects) passes a function,
# called only once the plan is made, so a request naming an unknown feature never pays for them.
Entities = Mapping[str, Sequence[Any]] | Callable[[], Mapping[str, Sequence[Any]]]


@dataclass(slots=True)
class Lookup:
    """A lookup read from the online store, decoded on demand."""

    registry: OnlineRegistry  # the version that answered (requests keep theirs across a swap)
    plan: LookupPlan
    n: int  # entities
    columns: dict[str, list[Any]]  # the request's entity columns, checked
    raw: list[bytes | None]  # the stored values, view-major (``LookupPlan.keys`` order)
    read_seconds: float  # how long the read took
    request: dict[str, pa.Array]  # the request's request_data, checked (empty without on-demand)

    def result(self, with_run_ids: bool = False) -> OnlineResult:
        """The looked-up values decoded into a column-wise result, with a status per value
        (on-demand features not yet computed: ``computed`` adds them)."""
        return self.plan.assemble(self.n, self.columns, self.raw, with_run_ids=with_run_ids)

    def computed(self, result: OnlineResult) -> OnlineResult:
        """``result`` with the on-demand features computed, in request order."""
        if self.plan.on_demand is None:
            return result
        features = self.plan.on_demand.apply(result.features, self.n, self.request)
        return OnlineResult(result.entities, features, result.run_ids)

    def request_data(self) -> dict[str, list[Any]] | None:
        """The checked request data as Python lists (for the request log), None without any."""
        return {name: column.to_pylist() for name, column in self.request.items()} or None

    async def computed_async(self, result: OnlineResult, timeout: float) -> OnlineResult:
        """``computed`` off the event loop, the functions bounded by ``timeout`` seconds."""
        if self.plan.on_demand is None:
            return result
        features = await self.plan.on_demand.apply_async(result.features, self.n, self.request, timeout)
        return OnlineResult(result.entities, features, result.run_ids)


def wanted(features: Sequence[str], feature_service: str | None) -> tuple[str, ...] | str:
    """A wire request's features xor service, as ``LookupPlan`` takes them."""
    if feature_service and len(features):
        raise InvalidRequestError("give either features or feature_service, not both")
    if len(features) > MAX_FEATURES:  # before a Python string is made of each (a protobuf list)
        raise InvalidRequestError(
            f"{len(features)} features in one request, more than the limit of {MAX_FEATURES}"
        )
    out = feature_service or tuple(features)
    if not out:
        raise InvalidRequestError("no features requested: give features or feature_service")
    return out


def _prepare(
    registry: OnlineRegistry,
    features: tuple[str, ...] | str,
    entities: Entities,
    full_feature_names: bool,
    admit: Admit | None,
    request_data: Any = None,
    read: ColumnReader | None = None,
) -> tuple[LookupPlan, int, dict[str, list[Any]], dict[str, pa.Array], list[str]]:
    plan = registry.plan(features, full_feature_names)
    n, columns = plan.entity_columns(entities() if callable(entities) else entities)
    request: dict[str, pa.Array] = {}
    if plan.on_demand is not None:
        request = plan.on_demand.request_columns(n, request_data, read)
    elif request_data:
        raise InvalidRequestError("request_data is only for on-demand features, and none is requested")
    if admit is not None:
        admit(plan, n)
    return plan, n, columns, request, plan.keys(n, columns)


def lookup(
    registry: OnlineRegistry,
    store: OnlineStore,
    features: Sequence[str] | str,
    entities: Mapping[str, Sequence[Any]],
    full_feature_names: bool = False,
    request_data: Mapping[str, Any] | None = None,
) -> Lookup:
    """Check the request, read its values (the store's socket timeout bounds the wait).

    ``features``: references, or a service name (the Python API's one argument for both)."""
    wanted = features if isinstance(features, str) else tuple(features)
    plan, n, columns, request, keys = _prepare(
        registry, wanted, entities, full_feature_names, None, request_data
    )
    started = time.perf_counter()
    raw = store.read(keys)
    return Lookup(registry, plan, n, columns, raw, time.perf_counter() - started, request)


async def lookup_async(
    registry: OnlineRegistry,
    store: AsyncOnlineStore,
    features: Sequence[str],
    feature_service: str | None,
    entities: Entities,
    timeout: float,
    full_feature_names: bool = False,
    admit: Admit | None = None,
    request_data: Any = None,
    read: ColumnReader | None = None,
) -> Lookup:
    """A wire request's lookup (gRPC, HTTP), on an event loop: features xor a service, the
    read bounded by ``timeout`` seconds. ``read`` reads a column of ``request_data`` as the
    transport encodes it."""
    plan, n, columns, request, keys = _prepare(
        registry, wanted(features, feature_service), entities, full_feature_names, admit, request_data, read
    )
    started = time.perf_counter()
    raw = await store.read(keys, timeout)
    return Lookup(registry, plan, n, columns, raw, time.perf_counter() - started, request)

"""featurestore.Client: the Python gRPC client for a `featurestore serve` server."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import numpy as np
import pyarrow as pa

from featurestore.definitions.types import pandas_frame
from featurestore.errors import (
    FeatureStoreError,
    InvalidRequestError,
    OnDemandError,
    OnDemandTimeoutError,
    OnlineStoreUnavailable,
    PermissionDeniedError,
    PushTargetNotFoundError,
    ResourceExhaustedError,
    UnauthenticatedError,
)
from featurestore.serving import convert, push_output
from featurestore.serving.auth import client_metadata
from featurestore.serving.tls import channel_credentials
from featurestore.serving.v1 import serving_pb2 as pb
from featurestore.serving.v1 import serving_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    import pandas as pd

# gRPC's own retry machinery: UNAVAILABLE (server restarting, Redis briefly away) is
# retried with backoff within the call's deadline.
_SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{"service": "featurestore.serving.v1.FeatureServing"}],
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": "0.05s",
                    "maxBackoff": "1s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            },
            # Pushes are not retried behind the caller's back: an UNAVAILABLE push may be durable
            # offline already (its message says), and a retry would add a second copy there.
            {"name": [{"service": "featurestore.serving.v1.FeatureServing", "method": "PushFeatures"}]},
        ]
    }
)
_ARROW: dict[int, pa.DataType] = {
    pb.INT32: pa.int32(),
    pb.INT64: pa.int64(),
    pb.FLOAT32: pa.float32(),
    pb.FLOAT64: pa.float64(),
    pb.STRING: pa.string(),
    pb.BOOL: pa.bool_(),
    pb.BYTES: pa.binary(),
    pb.TIMESTAMP: pa.timestamp("us", tz="UTC"),
    pb.INT32_LIST: pa.list_(pa.int32()),
    pb.INT64_LIST: pa.list_(pa.int64()),
    pb.FLOAT32_LIST: pa.list_(pa.float32()),
    pb.FLOAT64_LIST: pa.list_(pa.float64()),
    pb.STRING_LIST: pa.list_(pa.string()),
    pb.BOOL_LIST: pa.list_(pa.bool_()),
    pb.BYTES_LIST: pa.list_(pa.binary()),
    pb.TIMESTAMP_LIST: pa.list_(pa.timestamp("us", tz="UTC")),
}


@dataclass
class OnlineResponse:
    """A lookup's answer, column-wise; absent values (status not PRESENT) are None."""

    entities: dict[str, list[Any]]
    columns: dict[str, list[Any]]
    statuses: dict[str, list[str]]
    event_timestamps: dict[str, list[datetime | None]]
    types: dict[str, pa.DataType]
    registry_version: int
    run_ids: dict[str, list[int | None]]

    def to_dict(self) -> dict[str, list[Any]]:
        """``{column: values}``: join keys, then features (Timestamp values as datetimes)."""
        return {**self.entities, **self.columns}

    def to_arrow(self) -> pa.Table:
        """Join keys, then features, typed as declared."""
        arrays = {k: pa.array(v) for k, v in self.entities.items()}
        for name, values in self.columns.items():
            arrays[name] = pa.array(values, self.types[name])
        return pa.table(arrays)

    def to_pandas(self) -> pd.DataFrame:
        """``to_arrow()`` as a DataFrame with Arrow-backed dtypes, as ``TrainingSet.to_pandas``."""
        return pandas_frame(self.to_arrow())


@dataclass(frozen=True)
class PushResponse:
    """What a push did: ``rows`` are durable offline; online each was written, kept out by a
    newer stored value, or not written as older than the view's TTL."""

    view: str
    rows: int
    written: int
    kept_newer: int
    expired: int
    registry_version: int


def _entity_values(name: str, values: Sequence[Any]) -> pb.Values:
    values = [v.item() if isinstance(v, np.integer | np.str_) else v for v in values]
    if values and all(type(v) is int for v in values):
        return pb.Values(int64_values=pb.Int64List(values=values))
    if all(type(v) is str for v in values):
        return pb.Values(string_values=pb.StringList(values=values))
    raise InvalidRequestError(f"join key {name!r}: values must be all integers or all strings")


def _timestamp(micros: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)


class Client:
    """``Client("host:6566").get_online_features([...], {"driver_id": [1001]})``.

    ``token``: a bearer token for a server that requires one (default: the
    FEATURESTORE_AUTH_TOKEN environment variable). ``tls=True`` or ``root_certificates``
    (PEM bytes or a file, for a private CA) connect with TLS; ``credentials`` overrides both.
    """

    def __init__(
        self,
        target: str,
        timeout: float = 2.0,
        credentials: grpc.ChannelCredentials | None = None,
        metadata: Sequence[tuple[str, str]] = (),
        token: str | None = None,
        tls: bool = False,
        root_certificates: str | Path | bytes | None = None,
    ) -> None:
        options = [("grpc.service_config", _SERVICE_CONFIG), ("grpc.enable_retries", 1)]
        if credentials is None and (tls or root_certificates is not None):
            credentials = channel_credentials(root_certificates)
        self.channel = (
            grpc.secure_channel(target, credentials, options)
            if credentials
            else grpc.insecure_channel(target, options)
        )
        self.stub = pb_grpc.FeatureServingStub(self.channel)
        self.timeout = timeout
        self.metadata = tuple(metadata) + client_metadata(token)

    def get_online_features(
        self,
        features: Sequence[str] | str,
        entities: Mapping[str, Sequence[Any]],
        full_feature_names: bool = False,
        include_run_ids: bool = False,
        timeout: float | None = None,
        request_data: Mapping[str, Sequence[Any]] | pa.Table | pd.DataFrame | None = None,
    ) -> OnlineResponse:
        """``features`` is a list of ``view:feature`` or a feature service name; ``request_data``
        (request field -> one value per entity) is what on-demand features read besides them."""
        request = pb.GetOnlineFeaturesRequest(
            full_feature_names=full_feature_names, include_run_ids=include_run_ids
        )
        if isinstance(features, str):
            request.feature_service = features
        else:
            request.features.extend(features)
        for name, values in entities.items():
            request.entities[name].CopyFrom(_entity_values(name, values))
        if request_data is not None:
            for name, column in push_output.table(request_data).items():
                request.request_data[name].CopyFrom(column)
        response = self._call(self.stub.GetOnlineFeatures, request, timeout)
        return self._decode(response, {k: list(v) for k, v in entities.items()})

    def push(
        self,
        view: str,
        rows: Mapping[str, Sequence[Any]] | pa.Table | pd.DataFrame,
        timeout: float | None = None,
    ) -> PushResponse:
        """Push ``rows`` (a dict of columns, a pyarrow Table or a pandas DataFrame) to ``view``:
        the same columns and checks as ``FeatureStore.push``. Needs a token with the push scope
        where the server has tokens. Not retried: an ``OnlineStoreUnavailable`` may mean the
        rows are durable offline already (its message says)."""
        request = pb.PushFeaturesRequest(view=view)
        for name, column in push_output.table(rows).items():
            request.columns[name].CopyFrom(column)
        r = self._call(self.stub.PushFeatures, request, timeout)
        return PushResponse(r.view, r.rows, r.written, r.kept_newer, r.expired, r.registry_version)

    def list_features(self, timeout: float | None = None) -> pb.ListFeaturesResponse:
        return self._call(self.stub.ListFeatures, pb.ListFeaturesRequest(), timeout)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: Any, request: Any, timeout: float | None) -> Any:
        try:
            return method(request, timeout=timeout or self.timeout, metadata=self.metadata)
        except grpc.RpcError as e:
            raise _error(e) from None

    @staticmethod
    def _decode(response: pb.GetOnlineFeaturesResponse, entities: dict[str, list[Any]]) -> OnlineResponse:
        columns: dict[str, list[Any]] = {}
        statuses: dict[str, list[str]] = {}
        stamps: dict[str, list[datetime | None]] = {}
        types: dict[str, pa.DataType] = {}
        for col in response.features:
            raw = convert.values_list(col.values, col.type)
            present = [s in (pb.PRESENT,) for s in col.statuses]
            if col.type == pb.TIMESTAMP:
                raw = [_timestamp(v) for v in raw]
            elif col.type == pb.TIMESTAMP_LIST:
                raw = [[None if t is None else _timestamp(t) for t in v] for v in raw]
            columns[col.name] = [v if ok else None for v, ok in zip(raw, present, strict=True)]
            statuses[col.name] = [pb.FieldStatus.Name(s) for s in col.statuses]
            stamps[col.name] = [
                _timestamp(t) if t and s in (pb.PRESENT, pb.NULL_VALUE, pb.EXPIRED) else None
                for t, s in zip(col.event_timestamps, col.statuses, strict=True)
            ]
            types[col.name] = _ARROW[col.type]
        runs = {r.view: [i or None for i in r.run_ids] for r in response.runs}
        return OnlineResponse(entities, columns, statuses, stamps, types, response.registry_version, runs)


def _error(e: grpc.RpcError) -> FeatureStoreError:
    code = e.code() if hasattr(e, "code") else None
    details = e.details() if hasattr(e, "details") else str(e)
    message = f"{getattr(code, 'name', 'UNKNOWN')}: {details}"
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidRequestError(message)
    if "on-demand view" in details and code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return OnDemandTimeoutError(message)
    if "on-demand view" in details and code == grpc.StatusCode.FAILED_PRECONDITION:
        return OnDemandError(message)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return OnlineStoreUnavailable(message)
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return UnauthenticatedError(message)
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return PermissionDeniedError(message)
    if code == grpc.StatusCode.NOT_FOUND:
        return PushTargetNotFoundError(message)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return ResourceExhaustedError(message)
    return FeatureStoreError(message)

"""Between protobuf messages and the online store's Python results, column by column."""

from __future__ import annotations

from typing import Any

from featurestore.definitions.types import DType
from featurestore.errors import FeatureStoreError, InvalidRequestError
from featurestore.online.lookup import OnlineRegistry, OnlineResult
from featurestore.serving.v1 import serving_pb2 as pb

# dtype name -> (proto ValueType, the Values oneof field that carries it, zero value)
_BY_DTYPE: dict[str, tuple[int, str, Any]] = {
    "Int32": (pb.INT32, "int32_values", 0),
    "Int64": (pb.INT64, "int64_values", 0),
    "Float32": (pb.FLOAT32, "float_values", 0.0),
    "Float64": (pb.FLOAT64, "double_values", 0.0),
    "String": (pb.STRING, "string_values", ""),
    "Bool": (pb.BOOL, "bool_values", False),
    "Bytes": (pb.BYTES, "bytes_values", b""),
    "Timestamp": (pb.TIMESTAMP, "timestamp_values", 0),
}
_LISTS: dict[str, tuple[int, str]] = {
    "List(Int32)": (pb.INT32_LIST, "int32_values"),
    "List(Int64)": (pb.INT64_LIST, "int64_values"),
    "List(Float32)": (pb.FLOAT32_LIST, "float_values"),
    "List(Float64)": (pb.FLOAT64_LIST, "double_values"),
    "List(String)": (pb.STRING_LIST, "string_values"),
    "List(Bool)": (pb.BOOL_LIST, "bool_values"),
    "List(Bytes)": (pb.BYTES_LIST, "bytes_values"),
    "List(Timestamp)": (pb.TIMESTAMP_LIST, "timestamp_values"),
}
_SCALAR_KINDS = ("int32_values", "int64_values", "string_values")


def value_type(dtype: DType) -> int:
    if dtype.name in _LISTS:
        return _LISTS[dtype.name][0]
    return _BY_DTYPE[dtype.name][0]


def entity_columns(entities: Any) -> dict[str, list[Any]]:
    """The request's join key columns as Python lists (ints or strings)."""
    out: dict[str, list[Any]] = {}
    for name, values in entities.items():
        kind = values.WhichOneof("kind")
        if kind not in _SCALAR_KINDS:
            raise InvalidRequestError(
                f"join key {name!r} must be sent as int32_values, int64_values or string_values, got {kind}"
            )
        out[name] = list(getattr(values, kind).values)
    return out


def fill_values(target: Any, dtype: DType, values: list[Any]) -> None:
    """Put a feature's values into a ``Values`` message (zero values where absent)."""
    if dtype.name in _LISTS:
        field = _LISTS[dtype.name][1]
        zero = _BY_DTYPE[dtype.name[5:-1]][2]
        items = target.list_values.values
        for v in values:
            one = items.add()
            if v and None in v:  # a null item: the zero value, its position said apart
                one.null_positions.extend([j for j, x in enumerate(v) if x is None])
                v = [zero if x is None else x for x in v]
            getattr(one, field).values.extend(v or ())
        return
    _, field, zero = _BY_DTYPE[dtype.name]
    getattr(target, field).values.extend([zero if v is None else v for v in values])


def to_response(result: OnlineResult, registry_version: int) -> pb.GetOnlineFeaturesResponse:
    response = pb.GetOnlineFeaturesResponse(registry_version=registry_version)
    for col in result.features:
        out = response.features.add(name=col.name, reference=col.ref, type=value_type(col.field.dtype))
        fill_values(out.values, col.field.dtype, col.values)
        out.statuses.extend(col.statuses)
        out.event_timestamps.extend([0 if t is None else t for t in col.event_ts_us])
    for view, runs in result.run_ids.items():
        response.runs.add(view=view, run_ids=[0 if r is None else r for r in runs])
    return response


def list_features(registry: OnlineRegistry) -> pb.ListFeaturesResponse:
    response = pb.ListFeaturesResponse(registry_version=registry.version)
    for ref, field in registry.servable():
        view = registry.snapshot.views[ref.split(":", 1)[0]]
        info = response.features.add(
            reference=ref,
            view=view.name,
            name=field.name,
            type=value_type(field.dtype),
            join_keys=[k.name for k in view.join_keys],
            description=field.description or "",
            ttl_seconds=0 if view.ttl is None else int(view.ttl.total_seconds()),
            entities=list(view.entity_names),
        )
        for k in view.join_keys:  # a client in another language learns which Values kind to send
            info.typed_join_keys.add(name=k.name, type=value_type(k.dtype))
    for ref, field, od, reads in registry.on_demand_servable():
        keys = list(dict.fromkeys(k for v in reads for k in v.join_keys))
        info = response.features.add(
            reference=ref,
            view=od.name,
            name=field.name,
            type=value_type(field.dtype),
            join_keys=[k.name for k in keys],
            description=field.description or "",
            entities=list(dict.fromkeys(e for v in reads for e in v.entity_names)),
        )
        for k in keys:
            info.typed_join_keys.add(name=k.name, type=value_type(k.dtype))
        for f in od.request_fields:
            info.request_fields.add(name=f.name, type=value_type(f.dtype))
    for name, service in sorted(registry.snapshot.services.items()):
        response.services.add(name=name, features=service.feature_refs())
    for name, entity in sorted(registry.snapshot.entities.items()):
        response.entities.add(name=name, join_keys=list(entity.join_keys), description=entity.description)
    return response


def values_list(values: Any, type_: int) -> list[Any]:
    """A ``Values`` message back to a Python list (used by the client)."""
    kind = values.WhichOneof("kind")
    if kind is None:
        return []
    if kind == "list_values":
        return [_one_list(v) for v in values.list_values.values]
    del type_
    return list(getattr(values, kind).values)


def _one_list(values: Any) -> list[Any]:
    kind = values.WhichOneof("kind")
    out: list[Any] = list(getattr(values, kind).values) if kind else []
    for j in values.null_positions:
        if j >= len(out):
            raise FeatureStoreError(
                f"malformed response: null position {j} is past the end of a list of {len(out)} items"
            )
        out[j] = None
    return out

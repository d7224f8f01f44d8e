"""The gRPC response for the common lookup, written straight from the Redis values.

Most lookups find every entity, fresh, with no nulls among the requested features. For
those the response can be cut from the stored values without decoding them: fixed-width
features sit at fixed offsets, floats are already in protobuf's little-endian layout,
booleans are already one-byte varints, strings are already UTF-8. Decoding into Python
objects (``LookupPlan.assemble``) and filling a message column by column
(``convert.to_response``) cost more than the Redis read on the gRPC path; this path skips
both. Anything unusual (a missing, expired or null value, another layout, list features,
run ids asked for, a value of an unknown format or that does not parse) returns None and the caller takes the
general path, which decides its status. A list feature the lookup does not ask for is
skipped by its length, whose high bit (a list holding nulls) is masked off; every value is
walked to its end, and requested strings checked to be UTF-8, as the general path does.

The bytes parse to exactly the message the general path builds; tests hold it to that.
Wire format, for the next reader: a field is a one-byte tag ``number << 3 | wire type``
(every number here is below 16) and, for length-delimited fields (type 2: strings,
submessages, packed lists), a varint length before the payload.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import cast

import numpy as np

from featurestore.online.codec import FORMAT_VERSION, HEADER, LENGTH_MASK, RUN_BITS, ViewCodec
from featurestore.online.lookup import PRESENT, LookupPlan
from featurestore.serving import convert
from featurestore.serving.v1 import serving_pb2 as pb


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _ld(number: int, payload: bytes) -> bytes:
    """A length-delimited field."""
    size = len(payload)
    if size < 0x80:  # the usual case: a one-byte length
        return bytes((number << 3 | 2, size)) + payload
    return bytes((number << 3 | 2,)) + _varint(size) + payload


# Fixed-width dtype -> (Values field number, how the concatenated stored bytes become it):
#   "raw": the bytes are the packed payload already (float, double, bool)
#   a struct code: unpack, then let the C protobuf runtime write the varints
_FIXED: dict[str, tuple[int, str, type | None]] = {
    "Float32": (3, "raw", None),
    "Float64": (4, "raw", None),
    "Bool": (6, "raw", None),
    "Int32": (1, "i", pb.Int32List),
    "Int64": (2, "q", pb.Int64List),
    "Timestamp": (8, "q", pb.Int64List),
}
# From this many entities on, fixed-width columns are cut with numpy (fewer: slices are cheaper).
_ROWS_AT = 8
_U32 = struct.Struct("<I")  # the length before each variable-width feature (high bit: see codec)
_VARIABLE: dict[str, int] = {"String": 5, "Bytes": 7}  # dtype -> Values field number


@dataclass(frozen=True)
class _Column:
    head: bytes  # FeatureColumn fields 1-3: name, reference, type
    view: int  # index into the plan's views
    offset: int  # fixed-width: byte offset in the value; variable: index among variable fields
    width: int  # 0 for variable-width
    number: int  # the Values oneof field
    code: str  # "raw", a struct code, or "var"
    message: type | None


@dataclass(frozen=True)
class _View:
    codec: ViewCodec
    ttl_us: int | None
    fixed_end: int  # header + null bitmap + fixed-width features
    nulls: slice
    zero_nulls: bytes
    variable: int  # how many variable-width features the value has


@dataclass(frozen=True)
class FastAnswer:
    data: bytes  # the serialized response
    events: list[list[int]]  # per view, the event time (us) of each entity's value (for metrics)


class FastEncoder:
    """Cuts GetOnlineFeaturesResponse bytes from the MGET reply for one lookup plan."""

    def __init__(self, views: list[_View], columns: list[_Column]) -> None:
        self.views = views
        self.columns = columns

    def encode(
        self, n: int, raw: Sequence[bytes | None], registry_version: int, now_us: int
    ) -> FastAnswer | None:
        """The response, or None when the general path must answer."""
        if None in raw:
            return None
        got = cast(list[bytes], raw)
        stamps: list[bytes] = []
        all_events: list[list[int]] = []
        variable: list[list[list[bytes]] | None] = []
        prefixes: list[np.ndarray] = []
        for vi, view in enumerate(self.views):
            values = got[vi * n : (vi + 1) * n]
            oldest = None if view.ttl_us is None else now_us - view.ttl_us
            events = []
            for value in values:
                size = len(value)
                if size < view.fixed_end or value[view.nulls] != view.zero_nulls:
                    return None
                if size != view.fixed_end and not view.variable:  # bytes to spare: corrupt
                    return None
                event, _, word, layout = HEADER.unpack_from(value)
                if layout != view.codec.layout or (oldest is not None and event < oldest):
                    return None
                if word >> RUN_BITS != FORMAT_VERSION:  # a format this code does not know: CORRUPT
                    return None
                events.append(event)
            all_events.append(events)
            stamps.append(b"\x32" + pb.Int64List(values=events).SerializeToString()[1:])  # field 6
            split = _split_variable(values, view) if view.variable else None
            if view.variable and split is None:
                return None
            variable.append(split)
            # Many entities: every value's fixed-width part side by side as rows of one array,
            # so each column is one strided copy in C instead of a slice per value.
            if n >= _ROWS_AT:
                fixed = b"".join([v[: view.fixed_end] for v in values]) if view.variable else b"".join(values)
                prefixes.append(np.frombuffer(fixed, np.uint8).reshape(n, view.fixed_end))
        statuses = _ld(5, bytes((PRESENT,)) * n)
        parts = []
        for col in self.columns:
            values = got[col.view * n : (col.view + 1) * n]
            if col.code == "var":
                split = variable[col.view]
                assert split is not None
                raw_items = [row[col.offset] for row in split]
                if col.number == _VARIABLE["String"] and not _utf8(raw_items):
                    return None
                items = b"".join([_ld(1, item) for item in raw_items])
                payload = _ld(col.number, items)
            else:
                o, w = col.offset, col.width
                if prefixes:
                    data = prefixes[col.view][:, o : o + w].tobytes()
                else:
                    data = b"".join([v[o : o + w] for v in values])
                if col.code == "raw":
                    payload = _ld(col.number, _ld(1, data))
                else:
                    assert col.message is not None
                    ints = struct.unpack(f"<{n}{col.code}", data)
                    payload = _ld(col.number, col.message(values=ints).SerializeToString())
            body = col.head + _ld(4, payload) + statuses + stamps[col.view]
            parts.append(_ld(1, body))
        if registry_version:
            parts.append(b"\x10" + _varint(registry_version))  # field 2, a varint
        return FastAnswer(b"".join(parts), all_events)


def _split_variable(values: list[bytes], view: _View) -> list[list[bytes]] | None:
    """Each value's variable-width features, as raw bytes, in schema order; None if a value
    does not end where its last feature does."""
    out = []
    for value in values:
        pos, items, size = view.fixed_end, [], len(value)
        for _ in range(view.variable):
            if pos + 4 > size:
                return None
            (length,) = _U32.unpack_from(value, pos)
            length &= LENGTH_MASK  # a list with null items flags it; lists are not served here
            items.append(value[pos + 4 : pos + 4 + length])
            pos += 4 + length
        if pos != size:
            return None
        out.append(items)
    return out


def _utf8(items: list[bytes]) -> bool:
    if b"".join(items).isascii():  # the usual case, checked in C at once
        return True
    try:
        for item in items:
            item.decode()
    except UnicodeDecodeError:
        return False
    return True


@lru_cache(maxsize=1024)
def fast_encoder(plan: LookupPlan) -> FastEncoder | None:
    """The plan's fast encoder, or None if a requested feature's type needs the general path."""
    if any(v.tiles is not None for v in plan.views):  # aggregations are combined, not cut
        return None
    if plan.on_demand is not None:  # computed from decoded values
        return None
    views = []
    for v in plan.views:
        codec = v.codec
        assert codec is not None  # only groups of tiles have none
        nulls = slice(HEADER.size, HEADER.size + codec.null_bytes)
        views.append(
            _View(codec, v.ttl_us, codec.prefix_size, nulls, bytes(codec.null_bytes), len(codec.variable))
        )
    columns = []
    for vi, pos, out in plan.outputs:
        codec = plan.views[vi].codec
        assert codec is not None
        feature = codec.features[plan.views[vi].positions[pos]]
        head = (
            _ld(1, out.name.encode())
            + _ld(2, out.ref.encode())
            + b"\x18"  # field 3, a varint
            + _varint(convert.value_type(feature.dtype))
        )
        name = feature.dtype.name
        if name in _FIXED:
            offset, width = codec.fixed_slots[feature.name]
            number, code, message = _FIXED[name]
            columns.append(_Column(head, vi, offset, width, number, code, message))
        elif name in _VARIABLE:
            columns.append(_Column(head, vi, codec.variable.index(feature), 0, _VARIABLE[name], "var", None))
        else:
            return None  # list features: the general path
    return FastEncoder(views, columns)

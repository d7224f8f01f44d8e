"""The stored value of one tile group of one entity, laid out to be decoded for many entities at once.

Layout (little-endian)::

    header    24 bytes, codec.HEADER: newest event time, created (none), run word (run id |
              format << 24), layout (a hash of ``LAYOUT_TAG`` and the group's state fields)
    T         uint32  the number of tiles
    records   T records of the group's ``record`` dtype, one per tile in tile order: the tile
              number (int64), then each fixed-width per-tile state's item (a count, sum, mean,
              m2, a number's min/max/first/last) and, for a state that can be null, a
              validity byte (1: present); a String/Bytes per-tile state has only its validity
              byte here
    then, per variable-width state in ``TileGroup.fields`` order: uint32 byte length, then
              either fixed-width items (the flattened values of ``last_n`` and
              ``count_distinct`` over numbers, Bool, Timestamp), or uint32 k, k uint32 item
              lengths and the items' bytes (String/Bytes values; a null per-tile item is empty)

Every entity's records have the same width, so the records of all values of a lookup, joined,
are one NumPy structured array: one ``frombuffer`` decodes every fixed-width state of every
entity (``decode``, for tools and the NumPy reference in tests/online/numpy_combine.py; the
lookup's kernel, tile_kernel.py, reads the values where they lie). The header is
``ViewCodec``'s, so ``header_of`` and the freshness checks read these values too. The layout
hash includes ``LAYOUT_TAG``: a value of the earlier layout (a ``ViewCodec`` row of List
columns, whose hash is of the field list alone) has another layout and reads NOT_FOUND until
a materialization rewrites it, as does a value of a changed group. A value of an unknown
format version, cut short, with bytes to spare, or whose parts disagree (item counts against
tile counts) is corrupt.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from featurestore.online.codec import (
    FORMAT_BYTE,
    FORMAT_VERSION,
    HEADER,
    MAX_RUN_ID,
    NO_CREATED,
    RUN_BITS,
    _binary_list_rows,
    _binary_rows,
    layout_of,
)
from featurestore.online.tiles import TILES, TileGroup

LAYOUT_TAG = "tiles/2"  # bump when this layout changes: the hash changes with it
_HEAD = struct.Struct(HEADER.format + "I")  # the header, then T
_HEAD_DTYPE = np.dtype([("e", "<i8"), ("c", "<i8"), ("r", "<u4"), ("l", "<u4"), ("t", "<u4")])
_HEAD_BYTES = np.arange(_HEAD.size)
_U32_BYTES = np.arange(4)
_BINARY = ("String", "Bytes")
# item dtype name -> (numpy dtype of a stored item, Arrow type to cast the items to first)
_ITEMS: dict[str, tuple[str, pa.DataType]] = {
    "Int32": ("<i4", pa.int32()),
    "Int64": ("<i8", pa.int64()),
    "Float32": ("<f4", pa.float32()),
    "Float64": ("<f8", pa.float64()),
    "Bool": ("?", pa.uint8()),
    "Timestamp": ("<i8", pa.int64()),
}


@dataclass(frozen=True)
class State:
    """How one state field (a position in ``TileGroup.fields``) is stored."""

    position: int
    item: str  # the item's dtype name
    per_tile: bool  # one item per tile (else the flattened values of last_n/count_distinct)
    nullable: bool  # has a validity byte in the record

    @property
    def binary(self) -> bool:
        return self.item in _BINARY

    @property
    def in_record(self) -> bool:
        return self.per_tile and not self.binary


@dataclass
class Items:
    """A variable-width state of every decoded value: ``offsets[e]:offsets[e + 1]`` are entity
    ``e``'s items. Numbers in ``values``; String/Bytes as byte ranges of ``data``."""

    offsets: np.ndarray
    values: np.ndarray | None = None
    data: bytes = b""
    starts: np.ndarray | None = None
    ends: np.ndarray | None = None
    text: bool = False

    def get(self, indices: Sequence[int] | np.ndarray) -> list[Any]:
        """The items at ``indices`` as Python values (String items decoded: may raise
        UnicodeDecodeError for a damaged value)."""
        if self.values is not None:
            return self.values[np.asarray(indices, dtype=np.int64)].tolist() if len(indices) else []
        raw = self.raw(indices)
        return [r.decode() for r in raw] if self.text else raw

    def raw(self, indices: Sequence[int] | np.ndarray) -> list[bytes]:
        """The bytes of the items at ``indices``."""
        assert self.starts is not None and self.ends is not None
        at = np.asarray(indices, dtype=np.int64)
        data = self.data
        return [data[a:b] for a, b in zip(self.starts[at].tolist(), self.ends[at].tolist(), strict=True)]


@dataclass
class TileBatch:
    """Many decoded values of one group: ``good[e]`` is the input index of entity row ``e``."""

    good: list[int]
    other: list[int]
    corrupt: list[int]
    event_ts_us: list[int]
    run_ids: list[int]
    starts: np.ndarray  # records of entity e: starts[e]:starts[e + 1]
    entity: np.ndarray  # each record's entity row
    records: np.ndarray  # the structured records of every entity, joined
    items: dict[int, Items] = field(default_factory=dict)  # variable-width states by position

    @property
    def n(self) -> int:
        return len(self.good)


class TileCodec:
    """Encodes and decodes a tile group's values (one per entity); built once per registry version."""

    def __init__(self, group: TileGroup) -> None:
        self.group = group
        self.fields = group.fields
        spec = ";".join([LAYOUT_TAG] + [f"{f.name}:{f.dtype.name}" for f in self.fields])
        self.layout = zlib.crc32(spec.encode())
        self.states: list[State] = []
        parts: list[tuple[str, str]] = [("tile", "<i8")]
        for p, f in enumerate(self.fields[1:], start=1):
            suffix = f.name.rsplit("__", 1)[1]
            item = f.dtype.name[5:-1]  # List(X) -> X
            state = State(p, item, suffix != "values", suffix not in ("count", "counts", "values"))
            self.states.append(state)
            if state.in_record:
                parts.append((f"s{p}", _ITEMS[item][0]))
            if state.nullable:
                parts.append((f"v{p}", "?"))
        self.record = np.dtype(parts)
        self.variable = [s for s in self.states if not s.in_record]
        self.by_position = {s.position: s for s in self.states}

    @cached_property
    def kernel_spec(self) -> tuple[Any, ...]:
        """This layout as the lookup's compiled kernel takes it (tile_kernel.py)."""
        from featurestore.online.tile_kernel import spec

        return spec(self)

    # -- encoding (materialization, both engines) ------------------------------------------

    def encode(self, batch: pa.RecordBatch | pa.Table, event_us: np.ndarray, run_id: int) -> pa.Array:
        """One value per row of ``batch`` (a group's rows: ``tile_writer.group_row_schema``)."""
        if not 0 <= run_id <= MAX_RUN_ID:
            raise ValueError(f"run id {run_id} does not fit the value header (at most {MAX_RUN_ID})")
        n = batch.num_rows
        tiles, offsets = _flat(batch, TILES, pa.int64())
        counts = np.diff(offsets)
        records = np.zeros(len(tiles), dtype=self.record)
        records["tile"] = tiles.to_numpy(zero_copy_only=False)
        head = np.zeros(n, dtype=_HEAD_DTYPE)
        head["e"], head["c"], head["t"] = event_us, NO_CREATED, counts
        head["r"], head["l"] = run_id | FORMAT_VERSION << RUN_BITS, self.layout
        parts: list[pa.Array] = [_rows(n, np.arange(n + 1) * _HEAD.size, head.tobytes())]
        variable: list[pa.Array] = []
        for s in self.states:
            name = self.fields[s.position].name
            arrow = pa.large_binary() if s.binary else _ITEMS[s.item][1]
            items, item_offsets = _flat(batch, name, arrow)
            if s.per_tile and not np.array_equal(item_offsets, offsets):
                raise ValueError(f"state {name!r} does not hold one item per tile")
            if s.nullable:
                records[f"v{s.position}"] = items.is_valid().to_numpy(zero_copy_only=False)
            elif items.null_count:
                raise ValueError(f"state {name!r} holds a null item")
            if s.in_record:
                filled = items.fill_null(0) if items.null_count else items
                records[f"s{s.position}"] = filled.to_numpy(zero_copy_only=False)
                continue
            if s.binary:
                data = _binary_list_rows(items, item_offsets)
            else:
                width = np.dtype(_ITEMS[s.item][0]).itemsize
                flat = items.to_numpy(zero_copy_only=False).astype(_ITEMS[s.item][0])
                data = _rows(n, item_offsets * width, flat.tobytes())
            lengths = pc.binary_length(data).to_numpy(zero_copy_only=False).astype("<u4")
            variable += [_rows(n, np.arange(n + 1) * 4, lengths.tobytes()), data]
        parts.append(_rows(n, offsets * self.record.itemsize, records.tobytes()))
        return pc.binary_join_element_wise(*parts, *variable, b"")

    # -- decoding (serving) ------------------------------------------------------------------

    def decode(self, values: Sequence[bytes]) -> TileBatch:
        """Decode many values at once. Values of another layout come back in ``other``, values
        that cannot be decoded in ``corrupt``.

        The values are joined into one buffer and walked for all of them at once: their
        headers in one gather, each variable-width state's length in one more, so the cost
        per value is a few slices, not a loop over its parts."""
        n = len(values)
        sizes = np.fromiter(map(len, values), np.int64, n)
        begin = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(sizes, out=begin[1:])
        data = b"".join(values)
        buf = np.frombuffer(data, dtype=np.uint8)
        other: list[int] = []
        corrupt: list[int] = []
        short = sizes < _HEAD.size
        for i in np.flatnonzero(short).tolist():  # too short for a header and T
            v = values[i]
            known = len(v) >= HEADER.size and v[FORMAT_BYTE] == FORMAT_VERSION
            (other if known and layout_of(v) != self.layout else corrupt).append(i)
        rows = np.flatnonzero(~short)
        start, end = begin[:-1][rows], begin[1:][rows]
        head = buf[start[:, None] + _HEAD_BYTES].view(_HEAD_DTYPE)[:, 0]
        unknown = head["r"] >> RUN_BITS != FORMAT_VERSION  # corrupt, whatever its layout says
        foreign = ~unknown & (head["l"] != self.layout)
        tiles = head["t"].astype(np.int64)
        pos = start + _HEAD.size + tiles * self.record.itemsize
        ok = ~unknown & ~foreign & (pos <= end)
        found: list[tuple[np.ndarray, np.ndarray]] = []  # per variable-width state: where, how long
        for _ in self.variable:
            ok &= pos + 4 <= end
            at = np.where(ok, pos, 0)
            length = buf[at[:, None] + _U32_BYTES].view("<u4")[:, 0].astype(np.int64)
            found.append((at + 4, length))
            pos = pos + 4 + length
            ok &= pos <= end
        ok &= pos == end
        other += rows[foreign].tolist()
        corrupt += rows[~ok & ~foreign].tolist()
        good = rows[ok]
        tiles = tiles[ok]
        width, skip = self.record.itemsize, _HEAD.size
        pairs = zip(good.tolist(), tiles.tolist(), strict=True)
        blocks = b"".join([values[i][skip : skip + t * width] for i, t in pairs])
        starts = np.zeros(len(good) + 1, dtype=np.int64)
        np.cumsum(tiles, out=starts[1:])
        out = TileBatch(
            good.tolist(),
            sorted(other),
            sorted(corrupt),
            head["e"][ok].tolist(),
            (head["r"][ok] & MAX_RUN_ID).tolist(),
            starts,
            np.repeat(np.arange(len(good)), tiles),
            np.frombuffer(blocks, dtype=self.record),
        )
        bad = np.zeros(len(good), dtype=bool)
        for s, (at, length) in zip(self.variable, found, strict=True):
            out.items[s.position] = self._items(s, out, data, buf, at[ok], length[ok], bad)
        if bad.any():  # parts that disagree: decode the others again without them
            kept = good[~bad]
            again = self.decode([values[i] for i in kept.tolist()])
            again.good = kept[again.good].tolist()
            again.other = sorted(out.other + kept[again.other].tolist())
            again.corrupt = sorted(out.corrupt + good[bad].tolist() + kept[again.corrupt].tolist())
            return again
        return out

    def _items(
        self,
        s: State,
        batch: TileBatch,
        data: bytes,
        buf: np.ndarray,
        at: np.ndarray,
        sizes: np.ndarray,
        bad: np.ndarray,
    ) -> Items:
        """One variable-width state of every entity, its payloads at ``at`` in ``data``; sets
        ``bad`` where its parts disagree."""
        if s.per_tile:
            want = np.diff(batch.starts)
        else:  # as many values as the tiles' counts say
            counts = batch.records[f"s{s.position + 1}"].astype(np.int64)
            before = np.zeros(len(counts) + 1, dtype=np.int64)
            np.cumsum(counts, out=before[1:])
            want = before[batch.starts[1:]] - before[batch.starts[:-1]]
        offsets = np.zeros(len(want) + 1, dtype=np.int64)
        np.cumsum(want, out=offsets[1:])
        if not s.binary:
            item = np.dtype(_ITEMS[s.item][0])
            bad |= sizes != want * item.itemsize
            if bad.any():
                return Items(offsets, np.zeros(0, dtype=item))
            joined = b"".join([data[a : a + k] for a, k in zip(at.tolist(), sizes.tolist(), strict=True)])
            return Items(offsets, np.frombuffer(joined, dtype=item))
        # each payload: k, k lengths, the bytes; k must be the item count. Each entity's
        # lengths, and then its items' bytes, are cut out whole and joined: one slice per
        # entity, not a gather per item.
        none = np.zeros(0, dtype=np.int64)
        bad |= sizes < 4 + 4 * want
        if bad.any():
            return Items(offsets, data=data, starts=none, ends=none)
        k = buf[at[:, None] + _U32_BYTES].view("<u4")[:, 0]
        bad |= k != want
        if bad.any():
            return Items(offsets, data=data, starts=none, ends=none)
        first = (at + 4).tolist()
        counts = want.tolist()
        table = b"".join([data[a : a + 4 * c] for a, c in zip(first, counts, strict=True)])
        ends = np.zeros(int(offsets[-1]) + 1, dtype=np.int64)
        np.cumsum(np.frombuffer(table, dtype="<u4"), out=ends[1:])
        used = ends[offsets[1:]] - ends[offsets[:-1]]
        bad |= sizes != 4 + 4 * want + used
        begin = (at + 4 + 4 * want).tolist()  # where each entity's item bytes begin
        joined = b"".join([data[a : a + u] for a, u in zip(begin, used.tolist(), strict=True)])
        text = s.item == "String"
        return Items(offsets, data=joined, starts=ends[:-1], ends=ends[1:], text=text)

    def rows(self, value: bytes) -> list[list[Any]] | None:
        """One value's fields as the lists the group's rows hold (for tests and tools); None
        for a value of another layout. Raises ValueError for one that cannot be decoded."""
        batch = self.decode([value])
        if batch.other:
            return None
        if batch.corrupt:
            raise ValueError("the value cannot be decoded")
        records = batch.records
        out: list[list[Any]] = [records["tile"].tolist()]
        for s in self.states:
            if s.in_record:
                column = records[f"s{s.position}"].tolist()
            else:
                items = batch.items[s.position]
                column = items.get(range(int(items.offsets[-1])))
            if s.nullable:
                valid = records[f"v{s.position}"].tolist()
                column = [x if ok else None for x, ok in zip(column, valid, strict=True)]
            out.append(column)
        return out


def _flat(batch: pa.RecordBatch | pa.Table, name: str, item: pa.DataType) -> tuple[pa.Array, np.ndarray]:
    """A List column's items (cast to ``item``) and each row's offsets into them, from 0."""
    column = batch.column(name)
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_timestamp(column.type.value_type):
        column = column.cast(pa.list_(pa.timestamp("us", tz="UTC"))).cast(pa.list_(pa.int64()))
    lists = column.cast(pa.list_(item))
    offsets = lists.offsets.to_numpy().astype(np.int64)
    items = lists.values.slice(offsets[0], offsets[-1] - offsets[0])
    return items, offsets - offsets[0]


def _rows(n: int, offsets: np.ndarray, payload: bytes) -> pa.Array:
    return _binary_rows(n, np.asarray(offsets, dtype=np.int64), payload)

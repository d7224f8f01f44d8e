"""The value stored for one (entity, view): a fixed header, then the view's features.

Layout (little-endian)::

    event_ts_us  int64   newest event time of the row written
    created_us   int64   its created time (-2**62 when the source has none)
    run_id       uint24  the materialization run that wrote it (lineage)
    format       uint8   the value format version (``FORMAT_VERSION``)
    layout       uint32  hash of the view's feature list and types
    nulls        ceil(F/8) bytes, bit i set when feature i is null
    fixed-width features in schema order (Int32/Int64/Float32/Float64/Bool/Timestamp)
    variable-width features in schema order: uint32 length, then bytes (String/Bytes/List)

A list of fixed-width items (numbers, Bool as one byte, Timestamp as microseconds) is its
items, little-endian, a null item stored as 0. A list of String or Bytes is a uint32 item
count k, k uint32 item lengths, then the items' bytes (a null item is empty). A list holding
a null item sets the length's high bit (``LIST_HAS_NULLS``) and appends a validity bitmap
after the items: ceil(k/8) bytes, bit j (least significant first, as Arrow) set when item j
is valid; for fixed-width items the length counts items and bitmap, so
k = 8 * length // (8 * item width + 1). Lists without nulls are laid out exactly as before
the bitmap existed, so values written then still decode.

The format version is the top byte of the little-endian word whose low 24 bits are the run
id. Values written before it existed have 0 there (run ids stay below 2**24), which is the
format this code reads and writes, so they still decode, and a server on older code reads
values of this code unchanged. A value of a format this code does not know (a newer one)
decodes as corrupt (CORRUPT for its entity), never as a misread value; a format change
bumps ``FORMAT_VERSION`` and teaches the reader both.

The header leads so that the newer-wins script compares two values without decoding them,
and the layout hash tells a reader which feature list the value was written with: a
reader decodes it by that list (lookup.py keeps those of earlier registry versions), or
leaves it alone, instead of misreading it. Encoding is vectorized over an Arrow batch;
decoding is one ``struct`` call per value plus a walk over the variable-width part, which
also checks that the value ends where its last feature does (else it is corrupt).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from featurestore.definitions import FeatureView, Field
from featurestore.errors import DefinitionError

HEADER = struct.Struct("<qqII")  # event_ts_us, created_us, run word (run id | format << 24), layout
NO_CREATED = -(2**62)
FORMAT_VERSION = 0  # the value format this code writes and reads (see the module docstring)
RUN_BITS = 24  # the run word's low bits hold the run id, the byte above them the format
MAX_RUN_ID = (1 << RUN_BITS) - 1
# The run id of values written by a push (FeatureStore.push), not by a materialization: the
# rows are in the view's push log, and lineage names them "pushed".
PUSHED_RUN_ID = MAX_RUN_ID
# Byte ranges of the header's fields, for readers that slice stored values (tests, tools).
EVENT_TS_BYTES = slice(0, 8)
CREATED_BYTES = slice(8, 16)
RUN_ID_BYTES = slice(16, 19)
FORMAT_BYTE = 19
LAYOUT_BYTES = slice(20, 24)

# Fixed-width dtypes: struct code, numpy dtype.
_FIXED: dict[str, tuple[str, str]] = {
    "Int32": ("i", "<i4"),
    "Int64": ("q", "<i8"),
    "Float32": ("f", "<f4"),
    "Float64": ("d", "<f8"),
    "Bool": ("?", "u1"),
    "Timestamp": ("q", "<i8"),
}
_LIST_ITEMS: dict[str, str] = {
    "Int32": "<i4",
    "Int64": "<i8",
    "Float32": "<f4",
    "Float64": "<f8",
    "Bool": "u1",
    "Timestamp": "<i8",
}
_BINARY_ITEMS = ("String", "Bytes")  # list items of variable width
_U32 = struct.Struct("<I")
LIST_HAS_NULLS = 1 << 31  # in a variable-width length: a validity bitmap follows the list's items
LENGTH_MASK = LIST_HAS_NULLS - 1


def _is_variable(f: Field) -> bool:
    return f.dtype.name not in _FIXED


@dataclass(frozen=True)
class Decoded:
    """One decoded value: its header and its features (by position in the view's schema)."""

    event_ts_us: int
    created_us: int
    run_id: int
    values: tuple[Any, ...]


@dataclass(frozen=True)
class ViewSchema:
    """A view's name and features as an earlier registry version had them: enough to decode
    the values written then."""

    name: str
    features: tuple[Field, ...]


class ViewCodec:
    """Encodes and decodes the values of one feature view; built once per registry version."""

    def __init__(self, view: FeatureView | ViewSchema) -> None:
        self.view = view
        self.features: tuple[Field, ...] = tuple(view.features)
        for f in self.features:
            name = f.dtype.name
            item = name[5:-1] if name.startswith("List(") else None
            servable = name in _FIXED or name in _BINARY_ITEMS or item in (*_LIST_ITEMS, *_BINARY_ITEMS)
            if not servable:
                raise DefinitionError(
                    [
                        f"feature view {view.name!r}: feature {f.name!r} of type {f.dtype.name} "
                        "cannot be served online"
                    ]
                )
        self.fixed = [f for f in self.features if not _is_variable(f)]
        self.variable = [f for f in self.features if _is_variable(f)]
        self.null_bytes = (len(self.features) + 7) // 8
        spec = ";".join(f"{f.name}:{f.dtype.name}" for f in self.features)
        self.layout = zlib.crc32(spec.encode())
        self._fixed_struct = struct.Struct(
            "<" + f"{self.null_bytes}s" + "".join(_FIXED[f.dtype.name][0] for f in self.fixed)
        )
        self._order = [self.features.index(f) for f in self.fixed + self.variable]
        self._fixed_index = {self.features.index(f): i for i, f in enumerate(self.fixed)}
        # (position in features, field) of each variable-width feature, in stored order: made
        # once here, since finding them per lookup cost O(features^2) comparisons of fields
        self._variable_slots = [(i, f) for i, f in enumerate(self.features) if _is_variable(f)]
        # header, null bitmap and fixed-width features: the prefix every value starts with
        self._prefix = struct.Struct(HEADER.format + self._fixed_struct.format[1:])
        self.prefix_size = self._prefix.size  # where the variable-width features begin
        # feature name -> (byte offset in the value, width), for readers that slice values
        self.fixed_slots: dict[str, tuple[int, int]] = {}
        offset = HEADER.size + self.null_bytes
        for f in self.fixed:
            width = struct.calcsize("<" + _FIXED[f.dtype.name][0])
            self.fixed_slots[f.name] = (offset, width)
            offset += width
        self._numpy = np.dtype(
            [("h", "u1", HEADER.size), ("n", "u1", self.null_bytes)]
            + [(f"f{i}", _FIXED[f.dtype.name][1]) for i, f in enumerate(self.fixed)]
        )

    # -- encoding (materialization) ------------------------------------------------------

    def encode(
        self, batch: pa.RecordBatch | pa.Table, event_us: np.ndarray, created_us: np.ndarray, run_id: int
    ) -> pa.Array:
        """One binary value per row of ``batch`` (which holds the view's feature columns)."""
        if not 0 <= run_id <= MAX_RUN_ID:  # its top byte is the format version
            raise ValueError(f"run id {run_id} does not fit the value header (at most {MAX_RUN_ID})")
        n = batch.num_rows
        rec = np.zeros(n, dtype=self._numpy)
        header = np.zeros(n, dtype=np.dtype([("e", "<i8"), ("c", "<i8"), ("r", "<u4"), ("l", "<u4")]))
        header["e"] = event_us
        header["c"] = created_us
        header["r"] = run_id | FORMAT_VERSION << RUN_BITS
        header["l"] = self.layout
        rec["h"] = header.view(np.uint8).reshape(n, HEADER.size)
        nulls = np.zeros((n, self.null_bytes), dtype=np.uint8)
        for i, f in enumerate(self.features):
            column = _column(batch, f.name)
            if column.null_count:
                isnull = column.is_null().to_numpy(zero_copy_only=False).astype(np.uint8)
                nulls[:, i // 8] |= isnull << (i % 8)
        rec["n"] = nulls
        for i, f in enumerate(self.fixed):
            rec[f"f{i}"] = _fixed_numpy(_column(batch, f.name), f)
        fixed = pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(self._numpy.itemsize), n, [None, pa.py_buffer(rec.tobytes())]
        )
        parts: list[pa.Array] = [fixed.cast(pa.binary())]
        for f in self.variable:
            data, with_nulls = _variable_binary(_column(batch, f.name), f)
            lengths = pc.binary_length(data).to_numpy(zero_copy_only=False).astype("<u4")
            if with_nulls is not None:
                lengths |= with_nulls.astype("<u4") << 31
            prefix = pa.FixedSizeBinaryArray.from_buffers(
                pa.binary(4), n, [None, pa.py_buffer(lengths.tobytes())]
            )
            parts += [prefix.cast(pa.binary()), data]
        if len(parts) == 1:
            return parts[0]
        return pc.binary_join_element_wise(*parts, b"")

    # -- decoding (serving) ----------------------------------------------------------------

    def decode_columns(self, values: Sequence[bytes], positions: Sequence[int]) -> DecodedColumns:
        """Decode many values at once, keeping only the features at ``positions``.

        The fixed-width part of every value is read as one numpy structured array, so the
        cost per value is a slice and a join; only variable-width features walk each value.
        Values written under another layout come back in ``other``; values that cannot be
        decoded (of an unknown format version, cut short, with bytes to spare, or a requested
        feature that does not parse) in ``corrupt``.
        """
        size = self._prefix.size
        good = [i for i, v in enumerate(values) if len(v) >= size]
        other: list[int] = []
        corrupt: list[int] = []
        if len(good) < len(values):  # too short for this layout: written under another, or cut short
            for i, v in enumerate(values):
                if len(v) < size:
                    known = format_of(v) == FORMAT_VERSION
                    (other if known and layout_of(v) != self.layout else corrupt).append(i)
        # One C-level unpack of every fixed-width prefix, then a transpose into columns.
        rows = list(self._prefix.iter_unpack(b"".join([values[i][:size] for i in good])))
        layout = self.layout
        if any(row[3] != layout or row[2] >> RUN_BITS != FORMAT_VERSION for row in rows):
            # a format this code does not know is corrupt, whatever its layout says
            corrupt += [good[j] for j, row in enumerate(rows) if row[2] >> RUN_BITS != FORMAT_VERSION]
            rows_known = [(j, row) for j, row in enumerate(rows) if row[2] >> RUN_BITS == FORMAT_VERSION]
            other += [good[j] for j, row in rows_known if row[3] != self.layout]
            keep = [j for j, row in rows_known if row[3] == self.layout]
            good = [good[j] for j in keep]
            rows = [rows[j] for j in keep]
        wanted_var = {p for p in positions if _is_variable(self.features[p])}
        if self.variable:  # every value is walked to its end: whole, or corrupt
            variable, bad = self._walk_variable([values[i] for i in good], wanted_var)
        else:
            variable, bad = {}, [j for j, i in enumerate(good) if len(values[i]) != size]
        if bad:
            corrupt += [good[j] for j in bad]
            keep = sorted(set(range(len(good))) - set(bad))
            good = [good[j] for j in keep]
            rows = [rows[j] for j in keep]
        fields = list(zip(*rows, strict=True)) if rows else [()] * (5 + len(self.fixed))
        nulls = fields[4]
        zero = bytes(self.null_bytes)
        null_rows = [j for j, b in enumerate(nulls) if b != zero]
        columns: list[list[Any]] = []
        for p in positions:
            column = variable[p] if p in variable else list(fields[5 + self._fixed_index[p]])
            for j in null_rows:
                if nulls[j][p // 8] >> (p % 8) & 1:
                    column[j] = None
            columns.append(column)
        # every kept word is of FORMAT_VERSION: while that is 0, the word is the run id
        runs = list(fields[2]) if FORMAT_VERSION == 0 else [w & MAX_RUN_ID for w in fields[2]]
        return DecodedColumns(good, sorted(other), sorted(corrupt), list(fields[0]), runs, columns)

    def _walk_variable(
        self, values: Sequence[bytes], wanted: set[int]
    ) -> tuple[dict[int, list[Any]], list[int]]:
        """The ``wanted`` variable-width features of each value, and the values that do not
        parse: a length past the end, bytes left over, or a wanted feature malformed."""
        out: dict[int, list[Any]] = {p: [] for p in wanted}
        bad: list[int] = []
        start = self._prefix.size
        slots = self._variable_slots
        for j, value in enumerate(values):
            pos, row = start, []
            try:
                for slot, f in slots:
                    (length,) = _U32.unpack_from(value, pos)
                    pos += 4
                    size = length & LENGTH_MASK
                    if pos + size > len(value):
                        raise ValueError("a length past the end of the value")
                    if slot in wanted:
                        row.append((slot, _decode_variable(value[pos : pos + size], f, length != size)))
                    pos += size
                if pos != len(value):
                    raise ValueError("bytes after the last feature")
            except (struct.error, ValueError):  # UnicodeDecodeError is a ValueError
                bad.append(j)
                continue
            for slot, v in row:
                out[slot].append(v)
        return out, bad

    def decode(self, value: bytes) -> Decoded | None:
        """The value's header and features, or None if it was written under another layout.

        Raises ValueError for a value of a format version this code does not know."""
        event_us, created_us, word, layout = HEADER.unpack_from(value, 0)
        if word >> RUN_BITS != FORMAT_VERSION:
            raise ValueError(f"value format version {word >> RUN_BITS} is not {FORMAT_VERSION}")
        if layout != self.layout:
            return None
        run_id = word & MAX_RUN_ID
        fixed = self._fixed_struct.unpack_from(value, HEADER.size)
        nulls = fixed[0]
        ordered: list[Any] = list(fixed[1:])
        pos = HEADER.size + self._fixed_struct.size
        for f in self.variable:
            (length,) = _U32.unpack_from(value, pos)
            pos += 4
            size = length & LENGTH_MASK
            ordered.append(_decode_variable(value[pos : pos + size], f, length != size))
            pos += size
        values: list[Any] = [None] * len(self.features)
        for slot, v in zip(self._order, ordered, strict=True):
            values[slot] = None if nulls[slot // 8] >> (slot % 8) & 1 else v
        return Decoded(event_us, created_us, run_id, tuple(values))


@dataclass(frozen=True)
class DecodedColumns:
    """Many decoded values: ``good[j]`` is the input index of row ``j`` of each list."""

    good: list[int]
    other: list[int]  # input indices of values written under another layout
    corrupt: list[int]  # input indices of values that cannot be decoded
    event_ts_us: list[int]
    run_ids: list[int]
    columns: list[list[Any]]  # one per requested position, one entry per good value
    earlier: bool = False  # some rows were decoded by an earlier layout (see lookup.py)


def layout_of(value: bytes) -> int | None:
    """The layout hash a stored value was written under; None if it is too short to say."""
    return HEADER.unpack_from(value, 0)[3] if len(value) >= HEADER.size else None


def format_of(value: bytes) -> int | None:
    """The format version a stored value was written in; None if it is too short to say."""
    return value[FORMAT_BYTE] if len(value) >= HEADER.size else None


def header_of(value: bytes) -> tuple[int, int, int]:
    """(event_ts_us, created_us, run_id) of a stored value."""
    event_us, created_us, word, _ = HEADER.unpack_from(value, 0)
    return event_us, created_us, word & MAX_RUN_ID


def with_header(
    value: bytes,
    *,
    event_ts_us: int | None = None,
    created_us: int | None = None,
    run_id: int | None = None,
    format_version: int | None = None,
    layout: int | None = None,
) -> bytes:
    """``value`` with the given header fields replaced (the rest kept): for tests and tools."""
    event, created, word, old_layout = HEADER.unpack_from(value, 0)
    run = word & MAX_RUN_ID if run_id is None else run_id
    version = word >> RUN_BITS if format_version is None else format_version
    header = HEADER.pack(
        event if event_ts_us is None else event_ts_us,
        created if created_us is None else created_us,
        run | version << RUN_BITS,
        old_layout if layout is None else layout,
    )
    return header + value[HEADER.size :]


def _column(batch: pa.RecordBatch | pa.Table, name: str) -> pa.Array:
    column = batch.column(name)
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def _fixed_numpy(column: pa.Array, f: Field) -> np.ndarray:
    if f.dtype.name == "Timestamp":
        column = pc.cast(column, pa.timestamp("us", tz="UTC")).cast(pa.int64())
    elif f.dtype.name == "Bool":
        column = column.cast(pa.uint8())
    else:
        column = column.cast(f.dtype.arrow)
    if column.null_count:
        column = column.fill_null(0)
    return column.to_numpy(zero_copy_only=False)


def _variable_binary(column: pa.Array, f: Field) -> tuple[pa.Array, np.ndarray | None]:
    """Each row's bytes, and (only when some list holds a null item) which rows have a bitmap."""
    if f.dtype.name in ("String", "Bytes"):
        data = column.cast(pa.binary())
        return (data.fill_null(b"") if data.null_count else data), None
    inner = f.dtype.name[5:-1]
    if inner in _BINARY_ITEMS:
        lists = column.cast(pa.list_(pa.large_binary()))
    elif inner == "Timestamp":
        lists = column.cast(pa.list_(pa.timestamp("us", tz="UTC"))).cast(pa.list_(pa.int64()))
    else:
        lists = column.cast(pa.list_(pa.from_numpy_dtype(np.dtype(_LIST_ITEMS[inner]))))
    offsets = lists.offsets.to_numpy().astype(np.int64)
    # .values ignores the array's slice (and .flatten() skips items behind null lists): the
    # offsets say which items are whose
    items = lists.values.slice(offsets[0], offsets[-1] - offsets[0])
    offsets -= offsets[0]
    if inner in _BINARY_ITEMS:
        data = _binary_list_rows(items, offsets)
    else:  # fixed-width items: their bytes, sliced per row by the offsets
        item = np.dtype(_LIST_ITEMS[inner])
        flat = items.fill_null(0) if items.null_count else items
        flat_np = flat.to_numpy(zero_copy_only=False).astype(item, copy=False)
        data = _binary_rows(len(lists), offsets * item.itemsize, flat_np.tobytes())
    with_nulls = None
    if items.null_count:
        data, with_nulls = _append_validity(data, items, offsets)
    return (data.fill_null(b"") if data.null_count else data), with_nulls


def _binary_list_rows(items: pa.Array, offsets: np.ndarray) -> pa.Array:
    """Each list of String/Bytes items: its item count, each item's length, the items' bytes."""
    flat = items.fill_null(b"") if items.null_count else items
    lengths = pc.binary_length(flat).to_numpy(zero_copy_only=False).astype(np.int64)
    item_offsets = np.concatenate(([0], np.cumsum(lengths)))  # each item's start in the payload
    whole = pa.LargeListArray.from_arrays(pa.array([0, len(flat)], pa.int64()), flat)
    # every item's bytes, one after another
    payload = pc.binary_join(whole, pa.scalar(b"", pa.large_binary()))[0].as_py()
    n = len(offsets) - 1
    parts = [
        _binary_rows(n, np.arange(n + 1, dtype=np.int64) * 4, np.diff(offsets).astype("<u4").tobytes()),
        _binary_rows(n, offsets * 4, lengths.astype("<u4").tobytes()),
        _binary_rows(n, item_offsets[offsets], payload),
    ]
    return pc.binary_join_element_wise(*parts, b"")


def _binary_rows(n: int, offsets: np.ndarray, payload: bytes) -> pa.Array:
    return pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), n, [None, pa.py_buffer(offsets.tobytes()), pa.py_buffer(payload)]
    ).cast(pa.binary())


def _append_validity(data: pa.Array, items: pa.Array, offsets: np.ndarray) -> tuple[pa.Array, np.ndarray]:
    """Append to each list holding a null item its validity bitmap (vectorized over items)."""
    valid = items.is_valid().to_numpy(zero_copy_only=False)
    invalid_before = np.concatenate(([0], np.cumsum(~valid)))
    starts, counts = offsets[:-1], np.diff(offsets)
    with_nulls = invalid_before[offsets[1:]] > invalid_before[starts]
    sizes = np.where(with_nulls, (counts + 7) // 8, 0)
    bitmap_offsets = np.concatenate(([0], np.cumsum(sizes)))
    row = np.repeat(np.arange(len(counts)), counts)  # each item's list
    local = np.arange(len(valid)) - starts[row]  # each item's index in its list
    mine = with_nulls[row] & valid
    bitmaps = np.zeros(int(bitmap_offsets[-1]), dtype=np.uint8)
    np.bitwise_or.at(
        bitmaps, bitmap_offsets[row[mine]] + local[mine] // 8, (1 << (local[mine] % 8)).astype(np.uint8)
    )
    validity = _binary_rows(len(counts), bitmap_offsets, bitmaps.tobytes())
    return pc.binary_join_element_wise(data, validity, b""), with_nulls


def _decode_variable(raw: bytes, f: Field, with_nulls: bool = False) -> Any:
    name = f.dtype.name
    if name == "String":
        return raw.decode()
    if name == "Bytes":
        return raw
    inner = name[5:-1]
    values: list[Any]
    if inner in _BINARY_ITEMS:
        (k,) = _U32.unpack_from(raw, 0)
        lengths = np.frombuffer(raw, dtype="<u4", count=k, offset=4)
        bounds = np.concatenate(([4 + 4 * k], 4 + 4 * k + np.cumsum(lengths, dtype=np.int64))).tolist()
        values = [raw[bounds[j] : bounds[j + 1]] for j in range(k)]
        if inner == "String":
            values = [v.decode() for v in values]
        end = bounds[-1]
    else:
        item = np.dtype(_LIST_ITEMS[inner])
        k = 8 * len(raw) // (8 * item.itemsize + 1) if with_nulls else len(raw) // item.itemsize
        items = np.frombuffer(raw, dtype=item, count=k)
        values = (items.astype(bool) if inner == "Bool" else items).tolist()
        end = k * item.itemsize
    if not with_nulls:
        if end != len(raw):
            raise ValueError(f"{len(raw)} bytes are not a whole list")
        return values
    if len(raw) != end + (k + 7) // 8:
        raise ValueError(f"{len(raw)} bytes are not a list with its validity bitmap")
    bitmap = np.frombuffer(raw, dtype=np.uint8, offset=end)
    for j in np.flatnonzero(np.unpackbits(bitmap, count=k, bitorder="little") == 0).tolist():
        values[j] = None
    return values


def encode_created(created: pa.Array | None, n: int) -> np.ndarray:
    """Created timestamps as microseconds, ``NO_CREATED`` where there are none."""
    if created is None:
        return np.full(n, NO_CREATED, dtype=np.int64)
    micros = pc.cast(created, pa.timestamp("us", tz="UTC")).cast(pa.int64())
    return micros.fill_null(NO_CREATED).to_numpy(zero_copy_only=False)


def timestamps_us(column: pa.Array) -> np.ndarray:
    return pc.cast(column, pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_numpy(zero_copy_only=False)

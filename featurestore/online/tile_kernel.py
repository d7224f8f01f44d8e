"""Tile values combined for a lookup by the compiled kernel (``_tiles.c``): each value
decoded and its tiles combined in one pass, the results built as the Python values a lookup
returns (tiles.py says which tiles a window covers; tile_codec.py, the value layout).

What a window's value is, exactly (the order of float additions fixes its bits):
- count, sum: the tiles' counts and sums added in tile order (ints wrap as int64; a float
  sum starts at 0.0); a sum or min of no non-null tile state is null;
- mean: the tiles' sums over the tiles' counts (the count as a double);
- variance/stddev: the tiles' (count, mean, m2) merged in the parallel form of Chan et al.:
  the window's mean first (sum of count * mean over the count), then m2 = sum(m2_i +
  c_i * (mean_i - mean)^2), max(m2, 0) / (n - 1), null below 2 values; stddev is its
  ``** 0.5``;
- min/max: a NaN wins (as np.minimum), of equal values (-0.0, 0.0) the oldest; String/Bytes
  by their bytes (UTF-8 orders as text); first/last: the oldest/newest non-null tile state;
- last_n: the newest n values, tiles newest first (each tile's values are stored newest
  first); count_distinct: distinct values (-0.0 and 0.0 one value, all NaNs one);
- approx_count_distinct: the k smallest distinct hashes of the tiles' sketches, estimated by
  sketch.py's one formula.

tests/online/numpy_combine.py is the same combine in vectorized NumPy (the lookup's, before
this kernel): test_tile_kernel.py checks that both give the same bits, damaged values included.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from featurestore.offline import sketch
from featurestore.online import _tiles
from featurestore.online.codec import FORMAT_VERSION, RUN_BITS

if TYPE_CHECKING:
    from featurestore.online.tile_codec import TileCodec

_KINDS = ("Int32", "Int64", "Float32", "Float64", "Bool", "Timestamp", "String", "Bytes")
_FUNCTIONS = (
    "count", "sum", "mean", "variance", "stddev", "min", "max", "first", "last", "last_n",
    "count_distinct", "approx_count_distinct",
)  # fmt: skip


class Combined:
    """One group's values at one ``now``: ``results[a][g]`` is aggregation ``a`` of the
    ``g``-th good value; ``good``, ``other`` and ``corrupt`` index the input; ``damaged``
    indexes ``good`` (a String item that is not UTF-8)."""

    __slots__ = ("good", "other", "corrupt", "event_ts_us", "run_ids", "results", "damaged")

    def __init__(self, parts: tuple[Any, ...]) -> None:
        self.good, self.other, self.corrupt, self.event_ts_us, self.run_ids, self.results, damaged = parts
        self.damaged: set[int] = set(damaged)


def spec(codec: TileCodec) -> tuple[Any, ...]:
    """What the kernel needs of a group's layout: its record's offsets, states and steps."""
    fields = codec.record.fields
    assert fields is not None  # a structured dtype
    variable = [s.position for s in codec.variable]
    states = tuple(
        (
            _KINDS.index(s.item),
            int(s.per_tile),
            int(s.nullable),
            fields[f"s{s.position}"][1] if s.in_record else -1,
            fields[f"v{s.position}"][1] if s.nullable else -1,
            variable.index(s.position) if not s.in_record else -1,
        )
        for s in codec.states
    )
    steps = tuple(
        (_FUNCTIONS.index(a.function), at, span, (a.n if a.function == "last_n" else a.k) or 0)
        for a, at, span in codec.group.steps
    )
    return (codec.layout, codec.record.itemsize, FORMAT_VERSION, RUN_BITS, states, tuple(variable), steps)


def combine(codec: TileCodec, values: Sequence[bytes], now_us: int) -> Combined:
    """Decode ``values`` (one group's) and combine each aggregation's window ending at ``now``."""
    group = codec.group
    last = None if group.hop_us is None else group.tile_of(now_us)
    out = Combined(_tiles.combine(codec.kernel_spec, values, last))
    for i, a in enumerate(group.aggregations):  # the sketch's estimate: one formula (sketch.py)
        if a.function == "approx_count_distinct" and out.results[i]:
            assert a.k is not None
            distinct, kth = np.array(out.results[i], dtype=np.int64).T
            out.results[i] = sketch.estimate(distinct, kth, a.k).tolist()
    return out

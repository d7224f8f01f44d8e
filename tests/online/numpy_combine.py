"""The NumPy reference of the lookup's compiled kernel (featurestore/online/tile_kernel.py):
the same combine written as vectorized NumPy, which served lookups until the kernel replaced
it (a lookup of 100 entities made a few hundred NumPy calls, ~2 us each in fixed costs).
test_tile_kernel.py checks that both give the same bits. Each aggregation's value at ``now``
for every decoded value of a lookup (tiles.py says which tiles a window covers).

Each function is a few NumPy calls over the records of all entities joined (``TileBatch``):
a mask of the tiles in the window ``(J - span, J]``, then per-entity sums by ``bincount``
(floats added in tile order, as a Python loop would) or by differences of an int64 cumulative
sum (exact: wrapping cancels out for any total that fits), minima by ``reduceat``. Only
String/Bytes values (min/max, count_distinct) and the final lists are handled per entity in
Python. Variances merge the tiles' (count, mean, m2) with the parallel form of Chan et al.:
the window's mean first, then m2 = sum(m2_i + c_i * (mean_i - mean)^2), equal to the
pairwise merge within rounding.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from featurestore.definitions import Aggregation
from featurestore.offline import sketch
from featurestore.online.tile_codec import Items, TileBatch, TileCodec
from featurestore.online.tiles import TileGroup

_FLOATS = ("Float32", "Float64")


class _Context:
    """One batch at one ``now``: its records, masks per window and entities found damaged."""

    def __init__(self, codec: TileCodec, batch: TileBatch) -> None:
        self.codec = codec
        self.batch = batch
        self.n = batch.n
        self.records = batch.records
        self.entity = batch.entity
        self.starts = batch.starts
        self.corrupt: set[int] = set()

    def state(self, position: int) -> np.ndarray:
        return self.records[f"s{position}"]

    def valid(self, position: int) -> np.ndarray:
        return self.records[f"v{position}"]

    def count(self, mask: np.ndarray) -> np.ndarray:
        """Records in ``mask`` per entity."""
        return np.bincount(self.entity[mask], minlength=self.n)

    def int_sum(self, values: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Exact per-entity sums of int64 ``values`` in ``mask``."""
        total = np.zeros(len(values) + 1, dtype=np.int64)
        np.cumsum(np.where(mask, values, 0), out=total[1:])
        return total[self.starts[1:]] - total[self.starts[:-1]]

    def float_sum(self, values: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Per-entity sums of float ``values`` in ``mask``, added in record order."""
        return np.bincount(self.entity[mask], weights=values[mask], minlength=self.n)

    def texts(self, items: Items, indices: np.ndarray, entities: np.ndarray) -> list[Any]:
        """String/Bytes items as Python values; an item that does not decode marks its entity."""
        try:
            return items.get(indices)
        except UnicodeDecodeError:
            out: list[Any] = []
            for i, e in zip(indices.tolist(), entities.tolist(), strict=True):
                try:
                    out += items.get([i])
                except UnicodeDecodeError:
                    self.corrupt.add(e)
                    out.append(None)
            return out

    def item_records(self, position: int) -> np.ndarray:
        """For a values state at ``position``: each item's record (its counts follow it)."""
        counts = self.state(position + 1).astype(np.int64)
        return np.repeat(np.arange(len(counts)), counts)


_Function = Callable[[_Context, Aggregation, int, np.ndarray], list[Any]]


def combine(
    group: TileGroup, codec: TileCodec, batch: TileBatch, now_us: int
) -> tuple[list[list[Any]], set[int]]:
    """Each aggregation's values (one list per aggregation, one item per entity of ``batch``)
    at ``now``, and the entities whose values turned out damaged."""
    ctx = _Context(codec, batch)
    tiles = batch.records["tile"]
    masks: dict[int, np.ndarray] = {}
    if group.hop_us is not None:
        last = group.tile_of(now_us)
        below = tiles <= last
    out = []
    for a, at, span in group.steps:
        if span not in masks and group.hop_us is None:
            masks[span] = np.ones(len(tiles), dtype=bool)
        elif span not in masks:
            masks[span] = below & (tiles > last - span)
        out.append(_FUNCTIONS[a.function](ctx, a, at, masks[span]))
    return out, ctx.corrupt


def _present(values: list[Any], counts: np.ndarray) -> list[Any]:
    return [v if c else None for v, c in zip(values, counts.tolist(), strict=True)]


def _count(ctx: _Context, a: Aggregation, at: int, mask: np.ndarray) -> list[Any]:
    return ctx.int_sum(ctx.state(at), mask).tolist()


def _sum(ctx: _Context, a: Aggregation, at: int, mask: np.ndarray) -> list[Any]:
    mask = mask & ctx.valid(at)
    values = ctx.state(at)
    if ctx.codec.by_position[at].item in _FLOATS:
        total = ctx.float_sum(values, mask)
    else:
        total = ctx.int_sum(values.astype(np.int64), mask)
    return _present(total.tolist(), ctx.count(mask))


def _mean(ctx: _Context, a: Aggregation, at: int, mask: np.ndarray) -> list[Any]:
    count = ctx.int_sum(ctx.state(at + 1), mask)
    total = ctx.float_sum(ctx.state(at), mask & ctx.valid(at))
    some = count > 0
    # the int64 count converts to double as Python's int / float division does (counts < 2^53)
    mean = np.divide(total, count, out=np.zeros(ctx.n), where=some).tolist()
    return mean if some.all() else _present(mean, count)


def _variance(ctx: _Context, a: Aggregation, at: int, mask: np.ndarray) -> list[Any]:
    count = ctx.state(at)
    mask = mask & (count > 0) & ctx.valid(at + 1) & ctx.valid(at + 2)
    entity = ctx.entity[mask]
    c = count[mask].astype(np.float64)
    means = ctx.state(at + 1)[mask]
    n = np.bincount(entity, weights=c, minlength=ctx.n)
    some = n > 0  # divide only there: no warning to silence (np.errstate costs ~10 us a call)
    weighted = np.bincount(entity, weights=c * means, minlength=ctx.n)
    mean = np.divide(weighted, n, out=np.zeros(ctx.n), where=some)
    deviation = means - mean[entity]
    m2 = np.bincount(entity, weights=ctx.state(at + 2)[mask] + c * deviation * deviation, minlength=ctx.n)
    # max(s, 0) / (k - 1) as Python would (IEEE division, NaN kept), None below 2 values
    two = n >= 2
    variance = np.divide(np.maximum(m2, 0.0), n - 1, out=np.zeros(ctx.n), where=two).tolist()
    if two.all():
        return variance
    return [v if k else None for v, k in zip(variance, two.tolist(), strict=True)]


def _stddev(ctx: _Context, a: Aggregation, at: int, mask: np.ndarray) -> list[Any]:
    # ``** 0.5`` in Python (C pow), not NumPy's sqrt or SIMD power: the same bits as before
    return [None if v is None else v**0.5 for v in _variance(ctx, a, at, mask)]


def _extreme(ctx: _Context, at: int, mask: np.ndarray, smallest: bool) -> list[Any]:
    mask = mask & ctx.valid(at)
    if ctx.codec.by_position[at].binary:  # String: per entity, on the bytes (UTF-8 orders as text)
        items = ctx.batch.items[at]
        picked = np.flatnonzero(mask)
        best: dict[int, bytes] = {}
        pick = min if smallest else max
        for e, raw in zip(ctx.entity[picked].tolist(), items.raw(picked), strict=True):
            best[e] = pick(best[e], raw) if e in best else raw
        entities = np.fromiter(best, np.int64, len(best))
        chosen = Items(items.offsets, data=b"".join(best.values()), text=items.text)
        sizes = np.fromiter((len(v) for v in best.values()), np.int64, len(best))
        chosen.ends = np.cumsum(sizes)
        chosen.starts = chosen.ends - sizes
        out: list[Any] = [None] * ctx.n
        for e, v in zip(entities.tolist(), ctx.texts(chosen, np.arange(len(best)), entities), strict=True):
            out[e] = v
        return out
    values = ctx.state(at)
    present = ctx.count(mask)
    has_tiles = np.diff(ctx.starts) > 0
    nonempty = ctx.starts[:-1][has_tiles]
    if not len(nonempty):
        return [None] * ctx.n
    if values.dtype.kind == "f":
        fill = np.inf if smallest else -np.inf
    else:
        info = np.iinfo(values.dtype)
        fill = info.max if smallest else info.min
    ufunc = np.minimum if smallest else np.maximum
    reduced = ufunc.reduceat(np.where(mask, values, fill), nonempty)
    out_values = np.zeros(ctx.n, dtype=values.dtype)
    out_values[has_tiles] = reduced
    return _present(out_values.tolist(), present)


def _min(ctx: _Context, a: Aggregation, at: int, mask: np.ndarray) -> list[Any]:
    return _extreme(ctx, at, mask, smallest=True)


def _max(ctx: _Context, a: Aggregation, at: int, mask: np.ndarray) -> list[Any]:
    return _extreme(ctx, at, mask, smallest=False)


def _end(ctx: _Context, at: int, mask: np.ndarray, first: bool) -> list[Any]:
    picked = np.flatnonzero(mask & ctx.valid(at))
    out: list[Any] = [None] * ctx.n
    if not len(picked):
        return out
    entity = ctx.entity[picked]
    edge = entity[1:] != entity[:-1]
    chosen = picked[np.concatenate(([True], edge)) if first else np.concatenate((edge, [True]))]
    entities = ctx.entity[chosen]
    if ctx.codec.by_position[at].binary:
        values = ctx.texts(ctx.batch.items[at], chosen, entities)
    else:
        values = ctx.state(at)[chosen].tolist()
    for e, v in zip(entities.tolist(), values, strict=True):
        out[e] = v
    return out


def _first(ctx: _Context, a: Aggregation, at: int, mask: np.ndarray) -> list[Any]:
    return _end(ctx, at, mask, first=True)


def _last(ctx: _Context, a: Aggregation, at: int, mask: np.ndarray) -> list[Any]:
    return _end(ctx, at, mask, first=False)


def _last_n(ctx: _Context, a: Aggregation, at: int, mask: np.ndarray) -> list[Any]:
    """The newest n values: tiles newest first, each tile's values stored newest first."""
    assert a.n is not None
    counts = ctx.state(at + 1).astype(np.int64)
    records = ctx.item_records(at)
    inside = np.where(mask, counts, 0)
    total = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(inside, out=total[1:])
    # per record: the values in the window in the entity's later records
    later = total[ctx.starts[1:]][ctx.entity] - total[1:]
    first_item = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=first_item[1:])
    rank = later[records] + np.arange(len(records)) - first_item[records]
    picked = np.flatnonzero(mask[records] & (rank < a.n))
    entity = ctx.entity[records[picked]]
    # an entity's picked ranks are 0..k-1: each value's place in the output, without a sort
    sizes = np.bincount(entity, minlength=ctx.n)
    ends = np.cumsum(sizes)
    order = np.empty(len(picked), dtype=np.int64)
    order[ends[entity] - sizes[entity] + rank[picked]] = picked
    items = ctx.batch.items[at]
    values = ctx.texts(items, order, ctx.entity[records[order]]) if items.values is None else items.get(order)
    bounds = ends.tolist()
    return [values[b:e] or None for b, e in zip([0, *bounds[:-1]], bounds, strict=True)]


def _count_distinct(ctx: _Context, a: Aggregation, at: int, mask: np.ndarray) -> list[Any]:
    records = ctx.item_records(at)
    picked = np.flatnonzero(mask[records])
    entity = ctx.entity[records[picked]]
    items = ctx.batch.items[at]
    if items.values is None:  # String/Bytes: distinct bytes are distinct values
        seen: list[set[bytes]] = [set() for _ in range(ctx.n)]
        for e, raw in zip(entity.tolist(), items.raw(picked), strict=True):
            seen[e].add(raw)
        return [len(s) for s in seen]
    values = items.values[picked]
    if not len(values):
        return [0] * ctx.n
    # one sort of (entity, value) as one int64 key: values as their rank among the distinct
    # ones (equal values, -0.0 and 0.0 too, share a rank), or as themselves when they fit
    if values.dtype.kind in "iub":
        low = int(values.min())
        ranks = values.astype(np.int64) - low
        span = int(values.max()) - low + 1
    else:
        distinct, ranks = np.unique(values, return_inverse=True)
        span = len(distinct)
    if span * ctx.n >= 2**62:
        distinct, ranks = np.unique(values, return_inverse=True)
        span = len(distinct)
    keys = np.sort(entity * span + ranks.reshape(-1))
    new = np.ones(len(keys), dtype=bool)
    new[1:] = keys[1:] != keys[:-1]
    return np.bincount(keys[new] // span, minlength=ctx.n).tolist()


def _approx_count_distinct(ctx: _Context, a: Aggregation, at: int, mask: np.ndarray) -> list[Any]:
    """The window's sketch is the k smallest distinct hashes of its tiles' sketches."""
    k = a.k
    assert k is not None
    records = ctx.item_records(at)
    picked = np.flatnonzero(mask[records])
    items = ctx.batch.items[at]
    assert items.values is not None  # Int64 hashes
    if not len(picked):
        return [0] * ctx.n
    entity = ctx.entity[records[picked]]  # ascending: records are in entity order
    counts = np.bincount(entity, minlength=ctx.n)
    width = int(counts.max())
    if ctx.n * width <= GRID_SLACK * len(picked) + 65536:
        distinct, kth = _kth_in_rows(entity, items.values[picked], counts, width, k)
    else:  # one entity holds most of the hashes: a padded matrix would be mostly padding
        distinct, kth = _kth_by_pairs(entity, items.values[picked], ctx.n, k)
    return sketch.estimate(distinct, kth, k).tolist()


# How much padding the matrix of _kth_in_rows may add, per hash: rows of one sort call are
# several times faster than an indirect sort of (entity, hash) pairs.
GRID_SLACK = 4


def _kth_in_rows(
    entity: np.ndarray, hashes: np.ndarray, counts: np.ndarray, width: int, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per entity, its distinct hashes' count and kth smallest: each entity's hashes a row of
    one padded matrix, sorted along its rows."""
    n = len(counts)
    first = np.zeros(n, dtype=np.int64)
    np.cumsum(counts[:-1], out=first[1:])
    grid = np.full((n, width), np.iinfo(np.int64).max, dtype=np.int64)
    grid[entity, np.arange(len(hashes)) - first[entity]] = hashes
    grid.sort(axis=1)  # the padding sorts last (a hash equal to it is the same value)
    new = np.arange(width) < counts[:, None]
    new[:, 1:] &= grid[:, 1:] != grid[:, :-1]
    kth = grid[np.arange(n), np.argmax(np.cumsum(new, axis=1) >= k, axis=1)]
    return new.sum(axis=1), kth


def _kth_by_pairs(entity: np.ndarray, hashes: np.ndarray, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """As _kth_in_rows, by one sort of the (entity, hash) pairs."""
    order = np.lexsort((hashes, entity))
    entity, hashes = entity[order], hashes[order]
    new = np.ones(len(hashes), dtype=bool)
    new[1:] = (hashes[1:] != hashes[:-1]) | (entity[1:] != entity[:-1])
    entity, hashes = entity[new], hashes[new]
    distinct = np.bincount(entity, minlength=n)
    first = np.zeros(n, dtype=np.int64)
    np.cumsum(distinct[:-1], out=first[1:])
    full = distinct >= k
    kth = np.zeros(n, dtype=np.int64)
    kth[full] = hashes[first[full] + k - 1]
    return distinct, kth


_FUNCTIONS: dict[str, _Function] = {
    "count": _count,
    "sum": _sum,
    "mean": _mean,
    "variance": _variance,
    "stddev": _stddev,
    "min": _min,
    "max": _max,
    "first": _first,
    "last": _last,
    "last_n": _last_n,
    "count_distinct": _count_distinct,
    "approx_count_distinct": _approx_count_distinct,
}

"""Aggregation views online: tiles of partial aggregates per entity, combined at lookup.

A view's aggregations are grouped by hop (lifetime windows form a group of their own). For
each entity, one value per group holds the tiles of the last (longest) window: tile ``j``
covers events in ((j - 1) * hop, j * hop], and holds each aggregation's partial state
(a count, a sum, min, first ...). A lookup at time ``now`` combines the tiles j with
``J - window/hop < j <= J``, where ``J = ceil(now / hop)``: exactly the events of the window
ending at ``J * hop``, so the value served is the training-set value at entity time
``ceil(now / hop) * hop``. A lifetime group holds one tile of every event.

A group's value is one row of List columns, encoded by ``ViewCodec`` like any view's value:
``__tiles`` (tile numbers, ascending) and, per aggregation, its state lists with one item per
tile; ``last_n`` and ``count_distinct`` keep their values flattened, with a count per tile.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from itertools import accumulate
from typing import Any

from featurestore.definitions import Aggregation, FeatureView, Field
from featurestore.definitions.types import FLOATS, DType, Float64, Int64, List

TILES = "__tiles"
# A function's combine: (state lists, first tile index, end tile index, n) -> the value.
_Combine = Callable[[Sequence[list[Any]], int, int, int | None], Any]
_US = timedelta(microseconds=1)

# function -> its state parts: (suffix, type of the items: None for the column's state type)
STATES: dict[str, tuple[tuple[str, DType | None], ...]] = {
    "count": (("count", Int64),),
    "sum": (("sum", None),),
    "mean": (("sum", Float64), ("count", Int64)),
    "variance": (("count", Int64), ("mean", Float64), ("m2", Float64)),
    "stddev": (("count", Int64), ("mean", Float64), ("m2", Float64)),
    "min": (("value", None),),
    "max": (("value", None),),
    "first": (("value", None),),
    "last": (("value", None),),
    "last_n": (("values", None), ("counts", Int64)),  # values flattened, newest first per tile
    "count_distinct": (("values", None), ("counts", Int64)),
}


def state_type(aggregation: Aggregation, column: Field) -> DType:
    """The type a state holds the column's values in: floats as Float64 (sums in double)."""
    if aggregation.function == "sum" and column.dtype.name not in FLOATS:
        return Int64
    return Float64 if column.dtype.name in FLOATS else column.dtype


@dataclass(frozen=True)
class TileGroup:
    """The aggregations of a view that share a hop (``hop_us`` None: the lifetime ones)."""

    view: str
    hop_us: int | None
    aggregations: tuple[Aggregation, ...]
    columns: tuple[Field, ...]  # the column each aggregation reads, in order

    @property
    def key_name(self) -> str:
        """What follows the entity tag in the group's Redis key (``view@3600``, ``view@lifetime``)."""
        return f"{self.view}@{'lifetime' if self.hop_us is None else self.hop_us // 1_000_000}"

    @property
    def span(self) -> int:
        """Tiles in the longest window: how many the stored value keeps."""
        if self.hop_us is None:
            return 1
        return max(_window_us(a) // self.hop_us for a in self.aggregations)

    @property
    def fields(self) -> tuple[Field, ...]:
        """The stored row: tile numbers, then each aggregation's state lists."""
        out = [Field(TILES, List(Int64))]
        for a, column in zip(self.aggregations, self.columns, strict=True):
            for suffix, dtype in STATES[a.function]:
                out.append(Field(f"{a.name}__{suffix}", List(dtype or state_type(a, column))))
        return tuple(out)

    def tile_of(self, now_us: int) -> int:
        """J = ceil(now / hop): the tile that ends the window served at ``now``."""
        assert self.hop_us is not None
        return -(-now_us // self.hop_us)

    def combine(self, row: Sequence[Any] | None, now_us: int) -> list[Any]:
        """Each aggregation's value at ``now`` from a decoded row (``fields`` order); ``row``
        None: no tiles (the entity has no events in any window)."""
        tiles: list[int] = [] if row is None else row[0]
        lows: dict[int, int] = {}  # window in tiles -> the first tile index it covers
        if self.hop_us is None or not tiles:
            hi = len(tiles)
        else:
            last = self.tile_of(now_us)
            hi = bisect_right(tiles, last)
            for span in {span for _, _, _, span, _ in self._steps}:
                lows[span] = bisect_right(tiles, last - span, 0, hi)
        out: list[Any] = []
        for function, at, parts, span, n in self._steps:
            states = [[] for _ in range(parts)] if row is None else row[at : at + parts]
            out.append(function(states, lows.get(span, 0), hi, n))
        return out

    @cached_property
    def _steps(self) -> tuple[tuple[_Combine, int, int, int, int | None], ...]:
        """Per aggregation, what ``combine`` needs: its function, where its states start in a
        row and how many there are, its window in tiles (0 in the lifetime group), its n."""
        steps = []
        at = 1
        for a in self.aggregations:
            parts = len(STATES[a.function])
            span = 0 if self.hop_us is None else _window_us(a) // self.hop_us
            steps.append((_COMBINE[a.function], at, parts, span, a.n))
            at += parts
        return tuple(steps)


def tile_groups(view: FeatureView) -> list[TileGroup]:
    """The view's groups, by hop ascending, the lifetime group last."""
    columns = {f.name: f for f in view.columns}
    def hop_us(a: Aggregation) -> int | None:
        return None if a.hop is None else a.hop // _US

    hops: list[int | None] = [*sorted({h for a in view.aggregations if (h := hop_us(a)) is not None}), None]
    groups = []
    for hop in hops:
        aggs = tuple(a for a in view.aggregations if hop_us(a) == hop)
        if aggs:
            groups.append(TileGroup(view.name, hop, aggs, tuple(columns[a.column] for a in aggs)))
    return groups


def empty_value(aggregation: Aggregation) -> Any:
    return 0 if aggregation.function in ("count", "count_distinct") else None


def _window_us(a: Aggregation) -> int:
    assert a.window is not None
    return a.window // _US


def _present(values: Sequence[Any]) -> list[Any]:
    return [v for v in values if v is not None]


def _sum(states: Sequence[list[Any]], lo: int, hi: int, n: int | None) -> Any:
    values = _present(states[0][lo:hi])
    return sum(values) if values else None


def _count(states: Sequence[list[Any]], lo: int, hi: int, n: int | None) -> int:
    return sum(states[0][lo:hi])


def _mean(states: Sequence[list[Any]], lo: int, hi: int, n: int | None) -> float | None:
    count = sum(states[1][lo:hi])
    return sum(_present(states[0][lo:hi])) / count if count else None


def _moments(states: Sequence[list[Any]], lo: int, hi: int) -> tuple[int, float]:
    """(count, sum of squared deviations) of the tiles, merged pairwise (Chan et al.)."""
    total, mean, m2 = 0, 0.0, 0.0
    for count, tile_mean, tile_m2 in zip(states[0][lo:hi], states[1][lo:hi], states[2][lo:hi], strict=True):
        if not count:
            continue
        merged = total + count
        delta = tile_mean - mean
        mean += delta * count / merged
        m2 += tile_m2 + delta * delta * total * count / merged
        total = merged
    return total, m2


def _variance(states: Sequence[list[Any]], lo: int, hi: int, n: int | None) -> float | None:
    count, m2 = _moments(states, lo, hi)
    return max(m2, 0.0) / (count - 1) if count >= 2 else None


def _stddev(states: Sequence[list[Any]], lo: int, hi: int, n: int | None) -> float | None:
    variance = _variance(states, lo, hi, n)
    return None if variance is None else variance**0.5


def _min(states: Sequence[list[Any]], lo: int, hi: int, n: int | None) -> Any:
    values = _present(states[0][lo:hi])
    return min(values) if values else None


def _max(states: Sequence[list[Any]], lo: int, hi: int, n: int | None) -> Any:
    values = _present(states[0][lo:hi])
    return max(values) if values else None


def _first(states: Sequence[list[Any]], lo: int, hi: int, n: int | None) -> Any:
    return next((v for v in states[0][lo:hi] if v is not None), None)


def _last(states: Sequence[list[Any]], lo: int, hi: int, n: int | None) -> Any:
    return next((v for v in reversed(states[0][lo:hi]) if v is not None), None)


def _flat(states: Sequence[list[Any]], lo: int, hi: int) -> tuple[list[Any], list[int]]:
    offsets = [0, *accumulate(states[1])]
    return states[0], offsets


def _last_n(states: Sequence[list[Any]], lo: int, hi: int, n: int | None) -> list[Any] | None:
    assert n is not None
    values, offsets = _flat(states, lo, hi)
    out: list[Any] = []
    for tile in range(hi - 1, lo - 1, -1):  # newest tile first; each tile's values newest first
        out += values[offsets[tile] : offsets[tile + 1]]
        if len(out) >= n:
            break
    return out[:n] or None


def _count_distinct(states: Sequence[list[Any]], lo: int, hi: int, n: int | None) -> int:
    values, offsets = _flat(states, lo, hi)
    return len(set(values[offsets[lo] : offsets[hi]]))


_COMBINE: dict[str, _Combine] = {
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
}

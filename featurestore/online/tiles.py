"""Aggregation views online: tiles of partial aggregates per entity, combined at lookup.

A view's aggregations are grouped by hop (lifetime windows form a group of their own). For
each entity, one value per group holds the tiles of the last (longest) window: tile ``j``
covers events in ((j - 1) * hop, j * hop], and holds each aggregation's partial state
(a count, a sum, min, first ...). A lookup at time ``now`` combines the tiles j with
``J - window/hop < j <= J``, where ``J = ceil(now / hop)``: exactly the events of the window
ending at ``J * hop``, so the value served is the training-set value at entity time
``ceil(now / hop) * hop``. A lifetime group holds one tile of every event.

A group's rows, as both engines compute them, are List columns: ``__tiles`` (tile numbers,
ascending) and, per aggregation, its state lists with one item per tile; ``last_n`` and
``count_distinct`` keep their values flattened, with a count per tile. tile_codec.py stores
them (a record per tile) and tile_kernel.py combines them for many entities at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from typing import Any

from featurestore.definitions import Aggregation, FeatureView, Field
from featurestore.definitions.types import FLOATS, DType, Float64, Int64, List

TILES = "__tiles"
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
    # a tile's sketch: its k smallest distinct hashes, ascending (offline/sketch.py)
    "approx_count_distinct": (("values", Int64), ("counts", Int64)),
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

    @cached_property
    def steps(self) -> tuple[tuple[Aggregation, int, int], ...]:
        """Per aggregation: where its states start in ``fields`` and its window in tiles (0
        in the lifetime group)."""
        steps = []
        at = 1
        for a in self.aggregations:
            span = 0 if self.hop_us is None else _window_us(a) // self.hop_us
            steps.append((a, at, span))
            at += len(STATES[a.function])
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
    return 0 if aggregation.function in ("count", "count_distinct", "approx_count_distinct") else None


def _window_us(a: Aggregation) -> int:
    assert a.window is not None
    return a.window // _US

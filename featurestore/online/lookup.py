"""Online lookups: a plan prepared once per feature list, then keys, one MGET, and decoding.

Everything that depends only on the registry and the requested features -- resolving
references, codecs, output names, which join keys are needed -- is prepared once per
registry version and cached, so a request only validates its entities, builds keys and
decodes values.

A stored value is decoded by the feature list it was written with (its header's layout):
after an apply that adds a feature, values materialized before it keep serving the
features they hold, and the new feature answers NOT_FOUND until a materialization writes
it. A value that cannot be decoded answers CORRUPT for its entity; the rest is served.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from featurestore.definitions import FeatureView, Field, OnDemandFeatureView
from featurestore.definitions.types import pandas_frame
from featurestore.errors import DefinitionError, InvalidRequestError, OnDemandError
from featurestore.online import tile_kernel
from featurestore.online.codec import DecodedColumns, ViewCodec, ViewSchema, layout_of
from featurestore.online.keys import request_tags
from featurestore.online.on_demand import OnDemandPlan, Output, Step
from featurestore.online.tile_codec import TileCodec
from featurestore.online.tiles import empty_value, tile_groups
from featurestore.registry import Snapshot
from featurestore.registry.snapshot import Expanded

if TYPE_CHECKING:
    import pandas as pd

    from featurestore.on_demand import OnDemandFunctions

DEFAULT_MAX_ENTITIES = 10_000
MAX_FEATURES = 1_000  # feature references in one request
_INT_KEYS = {"Int32", "Int64"}
_INT_RANGES = {"Int32": (-(2**31), 2**31 - 1), "Int64": (-(2**63), 2**63 - 1)}


class Status(IntEnum):
    """The state of one value in a response (numbers match the protobuf enum)."""

    PRESENT = 1
    NULL_VALUE = 2  # the newest row holds null for this feature
    NOT_FOUND = 3  # nothing materialized for this entity
    EXPIRED = 4  # the newest value is older than the view's TTL
    CORRUPT = 5  # the stored value cannot be decoded (counted in /metrics, logged)


PRESENT, NULL_VALUE, NOT_FOUND, EXPIRED, CORRUPT = (int(s) for s in Status)
_LIVE = 0  # internal: found and within TTL; the value decides PRESENT or NULL_VALUE
_ABSENT: Any = object()  # internal: a decoded value written before the feature existed
log = logging.getLogger("featurestore.online")
_CORRUPT_LOG_SECONDS = 60.0
_corrupt_logged: dict[str, float] = {}  # view -> when a corrupt value of it was last logged


@dataclass(frozen=True)
class _ViewPlan:
    name: str
    codec: ViewCodec | None  # None for a group of tiles (``tiles`` decodes it)
    positions: tuple[int, ...]  # requested features, as indices into the codec's features
    join_keys: tuple[str, ...]
    ttl_us: int | None
    # layout of an earlier feature list -> its codec, and requested position -> its position there
    older: Mapping[int, tuple[ViewCodec, Mapping[int, int]]] = field(default_factory=dict)
    # An aggregation view's group of tiles (tiles.py): ``name`` is its key name, this codec
    # decodes its values, and a requested position is an aggregation of the group.
    tiles: TileCodec | None = None

    def decode(self, values: Sequence[bytes], positions: Sequence[int]) -> DecodedColumns:
        """``ViewCodec.decode_columns``, values of an earlier layout decoded by theirs: a feature
        their list lacks is ``_ABSENT``. Values of a layout no version had stay in ``other``."""
        assert self.codec is not None
        dec = self.codec.decode_columns(values, positions)
        if not dec.other or not self.older:
            return dec
        by_layout: dict[int | None, list[int]] = {}
        for i in dec.other:
            by_layout.setdefault(layout_of(values[i]), []).append(i)
        good, other, corrupt = list(dec.good), [], list(dec.corrupt)
        events, runs, columns = list(dec.event_ts_us), list(dec.run_ids), [list(c) for c in dec.columns]
        for layout, indices in by_layout.items():
            known = self.older.get(layout) if layout is not None else None
            if known is None:
                other += indices
                continue
            codec, where = known
            held_positions = [where[p] for p in positions if p in where]
            old = codec.decode_columns([values[i] for i in indices], held_positions)
            good += [indices[j] for j in old.good]
            other += [indices[j] for j in old.other]
            corrupt += [indices[j] for j in old.corrupt]
            events += old.event_ts_us
            runs += old.run_ids
            held = iter(old.columns)
            for column, p in zip(columns, positions, strict=True):
                column += next(held) if p in where else [_ABSENT] * len(old.good)
        earlier = len(good) > len(dec.good)
        return DecodedColumns(good, sorted(other), sorted(corrupt), events, runs, columns, earlier)


@dataclass(frozen=True)
class OutputFeature:
    name: str  # the column name: feature, or view__feature
    ref: str  # view:feature
    field: Field


@dataclass
class FeatureColumn:
    """One requested feature over the entities of a request."""

    name: str
    ref: str
    field: Field
    values: list[Any]
    statuses: list[int]  # Status values, as plain ints (cheap to put into protobuf)
    event_ts_us: list[int | None]


@dataclass
class OnlineResult:
    """Column-wise lookup result: entity columns, then one column per requested feature."""

    entities: dict[str, list[Any]]
    features: list[FeatureColumn]
    run_ids: dict[str, list[int | None]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, list[Any]]:
        """``{column: values}``: join keys, then features (Timestamp values as datetimes)."""
        out: dict[str, list[Any]] = {k: list(v) for k, v in self.entities.items()}
        for col in self.features:
            if col.field.dtype.name == "Timestamp":
                out[col.name] = [None if v is None else _datetime(v) for v in col.values]
            elif col.field.dtype.name == "List(Timestamp)":
                out[col.name] = [
                    None if v is None else [None if t is None else _datetime(t) for t in v]
                    for v in col.values
                ]
            else:
                out[col.name] = list(col.values)
        return out

    def to_arrow(self) -> pa.Table:
        """Join keys, then features, typed as declared (Timestamps as microseconds become timestamps)."""
        arrays: dict[str, pa.Array] = {k: pa.array(v) for k, v in self.entities.items()}
        for col in self.features:
            arrays[col.name] = pa.array(col.values, col.field.dtype.arrow)
        return pa.table(arrays)

    def to_pandas(self) -> pd.DataFrame:
        """``to_arrow()`` as a DataFrame with Arrow-backed dtypes, as ``TrainingSet.to_pandas``."""
        return pandas_frame(self.to_arrow())

    @property
    def statuses(self) -> dict[str, list[str]]:
        """``{feature column: status name per entity}``; only these tell an absent value from a null."""
        return {col.name: [Status(s).name for s in col.statuses] for col in self.features}


def _utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _log_corrupt(view: str, entities: list[int], columns: Mapping[str, list[Any]]) -> None:
    """Say which entity's value of ``view`` cannot be decoded, at most once a minute per view."""
    now = time.monotonic()
    if now - _corrupt_logged.get(view, -_CORRUPT_LOG_SECONDS) < _CORRUPT_LOG_SECONDS:
        return
    _corrupt_logged[view] = now
    first = ", ".join(f"{k}={v[entities[0]]!r:.80}" for k, v in columns.items())
    log.warning(
        "%d stored value(s) of feature view %r cannot be decoded (the first: %s); they answer "
        "CORRUPT until a materialization rewrites them",
        len(entities),
        view,
        first,
    )


def _datetime(micros: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)


class LookupPlan:
    """How to answer one feature list: keys to fetch and how to decode them."""

    def __init__(
        self,
        project: str,
        views: list[_ViewPlan],
        outputs: list[tuple[int, int, OutputFeature]],
        join_keys: list[Field],
        max_entities: int,
        on_demand: OnDemandPlan | None = None,
    ) -> None:
        self.project = project
        self.views = views
        self.outputs = outputs  # (view index, position within the view's requested features, output)
        self.join_keys = join_keys
        self.max_entities = max_entities
        # Features computed after the read (online/on_demand.py); None: every feature is read.
        # With it, ``outputs`` also holds the inputs its functions read but nobody asked for.
        self.on_demand = on_demand
        self._int_keys = {k.name for k in join_keys if k.dtype.name in _INT_KEYS}
        # Views keyed by the same join keys share an entity tag: build it once per entity.
        self._groups: dict[tuple[str, ...], list[int]] = {}
        for i, v in enumerate(views):
            self._groups.setdefault(v.join_keys, []).append(i)

    @property
    def output_features(self) -> list[OutputFeature]:
        """Every column the lookup makes: the looked-up ones, then the computed ones."""
        read = [o for _, _, o in self.outputs]
        if self.on_demand is None:
            return read
        computed = [OutputFeature(o.name, o.ref, o.field) for s in self.on_demand.steps for o in s.outputs]
        return read + computed

    def entity_columns(self, entities: Mapping[str, Sequence[Any]]) -> tuple[int, dict[str, list[Any]]]:
        """Check the request's entity columns: every join key present, typed, one length."""
        if not isinstance(entities, Mapping):
            raise InvalidRequestError("entities must map each join key to a list of values")
        columns: dict[str, list[Any]] = {}
        n: int | None = None
        for key in self.join_keys:
            if key.name not in entities:
                raise InvalidRequestError(
                    f"missing join key {key.name!r}; the requested features need "
                    f"{[k.name for k in self.join_keys]}"
                )
            values = entities[key.name]
            if isinstance(values, (str, bytes)) or not isinstance(values, Sequence | np.ndarray):
                raise InvalidRequestError(f"join key {key.name!r} must be a list of values")
            values = list(values.tolist() if isinstance(values, np.ndarray) else values)
            if n is None:
                n = len(values)
            elif len(values) != n:
                raise InvalidRequestError(
                    f"join key {key.name!r} has {len(values)} values, {self.join_keys[0].name!r} has {n}"
                )
            want = int if key.dtype.name in _INT_KEYS else str
            for v in values:
                if type(v) is not want:
                    raise InvalidRequestError(
                        f"join key {key.name!r} takes {key.dtype.name} values, "
                        f"got {type(v).__name__} {v!r:.40}"
                    )
            if want is int and values:  # JSON integers are unbounded; no stored key is out of range
                low, high = _INT_RANGES[key.dtype.name]
                if min(values) < low or max(values) > high:
                    bad = next(v for v in values if not low <= v <= high)
                    raise InvalidRequestError(
                        f"join key {key.name!r} takes {key.dtype.name} values, {bad} is out of its range"
                    )
            columns[key.name] = values
        unknown = sorted(set(entities) - set(columns))
        if unknown:
            raise InvalidRequestError(
                f"unknown join key(s) {unknown}; expected {[k.name for k in self.join_keys]}"
            )
        if not n:
            raise InvalidRequestError("no entities in the request")
        if n > self.max_entities:
            raise InvalidRequestError(
                f"{n} entities in one request, more than the limit of {self.max_entities}"
            )
        return n, columns

    def keys(self, n: int, columns: Mapping[str, list[Any]]) -> list[str]:
        """Redis keys, view-major: ``keys[v * n + i]`` is view ``v`` of entity ``i``."""
        try:
            return self._keys(n, columns)
        except UnicodeEncodeError:  # JSON can carry lone surrogates, which have no UTF-8 bytes
            for name, values in columns.items():
                for v in values:
                    if isinstance(v, str) and not _utf8(v):
                        raise InvalidRequestError(
                            f"join key {name!r} holds {v!r:.40}, which is not valid Unicode text"
                        ) from None
            raise

    def _keys(self, n: int, columns: Mapping[str, list[Any]]) -> list[str]:
        keys: list[str] = [""] * (len(self.views) * n)
        for join_keys, members in self._groups.items():
            tags = request_tags(self.project, join_keys, columns, self._int_keys)
            for vi in members:
                name = self.views[vi].name
                keys[vi * n : (vi + 1) * n] = [t + name for t in tags]
        return keys

    def assemble(
        self,
        n: int,
        columns: dict[str, list[Any]],
        raw: Sequence[bytes | None],
        now: datetime | None = None,
        with_run_ids: bool = False,
    ) -> OnlineResult:
        """Decode the MGET reply (in ``keys`` order) into a column-wise result."""
        now_us = int((now or datetime.now(UTC)).timestamp() * 1_000_000)
        outs: list[FeatureColumn] = [
            FeatureColumn(o.name, o.ref, o.field, [None] * n, [NOT_FOUND] * n, [None] * n)
            for _, _, o in self.outputs
        ]
        by_view: list[list[tuple[int, FeatureColumn]]] = [[] for _ in self.views]
        for (vi, pos, _), col in zip(self.outputs, outs, strict=True):
            by_view[vi].append((pos, col))
        run_ids: dict[str, list[int | None]] = {}
        for vi, view in enumerate(self.views):
            cols = by_view[vi]
            base = vi * n
            if view.tiles is not None:
                tile_runs = _assemble_tiles(view, view.tiles, cols, raw[base : base + n], now_us, columns)
                if with_run_ids:
                    run_ids[view.name] = tile_runs
                continue
            found = [i for i in range(n) if raw[base + i] is not None]
            runs: list[int | None] = [None] * n
            if found:
                dec = view.decode(
                    [raw[base + i] for i in found],  # type: ignore[misc]
                    [view.positions[pos] for pos, _ in cols],
                )
                rows = [found[j] for j in dec.good]  # entity index of each decoded row
                stamps = dec.event_ts_us
                live = [True] * len(rows)
                if view.ttl_us is not None:
                    oldest = now_us - view.ttl_us
                    live = [t >= oldest for t in stamps]
                # every entity found and fresh, in one layout: the common case
                everything = len(rows) == n and all(live) and rows == list(range(n)) and not dec.earlier
                slot = [-1] * n  # entity index -> decoded row, -1 where nothing was found
                for j, i in enumerate(rows):
                    slot[i] = j
                # the status of each entity before looking at its values
                state = [NOT_FOUND if j < 0 else (_LIVE if live[j] else EXPIRED) for j in slot]
                if dec.corrupt:
                    for j in dec.corrupt:
                        state[found[j]] = CORRUPT
                    _log_corrupt(view.name, [found[j] for j in dec.corrupt], columns)
                stamp_column = [None if j < 0 else stamps[j] for j in slot]
                for (_, col), values in zip(cols, dec.columns, strict=True):
                    if everything:
                        col.values = values
                        col.statuses = [PRESENT if v is not None else NULL_VALUE for v in values]
                    else:
                        col.values = [
                            values[j] if b == _LIVE else None for j, b in zip(slot, state, strict=True)
                        ]
                        col.statuses = [
                            (PRESENT if v is not None else NULL_VALUE) if b == _LIVE else b
                            for v, b in zip(col.values, state, strict=True)
                        ]
                    col.event_ts_us = stamp_column
                    if dec.earlier:  # a feature an earlier layout lacks: not found for that entity
                        absent = [i for i, j in enumerate(slot) if j >= 0 and values[j] is _ABSENT]
                        if absent:
                            col.event_ts_us = list(stamp_column)
                            for i in absent:
                                col.values[i], col.statuses[i], col.event_ts_us[i] = None, NOT_FOUND, None
                if with_run_ids:
                    for j, i in enumerate(rows):
                        runs[i] = dec.run_ids[j]
            if with_run_ids:
                run_ids[view.name] = runs
        return OnlineResult(columns, outs, run_ids)


def _assemble_tiles(
    view: _ViewPlan,
    codec: TileCodec,
    cols: list[tuple[int, FeatureColumn]],
    raw: Sequence[bytes | None],
    now_us: int,
    columns: Mapping[str, list[Any]],
) -> list[int | None]:
    """Fill ``cols`` (position = aggregation of the group) from the group's stored tiles,
    decoded and combined for every entity at once (tile_kernel.py).

    No value is an entity without events in any window of the group: count 0, the rest
    null. A value of another layout (written before the view or the layout changed) is
    NOT_FOUND until a materialization rewrites it; one that cannot be decoded, CORRUPT.
    Returns the run ids.
    """
    n = len(raw)
    aggregations = codec.group.aggregations
    if None not in raw:  # every entity has a value: the common case, combined as it is
        out = tile_kernel.combine(codec, raw, now_us)  # type: ignore[arg-type]
        if len(out.good) == n and not out.damaged:
            for pos, col in cols:
                col.values = out.results[pos]
                # ``in`` scans in C: most columns hold no null, and need no comprehension
                col.statuses = (
                    [NULL_VALUE if x is None else PRESENT for x in col.values]
                    if None in col.values
                    else [PRESENT] * n
                )
                col.event_ts_us = out.event_ts_us
            return out.run_ids
    found = [i for i in range(n) if raw[i] is not None]
    values = [[empty_value(a)] * n for a in aggregations]
    state = [_LIVE] * n
    stamps: list[int | None] = [None] * n
    runs: list[int | None] = [None] * n
    if found:
        if len(found) < n:
            out = tile_kernel.combine(codec, [raw[i] for i in found], now_us)  # type: ignore[misc]
        rows = [found[k] for k in out.good]  # entity index of each decoded row
        for column, got in zip(values, out.results, strict=True):
            for i, v in zip(rows, got, strict=True):
                column[i] = v
        for i, stamp, run in zip(rows, out.event_ts_us, out.run_ids, strict=True):
            stamps[i], runs[i] = stamp, run
        for k in out.other:
            state[found[k]] = NOT_FOUND
        bad = [found[k] for k in out.corrupt] + [rows[e] for e in sorted(out.damaged)]
        for i in bad:
            state[i] = CORRUPT
        if bad:
            _log_corrupt(view.name, sorted(bad), columns)
        for i in [found[k] for k in out.other] + bad:
            stamps[i] = runs[i] = None
    for pos, col in cols:
        column = values[pos]
        col.values = [x if s == _LIVE else None for x, s in zip(column, state, strict=True)]
        col.statuses = [
            (PRESENT if x is not None else NULL_VALUE) if s == _LIVE else s
            for x, s in zip(col.values, state, strict=True)
        ]
        col.event_ts_us = stamps
    return runs


class OnlineRegistry:
    """One registry version prepared for serving: codecs per view and cached lookup plans."""

    def __init__(
        self,
        project: str,
        snapshot: Snapshot,
        version: int,
        max_entities: int = DEFAULT_MAX_ENTITIES,
        history: Mapping[str, Sequence[Sequence[Field]]] | None = None,
        functions: OnDemandFunctions | None = None,
    ) -> None:
        """``history``: every feature list each view has had (``view_feature_lists``), so that
        values written under an earlier one keep serving the features it has. ``functions``:
        the on-demand views' functions (None: on-demand features answer OnDemandError)."""
        self.project = project
        self.functions = functions
        self.snapshot = snapshot
        self.version = version
        self.max_entities = max_entities
        self.codecs = {
            name: ViewCodec(v) for name, v in snapshot.views.items() if v.online and not v.aggregations
        }
        self.tiles = {
            name: [TileCodec(g) for g in tile_groups(v)]
            for name, v in snapshot.views.items()
            if v.online and v.aggregations
        }
        self.older: dict[str, dict[int, ViewCodec]] = {}
        for name, lists in (history or {}).items():
            if name in self.codecs:
                for features in lists:
                    try:
                        codec = ViewCodec(ViewSchema(name, tuple(features)))
                    except DefinitionError:  # a list that was never servable wrote no values
                        continue
                    if codec.layout != self.codecs[name].layout:
                        self.older.setdefault(name, {})[codec.layout] = codec
        self._cached_plan = lru_cache(maxsize=1024)(self._plan)

    def plan(self, features: tuple[str, ...] | str, full_feature_names: bool = False) -> LookupPlan:
        """The (cached) plan for a feature list or a service name."""
        # Plans are cached by their feature list: without a bound, a client could pin large
        # lists in the cache, one per distinct request.
        if not isinstance(features, str) and len(features) > MAX_FEATURES:
            raise InvalidRequestError(
                f"{len(features)} features in one request, more than the limit of {MAX_FEATURES}"
            )
        return self._cached_plan(features, full_feature_names)

    def _plan(self, features: tuple[str, ...] | str, full_feature_names: bool = False) -> LookupPlan:
        expanded = self.snapshot.expand(features if isinstance(features, str) else list(features))
        hidden = expanded.hidden
        requests = self.snapshot.resolve(list(expanded.refs))
        views: list[_ViewPlan] = []
        outputs: list[tuple[int, int, OutputFeature]] = []
        join_keys: dict[str, Field] = {}
        for req in requests:
            if req.view.name in self.tiles:
                names = [f.name for f in req.features]
                self._plan_tiles(req.view.name, names, full_feature_names, views, outputs, hidden)
                for k in req.view.join_keys:
                    join_keys.setdefault(k.name, k)
                continue
            vi = len(views)
            codec = self.codecs.get(req.view.name)
            if codec is None:
                raise InvalidRequestError(f"feature view {req.view.name!r} is not online (online=False)")
            names = [f.name for f in codec.features]
            positions = tuple(names.index(f.name) for f in req.features)
            ttl_us = None if req.view.ttl is None else req.view.ttl // timedelta(microseconds=1)
            keys = tuple(k.name for k in req.view.join_keys)
            older = {
                layout: (old, _positions_in(old, codec, positions))
                for layout, old in self.older.get(req.view.name, {}).items()
            }
            views.append(_ViewPlan(req.view.name, codec, positions, keys, ttl_us, older))
            for k in req.view.join_keys:
                seen = join_keys.setdefault(k.name, k)
                if seen.dtype != k.dtype:
                    raise InvalidRequestError(
                        f"join key {k.name!r} is {seen.dtype.name} in one view and {k.dtype.name} in another"
                    )
            for pos, f in enumerate(req.features):
                ref = f"{req.view.name}:{f.name}"
                name = f"{req.view.name}__{f.name}" if full_feature_names else f.name
                if ref in hidden:  # an input of an on-demand view only: not answered, never clashes
                    name = f"__input__{req.view.name}__{f.name}"
                outputs.append((vi, pos, OutputFeature(name, ref, f)))
        on_demand = None
        if expanded.on_demand:
            on_demand = self._plan_on_demand(expanded, outputs, full_feature_names)
        counts: dict[str, int] = {}
        names = [o.name for _, _, o in outputs if o.ref not in hidden]
        if on_demand is not None:
            names += [o.name for step in on_demand.steps for o in step.outputs]
        for name in names:
            counts[name] = counts.get(name, 0) + 1
        clashes = sorted(n for n, c in counts.items() if c > 1 or n in join_keys)
        if clashes:
            raise InvalidRequestError(
                f"feature name(s) {clashes} appear in more than one view: ask with full_feature_names"
            )
        key_fields = list(join_keys.values())
        return LookupPlan(self.project, views, outputs, key_fields, self.max_entities, on_demand)

    def _plan_on_demand(
        self, expanded: Expanded, outputs: list[tuple[int, int, OutputFeature]], full_feature_names: bool
    ) -> OnDemandPlan:
        if self.functions is None:
            raise OnDemandError(
                f"on-demand view(s) {[r.view.name for r in expanded.on_demand]} cannot be computed "
                "here: this registry was loaded without the repo's code"
            )
        steps = []
        fields: dict[str, tuple[Field, str]] = {}
        for req in expanded.on_demand:
            function = self.functions.get(req.view.name)  # OnDemandError if its code changed
            view = req.view.name
            outs = tuple(
                Output(f"{view}__{f.name}" if full_feature_names else f.name, f"{view}:{f.name}", f)
                for f in req.features
            )
            steps.append(Step(req.view, function, outs))
            for f in req.view.request_fields:
                seen = fields.setdefault(f.name, (f, req.view.name))
                if seen[0].dtype != f.dtype:
                    raise InvalidRequestError(
                        f"request field {f.name!r} is {seen[0].dtype.name} for on-demand view {seen[1]!r} "
                        f"and {f.dtype.name} for {req.view.name!r}: ask for them separately"
                    )
        inputs = {o.ref: o.field for _, _, o in outputs}
        return OnDemandPlan(tuple(steps), inputs, fields, expanded.requested, expanded.hidden)

    def _plan_tiles(
        self,
        view: str,
        features: list[str],
        full_feature_names: bool,
        views: list[_ViewPlan],
        outputs: list[tuple[int, int, OutputFeature]],
        hidden: frozenset[str] = frozenset(),
    ) -> None:
        """An aggregation view's requested features: one _ViewPlan per tile group they need."""
        fields = {f.name: f for f in self.snapshot.views[view].features}
        keys = tuple(k.name for k in self.snapshot.views[view].join_keys)
        where: dict[str, int] = {}  # group key name -> its index in ``views``
        for feature in features:
            codec = next(c for c in self.tiles[view] if any(a.name == feature for a in c.group.aggregations))
            group = codec.group
            if group.key_name not in where:
                where[group.key_name] = len(views)
                views.append(_ViewPlan(group.key_name, None, (), keys, None, tiles=codec))
            position = next(i for i, a in enumerate(group.aggregations) if a.name == feature)
            name = f"{view}__{feature}" if full_feature_names else feature
            ref = f"{view}:{feature}"
            if ref in hidden:
                name = f"__input__{view}__{feature}"
            output = OutputFeature(name, ref, fields[feature])
            outputs.append((where[group.key_name], position, output))

    def on_demand_servable(self) -> list[tuple[str, Field, OnDemandFeatureView, list[FeatureView]]]:
        """Every on-demand ``view:feature``, with its field, its view and the views it reads."""
        out = []
        for name, od in sorted(self.snapshot.on_demand_views.items()):
            inputs = list(dict.fromkeys(ref.partition(":")[0] for ref in od.feature_inputs))
            reads = [self.snapshot.views[v] for v in inputs if v in self.snapshot.views]
            out += [(f"{name}:{f.name}", f, od, reads) for f in od.features]
        return out

    def servable(self) -> list[tuple[str, Field]]:
        """Every ``view:feature`` that can be looked up, with its field."""
        plain = [(f"{name}:{f.name}", f) for name, codec in self.codecs.items() for f in codec.features]
        aggregated = [
            (f"{name}:{f.name}", f) for name in self.tiles for f in self.snapshot.views[name].features
        ]
        return sorted(plain + aggregated, key=lambda item: item[0])


def _positions_in(old: ViewCodec, current: ViewCodec, positions: Sequence[int]) -> dict[int, int]:
    """Requested position (in ``current``) -> the same feature's position in ``old``, for the
    features ``old`` has with the same type."""
    where = {(f.name, f.dtype.name): p for p, f in enumerate(old.features)}
    out = {}
    for p in positions:
        f = current.features[p]
        if (f.name, f.dtype.name) in where:
            out[p] = where[(f.name, f.dtype.name)]
    return out

"""Shared by the gRPC and HTTP fuzz tests: request strategies and the reference they are judged by.

A ``Req`` is transport-free: feature refs or a service, and per join key a typed column
(the ``Values`` oneof kind and its items). Strategies mix parts of the example repo (real
refs, services, join keys, materialized entity ids) with wrong ones (unknown names, huge
strings, mistyped or out-of-range values, unequal or empty columns). A request built from
valid parts only is marked ``valid``: it must succeed.

``Reference`` answers what a lookup should return from the Parquet files themselves (the
newest row per entity, in plain Python), not from Redis or the server's code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from featurestore.serving.v1 import serving_pb2 as pb
from tests.online.helpers import newest_rows
from tests.serving.support import MAX_ENTITIES, open_store

INT64 = (-(2**63), 2**63 - 1)
INT32 = (-(2**31), 2**31 - 1)
# Values oneof kind -> strategy for its items
KINDS: dict[str, st.SearchStrategy[Any]] = {
    "int32_values": st.integers(*INT32),
    "int64_values": st.integers(*INT64),
    "float_values": st.floats(width=32, allow_nan=False),
    "double_values": st.floats(allow_nan=False),
    "string_values": st.text(max_size=20),
    "bool_values": st.booleans(),
    "bytes_values": st.binary(max_size=20),
    "timestamp_values": st.integers(*INT64),
}
INT_KINDS = ("int32_values", "int64_values")


@dataclass
class Req:
    features: list[str]
    service: str
    entities: dict[str, tuple[str | None, list[Any]]]  # join key -> (Values kind, items)
    full_feature_names: bool = False
    include_run_ids: bool = False
    valid: bool = False  # built from valid parts only: must succeed

    def to_proto(self) -> pb.GetOnlineFeaturesRequest:
        message = pb.GetOnlineFeaturesRequest(
            features=self.features, feature_service=self.service,
            full_feature_names=self.full_feature_names, include_run_ids=self.include_run_ids,
        )
        for name, (kind, items) in self.entities.items():
            values = message.entities[name]
            if kind == "list_values":
                for item in items:
                    values.list_values.values.add().int64_values.values.extend(item)
            elif kind is not None:
                getattr(values, kind).values.extend(items)
            else:
                values.SetInParent()  # present, but no kind set
        return message

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"entities": {}}
        if self.features:
            body["features"] = self.features
        if self.service:
            body["feature_service"] = self.service
        if self.full_feature_names:
            body["full_feature_names"] = True
        if self.include_run_ids:
            body["include_run_ids"] = True
        for name, (kind, items) in self.entities.items():
            if kind is None:
                body["entities"][name] = None
            elif kind == "bytes_values":
                body["entities"][name] = [b.hex() for b in items]  # JSON has no bytes: hex strings
            else:
                body["entities"][name] = items
        return body


@dataclass(frozen=True)
class View:
    name: str
    join_keys: tuple[str, ...]
    ttl: timedelta | None
    features: tuple[str, ...]
    newest: dict[tuple[Any, ...], dict[str, Any]]  # entity -> its newest source row


class Reference:
    """What the example repo's materialized data should answer, from its Parquet files."""

    def __init__(self, repo: Path) -> None:
        snapshot = open_store(repo).registry()
        self.views: dict[str, View] = {}
        # Plain views only: the values of an aggregation view depend on the time of the lookup
        # (tests/online/test_aggregations.py holds their reference; test_end_to_end.py their
        # transports), so its features and the services using them are not generated here.
        for name, view in snapshot.views.items():
            if not view.online or view.aggregations:
                continue
            files = sorted(_source_files(repo, view.source.path))
            keys = tuple(k.name for k in view.join_keys)
            source = view.source
            newest = newest_rows(files, keys, source.timestamp_field, source.created_timestamp_field)
            self.views[name] = View(name, keys, view.ttl, tuple(f.name for f in view.features), newest)
        self.every_service = set(snapshot.services)  # names a junk name must not take
        self.services = {
            name: s.feature_refs()
            for name, s in snapshot.services.items()
            if all(ref.split(":")[0] in self.views for ref in s.feature_refs())
        }
        self.refs = [f"{v.name}:{f}" for v in self.views.values() for f in v.features]
        self.ids: dict[str, list[int]] = {}
        for v in self.views.values():
            if len(v.join_keys) == 1:
                self.ids.setdefault(v.join_keys[0], []).extend(e[0] for e in v.newest)
        self.key_names = sorted({k for v in self.views.values() for k in v.join_keys})

    def requested(self, req: Req) -> list[tuple[str, str]]:
        """(view, feature) in the order the server answers: grouped by view, first seen first."""
        refs = self.services.get(req.service, [req.service] if req.service else req.features)
        grouped: dict[str, list[str]] = {}
        for ref in refs:
            view, feature = ref.split(":")
            if feature not in grouped.setdefault(view, []):
                grouped[view].append(feature)
        return [(v, f) for v, fs in grouped.items() for f in fs]

    def check(self, req: Req, columns: list[Column], runs: dict[str, list[int | None]],
              before: datetime, after: datetime) -> None:
        """Assert an OK answer is one column per requested feature, each as the sources say."""
        wanted = self.requested(req)
        n = len(next(iter(req.entities.values()))[1])
        assert [c.ref for c in columns] == [f"{v}:{f}" for v, f in wanted]
        for col, (view_name, feature) in zip(columns, wanted, strict=True):
            view = self.views[view_name]
            assert col.name == (f"{view_name}__{feature}" if req.full_feature_names else feature)
            assert len(col.values) == len(col.statuses) == len(col.stamps) == n
            for i in range(n):
                entity = tuple(req.entities[k][1][i] for k in view.join_keys)
                row = view.newest.get(entity)
                got = (col.values[i], col.statuses[i], col.stamps[i])
                if row is None:
                    assert got == (None, "NOT_FOUND", None), (entity, got)
                    continue
                stamp = row["event_timestamp"]
                if view.ttl is not None and stamp < after - view.ttl:
                    if stamp < before - view.ttl:  # else it expired during the request: either
                        # too old: answered EXPIRED, or its key already expired or was never written
                        assert got[:2] == (None, "EXPIRED") or got == (None, "NOT_FOUND", None), got
                    continue
                want = row[feature]
                assert col.stamps[i] == micros(stamp), (entity, got)
                if want is None:
                    assert got[:2] == (None, "NULL_VALUE"), (entity, got)
                else:
                    assert col.statuses[i] == "PRESENT", (entity, got)
                    assert _same(col.values[i], want), (entity, feature, col.values[i], want)
        if req.include_run_ids:
            assert sorted(runs) == sorted({v for v, _ in wanted})
            assert all(len(r) == n for r in runs.values())
        else:
            assert not runs


@dataclass
class Column:
    """One answered feature column, transport-free: None where no value was given."""

    name: str
    ref: str
    values: list[Any]
    statuses: list[str]
    stamps: list[int | None]  # microseconds since the epoch


def _source_files(repo: Path, path: str) -> list[Path]:
    target = repo / path
    if target.is_dir():
        return list(target.rglob("*.parquet"))
    if target.is_file():
        return [target]
    return list(repo.glob(path))


def micros(t: datetime) -> int:
    return (t - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def _same(got: Any, want: Any) -> bool:
    if isinstance(want, float) and math.isnan(want):
        return isinstance(got, float) and math.isnan(got)
    return bool(got == want)


# -- strategies ----------------------------------------------------------------------------

huge_text = st.integers(10_000, 200_000).map(lambda n: "x" * n)
junk_names = st.text(max_size=30) | huge_text | st.sampled_from(["", ":", "a:b:c", "driver_stats:", ":city"])


def requests(ref: Reference) -> st.SearchStrategy[Req]:
    """Mostly valid requests, or valid ones with one part broken, or anything at all."""
    return st.one_of(_valid(ref), _broken(ref), _anything(ref))


@st.composite
def _valid(draw: st.DrawFn, ref: Reference) -> Req:
    if draw(st.booleans()):
        service = draw(st.sampled_from(sorted(ref.services)))
        features: list[str] = []
        views = {r.split(":")[0] for r in ref.services[service]}
    else:
        service = ""
        features = draw(st.lists(st.sampled_from(ref.refs), min_size=1, max_size=8))
        views = {r.split(":")[0] for r in features}
    keys = sorted({k for v in views for k in ref.views[v].join_keys})
    n = draw(st.integers(1, 30))
    entities: dict[str, tuple[str | None, list[Any]]] = {}
    for key in keys:
        known = st.sampled_from(sorted(ref.ids[key]))
        items = draw(st.lists(known | st.integers(*INT32) | st.integers(*INT64), min_size=n, max_size=n))
        fits32 = all(INT32[0] <= v <= INT32[1] for v in items)
        kind = draw(st.sampled_from(INT_KINDS)) if fits32 else "int64_values"
        entities[key] = (kind, items)
    return Req(features, service, entities, draw(st.booleans()), draw(st.booleans()), valid=True)


@st.composite
def _broken(draw: st.DrawFn, ref: Reference) -> Req:
    req = draw(_valid(ref))
    req.valid = False
    damage = draw(st.sampled_from(
        ["feature", "service", "both", "neither", "drop-key", "extra-key", "kind", "length", "empty",
         "too-many", "strings"]
    ))
    keys = list(req.entities)
    if damage == "feature":
        req.service, req.features = "", [*req.features, draw(junk_names)]
    elif damage == "service":
        req.service, req.features = draw(junk_names.filter(lambda s: s not in ref.every_service)), []
    elif damage == "both":
        req.service, req.features = draw(st.sampled_from(sorted(ref.services))), [ref.refs[0]]
    elif damage == "neither":
        req.service, req.features = "", []
    elif damage == "drop-key":
        del req.entities[draw(st.sampled_from(keys))]
    elif damage == "extra-key":
        name = draw(junk_names.filter(lambda s: s not in req.entities))
        req.entities[name] = next(iter(req.entities.values()))
    elif damage == "kind":
        key = draw(st.sampled_from(keys))
        kind = draw(st.sampled_from([k for k in KINDS if k not in INT_KINDS] + ["list_values", None]))
        n = len(req.entities[key][1])
        items = [[1, 2]] * n if kind == "list_values" else [] if kind is None else draw(
            st.lists(KINDS[kind], min_size=n, max_size=n))
        req.entities[key] = (kind, items)
    elif damage == "length":
        key = draw(st.sampled_from(keys))
        kind, items = req.entities[key]
        req.entities[key] = (kind, items + [items[0]] * draw(st.integers(1, 3)))
        if len(keys) == 1:  # one column cannot disagree with itself: add a second
            req.entities[ref.key_names[0] if keys[0] != ref.key_names[0] else ref.key_names[1]] = (
                "int64_values", items)
    elif damage == "empty":
        req.entities = {k: (kind, []) for k, (kind, _) in req.entities.items()}
    elif damage == "too-many":
        n = MAX_ENTITIES + draw(st.integers(1, 50))
        req.entities = {k: ("int64_values", [1001] * n) for k in req.entities}
    elif damage == "strings":  # the ids, as text
        key = draw(st.sampled_from(keys))
        kind, items = req.entities[key]
        req.entities[key] = ("string_values", [str(v) for v in items])
    return req


@st.composite
def _anything(draw: st.DrawFn, ref: Reference) -> Req:
    names = st.sampled_from(ref.key_names) | junk_names
    kinds = st.sampled_from([*KINDS, None])
    entities: dict[str, tuple[str | None, list[Any]]] = {}
    for name in draw(st.lists(names, max_size=3, unique=True)):
        kind = draw(kinds)
        entities[name] = (kind, [] if kind is None else draw(st.lists(KINDS[kind], max_size=5)))
    features = draw(st.lists(st.sampled_from(ref.refs) | junk_names, max_size=4))
    service = draw(st.just("") | st.sampled_from(sorted(ref.services)) | junk_names)
    return Req(features, service, entities, draw(st.booleans()), draw(st.booleans()))

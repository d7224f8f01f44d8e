"""FeatureView: typed features of an entity, read from a source, with a TTL."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from featurestore.definitions.aggregation import Aggregation
from featurestore.definitions.base import caller_location, check_name, fingerprint
from featurestore.definitions.entity import Entity
from featurestore.definitions.field import CheckSpecs, Field, checks_of, specs_of
from featurestore.definitions.source import ParquetSource
from featurestore.errors import DefinitionError

if TYPE_CHECKING:
    from pandera.pandas import Check

ON_INVALID = ("fail", "quarantine")
# Attributes to_spec leaves out at these values, so existing specs keep their fingerprints.
SPEC_DEFAULTS: dict[str, Any] = {"on_invalid": "fail", "checks": []}


@dataclass(frozen=True, eq=False)
class FeatureView:
    """Features of one entity (or a composite of entities) read from one Parquet source.

    A schema field named like a join key declares that key's dtype instead of a feature;
    otherwise key dtypes are read from the source when the view is applied.

    With ``aggregations``, the source holds events: ``schema`` declares their columns (ingested
    and validated as any view's) and the view's features are the aggregations over windows of
    them, computed at each entity time (see ``Aggregation``).
    """

    name: str
    entities: Sequence[Entity | str]
    schema: Sequence[Field]
    source: ParquetSource
    ttl: timedelta | None = None
    online: bool = True
    tags: Mapping[str, str] = field(default_factory=dict)
    owner: str = ""
    description: str = ""
    # Pandera checks on the whole frame (e.g. unique key + event time + created time).
    checks: Sequence[Check] = field(default=(), compare=False)
    # What ingestion does with rows that fail validation: "fail" writes nothing at all,
    # "quarantine" writes the valid rows and sets the invalid ones aside with the reason.
    on_invalid: str = "fail"
    aggregations: Sequence[Aggregation] = ()
    # Filled from the source or the registry: the join key columns and their dtypes.
    join_keys: tuple[Field, ...] = field(default=(), repr=False)
    defined_in: str = field(default="", compare=False, repr=False)

    def __post_init__(self) -> None:
        check_name("feature view", self.name)
        problems: list[str] = []
        entities = [self.entities] if isinstance(self.entities, (Entity, str)) else self.entities
        entities = tuple(entities)
        if not entities:
            problems.append("has no entities")
        for e in entities:
            if not isinstance(e, (Entity, str)):
                problems.append(f"entities must be Entity objects or names, got {e!r}")
        if not isinstance(self.source, ParquetSource):
            problems.append(f"source must be a ParquetSource, got {type(self.source).__name__}")
        schema = tuple(self.schema)
        names = [f.name for f in schema if isinstance(f, Field)]
        if len(names) != len(schema):
            problems.append("schema must be a list of Field")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            problems.append(f"schema repeats field(s) {dupes}")
        checks, bad = checks_of(self.checks)
        if bad:
            problems.append("checks takes pandera Check objects")
        if self.on_invalid not in ON_INVALID:
            problems.append(f"on_invalid must be one of {list(ON_INVALID)}, got {self.on_invalid!r}")
        if self.ttl is not None and (not isinstance(self.ttl, timedelta) or self.ttl <= timedelta(0)):
            problems.append(f"ttl must be a positive timedelta or None, got {self.ttl!r}")
        if isinstance(self.source, ParquetSource):
            ts = {self.source.timestamp_field, self.source.created_timestamp_field}
            clash = sorted(n for n in names if n in ts)
            if clash:
                problems.append(f"field(s) {clash} are the source's timestamp columns")
        aggregations = tuple(self.aggregations)
        if aggregations:
            problems += _aggregation_problems(aggregations, schema, self.ttl)
        if problems:
            raise DefinitionError([f"feature view {self.name!r}: {p}" for p in problems])
        object.__setattr__(self, "aggregations", aggregations)
        object.__setattr__(self, "entities", entities)
        object.__setattr__(self, "schema", schema)
        object.__setattr__(self, "checks", checks)
        object.__setattr__(self, "tags", dict(self.tags))
        if not self.defined_in:
            object.__setattr__(self, "defined_in", caller_location())

    @property
    def entity_names(self) -> tuple[str, ...]:
        return tuple(e.name if isinstance(e, Entity) else e for e in self.entities)

    @property
    def columns(self) -> tuple[Field, ...]:
        """The source columns ingested and validated: schema fields that are not join key
        declarations. A plain view's features; an aggregation view's event columns."""
        keys = set(self.declared_join_key_names())
        return tuple(f for f in self.schema if f.name not in keys)

    @property
    def features(self) -> tuple[Field, ...]:
        """What services, training sets and lookups return: the columns, or the aggregations."""
        if not self.aggregations:
            return self.columns
        columns = {f.name: f for f in self.columns}
        return tuple(
            Field(a.name, a.output_dtype(columns[a.column].dtype), a.describe())
            for a in self.aggregations
        )

    def declared_join_key_names(self) -> list[str]:
        """Join keys of the entities given as objects, or of the resolved join_keys."""
        if self.join_keys:
            return [k.name for k in self.join_keys]
        return [k for e in self.entities if isinstance(e, Entity) for k in e.join_keys]

    def feature(self, name: str) -> Field:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)

    def __getitem__(self, features: Sequence[str]) -> FeatureViewProjection:
        """``view[["a", "b"]]``: a subset of this view's features, for a service."""
        if isinstance(features, str):
            features = [features]
        return FeatureViewProjection(self, tuple(features))

    def to_spec(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "entities": list(self.entity_names),
            "join_keys": [{"name": k.name, "dtype": k.dtype.name} for k in self.join_keys],
            "features": [f.to_spec() for f in self.columns],
            "source": self.source.name,
            "ttl_seconds": None if self.ttl is None else self.ttl.total_seconds(),
            "online": bool(self.online),
            "tags": dict(sorted(self.tags.items())),
            "owner": self.owner,
            "description": self.description,
            # only when set (SPEC_DEFAULTS), so existing specs keep their fingerprints
            **({"checks": specs_of(self.checks)} if self.checks else {}),
            **({"on_invalid": self.on_invalid} if self.on_invalid != SPEC_DEFAULTS["on_invalid"] else {}),
            **({"aggregations": [a.to_spec() for a in self.aggregations]} if self.aggregations else {}),
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any], source: ParquetSource) -> FeatureView:
        ttl = spec.get("ttl_seconds")
        return cls(
            name=spec["name"],
            entities=spec["entities"],
            schema=[Field.from_spec(f) for f in spec["features"]],
            source=source,
            ttl=None if ttl is None else timedelta(seconds=ttl),
            online=spec.get("online", True),
            tags=spec.get("tags", {}),
            owner=spec.get("owner", ""),
            description=spec.get("description", ""),
            checks=CheckSpecs(spec.get("checks", [])),
            on_invalid=spec.get("on_invalid", "fail"),
            aggregations=[Aggregation.from_spec(a) for a in spec.get("aggregations", [])],
            join_keys=tuple(Field.from_spec(k) for k in spec.get("join_keys", [])),
            defined_in="registry",
        )

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.to_spec())


def _aggregation_problems(
    aggregations: tuple[Aggregation, ...], schema: tuple[Field, ...], ttl: timedelta | None
) -> list[str]:
    problems: list[str] = []
    if not all(isinstance(a, Aggregation) for a in aggregations):
        return ["aggregations must be a list of Aggregation"]
    if ttl is not None:
        problems.append("an aggregation view has windows, not a ttl")
    fields = {f.name: f for f in schema if isinstance(f, Field)}
    for a in aggregations:
        column = fields.get(a.column)
        if column is None:
            problems.append(f"aggregation {a.name!r} reads {a.column!r}, which the schema does not declare")
        elif not a.accepts(column.dtype):
            problems.append(f"aggregation {a.name!r}: {a.function} does not take {column.dtype.name} values")
    names = [a.name for a in aggregations]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        problems.append(f"aggregations repeat feature name(s) {dupes}: give them distinct names")
    clash = sorted(set(names) & set(fields))
    if clash:
        problems.append(f"aggregation feature name(s) {clash} are also schema fields")
    return problems


@dataclass(frozen=True)
class FeatureViewProjection:
    """Some features of a view (or of an on-demand view), as used by a feature service."""

    view: FeatureView  # or an OnDemandFeatureView: both have ``name`` and ``features``
    features: tuple[str, ...]

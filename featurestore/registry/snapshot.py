"""Snapshot: one consistent set of definitions, as compiled from a repo or read from a version."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from featurestore.definitions import (
    Entity,
    FeatureService,
    FeatureView,
    Field,
    ParquetSource,
    parse_ref,
)
from featurestore.definitions.base import fingerprint
from featurestore.errors import DefinitionError, NotFoundError

KIND_ORDER = ("entity", "source", "feature_view", "feature_service")


@dataclass(frozen=True)
class ViewRequest:
    """The features a lookup or training set asks of one view, in request order."""

    view: FeatureView
    features: tuple[Field, ...]


@dataclass
class Snapshot:
    """Entities, sources, views and services by name; every reference between them resolves."""

    entities: dict[str, Entity] = field(default_factory=dict)
    sources: dict[str, ParquetSource] = field(default_factory=dict)
    views: dict[str, FeatureView] = field(default_factory=dict)
    services: dict[str, FeatureService] = field(default_factory=dict)

    def by_kind(self) -> dict[str, dict[str, Any]]:
        return {
            "entity": self.entities,
            "source": self.sources,
            "feature_view": self.views,
            "feature_service": self.services,
        }

    def specs(self) -> dict[str, dict[str, dict[str, Any]]]:
        """kind -> name -> JSON-safe spec: what the registry stores."""
        return {
            kind: {name: obj.to_spec() for name, obj in sorted(objs.items())}
            for kind, objs in self.by_kind().items()
        }

    @property
    def content_hash(self) -> str:
        return fingerprint(self.specs())

    @classmethod
    def from_specs(cls, specs: dict[str, dict[str, dict[str, Any]]]) -> Snapshot:
        sources = {n: ParquetSource.from_spec(s) for n, s in specs.get("source", {}).items()}
        return cls(
            entities={n: Entity.from_spec(s) for n, s in specs.get("entity", {}).items()},
            sources=sources,
            views={
                n: FeatureView.from_spec(s, sources[s["source"]])
                for n, s in specs.get("feature_view", {}).items()
            },
            services={n: FeatureService.from_spec(s) for n, s in specs.get("feature_service", {}).items()},
        )

    def get(self, kind: str, name: str) -> Any:
        try:
            return self.by_kind()[kind][name]
        except KeyError:
            raise NotFoundError(f"no {kind.replace('_', ' ')} named {name!r}") from None

    def resolve(self, features: Sequence[str] | str) -> list[ViewRequest]:
        """Resolve ``view:feature`` references or a service name, grouped by view in order."""
        if isinstance(features, str):
            if features not in self.services:
                if ":" in features:
                    features = [features]
                else:
                    raise NotFoundError(f"no feature service named {features!r}")
            else:
                features = self.services[features].feature_refs()
        if not features:
            raise NotFoundError("no features requested")
        grouped: dict[str, list[Field]] = {}
        for ref in features:
            try:
                view_name, feature_name = parse_ref(ref)
            except DefinitionError as e:
                raise NotFoundError(e.message) from None
            view = self.views.get(view_name)
            if view is None:
                raise NotFoundError(f"unknown feature view {view_name!r} in {ref!r}")
            try:
                f = view.feature(feature_name)
            except KeyError:
                raise NotFoundError(
                    f"feature view {view_name!r} has no feature {feature_name!r} in {ref!r}"
                ) from None
            chosen = grouped.setdefault(view_name, [])
            if f not in chosen:
                chosen.append(f)
        return [ViewRequest(self.views[v], tuple(fs)) for v, fs in grouped.items()]

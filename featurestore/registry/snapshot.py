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
    OnDemandFeatureView,
    ParquetSource,
    parse_ref,
)
from featurestore.definitions.base import fingerprint
from featurestore.errors import DefinitionError, NotFoundError

KIND_ORDER = ("entity", "source", "feature_view", "on_demand_view", "feature_service")


@dataclass(frozen=True)
class ViewRequest:
    """The features a lookup or training set asks of one view, in request order."""

    view: FeatureView
    features: tuple[Field, ...]


@dataclass(frozen=True)
class OnDemandRequest:
    """The features a lookup or training set asks of one on-demand view, in request order."""

    view: OnDemandFeatureView
    features: tuple[Field, ...]


@dataclass(frozen=True)
class Expanded:
    """A feature list with its on-demand features set apart: what to look up, what to compute."""

    requested: tuple[str, ...]  # every requested ``view:feature``, in request order
    refs: tuple[str, ...]  # the feature view references to look up: requested ones, then inputs
    on_demand: tuple[OnDemandRequest, ...]
    hidden: frozenset[str]  # inputs looked up only for on-demand views: not in the result


@dataclass
class Snapshot:
    """Entities, sources, views and services by name; every reference between them resolves."""

    entities: dict[str, Entity] = field(default_factory=dict)
    sources: dict[str, ParquetSource] = field(default_factory=dict)
    views: dict[str, FeatureView] = field(default_factory=dict)
    services: dict[str, FeatureService] = field(default_factory=dict)
    on_demand_views: dict[str, OnDemandFeatureView] = field(default_factory=dict)

    def by_kind(self) -> dict[str, dict[str, Any]]:
        return {
            "entity": self.entities,
            "source": self.sources,
            "feature_view": self.views,
            "on_demand_view": self.on_demand_views,
            "feature_service": self.services,
        }

    def specs(self) -> dict[str, dict[str, dict[str, Any]]]:
        """kind -> name -> JSON-safe spec: what the registry stores."""
        return {
            kind: {name: obj.to_spec() for name, obj in sorted(objs.items())}
            for kind, objs in self.by_kind().items()
            # no key for no on-demand views, so registries without them keep their content hash
            if objs or kind != "on_demand_view"
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
            on_demand_views={
                n: OnDemandFeatureView.from_spec(s) for n, s in specs.get("on_demand_view", {}).items()
            },
        )

    def get(self, kind: str, name: str) -> Any:
        try:
            return self.by_kind()[kind][name]
        except KeyError:
            raise NotFoundError(f"no {kind.replace('_', ' ')} named {name!r}") from None

    def expand(self, features: Sequence[str] | str) -> Expanded:
        """Set the on-demand features of a feature list (references or a service name) apart,
        adding the features their functions read to the references to look up."""
        refs = self._refs(features)
        plain: list[str] = []
        grouped: dict[str, list[Field]] = {}
        for ref in refs:
            view_name, _, feature_name = ref.partition(":")
            view = self.on_demand_views.get(view_name)
            if view is None:
                plain.append(ref)
                continue
            try:
                f = view.feature(feature_name)
            except KeyError:
                raise NotFoundError(
                    f"on-demand view {view_name!r} has no feature {feature_name!r} in {ref!r}"
                ) from None
            chosen = grouped.setdefault(view_name, [])
            if f not in chosen:
                chosen.append(f)
        wanted = set(plain)
        inputs = [r for v in grouped for r in self.on_demand_views[v].feature_inputs if r not in wanted]
        inputs = list(dict.fromkeys(inputs))
        requests = tuple(OnDemandRequest(self.on_demand_views[v], tuple(fs)) for v, fs in grouped.items())
        return Expanded(tuple(refs), tuple(plain + inputs), requests, frozenset(inputs))

    def _refs(self, features: Sequence[str] | str) -> list[str]:
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
        return list(features)

    def resolve(self, features: Sequence[str] | str) -> list[ViewRequest]:
        """Resolve ``view:feature`` references or a service name, grouped by view in order.

        On-demand features are not looked up: ``expand`` sets them apart first."""
        features = self._refs(features)
        grouped: dict[str, list[Field]] = {}
        for ref in features:
            try:
                view_name, feature_name = parse_ref(ref)
            except DefinitionError as e:
                raise NotFoundError(e.message) from None
            view = self.views.get(view_name)
            if view is None and view_name in self.on_demand_views:
                raise NotFoundError(f"{ref!r} is an on-demand feature: it is computed, not looked up")
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

"""FeatureService: a named set of features that a model trains and serves on."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from featurestore.definitions.base import caller_location, check_name, fingerprint
from featurestore.definitions.feature_view import FeatureView, FeatureViewProjection
from featurestore.definitions.on_demand import OnDemandFeatureView
from featurestore.errors import DefinitionError


@dataclass(frozen=True, eq=False)
class FeatureService:
    """Features from one or more views (on-demand ones too); ``features=[view, view[["a", "b"]]]``."""

    name: str
    features: Sequence[FeatureView | OnDemandFeatureView | FeatureViewProjection | str]
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    owner: str = ""
    defined_in: str = field(default="", compare=False, repr=False)

    def __post_init__(self) -> None:
        check_name("feature service", self.name)
        items = tuple(self.features)
        if not items:
            raise DefinitionError([f"feature service {self.name!r} has no features"])
        for item in items:
            if not isinstance(item, (FeatureView, OnDemandFeatureView, FeatureViewProjection, str)):
                raise DefinitionError(
                    [
                        f"feature service {self.name!r}: features takes views, view[[...]] "
                        f"or 'view:feature' strings, got {item!r}"
                    ]
                )
        object.__setattr__(self, "features", items)
        object.__setattr__(self, "tags", dict(self.tags))
        if not self.defined_in:
            object.__setattr__(self, "defined_in", caller_location())

    def feature_refs(self) -> list[str]:
        """The ``view:feature`` references this service names, in order."""
        refs: list[str] = []
        for item in self.features:
            if isinstance(item, (FeatureView, OnDemandFeatureView)):
                refs += [f"{item.name}:{f.name}" for f in item.features]
            elif isinstance(item, FeatureViewProjection):
                refs += [f"{item.view.name}:{f}" for f in item.features]
            else:
                refs.append(item)
        return refs

    def to_spec(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "features": self.feature_refs(),
            "description": self.description,
            "tags": dict(sorted(self.tags.items())),
            "owner": self.owner,
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> FeatureService:
        return cls(
            name=spec["name"],
            features=list(spec["features"]),
            description=spec.get("description", ""),
            tags=spec.get("tags", {}),
            owner=spec.get("owner", ""),
            defined_in="registry",
        )

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.to_spec())


def parse_ref(ref: str) -> tuple[str, str]:
    """Split ``"view:feature"``; anything else is a clear error."""
    view, sep, feature = ref.partition(":") if isinstance(ref, str) else ("", "", "")
    if not sep or not view or not feature or ":" in feature:
        raise DefinitionError([f"feature reference {ref!r} is not of the form 'view:feature'"])
    return view, feature

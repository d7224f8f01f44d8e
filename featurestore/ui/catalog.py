"""The catalog as the console shows it: every object of a registry version, what it uses and
what uses it, and a search by name, tag and owner."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from featurestore.registry import Snapshot

KINDS = ("entity", "source", "feature_view", "on_demand_view", "feature_service")
TITLES = {
    "entity": "Entities",
    "source": "Sources",
    "feature_view": "Feature views",
    "on_demand_view": "On-demand views",
    "feature_service": "Services",
}


@dataclass(frozen=True)
class Link:
    """A reference to another catalog object."""

    kind: str
    name: str


@dataclass
class Entry:
    """One catalog object: its spec as applied, and its links both ways."""

    kind: str
    name: str
    spec: dict[str, Any]
    uses: list[Link] = field(default_factory=list)
    used_by: list[Link] = field(default_factory=list)

    @property
    def description(self) -> str:
        return str(self.spec.get("description") or "")

    @property
    def owner(self) -> str:
        return str(self.spec.get("owner") or "")

    @property
    def tags(self) -> dict[str, str]:
        return dict(self.spec.get("tags") or {})

    def matches(self, text: str, tag: str, owner: str) -> bool:
        """Whether the entry fits a search: ``text`` in its name (or a feature's), ``tag`` as
        ``key`` or ``key=value``, ``owner`` in its owner (all case-insensitive, empty: any)."""
        if text:
            items = [*self.spec.get("features", []), *self.spec.get("aggregations", [])]
            names = [self.name, *(f["name"] for f in items if isinstance(f, dict))]
            if not any(text.lower() in n.lower() for n in names):
                return False
        if tag:
            key, _, value = tag.partition("=")
            if key not in self.tags or (value and self.tags[key] != value):
                return False
        return not owner or owner.lower() in self.owner.lower()


class Catalog:
    """Every object of one registry version by kind, linked both ways."""

    def __init__(self, snapshot: Snapshot) -> None:
        specs = snapshot.specs()
        self.entries: dict[str, dict[str, Entry]] = {
            kind: {name: Entry(kind, name, spec) for name, spec in specs[kind].items()} for kind in KINDS
        }
        for view in snapshot.views.values():
            for entity in view.entity_names:
                self._link(Link("feature_view", view.name), Link("entity", entity))
            self._link(Link("feature_view", view.name), Link("source", view.source.name))
        for od in snapshot.on_demand_views.values():  # computed from these views' features
            for view_name in dict.fromkeys(ref.split(":", 1)[0] for ref in od.feature_inputs):
                self._link(Link("on_demand_view", od.name), Link("feature_view", view_name))
        for service in snapshot.services.values():
            for view_name in dict.fromkeys(ref.split(":", 1)[0] for ref in service.feature_refs()):
                kind = "on_demand_view" if view_name in snapshot.on_demand_views else "feature_view"
                self._link(Link("feature_service", service.name), Link(kind, view_name))

    def _link(self, user: Link, used: Link) -> None:
        a, b = self.get(user.kind, user.name), self.get(used.kind, used.name)
        if a is not None and b is not None:
            a.uses.append(used)
            b.used_by.append(user)

    def get(self, kind: str, name: str) -> Entry | None:
        return self.entries.get(kind, {}).get(name)

    def search(self, text: str = "", tag: str = "", owner: str = "") -> dict[str, list[Entry]]:
        """Kind -> the entries that match, by name."""
        return {
            kind: [e for _, e in sorted(entries.items()) if e.matches(text, tag, owner)]
            for kind, entries in self.entries.items()
        }

    def tags(self) -> list[str]:
        """Every ``key=value`` tag in use, for the search form's suggestions."""
        return sorted(
            {f"{k}={v}" for es in self.entries.values() for e in es.values() for k, v in e.tags.items()}
        )

    def owners(self) -> list[str]:
        return sorted({e.owner for es in self.entries.values() for e in es.values() if e.owner})


def check_text(spec: dict[str, Any]) -> str:
    """A stored check spec as one readable line: pandera's own text (``in_range(0, 1)``) if kept."""
    if spec.get("error"):
        return str(spec["error"])
    stats = spec.get("statistics") or {}
    return f"{spec.get('name', 'check')}(" + ", ".join(f"{k}={v!r}" for k, v in stats.items()) + ")"

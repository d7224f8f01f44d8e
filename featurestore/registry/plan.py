"""Diff two snapshots into a plan: what apply would add, remove and change, field by field."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from featurestore.definitions import feature_view as view_spec
from featurestore.definitions import field as field_spec
from featurestore.registry.snapshot import KIND_ORDER, Snapshot


class Presence(Enum):
    """The value of a whole item (a feature, a check) in a diff: added when new, removed when old.

    Not ``True``, which a boolean attribute (``online``, ``nullable``) may hold.
    """

    PRESENT = "(present)"


PRESENT = Presence.PRESENT


@dataclass(frozen=True)
class FieldChange:
    """One changed attribute, as a dotted path such as ``features.conv_rate.dtype``."""

    path: str
    old: Any
    new: Any


@dataclass(frozen=True)
class Change:
    """An object added, removed or changed; ``breaking`` says why consumers would break."""

    kind: str
    name: str
    action: str  # "add" | "remove" | "change"
    fields: tuple[FieldChange, ...] = ()
    breaking: tuple[str, ...] = ()


@dataclass(frozen=True)
class Plan:
    """The difference between the applied registry (``base_version``) and the repo."""

    base_version: int | None
    content_hash: str
    changes: tuple[Change, ...] = field(default=())

    @property
    def is_empty(self) -> bool:
        return not self.changes

    @property
    def exit_code(self) -> int:
        """For ``plan --exit-code``: 0 no changes, 2 changes, 3 breaking changes (1 is an error)."""
        return 3 if self.breaking else 2 if self.changes else 0

    @property
    def breaking(self) -> list[str]:
        return [f"{c.kind.replace('_', ' ')} {c.name!r}: {b}" for c in self.changes for b in c.breaking]

    def summary(self) -> str:
        counts = {a: sum(c.action == a for c in self.changes) for a in ("add", "change", "remove")}
        return ", ".join(f"{n} to {a}" for a, n in counts.items() if n) or "no changes"


def make_plan(old: Snapshot | None, new: Snapshot, base_version: int | None) -> Plan:
    """Compare the applied ``old`` snapshot (None if nothing applied) with ``new``."""
    old = old or Snapshot()
    old_specs, new_specs = old.specs(), new.specs()
    served = _served_views(old)
    changes: list[Change] = []
    for kind in KIND_ORDER:
        before, after = old_specs.get(kind, {}), new_specs.get(kind, {})
        for name in sorted(after.keys() - before.keys()):
            changes.append(Change(kind, name, "add"))
        for name in sorted(before.keys() - after.keys()):
            changes.append(Change(kind, name, "remove", breaking=_removal_breaks(kind, name, old, served)))
        for name in sorted(before.keys() & after.keys()):
            diffs = _diff(_flatten(_full(kind, before[name])), _flatten(_full(kind, after[name])))
            if diffs:
                breaking = _change_breaks(kind, name, diffs, old, served)
                changes.append(Change(kind, name, "change", tuple(diffs), breaking))
    return Plan(base_version, new.content_hash, tuple(changes))


def _served_views(snapshot: Snapshot) -> dict[str, str]:
    """View name -> why its consumers depend on it (online, or named by a service)."""
    reasons = {name: "online" for name, v in snapshot.views.items() if v.online}
    for service in snapshot.services.values():
        for ref in service.feature_refs():
            reasons.setdefault(ref.split(":", 1)[0], f"used by feature service {service.name!r}")
    return reasons


def _removal_breaks(kind: str, name: str, old: Snapshot, served: dict[str, str]) -> tuple[str, ...]:
    if kind in ("feature_view", "on_demand_view") and name in served:
        return (f"removed while {served[name]}",)
    if kind == "feature_service":
        return ("removed: clients that request it will fail",)
    return ()


def _change_breaks(
    kind: str, name: str, diffs: list[FieldChange], old: Snapshot, served: dict[str, str]
) -> tuple[str, ...]:
    reasons: list[str] = []
    if kind in ("feature_view", "on_demand_view") and name in served:
        why = served[name]
        for d in diffs:
            parts = d.path.split(".")
            if parts[0] == "features" and len(parts) == 2 and d.new is None:
                reasons.append(f"feature {parts[1]!r} removed while {why}")
            elif parts[0] == "features" and parts[-1] == "dtype" and d.old is not None and d.new is not None:
                reasons.append(f"feature {parts[1]!r} changes dtype {d.old} -> {d.new} while {why}")
            elif kind == "on_demand_view":
                if parts[0] == "request_sources" and d.new is not None and d.old is None:
                    # a new request field: requests and entity frames without it are refused
                    reasons.append(f"new request input {'.'.join(parts[1:])} while {why}")
            elif parts[0] in ("join_keys", "entities"):
                reasons.append(f"{parts[0]} change while {why}")
            elif parts[0] == "aggregations" and len(parts) == 2 and d.new is None:
                reasons.append(f"feature {parts[1]!r} removed while {why}")
            elif parts[0] == "aggregations" and len(parts) == 3 and d.old is not None:
                # Same name, other values: every training set and online value changes meaning.
                reasons.append(f"feature {parts[1]!r} changes its {parts[2]} {d.old} -> {d.new} while {why}")
    if kind == "feature_service":
        for d in diffs:
            if d.path.startswith("features.") and d.new is None:
                reasons.append(f"feature {d.path.split('.', 1)[1]!r} removed from the service")
    if kind == "entity":
        if any(d.path.startswith("join_keys") for d in diffs):
            reasons.append("join keys change: views keyed by it change their keys")
    return tuple(dict.fromkeys(reasons))


def _full(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    """The spec with the attributes ``to_spec`` leaves out at their defaults, so a diff shows real values."""
    if kind != "feature_view":
        return spec
    features = [{**field_spec.SPEC_DEFAULTS, **f} for f in spec["features"]]
    return {**view_spec.SPEC_DEFAULTS, **spec, "features": features}


def _flatten(spec: Any, prefix: str = "") -> dict[str, Any]:
    """Nested spec -> dotted paths; lists of named dicts are keyed by name, so a reorder is no diff.

    An empty dict or list adds no path: empty and absent read the same, so adding the first
    tag shows as ``tags.team: (none) -> risk``, not as a change of ``tags`` too.
    """
    out: dict[str, Any] = {}
    if isinstance(spec, dict):
        for key, value in spec.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else key))
    elif isinstance(spec, list) and not spec:
        pass
    elif isinstance(spec, list) and all(isinstance(v, dict) and "name" in v for v in spec):
        for item in spec:
            item_prefix = f"{prefix}.{item['name']}"
            out[item_prefix] = PRESENT  # so a removed item shows as one change
            out.update(_flatten({k: v for k, v in item.items() if k != "name"}, item_prefix))
    elif isinstance(spec, list) and prefix == "features":
        for ref in spec:
            out[f"{prefix}.{ref}"] = PRESENT
    else:
        out[prefix] = spec
    return out


def _diff(old: dict[str, Any], new: dict[str, Any]) -> list[FieldChange]:
    changes: list[FieldChange] = []
    # Paths of whole items (marked PRESENT by _flatten) present on one side only.
    whole_items = {p for p in old.keys() ^ new.keys() if old.get(p, new.get(p)) is PRESENT}
    for path in sorted(old.keys() | new.keys()):
        a, b = old.get(path), new.get(path)
        if a == b:
            continue
        # Report a whole item added or removed once, not once per attribute below it
        # (at any depth: a removed feature's checks and their statistics included).
        parts = path.split(".")
        if any(".".join(parts[:i]) in whole_items for i in range(1, len(parts))):
            continue
        changes.append(FieldChange(path, a, b))
    return changes

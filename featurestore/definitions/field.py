"""Field: one named, typed column of a feature view, with optional pandera checks."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandera.pandas as pa_checks

from featurestore.definitions.base import check_name
from featurestore.definitions.types import DType, dtype_from_name
from featurestore.errors import DefinitionError


@dataclass(frozen=True)
class Field:
    """A feature (or a join key's declared type) in a view's schema."""

    name: str
    dtype: DType
    description: str = ""
    checks: Sequence[pa_checks.Check] = field(default=(), compare=False)
    # False: a null value is invalid (validation rejects the row), not just missing.
    nullable: bool = True

    def __post_init__(self) -> None:
        check_name("field", self.name)
        if not isinstance(self.dtype, DType):
            raise DefinitionError(
                [f"field {self.name!r}: dtype must be a featurestore type such as Int64, got {self.dtype!r}"]
            )
        checks = tuple(self.checks)
        for check in checks:
            if not isinstance(check, pa_checks.Check):
                raise DefinitionError(
                    [f"field {self.name!r}: checks takes pandera Check objects, got {check!r}"]
                )
        object.__setattr__(self, "checks", checks)
        if not isinstance(self.nullable, bool):
            raise DefinitionError([f"field {self.name!r}: nullable must be True or False"])

    def to_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "name": self.name,
            "dtype": self.dtype.name,
            "description": self.description,
            "checks": [check_spec(c) for c in self.checks],
        }
        if not self.nullable:  # only when set, so existing specs keep their fingerprints
            spec["nullable"] = False
        return spec

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Field:
        checks = [check_from_spec(s) or stand_in_check(s) for s in spec.get("checks", [])]
        return cls(
            spec["name"],
            dtype_from_name(spec["dtype"]),
            spec.get("description", ""),
            checks,
            nullable=spec.get("nullable", True),
        )


def check_spec(check: pa_checks.Check) -> dict[str, Any]:
    """A JSON-safe description of a pandera check; built-in checks round-trip through it."""
    stats = {k: _json_safe(v) for k, v in (check.statistics or {}).items()}
    return {"name": check.name or repr(check), "statistics": stats, "error": check.error}


def check_from_spec(spec: dict[str, Any]) -> pa_checks.Check | None:
    """Rebuild a built-in check (in_range, isin, ...); custom functions cannot be rebuilt."""
    factory = getattr(pa_checks.Check, spec.get("name") or "", None)
    if factory is None or not spec.get("statistics"):
        return None
    try:
        check: pa_checks.Check = factory(**spec["statistics"])
    except TypeError:
        return None
    return check


def stand_in_check(spec: dict[str, Any]) -> pa_checks.Check:
    """A custom check read back from the registry: its function cannot be rebuilt, so it
    passes everything, but it keeps the spec, so an unchanged re-apply plans no change."""
    return pa_checks.Check(
        _passes, name=spec.get("name"), error=spec.get("error"), statistics=dict(spec.get("statistics") or {})
    )


def _passes(data: Any) -> bool:
    return True


def _json_safe(value: Any) -> Any:
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_json_safe(v) for v in value]
    return repr(value)

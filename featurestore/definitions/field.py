"""Field: one named, typed column of a feature view, with optional pandera checks."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, overload

from featurestore.definitions.base import check_name
from featurestore.definitions.types import FLOATS, DType, dtype_from_name
from featurestore.errors import DefinitionError

if TYPE_CHECKING:
    import pandera.pandas as pa_checks


class CheckSpecs(Sequence["pa_checks.Check"]):
    """Checks read back from the registry: kept as their specs and built as pandera checks on
    first use, so that commands which never validate (training sets, lookups) never import
    pandera, which is about half of the CLI's start-up time."""

    def __init__(self, specs: Iterable[dict[str, Any]]) -> None:
        self.specs = tuple(specs)
        self._built: tuple[pa_checks.Check, ...] | None = None

    def _checks(self) -> tuple[pa_checks.Check, ...]:
        if self._built is None:
            self._built = tuple(check_from_spec(s) or stand_in_check(s) for s in self.specs)
        return self._built

    @overload
    def __getitem__(self, index: int) -> pa_checks.Check: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[pa_checks.Check]: ...
    def __getitem__(self, index: int | slice) -> pa_checks.Check | Sequence[pa_checks.Check]:
        return self._checks()[index]

    def __len__(self) -> int:
        return len(self.specs)

    def __repr__(self) -> str:
        return f"CheckSpecs({[s.get('name') for s in self.specs]})"


def checks_of(checks: Sequence[Any]) -> tuple[Sequence[Any], list[Any]]:
    """``checks`` as kept (lazy when read from the registry), and those that are not pandera checks."""
    if isinstance(checks, CheckSpecs):
        return checks, []
    checks = tuple(checks)
    if not checks:
        return checks, []
    import pandera.pandas as pa_checks  # the definitions that built them imported it already

    return checks, [c for c in checks if not isinstance(c, pa_checks.Check)]


def specs_of(checks: Sequence[Any]) -> list[dict[str, Any]]:
    """The JSON specs of checks (as stored, for checks read back from the registry)."""
    if isinstance(checks, CheckSpecs):
        return [dict(s) for s in checks.specs]
    return [check_spec(c) for c in checks]


# Attributes to_spec leaves out at these values, so existing specs keep their fingerprints.
SPEC_DEFAULTS: dict[str, Any] = {"nullable": True, "allow_nan": False}


@dataclass(frozen=True)
class Field:
    """A feature (or a join key's declared type) in a view's schema."""

    name: str
    dtype: DType
    description: str = ""
    checks: Sequence[pa_checks.Check] = field(default=(), compare=False)
    # False: a null value is invalid (validation rejects the row), not just missing.
    nullable: bool = True
    # NaN is a float value, not a null: a float field with checks refuses it unless this is
    # True (pandas would otherwise hide NaN from every check as a missing value).
    allow_nan: bool = False

    def __post_init__(self) -> None:
        check_name("field", self.name)
        if not isinstance(self.dtype, DType):
            raise DefinitionError(
                [f"field {self.name!r}: dtype must be a featurestore type such as Int64, got {self.dtype!r}"]
            )
        checks, bad = checks_of(self.checks)
        if bad:
            raise DefinitionError(
                [f"field {self.name!r}: checks takes pandera Check objects, got {bad[0]!r}"]
            )
        object.__setattr__(self, "checks", checks)
        if not isinstance(self.nullable, bool):
            raise DefinitionError([f"field {self.name!r}: nullable must be True or False"])
        if not isinstance(self.allow_nan, bool):
            raise DefinitionError([f"field {self.name!r}: allow_nan must be True or False"])
        if self.allow_nan and self.dtype.name not in FLOATS:
            raise DefinitionError(
                [f"field {self.name!r}: allow_nan is for Float32 and Float64 fields, not {self.dtype.name}"]
            )

    def to_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "name": self.name,
            "dtype": self.dtype.name,
            "description": self.description,
            "checks": specs_of(self.checks),
        }
        # Only fields that differ from the defaults, so existing specs keep their fingerprints.
        for key, default in SPEC_DEFAULTS.items():
            if getattr(self, key) != default:
                spec[key] = getattr(self, key)
        return spec

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Field:
        checks = CheckSpecs(spec.get("checks", []))
        return cls(
            spec["name"],
            dtype_from_name(spec["dtype"]),
            spec.get("description", ""),
            checks,
            nullable=spec.get("nullable", True),
            allow_nan=spec.get("allow_nan", False),
        )

    @property
    def refuses_nan(self) -> bool:
        """Whether a NaN value fails validation: a float field with checks, unless it allows NaN."""
        return self.dtype.name in FLOATS and bool(self.checks) and not self.allow_nan


def check_spec(check: pa_checks.Check) -> dict[str, Any]:
    """A JSON-safe description of a pandera check; built-in checks round-trip through it."""
    stats = {k: _json_safe(v) for k, v in (check.statistics or {}).items()}
    return {"name": check.name or repr(check), "statistics": stats, "error": check.error}


def check_from_spec(spec: dict[str, Any]) -> pa_checks.Check | None:
    """Rebuild a built-in check (in_range, isin, ...); custom functions cannot be rebuilt."""
    import pandera.pandas as pa_checks

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
    import pandera.pandas as pa_checks

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

"""Entity: the thing features describe, identified by one or more join keys."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from featurestore.definitions.base import caller_location, check_name, fingerprint
from featurestore.errors import DefinitionError


@dataclass(frozen=True, eq=False)
class Entity:
    """An entity such as a driver; ``join_keys`` may be composite."""

    name: str
    join_keys: Sequence[str]
    description: str = ""
    defined_in: str = field(default="", compare=False, repr=False)

    def __post_init__(self) -> None:
        check_name("entity", self.name)
        keys = [self.join_keys] if isinstance(self.join_keys, str) else list(self.join_keys)
        if not keys:
            raise DefinitionError([f"entity {self.name!r} has no join keys"])
        for key in keys:
            check_name(f"entity {self.name!r} join key", key)
        if len(set(keys)) != len(keys):
            raise DefinitionError([f"entity {self.name!r} repeats a join key: {keys}"])
        object.__setattr__(self, "join_keys", tuple(keys))
        if not self.defined_in:
            object.__setattr__(self, "defined_in", caller_location())

    def to_spec(self) -> dict[str, Any]:
        return {"name": self.name, "join_keys": list(self.join_keys), "description": self.description}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Entity:
        return cls(spec["name"], spec["join_keys"], spec.get("description", ""), defined_in="registry")

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.to_spec())

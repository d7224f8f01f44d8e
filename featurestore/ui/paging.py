"""Query values of the console's pages, checked: a bad value is a 400 with a clear message."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from featurestore.errors import InvalidRequestError

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
MAX_OFFSET = 10**9


def integer(query: Mapping[str, str], name: str, default: int | None, low: int, high: int) -> int | None:
    """The query value ``name`` as an integer in [low, high], ``default`` when absent or empty."""
    raw = query.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidRequestError(f"{name}={raw[:40]!r} is not a whole number") from None
    if not low <= value <= high:
        raise InvalidRequestError(f"{name}={value} is out of range: give {low} to {high}")
    return value


def only_kind(query: Mapping[str, str], kinds: Sequence[str], what: str) -> str:
    """The query's ``kind`` (one list of a page shown alone): one of ``kinds``, "" for all."""
    only = query.get("kind", "")
    if only and only not in kinds:
        raise InvalidRequestError(f"kind={only[:40]!r} is not {what}: give one of {', '.join(kinds)}")
    return only


@dataclass(frozen=True)
class Page:
    """``limit`` items from ``offset``; ``total`` once known, for the links to other pages."""

    limit: int
    offset: int
    total: int = 0

    @classmethod
    def of(cls, query: Mapping[str, str]) -> Page:
        limit = integer(query, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        offset = integer(query, "offset", 0, 0, MAX_OFFSET)
        assert limit is not None and offset is not None  # defaults given
        return cls(limit, offset)

    def with_total(self, total: int) -> Page:
        return Page(self.limit, self.offset, total)

    @property
    def previous(self) -> int | None:
        return None if self.offset == 0 else max(0, self.offset - self.limit)

    @property
    def next(self) -> int | None:
        return self.offset + self.limit if self.offset + self.limit < self.total else None

    @property
    def last(self) -> int:
        return min(self.total, self.offset + self.limit)

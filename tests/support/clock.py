"""Fixed times for test data, so no test depends on the clock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

# Generated example data ends here (datagen's ``end``).
DATA_END = datetime(2026, 1, 31, tzinfo=UTC)


def minutes_after(start: datetime) -> Callable[[float], datetime]:
    """``at(m)``: the time ``m`` minutes after ``start`` (the way the tests write event times)."""

    def at(minutes: float) -> datetime:
        return start + timedelta(minutes=minutes)

    return at

"""ByteBudget's accounting on its own (the servers' use of it is in test_limits.py)."""

from __future__ import annotations

import asyncio

import pytest

from featurestore.errors import ResourceExhaustedError
from featurestore.serving.limits import ByteBudget


async def _settle() -> None:
    for _ in range(3):  # call_later(0) and the executor's trim
        await asyncio.sleep(0.01)


def test_one_request_over_the_whole_budget_is_let_in_alone_and_refused_beside_another() -> None:
    budget = ByteBudget(100)
    budget.take(500)  # alone: let in, so that "retry" can always succeed
    with pytest.raises(ResourceExhaustedError, match="500 of max_bytes_in_flight 100"):
        budget.take(1)
    budget.used = 0
    budget.take(60)
    budget.take(40)  # exactly full
    with pytest.raises(ResourceExhaustedError, match="server busy: an answer of 1 bytes"):
        budget.take(1, "an answer")
    budget.take(1, "an answer", held=100)  # its own bytes: not another's
    assert budget.used == 101


def test_memory_is_handed_back_once_the_budget_has_passed_and_nothing_is_in_flight() -> None:
    async def run() -> list[int]:
        budget = ByteBudget(100, release_every=0)
        seen = []
        budget.take(60)
        budget.give(60)  # 60 passed: not yet
        await _settle()
        seen.append(budget.releases)
        budget.take(50)
        budget.take(30)
        budget.give(50)  # 110 passed, 30 still in flight: not yet
        await _settle()
        seen.append(budget.releases)
        budget.give(30)  # drained
        await _settle()
        seen.append(budget.releases)
        return seen

    assert asyncio.run(run()) == [0, 0, 1]


def test_refused_bytes_count_toward_the_release() -> None:
    """A burst refused almost whole was read into memory by the transport all the same."""

    async def run() -> int:
        budget = ByteBudget(100, release_every=0)
        budget.take(60)
        for _ in range(3):
            with pytest.raises(ResourceExhaustedError):
                budget.take(50)
        budget.give(60)  # 60 taken + 150 refused
        await _settle()
        return budget.releases

    assert asyncio.run(run()) == 1


def test_releases_are_at_most_every_release_every_seconds() -> None:
    async def run() -> tuple[int, int, int]:
        # An interval far longer than _settle can take on a loaded machine (0.3 s was not).
        budget = ByteBudget(10, release_every=3.0)
        budget.take(10)
        budget.give(10)
        await _settle()
        first = budget.releases
        budget.take(10)
        budget.give(10)  # passed again at once: waits for the interval
        await _settle()
        early = budget.releases
        await asyncio.sleep(3.5)
        return first, early, budget.releases

    assert asyncio.run(run()) == (1, 1, 2)

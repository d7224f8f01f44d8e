"""Training sets of time-window aggregations against the plain-Python reference.

Alone: pytest tests/offline/test_aggregations.py (about 30 ingestions and training sets).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings

from featurestore import FeatureStore
from tests.offline.agg_cases import EDGE_CASES, EDGES, EXAMPLE, check_example, make_agg_repo


@pytest.fixture(scope="module")
def agg_repo(tmp_path_factory: pytest.TempPathFactory) -> FeatureStore:
    """One repo for the whole module; each example rewrites its data and re-ingests."""
    return make_agg_repo(tmp_path_factory.mktemp("agg"))


# 30 examples, each an ingestion and a training set of 32 aggregations. With the two explicit
# ones they meet the edges (when written, counted with the reference standing in for the store):
# an event at the entity time 83, one exactly one window old 73, a superseded version 250, a
# winning null correction 198, a NaN 203, an empty window 281, a single value for a variance 94,
# last_n truncated 183, a key never seen or null 59. The examples depend on this function's
# source (derandomized): after editing it, check the counts still clear the floors with room.
@pytest.mark.timeout(1800)
def test_matches_reference(agg_repo: FeatureStore) -> None:
    hit: Counter[str] = Counter()

    @settings(
        max_examples=30, deadline=None, derandomize=True, database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(**EXAMPLE)
    @example(**EDGES)
    @example(**{**EDGES, "form": "pandas", "full_names": False})
    def check(
        files: list[list[tuple[Any, ...]]],
        corrections: list[tuple[Any, ...]],
        entities: list[tuple[Any, ...]],
        form: str,
        full_names: bool,
    ) -> None:
        hit.update(check_example(agg_repo, files, corrections, entities, form, full_names))

    check()
    # The examples must reach the edges, not only pass: each case met by many entity rows.
    assert all(hit[case] >= least for case, least in EDGE_CASES.items()), hit

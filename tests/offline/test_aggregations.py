"""Training sets of time-window aggregations against the plain-Python reference.

Alone: pytest tests/offline/test_aggregations.py (about 30 ingestions and training sets).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, example, given, settings

from featurestore import FeatureStore
from tests.offline.agg_cases import (
    EDGE_CASES,
    EDGES,
    EXAMPLE,
    SKETCH_SPECS,
    SPECS,
    check_example,
    make_agg_repo,
    ts,
    write_events,
)


@pytest.fixture(scope="module")
def agg_repo(tmp_path_factory: pytest.TempPathFactory) -> FeatureStore:
    """One repo for the whole module; each example rewrites its data and re-ingests."""
    return make_agg_repo(tmp_path_factory.mktemp("agg"))


# 30 examples, each an ingestion and a training set of 34 aggregations. With the two explicit
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
        specs = SPECS + SKETCH_SPECS
        hit.update(check_example(agg_repo, files, corrections, entities, form, full_names, specs=specs))

    check()
    # The examples must reach the edges, not only pass: each case met by many entity rows.
    assert all(hit[case] >= least for case, least in EDGE_CASES.items()), hit


def test_aggregation_features_have_statistics_and_drift_between_training_sets(tmp_path: Path) -> None:
    """A training set keeps statistics of its aggregation features like any feature's, so two
    training sets compare; an ingestion run holds the events' columns, not the aggregates, and
    the report says so rather than comparing unlike things."""
    (tmp_path / "repo").mkdir()
    store = make_agg_repo(tmp_path / "repo")
    # 40 users: one event an hour over the first 10 hours, then six an hour.
    events = [
        (user, minute, None, float(minute % 7), minute // 10 % 5 + 1, "acme")
        for user in range(1, 41)
        for minute in [*range(0, 600, 60), *range(600, 1200, 10)]
    ]
    write_events(tmp_path / "repo", [events])
    store.ingest()
    features = ["user_txn:amount_count_1m", "user_txn:amount_mean_1h", "user_txn:units_sum_1h"]
    ids = []
    for start in (300, 900):  # entity rows in the quiet hours, then in the busy ones
        rows = pa.table(
            {
                "user_id": pa.array([u for u in range(1, 41) for _ in range(5)], pa.int64()),
                "event_timestamp": pa.array(
                    [ts(start + 30 * k) for _ in range(1, 41) for k in range(5)], pa.timestamp("us", "UTC")
                ),
            }
        )
        with store.get_training_set(rows, features) as training_set:
            training_set.to_parquet(tmp_path / f"train-{start}.parquet")
            ids.append(str(training_set.manifest["id"]))
    report = store.drift("user_txn", ids[0], ids[1])
    assert sorted(f.feature for f in report.features) == sorted(features)
    others = len(store.get_feature_view("user_txn").aggregations) - 3  # in neither training set
    assert len(report.skipped) == others
    assert "user_txn:units_sum_1h" in [f.feature for f in report.drifted]  # 1 event an hour -> 6
    against_events = store.drift("user_txn", ids[0], "latest")
    assert against_events.features == ()
    reasons = {s.feature: s.reason for s in against_events.skipped}
    assert {reasons[f] for f in features} == {"not in the current (latest (ingest-1))"}

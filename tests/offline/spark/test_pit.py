"""The Spark engine's point-in-time join against the plain-Python reference: the cases of
tests/offline/test_pit.py, fewer of them (each costs Spark jobs), and entity keys of 32 bits
as well as 64 against the views' Int64 keys."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from featurestore import FeatureStore
from tests.offline.pit_cases import EDGES, EXAMPLE, check_example, edges_hit, make_pit_repo
from tests.support.spark import use_spark

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

# What the examples below reached when this was written (deterministic: derandomized); the
# floors keep them reaching every edge, the two explicit examples most of all.
# No shrinking: each step would be Spark jobs; a failure shows the example as generated.
PHASES = [Phase.explicit, Phase.generate]
EDGE_FLOORS = {"at entity time": 8, "equal event times": 8, "one TTL old": 5, "just past TTL": 3}


@pytest.fixture(scope="module")
def spark_pit_repo(tmp_path_factory: pytest.TempPathFactory, spark: SparkSession) -> FeatureStore:
    """One repo for the module, on the Spark engine; each example rewrites its data."""
    repo = make_pit_repo(tmp_path_factory.mktemp("spark-pit")).config.repo
    use_spark(repo)
    return FeatureStore(repo)


def test_matches_reference(spark_pit_repo: FeatureStore) -> None:
    hit: Counter[str] = Counter()
    entity_rows = 0

    @settings(
        max_examples=4, deadline=None, derandomize=True, database=None, phases=PHASES,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(**EXAMPLE, key_type=st.sampled_from([pa.int64(), pa.int32()]))
    @example(
        **EDGES, zone="UTC", unit="s", form="arrow", ts_column="event_timestamp", full_names=True,
        key_type=pa.int32(),
    )
    @example(
        **EDGES, zone="naive", unit="ns", form="pandas", ts_column="labelled_at", full_names=False,
        key_type=pa.int64(),
    )
    def check(key_type: pa.DataType, **case: Any) -> None:
        nonlocal entity_rows
        views = check_example(spark_pit_repo, **case, key_type=key_type)
        for view, entity_keys, times, rows, ttl in views:
            if view in ("driver_ttl", "customer_v"):
                hit.update(edges_hit(entity_keys, times, rows, ttl))
        entity_rows += len(case["entities"])

    check()
    assert all(hit[case] >= least for case, least in EDGE_FLOORS.items()), hit
    assert hit["matched"] >= 0.25 * 2 * entity_rows, (hit, entity_rows)

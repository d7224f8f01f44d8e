"""get_online_features: naming, composite keys, every kind of bad request, and Redis down."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from featurestore import FeatureStore
from featurestore.errors import InvalidRequestError, NotFoundError, OnlineStoreUnavailable
from featurestore.online.lookup import DEFAULT_MAX_ENTITIES, MAX_FEATURES
from tests.online.helpers import TZ, lookup, single_redis
from tests.support.redis import RedisClient
from tests.support.repos import make_store

DEFS = """
from featurestore import Entity, FeatureService, FeatureView, Field, Float64, Int64, ParquetSource, String

driver = Entity("driver", join_keys=["driver_id"])
trip = Entity("trip", join_keys=["driver_id", "zone"])
stats = FeatureView(
    "stats", entities=[driver],
    source=ParquetSource("stats_src", path="data/stats.parquet", timestamp_field="ts"),
    schema=[Field("trips", Int64), Field("score", Float64)])
zones = FeatureView(
    "zones", entities=[trip],
    source=ParquetSource("zones_src", path="data/zones.parquet", timestamp_field="ts"),
    schema=[Field("trips", Int64), Field("label", String)])
svc = FeatureService("svc", features=[stats[["score"]], zones[["label"]]])
"""


def build(repo: Path) -> FeatureStore:
    at = datetime.now(UTC) - timedelta(hours=1)
    return make_store(
        repo,
        DEFS,
        {
            "stats.parquet": pa.table(
                {
                    "driver_id": pa.array([1, 2], pa.int64()),
                    "ts": pa.array([at, at], TZ),
                    "trips": pa.array([10, 20], pa.int64()),
                    "score": [0.5, None],
                }
            ),
            "zones.parquet": pa.table(
                {
                    "driver_id": pa.array([1, 1, 2], pa.int64()),
                    "zone": ["a", "b", "a"],
                    "ts": pa.array([at] * 3, TZ),
                    "trips": pa.array([1, 2, 3], pa.int64()),
                    "label": ["1a", "1b", "2a"],
                }
            ),
        },
        project="online",
    )


@pytest.fixture
def store(tmp_path: Path, any_redis: RedisClient) -> FeatureStore:
    fs = build(tmp_path / "repo")
    fs.materialize()
    return fs


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory) -> FeatureStore:
    """Applied, never materialized: requests are checked before Redis is asked."""
    return build(tmp_path_factory.mktemp("lookup") / "repo")


def test_composite_keys_and_two_entities_in_one_request(store: FeatureStore) -> None:
    got = lookup(store, "svc", {"driver_id": [1, 1, 2, 2, 3], "zone": ["b", "a", "a", "b", "a"]})
    assert got == (
        {
            "driver_id": [1, 1, 2, 2, 3],
            "zone": ["b", "a", "a", "b", "a"],
            "score": [0.5, 0.5, None, None, None],
            "label": ["1b", "1a", "2a", None, None],
        },
        {
            "score": ["PRESENT", "PRESENT", "NULL_VALUE", "NULL_VALUE", "NOT_FOUND"],
            "label": ["PRESENT", "PRESENT", "PRESENT", "NOT_FOUND", "NOT_FOUND"],
        },
    )


@single_redis
def test_full_feature_names_tell_views_apart(store: FeatureStore) -> None:
    both = ["stats:trips", "zones:trips"]
    with pytest.raises(
        InvalidRequestError, match=r"\['trips'\] appear in more than one view.*full_feature_names"
    ):
        store.get_online_features(both, {"driver_id": [1], "zone": ["b"]})
    values, statuses = lookup(store, both, {"driver_id": [1], "zone": ["b"]}, full_feature_names=True)
    assert values == {"driver_id": [1], "zone": ["b"], "stats__trips": [10], "zones__trips": [2]}
    assert list(statuses) == ["stats__trips", "zones__trips"]
    # Output follows the request, grouped by view; asking twice for a feature gives it once.
    result = store.get_online_features(
        ["zones:label", "stats:score", "zones:trips", "zones:label"], {"driver_id": [1], "zone": ["a"]}
    )
    assert [c.name for c in result.features] == ["label", "trips", "score"]
    assert [c.ref for c in result.features] == ["zones:label", "zones:trips", "stats:score"]


@single_redis
def test_results_convert_to_arrow_with_declared_types(store: FeatureStore) -> None:
    table = store.get_online_features(["stats:trips", "stats:score"], {"driver_id": [2, 1, 9]}).to_arrow()
    assert table.schema == pa.schema(
        [("driver_id", pa.int64()), ("trips", pa.int64()), ("score", pa.float64())]
    )
    assert table.to_pydict() == {"driver_id": [2, 1, 9], "trips": [20, 10, None], "score": [None, 0.5, None]}


@single_redis
def test_numpy_arrays_are_accepted_as_key_columns(store: FeatureStore) -> None:
    got = lookup(store, ["stats:trips"], {"driver_id": np.array([2, 1], dtype=np.int64)})
    assert got[0] == {"driver_id": [2, 1], "trips": [20, 10]}


ONE = {"driver_id": [1]}


@pytest.mark.parametrize(
    ("features", "entities", "error", "match"),
    [
        (["ghost:x"], ONE, NotFoundError, "unknown feature view 'ghost'"),
        (["stats:nope"], ONE, NotFoundError, "feature view 'stats' has no feature 'nope'"),
        ("ghost", ONE, NotFoundError, "no feature service named 'ghost'"),
        ([], ONE, NotFoundError, "no features requested"),
        (["stats"], ONE, NotFoundError, "stats"),
        (
            ["stats:trips"],
            {"zone": ["a"]},
            InvalidRequestError,
            r"missing join key 'driver_id'.*\['driver_id'\]",
        ),
        (["zones:label"], ONE, InvalidRequestError, "missing join key 'zone'"),
        (
            ["stats:trips"],
            {"driver_id": [1], "zone": ["a"]},
            InvalidRequestError,
            r"unknown join key\(s\) \['zone'\]; expected \['driver_id'\]",
        ),
        (
            ["stats:trips"],
            {"driver_id": ["1"]},
            InvalidRequestError,
            "'driver_id' takes Int64 values, got str '1'",
        ),
        (
            ["stats:trips"],
            {"driver_id": [True]},
            InvalidRequestError,
            "'driver_id' takes Int64 values, got bool",
        ),
        (
            ["stats:trips"],
            {"driver_id": [1.0]},
            InvalidRequestError,
            "'driver_id' takes Int64 values, got float",
        ),
        (["stats:trips"], {"driver_id": [None]}, InvalidRequestError, "takes Int64 values, got NoneType"),
        (
            ["zones:label"],
            {"driver_id": [1], "zone": [1]},
            InvalidRequestError,
            "'zone' takes String values, got int",
        ),
        (
            ["zones:label"],
            {"driver_id": [1, 2], "zone": ["a"]},
            InvalidRequestError,
            "join key 'zone' has 1 values, 'driver_id' has 2",
        ),
        (["stats:trips"], {"driver_id": []}, InvalidRequestError, "no entities in the request"),
        (["stats:trips"], {"driver_id": 1}, InvalidRequestError, "'driver_id' must be a list of values"),
        (["stats:trips"], {"driver_id": "1"}, InvalidRequestError, "'driver_id' must be a list of values"),
        (["stats:trips"], [1], InvalidRequestError, "entities must map each join key"),
        (
            ["stats:trips"],
            {"driver_id": list(range(DEFAULT_MAX_ENTITIES + 1))},
            InvalidRequestError,
            f"{DEFAULT_MAX_ENTITIES + 1} entities in one request, "
            f"more than the limit of {DEFAULT_MAX_ENTITIES}",
        ),
    ],
)
def test_bad_requests_are_refused_with_the_reason(
    applied: FeatureStore, features: Any, entities: Any, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        applied.get_online_features(features, entities)


def test_a_limit_of_entities_is_checked_exactly(applied: FeatureStore) -> None:
    plan = applied.online_registry().plan(("stats:trips",), False)
    n, _ = plan.entity_columns({"driver_id": list(range(DEFAULT_MAX_ENTITIES))})
    assert n == DEFAULT_MAX_ENTITIES


def test_a_limit_of_features_bounds_what_the_plan_cache_can_hold(applied: FeatureStore) -> None:
    registry = applied.online_registry()
    registry.plan(("stats:trips",) * MAX_FEATURES, False)  # the limit itself is served
    cached = registry._cached_plan.cache_info().currsize
    with pytest.raises(InvalidRequestError, match=f"{MAX_FEATURES + 1} features in one request, more than"):
        registry.plan(("stats:trips",) * (MAX_FEATURES + 1), False)
    assert registry._cached_plan.cache_info().currsize == cached  # refused before the cache


def test_an_offline_view_is_not_served(tmp_path: Path) -> None:
    fs = build(tmp_path / "repo")
    (tmp_path / "repo" / "defs.py").write_text(
        DEFS.replace('Field("label", String)])', 'Field("label", String)], online=False)')
    )
    fs.apply(allow_breaking=True)
    with pytest.raises(InvalidRequestError, match="feature view 'zones' is not online"):
        FeatureStore(fs.config.repo).get_online_features(["zones:label"], {"driver_id": [1], "zone": ["a"]})


def test_unreachable_redis_fails_fast_and_keeps_the_password_secret(
    applied: FeatureStore, closed_redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = closed_redis_url.replace("redis://", "redis://user:hunter2@")
    monkeypatch.setenv("FEATURESTORE_REDIS_URL", url)
    fs = FeatureStore(applied.config.repo)
    for call in (lambda: fs.get_online_features(["stats:trips"], ONE), fs.materialize):
        with pytest.raises(OnlineStoreUnavailable, match="does not answer") as caught:
            call()
        assert "hunter2" not in str(caught.value) and "user:***@127.0.0.1" in str(caught.value)


@single_redis
def test_a_lookup_after_apply_sees_the_applied_definitions(store: FeatureStore) -> None:
    assert lookup(store, ["zones:label"], {"driver_id": [1], "zone": ["a"]})[0]["label"] == ["1a"]
    defs = store.config.repo / "defs.py"
    defs.write_text(DEFS.replace('Field("label", String)])', 'Field("label", String)], online=False)'))
    store.apply(allow_breaking=True)
    with pytest.raises(InvalidRequestError, match="'zones' is not online"):
        store.get_online_features(["zones:label"], {"driver_id": [1], "zone": ["a"]})

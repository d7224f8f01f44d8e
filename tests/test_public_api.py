"""The names `from featurestore import ...` offers are a contract: pin them exactly."""

from __future__ import annotations

import featurestore
from featurestore.errors import FeatureStoreError

EXPECTED = [
    "Aggregation",
    "ApplyResult",
    "Bool",
    "Client",
    "Bytes",
    "DType",
    "Entity",
    "FeatureLog",
    "FeatureService",
    "FeatureStore",
    "FeatureStoreError",
    "FeatureView",
    "Field",
    "Float32",
    "Float64",
    "Int32",
    "Int64",
    "List",
    "OnDemandFeatureView",
    "ParquetSource",
    "PushResult",
    "RequestSource",
    "String",
    "Timestamp",
    "on_demand_view",
]


def test_all_is_pinned_exactly() -> None:
    assert featurestore.__all__ == EXPECTED


def test_every_exported_name_exists() -> None:
    missing = [name for name in featurestore.__all__ if not hasattr(featurestore, name)]
    assert missing == []


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from featurestore import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == sorted(EXPECTED)


def test_exported_objects_are_the_real_ones() -> None:
    from featurestore.definitions import types
    from featurestore.store import FeatureStore

    assert featurestore.FeatureStore is FeatureStore
    assert featurestore.FeatureStoreError is FeatureStoreError
    from featurestore.offline.feature_log import FeatureLog

    assert featurestore.FeatureLog is FeatureLog
    assert featurestore.Float32 is types.Float32
    assert featurestore.List(featurestore.Float32).name == "List(Float32)"
    assert featurestore.__version__ == "0.1.0"

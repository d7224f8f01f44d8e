"""featurestore: declare features once in Python; train on point-in-time correct sets from
DuckDB; serve the latest values from Redis over gRPC, HTTP or in process.

The public names load on first use (PEP 562), so ``import featurestore`` and the CLI's
``--help`` do not pay for pyarrow, DuckDB, Redis or gRPC before a command needs them.
"""

import importlib
import warnings
from typing import TYPE_CHECKING

# pandera imports pyspark.pandas whenever PySpark is installed (the Spark engine's extra), and
# that warns about pandas 3 on every validation: we never use pyspark.pandas, so a CLI error
# stays one line.
warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)

if TYPE_CHECKING:
    from featurestore.definitions import (
        Aggregation,
        Bool,
        Bytes,
        DType,
        Entity,
        FeatureService,
        FeatureView,
        Field,
        Float32,
        Float64,
        Int32,
        Int64,
        List,
        OnDemandFeatureView,
        ParquetSource,
        RequestSource,
        String,
        Timestamp,
        on_demand_view,
    )
    from featurestore.errors import FeatureStoreError
    from featurestore.offline.feature_log import FeatureLog
    from featurestore.online.push import PushResult
    from featurestore.serving.client import Client
    from featurestore.store import ApplyResult, FeatureStore

__version__ = "0.1.0"

# Public name -> the module that defines it.
_WHERE = {
    **{
        name: "featurestore.definitions"
        for name in (
            "Aggregation", "Bool", "Bytes", "DType", "Entity", "FeatureService", "FeatureView",
            "Field", "Float32", "Float64", "Int32", "Int64", "List", "OnDemandFeatureView",
            "ParquetSource", "RequestSource", "String", "Timestamp", "on_demand_view",
        )
    },
    "FeatureStoreError": "featurestore.errors",
    "FeatureLog": "featurestore.offline.feature_log",
    "PushResult": "featurestore.online.push",
    "Client": "featurestore.serving.client",
    "ApplyResult": "featurestore.store",
    "FeatureStore": "featurestore.store",
}


def __getattr__(name: str) -> object:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'featurestore' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))


__all__ = [
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

"""featurestore: declare features once in Python; train on point-in-time correct sets from
DuckDB; serve the latest values from Redis over gRPC, HTTP or in process."""

import warnings

# pandera imports pyspark.pandas whenever PySpark is installed (the Spark engine's extra), and
# that warns about pandas 3 on every validation: we never use pyspark.pandas, so a CLI error
# stays one line.
warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)

from featurestore.definitions import (  # noqa: E402
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
from featurestore.errors import FeatureStoreError  # noqa: E402
from featurestore.online.push import PushResult  # noqa: E402
from featurestore.store import ApplyResult, FeatureStore  # noqa: E402

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # The gRPC client loads grpc; only code that uses it pays for the import.
    if name == "Client":
        from featurestore.serving.client import Client

        return Client
    raise AttributeError(f"module 'featurestore' has no attribute {name!r}")


__all__ = [
    "Aggregation",
    "ApplyResult",
    "Bool",
    "Client",
    "Bytes",
    "DType",
    "Entity",
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

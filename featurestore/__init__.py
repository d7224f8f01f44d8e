"""featurestore: declare features once in Python; train on point-in-time correct sets from
DuckDB; serve the latest values from Redis over gRPC, HTTP or in process."""

from featurestore.definitions import (
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
    ParquetSource,
    String,
    Timestamp,
)
from featurestore.errors import FeatureStoreError
from featurestore.store import ApplyResult, FeatureStore

__version__ = "0.1.0"

__all__ = [
    "ApplyResult",
    "Bool",
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
    "ParquetSource",
    "String",
    "Timestamp",
]

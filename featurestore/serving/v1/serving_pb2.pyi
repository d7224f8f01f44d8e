from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ValueType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VALUE_TYPE_UNSPECIFIED: _ClassVar[ValueType]
    INT32: _ClassVar[ValueType]
    INT64: _ClassVar[ValueType]
    FLOAT32: _ClassVar[ValueType]
    FLOAT64: _ClassVar[ValueType]
    STRING: _ClassVar[ValueType]
    BOOL: _ClassVar[ValueType]
    BYTES: _ClassVar[ValueType]
    TIMESTAMP: _ClassVar[ValueType]
    INT32_LIST: _ClassVar[ValueType]
    INT64_LIST: _ClassVar[ValueType]
    FLOAT32_LIST: _ClassVar[ValueType]
    FLOAT64_LIST: _ClassVar[ValueType]
    STRING_LIST: _ClassVar[ValueType]
    BOOL_LIST: _ClassVar[ValueType]
    BYTES_LIST: _ClassVar[ValueType]
    TIMESTAMP_LIST: _ClassVar[ValueType]

class FieldStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FIELD_STATUS_UNSPECIFIED: _ClassVar[FieldStatus]
    PRESENT: _ClassVar[FieldStatus]
    NULL_VALUE: _ClassVar[FieldStatus]
    NOT_FOUND: _ClassVar[FieldStatus]
    EXPIRED: _ClassVar[FieldStatus]
    CORRUPT: _ClassVar[FieldStatus]
VALUE_TYPE_UNSPECIFIED: ValueType
INT32: ValueType
INT64: ValueType
FLOAT32: ValueType
FLOAT64: ValueType
STRING: ValueType
BOOL: ValueType
BYTES: ValueType
TIMESTAMP: ValueType
INT32_LIST: ValueType
INT64_LIST: ValueType
FLOAT32_LIST: ValueType
FLOAT64_LIST: ValueType
STRING_LIST: ValueType
BOOL_LIST: ValueType
BYTES_LIST: ValueType
TIMESTAMP_LIST: ValueType
FIELD_STATUS_UNSPECIFIED: FieldStatus
PRESENT: FieldStatus
NULL_VALUE: FieldStatus
NOT_FOUND: FieldStatus
EXPIRED: FieldStatus
CORRUPT: FieldStatus

class Int32List(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, values: _Optional[_Iterable[int]] = ...) -> None: ...

class Int64List(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, values: _Optional[_Iterable[int]] = ...) -> None: ...

class FloatList(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class DoubleList(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class StringList(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, values: _Optional[_Iterable[str]] = ...) -> None: ...

class BoolList(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[bool]
    def __init__(self, values: _Optional[_Iterable[bool]] = ...) -> None: ...

class BytesList(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, values: _Optional[_Iterable[bytes]] = ...) -> None: ...

class ListList(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedCompositeFieldContainer[Values]
    def __init__(self, values: _Optional[_Iterable[_Union[Values, _Mapping]]] = ...) -> None: ...

class Values(_message.Message):
    __slots__ = ("int32_values", "int64_values", "float_values", "double_values", "string_values", "bool_values", "bytes_values", "timestamp_values", "list_values", "null_positions")
    INT32_VALUES_FIELD_NUMBER: _ClassVar[int]
    INT64_VALUES_FIELD_NUMBER: _ClassVar[int]
    FLOAT_VALUES_FIELD_NUMBER: _ClassVar[int]
    DOUBLE_VALUES_FIELD_NUMBER: _ClassVar[int]
    STRING_VALUES_FIELD_NUMBER: _ClassVar[int]
    BOOL_VALUES_FIELD_NUMBER: _ClassVar[int]
    BYTES_VALUES_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_VALUES_FIELD_NUMBER: _ClassVar[int]
    LIST_VALUES_FIELD_NUMBER: _ClassVar[int]
    NULL_POSITIONS_FIELD_NUMBER: _ClassVar[int]
    int32_values: Int32List
    int64_values: Int64List
    float_values: FloatList
    double_values: DoubleList
    string_values: StringList
    bool_values: BoolList
    bytes_values: BytesList
    timestamp_values: Int64List
    list_values: ListList
    null_positions: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, int32_values: _Optional[_Union[Int32List, _Mapping]] = ..., int64_values: _Optional[_Union[Int64List, _Mapping]] = ..., float_values: _Optional[_Union[FloatList, _Mapping]] = ..., double_values: _Optional[_Union[DoubleList, _Mapping]] = ..., string_values: _Optional[_Union[StringList, _Mapping]] = ..., bool_values: _Optional[_Union[BoolList, _Mapping]] = ..., bytes_values: _Optional[_Union[BytesList, _Mapping]] = ..., timestamp_values: _Optional[_Union[Int64List, _Mapping]] = ..., list_values: _Optional[_Union[ListList, _Mapping]] = ..., null_positions: _Optional[_Iterable[int]] = ...) -> None: ...

class GetOnlineFeaturesRequest(_message.Message):
    __slots__ = ("features", "feature_service", "entities", "full_feature_names", "include_run_ids", "request_data")
    class EntitiesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Values
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Values, _Mapping]] = ...) -> None: ...
    class RequestDataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Values
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Values, _Mapping]] = ...) -> None: ...
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    FEATURE_SERVICE_FIELD_NUMBER: _ClassVar[int]
    ENTITIES_FIELD_NUMBER: _ClassVar[int]
    FULL_FEATURE_NAMES_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_RUN_IDS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_DATA_FIELD_NUMBER: _ClassVar[int]
    features: _containers.RepeatedScalarFieldContainer[str]
    feature_service: str
    entities: _containers.MessageMap[str, Values]
    full_feature_names: bool
    include_run_ids: bool
    request_data: _containers.MessageMap[str, Values]
    def __init__(self, features: _Optional[_Iterable[str]] = ..., feature_service: _Optional[str] = ..., entities: _Optional[_Mapping[str, Values]] = ..., full_feature_names: _Optional[bool] = ..., include_run_ids: _Optional[bool] = ..., request_data: _Optional[_Mapping[str, Values]] = ...) -> None: ...

class FeatureColumn(_message.Message):
    __slots__ = ("name", "reference", "type", "values", "statuses", "event_timestamps")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    EVENT_TIMESTAMPS_FIELD_NUMBER: _ClassVar[int]
    name: str
    reference: str
    type: ValueType
    values: Values
    statuses: _containers.RepeatedScalarFieldContainer[FieldStatus]
    event_timestamps: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, name: _Optional[str] = ..., reference: _Optional[str] = ..., type: _Optional[_Union[ValueType, str]] = ..., values: _Optional[_Union[Values, _Mapping]] = ..., statuses: _Optional[_Iterable[_Union[FieldStatus, str]]] = ..., event_timestamps: _Optional[_Iterable[int]] = ...) -> None: ...

class ViewRuns(_message.Message):
    __slots__ = ("view", "run_ids")
    VIEW_FIELD_NUMBER: _ClassVar[int]
    RUN_IDS_FIELD_NUMBER: _ClassVar[int]
    view: str
    run_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, view: _Optional[str] = ..., run_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class GetOnlineFeaturesResponse(_message.Message):
    __slots__ = ("features", "registry_version", "runs")
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_VERSION_FIELD_NUMBER: _ClassVar[int]
    RUNS_FIELD_NUMBER: _ClassVar[int]
    features: _containers.RepeatedCompositeFieldContainer[FeatureColumn]
    registry_version: int
    runs: _containers.RepeatedCompositeFieldContainer[ViewRuns]
    def __init__(self, features: _Optional[_Iterable[_Union[FeatureColumn, _Mapping]]] = ..., registry_version: _Optional[int] = ..., runs: _Optional[_Iterable[_Union[ViewRuns, _Mapping]]] = ...) -> None: ...

class ListFeaturesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class JoinKey(_message.Message):
    __slots__ = ("name", "type")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: ValueType
    def __init__(self, name: _Optional[str] = ..., type: _Optional[_Union[ValueType, str]] = ...) -> None: ...

class FeatureInfo(_message.Message):
    __slots__ = ("reference", "view", "name", "type", "join_keys", "description", "ttl_seconds", "typed_join_keys", "entities", "request_fields")
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    JOIN_KEYS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TYPED_JOIN_KEYS_FIELD_NUMBER: _ClassVar[int]
    ENTITIES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELDS_FIELD_NUMBER: _ClassVar[int]
    reference: str
    view: str
    name: str
    type: ValueType
    join_keys: _containers.RepeatedScalarFieldContainer[str]
    description: str
    ttl_seconds: int
    typed_join_keys: _containers.RepeatedCompositeFieldContainer[JoinKey]
    entities: _containers.RepeatedScalarFieldContainer[str]
    request_fields: _containers.RepeatedCompositeFieldContainer[JoinKey]
    def __init__(self, reference: _Optional[str] = ..., view: _Optional[str] = ..., name: _Optional[str] = ..., type: _Optional[_Union[ValueType, str]] = ..., join_keys: _Optional[_Iterable[str]] = ..., description: _Optional[str] = ..., ttl_seconds: _Optional[int] = ..., typed_join_keys: _Optional[_Iterable[_Union[JoinKey, _Mapping]]] = ..., entities: _Optional[_Iterable[str]] = ..., request_fields: _Optional[_Iterable[_Union[JoinKey, _Mapping]]] = ...) -> None: ...

class EntityInfo(_message.Message):
    __slots__ = ("name", "join_keys", "description")
    NAME_FIELD_NUMBER: _ClassVar[int]
    JOIN_KEYS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    join_keys: _containers.RepeatedScalarFieldContainer[str]
    description: str
    def __init__(self, name: _Optional[str] = ..., join_keys: _Optional[_Iterable[str]] = ..., description: _Optional[str] = ...) -> None: ...

class FeatureServiceInfo(_message.Message):
    __slots__ = ("name", "features")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    name: str
    features: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., features: _Optional[_Iterable[str]] = ...) -> None: ...

class ListFeaturesResponse(_message.Message):
    __slots__ = ("registry_version", "features", "services", "entities")
    REGISTRY_VERSION_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    ENTITIES_FIELD_NUMBER: _ClassVar[int]
    registry_version: int
    features: _containers.RepeatedCompositeFieldContainer[FeatureInfo]
    services: _containers.RepeatedCompositeFieldContainer[FeatureServiceInfo]
    entities: _containers.RepeatedCompositeFieldContainer[EntityInfo]
    def __init__(self, registry_version: _Optional[int] = ..., features: _Optional[_Iterable[_Union[FeatureInfo, _Mapping]]] = ..., services: _Optional[_Iterable[_Union[FeatureServiceInfo, _Mapping]]] = ..., entities: _Optional[_Iterable[_Union[EntityInfo, _Mapping]]] = ...) -> None: ...

class PushFeaturesRequest(_message.Message):
    __slots__ = ("view", "columns")
    class ColumnsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Values
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Values, _Mapping]] = ...) -> None: ...
    VIEW_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    view: str
    columns: _containers.MessageMap[str, Values]
    def __init__(self, view: _Optional[str] = ..., columns: _Optional[_Mapping[str, Values]] = ...) -> None: ...

class PushFeaturesResponse(_message.Message):
    __slots__ = ("view", "rows", "written", "kept_newer", "expired", "registry_version")
    VIEW_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    WRITTEN_FIELD_NUMBER: _ClassVar[int]
    KEPT_NEWER_FIELD_NUMBER: _ClassVar[int]
    EXPIRED_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_VERSION_FIELD_NUMBER: _ClassVar[int]
    view: str
    rows: int
    written: int
    kept_newer: int
    expired: int
    registry_version: int
    def __init__(self, view: _Optional[str] = ..., rows: _Optional[int] = ..., written: _Optional[int] = ..., kept_newer: _Optional[int] = ..., expired: _Optional[int] = ..., registry_version: _Optional[int] = ...) -> None: ...

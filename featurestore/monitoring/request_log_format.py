"""The request log's format: its Parquet schema and how values are written as JSON text.

``serving/request_log.py`` writes these files while serving; ``monitoring/skew.py`` reads them.
The format lives here, below both, so monitoring never imports the serving layer.
"""

from __future__ import annotations

import base64
import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa

SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("request_time", pa.timestamp("us", tz="UTC")),
        ("transport", pa.string()),
        ("entity_index", pa.int32()),
        ("entity_json", pa.string()),  # {"driver_id": 1001, ...}: the request's join keys for this entity
        ("feature", pa.string()),  # view:feature
        ("value_json", pa.string()),  # null when nothing was served
        ("status", pa.string()),
        ("event_timestamp", pa.timestamp("us", tz="UTC")),
    ]
)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # served timestamps count microseconds from it


def value_json(value: Any) -> str | None:
    """The canonical JSON text of a feature value (served or offline), None for null."""
    if value is None:
        return None
    return json.dumps(_plain(value), separators=(",", ":"), sort_keys=True)


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, datetime):  # microseconds since the epoch, as served
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return (aware - EPOCH) // timedelta(microseconds=1)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):  # numpy scalar
        return _plain(value.item())
    return value

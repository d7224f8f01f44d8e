"""A feature view's declaration as a pandera DataFrameSchema.

Column types are checked on the Parquet file's Arrow schema before any row is read (a
typed file cannot hold a mistyped value), so the pandera schema checks values: presence
and nullability of every column, each Field's checks and the view's own checks.
"""

from __future__ import annotations

import pandera.pandas as pa

from featurestore.definitions import FeatureView


def pandera_schema(view: FeatureView) -> pa.DataFrameSchema:
    src = view.source
    columns: dict[str, pa.Column] = {}
    for key in view.join_keys:
        columns[key.name] = pa.Column(nullable=False, description="join key")
    columns[src.timestamp_field] = pa.Column(nullable=False, description="event timestamp")
    if src.created_timestamp_field:
        columns[src.created_timestamp_field] = pa.Column(nullable=True, description="created timestamp")
    for f in view.features:
        columns[f.name] = pa.Column(
            nullable=f.nullable, checks=list(f.checks), description=f.description or None
        )
    return pa.DataFrameSchema(columns, checks=list(view.checks), name=view.name, strict=False)


def columns_read(view: FeatureView) -> list[str]:
    """The source columns validation reads."""
    src = view.source
    names = [k.name for k in view.join_keys] + [src.timestamp_field]
    if src.created_timestamp_field:
        names.append(src.created_timestamp_field)
    return names + [f.name for f in view.features]

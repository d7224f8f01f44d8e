"""A feature view's declaration as a pandera DataFrameSchema.

Column types are checked on the Parquet file's Arrow schema before any row is read (a
typed file cannot hold a mistyped value), so the pandera schema checks values: presence
and nullability of every column, each Field's checks and the view's own checks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pandera.pandas as pa
from pandera.pandas import Check

from featurestore.definitions import FeatureView
from featurestore.definitions.field import check_from_spec, check_spec
from featurestore.errors import NotAppliedError


def pandera_schema(view: FeatureView) -> pa.DataFrameSchema:
    src = view.source
    columns: dict[str, pa.Column] = {}
    for key in view.join_keys:
        columns[key.name] = pa.Column(nullable=False, description="join key")
    columns[src.timestamp_field] = pa.Column(nullable=False, description="event timestamp")
    if src.created_timestamp_field:
        columns[src.created_timestamp_field] = pa.Column(nullable=True, description="created timestamp")
    for f in view.columns:
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
    return names + [f.name for f in view.columns]


def has_custom_checks(view: FeatureView) -> bool:
    """Whether a check of the view is a function the registry keeps only by name."""
    checks = [*view.checks, *(c for f in view.columns for c in f.checks)]
    return any(check_from_spec(check_spec(c)) is None for c in checks)


def with_check_functions(applied: FeatureView, defined: FeatureView | None) -> FeatureView:
    """The applied view with its custom checks' functions taken from the repo's code.

    Read back from the registry, a custom check passes every row; validating ingestion with
    it would let anything through, so the code must still declare the applied checks.
    """
    fields = {f.name: f for f in defined.columns} if defined is not None else {}
    same = defined is not None and _specs(defined.checks) == _specs(applied.checks)
    for f in applied.columns:
        same = same and f.name in fields and _specs(fields[f.name].checks) == _specs(f.checks)
    if defined is None or not same:
        raise NotAppliedError(
            f"feature view {applied.name!r}: its custom checks in the repo's code differ from the "
            "applied ones (or the view is gone), so they cannot validate this ingestion: "
            "run 'featurestore apply'"
        )
    schema = [replace(f, checks=fields[f.name].checks) for f in applied.schema]
    return replace(applied, schema=schema, checks=defined.checks)


def _specs(checks: Sequence[Check]) -> list[dict[str, Any]]:
    return [check_spec(c) for c in checks]

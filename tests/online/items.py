"""The one-view "items" repo of the incremental and retraction tests: its definitions, its
files and what it serves."""

from __future__ import annotations

from datetime import datetime, timedelta

import pyarrow as pa

from featurestore import FeatureStore
from tests.online.helpers import TZ
from tests.support.repos import write_parquet

DEFS = """
from featurestore import Entity, FeatureView, Field, Int64, ParquetSource

item = Entity("item", join_keys=["id"])
items = FeatureView("items", entities=[item],
                    source=ParquetSource("items_src", path="data/items", timestamp_field="ts",
                                         created_timestamp_field="created"),
                    schema=[Field("v", Int64)])
"""
HOUR = timedelta(hours=1)


def items(rows: list[tuple[int, datetime, datetime | None, int]]) -> pa.Table:
    """Rows of (id, event time, created time, v)."""
    return pa.table(
        {
            "id": pa.array([r[0] for r in rows], pa.int64()),
            "ts": pa.array([r[1] for r in rows], TZ),
            "created": pa.array([r[2] for r in rows], TZ),
            "v": pa.array([r[3] for r in rows], pa.int64()),
        }
    )


def add_file(fs: FeatureStore, name: str, rows: list[tuple[int, datetime, datetime | None, int]]) -> None:
    write_parquet(fs.config.repo / "data" / "items" / name, items(rows))


def served(fs: FeatureStore, ids: list[int]) -> list[int | None]:
    return list(fs.get_online_features(["items:v"], {"id": ids}).to_dict()["v"])

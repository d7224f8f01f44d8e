"""``featurestore init``: a new feature repo that plans and applies as it stands."""

from __future__ import annotations

from pathlib import Path

from featurestore.config import render_config
from featurestore.datagen import SCALES, default_end, driver_batches

EXAMPLE = '''"""Example definitions: edit or replace them, then run featurestore plan."""

from datetime import timedelta

from featurestore import Entity, FeatureService, FeatureView, Field, Float32, Int32, ParquetSource

driver = Entity("driver", join_keys=["driver_id"], description="A driver")

driver_stats = FeatureView(
    "driver_stats",
    entities=[driver],
    source=ParquetSource(
        "driver_stats_source",
        path="data/driver_stats",
        timestamp_field="event_timestamp",
        created_timestamp_field="created",
    ),
    ttl=timedelta(days=2),
    schema=[
        Field("conv_rate", Float32),
        Field("acc_rate", Float32),
        Field("avg_daily_trips", Int32),
    ],
)

driver_model = FeatureService("driver_model", features=[driver_stats])
'''


def scaffold(directory: Path, project: str) -> list[Path]:
    """Write featurestore.toml, example definitions and a small Parquet file."""
    import pyarrow.parquet as pq

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    config = directory / "featurestore.toml"
    config.write_text(render_config(project))
    written.append(config)
    example = directory / "example.py"
    example.write_text(EXAMPLE)
    written.append(example)
    (directory / ".gitignore").write_text("/.featurestore/\n")
    data = directory / "data" / "driver_stats"
    data.mkdir(parents=True, exist_ok=True)
    table = next(driver_batches(SCALES["tiny"], default_end()))
    path = data / "part-00000.parquet"
    pq.write_table(table, path)
    written.append(path)
    return written

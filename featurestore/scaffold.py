"""``featurestore init``: a new feature repo that plans and applies as it stands."""

from __future__ import annotations

from pathlib import Path

from featurestore.config import render_config, valid_project
from featurestore.datagen import SCALES, default_end, driver_batches
from featurestore.errors import ConfigError
from featurestore.outputs import atomic_write, write_text

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


IGNORE = "/.featurestore/"


def scaffold(directory: Path, project: str) -> list[Path]:
    """Write featurestore.toml, example definitions and a small Parquet file.

    Refuses (writing nothing) a bad project name, a path that is a file, or a folder that
    already holds one of those files: init never overwrites a user's work.
    """
    import pyarrow.parquet as pq

    if not valid_project(project):
        raise ConfigError(
            f"project {project!r} must be lower-case letters, digits and _, starting with a letter "
            "(it prefixes Redis keys and DuckDB schemas); pass --project NAME"
        )
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"{directory} is a file, not a folder")
    config = directory / "featurestore.toml"
    example = directory / "example.py"
    path = directory / "data" / "driver_stats" / "part-00000.parquet"
    clashes = [p for p in (config, example, path) if p.exists()]
    if clashes:
        names = ", ".join(str(p.relative_to(directory)) for p in clashes)
        raise ConfigError(f"{directory} already holds {names}; init writes only new files")

    # Each file appears whole or not at all (outputs.atomic_write), even if init is interrupted.
    write_text(config, render_config(project))
    write_text(example, EXAMPLE)
    # Keep the user's .gitignore: add the store's folder to it.
    ignore = directory / ".gitignore"
    kept = ignore.read_text() if ignore.exists() else ""
    if IGNORE not in kept.splitlines():
        write_text(ignore, kept + ("\n" if kept and not kept.endswith("\n") else "") + IGNORE + "\n")
    with atomic_write(path) as partial:
        pq.write_table(next(driver_batches(SCALES["tiny"], default_end())), partial)
    return [config, example, path]

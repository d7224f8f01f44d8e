"""Source files Spark lists and reads: remote URIs (s3a://, hdfs://, abfss://, ...).

Listed through Spark's ``binaryFile`` source with the content column pruned, so only the
file system's listing is read (path, length, modification time), with the credentials and
file system settings of the Spark session, on classic Spark and Spark Connect alike. A
folder is listed recursively, a glob as Hadoop expands it; files Spark treats as hidden
(``_``- and ``.``-prefixed) are skipped as in any Spark read.
"""

from __future__ import annotations

from pathlib import PurePosixPath

import pyarrow as pa

from featurestore.config import SparkSettings
from featurestore.errors import OfflineEngineUnavailable, SourceError
from featurestore.offline.spark.session import error_text, spark_session
from featurestore.source_files import SourceFile


class SparkFiles:
    """``source_files.RemoteFiles`` on the engine's Spark session."""

    def __init__(self, settings: SparkSettings) -> None:
        self.settings = settings

    def list(self, uri: str) -> list[SourceFile]:
        from pyspark.sql import functions as F

        spark = spark_session(self.settings)
        try:
            rows = (
                spark.read.format("binaryFile")
                .option("recursiveFileLookup", "true")
                .load(uri)
                .select("path", "length", F.unix_micros("modificationTime").alias("mtime"))
                .collect()
            )
        except OfflineEngineUnavailable:
            raise
        except Exception as e:
            if "PATH_NOT_FOUND" in str(e):
                return []
            raise SourceError(f"Spark cannot list {uri!r}: {error_text(e)}") from None
        named = [r for r in rows if r["path"] == uri.rstrip("/")]
        if named:  # the URI names one file, whatever its suffix
            rows = named
        else:  # a folder or a glob: its Parquet files
            rows = [r for r in rows if PurePosixPath(r["path"]).suffix == ".parquet"]
        return sorted(
            (SourceFile(r["path"], int(r["length"]), r["mtime"] / 1e6) for r in rows), key=lambda f: f.path
        )

    def schema(self, uri: str) -> pa.Schema:
        spark = spark_session(self.settings)
        try:
            return spark.read.parquet(uri).limit(0).toArrow().schema
        except OfflineEngineUnavailable:
            raise
        except Exception as e:
            raise SourceError(f"{uri} is not a Parquet file Spark can read ({error_text(e)})") from None

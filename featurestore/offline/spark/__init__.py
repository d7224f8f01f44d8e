"""The Spark offline engine: the same ingestion, training sets and materialization as DuckDB's,
run by Spark ([offline] engine = "spark").

The DuckDB file stays the store's control plane on both engines (registry, run records,
which source files are ingested, watermarks); with Spark the ingested rows live in an
append-only Parquet warehouse (``warehouse.py``) and Spark does the heavy work. Nothing here
imports pyspark at module import: ``session.py`` does, when a session is first asked for.
"""

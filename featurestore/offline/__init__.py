"""The offline store: Parquet sources ingested into DuckDB, point-in-time training sets."""

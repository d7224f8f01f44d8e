"""The offline store: Parquet sources ingested into DuckDB (``OfflineStore``), point-in-time training sets."""

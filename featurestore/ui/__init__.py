"""The web console (``featurestore ui``): a read-only view of the catalog, registry history,
lineage, runs, online health and statistics, served as plain HTML pages.

``app.build_app`` makes the FastAPI app; pages read the store read-only (``reader.py``), so the
console never takes the DuckDB write lock and never stops a run.
"""

"""The Spark engine in tests: one local[2] session for the whole run, and repos that use it."""

from __future__ import annotations

from pathlib import Path

from featurestore.config import SparkSettings

MASTER = "local[2]"
# Small data: a few shuffle partitions, not Spark's 200.
CONF = {"spark.sql.shuffle.partitions": "4", "spark.default.parallelism": "2"}
SETTINGS = SparkSettings(master=MASTER, conf=CONF)


def use_spark(
    repo: Path, master: str = MASTER, warehouse: str | None = None, conf: dict[str, str] | None = None
) -> Path:
    """Make ``repo`` run on the Spark engine (the session's settings, so the session is shared;
    more ``conf`` makes another session: only for another process, e.g. the CLI)."""
    config = repo / "featurestore.toml"
    text = config.read_text()
    assert "[offline.spark]" not in text, f"{config} already names a Spark engine"
    pairs = ", ".join(f'"{k}" = "{v}"' for k, v in {**CONF, **(conf or {})}.items())
    lines = ['engine = "spark"']
    if "[offline]" in text:
        text = text.replace("[offline]\n", "[offline]\n" + "\n".join(lines) + "\n", 1)
    else:
        text += "\n[offline]\n" + "\n".join(lines) + "\n"
    text += f'\n[offline.spark]\nmaster = "{master}"\nconf = {{ {pairs} }}\n'
    if warehouse is not None:
        text += f'warehouse = "{warehouse}"\n'
    config.write_text(text)
    return repo


def export_to_warehouse(duckdb_path: Path, project: str, warehouse: str) -> dict[str, list[str]]:
    """Copy each view ingested by the DuckDB engine into the warehouse layout, file by file:
    the rows Spark would have written (a stand-in until a test ingests with Spark itself).
    Answers view -> its live folders."""
    import duckdb

    from featurestore.offline.layout import FILE_ID, view_table
    from featurestore.offline.spark.warehouse import live_dirs

    out: dict[str, list[str]] = {}
    with duckdb.connect(str(duckdb_path), read_only=True) as con:
        views = [r[0] for r in con.execute(f'SELECT view FROM "{project}".offline_views').fetchall()]
        for view in views:
            dirs = live_dirs(con, project, view, warehouse)
            for folder in dirs:
                file_id = int(Path(folder).name.split("-")[0])
                Path(folder).mkdir(parents=True, exist_ok=True)
                con.execute(
                    f"COPY (SELECT * FROM {view_table(project, view)} WHERE {FILE_ID} = {file_id} "
                    f"ORDER BY __seq) TO '{folder}/part-00000.parquet' (FORMAT parquet)"
                )
            out[view] = dirs
    return out

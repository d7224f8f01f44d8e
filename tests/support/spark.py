"""The Spark engine in tests: one local[2] session for the whole run, and repos that use it."""

from __future__ import annotations

from pathlib import Path

from featurestore.config import SparkSettings

MASTER = "local[2]"
# Small data: a few shuffle partitions, not Spark's 200.
CONF = {"spark.sql.shuffle.partitions": "4", "spark.default.parallelism": "2"}
SETTINGS = SparkSettings(master=MASTER, conf=CONF)


def use_spark(
    repo: Path,
    master: str = MASTER,
    warehouse: str | None = None,
    conf: dict[str, str] | None = None,
    remote: str | None = None,
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
    if remote is not None:
        text += f'remote = "{remote}"\n'
    config.write_text(text)
    return repo


"""The Spark engine in tests: one local[2] session for the whole run, and repos that use it."""

from __future__ import annotations

from pathlib import Path

from featurestore.config import SparkSettings

MASTER = "local[2]"
# The tests' JVMs (this session's, the CLI's, the cluster's and the Connect server's) run
# small jobs for minutes at most: with C1 only and the serial GC they spend a third to a half
# less CPU than with C2 and G1 (a session start and first job: 26 -> 14 CPU seconds; five
# point-in-time examples: 170 -> 110), which is wall time on a busy 2-core machine.
QUICK_JVM = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
# Small data: a few shuffle partitions, not Spark's 200.
CONF = {
    "spark.sql.shuffle.partitions": "4",
    "spark.default.parallelism": "2",
    "spark.driver.extraJavaOptions": QUICK_JVM,  # local mode: the driver's JVM runs the tasks too
}
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


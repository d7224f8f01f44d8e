"""What the benchmarks need to run the Spark engine: a repo switched to it, Spark's own figures
(job times, shuffle bytes) and the memory of a process tree (local mode's JVM is a child).

Spark's figures come from its REST API (``/api/v1/applications/<id>/stages``): the benchmark
repo's conf turns the UI on at a free loopback port (``spark.ui.port`` 0), which the engine
leaves off by default.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import urllib.request
from collections.abc import Collection
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

ENGINES = ("duckdb", "spark")
MASTER = "local[2]"
# Per scale: shuffle partitions of a few hundred MB or less each on 2 cores (AQE coalesces
# them further), and a driver heap that fits beside the page cache on a 24 GiB machine.
SHUFFLE_PARTITIONS = {"tiny": 2, "demo": 4, "small": 8, "medium": 16, "large": 64}
DRIVER_MEMORY = {"tiny": "1g", "demo": "1g", "small": "2g", "medium": "4g", "large": "12g"}


def spark_conf(scale: str, local_dir: Path) -> dict[str, str]:
    """The [offline.spark] conf the benchmark runs with at ``scale``."""
    return {
        "spark.sql.shuffle.partitions": str(SHUFFLE_PARTITIONS[scale]),
        "spark.default.parallelism": "2",
        "spark.driver.memory": DRIVER_MEMORY[scale],
        "spark.local.dir": str(local_dir),
        # The UI only for its REST API (shuffle bytes, job times); port 0: any free port.
        "spark.ui.enabled": "true",
        "spark.ui.port": "0",
    }


def engines_arg(parser: argparse.ArgumentParser, text: str) -> tuple[str, ...]:
    """``--engine duckdb,spark`` as a tuple of engines; anything else is the parser's error."""
    engines = tuple(e for e in text.split(",") if e)
    if not engines or set(engines) - set(ENGINES):
        parser.error(f"--engine takes {','.join(ENGINES)}")
    return engines


def use_spark(repo: Path, scale: str) -> dict[str, str]:
    """Switch ``repo``'s featurestore.toml to the Spark engine; answers the conf written."""
    local_dir = repo.parent / "spark-tmp"
    local_dir.mkdir(parents=True, exist_ok=True)
    conf = spark_conf(scale, local_dir.resolve())
    config = repo / "featurestore.toml"
    text = config.read_text()
    if "[offline]\n" in text:
        text = text.replace("[offline]\n", '[offline]\nengine = "spark"\n', 1)
    else:
        text += '\n[offline]\nengine = "spark"\n'
    pairs = ", ".join(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in conf.items())
    text += f'\n[offline.spark]\nmaster = "{MASTER}"\nconf = {{ {pairs} }}\n'
    config.write_text(text)
    return conf


def spark_figures(
    spark: SparkSession, rows: int | None = None, job_ids: Collection[int] | None = None
) -> dict[str, Any]:
    """Jobs' wall time and the stages' shuffle and task time, from the UI's REST API; only
    the jobs ``job_ids`` and their stages if given (e.g. a job group's, from the status tracker)."""
    url = spark.sparkContext.uiWebUrl
    if not url:
        return {}
    api = f"{url}/api/v1/applications/{spark.sparkContext.applicationId}"
    time.sleep(1.0)  # the UI's store is fed by the listener bus, asynchronously
    stages = _get(f"{api}/stages")
    jobs = _get(f"{api}/jobs")
    if job_ids is not None:
        jobs = [j for j in jobs if j["jobId"] in job_ids]
        theirs = {s for j in jobs for s in j.get("stageIds", [])}
        stages = [s for s in stages if s["stageId"] in theirs]
    done = [s for s in stages if s.get("status") == "COMPLETE"]
    shuffle_write = sum(int(s.get("shuffleWriteBytes", 0)) for s in done)
    figures: dict[str, Any] = {
        "jobs": len(jobs),
        "job_seconds": round(sum(_seconds(j) for j in jobs), 3),
        "stages": len(done),
        "executor_run_seconds": round(sum(int(s.get("executorRunTime", 0)) for s in done) / 1000, 3),
        "executor_cpu_seconds": round(sum(int(s.get("executorCpuTime", 0)) for s in done) / 1e9, 3),
        "input_bytes": sum(int(s.get("inputBytes", 0)) for s in done),
        "output_bytes": sum(int(s.get("outputBytes", 0)) for s in done),
        "shuffle_write_bytes": shuffle_write,
        "shuffle_read_bytes": sum(int(s.get("shuffleReadBytes", 0)) for s in done),
        "spill_disk_bytes": sum(int(s.get("diskBytesSpilled", 0)) for s in done),
        "spill_memory_bytes": sum(int(s.get("memoryBytesSpilled", 0)) for s in done),
    }
    if rows:
        figures["shuffle_write_bytes_per_row"] = round(shuffle_write / rows, 1)
    # Where the time goes, job by job (the call site Spark names each after) and stage by stage.
    figures["per_job"] = [
        {"id": j["jobId"], "name": j.get("name", "")[:80], "seconds": round(_seconds(j), 3)}
        for j in sorted(jobs, key=lambda j: j["jobId"])
    ]
    figures["per_stage"] = [
        {
            "id": s["stageId"],
            "name": s.get("name", "")[:80],
            "tasks": s.get("numTasks"),
            "run_seconds": round(int(s.get("executorRunTime", 0)) / 1000, 3),
            "cpu_seconds": round(int(s.get("executorCpuTime", 0)) / 1e9, 3),
            "shuffle_write_bytes": int(s.get("shuffleWriteBytes", 0)),
            "shuffle_read_bytes": int(s.get("shuffleReadBytes", 0)),
        }
        for s in sorted(done, key=lambda s: s["stageId"])
    ]
    return figures


def _get(url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 (loopback)
        return list(json.loads(response.read()))


def _seconds(job: dict[str, Any]) -> float:
    """A job's wall time from its submission and completion times (``2026-12-03T18:00:00.123GMT``)."""
    try:
        start, end = (
            datetime.strptime(job[k].replace("GMT", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z")
            for k in ("submissionTime", "completionTime")
        )
    except (KeyError, ValueError):
        return 0.0
    return (end - start).total_seconds()


# -- memory of a process tree ----------------------------------------------------------------

PAGE = os.sysconf("SC_PAGE_SIZE")


class TreeMemory:
    """Peak RSS, sampled, of a process tree: its root (below /usr/bin/time, the Python process
    measured), any JVM in it, and the whole tree at one instant. /usr/bin/time -v reports the
    largest single process it reaped, which misses a JVM its parent never waited for."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.python = self.jvm = self.tree = 0  # bytes

    def sample(self) -> None:
        parents: dict[int, int] = {}
        names: dict[int, str] = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            name, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :]
            parents[int(entry.name)] = int(rest.split()[1])
            names[int(entry.name)] = name
        tree = {self.root}
        grew = True
        while grew:
            grew = False
            for pid, ppid in parents.items():
                if ppid in tree and pid not in tree:
                    tree.add(pid)
                    grew = True
        total = jvm = python = 0
        for pid in tree:
            rss = _rss(pid)
            total += rss
            if names.get(pid) == "java":
                jvm += rss
            elif parents.get(pid) == self.root:  # the measured process, below /usr/bin/time
                python = max(python, rss)
        self.python, self.jvm, self.tree = max(self.python, python), max(self.jvm, jvm), max(self.tree, total)


def _rss(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0

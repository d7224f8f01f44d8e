"""A real Spark standalone cluster for tests: one master and one worker on loopback ports,
started from the pyspark install ($SPARK_HOME is the pyspark package folder).

A process holds one SparkContext, and the tests' local[2] one is taken: a job on this cluster
runs in another process (the CLI), which is also the end-to-end test of it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Self

from tests.support.redis import free_port
from tests.support.spark import QUICK_JVM

START_SECONDS = 90  # two JVMs on a busy machine


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


class SparkCluster:
    """``spark://127.0.0.1:PORT`` with one worker (1 core, 1 GB), stopped with its process groups."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port, self.ui_port, self.worker_ui_port = free_port(), free_port(), free_port()
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        return f"spark://127.0.0.1:{self.port}"

    @property
    def worker_pid(self) -> int:
        return self.processes["worker"].pid

    def start(self) -> None:
        self._spawn("master", "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                    "--port", str(self.port), "--webui-port", str(self.ui_port))
        self._spawn("worker", "org.apache.spark.deploy.worker.Worker", self.url, "--host", "127.0.0.1",
                    "--cores", "1", "--memory", "1g", "--webui-port", str(self.worker_ui_port),
                    "--work-dir", str(self.workdir / "work"))
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"spark {name} exited ({process.returncode}): {self._last_line(name)}")
            if self._alive_workers() >= 1:
                return
            time.sleep(0.5)
        raise RuntimeError(
            f"no Spark worker registered with {self.url} within {START_SECONDS}s: {self._last_line('worker')}"
        )

    def _spawn(self, name: str, cls: str, *args: str) -> None:
        home = spark_home()
        env = {
            **os.environ,
            "SPARK_HOME": str(home),
            "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_LOG_DIR": str(self.workdir),
            "SPARK_WORKER_DIR": str(self.workdir / "work"),
            # small daemons that start quickly: C1 only, the serial GC
            "SPARK_DAEMON_MEMORY": "256m",
            "SPARK_DAEMON_JAVA_OPTS": QUICK_JVM,
        }
        log = (self.workdir / f"{name}.log").open("wb")
        self.processes[name] = subprocess.Popen(
            [str(home / "bin" / "spark-class"), cls, *args],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,  # its own group
        )
        log.close()

    def _alive_workers(self) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ui_port}/json/", timeout=2) as reply:
                return int(json.load(reply).get("aliveworkers", 0))
        except (OSError, ValueError):
            return 0

    def _last_line(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        lines = path.read_text(errors="replace").strip().splitlines() if path.exists() else []
        return lines[-1] if lines else "(no output)"

    def stop(self) -> None:
        for process in reversed(list(self.processes.values())):  # the worker, then the master
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(20)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        self.processes.clear()

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""A real Spark Connect server for tests, started from the PySpark install on a loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import pyspark

from tests.support.redis import free_port
from tests.support.spark import QUICK_JVM

SPARK_HOME = Path(pyspark.__file__).parent
START_SECONDS = 180  # a JVM start on a loaded 2-core machine
# The server's Hadoop configuration mounts viewfs://connect-lake/lake onto a folder of its
# workdir, as a cluster's core-site.xml configures s3a:// or hdfs://: over Spark Connect the
# server alone reaches source URIs (a client passes only spark.sql.* settings).
LAKE_MOUNT = "connect-lake"


class SparkConnectServer:
    """``spark-submit --class ...SparkConnectServer`` in local[1] mode, in its own process group."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"sc://127.0.0.1:{self.port}"

    @property
    def lake(self) -> tuple[str, Path]:
        """``viewfs://`` URI of the server's lake and the local folder it is mounted on."""
        return f"viewfs://{LAKE_MOUNT}/lake", self.workdir / "lake"

    def __enter__(self) -> SparkConnectServer:
        env = {
            **os.environ,
            "SPARK_HOME": str(SPARK_HOME),
            "SPARK_LOCAL_IP": "127.0.0.1",
            "PYSPARK_PYTHON": sys.executable,  # its Python workers need featurestore
        }
        command = [
            str(SPARK_HOME / "bin" / "spark-submit"),
            "--class", "org.apache.spark.sql.connect.service.SparkConnectServer",
            "--master", "local[1]",
            "--driver-memory", "1g",
            "--driver-java-options", QUICK_JVM,
            "--conf", f"spark.connect.grpc.binding.port={self.port}",
            "--conf", "spark.connect.grpc.binding.address=127.0.0.1",
            "--conf", "spark.ui.enabled=false",
            "--conf", "spark.sql.shuffle.partitions=2",
            "--conf", f"spark.local.dir={self.workdir}",
            "--conf", f"spark.hadoop.fs.viewfs.mounttable.{LAKE_MOUNT}.link./lake={self.lake[1].as_uri()}",
            "spark-internal",
        ]  # fmt: skip
        self.lake[1].mkdir(exist_ok=True)
        log = (self.workdir / "connect.log").open("wb")
        self.process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the Spark Connect server exited: {self._last_lines()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(
            f"the Spark Connect server did not listen within {START_SECONDS} s: {self._last_lines()}"
        )

    def _last_lines(self) -> str:
        lines = (self.workdir / "connect.log").read_text(errors="replace").splitlines()
        return " | ".join(lines[-3:])

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

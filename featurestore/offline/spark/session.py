"""One SparkSession per process for the Spark engine, and the errors of starting one.

Starting Spark fails in ways a user can fix (no PySpark, no Java, a master that does not
answer): each becomes one OfflineEngineUnavailable naming what to do, within
``connect_timeout`` seconds rather than Spark's own minutes of retries.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import threading
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from featurestore.config import SparkSettings
from featurestore.errors import OfflineEngineUnavailable

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

# Settings the engine relies on for results identical to DuckDB's; a user's conf may not
# change them (timestamps are UTC instants, written as Parquet microseconds).
REQUIRED_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
}
# Defaults a user's conf may override.
DEFAULT_CONF = {
    "spark.ui.enabled": "false",
    "spark.log.level": "ERROR",
    "spark.ui.showConsoleProgress": "false",
}
INSTALL_HINT = "pip install 'featurestore[spark]'"

_lock = threading.Lock()
_sessions: dict[tuple[object, ...], SparkSession] = {}


def spark_session(settings: SparkSettings) -> SparkSession:
    """The process's session for ``settings``, started on first use."""
    key = (settings.master, settings.remote, tuple(sorted(settings.conf.items())))
    with _lock:
        session = _sessions.get(key)
        if session is not None and _alive(session):
            return session
        session = _start(settings)
        _sessions[key] = session
        return session


def stop_sessions() -> None:
    """Stop every session this process started (tests, and the end of a CLI command)."""
    with _lock:
        for session in _sessions.values():
            try:
                session.stop()
            except Exception:  # already gone with its JVM
                pass
        _sessions.clear()


def _start(settings: SparkSettings) -> SparkSession:
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise OfflineEngineUnavailable(
            f"[offline] engine = 'spark' needs PySpark, which is not installed: {INSTALL_HINT}"
        ) from None
    where = settings.remote or settings.master
    _one_mode_per_process(settings)
    _check_reachable(where, settings.connect_timeout)
    builder = SparkSession.builder.appName("featurestore")
    conf = {**DEFAULT_CONF, **settings.conf, **REQUIRED_CONF}
    if settings.remote is not None:
        builder = builder.remote(settings.remote)
        # A Connect server owns its own static settings; only session settings can be set.
        conf = {k: v for k, v in conf.items() if k.startswith("spark.sql.")}
    else:
        if not _java_found():
            raise OfflineEngineUnavailable(
                "[offline] engine = 'spark' needs Java 17 or later (e.g. Debian's openjdk-17-jre-headless), "
                "and none was found on PATH or in JAVA_HOME"
            )
        builder = builder.master(settings.master)
        _python_for_workers(settings.conf.get("spark.pyspark.python"))
        if settings.master.startswith("local"):
            conf.setdefault("spark.driver.host", "127.0.0.1")  # listen on loopback only
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
            conf.setdefault("spark.driver.bindAddress", "127.0.0.1")
    for name, value in conf.items():
        builder = builder.config(name, value)
    try:
        return builder.getOrCreate()
    except Exception as e:
        raise OfflineEngineUnavailable(f"cannot start Spark at {where}: {_first_line(e)}") from None


def _python_for_workers(configured: str | None) -> None:
    """The interpreter Python workers run: PySpark's driver takes it from PYSPARK_PYTHON only
    (``spark.pyspark.python`` counts for spark-submit alone, else workers run "python3", which
    may lack featurestore); a user's conf wins over the environment, as in spark-submit."""
    if configured is not None:
        os.environ["PYSPARK_PYTHON"] = configured
    else:
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)


def _one_mode_per_process(settings: SparkSettings) -> None:
    """PySpark picks Connect or classic for every DataFrame function from a process-wide flag
    (the SPARK_CONNECT_MODE_ENABLED variable a Connect session sets), so one process cannot use
    both: say so, rather than fail inside Spark."""
    connect_used = "SPARK_CONNECT_MODE_ENABLED" in os.environ
    classic_used = any(key[1] is None for key in _sessions)
    if settings.remote is None and connect_used:
        raise OfflineEngineUnavailable(
            f"this process already uses Spark Connect; PySpark cannot also run Spark at {settings.master} "
            "in it: use one engine setting per process"
        )
    if settings.remote is not None and classic_used:
        raise OfflineEngineUnavailable(
            f"this process already runs Spark itself; PySpark cannot also use Spark Connect at "
            f"{settings.remote} in it: use one engine setting per process"
        )


def _check_reachable(where: str, timeout: float) -> None:
    """A spark:// master or sc:// endpoint must accept a connection within ``timeout`` seconds;
    Spark itself would retry for minutes, then fail with a stack trace."""
    if not where.startswith(("spark://", "sc://")):
        return  # local[N] needs nothing; yarn and k8s resolve their masters themselves
    for address in where.split("://", 1)[1].split("/", 1)[0].split(","):
        parts = urlsplit(f"//{address}")
        host, port = parts.hostname, parts.port or (7077 if where.startswith("spark://") else 15002)
        try:
            with socket.create_connection((host or "127.0.0.1", port), timeout=timeout):
                return  # one answering master of several (standalone HA) is enough
        except OSError as e:
            reason = e.strerror or type(e).__name__
            last = f"{host}:{port} ({reason})"
    kind = "Spark Connect endpoint" if where.startswith("sc://") else "Spark master"
    raise OfflineEngineUnavailable(f"the {kind} {where} does not answer: {last}")


def _java_found() -> bool:
    home = os.environ.get("JAVA_HOME")
    if home and os.path.isfile(os.path.join(home, "bin", "java")):
        return True
    return shutil.which("java") is not None


def _alive(session: SparkSession) -> bool:
    try:
        context = getattr(session, "_sc", None)
        return context is None or context._jsc is not None
    except Exception:
        return False


def _first_line(error: BaseException) -> str:
    text = " ".join(str(error).split("\n", 1)[0].split())
    return text or type(error).__name__


def error_text(error: BaseException) -> str:
    """One line saying why a Spark call failed: for a JVM exception its root cause (py4j's
    own message only names the call), else the error's first line without Spark's codes."""
    java = getattr(error, "java_exception", None)
    if java is not None:
        try:
            root = java
            while root.getCause() is not None and root.getCause() is not root:
                root = root.getCause()
            return _first_line(Exception(root.toString()))
        except Exception:  # the JVM is gone: the Python side's text is all there is
            pass
    return _first_line(error).replace(" SQLSTATE:", "").rstrip()

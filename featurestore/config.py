"""Repo configuration: featurestore.toml, overridden by FEATURESTORE_* environment variables."""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from featurestore.errors import ConfigError
from featurestore.redis_urls import check_url
from featurestore.secrets import mask_url

CONFIG_FILE = "featurestore.toml"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_DUCKDB_PATH = ".featurestore/store.duckdb"
_PROJECT = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_MIB = 1024 * 1024


@dataclass(frozen=True)
class ServingLimits:
    """What clients may hold of one `serve` process ([serving] table; see serving/limits.py).

    Per worker: with ``--workers N`` each process has its own listeners and budget.
    """

    # Open connections per listener (gRPC and HTTP each); HTTP makes room for a new one by
    # closing the longest idle one, so health checks still get in.
    max_connections: int = 1000
    max_streams: int = 100  # concurrent gRPC calls on one connection (HTTP/2 streams)
    # Seconds a new connection has to send a whole HTTP request (headers and body), or the
    # TLS and HTTP/2 handshake for gRPC; slow clients are closed after that.
    header_timeout: float = 10.0
    idle_timeout: float = 60.0  # seconds a connection may stay open with no request in flight
    # Bytes of requests and answers being worked on at once (per worker): over it a request
    # is refused at once with RESOURCE_EXHAUSTED / HTTP 429.
    max_bytes_in_flight: int = 64 * _MIB


@dataclass(frozen=True)
class SparkSettings:
    """[offline.spark]: where the Spark engine runs and where it keeps ingested rows."""

    # local[N], spark://host:7077, yarn, k8s://...; ignored when ``remote`` is set.
    master: str = "local[*]"
    remote: str | None = None  # Spark Connect, sc://host:15002
    # The append-only Parquet warehouse of ingested rows: a local path (relative to the repo;
    # by default "warehouse" beside the DuckDB file) or a URI Spark writes (s3a://, hdfs://, ...).
    warehouse: str = ".featurestore/warehouse"
    conf: Mapping[str, str] = field(default_factory=dict)  # passed to the session as given
    # Seconds to wait for the master or Spark Connect endpoint before giving up.
    connect_timeout: float = 60.0


OFFLINE_ENGINES = ("duckdb", "spark")
REQUEST_LOG_MODES = ("sampled", "complete")


@dataclass(frozen=True)
class RequestLogLimits:
    """[request_log] bounds on what the request log holds (see serving/request_log.py)."""

    # Total bytes of *.parquet files in the log folder; over it the oldest files are deleted.
    # None: no bound (rotate and archive the folder yourself).
    max_bytes: int | None = None
    file_rows: int = 100_000  # a file is written once this many rows wait ...
    flush_seconds: float = 10.0  # ... or this long after the first of them
    # What may wait for the writer thread: requests, and feature values over all of them
    # (entities x features). A request past either is dropped and counted, never waited for.
    queue_requests: int = 1000
    queue_values: int = 1_000_000


@dataclass(frozen=True)
class Config:
    """Where a repo's registry, offline store and online store live."""

    repo: Path
    project: str
    duckdb_path: Path
    redis_url: str  # one Redis, or a Redis Cluster (redis_urls.py)
    # Entity frames name their event time column this unless a call says otherwise.
    event_timestamp_column: str = "event_timestamp"
    # DuckDB's buffer pool for heavy work (training sets, ingestion), e.g. "8GB"; beyond it
    # DuckDB spills to .featurestore/tmp. None: DuckDB's default, 80% of RAM, except for
    # materialization's newest-row reads (online/materialize.py, DEFAULT_MEMORY_LIMIT).
    memory_limit: str | None = None
    # OpenLineage events go here (an HTTP endpoint) instead of .featurestore/openlineage/events.jsonl.
    openlineage_url: str | None = None
    # `featurestore serve` security ([serving] table): bearer tokens come from this file (one a
    # line; never inline in the toml), TLS from this certificate and key. See serving/auth.py.
    auth_tokens_file: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    serving_limits: ServingLimits = ServingLimits()

    def __repr__(self) -> str:  # the Redis URL may hold a password
        fields = ", ".join(
            f"{k}={mask_url(v) if k.endswith('_url') and isinstance(v, str) else v!r}"
            for k, v in vars(self).items()
        )
        return f"Config({fields})"

    # serve logs a sample of requests to Parquet here (relative paths are from the repo); None: no log.
    request_log_path: Path | None = None
    request_log_sample: float = 0.01  # 1.0 in mode "complete"
    request_log_limits: RequestLogLimits = RequestLogLimits()
    # Drift: a feature drifts when its PSI reaches this and its test's p-value is below that.
    psi_threshold: float = 0.2
    p_value_threshold: float = 0.05
    # [retention]: run bookkeeping `featurestore gc` keeps (see lineage/retention.py), and
    # whether each materialization runs it when done.
    keep_runs: int = 10
    gc_after_materialize: bool = False
    # On a cluster, lookups may read replicas too (more reads per second; values up to the
    # replication lag old). Materialization always writes the masters.
    read_from_replicas: bool = False
    # [offline] engine: "duckdb" (embedded) or "spark" (``spark`` says where; see offline/spark/).
    offline_engine: str = "duckdb"
    spark: SparkSettings = SparkSettings()

    @property
    def spark_engine(self) -> SparkSettings | None:
        """The Spark settings when the offline engine is Spark, else None."""
        return self.spark if self.offline_engine == "spark" else None

    @property
    def store_dir(self) -> Path:
        """The folder beside the DuckDB file for the store's own files (quarantine, logs)."""
        return self.duckdb_path.parent


def load_config(repo: str | os.PathLike[str] = ".", env: Mapping[str, str] | None = None) -> Config:
    """Read ``repo/featurestore.toml`` and apply environment overrides."""
    env = os.environ if env is None else env
    root = Path(repo).resolve()
    path = root / CONFIG_FILE
    if not root.exists():
        raise ConfigError(f"repo folder {root} does not exist: pass the folder holding {CONFIG_FILE}")
    if not root.is_dir():
        raise ConfigError(f"{root} is a file: pass --repo the folder holding {CONFIG_FILE}")
    if not path.is_file():
        raise ConfigError(f"no {CONFIG_FILE} in {root}: run 'featurestore init' or pass --repo")
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None

    known = {
        "project", "offline", "online", "training", "lineage", "serving", "request_log", "monitoring",
        "retention",
    }
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown}; expected {sorted(known)}")

    project = env.get("FEATURESTORE_PROJECT") or raw.get("project")
    if not isinstance(project, str) or not _PROJECT.match(project):
        raise ConfigError(
            f"{path}: project {project!r} must be lower-case letters, digits and _ "
            "(it prefixes Redis keys and DuckDB schemas)"
        )
    offline = _table(raw, "offline", path, typed=("spark",))  # a table of its own
    online = _table(raw, "online", path, typed=("read_from_replicas",))  # a boolean
    training = _table(raw, "training", path)
    lineage = _table(raw, "lineage", path)

    duckdb_path = Path(env.get("FEATURESTORE_DUCKDB_PATH") or offline.get("path", DEFAULT_DUCKDB_PATH))
    if not duckdb_path.is_absolute():
        duckdb_path = root / duckdb_path
    redis_url = check_url(env.get("FEATURESTORE_REDIS_URL") or online.get("redis_url", DEFAULT_REDIS_URL))
    read_from_replicas = _read_from_replicas(online, env, path)
    event_col = training.get("event_timestamp_column", "event_timestamp")
    memory_limit = env.get("FEATURESTORE_DUCKDB_MEMORY_LIMIT") or offline.get("memory_limit")
    if memory_limit is not None and not _MEMORY.match(str(memory_limit)):
        raise ConfigError(f"memory_limit {memory_limit!r} must be a size such as 8GB or 512MB")
    openlineage_url = env.get("FEATURESTORE_OPENLINEAGE_URL") or lineage.get("openlineage_url")
    if openlineage_url is not None and not openlineage_url.startswith(("http://", "https://")):
        raise ConfigError(
            f"openlineage_url must start with http:// or https://, got {mask_url(openlineage_url)!r}"
        )
    serving_table = _table(raw, "serving", path, typed=_LIMIT_KEYS)
    limits = _serving_limits(serving_table, env, path)
    serving = _serving_paths(serving_table, env, root)
    log_path, log_sample, log_limits = _request_log(raw, env, root, path)
    psi, p_value = _drift_thresholds(raw, path)
    keep_runs, gc_after = _retention(raw, path)
    engine, spark = _offline_engine(offline, env, root, path, duckdb_path.parent / "warehouse")
    return Config(
        root,
        project,
        duckdb_path,
        redis_url,
        event_col,
        memory_limit,
        openlineage_url,
        **serving,
        read_from_replicas=read_from_replicas,
        serving_limits=limits,
        request_log_path=log_path,
        request_log_sample=log_sample,
        request_log_limits=log_limits,
        psi_threshold=psi,
        p_value_threshold=p_value,
        keep_runs=keep_runs,
        gc_after_materialize=gc_after,
        offline_engine=engine,
        spark=spark,
    )


_LOG_LIMIT_KEYS: dict[str, tuple[type, float]] = {
    "max_bytes": (int, 1),
    "file_rows": (int, 1),
    "flush_seconds": (float, 0.01),
    "queue_requests": (int, 1),
    "queue_values": (int, 1),
}


def _request_log(
    raw: dict[str, object], env: Mapping[str, str], root: Path, path: Path
) -> tuple[Path | None, float, RequestLogLimits]:
    """[request_log] path, mode, sample and limits, or FEATURESTORE_REQUEST_LOG_<KEY>
    (_DIR for the path)."""
    table = raw.get("request_log", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [request_log] must be a table")
    keys = {"path", "mode", "sample", *_LOG_LIMIT_KEYS}
    unknown = sorted(set(table) - keys)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown} in [request_log]; expected {sorted(keys)}")
    folder = env.get("FEATURESTORE_REQUEST_LOG_DIR") or table.get("path")
    if folder is not None and not isinstance(folder, str):
        raise ConfigError(f"{path}: [request_log] path must be a string, got {folder!r}")
    mode = env.get("FEATURESTORE_REQUEST_LOG_MODE") or table.get("mode", "sampled")
    if mode not in REQUEST_LOG_MODES:
        raise ConfigError(f"request log mode {mode!r} must be one of {list(REQUEST_LOG_MODES)}")
    sample = env.get("FEATURESTORE_REQUEST_LOG_SAMPLE") or table.get("sample")
    if mode == "complete":
        if sample is not None and _number(sample, float) != 1.0:
            raise ConfigError(
                f"request log mode 'complete' logs every request; sample {sample!r} contradicts it "
                "(drop sample, or use mode 'sampled')"
            )
        rate = 1.0
    else:
        sample = 0.01 if sample is None else sample
        try:
            rate = float(sample)
        except (TypeError, ValueError):
            rate = -1.0
        if not 0 < rate <= 1:
            raise ConfigError(
                f"request log sample {sample!r} must be a share of requests in (0, 1], e.g. 0.01"
            )
    found: dict[str, float] = {}
    for name, (kind, low) in _LOG_LIMIT_KEYS.items():
        variable = f"FEATURESTORE_REQUEST_LOG_{name.upper()}"
        item: object = env.get(variable) or table.get(name)
        if item is None:
            continue
        number = _size(item) if name == "max_bytes" else _number(item, kind)
        if number is None or number < low:
            where = variable if env.get(variable) else f"{path}: [request_log] {name}"
            what = "a size in bytes, or such as 512MiB" if name == "max_bytes" else (
                "a whole number >= 1" if kind is int else "a number of seconds > 0"
            )
            raise ConfigError(f"{where} must be {what}, got {item!r}")
        found[name] = number
    limits = RequestLogLimits(**found)  # type: ignore[arg-type]
    return (None if not folder else root / folder), rate, limits


_MEMORY = re.compile(r"^\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$", re.IGNORECASE)
_TABLE_KEYS = {
    "offline": {"path", "memory_limit", "engine", "spark"},
    "online": {"redis_url", "read_from_replicas"},
    "training": {"event_timestamp_column"},
    "lineage": {"openlineage_url"},
    "serving": {"auth_tokens_file", "tls_cert", "tls_key", "max_connections", "max_streams",
                "header_timeout", "idle_timeout", "max_bytes_in_flight"},
}
# [serving] keys that take numbers, with their type and smallest value.
_LIMIT_KEYS: dict[str, tuple[type, float]] = {
    "max_connections": (int, 1),
    "max_streams": (int, 1),
    "header_timeout": (float, 0.01),
    "idle_timeout": (float, 0.01),
    "max_bytes_in_flight": (int, 1),
}
_UNITS = {"b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
          "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4}


def _table(raw: dict[str, object], key: str, path: Path, typed: Collection[str] = ()) -> dict[str, Any]:
    """A table of strings but for the ``typed`` keys, whose own readers check them."""
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: [{key}] must be a table")
    # A misspelt key would otherwise be ignored silently in favour of the default.
    unknown = sorted(set(value) - _TABLE_KEYS[key])
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown} in [{key}]; expected {sorted(_TABLE_KEYS[key])}")
    for name, item in value.items():
        if name not in typed and not isinstance(item, str):
            raise ConfigError(f"{path}: [{key}] {name} must be a string, got {item!r}")
    return value


def _serving_limits(serving: Mapping[str, object], env: Mapping[str, str], path: Path) -> ServingLimits:
    """[serving] limits, overridden by FEATURESTORE_SERVING_<KEY> (e.g. _MAX_CONNECTIONS)."""
    found: dict[str, float] = {}
    for name, (kind, low) in _LIMIT_KEYS.items():
        variable = f"FEATURESTORE_SERVING_{name.upper()}"
        item: object = env.get(variable) or serving.get(name)
        where = variable if env.get(variable) else f"{path}: [serving] {name}"
        if item is None:
            continue
        number = _size(item) if name == "max_bytes_in_flight" else _number(item, kind)
        if number is None or number < low:
            what = "a size in bytes, or such as 64MiB" if name == "max_bytes_in_flight" else (
                "a whole number >= 1" if kind is int else "a number of seconds > 0"
            )
            raise ConfigError(f"{where} must be {what}, got {item!r}")
        found[name] = number
    return ServingLimits(**found)  # type: ignore[arg-type]


def _number(item: object, kind: type) -> float | None:
    if isinstance(item, bool):
        return None
    if isinstance(item, str):
        try:
            item = kind(item.strip())
        except ValueError:
            return None
    if kind is int and not isinstance(item, int):
        return None
    if not isinstance(item, int | float) or not math.isfinite(item):
        return None
    return kind(item)


def _size(item: object) -> int | None:
    """Bytes: an integer, or a number with a unit such as 64MiB or 1GB."""
    if isinstance(item, int) and not isinstance(item, bool):
        return item
    if not isinstance(item, str):
        return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", item)
    if match is None or match[2].lower() not in {"", *_UNITS}:
        return None
    return int(float(match[1]) * _UNITS.get(match[2].lower(), 1))


def _serving_paths(serving: Mapping[str, Any], env: Mapping[str, str], root: Path) -> dict[str, Path | None]:
    """[serving] file paths, overridden by FEATURESTORE_AUTH_TOKENS_FILE / _TLS_CERT / _TLS_KEY."""
    out: dict[str, Path | None] = {}
    for key in ("auth_tokens_file", "tls_cert", "tls_key"):
        value = env.get(f"FEATURESTORE_{key.upper()}") or serving.get(key)
        out[key] = None if not value else (root / value if not Path(value).is_absolute() else Path(value))
    return out


_DRIFT_KEYS = {"psi_threshold": (0.0, math.inf), "p_value_threshold": (0.0, 1.0)}


def _drift_thresholds(raw: dict[str, object], path: Path) -> tuple[float, float]:
    """[monitoring] psi_threshold and p_value_threshold: numbers, unlike the other tables' strings."""
    value = raw.get("monitoring", {})
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: [monitoring] must be a table")
    unknown = sorted(set(value) - set(_DRIFT_KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown} in [monitoring]; expected {sorted(_DRIFT_KEYS)}")
    found = {"psi_threshold": Config.psi_threshold, "p_value_threshold": Config.p_value_threshold}
    for name, (lo, hi) in _DRIFT_KEYS.items():
        item = value.get(name, found[name])
        if isinstance(item, bool) or not isinstance(item, int | float) or not lo <= item <= hi:
            bounds = f">= {lo:g}" if hi == math.inf else f"from {lo:g} to {hi:g}"
            raise ConfigError(f"{path}: [monitoring] {name} must be a number {bounds}, got {item!r}")
        found[name] = float(item)
    return found["psi_threshold"], found["p_value_threshold"]


def _read_from_replicas(online: dict[str, object], env: Mapping[str, str], path: Path) -> bool:
    """[online] read_from_replicas (true or false; FEATURESTORE_READ_FROM_REPLICAS overrides)."""
    value: object = online.get("read_from_replicas", False)
    override = env.get("FEATURESTORE_READ_FROM_REPLICAS")
    if override:
        value = {"true": True, "1": True, "false": False, "0": False}.get(override.lower(), override)
    if not isinstance(value, bool):
        raise ConfigError(f"{path}: [online] read_from_replicas must be true or false, got {value!r}")
    return value


_SPARK_KEYS = {"master", "remote", "warehouse", "conf", "connect_timeout"}
_URI = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def _offline_engine(
    offline: Mapping[str, Any], env: Mapping[str, str], root: Path, path: Path, default_warehouse: Path
) -> tuple[str, SparkSettings]:
    """[offline] engine and [offline.spark], overridden by FEATURESTORE_OFFLINE_ENGINE and
    FEATURESTORE_SPARK_MASTER / _REMOTE / _WAREHOUSE."""
    engine = env.get("FEATURESTORE_OFFLINE_ENGINE") or offline.get("engine", "duckdb")
    if engine not in OFFLINE_ENGINES:
        raise ConfigError(f"{path}: [offline] engine must be one of {list(OFFLINE_ENGINES)}, got {engine!r}")
    table = offline.get("spark", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [offline.spark] must be a table")
    unknown = sorted(set(table) - _SPARK_KEYS)
    if unknown:
        raise ConfigError(
            f"{path}: unknown key(s) {unknown} in [offline.spark]; expected {sorted(_SPARK_KEYS)}"
        )
    found: dict[str, Any] = {}
    for key in ("master", "remote", "warehouse"):
        value = env.get(f"FEATURESTORE_SPARK_{key.upper()}") or table.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{path}: [offline.spark] {key} must be a non-empty string, got {value!r}")
        found[key] = value.strip()
    remote = found.get("remote")
    if remote is not None and not remote.startswith("sc://"):
        raise ConfigError(
            f"[offline.spark] remote must be a Spark Connect URL sc://host:port, got {remote!r}"
        )
    warehouse = found.get("warehouse", str(default_warehouse))
    if not _URI.match(warehouse) and not Path(warehouse).is_absolute():
        warehouse = str(root / warehouse)  # relative paths keep their meaning: from the repo
    found["warehouse"] = warehouse
    conf = table.get("conf", {})
    if not isinstance(conf, dict) or not all(
        isinstance(v, str | int | float | bool) and not isinstance(v, dict) for v in conf.values()
    ):
        raise ConfigError(f"{path}: [offline.spark] conf must be a table of Spark settings, got {conf!r}")
    # TOML booleans are Spark's "true"/"false".
    found["conf"] = {str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in conf.items()}
    timeout = table.get("connect_timeout", SparkSettings.connect_timeout)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 3600:
        raise ConfigError(
            f"{path}: [offline.spark] connect_timeout must be seconds in (0, 3600], got {timeout!r}"
        )
    found["connect_timeout"] = float(timeout)
    return str(engine), SparkSettings(**found)


def _retention(raw: dict[str, object], path: Path) -> tuple[int, bool]:
    """[retention] keep_runs (an integer >= 1) and after_materialize (true or false)."""
    value = raw.get("retention", {})
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: [retention] must be a table")
    unknown = sorted(set(value) - {"keep_runs", "after_materialize"})
    if unknown:
        raise ConfigError(
            f"{path}: unknown key(s) {unknown} in [retention]; expected ['after_materialize', 'keep_runs']"
        )
    keep = value.get("keep_runs", Config.keep_runs)
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise ConfigError(f"{path}: [retention] keep_runs must be an integer >= 1, got {keep!r}")
    after = value.get("after_materialize", False)
    if not isinstance(after, bool):
        raise ConfigError(f"{path}: [retention] after_materialize must be true or false, got {after!r}")
    return keep, after


def valid_project(name: str) -> bool:
    """Whether ``name`` can name a project (it prefixes Redis keys and DuckDB schemas)."""
    return bool(_PROJECT.match(name))


def render_config(project: str) -> str:
    """The featurestore.toml that ``featurestore init`` writes."""
    return (
        f'project = "{project}"\n\n'
        "[offline]\n"
        "# The embedded DuckDB file: registry, ingested sources, runs.\n"
        f'path = "{DEFAULT_DUCKDB_PATH}"\n\n'
        "[online]\n"
        "# Overridden by FEATURESTORE_REDIS_URL.\n"
        f'redis_url = "{DEFAULT_REDIS_URL}"\n'
    )

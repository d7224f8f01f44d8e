"""Repo configuration: featurestore.toml, overridden by FEATURESTORE_* environment variables."""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from featurestore.errors import ConfigError

CONFIG_FILE = "featurestore.toml"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_DUCKDB_PATH = ".featurestore/store.duckdb"
_PROJECT = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class Config:
    """Where a repo's registry, offline store and online store live."""

    repo: Path
    project: str
    duckdb_path: Path
    redis_url: str
    # Entity frames name their event time column this unless a call says otherwise.
    event_timestamp_column: str = "event_timestamp"
    # DuckDB's buffer pool for heavy work (training sets, ingestion), e.g. "8GB"; beyond it
    # DuckDB spills to .featurestore/tmp. None: DuckDB's default, 80% of RAM.
    memory_limit: str | None = None
    # OpenLineage events go here (an HTTP endpoint) instead of .featurestore/openlineage/events.jsonl.
    openlineage_url: str | None = None
    # Drift: a feature drifts when its PSI reaches this and its test's p-value is below that.
    psi_threshold: float = 0.2
    p_value_threshold: float = 0.05

    @property
    def store_dir(self) -> Path:
        """The folder beside the DuckDB file for the store's own files (quarantine, logs)."""
        return self.duckdb_path.parent


def load_config(repo: str | os.PathLike[str] = ".", env: Mapping[str, str] | None = None) -> Config:
    """Read ``repo/featurestore.toml`` and apply environment overrides."""
    env = os.environ if env is None else env
    root = Path(repo).resolve()
    path = root / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"no {CONFIG_FILE} in {root}: run 'featurestore init' or pass --repo")
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None

    known = {"project", "offline", "online", "training", "lineage", "monitoring"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown}; expected {sorted(known)}")

    project = env.get("FEATURESTORE_PROJECT") or raw.get("project")
    if not isinstance(project, str) or not _PROJECT.match(project):
        raise ConfigError(
            f"{path}: project {project!r} must be lower-case letters, digits and _ "
            "(it prefixes Redis keys and DuckDB schemas)"
        )
    offline = _table(raw, "offline", path)
    online = _table(raw, "online", path)
    training = _table(raw, "training", path)
    lineage = _table(raw, "lineage", path)

    duckdb_path = Path(env.get("FEATURESTORE_DUCKDB_PATH") or offline.get("path", DEFAULT_DUCKDB_PATH))
    if not duckdb_path.is_absolute():
        duckdb_path = root / duckdb_path
    redis_url = env.get("FEATURESTORE_REDIS_URL") or online.get("redis_url", DEFAULT_REDIS_URL)
    if not isinstance(redis_url, str) or not redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"redis_url must start with redis://, rediss:// or unix://, got {redis_url!r}")
    event_col = training.get("event_timestamp_column", "event_timestamp")
    memory_limit = env.get("FEATURESTORE_DUCKDB_MEMORY_LIMIT") or offline.get("memory_limit")
    if memory_limit is not None and not _MEMORY.match(str(memory_limit)):
        raise ConfigError(f"memory_limit {memory_limit!r} must be a size such as 8GB or 512MB")
    openlineage_url = env.get("FEATURESTORE_OPENLINEAGE_URL") or lineage.get("openlineage_url")
    if openlineage_url is not None and not openlineage_url.startswith(("http://", "https://")):
        raise ConfigError(f"openlineage_url must start with http:// or https://, got {openlineage_url!r}")
    psi, p_value = _drift_thresholds(raw, path)
    return Config(
        root, project, duckdb_path, redis_url, event_col, memory_limit, openlineage_url, psi, p_value
    )


_MEMORY = re.compile(r"^\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$", re.IGNORECASE)
_TABLE_KEYS = {
    "offline": {"path", "memory_limit"},
    "online": {"redis_url"},
    "training": {"event_timestamp_column"},
    "lineage": {"openlineage_url"},
}


def _table(raw: dict[str, object], key: str, path: Path) -> dict[str, str]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: [{key}] must be a table")
    # A misspelt key would otherwise be ignored silently in favour of the default.
    unknown = sorted(set(value) - _TABLE_KEYS[key])
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown} in [{key}]; expected {sorted(_TABLE_KEYS[key])}")
    for name, item in value.items():
        if not isinstance(item, str):
            raise ConfigError(f"{path}: [{key}] {name} must be a string, got {item!r}")
    return value


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

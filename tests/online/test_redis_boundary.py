"""Redis stays behind the online store's backend: no other module imports it or its errors.

The backend module maps every Redis exception to ours (``map_errors``); if another module
imported redis, it could catch (or leak) redis-py's exceptions around that boundary, and a
second backend (Redis Cluster, cluster_backend.py, which reuses ``map_errors``) would have
to change it too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import featurestore

PACKAGE = Path(featurestore.__file__).parent
# The Redis backends and the serving clients they wrap (one Redis, a cluster): the only
# code speaking Redis.
REDIS_MODULES = {
    "online/redis_backend.py", "online/cluster_backend.py", "online/aioredis.py", "online/aiocluster.py"
}
# Who may build a Redis backend: the online store's constructors.
BACKEND_USERS = {"online/store.py"}


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports (``from a import b`` counts as a and a.b)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _sources() -> dict[str, Path]:
    return {
        str(p.relative_to(PACKAGE)): p
        for p in sorted(PACKAGE.rglob("*.py"))
        if "/v1/" not in str(p)  # generated protobuf code
    }


def test_only_the_redis_backend_imports_redis() -> None:
    offenders = {}
    for name, path in _sources().items():
        if name in REDIS_MODULES:
            continue
        found = sorted(m for m in _imports(path) if m.split(".")[0] in ("redis", "hiredis"))
        if found:
            offenders[name] = found
    assert offenders == {}, f"import redis only in {sorted(REDIS_MODULES)}: {offenders}"


def test_no_module_names_redis_exceptions_outside_the_backend() -> None:
    offenders = []
    for name, path in _sources().items():
        if name in REDIS_MODULES:
            continue
        text = path.read_text()
        if "redis.exceptions" in text or "RedisError" in text or "redis_errors" in text:
            offenders.append(name)
    assert offenders == []


def test_only_the_online_store_builds_the_redis_backend() -> None:
    users = sorted(
        name
        for name, path in _sources().items()
        if name not in REDIS_MODULES
        and {
            "featurestore.online.redis_backend",
            "featurestore.online.cluster_backend",
            "featurestore.online.aioredis",
            "featurestore.online.aiocluster",
        }
        & _imports(path)
    )
    assert users == sorted(BACKEND_USERS)

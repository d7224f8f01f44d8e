"""The package's shape, pinned: imports only point down the layers, and SQL is written only by
the modules that own the tables it touches (and the query builders that read them)."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import featurestore

PACKAGE = Path(featurestore.__file__).parent

# Bottom to top: a module may import its own layer or a lower one, never a higher one. A new
# top-level module or package must be placed here (the test fails until it is).
LAYERS: dict[str, int] = {
    "errors": 0,
    "config": 1,
    "secrets": 1,
    "redis_urls": 1,  # what an online store URL may say (one Redis or a cluster)
    "uris": 1,  # source paths that are URIs (file://, or remote ones only Spark reads)
    "outputs": 1,
    "storage": 1,
    "runlock": 1,
    "migrations": 1,  # the store file's schema version; storage.connect checks it
    "catalog": 1,  # which tables and columns the DuckDB file holds
    "fingerprints": 1,  # content hashes of files
    "profiling": 1,  # per-feature statistics of a relation, computed by DuckDB
    "definitions": 2,
    "repo": 3,
    "source_files": 3,  # listing and reading source files where they live (remote: Spark)
    "registry": 4,
    "on_demand": 5,  # on-demand views' functions: loaded from the repo, run on Arrow tables
    "validation": 5,
    "runs": 6,
    "offline": 7,
    "online": 8,
    "lineage": 9,
    "monitoring": 10,
    "serving": 11,
    "store": 12,
    "ui": 12,  # the web console: reads the store, the registry, runs and lineage like the CLI
    "__init__": 12,
    "cli": 13,
    "scaffold": 13,
    "datagen": 13,
}

# The modules that write SQL: each owns the tables its SQL writes (``runs/*``: the run
# bookkeeping; ``offline/offline_store.py`` and its writing half ``offline/write.py``: the
# offline tables; ``registry/versions.py``: the registry; ``online/state.py``: watermarks,
# removals and the online epoch), or builds the queries that read them (the point-in-time
# join, the training set, materialization's newest rows, statistics).
SQL_OWNERS = {
    "storage.py",  # the connection itself (settings, attaching a read-only file)
    "migrations.py",  # the schema version table and the steps that upgrade a store
    "catalog.py",  # information_schema
    "profiling.py",  # statistics: one aggregate query over any relation
    "registry/versions.py",
    "runs/ingestion.py",
    "runs/materialization.py",
    "runs/sources.py",
    "runs/statistics.py",
    "runs/validation.py",
    "runs/retention.py",
    "offline/offline_store.py",
    "offline/write.py",
    "offline/entities.py",  # registers the entity frame of a point-in-time join
    "offline/pit.py",
    "offline/aggregations.py",  # pit.py's windows: aggregation features at the entity rows
    "offline/spark/entities.py",  # checks an entity frame with DuckDB's own rules (zero rows)
    "offline/spark/ingest.py",  # write.py's Spark counterpart: the transaction recording a view's folders
    "offline/spark/warehouse.py",  # offline_<view> as a DuckDB view over the live warehouse folders
    "offline/training_set.py",
    "offline/feature_log.py",  # pivots request log files (in memory, no store table) into entity rows
    "online/state.py",
    "online/materialize.py",  # the newest row per entity, read from the offline tables
    "online/presence.py",  # sample keys of a view, read from its offline table
    "online/tile_writer.py",  # an aggregation view's tiles, computed from its offline table
}

# SQL statements as written in this code base: upper-case keywords.
_SQL = re.compile(
    r"\b(SELECT\s+\S|INSERT\s+(OR\s+REPLACE\s+)?INTO|DELETE\s+FROM|UPDATE\s+\S+\s+SET|"
    r"CREATE\s+(OR\s+REPLACE\s+)?(TEMP\s+)?(TABLE|SCHEMA|SEQUENCE|VIEW|INDEX)|DROP\s+(TABLE|VIEW|SCHEMA)|"
    r"ALTER\s+TABLE|COPY\s*\(|ATTACH\s|DETACH\s|CHECKPOINT|DESCRIBE\s|BEGIN\s+TRANSACTION|COMMIT|ROLLBACK)"
)
_SQL_CALLS = {"execute", "executemany", "sql", "query"}


def modules() -> Iterator[tuple[str, Path]]:
    """``(dotted name, path)`` of every module of the package (generated code included)."""
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        yield ".".join(parts), path


def imports(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """Every module imported anywhere in the file (top level, in functions, under TYPE_CHECKING),
    relative imports resolved, with its line; ``from pkg import name`` counts as ``pkg.name``
    when that is a module."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                yield (sub if _is_module(sub) else target), node.lineno


def _is_module(dotted: str) -> bool:
    path = PACKAGE.parent.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def component(dotted: str) -> str:
    """The top-level module or package of ``featurestore.x.y``: ``x``; the package itself: ``__init__``."""
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def layer_violations() -> list[str]:
    problems = []
    for module, path in modules():
        here = component(module)
        if here not in LAYERS:
            problems.append(f"{module}: top-level {here!r} has no layer in LAYERS (place it)")
            continue
        for target, line in imports(module, path):
            if target != "featurestore" and not target.startswith("featurestore."):
                continue
            there = component(target)
            if there not in LAYERS:
                problems.append(f"{module}:{line} imports {target}, whose {there!r} has no layer")
            elif LAYERS[there] > LAYERS[here]:
                problems.append(
                    f"{module}:{line} imports {target}: layer {LAYERS[here]} ({here}) -> "
                    f"{LAYERS[there]} ({there}) runs back up"
                )
    return problems


def _docstrings(tree: ast.AST) -> set[int]:
    """The ids of the docstring nodes of the module, classes and functions."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def sql_sites(path: Path) -> list[str]:
    """Where a file writes SQL: a string (or f-string) holding a statement, or a call of
    ``.execute``/``.executemany``/``.sql``/``.query`` on a statement built elsewhere (a variable,
    an expression). Literal arguments are judged by their text: a Redis command (``b"MGET"``)
    is not SQL, and a Redis pipeline's ``execute()`` takes no argument."""
    tree = ast.parse(path.read_text(), str(path))
    docstrings = _docstrings(tree)
    sites = []
    for node in ast.walk(tree):
        text = None
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            text = node.value
        elif isinstance(node, ast.JoinedStr):
            parts = [v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str)]
            text = " x ".join(parts)
        if text is not None and _SQL.search(text):
            sites.append(f"line {node.lineno}: {text.strip()[:60]!r}")
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in _SQL_CALLS
            and node.args
            and not isinstance(node.args[0], ast.Constant | ast.JoinedStr)
        ):
            sites.append(f"line {node.lineno}: .{node.func.attr}(...)")
    return sites


def sql_outside_owners() -> list[str]:
    problems = []
    for _, path in modules():
        name = path.relative_to(PACKAGE).as_posix()
        if name in SQL_OWNERS or name.startswith("serving/v1/"):  # generated protobuf code
            continue
        problems += [f"{name} {site}" for site in sql_sites(path)]
    return problems


def test_imports_only_point_down_the_layers() -> None:
    assert layer_violations() == []


def test_sql_is_written_only_by_the_owners_of_the_tables() -> None:
    assert sql_outside_owners() == []


def test_every_sql_owner_exists_and_writes_sql() -> None:
    """The allow-list stays honest: no stale entry, no entry that writes no SQL."""
    for name in sorted(SQL_OWNERS):
        assert sql_sites(PACKAGE / name), f"{name} is allowed SQL but writes none: drop it from SQL_OWNERS"


def test_the_checks_see_what_they_must() -> None:
    """The scanners themselves: a back-arrow and stray SQL in sample code are found."""
    tree = "def f():\n    from ..serving import server\n"
    assert any("serving" in t for t, _ in _imports_of(tree, "featurestore.offline.x"))
    assert _SQL.search("SELECT run_id FROM p.materialization_runs")
    assert _SQL.search(f"UPDATE {'x'}.ingestion_runs SET status = ?")
    assert not _SQL.search("Delete the run bookkeeping no recorded training set needs")
    assert not _SQL.search("DELETE")  # an HTTP method


def _imports_of(source: str, module: str) -> list[tuple[str, int]]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "x.py"
        path.write_text(source)
        return list(imports(module, path))

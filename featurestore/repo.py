"""Import a feature repo's Python files and collect the definitions they declare.

Every problem is collected and reported at once (a DefinitionError listing all), so a
data engineer fixes a repo in one pass instead of one error per run.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from featurestore.definitions import (
    Entity,
    FeatureService,
    FeatureView,
    FeatureViewProjection,
    OnDemandFeatureView,
    ParquetSource,
)
from featurestore.errors import DefinitionError

Definition = Entity | ParquetSource | FeatureView | OnDemandFeatureView | FeatureService
KINDS: dict[type, str] = {
    Entity: "entity",
    ParquetSource: "source",
    FeatureView: "feature_view",
    OnDemandFeatureView: "on_demand_view",
    FeatureService: "feature_service",
}
_SKIP_DIRS = {"__pycache__", "node_modules", "site-packages"}


@dataclass
class RepoContents:
    """The objects a repo declares, by kind and name."""

    entities: dict[str, Entity] = field(default_factory=dict)
    sources: dict[str, ParquetSource] = field(default_factory=dict)
    views: dict[str, FeatureView] = field(default_factory=dict)
    services: dict[str, FeatureService] = field(default_factory=dict)
    on_demand_views: dict[str, OnDemandFeatureView] = field(default_factory=dict)
    # What ``load_repo(..., raise_problems=False)`` found, for the compiler to report with its own.
    problems: list[str] = field(default_factory=list)

    def by_kind(self) -> dict[str, dict[str, Any]]:
        return {
            "entity": self.entities,
            "source": self.sources,
            "feature_view": self.views,
            "on_demand_view": self.on_demand_views,
            "feature_service": self.services,
        }


def python_files(repo: Path) -> list[Path]:
    """The .py files of a repo, skipping hidden folders, caches and virtual environments."""
    found: list[Path] = []

    def walk(folder: Path) -> None:
        for entry in sorted(folder.iterdir()):
            if entry.is_dir():
                if entry.name.startswith(".") or entry.name in _SKIP_DIRS:
                    continue
                if (entry / "pyvenv.cfg").exists():
                    continue
                walk(entry)
            elif entry.suffix == ".py" and not entry.name.startswith("."):
                found.append(entry)

    walk(repo)
    return found


def load_repo(repo: Path, raise_problems: bool = True) -> RepoContents:
    """Import every .py file under ``repo`` and collect its definitions.

    With ``raise_problems=False`` the problems (a file that fails to import, a duplicate name)
    come back in ``problems`` with what could be collected, so that checking the rest can
    report its problems in the same round.
    """
    repo = repo.resolve()
    problems: list[str] = []
    seen: dict[tuple[str, str], Any] = {}
    files = python_files(repo)
    _forget_modules(files)
    sys.path.insert(0, str(repo))
    try:
        for path in files:
            rel = path.relative_to(repo)
            module_name = ".".join(rel.with_suffix("").parts)
            if module_name.endswith(".__init__"):
                module_name = module_name[: -len(".__init__")]
            try:
                module = importlib.import_module(module_name)
            except DefinitionError as e:
                problems += [f"{_where(e, repo, rel)}: {p}" for p in e.problems]
                continue
            except Exception as e:  # any import-time failure is a problem in that file
                problems.append(f"{_where(e, repo, rel)}: {type(e).__name__}: {e}")
                continue
            except SystemExit as e:  # sys.exit(0) at import would end the command "successfully"
                problems.append(
                    f"{_where(e, repo, rel)}: the file calls sys.exit({e.code!r}) when imported; "
                    "a definitions file must not exit (guard scripts with if __name__ == '__main__')"
                )
                continue
            for value in list(vars(module).values()):
                _collect(value, seen, problems, repo)
    finally:
        sys.path.remove(str(repo))
        _forget_modules(files)

    # Objects only referenced (an inline source, an entity object) count as declared too.
    for obj in list(seen.values()):
        if isinstance(obj, OnDemandFeatureView):
            for src in obj.sources:  # views given as objects count as declared
                view = src.view if isinstance(src, FeatureViewProjection) else src
                if isinstance(view, FeatureView):
                    _collect(view, seen, problems, repo)
    for obj in list(seen.values()):
        if isinstance(obj, FeatureView):
            _collect(obj.source, seen, problems, repo)
            for entity in obj.entities:
                if isinstance(entity, Entity):
                    _collect(entity, seen, problems, repo)
    # A broken file imported by another file fails both imports the same way: say it once.
    problems = list(dict.fromkeys(problems))
    if problems and raise_problems:
        raise DefinitionError(problems)

    contents = RepoContents(problems=problems)
    table = contents.by_kind()
    for (kind, name), obj in sorted(seen.items()):
        table[kind][name] = obj
    return contents


def relative_location(location: str, repo: Path) -> str:
    """``path:line`` relative to the repo when it is inside it."""
    try:
        path, _, line = location.rpartition(":")
        return f"{Path(path).resolve().relative_to(repo)}:{line}"
    except ValueError:
        return location


def _collect(value: object, seen: dict[tuple[str, str], Any], problems: list[str], repo: Path) -> None:
    kind = KINDS.get(type(value))
    if kind is None:
        return
    name: str = value.name  # type: ignore[attr-defined]
    other = seen.get((kind, name))
    if other is None:
        seen[(kind, name)] = value
    elif other is not value and other.fingerprint != value.fingerprint:  # type: ignore[attr-defined]
        here = relative_location(value.defined_in, repo)  # type: ignore[attr-defined]
        there = relative_location(other.defined_in, repo)
        problems.append(f"{here}: duplicate {kind.replace('_', ' ')} name {name!r} (also at {there})")


def _where(error: BaseException, repo: Path, rel: Path) -> str:
    """The innermost line of the repo's own code where an import failed."""
    if isinstance(error, SyntaxError) and error.filename:
        return relative_location(f"{error.filename}:{error.lineno}", repo)
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        if frame.filename.startswith(str(repo)):
            return relative_location(f"{frame.filename}:{frame.lineno}", repo)
    return str(rel)


def _forget_modules(files: list[Path]) -> None:
    # Re-importing after an edit must see the edit, and two repos may reuse module names.
    wanted = {str(f) for f in files}
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if file and str(Path(file).resolve()) in wanted:
            del sys.modules[name]

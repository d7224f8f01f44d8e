"""``featurestore drift``: find the statistics a baseline and a current name stand for, and compare them.

Each side is one of:

- an ingestion run, ``ingest-N`` (or ``N``): the statistics of the rows that run ingested,
  for the one view it ingested;
- ``latest``: for each view of the target, its most recent run that ingested rows;
- a training set id: the statistics in its record, of each feature column of the output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import duckdb

from featurestore.config import Config
from featurestore.definitions.feature_service import parse_ref
from featurestore.errors import InvalidRequestError, NotFoundError
from featurestore.monitoring.drift import DriftReport, FeatureDrift, Skipped, Thresholds, compare
from featurestore.profiling import FeatureStats
from featurestore.registry import Snapshot
from featurestore.runs.ingestion import IngestionRunState
from featurestore.runs.statistics import StatisticsState
from featurestore.runs.training_set_records import has_record, list_records, load_record
from featurestore.storage import connection

LATEST = "latest"
_RUN = re.compile(r"^(?:ingest-)?(\d+)$")


@dataclass(frozen=True)
class Target:
    """A view or service and its features, in order, as ``view:feature``."""

    name: str
    kind: str  # "feature view" or "feature service"
    features: tuple[str, ...]

    @property
    def views(self) -> list[str]:
        return list(dict.fromkeys(parse_ref(f)[0] for f in self.features))

    def __str__(self) -> str:
        return f"{self.kind} {self.name!r}"


@dataclass(frozen=True)
class Side:
    """What a baseline or current name stands for: a label and statistics by ``view:feature``."""

    label: str
    stats: dict[str, FeatureStats]
    kind: str = "run"  # "run" (ingested rows) or "training set": their nulls mean different things


def check_drift(
    config: Config, snapshot: Snapshot, target: str, baseline: str, current: str, thresholds: Thresholds
) -> DriftReport:
    """Compare every feature of ``target`` (a view or service) between ``baseline`` and ``current``."""
    what = resolve_target(snapshot, target)
    with connection(config.duckdb_path, read_only=True) as con:
        base = resolve_side(con, config, what, baseline, "baseline")
        cur = resolve_side(con, config, what, current, "current")
    compared: list[FeatureDrift] = []
    skipped: list[Skipped] = []
    for feature in what.features:
        if feature not in base.stats:
            skipped.append(Skipped(feature, f"not in the baseline ({base.label})"))
        elif feature not in cur.stats:
            skipped.append(Skipped(feature, f"not in the current ({cur.label})"))
        else:
            result = compare(
                feature, base.stats[feature], cur.stats[feature], thresholds, base.kind == cur.kind
            )
            if isinstance(result, FeatureDrift):
                compared.append(result)
            else:
                skipped.append(result)
    return DriftReport(what.name, base.label, cur.label, thresholds, tuple(compared), tuple(skipped))


def resolve_target(snapshot: Snapshot, name: str) -> Target:
    if name in snapshot.views:
        view = snapshot.views[name]
        return Target(name, "feature view", tuple(f"{name}:{f.name}" for f in view.features))
    if name in snapshot.services:
        return Target(name, "feature service", tuple(snapshot.services[name].feature_refs()))
    raise NotFoundError(f"no feature view or feature service named {name!r}")


def resolve_side(
    con: duckdb.DuckDBPyConnection, config: Config, target: Target, spec: str, role: str
) -> Side:
    """The statistics ``spec`` (a run, ``latest`` or a training set id) stands for."""
    spec = spec.strip()
    if spec == LATEST:
        return _latest(con, config.project, target)
    match = _RUN.match(spec)
    # A training set's id is 12 hex digits, all of them decimal once in ~280 ids: a recorded
    # training set wins over a bare run number (``ingest-N`` always means the run).
    if match and not (spec.isdigit() and has_record(config.store_dir, spec)):
        return _run(con, config.project, target, int(match.group(1)), role)
    return _training_set(config, target, spec, role)


def _run(con: duckdb.DuckDBPyConnection, project: str, target: Target, run_id: int, role: str) -> Side:
    name = f"ingest-{run_id}"
    runs = IngestionRunState(con, project)
    row = runs.view_and_status(run_id)
    if row is None:
        last = runs.latest_id()
        known = f"the latest is ingest-{last}" if last is not None else "there are none yet"
        raise NotFoundError(f"{role}: no ingestion run {name!r} ({known})")
    view, status = row
    views = target.views
    if view not in views:
        raise InvalidRequestError(
            f"{role}: run {name} ingested feature view {view!r}, which is not in {target}"
        )
    if len(views) > 1:
        others = ", ".join(repr(v) for v in views if v != view)
        raise InvalidRequestError(
            f"{role}: run {name} ingested feature view {view!r} only, but {target} also has features of "
            f"{others}; compare the view, or use a training set id or 'latest'"
        )
    stats = StatisticsState(con, project).read(run_id)
    if not stats:
        raise InvalidRequestError(
            f"{role}: run {name} of feature view {view!r} ({status}) ingested no rows, "
            "so it has no statistics"
        )
    return Side(name, {f"{view}:{f}": s for f, s in stats.items()})


def _latest(con: duckdb.DuckDBPyConnection, project: str, target: Target) -> Side:
    found: dict[str, FeatureStats] = {}
    runs = []
    statistics = StatisticsState(con, project)
    for view in target.views:
        run_id = statistics.latest_run(view)
        if run_id is None:
            raise NotFoundError(
                f"feature view {view!r} has no ingestion run with statistics yet: "
                "run 'featurestore materialize --offline'"
            )
        runs.append((view, run_id))
        found.update({f"{view}:{f}": s for f, s in statistics.read(run_id).items()})
    if len(runs) == 1:
        label = f"latest (ingest-{runs[0][1]})"
    else:
        label = "latest (" + ", ".join(f"{v}: ingest-{r}" for v, r in runs) + ")"
    return Side(label, found)


def _training_set(config: Config, target: Target, training_set: str, role: str) -> Side:
    try:
        record = load_record(config.store_dir, training_set)
    except NotFoundError:
        known = ", ".join(r["id"] for r in list_records(config.store_dir)[-5:]) or "none yet"
        raise NotFoundError(
            f"{role}: {training_set!r} is not an ingestion run (ingest-N), 'latest' or a recorded "
            f"training set (recent training sets: {known})"
        ) from None
    if "statistics" not in record:
        raise InvalidRequestError(
            f"{role}: training set {training_set} was recorded without statistics (before monitoring); "
            "build it again to compare with it"
        )
    manifest = record["manifest"]
    stats = {
        ref: FeatureStats.from_dict(record["statistics"][column])
        for ref, column in zip(manifest["features"], manifest["columns"], strict=True)
        if column in record["statistics"]
    }
    if not set(stats) & set(target.features):
        raise InvalidRequestError(
            f"{role}: training set {training_set} has no feature of {target} "
            f"(it has {', '.join(manifest['features'])})"
        )
    return Side(f"training set {training_set}", stats, "training set")

"""FeatureStore: the Python entry point, a thin facade over the registry and the stores."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from duckdb import DuckDBPyConnection

from featurestore.config import Config, load_config
from featurestore.definitions import Entity, FeatureService, FeatureView, OnDemandFeatureView, ParquetSource
from featurestore.errors import (
    BreakingChangeError,
    FeatureStoreError,
    InvalidRequestError,
    NotAppliedError,
    NotFoundError,
    SourceError,
    ValidationError,
    ViewsFailedError,
)
from featurestore.lineage import retention
from featurestore.lineage.graph import lineage as lineage_graph
from featurestore.lineage.reproduce import ReproduceResult, reproduce
from featurestore.lineage.retention import GcResult
from featurestore.lineage.run_events import emit_materialization
from featurestore.monitoring.check import check_drift
from featurestore.monitoring.drift import DriftReport, Thresholds
from featurestore.offline.offline_store import OfflineStore
from featurestore.offline.plan import source_files, source_files_for
from featurestore.offline.prepare import PreparedIngest, Progress, check_file
from featurestore.offline.training_set import TrainingSet, build_training_set
from featurestore.offline.write import IngestResult
from featurestore.online import materialize as online_materialize
from featurestore.online.lookup import DEFAULT_MAX_ENTITIES, OnlineRegistry, OnlineResult
from featurestore.online.materialize import MaterializeResult
from featurestore.online.push import Pusher, PushResult, repo_check_functions
from featurestore.online.registry_holder import RegistryHolder
from featurestore.online.request import lookup
from featurestore.online.state import OnlineState
from featurestore.online.store import OnlineStore
from featurestore.outputs import OutputGuard
from featurestore.registry import Plan, Snapshot, Version, compile_repo, make_plan
from featurestore.registry.versions import RegistryState, check_unmoved
from featurestore.repo import load_repo
from featurestore.runlock import RunLock, exclusive_run
from featurestore.runs import MATERIALIZE
from featurestore.runs.ingestion import ingestion_runs, record_rejected
from featurestore.runs.materialization import MaterializationRunState
from featurestore.runs.sources import RunSourceState
from featurestore.runs.training_set_records import TrainingSetRecorder, list_records, load_record
from featurestore.storage import connection
from featurestore.validation import FileReport, ValidationReport, ViewReport

if TYPE_CHECKING:
    from featurestore.lineage.openlineage import LineageEvents
    from featurestore.monitoring.freshness import ViewFreshness
    from featurestore.monitoring.skew import SkewReport
    from featurestore.offline.spark.training_set import SparkTrainingSet


@dataclass(frozen=True)
class ApplyResult:
    """What apply did: the plan it carried out and the version it recorded (None if no change)."""

    plan: Plan
    version: Version | None


class FeatureStore:
    """A feature repo: its definitions, registry, offline store (DuckDB) and online store (Redis)."""

    # In-process lookups re-read the registry at most this often (seconds).
    REGISTRY_REFRESH = 10.0

    def __init__(self, repo: str | os.PathLike[str] = ".", config: Config | None = None) -> None:
        self.config = config or load_config(repo)
        self._registry: RegistryHolder | None = None  # lookups' registry, loaded on the first
        self._online_store: OnlineStore | None = None
        self._pusher: Pusher | None = None

    # -- definitions and registry ------------------------------------------------------

    def load_definitions(self) -> Snapshot:
        """Import the repo's Python files and check them, without touching the registry."""
        files = source_files_for(self.config.spark_engine)
        return compile_repo(load_repo(self.config.repo, raise_problems=False), self.config.repo, files)

    def plan(self) -> Plan:
        """What ``apply`` would change; changes nothing."""
        new = self.load_definitions()
        base, old = self._latest_or_none()
        return make_plan(old, new, base.version if base else None)

    def apply(self, allow_breaking: bool = False) -> ApplyResult:
        """Record the repo's definitions as a new registry version (if they changed).

        Raises ConcurrentApplyError if another apply recorded a version while this one ran.
        """
        # The version this apply starts from, read before the (slow) compile: an apply that
        # recorded a version meanwhile wins, and this one fails instead of silently replacing it.
        started = self.versions()
        new = self.load_definitions()
        self._registry = None  # lookups in this process see what is applied now
        with connection(self.config.duckdb_path) as con:
            registry = RegistryState(con, self.config.project)
            registry.ensure_tables()
            base = registry.latest()
            check_unmoved(started[-1].version if started else None, base)
            old = registry.snapshot()[1] if base else None
            plan = make_plan(old, new, base.version if base else None)
            if plan.breaking and not allow_breaking:
                raise BreakingChangeError(
                    "apply refused, the plan breaks consumers: "
                    + "; ".join(plan.breaking)
                    + " (re-run with --allow-breaking to apply anyway)"
                )
            if plan.is_empty:
                return ApplyResult(plan, None)
            version = registry.write(new, plan.base_version, plan.summary())
            # A view gone from the definitions or taken offline leaves data in Redis: the
            # next materialization removes it (recorded here so a Redis outage loses nothing).
            if old is not None:
                gone = [
                    n
                    for n, v in old.views.items()
                    if v.online and (n not in new.views or not new.views[n].online)
                ]
                if gone:
                    online = OnlineState(con, self.config.project)
                    online.ensure_tables()
                    online.request_removal(gone)
        return ApplyResult(plan, version)

    def registry(self, version: int | None = None) -> Snapshot:
        """The applied definitions of ``version`` (default: the latest)."""
        return self._read(version)[1]

    def versions(self) -> list[Version]:
        """Every applied registry version, oldest first."""
        if not self.config.duckdb_path.exists():
            return []
        with connection(self.config.duckdb_path, read_only=True) as con:
            return RegistryState(con, self.config.project).versions()

    def breaking_versions(self) -> dict[int, list[str]]:
        """Version -> how it broke consumers of the version before it (absent: it broke none)."""
        if not self.config.duckdb_path.exists():
            return {}
        with connection(self.config.duckdb_path, read_only=True) as con:
            snapshots = RegistryState(con, self.config.project).snapshots()
        previous: Snapshot | None = None
        breaking: dict[int, list[str]] = {}
        for number, snapshot in snapshots.items():
            reasons = make_plan(previous, snapshot, None).breaking
            if reasons:
                breaking[number] = reasons
            previous = snapshot
        return breaking

    def list_entities(self) -> list[Entity]:
        return list(self.registry().entities.values())

    def list_sources(self) -> list[ParquetSource]:
        return list(self.registry().sources.values())

    def list_feature_views(self) -> list[FeatureView]:
        return list(self.registry().views.values())

    def list_feature_services(self) -> list[FeatureService]:
        return list(self.registry().services.values())

    def get_entity(self, name: str) -> Entity:
        return self.registry().get("entity", name)

    def get_source(self, name: str) -> ParquetSource:
        return self.registry().get("source", name)

    def get_feature_view(self, name: str) -> FeatureView:
        return self.registry().get("feature_view", name)

    def get_feature_service(self, name: str) -> FeatureService:
        return self.registry().get("feature_service", name)

    def list_on_demand_views(self) -> list[OnDemandFeatureView]:
        return list(self.registry().on_demand_views.values())

    def get_on_demand_view(self, name: str) -> OnDemandFeatureView:
        return self.registry().get("on_demand_view", name)

    def describe(self, name: str) -> dict[str, Any]:
        """The applied spec of the object named ``name`` (any kind), with its kind."""
        snapshot = self.registry()
        found = [
            {"kind": kind, **obj.to_spec(), "fingerprint": obj.fingerprint}
            for kind, objs in snapshot.by_kind().items()
            for obj_name, obj in objs.items()
            if obj_name == name
        ]
        if not found:
            raise NotFoundError(f"nothing named {name!r} in the registry")
        return found[0] if len(found) == 1 else {"kind": "several", "objects": found}

    # -- offline store -------------------------------------------------------------------

    def ingest(
        self,
        views: Sequence[str] | None = None,
        progress: Progress | None = None,
        if_idle: bool = False,
        on_wait: Callable[[str], None] | None = None,
    ) -> list[IngestResult]:
        """Load each view's Parquet source into DuckDB; unchanged files are skipped.

        Waits for a running ingestion or materialization (``on_wait`` is told whom for), or
        with ``if_idle`` raises RunInProgressError instead.
        """
        with (
            exclusive_run(self.config.duckdb_path, "an ingestion", if_idle, on_wait),
            connection(self.config.duckdb_path) as con,
        ):
            version, snapshot = RegistryState(con, self.config.project).snapshot()
            results, failed = self._ingest(con, version, self._select_views(snapshot, views), progress)
        if failed:
            raise ViewsFailedError(failed, results)
        return results

    def _ingest(
        self, con: DuckDBPyConnection, version: Version, chosen: list[FeatureView], progress: Progress | None
    ) -> tuple[list[IngestResult], dict[str, FeatureStoreError]]:
        """The views' ingestions, and view -> error for those refused (each alone: the others go on)."""
        project, store_dir = self.config.project, self.config.store_dir
        events = self._lineage_events()
        # Every view is validated before anything is written, runs included: a view whose
        # source or validation fails leaves its table untouched (its report is kept beside the
        # store), and the other views are still written.
        started_at = datetime.now(UTC)
        with_checks = self._check_functions()
        offline = OfflineStore(con, project, self.config.spark_engine, store_dir)
        prepared: list[PreparedIngest] = []
        rejected: dict[str, FeatureStoreError] = {}
        for view in chosen:
            try:
                p = offline.prepare(view, self.config.repo, progress, with_checks)
            except (SourceError, ValidationError) as e:
                rejected[view.name] = e
                continue
            if p.failed:
                rejected[view.name] = offline.rejection(p, store_dir)
            else:
                prepared.append(p)
        record_rejected(store_dir, version.version, rejected, started_at, events)
        if not prepared:  # every view refused: the file stays untouched
            return [], rejected
        names = [p.view.name for p in prepared]
        with ingestion_runs(con, project, version.version, names, events) as runs:
            results = []
            for p in prepared:
                result = offline.write(p, version.version, store_dir, progress)
                runs.succeeded(result)
                results.append(replace(result, run_id=runs.ids[result.view]))
        return results, rejected

    def get_training_set(
        self,
        entity_df: Any,
        features: Sequence[str] | str,
        full_feature_names: bool = False,
        event_timestamp_column: str | None = None,
    ) -> TrainingSet | SparkTrainingSet:
        """Point-in-time correct feature values for each row of ``entity_df``.

        ``entity_df`` is a pandas DataFrame, a pyarrow Table, a Parquet path or a SQL query
        over the store; ``features`` is a list of ``view:feature`` or a feature service name.
        """
        version, snapshot = self._read(None)
        return build_training_set(
            self.config,
            snapshot,
            version.version,
            entity_df,
            features,
            full_feature_names,
            event_timestamp_column,
            TrainingSetRecorder(self.config.store_dir, self._lineage_events()),
        )

    def reproduce_training_set(
        self, training_set: str, out: str | os.PathLike[str], force: bool = False
    ) -> ReproduceResult:
        """Rebuild a recorded training set into ``out`` and compare its fingerprint with the original.

        Refuses (SourceError naming the file) if a source changed since, unless ``force``.
        """
        self.output_guard().check(out)  # the recorded version's sources are checked when writing
        record = load_record(self.config.store_dir, training_set)
        snapshot = self._read(int(record["manifest"]["registry_version"]))[1]
        return reproduce(self.config, snapshot, training_set, Path(out), force)

    def output_guard(self) -> OutputGuard:
        """Checks a path to write for the user: not in the store's folder, not over an applied source."""
        snapshot = self._latest_or_none()[1]
        sources = tuple(snapshot.sources.values()) if snapshot is not None else ()
        return OutputGuard(self.config.store_dir, self.config.repo, sources)

    def lineage(self, name: str) -> dict[str, Any]:
        """The lineage graph around ``name`` (view, ``view:feature``, service, training set id, run).

        ``{"root": id, "nodes": [...], "edges": [{"from", "to", "relation"}]}``, edges pointing
        downstream: source files -> runs -> views -> features -> services and training sets.
        """
        return lineage_graph(self.config, self._latest_or_none()[1] or Snapshot(), name)

    def training_sets(self) -> list[dict[str, Any]]:
        """Every recorded training set: id, manifest, output path and fingerprint, oldest first."""
        return list_records(self.config.store_dir)

    def drift(
        self,
        target: str,
        baseline: str,
        current: str = "latest",
        psi_threshold: float | None = None,
        p_value_threshold: float | None = None,
    ) -> DriftReport:
        """How far each feature of ``target`` (a view or service) drifted from ``baseline`` to ``current``.

        ``baseline`` and ``current`` are ingestion runs (``ingest-N``), training set ids or
        ``latest``; thresholds default to the config's ``[monitoring]``. See featurestore.monitoring.drift.
        """
        thresholds = Thresholds(
            self.config.psi_threshold if psi_threshold is None else psi_threshold,
            self.config.p_value_threshold if p_value_threshold is None else p_value_threshold,
        )
        return check_drift(self.config, self._read(None)[1], target, baseline, current, thresholds)

    def validate(
        self, views: Sequence[str] | None = None, progress: Progress | None = None
    ) -> ValidationReport:
        """Check every source file of the repo's views against their declarations; writes nothing."""
        snapshot = self.load_definitions()
        report = ValidationReport()
        spark = self.config.spark_engine
        access = source_files_for(spark)
        on_spark = None
        if spark is not None:  # a remote file is read by Spark's tasks
            from featurestore.offline.spark.ingest import validator

            on_spark = validator(spark)
        for view in self._select_views(snapshot, views):
            view_report = ViewReport(view.name, view.on_invalid)
            files = source_files(view, self.config.repo, access, self.config.store_dir)
            for i, file in enumerate(files):
                if progress:
                    progress(f"{view.name}: validating {PurePosixPath(file.path).name}", i, len(files))
                try:
                    check = on_spark if file.remote else None
                    view_report.files.append(check_file(view, file.path, access, check))
                except SourceError as e:  # one bad file is reported, the others still checked
                    view_report.files.append(FileReport(file.path, 0, 0, error=e.message))
            report.views.append(view_report)
        return report

    # -- online store --------------------------------------------------------------------

    def materialize(
        self,
        start: datetime | None = None,
        end: datetime | None = None,
        views: Sequence[str] | None = None,
        progress: Progress | None = None,
        incremental: bool = False,
        if_idle: bool = False,
        on_wait: Callable[[str], None] | None = None,
    ) -> MaterializeResult:
        """Ingest sources, then write the newest value per entity in ``[start, end)`` to Redis.

        One run at a time per store: this one waits for a running ingestion or materialization
        for as long as it takes (``on_wait`` is told whom it waits for), or with ``if_idle``
        raises RunInProgressError instead.
        """
        with exclusive_run(self.config.duckdb_path, "a materialization", if_idle, on_wait) as lock:
            return self._materialize(start, end, views, progress, incremental, lock)

    def _materialize(
        self,
        start: datetime | None,
        end: datetime | None,
        views: Sequence[str] | None,
        progress: Progress | None,
        incremental: bool,
        lock: RunLock,
    ) -> MaterializeResult:
        # an unreachable Redis fails before a long ingest
        online_store = OnlineStore.connect(self.config.redis_url, self.config.project)
        project = self.config.project
        # One write connection for ingestion, the registry and the run's record: opening and
        # closing the file costs more than this bookkeeping. It is released while Redis is written.
        with online_store, connection(self.config.duckdb_path) as con:
            version, snapshot = RegistryState(con, project).snapshot()
            ingested, failed = self._ingest(con, version, self._select_views(snapshot, views), progress)
            # A view that failed is left out alone: the run materializes the others.
            chosen = [v for v in self._select_views(snapshot, views) if v.name not in failed]
            run = online_materialize.start_run(
                con, self.config, chosen, version.version, start, end, incremental, store=online_store
            )
            why = {view: e.message for view, e in failed.items()}
            runs = MaterializationRunState(con, project)
            runs.record_failed_views(run.run_id, why)
            lock.describe(f"materialization run {run.run_id}")
            online = [plan.view.name for plan in run.plans]
            # The ingestions that changed an online view's rows fed this run (offline views don't).
            fed = [r for r in ingested if r.changed and r.view in online]
            runs.link_ingestion(
                run.run_id,
                [r.run_id for r in fed if r.run_id is not None],
                sum(r.rows_rejected for r in fed),
            )
            RunSourceState(con, project).record(MATERIALIZE, run.run_id, online)
        events = self._lineage_events()
        result = online_materialize.write_run(
            self.config,
            run,
            progress,
            after=lambda con, run_id: emit_materialization(con, project, run_id, online, events),
        )
        result.ingestion = ingested
        if self.config.gc_after_materialize:
            self.gc()
        if failed:
            raise ViewsFailedError(failed, result)
        return result

    def materialize_incremental(
        self,
        end: datetime | None = None,
        views: Sequence[str] | None = None,
        progress: Progress | None = None,
        if_idle: bool = False,
    ) -> MaterializeResult:
        """Materialize what is new since each view's watermark (late-arriving files included)."""
        return self.materialize(None, end, views, progress, incremental=True, if_idle=if_idle)

    def get_online_features(
        self,
        features: Sequence[str] | str,
        entities: Mapping[str, Sequence[Any]],
        full_feature_names: bool = False,
        with_run_ids: bool = False,
        request_data: Mapping[str, Sequence[Any]] | None = None,
    ) -> OnlineResult:
        """The latest values of ``features`` for the entities (join key -> list of values).

        On-demand features are computed from them and ``request_data`` (request field -> one
        value per entity), in this thread."""
        if self._online_store is None:
            self._online_store = OnlineStore.connect(self.config.redis_url, self.config.project, check=False)
        found = lookup(
            self.online_registry(), self._online_store, features, entities, full_feature_names, request_data
        )
        return found.computed(found.result(with_run_ids=with_run_ids))

    def push(self, view: str, rows: Any) -> PushResult:
        """Write ``rows`` (a pyarrow Table or pandas DataFrame) to ``view``: validated, appended
        durably to its push log offline, then written online newer-wins (online/push.py).

        Takes no lock: pushes go on while an ingestion or materialization runs. If Redis fails
        the rows are still durable offline (OnlineStoreUnavailable says so) and the next
        materialization writes them online.
        """
        if self._pusher is None:
            self._pusher = Pusher(self.config, self.online_registry)
        return self._pusher.push(view, rows)

    def online_registry(self) -> OnlineRegistry:
        """The latest registry version prepared for lookups (re-checked every few seconds)."""
        if self._registry is None:
            self._registry = RegistryHolder(
                self.config, DEFAULT_MAX_ENTITIES, self.REGISTRY_REFRESH, lazy_functions=True
            )
            return self._registry.current
        return self._registry.checked()

    # -- monitoring (online) ---------------------------------------------------------------

    def freshness(
        self, views: Sequence[str] | None = None, sample: int = 1000, now: datetime | None = None
    ) -> list[ViewFreshness]:
        """Per online view: newest materialized value and its age, ages of a sample of Redis values.

        Named views must be online; with ``views=None`` offline-only views are left out.
        """
        from featurestore.monitoring.freshness import freshness, require_online

        selected = self._select_views(self.registry(), views)
        if views is not None:
            require_online(selected)
        return freshness(self.config, selected, sample, now)

    def skew(
        self, log_dir: str | os.PathLike[str], features: Sequence[str] | str | None = None
    ) -> SkewReport:
        """Served values in a request log against the offline store at each request's time."""
        from featurestore.monitoring.skew import skew

        refs = self.get_feature_service(features).feature_refs() if isinstance(features, str) else features

        def training_set(entities: Any, wanted: list[str]) -> Any:
            with self.get_training_set(entities, wanted, True, "request_time") as ts:
                return ts.to_arrow()

        return skew(Path(log_dir), training_set, refs)

    # -- retention -----------------------------------------------------------------------

    def gc(self, keep_runs: int | None = None) -> GcResult:
        """Delete the run bookkeeping no recorded training set, served value or recent run needs.

        ``keep_runs`` (default: the config's) recent runs of each kind stay; see lineage/retention.py.
        """
        keep = self.config.keep_runs if keep_runs is None else keep_runs
        if keep < 1:
            raise InvalidRequestError(f"keep_runs {keep} must be at least 1")
        path, project = self.config.duckdb_path, self.config.project
        if not path.exists():
            return GcResult()
        with connection(path, read_only=True) as con:
            online = retention.needs_redis(con, project)
        served: set[int] = set()
        if online:  # read before taking the write lock, which a materialization waits for
            with OnlineStore.connect(self.config.redis_url, project) as online_store:
                served = online_store.served_run_ids()
        records = list_records(self.config.store_dir)
        with connection(path) as con:
            result = retention.collect(con, project, served, records, keep)
            if self.config.offline_engine == "spark" and OfflineStore(con, project).has_files():
                from featurestore.offline.spark.warehouse import prune

                result = replace(
                    result,
                    warehouse_folders_deleted=prune(con, project, self.config.spark.warehouse, records),
                )
        return result

    def close(self) -> None:
        if self._online_store is not None:
            self._online_store.close()
            self._online_store = None
        if self._pusher is not None:
            self._pusher.close()
            self._pusher = None

    # -- internals ---------------------------------------------------------------------

    def _read(self, version: int | None) -> tuple[Version, Snapshot]:
        if not self.config.duckdb_path.exists():
            raise NotAppliedError(
                f"nothing applied yet ({self.config.duckdb_path} does not exist): run 'featurestore apply'"
            )
        with connection(self.config.duckdb_path, read_only=True) as con:
            return RegistryState(con, self.config.project).snapshot(version)

    @staticmethod
    def _select_views(snapshot: Snapshot, views: Sequence[str] | None) -> list[FeatureView]:
        if views is None:
            return list(snapshot.views.values())
        return [snapshot.get("feature_view", name) for name in views]

    def _check_functions(self) -> Callable[[FeatureView], FeatureView]:
        """Gives an applied view its custom checks' functions from the repo's code (loaded once)."""
        return repo_check_functions(self.config.repo)

    def _lineage_events(self) -> LineageEvents:
        from featurestore.lineage.openlineage import LineageEvents  # loads the client only here

        return LineageEvents(self.config)

    def _latest_or_none(self) -> tuple[Version | None, Snapshot | None]:
        try:
            version, snapshot = self._read(None)
        except NotAppliedError:
            return None, None
        return version, snapshot

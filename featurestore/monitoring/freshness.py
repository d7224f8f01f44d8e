"""Online freshness: how old the newest materialized value of each online view is, and the values in Redis.

Two views of the same question. The run state in DuckDB says what materialization put in
Redis: the view's watermark (event times before it are materialized), the run that set it,
and so the newest event time below the watermark in the view's ingested table. A sample of
the view's keys in Redis says what is actually there to serve: the age of each sampled
value, read from its header. A view whose newest value is older than its TTL (or that was
never materialized) is stale: every lookup of it answers EXPIRED or NOT_FOUND. So is a view
whose values Redis lost (flushed, restarted without persistence): its marker is gone, or keys
known offline are missing from it (online/presence.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb

from featurestore.config import Config
from featurestore.definitions import FeatureView
from featurestore.errors import InvalidRequestError
from featurestore.offline.offline_store import OfflineStore
from featurestore.online import presence
from featurestore.online.codec import header_of
from featurestore.online.state import OnlineState, Watermark
from featurestore.online.store import OnlineStore
from featurestore.runs.materialization import MaterializationRunState
from featurestore.storage import connection

# Chooses the keys Redis must hold for a view (presence.known_keys's signature).
KnownKeys = Callable[[duckdb.DuckDBPyConnection, str, FeatureView, Watermark, datetime, int], list[str]]

DEFAULT_SAMPLE = 1000


@dataclass
class ViewFreshness:
    """The freshness of one online view at ``checked_at``."""

    view: str
    ttl: timedelta | None
    watermark: datetime | None  # None: never materialized (completely)
    run_id: int | None  # the run that set the watermark
    materialized_at: datetime | None  # when that run finished
    newest_event: datetime | None  # event time of the newest materialized value
    checked_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    sampled: int = 0  # keys of the view read from Redis
    sample_ages: list[float] = field(default_factory=list)  # seconds, sorted
    sample_expired: int = 0  # sampled values older than the TTL (served as EXPIRED)
    lost: str | None = None  # why Redis no longer holds the view's values (None: it does, or not checked)
    known_checked: int = 0  # keys known offline looked for in Redis
    known_missing: int = 0  # of them, missing

    @property
    def newest_age(self) -> timedelta | None:
        return None if self.newest_event is None else self.checked_at - self.newest_event

    def is_stale(self, now: datetime | None = None) -> bool:
        return self.reason(now) is not None

    @property
    def stale(self) -> bool:
        return self.is_stale()

    def reason(self, now: datetime | None = None) -> str | None:
        """Why the view is stale, or None if it is fresh."""
        if self.watermark is None:
            return "never materialized"
        if self.lost is not None:
            return self.lost + ": run 'featurestore materialize --incremental' to rewrite it"
        if self.newest_event is None:
            return "nothing materialized: no rows before the watermark"
        age = (now or self.checked_at) - self.newest_event
        if self.ttl is not None and age > self.ttl:
            return f"newest value is {_human(age)} old, TTL {_human(self.ttl)}"
        return None

    def sample_quantile(self, q: float) -> float | None:
        if not self.sample_ages:
            return None
        return self.sample_ages[min(len(self.sample_ages) - 1, int(q * len(self.sample_ages)))]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        del out["sample_ages"]
        for key in ("watermark", "materialized_at", "newest_event", "checked_at"):
            out[key] = None if out[key] is None else out[key].isoformat()
        out["ttl_seconds"] = None if self.ttl is None else self.ttl.total_seconds()
        del out["ttl"]
        age = self.newest_age
        out["newest_age_seconds"] = None if age is None else age.total_seconds()
        out["sample_age_seconds"] = {
            "p50": self.sample_quantile(0.5),
            "p90": self.sample_quantile(0.9),
            "max": self.sample_ages[-1] if self.sample_ages else None,
        }
        out["stale"] = self.is_stale()
        out["reason"] = self.reason()
        return out


def online_state(
    con: duckdb.DuckDBPyConnection, project: str, views: list[FeatureView], now: datetime | None = None
) -> list[ViewFreshness]:
    """Each online view's watermark, the run behind it and its newest materialized event time."""
    now = now or datetime.now(UTC)
    out = []
    online = OnlineState(con, project)
    runs, offline = MaterializationRunState(con, project), OfflineStore(con, project)
    for view in views:
        if not view.online:
            continue
        state = ViewFreshness(view.name, view.ttl, None, None, None, None, now)
        mark = online.watermark(view.name)
        if mark is not None:
            state.watermark, state.run_id = mark.watermark, int(mark.run_id)
            state.materialized_at = runs.finished_at(state.run_id)
            state.newest_event = offline.newest_event_before(view.name, state.watermark)
        out.append(state)
    return out


@dataclass(frozen=True)
class Run:
    run_id: int
    status: str
    started_at: datetime
    finished_at: datetime | None
    rows_read: int | None
    entities_written: int | None


def recent_runs(
    con: duckdb.DuckDBPyConnection, project: str, limit: int = 10
) -> tuple[list[Run], dict[str, tuple[int, int, int, float]]]:
    """The latest materialization runs, and per status (runs, rows read, entities written, seconds)."""
    runs = MaterializationRunState(con, project)
    latest = [
        Run(r.run_id, r.status, r.started_at, r.finished_at, r.rows_read, r.entities_written)
        for r in runs.latest(limit)
    ]
    totals = {s: (t.runs, t.rows_read, t.entities_written, t.seconds) for s, t in runs.totals().items()}
    return latest, totals


def check_presence(
    con: duckdb.DuckDBPyConnection,
    store: OnlineStore,
    views: list[FeatureView],
    states: list[ViewFreshness],
    sample: int,
    known_keys: KnownKeys | None = None,
) -> None:
    """Set ``lost`` on each materialized view Redis no longer holds: by marker, then ``sample`` known
    keys (chosen by ``known_keys``, default ``presence.known_keys``: a fresh sample each time)."""
    marked = [s for s in states if s.watermark is not None]
    project = store.project
    lost = store.unmarked([s.view for s in marked], OnlineState(con, project).epoch())
    by_name = {v.name: v for v in views}
    now = datetime.now(UTC)  # Redis expires keys by the clock, whatever time the check judges at
    for s in marked:
        s.lost = lost.get(s.view)
        mark = OnlineState(con, project).watermark(s.view)
        if s.lost is not None or mark is None or sample <= 0:
            continue
        view = by_name[s.view]
        keys = (known_keys or presence.known_keys)(con, project, view, mark, now, sample)
        s.known_checked, s.known_missing = len(keys), store.missing(keys) if keys else 0
        if s.known_missing:
            s.lost = presence.partial_loss_reason(s.known_checked, s.known_missing)


def sample_redis(
    store: OnlineStore, states: list[ViewFreshness], sample: int, examine: int | None = None
) -> None:
    """Read up to ``sample`` values of each view from Redis and record their ages; with
    ``examine``, among about that many keys per view (bounded time, fewer values of a small view)."""
    for state in states:
        now_us = state.checked_at.timestamp() * 1e6
        ages = []
        for value in store.sample(state.view, sample, examine):
            event_us, _, _ = header_of(value)
            ages.append(max(0.0, (now_us - event_us) / 1e6))
        ages.sort()
        state.sampled = len(ages)
        state.sample_ages = ages
        if state.ttl is not None:
            ttl = state.ttl.total_seconds()
            state.sample_expired = sum(1 for a in ages if a > ttl)


def _human(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if abs(seconds) >= size:
            return f"{seconds / size:.1f}{unit}".replace(".0" + unit, unit)
    return f"{seconds:.0f}s"


def offline_only(views: list[FeatureView]) -> list[str]:
    """The views among ``views`` that are not materialized (``online=False``): no freshness."""
    return [v.name for v in views if not v.online]


def require_online(views: list[FeatureView]) -> None:
    """Refuse views named for a freshness check that have none (rather than leave them out)."""
    offline = offline_only(views)
    if offline:
        names = ", ".join(repr(v) for v in offline)
        raise InvalidRequestError(
            f"feature view {names} is offline only (online=False): it is never materialized, "
            "so it has no online freshness"
            if len(offline) == 1
            else f"feature views {names} are offline only (online=False): they are never materialized, "
            "so they have no online freshness"
        )


def freshness(
    config: Config, views: list[FeatureView], sample: int = DEFAULT_SAMPLE, now: datetime | None = None
) -> list[ViewFreshness]:
    """The freshness of each online view: run state from DuckDB, a sample of values from Redis.

    Offline-only views among ``views`` have no freshness and are left out (``offline_only``).
    """
    with connection(config.duckdb_path, read_only=True) as con:
        states = online_state(con, config.project, views, now)
        if not states:
            return states
        with OnlineStore.connect(config.redis_url, config.project) as store:
            check_presence(con, store, views, states, sample)
            if sample > 0:
                sample_redis(store, states, sample)
    return states

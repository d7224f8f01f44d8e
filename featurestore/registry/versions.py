"""The registry's tables in DuckDB: every applied version, kept and readable."""

from __future__ import annotations

import getpass
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb

from featurestore.definitions import Field
from featurestore.errors import ConcurrentApplyError, NotAppliedError
from featurestore.registry.snapshot import KIND_ORDER, Snapshot
from featurestore.storage import ProjectTables, fetch_one


@dataclass(frozen=True)
class Version:
    """One applied registry version."""

    version: int
    content_hash: str
    created_at: datetime
    author: str
    summary: str


@dataclass(frozen=True)
class RegistryState(ProjectTables):
    """Owns ``registry_versions`` and ``registry_objects``: every applied version, kept and readable."""

    def ensure_tables(self) -> None:
        schema, con = self.schema, self.con
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        con.execute(
            f"""CREATE TABLE IF NOT EXISTS {schema}.registry_versions (
                version INTEGER PRIMARY KEY,
                content_hash VARCHAR NOT NULL,
                created_at TIMESTAMPTZ NOT NULL,
                author VARCHAR NOT NULL,
                summary VARCHAR NOT NULL)"""
        )
        con.execute(
            f"""CREATE TABLE IF NOT EXISTS {schema}.registry_objects (
                version INTEGER NOT NULL,
                kind VARCHAR NOT NULL,
                name VARCHAR NOT NULL,
                fingerprint VARCHAR NOT NULL,
                spec JSON NOT NULL,
                PRIMARY KEY (version, kind, name))"""
        )


    def has_tables(self) -> bool:
        row = fetch_one(
            self.con,
            "SELECT count(*) FROM information_schema.tables "
            "WHERE table_schema = ? AND table_name = 'registry_versions'",
            [self.project],
        )
        return bool(row and row[0])


    def versions(self) -> list[Version]:
        """Every applied version, oldest first."""
        if not self.has_tables():
            return []
        rows = self.con.execute(
            f"SELECT version, content_hash, created_at, author, summary "
            f"FROM {self.schema}.registry_versions ORDER BY version"
        ).fetchall()
        return [Version(*row) for row in rows]


    def latest(self) -> Version | None:
        """The latest applied version, if any."""
        versions = self.versions()
        return versions[-1] if versions else None


    def snapshot(self, version: int | None = None) -> tuple[Version, Snapshot]:
        """The definitions of ``version`` (default: the latest)."""
        versions = {v.version: v for v in self.versions()}
        if not versions:
            raise NotAppliedError(
                f"nothing applied yet in project {self.project!r}: run 'featurestore apply'"
            )
        number = max(versions) if version is None else version
        if number not in versions:
            raise NotAppliedError(f"registry version {version} does not exist (latest is {max(versions)})")
        return versions[number], self.definitions(number)

    def definitions(self, number: int) -> Snapshot:
        """The definitions of version ``number``, which the caller knows exists."""
        rows = self.con.execute(
            f"SELECT kind, name, spec FROM {self.schema}.registry_objects WHERE version = ?",
            [number],
        ).fetchall()
        specs: dict[str, dict[str, dict[str, object]]] = {k: {} for k in KIND_ORDER}
        for kind, name, spec in rows:
            specs[kind][name] = json.loads(spec)
        return Snapshot.from_specs(specs)


    def snapshots(self) -> dict[int, Snapshot]:
        """Every applied version's definitions, oldest first, in one query."""
        if not self.has_tables():
            return {}
        rows = self.con.execute(
            f"SELECT version, kind, name, spec FROM {self.schema}.registry_objects ORDER BY version"
        ).fetchall()
        specs: dict[int, dict[str, dict[str, dict[str, object]]]] = {
            v.version: {k: {} for k in KIND_ORDER} for v in self.versions()
        }
        for number, kind, name, spec in rows:
            specs[number][kind][name] = json.loads(spec)
        return {number: Snapshot.from_specs(s) for number, s in specs.items()}


    def view_feature_lists(self) -> dict[str, list[list[Field]]]:
        """Every distinct feature list each feature view has had, over all recorded versions.

        Values in the online store carry the layout they were written with; a reader serving a
        newer version decodes older values with these (one row per view definition, not per version).
        """
        if not self.has_tables():
            return {}
        rows = self.con.execute(
            f"SELECT DISTINCT name, fingerprint, spec FROM {self.schema}.registry_objects "
            "WHERE kind = 'feature_view' ORDER BY name, fingerprint"
        ).fetchall()
        out: dict[str, list[list[Field]]] = {}
        seen: set[tuple[str, str]] = set()
        for name, _, spec in rows:
            features = json.loads(spec)["features"]
            key = (name, json.dumps([(f["name"], f["dtype"]) for f in features]))
            if key not in seen:
                seen.add(key)
                out.setdefault(name, []).append([Field.from_spec(f) for f in features])
        return out


    def write(self, snapshot: Snapshot, expected_parent: int | None, summary: str) -> Version:
        """Record ``snapshot`` as the next version, in one transaction.

        ``expected_parent`` is the version the plan was made against; if another apply got
        there first, nothing is written and ConcurrentApplyError says so.
        """
        self.ensure_tables()
        schema, con = self.schema, self.con
        con.execute("BEGIN TRANSACTION")
        try:
            row = fetch_one(con, f"SELECT max(version) FROM {schema}.registry_versions")
            current = row[0] if row else None
            if current != expected_parent:
                raise ConcurrentApplyError(
                    f"the registry moved from version {expected_parent} to {current} while this apply "
                    "ran; run 'featurestore plan' again"
                )
            number = (current or 0) + 1
            version = Version(number, snapshot.content_hash, datetime.now(UTC), _author(), summary)
            con.execute(
                f"INSERT INTO {schema}.registry_versions VALUES (?, ?, ?, ?, ?)",
                [version.version, version.content_hash, version.created_at, version.author, summary],
            )
            rows = [
                [number, kind, name, obj.fingerprint, json.dumps(obj.to_spec(), sort_keys=True)]
                for kind, objs in snapshot.by_kind().items()
                for name, obj in sorted(objs.items())
            ]
            if rows:
                con.executemany(f"INSERT INTO {schema}.registry_objects VALUES (?, ?, ?, ?, ?)", rows)
            con.execute("COMMIT")
        except (duckdb.TransactionException, duckdb.ConstraintException) as e:
            con.execute("ROLLBACK")
            raise ConcurrentApplyError(
                f"another apply recorded a version at the same time ({e}); run 'featurestore plan' again"
            ) from None
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return version


def check_unmoved(started: int | None, current: Version | None) -> None:
    """Refuse an apply that started from version ``started`` if another apply recorded one since."""
    now = current.version if current else None
    if now != started:
        was = "nothing applied" if started is None else f"version {started}"
        raise ConcurrentApplyError(
            f"another apply recorded registry version {now} while this one ran (it started from "
            f"{was}); nothing was written: run 'featurestore plan' to see the changes again"
        )



def _author() -> str:
    for var in ("FEATURESTORE_AUTHOR", "GIT_AUTHOR_NAME", "USER", "LOGNAME"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"

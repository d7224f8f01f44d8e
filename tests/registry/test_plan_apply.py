"""plan, apply and versions through FeatureStore, on real DuckDB files."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore import FeatureStore
from featurestore.config import load_config
from featurestore.errors import BreakingChangeError, ConcurrentApplyError, NotAppliedError, NotFoundError
from featurestore.registry import PRESENT, FieldChange
from featurestore.registry.versions import RegistryState
from featurestore.storage import connection
from tests.support.cli import FEATURESTORE, run_cli
from tests.support.repos import DRIVER_REPO, write_repo
from tests.support.repos import edit as edit_file
from tests.support.waiting import wait_for

CONV_RATE = 'Field("conv_rate", Float32)'


def edit(repo: Path, old: str, new: str, file: str = "drivers.py") -> None:
    edit_file(repo / file, old, new)


def version_numbers(fs: FeatureStore) -> list[int]:
    return [v.version for v in fs.versions()]


@pytest.fixture
def driver_repo(make_repo) -> Path:  # type: ignore[no-untyped-def]
    return make_repo({"drivers.py": DRIVER_REPO})  # type: ignore[no-any-return]


# -- the first apply --------------------------------------------------------------------


def test_first_plan_adds_everything_and_changes_nothing(example_repo: Path) -> None:
    fs = FeatureStore(example_repo)
    plan = fs.plan()
    assert plan.base_version is None
    assert [(c.kind, c.name, c.action) for c in plan.changes] == [
        ("entity", "customer", "add"),
        ("entity", "driver", "add"),
        ("source", "customer_profile_source", "add"),
        ("source", "driver_stats_source", "add"),
        ("source", "trips_source", "add"),
        ("feature_view", "customer_profile", "add"),
        ("feature_view", "driver_stats", "add"),
        ("feature_view", "driver_trips", "add"),
        ("on_demand_view", "trip_fit", "add"),
        ("feature_service", "dispatch_model", "add"),
        ("feature_service", "pricing_model", "add"),
        ("feature_service", "trip_model", "add"),
    ]
    assert plan.summary() == "12 to add"
    assert plan.breaking == []
    assert not fs.config.duckdb_path.exists()
    assert fs.versions() == []
    with pytest.raises(NotAppliedError, match="nothing applied yet"):
        fs.registry()


def test_apply_records_version_one(example_repo: Path) -> None:
    fs = FeatureStore(example_repo)
    planned = fs.plan()
    result = fs.apply()
    assert result.version is not None
    assert result.version.version == 1
    assert result.version.content_hash == planned.content_hash
    assert result.version.summary == "12 to add"
    assert result.plan.changes == planned.changes
    assert fs.config.duckdb_path == example_repo.resolve() / ".featurestore" / "store.duckdb"
    assert fs.config.duckdb_path.is_file()
    (v1,) = fs.versions()
    assert v1 == result.version
    # The registry holds exactly what the repo compiles to, join key types filled in.
    applied = fs.registry()
    assert applied.specs() == fs.load_definitions().specs()
    assert applied.content_hash == v1.content_hash
    assert [(k.name, k.dtype.name) for k in applied.views["driver_stats"].join_keys] == [
        ("driver_id", "Int64")
    ]
    assert [(k.name, k.dtype.name) for k in applied.views["customer_profile"].join_keys] == [
        ("customer_id", "Int64")
    ]
    assert [c.name for c in applied.views["driver_stats"].feature("conv_rate").checks] == ["in_range"]
    assert fs.get_feature_service("trip_model").feature_refs()[:2] == [
        "driver_stats:conv_rate",
        "driver_stats:acc_rate",
    ]
    assert fs.describe("driver")["join_keys"] == ["driver_id"]


def test_reapply_of_unchanged_definitions_records_nothing(example_repo: Path) -> None:
    fs = FeatureStore(example_repo)
    fs.apply()
    again = fs.apply()
    assert again.version is None
    assert again.plan.is_empty
    assert again.plan.base_version == 1
    assert again.plan.summary() == "no changes"
    assert version_numbers(fs) == [1]
    assert fs.plan().is_empty


def test_reapply_with_a_custom_check_records_nothing(make_repo) -> None:  # type: ignore[no-untyped-def]
    repo = make_repo(
        {
            "drivers.py": "from pandera.pandas import Check\n"
            + DRIVER_REPO.replace(
                CONV_RATE,
                'Field("conv_rate", Float32, checks=[Check(lambda s: s >= 0, name="non_negative")])',
            )
        }
    )
    fs = FeatureStore(repo)
    assert fs.apply().version is not None
    assert fs.apply().version is None
    assert version_numbers(fs) == [1]


# -- changes ----------------------------------------------------------------------------


def test_description_change_is_a_field_by_field_change(example_repo: Path) -> None:
    fs = FeatureStore(example_repo)
    fs.apply()
    edit(example_repo, '"Share of offers accepted"', '"Share of offers the driver accepted"')
    plan = fs.plan()
    assert plan.base_version == 1
    (change,) = plan.changes
    assert (change.kind, change.name, change.action) == ("feature_view", "driver_stats", "change")
    assert change.fields == (
        FieldChange(
            "features.conv_rate.description",
            "Share of offers accepted",
            "Share of offers the driver accepted",
        ),
    )
    assert change.breaking == ()
    result = fs.apply()
    assert result.version is not None and result.version.version == 2
    assert result.version.summary == "1 to change"
    assert version_numbers(fs) == [1, 2]
    # Every version stays readable.
    assert fs.registry(version=1).views["driver_stats"].feature("conv_rate").description == (
        "Share of offers accepted"
    )
    assert fs.registry(version=2).views["driver_stats"].feature("conv_rate").description == (
        "Share of offers the driver accepted"
    )
    assert fs.registry().content_hash == result.version.content_hash
    assert fs.registry(version=1).content_hash == fs.versions()[0].content_hash
    with pytest.raises(NotAppliedError, match="registry version 3 does not exist"):
        fs.registry(version=3)


def test_several_versions_all_readable(driver_repo: Path) -> None:
    fs = FeatureStore(driver_repo)
    for days in (2, 3, 4, 5):
        edit(driver_repo, "ttl=timedelta(days=", f"ttl=timedelta(days={days}) or timedelta(days=")
        fs.apply()
    assert version_numbers(fs) == [1, 2, 3, 4]
    ttls = [fs.registry(version=n).views["driver_stats"].ttl.days for n in (1, 2, 3, 4)]  # type: ignore[union-attr]
    assert ttls == [2, 3, 4, 5]
    hashes = [v.content_hash for v in fs.versions()]
    assert len(set(hashes)) == 4
    assert [fs.registry(version=n).content_hash for n in (1, 2, 3, 4)] == hashes


def test_check_change_shows_the_statistic(example_repo: Path) -> None:
    fs = FeatureStore(example_repo)
    fs.apply()
    edit(
        example_repo,
        'Field("rating", Float32, checks=[Check.in_range(1, 5)])',
        'Field("rating", Float32, checks=[Check.in_range(1, 10)])',
    )
    (change,) = fs.plan().changes
    assert change.fields == (
        FieldChange("features.rating.checks.in_range.error", "in_range(1, 5)", "in_range(1, 10)"),
        FieldChange("features.rating.checks.in_range.statistics.max_value", 5, 10),
    )
    assert change.breaking == ()


def test_adding_a_feature_is_not_breaking(driver_repo: Path) -> None:
    fs = FeatureStore(driver_repo)
    fs.apply()
    edit(driver_repo, CONV_RATE, CONV_RATE + ', Field("rating", Float32)')
    plan = fs.plan()
    assert plan.breaking == []
    view_change, service_change = plan.changes
    assert view_change.name == "driver_stats"
    assert view_change.fields == (FieldChange("features.rating", None, PRESENT),)
    assert service_change.name == "driver_model"
    assert service_change.fields == (FieldChange("features.driver_stats:rating", None, PRESENT),)
    result = fs.apply()
    assert result.version is not None and result.version.version == 2


def test_removing_a_feature_of_an_online_view_is_breaking(example_repo: Path) -> None:
    fs = FeatureStore(example_repo)
    fs.apply()
    before = fs.versions()
    edit(example_repo, 'Field("rating", Float32, checks=[Check.in_range(1, 5)]),', "")
    plan = fs.plan()
    view_change = next(c for c in plan.changes if c.name == "driver_stats")
    # One line for the removed feature, not one per attribute below it.
    assert view_change.fields == (FieldChange("features.rating", PRESENT, None),)
    assert view_change.breaking == ("feature 'rating' removed while online",)
    assert "feature view 'driver_stats': feature 'rating' removed while online" in plan.breaking
    assert (
        "feature service 'trip_model': feature 'driver_stats:rating' removed from the service"
        in plan.breaking
    )

    with pytest.raises(BreakingChangeError) as e:
        fs.apply()
    assert "apply refused, the plan breaks consumers" in e.value.message
    assert "feature 'rating' removed while online" in e.value.message
    assert "--allow-breaking" in e.value.message
    assert fs.versions() == before
    assert "rating" in [f.name for f in fs.registry().views["driver_stats"].features]

    result = fs.apply(allow_breaking=True)
    assert result.version is not None and result.version.version == 2
    assert "rating" not in [f.name for f in fs.registry().views["driver_stats"].features]
    assert "rating" in [f.name for f in fs.registry(version=1).views["driver_stats"].features]


def _float64_copy(repo: Path) -> None:
    table = pq.read_table(repo / "data" / "driver_stats")
    index = table.schema.get_field_index("conv_rate")
    table = table.set_column(index, "conv_rate", table.column("conv_rate").cast(pa.float64()))
    (repo / "data" / "driver_stats_f64").mkdir()
    pq.write_table(table, repo / "data" / "driver_stats_f64" / "part-00000.parquet")


def test_dtype_change_of_an_online_view_is_breaking(driver_repo: Path) -> None:
    fs = FeatureStore(driver_repo)
    fs.apply()
    before = fs.versions()
    _float64_copy(driver_repo)
    edit(driver_repo, 'path="data/driver_stats"', 'path="data/driver_stats_f64"')
    edit(driver_repo, CONV_RATE, 'Field("conv_rate", Float64)')
    edit(driver_repo, "Float32, Int32", "Float32, Float64, Int32")
    plan = fs.plan()
    view_change = next(c for c in plan.changes if c.kind == "feature_view")
    assert view_change.fields == (FieldChange("features.conv_rate.dtype", "Float32", "Float64"),)
    assert view_change.breaking == ("feature 'conv_rate' changes dtype Float32 -> Float64 while online",)
    source_change = next(c for c in plan.changes if c.kind == "source")
    assert source_change.fields == (FieldChange("path", "data/driver_stats", "data/driver_stats_f64"),)
    assert source_change.breaking == ()

    with pytest.raises(BreakingChangeError, match="changes dtype Float32 -> Float64"):
        fs.apply()
    assert fs.versions() == before
    assert fs.registry().views["driver_stats"].feature("conv_rate").dtype.name == "Float32"

    assert fs.apply(allow_breaking=True).version is not None
    assert fs.registry().views["driver_stats"].feature("conv_rate").dtype.name == "Float64"


def test_dtype_change_of_an_offline_view_nobody_serves_is_not_breaking(make_repo) -> None:  # type: ignore[no-untyped-def]
    offline = DRIVER_REPO.replace("ttl=timedelta(days=2),", "ttl=timedelta(days=2), online=False,")
    offline = offline.replace('service = FeatureService("driver_model", features=[driver_stats])', "")
    repo = make_repo({"drivers.py": offline})
    fs = FeatureStore(repo)
    fs.apply()
    _float64_copy(repo)
    edit(repo, 'path="data/driver_stats"', 'path="data/driver_stats_f64"')
    edit(repo, CONV_RATE, 'Field("conv_rate", Float64)')
    edit(repo, "Float32, Int32", "Float32, Float64, Int32")
    edit(repo, 'Field("acc_rate", Float32),', "")
    plan = fs.plan()
    assert plan.breaking == []
    assert fs.apply().version is not None
    assert version_numbers(fs) == [1, 2]


def test_removing_a_service_is_breaking(example_repo: Path) -> None:
    fs = FeatureStore(example_repo)
    fs.apply()
    (example_repo / "services.py").unlink()
    plan = fs.plan()
    assert [(c.kind, c.name, c.action) for c in plan.changes] == [
        ("feature_service", "dispatch_model", "remove"),
        ("feature_service", "trip_model", "remove"),
    ]
    assert plan.breaking == [
        f"feature service '{name}': removed: clients that request it will fail"
        for name in ("dispatch_model", "trip_model")
    ]
    with pytest.raises(BreakingChangeError, match="trip_model"):
        fs.apply()
    assert version_numbers(fs) == [1]
    assert "trip_model" in fs.registry().services
    assert fs.apply(allow_breaking=True).version is not None
    assert "trip_model" not in fs.registry().services
    assert "trip_model" in fs.registry(version=1).services


def test_removing_a_served_view_is_breaking(example_repo: Path) -> None:
    fs = FeatureStore(example_repo)
    fs.apply()
    (example_repo / "customers.py").unlink()
    edit(example_repo, "from customers import customer_profile\n", "", "services.py")
    edit(example_repo, "[driver_stats, customer_profile]", "[driver_stats]", "services.py")
    plan = fs.plan()
    assert {(c.kind, c.name, c.action) for c in plan.changes} == {
        ("entity", "customer", "remove"),
        ("source", "customer_profile_source", "remove"),
        ("feature_view", "customer_profile", "remove"),
        ("feature_service", "trip_model", "change"),
    }
    assert "feature view 'customer_profile': removed while online" in plan.breaking
    with pytest.raises(BreakingChangeError):
        fs.apply()
    assert version_numbers(fs) == [1]


def test_plan_changes_nothing(example_repo: Path) -> None:
    fs = FeatureStore(example_repo)
    fs.apply()
    edit(example_repo, 'owner="growth-ml@example.com"', 'owner="someone@example.com"', "customers.py")
    for _ in range(2):
        (change,) = fs.plan().changes
        assert change.fields == (FieldChange("owner", "growth-ml@example.com", "someone@example.com"),)
    assert version_numbers(fs) == [1]
    assert fs.registry().views["customer_profile"].owner == "growth-ml@example.com"


# -- concurrency ------------------------------------------------------------------------


def test_write_version_with_a_stale_parent_is_refused(driver_repo: Path) -> None:
    fs = FeatureStore(driver_repo)
    fs.apply()
    edit(driver_repo, CONV_RATE, CONV_RATE + ', Field("rating", Float32)')
    snapshot = fs.load_definitions()
    project, path = fs.config.project, fs.config.duckdb_path
    with connection(path) as con:
        for stale in (None, 0, 2):
            with pytest.raises(ConcurrentApplyError) as e:
                RegistryState(con, project).write(snapshot, stale, "stale")
            assert f"the registry moved from version {stale} to 1" in e.value.message
            assert "featurestore plan" in e.value.message
        assert [v.version for v in RegistryState(con, project).versions()] == [1]
        # The transaction was rolled back: the connection still works and a fresh parent succeeds.
        written = RegistryState(con, project).write(snapshot, 1, "fresh")
    assert written.version == 2
    assert version_numbers(fs) == [1, 2]
    assert fs.registry().content_hash == snapshot.content_hash
    assert fs.registry(version=1).content_hash != snapshot.content_hash


# Imported first (sorted before drivers.py): announces that the apply has read the version it
# starts from and is compiling, then waits until the test lets it go on.
GATE = """
import os, pathlib, time
gate = os.environ.get("TEST_APPLY_GATE")
if gate:
    pathlib.Path(gate + ".waiting").touch()
    deadline = time.monotonic() + 60
    while not pathlib.Path(gate).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
"""


def test_two_applies_at_once_one_wins_the_other_gets_a_clear_error(
    make_repo, tmp_path: Path, tiny_data: Path  # type: ignore[no-untyped-def]
) -> None:
    """Two repos with different definitions share one registry file; the second apply starts
    first, and the first apply records a version while the second is still compiling."""
    first = make_repo({"drivers.py": DRIVER_REPO})
    second = write_repo(
        tmp_path / "second",
        {
            "a_gate.py": GATE,
            "drivers.py": DRIVER_REPO.replace(CONV_RATE, CONV_RATE + ', Field("rating", Float32)'),
        },
        tiny_data,
    )
    shared = tmp_path / "shared" / "store.duckdb"
    env = {**os.environ, "FEATURESTORE_DUCKDB_PATH": str(shared), "COLUMNS": "200"}
    env.pop("FEATURESTORE_DEBUG", None)
    gate = tmp_path / "gate"
    late = subprocess.Popen(
        [FEATURESTORE, "apply", "--repo", str(second)],
        env={**env, "TEST_APPLY_GATE": str(gate)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        waiting = Path(str(gate) + ".waiting")
        wait_for(lambda: waiting.exists() or late.poll() is not None, 60, "the late apply at the gate")
        assert waiting.exists(), late.communicate()
        winner = subprocess.run(
            [FEATURESTORE, "apply", "--repo", str(first)],
            env=env, capture_output=True, text=True, timeout=120,
        )
    finally:
        gate.touch()
        out, err = late.communicate(timeout=120)
    assert winner.returncode == 0, winner.stderr
    assert "Applied registry version 1" in winner.stdout
    assert (late.returncode, out) == (1, ""), err
    assert err.splitlines() == [
        "error: another apply recorded registry version 1 while this one ran (it started from nothing "
        "applied); nothing was written: run 'featurestore plan' to see the changes again"
    ]

    shared_config = load_config(first, env={"FEATURESTORE_DUCKDB_PATH": str(shared)})
    fs = FeatureStore(first, config=shared_config)
    (v1,) = fs.versions()
    assert v1.content_hash == FeatureStore(first).load_definitions().content_hash
    assert fs.registry().specs() == FeatureStore(first).load_definitions().specs()

    # The loser plans again against the winner's version and applies on top of it.
    retry = subprocess.run(
        [FEATURESTORE, "apply", "--repo", str(second)], env=env, capture_output=True, text=True, timeout=120
    )
    assert retry.returncode == 0, retry.stderr
    assert "Plan against version 1: 2 to change" in retry.stdout
    assert [v.version for v in fs.versions()] == [1, 2]
    assert fs.registry(version=1).content_hash == v1.content_hash
    assert "rating" in [f.name for f in fs.registry().views["driver_stats"].features]


# -- what a version records, and reading the registry -----------------------------------


def test_a_version_records_its_author_and_time(driver_repo: Path) -> None:
    env = {"FEATURESTORE_AUTHOR": "alice", "GIT_AUTHOR_NAME": "", "USER": "nobody"}
    before = datetime.now(UTC)
    first = run_cli("apply", "--repo", str(driver_repo), env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines()[-1].endswith(" by alice.")
    edit(driver_repo, CONV_RATE, CONV_RATE + ', Field("rating", Float32)')
    # Without FEATURESTORE_AUTHOR the git author names it, then the login.
    bob = {**env, "FEATURESTORE_AUTHOR": "", "GIT_AUTHOR_NAME": "Bob B"}
    second = run_cli("apply", "--repo", str(driver_repo), env=bob)
    assert second.returncode == 0, second.stderr
    after = datetime.now(UTC)
    edit(driver_repo, 'Field("rating", Float32)', 'Field("rating", Float32, "stars")')
    carol = {"FEATURESTORE_AUTHOR": "", "GIT_AUTHOR_NAME": "", "USER": "carol"}
    third = run_cli("apply", "--repo", str(driver_repo), env=carol)
    assert third.returncode == 0, third.stderr

    v1, v2, v3 = FeatureStore(driver_repo).versions()
    assert (v1.author, v2.author, v3.author) == ("alice", "Bob B", "carol")
    assert v1.created_at.utcoffset() == timedelta(0)
    assert before <= v1.created_at <= v2.created_at <= after <= v3.created_at
    listing = run_cli("versions", "--repo", str(driver_repo))
    assert listing.returncode == 0, listing.stderr
    for v in (v1, v2, v3):
        row = next(line for line in listing.stdout.splitlines() if v.content_hash in line)
        assert v.author in row
        assert f"{v.created_at.astimezone(UTC):%Y-%m-%d %H:%M:%S}" in row


def test_list_and_get_each_kind(example_repo: Path) -> None:
    fs = FeatureStore(example_repo)
    with pytest.raises(NotAppliedError, match="nothing applied yet"):
        fs.list_feature_views()
    fs.apply()
    compiled = fs.load_definitions()
    listed = {
        "entity": fs.list_entities(),
        "source": fs.list_sources(),
        "feature_view": fs.list_feature_views(),
        "on_demand_view": fs.list_on_demand_views(),
        "feature_service": fs.list_feature_services(),
    }
    getters = {
        "entity": fs.get_entity,
        "source": fs.get_source,
        "feature_view": fs.get_feature_view,
        "on_demand_view": fs.get_on_demand_view,
        "feature_service": fs.get_feature_service,
    }
    for kind, objs in compiled.by_kind().items():
        assert sorted(o.name for o in listed[kind]) == sorted(objs), kind
        for name, obj in objs.items():
            got = getters[kind](name)
            assert got.to_spec() == obj.to_spec() and got.fingerprint == obj.fingerprint
        with pytest.raises(NotFoundError, match="nope"):
            getters[kind]("nope")
    assert [type(o).__name__ for o in listed["feature_service"]] == ["FeatureService"] * 3
    assert sorted(o.name for o in listed["entity"]) == ["customer", "driver"]


def test_projects_sharing_one_duckdb_file_keep_apart(tmp_path: Path, tiny_data: Path) -> None:
    """The project names the DuckDB schema of everything a repo stores."""
    shared = {"FEATURESTORE_DUCKDB_PATH": str(tmp_path / "shared.duckdb")}
    stores = {}
    texts = {"alpha": DRIVER_REPO, "beta": DRIVER_REPO.replace('"driver_model"', '"beta_model"')}
    for project, text in texts.items():
        repo = write_repo(tmp_path / project, {"drivers.py": text}, tiny_data, project=project)
        stores[project] = FeatureStore(repo, config=load_config(repo, env=shared))
    alpha, beta = stores["alpha"], stores["beta"]
    alpha.apply()
    alpha.ingest()
    assert beta.versions() == []  # alpha's version is not beta's
    beta.apply()
    edit(alpha.config.repo, CONV_RATE, CONV_RATE + ', Field("rating", Float32)')
    alpha.apply()
    assert version_numbers(alpha) == [1, 2] and version_numbers(beta) == [1]
    assert list(alpha.registry().services) == ["driver_model"]
    assert list(beta.registry().services) == ["beta_model"]
    with connection(alpha.config.duckdb_path, read_only=True) as con:
        tables = con.execute(
            "SELECT table_schema, table_name FROM information_schema.tables ORDER BY ALL"
        ).fetchall()
    tables.remove(("main", "featurestore_schema"))  # the file's schema version, shared by its projects
    assert {schema for schema, _ in tables} == {"alpha", "beta"}
    assert {name for schema, name in tables if schema == "beta"} == {"registry_versions", "registry_objects"}
    assert {"registry_versions", "registry_objects"} < {name for schema, name in tables if schema == "alpha"}


def test_dtype_change_of_an_offline_view_a_service_uses_is_breaking(make_repo) -> None:  # type: ignore[no-untyped-def]
    repo = make_repo(
        {"drivers.py": DRIVER_REPO.replace("ttl=timedelta(days=2),", "ttl=timedelta(days=2), online=False,")}
    )
    fs = FeatureStore(repo)
    fs.apply()
    _float64_copy(repo)
    edit(repo, 'path="data/driver_stats"', 'path="data/driver_stats_f64"')
    edit(repo, CONV_RATE, 'Field("conv_rate", Float64)')
    edit(repo, "Float32, Int32", "Float32, Float64, Int32")
    plan = fs.plan()
    assert plan.breaking == [
        "feature view 'driver_stats': feature 'conv_rate' changes dtype Float32 -> Float64 while used by "
        "feature service 'driver_model'"
    ]
    with pytest.raises(BreakingChangeError, match="used by feature service 'driver_model'"):
        fs.apply()
    assert version_numbers(fs) == [1]
    assert fs.apply(allow_breaking=True).version is not None


def test_changing_an_entity_s_join_keys_is_breaking(make_repo) -> None:  # type: ignore[no-untyped-def]
    repo = make_repo({"drivers.py": DRIVER_REPO})
    fs = FeatureStore(repo)
    fs.apply()
    edit(repo, 'join_keys=["driver_id"]', 'join_keys=["driver_id", "avg_daily_trips"]')
    plan = fs.plan()
    assert "entity 'driver': join keys change: views keyed by it change their keys" in plan.breaking
    assert any(
        b.startswith("feature view 'driver_stats': join_keys change while online") for b in plan.breaking
    ), plan.breaking
    with pytest.raises(BreakingChangeError):
        fs.apply()
    assert version_numbers(fs) == [1]

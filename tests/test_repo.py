"""Loading a repo: import every file once, collect each definition once."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from featurestore import Entity, FeatureStore
from featurestore.errors import DefinitionError
from featurestore.repo import load_repo, python_files
from tests.support.repos import DRIVER_REPO


def test_example_repo_with_files_importing_each_other(example_repo: Path) -> None:
    contents = load_repo(example_repo)
    assert sorted(contents.entities) == ["customer", "driver"]
    assert sorted(contents.sources) == ["customer_profile_source", "driver_stats_source", "trips_source"]
    assert sorted(contents.views) == ["customer_profile", "driver_stats", "driver_trips"]
    assert sorted(contents.services) == ["dispatch_model", "pricing_model", "trip_model"]
    # services.py imported driver_stats from drivers.py: one object, defined in drivers.py.
    service = contents.services["trip_model"]
    assert service.features[0] is contents.views["driver_stats"]
    assert contents.views["driver_stats"].defined_in.startswith(str(example_repo / "drivers.py") + ":")
    assert service.defined_in.startswith(str(example_repo / "services.py") + ":")


def test_importing_file_sorted_before_the_imported_one(make_repo) -> None:  # type: ignore[no-untyped-def]
    repo = make_repo(
        {
            "a_services.py": """
            from z_views import driver_stats
            from featurestore import FeatureService
            model = FeatureService("model", features=[driver_stats[["conv_rate"]]])
        """,
            "z_views.py": DRIVER_REPO,
        }
    )
    contents = load_repo(repo)
    assert sorted(contents.views) == ["driver_stats"]
    assert sorted(contents.services) == ["driver_model", "model"]
    assert contents.services["model"].feature_refs() == ["driver_stats:conv_rate"]


def test_same_object_under_two_names_is_collected_once(make_repo) -> None:  # type: ignore[no-untyped-def]
    repo = make_repo({"drivers.py": DRIVER_REPO + "\nalias = driver_stats\nviews = [driver_stats]\n"})
    contents = load_repo(repo)
    assert list(contents.views) == ["driver_stats"]


def test_inline_source_and_entity_are_collected(make_repo) -> None:  # type: ignore[no-untyped-def]
    repo = make_repo(
        {
            "views.py": """
        from featurestore import Entity, FeatureView, Field, Float32, ParquetSource
        stats = FeatureView(
            "driver_stats",
            entities=[Entity("driver", join_keys=["driver_id"])],
            source=ParquetSource("inline_source", path="data/driver_stats",
                                 timestamp_field="event_timestamp"),
            schema=[Field("conv_rate", Float32)],
        )
    """
        }
    )
    contents = load_repo(repo)
    assert list(contents.sources) == ["inline_source"]
    assert list(contents.entities) == ["driver"]
    assert contents.sources["inline_source"] is contents.views["driver_stats"].source
    # And the inline objects compile and apply like any other.
    result = FeatureStore(repo).apply()
    assert result.version is not None
    assert [c.name for c in result.plan.changes] == ["driver", "inline_source", "driver_stats"]


def test_files_in_subfolders_are_loaded_and_hidden_ones_skipped(make_repo) -> None:  # type: ignore[no-untyped-def]
    repo = make_repo(
        {
            "features/__init__.py": "",
            "features/drivers.py": DRIVER_REPO,
            ".hidden/broken.py": "this is not python",
            "venv/pyvenv.cfg": "",
            "venv/lib/broken.py": "this is not python either",
            "__pycache__/broken.py": "nor this",
        }
    )
    assert [p.relative_to(repo).as_posix() for p in python_files(repo)] == [
        "features/__init__.py",
        "features/drivers.py",
    ]
    contents = load_repo(repo)
    assert list(contents.views) == ["driver_stats"]
    assert contents.views["driver_stats"].defined_in.startswith(str(repo / "features" / "drivers.py"))


def test_reloading_sees_edits_and_leaves_no_modules_behind(make_repo) -> None:  # type: ignore[no-untyped-def]
    repo = make_repo({"drivers.py": DRIVER_REPO})
    assert load_repo(repo).views["driver_stats"].ttl.days == 2  # type: ignore[union-attr]
    assert "drivers" not in sys.modules
    assert str(repo.resolve()) not in sys.path
    (repo / "drivers.py").write_text(DRIVER_REPO.replace("timedelta(days=2)", "timedelta(days=5)"))
    assert load_repo(repo).views["driver_stats"].ttl.days == 5  # type: ignore[union-attr]


def test_two_repos_with_the_same_module_names(make_repo, tmp_path: Path, tiny_data: Path) -> None:  # type: ignore[no-untyped-def]
    from tests.support.repos import write_repo

    first = make_repo({"drivers.py": DRIVER_REPO})
    second = write_repo(
        tmp_path / "second", {"drivers.py": DRIVER_REPO.replace('"driver_model"', '"other"')}, tiny_data
    )
    assert list(load_repo(first).services) == ["driver_model"]
    assert list(load_repo(second).services) == ["other"]
    assert list(load_repo(first).services) == ["driver_model"]


def test_non_definitions_are_ignored(make_repo) -> None:  # type: ignore[no-untyped-def]
    repo = make_repo(
        {
            "drivers.py": DRIVER_REPO,
            "util.py": "import math\nPI = math.pi\nnames = ['driver']\n",
        }
    )
    contents = load_repo(repo)
    kinds = ["entity", "feature_service", "feature_view", "on_demand_view", "source"]
    assert sorted(contents.by_kind()) == kinds
    assert [len(v) for v in contents.by_kind().values()] == [1, 1, 1, 0, 1]
    assert isinstance(contents.entities["driver"], Entity)


def test_definition_error_at_import_names_the_line(make_repo) -> None:  # type: ignore[no-untyped-def]
    repo = make_repo({"drivers.py": DRIVER_REPO.replace('Entity("driver"', 'Entity("driver-1"')})
    with pytest.raises(DefinitionError) as e:
        load_repo(repo)
    line = DRIVER_REPO.splitlines().index('driver = Entity("driver", join_keys=["driver_id"])') + 1
    assert e.value.problems == [
        f"drivers.py:{line}: entity name 'driver-1' is invalid: "
        "use letters, digits and _ (not starting with a digit)"
    ]

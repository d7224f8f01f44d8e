"""Bad definitions: every problem names the file and line, the object and what is wrong,
all problems are reported at once, and a refused apply changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from featurestore import FeatureStore
from featurestore.errors import DefinitionError
from tests.support.repos import DRIVER_REPO


def line_of(text: str, start: str) -> int:
    """1-based line number of the line of ``text`` that starts with ``start``."""
    (number,) = [i for i, line in enumerate(text.splitlines(), 1) if line.startswith(start)]
    return number


SOURCE_LINE = line_of(DRIVER_REPO, "source = ParquetSource(")
VIEW_LINE = line_of(DRIVER_REPO, "driver_stats = FeatureView(")
SERVICE_LINE = line_of(DRIVER_REPO, "service = FeatureService(")

OTHER_VIEW = """
from datetime import timedelta
from featurestore import Entity, FeatureView, Field, Float32, ParquetSource

driver = Entity("driver", join_keys=["driver_id"])
source = ParquetSource("driver_source", path="data/driver_stats",
                       timestamp_field="event_timestamp", created_timestamp_field="created")
stats = FeatureView("driver_stats", entities=[driver], source=source, ttl=timedelta(days=2),
                    schema=[Field("conv_rate", Float32)])
"""


def replaced(old: str, new: str, text: str = DRIVER_REPO) -> str:
    assert old in text
    return text.replace(old, new)


@pytest.fixture
def applied_repo(make_repo) -> Path:  # type: ignore[no-untyped-def]
    """A repo whose good definitions are applied as version 1."""
    repo: Path = make_repo({"drivers.py": DRIVER_REPO})
    assert FeatureStore(repo).apply().version is not None
    return repo


def refused(repo: Path, files: dict[str, str]) -> DefinitionError:
    """Write ``files`` into the applied repo; plan and apply must fail and change nothing."""
    fs = FeatureStore(repo)
    before = fs.versions()
    specs_before = fs.registry().specs()
    for name, text in files.items():
        (repo / name).write_text(text)
    with pytest.raises(DefinitionError) as planned:
        fs.plan()
    with pytest.raises(DefinitionError) as applied:
        fs.apply()
    assert applied.value.problems == planned.value.problems
    assert fs.versions() == before
    assert fs.registry().specs() == specs_before
    return applied.value


def test_duplicate_view_names_in_two_files(applied_repo: Path) -> None:
    error = refused(applied_repo, {"other.py": OTHER_VIEW})
    assert error.problems == [
        f"other.py:{line_of(OTHER_VIEW, 'stats = FeatureView(')}: duplicate feature view name "
        f"'driver_stats' (also at drivers.py:{VIEW_LINE})"
    ]


def test_duplicate_entity_names_with_different_keys(applied_repo: Path) -> None:
    other = 'from featurestore import Entity\ndriver = Entity("driver", join_keys=["driver_uuid"])\n'
    error = refused(applied_repo, {"other.py": other})
    assert error.problems == [
        f"other.py:2: duplicate entity name 'driver' (also at drivers.py:{line_of(DRIVER_REPO, 'driver = ')})"
    ]


def test_identical_definition_in_two_files_is_not_a_duplicate(applied_repo: Path) -> None:
    same_view = replaced(
        'schema=[Field("conv_rate", Float32)]',
        'schema=[Field("conv_rate", Float32), Field("acc_rate", Float32), Field("avg_daily_trips", Int32)]',
        OTHER_VIEW,
    )
    same_view = replaced("Float32, ParquetSource", "Float32, Int32, ParquetSource", same_view)
    (applied_repo / "other.py").write_text(same_view)
    fs = FeatureStore(applied_repo)
    assert fs.plan().is_empty
    assert fs.apply().version is None


def test_entity_name_that_is_not_declared(applied_repo: Path) -> None:
    error = refused(applied_repo, {"drivers.py": replaced("entities=[driver]", 'entities=["rider"]')})
    assert error.problems == [
        f"drivers.py:{VIEW_LINE}: feature view 'driver_stats': entity 'rider' is not declared"
    ]


def test_field_missing_from_the_source(applied_repo: Path) -> None:
    error = refused(
        applied_repo, {"drivers.py": replaced('Field("acc_rate", Float32)', 'Field("speed", Float32)')}
    )
    assert error.problems == [
        f"drivers.py:{VIEW_LINE}: feature view 'driver_stats': field 'speed' is not a column of "
        "'data/driver_stats'"
    ]


def test_field_with_another_type_than_the_column(applied_repo: Path) -> None:
    text = replaced('Field("conv_rate", Float32)', 'Field("conv_rate", Int64)')
    text = replaced("Float32, Int32,", "Float32, Int32, Int64,", text)
    error = refused(applied_repo, {"drivers.py": text})
    assert error.problems == [
        f"drivers.py:{VIEW_LINE}: feature view 'driver_stats': field 'conv_rate' is declared Int64 "
        "but 'data/driver_stats' has float"
    ]


def test_join_key_declared_with_another_type(applied_repo: Path) -> None:
    text = replaced(
        'schema=[Field("conv_rate", Float32)',
        'schema=[Field("driver_id", Int32), Field("conv_rate", Float32)',
    )
    error = refused(applied_repo, {"drivers.py": text})
    assert error.problems == [
        f"drivers.py:{VIEW_LINE}: feature view 'driver_stats': join key 'driver_id' is declared Int32 "
        "but the source has int64"
    ]


def test_timestamp_field_that_is_not_a_timestamp(applied_repo: Path) -> None:
    text = replaced('timestamp_field="event_timestamp"', 'timestamp_field="driver_id"')
    error = refused(applied_repo, {"drivers.py": text})
    assert error.problems == [
        f"drivers.py:{SOURCE_LINE}: source 'driver_source': timestamp_field 'driver_id' is int64 in "
        "'data/driver_stats', not a timestamp"
    ]


def test_timestamp_field_missing_from_the_source(applied_repo: Path) -> None:
    text = replaced('timestamp_field="event_timestamp"', 'timestamp_field="happened_at"')
    error = refused(applied_repo, {"drivers.py": text})
    assert error.problems == [
        f"drivers.py:{SOURCE_LINE}: source 'driver_source': timestamp column 'happened_at' is not in "
        "'data/driver_stats'"
    ]


def test_service_referencing_an_unknown_feature(applied_repo: Path) -> None:
    text = replaced("features=[driver_stats]", 'features=["driver_stats:speed", "trips:count"]')
    error = refused(applied_repo, {"drivers.py": text})
    assert error.problems == [
        f"drivers.py:{SERVICE_LINE}: feature service 'driver_model': feature view 'driver_stats' "
        "has no feature 'speed'",
        f"drivers.py:{SERVICE_LINE}: feature service 'driver_model': references unknown feature view "
        "'trips' (trips:count)",
    ]


def test_service_projecting_an_unknown_feature(applied_repo: Path) -> None:
    text = replaced("features=[driver_stats]", 'features=[driver_stats[["conv_rate", "speed"]]]')
    error = refused(applied_repo, {"drivers.py": text})
    assert error.problems == [
        f"drivers.py:{SERVICE_LINE}: feature service 'driver_model': feature view 'driver_stats' "
        "has no feature 'speed'"
    ]


def test_syntax_error(applied_repo: Path) -> None:
    text = DRIVER_REPO + "\ndef broken(:\n    pass\n"
    error = refused(applied_repo, {"drivers.py": text})
    (problem,) = error.problems
    assert problem.startswith(f"drivers.py:{len(DRIVER_REPO.splitlines()) + 2}: SyntaxError: ")


def test_syntax_error_in_a_file_another_file_imports_is_reported_once(example_repo: Path) -> None:
    assert FeatureStore(example_repo).apply().version is not None
    text = (example_repo / "drivers.py").read_text()
    error = refused(
        example_repo, {"drivers.py": replaced('Field("city", String),', 'Field("city", String),,', text)}
    )
    (problem,) = error.problems
    line = line_of(text, '        Field("city", String),')
    assert problem.startswith(f"drivers.py:{line}: SyntaxError: ")


def test_import_error(applied_repo: Path) -> None:
    error = refused(applied_repo, {"drivers.py": "import not_a_real_module_xyz\n" + DRIVER_REPO})
    assert error.problems == ["drivers.py:1: ModuleNotFoundError: No module named 'not_a_real_module_xyz'"]


def test_exception_raised_while_importing(applied_repo: Path) -> None:
    helper = "def ratio():\n    return 1 / 0\n"
    error = refused(
        applied_repo, {"helper.py": helper, "drivers.py": "import helper\nR = helper.ratio()\n" + DRIVER_REPO}
    )
    # The innermost line of the repo's own code: where the division happens.
    assert error.problems == [
        "helper.py:2: ZeroDivisionError: division by zero",
    ]


def test_invalid_definition_at_import_time(applied_repo: Path) -> None:
    text = replaced("ttl=timedelta(days=2)", "ttl=timedelta(days=-2)")
    error = refused(applied_repo, {"drivers.py": text})
    assert error.problems == [
        f"drivers.py:{VIEW_LINE}: feature view 'driver_stats': ttl must be a positive timedelta or None, "
        "got datetime.timedelta(days=-2)"
    ]


def test_source_path_matching_no_files(applied_repo: Path) -> None:
    text = replaced('path="data/driver_stats"', 'path="data/driver_stats_v2/*.parquet"')
    error = refused(applied_repo, {"drivers.py": text})
    assert error.problems == [
        f"drivers.py:{SOURCE_LINE}: source 'driver_source': path 'data/driver_stats_v2/*.parquet' "
        "matches no Parquet files"
    ]


def test_source_file_that_is_not_parquet(applied_repo: Path) -> None:
    (applied_repo / "data" / "not_parquet.parquet").write_text("hello")
    text = replaced('path="data/driver_stats"', 'path="data/not_parquet.parquet"')
    error = refused(applied_repo, {"drivers.py": text})
    (problem,) = error.problems
    assert problem.startswith(f"drivers.py:{SOURCE_LINE}: source 'driver_source': ")
    assert "not_parquet.parquet is not a readable Parquet file" in problem


def test_several_problems_are_reported_together(applied_repo: Path) -> None:
    text = replaced('Field("conv_rate", Float32)', 'Field("conv_rate", String)')
    text = replaced("Float32, Int32,", "Float32, Int32, String,", text)
    text = replaced('Field("acc_rate", Float32)', 'Field("speed", Float32)', text)
    text = replaced("features=[driver_stats]", 'features=[driver_stats, "customer_profile:balance"]', text)
    customers = """
from featurestore import Entity, FeatureView, Field, Float64, ParquetSource

customer = Entity("customer", join_keys=["customer_id"])
customer_profile = FeatureView(
    "customer_profile", entities=[customer],
    source=ParquetSource("customer_source", path="data/customers_nowhere",
                         timestamp_field="event_timestamp"),
    schema=[Field("current_balance", Float64)],
)
"""
    error = refused(applied_repo, {"drivers.py": text, "customers.py": customers})
    assert error.problems == [
        "customers.py:7: source 'customer_source': path 'data/customers_nowhere' matches no Parquet files",
        f"drivers.py:{VIEW_LINE}: feature view 'driver_stats': field 'conv_rate' is declared String "
        "but 'data/driver_stats' has float",
        f"drivers.py:{VIEW_LINE}: feature view 'driver_stats': field 'speed' is not a column of "
        "'data/driver_stats'",
        f"drivers.py:{SERVICE_LINE}: feature service 'driver_model': feature view 'customer_profile' "
        "has no feature 'balance'",
    ]
    assert error.message.startswith("4 problems in definitions: customers.py:7: ")


def test_several_broken_files_are_reported_together(applied_repo: Path) -> None:
    error = refused(
        applied_repo,
        {
            "a_broken.py": "x = (\n",
            "b_broken.py": "import not_a_real_module_xyz\n",
            "c_broken.py": 'from featurestore import Entity\nbad = Entity("bad name", ["id"])\n',
        },
    )
    assert [p.split(": ")[0] for p in error.problems] == ["a_broken.py:1", "b_broken.py:1", "c_broken.py:2"]
    assert "SyntaxError" in error.problems[0]
    assert "No module named 'not_a_real_module_xyz'" in error.problems[1]
    assert "entity name 'bad name' is invalid" in error.problems[2]


def test_failed_first_apply_creates_no_registry(make_repo) -> None:  # type: ignore[no-untyped-def]
    repo = make_repo({"drivers.py": replaced("entities=[driver]", 'entities=["rider"]')})
    fs = FeatureStore(repo)
    with pytest.raises(DefinitionError, match="entity 'rider' is not declared"):
        fs.apply()
    assert not fs.config.duckdb_path.exists()
    assert fs.versions() == []


def test_fixing_the_problem_applies(applied_repo: Path) -> None:
    refused(applied_repo, {"drivers.py": replaced('Field("acc_rate", Float32)', 'Field("speed", Float32)')})
    (applied_repo / "drivers.py").write_text(replaced('"driver_model"', '"driver_model_v2"'))
    result = FeatureStore(applied_repo).apply(allow_breaking=True)
    assert result.version is not None and result.version.version == 2

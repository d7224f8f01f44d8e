"""Read-only paths stay light: pandera (half of the CLI's start-up) loads only to validate."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.support.cli import run_cli


def test_training_sets_and_registry_reads_do_not_import_pandera(example_repo: Path) -> None:
    for command in ("apply", ("materialize", "--offline")):
        args = (command,) if isinstance(command, str) else command
        result = run_cli(*args, "--repo", str(example_repo))
        assert result.returncode == 0, result.stderr
    code = textwrap.dedent(
        f"""
        import sys
        from featurestore import FeatureStore
        store = FeatureStore({str(example_repo)!r})
        rows = store.get_training_set({str(example_repo / "data" / "entity_rows.parquet")!r}, "trip_model")
        print(rows.to_arrow().num_rows > 0)
        view = store.get_feature_view("driver_stats")
        checked = [f for f in view.features if len(f.checks)]
        print(bool(checked), "pandera" in sys.modules)
        # used, the checks are real pandera checks again, equal to their stored specs
        from pandera.pandas import Check
        from featurestore.definitions.field import check_spec
        print(all(isinstance(c, Check) for f in checked for c in f.checks))
        print(all([check_spec(c) for c in f.checks] == f.to_spec()["checks"] for f in checked))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True", "False", "True", "True"]


HEAVY = (
    "pandas", "pyarrow", "duckdb", "redis", "numpy", "grpc", "pandera", "openlineage", "fastapi", "pyspark"
)


def _loaded_after(code: str) -> list[str]:
    """The heavy packages a fresh interpreter holds after running ``code``."""
    probe = code + "\nimport sys\nprint('loaded:', *(m for m in HEAVY if m in sys.modules))\n"
    out = subprocess.run(
        [sys.executable, "-c", f"HEAVY = {HEAVY!r}\n{probe}"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()[-1].split()[1:]


def test_the_cli_and_the_package_start_without_heavy_imports() -> None:
    # `featurestore --help` and `import featurestore` must not pay for pyarrow, DuckDB, Redis,
    # pandas or OpenLineage: they load when a command uses them.
    assert _loaded_after("import featurestore") == []
    assert _loaded_after("import featurestore.cli") == []
    help_run = "from featurestore.cli import app\ntry:\n    app(['--help'])\nexcept SystemExit:\n    pass"
    assert _loaded_after(help_run) == []
    # A public name still loads its module on first use.
    assert _loaded_after("from featurestore import FeatureView") == ["pyarrow", "numpy"]


def test_runs_write_lineage_without_the_openlineage_client(example_repo: Path) -> None:
    # The events file is written by us in the client's format (tests/lineage); the client's
    # ~0.2 s of imports is for an HTTP backend only.
    code = textwrap.dedent(
        f"""
        from featurestore import FeatureStore
        store = FeatureStore({str(example_repo)!r})
        store.apply()
        store.ingest()
        entities = {str(example_repo / "data" / "entity_rows.parquet")!r}
        with store.get_training_set(entities, "trip_model") as ts:
            ts.to_arrow()
        """
    )
    loaded = _loaded_after(code)
    assert "duckdb" in loaded and "openlineage" not in loaded
    events = example_repo / ".featurestore" / "openlineage" / "events.jsonl"
    assert events.read_text().count("COMPLETE") >= 3


def test_online_lookups_load_the_repos_code_only_for_on_demand_features(
    example_repo: Path, redis_client: object
) -> None:
    # `featurestore get` of stored features must not import the repo's modules: its definitions
    # import pandera and pandas (~0.5 s of a ~1 s command). An on-demand feature loads them.
    for args in (("apply",), ("materialize",)):
        result = run_cli(*args, "--repo", str(example_repo))
        assert result.returncode == 0, result.stderr
    import pyarrow.parquet as pq

    driver = pq.read_table(example_repo / "data" / "entity_rows.parquet").column("driver_id")[0].as_py()

    def get(*args: str) -> list[str]:
        cli = ["featurestore", "get", "--repo", str(example_repo), "-e", f"driver_id={driver}", *args]
        code = f"import sys\nfrom featurestore.cli import main\nsys.argv = {cli!r}\n"
        code += "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        return _loaded_after(code)

    stored = get("-f", "driver_stats:conv_rate")
    assert "redis" in stored and "pandera" not in stored and "pandas" not in stored
    computed = get("-f", "trip_fit:km_over_last_trip", "--request", "trip_km=3.5")
    assert "pandera" in computed and "pandas" in computed

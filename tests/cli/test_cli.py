"""The ``featurestore`` command through its real console entry point, as a user runs it."""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from featurestore import FeatureStore
from featurestore.cli import app
from tests.support.cli import on_terminal, one_line_error, run_cli
from tests.support.repos import DRIVER_REPO

# Each foundation command and a phrase of the purpose its --help must state.
COMMANDS = {
    "init": "Scaffold a new feature repo",
    "plan": "Show what apply would change",
    "apply": "Record the repo's definitions as a new registry version",
    "list": "List the applied entities, sources, feature views and services",
    "describe": "Print an applied object's full spec as JSON",
    "versions": "List every applied registry version",
}


def run_side_by_side(*argvs: list[str], cwd: Path | None = None) -> list[subprocess.CompletedProcess[str]]:
    """Independent commands run at once, to keep the suite fast."""
    with ThreadPoolExecutor(len(argvs)) as pool:
        return list(pool.map(lambda argv: run_cli(*argv, cwd=cwd), argvs))


# -- the happy path ---------------------------------------------------------------------


def test_init_plan_apply_list_describe_versions(tmp_path: Path) -> None:
    repo = tmp_path / "My-Repo"
    init = run_cli("init", str(repo))
    assert init.returncode == 0, init.stderr
    assert "Created feature repo my_repo" in init.stdout
    assert (repo / "featurestore.toml").is_file()
    assert (repo / "example.py").is_file()
    assert 'project = "my_repo"' in (repo / "featurestore.toml").read_text()

    plan = run_cli("plan", "--repo", str(repo))
    assert plan.returncode == 0, plan.stderr
    assert plan.stdout.splitlines() == [
        "Plan against nothing applied yet: 4 to add",
        "  + entity driver",
        "  + source driver_stats_source",
        "  + feature view driver_stats",
        "  + feature service driver_model",
    ]
    assert not (repo / ".featurestore" / "store.duckdb").exists()

    apply = run_cli("apply", "--repo", str(repo))
    assert apply.returncode == 0, apply.stderr
    (version,) = FeatureStore(repo).versions()
    assert f"Applied registry version 1 ({version.content_hash})" in apply.stdout

    # The read-only commands, side by side (DuckDB lets several processes read one file).
    listing, only_views, describe, versions, again = run_side_by_side(
        ["list", "--repo", str(repo)],
        ["list", "--repo", str(repo), "--kind", "feature_view"],
        ["describe", "driver_stats", "--repo", str(repo)],
        ["versions", "--repo", str(repo)],
        ["plan", "--repo", str(repo)],
    )
    assert listing.returncode == 0, listing.stderr
    for text in (
        "driver_stats_source",
        "driver_stats",
        "driver_model",
        "join keys: driver_id",
        "3 features of driver",
        "online",
    ):
        assert text in listing.stdout

    assert only_views.returncode == 0, only_views.stderr
    assert "driver_stats" in only_views.stdout
    assert "driver_model" not in only_views.stdout
    assert "join keys" not in only_views.stdout

    assert describe.returncode == 0, describe.stderr
    spec = json.loads(describe.stdout)
    assert spec["kind"] == "feature_view"
    assert spec["name"] == "driver_stats"
    assert [f["name"] for f in spec["features"]] == ["conv_rate", "acc_rate", "avg_daily_trips"]
    assert spec["join_keys"] == [{"name": "driver_id", "dtype": "Int64"}]
    assert spec["ttl_seconds"] == 2 * 86400
    assert spec["fingerprint"] == FeatureStore(repo).get_feature_view("driver_stats").fingerprint

    assert versions.returncode == 0, versions.stderr
    assert version.content_hash in versions.stdout
    assert "4 to add" in versions.stdout

    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "No changes against version 1."


def test_repo_defaults_to_the_current_folder(make_repo) -> None:  # type: ignore[no-untyped-def]
    repo = make_repo({"drivers.py": DRIVER_REPO})
    apply = run_cli("apply", cwd=repo)
    assert apply.returncode == 0, apply.stderr
    assert "Applied registry version 1" in apply.stdout
    reapply = run_cli("apply", cwd=repo)
    assert reapply.returncode == 0, reapply.stderr
    assert "No changes against version 1." in reapply.stdout
    assert "Registry unchanged." in reapply.stdout
    assert [v.version for v in FeatureStore(repo).versions()] == [1]


def test_plan_prints_changes_field_by_field(example_repo: Path) -> None:
    FeatureStore(example_repo).apply()
    drivers = example_repo / "drivers.py"
    drivers.write_text(
        drivers.read_text()
        .replace('"Share of offers accepted"', '"Accepted offers"')
        .replace('Field("rating", Float32, checks=[Check.in_range(1, 5)]),', "")
    )
    plan = run_cli("plan", "--repo", str(example_repo))
    assert plan.returncode == 0, plan.stderr
    assert plan.stdout.splitlines() == [
        "Plan against version 1: 2 to change",
        "  ~ feature view driver_stats",
        "      features.conv_rate.description: Share of offers accepted -> Accepted offers",
        "      features.rating: (present) -> (none)",
        "      BREAKING: feature 'rating' removed while online",
        "  ~ feature service trip_model",
        "      features.driver_stats:rating: (present) -> (none)",
        "      BREAKING: feature 'driver_stats:rating' removed from the service",
        "This plan breaks consumers; apply needs --allow-breaking.",
    ]


def shown_on_terminal(*args: str, columns: int) -> str:
    """What a command prints to a terminal ``columns`` wide, without its color codes."""
    code, seen, stderr = on_terminal(*args, columns=columns)
    assert code == 0, stderr
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", seen.decode()).replace("\r\n", "\n")


def test_tables_are_never_cut_in_a_log_or_on_a_narrow_terminal(example_repo: Path) -> None:
    repo = str(example_repo)
    assert run_cli("apply", "--repo", repo).returncode == 0
    # Not a terminal (a pipe, a log, CI): each row on one line however narrow COLUMNS says.
    piped = run_cli("list", "--repo", repo, env={"COLUMNS": "60"})
    assert piped.returncode == 0, piped.stderr
    [row] = [line for line in piped.stdout.splitlines() if "customer_profile_source" in line]
    assert "data/customer_profile/*.parquet (time: event_timestamp)" in row
    assert "3 features of customer; ttl 30d; online" in piped.stdout
    assert "…" not in piped.stdout

    # A narrow terminal: cells wrap, long words fold, nothing is cut to an ellipsis.
    shown = shown_on_terminal("list", "--repo", repo, columns=50)
    assert "…" not in shown
    rows = [line.split("│") for line in shown.splitlines() if line.count("│") == 4]
    assert rows and all(len("│".join(r)) <= 50 for r in rows)
    names = "".join(r[2].strip() for r in rows)
    details = "".join(r[3].strip() for r in rows).replace(" ", "")
    assert "customer_profile_source" in names
    assert "data/customer_profile/*.parquet(time:event_timestamp)" in details


# -- errors -----------------------------------------------------------------------------


def test_missing_featurestore_toml(tmp_path: Path) -> None:
    for result in run_side_by_side(["plan"], ["apply"], ["describe", "driver"], cwd=tmp_path):
        one_line_error(result, "no featurestore.toml in", str(tmp_path.resolve()), "featurestore init")
        assert result.stdout == ""


def test_init_refuses_an_existing_repo(make_repo) -> None:  # type: ignore[no-untyped-def]
    repo = make_repo({"drivers.py": DRIVER_REPO})
    before = (repo / "featurestore.toml").read_text()
    one_line_error(run_cli("init", str(repo)), "already holds a featurestore.toml")
    assert (repo / "featurestore.toml").read_text() == before
    assert not (repo / "example.py").exists()


def test_invalid_config(make_repo) -> None:  # type: ignore[no-untyped-def]
    repo = make_repo({"drivers.py": DRIVER_REPO})
    (repo / "featurestore.toml").write_text('project = "Bad-Name"\n')
    one_line_error(run_cli("plan", "--repo", str(repo)), "project 'Bad-Name'")


def test_bad_definition(make_repo) -> None:  # type: ignore[no-untyped-def]
    repo = make_repo(
        {"drivers.py": DRIVER_REPO.replace('Field("acc_rate", Float32)', 'Field("speed", Float32)')}
    )
    line = one_line_error(run_cli("apply", "--repo", str(repo)))
    assert line.startswith("error: drivers.py:")
    assert line.endswith("feature view 'driver_stats': field 'speed' is not a column of 'data/driver_stats'")
    assert FeatureStore(repo).versions() == []


def test_several_bad_definitions(make_repo) -> None:  # type: ignore[no-untyped-def]
    text = DRIVER_REPO.replace('Field("acc_rate", Float32)', 'Field("speed", Float32)')
    text = text.replace('timestamp_field="event_timestamp"', 'timestamp_field="driver_id"')
    repo = make_repo({"drivers.py": text, "broken.py": "import not_a_real_module_xyz\n"})
    # A file that cannot be imported does not hide the problems of the others.
    result = run_cli("apply", "--repo", str(repo))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    header, *problems = result.stderr.strip().splitlines()
    assert header == "error: 3 problems in definitions:"
    assert problems[0] == "  broken.py:1: ModuleNotFoundError: No module named 'not_a_real_module_xyz'"
    assert problems[1].startswith("  drivers.py:")
    assert problems[1].endswith(
        "source 'driver_source': timestamp_field 'driver_id' is int64 in 'data/driver_stats', not a timestamp"
    )
    assert problems[2].startswith("  drivers.py:")
    assert problems[2].endswith(
        "feature view 'driver_stats': field 'speed' is not a column of 'data/driver_stats'"
    )
    assert not (repo / ".featurestore" / "store.duckdb").exists()


def test_a_duplicate_name_is_reported_with_every_other_problem(make_repo) -> None:  # type: ignore[no-untyped-def]
    text = (DRIVER_REPO.replace('Field("acc_rate", Float32)', 'Field("speed", Float32)')
            .replace('Field("avg_daily_trips", Int32)', 'Field("avg_daily_trips", String)')
            .replace("Int32, ParquetSource", "Int32, ParquetSource, String"))
    other = """
        from featurestore import Entity, ParquetSource
        driver = Entity("driver", join_keys=["driver_ref"])
        ghost = ParquetSource("ghost", path="data/nowhere", timestamp_field="ts")
    """
    repo = make_repo({"drivers.py": text, "other.py": other})
    result = run_cli("plan", "--repo", str(repo))
    assert result.returncode == 1, result.stdout
    header, *problems = result.stderr.strip().splitlines()
    assert header == "error: 4 problems in definitions:", result.stderr
    ends = [
        "duplicate entity name 'driver' (also at drivers.py:5)",
        "source 'ghost': path 'data/nowhere' matches no Parquet files",
        "feature view 'driver_stats': field 'speed' is not a column of 'data/driver_stats'",
        "feature view 'driver_stats': field 'avg_daily_trips' is declared String but 'data/driver_stats' "
        "has int32",
    ]
    for problem, end in zip(problems, ends, strict=True):
        assert problem.endswith(end), (problem, end)


def test_describe_before_apply_and_of_an_unknown_name(make_repo) -> None:  # type: ignore[no-untyped-def]
    repo = make_repo({"drivers.py": DRIVER_REPO})
    one_line_error(
        run_cli("describe", "driver", "--repo", str(repo)), "nothing applied yet", "featurestore apply"
    )
    FeatureStore(repo).apply()
    one_line_error(
        run_cli("describe", "nope", "--repo", str(repo)), "nothing named 'nope' in the registry"
    )


def test_apply_of_a_breaking_change(make_repo) -> None:  # type: ignore[no-untyped-def]
    repo = make_repo({"drivers.py": DRIVER_REPO})
    fs = FeatureStore(repo)
    fs.apply()
    (repo / "drivers.py").write_text(DRIVER_REPO.replace('Field("acc_rate", Float32),', ""))
    result = run_cli("apply", "--repo", str(repo))
    one_line_error(
        result,
        "apply refused, the plan breaks consumers",
        "feature 'acc_rate' removed while online",
        "--allow-breaking",
    )
    assert result.stdout == ""
    assert [v.version for v in fs.versions()] == [1]

    forced = run_cli("apply", "--repo", str(repo), "--allow-breaking")
    assert forced.returncode == 0, forced.stderr
    assert "BREAKING: feature 'acc_rate' removed while online" in forced.stdout
    assert "Applied registry version 2" in forced.stdout
    assert [v.version for v in fs.versions()] == [1, 2]


def test_plan_shows_real_before_values_and_exit_code_gates_breaking_changes(make_repo) -> None:  # type: ignore[no-untyped-def]
    repo = make_repo({"drivers.py": DRIVER_REPO})
    assert run_cli("apply", "--repo", str(repo)).returncode == 0
    unchanged = run_cli("plan", "--repo", str(repo), "--exit-code")
    assert (unchanged.returncode, unchanged.stdout) == (0, "No changes against version 1.\n")
    # A usage error is an error (1), never mistaken for "changes" (2), which click would exit with.
    misused = run_cli("plan", "--repo", str(repo), "--exit-code", "--no-such-option")
    assert misused.returncode == 1 and "--no-such-option" in misused.stderr, misused

    # Attributes stored only when not at their default, and the first tag of a view.
    (repo / "drivers.py").write_text(
        DRIVER_REPO.replace("ttl=timedelta(days=2),", 'ttl=timedelta(days=2), on_invalid="quarantine", '
                            'tags={"team": "risk"},')
        .replace('Field("acc_rate", Float32)', 'Field("acc_rate", Float32, nullable=False)')
    )
    changes = run_cli("plan", "--repo", str(repo), "--exit-code")
    assert changes.returncode == 2, changes.stderr
    assert changes.stdout.splitlines() == [
        "Plan against version 1: 1 to change",
        "  ~ feature view driver_stats",
        "      features.acc_rate.nullable: true -> false",
        "      on_invalid: fail -> quarantine",
        "      tags.team: (none) -> risk",
    ]
    as_json = json.loads(run_cli("plan", "--repo", str(repo), "--json").stdout)
    assert [(f["path"], f["old"], f["new"]) for f in as_json["changes"][0]["fields"]] == [
        ("features.acc_rate.nullable", True, False), ("on_invalid", "fail", "quarantine"),
        ("tags.team", None, "risk")]
    assert (as_json["base_version"], as_json["breaking"], as_json["exit_code"]) == (1, [], 2)
    assert run_cli("apply", "--repo", str(repo)).returncode == 0

    (repo / "drivers.py").write_text(DRIVER_REPO.replace('Field("acc_rate", Float32),', ""))
    breaking = run_cli("plan", "--repo", str(repo), "--exit-code")
    assert breaking.returncode == 3, breaking.stderr
    assert "BREAKING: feature 'acc_rate' removed while online" in breaking.stdout
    assert run_cli("apply", "--repo", str(repo), "--allow-breaking").returncode == 0

    listing = run_cli("versions", "--repo", str(repo))
    rows = [line for line in listing.stdout.splitlines() if line.startswith("│")]
    assert [row.split("│")[1].strip() for row in rows[:3]] == ["1", "2", "3"]
    assert "BREAKING" not in "".join(rows[:2])
    reason = "feature view 'driver_stats': feature 'acc_rate' removed while online"
    assert f"BREAKING: {reason}" in "".join(rows[2:])
    versions = json.loads(run_cli("versions", "--repo", str(repo), "--json").stdout)
    assert [(v["version"], v["breaking"]) for v in versions] == [(1, []), (2, []), (3, [
        "feature view 'driver_stats': feature 'acc_rate' removed while online",
        "feature service 'driver_model': feature 'driver_stats:acc_rate' removed from the service"])]


def test_unknown_command_and_option_are_usage_errors(tmp_path: Path) -> None:
    command, option = run_side_by_side(["frobnicate"], ["plan", "--no-such-option"], cwd=tmp_path)
    for result in (command, option):
        assert result.returncode == 2
        assert "Traceback" not in result.stderr
    assert "No such command 'frobnicate'" in command.stderr
    assert "No such option: --no-such-option" in option.stderr


# -- help -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def helps() -> dict[str, subprocess.CompletedProcess[str]]:
    """``featurestore --help`` and ``featurestore COMMAND --help``, run side by side."""
    argvs = {"": ["--help"], "(no arguments)": [], **{name: [name, "--help"] for name in COMMANDS}}
    return dict(zip(argvs, run_side_by_side(*argvs.values()), strict=True))


def test_root_help_lists_every_command(helps: dict[str, subprocess.CompletedProcess[str]]) -> None:
    result = helps[""]
    assert result.returncode == 0, result.stderr
    assert "Declare features in Python" in result.stdout
    for name, purpose in COMMANDS.items():
        assert name in result.stdout
        assert purpose in result.stdout


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_command_help(helps: dict[str, subprocess.CompletedProcess[str]], command: str) -> None:
    result = helps[command]
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert f"Usage: featurestore {command}" in result.stdout
    assert COMMANDS[command] in result.stdout
    assert "--repo" in result.stdout


def test_root_help_groups_commands_by_task_and_takes_h_and_version() -> None:
    long_help, short_help, version = run_side_by_side(["--help"], ["-h"], ["--version"])
    assert long_help.returncode == short_help.returncode == version.returncode == 0
    assert short_help.stdout == long_help.stdout
    assert version.stdout == f"featurestore {importlib.metadata.version('featurestore')}\n"
    panels = {"Define features": ["init", "plan", "apply", "list", "describe", "versions"],
              "Build data": ["materialize", "validate", "training-set"],
              "Serve online": ["serve", "get"],
              "Monitor and trace": ["drift", "lineage", "freshness", "skew"],
              "Maintain the store": ["gc", "migrate"]}
    lines = long_help.stdout.splitlines()
    titles = [i for i, line in enumerate(lines) if any(f"─ {p} ─" in line for p in panels)]
    assert [next(p for p in panels if p in lines[i]) for i in titles] == list(panels)
    for start, (panel, commands) in zip(titles, panels.items(), strict=True):
        body = lines[start + 1 : start + 1 + len(commands)]
        assert [line.strip("│ ").split()[0] for line in body] == commands, panel
    assert all(c.rich_help_panel in panels for c in app.registered_commands if not c.hidden)  # no stray panel


def test_no_arguments_shows_help(helps: dict[str, subprocess.CompletedProcess[str]]) -> None:
    result = helps["(no arguments)"]
    assert "Usage: featurestore [OPTIONS] COMMAND" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    for name in COMMANDS:
        assert name in result.stdout + result.stderr


def all_commands() -> dict[str, Any]:
    """Every registered command, including those of later issues (typer's own click objects)."""
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    assert len(commands) >= len(COMMANDS)
    return dict(commands)


def test_every_command_takes_repo_and_documents_every_parameter() -> None:
    commands = all_commands()
    assert set(COMMANDS) <= set(commands)
    for name, command in commands.items():
        assert command.help and command.help.strip(), name
        repo = [p for p in command.params if p.name == "repo"]
        assert repo and "--repo" in repo[0].opts, f"{name} takes no --repo"
        for param in command.params:
            assert getattr(param, "help", None), f"{name}: {param.name} has no help"


def test_every_command_help_renders_its_purpose_and_options() -> None:
    # In process (the foundation commands' help runs through the real entry point above).
    runner = CliRunner()
    for name, command in all_commands().items():
        result = runner.invoke(app, [name, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, (name, result.output)
        assert f"Usage: featurestore {name}" in result.output
        assert (command.help or "").splitlines()[0].strip() in result.output, name
        assert "--repo" in result.output and "FEATURESTORE_REPO" in result.output, name
        for param in command.params:
            assert param.help.split()[0] in result.output, (name, param.name)
        # A flag takes no value, and help text keeps its brackets (rich markup once ate them).
        assert "<bool>" not in result.output, name
        assert "(default: ," not in result.output, name


# -- init -------------------------------------------------------------------------------


def test_init_with_repo_or_in_the_current_folder_then_plan_apply(tmp_path: Path) -> None:
    by_option = tmp_path / "by_option"
    here = tmp_path / "here"
    here.mkdir()
    (here / ".gitignore").write_text("*.pyc")  # the user's: kept, the store's folder added
    first, second = run_side_by_side(
        ["init", "--repo", str(by_option)], ["init", "--project", "rides"], cwd=here
    )
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert (by_option / "featurestore.toml").is_file()
    assert 'project = "rides"' in (here / "featurestore.toml").read_text()
    assert (here / ".gitignore").read_text() == "*.pyc\n/.featurestore/\n"
    for repo, cwd in ((by_option, tmp_path), (here, here)):
        args = ["--repo", str(repo)] if repo != cwd else []
        apply = run_cli("apply", *args, cwd=cwd)
        assert apply.returncode == 0, apply.stderr
        assert "Applied registry version 1" in apply.stdout
        assert (repo / ".featurestore" / "store.duckdb").is_file()


def test_init_refuses_what_it_would_break_and_writes_nothing(tmp_path: Path) -> None:
    a_file = tmp_path / "a_file"
    a_file.write_text("mine")
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "example.py").write_text("mine = 1\n")
    file_error, clash, bad_project, two_folders = run_side_by_side(
        ["init", str(a_file)],
        ["init", str(existing)],
        ["init", str(tmp_path / "bad"), "--project", "Bad-Name"],
        ["init", str(tmp_path / "one"), "--repo", str(tmp_path / "two")],
    )
    one_line_error(file_error, f"{a_file} is a file, not a folder")
    one_line_error(clash, f"{existing} already holds example.py")
    one_line_error(bad_project, "project 'Bad-Name' must be lower-case letters")
    one_line_error(two_folders, "init got two folders")
    assert a_file.read_text() == "mine"
    assert sorted(p.name for p in existing.iterdir()) == ["example.py"]
    assert (existing / "example.py").read_text() == "mine = 1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "existing"]

"""featurestore.toml and the FEATURESTORE_* environment overrides."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from featurestore.config import (
    DEFAULT_DUCKDB_PATH,
    DEFAULT_REDIS_URL,
    RequestLogLimits,
    ServingLimits,
    load_config,
    render_config,
)
from featurestore.errors import ConfigError

NO_ENV: dict[str, str] = {}


def write_toml(tmp_path: Path, text: str) -> Path:
    (tmp_path / "featurestore.toml").write_text(text)
    return tmp_path


def test_defaults(tmp_path: Path) -> None:
    repo = write_toml(tmp_path, 'project = "rides"\n')
    config = load_config(repo, env=NO_ENV)
    assert config.repo == tmp_path.resolve()
    assert config.project == "rides"
    assert config.duckdb_path == tmp_path.resolve() / ".featurestore" / "store.duckdb"
    assert DEFAULT_DUCKDB_PATH == ".featurestore/store.duckdb"
    assert config.redis_url == DEFAULT_REDIS_URL == "redis://127.0.0.1:6379/0"
    assert config.event_timestamp_column == "event_timestamp"
    assert config.store_dir == config.duckdb_path.parent


def test_file_values_are_read(tmp_path: Path) -> None:
    repo = write_toml(
        tmp_path,
        'project = "rides"\n[offline]\npath = "db/x.duckdb"\n'
        '[online]\nredis_url = "redis://cache:6380/2"\n'
        '[training]\nevent_timestamp_column = "ts"\n',
    )
    config = load_config(repo, env=NO_ENV)
    assert config.duckdb_path == tmp_path.resolve() / "db" / "x.duckdb"
    assert config.redis_url == "redis://cache:6380/2"
    assert config.event_timestamp_column == "ts"


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    repo = write_toml(
        tmp_path,
        'project = "rides"\n[offline]\npath = "db/x.duckdb"\n[online]\nredis_url = "redis://a:1/0"\n',
    )
    other_db = tmp_path / "elsewhere" / "other.duckdb"
    env = {
        "FEATURESTORE_REDIS_URL": "redis://b:2/3",
        "FEATURESTORE_PROJECT": "staging",
        "FEATURESTORE_DUCKDB_PATH": str(other_db),
    }
    config = load_config(repo, env=env)
    assert config.redis_url == "redis://b:2/3"
    assert config.project == "staging"
    assert config.duckdb_path == other_db


def test_relative_duckdb_path_from_environment_is_inside_the_repo(tmp_path: Path) -> None:
    repo = write_toml(tmp_path, 'project = "rides"\n')
    config = load_config(repo, env={"FEATURESTORE_DUCKDB_PATH": "state/s.duckdb"})
    assert config.duckdb_path == tmp_path.resolve() / "state" / "s.duckdb"


def test_empty_environment_values_do_not_override(tmp_path: Path) -> None:
    repo = write_toml(tmp_path, 'project = "rides"\n')
    config = load_config(repo, env={"FEATURESTORE_PROJECT": "", "FEATURESTORE_REDIS_URL": ""})
    assert config.project == "rides"
    assert config.redis_url == DEFAULT_REDIS_URL


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path, env=NO_ENV)
    assert "no featurestore.toml" in e.value.message
    assert str(tmp_path.resolve()) in e.value.message
    assert "featurestore init" in e.value.message


def test_invalid_toml(tmp_path: Path) -> None:
    repo = write_toml(tmp_path, 'project = "rides\n[offline\n')
    with pytest.raises(ConfigError) as e:
        load_config(repo, env=NO_ENV)
    assert "featurestore.toml" in e.value.message
    assert "invalid TOML" in e.value.message


@pytest.mark.parametrize("project", ["Rides", "my-project", "1rides", "", "a" * 64])
def test_bad_project_name(tmp_path: Path, project: str) -> None:
    repo = write_toml(tmp_path, f'project = "{project}"\n')
    with pytest.raises(ConfigError) as e:
        load_config(repo, env=NO_ENV)
    assert f"project {project!r}" in e.value.message
    assert "lower-case letters, digits and _" in e.value.message


def test_missing_project(tmp_path: Path) -> None:
    repo = write_toml(tmp_path, '[online]\nredis_url = "redis://a:1/0"\n')
    with pytest.raises(ConfigError, match="project None"):
        load_config(repo, env=NO_ENV)


def test_bad_project_from_environment(tmp_path: Path) -> None:
    repo = write_toml(tmp_path, 'project = "rides"\n')
    with pytest.raises(ConfigError, match="project 'Bad-Name'"):
        load_config(repo, env={"FEATURESTORE_PROJECT": "Bad-Name"})


def test_unknown_top_level_key(tmp_path: Path) -> None:
    repo = write_toml(tmp_path, 'project = "rides"\nprojekt = "typo"\n')
    with pytest.raises(ConfigError) as e:
        load_config(repo, env=NO_ENV)
    assert "unknown key(s) ['projekt']" in e.value.message
    assert "featurestore.toml" in e.value.message


def test_unknown_key_inside_a_table(tmp_path: Path) -> None:
    repo = write_toml(tmp_path, 'project = "rides"\n[online]\nredis_ulr = "redis://a:1/0"\n')
    with pytest.raises(ConfigError) as e:
        load_config(repo, env=NO_ENV)
    assert "unknown key(s) ['redis_ulr'] in [online]" in e.value.message


def test_table_that_is_not_a_table(tmp_path: Path) -> None:
    repo = write_toml(tmp_path, 'project = "rides"\noffline = "x.duckdb"\n')
    with pytest.raises(ConfigError, match=r"\[offline\] must be a table"):
        load_config(repo, env=NO_ENV)


def test_non_string_value_in_a_table(tmp_path: Path) -> None:
    repo = write_toml(tmp_path, 'project = "rides"\n[offline]\npath = 5\n')
    with pytest.raises(ConfigError, match=r"\[offline\] path must be a string, got 5"):
        load_config(repo, env=NO_ENV)


@pytest.mark.parametrize("where", ["file", "env"])
def test_bad_redis_url(tmp_path: Path, where: str) -> None:
    if where == "file":
        repo = write_toml(tmp_path, 'project = "rides"\n[online]\nredis_url = "http://x"\n')
        env = NO_ENV
    else:
        repo = write_toml(tmp_path, 'project = "rides"\n')
        env = {"FEATURESTORE_REDIS_URL": "localhost:6379"}
    with pytest.raises(ConfigError, match="redis_url must start with redis://"):
        load_config(repo, env=env)


def test_rendered_config_loads_with_defaults(tmp_path: Path) -> None:
    repo = write_toml(tmp_path, render_config("fresh_repo"))
    config = load_config(repo, env=NO_ENV)
    assert config.project == "fresh_repo"
    assert config.duckdb_path == tmp_path.resolve() / DEFAULT_DUCKDB_PATH
    assert config.redis_url == DEFAULT_REDIS_URL


def test_retention_settings(tmp_path: Path) -> None:
    default = load_config(write_toml(tmp_path, 'project = "rides"\n'), env=NO_ENV)
    assert (default.keep_runs, default.gc_after_materialize) == (10, False)
    repo = write_toml(tmp_path, 'project = "rides"\n[retention]\nkeep_runs = 3\nafter_materialize = true\n')
    config = load_config(repo, env=NO_ENV)
    assert (config.keep_runs, config.gc_after_materialize) == (3, True)
    for bad, message in (
        ("keep_runs = 0", "keep_runs must be an integer >= 1, got 0"),
        ("keep_runs = 2.5", "keep_runs must be an integer >= 1, got 2.5"),
        ('after_materialize = "yes"', "after_materialize must be true or false"),
        ("keep = 3", "unknown key(s) ['keep'] in [retention]"),
    ):
        write_toml(tmp_path, f'project = "rides"\n[retention]\n{bad}\n')
        with pytest.raises(ConfigError) as e:
            load_config(tmp_path, env=NO_ENV)
        assert message in e.value.message


def test_serving_limits_from_the_file_and_the_environment(tmp_path: Path) -> None:
    repo = write_toml(
        tmp_path,
        'project = "rides"\n[serving]\nmax_connections = 50\nheader_timeout = 2.5\n'
        'max_bytes_in_flight = "8MiB"\ntls_cert = "server.pem"\n',
    )
    limits = load_config(repo, env=NO_ENV).serving_limits
    assert (limits.max_connections, limits.header_timeout, limits.max_bytes_in_flight) == (50, 2.5, 8 << 20)
    assert limits.max_streams == ServingLimits.max_streams and limits.idle_timeout == 60.0
    env = {"FEATURESTORE_SERVING_MAX_CONNECTIONS": "7", "FEATURESTORE_SERVING_MAX_BYTES_IN_FLIGHT": "1000"}
    limits = load_config(repo, env=env).serving_limits
    assert (limits.max_connections, limits.max_bytes_in_flight, limits.header_timeout) == (7, 1000, 2.5)
    defaults = load_config(write_toml(tmp_path, 'project = "rides"\n'), env=NO_ENV)
    assert defaults.serving_limits == ServingLimits()


@pytest.mark.parametrize(
    ("line", "env", "message"),
    [
        ("max_connections = 0", {}, "[serving] max_connections must be a whole number >= 1, got 0"),
        ("max_streams = 1.5", {}, "[serving] max_streams must be a whole number >= 1, got 1.5"),
        ('idle_timeout = "soon"', {}, "[serving] idle_timeout must be a number of seconds > 0, got 'soon'"),
        ("header_timeout = true", {}, "[serving] header_timeout must be a number of seconds > 0, got True"),
        ('max_bytes_in_flight = "lots"', {}, "must be a size in bytes, or such as 64MiB, got 'lots'"),
        ("", {"FEATURESTORE_SERVING_IDLE_TIMEOUT": "-1"}, "FEATURESTORE_SERVING_IDLE_TIMEOUT must be"),
    ],
)
def test_bad_serving_limits_are_one_clear_error(
    tmp_path: Path, line: str, env: dict[str, str], message: str
) -> None:
    repo = write_toml(tmp_path, f'project = "rides"\n[serving]\n{line}\n')
    with pytest.raises(ConfigError) as info:
        load_config(repo, env=env)
    assert message in info.value.message


def test_request_log_mode_and_limits(tmp_path: Path) -> None:
    toml = tmp_path / "featurestore.toml"
    toml.write_text(
        'project = "p"\n[request_log]\npath = "logs"\nmode = "complete"\nmax_bytes = "512MiB"\n'
        "file_rows = 5000\nflush_seconds = 2.5\nqueue_requests = 50\nqueue_values = 20000\n"
    )
    config = load_config(tmp_path, env={})
    assert config.request_log_sample == 1.0
    assert config.request_log_limits == RequestLogLimits(512 * 1024**2, 5000, 2.5, 50, 20000)
    env = {"FEATURESTORE_REQUEST_LOG_MODE": "sampled", "FEATURESTORE_REQUEST_LOG_MAX_BYTES": "1000"}
    config = load_config(tmp_path, env=env)
    assert config.request_log_sample == 0.01 and config.request_log_limits.max_bytes == 1000
    toml.write_text('project = "p"\n[request_log]\nmode = "complete"\nsample = 0.1\n')
    with pytest.raises(ConfigError, match="mode 'complete' logs every request; sample 0.1 contradicts it"):
        load_config(tmp_path, env={})
    toml.write_text('project = "p"\n[request_log]\nmode = "all"\n')
    with pytest.raises(ConfigError, match="request log mode 'all' must be one of"):
        load_config(tmp_path, env={})
    toml.write_text('project = "p"\n[request_log]\nmax_bytes = "lots"\n')
    with pytest.raises(ConfigError, match=r"\[request_log\] max_bytes must be a size"):
        load_config(tmp_path, env={})
    assert load_config(tmp_path, env={"FEATURESTORE_REQUEST_LOG_MAX_BYTES": "1GB"}).request_log_limits == (
        RequestLogLimits(max_bytes=1000**3)
    )


def test_the_readme_request_log_example_loads(tmp_path: Path) -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    example = re.search(r"```toml\n(\[request_log\]\n.*?)```", readme, re.S)
    assert example, "README has no [request_log] example"
    (tmp_path / "featurestore.toml").write_text(f'project = "p"\n{example[1]}')
    config = load_config(tmp_path, env={})
    assert config.request_log_sample == 1.0 and config.request_log_path == tmp_path / "logs" / "served"
    assert config.request_log_limits.max_bytes == 20 * 1024**3

"""Redis with a password and over TLS (rediss://), for materialization and serving, never leaking.

Real redis-servers: one with --requirepass, one that speaks only TLS (certificate from a
throwaway CA, given to redis-py with ?ssl_ca_certs=) and also wants the password.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from featurestore import FeatureStore, datagen
from featurestore.config import load_config
from featurestore.serving.client import Client
from tests.serving.support import ServeProcess, from_client, from_in_process
from tests.support.certs import Certs, make_certs
from tests.support.cli import run_cli
from tests.support.redis import RedisServer, free_port
from tests.support.repos import copy_example_repo

PASSWORD = "pw-Zq8rT1xWv7kLm3"
WRONG = "pw-wrong-Hn4bYc9s"
TOKEN = "tok-Jd82kQp0Lr5sVx7m"
SECRETS = (PASSWORD, WRONG, TOKEN)
KNOWN = ["driver_stats:conv_rate", "driver_stats:city"]
ENTITIES = {"driver_id": [1001, 1002]}


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("redis-certs"))


@pytest.fixture(scope="module")
def password_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(free_port(), tmp_path_factory.mktemp("redis-pw"), "--requirepass", PASSWORD)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[RedisServer]:
    """TLS only (--port 0 turns plaintext off), password required."""
    port = free_port()
    args = (
        "--port", "0", "--tls-port", str(port), "--tls-cert-file", str(certs.cert),
        "--tls-key-file", str(certs.key), "--tls-ca-cert-file", str(certs.ca),
        "--tls-auth-clients", "no", "--requirepass", PASSWORD,
    )  # fmt: skip
    server = RedisServer(port, tmp_path_factory.mktemp("redis-tls"), *args)
    try:
        server.start()
    except RuntimeError:
        server.stop()
        # Skip only for a build without TLS, which refuses the options at once and says so;
        # anything else (a slow start, a bad certificate) fails.
        probe = subprocess.run(
            ["redis-server", *args[:2], "--tls-port", str(free_port()), *args[4:]],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        said = (probe.stdout + probe.stderr).lower()
        if "tls" in said and any(m in said for m in ("bad directive", "not supported", "connection type")):
            pytest.skip(f"this redis-server was built without TLS support: {said.strip()[-200:]}")
        raise
    yield server
    server.stop()


def pw_url(server: RedisServer, password: str = PASSWORD) -> str:
    return f"redis://:{password}@127.0.0.1:{server.port}/0"


def tls_url(server: RedisServer, certs: Certs | None) -> str:
    query = f"?ssl_ca_certs={certs.ca}" if certs else ""
    return f"rediss://:{PASSWORD}@127.0.0.1:{server.port}/0{query}"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example repo with data ending now (values PRESENT), applied once."""
    data = tmp_path_factory.mktemp("fresh")
    datagen.generate(data, "tiny")
    repo = copy_example_repo(tmp_path_factory.mktemp("redis-auth") / "repo", data, "redis://127.0.0.1:1/0")
    result = run_cli("apply", "--repo", str(repo))
    assert result.returncode == 0, result.stderr
    return repo


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} printed in:\n{text}"


def test_materialize_and_read_with_a_password(repo: Path, password_redis: RedisServer) -> None:
    env = {"FEATURESTORE_REDIS_URL": pw_url(password_redis)}
    materialized = run_cli("materialize", "--repo", str(repo), env=env)
    assert materialized.returncode == 0, materialized.stderr
    assert redis.Redis.from_url(pw_url(password_redis)).dbsize() > 0
    store = FeatureStore(repo, config=load_config(repo, env=env))
    assert store.get_online_features(KNOWN, ENTITIES).statuses["conv_rate"] == ["PRESENT", "PRESENT"]
    assert_no_secret(materialized.stdout, materialized.stderr)


@pytest.mark.parametrize(
    ("password", "command"),
    [(WRONG, ("materialize",)), (None, ("get", "-e", "driver_id=1001", "--features", KNOWN[0]))],
)
def test_a_wrong_or_missing_password_is_one_line_naming_the_host(
    repo: Path, password_redis: RedisServer, password: str | None, command: tuple[str, ...]
) -> None:
    url = pw_url(password_redis, password) if password else password_redis.url
    result = run_cli(*command, "--repo", str(repo), env={"FEATURESTORE_REDIS_URL": url})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    shown = f"redis://:***@127.0.0.1:{password_redis.port}/0" if password else password_redis.url
    why = "refused the credentials" if password else "requires a password and redis_url gives none"
    assert len(lines) == 1 and lines[0].startswith(f"error: online store {shown} {why}"), lines
    assert_no_secret(result.stdout, result.stderr)


def test_rediss_without_the_ca_says_how_to_give_it(repo: Path, tls_redis: RedisServer) -> None:
    result = run_cli(
        "materialize", "--repo", str(repo), env={"FEATURESTORE_REDIS_URL": tls_url(tls_redis, None)}
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "CERTIFICATE_VERIFY_FAILED" in lines[0] and "?ssl_ca_certs=" in lines[0], lines
    assert f"rediss://:***@127.0.0.1:{tls_redis.port}/0" in lines[0]
    assert_no_secret(result.stdout, result.stderr)


def test_rediss_materialize_and_serve_with_a_token_print_no_secret(
    repo: Path, tls_redis: RedisServer, certs: Certs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Materialize over TLS, serve from it with a token, and no command prints a secret."""
    url = tls_url(tls_redis, certs)
    env = {"FEATURESTORE_REDIS_URL": url}
    outputs: list[str] = []
    materialized = run_cli("materialize", "--repo", str(repo), env=env)
    assert materialized.returncode == 0, materialized.stderr
    outputs += [materialized.stdout, materialized.stderr]

    monkeypatch.setenv("FEATURESTORE_AUTH_TOKENS", TOKEN)
    server = ServeProcess(repo, url)
    server.start()
    try:
        monkeypatch.delenv("FEATURESTORE_AUTH_TOKENS")
        store = FeatureStore(repo, config=load_config(repo, env=env))
        expected = from_in_process(store.get_online_features(KNOWN, ENTITIES))
        with Client(server.target, token=TOKEN) as client:
            assert from_client(client.get_online_features(KNOWN, ENTITIES)) == expected
        assert [status for _, status, _ in expected["conv_rate"]] == ["PRESENT", "PRESENT"]
        get = ("get", "--server", server.target, "-e", "driver_id=1001", "--features", KNOWN[0])
        refused = run_cli(*get, env={"FEATURESTORE_AUTH_TOKEN": WRONG})
        assert refused.returncode == 1 and "UNAUTHENTICATED" in refused.stderr, refused.stderr
        outputs += [refused.stdout, refused.stderr]
    finally:
        server.stop()
    outputs.append(server.stderr)
    described = run_cli("describe", "driver_stats", "--repo", str(repo), env=env)
    assert described.returncode == 0 and '"driver_stats"' in described.stdout, described.stderr
    outputs += [described.stdout, described.stderr]
    # A redis_url the config refuses is echoed back masked.
    bad = run_cli("describe", "driver_stats", "--repo", str(repo),
                  env={"FEATURESTORE_REDIS_URL": f"http://:{PASSWORD}@127.0.0.1/0"})  # fmt: skip
    assert bad.returncode == 1 and "http://:***@127.0.0.1/0" in bad.stderr, bad.stderr
    outputs += [bad.stdout, bad.stderr]
    assert_no_secret(*outputs)
    # Nor do the store's own files: DuckDB (runs, lineage), OpenLineage events, run records.
    files = [p for p in (repo / ".featurestore").rglob("*") if p.is_file()]
    assert any(p.suffix == ".duckdb" for p in files)
    for path in files:
        data = path.read_bytes()
        for secret in SECRETS:
            assert secret.encode() not in data, f"{secret!r} stored in {path}"


def test_serving_with_a_wrong_password_says_the_credentials_were_refused(
    repo: Path, password_redis: RedisServer
) -> None:
    """Not "does not answer": the server logs the refusal at start and as a configuration error;
    the caller reads UNAVAILABLE with a request id, not the server's Redis address."""
    from featurestore.errors import OnlineStoreUnavailable
    from tests.serving.support import health

    url = pw_url(password_redis, WRONG)
    server = ServeProcess(repo, url)
    server.start(serving=False)
    try:
        assert health(server.target) == 2  # NOT_SERVING
        with Client(server.target) as client, pytest.raises(OnlineStoreUnavailable) as refused:
            client.get_online_features(KNOWN, ENTITIES)
        message = refused.value.message
        assert message.startswith("UNAVAILABLE: the online store is unavailable; retry later (request id ")
        assert "redis://" not in message and str(password_redis.port) not in message, message
    finally:
        server.stop()
    shown = f"online store redis://:***@127.0.0.1:{password_redis.port}/0 refused the credentials: WRONGPASS"
    assert f"{shown}" in server.stderr and "NOT_SERVING" in server.stderr, server.stderr
    assert f"configuration error: {shown}" in server.stderr, server.stderr
    assert_no_secret(server.stderr, str(refused.value))

"""TLS on a real `featurestore serve --workers 2`: gRPC and HTTP over TLS, plaintext refused."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from featurestore.errors import ConfigError, OnlineStoreUnavailable
from featurestore.serving.client import Client
from featurestore.serving.tls import TlsFiles, load_tls
from tests.serving.support import ServeProcess, from_client, from_http, from_in_process, open_store, verify
from tests.support.certs import Certs, make_certs
from tests.support.cli import run_cli
from tests.support.redis import RedisServer

TOKEN = "tls-token-0123456789abcdef"
KNOWN = ["driver_stats:conv_rate", "driver_stats:city"]
ENTITIES = {"driver_id": [1001, 1002, 1003]}


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def tls_server(served_repo: Path, serving_redis: RedisServer, certs: Certs) -> Iterator[ServeProcess]:
    """Two workers sharing TLS ports (SO_REUSEPORT), with a bearer token too."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FEATURESTORE_AUTH_TOKENS", TOKEN)
        process = ServeProcess(
            served_repo, serving_redis.url, "--workers", "2",
            "--tls-cert", str(certs.cert), "--tls-key", str(certs.key), ca=certs.ca,
        )  # fmt: skip
        process.start()
    try:
        yield process
    finally:
        process.stop()


def test_ready_line_says_tls_and_https(tls_server: ServeProcess) -> None:
    assert f"HTTP on https://127.0.0.1:{tls_server.http_port} with 2 workers; TLS" in tls_server.stderr


def test_grpc_over_tls_answers_as_the_store_does(
    tls_server: ServeProcess, served_repo: Path, certs: Certs
) -> None:
    expected = from_in_process(open_store(served_repo).get_online_features(KNOWN, ENTITIES))
    # Fresh channels, so connections land on both workers.
    for root in (certs.ca, certs.ca.read_bytes(), str(certs.ca)) * 2:
        with Client(tls_server.target, token=TOKEN, root_certificates=root) as client:
            assert from_client(client.get_online_features(KNOWN, ENTITIES)) == expected


def test_http_over_tls_answers_as_the_store_does(
    tls_server: ServeProcess, served_repo: Path, certs: Certs
) -> None:
    expected = from_in_process(open_store(served_repo).get_online_features(KNOWN, ENTITIES))
    body = {"features": KNOWN, "entities": ENTITIES}
    for _ in range(4):  # a new connection each time
        r = httpx.post(
            f"{tls_server.http_url}/v1/online-features", json=body, verify=verify(certs.ca),
            headers={"authorization": f"Bearer {TOKEN}"},
        )  # fmt: skip
        assert r.status_code == 200, r.text
        assert from_http(r.json()) == expected
    assert httpx.get(f"{tls_server.http_url}/healthz", verify=verify(certs.ca)).json()["status"] == "SERVING"


def test_plaintext_and_untrusting_clients_are_refused(tls_server: ServeProcess, certs: Certs) -> None:
    with Client(tls_server.target, token=TOKEN, timeout=2) as plain, pytest.raises(OnlineStoreUnavailable):
        plain.get_online_features(KNOWN, ENTITIES)
    # TLS, but trusting only the system CAs: the handshake fails.
    with (
        Client(tls_server.target, token=TOKEN, tls=True, timeout=2) as system,
        pytest.raises(OnlineStoreUnavailable),
    ):
        system.get_online_features(KNOWN, ENTITIES)
    http_plain = f"http://127.0.0.1:{tls_server.http_port}/healthz"
    with pytest.raises(httpx.HTTPError):
        httpx.get(http_plain, timeout=5)
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{tls_server.http_url}/healthz", verify=ssl.create_default_context(), timeout=5)


def test_cli_get_over_tls(tls_server: ServeProcess, certs: Certs) -> None:
    args = ("get", "--server", tls_server.target, "--entity", "driver_id=1001", "--features", KNOWN[0])
    ok = run_cli(*args, "--tls-ca", str(certs.ca), env={"FEATURESTORE_AUTH_TOKEN": TOKEN})
    assert ok.returncode == 0, ok.stderr
    assert "PRESENT" in ok.stdout
    missing_ca = run_cli(*args, "--tls-ca", str(certs.ca.with_name("nope.pem")))
    assert missing_ca.returncode == 1
    assert missing_ca.stderr.strip().splitlines() == [
        f"error: cannot read the CA certificate {certs.ca.with_name('nope.pem')}: No such file or directory"
    ]


def test_bad_tls_settings_fail_serve_in_one_line(served_repo: Path, certs: Certs, tmp_path: Path) -> None:
    other = make_certs(tmp_path / "other")
    config = open_store(served_repo).config
    with pytest.raises(ConfigError, match="a TLS key was given without its certificate"):
        load_tls(config, key=certs.key)
    with pytest.raises(ConfigError, match="no.key does not exist"):
        load_tls(config, certs.cert, tmp_path / "no.key")
    # Through the CLI: one line, before any worker starts.
    result = run_cli("serve", "--repo", str(served_repo), "--workers", "2",
                     "--tls-cert", str(certs.cert), "--tls-key", str(other.key))  # fmt: skip
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "do not load together" in lines[0], lines


def test_tls_files_from_the_config(tmp_path: Path, certs: Certs) -> None:
    from featurestore.config import load_config

    (tmp_path / "featurestore.toml").write_text(
        f'project = "p"\n[serving]\ntls_cert = "{certs.cert}"\ntls_key = "{certs.key}"\n'
    )
    assert load_tls(load_config(tmp_path, env={})) == TlsFiles(certs.cert, certs.key)
    env = {"FEATURESTORE_TLS_KEY": str(tmp_path / "elsewhere.key")}
    with pytest.raises(ConfigError, match="elsewhere.key does not exist"):
        load_tls(load_config(tmp_path, env=env))


def test_plaintext_grpc_channel_gets_no_answer(tls_server: ServeProcess) -> None:
    with grpc.insecure_channel(tls_server.target) as channel:
        with pytest.raises(grpc.FutureTimeoutError):
            grpc.channel_ready_future(channel).result(timeout=2)

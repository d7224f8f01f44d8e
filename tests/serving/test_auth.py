"""Bearer tokens on a real `featurestore serve`: refused before the request is read, health open."""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from featurestore.config import load_config
from featurestore.errors import ConfigError, UnauthenticatedError
from featurestore.serving import auth
from featurestore.serving.client import Client
from featurestore.serving.v1 import serving_pb2 as pb
from tests.serving.support import (
    SERVICE,
    SERVING,
    ServeProcess,
    from_client,
    from_in_process,
    health,
    open_store,
)
from tests.support.cli import run_cli
from tests.support.redis import RedisServer

FILE_TOKEN = "file-token-0123456789abcdef"
ENV_TOKEN = "env-token-fedcba9876543210"
WRONG = "wrong-token-0000000000000000"
KNOWN = ["driver_stats:conv_rate"]
ENTITIES = {"driver_id": [1001, 1002]}


@pytest.fixture(scope="module")
def tokens_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("auth") / "tokens"
    path.write_text(f"# serving tokens\n\n  {FILE_TOKEN}  \n")
    return path


@pytest.fixture(scope="module")
def secured(served_repo: Path, serving_redis: RedisServer, tokens_file: Path) -> Iterator[ServeProcess]:
    """A server that takes a token from its file and one from FEATURESTORE_AUTH_TOKENS."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FEATURESTORE_AUTH_TOKENS", f" {ENV_TOKEN} ,")
        process = ServeProcess(served_repo, serving_redis.url, "--auth-tokens-file", str(tokens_file))
        process.start()
    try:
        yield process
    finally:
        process.stop()


def _unary(
    target: str, method: str, body: bytes, token: str | None, scheme: str = "Bearer"
) -> grpc.RpcError:
    """Call ``method`` with raw request bytes; the error it must end with."""
    metadata = [("authorization", f"{scheme} {token}")] if token else None
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(method)
        with pytest.raises(grpc.RpcError) as info:
            call(body, timeout=5, metadata=metadata)
    return info.value


def test_the_ready_line_says_tokens_are_required_and_never_shows_them(secured: ServeProcess) -> None:
    assert "2 bearer token(s)" in secured.stderr
    assert FILE_TOKEN not in secured.stderr and ENV_TOKEN not in secured.stderr


@pytest.mark.parametrize("token", [None, WRONG, FILE_TOKEN[:-1], "", f"{FILE_TOKEN}x"])
def test_grpc_without_a_valid_token_is_unauthenticated(secured: ServeProcess, token: str | None) -> None:
    request = pb.GetOnlineFeaturesRequest(features=KNOWN)
    request.entities["driver_id"].int64_values.values.extend([1001])
    error = _unary(secured.target, f"/{SERVICE}/GetOnlineFeatures", request.SerializeToString(), token)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error.details() == auth.MESSAGE



@pytest.mark.parametrize("scheme", ["Basic", "Token", "Bearer:"])
def test_a_valid_token_under_another_scheme_is_refused(secured: ServeProcess, scheme: str) -> None:
    request = pb.GetOnlineFeaturesRequest(features=KNOWN)
    request.entities["driver_id"].int64_values.values.extend([1001])
    body = request.SerializeToString()
    error = _unary(secured.target, f"/{SERVICE}/GetOnlineFeatures", body, FILE_TOKEN, scheme)
    assert (error.code(), error.details()) == (grpc.StatusCode.UNAUTHENTICATED, auth.MESSAGE)
    url, lookup = f"{secured.http_url}/v1/online-features", {"features": KNOWN, "entities": ENTITIES}
    answers = [
        httpx.post(url, json=lookup, headers={"authorization": f"{s} {FILE_TOKEN}"})
        for s in (scheme, "Bearer")
    ]
    assert [r.status_code for r in answers] == [401, 200]  # the same token is good as a bearer token


def test_grpc_answer_does_not_depend_on_what_was_asked(secured: ServeProcess) -> None:
    """Known feature, unknown feature, unknown method, malformed bytes: one identical answer."""

    def ask(features: list[str]) -> bytes:
        request = pb.GetOnlineFeaturesRequest(features=features)
        request.entities["driver_id"].int64_values.values.extend([1001])
        return request.SerializeToString()

    calls = [
        (f"/{SERVICE}/GetOnlineFeatures", ask(KNOWN)),
        (f"/{SERVICE}/GetOnlineFeatures", ask(["no_such_view:nothing"])),
        (f"/{SERVICE}/ListFeatures", b""),
        (f"/{SERVICE}/NoSuchMethod", b""),
        (f"/{SERVICE}/GetOnlineFeatures", b"\xff\xff\xff not protobuf"),  # parsed: INVALID_ARGUMENT
    ]
    answers = {
        (e.code(), e.details(), tuple(e.trailing_metadata() or ()))
        for e in (_unary(secured.target, method, body, WRONG) for method, body in calls)
    }
    assert answers == {(grpc.StatusCode.UNAUTHENTICATED, auth.MESSAGE, ())}
    # The same calls with a token do reach the service, and answer differently.
    unknown = _unary(secured.target, calls[1][0], calls[1][1], FILE_TOKEN)
    assert unknown.code() == grpc.StatusCode.INVALID_ARGUMENT and "no_such_view" in unknown.details()
    assert _unary(secured.target, calls[3][0], b"", FILE_TOKEN).code() == grpc.StatusCode.UNIMPLEMENTED


def test_both_tokens_are_accepted_and_answer_as_the_store_does(
    secured: ServeProcess, served_repo: Path
) -> None:
    expected = from_in_process(open_store(served_repo).get_online_features(KNOWN, ENTITIES))
    for token in (FILE_TOKEN, ENV_TOKEN):
        with Client(secured.target, token=token) as client:
            assert from_client(client.get_online_features(KNOWN, ENTITIES)) == expected


def test_client_reads_its_token_from_the_environment(
    secured: ServeProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Client(secured.target) as client, pytest.raises(UnauthenticatedError, match="UNAUTHENTICATED"):
        client.get_online_features(KNOWN, ENTITIES)
    monkeypatch.setenv("FEATURESTORE_AUTH_TOKEN", ENV_TOKEN)
    with Client(secured.target) as client:
        assert client.get_online_features(KNOWN, ENTITIES).statuses["conv_rate"] == ["PRESENT", "PRESENT"]


def test_health_stays_open_and_reflection_needs_a_token(secured: ServeProcess) -> None:
    assert health(secured.target) == SERVING
    assert health(secured.target, SERVICE) == SERVING
    with grpc.insecure_channel(secured.target) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(
            health_pb2.HealthCheckRequest(service=""), timeout=5
        )
        assert next(iter(watch)).status == SERVING
        watch.cancel()

        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        ask = reflection_pb2.ServerReflectionRequest(list_services="")
        with pytest.raises(grpc.RpcError) as info:
            list(stub.ServerReflectionInfo(iter([ask]), timeout=5))
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        answers = list(
            stub.ServerReflectionInfo(
                iter([ask]), timeout=5, metadata=[("authorization", f"Bearer {FILE_TOKEN}")]
            )
        )
    assert SERVICE in {s.name for s in answers[0].list_services_response.service}


def test_http_refuses_before_routing_with_one_answer(secured: ServeProcess) -> None:
    url = secured.http_url
    bad = {"authorization": f"Bearer {WRONG}"}
    responses = [
        httpx.post(f"{url}/v1/online-features", json={"features": KNOWN, "entities": ENTITIES}, headers=bad),
        httpx.post(
            f"{url}/v1/online-features",
            json={"features": ["no_such_view:x"], "entities": ENTITIES},
            headers=bad,
        ),
        httpx.post(f"{url}/v1/online-features", content=b"{not json", headers=bad),
        httpx.get(f"{url}/v1/features", headers=bad),
        httpx.get(f"{url}/no/such/route"),
        httpx.get(f"{url}/openapi.json"),
        httpx.get(f"{url}/docs", headers={"authorization": FILE_TOKEN}),  # no "Bearer": refused
    ]
    shapes = {
        (r.status_code, r.headers["www-authenticate"], r.headers["content-type"], r.content)
        for r in responses
    }
    assert len(shapes) == 1, shapes
    status, challenge, _, _ = shapes.pop()
    assert status == 401 and challenge.startswith("Bearer")
    assert responses[0].json() == {"error": {"code": "UNAUTHENTICATED", "message": auth.MESSAGE}}


def test_http_with_a_token_serves_and_health_is_open(secured: ServeProcess, served_repo: Path) -> None:
    url = secured.http_url
    assert httpx.get(f"{url}/healthz").json()["status"] == "SERVING"
    good = {"authorization": f"bearer {ENV_TOKEN}"}  # the scheme is case-insensitive
    r = httpx.post(f"{url}/v1/online-features", json={"features": KNOWN, "entities": ENTITIES}, headers=good)
    assert r.status_code == 200, r.text
    expected = open_store(served_repo).get_online_features(KNOWN, ENTITIES).features[0].values
    assert r.json()["features"][0]["values"] == pytest.approx(expected)
    unknown = {"features": ["no_such_view:x"], "entities": ENTITIES}
    assert httpx.post(f"{url}/v1/online-features", json=unknown, headers=good).status_code == 400
    assert httpx.get(f"{url}/openapi.json", headers=good).status_code == 200


def test_cli_get_sends_the_token(secured: ServeProcess) -> None:
    args = ("get", "--server", secured.target, "--entity", "driver_id=1001", "--features", KNOWN[0])
    ok = run_cli(*args, env={"FEATURESTORE_AUTH_TOKEN": FILE_TOKEN})
    assert ok.returncode == 0, ok.stderr
    assert "conv_rate" in ok.stdout and "PRESENT" in ok.stdout
    refused = run_cli(*args, "--auth-token", WRONG, env={"FEATURESTORE_AUTH_TOKEN": ""})
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [f"error: UNAUTHENTICATED: {auth.MESSAGE}"]
    assert WRONG not in refused.stdout + refused.stderr


def test_every_token_is_compared_even_after_a_match(monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = auth.Tokens([FILE_TOKEN, ENV_TOKEN, WRONG])
    calls: list[int] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append(1)
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    assert tokens.accepts(FILE_TOKEN) and len(calls) == 3  # the first matched; all three compared
    assert not tokens.accepts(None) and not tokens.accepts("") and len(calls) == 9
    assert repr(tokens) == "Tokens(3 configured)" and FILE_TOKEN not in repr(tokens)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("# only a comment\n\n", "holds no tokens"),
        ("short\n", "on line 1 of .* is 5 characters; use at least 16"),
        ("a token with spaces inside\n", "has spaces or non-ASCII"),
    ],
)
def test_bad_tokens_files_are_refused(tmp_path: Path, served_repo: Path, content: str, message: str) -> None:
    path = tmp_path / "tokens"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        auth.load_tokens(open_store(served_repo).config, path, env={})


def test_serve_refuses_a_missing_tokens_file_in_one_line(served_repo: Path, tmp_path: Path) -> None:
    result = run_cli("serve", "--repo", str(served_repo), "--auth-tokens-file", str(tmp_path / "missing"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: cannot read the bearer tokens file {tmp_path / 'missing'}: No such file or directory"
    ]


def test_tokens_file_from_the_config_and_environment(
    served_repo: Path, tokens_file: Path, tmp_path: Path
) -> None:
    (tmp_path / "featurestore.toml").write_text('project = "p"\n[serving]\nauth_tokens_file = "tokens"\n')
    (tmp_path / "tokens").write_text(ENV_TOKEN)
    tokens = auth.load_tokens(load_config(tmp_path, env={}), env={})  # relative to the repo
    assert tokens is not None and tokens.accepts(ENV_TOKEN)
    (tmp_path / "featurestore.toml").write_text(f'project = "p"\n[serving]\nauth_tokens = "{ENV_TOKEN}"\n')
    with pytest.raises(ConfigError, match="unknown key") as info:  # tokens inline: refused
        load_config(tmp_path, env={})
    assert ENV_TOKEN not in str(info.value)

    config = load_config(served_repo, env={"FEATURESTORE_AUTH_TOKENS_FILE": str(tokens_file)})
    tokens = auth.load_tokens(config, env={})
    assert tokens is not None and tokens.accepts(FILE_TOKEN) and not tokens.accepts(ENV_TOKEN)
    assert auth.load_tokens(load_config(served_repo, env={}), env={}) is None  # nothing set: open

"""Wrong bearer tokens are bounded on a real `featurestore serve`, gRPC and HTTP alike: per
client address and overall, refused RESOURCE_EXHAUSTED / 429 with Retry-After without checking
the token, reset by a success; a call without a token is not counted. Each test runs its own
server with small limits (FEATURESTORE_AUTH_LIMITS). gRPC clients all speak from 127.0.0.1;
HTTP clients from other loopback addresses are other clients."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from featurestore.errors import ConfigError
from featurestore.serving import auth
from featurestore.serving.auth_limit import LIMITS_ENV, Limits, TokenLimiter, limits_from_env
from featurestore.serving.v1 import serving_pb2 as pb
from tests.serving.support import SERVICE, ServeProcess
from tests.support.redis import RedisServer

TOKEN = "limit-token-0123456789abcdef"
WRONG = "wrong-token-0000000000000000"
KNOWN = ["driver_stats:conv_rate"]
LOOKUP = {"features": KNOWN, "entities": {"driver_id": [1001]}}


@contextmanager
def server(repo: Path, redis: RedisServer, limits: str) -> Iterator[ServeProcess]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(auth.TOKENS_ENV, TOKEN)
        mp.setenv(LIMITS_ENV, limits)
        process = ServeProcess(repo, redis.url)
        process.start()
    try:
        yield process
    finally:
        process.stop()


def call(target: str, token: str | None, body: bytes | None = None) -> grpc.StatusCode:
    """A GetOnlineFeatures call from 127.0.0.1 (``body``: raw bytes instead of a lookup)."""
    if body is None:
        request = pb.GetOnlineFeaturesRequest(features=KNOWN)
        request.entities["driver_id"].int64_values.values.extend([1001])
        body = request.SerializeToString()
    return _call(target, token, body)[0]


def _call(target: str, token: str | None, body: bytes) -> tuple[grpc.StatusCode, str]:
    metadata = [("authorization", f"Bearer {token}")] if token else None
    with grpc.insecure_channel(target) as channel:
        try:
            channel.unary_unary(f"/{SERVICE}/GetOnlineFeatures")(body, timeout=5, metadata=metadata)
        except grpc.RpcError as e:
            return e.code(), e.details() or ""
    return grpc.StatusCode.OK, ""


@contextmanager
def http_from(url: str, address: str) -> Iterator[httpx.Client]:
    """An HTTP client whose connections come from ``address`` (any of 127.0.0.0/8 reaches the server)."""
    with httpx.Client(base_url=url, transport=httpx.HTTPTransport(local_address=address), timeout=10) as http:
        yield http


def lookup(http: httpx.Client, token: str | None) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return http.post("/v1/online-features", json=LOOKUP, headers=headers)


def test_grpc_locks_an_address_out_after_n_wrong_tokens(
    served_repo: Path, serving_redis: RedisServer
) -> None:
    with server(served_repo, serving_redis, "3,50,2") as s:
        assert [call(s.target, WRONG) for _ in range(3)] == [grpc.StatusCode.UNAUTHENTICATED] * 3
        code, details = _call(s.target, TOKEN, b"\xff\xff not protobuf")  # right token, not checked
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "too many failed token checks from your address" in details
        assert "a correct one included" in details and "for 2 s" in details
        assert call(s.target, TOKEN) == grpc.StatusCode.RESOURCE_EXHAUSTED  # nor parsed: the same
        with grpc.insecure_channel(s.target) as channel:  # reflection is refused the same way
            ask = reflection_pb2.ServerReflectionRequest(list_services="")
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            metadata = [("authorization", f"Bearer {TOKEN}")]
            with pytest.raises(grpc.RpcError) as info:
                list(stub.ServerReflectionInfo(iter([ask]), timeout=5, metadata=metadata))
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert call(s.target, None) == grpc.StatusCode.UNAUTHENTICATED  # no token: not a guess
        with http_from(s.http_url, "127.0.0.1") as http:  # one limiter for both transports
            refused = lookup(http, TOKEN)
            assert refused.status_code == 429 and 1 <= int(refused.headers["retry-after"]) <= 2
            assert refused.json()["error"]["code"] == "RESOURCE_EXHAUSTED"
        with http_from(s.http_url, "127.0.0.2") as other:  # another address is not locked out
            assert lookup(other, TOKEN).status_code == 200
            assert other.get("/healthz").status_code == 200
            scrape = other.get("/metrics", headers={"authorization": f"Bearer {TOKEN}"}).text
        counts = [
            line
            for line in scrape.splitlines()
            if line.startswith("featurestore_request_duration_seconds_count")
        ]
        refused = [line for line in counts if "RESOURCE_EXHAUSTED" in line or 'status="429"' in line]
        assert any('transport="grpc"' in line and line.endswith(" 2.0") for line in refused), refused
        assert any('transport="http"' in line and line.endswith(" 1.0") for line in refused), refused
        lines = [line for line in s.lines if "serving API tokens" in line]
        assert len(lines) == 1 and "3 failed from 127.0.0.1 within 2 s" in lines[0], lines

        time.sleep(2.1)  # the window has passed: tokens are checked again
        assert call(s.target, TOKEN) == grpc.StatusCode.OK
        assert call(s.target, WRONG) == grpc.StatusCode.UNAUTHENTICATED


def test_http_locks_an_address_out_with_429_and_retry_after(
    served_repo: Path, serving_redis: RedisServer
) -> None:
    with server(served_repo, serving_redis, "3,50,60") as s, http_from(s.http_url, "127.0.0.2") as http:
        assert [lookup(http, WRONG).status_code for _ in range(3)] == [401] * 3
        refused = lookup(http, TOKEN)
        assert refused.status_code == 429 and 59 <= int(refused.headers["retry-after"]) <= 60
        assert refused.json()["error"]["code"] == "RESOURCE_EXHAUSTED"
        assert "too many failed token checks from your address" in refused.json()["error"]["message"]
        assert http.get("/v1/features", headers={"authorization": f"Bearer {TOKEN}"}).status_code == 429
        assert lookup(http, None).status_code == 401  # no token: not a guess, the usual answer
        assert http.get("/healthz").status_code == 200
        assert call(s.target, TOKEN) == grpc.StatusCode.OK  # 127.0.0.1, over gRPC: not locked out
        with http_from(s.http_url, "127.0.0.3") as other:
            assert lookup(other, TOKEN).status_code == 200


def test_a_success_clears_the_addresss_count(served_repo: Path, serving_redis: RedisServer) -> None:
    unauthenticated, ok = grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.OK
    with server(served_repo, serving_redis, "3,50,60") as s:
        assert [call(s.target, WRONG) for _ in range(2)] == [unauthenticated] * 2
        assert call(s.target, TOKEN) == ok
        # without the reset these would be failures 3 and 4: the second refused
        assert [call(s.target, WRONG) for _ in range(2)] == [unauthenticated] * 2
        assert call(s.target, TOKEN) == ok
        assert [call(s.target, WRONG) for _ in range(3)] == [unauthenticated] * 3
        assert call(s.target, TOKEN) == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_many_addresses_share_one_overall_limit(served_repo: Path, serving_redis: RedisServer) -> None:
    with server(served_repo, serving_redis, "3,4,60") as s:
        for n in range(2, 6):  # one wrong token each from four addresses: none locked out alone
            with http_from(s.http_url, f"127.0.0.{n}") as http:
                assert lookup(http, WRONG).status_code == 401
        code, details = _call(s.target, TOKEN, b"")  # 127.0.0.1 never failed, and waits too
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "to this server from all addresses" in details


def test_the_limiter_goes_quiet_a_window_after_the_last_failure() -> None:
    now = [0.0]
    limiter = TokenLimiter(Limits(per_client=2, overall=100, window=60.0), lambda: now[0])
    assert limiter.quiet()
    limiter.failed("10.0.0.1")
    assert not limiter.quiet()
    now[0] = 59.9
    assert not limiter.quiet()
    now[0] = 60.0  # the failure left the window: no lockout is possible, no count matters
    assert limiter.quiet()
    limiter.failed("10.0.0.1")  # the stale failure does not complete a lockout
    limiter.check("10.0.0.1")


@pytest.mark.parametrize(
    ("peer", "address"),
    [
        ("ipv4:127.0.0.2:50123", "127.0.0.2"),
        ("ipv6:[::1]:50123", "::1"),
        ("ipv6:%5B::1%5D:50123", "::1"),
        ("ipv6:[2001:db8::7]:1", "2001:db8::7"),
        ("unix:/tmp/socket", "unix"),
        ("", "unknown"),
    ],
)
def test_a_grpc_peer_counts_by_address_not_port(peer: str, address: str) -> None:
    assert auth.peer_address(peer) == address


def test_serve_refuses_bad_limits_in_one_line(served_repo: Path, serving_redis: RedisServer) -> None:
    with pytest.raises(AssertionError, match="did not start") as info:
        with server(served_repo, serving_redis, "10,100"):
            pass
    assert "FEATURESTORE_AUTH_LIMITS must be PER_CLIENT,OVERALL,WINDOW_SECONDS" in str(info.value)
    assert "Traceback" not in str(info.value)


def test_limits_from_the_environment() -> None:
    assert limits_from_env({}) == Limits()
    assert limits_from_env({LIMITS_ENV: "5, 20, 30"}) == Limits(5, 20, 30.0)
    for bad in ("5,20", "a,b,c", "0,20,30", "5,20,0", "5,20,30,1"):
        with pytest.raises(ConfigError, match="PER_CLIENT,OVERALL,WINDOW_SECONDS"):
            limits_from_env({LIMITS_ENV: bad})

"""Pushes over gRPC, HTTP and the client on a real `featurestore serve`: the same rows as
``FeatureStore.push`` end in the same Redis bytes and push log rows; refusals write nothing;
token scopes decide who may push."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featurestore.errors import (
    InvalidRequestError,
    OnlineStoreUnavailable,
    PermissionDeniedError,
    PushTargetNotFoundError,
    UnauthenticatedError,
)
from featurestore.offline import push_log
from featurestore.online.keys import entity_tag, view_key
from featurestore.online.push import MAX_PUSH_ROWS
from featurestore.serving import auth
from featurestore.serving.client import Client
from featurestore.serving.v1 import serving_pb2 as pb
from featurestore.serving.v1 import serving_pb2_grpc as pb_grpc
from tests.serving.support import SERVICE, SERVING, ServeProcess, health, open_store, readme_grpcurl_body
from tests.support.cli import one_line_error, run_cli
from tests.support.redis import RedisServer, free_port
from tests.support.repos import ROOT, materialized_example_repo

VIEW = "customer_profile"
READ_TOKEN = "read-token-0123456789abcdef"  # a line as tokens files have always had: read only
PUSH_TOKEN = "push-token-0123456789abcdef"
BOTH_TOKEN = "both-token-0123456789abcdef"
ENV_PUSH_TOKEN = "env-push-token-0123456789ab"
NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
NEW_ID = iter(range(9_000_000, 10_000_000))  # customers the data does not have


@pytest.fixture(scope="module")
def push_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(free_port(), tmp_path_factory.mktemp("push-redis")) as server:
        yield server


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, fresh_data: Path, push_redis: RedisServer) -> Path:
    """The example repo of the module's own: pushes add files and values other tests do not expect."""
    return materialized_example_repo(tmp_path_factory.mktemp("pushed") / "repo", fresh_data, push_redis.url)


@pytest.fixture(scope="module")
def open_server(repo: Path, push_redis: RedisServer) -> Iterator[ServeProcess]:
    """No tokens: lookups open to all, pushes from loopback only."""
    process = ServeProcess(repo, push_redis.url)
    try:
        yield process.start()
    finally:
        process.stop()


@pytest.fixture(scope="module")
def secured(
    repo: Path, push_redis: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServeProcess]:
    tokens = tmp_path_factory.mktemp("push-auth") / "tokens"
    tokens.write_text(f"# readers\n{READ_TOKEN}\n\n{PUSH_TOKEN} push\n{BOTH_TOKEN} read push\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FEATURESTORE_AUTH_TOKENS", f"{ENV_PUSH_TOKEN} push")
        process = ServeProcess(repo, push_redis.url, "--auth-tokens-file", str(tokens))
        process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def redis_client(push_redis: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(push_redis.url)
    yield client
    client.close()


def columns(ids: list[int], balance: float = 12.5) -> dict[str, list[Any]]:
    n = len(ids)
    return {
        "customer_id": ids,
        "event_timestamp": [NOW] * n,
        "created": [NOW + timedelta(seconds=1)] * n,
        "current_balance": [balance] * n,
        "lifetime_orders": [7] * n,
        "avg_order_value": [3.25] * n,
    }


def request(ids: list[int], **kw: Any) -> pb.PushFeaturesRequest:
    """The gRPC request for ``columns(ids)``, built by hand as a client in another language would."""
    c = columns(ids, **kw)
    r = pb.PushFeaturesRequest(view=VIEW)
    r.columns["customer_id"].int64_values.values.extend(c["customer_id"])
    for name in ("event_timestamp", "created"):
        micros = [int(t.timestamp()) * 1_000_000 for t in c[name]]
        r.columns[name].timestamp_values.values.extend(micros)
    r.columns["current_balance"].double_values.values.extend(c["current_balance"])
    r.columns["lifetime_orders"].int32_values.values.extend(c["lifetime_orders"])  # cast safely
    r.columns["avg_order_value"].float_values.values.extend(c["avg_order_value"])
    return r


def as_json(ids: list[int], **kw: Any) -> dict[str, Any]:
    c = columns(ids, **kw)
    c["event_timestamp"] = [t.isoformat() for t in c["event_timestamp"]]
    c["created"] = [int(t.timestamp()) * 1_000_000 for t in c["created"]]  # microseconds work too
    return {"view": VIEW, "columns": c}


def push_grpc(target: str, req: pb.PushFeaturesRequest, token: str | None = None) -> pb.PushFeaturesResponse:
    metadata = [("authorization", f"Bearer {token}")] if token else None
    with grpc.insecure_channel(target) as channel:
        return pb_grpc.FeatureServingStub(channel).PushFeatures(req, timeout=10, metadata=metadata)


def grpc_error(target: str, req: pb.PushFeaturesRequest, token: str | None = None) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        push_grpc(target, req, token)
    return info.value


def push_http(server: ServeProcess, body: Any, token: str | None = None) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{server.http_url}/v1/push", json=body, headers=headers, timeout=10)


def key(customer: int) -> str:
    return view_key(entity_tag("rides", ["customer_id"], [customer]), VIEW)


def log_files(repo: Path) -> list[Path]:
    return sorted(push_log.push_folder(repo / ".featurestore", VIEW).glob("*.parquet"))


def test_every_transport_pushes_what_feature_store_push_does(
    open_server: ServeProcess, repo: Path, redis_client: redis.Redis
) -> None:
    a, b, c, d = (next(NEW_ID) for _ in range(4))
    before = log_files(repo)

    reply = push_grpc(open_server.target, request([a]))
    assert (reply.view, reply.rows, reply.written, reply.kept_newer, reply.expired) == (VIEW, 1, 1, 0, 0)
    response = push_http(open_server, as_json([b]))
    assert response.status_code == 200, response.text
    assert response.json() | {"registry_version": 0} == {
        "view": VIEW,
        "rows": 1,
        "written": 1,
        "kept_newer": 0,
        "expired": 0,
        "registry_version": 0,
    }
    with Client(open_server.target) as client:
        result = client.push(VIEW, columns([c]))
        assert (result.rows, result.written) == (1, 1)
        store = open_store(repo)
        assert store.push(VIEW, pa.table(columns([d]))).written == 1
        store.close()

        served = client.get_online_features([f"{VIEW}:current_balance"], {"customer_id": [a, b, c, d]})
    assert served.statuses["current_balance"] == ["PRESENT"] * 4
    assert served.columns["current_balance"] == [12.5] * 4

    values = [redis_client.get(key(i)) for i in (a, b, c, d)]
    assert values[0] is not None and values == [values[0]] * 4  # the same bytes, run id included

    files = [f for f in log_files(repo) if f not in before]
    assert len(files) == 4
    tables = [pq.read_table(f) for f in files]
    assert all(t.schema == tables[0].schema for t in tables)
    assert [t.drop_columns(["customer_id"]) for t in tables] == [tables[0].drop_columns(["customer_id"])] * 4
    assert sorted(t.column("customer_id")[0].as_py() for t in tables) == [a, b, c, d]


def test_an_invalid_batch_is_refused_with_its_row_errors_and_nothing_written(
    open_server: ServeProcess, repo: Path, redis_client: redis.Redis
) -> None:
    before = log_files(repo)
    ok, bad = next(NEW_ID), next(NEW_ID)
    req = request([ok, bad])
    req.columns["event_timestamp"].null_positions.append(1)  # a row needs its event time
    error = grpc_error(open_server.target, req)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (
        "refused, nothing written" in error.details() and "row 1: column 'event_timestamp'" in error.details()
    )

    body = as_json([ok, bad])
    body["columns"]["event_timestamp"][1] = None
    response = push_http(open_server, body)
    assert response.status_code == 400
    err = response.json()["error"]
    assert err["code"] == "INVALID_ARGUMENT" and "row 1" in err["message"]
    assert [r["row"] for r in err["rows"]] == [1] and err["rows"][0]["column"] == "event_timestamp"

    with Client(open_server.target) as client, pytest.raises(InvalidRequestError, match="row 1"):
        client.push(VIEW, {**columns([ok, bad]), "event_timestamp": [NOW, None]})

    assert log_files(repo) == before
    assert redis_client.get(key(ok)) is None and redis_client.get(key(bad)) is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c.pop("lifetime_orders"), "column 'lifetime_orders' (declared Int64) is missing"),
        (lambda c: c.update(extra=[1]), "column(s) 'extra' are not declared"),
        (lambda c: c.update(lifetime_orders=["7"]), "column 'lifetime_orders' is string, declared Int64"),
        (lambda c: c.update(lifetime_orders=[1, 2]), "every column needs one value per row"),
        (lambda c: c.update(event_timestamp=["yesterday"]), "'yesterday' is not an ISO 8601 time"),
    ],
)
def test_http_column_errors_name_the_column(
    open_server: ServeProcess, repo: Path, change: Any, message: str
) -> None:
    before = log_files(repo)
    body = as_json([next(NEW_ID)])
    change(body["columns"])
    response = push_http(open_server, body)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]["message"]
    assert log_files(repo) == before


def test_an_unknown_view_is_not_found(open_server: ServeProcess) -> None:
    req = request([next(NEW_ID)])
    req.view = "no_such_view"
    error = grpc_error(open_server.target, req)
    assert error.code() == grpc.StatusCode.NOT_FOUND and "no_such_view" in error.details()
    response = push_http(open_server, {"view": "no_such_view", "columns": {}})
    assert response.status_code == 404 and response.json()["error"]["code"] == "NOT_FOUND"
    with Client(open_server.target) as client, pytest.raises(PushTargetNotFoundError):
        client.push("no_such_view", columns([1]))


def test_scopes_decide_who_may_push(secured: ServeProcess, repo: Path, redis_client: redis.Redis) -> None:
    before = log_files(repo)
    refused = next(NEW_ID)
    for token in (READ_TOKEN,):  # a read-only token: PERMISSION_DENIED, nothing written
        error = grpc_error(secured.target, request([refused]), token)
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED and "'push' scope" in error.details()
        response = push_http(secured, as_json([refused]), token)
        assert response.status_code == 403 and response.json()["error"]["code"] == "PERMISSION_DENIED"
        with Client(secured.target, token=token) as client, pytest.raises(PermissionDeniedError):
            client.push(VIEW, columns([refused]))
    for token in (None, "wrong-token-0000000000000"):  # no valid token: UNAUTHENTICATED as before
        assert grpc_error(secured.target, request([refused]), token).code() == grpc.StatusCode.UNAUTHENTICATED
        assert push_http(secured, as_json([refused]), token).status_code == 401
        with Client(secured.target, token=token or "") as client, pytest.raises(UnauthenticatedError):
            client.push(VIEW, columns([refused]))
    assert log_files(repo) == before and redis_client.get(key(refused)) is None

    pushed = [next(NEW_ID) for _ in range(3)]
    for token, customer in zip((PUSH_TOKEN, BOTH_TOKEN, ENV_PUSH_TOKEN), pushed, strict=True):
        assert push_grpc(secured.target, request([customer]), token).written == 1
    assert push_http(secured, as_json([next(NEW_ID)]), PUSH_TOKEN).status_code == 200
    assert len(log_files(repo)) == len(before) + 4

    lookup = pb.GetOnlineFeaturesRequest(features=[f"{VIEW}:current_balance"])
    lookup.entities["customer_id"].int64_values.values.extend(pushed)
    with grpc.insecure_channel(secured.target) as channel:
        stub = pb_grpc.FeatureServingStub(channel)
        for token in (READ_TOKEN, BOTH_TOKEN):  # the old line still reads
            answer = stub.GetOnlineFeatures(
                lookup, timeout=5, metadata=[("authorization", f"Bearer {token}")]
            )
            assert list(answer.features[0].statuses) == [pb.PRESENT] * 3
        with pytest.raises(grpc.RpcError) as info:  # a push-only token does not read
            stub.GetOnlineFeatures(lookup, timeout=5, metadata=[("authorization", f"Bearer {PUSH_TOKEN}")])
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    headers = {"authorization": f"Bearer {PUSH_TOKEN}"}
    assert httpx.get(f"{secured.http_url}/v1/features", headers=headers).status_code == 403


@pytest.mark.parametrize(
    ("peer", "loopback"),
    [
        ("ipv4:127.0.0.1:5000", True),
        ("ipv4:127.3.2.1:1", True),
        ("ipv6:[::1]:5000", True),
        ("ipv6:[::ffff:127.0.0.1]:5000", True),
        ("127.0.0.1", True),
        ("::1", True),
        ("unix:/tmp/s", True),
        ("ipv4:10.0.0.5:5000", False),
        ("ipv6:[::ffff:10.0.0.5]:1", False),
        ("192.168.1.2", False),
        ("", False),
        (None, False),
        ("ipv4:not-an-address:1", False),
    ],
)
def test_loopback_peers(peer: str | None, loopback: bool) -> None:
    assert auth.is_loopback(peer) is loopback


def test_scope_syntax(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"{READ_TOKEN}\n{PUSH_TOKEN} push\n{BOTH_TOKEN}  read   push\n")
    tokens = auth.Tokens(auth.read_tokens_file(path))
    assert tokens.scopes(READ_TOKEN) == {"read"}
    assert tokens.scopes(PUSH_TOKEN) == {"push"}
    assert tokens.scopes(BOTH_TOKEN) == {"read", "push"}
    assert tokens.scopes("nope") is None and tokens.scopes(None) is None
    path.write_text(f"{PUSH_TOKEN} read,push\n")
    with pytest.raises(auth.ConfigError, match="not scopes .* separated by spaces: read, push") as info:
        auth.read_tokens_file(path)
    assert PUSH_TOKEN not in str(info.value)


def test_oversized_pushes_are_refused_before_any_work(
    open_server: ServeProcess, repo: Path, redis_client: redis.Redis
) -> None:
    before = log_files(repo)
    huge = request([next(NEW_ID)])
    huge.columns["note"].bytes_values.values.append(b"x" * (17 * 2**20))  # over the 16 MiB message limit
    assert grpc_error(open_server.target, huge).code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    body = b'{"view": "customer_profile", "columns": {"x": ["' + b"x" * (17 * 2**20) + b'"]}}'
    response = httpx.post(
        f"{open_server.http_url}/v1/push", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413

    many = list(range(MAX_PUSH_ROWS + 1))
    error = grpc_error(open_server.target, request(many))
    assert (
        error.code() == grpc.StatusCode.INVALID_ARGUMENT
        and "more than the limit of 100,000" in error.details()
    )
    response = push_http(open_server, {"view": VIEW, "columns": {"customer_id": many}})
    assert response.status_code == 400 and "more than the limit" in response.json()["error"]["message"]
    assert log_files(repo) == before


def test_with_redis_stopped_the_push_is_unavailable_and_durable(
    repo: Path, tmp_path: Path, push_redis: RedisServer
) -> None:
    own = RedisServer(free_port(), tmp_path)
    own.start()
    server = ServeProcess(repo, own.url)
    try:
        server.start()
        own.stop()
        before = log_files(repo)
        error = grpc_error(server.target, request([next(NEW_ID)]))
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert "durable offline but were not written online" in error.details()
        response = push_http(server, as_json([next(NEW_ID)]))
        assert response.status_code == 503 and "durable offline" in response.json()["error"]["message"]
        with Client(server.target) as client, pytest.raises(OnlineStoreUnavailable, match="durable offline"):
            client.push(VIEW, columns([next(NEW_ID)]))
        assert len(log_files(repo)) == len(before) + 3  # each batch whole in the push log
    finally:
        server.stop()
        own.stop()


def _outside_address() -> str | None:
    """An address of this machine that is not loopback, None if it has none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent: it only picks the outgoing address
            address: str = s.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def test_without_tokens_only_loopback_may_push(repo: Path, push_redis: RedisServer) -> None:
    address = _outside_address()
    if address is None:
        pytest.skip("this machine has no address beyond loopback")
    server = ServeProcess(repo, push_redis.url, "--host", "0.0.0.0")
    try:
        server.start()
        port = server.grpc_port
        with grpc.insecure_channel(f"{address}:{port}") as channel:
            stub = pb_grpc.FeatureServingStub(channel)
            with pytest.raises(grpc.RpcError) as info:
                stub.PushFeatures(request([next(NEW_ID)]), timeout=5)
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "only from loopback" in info.value.details()
            lookup = pb.GetOnlineFeaturesRequest(features=[f"{VIEW}:current_balance"])
            lookup.entities["customer_id"].int64_values.values.append(1)
            stub.GetOnlineFeatures(lookup, timeout=5)  # lookups stay open, as before
        response = httpx.post(f"http://{address}:{server.http_port}/v1/push", json=as_json([1]), timeout=5)
        assert response.status_code == 403
        assert push_grpc(server.target, request([next(NEW_ID)])).written == 1  # loopback may
    finally:
        server.stop()


def test_pushes_are_counted_with_fixed_labels(open_server: ServeProcess) -> None:
    push_grpc(open_server.target, request([next(NEW_ID)]))
    push_http(open_server, {"view": "made_up_view", "columns": {}})
    text = httpx.get(f"{open_server.http_url}/metrics", timeout=5).text
    assert 'featurestore_pushes_total{outcome="ok",transport="grpc"}' in text
    assert 'featurestore_pushes_total{outcome="not_found",transport="http"}' in text
    assert f'featurestore_pushed_rows_total{{result="written",view="{VIEW}"}}' in text
    assert "made_up_view" not in text


def test_the_cli_pushes_a_file_through_a_server(secured: ServeProcess, repo: Path, tmp_path: Path) -> None:
    customer = next(NEW_ID)
    path = tmp_path / "rows.parquet"
    pq.write_table(pa.table(columns([customer])), path)
    args = ("push", "--server", secured.target, "--view", VIEW, str(path))
    refused = run_cli(*args, env={"FEATURESTORE_AUTH_TOKEN": READ_TOKEN})
    one_line_error(refused, "PERMISSION_DENIED", "'push' scope")
    ok = run_cli(*args, env={"FEATURESTORE_AUTH_TOKEN": PUSH_TOKEN})
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(f"pushed 1 row(s) to {VIEW} (through {secured.target}): 1 written online")
    assert PUSH_TOKEN not in ok.stdout + ok.stderr + refused.stderr


def test_random_and_corrupted_push_bytes_get_a_precise_status(open_server: ServeProcess) -> None:
    """Never UNKNOWN or INTERNAL: a corrupted batch is refused or, when still valid, pushed."""
    good = request([next(NEW_ID), next(NEW_ID)]).SerializeToString()
    allowed = {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.NOT_FOUND,
    }

    @st.composite
    def corrupted(draw: st.DrawFn) -> bytes:
        data = bytearray(good)
        for _ in range(draw(st.integers(1, 4))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return bytes(data)

    with grpc.insecure_channel(open_server.target) as channel:
        raw = channel.unary_unary(f"/{SERVICE}/PushFeatures")

        @settings(
            deadline=None,
            derandomize=True,
            database=None,
            max_examples=150,
            suppress_health_check=list(HealthCheck),
        )
        @given(data=st.binary(max_size=300) | corrupted())
        def check(data: bytes) -> None:
            try:
                answer: Any = raw(data, timeout=10)
            except grpc.RpcError as e:
                assert e.code() in allowed, f"{e.code()}: {e.details()}"
                return
            assert pb.PushFeaturesResponse.FromString(answer).rows > 0

        check()
    assert health(open_server.target) == SERVING


def test_the_readme_push_examples_are_valid(open_server: ServeProcess) -> None:
    """README's grpcurl body parses as grpcurl parses it and is pushed; its curl body too."""
    request = json_format.Parse(readme_grpcurl_body("PushFeatures"), pb.PushFeaturesRequest())
    assert push_grpc(open_server.target, request).rows == 1
    readme = (ROOT / "README.md").read_text()
    curl = re.search(r"curl -s localhost:6567/v1/push [^\n]* -d '([^']*)'", readme)
    assert curl, "README has no curl example of /v1/push"
    response = push_http(open_server, json.loads(curl.group(1)))
    assert response.status_code == 200 and response.json()["rows"] == 1


def test_a_push_to_an_aggregation_view_is_served_at_once_over_every_transport(
    open_server: ServeProcess, repo: Path
) -> None:
    driver = next(NEW_ID)
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)

    def trip(fare: float, payment: str) -> dict[str, list[Any]]:
        return {"driver_id": [driver], "event_timestamp": [at], "customer_id": [7],
                "fare": [fare], "distance_km": [3.0], "payment": [payment], "tip": [1.0]}

    features = ["driver_trips:trips_1h", "driver_trips:fare_sum_1d", "driver_trips:payment_last3_1d"]
    with Client(open_server.target) as client:
        first = client.push("driver_trips", trip(10.0, "card"))
        assert (first.rows, first.written, first.expired) == (1, 1, 0)
        at -= timedelta(seconds=1)  # an older event of the same driver, through HTTP
        body = trip(2.5, "cash") | {"event_timestamp": [at.isoformat()]}
        response = push_http(open_server, {"view": "driver_trips", "columns": body})
        assert response.status_code == 200, response.text
        served = client.get_online_features(features, {"driver_id": [driver]})
    assert served.columns["trips_1h"] == [2]
    assert served.columns["fare_sum_1d"] == [12.5]
    assert served.columns["payment_last3_1d"] == [["card", "cash"]]

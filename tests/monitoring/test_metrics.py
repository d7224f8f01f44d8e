"""/metrics counts the real requests a real server answered: per method, status and view."""

from __future__ import annotations

import glob
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import grpc
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import featurestore
from featurestore.errors import InvalidRequestError
from tests.serving.support import ServeProcess
from tests.support.metrics import sample, scrape
from tests.support.redis import RedisServer

GET_ONLINE = "/featurestore.serving.v1.FeatureServing/GetOnlineFeatures"
ONLINE_ROUTE = "POST /v1/online-features"
# Drivers 1001-1100 and customers 5001-5200 exist; driver 7 and customer 9 do not.
ENTITIES = {"driver_id": [1001, 1002, 7], "customer_id": [5001, 9, 5003]}
BODY = {"feature_service": "trip_model", "entities": ENTITIES}


def _lookups(server: ServeProcess, grpc_ok: int, grpc_bad: int, http_ok: int, http_bad: int) -> None:
    with featurestore.Client(server.target, timeout=10) as client:
        for _ in range(grpc_ok):
            response = client.get_online_features("trip_model", ENTITIES)
            assert response.statuses["conv_rate"] == ["PRESENT", "PRESENT", "NOT_FOUND"]
            assert response.statuses["lifetime_orders"] == ["PRESENT", "NOT_FOUND", "PRESENT"]
        for _ in range(grpc_bad):
            with pytest.raises(InvalidRequestError):
                client.get_online_features(["driver_stats:no_such_feature"], ENTITIES)
    for _ in range(http_ok):  # a new connection each: with workers, the kernel spreads them
        response = httpx.post(f"{server.http_url}/v1/online-features", json=BODY, timeout=10)
        assert response.status_code == 200, response.text
    for _ in range(http_bad):
        response = httpx.post(f"{server.http_url}/v1/online-features", json={"entities": {}}, timeout=10)
        assert response.status_code == 400, response.text


def _assert_counts(samples: dict, grpc_ok: int, grpc_bad: int, http_ok: int, http_bad: int) -> None:
    count = "featurestore_request_duration_seconds_count"
    assert sample(samples, count, transport="grpc", method=GET_ONLINE, status="OK") == grpc_ok
    assert sample(samples, count, transport="grpc", method=GET_ONLINE, status="INVALID_ARGUMENT") == grpc_bad
    assert sample(samples, count, transport="http", method=ONLINE_ROUTE, status="200") == http_ok
    assert sample(samples, count, transport="http", method=ONLINE_ROUTE, status="400") == http_bad
    served = grpc_ok + http_ok  # requests that reached Redis
    assert sample(samples, "featurestore_redis_duration_seconds_count") == served
    lookups = "featurestore_online_lookups_total"
    assert sample(samples, lookups, view="driver_stats", status="FOUND") == 2 * served
    assert sample(samples, lookups, view="driver_stats", status="NOT_FOUND") == served
    assert sample(samples, lookups, view="customer_profile", status="FOUND") == 2 * served
    assert sample(samples, lookups, view="customer_profile", status="NOT_FOUND") == served
    assert sample(samples, lookups, view="driver_stats", status="EXPIRED") == 0
    for view in ("driver_stats", "customer_profile"):  # one sampled age per request and view
        assert sample(samples, "featurestore_served_value_age_seconds_count", view=view) == served


def _newest_in_duckdb(repo: Path, view: str) -> tuple[float, int, int]:
    """Independent reference: the newest materialized event time, rows read and entities written."""
    con = duckdb.connect(str(repo / ".featurestore" / "store.duckdb"), read_only=True)
    try:
        mark = con.execute("SELECT watermark FROM rides.online_watermarks WHERE view = ?", [view]).fetchone()
        newest = con.execute(
            f"SELECT max(__event_ts) FROM rides.offline_{view} WHERE __event_ts < ?", [mark[0]]
        ).fetchone()
        run = con.execute(
            "SELECT sum(rows_read), sum(entities_written) FROM rides.materialization_runs"
        ).fetchone()
    finally:
        con.close()
    return newest[0].timestamp(), int(run[0]), int(run[1])


def test_metrics_count_grpc_and_http_requests(served_repo: Path, monitoring_redis: RedisServer) -> None:
    server = ServeProcess(served_repo, monitoring_redis.url).start()
    try:
        _lookups(server, grpc_ok=4, grpc_bad=2, http_ok=3, http_bad=1)
        response = httpx.get(f"{server.http_url}/no/such/route", timeout=10)
        assert response.status_code == 404
        samples = scrape(server.http_url)
        _assert_counts(samples, grpc_ok=4, grpc_bad=2, http_ok=3, http_bad=1)
        count = "featurestore_request_duration_seconds_count"
        assert sample(samples, count, transport="http", method="GET other", status="404") == 1
        # The histogram is one: its +Inf bucket holds every request, and durations add up.
        assert sample(
            samples, "featurestore_request_duration_seconds_bucket",
            transport="grpc", method=GET_ONLINE, status="OK", le="+Inf",
        ) == 4
        assert 0 < sample(samples, "featurestore_request_duration_seconds_sum",
                          transport="grpc", method=GET_ONLINE, status="OK") < 40
        # Served values are at most the TTL old (2 days for drivers): their ages say so.
        ages = sample(samples, "featurestore_served_value_age_seconds_sum", view="driver_stats") / 7
        assert 0 <= ages <= 2 * 86400

        # Materialization ran in another process: the figures come from its run state.
        newest, rows_read, written = _newest_in_duckdb(served_repo, "driver_stats")
        assert sample(samples, "featurestore_materialization_runs_total", status="succeeded") == 1
        assert sample(samples, "featurestore_materialization_rows_read_total") == rows_read > 0
        assert sample(samples, "featurestore_materialization_entities_written_total") == written > 0
        newest_metric = "featurestore_online_newest_event_timestamp_seconds"
        assert sample(samples, newest_metric, view="driver_stats") == newest
        assert sample(samples, "featurestore_online_ttl_seconds", view="driver_stats") == 2 * 86400
        assert sample(samples, "featurestore_online_stale", view="driver_stats") == 0
        assert abs(newest - datetime.now(UTC).timestamp()) < 3 * 3600  # the data ends at this hour

        # The scrape itself is a request too, counted once it is answered.
        again = scrape(server.http_url)
        assert sample(again, count, transport="http", method="GET /metrics", status="200") == 1
        _assert_counts(again, grpc_ok=4, grpc_bad=2, http_ok=3, http_bad=1)
    finally:
        assert server.stop() == 0


def test_metrics_sum_over_workers(served_repo: Path, monitoring_redis: RedisServer) -> None:
    server = ServeProcess(served_repo, monitoring_redis.url, "--workers", "2").start()
    assert server.process is not None
    folders = glob.glob(str(Path(tempfile.gettempdir()) / f"featurestore-metrics-{server.process.pid}-*"))
    try:
        assert len(folders) == 1, folders  # the workers' private metrics folder
        _lookups(server, grpc_ok=3, grpc_bad=1, http_ok=12, http_bad=2)
        # Each scrape (a new connection) may be answered by either worker: both sum every worker.
        for _ in range(4):
            _assert_counts(scrape(server.http_url), grpc_ok=3, grpc_bad=1, http_ok=12, http_bad=2)
    finally:
        assert server.stop() == 0
    assert not Path(folders[0]).exists()  # removed at shutdown


def test_refused_requests_are_counted(
    served_repo: Path, monitoring_redis: RedisServer, tmp_path: Path
) -> None:
    """401s and UNAUTHENTICATED answers are counted; a made-up method or path adds no label."""
    token = "metrics-token-0123456789abcdef"
    (tmp_path / "tokens").write_text(token)
    server = ServeProcess(
        served_repo, monitoring_redis.url, "--auth-tokens-file", str(tmp_path / "tokens")
    ).start()
    try:
        with grpc.insecure_channel(server.target) as channel:
            for method, times in ((GET_ONLINE, 3), ("/no.such.Service/Method", 2)):
                for _ in range(times):
                    with pytest.raises(grpc.RpcError) as info:
                        channel.unary_unary(method)(b"", timeout=10)
                    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        for path, times in (("/v1/online-features", 4), ("/made/up", 1)):
            for _ in range(times):
                assert httpx.post(f"{server.http_url}{path}", json=BODY, timeout=10).status_code == 401
        assert httpx.get(f"{server.http_url}/metrics", timeout=10).status_code == 401
        with featurestore.Client(server.target, timeout=10, token=token) as client:
            client.get_online_features("trip_model", ENTITIES)

        response = httpx.get(
            f"{server.http_url}/metrics", headers={"authorization": f"Bearer {token}"}, timeout=10
        )
        assert response.status_code == 200
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text)
            for s in family.samples
        }
        count = "featurestore_request_duration_seconds_count"
        assert sample(samples, count, transport="grpc", method=GET_ONLINE, status="UNAUTHENTICATED") == 3
        assert sample(samples, count, transport="grpc", method="other", status="UNAUTHENTICATED") == 2
        assert sample(samples, count, transport="grpc", method=GET_ONLINE, status="OK") == 1
        assert sample(samples, count, transport="http", method=ONLINE_ROUTE, status="401") == 4
        assert sample(samples, count, transport="http", method="POST other", status="401") == 1
        assert sample(samples, count, transport="http", method="GET /metrics", status="401") == 1
        methods = {dict(labels).get("method") for name, labels in samples if name == count}
        assert not any("no.such" in str(m) or "made" in str(m) for m in methods), methods
    finally:
        assert server.stop() == 0


def _series(text: str) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    return {
        (s.name, tuple(sorted(s.labels.items())))
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_made_up_methods_paths_and_names_add_no_series(
    served_repo: Path, monitoring_redis: RedisServer, tmp_path: Path
) -> None:
    """The attack: with tokens on, thousands of distinct 2,000-character HTTP methods, paths,
    gRPC methods and feature names. Every label a client controls comes from a fixed set, so
    a second round of new names adds no series and /metrics stays the size it was."""
    token = "metrics-token-0123456789abcdef"
    (tmp_path / "tokens").write_text(token)
    server = ServeProcess(
        served_repo, monitoring_redis.url, "--auth-tokens-file", str(tmp_path / "tokens")
    ).start()
    auth = {"authorization": f"Bearer {token}"}
    rounds = iter(range(1_000_000))

    def attack(times: int) -> None:
        with httpx.Client(base_url=server.http_url, timeout=10) as http, grpc.insecure_channel(
            server.target
        ) as channel:
            for _ in range(times):
                name = f"X{next(rounds):08d}".ljust(2000, "Z")
                # Made-up methods and paths, without and with a token: 401, then 404/405.
                assert http.request(name, "/v1/online-features").status_code == 401
                assert http.request(name, f"/{name.lower()}").status_code == 401
                assert http.request(name, "/v1/online-features", headers=auth).status_code in (404, 405)
                assert http.request("GET", f"/{name.lower()}", headers=auth).status_code == 404
                with pytest.raises(grpc.RpcError) as info:
                    channel.unary_unary(f"/{name}/{name}")(b"", timeout=10)
                assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
                # Names of features and services that do not exist: errors, counted by code only.
                body = {"features": [f"{name}:{name}"], "entities": {"driver_id": [1001]}}
                response = http.post("/v1/online-features", json=body, headers=auth)
                assert response.status_code == 400, response.text
                service = {"feature_service": name, "entities": {"driver_id": [1001]}}
                assert http.post("/v1/online-features", json=service, headers=auth).status_code == 400
                with featurestore.Client(server.target, timeout=10, token=token) as client:
                    with pytest.raises(InvalidRequestError):
                        client.get_online_features([f"{name}:{name}"], {"driver_id": [1001]})

    def metrics() -> str:
        response = httpx.get(f"{server.http_url}/metrics", headers=auth, timeout=10)
        assert response.status_code == 200
        return response.text

    try:
        attack(60)  # every kind of answer has been counted once at least
        metrics()  # a scrape is counted once answered: the next one shows it
        first = metrics()
        attack(240)
        second = metrics()
        assert _series(second) == _series(first)  # 240 x 6 new names: not one new series
        assert len(second) < len(first) + 2_000  # only counts and sums grew a digit or two
        count = "featurestore_request_duration_seconds_count"
        methods = {dict(labels)["method"] for name, labels in _series(second) if name == count}
        http_routes = {m for m in methods if not m.startswith("/")}
        assert {m.split(" ", 1)[0] for m in http_routes} <= {"GET", "POST", "other"}, methods
        assert all(len(m) < 100 for m in methods), methods
        assert all("Z" * 10 not in str(labels) for _, labels in _series(second))
    finally:
        assert server.stop() == 0

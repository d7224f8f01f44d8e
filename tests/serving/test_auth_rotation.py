"""Bearer tokens rotate without a restart: a real `featurestore serve` reads its tokens file again
when the file changes and keeps the environment's tokens; a file that breaks refuses everyone."""

from __future__ import annotations

import os
from pathlib import Path

import grpc
import httpx
import pytest

from featurestore.serving import auth, auth_limit
from featurestore.serving.grpc_server import NOT_SERVING, SERVING
from featurestore.serving.v1 import serving_pb2 as pb
from tests.serving.support import SERVICE, ServeProcess, health
from tests.support.redis import RedisServer
from tests.support.waiting import wait_for

OLD = "old-token-0123456789abcdef"
NEW = "new-token-fedcba9876543210"
ENV = "env-token-aaaabbbbccccdddd"


def _grpc_code(target: str, token: str) -> grpc.StatusCode:
    request = pb.GetOnlineFeaturesRequest(features=["driver_stats:conv_rate"])
    request.entities["driver_id"].int64_values.values.extend([1001])
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(f"/{SERVICE}/GetOnlineFeatures")
        try:
            call(request.SerializeToString(), timeout=5, metadata=[("authorization", f"Bearer {token}")])
        except grpc.RpcError as e:
            return e.code()
    return grpc.StatusCode.OK


def _http_status(server: ServeProcess, token: str) -> int:
    body = {"features": ["driver_stats:conv_rate"], "entities": {"driver_id": [1001]}}
    headers = {"authorization": f"Bearer {token}"}
    response = httpx.post(f"{server.http_url}/v1/online-features", json=body, headers=headers, timeout=10)
    return response.status_code


def _accepted(server: ServeProcess, token: str) -> tuple[bool, bool]:
    """Whether gRPC and HTTP accept ``token``."""
    return _grpc_code(server.target, token) == grpc.StatusCode.OK, _http_status(server, token) == 200


def _replace(path: Path, text: str) -> None:
    """Write a new file and move it over the old one, as secret managers do."""
    partial = path.with_suffix(".new")
    partial.write_text(text)
    os.replace(partial, path)


def test_a_changed_tokens_file_is_read_again_without_a_restart(
    served_repo: Path, serving_redis: RedisServer, tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{OLD}\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(auth.TOKENS_ENV, ENV)
        # It polls with tokens not (or no longer) in force: those guesses must not lock it out
        # (test_auth_limit.py tests the limit).
        mp.setenv(auth_limit.LIMITS_ENV, "1000000,1000000,60")
        server = ServeProcess(served_repo, serving_redis.url, "--auth-tokens-file", str(tokens)).start()
    try:
        pid = server.process.pid if server.process else None
        assert _accepted(server, OLD) == (True, True) and _accepted(server, NEW) == (False, False)

        _replace(tokens, f"{OLD}\n{NEW}\n")  # rotation, step 1: both
        wait_for(lambda: _accepted(server, NEW) == (True, True), 30, "the new token accepted")
        assert _accepted(server, OLD) == (True, True)

        _replace(tokens, f"{NEW}\n")  # step 2: the old one goes
        wait_for(lambda: _accepted(server, OLD) == (False, False), 30, "the old token refused")
        assert _accepted(server, NEW) == (True, True)
        assert _accepted(server, ENV) == (True, True)  # the environment's token stays

        # A file emptied (or deleted) fails closed: a token meant to be revoked must not stay valid,
        # so every token, the environment's too, is refused, and the log and health say why.
        _replace(tokens, "# nothing yet\n")
        wait_for(lambda: _accepted(server, NEW) == (False, False), 30, "every token refused")
        assert _accepted(server, ENV) == (False, False) and _accepted(server, OLD) == (False, False)
        assert "holds no tokens (one a line): every request is refused" in server.stderr
        wait_for(lambda: health(server.target) == NOT_SERVING, 30, "health NOT_SERVING")
        assert httpx.get(f"{server.http_url}/healthz", timeout=10).status_code == 503

        _replace(tokens, f"{NEW}\n")  # fixed: served again, still without a restart
        wait_for(lambda: _accepted(server, NEW) == (True, True), 30, "the new token accepted again")
        assert _accepted(server, ENV) == (True, True) and _accepted(server, OLD) == (False, False)
        wait_for(lambda: health(server.target) == SERVING, 30, "health SERVING again")
        body = {"features": ["driver_stats:conv_rate"], "entities": {"driver_id": [1001]}}
        assert httpx.post(f"{server.http_url}/v1/online-features", json=body, timeout=10).status_code == 401

        assert server.process is not None and server.process.pid == pid  # never restarted
        for secret in (OLD, NEW, ENV):
            assert secret not in server.stderr
    finally:
        assert server.stop() == 0

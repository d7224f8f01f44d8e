"""`featurestore get --request`: request fields for on-demand features, in process and through a server."""

from __future__ import annotations

from pathlib import Path

from tests.serving.support import ServeProcess
from tests.support.cli import one_line_error, run_cli
from tests.support.redis import RedisServer


def test_get_sends_request_fields_typed_as_declared(
    od_repo: Path, od_redis: RedisServer, od_server: ServeProcess
) -> None:
    env = {"FEATURESTORE_REDIS_URL": od_redis.url}
    ask = [
        "--entity",
        "driver_id=0,0",
        "--features",
        "chooser:x_int,chooser:picked",
        "--request",
        "x=1.4,2.6",
        "-r",
        "flag=true,false",
    ]
    for where in ([], ["--server", od_server.target]):
        got = run_cli("get", "--repo", str(od_repo), *ask, *where, env=env)
        assert got.returncode == 0, got.stderr
        cells = [[c for c in line.split() if c not in "│┃"] for line in got.stdout.splitlines()]
        assert ["x_int", "1", "PRESENT"] in [c[:3] for c in cells], got.stdout  # 1.4 rounded
        assert ["x_int", "3", "PRESENT"] in [c[:3] for c in cells]  # 2.6
        assert ["picked", "2.6", "PRESENT"] in [c[:3] for c in cells]  # flag false: x

    missing = run_cli(
        "get", "--repo", str(od_repo), "--entity", "driver_id=0", "--features", "chooser:x_int", env=env
    )
    one_line_error(missing, "missing request field 'x', which on-demand view 'chooser' reads")
    bad = run_cli("get", "--repo", str(od_repo), *ask[:4], "--request", "x=far", "-r", "flag=true", env=env)
    one_line_error(bad, "--request value 'far' is not a number")

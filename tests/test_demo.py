"""`make demo` keeps working: its two scripts, run as the Makefile runs them, on a copy of the
example repo with tiny data, a redis-server of its own and free gRPC and HTTP ports."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.support.redis import free_port
from tests.support.repos import ROOT, copy_example_repo


def run(*args: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    """A script from the project's root (the demo finds .venv/bin there), in its own process
    group, so a server it left behind on a timeout goes with it."""
    process = subprocess.Popen(
        args, cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        out, _ = process.communicate(timeout=timeout)
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
    return subprocess.CompletedProcess(args, process.returncode, out)


def test_make_demo_runs_end_to_end(tmp_path: Path, fresh_data: Path) -> None:
    if not (ROOT / ".venv" / "bin" / "featurestore").exists():
        pytest.fail("the demo runs .venv/bin/featurestore: run the tests through 'make test'")
    # `make data` writes data ending at the current hour (fresh_data, at the tiny scale here).
    repo = copy_example_repo(tmp_path / "definitions", fresh_data)
    redis_port, grpc_port, http_port, ui_port = free_port(), free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "FEATURESTORE_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "DEMO_GRPC_PORT": str(grpc_port),
        "DEMO_HTTP_PORT": str(http_port),
        "DEMO_UI_PORT": str(ui_port),
    }
    env.pop("FEATURESTORE_DEBUG", None)
    # Nothing answers on the port: ensure_redis.sh starts a redis-server there, as on a fresh machine.
    started = run("scripts/ensure_redis.sh", str(repo), env=env, timeout=30)
    try:
        assert started.returncode == 0, started.stdout
        assert f"started redis-server on 127.0.0.1:{redis_port}" in started.stdout
        demo = run("definitions/demo.sh", str(repo), env=env, timeout=180)
    finally:
        stopped = run("scripts/ensure_redis.sh", "--stop", str(repo), env=env, timeout=30)
    assert demo.returncode == 0, demo.stdout
    assert "Traceback" not in demo.stdout
    assert "stopped the redis-server this script started" in stopped.stdout

    out = demo.stdout
    assert (repo / "out" / "trip_model_training.parquet").is_file()
    assert "rows; the first five, some columns:" in out
    # Online: the CLI over gRPC finds the driver and not the unknown one; the gRPC client and
    # the HTTP endpoint answer with values.
    assert "PRESENT" in out and "NOT_FOUND" in out
    assert "{'driver_id': " in out and "'conv_rate': " in out
    assert '"statuses":["PRESENT"]' in out
    # The web console answered on the demo's store, and its address is printed.
    assert f"the console answers at http://127.0.0.1:{ui_port}/: its catalog lists 3 feature views" in out
    assert f"featurestore ui --repo {repo}" in out
    # On-demand: trip_fit in a training set and served with request data (client and HTTP).
    assert (repo / "out" / "pricing_model_training.parquet").is_file()
    assert "earnings_per_trip" in out and "'km_over_last_trip': " in out
    assert '"reference":"trip_fit:km_over_last_trip"' in out
    # Push: the pushed conv_rate (0.99 as Float32) served at once over HTTP, then in a training
    # set at the push time once ingested with the push log.
    assert '"values":[0.9900000095367432]' in out
    assert "training set row at the push time:" in out
    pushed_row = out.split("training set row at the push time:", 1)[1].splitlines()[0]
    assert "'conv_rate': 0.9900000095367432" in pushed_row, pushed_row

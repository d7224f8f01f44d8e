"""The console mounted in the server (``featurestore serve --ui``): at /ui on the HTTP port,
behind its login while the API keeps its bearer check, with the server's live lookup figures."""

from __future__ import annotations

import html
import os
import re
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.cli import FEATURESTORE
from tests.support.redis import free_port
from tests.ui.support import TOKEN, Demo


@pytest.fixture
def server(demo: Demo) -> Iterator[str]:
    http_port = free_port()
    env = {**os.environ, "FEATURESTORE_AUTH_TOKENS": TOKEN, "FEATURESTORE_REDIS_URL": demo.redis_url}
    process = subprocess.Popen(
        [
            FEATURESTORE,
            "serve",
            "--repo",
            str(demo.repo),
            "--grpc-port",
            str(free_port()),
            "--http-port",
            str(http_port),
            "--ui",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{http_port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, (
                process.stderr and process.stderr.read()
            )
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(30)


def test_the_console_at_ui_beside_the_api_with_live_lookup_figures(server: str) -> None:
    with httpx.Client(base_url=server) as http:
        assert http.get("/ui/").status_code == 303  # its login page
        bare = http.get("/ui", headers={"authorization": f"Bearer {TOKEN}"})
        assert bare.headers["location"] == "/ui/"
        assert http.post("/v1/online-features", json={}).status_code == 401  # the API as before
        lookup = {"features": ["driver_stats:conv_rate"], "entities": {"driver_id": [1001, 1002]}}
        for _ in range(3):
            answered = http.post(
                "/v1/online-features", json=lookup, headers={"authorization": f"Bearer {TOKEN}"}
            )
            assert answered.status_code == 200
        logged_in = http.post("/ui/login", data={"token": TOKEN, "next": "/ui/health"})
        assert logged_in.status_code == 303 and logged_in.headers["location"] == "/ui/health"
        assert "Path=/ui" in logged_in.headers["set-cookie"]
        page = http.get("/ui/health")  # the client keeps the cookie
    assert page.status_code == 200
    row = re.search(r'<tr data-transport="http">(.*?)</tr>', page.text, re.S)
    assert row is not None, page.text
    cells = [
        html.unescape(re.sub(r"<[^>]+>", "", c)).strip()
        for c in re.findall(r"<td[^>]*>(.*?)</td>", row.group(1))
    ]
    assert cells[0] == "http" and cells[1] == "3"  # three lookups since start
    assert cells[3].startswith("≤ ")  # a latency
    assert 'href="/ui/catalog/feature_view/driver_stats"' in page.text  # links stay under /ui

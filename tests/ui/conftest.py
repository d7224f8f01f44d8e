"""The console's test fixtures: one demo store, one console server and one logged-in Chromium
for the session (a browser start costs about a second); a screenshot of the page is saved in
the test's tmp dir when a test fails."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver

from featurestore.config import load_config
from featurestore.serving.auth import PUSH, READ, Tokens
from featurestore.ui.server import ConsoleServer
from tests.support.browser import chromium
from tests.support.redis import RedisServer, free_port
from tests.ui.support import FAILED, PUSH_ONLY, TOKEN, Demo, build, log_in


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    if report.when == "call":
        item.stash[FAILED] = report.failed
    return report


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory, fresh_data: Path) -> Iterator[Demo]:
    with RedisServer(free_port(), tmp_path_factory.mktemp("ui-redis")) as redis_server:
        repo, training_set = build(tmp_path_factory.mktemp("ui") / "repo", fresh_data, redis_server.url)
        tokens = Tokens([(TOKEN, (READ,)), (PUSH_ONLY, (PUSH,))])
        with ConsoleServer(load_config(repo), tokens) as server:
            yield Demo(repo, training_set, server.url.rstrip("/"), redis_server.url)


@pytest.fixture(scope="session")
def session_browser(demo: Demo) -> Iterator[webdriver.Chrome]:
    driver = chromium()
    try:
        log_in(driver, demo.url, TOKEN)
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def browser(
    session_browser: webdriver.Chrome, demo: Demo, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[webdriver.Chrome]:
    """The session's Chromium, logged in; the page is saved as a PNG in tmp_path if the test fails."""
    yield session_browser
    if request.node.stash.get(FAILED, False):
        shot = tmp_path / f"{request.node.name}.png"
        session_browser.save_screenshot(str(shot))
        print(f"screenshot of the page at {session_browser.current_url}: {shot}")
    if not session_browser.get_cookies():  # a test logged out: the next one starts logged in
        log_in(session_browser, demo.url, TOKEN)

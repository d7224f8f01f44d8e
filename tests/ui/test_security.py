"""The console's protections: escaping, login, scopes, loopback-only without tokens, headers,
and query values checked (400, never 500)."""

from __future__ import annotations

import html
import os
import ssl
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By

from featurestore.config import load_config
from featurestore.ui.server import ConsoleServer
from tests.support.browser import chromium, main_text, submit, wait_for
from tests.support.certs import make_certs
from tests.support.cli import FEATURESTORE
from tests.support.redis import free_port
from tests.ui.support import PUSH_ONLY, SCRIPT_DESCRIPTION, TOKEN, Demo


def test_a_description_holding_markup_is_shown_as_text(browser: webdriver.Chrome, demo: Demo) -> None:
    browser.get(f"{demo.url}/catalog/feature_view/driver_stats")
    assert wait_for(browser, "#description").text == SCRIPT_DESCRIPTION
    assert browser.find_elements(By.CSS_SELECTOR, "main b") == []
    assert browser.execute_script("return window.pwned") is None
    browser.get(f"{demo.url}/?q=driver_stats")
    assert SCRIPT_DESCRIPTION in main_text(browser)
    assert browser.execute_script("return window.pwned") is None


def test_without_a_token_the_login_page_and_a_wrong_token_is_refused(demo: Demo) -> None:
    driver = chromium()  # no cookie yet
    try:
        driver.get(f"{demo.url}/versions?limit=5")
        assert driver.current_url.startswith(f"{demo.url}/login")
        assert wait_for(driver, "h1").text == "Log in"
        wait_for(driver, "#token").send_keys("not-a-valid-token-at-all")
        submit(driver, "#login")
        assert wait_for(driver, "#refused").text == "That token was refused."
        assert driver.get_cookies() == []
        driver.find_element(By.ID, "token").send_keys(TOKEN)
        submit(driver, "#login")
        assert wait_for(driver, "h1").text == "Registry versions"  # back where it was sent from
        assert driver.current_url == f"{demo.url}/versions?limit=5"
        [cookie] = driver.get_cookies()
        assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict" and cookie["secure"] is False
        assert driver.execute_script("return document.cookie") == ""  # no script can read it
    finally:
        driver.quit()


def test_tokens_scopes_and_the_login_form(demo: Demo) -> None:
    def get(path: str, cookie: str | None = None, **headers: str) -> httpx.Response:
        cookies = {"featurestore_ui_token": cookie} if cookie else None
        with httpx.Client(base_url=demo.url, cookies=cookies, headers=headers) as http:
            return http.get(path)

    assert get("/").status_code == 303
    assert get("/", authorization=f"Bearer {TOKEN}").status_code == 200
    assert get("/", TOKEN).status_code == 200
    assert get("/", "wrong-token-0123456789").status_code == 303
    denied = get("/", PUSH_ONLY)
    assert denied.status_code == 403 and "scope the console needs" in denied.text
    with httpx.Client(base_url=demo.url) as http:
        # A login posted from another site's page is refused; a good one only sets the cookie.
        other = http.post("/login", data={"token": TOKEN}, headers={"sec-fetch-site": "cross-site"})
        assert other.status_code == 403 and "set-cookie" not in other.headers
        other = http.post("/login", data={"token": TOKEN}, headers={"origin": "http://evil.example"})
        assert other.status_code == 403 and "set-cookie" not in other.headers
        ok = http.post("/login", data={"token": TOKEN, "next": "https://evil.example/"})
        assert ok.status_code == 303 and ok.headers["location"] == "/"  # never to another site
        assert "HttpOnly" in ok.headers["set-cookie"] and "SameSite=strict" in ok.headers["set-cookie"]


def test_without_tokens_only_this_machine_may_look(demo: Demo) -> None:
    with ConsoleServer(load_config(demo.repo)) as server, httpx.Client(base_url=server.url) as http:
        page = http.get("/")
        assert page.status_code == 200 and "driver_stats" in page.text
        assert http.get("/login").status_code == 200
    address = _non_loopback_address()
    if address is None:
        pytest.skip("this machine has no address but loopback")
    with (
        ConsoleServer(load_config(demo.repo), host=address) as server,
        httpx.Client(base_url=server.url) as http,
    ):
        refused = http.get("/")
        assert refused.status_code == 403 and "only on this machine" in refused.text


def test_pages_load_nothing_from_elsewhere_and_break_no_policy(browser: webdriver.Chrome, demo: Demo) -> None:
    browser.get_log("browser")  # drop what earlier tests left
    pages = [
        "/",
        "/catalog/feature_view/driver_stats",
        "/versions/diff?new=2",
        f"/lineage?node=training_set:{demo.training_set}",
        "/runs/ingest-rejected-1",
        "/health",
        "/statistics/driver_stats",
        f"/drift?target=driver_stats&baseline={demo.training_set}",
    ]
    for page in pages:
        browser.get(f"{demo.url}{page}")
        wait_for(browser, "main")
        loaded = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert loaded and all(url.startswith(f"{demo.url}/") for url in loaded), (page, loaded)
    problems = [
        entry["message"] for entry in browser.get_log("browser") if entry["level"] in ("SEVERE", "WARNING")
    ]
    assert problems == []  # a blocked inline style or script would be reported here


def test_every_page_carries_a_content_security_policy(demo: Demo) -> None:
    with httpx.Client(base_url=demo.url, headers={"authorization": f"Bearer {TOKEN}"}) as http:
        for path in ("/", "/login", "/nowhere", "/static/style.css"):
            response = http.get(path)
            assert response.headers["content-security-policy"].startswith("default-src 'self'"), path
            assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    ("query", "status", "message"),
    [
        ("/versions?limit=abc", 400, "limit='abc' is not a whole number"),
        ("/versions?limit=0", 400, "limit=0 is out of range: give 1 to 500"),
        ("/versions?limit=100000", 400, "limit=100000 is out of range: give 1 to 500"),
        ("/versions?offset=-1", 400, "offset=-1 is out of range"),
        ("/versions/diff?new=x", 400, "new='x' is not a whole number"),
        ("/versions/diff?new=99", 404, "registry version 99 does not exist (latest is 2)"),
        ("/catalog/feature_view/nope", 404, "no feature view named 'nope'"),
        ("/catalog/table/x", 404, "no kind of object named 'table'"),
        ("/?kind=table", 400, "kind='table' is not a kind of object: give one of entity, source"),
        ("/?limit=501", 400, "limit=501 is out of range: give 1 to 500"),
        ("/?offset=x", 400, "offset='x' is not a whole number"),
        ("/catalog/feature_view/driver_stats?limit=0", 400, "limit=0 is out of range"),
        ("/catalog/entity/driver?offset=-3", 400, "offset=-3 is out of range"),
        ("/lineage?kind=run", 400, "kind='run' is not a list of this page: give one of training_set"),
        ("/lineage?limit=0", 400, "limit=0 is out of range: give 1 to 500"),
        ("/lineage?kind=feature_view&offset=x", 400, "offset='x' is not a whole number"),
    ],
)
def test_bad_query_values_are_a_400_naming_the_value(
    demo: Demo, query: str, status: int, message: str
) -> None:
    with httpx.Client(base_url=demo.url, headers={"authorization": f"Bearer {TOKEN}"}) as http:
        response = http.get(query)
    assert response.status_code == status, response.text
    assert message in html.unescape(response.text)


def _non_loopback_address() -> str | None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing address
        except OSError:
            return None
        address = s.getsockname()[0]
    return None if address.startswith("127.") else str(address)


def test_under_tls_the_login_cookie_is_secure(demo: Demo, tmp_path: Path) -> None:
    certs = make_certs(tmp_path / "certs")
    port = free_port()
    env = {**os.environ, "FEATURESTORE_AUTH_TOKENS": TOKEN}
    args = [
        "ui",
        "--repo",
        str(demo.repo),
        "--port",
        str(port),
        "--tls-cert",
        str(certs.cert),
        "--tls-key",
        str(certs.key),
    ]
    process = subprocess.Popen(
        [FEATURESTORE, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    tls = ssl.create_default_context(cafile=str(certs.ca))
    try:
        with httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=tls) as http:
            deadline = time.monotonic() + 60
            while True:
                try:
                    login = http.post("/login", data={"token": TOKEN})
                    break
                except httpx.TransportError:
                    assert process.poll() is None and time.monotonic() < deadline, (
                        process.stderr and process.stderr.read()
                    )
                    time.sleep(0.1)
            assert login.status_code == 303
            cookie = login.headers["set-cookie"]
            assert "; Secure" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
            assert http.get("/").status_code == 200  # the cookie, sent back over TLS
    finally:
        process.terminate()
        process.wait(30)

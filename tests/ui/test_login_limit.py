"""Failed logins are bounded: per client address and overall, answered 429 with Retry-After
without checking the token, reset by a success, with a capped table of addresses. Each test
runs its own console (small limits) on loopback; clients speak from other loopback addresses
(127.0.0.2, ...) to be different clients."""

from __future__ import annotations

import html
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from featurestore.config import load_config
from featurestore.serving.auth import READ, Tokens
from featurestore.serving.auth_limit import Limits, LoginLimiter
from featurestore.ui.server import ConsoleServer
from tests.ui.support import TOKEN, Demo

WRONG = "not-our-token-0123456789abcdef"


@contextmanager
def console(demo: Demo, limits: Limits) -> Iterator[str]:
    with ConsoleServer(load_config(demo.repo), Tokens([(TOKEN, (READ,))]), limits=limits) as server:
        yield server.url.rstrip("/")


@contextmanager
def client(url: str, address: str = "127.0.0.1") -> Iterator[httpx.Client]:
    """An HTTP client whose connections come from ``address`` (any of 127.0.0.0/8 reaches the console)."""
    transport = httpx.HTTPTransport(local_address=address)
    with httpx.Client(base_url=url, transport=transport) as http:
        yield http


def log_in(http: httpx.Client, token: str) -> httpx.Response:
    return http.post("/login", data={"token": token, "next": "/versions"})


def message(response: httpx.Response) -> str:
    return html.unescape(response.text)


def test_after_n_failures_a_client_waits_even_with_the_right_token(
    demo: Demo, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="featurestore.ui")
    with console(demo, Limits(per_client=3, overall=50, window=2.0)) as url, client(url, "127.0.0.2") as http:
        assert [log_in(http, WRONG).status_code for _ in range(3)] == [401, 401, 401]
        refused = log_in(http, TOKEN)  # right token, not checked
        assert refused.status_code == 429 and "set-cookie" not in refused.headers
        wait = int(refused.headers["retry-after"])
        assert 1 <= wait <= 2
        assert "too many failed logins from your address" in message(refused)
        assert "a correct one included" in message(refused)
        # a token on a page is a guess too: refused the same way, before it is checked
        page = http.get("/", headers={"authorization": f"Bearer {TOKEN}"})
        assert page.status_code == 429 and page.headers["retry-after"]
        assert http.get("/").status_code == 303  # no token, nothing guessed: the login page
        with client(url, "127.0.0.3") as other:  # another address is not locked out
            assert log_in(other, TOKEN).status_code == 303
        for _ in range(5):
            assert log_in(http, WRONG).status_code == 429
        warnings = [r.getMessage() for r in caplog.records if r.name == "featurestore.ui"]
        assert len(warnings) == 1, warnings  # one line for the lockout, not one per try
        assert "3 failed from 127.0.0.2 within 2 s" in warnings[0]
        assert "(3 failed, 0 refused" in warnings[0]

        time.sleep(wait)  # the window has passed: tokens are checked again
        ok = log_in(http, TOKEN)
        assert ok.status_code == 303 and ok.headers["location"] == "/versions"


def test_a_success_clears_the_clients_count(demo: Demo) -> None:
    with (
        console(demo, Limits(per_client=3, overall=50, window=60.0)) as url,
        client(url, "127.0.0.2") as http,
    ):
        assert [log_in(http, WRONG).status_code for _ in range(2)] == [401, 401]
        assert log_in(http, TOKEN).status_code == 303
        # without the reset these would be failures 3 and 4: the second answered 429
        assert [log_in(http, WRONG).status_code for _ in range(2)] == [401, 401]
        assert log_in(http, TOKEN).status_code == 303
        assert [log_in(http, WRONG).status_code for _ in range(3)] == [401, 401, 401]
        assert log_in(http, TOKEN).status_code == 429


def test_many_addresses_share_one_overall_limit(demo: Demo) -> None:
    with console(demo, Limits(per_client=3, overall=4, window=60.0)) as url:
        for n in range(2, 6):  # one failure each from four addresses: none is locked out alone
            with client(url, f"127.0.0.{n}") as http:
                assert log_in(http, WRONG).status_code == 401
        for n in (1, 6):  # an address never seen before, with the right token, waits too
            with client(url, f"127.0.0.{n}") as http:
                refused = log_in(http, TOKEN)
                assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
                assert "from all addresses" in message(refused)


def test_the_table_of_addresses_is_capped(demo: Demo) -> None:
    with console(demo, Limits(per_client=2, overall=100, window=60.0, max_clients=3)) as url:
        with client(url, "127.0.0.2") as first:
            assert log_in(first, WRONG).status_code == 401
        for n in (3, 4, 5):  # three more addresses: the table holds three, the oldest goes
            with client(url, f"127.0.0.{n}") as http:
                assert log_in(http, WRONG).status_code == 401
        with client(url, "127.0.0.2") as first:  # forgotten: this is its first failure again
            assert log_in(first, WRONG).status_code == 401
            assert log_in(first, WRONG).status_code == 401
            assert log_in(first, TOKEN).status_code == 429  # now its second and third: locked
        with client(url, "127.0.0.5") as kept:  # still tracked: its second failure locks it
            assert log_in(kept, WRONG).status_code == 401
            assert log_in(kept, TOKEN).status_code == 429


def test_the_table_stays_bounded_under_many_addresses() -> None:
    now = [0.0]
    limiter = LoginLimiter(Limits(per_client=5, overall=10**6, window=60.0, max_clients=1000), lambda: now[0])
    for n in range(50_000):
        limiter.failed(f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}")
        now[0] += 0.001
    assert len(limiter) == 1000 and limiter.counts.evicted == 49_000


def test_a_lockout_is_logged_once_a_window_not_per_try(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="featurestore.ui")
    now = [0.0]
    limiter = LoginLimiter(Limits(per_client=3, overall=100, window=60.0), lambda: now[0])
    for t in (0.0, 1.0, 2.0, 60.5, 61.5, 62.5, 121.0):  # each after the last lockout ended
        now[0] = t
        limiter.check("10.0.0.1")
        limiter.failed("10.0.0.1")
    lines = [r.getMessage() for r in caplog.records if r.name == "featurestore.ui"]
    # five lockouts began (at 2.0, 60.5, 61.5, 62.5 and 121.0): logged at 2.0 and at 62.5 only,
    # the others being within a window of the line before
    assert len(lines) == 2, lines
    assert "(3 failed, 0 refused" in lines[0] and "(6 failed" in lines[1]

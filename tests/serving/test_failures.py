"""What callers read and what the log keeps when requests fail: ids, bounded lines, config errors once."""

from __future__ import annotations

import logging
import re

import pytest

from featurestore.errors import InvalidRequestError, OnlineStoreUnavailable
from featurestore.serving.failures import INTERVAL_SECONDS, LINES_PER_INTERVAL, Failures
from tests.serving.support import request_id

DETAIL = "online store redis://10.0.0.7:6379/0 does not answer: timeout"


class Clock:
    """A clock the test moves: the interval is about counts of requests, not about waiting."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_caller_reads_a_request_id_and_the_log_has_the_detail(caplog: pytest.LogCaptureFixture) -> None:
    failures = Failures()
    with caplog.at_level(logging.WARNING, "featurestore.serving"):
        first = request_id(failures.client_message(OnlineStoreUnavailable(DETAIL)))
        second = request_id(failures.client_message(OnlineStoreUnavailable(DETAIL)))
    assert first != second
    assert caplog.messages == [f"request {first} failed: {DETAIL}", f"request {second} failed: {DETAIL}"]
    # The caller's own mistakes are told as they are, and not logged.
    assert failures.client_message(InvalidRequestError("unknown feature 'x'")) == "unknown feature 'x'"
    assert len(caplog.messages) == 2


def test_an_outage_logs_a_bounded_number_of_lines_and_counts_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    failures = Failures(clock)
    with caplog.at_level(logging.WARNING, "featurestore.serving"):
        ids = [request_id(failures.client_message(OnlineStoreUnavailable(DETAIL))) for _ in range(1000)]
        assert caplog.messages == [f"request {i} failed: {DETAIL}" for i in ids[:LINES_PER_INTERVAL]]
        clock.now += INTERVAL_SECONDS
        last = request_id(failures.client_message(OnlineStoreUnavailable(DETAIL)))
    assert caplog.messages[LINES_PER_INTERVAL:] == [
        f"{1000 - LINES_PER_INTERVAL} more requests failed (not listed): {DETAIL}",
        f"request {last} failed: {DETAIL}",
    ]


def test_a_configuration_problem_is_logged_once_as_an_error(caplog: pytest.LogCaptureFixture) -> None:
    failures = Failures()
    problem = "online store redis://h:1/0 requires a password and redis_url gives none (NOAUTH ...)"
    with caplog.at_level(logging.WARNING, "featurestore.serving"):
        for _ in range(5):
            request_id(failures.client_message(OnlineStoreUnavailable(problem, config_problem=True)))
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [f"configuration error: {problem}"]


def test_an_unexpected_exception_is_internal_with_one_traceback_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failures = Failures()
    with caplog.at_level(logging.WARNING, "featurestore.serving"):
        answers = [failures.unexpected(ValueError("bad value at 0x7f")) for _ in range(3)]
    assert all(re.fullmatch(r"internal error \(request id [0-9a-f]{12}\)", a) for a in answers), answers
    assert [r.exc_info is not None for r in caplog.records] == [True, False, False]

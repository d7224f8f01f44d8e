"""What a remote caller reads when the server fails a request, and what the log keeps.

Some errors carry details meant for the operator only: the online store's address and why
it failed (``FeatureStoreError.client_message`` is set on those), or an unexpected exception.
The caller reads a generic message with a request id; the log has one line per request id
with the detail (a traceback only for the first unexpected exception of a kind per
interval). So that an outage failing thousands of requests a second does not write as many
lines, one detail is logged for at most ``LINES_PER_INTERVAL`` requests per
``INTERVAL_SECONDS``; the requests beyond that are counted, and the count is logged with the
next failure of that kind after the interval. A configuration problem (Redis wants a
password, or refuses the one given) is also logged once as an error: it will not go away
by itself.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable

from featurestore.errors import FeatureStoreError, OnlineStoreUnavailable

log = logging.getLogger("featurestore.serving")

INTERVAL_SECONDS = 10.0
LINES_PER_INTERVAL = 20
_TRACKED = 256  # distinct details remembered; their text comes from Redis and from exceptions


class Failures:
    """The request failures of one server process: what callers read, what the log keeps."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._windows: dict[str, tuple[float, int, int]] = {}  # detail -> (start, logged, not logged)
        self._config_errors: set[str] = set()

    def client_message(self, error: FeatureStoreError) -> str:
        """What the caller reads for ``error``; an operator-only message is logged instead."""
        if error.client_message is None:
            return error.message
        if isinstance(error, OnlineStoreUnavailable) and error.config_problem:
            if error.message not in self._config_errors:
                self._config_errors.add(error.message)
                log.error("configuration error: %s", error.message)
        return self._report(error.client_message, error.message)

    def unexpected(self, error: BaseException) -> str:
        """What the caller reads for an exception no handler expected (logged with its traceback)."""
        return self._report("internal error", f"{type(error).__name__}: {error}", error)

    def _report(self, public: str, detail: str, exc_info: BaseException | None = None) -> str:
        request_id = secrets.token_hex(6)
        now = self._clock()
        start, logged, skipped = self._windows.get(detail, (now, 0, 0))
        if now - start >= INTERVAL_SECONDS:
            if skipped:
                log.warning("%d more requests failed (not listed): %s", skipped, detail)
            start, logged, skipped = now, 0, 0
        if logged < LINES_PER_INTERVAL:
            first = exc_info if logged == 0 else None
            log.warning("request %s failed: %s", request_id, detail, exc_info=first)
            logged += 1
        else:
            skipped += 1
        if detail not in self._windows and len(self._windows) >= _TRACKED:
            self._windows.clear()
        self._windows[detail] = (start, logged, skipped)
        return f"{public} (request id {request_id})"

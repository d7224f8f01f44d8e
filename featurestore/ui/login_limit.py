"""Bounding token guesses: failed logins per client address and in all, over a sliding window.

Every check of a token that fails (the login form, or a cookie or bearer header on a page)
counts against the client's address and against the console as a whole. After
``per_client`` failures from one address within ``window`` seconds, or ``overall`` from all
addresses together, every request of that client (of every client) that would check a token
is refused with 429 and Retry-After, without checking it: a correct token is refused too
until the window passes, so a try during a lockout tells nothing. A success clears its
client's count, never the overall one (a client holding one valid token could otherwise
guess others between its own logins). The table of addresses keeps at most ``max_clients``:
the address whose last failure is oldest goes first; evicting lets that address guess again
sooner, which the overall limit still bounds. A lockout is logged at warning level, at most
once per window per address and once per window overall, never per try.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("featurestore.ui")

PER_CLIENT = 10  # failed logins from one address ...
OVERALL = 100  # ... or from all addresses together ...
WINDOW = 60.0  # ... within this many seconds
MAX_CLIENTS = 10_000  # addresses tracked at once (each holds at most PER_CLIENT timestamps)


@dataclass(frozen=True)
class Limits:
    """How many failed logins a window allows, per address and overall, and how many addresses are tracked."""

    per_client: int = PER_CLIENT
    overall: int = OVERALL
    window: float = WINDOW
    max_clients: int = MAX_CLIENTS


class TooManyLogins(Exception):
    """A token check refused during a lockout: answered 429 with ``retry_after`` seconds."""

    def __init__(self, retry_after: int, everyone: bool) -> None:
        self.retry_after = retry_after
        whose = "to this console from all addresses" if everyone else "from your address"
        self.message = (
            f"too many failed logins {whose}: no token is checked, a correct one included, "
            f"for {retry_after} s (try again then)"
        )
        super().__init__(self.message)


@dataclass
class _Client:
    failures: deque[float]
    warned_at: float = -math.inf


@dataclass
class Counts:
    """Totals since the console started, shown in the warnings."""

    failed: int = 0
    refused: int = 0
    evicted: int = 0


class LoginLimiter:
    """Failed logins per address and overall in the last ``limits.window`` seconds."""

    def __init__(self, limits: Limits | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits or Limits()
        self.counts = Counts()
        self._clock = clock
        self._clients: OrderedDict[str, _Client] = OrderedDict()  # oldest last failure first
        self._overall: deque[float] = deque(maxlen=self.limits.overall)
        self._overall_warned_at = -math.inf
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """How many addresses are tracked."""
        return len(self._clients)

    def check(self, client: str) -> None:
        """Raises TooManyLogins if ``client`` (or every client) may not have a token checked now."""
        with self._lock:
            now = self._clock()
            overall = self._wait(self._overall, now)
            entry = self._clients.get(client)
            own = self._wait(entry.failures, now) if entry is not None else 0.0
            if overall <= 0 and own <= 0:
                return
            self.counts.refused += 1
        raise TooManyLogins(max(1, math.ceil(max(overall, own))), everyone=overall > own)

    def failed(self, client: str) -> None:
        """A token from ``client`` was not one of ours."""
        with self._lock:
            now = self._clock()
            self.counts.failed += 1
            entry = self._clients.pop(client, None)
            if entry is None:
                while len(self._clients) >= self.limits.max_clients:
                    self._clients.popitem(last=False)
                    self.counts.evicted += 1
                entry = _Client(deque(maxlen=self.limits.per_client))
            self._clients[client] = entry  # now the newest
            entry.failures.append(now)
            self._overall.append(now)
            if self._wait(entry.failures, now) > 0 and now - entry.warned_at >= self.limits.window:
                entry.warned_at = now
                self._warn(self.limits.per_client, f"from {client}", f"{client}'s logins are")
            if self._wait(self._overall, now) > 0 and now - self._overall_warned_at >= self.limits.window:
                self._overall_warned_at = now
                self._warn(self.limits.overall, "from all addresses", "every login is")

    def succeeded(self, client: str) -> None:
        """A token from ``client`` was one of ours: its own count starts again."""
        with self._lock:
            self._clients.pop(client, None)

    def _wait(self, failures: deque[float], now: float) -> float:
        """Seconds until another try: none unless ``failures`` holds its limit (its maxlen), then
        until the oldest of them leaves the window."""
        if len(failures) < (failures.maxlen or 0):
            return 0.0
        return failures[0] + self.limits.window - now

    def _warn(self, limit: int, where: str, whom: str) -> None:
        c = self.counts
        log.warning(
            "console logins: %d failed %s within %g s; %s refused with 429 until the window "
            "passes (%d failed, %d refused, %d addresses evicted since the console started)",
            limit,
            where,
            self.limits.window,
            whom,
            c.failed,
            c.refused,
            c.evicted,
        )

"""Bounding token guesses: failed token checks per client address and in all, over a sliding window.

Used by `featurestore serve` (gRPC and HTTP: ``TokenLimiter``, one per server process, shared
by both transports) and by the web console (``LoginLimiter``: the login form, a cookie or a
bearer header on a page). Every check of a token that fails counts against the client's
address and against the server (console) as a whole. After ``per_client`` failures from one
address within ``window`` seconds, or ``overall`` from all addresses together, every request
of that client (of every client) that would check a token is refused (HTTP 429 with
Retry-After, gRPC RESOURCE_EXHAUSTED) without checking it: a correct token is refused too
until the window passes, so a try during a lockout tells nothing. A success clears its
client's count, never the overall one (a client holding one valid token could otherwise
guess others between its own logins). The table of addresses keeps at most ``max_clients``:
the address whose last failure is oldest goes first; evicting lets that address guess again
sooner, which the overall limit still bounds. A lockout is logged at warning level, at most
once per window per address and once per window overall, never per try.

``FEATURESTORE_AUTH_LIMITS`` (``PER_CLIENT,OVERALL,WINDOW_SECONDS``, e.g. ``10,100,60``) sets
the serving API's limits (``limits_from_env``); the console takes ``Limits`` from its caller.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from featurestore.errors import ConfigError, TooManyFailedTokensError

PER_CLIENT = 10  # failed logins from one address ...
OVERALL = 100  # ... or from all addresses together ...
WINDOW = 60.0  # ... within this many seconds
MAX_CLIENTS = 10_000  # addresses tracked at once (each holds at most PER_CLIENT timestamps)
LIMITS_ENV = "FEATURESTORE_AUTH_LIMITS"  # PER_CLIENT,OVERALL,WINDOW for `featurestore serve`


@dataclass(frozen=True)
class Limits:
    """How many failed logins a window allows, per address and overall, and how many addresses are tracked."""

    per_client: int = PER_CLIENT
    overall: int = OVERALL
    window: float = WINDOW
    max_clients: int = MAX_CLIENTS


TooManyLogins = TooManyFailedTokensError  # the console's name for it


def limits_from_env(env: Mapping[str, str] | None = None) -> Limits:
    """The serving API's limits: ``FEATURESTORE_AUTH_LIMITS`` if set, else the defaults."""
    value = (os.environ if env is None else env).get(LIMITS_ENV, "").strip()
    if not value:
        return Limits()
    try:
        per_client, overall, window = value.split(",")
        limits = Limits(int(per_client), int(overall), float(window))
    except ValueError:
        limits = Limits(0)
    if min(limits.per_client, limits.overall) < 1 or not limits.window > 0:
        raise ConfigError(
            f"{LIMITS_ENV} must be PER_CLIENT,OVERALL,WINDOW_SECONDS, each above 0 "
            f"(e.g. {PER_CLIENT},{OVERALL},{WINDOW:g}), not {value!r}"
        )
    return limits


@dataclass
class _Client:
    failures: deque[float]
    warned_at: float = -math.inf


@dataclass
class Counts:
    """Totals since the server (console) started, shown in the warnings."""

    failed: int = 0
    refused: int = 0
    evicted: int = 0


class TokenLimiter:
    """Failed token checks per address and overall in the last ``limits.window`` seconds
    (the serving API's wording; ``LoginLimiter`` is the console's)."""

    logger = "featurestore.serving"
    noun = "token checks"  # in the refusal: "too many failed token checks ..."
    place = "to this server"
    what = "serving API tokens"  # in the warning
    started = "server"
    answer = "429 (RESOURCE_EXHAUSTED on gRPC)"

    def __init__(self, limits: Limits | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits or Limits()
        self.counts = Counts()
        self._clock = clock
        self._clients: OrderedDict[str, _Client] = OrderedDict()  # oldest last failure first
        self._overall: deque[float] = deque(maxlen=self.limits.overall)
        self._overall_warned_at = -math.inf
        self._last_failure = -math.inf
        self._window = self.limits.window  # quiet() reads it on every request
        self._lock = threading.Lock()
        self._log = logging.getLogger(self.logger)

    def quiet(self) -> bool:
        """Whether no check failed within the window: then nobody is locked out and no count
        matters (a count's failures have all left the window), so a server may skip ``check``
        and ``succeeded`` (one clock read, no lock: the hot path's whole cost)."""
        return self._clock() - self._last_failure >= self._window

    def __len__(self) -> int:
        """How many addresses are tracked."""
        return len(self._clients)

    def check(self, client: str) -> None:
        """Raises TooManyFailedTokensError if ``client`` (or every client) may not have a token
        checked now."""
        with self._lock:
            now = self._clock()
            overall = self._wait(self._overall, now)
            entry = self._clients.get(client)
            own = self._wait(entry.failures, now) if entry is not None else 0.0
            if overall <= 0 and own <= 0:
                return
            self.counts.refused += 1
        retry_after = max(1, math.ceil(max(overall, own)))
        whose = f"{self.place} from all addresses" if overall > own else "from your address"
        raise TooManyFailedTokensError(
            f"too many failed {self.noun} {whose}: no token is checked, a correct one included, "
            f"for {retry_after} s (try again then)",
            retry_after,
        )

    def failed(self, client: str) -> None:
        """A token from ``client`` was not one of ours."""
        with self._lock:
            now = self._clock()
            self.counts.failed += 1
            self._last_failure = now
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
                self._warn(self.limits.per_client, f"from {client}", f"{client}'s tokens are")
            if self._wait(self._overall, now) > 0 and now - self._overall_warned_at >= self.limits.window:
                self._overall_warned_at = now
                self._warn(self.limits.overall, "from all addresses", "every token is")

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
        self._log.warning(
            "%s: %d failed %s within %g s; %s refused with %s until the window "
            "passes (%d failed, %d refused, %d addresses evicted since the %s started)",
            self.what,
            limit,
            where,
            self.limits.window,
            whom,
            self.answer,
            c.failed,
            c.refused,
            c.evicted,
            self.started,
        )


class LoginLimiter(TokenLimiter):
    """The web console's failed logins (its wording and logger)."""

    logger = "featurestore.ui"
    noun = "logins"
    place = "to this console"
    what = "console logins"
    started = "console"
    answer = "429"

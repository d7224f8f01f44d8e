"""Polling for a condition with a generous deadline: the handshake tests use instead of sleeps."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def wait_for(check: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as e:  # noqa: BLE001 - keep polling, report the last failure
            last = e
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"{what} within {timeout}s; last: {last!r}")

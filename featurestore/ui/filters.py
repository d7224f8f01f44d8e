"""Template filters: times, durations and counts written the same way on every page."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import jinja2


def when(value: Any) -> str:
    """A time in UTC to the second; text (as stored in JSON records) is shown as it is."""
    if value is None:
        return "-"
    if isinstance(value, str):  # JSON records hold times as ISO text
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def seconds(value: float | timedelta | None) -> str:
    """A duration: 850 ms, 12.3 s, 4.5 min, 2.0 h, 3.0 d."""
    if value is None:
        return "-"
    s = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if abs(s) < 1:
        return f"{s * 1000:.0f} ms"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if abs(s) >= size:
            return f"{s / size:.1f} {unit}"
    return f"{s:.1f} s"


def duration(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return "-"
    return seconds(end - start)


def number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def url_value(value: Any) -> str:
    """A value for a query string or a path segment (autoescaping covers the HTML, not the URL)."""
    return quote(str(value), safe="")


def install(env: jinja2.Environment) -> None:
    env.filters.update(when=when, seconds=seconds, number=number, pretty=pretty, u=url_value)
    env.globals.update(duration=duration)

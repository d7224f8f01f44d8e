"""Small inline SVG bar charts for feature statistics: a histogram rebuilt from the stored
quantiles (numeric features), the most frequent values (categorical ones)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

BINS = 20
WIDTH, HEIGHT = 240, 60


def histogram(quantiles: Sequence[float], bins: int = BINS) -> tuple[list[float], float, float]:
    """Shares of values in ``bins`` equal-width bins from min to max, and the bounds.

    The quantiles are at 0%, 1%, ..., 100%: each 1% of the values lies between two neighbours,
    and is spread evenly over that interval (all in one bin when the two are equal).
    """
    if len(quantiles) < 2:
        return [], 0.0, 0.0
    low, high = float(quantiles[0]), float(quantiles[-1])
    if high <= low:
        return [1.0], low, high
    width = (high - low) / bins
    shares = [0.0] * bins
    mass = 1.0 / (len(quantiles) - 1)
    for a, b in zip(quantiles, quantiles[1:], strict=False):
        a, b = float(a), float(b)
        if b <= a:
            shares[min(bins - 1, int((a - low) / width))] += mass
            continue
        for i in range(min(bins - 1, int((a - low) / width)), min(bins - 1, int((b - low) / width)) + 1):
            left, right = low + i * width, low + (i + 1) * width
            overlap = min(b, right) - max(a, left)
            if overlap > 0:
                shares[i] += mass * overlap / (b - a)
    return shares, low, high


def bars(shares: Sequence[float], titles: Sequence[str], label: str) -> str:
    """Bars of ``shares`` (each with a hover title), as an inline SVG element."""
    if not shares:
        return ""
    top = max(shares) or 1.0
    step = WIDTH / len(shares)
    out = [f'<svg class="bars" width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{escape(label)}">']
    for i, (share, title) in enumerate(zip(shares, titles, strict=True)):
        h = max(1.0, share / top * (HEIGHT - 2)) if share > 0 else 0.0
        out.append(
            f'<rect class="bar" x="{i * step + 0.5:.1f}" y="{HEIGHT - h:.1f}" '
            f'width="{max(1.0, step - 1):.1f}" height="{h:.1f}">'
            f"<title>{escape(title)}: {share:.1%}</title></rect>"
        )
    out.append("</svg>")
    return "".join(out)


def numeric_chart(quantiles: Sequence[float]) -> str:
    shares, low, high = histogram(quantiles)
    width = (high - low) / len(shares) if shares else 0.0
    titles = [f"{low + i * width:.4g} to {low + (i + 1) * width:.4g}" for i in range(len(shares))]
    return bars(shares, titles, "histogram")


def top_values_chart(top: Sequence[tuple[str, int]], values: int, limit: int = 12) -> str:
    shown = list(top[:limit])
    return bars(
        [n / values if values else 0.0 for _, n in shown], [v for v, _ in shown], "most frequent values"
    )

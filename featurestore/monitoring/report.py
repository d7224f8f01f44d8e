"""A drift report as one self-contained HTML file: a summary table and, per drifting feature, a chart.

The charts are inline SVG (baseline and current share of each PSI bin side by side), so the
file needs no plotting library to write and nothing but a browser to read.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from html import escape
from pathlib import Path

from featurestore.monitoring.drift import DriftReport, FeatureDrift
from featurestore.outputs import write_text

BASELINE_COLOR = "#4c78a8"
CURRENT_COLOR = "#f58518"
_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { padding: 4px 10px; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child { text-align: left; }
tr.drifted td { background: #fde2e1; font-weight: 600; }
.muted { color: #777; }
.legend span { display: inline-block; width: 12px; height: 12px; margin: 0 4px 0 12px; }
"""


def write_html(report: DriftReport, path: str | os.PathLike[str]) -> Path:
    """Write the report to ``path`` (written beside and renamed, so it appears complete).

    Callers writing where a user says check the path first (``FeatureStore.output_guard``).
    """
    target = Path(path)
    write_text(target, render_html(report))
    return target


def render_html(report: DriftReport) -> str:
    drifted = report.drifted
    verdict = (
        f"{len(drifted)} of {len(report.features)} features drifted: "
        + ", ".join(escape(f.feature) for f in drifted)
        if drifted
        else f"no drift in {len(report.features)} features"
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Drift: {escape(report.target)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Drift of {escape(report.target)}</h1>",
        f"<p>Baseline: <b>{escape(report.baseline)}</b> &middot; current: <b>{escape(report.current)}</b>"
        f" &middot; thresholds: PSI &ge; {report.thresholds.psi:g} and p-value &lt; "
        f"{report.thresholds.p_value:g}</p>",
        f"<p><b>{verdict}</b></p>",
        _summary_table(report),
    ]
    if report.skipped:
        parts.append("<h2>Not compared</h2><ul>")
        parts += [f"<li>{escape(s.feature)}: {escape(s.reason)}</li>" for s in report.skipped]
        parts.append("</ul>")
    for f in drifted:
        parts.append(f'<h2 id="{escape(f.feature)}">{escape(f.feature)}</h2>')
        if f.values_drifted:
            parts += [
                f"<p>PSI {f.psi:.3f}, {_test_name(f)} {f.statistic:.4g} (p = {f.p_value:.3g}); "
                f"{f.baseline.values:,} baseline and {f.current.values:,} current values.</p>",
                '<p class="legend">share of values per bin:'
                f'<span style="background:{BASELINE_COLOR}"></span>baseline'
                f'<span style="background:{CURRENT_COLOR}"></span>current</p>',
                bar_chart(f),
            ]
        if f.missing_drifted:
            b, c = f.baseline, f.current
            shares = (b.missing / b.count, c.missing / c.count)
            parts += [
                f"<p>Missing values (null, NaN, inf): {_share(b.missing, b.count)} of {b.count:,} baseline "
                f"rows, {_share(c.missing, c.count)} of {c.count:,} current rows; PSI {f.missing_psi:.3f}, "
                f"chi-square p = {f.missing_p_value:.3g}.</p>",
                '<p class="legend">share of rows:'
                f'<span style="background:{BASELINE_COLOR}"></span>baseline'
                f'<span style="background:{CURRENT_COLOR}"></span>current</p>',
                bar_chart(
                    f, bins=("missing", "present"), baseline=(shares[0], 1 - shares[0]),
                    current=(shares[1], 1 - shares[1]), width=320,
                ),
            ]
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    parts.append(f'<p class="muted">Written by featurestore drift at {stamp}.</p></body></html>')
    return "\n".join(parts)


def _summary_table(report: DriftReport) -> str:
    rows = [
        "<table><tr><th>feature</th><th>type</th><th>test</th><th>PSI</th><th>statistic</th>"
        "<th>p-value</th><th>missing (baseline &rarr; current)</th><th>drifted</th></tr>"
    ]
    for f in report.features:
        b, c = f.baseline, f.current
        missing = f"{_share(b.missing, b.count)} &rarr; {_share(c.missing, c.count)}"
        why = [w for w, flag in (("values", f.values_drifted), ("missing", f.missing_drifted)) if flag]
        rows.append(
            f'<tr class="{"drifted" if f.drifted else ""}"><td>{escape(f.feature)}</td>'
            f"<td>{escape(f.baseline.dtype)}</td><td>{_test_name(f)}</td><td>{f.psi:.4f}</td>"
            f"<td>{f.statistic:.4g}</td><td>{f.p_value:.3g}</td><td>{missing}</td>"
            f"<td>{'yes (' + ', '.join(why) + ')' if f.drifted else 'no'}</td></tr>"
        )
    rows.append("</table>")
    return "\n".join(rows)


def bar_chart(
    f: FeatureDrift,
    width: int = 720,
    height: int = 300,
    bins: tuple[str, ...] | None = None,
    baseline: tuple[float, ...] | None = None,
    current: tuple[float, ...] | None = None,
) -> str:
    """Baseline and current shares of each bin (default: the PSI bins) as grouped bars, in inline SVG."""
    bins = f.bins if bins is None else bins
    baseline = f.baseline_shares if baseline is None else baseline
    current = f.current_shares if current is None else current
    left, right, top, bottom = 48, 12, 12, 90
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max([*baseline, *current, 0.01]) * 1.1
    group = plot_w / len(bins)
    bar = group * 0.38

    def y(share: float) -> float:
        return top + plot_h * (1 - share / peak)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(f.feature)}: baseline and current distribution">'
    ]
    for i in range(5):  # horizontal grid lines with their share
        share = peak * i / 4
        out.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(share):.1f}" y2="{y(share):.1f}" '
            'stroke="#e5e5e5"/>'
            f'<text x="{left - 6}" y="{y(share) + 4:.1f}" font-size="10" text-anchor="end">'
            f"{share * 100:.0f}%</text>"
        )
    for i, (label, b, c) in enumerate(zip(bins, baseline, current, strict=True)):
        x0 = left + i * group + group * 0.12
        sides = ((x0, b, BASELINE_COLOR, "baseline"), (x0 + bar, c, CURRENT_COLOR, "current"))
        for x, share, color, who in sides:
            out.append(
                f'<rect x="{x:.1f}" y="{y(share):.1f}" width="{bar:.1f}" height="{y(0) - y(share):.1f}" '
                f'fill="{color}"><title>{escape(label)}: {who} {share * 100:.2f}%</title></rect>'
            )
        cx, cy = left + (i + 0.5) * group, top + plot_h + 12
        out.append(
            f'<text x="{cx:.1f}" y="{cy:.1f}" font-size="10" text-anchor="end" '
            f'transform="rotate(-35 {cx:.1f} {cy:.1f})">{escape(_short(label))}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def _test_name(f: FeatureDrift) -> str:
    return {"ks": "KS D", "chi2": "chi-square"}.get(f.test, "none")


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def _short(label: str, limit: int = 24) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"

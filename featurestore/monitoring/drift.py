"""Drift of one feature between two statistics summaries: PSI on the baseline's bins and a two-sample test.

Both work from the summaries ``stats.py`` keeps, never the raw rows.

Numeric features: the bins are the baseline's deciles (10 bins, fewer where deciles tie).
Each side's share of a bin comes from its cumulative distribution, read off its 101
quantiles: F(x) is the highest quantile level whose value is <= x, interpolated linearly to
the next one, so it is within one level (1%) of the true F. The test is Kolmogorov-Smirnov:
D is the largest gap between the two CDFs at every quantile of either side, and its p-value
uses each side's number of values behind the quantiles (at most ``SAMPLE_ROWS``).

Categorical features (strings, booleans): the bins are the values in either side's top
values whose count is known on both sides (a value absent from a complete list counts 0),
plus one bin for all other values. The test is Pearson's chi-square test of homogeneity on
those counts (degrees of freedom: non-empty bins - 1).

PSI = sum over bins of (current - baseline) * ln(current / baseline), on shares of non-null
values. A bin empty on one side would make it infinite, so shares below ``EPSILON`` (0.01%)
count as ``EPSILON``: a value that appears in 5% of current rows and never in the baseline
adds 0.05 * ln(500) = 0.31.

Missing values (nulls, and NaN or infinite numbers) are compared on their own, with the same
two measures on two bins, missing and present: PSI of the shares and a chi-square test of
the 2 x 2 table. A source that starts sending nulls (0% -> 10%: PSI 0.70) drifts even when
the values it still sends look as before; one that sends nothing but nulls drifts without a
value comparison (test ``none``). Only when both sides are ingestion runs: a training
set's nulls also count entities without a value in the TTL, so against a run its share
would say more about the entity rows than about the source.

A feature **drifts** when its PSI is at least ``Thresholds.psi`` *and* its p-value is below
``Thresholds.p_value`` (for its values, or for its share of missing values): PSI says the
shift is large enough to matter, the test that it is not sampling noise. Over millions of
rows the test alone flags shifts too small to matter; over a few dozen PSI alone flags noise.
Set ``psi=0`` or ``p_value=1`` to use the other one alone.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from featurestore.errors import InvalidRequestError
from featurestore.monitoring.distributions import chi2_p_value, ks_p_value
from featurestore.profiling import CATEGORICAL, NUMERIC, SAMPLE_ROWS, FeatureStats

EPSILON = 1e-4
NO_TEST = "none"  # the values were not compared: one side has none
DECILES = tuple(range(10, 100, 10))  # indexes into the 101 quantiles: the PSI bin edges
# The customary "significant shift" line for PSI, and the customary significance level;
# featurestore.toml's [monitoring] defaults (config.py) are the same.
DEFAULT_PSI = 0.2
DEFAULT_P_VALUE = 0.05


@dataclass(frozen=True)
class Thresholds:
    """Past both, a feature has drifted (see the module docstring)."""

    psi: float = DEFAULT_PSI
    p_value: float = DEFAULT_P_VALUE

    def __post_init__(self) -> None:
        if not self.psi >= 0:
            raise InvalidRequestError(f"the PSI threshold must be >= 0, got {self.psi}")
        if not 0 <= self.p_value <= 1:
            raise InvalidRequestError(f"the p-value threshold must be from 0 to 1, got {self.p_value}")


@dataclass(frozen=True)
class FeatureDrift:
    """The comparison of one feature: PSI, the test, and the binned shares behind them."""

    feature: str  # view:feature
    kind: str  # numeric or categorical
    test: str  # "ks" (Kolmogorov-Smirnov), "chi2" (chi-square) or "none" (one side has no values)
    psi: float
    statistic: float  # KS D, or the chi-square statistic
    p_value: float
    drifted: bool  # the values' distribution or the share of missing values
    bins: tuple[str, ...]  # labels of the PSI bins
    baseline_shares: tuple[float, ...]
    current_shares: tuple[float, ...]
    baseline: FeatureStats
    current: FeatureStats
    # The share of rows without a value (null, NaN, +-inf), compared on its own: None when
    # the sides count differently (a training set's nulls include entities with no value).
    missing_psi: float | None = None
    missing_p_value: float | None = None
    missing_drifted: bool = False
    values_drifted: bool = False  # drifted by the values' distribution (``drifted``: either)

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "kind": self.kind,
            "test": self.test,
            "psi": self.psi,
            "statistic": self.statistic,
            "p_value": self.p_value,
            "drifted": self.drifted,
            "values_drifted": self.values_drifted,
            "missing_psi": self.missing_psi,
            "missing_p_value": self.missing_p_value,
            "missing_drifted": self.missing_drifted,
            "bins": list(self.bins),
            "baseline_shares": list(self.baseline_shares),
            "current_shares": list(self.current_shares),
            "baseline": self.baseline.to_dict(),
            "current": self.current.to_dict(),
        }


@dataclass(frozen=True)
class Skipped:
    """A feature of the target that was not compared, and why."""

    feature: str
    reason: str


@dataclass(frozen=True)
class DriftReport:
    """Every feature of a view or service compared between a baseline and a current set of rows."""

    target: str  # the view or service
    baseline: str  # what was compared, e.g. "training set 3f2a9c0d1b2e" or "ingest-3"
    current: str
    thresholds: Thresholds
    features: tuple[FeatureDrift, ...]
    skipped: tuple[Skipped, ...] = field(default=())

    @property
    def drifted(self) -> list[FeatureDrift]:
        return [f for f in self.features if f.drifted]

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "baseline": self.baseline,
            "current": self.current,
            "thresholds": {"psi": self.thresholds.psi, "p_value": self.thresholds.p_value},
            "drifted": [f.feature for f in self.drifted],
            "features": [f.to_dict() for f in self.features],
            "skipped": [{"feature": s.feature, "reason": s.reason} for s in self.skipped],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def compare(
    feature: str,
    baseline: FeatureStats,
    current: FeatureStats,
    thresholds: Thresholds,
    compare_missing: bool = True,
) -> FeatureDrift | Skipped:
    """The drift of one feature, or why it cannot be compared.

    ``compare_missing``: whether the shares of missing values mean the same on both sides.
    """
    if baseline.kind != current.kind:
        return Skipped(feature, f"its type changed ({baseline.dtype} -> {current.dtype})")
    if baseline.kind not in (NUMERIC, CATEGORICAL):
        return Skipped(feature, f"{baseline.dtype} values are not compared")
    missing_psi = missing_p = None
    missing_drifted = False
    if compare_missing:
        missing_psi, missing_p = missing_shift(baseline, current)
        missing_drifted = missing_psi >= thresholds.psi and missing_p < thresholds.p_value
    bins: tuple[str, ...]
    b: tuple[float, ...]
    c: tuple[float, ...]
    if not (_usable(baseline) and _usable(current)):
        side = "baseline" if not _usable(baseline) else "current"
        if not missing_drifted:
            return Skipped(feature, f"no values in the {side}")
        # All missing on one side: nothing to compare the values with, but that is the drift.
        bins, b, c, statistic, p_value, test = (), (), (), 0.0, 1.0, NO_TEST
    elif baseline.kind == NUMERIC:
        bins, b, c, statistic, p_value = _numeric(baseline, current)
        test = "ks"
    else:
        bins, b, c, statistic, p_value = _categorical(baseline, current)
        test = "chi2"
    psi = population_stability_index(b, c) if bins else 0.0
    values_drifted = bool(bins) and psi >= thresholds.psi and p_value < thresholds.p_value
    return FeatureDrift(
        feature, baseline.kind, test, psi, statistic, p_value, values_drifted or missing_drifted,
        bins, b, c, baseline, current, missing_psi, missing_p, missing_drifted, values_drifted,
    )


def _usable(stats: FeatureStats) -> bool:
    return (stats.finite if stats.kind == NUMERIC else stats.values) > 0


def missing_shift(baseline: FeatureStats, current: FeatureStats) -> tuple[float, float]:
    """PSI and chi-square p-value of the shares of rows without a value (null, NaN, +-inf)."""
    table = np.array(
        [[s.missing, s.count - s.missing] for s in (baseline, current)], dtype=float
    )
    if table[0].sum() == 0 or table[1].sum() == 0:
        return 0.0, 1.0
    statistic, dof = chi_square(table)
    psi = population_stability_index(
        tuple(table[0] / table[0].sum()), tuple(table[1] / table[1].sum())
    )
    return psi, chi2_p_value(statistic, dof)


def population_stability_index(baseline: tuple[float, ...], current: tuple[float, ...]) -> float:
    """sum (c - b) ln(c / b) over bins, shares below EPSILON counted as EPSILON."""
    b = np.maximum(np.asarray(baseline, dtype=float), EPSILON)
    c = np.maximum(np.asarray(current, dtype=float), EPSILON)
    return float(np.sum((c - b) * np.log(c / b)))


def cdf(quantiles: tuple[float, ...] | np.ndarray, x: np.ndarray) -> np.ndarray:
    """F(x) = P(X <= x) read off quantiles at evenly spaced levels 0..1 (see the module docstring)."""
    q = np.asarray(quantiles, dtype=float)
    step = 1.0 / (len(q) - 1)
    i = np.searchsorted(q, x, side="right") - 1  # the last quantile <= x
    out = np.where(i >= len(q) - 1, 1.0, 0.0)
    inside = (i >= 0) & (i < len(q) - 1)
    j = i[inside]
    lo, hi = q[j], q[j + 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(hi > lo, (x[inside] - lo) / (hi - lo), 0.0)
    out[inside] = (j + frac) * step
    return out


def _numeric(
    baseline: FeatureStats, current: FeatureStats
) -> tuple[tuple[str, ...], tuple[float, ...], tuple[float, ...], float, float]:
    qb, qc = np.asarray(baseline.quantiles), np.asarray(current.quantiles)
    edges = np.unique(qb[list(DECILES)])
    fb = np.concatenate([[0.0], cdf(qb, edges), [1.0]])
    fc = np.concatenate([[0.0], cdf(qc, edges), [1.0]])
    labels = [f"<= {_num(edges[0])}"]
    labels += [f"({_num(lo)}, {_num(hi)}]" for lo, hi in zip(edges[:-1], edges[1:], strict=True)]
    labels += [f"> {_num(edges[-1])}"]
    points = np.union1d(qb, qc)
    d = float(np.max(np.abs(cdf(qb, points) - cdf(qc, points))))
    n, m = min(baseline.finite, SAMPLE_ROWS), min(current.finite, SAMPLE_ROWS)
    return tuple(labels), _shares(np.diff(fb)), _shares(np.diff(fc)), d, ks_p_value(d, n, m)


def _categorical(
    baseline: FeatureStats, current: FeatureStats
) -> tuple[tuple[str, ...], tuple[float, ...], tuple[float, ...], float, float]:
    tb, tc = dict(baseline.top), dict(current.top)

    def known(value: str, top: dict[str, int], stats: FeatureStats) -> int | None:
        return top.get(value, 0 if stats.other == 0 else None)

    categories, counts_b, counts_c = [], [], []
    for value in list(tb) + [v for v in tc if v not in tb]:
        nb, nc = known(value, tb, baseline), known(value, tc, current)
        if nb is not None and nc is not None:
            categories.append(value)
            counts_b.append(nb)
            counts_c.append(nc)
    rest_b, rest_c = baseline.values - sum(counts_b), current.values - sum(counts_c)
    if rest_b or rest_c:
        categories.append("(other values)")
        counts_b.append(rest_b)
        counts_c.append(rest_c)
    table = np.array([counts_b, counts_c], dtype=float)
    statistic, dof = chi_square(table)
    return (
        tuple(categories),
        _shares(table[0] / baseline.values),
        _shares(table[1] / current.values),
        statistic,
        chi2_p_value(statistic, dof),
    )


def chi_square(table: np.ndarray) -> tuple[float, int]:
    """Pearson's statistic of homogeneity of a 2 x k table of counts, and its degrees of freedom."""
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return 0.0, 0
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    return float(np.sum((table - expected) ** 2 / expected)), table.shape[1] - 1


def _shares(values: np.ndarray) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


def _num(x: float) -> str:
    """A bin edge, short: 4 significant digits."""
    if math.isfinite(x) and x == int(x) and abs(x) < 1e15:
        return str(int(x))
    return f"{x:.4g}"

"""The p-value functions against closed forms and tabulated critical values; drift on summaries alone."""

from __future__ import annotations

import math

import pytest

from featurestore.monitoring.distributions import chi2_p_value, kolmogorov_sf, ks_p_value
from featurestore.monitoring.drift import (
    EPSILON,
    FeatureDrift,
    Skipped,
    Thresholds,
    compare,
    population_stability_index,
)
from featurestore.profiling import FeatureStats


@pytest.mark.parametrize("dof", [2, 4, 6, 10])
@pytest.mark.parametrize("x", [0.3, 2.0, 9.5, 40.0])
def test_chi_square_tail_matches_the_closed_form_for_even_dof(dof: int, x: float) -> None:
    # For k = 2m degrees of freedom, P(X >= x) = exp(-x/2) sum_{i<m} (x/2)^i / i!.
    m = dof // 2
    exact = math.exp(-x / 2) * sum((x / 2) ** i / math.factorial(i) for i in range(m))
    assert chi2_p_value(x, dof) == pytest.approx(exact, rel=1e-9)


def test_tabulated_critical_values() -> None:
    assert chi2_p_value(3.841459, 1) == pytest.approx(0.05, abs=1e-6)
    assert chi2_p_value(15.08627, 5) == pytest.approx(0.01, abs=1e-6)
    assert kolmogorov_sf(1.358099) == pytest.approx(0.05, abs=1e-5)
    assert kolmogorov_sf(1.627624) == pytest.approx(0.01, abs=1e-5)
    assert ks_p_value(0.0, 100, 100) == 1.0 and ks_p_value(0.5, 1000, 1000) < 1e-50


def categorical(top: list[tuple[str, int]], other: int = 0) -> FeatureStats:
    n = sum(c for _, c in top) + other
    return FeatureStats("c", "VARCHAR", "categorical", n, 0, len(top), top=tuple(top))


def test_a_value_new_in_current_counts_epsilon_in_the_baseline() -> None:
    base = categorical([("a", 500), ("b", 500)])
    cur = categorical([("a", 475), ("b", 475), ("new", 50)])
    f = compare("v:c", base, cur, Thresholds())
    assert isinstance(f, FeatureDrift) and f.bins == ("a", "b", "new")
    expected = 2 * (0.475 - 0.5) * math.log(0.475 / 0.5) + (0.05 - EPSILON) * math.log(0.05 / EPSILON)
    assert f.psi == pytest.approx(expected)
    assert population_stability_index((0.5, 0.5, 0.0), (0.475, 0.475, 0.05)) == pytest.approx(expected)


def test_values_beyond_the_top_lists_are_one_bin() -> None:
    # Incomplete lists: "x" is counted in the baseline only, so it goes with the other values.
    base = categorical([("a", 600), ("x", 100)], other=300)
    cur = categorical([("a", 300), ("y", 100)], other=600)
    f = compare("v:c", base, cur, Thresholds())
    assert isinstance(f, FeatureDrift) and f.bins == ("a", "(other values)")
    assert f.baseline_shares == (0.6, 0.4) and f.current_shares == (0.3, 0.7)
    assert f.drifted


def test_features_that_cannot_be_compared_say_why() -> None:
    quantiles = tuple(i / 100 for i in range(101))
    num = FeatureStats("c", "DOUBLE", "numeric", 10, 0, 10, 0.0, 1.0, 0.5, 0.3, quantiles)
    retyped = compare("v:c", num, categorical([("a", 1)]), Thresholds())
    assert isinstance(retyped, Skipped) and retyped.reason == "its type changed (DOUBLE -> VARCHAR)"
    # No values left is a drift of the missing share (test_drift.py); not compared, a skip.
    empty = compare("v:c", num, FeatureStats("c", "DOUBLE", "numeric", 10, 10), Thresholds(), False)
    assert isinstance(empty, Skipped) and empty.reason == "no values in the current"

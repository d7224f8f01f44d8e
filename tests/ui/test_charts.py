"""Histograms rebuilt from stored quantiles: the shares follow the distribution and sum to one."""

from __future__ import annotations

import numpy as np
import pytest

from featurestore.ui.charts import bars, histogram


def test_uniform_values_fill_the_bins_evenly() -> None:
    shares, low, high = histogram(list(np.linspace(0, 100, 101)), bins=10)
    assert (low, high) == (0, 100)
    assert shares == pytest.approx([0.1] * 10)


def test_skewed_values_pile_up_where_they_are() -> None:
    values = np.random.default_rng(7).exponential(1.0, 20_000)
    shares, _, _ = histogram(list(np.quantile(values, np.linspace(0, 1, 101))), bins=20)
    assert sum(shares) == pytest.approx(1.0)
    assert shares[0] > 0.3 and shares[0] > shares[1] > shares[5]  # most values are small


def test_a_constant_and_repeated_quantiles() -> None:
    assert histogram([5.0] * 101) == ([1.0], 5.0, 5.0)
    shares, _, _ = histogram([0.0] * 50 + list(np.linspace(0, 10, 51)), bins=10)
    assert sum(shares) == pytest.approx(1.0) and shares[0] > 0.5  # half the values are 0
    assert histogram([]) == ([], 0.0, 0.0)


def test_bars_escape_their_titles() -> None:
    svg = bars([0.5, 0.5], ["<b>", "x"], "most frequent values")
    assert svg.count('class="bar"') == 2 and "&lt;b&gt;" in svg and "<b>" not in svg

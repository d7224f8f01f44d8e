"""Survival functions of the Kolmogorov and chi-square distributions, for the drift tests' p-values.

Two short, well-known numerical recipes rather than scipy (a large dependency for two
functions): the Kolmogorov series with Stephens' small-sample correction, and the
regularized upper incomplete gamma function (series below a+1, continued fraction above).
"""

from __future__ import annotations

import math


def ks_p_value(d: float, n: int, m: int) -> float:
    """P(D >= d) for the two-sample Kolmogorov-Smirnov statistic of samples of sizes n and m."""
    if n <= 0 or m <= 0:
        return 1.0
    en = math.sqrt(n * m / (n + m))
    return kolmogorov_sf((en + 0.12 + 0.11 / en) * d)


def kolmogorov_sf(x: float) -> float:
    """P(K > x) = 2 sum_{k>=1} (-1)^(k-1) exp(-2 k^2 x^2), the Kolmogorov distribution's tail."""
    if x <= 0:
        return 1.0
    total, sign, previous = 0.0, 1.0, 0.0
    for k in range(1, 101):
        term = sign * 2.0 * math.exp(-2.0 * k * k * x * x)
        total += term
        if abs(term) <= 1e-3 * previous or abs(term) <= 1e-10 * abs(total):
            return min(max(total, 0.0), 1.0)
        sign, previous = -sign, abs(term)
    return 1.0  # x so small the series does not converge: the tail is 1


def chi2_p_value(statistic: float, dof: int) -> float:
    """P(X >= statistic) for a chi-square variable with ``dof`` degrees of freedom."""
    if dof <= 0 or statistic <= 0:
        return 1.0
    return gamma_q(dof / 2.0, statistic / 2.0)


def gamma_q(a: float, x: float) -> float:
    """The regularized upper incomplete gamma function Q(a, x) = Gamma(a, x) / Gamma(a)."""
    if x <= 0:
        return 1.0
    log_prefix = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1.0:  # the series for P(a, x) converges fast here
        term = total = 1.0 / a
        ap = a
        for _ in range(1000):
            ap += 1.0
            term *= x / ap
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return max(0.0, 1.0 - total * math.exp(log_prefix))
    # Continued fraction for Q(a, x) (modified Lentz).
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 1000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return min(1.0, math.exp(log_prefix) * h)

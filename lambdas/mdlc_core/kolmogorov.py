"""The two-sample Kolmogorov-Smirnov test's p-value, as SciPy computes it, without SciPy.

Both monitoring engines (the embedded :mod:`mdlc_core.monitoring` and the
SQL one, :mod:`mdlc_core.sql.monitoring`) count, for the two samples, the
largest gap between their empirical CDFs as an integer,
``max |c1 * n2 - c2 * n1|`` over the values (``c1``, ``c2``: how many values
of each sample are ``<=`` the value), and hand it to :func:`ks_2samp_counts`.
Integers make the statistic exact, so the engines agree to the bit and the
exact method below gets the lattice step ``h`` without rounding.

The p-value follows ``scipy.stats.ks_2samp(..., method="auto")``, two-sided,
so that an alarm at the spec's ``ks_alpha`` decides as SciPy would:

- both samples of at most :data:`MAX_EXACT_N` values: the exact probability
  that a random lattice path from (0, 0) to (n1, n2) leaves the band
  ``|x/n1 - y/n2| < D`` (Hodges 1958), computed for ``1 - P(inside)``
  directly (Viehmann 2021, arXiv:2102.08037) so that small p-values keep
  their digits; equal sizes by the reflection principle;
- larger samples: the distribution of the one-sample two-sided statistic
  ``D_n`` at ``n = round(n1 * n2 / (n1 + n2))`` (SciPy's ``kstwo.sf``), by
  the regimes of Simard and L'Ecuyer (2011): Ruben-Gambino's closed forms
  at the ends, the Durbin matrix (Marsaglia, Tsang and Wang 2003) for the
  exact CDF, the Pelz-Good (1976) expansion where that is too slow, and
  twice the one-sided Smirnov tail (Birnbaum and Tingey 1951) for small
  p-values.

SciPy is not a dependency of the Lambda functions (its wheel alone would
take about half of what the DuckDB asset leaves of Lambda's 250 MiB), so
the formulas are implemented here on NumPy; ``tests/test_sql_monitoring.py``
holds them to ``scipy.stats.ks_2samp`` within 1e-6 relative wherever the
p-value is above 1e-10.
"""

from __future__ import annotations

import math

import numpy as np

#: Up to this many values in the larger sample, the exact p-value (SciPy's
#: ``MAX_AUTO_N``); above it, the asymptotic one.
MAX_EXACT_N = 10_000
#: Above this ``n`` the one-sided tail uses its asymptotic form (SciPy's
#: ``SMIRNOV_MAX_COMPUTE_N``): the exact sum has ``n`` terms.
SMIRNOV_MAX_EXACT_N = 1_000_000
_MIN_LOG = math.log(np.finfo(float).tiny)  # about -708.4: exp() of less underflows
_SCALE_EXPONENT = 128
_SQRT_2PI = math.sqrt(2 * math.pi)


def ks_2samp_counts(n1: int, n2: int, gap: int) -> tuple[float, float]:
    """The statistic ``D`` and two-sided p-value of samples of ``n1`` and ``n2`` values.

    ``gap`` is ``max |c1 * n2 - c2 * n1|`` over all values, an integer, so
    ``D = gap / (n1 * n2)``. Raises ``ValueError`` for an empty sample or a
    gap that no two samples of these sizes can have.
    """
    n1, n2, gap = int(n1), int(n2), int(gap)
    if n1 <= 0 or n2 <= 0:
        raise ValueError(f"KS test of samples of {n1} and {n2} values: both must be non-empty")
    g = math.gcd(n1, n2)
    if gap < 0 or gap > n1 * n2 or gap % g:
        raise ValueError(f"KS gap {gap} is impossible for samples of {n1} and {n2} values")
    if max(n1, n2) <= MAX_EXACT_N:
        lcm = n1 // g * n2
        h = gap // g
        statistic = h / lcm
        if h == 0:
            return statistic, 1.0
        pvalue = _outside_square(n1, h) if n1 == n2 else _outside_band(n1, n2, g, h)
        if 0.0 <= pvalue <= 1.0:
            return statistic, pvalue
        # Rounding took the exact sum past 1 (h = 1, tiny samples): SciPy then
        # falls back to the asymptotic distribution, and so does this.
    else:
        statistic = gap / (n1 * n2)
    larger, smaller = float(max(n1, n2)), float(min(n1, n2))
    effective = larger * smaller / (larger + smaller)
    # round() rounds half to even, as numpy.round does in SciPy.
    return statistic, kstwo_sf(round(effective), statistic)


# ------------------------------------------------------------------- exact, two samples


def _outside_square(n: int, h: int) -> float:
    """P(D >= h/n) for two samples of ``n``: ``2 * sum_k (-1)^(k-1) C(2n, n-kh) / C(2n, n)``.

    Term k+1 is term k times a product of ``h`` factors, so the alternating
    sum is evaluated nested, from its smallest term: ``2 A0 (1 - A1 (1 - A2 (...)))``,
    where no term is subtracted from a much larger partial sum.
    """
    # block k: C(2n, n-(k+1)h) / C(2n, n-kh), a product of h factors
    nested = 0.0
    for k in range(n // h, -1, -1):
        block = 1.0
        for j in range(k * h, (k + 1) * h):
            block *= (n - j) / (n + j + 1)
        nested = block * (1.0 - nested)
    return 2.0 * nested


def _outside_band(m: int, n: int, g: int, h: int) -> float:
    """Share of the lattice paths from (0, 0) to (m, n) that touch ``|x*n - y*m| >= h*g``.

    ``B(x, y)``, the share of the paths to (x, y) that have touched the
    outside, is 1 outside the band and ``(x B(x-1, y) + y B(x, y-1)) / (x + y)``
    inside (a convex combination: no cancellation, so a p-value of 1e-10
    keeps its digits). Cells on one anti-diagonal ``x + y = s`` depend only
    on the previous one, so each diagonal's band is one vectorized step.
    """
    mg, ng = m // g, n // g
    width = mg + ng
    # B of the previous diagonal, cell x at [x + 1]; 1 (outside) wherever not written.
    cells = np.ones(m + 3)
    cells[1] = 0.0  # B(0, 0): the start is inside
    xs = np.arange(m + 1, dtype=np.float64)
    previous_low = previous_high = 0
    for s in range(1, m + n + 1):
        # Inside iff |ng*x - mg*y| < h; on diagonal s (y = s - x): |width*x - mg*s| < h.
        low = max(s - n, 0, (mg * s - h) // width + 1)
        high = min(s, m, (mg * s + h - 1) // width)
        if high < low:
            return 1.0  # every path leaves the band here
        x = xs[low : high + 1]
        # B(x-1, y) sits at [x], B(x, y-1) at [x + 1]; the result replaces them.
        cells[low + 1 : high + 2] = (x * cells[low : high + 1]
                                     + (s - x) * cells[low + 1 : high + 2]) / s
        cells[previous_low + 1 : low + 1] = 1.0
        cells[high + 2 : previous_high + 2] = 1.0
        previous_low, previous_high = low, high
    return float(cells[m + 1])


# ------------------------------------------------------------- one sample, two-sided


def kstwo_sf(n: int, x: float) -> float:
    """P(D_n > x) for the one-sample two-sided statistic of ``n`` values (SciPy's ``kstwo.sf``)."""
    if n <= 0:
        raise ValueError(f"kstwo needs n >= 1, got {n}")
    if x >= 1.0:
        return 0.0
    if x <= 0.0:
        return 1.0
    t = n * x
    if t <= 1.0:  # Ruben-Gambino: 1/(2n) <= x <= 1/n
        if t <= 0.5:
            return 1.0
        if n <= 140:
            cdf = math.prod(i / n * (2 * t - 1) for i in range(1, n + 1))
        else:
            cdf = math.exp(_log_factorial_over_power(n) + n * math.log(2 * t - 1))
        return _clip(1.0 - cdf)
    if t >= n - 1:  # Ruben-Gambino: x >= 1 - 1/n
        return _clip(2 * (1.0 - x) ** n)
    if x >= 0.5:
        return _clip(2 * smirnov_sf(n, x))
    nx2 = t * x
    if n <= 140:
        if nx2 <= 4:  # exact CDF (SciPy: Durbin up to 0.754693, Pomeranz above; both exact)
            return _clip(1.0 - _durbin_cdf(n, x))
        return _clip(2 * smirnov_sf(n, x))
    if nx2 >= 370.0:
        return 0.0
    if nx2 >= 2.2:
        return _clip(2 * smirnov_sf(n, x))
    if n <= 100_000 and n * x**1.5 <= 1.4:
        return _clip(1.0 - _durbin_cdf(n, x))
    return _clip(1.0 - _pelz_good_cdf(n, x))


def _log_factorial_over_power(n: int) -> float:
    """log(n! / n^n)."""
    return math.lgamma(n + 1) - n * math.log(n)


def _durbin_cdf(n: int, d: float) -> float:
    """P(D_n < d), exact: Durbin's matrix, as Marsaglia, Tsang and Wang (2003) evaluate it.

    With ``n d = k - f`` (``k`` an integer, ``0 <= f < 1``) and the
    ``(2k-1)``-square matrix ``H``, the probability is ``n!/n^n (H^n)[k-1, k-1]``;
    the powers are rescaled by 2^128 as they grow, and the exponent kept apart.
    """
    k = math.ceil(n * d)
    f = k - n * d
    size = 2 * k - 1
    factorial = np.array([1.0 / math.factorial(i) if i < 171 else 0.0 for i in range(size + 1)])
    rows, cols = np.indices((size, size))
    order = rows - cols + 1
    matrix = np.where(order >= 0, factorial[np.clip(order, 0, size)], 0.0)
    powers = f ** np.arange(1, size + 1)
    matrix[:, 0] -= powers * factorial[1:]
    matrix[-1, :] -= powers[::-1] * factorial[size:0:-1]
    if 2 * f - 1 > 0:
        matrix[-1, 0] += (2 * f - 1) ** size * factorial[size]
    result = np.eye(size)
    exponent, matrix_exponent = 0, 0
    remaining = n
    while remaining:
        if remaining & 1:
            result = result @ matrix
            exponent += matrix_exponent
            scale = np.max(np.abs(result))
            if scale > 2.0**_SCALE_EXPONENT:
                result /= 2.0**_SCALE_EXPONENT
                exponent += _SCALE_EXPONENT
        remaining >>= 1
        if remaining:
            matrix = matrix @ matrix
            matrix_exponent *= 2
            if np.max(np.abs(matrix)) > 2.0**_SCALE_EXPONENT:
                matrix /= 2.0**_SCALE_EXPONENT
                matrix_exponent += _SCALE_EXPONENT
    value = result[k - 1, k - 1]
    if value <= 0:
        return 0.0
    log_p = math.log(value) + exponent * math.log(2) + _log_factorial_over_power(n)
    return _clip(math.exp(log_p))


def _pelz_good_cdf(n: int, x: float) -> float:
    """P(D_n <= x) ~ K0(z) + K1(z)/sqrt(n) + K2(z)/n + K3(z)/n^1.5, z = x sqrt(n) (Pelz-Good)."""
    z = math.sqrt(n) * x
    z2 = z * z
    if -(math.pi**2) / 8 / z2 < _MIN_LOG:
        return 0.0
    pi2, pi4, pi6 = math.pi**2, math.pi**4, math.pi**6
    k0 = k1 = k2 = k3 = 0.0
    k2_extra = k3_extra = 0.0
    for k in range(1, 200):
        m = 2 * k - 1
        m2 = m * m
        q = math.exp(-m2 * pi2 / (8 * z2))
        k0 += q
        k1 += (pi2 * m2 / 4 - z2) * q
        k2 += (6 * z**6 + 2 * z**4 + (2 * z**4 - 5 * z2) * pi2 * m2 / 4
               + pi4 * (1 - 2 * z2) * m2 * m2 / 16) * q
        k3 += (-30 * z**6 - 90 * z**8 + pi2 * (135 * z**4 - 96 * z**6) * m2 / 4
               + pi4 * (212 * z**4 - 60 * z2) * m2 * m2 / 16
               + pi6 * (5 - 30 * z2) * m2 * m2 * m2 / 64) * q
        r = math.exp(-k * k * pi2 / (2 * z2))
        k2_extra += k * k * r
        k3_extra += (3 * z2 - pi2 * k * k) * k * k * r
        if q < 1e-300 and r < 1e-300:
            break
    k0 *= _SQRT_2PI / z
    k1 *= _SQRT_2PI / (6 * z**4)
    k2 = k2 * _SQRT_2PI / (72 * z**7) - k2_extra * pi2 * _SQRT_2PI / (36 * z**3)
    k3 = k3 * _SQRT_2PI / (6480 * z**10) + k3_extra * pi2 * _SQRT_2PI / (216 * z**6)
    return k0 + k1 / math.sqrt(n) + k2 / n + k3 / n**1.5


# --------------------------------------------------------------- one sample, one-sided


def smirnov_sf(n: int, x: float) -> float:
    """P(D+_n >= x) of the one-sided statistic (SciPy's ``special.smirnov``).

    Birnbaum and Tingey's sum ``x sum_v C(n,v) (x + v/n)^(v-1) (1 - x - v/n)^(n-v)``
    over ``v <= n (1 - x)``: positive terms, summed as logarithms. Above
    :data:`SMIRNOV_MAX_EXACT_N` values, ``exp(-(6nx + 1)^2 / 18n)``, as SciPy does.
    """
    if n == 1:
        return 1.0 - x
    if x <= 0.0:
        return 1.0
    if x >= 1.0:
        return 0.0
    if -2 * n * x * x < _MIN_LOG:
        return 0.0
    if n > SMIRNOV_MAX_EXACT_N:
        log_p = -((6.0 * n * x + 1) ** 2) / 18.0 / n
        return math.exp(log_p) if log_p < -math.log(2) else 1.0 + math.expm1(log_p)
    last = math.floor(n * (1.0 - x))
    v = np.arange(0, last + 1, dtype=np.float64)
    rest = (n - v) / n - x
    keep = rest > 0
    v, rest = v[keep], rest[keep]
    log_binomial = np.concatenate(
        ([0.0], np.cumsum(np.log((n - v[1:] + 1) / v[1:])))) if len(v) else v
    with np.errstate(divide="ignore"):
        logs = log_binomial + (v - 1) * np.log(x + v / n) + (n - v) * np.log(rest)
    if not len(logs):
        return 0.0
    top = float(np.max(logs))
    return _clip(x * math.exp(top) * float(np.sum(np.exp(logs - top))))


def _clip(p: float) -> float:
    return min(1.0, max(0.0, float(p)))

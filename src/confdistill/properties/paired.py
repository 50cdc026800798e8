"""Negative and positive flips and McNemar's exact test: the accuracy change as a paired comparison.

The regression-free model-update literature (positive-congruent training) judges a replacement
model by its *negative flips*: inputs the old model (the teacher) got right and the new one (the
student) gets wrong. Two students with the same accuracy can differ a lot there. Over labelled rows:

- ``negative_flips``: teacher right, student wrong (b rows); ``positive_flips``: the reverse (c rows);
  each ``{"rate": count / n, "ci95", "count"}``, the interval a seeded bootstrap of the share
  (binomial draws: the exact row bootstrap of one count), like every interval of the analysis;
- ``accuracy_test``: ``{"mcnemar_p", "discordant": [b, c]}``, McNemar's exact two-sided test that
  the accuracy did not change: b ~ Binomial(b + c, 1/2) under the null, so p is scipy's
  ``binomtest(b, b + c, 0.5).pvalue`` (1.0 when b + c = 0: no discordant row, no evidence).

Imports numpy (scipy.special lazily; never scipy.stats).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from confdistill.properties.calibration import _percentile_interval

#: Bootstrap stream keys of the two shares (independent of the thresholds' streams).
_STREAM = {"negative_flips": 1_000_000_001, "positive_flips": 1_000_000_002}


def share(count: int, n: int, *, n_bootstrap: int, seed: int, key: str) -> dict[str, Any]:
    """``{"rate", "ci95", "count"}`` of ``count`` rows out of ``n`` (NaN rate when n = 0)."""
    if n <= 0:
        return {"rate": math.nan, "ci95": [math.nan, math.nan], "count": int(count)}
    rate = count / n
    ci = [rate, rate]
    if n_bootstrap > 0:
        rng = np.random.default_rng([int(seed), _STREAM[key]])
        draws = rng.binomial(n, rate, size=int(n_bootstrap)) / n
        lo, hi = _percentile_interval(draws, rate)
        ci = [float(lo), float(hi)]
    return {"rate": float(rate), "ci95": ci, "count": int(count)}


#: Up to this many discordant rows McNemar's p is summed exactly in integers (no scipy import).
EXACT_MAX_DISCORDANT = 20_000


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided p of McNemar's exact test on the discordant counts b, c (binomial, p = 1/2).

    For p = 1/2 the binomial is symmetric, so scipy's ``binomtest(b, n, 0.5)`` (n = b + c) is
    min(1, 2·P(X ≤ min(b, c))), and 1 when b = c. Up to :data:`EXACT_MAX_DISCORDANT` rows P(X ≤ m) is
    summed in exact integers, C(n, i) for i = m, m − 1, … until the rest is below 2^-64 of the sum,
    then rounded once; above, it is I_{1/2}(n − m, m + 1), the regularised incomplete beta function
    (scipy.special, the Boost routine binomtest itself ends in). Never scipy.stats: its import costs
    seconds of start-up, and a 10 k-row analysis must stay instant.
    """
    b, c = int(b), int(c)
    if b == c:
        return 1.0
    n, m = b + c, min(b, c)
    if n > EXACT_MAX_DISCORDANT:
        from scipy.special import betainc

        return float(min(1.0, 2.0 * betainc(n - m, m + 1, 0.5)))
    from fractions import Fraction

    term = math.comb(n, m)
    total = term
    i = m
    # terms shrink going down from m < n/2 (C(n, i−1) = C(n, i)·i / (n − i + 1)); the tail left out is
    # below 2^-64 of the sum, far under a double's rounding
    while i > 0 and term << 64 > total:
        term = term * i // (n - i + 1)
        total += term
        i -= 1
    return float(min(Fraction(1), Fraction(2 * total, 1 << n)))


def paired_analysis(cells: dict[str, np.ndarray], n: int, *, labelled: bool, n_bootstrap: int,
                    seed: int) -> dict[str, Any]:
    """The three keys of the analysis JSON from :func:`confdistill.properties.pair.decision_cells` (None when
    unlabelled: without labels nobody is right or wrong)."""
    if not labelled:
        return {"negative_flips": None, "positive_flips": None, "accuracy_test": None}
    cnt = cells["n"].astype(np.int64)
    t_ok, s_ok = cells["t_ok"].astype(bool), cells["s_ok"].astype(bool)
    b, c = int(cnt[t_ok & ~s_ok].sum()), int(cnt[~t_ok & s_ok].sum())
    return {"negative_flips": share(b, n, n_bootstrap=n_bootstrap, seed=seed, key="negative_flips"),
            "positive_flips": share(c, n, n_bootstrap=n_bootstrap, seed=seed, key="positive_flips"),
            "accuracy_test": {"mcnemar_p": mcnemar_exact(b, c), "discordant": [b, c]}}


__all__ = ["mcnemar_exact", "paired_analysis", "share"]

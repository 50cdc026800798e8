"""Decisions at operating thresholds: how often the student decides differently from the teacher.

A model's decision at a threshold τ is its predicted class when that class's probability is
≥ τ, else *abstain*. Per row and τ the pair is one of: ``same`` (both abstain, or both act with
the same class), ``teacher_only`` (the teacher acts, the student abstains), ``student_only``, or
``class_change`` (both act, with different classes). The flip rate is the share of ALL rows
(not only the both-correct ones) that are not ``same``. At τ = 0.5 with two classes every
prediction acts (p[argmax] ≥ 0.5), so the flip rate is exactly 1 − agreement.

The counts are the sufficient statistics: a row bootstrap of a share is a multinomial draw of
the four counts, so the 95% intervals need no per-row data (the engine can count in a query).

Imports numpy only (never torch).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from confdistill.errors import InputError, setting_name
from confdistill.properties.calibration import _percentile_interval

DEFAULT_THRESHOLDS = (0.5, 0.9)
#: τ grid of the flip-rate curve: 0.50, 0.51, …, 0.99.
CURVE = np.round(np.arange(0.50, 0.9901, 0.01), 2)
PARTS = ("same", "teacher_only", "student_only", "class_change")

_EXPECTED = "expected comma-separated numbers in (0, 1], strictly increasing, e.g. 0.5,0.9"


def parse_thresholds(text: str) -> tuple[float, ...]:
    """``"0.5,0.9"`` -> (0.5, 0.9). Raises a one-line InputError naming ``--thresholds`` unless every
    value is a number in (0, 1] and the values are strictly increasing (no duplicates)."""
    items = [item.strip() for item in str(text).split(",")]
    if any(not item for item in items):
        raise InputError(f"--thresholds: empty value in {text!r}; {_EXPECTED}")
    values: list[float] = []
    for item in items:
        try:
            value = float(item)
        except ValueError:
            raise InputError(f"--thresholds: {item!r} is not a number; {_EXPECTED}") from None
        if not 0.0 < value <= 1.0:  # also rejects nan
            raise InputError(f"--thresholds: {item} is outside (0, 1]; {_EXPECTED}")
        if values and value == values[-1]:
            raise InputError(f"--thresholds: {item} is given twice; {_EXPECTED}")
        if values and value < values[-1]:
            raise InputError(f"--thresholds: {item} comes after the larger {values[-1]:g}; {_EXPECTED}")
        values.append(value)
    return tuple(values)


def _at_least(sorted_values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """(T,) int64: how many of the sorted values are ≥ each threshold."""
    return sorted_values.size - np.searchsorted(sorted_values, thresholds, side="left").astype(np.int64)


def flip_counts(t_conf_pred: np.ndarray, t_pred: np.ndarray, s_conf_pred: np.ndarray, s_pred: np.ndarray,
                thresholds: Sequence[float] | np.ndarray) -> np.ndarray:
    """(T, 4) int64 counts [same, teacher_only, student_only, class_change] per threshold.

    ``t_conf_pred`` / ``s_conf_pred`` (n,): each model's probability of its own prediction
    ``t_pred`` / ``s_pred`` (n,). Sort-based, O(n log n + T log n): a model acts at τ when its
    confidence is ≥ τ, and both act when min(t, s) ≥ τ, so teacher_only = #{t ≥ τ} − #{min ≥ τ},
    student_only = #{s ≥ τ} − #{min ≥ τ}, class_change = #{min ≥ τ, t_pred ≠ s_pred}.
    """
    tc = np.asarray(t_conf_pred, dtype=np.float64)
    sc = np.asarray(s_conf_pred, dtype=np.float64)
    tp, sp = np.asarray(t_pred), np.asarray(s_pred)
    n = tc.size
    if tc.ndim != 1 or any(a.shape != (n,) for a in (tp, sc, sp)):
        raise InputError("flip counts: the teacher's and the student's confidences and predictions must be "
                         f"(n,) arrays of one length, got {tc.shape}, {tp.shape}, {sc.shape}, {sp.shape}")
    if np.isnan(tc).any() or np.isnan(sc).any():
        raise InputError("flip counts: a confidence is NaN")
    thr = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    both = np.minimum(tc, sc)
    n_t = _at_least(np.sort(tc), thr)
    n_s = _at_least(np.sort(sc), thr)
    n_both = _at_least(np.sort(both), thr)
    change = _at_least(np.sort(both[tp != sp]), thr)
    teacher_only, student_only = n_t - n_both, n_s - n_both
    same = n - teacher_only - student_only - change
    return np.column_stack([same, teacher_only, student_only, change]).astype(np.int64)


def _key(threshold: float) -> int:
    """An integer identity of τ for its bootstrap stream (a threshold's interval does not depend on
    which other thresholds were asked for)."""
    return round(float(threshold) * 1_000_000_000)


def flips_analysis(counts: np.ndarray, thresholds: Sequence[float], labels: Sequence[str] | None, *,
                   n_bootstrap: int, seed: int) -> dict[str, dict[str, Any]]:
    """Flip rate, its 95% bootstrap interval and its three parts, per threshold.

    ``counts`` (T, 4) from :func:`flip_counts`; keys are ``labels`` (the thresholds as the user
    wrote them) or ``f"{τ:g}"``. Each value: {"rate", "ci95": [lo, hi], "teacher_only",
    "student_only", "class_change"}, every part a share of all N rows (rate = sum of the three).
    Bootstrap: B draws of multinomial(N, counts/N), the exact row bootstrap of the shares;
    seeded by (seed, τ), percentiles 2.5 / 97.5 (widened to contain the rate, which they
    practically always do for a share); B = 0 gives [rate, rate]. N = 0 gives NaN.
    """
    counts = np.asarray(counts, dtype=np.int64)
    thresholds = [float(t) for t in thresholds]
    if counts.shape != (len(thresholds), len(PARTS)):
        raise ValueError(f"counts has shape {counts.shape}, expected ({len(thresholds)}, {len(PARTS)})")
    if labels is not None and len(labels) != len(thresholds):
        raise ValueError(f"{len(labels)} labels for {len(thresholds)} thresholds")
    if int(n_bootstrap) != n_bootstrap or n_bootstrap < 0:
        raise InputError(f"{setting_name('n_bootstrap', flag='--bootstrap')}: expected a number of resamples >= 0, got {n_bootstrap!r}")
    keys = list(labels) if labels is not None else [f"{t:g}" for t in thresholds]
    if len(set(keys)) != len(keys):
        raise ValueError(f"threshold keys are not distinct: {keys}")
    out: dict[str, dict[str, Any]] = {}
    for key, tau, c in zip(keys, thresholds, counts, strict=True):
        n = int(c.sum())
        if n == 0:
            out[key] = {"rate": math.nan, "ci95": [math.nan, math.nan],
                        **{part: math.nan for part in PARTS[1:]}}
            continue
        rate = float(1.0 - c[0] / n)  # the form of 1 − agreement: equal to it bit for bit at τ = 0.5
        ci = [rate, rate]
        if n_bootstrap > 0:
            rng = np.random.default_rng([int(seed), _key(tau)])
            draws = rng.multinomial(n, c / n, size=int(n_bootstrap))
            lo, hi = _percentile_interval(1.0 - draws[:, 0] / n, rate)
            ci = [float(lo), float(hi)]
        out[key] = {"rate": rate, "ci95": ci, **{part: float(c[i] / n) for i, part in enumerate(PARTS) if i}}
    return out


def flip_curve(counts: np.ndarray, thresholds: Sequence[float] | np.ndarray) -> dict[str, list[float]]:
    """{"thresholds", "rate", "teacher_only", "student_only", "class_change"}: lists of shares of all
    rows per τ, from (T, 4) ``counts`` (e.g. ``flip_counts(..., CURVE)``) — the flip-rate plot's data."""
    counts = np.asarray(counts, dtype=np.float64)
    thr = [float(t) for t in np.asarray(thresholds, dtype=np.float64).reshape(-1)]
    if counts.shape != (len(thr), len(PARTS)):
        raise ValueError(f"counts has shape {counts.shape}, expected ({len(thr)}, {len(PARTS)})")
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = counts / counts.sum(axis=1, keepdims=True)
    return {"thresholds": thr, "rate": (1.0 - shares[:, 0]).tolist(),
            **{part: shares[:, i].tolist() for i, part in enumerate(PARTS) if i}}


__all__ = [
    "CURVE",
    "DEFAULT_THRESHOLDS",
    "PARTS",
    "flip_counts",
    "flip_curve",
    "flips_analysis",
    "parse_thresholds",
]

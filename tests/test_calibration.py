"""Calibration figures (properties/calibration.py) against torchmetrics, scikit-learn, a hand-computed
case, the cell form of the sufficient statistics, and the paired bootstrap's properties."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import brier_score_loss, log_loss
from torchmetrics.functional.classification import multiclass_calibration_error

import confdistill.properties.calibration as cal
from confdistill.errors import InputError
from confdistill.properties.calibration import (
    METRICS,
    CalibrationUnits,
    ace_bin,
    calibration_analysis,
    calibration_metrics,
    ece_bin,
    reliability,
    units_from_rows,
)

EDGES = np.linspace(0.0, 1.0, 16)


def softmax_rows(rng: np.random.Generator, n: int, k: int, scale: float = 2.0) -> np.ndarray:
    logits = rng.normal(size=(n, k)) * scale
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def noisy_labels(rng: np.random.Generator, probs: np.ndarray, noise: float) -> np.ndarray:
    """The argmax, replaced by a uniform class with probability ``noise`` (a miscalibrated model)."""
    label = probs.argmax(axis=1)
    flip = rng.random(len(label)) < noise
    label[flip] = rng.integers(0, probs.shape[1], int(flip.sum()))
    return label


def torchmetrics_ce(probs: np.ndarray, label: np.ndarray, norm: str) -> float:
    return float(multiclass_calibration_error(torch.from_numpy(probs), torch.from_numpy(label),
                                              num_classes=probs.shape[1], n_bins=15, norm=norm))


def metrics_of(probs: np.ndarray, label: np.ndarray) -> dict[str, float]:
    return calibration_metrics(units_from_rows(probs, probs.argmax(axis=1), label))


# ------------------------------------------------------------------------------------------
# Bins
# ------------------------------------------------------------------------------------------


def test_ece_bin_is_torch_bucketize_right_minus_one() -> None:
    # The formula of torchmetrics' _binning_bucketize, run by torch on the same float64 values:
    # every boundary j/15 itself, its float neighbours, 0, 1 and random values.
    below = np.nextafter(EDGES[1:], 0.0)
    above = np.nextafter(EDGES[:-1], 1.0)
    conf = np.concatenate([EDGES, below, above, np.random.default_rng(0).random(1000)])
    expected = torch.bucketize(torch.from_numpy(conf), torch.from_numpy(EDGES), right=True) - 1
    assert np.array_equal(ece_bin(conf), expected.numpy())
    # Bins are [j/15, (j+1)/15) and conf == 1.0 has a 16th slot of its own.
    assert ece_bin(EDGES).tolist() == list(range(16))
    assert ece_bin(below).tolist() == list(range(15))
    assert ece_bin(np.array([0.0, 1.0])).tolist() == [0, 15]


def test_ece_bin_rejects_non_probabilities() -> None:
    for bad in ([1.0000001], [-1e-9], [math.nan]):
        with pytest.raises(InputError, match=r"outside \[0, 1\]"):
            ece_bin(np.array(bad))


def test_ace_bin_equal_mass_ties_by_row_order() -> None:
    # Sorted by (conf, row): row 1 (0.1) rank 0, row 3 (0.2) rank 1, rows 0 and 2 (0.3, a tie kept in
    # row order) ranks 2 and 3; bin = rank·15 // 4 = 0, 3, 7, 11.
    assert ace_bin(np.array([0.3, 0.1, 0.3, 0.2])).tolist() == [7, 0, 11, 3]
    # 60 rows, all tied: by row order, four rows per bin.
    assert ace_bin(np.full(60, 0.5)).tolist() == [i // 4 for i in range(60)]
    conf = np.random.default_rng(1).random(15 * 7)
    assert np.bincount(ace_bin(conf)).tolist() == [7] * 15
    assert np.all(np.diff(ace_bin(conf)[np.argsort(conf)]) >= 0)
    assert ace_bin(np.empty(0)).size == 0


# ------------------------------------------------------------------------------------------
# Against the libraries
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("k", "seed"), [(2, 0), (3, 1), (10, 2), (2, 3)])
def test_ece_mce_match_torchmetrics_random(k: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    probs = softmax_rows(rng, 3000, k)
    label = noisy_labels(rng, probs, 0.3)
    ours = metrics_of(probs, label)
    # torchmetrics bins float32 confidences: agreement to float32 rounding.
    assert ours["ece"] == pytest.approx(torchmetrics_ce(probs, label, "l1"), abs=2e-6)
    assert ours["mce"] == pytest.approx(torchmetrics_ce(probs, label, "max"), abs=2e-6)


def test_ece_mce_match_torchmetrics_at_bin_boundaries_and_one() -> None:
    # Rows whose top-label confidence is exactly a bin boundary j/15 (k = 16, the other classes
    # share the rest, so the boundary value is the max), and rows with conf == 1.0 (16th slot).
    # torchmetrics compares float32 confidences with a float32 linspace whose boundaries 3/15,
    # 6/15 and 7/15 lie above float32(j/15): there it puts j/15 one bin lower, a float32 artefact
    # (this module bins float64 values against float64 boundaries). Those j are left out here.
    tm_edges = torch.linspace(0, 1, 16, dtype=torch.float32)
    tm_bin = (torch.bucketize(torch.from_numpy(EDGES).float(), tm_edges, right=True) - 1).numpy()
    agree = [j for j in range(1, 16) if tm_bin[j] == j]
    assert len(agree) >= 12
    rng = np.random.default_rng(4)
    k = 16
    rows, labels = [], []
    for j in agree:
        c = EDGES[j]
        for _ in range(int(rng.integers(3, 9))):
            p = np.full(k, (1.0 - c) / (k - 1))
            cls = int(rng.integers(0, k))
            p[cls] = c
            rows.append(p)
            labels.append(cls if rng.random() < 0.6 else (cls + 1) % k)
    probs, label = np.array(rows), np.array(labels)
    conf = probs.max(axis=1)
    assert np.array_equal(ece_bin(conf), np.searchsorted(EDGES, conf))  # each row sits on its boundary
    assert set(ece_bin(conf).tolist()) == set(agree)
    assert 15 in agree  # conf == 1.0 rows included
    ours = metrics_of(probs, label)
    assert ours["ece"] == pytest.approx(torchmetrics_ce(probs, label, "l1"), abs=2e-6)
    assert ours["mce"] == pytest.approx(torchmetrics_ce(probs, label, "max"), abs=2e-6)


@pytest.mark.parametrize("k", [2, 5])
def test_brier_and_nll_match_sklearn(k: int) -> None:
    rng = np.random.default_rng(10 + k)
    probs = softmax_rows(rng, 2000, k)
    label = noisy_labels(rng, probs, 0.25)
    ours = metrics_of(probs, label)
    if k == 2:  # multi-class form = 2 × sklearn's binary Brier score
        assert ours["brier"] == pytest.approx(2.0 * brier_score_loss(label, probs[:, 1]), abs=1e-12)
    assert ours["brier"] == pytest.approx(
        brier_score_loss(label, probs, labels=list(range(k)), scale_by_half=False), abs=1e-12)
    assert ours["nll"] == pytest.approx(log_loss(label, probs, labels=list(range(k))), abs=1e-12)


# ------------------------------------------------------------------------------------------
# Hand-computed case (N = 30, k = 2)
# ------------------------------------------------------------------------------------------
#   group rows    teacher p      label  t conf  t correct | student p      s conf  s correct
#   A     0–9     (0.10, 0.90)   1      0.90    yes       | (0.25, 0.75)   0.75    yes
#   B     10–19   (0.10, 0.90)   0      0.90    no        | (0.25, 0.75)   0.75    no
#   C     20–26   (0.60, 0.40)   0      0.60    yes       | (0.85, 0.15)   0.85    yes
#   D     27–29   (0.60, 0.40)   1      0.60    no        | (0.85, 0.15)   0.85    no
#
# Teacher. ECE bins: 0.9·15 = 13.5 -> bin 13 (A, B: 20 rows); 0.6 = 9/15 exactly, a boundary ->
#   bin 9 (C, D: 10 rows). Bin 13: Σcorrect − Σconf = 10 − 18 = −8; bin 9: 7 − 6 = +1.
#   ECE = (8 + 1)/30 = 0.3.  MCE = max(8/20, 1/10) = 0.4.
#   ACE: ranks by (conf, row): C, D (rows 20–29) ranks 0–9, A ranks 10–19, B ranks 20–29;
#   bin = rank·15 // 30 = rank // 2 (pairs). |Σcorrect − Σconf| per bin: bins 0–2 (C pairs)
#   |2 − 1.2| = 0.8 each -> 2.4; bin 3 (rows 26 C, 27 D) |1 − 1.2| = 0.2; bin 4 (D) |0 − 1.2| = 1.2;
#   bins 5–9 (A) |2 − 1.8| = 0.2 each -> 1.0; bins 10–14 (B) |0 − 1.8| = 1.8 each -> 9.0.
#   ACE = (2.4 + 0.2 + 1.2 + 1.0 + 9.0)/30 = 13.8/30 = 0.46.
#   Brier per row: A 0.1² + 0.1² = 0.02; B 0.9² + 0.9² = 1.62; C 0.4² + 0.4² = 0.32;
#   D 0.6² + 0.6² = 0.72. Brier = (10·0.02 + 10·1.62 + 7·0.32 + 3·0.72)/30 = 20.8/30 = 0.693333…
#   NLL = (10·(−ln 0.9) + 10·(−ln 0.1) + 7·(−ln 0.6) + 3·(−ln 0.4))/30
#       = (1.0536052 + 23.0258509 + 3.5757794 + 2.7488722)/30 = 1.0134703.
# Student. ECE bins: 0.75·15 = 11.25 -> 11 (A, B); 0.85·15 = 12.75 -> 12 (C, D).
#   Bin 11: 10 − 15 = −5; bin 12: 7 − 8.5 = −1.5. ECE = 6.5/30 = 0.216667. MCE = max(5/20, 1.5/10) = 0.25.
#   ACE: A ranks 0–9, B 10–19, C/D 20–29; pairs: bins 0–4 (A) |2 − 1.5| = 0.5 -> 2.5; bins 5–9 (B)
#   |0 − 1.5| = 1.5 -> 7.5; bins 10–12 (C) |2 − 1.7| = 0.3 -> 0.9; bin 13 (rows 26, 27) |1 − 1.7| = 0.7;
#   bin 14 (D) |0 − 1.7| = 1.7. ACE = 13.3/30 = 0.443333.
#   Brier: A 2·0.25² = 0.125; B 2·0.75² = 1.125; C 2·0.15² = 0.045; D 2·0.85² = 1.445.
#   Brier = (1.25 + 11.25 + 0.315 + 4.335)/30 = 17.15/30 = 0.571667.
#   NLL = (10·(−ln 0.75) + 10·(−ln 0.25) + 7·(−ln 0.85) + 3·(−ln 0.15))/30
#       = (2.8768207 + 13.8629436 + 1.1376325 + 5.6913600)/30 = 0.7856252.
# Delta (student − teacher): ECE −0.083333, ACE −0.016667, MCE −0.15, Brier −0.121667, NLL −0.227845.

HAND_LABEL = np.array([1] * 10 + [0] * 10 + [0] * 7 + [1] * 3)
HAND_TEACHER = np.array([[0.10, 0.90]] * 20 + [[0.60, 0.40]] * 10)
HAND_STUDENT = np.array([[0.25, 0.75]] * 20 + [[0.85, 0.15]] * 10)
HAND_T = {"ece": 0.3, "ace": 0.46, "mce": 0.4, "brier": 20.8 / 30,
          "nll": (10 * -math.log(0.9) + 10 * -math.log(0.1) + 7 * -math.log(0.6) + 3 * -math.log(0.4)) / 30}
HAND_S = {"ece": 6.5 / 30, "ace": 13.3 / 30, "mce": 0.25, "brier": 17.15 / 30,
          "nll": (10 * -math.log(0.75) + 10 * -math.log(0.25) + 7 * -math.log(0.85) + 3 * -math.log(0.15)) / 30}


def hand_units() -> tuple[CalibrationUnits, CalibrationUnits]:
    return (units_from_rows(HAND_TEACHER, HAND_TEACHER.argmax(axis=1), HAND_LABEL),
            units_from_rows(HAND_STUDENT, HAND_STUDENT.argmax(axis=1), HAND_LABEL))


def test_hand_computed_case() -> None:
    t, s = hand_units()
    assert HAND_T["nll"] == pytest.approx(1.0134703, abs=1e-7)
    assert HAND_S["nll"] == pytest.approx(0.7856252, abs=1e-7)
    res = calibration_analysis(t, s, n_bootstrap=0, seed=0)
    for m in METRICS:
        assert res["teacher"][m] == pytest.approx(HAND_T[m], abs=1e-12), m
        assert res["student"][m] == pytest.approx(HAND_S[m], abs=1e-12), m
        assert res["delta"][m] == pytest.approx(HAND_S[m] - HAND_T[m], abs=1e-12), m
        assert res["ci95"]["teacher"][m] == [res["teacher"][m]] * 2  # B = 0: [v, v]
    assert res["delta"]["mce"] == pytest.approx(-0.15, abs=1e-12)
    assert res["bootstrap_method"] == "none" and res["n_bootstrap"] == 0 and res["bins"] == 15
    # The library agrees on this case too.
    assert HAND_T["ece"] == pytest.approx(torchmetrics_ce(HAND_TEACHER, HAND_LABEL, "l1"), abs=1e-6)
    assert HAND_S["mce"] == pytest.approx(torchmetrics_ce(HAND_STUDENT, HAND_LABEL, "max"), abs=1e-6)


def test_reliability_hand_case() -> None:
    t, _ = hand_units()
    rel = reliability(t)
    assert rel["edges"] == pytest.approx(EDGES.tolist()) and len(rel["edges"]) == 16
    assert rel["count"] == [0] * 9 + [10] + [0] * 3 + [20] + [0] * 2
    # Bin 9: mean conf 0.6, accuracy 7/10; bin 13: mean conf 0.9, accuracy 10/20; empty bins None.
    assert rel["confidence"][9] == pytest.approx(0.6) and rel["accuracy"][9] == pytest.approx(0.7)
    assert rel["confidence"][13] == pytest.approx(0.9) and rel["accuracy"][13] == pytest.approx(0.5)
    assert all(rel["confidence"][j] is None and rel["accuracy"][j] is None for j in range(16) if j not in (9, 13))


def test_reliability_matches_sklearns_calibration_curve() -> None:
    from sklearn.calibration import calibration_curve

    rng = np.random.default_rng(11)
    probs = softmax_rows(rng, 3000, 3)
    probs[:40] = np.eye(3)[rng.integers(0, 3, 40)]  # conf == 1.0: the diagram's 16th slot
    label = noisy_labels(rng, probs, 0.3)
    pred = probs.argmax(axis=1)
    rel = reliability(units_from_rows(probs, pred, label))
    count = np.array(rel["count"], dtype=np.float64)
    conf = np.array([c or 0.0 for c in rel["confidence"]]) * count
    acc = np.array([a or 0.0 for a in rel["accuracy"]]) * count
    # sklearn's 15 uniform bins put conf == 1.0 in the last one: merge the 16th slot into the 15th.
    count[14], conf[14], acc[14] = count[14] + count[15], conf[14] + conf[15], acc[14] + acc[15]
    filled = count[:15] > 0
    prob_true, prob_pred = calibration_curve(pred == label, probs.max(axis=1), n_bins=15, strategy="uniform")
    assert acc[:15][filled] / count[:15][filled] == pytest.approx(prob_true, rel=1e-12)
    assert conf[:15][filled] / count[:15][filled] == pytest.approx(prob_pred, rel=1e-12)
    assert count[15] == 40 and filled.sum() == len(prob_true)


# ------------------------------------------------------------------------------------------
# Cell form = row form
# ------------------------------------------------------------------------------------------


def to_cells(t: CalibrationUnits, s: CalibrationUnits) -> tuple[CalibrationUnits, CalibrationUnits]:
    """Aggregate row units into cells keyed by (t_bin, t_correct, s_bin, s_correct, t_ace, s_ace),
    as the engine does for large files."""
    key = np.column_stack([t.bin, t.sum_correct, s.bin, s.sum_correct, t.ace_bin, s.ace_bin]).astype(np.int64)
    cells, inverse = np.unique(key, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    m = len(cells)

    def agg(u: CalibrationUnits, bin_col: int, ace_col: int) -> CalibrationUnits:
        def total(x: np.ndarray) -> np.ndarray:
            return np.bincount(inverse, weights=x, minlength=m)
        return CalibrationUnits(count=total(u.count), bin=cells[:, bin_col], ace_bin=cells[:, ace_col],
                                sum_conf=total(u.sum_conf), sum_correct=total(u.sum_correct),
                                sum_brier=total(u.sum_brier), sum_nll=total(u.sum_nll))

    return agg(t, 0, 4), agg(s, 2, 5)


def random_pair(seed: int, n: int, k: int, dyadic: bool = False) -> tuple[CalibrationUnits, CalibrationUnits]:
    rng = np.random.default_rng(seed)
    pt, ps = softmax_rows(rng, n, k), softmax_rows(rng, n, k, scale=1.0)
    label = noisy_labels(rng, pt, 0.3)
    if dyadic:
        # Probabilities on a 2^-10 grid (last class takes the rest): every sum of confidences,
        # correct counts and Brier terms is exact in float64, whatever the summation order.
        def grid(p: np.ndarray) -> np.ndarray:
            q = np.floor(p * 1024) / 1024
            q[:, -1] = 1.0 - q[:, :-1].sum(axis=1)
            return q
        pt, ps = grid(pt), grid(ps)
    return (units_from_rows(pt, pt.argmax(axis=1), label), units_from_rows(ps, ps.argmax(axis=1), label))


def test_cells_give_exactly_the_row_point_metrics() -> None:
    t, s = random_pair(20, 5000, 3, dyadic=True)
    ct, cs = to_cells(t, s)
    assert ct.count.size < 2000 and ct.count.max() > 10 and not ct.is_rows and ct.n == t.n == 5000
    for rows, cells in ((t, ct), (s, cs)):
        a, b = calibration_metrics(rows), calibration_metrics(cells)
        # Exact sums -> identical values (the NLL terms are logarithms: rounding only).
        assert {m: a[m] for m in ("ece", "ace", "mce", "brier")} == {m: b[m] for m in ("ece", "ace", "mce", "brier")}
        assert a["nll"] == pytest.approx(b["nll"], rel=1e-13)
        assert reliability(rows) == reliability(cells)


def test_cells_match_rows_on_float_data() -> None:
    t, s = random_pair(21, 4000, 4)
    ct, cs = to_cells(t, s)
    for rows, cells in ((t, ct), (s, cs)):
        a, b = calibration_metrics(rows), calibration_metrics(cells)
        for m in METRICS:
            assert a[m] == pytest.approx(b[m], rel=1e-12, abs=1e-15), m
    res = calibration_analysis(ct, cs, n_bootstrap=300, seed=3)
    assert res["bootstrap_method"] == "cells"
    rows_res = calibration_analysis(t, s, n_bootstrap=300, seed=3)
    assert rows_res["bootstrap_method"] == "rows"
    for who in ("teacher", "student", "delta"):
        for m in METRICS:
            lo, hi = res["ci95"][who][m]
            assert lo <= res[who][m] <= hi, (who, m)
            # The cell bootstrap only drops the within-cell spread: intervals of a similar width.
            rlo, rhi = rows_res["ci95"][who][m]
            assert (hi - lo) == pytest.approx(rhi - rlo, rel=0.5), (who, m)


# ------------------------------------------------------------------------------------------
# Bootstrap
# ------------------------------------------------------------------------------------------


def test_weighted_metrics_equal_metrics_of_the_resampled_rows() -> None:
    # A replicate (weights = how often each row is drawn) must give the metrics of the resampled
    # rows themselves; ACE keeps the sample's equal-mass bins (fixed binning), recomputed by hand.
    rng = np.random.default_rng(30)
    probs = softmax_rows(rng, 400, 3)
    label = noisy_labels(rng, probs, 0.3)
    pred = probs.argmax(axis=1)
    units = units_from_rows(probs, pred, label)
    idx = rng.integers(0, 400, 400)
    w = np.bincount(idx, minlength=400)
    got = calibration_metrics(units, w)
    direct = calibration_metrics(units_from_rows(probs[idx], pred[idx], label[idx]))
    for m in ("ece", "mce", "brier", "nll"):
        assert got[m] == pytest.approx(direct[m], abs=1e-12), m
    d = (pred == label)[idx] - probs[idx, pred[idx]]
    ace = np.abs(np.bincount(units.ace_bin[idx], weights=d, minlength=15)).sum() / 400
    assert got["ace"] == pytest.approx(ace, abs=1e-12)
    ones = calibration_metrics(units, np.ones(400))
    point = calibration_metrics(units)
    assert all(ones[m] == pytest.approx(point[m], abs=1e-12) for m in METRICS)


def test_intervals_contain_point_and_are_deterministic(monkeypatch: pytest.MonkeyPatch) -> None:
    t, s = random_pair(31, 3000, 2)
    res = calibration_analysis(t, s, n_bootstrap=400, seed=7)
    reps = cal._bootstrap(t, s, 400, 7)
    for who in ("teacher", "student", "delta"):
        for m in METRICS:
            lo, hi = res["ci95"][who][m]
            # The plain percentile interval already contains the point here (no widening needed).
            raw_lo, raw_hi = cal._percentile_interval(reps[who][m])
            assert raw_lo < res[who][m] < raw_hi, (who, m)
            assert [lo, hi] == [float(raw_lo), float(raw_hi)], (who, m)
    assert calibration_analysis(t, s, n_bootstrap=400, seed=7) == res
    assert calibration_analysis(t, s, n_bootstrap=400, seed=8)["ci95"] != res["ci95"]
    # The chunking (memory bound) does not change the draws; only the matrix product's rounding.
    monkeypatch.setattr(cal, "_CHUNK_ELEMENTS", 97 * 3000 + 5)  # 97 replicates a chunk
    chunked = calibration_analysis(t, s, n_bootstrap=400, seed=7)
    for who in ("teacher", "student", "delta"):
        for m in METRICS:
            assert chunked["ci95"][who][m] == pytest.approx(res["ci95"][who][m], rel=1e-12, abs=1e-15)


def test_bootstrap_is_paired() -> None:
    # A student identical to the teacher: every replicate's delta is exactly 0.
    t, _ = random_pair(32, 1000, 3)
    res = calibration_analysis(t, t, n_bootstrap=200, seed=0)
    assert all(res["ci95"]["delta"][m] == [0.0, 0.0] for m in METRICS)
    assert res["ci95"]["teacher"] == res["ci95"]["student"]


def test_percentile_interval_is_numpy_linear_quantile() -> None:
    # Exactly np.quantile (issue 19). The hand-written a + γ·(b − a) it replaced differed from
    # numpy's lerp (b − (1 − γ)·(b − a) for γ ≥ 0.5) by an ulp in ~6% of the 10-replicate columns.
    rng = np.random.default_rng(5)
    for x in (rng.normal(size=(1000, 30)), rng.normal(size=(10, 300))):
        for level, point in ((0.95, None), (0.9, np.zeros(x.shape[1]))):
            lo, hi = cal._percentile_interval(x, point, level)
            ref_lo, ref_hi = np.quantile(x, [(1 - level) / 2, (1 + level) / 2], axis=0)
            if point is not None:
                ref_lo, ref_hi = np.minimum(ref_lo, point), np.maximum(ref_hi, point)
            assert np.array_equal(lo, ref_lo) and np.array_equal(hi, ref_hi)


def test_bad_arguments() -> None:
    t, s = random_pair(33, 100, 2)
    with pytest.raises(InputError, match=r"^n_bootstrap: expected a number of resamples"):
        calibration_analysis(t, s, n_bootstrap=-1, seed=0)
    short, _ = random_pair(34, 99, 2)
    with pytest.raises(ValueError, match="same rows"):
        calibration_analysis(t, short, n_bootstrap=10, seed=0)
    with pytest.raises(InputError, match="label"):
        units_from_rows(np.full((2, 2), 0.5), np.array([0, 1]), np.array([0, 2]))
    with pytest.raises(ValueError, match="ECE bins"):
        CalibrationUnits(count=[1.0], bin=[16], ace_bin=[0], sum_conf=[1.0], sum_correct=[1.0],
                         sum_brier=[0.0], sum_nll=[0.0])
    empty = units_from_rows(np.empty((0, 2)), np.empty(0, dtype=int), np.empty(0, dtype=int))
    res = calibration_analysis(empty, empty, n_bootstrap=10, seed=0)
    assert res["bootstrap_method"] == "none" and all(math.isnan(res["teacher"][m]) for m in METRICS)


# ------------------------------------------------------------------------------------------
# The paper's SST-2 eval pair (bert-base teacher, TinyBERT_6L_768D student)
# ------------------------------------------------------------------------------------------


def read_paper_csv(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    probs = np.array([[float(r["p0"]), float(r["p1"])] for r in rows])
    return probs, np.array([int(r["pred"]) for r in rows]), np.array([int(r["label"]) for r in rows])


@pytest.mark.filterwarnings("ignore:The y_prob values do not sum to one")
def test_paper_sst2_eval_against_libraries(paper_outputs: Path) -> None:
    tp, tpred, label = read_paper_csv(paper_outputs / "bert-base-uncased-finetuned-sst2" / "SST-2_on_eval"
                                      / "eval_results.csv")
    sp, spred, slabel = read_paper_csv(paper_outputs / "TinyBERT_6L_768D" / "SST-2_on_eval" / "eval_results.csv")
    assert np.array_equal(label, slabel) and len(label) == 872
    t, s = units_from_rows(tp, tpred, label), units_from_rows(sp, spred, label)
    res = calibration_analysis(t, s, n_bootstrap=1000, seed=0)
    for who, probs in (("teacher", tp), ("student", sp)):
        assert res[who]["ece"] == pytest.approx(torchmetrics_ce(probs, label, "l1"), abs=1e-6)
        assert res[who]["mce"] == pytest.approx(torchmetrics_ce(probs, label, "max"), abs=1e-6)
        # The files' p0 + p1 is 1 only to float32 rounding: Brier = 2 × sklearn to that precision.
        assert res[who]["brier"] == pytest.approx(2.0 * brier_score_loss(label, probs[:, 1]), abs=1e-6)
        assert res[who]["nll"] == pytest.approx(log_loss(label, probs), abs=1e-6)
    for who in ("teacher", "student", "delta"):
        for m in METRICS:
            lo, hi = res["ci95"][who][m]
            assert lo <= res[who][m] <= hi, (who, m)
    assert res["bootstrap_method"] == "rows"
    # The teacher's ACE (0.0176, below its ECE 0.0242) is calibrated to within its noise: only
    # ~2% of the replicates fall below it, so the plain percentile interval misses it and the
    # reported interval is widened down to the point; every other interval contains it as is.
    reps = cal._bootstrap(t, s, 1000, 0)
    for who in ("teacher", "student", "delta"):
        for m in METRICS:
            raw_lo, raw_hi = cal._percentile_interval(reps[who][m])
            if (who, m) == ("teacher", "ace"):
                assert raw_lo > res[who][m] == res["ci95"][who][m][0]
            else:
                assert raw_lo <= res[who][m] <= raw_hi, (who, m)
    assert res["teacher"]["ace"] == pytest.approx(0.0176, abs=1e-4)

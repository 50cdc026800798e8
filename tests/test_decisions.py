"""Decisions at operating thresholds (properties/decisions.py): a hand-computed case, a per-row
reference, the bootstrap, --thresholds parsing, and flip rate = 1 − agreement on the paper's files."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from confdistill.errors import InputError
from confdistill.properties.decisions import (
    CURVE,
    DEFAULT_THRESHOLDS,
    flip_counts,
    flip_curve,
    flips_analysis,
    parse_thresholds,
)

# Hand-computed case, N = 6 rows: (teacher pred, teacher p[pred]) and (student pred, student p[pred]).
#   row  teacher      student      τ = 0.5                τ = 0.9                     τ = 0.93
#   0    1, 0.95      1, 0.97      same (both act, 1)     same (both act, 1)          same
#   1    1, 0.95      1, 0.80      same                   teacher_only                teacher_only
#   2    0, 0.60      0, 0.92      same                   student_only                same (both abstain)
#   3    0, 0.91      1, 0.93      class_change           class_change (0 vs 1)       student_only
#   4    1, 0.70      0, 0.55      class_change           same (both abstain)         same
#   5    0, 0.90      0, 0.90      same                   same (both act: 0.9 ≥ 0.9)  same
# τ = 0.5:  [same, t_only, s_only, change] = [4, 0, 0, 2]: flip rate 2/6; agreement (same pred) is
#           rows 0, 1, 2, 5 = 4/6, so 1 − agreement = 2/6 as well.
# τ = 0.9:  [3, 1, 1, 1]: flip rate 3/6 = 0.5, each part 1/6.
# τ = 0.93: [4, 1, 1, 0]: flip rate 2/6.  τ = 1.0: nobody acts: [6, 0, 0, 0], rate 0.
T_PRED = np.array([1, 1, 0, 0, 1, 0])
T_CONF = np.array([0.95, 0.95, 0.60, 0.91, 0.70, 0.90])
S_PRED = np.array([1, 1, 0, 1, 0, 0])
S_CONF = np.array([0.97, 0.80, 0.92, 0.93, 0.55, 0.90])


def test_hand_computed_counts_and_rates() -> None:
    counts = flip_counts(T_CONF, T_PRED, S_CONF, S_PRED, [0.5, 0.9, 0.93, 1.0])
    assert counts.dtype == np.int64
    assert counts.tolist() == [[4, 0, 0, 2], [3, 1, 1, 1], [4, 1, 1, 0], [6, 0, 0, 0]]
    res = flips_analysis(counts[:2], [0.5, 0.9], ["0.5", "0.90"], n_bootstrap=0, seed=0)
    assert list(res) == ["0.5", "0.90"]  # keys are the thresholds as the user wrote them
    assert res["0.5"] == {"rate": pytest.approx(2 / 6), "ci95": [pytest.approx(2 / 6)] * 2,
                          "teacher_only": 0.0, "student_only": 0.0, "class_change": pytest.approx(2 / 6)}
    r9 = res["0.90"]
    assert r9["rate"] == pytest.approx(0.5) and r9["ci95"] == [r9["rate"], r9["rate"]]
    assert r9["teacher_only"] == r9["student_only"] == r9["class_change"] == pytest.approx(1 / 6)
    assert r9["rate"] == pytest.approx(r9["teacher_only"] + r9["student_only"] + r9["class_change"])
    agreement = np.count_nonzero(T_PRED == S_PRED) / 6
    assert res["0.5"]["rate"] == 1 - agreement
    assert list(flips_analysis(counts, [0.5, 0.9, 0.93, 1.0], None, n_bootstrap=0, seed=0)) == \
        ["0.5", "0.9", "0.93", "1"]


def test_flip_curve_hand_case() -> None:
    thr = [0.5, 0.9, 0.93, 1.0]
    curve = flip_curve(flip_counts(T_CONF, T_PRED, S_CONF, S_PRED, thr), thr)
    assert curve["thresholds"] == thr
    assert curve["rate"] == pytest.approx([2 / 6, 3 / 6, 2 / 6, 0.0])
    assert curve["teacher_only"] == pytest.approx([0.0, 1 / 6, 1 / 6, 0.0])
    assert curve["student_only"] == pytest.approx([0.0, 1 / 6, 1 / 6, 0.0])
    assert curve["class_change"] == pytest.approx([2 / 6, 1 / 6, 0.0, 0.0])


def test_curve_grid_and_defaults() -> None:
    assert DEFAULT_THRESHOLDS == (0.5, 0.9)
    assert len(CURVE) == 50 and CURVE[0] == 0.5 and CURVE[-1] == 0.99
    assert np.allclose(np.diff(CURVE), 0.01) and 0.9 in CURVE.tolist()


def per_row_reference(tc, tp, sc, sp, tau) -> list[int]:
    """Decisions row by row, as defined: the predicted class if its probability is ≥ τ, else abstain."""
    out = [0, 0, 0, 0]
    for a, pa, b, pb in zip(tc, tp, sc, sp, strict=True):
        t_dec = int(pa) if a >= tau else None
        s_dec = int(pb) if b >= tau else None
        if t_dec == s_dec:
            out[0] += 1
        elif s_dec is None:
            out[1] += 1
        elif t_dec is None:
            out[2] += 1
        else:
            out[3] += 1
    return out


def test_matches_per_row_reference_with_ties() -> None:
    rng = np.random.default_rng(0)
    n = 3000
    # Confidences on a 0.01 grid, so that many equal a threshold exactly (τ itself acts).
    tc = np.round(rng.uniform(0.34, 1.0, n), 2)
    sc = np.round(np.clip(tc + rng.normal(0, 0.08, n), 0.34, 1.0), 2)
    tp = rng.integers(0, 3, n)
    sp = np.where(rng.random(n) < 0.8, tp, rng.integers(0, 3, n))
    thr = [*CURVE.tolist(), 1.0]
    counts = flip_counts(tc, tp, sc, sp, thr)
    assert counts.sum(axis=1).tolist() == [n] * len(thr)
    for i in (0, 7, 23, 40, 49, 50):
        assert counts[i].tolist() == per_row_reference(tc, tp, sc, sp, thr[i]), thr[i]


def test_bootstrap_interval_and_determinism() -> None:
    counts = np.array([[800, 60, 40, 100], [950, 20, 20, 10]])
    res = flips_analysis(counts, [0.5, 0.9], None, n_bootstrap=2000, seed=3)
    for key, c in zip(("0.5", "0.9"), counts, strict=True):
        rate = 1 - c[0] / c.sum()
        lo, hi = res[key]["ci95"]
        assert res[key]["rate"] == pytest.approx(rate)
        assert lo < rate < hi
        # The row bootstrap of a share is binomial: ≈ rate ± 1.96·sqrt(rate(1 − rate)/N).
        half = 1.96 * np.sqrt(rate * (1 - rate) / c.sum())
        assert (hi - lo) / 2 == pytest.approx(half, rel=0.15)
    assert flips_analysis(counts, [0.5, 0.9], None, n_bootstrap=2000, seed=3) == res
    assert flips_analysis(counts, [0.5, 0.9], None, n_bootstrap=2000, seed=4) != res
    # A threshold's interval does not depend on which other thresholds were asked for.
    alone = flips_analysis(counts[1:], [0.9], None, n_bootstrap=2000, seed=3)
    assert alone["0.9"] == res["0.9"]
    # No flips at all: [0, 0].
    none = flips_analysis(np.array([[500, 0, 0, 0]]), [0.7], None, n_bootstrap=100, seed=0)
    assert none["0.7"]["rate"] == 0.0 and none["0.7"]["ci95"] == [0.0, 0.0]


@pytest.mark.parametrize(("text", "expected"), [
    ("0.5,0.9", (0.5, 0.9)), (" 0.5 , 0.9 ", (0.5, 0.9)), ("1", (1.0,)), ("0.05,0.5,0.99,1.0", (0.05, 0.5, 0.99, 1.0)),
])
def test_parse_thresholds(text: str, expected: tuple[float, ...]) -> None:
    assert parse_thresholds(text) == expected


@pytest.mark.parametrize(("text", "what"), [
    ("0", "outside"), ("1.5", "outside"), ("-0.1,0.5", "outside"), ("nan", "outside"), ("inf", "outside"),
    ("0.9,0.5", "after the larger"), ("0.5,0.5", "twice"), ("0.5,0.50", "twice"), ("0.5,,0.9", "empty"),
    ("", "empty"), ("0.5,", "empty"), ("abc", "not a number"), ("0.5;0.9", "not a number"),
])
def test_parse_thresholds_errors(text: str, what: str) -> None:
    with pytest.raises(InputError) as err:
        parse_thresholds(text)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("--thresholds: ") and what in msg
    assert "(0, 1]" in msg and "strictly increasing" in msg


def test_bad_arrays() -> None:
    with pytest.raises(InputError, match="one length"):
        flip_counts(T_CONF, T_PRED, S_CONF[:-1], S_PRED, [0.5])
    with pytest.raises(ValueError, match="shape"):
        flips_analysis(np.zeros((2, 4), dtype=int), [0.5], None, n_bootstrap=0, seed=0)
    with pytest.raises(InputError, match=r"^n_bootstrap: expected a number of resamples"):
        flips_analysis(np.ones((1, 4), dtype=int), [0.5], None, n_bootstrap=-1, seed=0)


def read_paper_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    probs = np.array([[float(r["p0"]), float(r["p1"])] for r in rows])
    return probs, np.array([int(r["pred"]) for r in rows])


def test_paper_sst2_eval_flip_rate_at_half_is_one_minus_agreement(paper_outputs: Path) -> None:
    tp, tpred = read_paper_csv(paper_outputs / "bert-base-uncased-finetuned-sst2" / "SST-2_on_eval"
                               / "eval_results.csv")
    sp, spred = read_paper_csv(paper_outputs / "TinyBERT_6L_768D" / "SST-2_on_eval" / "eval_results.csv")
    n = len(tpred)
    rows = np.arange(n)
    tc, sc = tp[rows, tpred], sp[rows, spred]
    counts = flip_counts(tc, tpred, sc, spred, [0.5, 0.9])
    agree = int(np.count_nonzero(tpred == spred))
    # At τ = 0.5 both models act on every row (two classes), so the only flips are class changes.
    assert counts[0].tolist() == [agree, 0, 0, n - agree]
    res = flips_analysis(counts, [0.5, 0.9], None, n_bootstrap=1000, seed=0)
    assert res["0.5"]["rate"] == 1 - agree / n  # exactly
    assert res["0.5"]["class_change"] == pytest.approx(1 - agree / n)
    assert counts[1].tolist() == per_row_reference(tc, tpred, sc, spred, 0.9)
    for key in ("0.5", "0.9"):
        lo, hi = res[key]["ci95"]
        assert lo < res[key]["rate"] < hi

"""Issue 18: the streaming engine against a plain numpy computation on whole arrays, for every figure.

The reference reads both files whole (``read_softmax``) and computes each figure directly on the
(n,) arrays — np.std, scipy's normaltest and binomtest, sorting for the worst rows and the exact
adaptive ECE, pandas groupby for the slices — on three paper pairs (SST-2's training set is above
``EXACT_MAX_N`` rows: the aggregated path, the second pass for the ACE bins) and generated 3- and
4-class data, labelled and not.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from confdistill.prediction.softmax_file import read_softmax
from confdistill.properties import analyze_files
from confdistill.properties import pair as eng
from confdistill.properties.calibration import calibration_analysis, calibration_metrics, units_from_rows
from confdistill.properties.decisions import CURVE, flip_counts, flip_curve, flips_analysis
from confdistill.properties.sigma_stats import bootstrap_sigma_ci, wasserstein

PAIRS = [("bert-base-uncased-finetuned-sst2", "TinyBERT_4L_312D", "SST-2_on_eval"),
         ("bert-base-uncased-finetuned-sst2", "TinyBERT_6L_768D", "SST-2_on_train"),
         ("bert-base-uncased-QNLI", "TinyBERT_4L_312D", "QNLI_on_eval")]
THRESHOLDS = (0.5, 0.75, 0.9)


def _close(a: Any, b: Any, tol: float = 1e-12) -> bool:
    return math.isclose(float(a), float(b), rel_tol=tol, abs_tol=tol)


def _reference_check(t_path: Path, s_path: Path, got: dict[str, Any], n_bootstrap: int) -> None:
    import pandas as pd
    from scipy.stats import binomtest, normaltest

    t, s = read_softmax(t_path), read_softmax(s_path)
    n, k, rows = t.n, t.k, np.arange(t.n)
    labelled = t.label is not None
    cls = np.zeros(n, dtype=np.int64) if k == 2 else (t.label if labelled else t.pred)
    t_c, s_c = t.probs[rows, cls], s.probs[rows, cls]
    delta = t_c - s_c
    in_set = (t.pred == t.label) & (s.pred == t.label) if labelled else t.pred == s.pred
    d = delta[in_set]
    assert got["n"] == n and got["n_set"] == int(in_set.sum())
    assert _close(got["sigma"], np.std(d)) and _close(got["mean_delta"], np.mean(d))
    assert _close(got["agreement"], np.mean(t.pred == s.pred))
    assert _close(got["normality"]["statistic"], normaltest(d).statistic, 1e-9)
    t_conf, s_conf = t.probs[rows, t.pred], s.probs[rows, s.pred]
    assert _close(got["teacher_high_conf_share"], np.mean(t.probs.max(axis=1) > 0.9))
    fc = flip_counts(t_conf, t.pred, s_conf, s.pred, [*THRESHOLDS, *CURVE.tolist()])
    labels = [f"{x:g}" for x in THRESHOLDS]
    assert got["flips"] == flips_analysis(fc[:3], THRESHOLDS, labels, n_bootstrap=n_bootstrap, seed=0)
    assert got["flip_curve"] == flip_curve(fc[3:], CURVE.tolist())
    if d.size <= eng.EXACT_MAX_N:
        assert got["bootstrap_method"] == "rows" and got["wasserstein_method"] == "exact"
        ci, _ = bootstrap_sigma_ci(d, n_bootstrap, 0)
        assert all(_close(a, b) for a, b in zip(got["sigma_ci95"], ci, strict=True))
        assert _close(got["wasserstein"], wasserstein(t_c[in_set], s_c[in_set]))
    else:
        from scipy.stats import wasserstein_distance

        assert got["bootstrap_method"] == "histogram"
        assert abs(got["wasserstein"] - wasserstein_distance(t_c[in_set], s_c[in_set])) <= 1.0 / eng.W1_BINS
    hist = np.bincount(np.minimum(np.floor(t_c[in_set] * 64).astype(int), 63), minlength=64)
    assert got["histograms"]["teacher_conf"]["count"] == hist.tolist()
    # the worst rows: largest |Δ| first, the earlier row on ties
    order = np.lexsort((rows, -np.abs(delta)))[:20]
    listed = [r for r in got["worst"] if r["kind"] == "largest_delta"]
    assert [r["row"] for r in listed] == (order + 1).tolist()
    assert [r["delta"] for r in listed] == delta[order].tolist()
    if not labelled:
        assert got["calibration"] is None and got["negative_flips"] is None
        return
    b, c = int(((t.pred == t.label) & (s.pred != t.label)).sum()), int(((t.pred != t.label) & (s.pred == t.label)).sum())
    assert got["accuracy_test"]["discordant"] == [b, c]
    assert _close(got["accuracy_test"]["mcnemar_p"], binomtest(b, b + c, 0.5).pvalue if b + c else 1.0, 1e-9)
    assert _close(got["teacher_accuracy"], np.mean(t.pred == t.label))
    units = [units_from_rows(m.probs, m.pred, t.label) for m in (t, s)]  # exact ACE: every row ranked
    for who, u in zip(("teacher", "student"), units, strict=True):
        ref = calibration_metrics(u)
        assert all(_close(got["calibration"][who][m], ref[m]) for m in ref), who
    if n <= eng.EXACT_MAX_N:
        ref_all = calibration_analysis(*units, n_bootstrap=n_bootstrap, seed=0)
        for who in ("teacher", "student", "delta"):
            for m, (lo, hi) in ref_all["ci95"][who].items():
                assert _close(got["calibration"]["ci95"][who][m][0], lo) and _close(got["calibration"]["ci95"][who][m][1], hi)
    frame = pd.DataFrame({"label": t.label, "delta": delta, "in_set": in_set})
    sigma = frame[frame.in_set].groupby("label")["delta"].std(ddof=0)
    for sl in got["slices"]["label"]:
        assert sl["n"] == int((t.label == sl["value"]).sum())
        assert _close(sl["sigma"], sigma[sl["value"]])


@pytest.mark.parametrize(("teacher", "student", "folder"), PAIRS)
def test_paper_pairs_equal_whole_array_numpy(paper_outputs: Path, teacher: str, student: str, folder: str) -> None:
    t, s = (paper_outputs / m / folder / "eval_results.csv" for m in (teacher, student))
    got = analyze_files(t, s, kappa=0.05, thresholds=THRESHOLDS, n_bootstrap=200, slice_by=["label"]).to_dict()
    _reference_check(t, s, got, 200)


def _generated(tmp_path: Path, n: int, k: int, labelled: bool, fmt: str) -> tuple[Path, Path]:
    import pyarrow as pa
    import pyarrow.csv as pc
    import pyarrow.parquet as pq

    rng = np.random.default_rng(n + k)
    label = rng.integers(0, k, n)
    z = rng.normal(size=(n, k))
    z[np.arange(n), label] += 1.5
    paths = []
    for name, logits in (("t", z), ("s", z + rng.normal(scale=0.3, size=(n, k)))):
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        cols = {"pred": p.argmax(axis=1), **{f"p{c}": p[:, c] for c in range(k)}, **({"label": label} if labelled else {})}
        path = tmp_path / f"{name}.{fmt}"
        (pq.write_table if fmt == "parquet" else pc.write_csv)(pa.table(cols), path)
        paths.append(path)
    return paths[0], paths[1]


@pytest.mark.parametrize(("n", "k", "labelled", "fmt"), [(3000, 3, True, "csv"), (60_000, 3, True, "parquet"),
                                                         (5000, 4, False, "csv")])
def test_generated_multiclass_equals_whole_array_numpy(tmp_path: Path, n: int, k: int, labelled: bool,
                                                       fmt: str) -> None:
    t, s = _generated(tmp_path, n, k, labelled, fmt)
    got = analyze_files(t, s, kappa=0.05, thresholds=THRESHOLDS, n_bootstrap=100,
                        slice_by=["label"] if labelled else []).to_dict()
    assert got["delta_kind"] == ("label" if labelled else "pred")
    _reference_check(t, s, got, 100)


def test_ids_in_another_order_are_paired_by_id(tmp_path: Path) -> None:
    """The student's rows shuffled (ids kept): the same figures as the student in the teacher's order."""
    from confdistill.prediction.softmax_file import write_softmax

    rng = np.random.default_rng(5)
    p = rng.dirichlet([1.0, 1.0, 1.0], size=900)
    q = np.clip(p + rng.normal(scale=0.02, size=p.shape), 1e-6, None)
    q /= q.sum(axis=1, keepdims=True)
    label = p.argmax(axis=1)
    ids = np.array([f"ex{i}" for i in range(900)], dtype=object)
    perm = rng.permutation(900)
    t = write_softmax(tmp_path / "t.csv", p, label, ids=ids)
    s_same = write_softmax(tmp_path / "s.csv", q, label, ids=ids)
    s_shuffled = write_softmax(tmp_path / "s2.parquet", q[perm], label[perm], ids=ids[perm])
    a, b = (analyze_files(t, x, kappa=0.05, n_bootstrap=50).to_dict() for x in (s_same, s_shuffled))
    assert a["aligned_by"] == b["aligned_by"] == "id"
    for key in ("sigma", "sigma_ci95", "flips", "calibration", "worst", "accuracy_test"):
        assert a[key] == b[key], key


@pytest.mark.parametrize("chunk", [7, 1 << 17])
def test_tied_confidences_keep_the_exact_adaptive_bins(monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    """Confidences on a 0.05 grid: every ACE start falls among thousands of equal values, so the second
    pass must rank them by row; the cells' ACE must equal ranking every row (any batch size)."""
    import confdistill.prediction.stream as stream
    from confdistill.prediction.softmax_file import outputs_from_arrays
    from confdistill.properties import analyze_pair

    rng = np.random.default_rng(9)
    n = 3000
    p0 = np.round(rng.uniform(0.0, 1.0, n) * 20) / 20
    q0 = np.clip(p0 + rng.choice([-0.05, 0.0, 0.05], n), 0.0, 1.0)
    labels = rng.integers(0, 2, n)
    tp, sp = np.column_stack([p0, 1 - p0]), np.column_stack([q0, 1 - q0])
    t, s = outputs_from_arrays(tp, labels), outputs_from_arrays(sp, labels)
    monkeypatch.setattr(stream, "BATCH_ROWS", chunk)
    monkeypatch.setattr(eng, "EXACT_MAX_N", 0)
    got = analyze_pair(t, s, n_bootstrap=0).calibration
    for who, m in (("teacher", t), ("student", s)):
        ref = calibration_metrics(units_from_rows(m.probs, m.pred, labels))
        assert all(_close(got[who][k], ref[k]) for k in ref), who
    assert got["teacher"]["ace"] != got["teacher"]["ece"]  # the adaptive bins are not the equal-width ones

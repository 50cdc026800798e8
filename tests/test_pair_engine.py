"""The streaming pair engine: label-free analysis, shards, the large-input path against the exact one.

Independent references: hand-computed cases, numpy on the same arrays, and the engine's own
exact row path (below EXACT_MAX_N rows) against its aggregated path (above), forced by
lowering EXACT_MAX_N.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import confdistill.properties.pair as eng
from confdistill.errors import InputError
from confdistill.prediction.softmax_file import outputs_from_arrays, write_softmax
from confdistill.properties import analyze_files, analyze_pair


def _log(path: Path, probs: np.ndarray) -> Path:
    """An unlabelled log `pred,p0,p1` (a service's predictions)."""
    pred = probs.argmax(axis=1)
    lines = ["pred,p0,p1", *(f"{p},{float(a)!r},{float(b)!r}" for p, (a, b) in zip(pred, probs, strict=True))]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_label_free_sigma_on_a_hand_made_case(tmp_path: Path) -> None:
    t = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.2, 0.8]])
    s = np.array([[0.7, 0.3], [0.85, 0.15], [0.4, 0.6], [0.45, 0.55], [0.1, 0.9]])
    # agree (same predicted class): rows 1, 2, 3, 5 (row 4: teacher 0, student 1)
    # Δp0 = 0.2, −0.05, −0.1, 0.1 → mean 0.0375, σ² = mean(Δ²) − mean² = 0.015625 − 0.00140625
    res = analyze_files(_log(tmp_path / "t.csv", t), _log(tmp_path / "s.csv", s), n_bootstrap=0, worst=2)
    assert (res.labelled, res.set, res.n_set, res.n_both) == (False, "agree", 4, None)
    assert res.teacher_accuracy is None and res.calibration is None and res.reliability is None
    assert res.agreement == pytest.approx(4 / 5)
    assert res.mean_delta == pytest.approx(0.0375, abs=1e-15)
    assert res.sigma == pytest.approx(math.sqrt(0.015625 - 0.0375**2), abs=1e-15)
    # flips at 0.5 over all rows = 1 − agreement; the row that changed class is listed first
    assert res.flips["0.5"]["rate"] == pytest.approx(1 / 5) and res.flips["0.5"]["class_change"] == pytest.approx(1 / 5)
    assert res.worst[0]["row"] == 1 and res.worst[0]["delta"] == pytest.approx(0.2)
    d = res.to_dict()
    assert d["set"] == "agree" and d["calibration"] is None and d["teacher_accuracy"] is None


def test_labelled_and_unlabelled_are_not_mixed(tmp_path: Path) -> None:
    probs = np.array([[0.9, 0.1], [0.2, 0.8]])
    labelled = write_softmax(tmp_path / "l.csv", probs, np.array([0, 1]))
    with pytest.raises(InputError, match="only the teacher file has a `label` column"):
        analyze_files(labelled, _log(tmp_path / "u.csv", probs))


def _pair(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    z = np.where(labels == 0, 2.0, -2.0) + rng.normal(0, 1.5, n)
    t = (1 / (1 + np.exp(-z))).astype(np.float32).astype(np.float64)
    s = (1 / (1 + np.exp(-(z + rng.normal(0, 0.4, n))))).astype(np.float32).astype(np.float64)
    return np.stack([t, 1 - t], 1), np.stack([s, 1 - s], 1), labels


def test_sharded_sources_equal_one_file(tmp_path: Path) -> None:
    tp, sp, labels = _pair(3000)
    one_t, one_s = write_softmax(tmp_path / "t.parquet", tp, labels), write_softmax(tmp_path / "s.csv", sp, labels)
    (tmp_path / "ts").mkdir()
    (tmp_path / "ss").mkdir()
    for i, (a, b) in enumerate(((0, 1000), (1000, 2200), (2200, 3000))):
        write_softmax(tmp_path / "ts" / f"part-{i}.parquet", tp[a:b], labels[a:b])
    for i, (a, b) in enumerate(((0, 1500), (1500, 3000))):  # other shard boundaries for the student
        write_softmax(tmp_path / "ss" / f"part-{i}.csv", sp[a:b], labels[a:b])
    whole = analyze_files(one_t, one_s, n_bootstrap=50).to_dict()
    sharded = analyze_files(tmp_path / "ts", str(tmp_path / "ss" / "part-*.csv"), n_bootstrap=50).to_dict()
    for key in ("n", "n_set", "teacher_accuracy", "student_accuracy", "sigma", "sigma_ci95", "flips", "calibration",
                "worst", "wasserstein"):
        assert sharded[key] == pytest.approx(whole[key]) if isinstance(whole[key], float) else sharded[key] == whole[key]


def test_shard_row_counts_must_match(tmp_path: Path) -> None:
    tp, sp, labels = _pair(100)
    for d, cuts in (("ts", (0, 50, 100)), ("ss", (0, 60, 99))):
        (tmp_path / d).mkdir()
        for i in range(2):
            a, b = cuts[i], cuts[i + 1]
            write_softmax(tmp_path / d / f"part-{i}.csv", (tp if d == "ts" else sp)[a:b], labels[a:b])
    # the first shard whose count differs is named (60 rows against the teacher's 50)
    with pytest.raises(InputError, match=r"ss/part-0\.csv: shard 1 has 60 rows, the teacher's .* 50"):
        analyze_files(tmp_path / "ts", tmp_path / "ss")


def test_large_input_path_gives_the_exact_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    """Above EXACT_MAX_N the engine aggregates (cells, histograms) instead of fetching rows: every point
    figure must be the same; W1 is binned (error <= 1/65536); intervals stay around the point."""
    tp, sp, labels = _pair(4000, seed=3)
    t, s = outputs_from_arrays(tp, labels), outputs_from_arrays(sp, labels)
    exact = analyze_pair(t, s, n_bootstrap=200, seed=1)
    monkeypatch.setattr(eng, "EXACT_MAX_N", 0)
    agg = analyze_pair(t, s, n_bootstrap=200, seed=1)
    assert agg.bootstrap_method == "histogram" and exact.bootstrap_method == "rows"
    assert agg.calibration["bootstrap_method"] == "cells" and exact.calibration["bootstrap_method"] == "rows"
    assert agg.sigma == pytest.approx(exact.sigma, rel=1e-12)
    assert agg.normality["statistic"] == pytest.approx(exact.normality["statistic"], rel=1e-9)
    for model in ("teacher", "student", "delta"):
        for metric, value in exact.calibration[model].items():
            assert agg.calibration[model][metric] == pytest.approx(value, rel=1e-10, abs=1e-14), (model, metric)
    assert agg.flips == exact.flips  # counts are exact either way, same multinomial bootstrap
    assert abs(agg.wasserstein - exact.wasserstein) <= 1 / 65536
    lo, hi = agg.sigma_ci95
    assert lo <= agg.sigma <= hi and hi - lo == pytest.approx(exact.sigma_ci95[1] - exact.sigma_ci95[0], rel=0.3)


def test_numpy_reference_for_flips_and_accuracy() -> None:
    tp, sp, labels = _pair(2000, seed=5)
    res = analyze_pair(outputs_from_arrays(tp, labels), outputs_from_arrays(sp, labels), n_bootstrap=0,
                       thresholds=(0.5, 0.8, 0.95))
    tc, sc = tp.max(axis=1), sp.max(axis=1)
    tpred, spred = tp.argmax(axis=1), sp.argmax(axis=1)
    for tau in (0.5, 0.8, 0.95):
        ta, sa = tc >= tau, sc >= tau
        flip = (ta != sa) | (ta & sa & (tpred != spred))
        assert res.flips[f"{tau:g}"]["rate"] == pytest.approx(flip.mean(), abs=1e-15)
        assert res.flips[f"{tau:g}"]["teacher_only"] == pytest.approx((ta & ~sa).mean(), abs=1e-15)
    assert res.teacher_accuracy == pytest.approx((tpred == labels).mean())
    # the curve's 0.8 point equals the operating threshold 0.8
    i = res.flip_curve["thresholds"].index(0.8)
    assert res.flip_curve["rate"][i] == pytest.approx(res.flips["0.8"]["rate"], abs=1e-15)


def test_same_inputs_same_outputs() -> None:
    tp, sp, labels = _pair(1500, seed=7)
    a = analyze_pair(outputs_from_arrays(tp, labels), outputs_from_arrays(sp, labels), seed=4).to_dict()
    b = analyze_pair(outputs_from_arrays(tp, labels), outputs_from_arrays(sp, labels), seed=4).to_dict()
    assert a == b


def test_aggregated_path_is_deterministic(monkeypatch: pytest.MonkeyPatch) -> None:
    """Parallel floating-point sums depend on the thread split; the engine must not (same inputs, same JSON)."""
    monkeypatch.setattr(eng, "EXACT_MAX_N", 0)
    tp, sp, labels = _pair(200_000, seed=11)
    t, s = outputs_from_arrays(tp, labels), outputs_from_arrays(sp, labels)
    runs = [analyze_pair(t, s, n_bootstrap=100, seed=2).to_dict() for _ in range(3)]
    assert runs[0] == runs[1] == runs[2]


@pytest.mark.parametrize("exact_max_n", [0, eng.EXACT_MAX_N])
def test_one_and_two_threads_give_identical_json(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                 exact_max_n: int) -> None:
    """Issue 18: bit-identical results across thread counts (Arrow's parsing threads; the aggregates are
    merged in row order), the new figures (flips against labels, McNemar, slices, not-informative causes)
    included."""
    import pyarrow as pa

    monkeypatch.setattr(eng, "EXACT_MAX_N", exact_max_n)
    tp, sp, labels = _pair(60_000, seed=13)
    t = write_softmax(tmp_path / "t.parquet", tp, labels)
    s = write_softmax(tmp_path / "s.csv", sp, labels)
    runs = []
    before = pa.cpu_count()
    try:
        for threads in (1, 2, 1):
            pa.set_cpu_count(threads)
            runs.append(analyze_files(t, s, kappa=0.05, n_bootstrap=100, seed=3,
                                      slice_by=["label", "pred"]).to_dict())
    finally:
        pa.set_cpu_count(before)
    assert runs[0] == runs[1] == runs[2]
    assert runs[0]["accuracy_test"]["discordant"][0] > 0 and len(runs[0]["slices"]["label"]) == tp.shape[1]

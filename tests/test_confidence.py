"""φ_cnf pair analysis and the κ bound: paper figures, a hand-computed case, properties."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from confdistill.errors import InputError
from confdistill.prediction.softmax_file import outputs_from_arrays, read_softmax
from confdistill.properties import (
    analyze_files,
    analyze_pair,
    bootstrap_sigma_ci,
    kappa_bound,
    normality_test,
    wasserstein,
)
from confdistill.properties.sigma_stats import normality_from_moments

# ../shared/README.md: (task, teacher, split, teacher acc, student acc, σ) for TinyBERT_6L_768D.
PAPER = [
    ("SST-2", "bert-base-uncased-finetuned-sst2", "train", 0.9841126074626201, 0.9784406598464713,
     0.03127477112207867),
    ("SST-2", "bert-base-uncased-finetuned-sst2", "eval", 0.930045871559633, 0.9277522935779816,
     0.06810524119474262),
    ("RTE", "bert-base-uncased-rte", "train", 0.9481927710843373, 0.87429718875502, 0.07587748945540529),
    ("RTE", "bert-base-uncased-rte", "eval", 0.6534296028880866, 0.7003610108303249, 0.10202934748693045),
]


def paper_pair(root: Path, task: str, teacher: str, split: str, student: str = "TinyBERT_6L_768D"):
    return (root / teacher / f"{task}_on_{split}" / "eval_results.csv",
            root / student / f"{task}_on_{split}" / "eval_results.csv")


@pytest.mark.parametrize(("task", "teacher", "split", "t_acc", "s_acc", "sigma"), PAPER,
                         ids=[f"{p[0]}-{p[2]}" for p in PAPER])
def test_reproduces_paper_figures(paper_outputs: Path, task, teacher, split, t_acc, s_acc, sigma) -> None:
    t, s = paper_pair(paper_outputs, task, teacher, split)
    res = analyze_files(t, s, n_bootstrap=200)
    assert res.teacher_accuracy == pytest.approx(t_acc, abs=1e-9)
    assert res.student_accuracy == pytest.approx(s_acc, abs=1e-9)
    assert res.sigma == pytest.approx(sigma, abs=1e-9)
    assert res.split == split and res.verdict == "no verdict" and res.kappa is None
    lo, hi = res.sigma_ci95
    assert lo <= res.sigma <= hi


def test_paper_mrpc_4l_eval_row_mismatch_is_refused(paper_outputs: Path) -> None:
    t, s = paper_pair(paper_outputs, "MRPC", "bert-base-uncased-finetuned-mrpc", "eval", "TinyBERT_4L_312D")
    with pytest.raises(InputError, match=r"student has 1725 rows but the teacher .* has 408") as info:
        analyze_files(t, s)
    assert str(info.value).startswith(str(s))


# ----------------------------------------------------------------------------------------------
# A case small enough to compute by hand.
#   row:            0     1     2     3     4
#   label:          0     1     0     1     1
#   teacher p0:    0.9   0.2   0.6   0.3   0.7   → pred 0 1 0 1 0 → correct T T T T F
#   student p0:    0.8   0.4   0.45  0.1   0.2   → pred 0 1 1 1 1 → correct T T F T T
# both correct: rows 0, 1, 3; Δ = 0.1, −0.2, 0.2; mean = 1/30; E[Δ²] = 0.09/3 = 0.03
# σ² = 0.03 − 1/900; agreement = 3/5; Wasserstein: sorted t (0.2, 0.3, 0.9) vs s (0.1, 0.4, 0.8) → 0.1
# ----------------------------------------------------------------------------------------------
LABELS = np.array([0, 1, 0, 1, 1])
T_P0 = np.array([0.9, 0.2, 0.6, 0.3, 0.7])
S_P0 = np.array([0.8, 0.4, 0.45, 0.1, 0.2])


def _binary(p0: np.ndarray, labels: np.ndarray = LABELS, **kw):
    return outputs_from_arrays(np.stack([p0, 1 - p0], axis=1), labels, **kw)


def test_hand_computed_case() -> None:
    res = analyze_pair(_binary(T_P0), _binary(S_P0), threshold=0.75, n_bootstrap=100)
    assert (res.n, res.n_both, res.k) == (5, 3, 2)
    assert res.teacher_accuracy == 0.8 and res.student_accuracy == 0.8
    assert res.agreement == pytest.approx(0.6)
    assert res.mean_delta == pytest.approx(1 / 30, abs=1e-15)
    assert res.sigma == pytest.approx(math.sqrt(0.03 - 1 / 900), abs=1e-15)
    # max prob > 0.75: teacher (0.9, 0.8, 0.6, 0.7, 0.7) → 2; student (0.8, 0.6, 0.55, 0.9, 0.8) → 3
    assert res.teacher_high_conf_share == pytest.approx(2 / 5)
    assert res.student_high_conf_share == pytest.approx(3 / 5)
    assert res.wasserstein == pytest.approx(0.1, abs=1e-15)
    assert res.normality["p_value"] is None  # 3 rows: too few
    # 3 rows in the σ set: too few for any verdict (issue 18), with or without a tolerance
    assert res.verdict == res.verdict_95 == "not informative"
    assert res.not_informative == ["only 3 rows are in the σ set (both models correct); a verdict needs at least 30"]
    assert res.warnings[0] == res.not_informative[0]


def _tiled(p0: np.ndarray, times: int = 10):
    """The hand case repeated: σ, the mean and the accuracies are unchanged, and 30 rows are in the set."""
    return _binary(np.tile(p0, times), np.tile(LABELS, times))


def test_hand_computed_kappa() -> None:
    sigma = math.sqrt(0.03 - 1 / 900)
    # The hand case × 10 (30 rows in the set, as a verdict needs), β × 10 so κ_β is the same:
    # β = 20 over N = 50 rows, n_b = 30, α = 0, T = 1: κ_β = sqrt(β / (2 n_b)) = sqrt(1/3) ≈ 0.577 ≥ σ ≈ 0.170.
    # β alone gives a bound check, never a verdict.
    res = analyze_pair(_tiled(T_P0), _tiled(S_P0), beta=20.0, n_bootstrap=0)
    assert res.kappa_from_beta == pytest.approx(math.sqrt(1 / 3), abs=1e-15)
    assert res.gamma == pytest.approx(math.sqrt(5 / 6)) and res.kappa is None
    assert (res.verdict, res.verdict_95, res.bound_check) == ("no verdict", "no verdict", "consistent")
    # α = 0.5, T = 2: κ_β = 2·sqrt(20 / (2·0.5·30)); β given as a mean per example (0.4 × 50 = 20)
    res = analyze_pair(_tiled(T_P0), _tiled(S_P0), beta_mean=0.4, alpha=0.5, temperature=2.0, n_bootstrap=0)
    assert res.beta == pytest.approx(20.0) and res.kappa_from_beta == pytest.approx(2 * math.sqrt(2 / 3))
    # the user's tolerance decides; σ ≈ 0.170 > 0.1 → fails, while the bound stays consistent
    res = analyze_pair(_tiled(T_P0), _tiled(S_P0), kappa=0.1, beta=20.0, n_bootstrap=0)
    assert (res.kappa, res.kappa_source, res.verdict, res.verdict_95) == (0.1, "user", "fails", "fails")
    assert res.kappa_from_beta == pytest.approx(math.sqrt(1 / 3)) and res.bound_check == "consistent"
    assert res.sigma == pytest.approx(sigma)
    # β = 1: κ_β = sqrt(1/60) ≈ 0.129 < σ: the bound is violated, i.e. β was mis-measured
    res = analyze_pair(_tiled(T_P0), _tiled(S_P0), beta=1.0, n_bootstrap=0)
    assert res.bound_check == "violated" and res.verdict == "no verdict"


def test_kappa_bound_forms() -> None:
    # paper's form (n_b unknown): γ = T
    assert kappa_bound(100.0, 400) == pytest.approx(0.5)
    assert kappa_bound(100.0, 400, alpha=0.75, temperature=2.0) == pytest.approx(2.0)
    # with n_b = N/2 both forms agree; with n_b = N the bound is tighter by sqrt(2)
    assert kappa_bound(100.0, 400, n_both=200) == pytest.approx(0.5)
    assert kappa_bound(100.0, 400, n_both=400) == pytest.approx(0.5 / math.sqrt(2))
    for bad in ({"temperature": 0.5}, {"alpha": 1.0}, {"alpha": -0.1}):
        with pytest.raises(InputError):
            kappa_bound(1.0, 10, **bad)
    with pytest.raises(InputError, match="--beta"):
        kappa_bound(-1.0, 10)


def test_eval_split_is_not_covered_by_the_bound(tmp_path: Path) -> None:
    t, s = _tiled(T_P0), _tiled(S_P0)
    t.meta["split"] = "dev"
    res = analyze_pair(t, s, beta=2.0, n_train=100, kappa=0.5, n_bootstrap=0)
    assert res.split == "eval" and res.bound_check == "not covered"
    assert res.verdict == "holds"  # σ(dev) against the same tolerance
    assert any("not covered" in note for note in res.judgement_notes)


def test_multiclass_label_delta_and_heuristic_note() -> None:
    probs_t = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.5, 0.3, 0.2]])
    probs_s = np.array([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8], [0.1, 0.6, 0.3]])
    labels = np.array([0, 1, 2, 0])
    res = analyze_pair(outputs_from_arrays(probs_t, labels), outputs_from_arrays(probs_s, labels),
                       beta=1.0, temperature=2.0, n_bootstrap=0)
    # both correct: rows 0..2; Δ on the gold label: 0.1, 0.1, −0.2 → mean 0, σ² = 0.06/3 = 0.02
    assert res.delta_kind == "label" and res.n_both == 3
    assert res.sigma == pytest.approx(math.sqrt(0.02))
    assert any("heuristic for k > 2" in note for note in res.judgement_notes)
    p0 = analyze_pair(outputs_from_arrays(probs_t, labels), outputs_from_arrays(probs_s, labels),
                      delta="p0", n_bootstrap=0)
    assert p0.sigma == pytest.approx(np.std([0.1, -0.1, 0.1]))


def test_misaligned_pairs_refused() -> None:
    with pytest.raises(InputError, match=r"label 0 differs from the teacher's label 1.*1 row"):
        analyze_pair(_binary(T_P0), _binary(S_P0, np.array([0, 1, 0, 1, 0])))
    with pytest.raises(InputError, match="student has 4 rows but the teacher"):
        analyze_pair(_binary(T_P0), _binary(S_P0[:4], LABELS[:4]))
    with pytest.raises(InputError, match="no row is classified correctly by both"):
        analyze_pair(_binary(T_P0), _binary(1 - T_P0))
    with pytest.raises(InputError, match=r"^delta: expected 'p0', 'label' or 'pred', got 'max'"):  # Python: the parameter
        analyze_pair(_binary(T_P0), _binary(S_P0), delta="max")


def test_alignment_by_id() -> None:
    ids = np.array([f"x{i}" for i in range(5)], dtype=object)
    perm = np.array([3, 0, 4, 1, 2])
    t = _binary(T_P0, ids=ids)
    s = outputs_from_arrays(np.stack([S_P0, 1 - S_P0], 1)[perm], LABELS[perm], ids=ids[perm])
    res = analyze_pair(t, s, n_bootstrap=0)
    assert res.aligned_by == "id" and res.sigma == pytest.approx(math.sqrt(0.03 - 1 / 900))
    other = outputs_from_arrays(np.stack([S_P0, 1 - S_P0], 1), LABELS,
                                ids=np.array(["x0", "x1", "x2", "x3", "zz"], dtype=object))
    with pytest.raises(InputError, match="id 'x4' of the teacher's row 5 is not in the student file"):
        analyze_pair(t, other)


def test_to_dict_has_the_documented_keys() -> None:
    d = analyze_pair(_binary(T_P0), _binary(S_P0), n_bootstrap=10).to_dict()
    for key in ("n", "n_both", "teacher_accuracy", "student_accuracy", "agreement", "sigma", "mean_delta",
                "sigma_ci95", "kappa", "verdict", "wasserstein", "normality", "teacher_high_conf_share"):
        assert key in d
    assert "delta" not in d and isinstance(d["sigma_ci95"], list)


# ----------------------------------------------------------------------------------------------
# Statistics against independent references
# ----------------------------------------------------------------------------------------------


def test_normality_and_wasserstein_match_scipy() -> None:
    from scipy import stats

    rng = np.random.default_rng(1)
    for x in (rng.normal(size=500), rng.exponential(size=2000), rng.standard_t(3, size=50)):
        # a full sample: scipy's own normaltest, to the bit (issue 19; the old re-derivation agreed to ~1e-12)
        ours, ref = normality_test(x), stats.normaltest(x)
        assert (ours["statistic"], ours["p_value"]) == (ref.statistic, ref.pvalue)
        assert (ours["skewness"], ours["kurtosis"]) == (stats.skew(x), stats.kurtosis(x, fisher=False))
        # the streamed moments (the analysis' path): scipy's formulas
        c = x - x.mean()
        streamed = normality_from_moments(x.size, x.mean(), *(float(np.mean(c**p)) for p in (2, 3, 4)))
        assert streamed["statistic"] == pytest.approx(ref.statistic, rel=1e-9)
        assert streamed["p_value"] == pytest.approx(ref.pvalue, rel=1e-7, abs=1e-300)
        assert streamed["skewness"] == pytest.approx(ours["skewness"], rel=1e-9)
        assert streamed["kurtosis"] == pytest.approx(ours["kurtosis"], rel=1e-9)
        y = rng.beta(2, 5, size=x.size)
        assert wasserstein(x, y) == pytest.approx(stats.wasserstein_distance(x, y), rel=1e-12)
    for untested in (normality_test(np.full(100, 0.25)), normality_from_moments(100, 0.25, 0.0, 0.0, 0.0),
                     normality_test(rng.normal(size=19))):
        assert untested["p_value"] is None and untested["reason"]


def test_bootstrap_rows_reference_and_determinism() -> None:
    rng = np.random.default_rng(2)
    d = rng.normal(0, 0.05, size=300)
    ci, method = bootstrap_sigma_ci(d, 400, seed=7, method="rows")
    assert method == "rows" and ci == bootstrap_sigma_ci(d, 400, seed=7, method="rows")[0]
    # independent reference: a plain loop over resamples with the same generator stream
    ref_rng = np.random.default_rng(7)
    centred = d - d.mean()
    sig = [np.std(centred[ref_rng.integers(0, d.size, size=d.size)]) for _ in range(400)]
    assert ci == pytest.approx(tuple(np.quantile(sig, [0.025, 0.975])), rel=1e-12)
    assert bootstrap_sigma_ci(d, 400, seed=8, method="rows")[0] != ci


def test_histogram_bootstrap_matches_row_bootstrap() -> None:
    rng = np.random.default_rng(3)
    d = np.concatenate([rng.normal(0, 0.03, size=40_000), rng.normal(0.1, 0.08, size=20_000)])
    rows, _ = bootstrap_sigma_ci(d, 1000, seed=0, method="rows")
    hist, method = bootstrap_sigma_ci(d, 1000, seed=0, method="auto")
    assert method == "histogram"
    width = rows[1] - rows[0]
    # Monte Carlo error of a 2.5% quantile with B = 1000 is a few % of the width.
    assert hist[0] == pytest.approx(rows[0], abs=0.1 * width)
    assert hist[1] == pytest.approx(rows[1], abs=0.1 * width)
    assert hist == bootstrap_sigma_ci(d, 1000, seed=0)[0]


# ----------------------------------------------------------------------------------------------
# Property tests
# ----------------------------------------------------------------------------------------------


@st.composite
def binary_pair(draw):
    n = draw(st.integers(min_value=2, max_value=40))
    prob = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
    t = np.array(draw(st.lists(prob, min_size=n, max_size=n)))
    s = np.array(draw(st.lists(prob, min_size=n, max_size=n)))
    labels = np.array(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)))
    # make row 0 correct for both so that n_both ≥ 1
    labels[0] = 0
    t[0], s[0] = max(t[0], 0.75), max(s[0], 0.75)
    return t, s, labels


@settings(max_examples=60, deadline=None, derandomize=True)
@given(binary_pair(), st.randoms(use_true_random=False))
def test_sigma_properties(pair, random) -> None:
    t, s, labels = pair
    res = analyze_pair(_binary(t, labels), _binary(s, labels), n_bootstrap=200, seed=1)
    assert res.sigma >= 0.0
    lo, hi = res.sigma_ci95
    assert lo - 1e-12 <= res.sigma <= hi + 1e-12
    perm = np.array(random.sample(range(len(t)), len(t)))
    permuted = analyze_pair(_binary(t[perm], labels[perm]), _binary(s[perm], labels[perm]), n_bootstrap=0)
    assert permuted.sigma == pytest.approx(res.sigma, abs=1e-12)
    assert permuted.n_both == res.n_both and permuted.agreement == res.agreement
    same = analyze_pair(_binary(t, labels), _binary(t, labels), n_bootstrap=50)
    assert same.sigma == 0.0 and same.sigma_ci95 == (0.0, 0.0) and same.wasserstein == 0.0


@settings(max_examples=30, deadline=None, derandomize=True)
@given(st.lists(st.floats(-1, 1, allow_nan=False), min_size=2, max_size=200), st.integers(0, 2**32 - 1))
def test_bootstrap_interval_contains_sigma(values, seed) -> None:
    d = np.array(values)
    (lo, hi), _ = bootstrap_sigma_ci(d, 300, seed=seed)
    assert lo - 1e-12 <= np.std(d) <= hi + 1e-12


def test_analysis_imports_no_torch() -> None:
    code = ("import sys, confdistill.properties, confdistill.prediction.softmax_file, confdistill.cli.analyze, "
            "confdistill.cli.table, confdistill.reports.table, confdistill.reports.plots; "
            "bad = [m for m in ('torch', 'transformers', 'scipy.stats', 'pandas') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_read_then_analyze_equals_arrays(tmp_path: Path) -> None:
    from confdistill.prediction.softmax_file import write_softmax

    t = write_softmax(tmp_path / "t.csv", np.stack([T_P0, 1 - T_P0], 1), LABELS)
    s = write_softmax(tmp_path / "s.parquet", np.stack([S_P0, 1 - S_P0], 1), LABELS)
    res = analyze_pair(read_softmax(t), read_softmax(s), n_bootstrap=0)
    assert res.sigma == pytest.approx(math.sqrt(0.03 - 1 / 900), abs=1e-15)

"""``analyze_pair``: can the student replace the teacher — every figure of one pair, from streamed aggregates.

The pass (:mod:`.stream_engine`, :mod:`.stream_pass`) gives the aggregates; the figures come from the
numpy functions of each concern (flip counts from the decision cells, σ's bootstrap and normality,
calibration, McNemar, the κ rule). The result is :class:`~.confidence.PairAnalysis`.
Slices take one more pass (:mod:`.stream_slices`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from confdistill.errors import InputError
from confdistill.prediction.softmax_file import SoftmaxOutputs
from confdistill.properties import informative
from confdistill.properties import pair as eng
from confdistill.properties.calibration import calibration_analysis, reliability, units_from_rows
from confdistill.properties.confidence import PairAnalysis, _path_text, infer_split, validate_analysis_options
from confdistill.properties.decisions import CURVE, DEFAULT_THRESHOLDS, flip_curve, flips_analysis
from confdistill.properties.paired import paired_analysis
from confdistill.properties.sigma_stats import (
    Moments,
    histogram_sigma_replicates,
    normality_from_moments,
    sigma_replicates,
    wasserstein,
)
from confdistill.properties.slices import Pair
from confdistill.properties.stream_calib import CellPass
from confdistill.properties.stream_engine import PairStream, run_passes
from confdistill.properties.stream_pass import Aggregates
from confdistill.properties.stream_slices import slice_pass
from confdistill.properties.verdict import BoundInputs, bound_from_options, judge
from confdistill.properties.worst import attach_texts


def analyze_pair(
    teacher: SoftmaxOutputs | str | Path,
    student: SoftmaxOutputs | str | Path,
    *,
    kappa: float | None = None,
    beta: float | None = None,
    beta_mean: float | None = None,
    alpha: float = 0.0,
    temperature: float = 1.0,
    n_train: int | None = None,
    bound: BoundInputs | None = None,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    threshold_labels: Sequence[str] | None = None,
    worst: int = 20,
    threshold: float = 0.9,
    delta: str = "auto",
    n_bootstrap: int = 1000,
    seed: int = 0,
    split: str | None = None,
    slice_by: Sequence[str] = (),
) -> PairAnalysis:
    """Analyse one teacher/student pair of softmax outputs on the same rows.

    Args:
        teacher, student: in-memory outputs, or a file / directory / glob of shard files (streamed).
        kappa: the user's tolerance on σ (the φ_cnf verdict needs one; none → "no verdict").
        beta / beta_mean / n_train / alpha / temperature, or ``bound``: the distillation's
            prediction-layer loss and settings, for the bound check (never a verdict).
        thresholds (labels: the texts the user gave, used as JSON keys): operating thresholds τ.
        worst: rows with the largest |Δconf|, and flips at the highest τ, to list (0: none).
        threshold: confidence (max probability) above which a row counts as high-confidence.
        delta: "p0", "label", "pred" or "auto" (p0 for 2 classes, else label / pred).
        n_bootstrap, seed: bootstrap resamples for every interval, and their seed.
        split: "train"/"eval"; default from the sidecar or a ``<TASK>_on_<split>`` folder.
        slice_by: "label", "length" or column names: the figures per slice (:mod:`.slices`).
    Raises InputError for misaligned pairs, bad options, or an empty set.
    """
    validate_analysis_options(threshold=threshold, n_bootstrap=n_bootstrap, worst=worst)
    if split is not None and split not in ("train", "eval"):
        raise InputError(f"split must be 'train' or 'eval', got {split!r}")
    if bound is None:
        bound = bound_from_options(beta=beta, beta_mean=beta_mean, n_train=n_train, alpha=alpha,
                                   temperature=temperature)
    thresholds = [float(t) for t in thresholds]
    labels = list(threshold_labels) if threshold_labels is not None else [f"{t:g}" for t in thresholds]
    pair = PairStream(teacher, student, delta)
    try:
        result = _analyze(pair, kappa=kappa, bound=bound, thresholds=thresholds, labels=labels, worst=worst,
                          threshold=threshold, n_bootstrap=n_bootstrap, seed=seed, split=split)
        facts = Pair(teacher=pair.teacher, n=result.n, k=pair.k, labelled=pair.labelled,
                     aligned_by=result.aligned_by)
        result.slices = slice_pass(facts, slice_by, pair.again, kappa=result.judgement["kappa"],
                                   thresholds=thresholds, labels=labels)
    finally:
        pair.close()
    return result


def _analyze(pair: PairStream, *, kappa: float | None, bound: BoundInputs, thresholds: list[float],
             labels: list[str], worst: int, threshold: float, n_bootstrap: int, seed: int,
             split: str | None) -> PairAnalysis:
    all_t = [*thresholds, *CURVE.tolist()]
    flip_tau = max(thresholds) if thresholds else None
    agg = run_passes(pair, lambda: Aggregates(pair.k, pair.labelled, threshold, all_t, worst, flip_tau))
    t_src, s_src = pair.teacher, pair.student
    if split is None:
        split = infer_split(t_src.meta, t_src.path) or infer_split(s_src.meta, s_src.path)
    n = agg.n
    cells = agg.decision_cells()
    counts = agg.counts()
    n_set = int(counts["n_set"])
    set_name = "both_correct" if pair.labelled else "agree"
    if n_set == 0:
        what = "classified correctly by both models" if pair.labelled else "predicted the same by both models"
        raise InputError(f"no row is {what} ({t_src.name} vs {s_src.name}): σ is undefined", path=s_src.name)
    mean = float(counts["mean"])
    dbins = agg.delta_bins(mean)
    m2, m3, m4 = (float(dbins[f"s{p}"].sum() / n_set) for p in (2, 3, 4))
    m2 = max(m2, 0.0)
    sigma = math.sqrt(m2)
    normality = normality_from_moments(n_set, mean, m2, m3, m4)
    t_hist, s_hist = agg.conf_hist
    if n_set <= eng.EXACT_MAX_N:
        arrays = agg.set_arrays()
        replicates, method = sigma_replicates(Moments.of(arrays["delta"]), n_bootstrap, seed)
        w1, w1_method = wasserstein(arrays["t_c"], arrays["s_c"]), "exact"
    else:
        replicates, method = None, "none"
        if n_bootstrap > 0 and sigma > 0:
            replicates = histogram_sigma_replicates(dbins["n"], dbins["s1"], dbins["s2"], n_bootstrap,
                                                    np.random.default_rng(seed))
            method = "histogram"
        w1, w1_method = eng.binned_wasserstein(t_hist, s_hist), f"binned ({eng.W1_BINS} bins)"
    if replicates is None:
        ci, one_sided = (sigma, sigma), (sigma, sigma)
    else:
        q = np.quantile(replicates, [0.025, 0.975, 0.05, 0.95])
        ci, one_sided = (float(q[0]), float(q[1])), (float(q[2]), float(q[3]))
    causes = informative.causes(
        agg.class_counts(), n=n, teacher_correct=int(counts["t_ok"]) if pair.labelled else None,
        n_set=n_set, set_name=set_name, label_names=informative.label_names_of(t_src.meta))
    judgement = judge(sigma, one_sided, tolerance=kappa, bound=bound, split=split, n_set=n_set, n_rows=n,
                      k=pair.k, causes=causes)
    fc = eng.flip_counts(cells, n, all_t)
    flips = flips_analysis(fc[:len(thresholds)], thresholds, labels, n_bootstrap=n_bootstrap, seed=seed)
    calibration = rel = None
    if pair.labelled:
        t_units, s_units = _calibration_units(pair, agg)
        calibration = calibration_analysis(t_units, s_units, n_bootstrap=n_bootstrap, seed=seed)
        rel = {"teacher": reliability(t_units), "student": reliability(s_units)}
    rows = agg.top.records("largest_delta", pair.labelled) + agg.flips_top.records("flip", pair.labelled)
    notes = [*causes, *t_src.notes, *s_src.notes]
    if rows:
        notes += attach_texts(rows, t_src.meta)
    return PairAnalysis(
        n=n, k=pair.k, labelled=pair.labelled, set=set_name, n_set=n_set,
        teacher_accuracy=float(counts["t_ok"]) / n if pair.labelled else None,
        student_accuracy=float(counts["s_ok"]) / n if pair.labelled else None,
        agreement=float(counts["agree"]) / n, sigma=sigma, mean_delta=mean, sigma_ci95=ci,
        sigma_one_sided95=one_sided, bootstrap_method=method, n_bootstrap=int(n_bootstrap), seed=int(seed),
        delta_kind=pair.kind, threshold=float(threshold),
        teacher_high_conf_share=float(counts["t_high"]) / n, student_high_conf_share=float(counts["s_high"]) / n,
        wasserstein=w1, wasserstein_method=w1_method, normality=normality, judgement=judgement.to_dict(),
        split=split, aligned_by="id" if pair.use_id else "row", flips=flips,
        flip_curve=flip_curve(fc[len(thresholds):], CURVE.tolist()), calibration=calibration, reliability=rel,
        histograms=eng.plot_histograms(t_hist, s_hist, dbins["n"]), worst=rows,
        teacher_path=_path_text(t_src), student_path=_path_text(s_src), warnings=notes,
        not_informative=causes, **paired_analysis(cells, n, labelled=pair.labelled, n_bootstrap=n_bootstrap, seed=seed),
    )


def _calibration_units(pair: PairStream, agg: Aggregates) -> Any:
    """Row units up to EXACT_MAX_N rows (kept by the pass), else the cells of a second pass."""
    r = agg.calibration_rows()
    if r is not None:
        return (units_from_rows(r["tp"], r["t_pred"], r["label"]), units_from_rows(r["sp"], r["s_pred"], r["label"]))
    assert agg.ace_hist is not None
    cells = CellPass(agg.ace_hist[0], agg.ace_hist[1], agg.n)
    pair.again(cells.add)
    return cells.units()


def analyze_files(teacher: str | Path, student: str | Path, **kwargs: Any) -> PairAnalysis:
    """:func:`analyze_pair` on two files, directories or globs of shards (same keywords); streams."""
    return analyze_pair(teacher, student, **kwargs)


__all__ = ["analyze_files", "analyze_pair"]

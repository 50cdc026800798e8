"""Can the student replace the teacher? The pair analysis: φ_cnf, decisions, calibration, the inputs that moved.

For the rows of the *set* — both models correct (``pred == label`` in both files), or, for
unlabelled logs, both predicting the same class — Δconf(x) = c_teacher(x) − c_student(x), where c
is ``p0`` (``delta="p0"``, the paper's binary definition), the probability of the gold label
(``"label"``) or of the predicted class (``"pred"``, unlabelled k > 2). σ is the population
standard deviation (ddof 0) of Δconf; φ_cnf holds when σ(X_train) ≤ κ, a tolerance the user
states (:mod:`confdistill.properties.verdict` decides every verdict). Beside σ: decision flips at
operating thresholds over all rows (:mod:`.decisions`), calibration of both models and its change
(:mod:`.calibration`), and the rows that moved most.

Every figure is computed by DuckDB from the files (:mod:`.pair`), in float64, in bounded memory:
30 M-row logs in shards are analysed the same way as a GLUE dev split. Imports numpy and duckdb
(never torch).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from confdistill.errors import InputError
from confdistill.prediction.softmax_file import SoftmaxOutputs
from confdistill.prediction.sources import SoftmaxSource, connect, open_source
from confdistill.properties import informative
from confdistill.properties import pair as eng
from confdistill.properties.calibration import (
    CalibrationUnits,
    calibration_analysis,
    reliability,
    units_from_rows,
)
from confdistill.properties.decisions import CURVE, DEFAULT_THRESHOLDS, flip_curve, flips_analysis
from confdistill.properties.paired import paired_analysis
from confdistill.properties.sigma_stats import (
    Moments,
    histogram_sigma_replicates,
    normality_test,
    quantiles,
    sigma_replicates,
    wasserstein,
)
from confdistill.properties.slices import slice_analysis
from confdistill.properties.verdict import BoundInputs, bound_from_options, judge
from confdistill.properties.worst import attach_texts, worst_rows

_SPLIT_PATTERN = re.compile(r"_on_(train|eval|dev)$", re.IGNORECASE)


@dataclass
class PairAnalysis:
    """Result of :func:`analyze_pair`; ``to_dict()`` is the JSON of ``analyze --json`` (docs/formats.md)."""

    n: int
    k: int
    labelled: bool
    set: str
    n_set: int
    teacher_accuracy: float | None
    student_accuracy: float | None
    agreement: float
    sigma: float
    mean_delta: float
    sigma_ci95: tuple[float, float]
    sigma_one_sided95: tuple[float, float]
    bootstrap_method: str
    n_bootstrap: int
    seed: int
    delta_kind: str
    threshold: float
    teacher_high_conf_share: float
    student_high_conf_share: float
    wasserstein: float
    wasserstein_method: str
    normality: dict[str, Any]
    judgement: dict[str, Any]
    split: str | None
    aligned_by: str
    flips: dict[str, Any]
    flip_curve: dict[str, Any]
    calibration: dict[str, Any] | None
    reliability: dict[str, Any] | None
    histograms: dict[str, Any]
    worst: list[dict[str, Any]]
    teacher_path: str | None = None
    student_path: str | None = None
    warnings: list[str] = field(default_factory=list)
    not_informative: list[str] = field(default_factory=list)
    negative_flips: dict[str, Any] | None = None
    positive_flips: dict[str, Any] | None = None
    accuracy_test: dict[str, Any] | None = None
    slices: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def n_both(self) -> int | None:
        return self.n_set if self.labelled else None

    def __getattr__(self, name: str) -> Any:
        # verdict, verdict_95, bound_check, kappa, kappa_from_beta … come from the judgement.
        judgement = self.__dict__.get("judgement") or {}
        if name in judgement:
            return judgement[name]
        raise AttributeError(name)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (keys documented in ``docs/formats.md``); NaN becomes null."""
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            if name == "judgement":
                out.update(self.judgement)
                continue
            out[name] = _clean(getattr(self, name))
            if name == "n_set":
                out["n_both"] = self.n_both
        return out

    def summary(self) -> str:
        """A readable multi-line summary (what ``confdistill analyze`` prints)."""
        from confdistill.properties.summary import summary_text

        return summary_text(self.to_dict())


def _clean(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def infer_split(meta: dict[str, Any], path: Path | None) -> str | None:
    """"train" / "eval" from the sidecar's ``split`` or a ``<TASK>_on_<split>`` folder; else None."""
    split = str(meta.get("split", "")).lower()
    if not split and path is not None:
        m = _SPLIT_PATTERN.search(path.parent.name)
        split = m.group(1).lower() if m else ""
    if not split:
        return None
    return "train" if split == "train" else "eval"


def _memory_source(con: Any, outputs: SoftmaxOutputs, table: str) -> SoftmaxSource:
    """Register in-memory outputs with DuckDB as a source (already validated when they were built)."""
    import pyarrow as pa

    rows = np.arange(1, outputs.n + 1, dtype=np.int64)
    data: dict[str, Any] = {"file_idx": np.zeros(outputs.n, dtype=np.int64), "file_row": rows, "row": rows}
    if outputs.ids is not None:
        data["id"] = pa.array([str(v) for v in outputs.ids], type=pa.string())
    data["pred"] = np.asarray(outputs.pred, dtype=np.int64)
    for c in range(outputs.k):
        data[f"p{c}"] = np.ascontiguousarray(outputs.probs[:, c], dtype=np.float64)
    if outputs.label is not None:
        data["label"] = np.asarray(outputs.label, dtype=np.int64)
    con.register(table, pa.table(data))
    return SoftmaxSource(spec=outputs.name, files=[outputs.path or Path(outputs.name)], k=outputs.k,
                         has_id=outputs.ids is not None, has_label=outputs.label is not None, scan=table,
                         shard_rows=[outputs.n], meta=dict(outputs.meta), notes=list(outputs.notes))


def _open(con: Any, x: SoftmaxOutputs | str | Path, table: str) -> SoftmaxSource:
    if isinstance(x, SoftmaxOutputs):
        return _memory_source(con, x, table)
    return open_source(x, con, table=table)


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
        teacher, student: in-memory outputs, or a file / directory / glob of shard files.
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
    if not (0.0 <= threshold <= 1.0):
        raise InputError(f"--threshold: expected a probability in [0, 1], got {threshold!r}")
    if n_bootstrap < 0:
        raise InputError(f"--bootstrap: expected a number of resamples >= 0, got {n_bootstrap!r}")
    if worst < 0:
        raise InputError(f"--worst: expected a number of rows >= 0, got {worst!r}")
    if split is not None and split not in ("train", "eval"):
        raise InputError(f"split must be 'train' or 'eval', got {split!r}")
    if bound is None:
        bound = bound_from_options(beta=beta, beta_mean=beta_mean, n_train=n_train, alpha=alpha,
                                   temperature=temperature)
    thresholds = [float(t) for t in thresholds]
    labels = list(threshold_labels) if threshold_labels is not None else [f"{t:g}" for t in thresholds]
    with connect() as con:
        t_src, s_src = _open(con, teacher, "mem_teacher"), _open(con, student, "mem_student")
        pair = eng.build_pair(con, t_src, s_src, delta=delta)
        # Same inputs, same outputs: a parallel floating-point sum depends on how the rows were
        # split between threads, so the aggregates run on one thread (parsing stayed parallel).
        con.execute("SET threads = 1")
        if split is None:
            split = infer_split(t_src.meta, t_src.path) or infer_split(s_src.meta, s_src.path)
        result = _analyze(pair, kappa=kappa, bound=bound, thresholds=thresholds, labels=labels, worst=worst,
                          threshold=threshold, n_bootstrap=n_bootstrap, seed=seed, split=split)
        result.slices = slice_analysis(pair, slice_by, kappa=result.judgement["kappa"], thresholds=thresholds,
                                       labels=labels)
        return result


def _analyze(pair: eng.Pair, *, kappa: float | None, bound: BoundInputs | None, thresholds: list[float],
             labels: list[str], worst: int, threshold: float, n_bootstrap: int, seed: int,
             split: str | None) -> PairAnalysis:
    n = pair.n
    all_t = [*thresholds, *CURVE.tolist()]
    cells = eng.decision_cells(pair, threshold, all_t)
    counts = eng.basic_counts(cells, n)
    n_set = int(counts["n_set"])
    set_name = "both_correct" if pair.labelled else "agree"
    if n_set == 0:
        what = "classified correctly by both models" if pair.labelled else "predicted the same by both models"
        raise InputError(f"no row is {what} ({pair.teacher.name} vs {pair.student.name}): σ is undefined",
                         path=pair.student.name)
    mean = float(counts["mean"])
    dbins = eng.delta_bins(pair, mean)
    m2, m3, m4 = (float(dbins[f"s{p}"].sum() / n_set) for p in (2, 3, 4))
    sigma = math.sqrt(m2)
    normality = normality_test(None, central=(n_set, mean, m2, m3, m4))
    t_hist, s_hist = eng.confidence_bins(pair)
    # σ's bootstrap: exact on rows up to EXACT_MAX_N, else on the histogram of Δ (binned form).
    if n_set <= eng.EXACT_MAX_N:
        arrays = eng.set_arrays(pair)
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
        q = quantiles(replicates, [0.025, 0.975, 0.05, 0.95])
        ci, one_sided = (float(q[0]), float(q[1])), (float(q[2]), float(q[3]))
    causes = informative.causes(
        informative.class_counts(pair), n=n, teacher_correct=int(counts["t_ok"]) if pair.labelled else None,
        n_set=n_set, set_name=set_name, label_names=informative.label_names_of(pair.teacher.meta))
    judgement = judge(sigma, one_sided, tolerance=kappa, bound=bound, split=split, n_set=n_set, n_rows=n,
                      k=pair.k, causes=causes)
    fc = eng.flip_counts(cells, n, all_t)
    flips = flips_analysis(fc[:len(thresholds)], thresholds, labels, n_bootstrap=n_bootstrap, seed=seed)
    calibration = rel = None
    if pair.labelled:
        t_units, s_units = _calibration_units(pair)
        calibration = calibration_analysis(t_units, s_units, n_bootstrap=n_bootstrap, seed=seed)
        rel = {"teacher": reliability(t_units), "student": reliability(s_units)}
    rows = worst_rows(pair, worst, max(thresholds) if thresholds else None)
    # The causes come first: they say why the verdict is "not informative".
    notes = [*causes, *pair.teacher.notes, *pair.student.notes]
    if rows:
        notes += attach_texts(rows, pair.teacher.meta)
    return PairAnalysis(
        n=n, k=pair.k, labelled=pair.labelled, set=set_name, n_set=n_set,
        teacher_accuracy=float(counts["t_ok"]) / n if pair.labelled else None,
        student_accuracy=float(counts["s_ok"]) / n if pair.labelled else None,
        agreement=float(counts["agree"]) / n, sigma=sigma, mean_delta=mean, sigma_ci95=ci,
        sigma_one_sided95=one_sided, bootstrap_method=method, n_bootstrap=int(n_bootstrap), seed=int(seed),
        delta_kind=pair.delta_kind, threshold=float(threshold),
        teacher_high_conf_share=float(counts["t_high"]) / n, student_high_conf_share=float(counts["s_high"]) / n,
        wasserstein=w1, wasserstein_method=w1_method, normality=normality, judgement=judgement.to_dict(),
        split=split, aligned_by=pair.aligned_by, flips=flips,
        flip_curve=flip_curve(fc[len(thresholds):], CURVE.tolist()), calibration=calibration, reliability=rel,
        histograms=eng.plot_histograms(t_hist, s_hist, dbins["n"]), worst=rows,
        teacher_path=_path_text(pair.teacher), student_path=_path_text(pair.student), warnings=notes,
        not_informative=causes, **paired_analysis(cells, n, labelled=pair.labelled, n_bootstrap=n_bootstrap, seed=seed),
    )


def _path_text(src: SoftmaxSource) -> str | None:
    return None if src.name == "<memory>" else src.name


def _calibration_units(pair: eng.Pair) -> tuple[CalibrationUnits, CalibrationUnits]:
    """Row units (exact row bootstrap) up to EXACT_MAX_N rows, else cells aggregated by DuckDB."""
    k = pair.k
    if pair.n <= eng.EXACT_MAX_N:
        r = eng.calibration_rows(pair)
        label = r["label"].astype(np.int64)
        units = []
        for m in ("t", "s"):
            probs = np.column_stack([r[f"{m}_p{c}"] for c in range(k)]).astype(np.float64)
            units.append(units_from_rows(probs, r[f"{m}_pred"].astype(np.int64), label))
        return units[0], units[1]
    c = eng.calibration_cells(pair)
    count = c["count"].astype(np.float64)
    return tuple(CalibrationUnits(  # type: ignore[return-value]
        count=count, bin=c[f"{m}_bin"].astype(np.int64), ace_bin=c[f"{m}_ace"].astype(np.int64),
        sum_conf=c[f"{m}_sum_conf"].astype(np.float64), sum_correct=c[f"{m}_sum_correct"].astype(np.float64),
        sum_brier=c[f"{m}_sum_brier"].astype(np.float64), sum_nll=c[f"{m}_sum_nll"].astype(np.float64))
        for m in ("t", "s"))


def analyze_files(teacher: str | Path, student: str | Path, **kwargs: Any) -> PairAnalysis:
    """:func:`analyze_pair` on two files, directories or globs of shards (same keywords); streams."""
    return analyze_pair(teacher, student, **kwargs)


__all__ = ["PairAnalysis", "analyze_files", "analyze_pair", "infer_split"]

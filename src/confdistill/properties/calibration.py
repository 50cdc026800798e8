"""Calibration of a teacher and a student, and what the student changes: ECE, ACE, MCE, Brier, NLL.

Top-label confidence ``conf = p[pred]`` and ``correct = pred == label`` per row; N rows.

- ECE: 15 equal-width bins with the semantics of torchmetrics'
  ``multiclass_calibration_error(norm="l1", n_bins=15)``: boundaries ``linspace(0, 1, 16)``, bin
  ``bucketize(conf, boundaries, right=True) − 1``, i.e. [j/15, (j+1)/15) for j = 0..14 and
  conf == 1.0 in a 16th slot of its own; ECE = Σ_b |Σ_{i∈b} (correct_i − conf_i)| / N.
  The boundaries are float64 here; torchmetrics casts the confidences to float32 and bins them
  against a float32 ``linspace``, so the two differ only for a confidence within ~4e-8 of a
  boundary (e.g. conf = 0.2 exactly: torchmetrics' float32 boundary is 0.20000002).
- MCE: max over non-empty ECE bins of |acc_b − conf_b|.
- ACE (adaptive ECE): 15 equal-mass bins, rows sorted by (conf, row index), bin = ⌊rank·15/N⌋;
  ACE = Σ_b (n_b/N)·|acc_b − conf_b| = Σ_b |Σ_{i∈b} (correct_i − conf_i)| / N.
- Brier = mean_i Σ_c (p_ic − 1[c = y_i])² (twice sklearn's binary ``brier_score_loss``);
  NLL = mean_i −log(max(p_i,y_i, 1e-12)).

Every figure is a function of per-bin *sums*, so the metrics are computed from sufficient
statistics, :class:`CalibrationUnits`: one unit per row (n ≤ 50,000: the bootstrap is the exact
row bootstrap) or one unit per non-empty cell of rows keyed by (teacher ECE bin, teacher correct,
student ECE bin, student correct, teacher ACE bin, student ACE bin), which the engine aggregates
in a query for 30 M-row logs; with that key every bin-level sum, hence every point metric, is the
row value (up to float summation order), and only the within-cell spread is not resampled.

Why this is written here rather than taken from a library: torchmetrics has ECE/MCE but no
adaptive ECE, works on per-row tensors (30 M rows would not stay in bounded memory, and
importing torch is excluded from ``properties/``), and has no paired bootstrap; no library
computes these figures from aggregated cells. The paired bootstrap is vectorised: replicate
weights (B, U) are drawn in chunks (≤ ``_CHUNK_ELEMENTS`` entries, 20 MB) and one matrix product
with a (U, columns) one-hot design of the per-unit means gives every replicate's per-bin sums
for both models at once (B = 1000, U = 50,000: about a second on one core). The tests check the
figures against torchmetrics and scikit-learn.

Imports numpy only (never torch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from confdistill.errors import InputError, setting_name

N_BINS = 15
#: ECE slots: the 15 bins and conf == 1.0 (torchmetrics' ``len(bin_boundaries)``).
N_SLOTS = N_BINS + 1
NLL_FLOOR = 1e-12
METRICS = ("ece", "ace", "mce", "brier", "nll")
_EDGES = np.linspace(0.0, 1.0, N_BINS + 1)
#: Replicate-weight entries per bootstrap chunk: (b, U) float64 of 20 MB, plus the same again for
#: the draws, whatever U is (U = 50,000: 50 replicates per chunk).
_CHUNK_ELEMENTS = 2_500_000
# Columns of one model's design matrix: ECE-bin Σ(correct − conf), ECE-bin row count,
# ACE-bin Σ(correct − conf), Σ Brier, Σ NLL.
_COLUMNS = N_SLOTS + N_SLOTS + N_BINS + 2


def ece_bin(conf: np.ndarray) -> np.ndarray:
    """ECE slot of each confidence (n,) in [0, 1]: (n,) int64 in 0..15 (15 = conf == 1.0)."""
    conf = np.asarray(conf, dtype=np.float64)
    if conf.size and not (conf.min() >= 0.0 and conf.max() <= 1.0):  # also rejects NaN
        raise InputError("top-label confidence outside [0, 1]: the probabilities are not probabilities")
    return (np.searchsorted(_EDGES, conf, side="right") - 1).astype(np.int64)


def ace_bin(conf: np.ndarray) -> np.ndarray:
    """Equal-mass bin of each confidence (n,): (n,) int64 in 0..14, ⌊rank·15/n⌋ with rows ranked by
    (conf, row index) (a stable sort, so ties keep row order)."""
    conf = np.asarray(conf, dtype=np.float64)
    n = conf.size
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(conf, kind="stable")] = np.arange(n, dtype=np.int64)
    return rank * N_BINS // max(n, 1)


@dataclass(frozen=True)
class CalibrationUnits:
    """Sufficient statistics of one model's calibration over U units (rows or cells of rows).

    All arrays are (U,); the sums are over the rows of the unit. Arrays are coerced to
    float64 / int64 on construction.
    """

    count: np.ndarray        # rows per unit (1.0 for row units), > 0
    bin: np.ndarray          # ECE slot 0..15
    ace_bin: np.ndarray      # ACE bin 0..14
    sum_conf: np.ndarray     # Σ top-label confidence
    sum_correct: np.ndarray  # Σ correct
    sum_brier: np.ndarray    # Σ per-row Brier term
    sum_nll: np.ndarray      # Σ per-row NLL term

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            dtype = np.int64 if name in ("bin", "ace_bin") else np.float64
            object.__setattr__(self, name, np.ascontiguousarray(getattr(self, name), dtype=dtype))
        shape = self.count.shape
        if len(shape) != 1 or any(getattr(self, f).shape != shape for f in self.__dataclass_fields__):
            raise ValueError("CalibrationUnits: every array must be one-dimensional and of the same length")
        if shape[0]:
            if not self.count.min() > 0:
                raise ValueError("CalibrationUnits: every unit must hold at least one row")
            if self.bin.min() < 0 or self.bin.max() >= N_SLOTS:
                raise ValueError(f"CalibrationUnits: ECE bins must be in 0..{N_SLOTS - 1}")
            if self.ace_bin.min() < 0 or self.ace_bin.max() >= N_BINS:
                raise ValueError(f"CalibrationUnits: ACE bins must be in 0..{N_BINS - 1}")

    @property
    def n(self) -> int:
        """Number of rows N."""
        return round(float(self.count.sum()))

    @property
    def is_rows(self) -> bool:
        """True when every unit is one row (the bootstrap is then the exact row bootstrap)."""
        return bool(np.all(self.count == 1.0))


def units_from_rows(probs: np.ndarray, pred: np.ndarray, label: np.ndarray) -> CalibrationUnits:
    """Row units of one model: ``probs`` (n, k) float64, ``pred`` and ``label`` (n,) ints in 0..k−1.

    The confidence is ``probs[i, pred[i]]`` (the file's prediction, normally the argmax).
    """
    probs = np.asarray(probs, dtype=np.float64)
    pred = np.asarray(pred)
    label = np.asarray(label)
    if probs.ndim != 2:
        raise InputError(f"probabilities must be an (n, k) array, got shape {probs.shape}")
    n, k = probs.shape
    for name, arr in (("pred", pred), ("label", label)):
        if arr.shape != (n,):
            raise InputError(f"{name} has shape {arr.shape}, expected ({n},) like the probabilities")
        if n and (not np.issubdtype(arr.dtype, np.integer) or arr.min() < 0 or arr.max() >= k):
            raise InputError(f"{name} must hold class indices in 0..{k - 1}")
    rows = np.arange(n)
    conf = probs[rows, pred]
    p_true = probs[rows, label]
    # Brier from the difference itself (not Σp² − 2p_y + 1): no cancellation for confident rows.
    diff = probs.copy()
    diff[rows, label] -= 1.0
    return CalibrationUnits(
        count=np.ones(n),
        bin=ece_bin(conf),
        ace_bin=ace_bin(conf),
        sum_conf=conf,
        sum_correct=(pred == label).astype(np.float64),
        sum_brier=np.einsum("ij,ij->i", diff, diff),
        sum_nll=-np.log(np.maximum(p_true, NLL_FLOOR)),
    )


def _metrics(ece_diff: np.ndarray, ece_count: np.ndarray, ace_diff: np.ndarray, brier: np.ndarray,
             nll: np.ndarray, n: np.ndarray) -> dict[str, np.ndarray]:
    """The five metrics from per-bin sums, vectorised over leading axes: ``ece_diff``/``ece_count``
    (..., 16), ``ace_diff`` (..., 15), ``brier``/``nll``/``n`` (...). N = 0 gives NaN."""
    with np.errstate(invalid="ignore", divide="ignore"):
        filled = ece_count > 0
        gap = np.where(filled, np.abs(ece_diff) / np.where(filled, ece_count, 1.0), -np.inf)
        mce = gap.max(axis=-1)
        return {
            "ece": np.abs(ece_diff).sum(axis=-1) / n,
            "ace": np.abs(ace_diff).sum(axis=-1) / n,
            "mce": np.where(np.isfinite(mce), mce, np.nan),
            "brier": brier / n,
            "nll": nll / n,
        }


def _point_sums(units: CalibrationUnits) -> tuple[np.ndarray, ...]:
    """Exact per-bin sums of one model (the point estimate: no division by the unit counts)."""
    diff = units.sum_correct - units.sum_conf
    return (np.bincount(units.bin, weights=diff, minlength=N_SLOTS),
            np.bincount(units.bin, weights=units.count, minlength=N_SLOTS),
            np.bincount(units.ace_bin, weights=diff, minlength=N_BINS),
            np.sum(units.sum_brier), np.sum(units.sum_nll), np.sum(units.count))


def _columns(units: CalibrationUnits) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per unit, its three one-hot columns in a model's design: ECE Σ(correct − conf), ECE row
    count, ACE Σ(correct − conf); the last two columns (Σ Brier, Σ NLL) are shared by all units."""
    return units.bin, N_SLOTS + units.bin, 2 * N_SLOTS + units.ace_bin


def _design(models: list[CalibrationUnits]) -> tuple[np.ndarray, np.ndarray]:
    """Design matrix of the models side by side, whose product with replicate weights (b, U) gives
    every replicate's per-bin sums: a unit drawn w times counts as w copies of its *mean* row
    (sums / count). Returns ((U, m) matrix, its m columns' indices among the
    ``len(models)·_COLUMNS`` full columns); columns of empty bins are left out (no GEMM cost)."""
    cols = [[c + i * _COLUMNS for c in _columns(units)] for i, units in enumerate(models)]
    used = np.zeros(len(models) * _COLUMNS, dtype=bool)
    for i, per_model in enumerate(cols):
        for c in per_model:
            used[np.unique(c)] = True
        used[(i + 1) * _COLUMNS - 2:(i + 1) * _COLUMNS] = True
    used_idx = np.flatnonzero(used)
    where = np.cumsum(used) - 1  # full column -> column of the compact matrix
    u = models[0].count.size
    rows = np.arange(u)
    m = np.zeros((u, used_idx.size))
    for i, (units, (c_diff, c_count, c_ace)) in enumerate(zip(models, cols, strict=True)):
        mean_diff = (units.sum_correct - units.sum_conf) / units.count
        m[rows, where[c_diff]] = mean_diff
        m[rows, where[c_count]] = 1.0
        m[rows, where[c_ace]] = mean_diff
        m[:, where[(i + 1) * _COLUMNS - 2]] = units.sum_brier / units.count
        m[:, where[(i + 1) * _COLUMNS - 1]] = units.sum_nll / units.count
    return m, used_idx


def _split_sums(sums: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, ...]:
    """(b, _COLUMNS) replicate sums of one model -> the arguments of :func:`_metrics`."""
    return (sums[:, :N_SLOTS], sums[:, N_SLOTS:2 * N_SLOTS], sums[:, 2 * N_SLOTS:2 * N_SLOTS + N_BINS],
            sums[:, -2], sums[:, -1], n)


def calibration_metrics(units: CalibrationUnits, weights: np.ndarray | None = None) -> dict[str, float]:
    """{"ece", "ace", "mce", "brier", "nll"} of one model (NaN when there is no row).

    ``weights`` (U,): replicate counts (how many times each unit's mean row is drawn, as in the
    bootstrap); None gives the point value from the exact sums.
    """
    if weights is None:
        values = _metrics(*_point_sums(units))
    else:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != units.count.shape:
            raise ValueError(f"weights has shape {w.shape}, expected {units.count.shape}")
        design, used = _design([units])
        sums = np.zeros((1, _COLUMNS))
        sums[:, used] = w[None, :] @ design
        values = _metrics(*_split_sums(sums, w.sum(keepdims=True)))
    return {m: float(np.asarray(values[m]).reshape(-1)[0]) for m in METRICS}


def reliability(units: CalibrationUnits) -> dict[str, Any]:
    """Reliability diagram data over the 16 ECE slots (slot j < 15 is [edges[j], edges[j+1]), slot 15
    is conf == 1.0): {"edges": 16 floats 0, 1/15, …, 1, "count": 16 ints, "confidence": mean conf,
    "accuracy": mean correct} (None for empty slots)."""
    count = np.bincount(units.bin, weights=units.count, minlength=N_SLOTS)
    conf = np.bincount(units.bin, weights=units.sum_conf, minlength=N_SLOTS)
    correct = np.bincount(units.bin, weights=units.sum_correct, minlength=N_SLOTS)
    return {
        "edges": _EDGES.tolist(),
        "count": [round(float(c)) for c in count],
        "confidence": [float(s / c) if c > 0 else None for s, c in zip(conf, count, strict=True)],
        "accuracy": [float(s / c) if c > 0 else None for s, c in zip(correct, count, strict=True)],
    }


def _percentile_interval(x: np.ndarray, point: np.ndarray | float | None = None,
                         level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) percentiles (2.5 and 97.5 for level 0.95) along axis 0 of (B, ...) ``x``:
    ``np.quantile``'s default "linear" method.

    With ``point`` (the sample's value, broadcast against ``x[0]``) the interval is widened to
    contain it where it does not: a figure built from |bin sums| (ECE, ACE, MCE) is biased upward
    under resampling, so for a model calibrated to within its noise all but a few replicates can
    lie above the sample's value (paper SST-2 eval, bert-base teacher: ACE 0.0176, 1.8% of 1000
    replicates below it). The widening only makes such an interval conservative.
    """
    low, high = np.quantile(np.asarray(x, dtype=np.float64), [(1.0 - level) / 2.0, (1.0 + level) / 2.0], axis=0)
    if point is not None:
        low, high = np.minimum(low, point), np.maximum(high, point)
    return low, high


def _replicate_weights(rng: np.random.Generator, count: np.ndarray, n: int, out: np.ndarray) -> None:
    """Fill ``out`` (b, U) with b multinomial draws of n rows over the units (probabilities count/n).

    Row units: the draw is the histogram of n uniform row indices, the same distribution as
    ``rng.multinomial(n, 1/n)`` but ~6x faster (numpy's multinomial draws one binomial per unit).
    """
    u = count.size
    if np.all(count == 1.0):
        for r in range(out.shape[0]):
            out[r] = np.bincount(rng.integers(0, u, size=u), minlength=u)
    else:
        out[:] = rng.multinomial(n, count / count.sum(), size=out.shape[0])


def _bootstrap(teacher: CalibrationUnits, student: CalibrationUnits, n_bootstrap: int,
               seed: int) -> dict[str, dict[str, np.ndarray]]:
    """Paired bootstrap: replicate metrics {"teacher"|"student"|"delta": {metric: (B,)}}."""
    u = teacher.count.size
    n = teacher.n
    design, used = _design([teacher, student])
    sums = np.zeros((n_bootstrap, 2 * _COLUMNS))
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_ELEMENTS // max(u, 1))
    weights = np.empty((min(chunk, n_bootstrap), u))
    for start in range(0, n_bootstrap, chunk):
        b = min(chunk, n_bootstrap - start)
        w = weights[:b]
        _replicate_weights(rng, teacher.count, n, w)
        sums[start:start + b, used] = w @ design
    total = np.full(n_bootstrap, float(n))
    t = _metrics(*_split_sums(sums[:, :_COLUMNS], total))
    s = _metrics(*_split_sums(sums[:, _COLUMNS:], total))
    return {"teacher": t, "student": s, "delta": {m: s[m] - t[m] for m in METRICS}}


def calibration_analysis(teacher: CalibrationUnits, student: CalibrationUnits, *, n_bootstrap: int,
                         seed: int) -> dict[str, Any]:
    """Calibration of both models, the change (student − teacher) and paired bootstrap 95% intervals.

    ``teacher`` and ``student`` are units over the same rows (same U, same counts: rows, or the
    joint cells described in the module docstring). Each of the ``n_bootstrap`` replicates draws
    N rows over the units (multinomial, probabilities count/N; seeded ``default_rng(seed)``, so the
    same seed gives the same output) and applies the SAME draw to both models; the intervals are
    the 2.5 / 97.5 percentiles, widened to contain the point value where they do not (see
    :func:`_percentile_interval`: |bin sum| figures are biased upward under resampling). ECE bins
    are fixed by construction and the ACE bins are kept as assigned on the sample (a cell's rows
    cannot be re-ranked). B = 0 gives intervals [v, v].

    Returns {"bins": 15, "teacher": {metric: value}, "student": {...}, "delta": {...},
    "ci95": {"teacher": {metric: [lo, hi]}, "student": ..., "delta": ...},
    "bootstrap_method": "rows" | "cells" | "none", "n_bootstrap": B}.
    """
    if int(n_bootstrap) != n_bootstrap or n_bootstrap < 0:
        raise InputError(f"{setting_name('n_bootstrap', flag='--bootstrap')}: expected a number of resamples >= 0, got {n_bootstrap!r}")
    n_bootstrap = int(n_bootstrap)
    if teacher.count.shape != student.count.shape or not np.array_equal(teacher.count, student.count):
        raise ValueError("calibration_analysis: teacher and student units must describe the same rows "
                         "(same units, same counts)")
    point = {"teacher": calibration_metrics(teacher), "student": calibration_metrics(student)}
    point["delta"] = {m: point["student"][m] - point["teacher"][m] for m in METRICS}
    if n_bootstrap == 0 or teacher.n == 0:
        method = "none"
        ci = {who: {m: [v, v] for m, v in vals.items()} for who, vals in point.items()}
    else:
        method = "rows" if teacher.is_rows else "cells"
        reps = _bootstrap(teacher, student, n_bootstrap, seed)
        ci = {}
        for who, vals in reps.items():
            lo, hi = _percentile_interval(np.column_stack([vals[m] for m in METRICS]),
                                          np.array([point[who][m] for m in METRICS]))
            ci[who] = {m: [float(lo[i]), float(hi[i])] for i, m in enumerate(METRICS)}
    return {"bins": N_BINS, **point, "ci95": ci, "bootstrap_method": method, "n_bootstrap": n_bootstrap}


__all__ = [
    "METRICS",
    "N_BINS",
    "CalibrationUnits",
    "ace_bin",
    "calibration_analysis",
    "calibration_metrics",
    "ece_bin",
    "reliability",
    "units_from_rows",
]

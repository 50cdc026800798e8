"""Confidence preservation φ_cnf: pair analysis of a teacher's and a student's softmax outputs.

For the rows both models classify correctly (``pred == label`` in both files),
Δconf(x) = c_teacher(x) − c_student(x), where c is ``p0`` (``delta="p0"``, the paper's binary
definition) or the probability of the gold label (``delta="label"``, the k-class generalisation).
σ is the population standard deviation (ddof 0) of Δconf; φ_cnf holds when σ(X_train) ≤ κ
(:mod:`confdistill.properties.bound`). Everything is computed in float64 from the file text, so
the paper's figures are reproduced to rounding error.

Speed (10 M rows): the per-row passes that dominate at that size (the bootstrap's histogram
pass, the float32 conversions and differences for the Wasserstein distance) use the C kernels of
``confdistill.prediction._native`` when it is built, and the two sorts for the Wasserstein
distance run in threads next to the σ / bootstrap / normality work. Every result is bit-identical
to the pure numpy code used when the extension is missing (checked in tests/test_fast_csv.py).

Imports numpy/scipy only (never torch).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from confdistill.errors import InputError
from confdistill.prediction.fast_csv import native, run_concurrently
from confdistill.prediction.softmax_file import SoftmaxOutputs, read_softmax, row_max, take_class
from confdistill.properties.bound import resolve_kappa, verdict

#: Up to this many both-correct rows the bootstrap resamples rows (exact, O(B·n)); above it
#: resamples a 1024-bin histogram of Δ (O(B·bins)), see :func:`bootstrap_sigma_ci`.
EXACT_BOOTSTRAP_MAX_N = 50_000
HISTOGRAM_BINS = 1024
NORMALTEST_MIN_N = 20

_SPLIT_PATTERN = re.compile(r"_on_(train|eval|dev)$", re.IGNORECASE)


@dataclass
class PairAnalysis:
    """Result of :func:`analyze_pair`. ``to_dict()`` gives the JSON written by ``analyze --json``.

    Scalar fields are plain floats/ints; the per-row arrays (``delta``, ``teacher_conf``,
    ``student_conf``, each (n_both,) float64, and the all-row confidences for reliability plots)
    are kept for plotting and are not part of ``to_dict()``.
    """

    n: int
    k: int
    n_both: int
    teacher_accuracy: float
    student_accuracy: float
    agreement: float
    sigma: float
    mean_delta: float
    sigma_ci95: tuple[float, float]
    bootstrap_method: str
    n_bootstrap: int
    seed: int
    delta_kind: str
    threshold: float
    teacher_high_conf_share: float
    student_high_conf_share: float
    wasserstein: float
    normality: dict[str, Any]
    kappa: float | None
    kappa_source: str | None
    kappa_note: str | None
    kappa_from_beta: float | None
    beta: float | None
    n_train: int | None
    gamma: float | None
    alpha: float
    temperature: float
    split: str | None
    verdict: str
    aligned_by: str
    teacher_path: str | None = None
    student_path: str | None = None
    warnings: list[str] = field(default_factory=list)
    delta: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    teacher_conf: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    student_conf: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    teacher_maxprob: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    student_maxprob: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)
    teacher_correct: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=bool), repr=False)
    student_correct: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=bool), repr=False)

    _ARRAYS = ("delta", "teacher_conf", "student_conf", "teacher_maxprob", "student_maxprob",
               "teacher_correct", "student_correct")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (keys documented in ``docs/formats.md``); NaN becomes null."""
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            if name in self._ARRAYS:
                continue
            value = getattr(self, name)
            if isinstance(value, tuple):
                value = [_clean(v) for v in value]
            out[name] = _clean(value)
        return out

    def summary(self) -> str:
        """A readable multi-line summary (what ``confdistill analyze`` prints)."""
        lo, hi = self.sigma_ci95
        split = f" on the {self.split} split" if self.split else ""
        lines = [
            f"teacher: {self.teacher_path or '<memory>'}",
            f"student: {self.student_path or '<memory>'}",
            f"rows: n = {self.n} (aligned by {self.aligned_by}), k = {self.k}, "
            f"both correct n_both = {self.n_both} ({_pct(self.n_both / self.n)})",
            f"accuracy: teacher {self.teacher_accuracy:.4f}, student {self.student_accuracy:.4f}; "
            f"agreement {self.agreement:.4f}",
            f"confidence > {self.threshold:g}: teacher {_pct(self.teacher_high_conf_share)}, "
            f"student {_pct(self.student_high_conf_share)}",
            f"Δconf ({'p0' if self.delta_kind == 'p0' else 'p(label)'}, teacher − student, both-correct rows): "
            f"mean {self.mean_delta:+.6f}",
            f"σ{split} = {self.sigma:.6f}   95% bootstrap CI [{lo:.6f}, {hi:.6f}] "
            f"({self.n_bootstrap} resamples, {self.bootstrap_method}, seed {self.seed})",
            f"Wasserstein distance between the confidence distributions: {self.wasserstein:.6f}",
        ]
        nt = self.normality
        if nt.get("p_value") is not None:
            lines.append(f"normality of Δconf (D'Agostino–Pearson): K² = {nt['statistic']:.4g}, "
                         f"p = {nt['p_value']:.3g}")
        else:
            lines.append(f"normality of Δconf: not tested ({nt.get('reason')})")
        if self.kappa is None:
            lines.append("κ unknown (give --kappa, or --beta from the distillation run): no verdict")
        else:
            src = "user tolerance" if self.kappa_source == "user" else \
                f"from β = {self.beta:.6g}, N = {self.n_train}, α = {self.alpha:g}, T = {self.temperature:g}"
            cmp = "<=" if self.verdict == "holds" else ">"
            lines.append(f"κ = {self.kappa:.6f} ({src})")
            lines.append(f"φ_cnf {self.verdict.upper()}: σ = {self.sigma:.6f} {cmp} κ = {self.kappa:.6f}")
            if self.split not in (None, "train"):
                lines.append("  (φ_cnf is defined on the train split; this compares σ of the "
                             f"{self.split} split with κ)")
        if self.kappa_note:
            lines.append(f"note: {self.kappa_note}")
        return "\n".join(lines)


def _pct(x: float) -> str:
    return f"{100.0 * x:.2f}%"


def _clean(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


# --------------------------------------------------------------------------------------------
# Pieces (each usable on its own from a notebook)
# --------------------------------------------------------------------------------------------


def infer_split(outputs: SoftmaxOutputs) -> str | None:
    """"train" / "eval" from the sidecar's ``split`` or a ``<TASK>_on_<split>`` folder; else None."""
    split = str(outputs.meta.get("split", "")).lower()
    if not split and outputs.path is not None:
        m = _SPLIT_PATTERN.search(outputs.path.parent.name)
        split = m.group(1).lower() if m else ""
    if not split:
        return None
    return "train" if split == "train" else "eval"


def align_pair(teacher: SoftmaxOutputs, student: SoftmaxOutputs) -> tuple[SoftmaxOutputs, str]:
    """Check that two outputs describe the same examples; return the student in teacher order.

    Rows are matched by ``id`` when both files have ids, else by position. Raises InputError
    (naming the file and first offending row) when the row counts, class counts, id sets or
    gold labels differ. Returns (student aligned to the teacher, "id" or "row").
    """
    tname = teacher.name
    if teacher.k != student.k:
        raise InputError(f"student has {student.k} classes but the teacher ({tname}) has {teacher.k}",
                         path=student.path)
    if teacher.n != student.n:
        raise InputError(
            f"student has {student.n} rows but the teacher ({tname}) has {teacher.n}: the files are not "
            "predictions on the same examples (check the split and that neither run was cut short)",
            path=student.path)
    aligned_by = "row"
    if teacher.ids is not None and student.ids is not None:
        order = np.argsort(student.ids, kind="stable")
        sorted_ids = student.ids[order]
        pos = np.searchsorted(sorted_ids, teacher.ids)
        pos_c = np.minimum(pos, len(sorted_ids) - 1)
        found = sorted_ids[pos_c] == teacher.ids
        if not found.all():
            r = int(np.argmax(~found))
            raise InputError(f"id {teacher.ids[r]!r} of the teacher's row {r + 1} is not in the student file",
                             path=student.path)
        idx = order[pos_c]
        student = SoftmaxOutputs(probs=student.probs[idx], pred=student.pred[idx], label=student.label[idx],
                                 ids=student.ids[idx], path=student.path, meta=student.meta,
                                 notes=student.notes)
        aligned_by = "id"
    bad = teacher.label != student.label
    if bad.any():
        r = int(np.argmax(bad))
        raise InputError(
            f"label {int(student.label[r])} differs from the teacher's label {int(teacher.label[r])} "
            f"({tname}, same row{' id ' + repr(teacher.ids[r]) if aligned_by == 'id' else ''}): "
            f"{int(bad.sum())} row(s) disagree, the files are not aligned",
            path=student.path, row=r + 1)
    return student, aligned_by


def population_sigma(delta: np.ndarray) -> float:
    """Population standard deviation (ddof 0) of a (n,) float64 array, as ``np.std``."""
    return float(np.std(delta)) if delta.size else math.nan


@dataclass
class _Moments:
    """Centred Δ and its powers, computed once and shared by σ, the bootstrap and the normality test."""

    n: int
    mean: float
    centred: np.ndarray  # (n,) Δ − mean
    sq: np.ndarray       # (n,) centred²
    sigma: float         # sqrt(mean(sq)): the same operations as np.std, so the same value

    @classmethod
    def of(cls, delta: np.ndarray) -> _Moments:
        delta = np.asarray(delta, dtype=np.float64)
        mean = float(np.mean(delta)) if delta.size else math.nan
        centred = delta - mean  # centring avoids cancellation in E[x²] − E[x]²
        sq = centred * centred
        sigma = float(np.sqrt(np.mean(sq))) if delta.size else math.nan
        return cls(int(delta.size), mean, centred, sq, sigma)


def bootstrap_sigma_ci(
    delta: np.ndarray,
    n_bootstrap: int = 1000,
    seed: int = 0,
    *,
    level: float = 0.95,
    method: str = "auto",
    moments: _Moments | None = None,
) -> tuple[tuple[float, float], str]:
    """Percentile bootstrap interval for σ (ddof 0) of ``delta`` (n,) float64; seeded, deterministic.

    ``method``:
      - ``"rows"``: resample rows with replacement, B times (exact bootstrap, O(B·n)).
      - ``"histogram"``: bin the centred Δ in ``HISTOGRAM_BINS`` equal bins, keeping each bin's
        exact count, ΣΔ and ΣΔ²; each replicate draws multinomial bin counts (n draws) and
        recomputes the variance from the bins' mean Δ and mean Δ². This is the row bootstrap
        except that the rows of one bin are resampled together (their count varies, their
        values are the bin's own mean Δ and Δ², so the bin's spread is kept); the difference to
        the row bootstrap is of order (bin width)²/(12 σ²) in the variance of σ* — below 1e-3
        for Δ spread over [−1, 1] with σ ≥ 0.03 — while the cost is O(n + B·bins) instead of
        O(B·n) (10 M rows: well under a second instead of minutes). Checked against the row
        bootstrap in the tests.
      - ``"auto"``: rows up to ``EXACT_BOOTSTRAP_MAX_N`` rows, histogram above.
    Returns ((low, high), method used). With B = 0 or n < 2 the interval is (σ, σ).
    """
    mo = moments if moments is not None else _Moments.of(delta)
    n, centred, sq, sigma = mo.n, mo.centred, mo.sq, mo.sigma
    if n == 0:
        return (math.nan, math.nan), "none"
    if n_bootstrap <= 0 or n < 2 or sigma == 0.0:
        return (sigma, sigma), "none"
    if method == "auto":
        method = "rows" if n <= EXACT_BOOTSTRAP_MAX_N else "histogram"
    rng = np.random.default_rng(seed)
    if method == "rows":
        sigmas = np.empty(n_bootstrap)
        chunk = max(1, 4_000_000 // n)  # replicates per batch: bounds memory to ~32 MB of indices
        for start in range(0, n_bootstrap, chunk):
            b = min(chunk, n_bootstrap - start)
            sample = centred[rng.integers(0, n, size=(b, n))]
            sigmas[start:start + b] = sample.std(axis=1)
    elif method == "histogram":
        lo, hi = float(centred.min()), float(centred.max())
        counts, s1, s2 = _histogram_moments(centred, sq, lo, HISTOGRAM_BINS / (hi - lo))
        keep = counts > 0
        counts, s1, s2 = counts[keep], s1[keep], s2[keep]
        m1, m2 = s1 / counts, s2 / counts
        draws = rng.multinomial(n, counts / counts.sum(), size=n_bootstrap).astype(np.float64)
        mean = draws @ m1 / n
        var = draws @ m2 / n - mean * mean
        sigmas = np.sqrt(np.maximum(var, 0.0))
    else:
        raise InputError(f"bootstrap method must be 'auto', 'rows' or 'histogram', got {method!r}")
    tail = (1.0 - level) / 2.0
    low, high = _quantiles(sigmas, [tail, 1.0 - tail])
    return (float(low), float(high)), method


def _quantiles(x: np.ndarray, qs: list[float]) -> np.ndarray:
    """``np.quantile(x, qs)`` (default "linear" method) of (m,) float64 ``x``: the same operations,
    hence the same values (checked in the tests), without ``np.quantile``'s import of
    ``numpy.ma`` (~50 ms of the CLI's start-up). NaN input goes to ``np.quantile`` itself."""
    if x.size == 0 or np.isnan(x).any():
        return np.quantile(x, qs)
    q = np.asarray(qs, dtype=np.float64)
    n = x.size
    virtual = (n - 1) * q
    prev = np.floor(virtual)
    nxt = prev + 1
    above = virtual >= n - 1
    prev[above] = -1
    nxt[above] = -1
    below = virtual < 0
    prev[below] = 0
    nxt[below] = 0
    prev_i, next_i = prev.astype(np.intp), nxt.astype(np.intp)
    ordered = np.sort(x)
    a, b = ordered[prev_i], ordered[next_i]
    gamma = virtual - prev_i
    diff = b - a
    out = a + diff * gamma
    np.subtract(b, diff * (1 - gamma), out=out, where=gamma >= 0.5)
    return out


def _histogram_moments(centred: np.ndarray, sq: np.ndarray, lo: float,
                       scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per bin ``min(floor((centred − lo)·scale), HISTOGRAM_BINS − 1)`` of (n,) ``centred``: row
    count (float64), Σ centred and Σ sq, each (HISTOGRAM_BINS,). One C pass when the extension
    is built (sums in row order, as ``np.bincount`` adds its weights: identical values), else numpy."""
    nat = native()
    if (nat is not None and centred.dtype == np.float64 and sq.dtype == np.float64
            and centred.flags.c_contiguous and sq.flags.c_contiguous and centred.shape == sq.shape):
        counts = np.empty(HISTOGRAM_BINS, dtype=np.int64)
        s1 = np.empty(HISTOGRAM_BINS)
        s2 = np.empty(HISTOGRAM_BINS)
        if nat.histogram_moments(centred, sq, lo, scale, HISTOGRAM_BINS, counts, s1, s2):
            return counts.astype(np.float64), s1, s2
    pos = centred - lo
    pos *= scale
    idx = pos.astype(np.intp)  # floor, values are >= 0
    del pos
    np.minimum(idx, HISTOGRAM_BINS - 1, out=idx)
    counts = np.bincount(idx, minlength=HISTOGRAM_BINS).astype(np.float64)
    s1 = np.bincount(idx, weights=centred, minlength=HISTOGRAM_BINS)
    s2 = np.bincount(idx, weights=sq, minlength=HISTOGRAM_BINS)
    return counts, s1, s2


def wasserstein(a: np.ndarray, b: np.ndarray) -> float:
    """1-Wasserstein distance between the empirical distributions of two samples (n,) and (m,).

    For equal sizes (always the case here: both samples are the both-correct rows) this is the
    exact identity W1 = mean |sort(a) − sort(b)|, equal to ``scipy.stats.wasserstein_distance``
    (checked in the tests) but without importing scipy.stats (2.5 s on the project machine, more
    than the whole analysis of SST-2) and without its pooled merge-sort (several times slower at
    10 M rows). The two sorts run in two threads (numpy releases the GIL while sorting).
    Unequal sizes fall back to scipy.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.size == 0 or b.size == 0:
        return math.nan
    if a.size != b.size:
        from scipy.stats import wasserstein_distance

        return float(wasserstein_distance(a, b))
    sa, sb = run_concurrently([lambda: _sorted_compact(a), lambda: _sorted_compact(b)])
    nat = native()
    if nat is not None and sa.dtype == np.float32 and sb.dtype == np.float32:
        # One pass, no (n,) difference array: numpy's own pairwise summation, the same value.
        return float(nat.mean_abs_diff_f32(sa, sb))
    diff = sa.astype(np.float64, copy=False) - sb.astype(np.float64, copy=False)
    np.abs(diff, out=diff)
    return float(np.mean(diff))


def _sorted(x: np.ndarray) -> np.ndarray:
    """Sorted float64 copy of (n,) float64 ``x`` (see :func:`_sorted_compact`)."""
    return _sorted_compact(x).astype(np.float64, copy=False)


def _sorted_compact(x: np.ndarray) -> np.ndarray:
    """Sorted copy of (n,) float64 ``x``, as float32 when every value is exactly a float32 (softmax
    outputs usually are): ~2x faster to sort on 10 M rows, and the same values as ``np.sort(x)``."""
    nat = native()
    if nat is not None and x.flags.c_contiguous:
        x32 = np.empty(x.shape, dtype=np.float32)
        exact = nat.to_float32_exact(x, x32)  # one pass instead of astype + array_equal
    else:
        x32 = x.astype(np.float32)
        exact = np.array_equal(x32, x)
    if exact:
        x32.sort()
        return x32
    return np.sort(x)


def normality_test(delta: np.ndarray, *, moments: _Moments | None = None) -> dict[str, Any]:
    """D'Agostino–Pearson K² omnibus test of Δ (n,): {test, statistic, p_value, skewness, kurtosis}.

    The same formulas as ``scipy.stats.normaltest`` (D'Agostino 1971 skewness test, Anscombe &
    Glynn 1983 kurtosis test, K² = Z_s² + Z_k² ~ χ²(2), so p = exp(−K²/2)); computed here from
    the sample moments in a few numpy passes to avoid importing scipy.stats (agreement with scipy
    is checked in the tests). Not run (p_value None, with a reason) below ``NORMALTEST_MIN_N``
    rows or when Δ is constant. With millions of rows any tiny departure from normality is
    "significant": read the statistic together with the Δ histogram.
    """
    out: dict[str, Any] = {"test": "D'Agostino-Pearson K^2 (scipy.stats.normaltest formulas)", "statistic": None,
                           "p_value": None}
    n = int(delta.size)
    if n < NORMALTEST_MIN_N:
        out["reason"] = f"fewer than {NORMALTEST_MIN_N} both-correct rows"
        return out
    mo = moments if moments is not None else _Moments.of(delta)
    m2 = mo.sigma**2
    m3 = float(np.dot(mo.sq, mo.centred) / n)
    m4 = float(np.dot(mo.sq, mo.sq) / n)
    # Relative threshold: a constant Δ gives m2 at rounding level, not exactly 0.
    if m2 <= (4 * np.finfo(np.float64).eps * max(1.0, abs(mo.mean))) ** 2:
        out["reason"] = "Δ is constant"
        return out
    skew = m3 / m2**1.5
    kurt = m4 / m2**2
    # Skewness test (D'Agostino).
    y = skew * math.sqrt((n + 1) * (n + 3) / (6.0 * (n - 2)))
    beta2 = 3.0 * (n * n + 27 * n - 70) * (n + 1) * (n + 3) / ((n - 2.0) * (n + 5) * (n + 7) * (n + 9))
    w2 = -1.0 + math.sqrt(2.0 * (beta2 - 1.0))
    dlt = 1.0 / math.sqrt(0.5 * math.log(w2))
    alpha = math.sqrt(2.0 / (w2 - 1.0))
    y = 1.0 if y == 0 else y
    z_skew = dlt * math.log(y / alpha + math.sqrt((y / alpha) ** 2 + 1.0))
    # Kurtosis test (Anscombe & Glynn).
    e = 3.0 * (n - 1) / (n + 1)
    varb2 = 24.0 * n * (n - 2) * (n - 3) / ((n + 1) * (n + 1.0) * (n + 3) * (n + 5))
    xk = (kurt - e) / math.sqrt(varb2)
    sqrtbeta1 = 6.0 * (n * n - 5 * n + 2) / ((n + 7) * (n + 9)) * math.sqrt(
        6.0 * (n + 3) * (n + 5) / (n * (n - 2) * (n - 3)))
    a = 6.0 + 8.0 / sqrtbeta1 * (2.0 / sqrtbeta1 + math.sqrt(1.0 + 4.0 / sqrtbeta1**2))
    term1 = 1.0 - 2.0 / (9.0 * a)
    denom = 1.0 + xk * math.sqrt(2.0 / (a - 4.0))
    if denom == 0.0:
        out["reason"] = "kurtosis test undefined for this sample"
        return out
    term2 = math.copysign(((1.0 - 2.0 / a) / abs(denom)) ** (1.0 / 3.0), denom)
    z_kurt = (term1 - term2) / math.sqrt(2.0 / (9.0 * a))
    k2 = z_skew**2 + z_kurt**2
    out.update(statistic=k2, p_value=math.exp(-k2 / 2.0), skewness=skew, kurtosis=kurt)
    return out


def _confidence(outputs: SoftmaxOutputs, kind: str) -> np.ndarray:
    if kind == "p0":
        return outputs.probs[:, 0]
    return take_class(outputs.probs, outputs.label)


# --------------------------------------------------------------------------------------------
# The analysis
# --------------------------------------------------------------------------------------------


def analyze_pair(
    teacher: SoftmaxOutputs,
    student: SoftmaxOutputs,
    *,
    kappa: float | None = None,
    beta: float | None = None,
    beta_mean: float | None = None,
    alpha: float = 0.0,
    temperature: float = 1.0,
    n_train: int | None = None,
    threshold: float = 0.9,
    delta: str = "auto",
    n_bootstrap: int = 1000,
    seed: int = 0,
    split: str | None = None,
) -> PairAnalysis:
    """Analyse φ_cnf for one teacher/student pair of softmax outputs on the same split.

    Args:
        teacher, student: outputs on the same examples (aligned by id when both have ids, else
            by row; see :func:`align_pair`).
        kappa: user tolerance on σ; takes precedence over the β-derived bound.
        beta / beta_mean: prediction-layer distillation loss over the train split, as a total
            (nats) or a mean per example; gives κ = γ·sqrt(β / (N(1−α))) (``bound.py``).
        alpha, temperature: the distillation's hard-label weight α ∈ [0, 1) and temperature T ≥ 1.
        n_train: N; default the number of analysed rows (required when the split is not train).
        threshold: confidence (max probability) above which a row counts as high-confidence.
        delta: "p0" (paper, p0_teacher − p0_student), "label" (probability of the gold label),
            or "auto" = "p0" for 2 classes, "label" for more.
        n_bootstrap, seed: bootstrap resamples for the 95% interval of σ, and its seed.
        split: "train"/"eval"; default from the sidecar or a ``<TASK>_on_<split>`` folder.

    Returns:
        :class:`PairAnalysis`. Raises InputError for misaligned pairs, bad options, or when no
        row is classified correctly by both models.
    """
    if delta not in ("auto", "p0", "label"):
        raise InputError(f"--delta: expected 'p0' or 'label', got {delta!r}")
    if not (0.0 <= threshold <= 1.0):
        raise InputError(f"--threshold: expected a probability in [0, 1], got {threshold!r}")
    if n_bootstrap < 0:
        raise InputError(f"--bootstrap: expected a number of resamples >= 0, got {n_bootstrap!r}")
    student, aligned_by = align_pair(teacher, student)
    kind = ("p0" if teacher.k == 2 else "label") if delta == "auto" else delta
    if split is None:
        split = infer_split(teacher) or infer_split(student)
    elif split not in ("train", "eval"):
        raise InputError(f"split must be 'train' or 'eval', got {split!r}")

    t_ok, s_ok = teacher.correct, student.correct
    both = t_ok & s_ok
    n, n_both = teacher.n, int(both.sum())
    if n_both == 0:
        raise InputError(f"no row is classified correctly by both models ({teacher.name} vs {student.name}): "
                         "σ is undefined", path=student.path)
    # κ options are checked before the heavy statistics so that a usage error is immediate.
    res = resolve_kappa(kappa=kappa, beta=beta, beta_mean=beta_mean, alpha=alpha, temperature=temperature,
                        n_train=n_train, n_rows=n, n_both=n_both, k=teacher.k, split=split)
    t_conf, s_conf = run_concurrently([lambda: _confidence(teacher, kind)[both],
                                       lambda: _confidence(student, kind)[both]])

    def delta_statistics() -> tuple[np.ndarray, float, float, tuple[float, float], str, dict[str, Any]]:
        d = t_conf - s_conf
        moments = _Moments.of(d)
        ci, method = bootstrap_sigma_ci(d, n_bootstrap, seed, moments=moments)
        normality = normality_test(d, moments=moments)
        return d, moments.sigma, moments.mean, ci, method, normality

    # Independent whole-array passes run in threads (numpy and the C kernels release the GIL):
    # the Wasserstein distance (two sorts, the costliest step at 10 M rows) next to σ, the
    # bootstrap and the normality test. The row maxima come after, into the memory those
    # temporaries freed: fresh pages cost more kernel time than the pass itself.
    (d, sigma, mean_delta, ci, method, normality), w1 = run_concurrently(
        [delta_statistics, lambda: wasserstein(t_conf, s_conf)])
    t_max, s_max = run_concurrently([lambda: row_max(teacher.probs), lambda: row_max(student.probs)])
    return PairAnalysis(
        n=n, k=teacher.k, n_both=n_both,
        teacher_accuracy=float(np.count_nonzero(t_ok) / n),
        student_accuracy=float(np.count_nonzero(s_ok) / n),
        agreement=float(np.count_nonzero(teacher.pred == student.pred) / n),
        sigma=sigma, mean_delta=mean_delta, sigma_ci95=ci, bootstrap_method=method,
        n_bootstrap=int(n_bootstrap), seed=int(seed), delta_kind=kind, threshold=float(threshold),
        teacher_high_conf_share=float(np.count_nonzero(t_max > threshold) / n),
        student_high_conf_share=float(np.count_nonzero(s_max > threshold) / n),
        wasserstein=w1, normality=normality,
        kappa=res.kappa, kappa_source=res.kappa_source, kappa_note=res.kappa_note,
        kappa_from_beta=res.kappa_from_beta, beta=res.beta, n_train=res.n_train, gamma=res.gamma,
        alpha=res.alpha, temperature=res.temperature, split=split, verdict=verdict(sigma, res.kappa),
        aligned_by=aligned_by,
        teacher_path=None if teacher.path is None else str(teacher.path),
        student_path=None if student.path is None else str(student.path),
        warnings=[*teacher.notes, *student.notes],
        delta=d, teacher_conf=t_conf, student_conf=s_conf, teacher_maxprob=t_max, student_maxprob=s_max,
        teacher_correct=t_ok, student_correct=s_ok,
    )


def analyze_files(teacher: str | Path, student: str | Path, **kwargs: Any) -> PairAnalysis:
    """Read two softmax files (:func:`read_softmax`) and :func:`analyze_pair` them (same keywords)."""
    return analyze_pair(read_softmax(teacher), read_softmax(student), **kwargs)


__all__ = [
    "PairAnalysis",
    "align_pair",
    "analyze_files",
    "analyze_pair",
    "bootstrap_sigma_ci",
    "infer_split",
    "normality_test",
    "population_sigma",
    "wasserstein",
]

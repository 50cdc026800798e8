"""The engine's resolutions and what is computed from its aggregates alone, whatever pass made them.

The streaming pass (:mod:`.stream_pass`) groups rows into decision cells and bins; this module
holds the sizes of those bins (written once) and the figures that are functions of the aggregates:
flip counts from the decision cells, the binned Wasserstein distance, the plot histograms. Below
``EXACT_MAX_N`` rows the per-row values are kept instead (exact row bootstrap, exact W1), so
memory is bounded whatever the row count. Imports numpy only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Up to this many rows the per-row values come to numpy (exact row bootstrap, exact W1).
EXACT_MAX_N = 50_000
DELTA_BINS = 4000         # Δ on [-1, 1]: moments, the bootstrap histogram above EXACT_MAX_N, the plot
W1_BINS = 1 << 16         # CDF resolution of the Wasserstein distance above EXACT_MAX_N
CONF_PLOT_BINS = 64       # confidence density plots, on [0, 1] (W1_BINS merged)
DELTA_PLOT_BINS = 400     # Δconf histogram, on [-1, 1] (0.005 wide: a good student has σ ≈ 0.01)
NLL_FLOOR = 1e-12
#: Confidence histogram of the adaptive ECE's bin edges (docs/method.md), 1.0 in a bin of its own.
ACE_CUT_BINS = 1 << 20
#: τ grid of the flip-rate curve (decisions.CURVE as exact doubles).
CURVE_GRID = [round(j / 100, 2) for j in range(50, 100)]


def flip_counts(cells: dict[str, np.ndarray], n: int, thresholds: list[float]) -> np.ndarray:
    """(len(thresholds), 4) int64 counts per τ: [same, teacher_only, student_only, class_change] over all rows,
    from the decision cells (:meth:`.stream_pass.Aggregates.decision_cells`; a model acts at τ iff its
    confidence in its prediction is >= τ)."""
    cnt, d = cells["n"].astype(np.int64), ~cells["agree"].astype(bool)
    extra = cells["extra"].tolist()
    out = np.zeros((len(thresholds), 4), dtype=np.int64)
    for row, t in enumerate(thresholds):
        t = float(t)
        if t in CURVE_GRID:
            j = CURVE_GRID.index(t)
            ta, sa = cells["ga"] > j, cells["gb"] > j
        else:
            i = extra.index(t)
            ta, sa = cells[f"xa{i}"].astype(bool), cells[f"xb{i}"].astype(bool)
        out[row] = [0, cnt[ta & ~sa].sum(), cnt[~ta & sa].sum(), cnt[ta & sa & d].sum()]
    out[:, 0] = n - out[:, 1:].sum(axis=1)
    return out


def binned_wasserstein(t_hist: np.ndarray, s_hist: np.ndarray) -> float:
    """W1 between two samples from their counts on W1_BINS bins of [0, 1] (error <= 1/W1_BINS)."""
    ft, fs = np.cumsum(t_hist) / max(t_hist.sum(), 1.0), np.cumsum(s_hist) / max(s_hist.sum(), 1.0)
    return float(np.abs(ft - fs).sum() / W1_BINS)


def plot_histograms(t_hist: np.ndarray, s_hist: np.ndarray, delta: np.ndarray) -> dict[str, Any]:
    """Bin counts for the plots, merged from the fine bins: t_c and s_c (CONF_PLOT_BINS on [0, 1]), Δ
    (DELTA_PLOT_BINS on [-1, 1])."""
    def merge(h: np.ndarray, bins: int) -> list[int]:
        return h.reshape(bins, -1).sum(axis=1).astype(np.int64).tolist()
    return {"teacher_conf": {"edges": np.linspace(0.0, 1.0, CONF_PLOT_BINS + 1).tolist(),
                             "count": merge(t_hist, CONF_PLOT_BINS)},
            "student_conf": {"edges": np.linspace(0.0, 1.0, CONF_PLOT_BINS + 1).tolist(),
                             "count": merge(s_hist, CONF_PLOT_BINS)},
            "delta": {"edges": np.linspace(-1.0, 1.0, DELTA_PLOT_BINS + 1).tolist(),
                      "count": merge(delta, DELTA_PLOT_BINS)}}


__all__ = [
    "ACE_CUT_BINS",
    "CURVE_GRID",
    "EXACT_MAX_N",
    "binned_wasserstein",
    "flip_counts",
    "plot_histograms",
]

"""Reusable plots (matplotlib, Agg backend), each saved atomically to a PNG.

- :func:`plot_confidence_histogram`: a confidence distribution, 20 bins on [0, 1] + a Gaussian
  KDE density curve (``scipy.stats.gaussian_kde``).
- :func:`plot_delta_histogram`: the Δconf distribution with σ (and κ when known).
- :func:`plot_sigma_summary`: grouped bars of σ per task (group) and student (series), with CIs
  and κ markers.
- :func:`reliability_curve` / :func:`plot_reliability`: calibration (accuracy vs confidence per bin).

matplotlib and scipy are imported inside the functions so importing this module stays cheap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from confdistill.io import atomic_path

#: The density curve is estimated on at most this many points (seeded subsample): a KDE on
#: 10 M points would cost minutes and draws the same curve.
KDE_MAX_POINTS = 20_000


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path) -> Path:
    plt = _pyplot()
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    finally:
        plt.close(fig)
    return path


def _kde_curve(values: np.ndarray, grid: np.ndarray, seed: int = 0) -> np.ndarray | None:
    """Gaussian KDE of ``values`` (n,) evaluated on ``grid``; None when degenerate (constant data)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size < 2 or float(np.ptp(values)) == 0.0:
        return None
    if values.size > KDE_MAX_POINTS:
        values = np.random.default_rng(seed).choice(values, KDE_MAX_POINTS, replace=False)
    from scipy.stats import gaussian_kde

    try:
        return gaussian_kde(values)(grid)
    except np.linalg.LinAlgError:  # singular covariance: (near-)constant data
        return None


def plot_confidence_histogram(
    values: np.ndarray,
    path: str | Path,
    *,
    title: str,
    xlabel: str = "confidence",
    bins: int = 20,
    value_range: tuple[float, float] = (0.0, 1.0),
    color: str = "tab:blue",
) -> Path:
    """Histogram of confidences (n,) in [0, 1] as a density (``bins`` equal bins) + KDE curve."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(values, bins=bins, range=value_range, density=True, color=color, alpha=0.6,
            edgecolor="white", label=f"histogram ({bins} bins)")
    grid = np.linspace(value_range[0], value_range[1], 400)
    dens = _kde_curve(values, grid)
    if dens is not None:
        ax.plot(grid, dens, color="black", lw=1.5, label="density (Gaussian KDE)")
    ax.set_xlim(*value_range)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.set_title(f"{title} (n = {len(values)})")
    ax.legend(loc="upper center", fontsize=8)
    return _save(fig, path)


def plot_delta_histogram(
    delta: np.ndarray,
    path: str | Path,
    *,
    sigma: float,
    mean: float,
    kappa: float | None = None,
    title: str = "Δconf = teacher − student (both-correct rows)",
    bins: int = 50,
) -> Path:
    """Histogram of Δconf (n,) with its density, mean, ±σ and (if known) ±κ lines."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    lim = float(max(np.max(np.abs(delta)), 3 * sigma, kappa or 0.0, 1e-3))
    ax.hist(delta, bins=bins, range=(-lim, lim), density=True, color="tab:purple", alpha=0.6,
            edgecolor="white", label="Δconf")
    grid = np.linspace(-lim, lim, 400)
    dens = _kde_curve(delta, grid)
    if dens is not None:
        ax.plot(grid, dens, color="black", lw=1.2, label="density (Gaussian KDE)")
    ax.axvline(mean, color="tab:red", lw=1, label=f"mean {mean:+.4f}")
    for s in (-1, 1):
        ax.axvline(mean + s * sigma, color="tab:red", ls="--", lw=1, label=f"±σ = {sigma:.4f}" if s > 0 else None)
        if kappa is not None:
            ax.axvline(s * kappa, color="tab:green", ls=":", lw=1.5, label=f"±κ = {kappa:.4f}" if s > 0 else None)
    ax.set_xlabel("Δconf")
    ax.set_ylabel("density")
    ax.set_title(f"{title} (n = {len(delta)})", fontsize=10)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_sigma_summary(
    entries: Sequence[Mapping[str, Any]],
    path: str | Path,
    *,
    title: str = "σ of Δconf per task and student",
) -> Path:
    """Grouped bar plot: one group per ``entry["group"]`` (task), one bar per ``entry["series"]``.

    Each entry: ``group`` (str), ``series`` (str, e.g. "TinyBERT_4L train"), ``sigma`` (float),
    optional ``ci`` ((low, high)) drawn as an error bar and ``kappa`` drawn as a black tick.
    """
    plt = _pyplot()
    groups = list(dict.fromkeys(str(e["group"]) for e in entries))
    series = list(dict.fromkeys(str(e["series"]) for e in entries))
    width = 0.8 / max(1, len(series))
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(groups) * max(1, len(series)) / 2), 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    kappa_labelled = False
    for j, name in enumerate(series):
        xs, ys, lo, hi = [], [], [], []
        for e in entries:
            if str(e["series"]) != name or e.get("sigma") is None:
                continue
            x = groups.index(str(e["group"])) + (j - (len(series) - 1) / 2) * width
            s = float(e["sigma"])
            ci = e.get("ci") or (s, s)
            xs.append(x)
            ys.append(s)
            lo.append(max(0.0, s - float(ci[0])))
            hi.append(max(0.0, float(ci[1]) - s))
            if e.get("kappa") is not None:
                ax.plot([x - width / 2, x + width / 2], [e["kappa"]] * 2, color="black", lw=2,
                        label=None if kappa_labelled else "κ")
                kappa_labelled = True
        ax.bar(xs, ys, width=width * 0.95, yerr=[lo, hi], capsize=3, label=name, color=colors[j % len(colors)])
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylabel("σ (population std of Δconf)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, path)


def reliability_curve(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 10) -> dict[str, np.ndarray | float]:
    """Calibration data: per equal-width confidence bin on [0, 1], mean confidence and accuracy.

    ``confidence`` (n,) max probability, ``correct`` (n,) bool. Returns ``bin_edges`` (n_bins+1,),
    ``confidence``/``accuracy`` (n_bins,) (NaN for empty bins), ``count`` (n_bins,) and ``ece``
    (expected calibration error, count-weighted mean |accuracy − confidence|).
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.bincount(idx, weights=confidence, minlength=n_bins) / count
        acc = np.bincount(idx, weights=correct, minlength=n_bins) / count
    filled = count > 0
    ece = float(np.sum(count[filled] * np.abs(acc[filled] - conf[filled])) / max(1.0, count.sum()))
    return {"bin_edges": edges, "confidence": conf, "accuracy": acc, "count": count, "ece": ece}


def plot_reliability(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    path: str | Path,
    *,
    n_bins: int = 10,
    title: str = "Reliability",
) -> Path:
    """Reliability diagram for several models: ``{name: (confidence (n,), correct (n,))}``."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="perfect calibration")
    for name, (conf, ok) in curves.items():
        rc = reliability_curve(conf, ok, n_bins)
        m = np.asarray(rc["count"]) > 0
        ax.plot(np.asarray(rc["confidence"])[m], np.asarray(rc["accuracy"])[m], marker="o",
                label=f"{name} (ECE {rc['ece']:.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (max probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, path)


__all__ = [
    "KDE_MAX_POINTS",
    "plot_confidence_histogram",
    "plot_delta_histogram",
    "plot_reliability",
    "plot_sigma_summary",
    "reliability_curve",
]

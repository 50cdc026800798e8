"""Plots (matplotlib, Agg backend) drawn from an analysis' JSON-able summaries, each saved atomically.

Every analysis plot is drawn from the structures of ``PairAnalysis.to_dict()`` (docs/formats.md):
``histograms``, ``reliability``, ``flip_curve``, ``flips``, never from per-row arrays, so a 30 M-row
analysis plots in the same bounded memory as a 500-row one, and the report can redraw every figure
from ``analysis.json`` alone.

- :func:`write_analysis_plots`: the five plots of one analysis (``analyze --out``).
- :func:`plot_confidence_density`: confidence densities of one or more models from histograms on
  [0, 1]; the smooth line is the histogram smoothed with reflection at 0 and 1, so no
  mass spills past the edges (a Gaussian KDE of bounded data does).
- :func:`plot_delta_conf`: Δconf histogram with mean, ±σ and ±κ (when a tolerance is stated).
- :func:`plot_reliability_bins`: reliability diagram of both models on one plot, bin counts below.
- :func:`plot_flip_curve`: decision-flip rate over τ (total and its three parts), operating τ marked.
- :func:`plot_stage_losses`, :func:`plot_sigma_summary`, :func:`read_losses`: from
  :mod:`confdistill.reports.run_plots` (training loss per stage; σ per task and student).
- Per-row helpers kept for callers that hold arrays: :func:`plot_confidence_histogram`,
  :func:`plot_delta_histogram`; they bin the arrays first and draw through the functions above. A
  reliability diagram of arrays is ``plot_reliability_bins({"m": reliability(units_from_rows(probs,
  pred, label))}, path)`` (:mod:`confdistill.properties.calibration`: the analysis' own 16 slots).

matplotlib is imported inside the functions so importing this module stays cheap (no scipy).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from confdistill.reports import _figure
from confdistill.reports._figure import pyplot

# Re-exported: callers import every plot from this module.
from confdistill.reports.run_plots import (
    plot_loss_curves,
    plot_sigma_summary,
    plot_stage_losses,
    plot_tradeoff,
    read_losses,
)

#: x-axis of a confidence plot, by ``delta_kind`` (the confidence Δconf is taken of).
CONFIDENCE_AXIS = {"p0": "p(class 0)", "label": "p(gold label)", "pred": "p(predicted class)"}
#: The rows σ is taken over, by ``set``.
SET_WORDS = {"both_correct": "both-correct rows", "agree": "rows where both predict the same class"}
MODEL_COLORS = {"teacher": "tab:blue", "student": "tab:orange"}
PART_STYLE = {"teacher_only": ("teacher acts, student abstains", "tab:blue"),
              "student_only": ("student acts, teacher abstains", "tab:orange"),
              "class_change": ("both act, different classes", "tab:red")}
#: Smoothing of a density line, in bins (standard deviation of the Gaussian kernel).
SMOOTH_BINS = 1.5


def confidence_axis(delta_kind: str | None) -> str:
    """The x-axis label of a confidence plot for ``delta_kind`` (``p0`` / ``label`` / ``pred``)."""
    return CONFIDENCE_AXIS.get(str(delta_kind), "confidence")


# ----------------------------------------------------------------------------- densities


def _density(hist: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, int]:
    """(edges (B+1,), density (B,), n) of a ``{"edges", "count"}`` histogram; density integrates to 1."""
    edges = np.asarray(hist["edges"], dtype=np.float64)
    count = np.asarray(hist["count"], dtype=np.float64)
    n = float(count.sum())
    dens = count / (n * np.diff(edges)) if n > 0 else np.zeros_like(count)
    return edges, dens, round(n)


def smooth_density(edges: np.ndarray, density: np.ndarray, bins: float = SMOOTH_BINS) -> tuple[np.ndarray, np.ndarray]:
    """The density smoothed by a Gaussian of ``bins`` bins, reflected at both edges.

    Reflection (symmetric padding) keeps the mass inside [edges[0], edges[-1]]: the curve
    integrates to the histogram's mass and has zero slope at the edges instead of spilling past
    them. Returns (x, y) from the first edge to the last (bin centres plus the two edges).
    """
    pad = math.ceil(4 * bins)
    offsets = np.arange(-pad, pad + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (offsets / bins) ** 2)
    kernel /= kernel.sum()
    # A reflection wider than the histogram is reflected again (np.pad does this for "symmetric").
    padded = np.pad(density, pad, mode="symmetric")
    y = np.convolve(padded, kernel, mode="valid")
    centres = (edges[:-1] + edges[1:]) / 2
    return np.concatenate([[edges[0]], centres, [edges[-1]]]), np.concatenate([[y[0]], y, [y[-1]]])


def _draw_confidence(ax: Any, hists: Mapping[str, Mapping[str, Any]], delta_kind: str | None,
                     colors: Mapping[str, str] | None = None) -> None:
    colors = {**MODEL_COLORS, **(colors or {})}
    palette = ["tab:blue", "tab:orange", "tab:green", "tab:purple"]
    drawn = False
    for i, (name, hist) in enumerate(hists.items()):
        edges, dens, n = _density(hist)
        if n == 0:
            continue
        color = colors.get(name, palette[i % len(palette)])
        # Lighter bars when overlaid: the smooth lines carry the comparison.
        ax.stairs(dens, edges, fill=True, alpha=0.25 if len(hists) == 1 else 0.15, color=color)
        x, y = smooth_density(edges, dens)
        ax.plot(x, y, color=color, lw=1.8, label=f"{name} (n = {n:,})")
        drawn = True
    if not drawn:
        ax.text(0.5, 0.5, "no rows", ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(bottom=0.0)
    ax.set_xlabel(confidence_axis(delta_kind))
    ax.set_ylabel("density")
    if drawn:
        ax.legend(fontsize=8, loc="upper center")


def plot_confidence_density(hists: Mapping[str, Mapping[str, Any]], path: str | Path, *, delta_kind: str | None,
                            title: str, colors: Mapping[str, str] | None = None) -> Path:
    """Confidence density of one or more models on one axes, from ``{name: {"edges", "count"}}``.

    Shaded: the histogram as a density; line: the same, smoothed with reflection at 0 and 1.
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    _draw_confidence(ax, hists, delta_kind, colors)
    ax.set_title(title, fontsize=10)
    return _figure.save(fig, path)


def plot_delta_conf(hist: Mapping[str, Any], path: str | Path, *, sigma: float | None, mean: float | None,
                    tolerance: float | None = None, title: str = "Δconf = teacher − student") -> Path:
    """The Δconf histogram (density) with the mean, mean ± σ and, with a tolerance, ±κ.

    The x range is zoomed to the occupied bins, ±3σ and ±κ (Δconf lives on [−1, 1] but is
    usually within a few hundredths of 0).
    """
    plt = pyplot()
    edges, dens, n = _density(hist)
    fig, ax = plt.subplots(figsize=(6, 4))
    occupied = np.flatnonzero(np.asarray(hist["count"], dtype=np.float64) > 0)
    reach = [0.02]
    if occupied.size:
        reach += [abs(edges[occupied[0]]), abs(edges[occupied[-1] + 1])]
    if sigma is not None and math.isfinite(sigma):
        reach.append(abs(mean or 0.0) + 3 * sigma)
    if tolerance is not None:
        reach.append(1.25 * tolerance)
    lim = min(float(edges[-1]), max(reach) * 1.05)
    ax.stairs(dens, edges, fill=True, alpha=0.5, color="tab:purple", label=f"Δconf (n = {n:,})")
    if mean is not None and math.isfinite(mean):
        ax.axvline(mean, color="tab:red", lw=1, label=f"mean {mean:+.4f}")
        if sigma is not None and math.isfinite(sigma):
            for s in (-1, 1):
                ax.axvline(mean + s * sigma, color="tab:red", ls="--", lw=1,
                           label=f"mean ± σ (σ = {sigma:.4f})" if s > 0 else None)
    if tolerance is not None:
        for s in (-1, 1):
            ax.axvline(s * tolerance, color="tab:green", ls=":", lw=1.8,
                       label=f"±κ (tolerance {tolerance:.4f})" if s > 0 else None)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(bottom=0.0)
    ax.set_xlabel("Δconf")
    ax.set_ylabel("density")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return _figure.save(fig, path)


# ----------------------------------------------------------------------------- calibration


def plot_reliability_bins(reliability: Mapping[str, Mapping[str, Any]], path: str | Path, *,
                          title: str = "Reliability", ece: Mapping[str, float] | None = None) -> Path:
    """Reliability diagram of several models from their per-bin summaries, counts in a panel below.

    ``reliability``: ``{name: {"edges" (B+1,), "count", "confidence", "accuracy"}}`` with B or
    B + 1 slots (the extra slot is confidence == 1.0, drawn at x = 1); empty bins are None.
    """
    plt = pyplot()
    fig, (ax, axc) = plt.subplots(2, 1, figsize=(5.6, 6.2), sharex=True, gridspec_kw={"height_ratios": [3, 1.2]})
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="perfect calibration")
    names = list(reliability)
    palette = ["tab:blue", "tab:orange", "tab:green", "tab:purple"]
    counts_max, counts_min = 0.0, math.inf
    for i, name in enumerate(names):
        rel = reliability[name]
        edges = np.asarray(rel["edges"], dtype=np.float64)
        width = np.diff(edges)
        slots = len(rel["count"])
        centres = np.array([(edges[j] + edges[j + 1]) / 2 if j < len(width) else edges[-1] for j in range(slots)])
        widths = np.array([width[j] if j < len(width) else width[-1] / 3 for j in range(slots)])
        color = MODEL_COLORS.get(name, palette[i % len(palette)])
        pts = [(c, a) for c, a in zip(rel["confidence"], rel["accuracy"], strict=True) if c is not None and a is not None]
        label = name if not ece or ece.get(name) is None else f"{name} (ECE {ece[name]:.3f})"
        if pts:
            xs, ys = zip(*pts, strict=True)
            ax.plot(xs, ys, marker="o", ms=4, color=color, label=label)
        count = np.array([c or 0 for c in rel["count"]], dtype=np.float64)
        bar_w = widths / (len(names) + 0.5)
        axc.bar(centres + (i - (len(names) - 1) / 2) * bar_w, count, width=bar_w, color=color, alpha=0.7)
        if (count > 0).any():
            counts_max = max(counts_max, float(count.max()))
            counts_min = min(counts_min, float(count[count > 0].min()))
    ax.set_xlim(0, 1.04)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("accuracy in bin")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.25)
    # Counts pile up in the top bins: a log axis keeps the sparse bins visible.
    if counts_max > 0 and counts_max / counts_min > 50:
        axc.set_yscale("log")
    axc.set_ylabel("rows per bin")
    axc.set_xlabel("confidence (top-label probability), 15 bins; conf = 1 at x = 1")
    fig.tight_layout()
    return _figure.save(fig, path)


def plot_flip_curve(curve: Mapping[str, Sequence[float]], path: str | Path, *,
                    flips: Mapping[str, Mapping[str, Any]] | None = None,
                    title: str = "Decision flips between teacher and student") -> Path:
    """Flip rate over τ (total and teacher-only / student-only / class-change parts), from ``flip_curve``.

    ``flips`` (the analysis' ``flips``) marks each operating threshold with its rate and 95% interval.
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    tau = np.asarray(curve["thresholds"], dtype=np.float64)
    ax.plot(tau, 100 * np.asarray(curve["rate"], dtype=np.float64), color="black", lw=2, label="all flips")
    for part, (label, color) in PART_STYLE.items():
        if part in curve:
            ax.plot(tau, 100 * np.asarray(curve[part], dtype=np.float64), color=color, lw=1.2, label=label)
    for key, f in (flips or {}).items():
        t = float(key)
        ax.axvline(t, color="grey", ls=":", lw=1)
        rate = f.get("rate")
        if rate is None:
            continue
        ci = f.get("ci95")
        if ci:
            ax.errorbar([t], [100 * rate], yerr=[[100 * (rate - ci[0])], [100 * (ci[1] - rate)]],
                        fmt="o", color="black", ms=5, capsize=3)
        ax.annotate(f"τ = {key}: {100 * rate:.1f}%", (t, 100 * rate), textcoords="offset points",
                    xytext=(4, 6), fontsize=8)
    ax.set_xlabel("threshold τ (a model acts when p(its class) ≥ τ, else abstains)")
    ax.set_ylabel("share of all rows (%)")
    ax.set_ylim(bottom=0.0)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.25)
    ax.legend(fontsize=8, loc="upper left")
    return _figure.save(fig, path)


def write_analysis_plots(analysis: Mapping[str, Any], out_dir: str | Path) -> list[Path]:
    """Write the plots of one analysis dict (``PairAnalysis.to_dict()``) into ``out_dir``.

    ``confidence_teacher.png``, ``confidence_student.png`` (densities over the σ set),
    ``delta_conf.png``, ``reliability.png`` (labelled files only: skipped when ``reliability`` is
    null) and ``flips.png``. Returns the paths written.
    """
    out_dir = Path(out_dir)
    kind = analysis.get("delta_kind")
    rows = SET_WORDS.get(str(analysis.get("set")), "set rows")
    hists = analysis["histograms"]
    paths = [
        plot_confidence_density({"teacher": hists["teacher_conf"]}, out_dir / "confidence_teacher.png",
                                delta_kind=kind, title=f"teacher confidence, {rows}"),
        plot_confidence_density({"student": hists["student_conf"]}, out_dir / "confidence_student.png",
                                delta_kind=kind, title=f"student confidence, {rows}"),
        plot_delta_conf(hists["delta"], out_dir / "delta_conf.png", sigma=analysis.get("sigma"),
                        mean=analysis.get("mean_delta"), tolerance=analysis.get("kappa"),
                        title=f"Δconf = teacher − student, {rows}"),
    ]
    if analysis.get("reliability"):
        cal = analysis.get("calibration") or {}
        ece = {m: cal.get(m, {}).get("ece") for m in ("teacher", "student")} if cal else None
        paths.append(plot_reliability_bins(analysis["reliability"], out_dir / "reliability.png",
                                           title="Reliability (all rows)", ece=ece))
    if analysis.get("flip_curve"):
        paths.append(plot_flip_curve(analysis["flip_curve"], out_dir / "flips.png", flips=analysis.get("flips")))
    return paths


# ----------------------------------------------------------------------------- per-row helpers


def _hist(values: np.ndarray, bins: int, value_range: tuple[float, float]) -> dict[str, list[float]]:
    count, edges = np.histogram(np.asarray(values, dtype=np.float64), bins=bins, range=value_range)
    return {"edges": edges.tolist(), "count": count.tolist()}


def plot_confidence_histogram(values: np.ndarray, path: str | Path, *, title: str, xlabel: str | None = None,
                              bins: int = 50, value_range: tuple[float, float] = (0.0, 1.0),
                              color: str = "tab:blue", delta_kind: str | None = "p0") -> Path:
    """Confidences (n,) in [0, 1] binned (``bins`` equal bins), drawn by :func:`plot_confidence_density`."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    _draw_confidence(ax, {"rows": _hist(values, bins, value_range)}, delta_kind, {"rows": color})
    if xlabel is not None:
        ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    return _figure.save(fig, path)


def plot_delta_histogram(delta: np.ndarray, path: str | Path, *, sigma: float, mean: float,
                         kappa: float | None = None, title: str = "Δconf = teacher − student",
                         bins: int = 100) -> Path:
    """Δconf (n,) binned on [−1, 1], drawn by :func:`plot_delta_conf`."""
    return plot_delta_conf(_hist(delta, bins, (-1.0, 1.0)), path, sigma=sigma, mean=mean, tolerance=kappa,
                           title=title)


__all__ = [
    "CONFIDENCE_AXIS",
    "confidence_axis",
    "plot_confidence_density",
    "plot_confidence_histogram",
    "plot_delta_conf",
    "plot_delta_histogram",
    "plot_flip_curve",
    "plot_loss_curves",
    "plot_reliability_bins",
    "plot_sigma_summary",
    "plot_stage_losses",
    "plot_tradeoff",
    "read_losses",
    "smooth_density",
    "write_analysis_plots",
]

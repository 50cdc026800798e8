"""Plots of runs rather than of one analysis: training loss per stage, and σ per task and student.

- :func:`read_losses` / :func:`plot_stage_losses`: the training loss of every run of a task, one
  panel per stage (finetune / stage1 / stage2), from each run's ``metrics.jsonl``.
- :func:`plot_loss_curves`: one run's loss components per step and its evaluation metric
  (``OUT/loss_curves.png`` of ``distill`` / ``finetune``).
- :func:`plot_sigma_summary`: grouped bars of σ per task and student with CIs and κ (the report's
  summary, ``confdistill table``).

Re-exported by :mod:`confdistill.reports.plots`, where callers import them from.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from confdistill.reports import _figure
from confdistill.reports._figure import pyplot

#: Pipeline order of the loss panels.
STAGE_ORDER = ("finetune", "general", "stage1", "stage2")



def read_losses(metrics_jsonl: Path) -> tuple[list[float], list[float]]:
    """(global step, training loss) pairs from a run's ``metrics.jsonl`` (rows with a ``loss``)."""
    steps: list[float] = []
    losses: list[float] = []
    for line in Path(metrics_jsonl).read_text().splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a kill
        loss = rec.get("loss", rec.get("train_loss"))
        if isinstance(loss, int | float) and math.isfinite(loss) and rec.get("split", "train") == "train":
            steps.append(float(rec.get("step", rec.get("global_step", len(steps)))))
            losses.append(float(loss))
    return steps, losses


def plot_stage_losses(stages: Mapping[str, Mapping[str, Path]], path: str | Path, *, title: str) -> Path:
    """Training loss per step, one panel per stage (``{stage: {model: metrics.jsonl}}``).

    The stages optimise different losses (fine-tuning CE, stage-1 MSE of hidden states and
    attention, stage-2 soft CE) on different scales: one panel each keeps every curve readable.
    A log y-axis when every loss of the panel is positive.
    """
    plt = pyplot()
    order = [s for s in STAGE_ORDER if s in stages] + [s for s in stages if s not in STAGE_ORDER]
    ncols = min(3, max(1, len(order)))
    nrows = max(1, math.ceil(len(order) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.4 * ncols, 3.4 * nrows), squeeze=False)
    for ax in axes.flat[len(order):]:
        ax.set_visible(False)
    for ax, stage in zip(axes.flat, order, strict=False):
        positive, drawn = True, False
        for model, metrics in stages[stage].items():
            steps, losses = read_losses(metrics)
            if not losses:
                continue
            ax.plot(steps, losses, lw=1.2, label=model)
            positive, drawn = positive and min(losses) > 0, True
        if drawn and positive:
            ax.set_yscale("log")
        if drawn:
            ax.legend(fontsize=8, loc="upper right")
        ax.set_title(stage, fontsize=10)
        ax.set_xlabel("step")
        ax.set_ylabel("training loss")
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return _figure.save(fig, path)


LOSS_KEYS = ("loss", "att_loss", "rep_loss", "soft_loss", "hard_loss", "conf_loss")


def plot_loss_curves(metrics_jsonl: str | Path, path: str | Path, *, metric: str) -> Path:
    """One run: its loss components per step (log scale) and the evaluation ``metric``, to a PNG (atomic).

    Reads ``metrics.jsonl`` (``{"step", "loss", …}`` per step, ``{"step", "eval": {…}}`` per
    evaluation); lines cut by a kill are skipped.
    """
    entries = []
    for line in Path(metrics_jsonl).read_text(encoding="utf-8").splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    steps = [e for e in entries if "loss" in e]
    evals = [e for e in entries if "eval" in e]
    keys = [k for k in LOSS_KEYS if any(abs(e.get(k, 0.0)) > 0 for e in steps)]
    plt = pyplot()
    fig, axes = plt.subplots(1, 2 if evals else 1, figsize=(11 if evals else 6, 4), squeeze=False)
    ax = axes[0][0]
    for k in keys:
        ax.plot([e["step"] for e in steps], [e[k] for e in steps], label=k, lw=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if keys and all(e[k] > 0 for e in steps for k in keys if k in e):
        ax.set_yscale("log")
    if keys:
        ax.legend()
    ax.set_title("training loss")
    if evals:
        ax2 = axes[0][1]
        ax2.plot([e["step"] for e in evals], [e["eval"].get(metric, float("nan")) for e in evals], marker="o")
        ax2.set_xlabel("step")
        ax2.set_ylabel(metric)
        ax2.set_title(f"evaluation {metric}")
    fig.tight_layout()
    return _figure.save(fig, path)


def plot_tradeoff(points: Sequence[Mapping[str, Any]], path: str | Path, *, kappa: float | None,
                  title: str, batch: str) -> Path:
    """Which model to ship: speed-up over the teacher (x, at one batch size) against σ(train) (y).

    points: ``{"model", "speedup", "sigma", "ci" ([lo, hi] or None), "runtime"}``, the teacher at
    (1, 0); κ, the user's tolerance, as a horizontal line: a model below it and far right is the one.
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for p in points:
        marker = "s" if p.get("runtime") == "onnxruntime" else "o"
        ci = p.get("ci")
        yerr = None if not ci else [[max(0.0, p["sigma"] - ci[0])], [max(0.0, ci[1] - p["sigma"])]]
        ax.errorbar([p["speedup"]], [p["sigma"]], yerr=yerr, fmt=marker, ms=7, capsize=3)
        ax.annotate(str(p["model"]), (p["speedup"], p["sigma"]), textcoords="offset points", xytext=(6, 4),
                    fontsize=8)
    if kappa is not None:
        ax.axhline(kappa, color="black", lw=1, ls="--")
        # x in axes fraction, y in data: the label stays at the left edge whatever the x scale becomes
        ax.annotate(f"tolerance κ = {kappa:g}", (0.0, kappa), xycoords=ax.get_yaxis_transform(),
                    textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel(f"speed-up over the teacher (CPU, batch {batch}; squares: ONNX Runtime)")
    ax.set_ylabel("σ(train) of Δconf (95% interval)")
    ax.set_ylim(bottom=0.0)
    speedups = [p["speedup"] for p in points if p["speedup"] > 0]
    if speedups and max(speedups) / min(speedups) > 8:
        ax.set_xscale("log")  # tiny models and int8 forms can be orders of magnitude apart
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _figure.save(fig, path)


# ----------------------------------------------------------------------------- σ summary


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
    plt = pyplot()
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
    return _figure.save(fig, path)



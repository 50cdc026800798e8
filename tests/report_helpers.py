"""Fabricated analyses and experiment folders for the report tests (no models, no analysis engine).

:func:`fake_analysis` builds a dict with exactly the keys of ``PairAnalysis.to_dict()`` (the
contract of docs/formats.md) from synthetic rows, with simple numpy versions of each figure: the
report must draw and word everything from these keys alone. :func:`make_experiment` lays out an
experiment folder (analysis.json per student, prediction files with sidecars, training logs,
footprints) that ``collect_results`` reads.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from confdistill.experiments.config import ExperimentConfig, experiment_from_dict
from confdistill.experiments.paths import TaskPaths, prediction_files
from confdistill.io import write_json

TEXTS = [
    "a gripping , funny and ultimately heartbreaking film",
    "the plot is thin but the <b>acting</b> | is superb",
    "it 's a long , long way from the book , and a longer way from anything resembling a coherent story "
    "about people who might once have existed outside the screenwriter 's imagination",
    "dull",
    "neither as funny nor as sharp as it wants to be",
]
THRESHOLDS = ("0.5", "0.9")


def _bins(conf: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.linspace(0, 1, 16), conf, side="right") - 1  # 15 bins + conf == 1 slot


def _reliability(conf: np.ndarray, correct: np.ndarray) -> dict[str, Any]:
    b = _bins(conf)
    count = np.bincount(b, minlength=16)[:16]
    sc = np.bincount(b, weights=conf, minlength=16)[:16]
    sk = np.bincount(b, weights=correct, minlength=16)[:16]
    return {"edges": np.linspace(0, 1, 16).tolist(), "count": count.tolist(),
            "confidence": [float(sc[j] / count[j]) if count[j] else None for j in range(16)],
            "accuracy": [float(sk[j] / count[j]) if count[j] else None for j in range(16)]}


def _cal(probs: np.ndarray, label: np.ndarray) -> dict[str, float]:
    pred = probs.argmax(1)
    conf = probs[np.arange(len(pred)), pred]
    ok = (pred == label).astype(float)
    b = _bins(conf)
    ece = float(np.abs(np.bincount(b, weights=ok - conf, minlength=16)).sum() / len(ok))
    onehot = np.eye(probs.shape[1])[label]
    return {"ece": ece, "ace": ece * 1.05, "mce": min(1.0, 3 * ece), "brier": float(((probs - onehot) ** 2).sum(1).mean()),
            "nll": float(-np.log(np.maximum(probs[np.arange(len(label)), label], 1e-12)).mean())}


def _decisions(probs: np.ndarray, tau: float) -> np.ndarray:
    pred = probs.argmax(1)
    return np.where(probs[np.arange(len(pred)), pred] >= tau, pred, -1)


def _flip_parts(tp: np.ndarray, sp: np.ndarray, tau: float) -> dict[str, float]:
    t, s = _decisions(tp, tau), _decisions(sp, tau)
    return {"rate": float(np.mean(t != s)), "teacher_only": float(np.mean((t >= 0) & (s < 0))),
            "student_only": float(np.mean((t < 0) & (s >= 0))), "class_change": float(np.mean((t >= 0) & (s >= 0) & (t != s)))}


def _verdicts(sigma: float, lo: float, hi: float, kappa: float | None) -> tuple[str, str]:
    if kappa is None:
        return "no verdict", "no verdict"
    return ("holds" if sigma <= kappa else "fails",
            "holds" if hi <= kappa else "fails" if lo > kappa else "undecided")


def fake_analysis(*, split: str, n: int = 400, noise: float = 0.02, seed: int = 0, kappa: float | None = 0.05,
                  beta: float | None = 0.5, labelled: bool = True, worst: int = 6,
                  teacher_path: str = "t.csv", student_path: str = "s.csv") -> dict[str, Any]:
    """A ``PairAnalysis.to_dict()`` of a synthetic two-class pair: student = teacher + noise on p0."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, n)
    p0 = np.where(label == 0, rng.uniform(0.55, 1.0, n), rng.uniform(0.0, 0.45, n))
    p0[: n // 10] = 1 - p0[: n // 10]  # some teacher mistakes
    q0 = np.clip(p0 + rng.normal(0, noise, n), 0.0, 1.0)
    tp, sp = np.stack([p0, 1 - p0], 1), np.stack([q0, 1 - q0], 1)
    t_pred, s_pred = tp.argmax(1), sp.argmax(1)
    both = (t_pred == label) & (s_pred == label) if labelled else t_pred == s_pred
    d = p0[both] - q0[both]
    sigma, mean = float(np.std(d)), float(np.mean(d))
    ci, one = [0.9 * sigma, 1.1 * sigma], [0.92 * sigma, 1.08 * sigma]
    verdict, verdict_95 = _verdicts(sigma, one[0], one[1], kappa)
    n_set = int(both.sum())
    kappa_beta = None if beta is None else math.sqrt(beta / (2 * n_set))
    bound = None if beta is None else ("not covered" if split != "train" else
                                       "consistent" if sigma <= kappa_beta else "violated")
    curve_tau = np.round(np.arange(0.50, 0.9901, 0.01), 2)
    curve = [_flip_parts(tp, sp, t) for t in curve_tau]
    flips = {}
    for key in THRESHOLDS:
        f = _flip_parts(tp, sp, float(key))
        half = 1.96 * math.sqrt(f["rate"] * (1 - f["rate"]) / n)
        flips[key] = {"rate": f["rate"], "ci95": [max(0.0, f["rate"] - half), f["rate"] + half],
                      "teacher_only": f["teacher_only"], "student_only": f["student_only"],
                      "class_change": f["class_change"]}
    ct, cs = (_cal(tp, label), _cal(sp, label)) if labelled else (None, None)
    tconf, sconf = tp.max(1), sp.max(1)
    order = np.argsort(-np.abs(p0 - q0), kind="stable")[:worst]
    rows = [{"row": int(i) + 1, "id": None, "kind": "largest_delta" if j % 3 else "flip", "delta": float(p0[i] - q0[i]),
             "teacher_conf": float(p0[i]), "student_conf": float(q0[i]), "teacher_pred": int(t_pred[i]),
             "student_pred": int(s_pred[i]), "teacher_p": tp[i].tolist(), "student_p": sp[i].tolist(),
             "label": int(label[i]) if labelled else None, "text": TEXTS[j % len(TEXTS)]}
            for j, i in enumerate(order)]
    return {
        "n": n, "k": 2, "labelled": labelled, "set": "both_correct" if labelled else "agree", "n_set": n_set,
        "n_both": n_set if labelled else None,
        "teacher_accuracy": float(np.mean(t_pred == label)) if labelled else None,
        "student_accuracy": float(np.mean(s_pred == label)) if labelled else None,
        "agreement": float(np.mean(t_pred == s_pred)),
        "sigma": sigma, "mean_delta": mean, "sigma_ci95": ci, "sigma_one_sided95": one,
        "bootstrap_method": "rows", "n_bootstrap": 200, "seed": 0, "delta_kind": "p0", "threshold": 0.9,
        "teacher_high_conf_share": float(np.mean(tconf > 0.9)), "student_high_conf_share": float(np.mean(sconf > 0.9)),
        "wasserstein": float(np.mean(np.abs(np.sort(p0[both]) - np.sort(q0[both])))),
        "normality": {"test": "dagostino_pearson", "statistic": 1.0, "p_value": 0.5, "skewness": 0.0, "kurtosis": 0.0},
        "kappa": kappa, "kappa_source": "user" if kappa is not None else None,
        "verdict": verdict, "verdict_95": verdict_95, "bound_check": bound, "kappa_from_beta": kappa_beta,
        "beta": beta, "n_train": n if beta is not None else None, "gamma": 1.0 if beta is not None else None,
        "alpha": 0.0, "temperature": 1.0,
        "judgement_notes": [] if split == "train" else ["σ(dev) is not covered by the bound"],
        "split": split, "aligned_by": "row", "teacher_path": teacher_path, "student_path": student_path,
        "warnings": [],
        "flips": flips,
        "flip_curve": {"thresholds": curve_tau.tolist(), **{k: [c[k] for c in curve] for k in curve[0]}},
        "calibration": None if not labelled else {
            "bins": 15, "teacher": ct, "student": cs, "delta": {k: cs[k] - ct[k] for k in ct},
            "ci95": {m: {k: [v[k] - 0.01, v[k] + 0.01] for k in v}
                     for m, v in (("teacher", ct), ("student", cs), ("delta", {k: cs[k] - ct[k] for k in ct}))},
            "bootstrap_method": "rows", "n_bootstrap": 200},
        "reliability": None if not labelled else {
            "teacher": _reliability(tconf, (t_pred == label).astype(float)),
            "student": _reliability(sconf, (s_pred == label).astype(float))},
        "histograms": {
            "teacher_conf": {"edges": np.linspace(0, 1, 51).tolist(),
                             "count": np.histogram(p0[both], 50, (0, 1))[0].tolist()},
            "student_conf": {"edges": np.linspace(0, 1, 51).tolist(),
                             "count": np.histogram(q0[both], 50, (0, 1))[0].tolist()},
            "delta": {"edges": np.linspace(-1, 1, 101).tolist(), "count": np.histogram(d, 100, (-1, 1))[0].tolist()}},
        "worst": rows,
    }


STUDENTS = {"close": 0.01, "far": 0.15}


def make_experiment(out: Path, *, kappa: float | None = 0.05, labelled: bool = True,
                    students: dict[str, float] | None = None) -> ExperimentConfig:
    """An experiment folder with analysis.json, prediction files + sidecars, logs and footprints."""
    students = students or STUDENTS
    cfg = experiment_from_dict(
        {"teacher": {"dir": str(out)},  # never opened: the report reads only the files below
         "students": [{"name": name, "layers": 2} for name in students],
         "tasks": {"SST-2": {"data_dir": str(out)}}},
        source="<test>", out=out)
    task = cfg.tasks[0]
    paths = TaskPaths(out / task.key)
    write_json(out / "experiment.json", {"name": cfg.name})
    for model in ("teacher", *students):
        for role in ("train", "dev"):
            f = prediction_files(out, task.key, model, role)[0]
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(f"pred,p0,p1,label\n0,0.9,0.1,0\n# {model} {role}\n")
            write_json(f.with_name(f.name + ".meta.json"),
                       {"model": model, "split": role, "data_file": f"/data/SST-2/{role}.tsv",
                        "data_sha256": f"{role}-sha", "n_rows": 1})
    for i, (name, noise) in enumerate(students.items()):
        # The runner analyses dev with split="eval" (the bound covers train only).
        analysis = {role: fake_analysis(split="train" if role == "train" else "eval", noise=noise, seed=10 * i + j,
                                        kappa=kappa, labelled=labelled, n=400 if role == "train" else 200)
                    for j, role in enumerate(("train", "dev"))}
        write_json(paths.student(name) / "analysis.json", analysis)
        for stage, base in (("stage1", 5.0), ("stage2", 0.7)):
            metrics = paths.student(name) / stage / "metrics.jsonl"
            metrics.parent.mkdir(parents=True, exist_ok=True)
            metrics.write_text("".join(json.dumps({"step": s, "loss": base / s * (1 + i)}) + "\n" for s in range(1, 30))
                               + json.dumps({"step": 29, "eval": {"accuracy": 0.9}}) + "\n")
    fps = {"teacher": (22.7e6, 90.9e6, 12.0, 3.0), "close": (10.0e6, 40.0e6, 6.0, 1.5), "far": (5.0e6, 20.0e6, 3.0, 0.75)}
    for model, (params, size, b1, b32) in fps.items():
        if model == "teacher" or model in students:
            write_json(paths.root / "footprint" / f"{model}.json",
                       {"parameters": int(params), "size_bytes": int(size), "seq_len": 64, "threads": 2,
                        "latency_ms": {"1": b1, "32": b32}})
    return cfg

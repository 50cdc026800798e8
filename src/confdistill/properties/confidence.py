"""Can the student replace the teacher? The pair analysis: φ_cnf, decisions, calibration, the inputs that moved.

For the rows of the *set* — both models correct (``pred == label`` in both files), or, for
unlabelled logs, both predicting the same class — Δconf(x) = c_teacher(x) − c_student(x), where c
is ``p0`` (``delta="p0"``, the paper's binary definition), the probability of the gold label
(``"label"``) or of the predicted class (``"pred"``, unlabelled k > 2). σ is the population
standard deviation (ddof 0) of Δconf; φ_cnf holds when σ(X_train) ≤ κ, a tolerance the user
states (:mod:`confdistill.properties.verdict` decides every verdict). Beside σ: decision flips at
operating thresholds over all rows (:mod:`.decisions`), calibration of both models and its change
(:mod:`.calibration`), and the rows that moved most.

This module holds the result, :class:`PairAnalysis`; the figures are computed by
:func:`confdistill.properties.stream_analysis.analyze_pair` from one streaming pass over the files
(:mod:`.stream_engine`), in float64, in bounded memory: 100 M-row logs in shards are analysed the
same way as a GLUE dev split. Imports numpy only (never torch).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from confdistill import ranges
from confdistill.errors import InputError, setting_name
from confdistill.prediction.sources import SoftmaxSource

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


def validate_analysis_options(*, threshold: float, n_bootstrap: int, worst: int = 0) -> None:
    """The options ``analyze`` and ``table`` share: a one-line :class:`InputError` naming the flag."""
    if not ranges.PROBABILITY.contains(threshold):
        raise InputError(f"{setting_name('threshold')}: expected a probability, {ranges.PROBABILITY.describe()}; got {threshold!r}")
    if n_bootstrap < 0:
        raise InputError(f"{setting_name('n_bootstrap', flag='--bootstrap')}: expected a number of resamples >= 0, got {n_bootstrap!r}")
    if not ranges.WORST_ROWS.contains(worst):
        raise InputError(f"{setting_name('worst')}: expected a number of rows, {ranges.WORST_ROWS.describe()}; got {worst!r}")


def _path_text(src: SoftmaxSource) -> str | None:
    return None if src.name == "<memory>" else src.name


__all__ = ["PairAnalysis", "infer_split"]

"""What an objective receives (:class:`TrialContext`) and returns (:class:`TrialResult`).

An objective is any ``(params, TrialContext) -> TrialResult`` callable
(:mod:`confdistill.tuning.objective` runs a real distillation; tests pass a cheap fake); it raises
:class:`TrialFailed` for a trial that could not produce a result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class TrialFailed(Exception):
    """A trial that could not produce a result (e.g. the loss diverged to NaN): marked FAIL, study goes on."""


@dataclass
class TrialContext:
    """Handed to the objective with the parameters.

    ``report(step, sigma)`` records an intermediate estimate of the trial's σ at progress point
    ``step`` (steps must mean the same progress in every trial: the median pruner compares trials
    at equal steps); it raises :class:`optuna.TrialPruned` when the pruner decides the trial is
    hopeless — let it propagate. Only ``role == "search"`` trials are pruned, and only in the
    constrained study (optuna cannot prune multi-objective trials). The real objective reports σ
    on the dev split at stage-2 evaluations, a proxy for the final σ(X_train).
    ``workdir`` is a fresh directory for this trial's small outputs (settings, analysis).
    """

    number: int
    workdir: Path
    report: Callable[[int, float], None]
    role: str = "search"


@dataclass
class TrialResult:
    """What an objective returns.

    sigma: σ(X_train), population std of Δconf over the train rows both models get right.
    dev_accuracy / teacher_dev_accuracy: fractions in [0, 1] on the dev split.
    kappa / verdict: the tolerance the trial was judged against and its φ_cnf verdict (from the
        trial's analysis; the study's summary judges every trial against ``StudyOptions.kappa``).
    extra: anything else worth a column in trials.csv (β, agreement, run directory, …; JSON-able).
    """

    sigma: float
    dev_accuracy: float
    teacher_dev_accuracy: float
    kappa: float | None = None
    verdict: str = "no verdict"
    extra: dict[str, Any] = field(default_factory=dict)


Objective = Callable[[dict[str, Any], TrialContext], TrialResult]

"""What defines a study besides its objective: :class:`StudyOptions`, checked by
:func:`validate_options`, and the tolerance κ a study needs (:func:`require_tolerance`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from confdistill.errors import InputError
from confdistill.tuning.space import SearchSpace

Mode = Literal["constrained", "pareto"]

#: The databases a study may live in: the default SQLite file, or PostgreSQL (many workers on
#: many machines; ``postgresql+psycopg://`` with the postgres extra).
STORAGE_BACKENDS = ("sqlite", "postgresql")


@dataclass
class StudyOptions:
    """Everything that defines a study besides the objective (plain data).

    n_trials: the study's total target of finished (COMPLETE + PRUNED) trials, all workers together.
    epsilon: allowed dev-accuracy loss (fraction, 0.01 = one point).
    kappa: the user's tolerance for σ (required: :func:`run_study` refuses to start without one,
        see :func:`require_tolerance`).
    baseline: the configuration to beat (the experiment's own hyper-parameters), enqueued first.
    compare_lambda: λ values to try *at the baseline hyper-parameters* (the confidence-aware
        loss without tuning), enqueued after the baseline.
    attrs: identity of the experiment (task, student, teacher…): stored on creation, and a resumed
        study with different attrs is refused (its trials would not be comparable); so is one whose
        categorical choices (λ, augment, mapping) differ (Optuna cannot change them in a study).
    pruner_startup_trials: finished trials before the median pruner may prune (``tune
        --pruner-startup-trials``; MedianPruner's ``n_startup_trials``).
    pruner_warmup_steps: a trial's reports at steps below this are never pruned (MedianPruner's
        ``n_warmup_steps``; ``tune --pruner-warmup-evals N`` sets N + 1, the real objective numbering
        its reports 1, 2, 3 …, see :func:`confdistill.tuning.objective.warmup_steps`).
    max_failures_in_a_row: failed trials (which never count towards ``n_trials``) after which the
        study stops with an error: something every trial hits.
    """

    out: Path
    n_trials: int
    mode: Mode = "constrained"
    epsilon: float = 0.01
    kappa: float | None = None
    storage: str | None = None
    study_name: str = "confdistill"
    seed: int = 0
    sampler: str = "tpe"
    space: SearchSpace = field(default_factory=SearchSpace)
    baseline: dict[str, Any] | None = None
    compare_lambda: Sequence[float] = ()
    attrs: dict[str, Any] = field(default_factory=dict)
    pruner_startup_trials: int = 5
    pruner_warmup_steps: int = 0
    heartbeat_interval: int = 30
    grace_period: int = 120
    show_progress: bool = True
    max_failures_in_a_row: int = 3


def validate_options(opts: StudyOptions) -> None:
    """Raise :class:`InputError` on a study setting that cannot work (before any trial)."""
    if opts.mode not in ("constrained", "pareto"):
        raise InputError(f"--objective: expected 'constrained' or 'pareto', got {opts.mode!r}")
    if not isinstance(opts.n_trials, int) or opts.n_trials < 1:
        raise InputError(f"--trials: expected a number of trials >= 1, got {opts.n_trials}")
    if not 0.0 <= opts.epsilon < 1.0:
        raise InputError(f"--epsilon: expected an accuracy fraction in [0, 1), got {opts.epsilon}")
    if opts.kappa is not None and not (math.isfinite(opts.kappa) and opts.kappa > 0):
        raise InputError(f"--kappa: expected a tolerance > 0, got {opts.kappa}")
    for lam in opts.compare_lambda:
        if not (math.isfinite(lam) and lam >= 0):
            raise InputError(f"--compare-lambda: expected λ >= 0, got {lam}")
    for value, option, what in ((opts.pruner_startup_trials, "--pruner-startup-trials", "number of trials"),
                                (opts.pruner_warmup_steps, "pruner_warmup_steps", "step")):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise InputError(f"{option}: expected a {what} >= 0, got {value}")
    if opts.sampler not in ("tpe", "nsga2", "random"):
        raise InputError(f"--sampler: expected tpe, nsga2 or random, got {opts.sampler!r}")
    if opts.storage is not None:
        check_storage_url(opts.storage)


def check_storage_url(url: str) -> None:
    """Refuse a ``--storage`` URL that SQLAlchemy cannot parse or whose database is not one of
    :data:`STORAGE_BACKENDS`, before anything is written (opening it comes later, in the folder)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    expected = "expected sqlite:///FILE or postgresql+psycopg://USER@HOST/DB"
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise InputError(f"--storage: not a database URL; {expected}") from None
    backend = parsed.drivername.split("+")[0]
    if backend not in STORAGE_BACKENDS:
        raise InputError(f"--storage {parsed.render_as_string(hide_password=True)}: unsupported database "
                         f"{backend!r}; {expected}")


def require_tolerance(kappa: float | None) -> float:
    """The study's tolerance κ, or a one-line InputError naming --kappa.

    Why there is no default: the only other κ is the bound κ_β from β, and σ(X_train) ≤ κ_β holds
    whenever β is measured right (docs/method.md), so a study "restoring" φ_cnf against it would
    restore nothing.
    """
    from confdistill.properties.verdict import validate_tolerance

    value = validate_tolerance(kappa)
    if value is None:
        raise InputError(
            "--kappa: tune needs a tolerance on σ (--kappa K, or kappa in the experiment file): the β bound "
            "κ_β always holds when β is measured right, so it cannot be the target")
    return value

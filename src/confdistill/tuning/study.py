"""Property-guided hyper-parameter search (RQ2): an Optuna study that minimises σ(X_train).

This module is the study's public face: it re-exports the names of the modules that do the work,
one concern each —

- :mod:`~confdistill.tuning.space`: the searched parameters and their ranges;
- :mod:`~confdistill.tuning.contract`: what an objective receives and returns;
- :mod:`~confdistill.tuning.options`: the study's settings and their checks;
- :mod:`~confdistill.tuning.sampler`: the per-trial seeded sampler;
- :mod:`~confdistill.tuning.storage`: the storage and opening the study;
- :mod:`~confdistill.tuning.workers`: running (resuming) the study in one worker;
- :mod:`~confdistill.tuning.summary`: trial rows, best trial, Pareto front, summary;
- :mod:`~confdistill.tuning.outputs`: trials.csv, pareto.png, summary.json.

The study searches the distillation's hyper-parameters (:class:`SearchSpace`) for a student whose
confidence gap to the teacher, σ(X_train), is smallest, subject to an accuracy constraint:

    student dev accuracy ≥ teacher dev accuracy − ε

stored on every trial with :meth:`optuna.trial.Trial.set_constraint` (optuna ≥ 5; a value ≤ 0 is
feasible), so the constrained TPE sampler learns the feasible region and ``best`` is always feasible.
``mode="pareto"`` runs the two-objective study (minimise σ, maximise accuracy) instead and reports
its Pareto front; the same constraint is stored, so the front can be filtered by it.

What a trial *does* is the caller's objective, ``objective(params, ctx) -> TrialResult``
(:mod:`confdistill.tuning.objective` runs a real distillation; tests pass a cheap fake), so the
study machinery — storage, resumption, workers, constraint, outputs — is testable in seconds.

Storage and resumption. The default storage is ``sqlite:///OUT/study.db`` opened with
``load_if_exists``: re-running the same command after a kill resumes the study, and ``n_trials``
is the study's *total* target (COMPLETE + PRUNED trials), so finished trials are never repeated.
Trials left RUNNING by a killed worker are failed and re-queued once (same parameters): at once
when the worker ran on this host and its process is gone, otherwise by Optuna's heartbeat after
``grace_period`` seconds. Any SQLAlchemy URL (``postgresql+psycopg://…``) lets many workers on many
machines share one study; each worker stops when the study reaches the target (a worker may
overshoot by the trials already running elsewhere).

Pruning. An objective may report intermediate σ values (``TrialContext.report``); in the
constrained study a searched trial whose report is worse than the median of earlier trials at the
same step is pruned (``MedianPruner`` after ``pruner_startup_trials`` finished trials, from step
``pruner_warmup_steps`` on) and shows
as PRUNED in trials.csv. The real objective reports σ on the dev split at stage-2 evaluations, a
proxy for σ(X_train) (:mod:`confdistill.tuning.objective`).

Determinism. The sampler is re-seeded before each trial from ``(seed, trial number)``, so a
single worker with a given seed proposes the same sequence of configurations, a resumed study
does not re-propose the configurations of its first trials, and concurrent workers (which draw
different trial numbers) never propose identical random configurations.
"""

from __future__ import annotations

from confdistill.tuning.contract import (
    Objective,
    TrialContext,
    TrialFailed,
    TrialResult,
)
from confdistill.tuning.options import (
    Mode,
    StudyOptions,
    require_tolerance,
    validate_options,
)
from confdistill.tuning.outputs import (
    plot_pareto,
    write_outputs,
    write_trials_csv,
)
from confdistill.tuning.sampler import (
    make_pruner,
    make_sampler,
    pruner_settings,
)
from confdistill.tuning.space import (
    PARAM_NAMES,
    SearchSpace,
)
from confdistill.tuning.storage import (
    default_storage_url,
    open_storage,
    open_study,
    redact_url,
)
from confdistill.tuning.summary import (
    best_row,
    compare_lambda,
    format_summary,
    pareto_front,
    summarize,
    trial_rows,
)
from confdistill.tuning.workers import (
    claim_folder,
    count_finished,
    fail_dead_local_trials,
    run_study,
)

__all__ = [
    "PARAM_NAMES",
    "Mode",
    "Objective",
    "SearchSpace",
    "StudyOptions",
    "TrialContext",
    "TrialFailed",
    "TrialResult",
    "best_row",
    "claim_folder",
    "compare_lambda",
    "count_finished",
    "default_storage_url",
    "fail_dead_local_trials",
    "format_summary",
    "make_pruner",
    "make_sampler",
    "open_storage",
    "open_study",
    "pareto_front",
    "plot_pareto",
    "pruner_settings",
    "redact_url",
    "require_tolerance",
    "run_study",
    "summarize",
    "trial_rows",
    "validate_options",
    "write_outputs",
    "write_trials_csv",
]

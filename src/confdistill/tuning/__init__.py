"""confdistill.tuning: the Optuna study of RQ2 (restore φ_cnf by tuning the distillation).

- :mod:`confdistill.tuning.study`: the study's public names (``run_study(objective,
  StudyOptions(...))``), re-exported from the modules that implement them: ``space`` (search
  space), ``contract`` (what an objective receives and returns), ``options``, ``sampler``,
  ``storage`` (storage and opening the study), ``workers`` (running it), ``summary`` (rows, best,
  Pareto front) and ``outputs`` (trials.csv, pareto.png, summary.json); the objective is any
  ``(params, TrialContext) -> TrialResult`` callable.
- :mod:`confdistill.tuning.objective`: the real objective, one distillation per trial through the
  experiment runner (``ExperimentObjective``); ``params`` maps trial parameters to experiment
  settings, ``experiment_toml`` writes ``best.toml``; ``folder``: the output folder's locks and identity.
"""

from confdistill.tuning.study import (
    PARAM_NAMES,
    SearchSpace,
    StudyOptions,
    TrialContext,
    TrialFailed,
    TrialResult,
    format_summary,
    open_study,
    run_study,
)

__all__ = [
    "PARAM_NAMES",
    "SearchSpace",
    "StudyOptions",
    "TrialContext",
    "TrialFailed",
    "TrialResult",
    "format_summary",
    "open_study",
    "run_study",
]

"""confdistill.tuning: the Optuna study of RQ2 (restore φ_cnf by tuning the distillation).

- :mod:`confdistill.tuning.study`: search space, storage, constrained / Pareto study, outputs
  (``run_study(objective, StudyOptions(...))``); the objective is any
  ``(params, TrialContext) -> TrialResult`` callable.
- :mod:`confdistill.tuning.objective`: the real objective, one distillation per trial through the
  experiment runner (``ExperimentObjective``), and ``best.toml`` writing.
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

"""The study's sampler (TPE, NSGA-II or random), seeded for each trial from (seed, trial number),
and its pruner (:func:`make_pruner`).

Determinism. A single worker with a given seed proposes the same sequence of configurations, a
resumed study does not re-propose the configurations of its first trials, and concurrent workers
(which draw different trial numbers) never propose identical random configurations.

How, with Optuna's public API only: :func:`make_sampler` returns a sampler that hands each trial
to a sampler of its own, built with ``seed = seed_for(seed, trial number)`` (Optuna's
``reseed_rng()`` only draws fresh OS entropy, so re-seeding in place would need private
attributes). The samplers keep no state between trials that the storage does not hold (TPE and
NSGA-II read the study's trials each time), so a fresh one per trial proposes what a re-seeded
one would.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from confdistill.errors import InputError
from confdistill.tuning.options import Mode, StudyOptions

SAMPLERS = ("tpe", "nsga2", "random")


def seed_for(seed: int, number: int) -> int:
    """The seed of trial ``number``'s sampler in a study seeded with ``seed``."""
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(number)]).generate_state(1)[0])


def sampler_factory(kind: str, mode: Mode) -> Callable[[int], Any]:
    """``seed -> a new Optuna sampler`` of this kind (tpe | nsga2 | random) for this study mode."""
    import optuna

    bases = {
        "tpe": optuna.samplers.TPESampler,
        "nsga2": optuna.samplers.NSGAIISampler,
        "random": optuna.samplers.RandomSampler,
    }
    if kind not in bases:
        raise InputError(f"--sampler: expected one of {sorted(bases)}, got {kind!r}")
    base = bases[kind]
    kwargs: dict[str, Any] = {}
    if kind != "random" and not hasattr(optuna.trial.Trial, "set_constraint"):
        kwargs["constraints_func"] = lambda t: (t.user_attrs.get("constraint", 0.0),)  # optuna < 5
    if kind == "tpe":
        # constant_liar: running trials of other workers count as "bad" so workers spread out.
        kwargs.update(constant_liar=True, multivariate=True)
    return lambda seed: base(seed=seed, **kwargs)


def make_sampler(kind: str, seed: int, mode: Mode) -> Any:
    """A sampler whose every trial is sampled by a sampler seeded from (seed, trial number)."""
    import optuna

    factory = sampler_factory(kind, mode)
    first = factory(seed)  # checks the arguments now (and shows Optuna's experimental warning once)

    class TrialSeededSampler(optuna.samplers.BaseSampler):
        """Delegates each trial, from ``before_trial`` to ``after_trial``, to its own seeded sampler."""

        def __init__(self) -> None:
            self.kind = kind
            self.seed = seed
            self._by_trial: dict[int, Any] = {}

        def __str__(self) -> str:
            return f"TrialSeeded{type(first).__name__}(seed={seed})"

        def for_trial(self, number: int) -> Any:
            sampler = self._by_trial.get(number)
            if sampler is None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    sampler = self._by_trial[number] = factory(seed_for(seed, number))
            return sampler

        def before_trial(self, study: Any, trial: Any) -> None:
            self.for_trial(trial.number).before_trial(study, trial)

        def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
            return self.for_trial(trial.number).infer_relative_search_space(study, trial)

        def sample_relative(self, study: Any, trial: Any, search_space: dict[str, Any]) -> dict[str, Any]:
            return self.for_trial(trial.number).sample_relative(study, trial, search_space)

        def sample_independent(self, study: Any, trial: Any, param_name: str, param_distribution: Any) -> Any:
            return self.for_trial(trial.number).sample_independent(study, trial, param_name, param_distribution)

        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            self.for_trial(trial.number).after_trial(study, trial, state, values)
            self._by_trial.pop(trial.number, None)

        def reseed_rng(self) -> None:
            """Nothing to do: every trial's sampler is seeded from its number."""

    return TrialSeededSampler()


def pruner_settings(opts: StudyOptions) -> dict[str, Any]:
    """The pruner of this study as recorded in summary.json."""
    if opts.mode != "constrained":
        return {"kind": "none", "reason": "optuna cannot prune multi-objective trials"}
    return {"kind": "median", "startup_trials": opts.pruner_startup_trials, "warmup_steps": opts.pruner_warmup_steps}


def make_pruner(opts: StudyOptions) -> Any:
    """The median pruner of the constrained study (``opts.pruner_startup_trials``,
    ``opts.pruner_warmup_steps``); none for the Pareto study (optuna cannot prune it)."""
    import optuna

    if opts.mode != "constrained":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=opts.pruner_startup_trials,
                                       n_warmup_steps=opts.pruner_warmup_steps)

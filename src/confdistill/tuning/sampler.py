"""The study's sampler (TPE, NSGA-II or random), re-seeded before each trial from (seed, trial number).

Determinism. A single worker with a given seed proposes the same sequence of configurations, a
resumed study does not re-propose the configurations of its first trials, and concurrent workers
(which draw different trial numbers) never propose identical random configurations.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from confdistill.errors import InputError
from confdistill.tuning.options import Mode


def _seed_for(seed: int, number: int) -> int:
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(number)]).generate_state(1)[0])


def _reseed(sampler: Any, seed: int) -> None:
    # TPESampler / NSGAIISampler / RandomSampler keep their randomness in LazyRandomState objects
    # (`_rng`, and `_random_sampler._rng` for the start-up phase); optuna's own reseed_rng() only
    # draws fresh OS entropy, so set them here. Unknown samplers are left alone.
    for obj in (sampler, getattr(sampler, "_random_sampler", None)):
        state = getattr(obj, "_rng", None)
        if state is not None and hasattr(state, "rng"):
            state.rng.seed(seed)


def make_sampler(kind: str, seed: int, mode: Mode) -> Any:
    """A sampler re-seeded before each trial from (seed, trial number). kind: tpe | nsga2 | random."""
    import optuna

    bases = {
        "tpe": optuna.samplers.TPESampler,
        "nsga2": optuna.samplers.NSGAIISampler,
        "random": optuna.samplers.RandomSampler,
    }
    if kind not in bases:
        raise InputError(f"--sampler: expected one of {sorted(bases)}, got {kind!r}")
    base = bases[kind]

    class _TrialSeeded(base):  # type: ignore[misc, valid-type]
        def before_trial(self, study: Any, trial: Any) -> None:
            _reseed(self, _seed_for(seed, trial.number))
            super().before_trial(study, trial)

    _TrialSeeded.__name__ = f"TrialSeeded{base.__name__}"
    kwargs: dict[str, Any] = {"seed": seed}
    if kind != "random" and not hasattr(optuna.trial.Trial, "set_constraint"):
        kwargs["constraints_func"] = lambda t: (t.user_attrs.get("constraint", 0.0),)  # optuna < 5
    if kind == "tpe":
        # constant_liar: running trials of other workers count as "bad" so workers spread out.
        return _TrialSeeded(constant_liar=True, multivariate=True, **kwargs)
    return _TrialSeeded(**kwargs)

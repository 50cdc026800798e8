"""The searched hyper-parameters: their names (:data:`PARAM_NAMES`) and ranges (:class:`SearchSpace`).

A configuration is a plain ``{name: value}`` dict over :data:`PARAM_NAMES`;
:meth:`SearchSpace.suggest` draws one from an Optuna trial (or reads the enqueued one).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from confdistill.errors import InputError

if TYPE_CHECKING:
    import optuna

PARAM_NAMES = (
    "stage1_epochs",
    "stage2_epochs",
    "stage1_lr",
    "stage2_lr",
    "temperature",
    "alpha",
    "lambda_conf",
    "augment",
    "mapping",
)


@dataclass
class SearchSpace:
    """Ranges of the searched hyper-parameters (plain data; a range with low == high, or a single
    choice, fixes that dimension).

    Units: epochs are whole passes over the (possibly augmented) train set; learning rates are
    AdamW peak rates (log-uniform); ``temperature`` is T ≥ 1 of the stage-2 soft loss (κ needs
    T ≥ 1); ``alpha`` is the hard-label weight, < 1; ``lambda_conf`` is the weight λ of the
    confidence-gap term (a categorical grid that includes 0, so "tuning alone" is inside the
    space); ``augment`` uses the augmented train file; ``mapping`` is the stage-1 layer mapping
    (DistillConfig.layer_mapping: TinyBERT's ``uniform``, the teacher's ``top`` or ``bottom`` layers;
    :func:`confdistill.tuning.objective.space_for` fixes it where it makes no difference).
    """

    stage1_epochs: tuple[float, float] = (1, 10)
    stage2_epochs: tuple[float, float] = (1, 5)
    stage1_lr: tuple[float, float] = (1e-5, 2e-4)
    stage2_lr: tuple[float, float] = (1e-5, 2e-4)
    temperature: tuple[float, float] = (1.0, 8.0)
    alpha: tuple[float, float] = (0.0, 0.9)
    lambda_conf: tuple[float, ...] = (0.0, 0.3, 1.0, 3.0, 10.0)
    augment: tuple[bool, ...] = (False,)
    mapping: tuple[str, ...] = ("uniform", "top", "bottom")

    def __post_init__(self) -> None:
        for name in ("stage1_epochs", "stage2_epochs", "stage1_lr", "stage2_lr", "temperature", "alpha"):
            low, high = getattr(self, name)
            if not low <= high:
                raise InputError(f"search space {name}: expected low <= high, got ({low}, {high})")
        if self.temperature[0] < 1.0:
            raise InputError(f"search space temperature: expected T >= 1 (κ needs it), got {self.temperature}")
        if not (self.alpha[0] >= 0.0 and self.alpha[1] < 1.0):
            raise InputError(f"search space alpha: expected 0 <= alpha < 1, got {self.alpha}")
        if self.stage1_lr[0] <= 0 or self.stage2_lr[0] <= 0:
            raise InputError("search space learning rates: expected > 0")
        for name in ("lambda_conf", "augment", "mapping"):
            if len(getattr(self, name)) == 0:
                raise InputError(f"search space {name}: expected at least one choice")

    def suggest(self, trial: optuna.trial.Trial) -> dict[str, Any]:
        """Draw (or read, for an enqueued trial) one configuration: ``{name: value}`` for PARAM_NAMES."""
        p: dict[str, Any] = {}
        p["stage1_epochs"] = _suggest_epochs(trial, "stage1_epochs", self.stage1_epochs)
        p["stage2_epochs"] = _suggest_epochs(trial, "stage2_epochs", self.stage2_epochs)
        p["stage1_lr"] = trial.suggest_float("stage1_lr", *self.stage1_lr, log=True)
        p["stage2_lr"] = trial.suggest_float("stage2_lr", *self.stage2_lr, log=True)
        p["temperature"] = trial.suggest_float("temperature", *self.temperature)
        p["alpha"] = trial.suggest_float("alpha", *self.alpha)
        p["lambda_conf"] = float(trial.suggest_categorical("lambda_conf", list(self.lambda_conf)))
        p["augment"] = bool(trial.suggest_categorical("augment", list(self.augment)))
        p["mapping"] = str(trial.suggest_categorical("mapping", list(self.mapping)))
        return p

    def including(self, params: dict[str, Any]) -> SearchSpace:
        """This space widened so that ``params`` (e.g. the baseline configuration) lies inside it."""
        changes: dict[str, Any] = {}
        for name in ("stage1_epochs", "stage2_epochs", "stage1_lr", "stage2_lr", "temperature", "alpha"):
            if name in params:
                low, high = getattr(self, name)
                v = params[name]
                changes[name] = (min(low, v), max(high, v))
        for name in ("lambda_conf", "augment", "mapping"):
            if name in params and params[name] not in getattr(self, name):
                changes[name] = (*getattr(self, name), params[name])
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, list[Any]]:
        return {k: list(v) for k, v in dataclasses.asdict(self).items()}


def _suggest_epochs(trial: optuna.trial.Trial, name: str, bounds: tuple[float, float]) -> float:
    # Whole epochs (as TinyBERT) when the range is whole; a fractional bound (e.g. a baseline of
    # 0.5 epochs) makes the dimension continuous. Returned as float, DistillConfig's type.
    low, high = bounds
    if float(low).is_integer() and float(high).is_integer():
        return float(trial.suggest_int(name, int(low), int(high)))
    return float(trial.suggest_float(name, float(low), float(high)))

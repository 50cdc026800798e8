"""Allowed ranges of numeric settings, each written once and shared by every place that checks it.

α and T are the clearest case: training (stage 2's loss), the κ bound (``properties/bound.py``,
``properties/verdict.py``) and the tuner's search space must agree on them. The bound divides by
1 − α and uses |Δp0| ≤ T·|Δq0^T|, which needs T ≥ 1, so training refuses what the bound cannot
judge instead of producing a run whose β means nothing.

Standard library only: the CLI and the settings model import it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Range:
    """A closed, half-open or one-sided interval of real numbers, with the message that states it."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def describe(self) -> str:
        """``"must be in [0, 1)"``, ``"must be > 0"``, ``"must be >= 1"``."""
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"must be in {left}{self.low:g}, {self.high:g}{right}"
        if self.low is not None:
            return f"must be {'>' if self.low_open else '>='} {self.low:g}"
        if self.high is not None:
            return f"must be {'<' if self.high_open else '<='} {self.high:g}"
        return "must be a finite number"

    def contains(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return not (self.high is not None and (value > self.high or (self.high_open and value == self.high)))


#: Stage 2's hard-label weight: loss = (1 − α)·soft + α·hard; the bound divides by 1 − α.
ALPHA = Range(0.0, 1.0, high_open=True)
#: Distillation temperature; the bound's |Δp0| ≤ T·|Δq0^T| holds for T ≥ 1 (TinyBERT uses T = 1).
TEMPERATURE = Range(1.0)
#: λ of the confidence-gap loss (0 = off).
LAMBDA_CONF = Range(0.0)
POSITIVE = Range(0.0, low_open=True)
NON_NEGATIVE = Range(0.0)
#: Share of the steps with linear warm-up.
WARMUP = Range(0.0, 1.0, high_open=True)
#: A confidence threshold (``--threshold`` of ``analyze`` and ``table``).
PROBABILITY = Range(0.0, 1.0)
#: ``analyze --worst N`` lists N rows (worst.csv, the JSON, the report): more than a million is no
#: list to read, and the row count is not known before the files are read, so N is bounded, not clamped.
WORST_ROWS = Range(0.0, 1_000_000.0)

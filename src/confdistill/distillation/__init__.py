"""confdistill.distillation: TinyBERT general distillation, task distillation (stage 1, stage 2) and
teacher fine-tuning.

``DistillConfig`` / ``FinetuneConfig`` are pydantic settings models (no torch import); the torch-based names
(``distill``, ``finetune``, the losses, the layer mapping) are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from confdistill.distillation.config import LAYER_MAPPINGS, DistillConfig, FinetuneConfig
from confdistill.distillation.general_config import GeneralConfig, StudentShape

_LAZY = {
    "general_distill": "general",
    "distill": "trainer",
    "finetune": "trainer",
    "TrainingInterrupted": "trainer",
    "evaluation_hook": "trainer",
    "confidence_gap_loss": "losses",
    "soft_cross_entropy": "losses",
    "prediction_loss": "losses",
    "intermediate_loss": "losses",
    "beta_statistics": "losses",
    "layer_mapping": "mapping",
}

__all__ = ["LAYER_MAPPINGS", "DistillConfig", "FinetuneConfig", "GeneralConfig", "StudentShape", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'confdistill.distillation' has no attribute {name!r}")
    return getattr(importlib.import_module(f"confdistill.distillation.{module}"), name)

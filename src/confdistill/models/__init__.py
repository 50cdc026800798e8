"""confdistill.models: resolving model sources (directories, packages, the local Hub cache),
loading/saving teacher and student directories (Hugging Face and TinyBERT formats, TinyBERT's
head), building students, capturing pre-softmax attention scores, exporting to ONNX.

Names are imported on first use (torch and transformers are heavy; the CLI imports this lazily).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "DEFAULT_ATTN_IMPLEMENTATION": "loading",
    "LoadReport": "loading",
    "check_same_vocab": "loading",
    "load_classifier": "loading",
    "load_tokenizer": "loading",
    "read_config_dict": "loading",
    "save_classifier": "loading",
    "write_vocab": "loading",
    "TinyBertForSequenceClassification": "tinybert",
    "hub_cache_dir": "hub",
    "looks_like_hub_id": "hub",
    "resolve_model_dir": "hub",
    "evenly_spaced_layers": "student",
    "make_student": "student",
    "capture_attention_scores": "attention_scores",
    "export_onnx": "onnx_export",
    "is_onnx_dir": "onnx_dir",
    "read_onnx_manifest": "onnx_dir",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'confdistill.models' has no attribute {name!r}")
    return getattr(importlib.import_module(f"confdistill.models.{module}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])

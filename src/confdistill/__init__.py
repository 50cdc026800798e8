"""confdistill: TinyBERT distillation and the confidence-preservation check (phi_cnf).

The Python API, importable from here::

    from confdistill import DistillConfig, analyze_pair, distill, make_student, predict_split

- :func:`make_student` — a student cut from a teacher (or a fresh shape), written to a folder;
- :class:`DistillConfig` and :func:`distill` — TinyBERT's two stages (``confdistill distill``);
  :class:`FinetuneConfig` and :func:`finetune` — a teacher's fine-tuning;
- :func:`predict_split` — a model's softmax outputs on a split, to a CSV/TSV/Parquet file;
- :func:`analyze_pair` — the check: σ, the φ_cnf verdict, decision flips, calibration;
- :func:`export_onnx` — a model as an ONNX directory (fp32 or int8).

Each name is imported on first use (module ``__getattr__``), so ``import confdistill`` — and the
CLI, which imports it — loads neither torch nor pydantic.
"""

# ``typing`` (and ``__future__``) cost more to import than this whole module: TYPE_CHECKING spelled
# out (type checkers read it as typing's), annotations as strings.
TYPE_CHECKING = False

__version__ = "0.1.0"

#: name -> the module that defines it (imported when the name is first used)
_API = {
    "DistillConfig": "confdistill.distillation.config",
    "FinetuneConfig": "confdistill.distillation.config",
    "distill": "confdistill.distillation.trainer",
    "finetune": "confdistill.distillation.trainer",
    "make_student": "confdistill.models.student",
    "predict_split": "confdistill.prediction.predict",
    "export_onnx": "confdistill.models.onnx_export",
    "analyze_pair": "confdistill.properties.stream_analysis",
    "InputError": "confdistill.errors",
}

__all__ = ["DistillConfig", "FinetuneConfig", "InputError", "__version__", "analyze_pair", "distill",
           "export_onnx", "finetune", "make_student", "predict_split"]

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time, __getattr__ below
    from typing import Any

    from confdistill.distillation.config import DistillConfig, FinetuneConfig
    from confdistill.distillation.trainer import distill, finetune
    from confdistill.errors import InputError
    from confdistill.models.onnx_export import export_onnx
    from confdistill.models.student import make_student
    from confdistill.prediction.predict import predict_split
    from confdistill.properties.stream_analysis import analyze_pair


def __getattr__(name: str) -> "Any":
    if name not in _API:
        raise AttributeError(f"module 'confdistill' has no attribute {name!r}")
    value = getattr(__import__(_API[name], fromlist=[name]), name)
    globals()[name] = value  # imported once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))

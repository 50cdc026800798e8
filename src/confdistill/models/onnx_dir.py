"""ONNX model directories: how one is recognised, its manifest, its parameters and its size.

``confdistill export`` (:mod:`confdistill.models.onnx_export`) writes a folder holding
``model.onnx``, the tokenizer files, ``config.json`` (class names as ``id2label``) and the manifest
``onnx.json`` (docs/formats.md). The manifest is what makes the folder an ONNX model for every
command: ``predict`` and the footprint run it with ONNX Runtime, and the training commands refuse
it with one line instead of failing on "no model weights" — an ONNX graph holds no trainable
PyTorch module, so a user who passes one where a checkpoint is needed must be told which is which.

This module reads files only (``onnx`` for the graph, never ``torch`` or ``onnxruntime``), so the
other layers can ask "is this an ONNX directory?" cheaply.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from confdistill.errors import InputError
from confdistill.folders import recover_folder

__all__ = [
    "INPUT_NAMES",
    "ONNX_FORMAT",
    "ONNX_MANIFEST",
    "ONNX_MODEL",
    "OUTPUT_NAME",
    "QUANTIZATIONS",
    "is_onnx_dir",
    "onnx_files",
    "onnx_parameter_count",
    "onnx_size_bytes",
    "read_onnx_manifest",
    "refuse_onnx_dir",
]

#: The manifest's file name and its ``format`` value.
ONNX_MANIFEST = "onnx.json"
ONNX_FORMAT = "confdistill-onnx/1"
#: The graph's file name inside the directory.
ONNX_MODEL = "model.onnx"
#: Graph inputs (int64, shape ``(batch, sequence)``; those the family takes, in this order — no
#: token_type_ids for DistilBERT and ModernBERT) and output (float32 ``(batch, num_labels)``).
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAME = "logits"
#: ``--quantize`` values: ONNX Runtime dynamic quantization with int8 weights.
QUANTIZATIONS = ("int8",)


def is_onnx_dir(path: str | Path) -> bool:
    """Whether ``path`` is a directory written by ``confdistill export`` (it has ``onnx.json``)."""
    path = Path(path).expanduser()
    recover_folder(path)  # an export killed mid-swap: the old or the new folder, never none
    return path.is_dir() and (path / ONNX_MANIFEST).is_file()


def refuse_onnx_dir(path: str | Path) -> None:
    """Raise the one-line :class:`InputError` for an ONNX export given where a checkpoint is needed."""
    if is_onnx_dir(path):
        raise InputError(f"{path} is an ONNX export; training needs a PyTorch model directory "
                         "(the one it was exported from)")


def read_onnx_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of an ONNX directory, checked: format known, graph file present."""
    path = Path(path).expanduser()
    file = path / ONNX_MANIFEST
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"unreadable ONNX manifest ({type(exc).__name__}: {exc})", path=file) from None
    if not isinstance(data, dict) or data.get("format") != ONNX_FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise InputError(f"not a confdistill ONNX manifest: format {found!r}, expected {ONNX_FORMAT!r}",
                         path=file)
    model = path / str(data.get("model_file", ONNX_MODEL))
    if not model.is_file():
        raise InputError(f"the ONNX directory lacks its graph {model.name}", path=path)
    return data


def _graph(path: Path) -> Any:
    import onnx

    model_file = path / str(read_onnx_manifest(path).get("model_file", ONNX_MODEL))
    try:
        # Shapes and data locations only: external weights are not read in.
        return onnx.load(str(model_file), load_external_data=False)
    except Exception as exc:
        raise InputError(f"unreadable ONNX graph ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})",
                         path=model_file) from None


def onnx_files(path: str | Path) -> list[Path]:
    """``model.onnx`` and the external-data files its initializers point to (if any)."""
    path = Path(path).expanduser()
    graph = _graph(path)
    files = [path / str(read_onnx_manifest(path).get("model_file", ONNX_MODEL))]
    for init in graph.graph.initializer:
        for entry in init.external_data:
            if entry.key == "location" and (path / entry.value) not in files:
                files.append(path / entry.value)
    return files


def onnx_size_bytes(path: str | Path) -> int:
    """Bytes on disk of the graph and its external data (tokenizer, config and manifest excluded),
    the counterpart of :func:`confdistill.experiments.footprint.weights_size_bytes`."""
    return sum(f.stat().st_size for f in onnx_files(path) if f.is_file())


def onnx_parameter_count(path: str | Path) -> int:
    """Number of elements of the graph's initializers.

    For an fp32 export that is the PyTorch parameter count plus a few hundred constants (shape
    tensors, the position ids); for an int8 one each quantized weight counts once (as int8) plus
    its scale and zero point, so the two counts are comparable across precisions.
    """
    graph = _graph(Path(path).expanduser()).graph
    return int(sum(math.prod(init.dims) for init in graph.initializer))

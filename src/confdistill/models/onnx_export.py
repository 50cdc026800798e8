"""Export a classifier directory to ONNX, optionally with ONNX Runtime's dynamic int8 quantization.

Why: a distilled student is meant to be deployed; ONNX Runtime is the usual CPU runtime, and int8
weights shrink it ~4× and speed up its matrix products. ``predict`` and the footprint run such a
directory the same way as a PyTorch one, so the analysis can tell whether the *compressed* student
still may replace the teacher.

**Exporter.** ``torch.onnx.export(..., dynamo=True)``: the ``torch.export``-based exporter (default
since torch 2.9, needs ``onnxscript``). The legacy TorchScript exporter (``dynamo=False``) still
runs in torch 2.13 but is deprecated ("will be removed") and *traces*: transformers' mask code
converts tensors to Python booleans, which the tracer freezes into the graph with the example's
values. ``torch.export`` instead either captures such branches symbolically or fails loudly.
Batch and sequence axes are dynamic (``torch.export.Dim``), opset 18, one self-contained
``model.onnx`` (no external-data file; BERT-size models are far below protobuf's 2 GB).

The PyTorch model is loaded by :func:`~confdistill.models.loading.load_classifier`, so a
TinyBERT-format checkpoint (or a model saved with ``"confdistill_head": "tinybert"``) exports its
own head ``classifier(relu(pooled))``: the ReLU is part of the module's forward, hence of the graph.
After export the fp32 graph is run once by ONNX Runtime on the example batch (with padding) and
compared with PyTorch's logits; a mismatch is an error, not a silently wrong model.

**Quantization** (``quantize="int8"``): :func:`onnxruntime.quantization.quantize_dynamic`, weights
QInt8 per tensor, activations quantized at run time. The output then holds only the int8
``model.onnx`` (the deployable artefact); the fp32 graph is a temporary, not kept — export again
without ``--quantize`` for it. Layout and manifest: docs/formats.md, :mod:`confdistill.models.onnx_dir`.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from confdistill.errors import InputError, setting_name
from confdistill.io import atomic_directory, os_errors_named, sha256_file, sha256_json, write_json
from confdistill.models.files import check_dir, quiet_transformers
from confdistill.models.onnx_dir import (
    INPUT_NAMES,
    ONNX_FORMAT,
    ONNX_MANIFEST,
    ONNX_MODEL,
    OUTPUT_NAME,
    QUANTIZATIONS,
    is_onnx_dir,
)

__all__ = ["EXPORT_FORMATS", "OPSET", "export_onnx", "source_hash"]

#: ``--format`` values.
EXPORT_FORMATS = ("onnx",)
#: ONNX opset of the exported graphs (the dynamo exporter's native one: no version conversion).
OPSET = 18
#: Largest |ONNX − PyTorch| logit accepted by the post-export check (float32 reordering is ~1e-6).
VERIFY_TOLERANCE = 1e-3
_PROBE = ["a short sentence.", "another, somewhat longer sentence with a few more words in it."]


def check_quantize(quantize: str | None) -> str | None:
    """``quantize`` if known (None = fp32), else :class:`InputError`."""
    if quantize is None or quantize in QUANTIZATIONS:
        return quantize
    raise InputError(f"{setting_name('quantize')} must be {' or '.join(QUANTIZATIONS)} (or absent for fp32), got {quantize!r}")


def check_format(fmt: str) -> str:
    """``fmt`` if it is an export format, else :class:`InputError`."""
    if fmt in EXPORT_FORMATS:
        return fmt
    raise InputError(f"--format must be {' or '.join(EXPORT_FORMATS)}, got {fmt!r}")


def source_hash(model_dir: Path) -> str:
    """SHA-256 of the sorted ``{file name: sha256}`` of the directory's files (hidden ones excluded):
    changes when weights, configuration or tokenizer change, whatever their format."""
    files = sorted(p for p in model_dir.iterdir() if p.is_file() and not p.name.startswith("."))
    return sha256_json({p.name: sha256_file(p) for p in files})


@contextlib.contextmanager
def _quiet_export() -> Iterator[None]:
    """The exporter warns about deprecated pytree helpers and optional torchvision ops, and ONNX
    Runtime's quantizer logs advice on the root logger: none of it concerns the user's model."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript", "")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), quiet_transformers():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _example_inputs(tokenizer: Any, max_positions: int, names: tuple[str, ...]) -> dict[str, Any]:
    """Two sentences of different lengths: batch 2 and a padded row, so that neither axis is
    specialised to 1 and the mask path is the general one (cut to fit small position tables).
    ``names``: the inputs the model's family takes (the graph's inputs, in this order)."""
    enc = tokenizer(_PROBE, padding=True, truncation=True, max_length=min(32, max_positions),
                    return_tensors="pt", return_token_type_ids=True)
    return {k: enc[k] for k in names}


def _export_fp32(model: Any, inputs: dict[str, Any], file: Path) -> None:
    import torch

    batch = torch.export.Dim("batch", min=1)
    limit = int(getattr(model.config, "max_position_embeddings", 512) or 512)
    seq = torch.export.Dim("sequence", min=1, max=limit)
    with torch.no_grad():
        program = torch.onnx.export(
            model, (), None, kwargs=inputs, input_names=list(inputs), output_names=[OUTPUT_NAME],
            dynamic_shapes={k: {0: batch, 1: seq} for k in inputs}, opset_version=OPSET,
            dynamo=True, verbose=False, optimize=True)
    program.save(str(file), external_data=False)


def _verify(model: Any, inputs: dict[str, Any], file: Path, model_dir: Path) -> float:
    """Largest |ONNX Runtime − PyTorch| logit on the example batch; an error above the tolerance."""
    import numpy as np
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(str(file), providers=["CPUExecutionProvider"])
    got = session.run([OUTPUT_NAME], {k: v.numpy() for k, v in inputs.items()})[0]
    with torch.inference_mode():
        ref = model(**inputs).logits.float().numpy()
    diff = float(np.max(np.abs(got - ref)))
    if not diff <= VERIFY_TOLERANCE:
        raise RuntimeError(f"{model_dir}: the ONNX export's logits differ from PyTorch's by {diff:.3g} "
                           f"(> {VERIFY_TOLERANCE}); the export is not written")
    return diff


def _write_config(config: Any, file: Path) -> None:
    """``config.json`` as transformers writes it, always with the class names (``id2label``):
    transformers leaves default names out, and the ONNX directory's readers have only this file."""
    import json

    data = json.loads(config.to_json_string(use_diff=True))
    data["id2label"] = {str(i): str(n) for i, n in sorted(config.id2label.items())}
    data["label2id"] = {str(n): int(i) for i, n in sorted(config.id2label.items())}
    file.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    from confdistill import __version__

    out = {"confdistill": __version__}
    for name in ("torch", "transformers", "onnx", "onnxscript", "onnxruntime"):
        with contextlib.suppress(md.PackageNotFoundError):
            out[name] = md.version(name)
    return out


def export_onnx(model_dir: str | Path, out: str | Path, *, quantize: str | None = None,
                overwrite: bool = False) -> Path:
    """Export the classifier in ``model_dir`` (HF or TinyBERT format) to the ONNX directory ``out``.

    ``quantize``: None (fp32) or ``"int8"`` (ONNX Runtime dynamic quantization; only the int8 graph
    is kept). ``out`` gets ``model.onnx``, ``config.json`` (with ``id2label``), the tokenizer files
    and ``onnx.json``, atomically: an existing non-empty ``out`` is refused without ``overwrite``
    (before any work), and a failure leaves whatever was there untouched. Returns ``out``.
    Refused (:class:`InputError`): an unknown ``quantize``, a directory without tokenizer, a model
    without a trained classifier head, an ONNX directory as source, ``out`` equal to ``model_dir``.
    """
    from confdistill.folders import (
        check_output_target,
        recover_folder,
        refuse_source_as_target,
        remove_stale_temps,
    )
    from confdistill.models.families import family_of
    from confdistill.models.loading import load_classifier
    from confdistill.models.tokenizer import write_vocab

    quantize = check_quantize(quantize)
    model_dir, out = check_dir(model_dir), Path(out)
    if is_onnx_dir(model_dir):
        raise InputError("is already an ONNX export; export needs a PyTorch model directory", path=model_dir)
    refuse_source_as_target(out, model_dir, source_field="model_dir", source_flag="--model")
    recover_folder(out)  # an earlier export killed mid-swap: its old or new folder first
    check_output_target(out, overwrite=overwrite, kind="dir", what=setting_name("out"))
    model, tokenizer = load_classifier(model_dir, attn_implementation="sdpa")
    report = model.confdistill_load_report
    if report.fresh_head:
        raise InputError("the model has no trained classifier head (a bare encoder?): fine-tune or "
                         "distill it first", path=model_dir)
    names = tuple(k for k in INPUT_NAMES if k in family_of(model).inputs)   # DistilBERT/ModernBERT: no token types
    inputs = _example_inputs(tokenizer, int(getattr(model.config, "max_position_embeddings", 512) or 512), names)
    digest = source_hash(model_dir)
    check_output_target(out, overwrite=overwrite, kind="dir", what=setting_name("out"))  # again: loading took a while
    remove_stale_temps(out.parent, recursive=False, names=[out.name])
    with os_errors_named(out), atomic_directory(out) as tmp, _quiet_export():
        fp32 = tmp / (".fp32.onnx" if quantize else ONNX_MODEL)
        _export_fp32(model, inputs, fp32)
        diff = _verify(model, inputs, fp32, model_dir)
        if quantize == "int8":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantize_dynamic(str(fp32), str(tmp / ONNX_MODEL), weight_type=QuantType.QInt8)
            fp32.unlink()
        _write_config(model.config, tmp / "config.json")
        tokenizer.save_pretrained(tmp)
        write_vocab(tokenizer, tmp)
        write_json(tmp / ONNX_MANIFEST, {
            "format": ONNX_FORMAT,
            "model_file": ONNX_MODEL,
            "quantization": quantize,
            "quantization_method": ("onnxruntime.quantization.quantize_dynamic: QInt8 weights, per tensor; "
                                    "activations quantized at run time") if quantize else None,
            "source_model": str(model_dir.resolve()),
            "source_sha256": digest,
            "source_sha256_of": "sorted {file name: sha256} of the source directory's files (JSON)",
            "source_format": report.format,
            "head": report.head,
            "model_type": getattr(model.config, "model_type", None),
            "num_labels": int(model.config.num_labels),
            "max_position_embeddings": getattr(model.config, "max_position_embeddings", None),
            "inputs": list(names),
            "output": OUTPUT_NAME,
            "dynamic_axes": {"0": "batch", "1": "sequence"},
            "opset": OPSET,
            "exporter": "torch.onnx.export(dynamo=True)",
            "fp32_check_max_abs_diff": diff,
            "versions": _versions(),
        })
    return out

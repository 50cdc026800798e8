"""Dump a model's predictions on a split: the softmax output file the analysis reads.

:func:`predict_split` writes one row per example of the split, *in file order*
(``pred,p0..p{k-1},label``, :mod:`confdistill.prediction.softmax_file`) and its sidecar
``<out>.meta.json`` (model, task, split, data_file, data_sha256, n_rows, label_names, metrics…).
For speed the examples run sorted by length with per-batch padding (:func:`make_loader` with
``shuffle=False``), under ``torch.inference_mode``; the ``index`` of each batch puts every row
back in its place. Probabilities are the softmax of the logits computed in float64, so each row
sums to 1 to rounding.

Regression tasks (STS-B, custom ``--regression``) have no class probabilities: the file is then
``pred,label`` with the predicted and gold scores (floats), same row order, same sidecar.

The file and its sidecar are one unit (:mod:`confdistill.commit`): after a kill at any point they
are both the old ones or both the new ones (an interrupted commit is finished by the next
``predict`` or reader), and the sidecar records the file's SHA-256 (``file_sha256``). An existing
``out`` (or sidecar) is refused unless ``overwrite``.

An ONNX directory (``confdistill export``) runs with ONNX Runtime through the same batches
(:mod:`confdistill.prediction.onnx_runtime`); the sidecar's ``runtime`` says which runtime made the
file (``"torch"`` or ``"onnxruntime"``, then with ``quantization``: null or ``"int8"``).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from confdistill.console import quiet
from confdistill.data.glue import Example
from confdistill.data.tabular import TableColumns, load_examples
from confdistill.errors import InputError, setting_name
from confdistill.models.families import model_inputs

__all__ = ["plain_forward", "predict_encoded", "predict_logits", "predict_split", "softmax64"]

_OUT_SUFFIXES = (".csv", ".tsv", ".tab", ".parquet", ".pq")
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def softmax64(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 of ``logits`` (n, k) → (n, k), rows summing to 1."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _max_length() -> str:
    # predict_split's max_length is the commands' --max-seq-length
    return setting_name("max_length", flag="--max-seq-length")


def predict_logits(
    model: Any,
    tokenizer: Any,
    examples: Sequence[Example],
    *,
    batch_size: int = 64,
    max_length: int = 128,
    device: Any = None,
    progress: bool = True,
    desc: str = "predict",
) -> np.ndarray:
    """Logits of ``model`` on ``examples``, shape (n, num_labels) float32, rows in ``examples`` order."""
    from confdistill.data.batching import encode

    if batch_size < 1:
        raise InputError(f"{setting_name('batch_size', flag='--eval-batch-size')} must be ≥ 1, got {batch_size}")
    if max_length < 4:
        raise InputError(f"{_max_length()} must be ≥ 4, got {max_length}")
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and max_length > int(limit):
        raise InputError(f"{_max_length()} {max_length} exceeds the model's {limit} position embeddings")
    encoded = encode(tokenizer, examples, max_length=max_length)
    return predict_encoded(model, encoded, batch_size=batch_size, device=device, progress=progress, desc=desc)


@contextlib.contextmanager
def plain_forward(model: Any) -> Iterator[Any]:
    """Run ``model`` on its own ``forward`` inside the block, not on accelerate's mixed-precision wrapper.

    ``Accelerator.prepare`` with bf16/fp16 replaces the instance's ``forward`` by one that enters
    autocast itself (keeping the original as ``_original_forward``), so an enclosing
    ``torch.autocast(enabled=False)`` does not turn it off and β, σ and every evaluation would be
    computed in half precision. ``unwrap_model(keep_fp32_wrapper=False)`` removes the wrapper for
    good, which would also take autocast away from the training steps that follow an evaluation:
    here the wrapper is set aside for the block only, and put back after it.
    """
    original = getattr(model, "__dict__", {}).get("_original_forward")
    wrapper = getattr(model, "__dict__", {}).get("forward")
    if original is None or wrapper is None:
        yield model
        return
    model.forward = original
    try:
        yield model
    finally:
        model.forward = wrapper


def predict_encoded(
    model: Any,
    encoded: Any,
    *,
    batch_size: int = 64,
    device: Any = None,
    accelerator: Any = None,
    progress: bool = False,
    desc: str = "predict",
) -> np.ndarray:
    """Logits (n, k) float32 in row order over an encoded split (``confdistill.data.encode``): the one
    prediction path of ``predict``, the trainer's evaluations and its teacher-logit caches.

    Eval mode (no dropout), length-sorted dynamically padded batches, ``torch.inference_mode``, and
    always float32 (autocast off and accelerate's mixed-precision wrapper set aside,
    :func:`plain_forward`: β and σ are measured in full precision also when training runs in
    bf16/fp16). With an ``accelerator`` of several processes the batches are dealt round-robin and
    gathered, so every process returns all rows. The model's training mode is restored.
    ``model`` may also be an ONNX Runtime session
    (:class:`~confdistill.prediction.onnx_runtime.OnnxClassifier`, CPU only): same batches, only
    the forward pass differs.
    """
    import torch
    from tqdm.auto import tqdm

    from confdistill.data.batching import make_loader

    onnx = getattr(model, "runtime", None) == "onnxruntime"
    if onnx:
        if accelerator is not None and accelerator.num_processes > 1:
            raise InputError("an ONNX model runs in one process (ONNX Runtime on the CPU), not under accelerate")
        device, rank, world = torch.device("cpu"), 0, 1
    elif accelerator is not None:
        device, rank, world = accelerator.device, accelerator.process_index, accelerator.num_processes
    else:
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        rank, world = 0, 1
        model.to(device)
    was_training = False if onnx else model.training
    if not onnx:
        model.eval()
    loader = make_loader(encoded, batch_size, shuffle=False, group_by_length=True)
    parts: list[tuple[np.ndarray, np.ndarray]] = []
    bar = tqdm(total=len(encoded), unit="ex", desc=desc, disable=not progress or quiet(), file=sys.stderr,
               dynamic_ncols=True)
    with torch.inference_mode(), torch.autocast(device.type, enabled=False), plain_forward(model), bar:
        for i, rows in enumerate(loader.batch_sampler):
            if i % world != rank:
                continue
            batch = loader.collate_fn(rows)
            if onnx:
                logits = model.logits({k: batch[k].numpy() for k in _INPUTS})
            else:
                inputs = {k: v.to(device) for k, v in model_inputs(model, batch).items()}
                logits = model(**inputs).logits.float().cpu().numpy()
            parts.append((batch["index"].numpy(), logits))
            bar.update(len(rows))
    if world > 1:
        from accelerate.utils import gather_object
        parts = gather_object(parts)
    if not onnx:
        model.train(was_training)
    k = parts[0][1].shape[1] if parts else int(getattr(model.config, "num_labels", 1))
    out = np.zeros((len(encoded), k), dtype=np.float32)
    for index, logits in parts:
        out[index] = logits
    return out


def predict_split(
    model_dir: str | Path,
    task: str,
    data_dir: str | Path,
    split: str,
    out: str | Path,
    *,
    batch_size: int = 64,
    max_length: int = 128,
    columns: TableColumns | dict[str, Any] | None = None,
    device: Any = None,
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write ``model_dir``'s predictions on ``split`` of ``task`` to ``out`` (one row per example, file order).

    ``task``: a GLUE task, or ``custom`` with ``columns``. ``out``: ``.csv``, ``.tsv`` or
    ``.parquet``. Returns ``out``; the sidecar is ``<out>.meta.json``. A failure leaves any
    earlier ``out`` and its sidecar untouched. An existing ``out`` or sidecar is refused
    (:class:`InputError`, before any work) unless ``overwrite``.
    """
    from confdistill import __version__
    from confdistill.commit import recover_commit, write_with_sidecar
    from confdistill.data.glue import compute_metrics
    from confdistill.io import sha256_file
    from confdistill.models.loading import load_classifier
    from confdistill.models.onnx_dir import is_onnx_dir
    from confdistill.prediction.softmax_file import sidecar_path, write_softmax

    out = Path(out)
    if out.suffix.lower() not in _OUT_SUFFIXES:
        raise InputError(f"{setting_name('out')} must end in .csv, .tsv or .parquet, got {out.name!r}", path=out)
    if out.is_dir():
        raise InputError(f"{setting_name('out')} is a directory: expected a file name", path=out)
    recover_commit(out)  # a predict killed mid-commit: finish it, so the pair checked below is whole
    _check_targets(out, sidecar_path(out), overwrite)
    data = load_examples(task, data_dir, split, columns=columns)
    spec = data.task
    from confdistill.models.hub import resolve_model_dir

    model_dir = resolve_model_dir(model_dir, what="--model")  # an alias, a Hub id in the local cache
    runtime: dict[str, Any] = {"runtime": "torch"}
    if is_onnx_dir(model_dir):
        model, tokenizer = _load_onnx(model_dir, spec.num_labels, device)
        runtime = {"runtime": model.runtime, "quantization": model.quantization,
                   "onnx_source_model": model.manifest.get("source_model")}
    else:
        model, tokenizer = load_classifier(model_dir, num_labels=spec.num_labels)
        if model.confdistill_load_report.fresh_head:
            raise InputError("the model has no trained classifier head (a bare encoder?): fine-tune or "
                             "distill it first", path=model_dir)
    logits = predict_logits(model, tokenizer, data.examples, batch_size=batch_size, max_length=max_length,
                            device=device, progress=progress, desc=f"predict {spec.name}/{split}")
    labels = np.asarray([e.label for e in data.examples])
    meta: dict[str, Any] = {
        "model": str(Path(model_dir).resolve()),
        "task": spec.name,
        "split": split,
        "data_file": str(data.path.resolve()),
        "data_sha256": sha256_file(data.path),
        "n_rows": len(data.examples),
        "label_names": list(spec.label_names),
        "max_length": max_length,
        "pair_truncation": "tinybert",
        # Rows share batches (length-sorted): ONNX Runtime's dynamic int8 quantises activations per
        # batch, so its probabilities depend on the batch size (docs/formats.md).
        "batch_size": batch_size,
        **runtime,
        "confdistill_version": __version__,
    }
    if columns is not None:
        # Custom data: the reader needs the columns again (e.g. the worst rows' texts in analyze).
        meta["columns"] = (columns if isinstance(columns, TableColumns) else TableColumns.from_mapping(columns)).to_dict()
    if spec.is_regression:
        scores = logits[:, 0].astype(np.float64)
        meta["metrics"] = compute_metrics(spec, scores, labels.astype(np.float64))
        if out.suffix.lower() not in (".csv", ".tsv", ".tab"):
            raise InputError("regression predictions are written as .csv or .tsv", path=out)
        delim = "," if out.suffix.lower() == ".csv" else "\t"

        def write(tmp: Path) -> None:
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(f"pred{delim}label\n")
                fh.writelines(f"{float(p)!r}{delim}{float(g)!r}\n" for p, g in zip(scores, labels, strict=True))

        _check_targets(out, sidecar_path(out), overwrite)  # again: another process may have written
        write_with_sidecar(out, sidecar_path(out), write, {**meta, "k": 1, "format": "confdistill-regression/1"})
        return out
    probs = softmax64(logits)
    meta["metrics"] = compute_metrics(spec, probs.argmax(axis=1), labels.astype(np.int64))
    _check_targets(out, sidecar_path(out), overwrite)
    write_softmax(out, probs, labels.astype(np.int64), meta=meta)
    return out


def _load_onnx(model_dir: str | Path, num_labels: int, device: Any) -> tuple[Any, Any]:
    """An ONNX directory's session and tokenizer, checked against the task like a PyTorch model."""
    from confdistill.prediction.onnx_runtime import load_onnx_classifier

    if device is not None and str(device) != "cpu":
        raise InputError(f"ONNX models run on the CPU (ONNX Runtime's CPUExecutionProvider), not {device}: "
                         "drop --device", path=model_dir)
    model, tokenizer = load_onnx_classifier(model_dir)
    if model.config.num_labels != num_labels:
        raise InputError(f"the model's classifier has {model.config.num_labels} output(s) but the task needs "
                         f"{num_labels}; use a model trained for this task", path=model_dir)
    return model, tokenizer


def _check_targets(out: Path, sidecar: Path, overwrite: bool) -> None:
    """Refuse an existing prediction file or sidecar without ``overwrite`` (and never a folder)."""
    from confdistill.folders import check_output_target

    for path in (out, sidecar):
        check_output_target(path, overwrite=overwrite, kind="file", what="--out")

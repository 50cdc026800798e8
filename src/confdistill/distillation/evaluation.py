"""Evaluation during training: the task's metrics (and σ in stage 2), the best-checkpoint metric,
and the teacher-logit caches — all through the one prediction path,
:func:`confdistill.prediction.predict.predict_encoded` (float32, eval mode).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from confdistill.distillation.job import Job
from confdistill.distillation.run_files import load_cached_logits, save_cached_logits
from confdistill.io import sha256_file

#: The metric TinyBERT's task_distill.py keeps the best model by: accuracy for every
#: classification task (MRPC and QQP included, not F1), Matthews correlation for CoLA, and the
#: mean of Pearson and Spearman for STS-B.
TINYBERT_SELECTION = {"CoLA": "matthews_corr", "STS-B": "corr"}


def selection_metric(spec: Any, override: str | None = None) -> str:
    """The evaluation key that picks ``OUT/best``: ``override``, else TinyBERT's for the task."""
    if override is not None:
        return override
    if spec.is_regression:
        return "corr"
    return TINYBERT_SELECTION.get(spec.name, "accuracy")


def predict(model: nn.Module, encoded: Any, job: Job, accelerator: Any) -> torch.Tensor:
    from confdistill.prediction.predict import predict_encoded

    return torch.from_numpy(predict_encoded(model, encoded, batch_size=job.loop.eval_batch_size,
                                            accelerator=accelerator))


def evaluate(model: nn.Module, encoded: Any, spec: Any, job: Job, accelerator: Any,
             teacher_logits: torch.Tensor | None = None) -> dict[str, Any]:
    """The task's metrics on the evaluation split (eval mode, no dropout).

    Stage 2 adds ``sigma`` and ``n_both`` (:func:`~confdistill.properties.from_logits.sigma_from_logits`
    against the teacher's cached logits on the same split; both None for regression).
    """
    from confdistill.data import compute_metrics
    from confdistill.properties.from_logits import sigma_from_logits

    logits = predict(model, encoded, job, accelerator)
    preds = logits.view(-1).numpy() if spec.is_regression else logits.argmax(-1).numpy()
    scores: dict[str, Any] = compute_metrics(spec, preds, encoded.labels)
    if job.kind == "prediction":
        if spec.is_regression or teacher_logits is None:
            scores.update(sigma=None, n_both=None)
        else:
            scores.update(sigma_from_logits(teacher_logits.numpy(), logits.numpy(), np.asarray(encoded.labels)))
    return scores


def cached_teacher_logits(teacher: nn.Module, job: Job, encoded: Any, data_file: Path,
                          accelerator: Any, name: str = "teacher_logits.pt", *,
                          teacher_tokenizer: Any = None, examples: Any = None) -> torch.Tensor:
    """Teacher logits over a split, (n, k) float32 in row order — computed once, kept in ``OUT/name``.

    ``encoded`` is the split as the student reads it. A ``teacher_tokenizer`` (a teacher that
    tokenises text differently: stage 2 across tokenizers) reads the same ``examples`` itself,
    truncated to max_seq_length of its own tokens — as ``predict`` makes the teacher's prediction
    file; the rows stay in the student's order, so a batch's ``index`` finds its teacher logits.
    The cache is keyed by the teacher directory, the data file's SHA-256, max_seq_length and the
    padding (the teacher's logits on a text do not depend on the student, whatever its tokenizer);
    a mismatch recomputes it, and so does a damaged or planted file (read as data only).
    """
    if teacher_tokenizer is not None:
        from confdistill.data import encode

        encoded = encode(teacher_tokenizer, examples, job.loop.max_seq_length)
    path = job.out / name
    # "train_sha256" names the data file's hash for every split: the key of existing caches is kept.
    key = {"teacher": str(Path(str(job.teacher)).resolve()), "train_sha256": sha256_file(data_file),
           "max_seq_length": job.loop.max_seq_length, "n": len(encoded),
           "pair_truncation": getattr(encoded, "pair_truncation", None)}
    cached = load_cached_logits(path, json.dumps(key, sort_keys=True), len(encoded))
    if cached is not None:
        return cached
    teacher.to(accelerator.device)
    logits = predict(teacher, encoded, job, accelerator)
    if accelerator.is_main_process:
        save_cached_logits(path, json.dumps(key, sort_keys=True), logits)
    accelerator.wait_for_everyone()
    return logits

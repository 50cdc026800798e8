"""σ of the confidence gap straight from two models' logits: the trainer's measure at every evaluation.

The same figure :func:`confdistill.properties.analyze_pair` computes from prediction files, so the
σ logged during stage 2 is the σ the analysis will report for that model on that split.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def sigma_from_logits(teacher_logits: np.ndarray, student_logits: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """σ of the confidence gap and n_both, exactly as :func:`confdistill.properties.analyze_pair` defines them.

    teacher_logits, student_logits: (n, k) logits of the same rows; labels: (n,) gold class indices.
    Probabilities are the float64 softmax at T = 1 (as ``predict`` writes them); Δ = p0_teacher −
    p0_student for 2 classes, the gold label's probability for more, over the rows both models
    classify correctly; σ is its population standard deviation. Returns ``{"sigma": float | None,
    "n_both": int}`` (σ None when no row is right for both).
    """
    from confdistill.prediction.predict import softmax64
    from confdistill.prediction.softmax_file import SoftmaxOutputs
    from confdistill.properties.stream_analysis import analyze_pair

    labels = np.asarray(labels, dtype=np.int64)
    outputs = []
    for z in (teacher_logits, student_logits):
        probs = softmax64(z)
        outputs.append(SoftmaxOutputs(probs=probs, pred=probs.argmax(axis=1), label=labels))
    n_both = int((outputs[0].correct & outputs[1].correct).sum())
    if n_both == 0:
        return {"sigma": None, "n_both": 0}
    result = analyze_pair(outputs[0], outputs[1], n_bootstrap=0, split="eval", worst=0)
    return {"sigma": float(result.sigma), "n_both": int(result.n_both)}

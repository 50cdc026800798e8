"""When a verdict would mean nothing: collapsed models, a teacher no better than the majority class, too few rows.

σ of the confidence gap is small whenever both models say the same thing on every row, which is
also what two *collapsed* models do (each predicts one class everywhere, with the same near-constant
probability): a 3-class teacher stuck on class 0 and its student got "φ_cnf holds" with σ ≈ 0.
The check cannot judge such a pair, so :func:`causes` names each reason in plain words and the
verdicts become ``"not informative"`` (:func:`confdistill.properties.verdict.judge`); ``analyze
--check`` then exits 1, since a release gate must not pass what it cannot judge.

The causes (docs/method.md, "Not informative"):

- either model predicts a single class on every row;
- labelled data: the teacher's accuracy is no better than always predicting the majority class;
- fewer than :data:`MIN_SET_ROWS` rows are in the σ set (too few for σ or its interval to mean much).

Imports nothing heavy (the counts come from the streaming pass).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from confdistill.properties.verdict import NOT_INFORMATIVE

#: Fewest rows in the σ set for a verdict (below it σ's bootstrap interval is not trustworthy).
MIN_SET_ROWS = 30


def _class_name(c: int, label_names: Sequence[str] | None) -> str:
    if label_names and 0 <= c < len(label_names) and str(label_names[c]) != str(c):
        return f"class {c} ({label_names[c]})"
    return f"class {c}"


def causes(counts: dict[str, dict[int, int]], *, n: int, teacher_correct: int | None, n_set: int,
           set_name: str, label_names: Sequence[str] | None = None) -> list[str]:
    """Each reason a verdict on this pair would mean nothing, in plain words (empty: informative).

    ``counts``: rows per predicted class of each model and per gold label, as
    :meth:`.stream_pass.Aggregates.class_counts` gives them; ``teacher_correct`` is None for unlabelled logs.
    """
    out: list[str] = []
    for model in ("teacher", "student"):
        seen = [c for c, m in counts[model].items() if m > 0]
        if n > 0 and len(seen) == 1:
            out.append(f"the {model} predicts {_class_name(seen[0], label_names)} on every row "
                       "(a collapsed model: its confidence says nothing about the input)")
    labels = counts.get("label") or {}
    if teacher_correct is not None and labels and n > 0:
        major, m = max(labels.items(), key=lambda kv: (kv[1], -kv[0]))
        if teacher_correct <= m:
            out.append(f"the teacher is no better than the majority class: accuracy {teacher_correct / n:.4f} "
                       f"<= {m / n:.4f}, the share of {_class_name(major, label_names)}")
    if n_set < MIN_SET_ROWS:
        what = "both models correct" if set_name == "both_correct" else "both models predict the same class"
        out.append(f"only {n_set} rows are in the σ set ({what}); a verdict needs at least {MIN_SET_ROWS}")
    return out


def label_names_of(meta: dict[str, Any]) -> list[str] | None:
    """The sidecar's class names, when it records them."""
    names = meta.get("label_names")
    return [str(x) for x in names] if isinstance(names, list) else None


__all__ = ["MIN_SET_ROWS", "NOT_INFORMATIVE", "causes", "label_names_of"]

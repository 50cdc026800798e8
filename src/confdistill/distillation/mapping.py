"""Layer mappings ``g`` from student layers to teacher layers: TinyBERT's uniform rule, ``top``, ``bottom``.

Student layer ``m`` (1..M) learns from teacher layer ``g(m)`` (1..N); index 0 is the embedding
output, and ``g(0) = 0``. TinyBERT: ``g(m) = m·N/M`` when N is a multiple of M (its code:
``teacher_atts[i·k + k − 1]`` and ``teacher_reps[i·k]`` with ``k = N // M``).

When N is not a multiple of M (e.g. 6 → 4) we use ``g(m) = floor(m·N/M + 1/2)``, i.e. ``m·N/M``
rounded half up. This equals TinyBERT's rule on multiples, keeps ``g(M) = N`` (the last student
layer always learns from the last teacher layer, whose output feeds the classifier), and is
strictly increasing for M ≤ N (consecutive targets differ by N/M ≥ 1 before rounding), so no
teacher layer is used twice. TinyBERT's own code (``k = int(N/M)``) would instead map 6 → 4 to
layers 1, 2, 3, 4 and never look at the last two teacher layers.

Other strategies (``--layer-mapping``; ``g(0) = 0`` always): ``top`` maps the student to the last M
teacher layers, ``g(m) = N − M + m``; ``bottom`` to the first M, ``g(m) = m``.
"""

from __future__ import annotations

from typing import Any

from confdistill.distillation.config import LAYER_MAPPINGS
from confdistill.errors import InputError

__all__ = ["LAYER_MAPPINGS", "check_compatible", "layer_mapping"]


def layer_mapping(student_layers: int, teacher_layers: int, strategy: str = "uniform") -> list[int]:
    """``[g(0), g(1), …, g(M)]``: teacher hidden-state index for each student hidden-state index.

    Attention layer m (1-based) of the student is matched to attention layer ``g(m)`` of the teacher.
    strategy: ``uniform`` (g(m) = ⌊m·N/M + ½⌋), ``top`` (g(m) = N − M + m), ``bottom`` (g(m) = m);
    g(0) = 0 in all three. Raises :class:`InputError` when the student has more layers than the
    teacher or no layers, or for an unknown strategy.
    """
    if strategy not in LAYER_MAPPINGS:
        raise InputError(f"--layer-mapping must be one of {', '.join(LAYER_MAPPINGS)}, got {strategy!r}")
    m_, n_ = int(student_layers), int(teacher_layers)
    if m_ < 1 or n_ < 1:
        raise InputError(f"layer counts must be >= 1, got student {m_}, teacher {n_}")
    if m_ > n_:
        raise InputError(
            f"a student wider than allowed by the mapping: the student has {m_} layers, the teacher only {n_} "
            "(stage 1 maps each student layer to a distinct teacher layer)"
        )
    if strategy == "top":
        return [0, *(n_ - m_ + m for m in range(1, m_ + 1))]
    if strategy == "bottom":
        return list(range(m_ + 1))
    # Integer arithmetic: floor((2·m·N + M) / (2·M)) == floor(m·N/M + 1/2) without float error.
    return [(2 * m * n_ + m_) // (2 * m_) for m in range(m_ + 1)]


def check_compatible(student_config: Any, teacher_config: Any, strategy: str = "uniform") -> list[int]:
    """Validate that stage 1 can match these two BERT configs; return the layer mapping.

    Attention scores are compared head by head, so both need the same number of heads; the
    student may be narrower than the teacher (a learned projection maps its hidden states up),
    never wider. strategy: see :func:`layer_mapping`.
    """
    mapping = layer_mapping(student_config.num_hidden_layers, teacher_config.num_hidden_layers, strategy)
    if student_config.hidden_size > teacher_config.hidden_size:
        raise InputError(
            f"a student wider than allowed by the mapping: student hidden size {student_config.hidden_size} "
            f"> teacher hidden size {teacher_config.hidden_size}"
        )
    if student_config.num_attention_heads != teacher_config.num_attention_heads:
        raise InputError(
            f"stage 1 compares attention scores head by head: the student has "
            f"{student_config.num_attention_heads} heads, the teacher {teacher_config.num_attention_heads}"
        )
    return mapping

"""TinyBERT's distillation losses, the confidence-aware term, and β for the κ bound.

Every batch loss takes ``n_rows``: the number of rows the loss is averaged over. It defaults to the
rows in the tensors (a plain mean). Under data parallelism each process holds a slice of the global
batch; passing the *global* row count and multiplying by the number of processes makes the averaged
gradients equal to the single-process ones, also for an uneven last batch (see trainer.py).

Shapes: scores (batch, heads, q, k); hidden (batch, seq, width); logits (batch, classes) or
(batch, 1) for regression; labels (batch,) int64 or float.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from confdistill.models.attention_scores import zero_masked_scores


def _mean_over_rows(total: torch.Tensor, rows: int, per_row: int, n_rows: int | None) -> torch.Tensor:
    return total / float((rows if n_rows is None else n_rows) * per_row)


def attention_mse(student: torch.Tensor, teacher: torch.Tensor, *, n_rows: int | None = None) -> torch.Tensor:
    """MSE between attention scores with TinyBERT's masking: entries ``<= -100`` set to 0 in both.

    student, teacher: (batch, heads, q, k) pre-softmax scores including the additive mask.
    Mean over all elements of the batch tensor (``nn.MSELoss()`` as in TinyBERT).
    """
    d = zero_masked_scores(student) - zero_masked_scores(teacher)
    return _mean_over_rows(d.square().sum(), student.shape[0], d[0].numel(), n_rows)


def hidden_mse(student: torch.Tensor, teacher: torch.Tensor, *, n_rows: int | None = None) -> torch.Tensor:
    """MSE between (projected) student and teacher hidden states, (batch, seq, width), mean over elements."""
    d = student - teacher
    return _mean_over_rows(d.square().sum(), student.shape[0], d[0].numel(), n_rows)


def make_fit_denses(student_width: int, teacher_width: int, student_layers: int,
                    initializer_range: float = 0.02) -> nn.ModuleList | None:
    """One learned ``Linear(d_s → d_t)`` per student hidden state 0..M, or None when widths are equal.

    TinyBERT's released general-distillation checkpoints carry ``fit_denses`` (one per hidden state),
    which we follow; its task-distillation script shares a single ``fit_dense``. With equal widths
    TinyBERT still applies a learned Linear; we compare the states directly (no extra parameters).
    Initialised as TinyBERT's (``init_bert_weights``): weights ~ N(0, 0.02²), biases 0.
    """
    if student_width == teacher_width:
        return None
    denses = nn.ModuleList(nn.Linear(student_width, teacher_width) for _ in range(student_layers + 1))
    for dense in denses:
        nn.init.normal_(dense.weight, mean=0.0, std=initializer_range)
        nn.init.zeros_(dense.bias)
    return denses


def intermediate_loss(
    student_scores: Sequence[torch.Tensor],
    teacher_scores: Sequence[torch.Tensor],
    student_hidden: Sequence[torch.Tensor],
    teacher_hidden: Sequence[torch.Tensor],
    mapping: Sequence[int],
    fit_denses: nn.ModuleList | None = None,
    *,
    n_rows: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stage 1 loss: ``Σ_m MSE(S_s^m, S_t^{g(m)}) + Σ_{m=0..M} MSE(W_m·H_s^m, H_t^{g(m)})``.

    student_scores: M tensors (student attention layers 1..M, list index m−1);
    teacher_scores: indexable by teacher attention layer g(m)−1 (a list of N, or a dict with the mapped ones);
    student_hidden: M+1 states (embeddings first); teacher_hidden: N+1 states; mapping: [g(0), …, g(M)].
    Returns (total, attention part, hidden part).
    """
    m_layers = len(mapping) - 1
    att = student_hidden[0].new_zeros(())
    for m in range(1, m_layers + 1):
        att = att + attention_mse(student_scores[m - 1], teacher_scores[mapping[m] - 1], n_rows=n_rows)
    rep = student_hidden[0].new_zeros(())
    for m in range(m_layers + 1):
        h = student_hidden[m] if fit_denses is None else fit_denses[m](student_hidden[m])
        rep = rep + hidden_mse(h, teacher_hidden[mapping[m]], n_rows=n_rows)
    return att + rep, att, rep


def soft_cross_entropy(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0, reduction: str = "mean"
) -> torch.Tensor:
    """TinyBERT's soft CE at temperature T: per row ``Σ_c −softmax(t/T)_c · log_softmax(s/T)_c``.

    No T² factor (TinyBERT has none). reduction: "none" (batch,), "sum", or "mean" over rows.
    Note TinyBERT's code ends with ``.mean()`` over rows *and* classes, i.e. this divided by the
    number of classes; we keep the per-row sum over classes (the cross-entropy itself).
    """
    t = F.softmax(teacher_logits / temperature, dim=-1)
    per_row = -(t * F.log_softmax(student_logits / temperature, dim=-1)).sum(-1)
    return _reduce(per_row, reduction)


def confidence_gap_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """RQ2's confidence-aware term: mean over the batch of ``½·Σ_c (softmax(t)_c − softmax(s)_c)²``.

    At temperature 1; for two classes it equals ``Δp0²`` (the squared confidence gap φ_cnf measures).
    """
    return confidence_gap_per_row(student_logits, teacher_logits).mean()


def confidence_gap_per_row(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """``½·Σ_c (softmax(t)_c − softmax(s)_c)²`` per row, shape (batch,)."""
    return 0.5 * (F.softmax(teacher_logits, -1) - F.softmax(student_logits, -1)).square().sum(-1)


def _reduce(per_row: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return per_row
    if reduction == "sum":
        return per_row.sum()
    if reduction == "mean":
        return per_row.mean()
    raise ValueError(f"reduction must be none|sum|mean, got {reduction!r}")


def prediction_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    temperature: float = 1.0,
    alpha: float = 0.0,
    lambda_conf: float = 0.0,
    is_regression: bool = False,
    n_rows: int | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Stage 2 loss per row, averaged over ``n_rows``: ``(1−α)·soft + α·hard + λ_conf·gap``.

    Classification: soft = :func:`soft_cross_entropy` at T, hard = CE(labels, softmax(s)) at T = 1,
    gap = :func:`confidence_gap_per_row`. Regression (STS-B, logits (batch, 1)): soft = (s − t)²
    (TinyBERT's MSE to the teacher), hard = (s − y)², no gap term.
    Returns (total, {"soft", "hard", "conf"} as detached batch means for logging).
    """
    rows = student_logits.shape[0]
    denom = float(rows if n_rows is None else n_rows)
    if is_regression:
        s = student_logits.view(-1)
        soft = (s - teacher_logits.view(-1).to(s.dtype)).square()
        hard = (s - labels.to(s.dtype).view(-1)).square()
        conf = torch.zeros_like(soft)
    else:
        soft = soft_cross_entropy(student_logits, teacher_logits.to(student_logits.dtype), temperature, "none")
        hard = F.cross_entropy(student_logits, labels.long(), reduction="none") if alpha > 0 else torch.zeros_like(soft)
        conf = (
            confidence_gap_per_row(student_logits, teacher_logits.to(student_logits.dtype))
            if lambda_conf > 0 else torch.zeros_like(soft)
        )
    per_row = (1.0 - alpha) * soft
    if alpha > 0:
        per_row = per_row + alpha * hard
    if lambda_conf > 0:
        per_row = per_row + lambda_conf * conf
    parts = {"soft": soft.detach().mean(), "hard": hard.detach().mean(), "conf": conf.detach().mean()}
    return per_row.sum() / denom, parts


def hard_label_loss(
    logits: torch.Tensor, labels: torch.Tensor, *, is_regression: bool = False, n_rows: int | None = None
) -> torch.Tensor:
    """Fine-tuning loss: CE to the gold label (MSE for regression), averaged over ``n_rows``."""
    if is_regression:
        per_row = (logits.view(-1) - labels.to(logits.dtype).view(-1)).square()
    else:
        per_row = F.cross_entropy(logits, labels.long(), reduction="none")
    return per_row.sum() / float(logits.shape[0] if n_rows is None else n_rows)


def beta_statistics(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    alpha: float = 0.0,
    temperature: float = 1.0,
) -> dict[str, float | int]:
    """β for the κ bound (docs/method.md, notes on κ), over a whole split: every row once.

    Per row ``ℓ = (1−α)·KL(q_t^T ‖ q_s^T) + α·CE(y, p_s)`` with ``q^T = softmax(z/T)`` and p_s at T = 1.
    Returns ``beta`` (Σ ℓ, the total), ``beta_mean`` (β/n), ``beta_soft_ce`` (Σ TinyBERT soft CE at T,
    = Σ (H(q_t^T) + KL)), ``n_train`` (rows), ``alpha``, ``temperature``. Computed in float64.
    Logits must come from eval-mode models (no dropout).
    """
    s = student_logits.detach().double()
    t = teacher_logits.detach().double()
    q_t = F.softmax(t / temperature, -1)
    log_q_s = F.log_softmax(s / temperature, -1)
    kl = (torch.special.xlogy(q_t, q_t) - q_t * log_q_s).sum(-1)
    soft_ce = -(q_t * log_q_s).sum(-1)
    hard = F.cross_entropy(s, labels.long(), reduction="none") if alpha > 0 else torch.zeros_like(kl)
    per_row = (1.0 - alpha) * kl + alpha * hard
    n = int(s.shape[0])
    beta = float(per_row.sum())
    return {
        "beta": beta,
        "beta_mean": beta / n if n else float("nan"),
        "beta_soft_ce": float(soft_ce.sum()),
        "n_train": n,
        "alpha": float(alpha),
        "temperature": float(temperature),
    }

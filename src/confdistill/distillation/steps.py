"""One step function per kind of training: the loss of one micro-batch, beside the loop that calls it.

* :func:`finetune_step` — the teacher's training: CE to the gold label (MSE for regression);
* :func:`stage1_step` — TinyBERT stage 1: MSE of attention scores + hidden states of the mapped
  layers (embeddings included), through :class:`Stage1Student` (student + fit_denses);
* :func:`stage2_step` — TinyBERT stage 2: (1 − α)·soft CE to the cached teacher logits at T
  (+ α·hard CE, + λ·confidence gap); STS-B (regression) trains on the MSE to the gold score, as
  TinyBERT's task_distill.py does.

Every step returns ``(loss, parts)``: the micro-batch's share of the global batch's mean loss
(its rows' sum divided by the global row count ``n_rows``, so that the micro-batches of one step
add up to the batch mean) and the loss parts to log. Losses are computed in float32 also under
mixed precision (activations are cast before the MSE / CE).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from confdistill.distillation.losses import hard_label_loss, intermediate_loss, prediction_loss
from confdistill.distillation.settings import Stage2Loss
from confdistill.models.families import ALL_INPUTS, model_inputs


@dataclass
class StepContext:
    """What a step needs besides the model and the batch."""

    kind: str
    is_regression: bool
    teacher: nn.Module | None = None             # stage 1: run in inference mode every step
    mapping: list[int] | None = None             # stage 1: [g(0), …, g(M)]
    teacher_logits: torch.Tensor | None = None   # stage 2: (n_train, k), cached once
    stage2: Stage2Loss | None = None
    autocast: Callable[[], Any] | None = None    # the accelerator's autocast (teacher forward in stage 1)


class Stage1Student(nn.Module):
    """Student + fit_denses as one module (so DDP sees every trainable parameter in one forward).

    forward returns (M attention-score tensors (batch, heads, q, k), M+1 hidden states projected to
    the teacher's width (batch, seq, d_t), embeddings first).
    """

    def __init__(self, student: nn.Module, fit_denses: nn.ModuleList | None) -> None:
        super().__init__()
        self.student = student
        self.fit_denses = fit_denses

    def forward(self, **inputs: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        from confdistill.models.attention_scores import capture_attention_scores

        with capture_attention_scores(self.student) as scores:
            out = self.student.base_model(**model_inputs(self.student, inputs), output_hidden_states=True)
        hidden = list(out.hidden_states)
        if self.fit_denses is not None:
            hidden = [f(h) for f, h in zip(self.fit_denses, hidden, strict=True)]
        return [scores[i] for i in range(len(scores))], hidden


def stage1_loss(model: nn.Module, teacher: nn.Module, mapping: list[int], inputs: dict[str, torch.Tensor],
                *, n_rows: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stage-1 loss of one batch: (total, attention part, hidden part).

    model: a :class:`Stage1Student` (or its DDP wrapper); teacher: the teacher classifier, run in
    inference mode capturing only the mapped layers; inputs: input_ids / attention_mask /
    token_type_ids of shape (batch, seq) (each model takes those its family takes).
    """
    from confdistill.models.attention_scores import capture_attention_scores

    with torch.inference_mode(), capture_attention_scores(teacher, [g - 1 for g in mapping[1:]]) as t_scores:
        t_out = teacher.base_model(**model_inputs(teacher, inputs), output_hidden_states=True)
    s_scores, s_hidden = model(**inputs)
    return intermediate_loss([s.float() for s in s_scores], {g - 1: t_scores[g - 1].float() for g in mapping[1:]},
                             [h.float() for h in s_hidden], [h.float() for h in t_out.hidden_states],
                             mapping, None, n_rows=n_rows)


def _inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: batch[k] for k in ALL_INPUTS}


def finetune_step(model: nn.Module, batch: dict[str, torch.Tensor], ctx: StepContext,
                  n_rows: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    logits = model(**model_inputs(model, batch)).logits.float()
    return hard_label_loss(logits, batch["labels"], is_regression=ctx.is_regression, n_rows=n_rows), {}


def stage1_step(model: nn.Module, batch: dict[str, torch.Tensor], ctx: StepContext,
                n_rows: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    assert ctx.teacher is not None and ctx.mapping is not None
    with ctx.autocast() if ctx.autocast is not None else contextlib.nullcontext():
        loss, att, rep = stage1_loss(model, ctx.teacher, ctx.mapping, _inputs(batch), n_rows=n_rows)
    return loss, {"att_loss": att.detach(), "rep_loss": rep.detach()}


def stage2_step(model: nn.Module, batch: dict[str, torch.Tensor], ctx: StepContext,
                n_rows: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    logits = model(**model_inputs(model, batch)).logits.float()
    if ctx.is_regression:
        # TinyBERT's prediction-layer distillation for regression: MSE to the gold score.
        return hard_label_loss(logits, batch["labels"], is_regression=True, n_rows=n_rows), {}
    assert ctx.teacher_logits is not None and ctx.stage2 is not None
    t_logits = ctx.teacher_logits[batch["index"].cpu()].to(logits.device)
    loss, parts = prediction_loss(logits, t_logits, batch["labels"], temperature=ctx.stage2.temperature,
                                  alpha=ctx.stage2.alpha, lambda_conf=ctx.stage2.lambda_conf, n_rows=n_rows)
    return loss, {f"{k}_loss": v for k, v in parts.items()}


STEPS: dict[str, Callable[..., tuple[torch.Tensor, dict[str, torch.Tensor]]]] = {
    "finetune": finetune_step, "intermediate": stage1_step, "prediction": stage2_step}


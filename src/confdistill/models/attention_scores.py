"""Capture the pre-softmax attention *scores* of every encoder family, the quantity TinyBERT's stage 1 matches.

transformers 5 dispatches self-attention through ``AttentionInterface`` (BERT, RoBERTa, XLM-R,
ELECTRA, DistilBERT, ModernBERT — :mod:`confdistill.models.families` says which): the default
``sdpa`` kernel returns no attention tensor at all, and ``eager`` returns probabilities *after*
softmax. TinyBERT needs the scores before softmax, ``S = Q·Kᵀ/√d_head + mask`` with shape
``(batch, heads, q_len, k_len)``. We register one more attention implementation,
``"confdistill_scores"``, that computes exactly the eager formula (same ops, same order, so the
output equals eager's bit for bit), stores ``S`` for the layers being captured, and falls back to
the fused SDPA kernel (with the same additive mask) for layers nobody asked for — e.g. teacher
layers that no student layer is mapped to. The layer's queries and keys are whatever the family
hands the interface: ModernBERT's after its rotary embedding, with its sliding-window mask on the
local layers (keys outside the window get the additive ``finfo.min``, like padding).

The mask for this implementation is the eager one: 0 where attended, ``finfo(dtype).min`` where
padded (old BERT used −10000). Scores at padded key positions are therefore ≤ −100, which is the
threshold TinyBERT uses to zero them before the MSE (see :func:`zero_masked_scores`).

**DeBERTa** (v2/v3) does not use the interface: ``DisentangledSelfAttention`` adds its position
terms (content→position and position→content, scaled by ``1/√(3·d_head)`` like the content term)
to the content scores itself. Its capture (:mod:`confdistill.models.deberta_scores`) replaces
that module's forward, for the captured layers and the duration of the block, by one that runs
the same operations and records the sum of the three terms after the mask (``finfo.min`` at masked
positions), before the softmax.

Usage::

    with capture_attention_scores(model) as scores:
        out = model(**batch, output_hidden_states=True)
    scores[i]   # layer i (0-based), (batch, heads, q, k), carries grad if the forward did
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface, eager_mask

ATTN_IMPLEMENTATION = "confdistill_scores"
#: TinyBERT (``task_distill.py``) sets attention scores ``<= -1e2`` to 0 before the MSE.
MASKED_SCORE_THRESHOLD = -100.0

_COLLECTOR_ATTR = "_confdistill_scores"


def _scores_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: object,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Eager attention that records pre-softmax scores on ``module`` when it is being captured.

    query/key/value: (batch, heads, seq, d_head); attention_mask: additive (batch, 1, q, k) or None.
    Returns (batch, q, heads, d_head) output like every transformers attention function.
    """
    target: tuple[dict[int, torch.Tensor], int] | None = getattr(module, _COLLECTOR_ATTR, None)
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    if target is None:
        # Not captured: the fused kernel, with the same additive float mask.
        out = torch.nn.functional.scaled_dot_product_attention(
            query, key, value, attn_mask=attention_mask, dropout_p=dropout if module.training else 0.0,
            scale=scaling,
        )
        return out.transpose(1, 2).contiguous(), None
    # Same expression as transformers' eager_attention_forward, so results match it exactly.
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        scores = scores + attention_mask
    target[0][target[1]] = scores
    probs = nn.functional.softmax(scores, dim=-1)
    probs = nn.functional.dropout(probs, p=dropout, training=module.training)
    out = torch.matmul(probs, value)
    return out.transpose(1, 2).contiguous(), probs


# Registered once at import: the attention function and the eager-style additive mask for it
# (without a mask function registered under the same name transformers would pass no mask at all).
AttentionInterface.register(ATTN_IMPLEMENTATION, _scores_attention_forward)
AttentionMaskInterface.register(ATTN_IMPLEMENTATION, eager_mask)
assert ATTN_IMPLEMENTATION in ALL_MASK_ATTENTION_FUNCTIONS._global_mapping


def self_attention_modules(model: nn.Module) -> list[nn.Module]:
    """The self-attention sub-modules of a supported encoder, in layer order (index = layer)."""
    from confdistill.models.families import family_of

    return family_of(model).attention_modules(model)


def use_scores_attention(model: nn.Module) -> None:
    """Switch ``model`` (all its sub-configs) to the score-capturing attention implementation.

    Layers that are not being captured still run the fused SDPA kernel, so this is cheap to leave on.
    """
    for m in model.modules():
        cfg = getattr(m, "config", None)
        if cfg is not None and hasattr(cfg, "_attn_implementation"):
            cfg._attn_implementation = ATTN_IMPLEMENTATION


@contextlib.contextmanager
def capture_attention_scores(
    model: nn.Module, layers: Iterable[int] | None = None
) -> Iterator[dict[int, torch.Tensor]]:
    """Collect pre-softmax attention scores of ``model`` during the forward passes in the block.

    layers: 0-based encoder layer indices to capture (default: all). Yields a dict
    ``{layer: (batch, heads, q, k) tensor}`` filled by the forward pass (the last forward wins).
    The model's attention implementation (or, for DeBERTa, its attention modules' forward) is
    switched for the block and restored afterwards.
    """
    from confdistill.models.families import family_of

    family = family_of(model)
    mods = family.attention_modules(model)
    wanted = set(range(len(mods))) if layers is None else {int(i) for i in layers}
    store: dict[int, torch.Tensor] = {}
    if family.scores == "deberta":
        from confdistill.models.deberta_scores import capture_deberta_scores

        with capture_deberta_scores([(i, m) for i, m in enumerate(mods) if i in wanted], store):
            yield store
        return
    configs = {id(m.config): m.config for m in model.modules() if hasattr(getattr(m, "config", None), "_attn_implementation")}
    previous = {k: c._attn_implementation for k, c in configs.items()}
    try:
        for c in configs.values():
            c._attn_implementation = ATTN_IMPLEMENTATION
        for i, m in enumerate(mods):
            if i in wanted:
                setattr(m, _COLLECTOR_ATTR, (store, i))
        yield store
    finally:
        for m in mods:
            if hasattr(m, _COLLECTOR_ATTR):
                delattr(m, _COLLECTOR_ATTR)
        for k, c in configs.items():
            c._attn_implementation = previous[k]


def zero_masked_scores(scores: torch.Tensor) -> torch.Tensor:
    """TinyBERT's rule: scores ``<= -100`` (padded keys, whose additive mask is ``finfo.min``) become 0."""
    return torch.where(scores <= MASKED_SCORE_THRESHOLD, torch.zeros_like(scores), scores)

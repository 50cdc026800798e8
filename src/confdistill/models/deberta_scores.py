"""Pre-softmax scores of DeBERTa-v2/v3's disentangled attention (TinyBERT's stage-1 target for DeBERTa).

``DisentangledSelfAttention`` does not go through transformers' ``AttentionInterface``: it sums
content→content ``Q·Kᵀ``, content→position ``Q·K_rᵀ`` and position→content ``K·Q_rᵀ`` (each over
``√(d_head · scale_factor)``, scale_factor = 1 + one per position term), fills masked positions with
``finfo.min`` and takes the softmax. The attention-interface capture cannot see that sum, so
:func:`capture_deberta_scores` replaces the forward of the captured modules (an instance attribute,
removed afterwards) by :func:`_forward_recording`: transformers' forward, the same operations in the
same order through the module's own ``transpose_for_scores`` and ``disentangled_attention_bias``,
that also records the masked sum before the softmax. Its outputs equal the original's bit for bit
(tests/test_families.py checks the logits and the ``output_attentions`` probabilities).
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

__all__ = ["capture_deberta_scores"]


def _forward_recording(self: Any, hidden_states: torch.Tensor, attention_mask: torch.Tensor,
                       output_attentions: bool = False, query_states: torch.Tensor | None = None,
                       relative_pos: torch.Tensor | None = None, rel_embeddings: torch.Tensor | None = None,
                       ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """transformers 5's ``DisentangledSelfAttention.forward``, recording the scores before the softmax."""
    from transformers.models.deberta_v2.modeling_deberta_v2 import scaled_size_sqrt

    store, index = self._confdistill_target
    if query_states is None:
        query_states = hidden_states
    query_layer = self.transpose_for_scores(self.query_proj(query_states), self.num_attention_heads)
    key_layer = self.transpose_for_scores(self.key_proj(hidden_states), self.num_attention_heads)
    value_layer = self.transpose_for_scores(self.value_proj(hidden_states), self.num_attention_heads)
    rel_att = None
    scale_factor = 1 + ("c2p" in self.pos_att_type) + ("p2c" in self.pos_att_type)
    scale = scaled_size_sqrt(query_layer, scale_factor)
    attention_scores = torch.bmm(query_layer, key_layer.transpose(-1, -2) / scale.to(dtype=query_layer.dtype))
    if self.relative_attention:
        rel_embeddings = self.pos_dropout(rel_embeddings)
        rel_att = self.disentangled_attention_bias(query_layer, key_layer, relative_pos, rel_embeddings, scale_factor)
    if rel_att is not None:
        attention_scores = attention_scores + rel_att
    attention_scores = attention_scores.view(-1, self.num_attention_heads, attention_scores.size(-2),
                                             attention_scores.size(-1))
    attention_scores = attention_scores.masked_fill(~(attention_mask.bool()), torch.finfo(query_layer.dtype).min)
    store[index] = attention_scores
    attention_probs = self.dropout(nn.functional.softmax(attention_scores, dim=-1))
    context_layer = torch.bmm(attention_probs.view(-1, attention_probs.size(-2), attention_probs.size(-1)),
                              value_layer)
    context_layer = (context_layer.view(-1, self.num_attention_heads, context_layer.size(-2), context_layer.size(-1))
                     .permute(0, 2, 1, 3).contiguous())
    context_layer = context_layer.view((*context_layer.size()[:-2], -1))
    return (context_layer, attention_probs if output_attentions else None)


@contextlib.contextmanager
def capture_deberta_scores(modules: list[tuple[int, nn.Module]], store: dict[int, torch.Tensor]) -> Iterator[None]:
    """Record the scores of each ``(layer, DisentangledSelfAttention)`` in ``store[layer]`` during the block."""
    try:
        for index, module in modules:
            module._confdistill_target = (store, index)
            module.forward = types.MethodType(_forward_recording, module)
        yield
    finally:
        for _, module in modules:
            for name in ("forward", "_confdistill_target"):
                if name in module.__dict__:
                    delattr(module, name)

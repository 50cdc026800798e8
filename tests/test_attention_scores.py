"""Pre-softmax attention score capture: equals a hand computation from the Q/K weights, and the
model's outputs are unchanged (eager-equal) while capturing."""

from __future__ import annotations

import pytest
import torch

from confdistill.models.attention_scores import (
    ATTN_IMPLEMENTATION,
    capture_attention_scores,
    zero_masked_scores,
)
from distill_helpers import hand_scores


def _model(layers: int = 3, hidden: int = 32, heads: int = 4):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=120, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                     intermediate_size=64, max_position_embeddings=64)
    return BertForSequenceClassification(cfg).eval()


def _batch():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 120, (3, 11), generator=g)
    mask = torch.ones(3, 11, dtype=torch.long)
    mask[1, 7:] = 0
    mask[2, 2:] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


def _hand_scores(model, hidden_in: torch.Tensor, layer: int, mask: torch.Tensor) -> torch.Tensor:
    """Q·Kᵀ/√d + transformers 5's additive mask (float32 min), from the layer's weights."""
    return hand_scores(model, hidden_in, layer, mask, torch.finfo(torch.float32).min)


def test_scores_match_hand_computation_and_outputs_unchanged() -> None:
    model = _model()
    batch = _batch()
    with torch.no_grad():
        ref = model(**batch, output_hidden_states=True)  # default sdpa path
        with capture_attention_scores(model) as scores:
            out = model(**batch, output_hidden_states=True)
    assert sorted(scores) == [0, 1, 2]
    assert model.config._attn_implementation != ATTN_IMPLEMENTATION  # restored
    torch.testing.assert_close(out.logits, ref.logits, atol=1e-6, rtol=1e-5)
    for layer in range(3):
        assert scores[layer].shape == (3, 4, 11, 11)
        hand = _hand_scores(model, ref.hidden_states[layer], layer, batch["attention_mask"])
        torch.testing.assert_close(zero_masked_scores(scores[layer]), zero_masked_scores(hand), atol=1e-5, rtol=1e-5)
    # Padded keys are exactly zero after TinyBERT's rule; real keys are untouched.
    z = zero_masked_scores(scores[0])
    assert torch.all(z[2, :, :, 2:] == 0) and torch.all(z[1, :, :, 7:] == 0)
    assert torch.count_nonzero(z[2, :, :, :2]) == 4 * 11 * 2


def test_capture_equals_eager_probabilities_bitwise() -> None:
    model = _model()
    batch = _batch()
    model.set_attn_implementation("eager")
    with torch.no_grad():
        eager = model(**batch, output_attentions=True)
        with capture_attention_scores(model) as scores:
            out = model(**batch)
    assert torch.equal(out.logits, eager.logits)
    for layer in range(3):
        assert torch.equal(torch.softmax(scores[layer], -1), eager.attentions[layer])


def test_capture_selected_layers_and_gradients() -> None:
    model = _model().train()
    batch = _batch()
    with capture_attention_scores(model, layers=[1]) as scores:
        model(**batch)
    assert list(scores) == [1]
    scores[1].square().mean().backward()
    assert model.bert.encoder.layer[1].attention.self.query.weight.grad is not None
    assert model.bert.encoder.layer[2].attention.self.query.weight.grad is None


def test_capture_rejects_non_bert() -> None:
    with pytest.raises(TypeError), capture_attention_scores(torch.nn.Linear(2, 2)):
        pass

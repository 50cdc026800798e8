"""Loss functions against independent numpy computations of the formulas (TinyBERT, β, the gap term)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from confdistill.distillation.losses import (
    attention_mse,
    beta_statistics,
    confidence_gap_loss,
    hard_label_loss,
    hidden_mse,
    make_fit_denses,
    prediction_loss,
    soft_cross_entropy,
)


def _np_softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _logits(seed: int, n: int = 7, k: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, k, generator=g, dtype=torch.float64) * 2, torch.randn(n, k, generator=g, dtype=torch.float64) * 2


@pytest.mark.parametrize("temperature", [1.0, 2.0, 0.5])
def test_soft_cross_entropy_is_tinybert_formula(temperature: float) -> None:
    s, t = _logits(0)
    q_t = _np_softmax(t.numpy() / temperature)
    log_q_s = np.log(_np_softmax(s.numpy() / temperature))
    per_row = -(q_t * log_q_s).sum(1)
    assert float(soft_cross_entropy(s, t, temperature)) == pytest.approx(per_row.mean(), rel=1e-10)
    assert float(soft_cross_entropy(s, t, temperature, "sum")) == pytest.approx(per_row.sum(), rel=1e-10)
    np.testing.assert_allclose(soft_cross_entropy(s, t, temperature, "none").numpy(), per_row, rtol=1e-10)
    # TinyBERT's code `(-targets_prob * student_likelihood).mean()` = ours / number of classes.
    tinybert = float((-torch.softmax(t / temperature, -1) * torch.log_softmax(s / temperature, -1)).mean())
    assert float(soft_cross_entropy(s, t, temperature)) == pytest.approx(3 * tinybert, rel=1e-10)


def test_confidence_gap_is_half_squared_distance_and_dp0_squared_for_two_classes() -> None:
    s, t = _logits(1, k=4)
    expected = 0.5 * ((_np_softmax(t.numpy()) - _np_softmax(s.numpy())) ** 2).sum(1).mean()
    assert float(confidence_gap_loss(s, t)) == pytest.approx(expected, rel=1e-10)
    s2, t2 = _logits(2, k=2)
    dp0 = _np_softmax(t2.numpy())[:, 0] - _np_softmax(s2.numpy())[:, 0]
    assert float(confidence_gap_loss(s2, t2)) == pytest.approx((dp0**2).mean(), rel=1e-10)
    assert float(confidence_gap_loss(t2, t2)) == 0.0


def test_prediction_loss_mixture_and_regression() -> None:
    s, t = _logits(3)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0])
    total, parts = prediction_loss(s, t, y, temperature=2.0, alpha=0.3, lambda_conf=0.7)
    soft = soft_cross_entropy(s, t, 2.0)
    hard = torch.nn.functional.cross_entropy(s, y)  # hard label at T = 1
    assert float(total) == pytest.approx(float(0.7 * soft + 0.3 * hard + 0.7 * confidence_gap_loss(s, t)), rel=1e-10)
    assert float(parts["soft"]) == pytest.approx(float(soft)) and float(parts["hard"]) == pytest.approx(float(hard))
    # alpha = 0, lambda = 0: exactly TinyBERT's soft CE.
    assert float(prediction_loss(s, t, y)[0]) == pytest.approx(float(soft_cross_entropy(s, t)), rel=1e-12)
    # STS-B: (1−α)·MSE to the teacher + α·MSE to the label.
    sr, tr, yr = torch.tensor([[1.0], [2.0]]), torch.tensor([[1.5], [1.0]]), torch.tensor([2.0, 2.0])
    total, _ = prediction_loss(sr, tr, yr, alpha=0.25, is_regression=True)
    assert float(total) == pytest.approx(0.75 * (0.25 + 1.0) / 2 + 0.25 * (1.0 + 0.0) / 2)
    assert float(hard_label_loss(sr, yr, is_regression=True)) == pytest.approx(0.5)


def test_global_row_normalisation_recombines_slices() -> None:
    """Under data parallelism each process averages its slice over the global row count (× P):
    the mean over processes then equals the full-batch loss, for uneven slices too."""
    g = torch.Generator().manual_seed(4)
    s, t = torch.randn(5, 2, 3, 3, generator=g), torch.randn(5, 2, 3, 3, generator=g)
    full = attention_mse(s, t)
    parts = [attention_mse(s[:3], t[:3], n_rows=5) * 2, attention_mse(s[3:], t[3:], n_rows=5) * 2]
    assert float(sum(parts) / 2) == pytest.approx(float(full), rel=1e-6)
    ls, lt = _logits(5, n=5)
    y = torch.tensor([0, 1, 2, 1, 0])
    full = prediction_loss(ls, lt, y, alpha=0.5)[0]
    parts = [prediction_loss(ls[:3], lt[:3], y[:3], alpha=0.5, n_rows=5)[0] * 2,
             prediction_loss(ls[3:], lt[3:], y[3:], alpha=0.5, n_rows=5)[0] * 2]
    assert float(sum(parts) / 2) == pytest.approx(float(full), rel=1e-12)


def test_mse_parts_zero_masked_scores() -> None:
    s = torch.tensor([[[[1.0, -3e38], [2.0, -1e4]]]])
    t = torch.tensor([[[[0.0, -1e9], [0.0, 5.0]]]])
    # Masked entries (≤ −100) become 0 in both: (1² + 0 + 2² + (0 − 5)²) / 4.
    assert float(attention_mse(s, t)) == pytest.approx((1 + 4 + 25) / 4)
    h = torch.arange(6.0).view(1, 2, 3)
    assert float(hidden_mse(h, torch.zeros_like(h))) == pytest.approx(float((h**2).mean()))
    assert make_fit_denses(32, 32, 3) is None
    fd = make_fit_denses(32, 64, 3)
    assert fd is not None and len(fd) == 4 and fd[0].weight.shape == (64, 32)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), alpha=st.floats(0.0, 0.9), temperature=st.sampled_from([1.0, 1.5, 3.0]),
       k=st.integers(2, 4))
def test_beta_statistics_match_numpy(seed: int, alpha: float, temperature: float, k: int) -> None:
    s, t = _logits(seed, n=11, k=k)
    y = torch.arange(11) % k
    out = beta_statistics(s, t, y, alpha=alpha, temperature=temperature)
    q_t = _np_softmax(t.numpy() / temperature)
    q_s = _np_softmax(s.numpy() / temperature)
    kl = (q_t * (np.log(q_t) - np.log(q_s))).sum(1)
    ce = -np.log(_np_softmax(s.numpy())[np.arange(11), y.numpy()])
    beta = ((1 - alpha) * kl + alpha * ce).sum()
    assert out["beta"] == pytest.approx(beta, rel=1e-9)
    assert out["beta_mean"] == pytest.approx(beta / 11, rel=1e-9)
    assert out["beta_soft_ce"] == pytest.approx(-(q_t * np.log(q_s)).sum(), rel=1e-9)
    assert out["n_train"] == 11 and out["alpha"] == alpha and out["temperature"] == temperature
    # soft CE = H(q_t) + KL ≥ KL: β from soft CE would be a looser (valid) bound.
    assert out["beta_soft_ce"] >= (kl.sum() - 1e-9)

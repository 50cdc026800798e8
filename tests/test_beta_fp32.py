"""β and σ are measured in float32 whatever the training precision (issue 20, item 1).

accelerate's ``prepare()`` under mixed precision replaces the student's ``forward`` by an autocast
wrapper, so a ``torch.autocast(enabled=False)`` around the call does not turn it off. These tests
train under bf16 (CPU) or fp16 (CUDA) autocast and recompute β and σ independently of the project's
prediction path: a plain transformers forward in float32 of the saved teacher and the saved analysed
student, one example at a time, and docs/method.md's definitions in float64 numpy.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from confdistill.distillation import DistillConfig, distill
from distill_helpers import copy_model, log_softmax, one_thread, softmax, write_sst2

pytestmark = pytest.mark.usefixtures(one_thread.__name__)
NO_DROPOUT = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
# α = 0 (TinyBERT's default): β is then the KL alone, which half precision moves by ~0.5% here;
# a hard-label term (α > 0) would add a large CE that half precision barely moves.
ALPHA, TEMPERATURE = 0.0, 2.0


def _split(data: Path, split: str) -> tuple[list[str], np.ndarray]:
    lines = (data / "SST-2" / f"{split}.tsv").read_text(encoding="utf-8").splitlines()[1:]
    rows = [line.split("\t") for line in lines]
    return [r[0] for r in rows], np.array([int(r[1]) for r in rows])


def _logits(model_dir: Path, texts: list[str], autocast: str | None = None, device: str = "cpu") -> np.ndarray:
    """(n, k) float64 logits of a saved model: transformers' own classes, eval mode, one row per call."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=torch.float32).to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(autocast or "")
    rows = []
    with torch.no_grad(), torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None):
        for text in texts:
            enc = tokenizer(text, truncation=True, max_length=128, return_tensors="pt").to(device)
            rows.append(model(**enc).logits.float().cpu().numpy()[0])
    return np.asarray(rows, dtype=np.float64)


def _beta(t: np.ndarray, s: np.ndarray, y: np.ndarray) -> float:
    """β = Σ_x [(1−α)·KL(q_t^T ‖ q_s^T) + α·CE(y, p_s)] (docs/method.md), float64."""
    log_qt, log_qs = log_softmax(t / TEMPERATURE), log_softmax(s / TEMPERATURE)
    kl = (np.exp(log_qt) * (log_qt - log_qs)).sum(1)
    ce = -log_softmax(s)[np.arange(len(y)), y]
    return float(((1 - ALPHA) * kl + ALPHA * ce).sum())


def _sigma(t: np.ndarray, s: np.ndarray, y: np.ndarray) -> float:
    """σ: population std of p0(teacher) − p0(student) over the rows both classify right (2 classes)."""
    both = (t.argmax(1) == y) & (s.argmax(1) == y)
    return float(np.std(softmax(t)[both, 0] - softmax(s)[both, 0]))


CASES = [
    pytest.param("cpu", "bf16", "final", id="cpu-bf16-final"),
    pytest.param("cpu", "bf16", "best", id="cpu-bf16-best"),
    pytest.param("cuda", "fp16", "final", id="cuda-fp16-final", marks=pytest.mark.skipif(
        not torch.cuda.is_available(), reason="fp16 autocast needs a CUDA device (none here)")),
]


@pytest.mark.parametrize(("device", "precision", "analyse"), CASES)
def test_mixed_precision_run_records_the_fp32_beta_and_sigma_of_the_saved_models(
        device: str, precision: str, analyse: str, tiny_bert: Callable[..., Path], tmp_path: Path) -> None:
    data = write_sst2(tmp_path, 48, 24, real=False)
    t = copy_model(tiny_bert(layers=2, hidden=32, heads=2, intermediate=64), tmp_path / "t", **NO_DROPOUT)
    s = copy_model(tiny_bert(layers=2, hidden=32, heads=2, intermediate=64), tmp_path / "s", **NO_DROPOUT)
    out = tmp_path / "kd"
    run = distill(DistillConfig(
        teacher=str(t), student=str(s), task="sst2", data_dir=str(data), stage="prediction", out=str(out),
        num_train_epochs=2, train_batch_size=16, learning_rate=2e-3, eval_step=2, checkpoint_steps=None,
        mixed_precision=precision, device=device, analyse=analyse, alpha=ALPHA, temperature=TEMPERATURE))
    assert run["mixed_precision"] == precision and run["beta_model"] == analyse

    texts, y = _split(data, "train")
    z_t, z_s = _logits(t, texts, device=device), _logits(out / analyse, texts, device=device)
    beta = _beta(z_t, z_s, y)
    # The test can fail: the same forward under the training's autocast moves β well beyond 1e-6.
    beta_autocast = _beta(z_t, _logits(out / analyse, texts, precision, device), y)
    assert abs(beta_autocast - beta) > 1e-4 * beta, (beta_autocast, beta)
    assert run["beta"] == pytest.approx(beta, rel=1e-6)
    assert run["n_train"] == len(texts)

    # σ of the last evaluation (dev) is the fp32 σ of the final model, whose weights are saved in final/.
    dev_texts, dev_y = _split(data, "dev")
    d_t, d_s = _logits(t, dev_texts, device=device), _logits(out / "final", dev_texts, device=device)
    sigma = _sigma(d_t, d_s, dev_y)
    sigma_autocast = _sigma(d_t, _logits(out / "final", dev_texts, precision, device), dev_y)
    assert abs(sigma_autocast - sigma) > 1e-2 * sigma, (sigma_autocast, sigma)
    last_eval = [e for e in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "eval" in e][-1]
    assert last_eval["step"] == run["steps"] and last_eval["eval"]["n_both"] > 0
    # σ ≈ 2e-6 here, a spread of p0 gaps near float32's resolution: padded batches and one-row
    # forwards differ by ~1e-4 of it, autocast by a factor of ~5.
    assert last_eval["eval"]["sigma"] == pytest.approx(sigma, rel=1e-3), sigma_autocast
    assert last_eval["eval"]["accuracy"] == pytest.approx(float((d_s.argmax(1) == dev_y).mean()))
    assert run["beta_precision"].startswith("float32 forward without autocast")


def test_plain_forward_sets_the_autocast_wrapper_aside_for_the_block_only(tiny_bert: Callable[..., Path]) -> None:
    """Inside the block the prepared model computes as the unprepared one; after it, under autocast again."""
    from accelerate import Accelerator
    from transformers import AutoModelForSequenceClassification

    from confdistill.distillation.batches import accelerator_for
    from confdistill.prediction.predict import plain_forward

    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert(layers=2, hidden=32, heads=2,
                                                                          intermediate=64)).eval()
    inputs = {"input_ids": torch.tensor([[101, 2204, 3185, 2001, 2307, 102]])}
    with torch.no_grad():
        reference = model(**inputs).logits
        job = SimpleNamespace(device="cpu", loop=SimpleNamespace(mixed_precision="bf16"))  # what it reads
        prepared = accelerator_for(Accelerator, job).prepare(model)
        wrapped = prepared(**inputs).logits
        with plain_forward(prepared) as plain:
            inside = plain(**inputs).logits
        after = prepared(**inputs).logits
    assert not torch.equal(wrapped, reference)   # bf16 autocast changes these logits
    assert torch.equal(inside, reference)
    assert torch.equal(after, wrapped)

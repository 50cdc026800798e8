"""The sliced start of a narrow student (``encoder_init = "sliced"``): the teacher's mapped layers cut
to the narrow sizes. Checked against independent computations from the teacher's weights."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from confdistill.distillation.general_config import StudentShape
from confdistill.distillation.mapping import layer_mapping
from confdistill.errors import InputError
from confdistill.models.general_student import (
    fresh_student,
    pca_projection,
    residual_projection,
    slice_teacher_layers,
)
from confdistill.models.loading import load_classifier


def _batch(vocab: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab, (3, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def test_equal_sizes_give_exactly_the_teachers_mapped_layers(tiny_bert: Callable[..., Path]) -> None:
    teacher, _ = load_classifier(tiny_bert(layers=4, hidden=32, heads=2, intermediate=64))
    teacher.eval()
    student, _ = fresh_student(teacher, layers=2, hidden=32, heads=2, intermediate=64)
    picks = [g - 1 for g in layer_mapping(2, 4)[1:]]
    record = slice_teacher_layers(student, teacher, picks, residual_projection(teacher, 32))
    # independent: the teacher with only its mapped layers kept
    dropped = copy.deepcopy(teacher)
    dropped.base_model.encoder.layer = torch.nn.ModuleList([dropped.base_model.encoder.layer[j] for j in picks])
    dropped.config.num_hidden_layers = 2
    batch = _batch(teacher.config.vocab_size)
    with torch.no_grad():
        want = dropped(**batch).logits
        got = student.eval()(**batch).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert record["encoder_init"] == f"sliced from teacher layers {[j + 1 for j in picks]}"


def test_narrow_slice_follows_the_formulas(tiny_bert: Callable[..., Path]) -> None:
    teacher, _ = load_classifier(tiny_bert(layers=2, hidden=32, heads=2, intermediate=64))
    student, _ = fresh_student(teacher, layers=1, hidden=16, heads=2, intermediate=24)
    slice_teacher_layers(student, teacher, [1], residual_projection(teacher, 16))
    proj = pca_projection(teacher.base_model.embeddings.word_embeddings.weight, 16)
    t_layer, s_layer = teacher.base_model.encoder.layer[1], student.base_model.encoder.layer[0]
    wq, wk = t_layer.attention.self.query.weight.detach(), t_layer.attention.self.key.weight.detach()
    keep = []
    for h in range(2):  # per head: the 8 of 16 dims with the largest |q row|·|k row|, in order
        score = [(float(wq[d].norm() * wk[d].norm()), d) for d in range(16 * h, 16 * h + 16)]
        keep += sorted(d for _, d in sorted(score, reverse=True)[:8])
    with torch.no_grad():
        torch.testing.assert_close(s_layer.attention.self.query.weight, wq[keep] @ proj)
        torch.testing.assert_close(s_layer.attention.self.key.bias, t_layer.attention.self.key.bias[keep])
        w_in, w_out = t_layer.intermediate.dense.weight.detach(), t_layer.output.dense.weight.detach()
        units = sorted(sorted(range(64), key=lambda u: -float(w_in[u].norm() * w_out[:, u].norm()))[:24])
        torch.testing.assert_close(s_layer.output.dense.weight, proj.T @ w_out[:, units])
        torch.testing.assert_close(s_layer.output.dense.bias, proj.T @ t_layer.output.dense.bias)
        gamma = t_layer.output.LayerNorm.weight
        torch.testing.assert_close(s_layer.output.LayerNorm.weight, torch.diagonal(proj.T @ torch.diag(gamma) @ proj))
        torch.testing.assert_close(student.classifier.weight, teacher.classifier.weight @ proj)


def test_slicing_refuses_what_it_cannot_cut(tiny_bert: Callable[..., Path]) -> None:
    teacher, _ = load_classifier(tiny_bert(layers=2, hidden=32, heads=2, intermediate=64))
    student, _ = fresh_student(teacher, layers=1, hidden=16, heads=2, intermediate=128)
    with pytest.raises(ValueError, match="feed-forward size <= 64"):
        slice_teacher_layers(student, teacher, [1], residual_projection(teacher, 16))
    with pytest.raises(InputError, match="encoder_init sliced needs embeddings teacher"):
        StudentShape(layers=1, hidden=16, heads=2, intermediate=24, embeddings="fresh", encoder_init="sliced")


def test_general_distill_cli_starts_from_the_sliced_teacher(tiny_bert: Callable[..., Path], tmp_path: Path) -> None:
    import json

    from confdistill.cli.main import main

    teacher = tiny_bert(layers=4, hidden=64, heads=2, intermediate=128)
    corpus = tmp_path / "c.txt"
    corpus.write_text("".join(f"plain sentence {i} of the corpus.\n" for i in range(16)))
    out = tmp_path / "general"
    assert main(["general-distill", "--teacher", str(teacher), "--corpus", str(corpus), "--layers", "2",
                 "--hidden", "32", "--heads", "2", "--intermediate", "64", "--encoder-init", "sliced",
                 "--out", str(out), "--device", "cpu", "--batch-size", "8", "--epochs", "1"]) == 0
    text = (out / "run.json").read_text()
    assert "sliced from teacher layers [2, 4]" in text, json.loads(text).keys()
    assert "least squares" in json.loads(text)["student"]["fit_dense_init"]  # fitted, not random


def test_fit_dense_start_is_the_least_squares_map(tiny_bert: Callable[..., Path]) -> None:
    """The shared fit_dense of a sliced start equals scikit-learn's Ridge on the stacked states."""
    import numpy as np
    from sklearn.linear_model import Ridge

    from confdistill.distillation.general import RIDGE, least_squares_fit_dense

    teacher, _ = load_classifier(tiny_bert(layers=4, hidden=64, heads=2, intermediate=128))
    teacher.eval()
    student, _ = fresh_student(teacher, layers=2, hidden=32, heads=2, intermediate=64, seed=1)
    mapping = layer_mapping(2, 4, "uniform")
    slice_teacher_layers(student, teacher, [g - 1 for g in mapping[1:]], residual_projection(teacher, 32))
    batches = [_batch(teacher.config.vocab_size), {k: v[:2] for k, v in _batch(teacher.config.vocab_size).items()}]
    student.train()
    weight, bias = least_squares_fit_dense(student, teacher, mapping, batches, torch.device("cpu"))
    assert student.training  # left as it was
    xs, ys = [], []
    with torch.no_grad():
        student.eval()
        for b in batches:
            keep = b["attention_mask"].bool().numpy()
            s_h = student.base_model(**b, output_hidden_states=True).hidden_states
            t_h = teacher.base_model(**b, output_hidden_states=True).hidden_states
            for m, g in enumerate(mapping):
                xs.append(s_h[m].numpy()[keep])
                ys.append(t_h[g].numpy()[keep])
    x = np.concatenate(xs).astype(np.float64)
    y = np.concatenate(ys).astype(np.float64)
    alpha = RIDGE * np.trace(np.cov(x.T, bias=True)) * len(x) / x.shape[1]
    ref = Ridge(alpha=alpha, fit_intercept=True, solver="svd").fit(x, y)
    assert weight.shape == (64, 32) and bias.shape == (64,)
    np.testing.assert_allclose(weight.numpy(), ref.coef_, atol=2e-4, rtol=1e-3)
    np.testing.assert_allclose(bias.numpy(), ref.intercept_, atol=2e-4, rtol=1e-3)
    assert np.abs(ref.coef_).max() < 50  # the ridge keeps the map tame (plain lstsq: ~1e4 here)
    # and it fits better than the slice's own projection P
    p = residual_projection(teacher, 32).double().numpy()
    fitted = ref.predict(x)
    assert ((fitted - y) ** 2).mean() < ((x @ p.T - y) ** 2).mean()

"""The restructured engine's TinyBERT fidelity and conventions, each against an independent computation:
STS-B stage 2 on the MSE to the gold score, TinyBERT's best-checkpoint metric, gradient accumulation
(the same gradient), mixed precision (β always fp32), ``analyse = "best"`` (β on that model), one
range rule for α and T, and the device / precision errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from confdistill import ranges
from confdistill.distillation import DistillConfig, FinetuneConfig, distill, finetune
from confdistill.errors import InputError
from distill_helpers import copy_model, kl_rows, one_thread, weights, write_sst2

pytestmark = pytest.mark.usefixtures(one_thread.__name__)
NO_DROPOUT = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}


def _stsb(root: Path, n: int = 24) -> Path:
    folder = root / "glue" / "STS-B"
    folder.mkdir(parents=True)
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    rows = [f"{i}\tg\tf\t2012\t{i}\ts\ts\ta film number {i}\tthe movie {i % 5}\t{(i % 6) * 0.8:.1f}\n" for i in range(n)]
    for split in ("train", "dev"):
        (folder / f"{split}.tsv").write_text(header + "".join(rows))
    return root / "glue"


def test_stsb_stage2_trains_on_the_gold_score_not_the_teacher(tiny_bert: Callable[..., Path], tmp_path: Path) -> None:
    """TinyBERT's task_distill.py: regression's prediction-layer loss is MSE(student, gold label)."""
    from confdistill.distillation.steps import StepContext, stage2_step

    student = torch.nn.Linear(3, 1)
    batch = {"input_ids": torch.zeros(4, 3), "labels": torch.tensor([0.5, 1.0, 2.0, 4.0])}

    class _Model(torch.nn.Module):
        def forward(self, **inputs: torch.Tensor) -> object:
            return type("Out", (), {"logits": student(inputs["input_ids"] + 1.0)})()

    ctx = StepContext("prediction", True, teacher_logits=torch.full((4, 1), 100.0))
    batch.update(attention_mask=torch.ones(4, 3), token_type_ids=torch.zeros(4, 3), index=torch.arange(4))
    loss, _ = stage2_step(_Model(), batch, ctx, n_rows=8)   # 4 of a global batch of 8 rows
    z = student(torch.ones(4, 3)).view(-1).detach()
    assert float(loss) == pytest.approx(float(((z - batch["labels"]) ** 2).sum() / 8), rel=1e-6)

    data = _stsb(tmp_path)
    t = copy_model(tiny_bert(layers=1, hidden=32, heads=2, intermediate=64, num_labels=1), tmp_path / "t", **NO_DROPOUT)
    run = distill(DistillConfig(teacher=str(t), student=str(t), task="STS-B", data_dir=str(data), stage="prediction",
                                out=str(tmp_path / "kd"), num_train_epochs=1, train_batch_size=8, eval_step=None,
                                checkpoint_steps=None))
    assert run["best"]["metric"] == "corr" and run["status"] == "complete"
    assert not (tmp_path / "kd" / "teacher_logits.pt").exists()  # the teacher's logits are not needed


def test_best_checkpoint_metric_is_tinyberts() -> None:
    from confdistill.data import get_task
    from confdistill.distillation.evaluation import selection_metric

    picked = {name: selection_metric(get_task(name)) for name in ("MRPC", "QQP", "SST-2", "RTE", "CoLA", "STS-B")}
    assert picked == {"MRPC": "accuracy", "QQP": "accuracy", "SST-2": "accuracy", "RTE": "accuracy",
                      "CoLA": "matthews_corr", "STS-B": "corr"}
    assert selection_metric(get_task("MRPC"), "f1") == "f1"
    assert "f1" in get_task("MRPC").metric_names and "f1" not in get_task("SST-2").metric_names
    # what --best-metric may name is what the scoring returns, task by task
    from confdistill.data import TASKS, compute_metrics

    for name in TASKS:
        assert get_task(name).metric_names == tuple(compute_metrics(name, [0.0, 1.0, 1.0], [0.0, 1.0, 0.0])), name


def test_gradient_accumulation_gives_the_same_weights(tiny_bert: Callable[..., Path], tmp_path: Path) -> None:
    data = write_sst2(tmp_path, 48, 8, real=False)
    model = copy_model(tiny_bert(layers=1, hidden=32, heads=2, intermediate=64), tmp_path / "m", **NO_DROPOUT)
    outs = {}
    for g in (1, 3):
        out = tmp_path / f"g{g}"
        run = finetune(FinetuneConfig(model=str(model), task="sst2", data_dir=str(data), out=str(out),
                                      num_train_epochs=1, train_batch_size=12, learning_rate=1e-3,
                                      gradient_accumulation_steps=g, eval_step=None, checkpoint_steps=None))
        assert run["gradient_accumulation_steps"] == g
        outs[g] = weights(out / "final")
    for name, w in outs[1].items():
        np.testing.assert_allclose(outs[3][name], w, atol=2e-5, err_msg=name)


def test_bf16_training_measures_beta_in_fp32_on_the_analysed_model(
        tiny_bert: Callable[..., Path], tmp_path: Path) -> None:
    """--mixed-precision bf16 trains under autocast; β is the fp32 KL of the analysed (best) model."""
    from confdistill.data import encode, load_split
    from confdistill.models.loading import load_classifier
    from confdistill.prediction.predict import predict_encoded

    data = write_sst2(tmp_path, 48, 16, real=False)
    t = copy_model(tiny_bert(layers=2, hidden=32, heads=2, intermediate=64), tmp_path / "t", **NO_DROPOUT)
    s = copy_model(tiny_bert(layers=1, hidden=32, heads=2, intermediate=64, seed=3), tmp_path / "s", **NO_DROPOUT)
    run = distill(DistillConfig(teacher=str(t), student=str(s), task="sst2", data_dir=str(data), stage="prediction",
                                out=str(tmp_path / "kd"), num_train_epochs=2, train_batch_size=16, learning_rate=2e-3,
                                eval_step=1, checkpoint_steps=None, mixed_precision="bf16", analyse="best"))
    assert run["mixed_precision"] == "bf16" and run["beta_model"] == "best"
    z = {}
    for name, d in (("t", t), ("s", tmp_path / "kd" / "best")):
        m, tok = load_classifier(d, num_labels=2)
        z[name] = predict_encoded(m.float(), encode(tok, load_split("sst2", data, "train"), 128), device="cpu")
    beta = kl_rows(z["t"].astype(np.float64), z["s"].astype(np.float64)).sum()
    assert run["beta"] == pytest.approx(beta, rel=1e-5)


def test_precision_and_device_errors_are_one_line(tiny_bert: Callable[..., Path], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from confdistill.cli.main import main

    data = write_sst2(tmp_path, 16, 8, real=False)
    m = tiny_bert(layers=1, hidden=32, heads=2, intermediate=64)
    base = ["finetune", "--model", str(m), "--task", "sst2", "--data-dir", str(data), "--epochs", "1"]
    cases = [(["--mixed-precision", "fp16", "--device", "cpu"], "fp16 needs a CUDA device")]
    if not torch.cuda.is_available():
        cases.append((["--device", "cuda"], "no CUDA device"))
    for i, (extra, needle) in enumerate(cases):
        assert main([*base, *extra, "--out", str(tmp_path / f"o{i}")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert needle in err[-1], err
        assert not (tmp_path / f"o{i}").exists() or not any((tmp_path / f"o{i}").iterdir())


def test_one_range_rule_for_alpha_and_temperature() -> None:
    """Training refuses what the κ bound cannot judge: the same rule (confdistill.ranges)."""
    from confdistill.properties.bound import kappa_bound

    for alpha in (1.0, -0.1, 2.0):
        assert not ranges.ALPHA.contains(alpha)
        with pytest.raises(InputError, match=r"^alpha: must be in \[0, 1\)"):  # the field (the CLI: the flag)
            DistillConfig(alpha=alpha)
        with pytest.raises(InputError):
            kappa_bound(1.0, 10, alpha=alpha)
    for temperature in (0.5, 0.0):
        with pytest.raises(InputError, match=r"^temperature: must be >= 1"):
            DistillConfig(temperature=temperature)
        with pytest.raises(InputError):
            kappa_bound(1.0, 10, temperature=temperature)
    assert DistillConfig(alpha=0.5, temperature=2.0).stage2_settings.alpha == 0.5


def test_stage_defaults_do_not_depend_on_running_alone() -> None:
    both, alone1, alone2 = DistillConfig(), DistillConfig(stage="intermediate"), DistillConfig(stage="prediction")
    assert both.stage == "both"
    for kind, alone in (("intermediate", alone1), ("prediction", alone2)):
        assert both.stage_loop(kind) == alone.stage_loop(kind)
    assert (both.stage_loop("intermediate").num_train_epochs, both.stage_loop("intermediate").learning_rate) == (10, 5e-5)
    assert (both.stage_loop("prediction").num_train_epochs, both.stage_loop("prediction").learning_rate) == (3, 3e-5)


def test_pad_to_max_length_is_recorded_and_changes_only_the_stage1_average(
        tiny_bert: Callable[..., Path], tmp_path: Path) -> None:
    data = write_sst2(tmp_path, 16, 8, real=False)
    t = copy_model(tiny_bert(layers=2, hidden=32, heads=2, intermediate=64), tmp_path / "t", **NO_DROPOUT)
    s = copy_model(tiny_bert(layers=1, hidden=32, heads=2, intermediate=64, seed=3), tmp_path / "s", **NO_DROPOUT)
    losses = {}
    for pad in (False, True):
        out = tmp_path / f"pad{pad}"
        run = distill(DistillConfig(teacher=str(t), student=str(s), task="sst2", data_dir=str(data), stage="intermediate",
                                    out=str(out), num_train_epochs=1, train_batch_size=16, max_seq_length=32,
                                    pad_to_max_length=pad, checkpoint_steps=None))
        assert run["pad_to_max_length"] is pad
        losses[pad] = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    # The attention terms at padded keys are zero and padded hidden states enter the mean: padding
    # to 32 tokens makes the per-element MSE average over more (zero-difference) positions.
    assert losses[True]["att_loss"] < losses[False]["att_loss"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none here)")
@pytest.mark.parametrize("precision", ["no", "bf16", "fp16"])
def test_cuda_training_and_prediction(precision: str, tiny_bert: Callable[..., Path], tmp_path: Path) -> None:
    data = write_sst2(tmp_path, 32, 16, real=False)
    t = tiny_bert(layers=2, hidden=32, heads=2, intermediate=64)
    s = tiny_bert(layers=1, hidden=32, heads=2, intermediate=64, seed=3)
    run = distill(DistillConfig(teacher=str(t), student=str(s), task="sst2", data_dir=str(data), out=str(tmp_path / "kd"),
                                num_train_epochs=1, train_batch_size=16, device="cuda", mixed_precision=precision,
                                eval_step=None, checkpoint_steps=None))
    assert run["device"].startswith("cuda") and run["mixed_precision"] == precision
    assert np.isfinite(run["beta"])


def test_quiet_silences_progress_bars(tiny_bert: Callable[..., Path], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from confdistill.cli.main import main

    data = write_sst2(tmp_path, 16, 8, real=False)
    m = tiny_bert(layers=1, hidden=32, heads=2, intermediate=64)
    for var in ("CONFDISTILL_QUIET", "TQDM_DISABLE"):  # restored after the test (main sets them)
        monkeypatch.setenv(var, "0")
    base = ["finetune", "--model", str(m), "--task", "sst2", "--data-dir", str(data), "--epochs", "1",
            "--eval-step", "none"]
    assert main([*base, "--out", str(tmp_path / "loud")]) == 0
    assert "ex/s" in capsys.readouterr().err
    assert main(["-q", *base, "--out", str(tmp_path / "quiet")]) == 0
    assert "ex/s" not in capsys.readouterr().err

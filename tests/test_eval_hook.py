"""Stage 2's evaluation hook and σ: the hook sees every evaluation with σ and n_both, an exception in
it stops the run (checkpointed first, so --resume reaches the uninterrupted weights), σ equals
``analyze_pair``'s σ on the predict files of the final model, and β / n_train with --aug-train are
measured on the task's own train split."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from confdistill.distillation import DistillConfig, distill, evaluation_hook
from confdistill.distillation.checkpoint import list_checkpoints
from distill_helpers import kl_rows, metrics_log, one_thread, weights, write_sst2

pytestmark = pytest.mark.usefixtures(one_thread.__name__)


class Pruned(Exception):
    """Stands for optuna.TrialPruned."""


def _config(t: Path, s: Path, data: Path, out: Path, **kw: object) -> DistillConfig:
    # 64 rows, batch 16 -> 4 steps per epoch; 2 epochs = 8 steps; evaluation every 2 steps.
    base = dict(teacher=str(t), student=str(s), task="sst2", data_dir=str(data), out=str(out), stage="prediction",
                num_train_epochs=2, train_batch_size=16, learning_rate=2e-3, eval_step=2, checkpoint_steps=None)
    return DistillConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def teacher(tiny_bert: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny teacher fine-tuned on generated SST-2 rows (a random one predicts one class only)."""
    from confdistill.distillation import FinetuneConfig, finetune

    root = tmp_path_factory.mktemp("teacher")
    data = write_sst2(root, 192, 16, real=False)
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # module scope: set up before the one_thread fixture applies
    try:
        finetune(FinetuneConfig(model=str(tiny_bert(layers=2, hidden=32, heads=2, intermediate=64)), task="sst2",
                                data_dir=str(data), out=str(root / "ft"), num_train_epochs=6, train_batch_size=16,
                                learning_rate=2e-3, eval_step=None, checkpoint_steps=None))
    finally:
        torch.set_num_threads(before)
    return root / "ft" / "final"


@pytest.fixture
def models(teacher: Path, tiny_bert: Callable[..., Path]) -> tuple[Path, Path]:
    return teacher, tiny_bert(layers=1, hidden=32, heads=2, intermediate=64, seed=2)


def test_hook_sees_every_evaluation_and_sigma_matches_analyze_pair(
        models: tuple[Path, Path], tmp_path: Path) -> None:
    from confdistill.prediction.predict import predict_split
    from confdistill.properties import analyze_files

    data = write_sst2(tmp_path, 64, 40, real=False)
    t, s = models
    out = tmp_path / "kd"
    seen: list[dict] = []
    with evaluation_hook(seen.append):
        run = distill(_config(t, s, data, out))
    assert [i["step"] for i in seen] == [2, 4, 6, 8]
    assert [i["epoch"] for i in seen] == [0.5, 1.0, 1.5, 2.0]
    for info in seen:
        assert info["job"] == "prediction" and info["out"] == str(out)
        m = info["metrics"]
        assert math.isfinite(m["sigma"]) and m["sigma"] >= 0 and 0 < m["n_both"] <= 40
        assert 0 <= m["accuracy"] <= 1
    # The logged evaluations carry σ too, and the final one is the last hook call.
    logged = [e["eval"] for e in metrics_log(out) if "eval" in e]
    assert [e["sigma"] for e in logged] == [i["metrics"]["sigma"] for i in seen]
    assert run["final_eval"] == seen[-1]["metrics"]
    assert (out / "teacher_eval_logits.pt").exists()

    # σ from the analysis of the two predict files (the final model; eval ran at the last step).
    files = []
    for name, model in (("teacher", t), ("student", out / "final")):
        files.append(predict_split(model, "sst2", data, "dev", tmp_path / f"{name}.parquet", progress=False))
    ref = analyze_files(*files, n_bootstrap=0)
    assert seen[-1]["metrics"]["n_both"] == ref.n_both
    assert abs(seen[-1]["metrics"]["sigma"] - ref.sigma) <= 1e-9

    # Outside the block nothing is called.
    distill(_config(t, s, data, tmp_path / "kd2", num_train_epochs=0.5))
    assert len(seen) == 4


def test_exception_in_hook_stops_the_run_and_resume_completes_it(
        models: tuple[Path, Path], tmp_path: Path) -> None:
    data = write_sst2(tmp_path, 64, 24, real=False)
    t, s = models
    full = distill(_config(t, s, data, tmp_path / "full"))

    calls: list[int] = []
    error = Pruned("trial pruned at step 6")

    def prune(info: dict) -> None:
        calls.append(info["step"])
        if info["step"] == 6:  # mid-epoch, no step checkpoint configured
            raise error

    cut = tmp_path / "cut"
    with evaluation_hook(prune), pytest.raises(Pruned) as caught:
        distill(_config(t, s, data, cut))
    assert caught.value is error and calls == [2, 4, 6]
    assert not (cut / "final").exists()
    assert list_checkpoints(cut / "checkpoints")[-1].name == "step-00000006"
    assert json.loads((cut / "run.json").read_text())["status"] == "running"

    resumed = distill(_config(t, s, data, cut, resume=True))
    a, b = weights(tmp_path / "full" / "final"), weights(cut / "final")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["beta"] == full["beta"] and resumed["final_eval"] == full["final_eval"]
    assert metrics_log(cut) == metrics_log(tmp_path / "full")

    # Stopped by the hook at the last evaluation (the last step): the resumed run finishes without
    # evaluating that step again, with the uninterrupted run's log and results.
    def prune_last(info: dict) -> None:
        if info["step"] == 8:
            raise Pruned("at the end")

    last = tmp_path / "last"
    with evaluation_hook(prune_last), pytest.raises(Pruned):
        distill(_config(t, s, data, last))
    again: list[int] = []
    with evaluation_hook(lambda info: again.append(info["step"])):
        finished = distill(_config(t, s, data, last, resume=True))
    assert again == [] and finished["final_eval"] == full["final_eval"] and finished["best"] == full["best"]
    assert metrics_log(last) == metrics_log(tmp_path / "full")


def test_regression_sigma_is_none(tiny_bert: Callable[..., Path], tmp_path: Path) -> None:
    folder = tmp_path / "glue" / "STS-B"
    folder.mkdir(parents=True)
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
    rows = [f"{i}\tg\tf\t2012\t{i}\ts\ts\ta film number {i}\tthe movie {i % 5}\t{(i % 6) * 0.8:.1f}\n" for i in range(24)]
    for split in ("train", "dev"):
        (folder / f"{split}.tsv").write_text(header + "".join(rows))
    t = tiny_bert(layers=1, hidden=32, heads=2, intermediate=64, num_labels=1)
    seen: list[dict] = []
    with evaluation_hook(seen.append):
        distill(DistillConfig(teacher=str(t), student=str(t), task="STS-B", data_dir=str(tmp_path / "glue"),
                              out=str(tmp_path / "kd"), num_train_epochs=1, train_batch_size=16, eval_step=1,
                              checkpoint_steps=None))
    assert [i["step"] for i in seen] == [1, 2]
    assert all(i["metrics"]["sigma"] is None and i["metrics"]["n_both"] is None for i in seen)
    assert "corr" in seen[0]["metrics"]


def _logits(model_dir: Path, sentences: list[str]) -> np.ndarray:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    with torch.no_grad():
        return model(**tok(sentences, padding=True, return_tensors="pt")).logits.double().numpy()


def test_beta_with_aug_train_is_measured_on_the_train_split(models: tuple[Path, Path], tmp_path: Path) -> None:
    data = write_sst2(tmp_path, 40, 16, real=False)
    train = data / "SST-2" / "train.tsv"
    lines = train.read_text().splitlines()
    aug = tmp_path / "aug.tsv"  # the train rows plus 40 variants: the data trained on, not X_train
    aug.write_text("\n".join([*lines, *(f"very {x}" for x in lines[1:])]) + "\n")
    t, s = models
    run = distill(_config(t, s, data, tmp_path / "kd", aug_train=str(aug), num_train_epochs=1, eval_step=None))
    assert run["n_train"] == 40 and run["data"]["train"]["rows"] == 80
    assert run["beta_split_file"] == str(train) and run["data"]["x_train"]["rows"] == 40
    assert (tmp_path / "kd" / "teacher_beta_logits.pt").exists()
    sentences = [x.split("\t")[0] for x in lines[1:]]
    zt, zs = _logits(t, sentences), _logits(tmp_path / "kd" / "final", sentences)

    kl = kl_rows(zt, zs)
    assert run["beta"] == pytest.approx(kl.sum(), rel=1e-4)
    assert run["beta_mean"] == pytest.approx(kl.mean(), rel=1e-4)

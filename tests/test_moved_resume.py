"""A run folder moved or copied mid-run resumes: ``--resume`` compares the settings that change the
result, not where the folder lies (issue 22, item 3).

Each run is stopped mid-way (the ``stop_after_steps`` testing aid, as tests/test_resume.py), its
folder moved, resumed in the new place, and must end bit-identical to an uninterrupted run.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from confdistill.distillation import DistillConfig, FinetuneConfig, TrainingInterrupted, distill, finetune
from confdistill.errors import InputError
from distill_helpers import metrics_log, one_thread, weights, write_sst2
from test_general_distill import _config as general_config
from test_general_distill import _corpus

pytestmark = pytest.mark.usefixtures(one_thread.__name__)


def _same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def test_distill_moved_mid_stage_2_resumes_in_its_new_place(tiny_bert: Callable[..., Path], tmp_path: Path) -> None:
    # Stage 1: 1 epoch = 4 steps (completes); stage 2: 2 epochs = 8 steps, stopped after step 7.
    # Stage 2's student is OUT/intermediate/final: recorded where the folder was, found where it is.
    data = write_sst2(tmp_path, 100, 24, real=False)
    t = tiny_bert(layers=2, hidden=64, heads=2, intermediate=64)
    s = tiny_bert(layers=1, hidden=32, heads=2, intermediate=64, seed=2)

    def config(out: Path, resume: bool = False, **kw: object) -> DistillConfig:
        return DistillConfig(teacher=str(t), student=str(s), task="sst2", data_dir=str(data), out=str(out),
                             intermediate_epochs=1, prediction_epochs=2, learning_rate=1e-3, eval_step=3,
                             checkpoint_steps=3, resume=resume, **kw)

    full = distill(config(tmp_path / "full"))
    with pytest.raises(TrainingInterrupted):
        distill(config(tmp_path / "cut"), stop_after_steps=7)
    assert (tmp_path / "cut" / "intermediate" / "final").is_dir() and not (tmp_path / "cut" / "final").exists()
    moved = tmp_path / "elsewhere" / "moved"
    moved.parent.mkdir()
    shutil.move(tmp_path / "cut", moved)
    with pytest.raises(InputError, match="different settings"):  # a setting that changes the result still counts
        distill(config(moved, resume=True, temperature=2.0))
    resumed = distill(config(moved, resume=True))
    assert resumed["beta"] == full["beta"] and resumed["best"]["step"] == full["best"]["step"]
    _same_weights(tmp_path / "full" / "final", moved / "final")
    _same_weights(tmp_path / "full" / "best", moved / "best")
    assert metrics_log(tmp_path / "full") == metrics_log(moved)


def test_finetune_copied_mid_run_resumes(tiny_bert: Callable[..., Path], tmp_path: Path) -> None:
    data = write_sst2(tmp_path, 60, 12, real=False)
    model = tiny_bert(layers=1, hidden=32, heads=2, intermediate=64)

    def config(out: Path, resume: bool = False) -> FinetuneConfig:
        return FinetuneConfig(model=str(model), task="sst2", data_dir=str(data), out=str(out), num_train_epochs=2,
                              train_batch_size=16, learning_rate=1e-3, eval_step=None, checkpoint_steps=2,
                              resume=resume)

    finetune(config(tmp_path / "full"))
    with pytest.raises(TrainingInterrupted):
        finetune(config(tmp_path / "cut"), stop_after_steps=5)
    shutil.copytree(tmp_path / "cut", tmp_path / "copy")
    finetune(config(tmp_path / "copy", resume=True))
    _same_weights(tmp_path / "full" / "final", tmp_path / "copy" / "final")
    assert metrics_log(tmp_path / "full") == metrics_log(tmp_path / "copy")


def test_general_distill_moved_mid_run_resumes(tiny_bert: Callable[..., Path], tmp_path: Path) -> None:
    from confdistill.distillation.general import general_distill

    teacher = tiny_bert(layers=2, hidden=64, heads=2, intermediate=128)
    corpus = _corpus(tmp_path / "c.txt", 40)
    common = dict(num_train_epochs=2.0, checkpoint_steps=3, shuffle_buffer=16)   # 5 steps per epoch
    general_distill(general_config(teacher, [corpus], tmp_path / "a", **common))
    with pytest.raises(TrainingInterrupted):
        general_distill(general_config(teacher, [corpus], tmp_path / "b", **common), stop_after_steps=7)
    shutil.move(tmp_path / "b", tmp_path / "c")
    resumed = general_distill(general_config(teacher, [corpus], tmp_path / "c", resume=True, **common))
    assert resumed["status"] == "complete"
    _same_weights(tmp_path / "a" / "final", tmp_path / "c" / "final")
    assert metrics_log(tmp_path / "a") == metrics_log(tmp_path / "c")

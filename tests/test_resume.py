"""A run stopped mid-epoch and continued with --resume ends with the same weights, bit for bit,
as an uninterrupted run with the same seed (CPU; data position, RNG, optimiser, scheduler restored)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from confdistill.distillation import DistillConfig, TrainingInterrupted, distill
from confdistill.distillation.checkpoint import list_checkpoints
from confdistill.errors import InputError
from distill_helpers import metrics_log, one_thread, weights, write_sst2

pytestmark = pytest.mark.usefixtures(one_thread.__name__)


@pytest.mark.parametrize("stage", ["intermediate", "prediction"])
def test_resume_matches_uninterrupted_run(stage: str, tiny_bert: Callable[..., Path], tmp_path: Path) -> None:
    # 100 rows, batch 32 -> 4 steps per epoch (last batch 4 rows); 2 epochs = 8 steps.
    # Checkpoints at steps 3, 4 (epoch end), 6; stopped after step 7, so --resume restarts
    # mid-epoch from step 6 and re-does step 7. Dropout is on (RNG state matters).
    data = write_sst2(tmp_path, 100, 24, real=False)
    t = tiny_bert(layers=2, hidden=64, heads=2, intermediate=64)
    s = tiny_bert(layers=1, hidden=32, heads=2, intermediate=64, seed=2)

    def config(out: str, resume: bool = False) -> DistillConfig:
        return DistillConfig(teacher=str(t), student=str(s), task="sst2", data_dir=str(data),
                             out=str(tmp_path / out), stage=stage, num_train_epochs=2, learning_rate=1e-3,
                             eval_step=3, checkpoint_steps=3, resume=resume)

    full = distill(config("full"))
    with pytest.raises(TrainingInterrupted):
        distill(config("cut"), stop_after_steps=7)
    assert [p.name for p in list_checkpoints(tmp_path / "cut" / "checkpoints")] == ["step-00000004", "step-00000006"]
    assert not (tmp_path / "cut" / "final").exists()
    with pytest.raises(InputError, match="use resume to continue it"):  # Python: the parameter's name
        distill(config("cut"))  # refuses to start over the interrupted run
    resumed = distill(config("cut", resume=True))

    a, b = weights(tmp_path / "full" / "final"), weights(tmp_path / "cut" / "final")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    if stage == "intermediate":
        fa = torch.load(tmp_path / "full" / "final" / "fit_denses.pt")
        fb = torch.load(tmp_path / "cut" / "final" / "fit_denses.pt")
        assert all(torch.equal(fa[k], fb[k]) for k in fa)
    else:
        assert resumed["beta"] == full["beta"] and resumed["best"] == full["best"]
        wa, wb = weights(tmp_path / "full" / "best"), weights(tmp_path / "cut" / "best")
        assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # The log of the resumed run is the uninterrupted one: no step lost or repeated.
    assert metrics_log(tmp_path / "full") == metrics_log(tmp_path / "cut")
    assert [e["step"] for e in metrics_log(tmp_path / "cut") if "loss" in e] == list(range(1, 9))
    # Resuming a finished run changes nothing.
    again = distill(config("cut", resume=True))
    assert again == resumed


def test_resume_with_other_settings_is_refused(tiny_bert: Callable[..., Path], tmp_path: Path) -> None:
    data = write_sst2(tmp_path, 40, 16, real=False)
    t = tiny_bert(layers=2, hidden=32, heads=2, intermediate=64)
    s = tiny_bert(layers=1, hidden=32, heads=2, intermediate=64, seed=2)
    cfg = DistillConfig(teacher=str(t), student=str(s), task="sst2", data_dir=str(data), out=str(tmp_path / "o"),
                        stage="prediction", num_train_epochs=2, checkpoint_steps=1, eval_step=None)
    with pytest.raises(TrainingInterrupted):
        distill(cfg, stop_after_steps=1)
    cfg.resume = True
    cfg.learning_rate = 1e-4
    with pytest.raises(InputError, match="different settings"):
        distill(cfg)

"""No code from files (issue 10, item 1): every file read back is data, never unpickled objects.

A pickle planted in a checkpoint's ``state.pt`` or in a teacher-logit cache must not run (its
``__reduce__`` would create a marker file): the checkpoint is refused with one line naming it
(exit 2), the cache is recomputed. Checkpoints hold only tensors and plain data.
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from confdistill.cli.main import main
from confdistill.distillation import DistillConfig, TrainingInterrupted, distill
from confdistill.distillation.checkpoint import list_checkpoints, load_checkpoint
from confdistill.errors import InputError
from confdistill.io import load_tensors
from distill_helpers import one_thread, write_sst2

pytestmark = pytest.mark.usefixtures(one_thread.__name__)


class _Planted:
    """Unpickling this runs ``touch MARKER`` (what an attacker's file would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def plant(path: Path, marker: Path, *, as_torch: bool = False) -> None:
    """Replace ``path`` with a malicious pickle (plain pickle, or a torch zip file with it inside)."""
    payload = {"model": _Planted(marker), "key": "x", "logits": _Planted(marker)}
    if as_torch:
        torch.save(payload, path)
    else:
        with open(path, "wb") as fh:
            pickle.dump(payload, fh)


@pytest.mark.parametrize("as_torch", [False, True])
def test_planted_pickles_never_run(tmp_path: Path, as_torch: bool) -> None:
    marker = tmp_path / "MARKER"
    ckpt = tmp_path / "step-00000001"
    ckpt.mkdir()
    plant(ckpt / "state.pt", marker, as_torch=as_torch)
    with pytest.raises(InputError, match=r"state\.pt: cannot read checkpoint \(it holds objects other than tensors"):
        load_checkpoint(ckpt)
    plant(tmp_path / "cache.pt", marker, as_torch=as_torch)
    with pytest.raises(InputError, match=r"cache\.pt: cannot read this cache"):
        load_tensors(tmp_path / "cache.pt", what="cache")
    assert not marker.exists()


def _config(t: Path, s: Path, data: Path, out: Path, **kw: object) -> DistillConfig:
    return DistillConfig(teacher=str(t), student=str(s), task="sst2", data_dir=str(data), out=str(out),
                         stage="prediction", num_train_epochs=1, learning_rate=1e-3, train_batch_size=16,
                         eval_step=2, checkpoint_steps=2, **kw)


def test_planted_checkpoint_and_cache_in_a_run_folder(tiny_bert: Callable[..., Path], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    data = write_sst2(tmp_path, 64, 16, real=False)
    t = tiny_bert(layers=2, hidden=32, heads=2, intermediate=64)
    s = tiny_bert(layers=1, hidden=32, heads=2, intermediate=64, seed=2)
    out = tmp_path / "run"
    with pytest.raises(TrainingInterrupted):
        distill(_config(t, s, data, out), stop_after_steps=3)
    ckpts = list_checkpoints(out / "checkpoints")
    assert [p.name for p in ckpts] == ["step-00000002"]
    state = torch.load(ckpts[-1] / "state.pt", weights_only=True)  # plain data only
    assert set(state) == {"model", "optimizer", "scheduler", "rng", "progress"}

    # 1. A planted checkpoint: --resume refuses it with one line naming it, nothing runs.
    marker = tmp_path / "MARKER"
    good = (ckpts[-1] / "state.pt").read_bytes()
    plant(ckpts[-1] / "state.pt", marker)
    argv = ["distill", "--teacher", str(t), "--student", str(s), "--task", "sst2", "--data-dir", str(data),
            "--out", str(out), "--stage", "prediction", "--epochs", "1", "--learning-rate", "1e-3",
            "--batch-size", "16", "--eval-step", "2", "--checkpoint-steps", "2", "--resume"]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and f"{ckpts[-1] / 'state.pt'}: cannot read checkpoint" in err
    assert not marker.exists()

    # 2. A planted (and then a truncated) teacher-logit cache: recomputed, never unpickled.
    (ckpts[-1] / "state.pt").write_bytes(good)
    plant(out / "teacher_logits.pt", marker, as_torch=True)
    cache_eval = out / "teacher_eval_logits.pt"
    cache_eval.write_bytes(cache_eval.read_bytes()[:100])
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "teacher_logits.pt: cannot read this teacher-logit cache" in err and "recomputing it" in err
    assert not marker.exists()
    for cache in (out / "teacher_logits.pt", cache_eval):
        data_back = torch.load(cache, weights_only=True)
        assert isinstance(data_back["logits"], torch.Tensor) and data_back["logits"].shape[1] == 2
    assert json.loads((out / "run.json").read_text())["status"] == "complete"

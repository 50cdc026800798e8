"""No code from files (issue 10, item 1): every file read back is data, never unpickled objects.

A pickle planted in a checkpoint's ``state.pt`` or in a teacher-logit cache must not run (its
``__reduce__`` would create a marker file): the checkpoint is refused with one line naming it
(exit 2), the cache is recomputed. Checkpoints hold only tensors and plain data.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
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


def _bin_checkpoint(source: Path, out: Path, marker: Path | None, *, shards: int) -> Path:
    """``source`` (safetensors) rewritten as ``pytorch_model.bin`` (``shards`` = 1) or as that many
    shards with ``pytorch_model.bin.index.json``; with ``marker``, the last file also holds a
    pickled object whose unpickling would create it."""
    from safetensors.torch import load_file

    shutil.copytree(source, out)
    state = load_file(str(out / "model.safetensors"))
    (out / "model.safetensors").unlink()
    keys = sorted(state)
    parts = [keys[i::shards] for i in range(shards)]
    names = ["pytorch_model.bin"] if shards == 1 else [f"pytorch_model-{i + 1:05d}-of-{shards:05d}.bin"
                                                       for i in range(shards)]
    for i, (name, part) in enumerate(zip(names, parts, strict=True)):
        payload: dict = {k: state[k] for k in part}
        if marker is not None and i == shards - 1:
            payload["planted"] = _Planted(marker)
        torch.save(payload, out / name)
    if shards > 1:
        weight_map = {k: name for name, part in zip(names, parts, strict=True) for k in part}
        (out / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return out / names[-1]


@pytest.mark.parametrize("shards", [1, 2])
def test_pickled_bin_checkpoints_are_refused_in_one_line(
        tiny_bert: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], shards: int) -> None:
    """Issue 21: a sharded pickled .bin gave ``internal error: UnpicklingError …`` (exit 1, several
    lines); now every command that loads a model (augment's word embeddings too) refuses it with one line naming the shard and
    saying to convert it to safetensors (exit 2); nothing is unpickled, nothing written."""
    t = tiny_bert(layers=2, hidden=32, heads=2, intermediate=64)
    data = write_sst2(tmp_path, 16, 8, real=False)
    marker = tmp_path / "MARKER"
    bad = _bin_checkpoint(t, tmp_path / "pickled", marker, shards=shards)
    model = bad.parent
    outs = tmp_path / "outs"
    commands = {
        "predict": ["predict", "--no-progress", "--model", model, "--task", "SST-2", "--data-dir", data,
                    "--out", outs / "p.csv"],
        "make-student": ["make-student", "--from", model, "--layers", "1", "--out", outs / "s"],
        "export": ["export", "--model", model, "--out", outs / "x"],
        "distill": ["distill", "--task", "sst2", "--teacher", model, "--student", t, "--data-dir", data,
                    "--out", outs / "d"],
        "finetune": ["finetune", "--task", "sst2", "--model", model, "--data-dir", data, "--out", outs / "f"],
        "augment": ["augment", "--task", "SST-2", "--data-dir", data, "--model", model, "--out", outs / "a.tsv"],
    }
    for command, argv in commands.items():
        capsys.readouterr()
        rc = main([str(a) for a in argv])
        err = capsys.readouterr().err
        lines = [x for x in err.strip().splitlines() if x.strip()]
        assert rc == 2 and len(lines) == 1, (command, rc, err)
        assert f"{bad}: needs unpickling" in lines[0] and "convert it to safetensors" in lines[0], (command, err)
        assert not outs.exists() or not any(p.is_file() and not p.name.endswith(".lock") for p in outs.rglob("*"))
    assert not marker.exists()


def test_tensor_only_bin_checkpoints_still_load(tiny_bert: Callable[..., Path], tmp_path: Path) -> None:
    """The check reads shards as data: a sharded (and a single) .bin of tensors loads as before,
    to the same logits as the safetensors original."""
    from confdistill.models.loading import load_classifier

    t = tiny_bert(layers=2, hidden=32, heads=2, intermediate=64)
    reference, tokenizer = load_classifier(t)
    batch = tokenizer(["a fine film", "dull"], return_tensors="pt", padding=True)
    for shards in (1, 2):
        model, _ = load_classifier(_bin_checkpoint(t, tmp_path / f"bin{shards}", None, shards=shards).parent)
        with torch.no_grad():
            assert torch.equal(model(**batch).logits, reference(**batch).logits)

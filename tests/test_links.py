"""Locks that cannot be turned against the user (issue 21, item 1).

Output folders are shared and copied, so a symbolic link may be planted where confdistill writes:
``OUT/.lock`` (or ``.NAME.lock`` beside a file target) pointing to a file, a folder, or nowhere.
Every writing command must refuse it with one line naming the link (exit 2) and leave what it
points to as it was — before, the lock's ``os.open`` followed the link and wrote the process id
into the target (a dangling link created it). The same for the files a resumed run writes in
place (``metrics.jsonl`` appended, ``checkpoints/``, the logit caches).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from confdistill.cli.main import main
from confdistill.distillation import DistillConfig, TrainingInterrupted, distill
from confdistill.io import open_no_follow
from confdistill.prediction.softmax_file import write_softmax
from distill_helpers import one_thread, write_sst2
from input_helpers import ONE_EPOCH, tiny_experiment

pytestmark = pytest.mark.usefixtures(one_thread.__name__)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Callable[..., Path]) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("links")
    data = write_sst2(root, 24, 12, real=False)
    t = tiny_bert(layers=2, hidden=32, heads=2, intermediate=64)
    corpus = root / "corpus.txt"
    corpus.write_text("".join(f"a plain sentence number {i} for the corpus.\n" for i in range(20)))
    rng = np.random.default_rng(0)
    p = rng.uniform(0.05, 0.95, size=(40, 1))
    labels = rng.integers(0, 2, size=40)
    teacher = write_softmax(root / "teacher.csv", np.hstack([p, 1 - p]), labels)
    student = write_softmax(root / "student.csv", np.hstack([p * 0.9, 1 - p * 0.9]), labels)
    toml = tiny_experiment(root / "exp.toml", out=root / "exp", data=data, teacher=t, stage1=None,
                           stage2=ONE_EPOCH, kappa="kappa = 0.05")
    return {"root": root, "data": data, "t": t, "corpus": corpus, "teacher": teacher, "student": student,
            "toml": toml}


# command -> (argv for the output OUT, the lock it takes relative to OUT's parent folder W).
# Folder targets that are continued in place lock OUT/.lock; files and folders swapped in whole
# lock the sibling .NAME.lock.
COMMANDS: dict[str, tuple[Callable[[dict[str, Any], Path], list[Any]], str]] = {
    "distill": (lambda e, o: ["distill", "--task", "sst2", "--teacher", e["t"], "--student", e["t"], "--data-dir",
                              e["data"], "--out", o], "out/.lock"),
    "finetune": (lambda e, o: ["finetune", "--task", "sst2", "--model", e["t"], "--data-dir", e["data"], "--out", o],
                 "out/.lock"),
    "general-distill": (lambda e, o: ["general-distill", "--teacher", e["t"], "--corpus", e["corpus"], "--layers",
                                      "1", "--hidden", "32", "--heads", "2", "--intermediate", "64", "--device",
                                      "cpu", "--out", o], "out/.lock"),
    "run": (lambda e, o: ["run", e["toml"], "--out", o], "out/.lock"),
    "tune": (lambda e, o: ["tune", e["toml"], "--trials", "1", "--out", o], "out/.lock"),
    "demo": (lambda e, o: ["demo", "--quick", "--out", o], "out/.lock"),
    "predict": (lambda e, o: ["predict", "--no-progress", "--model", e["t"], "--task", "SST-2", "--data-dir",
                              e["data"], "--out", o], ".out.lock"),
    "augment": (lambda e, o: ["augment", "--task", "SST-2", "--data-dir", e["data"], "--model", e["t"], "--out", o],
                ".out.lock"),
    "analyze": (lambda e, o: ["analyze", "--teacher", e["teacher"], "--student", e["student"], "--out", o],
                ".out.lock"),
    "table": (lambda e, o: ["table", "--root", e["root"], "--teacher", "A=T", "--student", "S", "--out", o],
              ".out.lock"),
    "export": (lambda e, o: ["export", "--model", e["t"], "--out", o], ".out.lock"),
    "make-student": (lambda e, o: ["make-student", "--from", e["t"], "--layers", "1", "--out", o], ".out.lock"),
}
OUT_NAME = {"predict": "out.csv", "augment": "out.tsv"}


def _snapshot(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in folder.rglob("*")}


@pytest.mark.parametrize("points_to", ["file", "folder", "nowhere"])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_planted_lock_link_is_refused_and_nothing_outside_changes(
        env: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str,
        points_to: str) -> None:
    build, lock_place = COMMANDS[command]
    name = OUT_NAME.get(command, "out")
    work = tmp_path / "work"
    work.mkdir()
    out = work / name
    lock = work / lock_place.replace("out", name)
    lock.parent.mkdir(exist_ok=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("mine\n")
    (outside / "folder").mkdir()
    target = {"file": outside / "precious.txt", "folder": outside / "folder", "nowhere": outside / "absent"}[points_to]
    lock.symlink_to(target)
    before = _snapshot(outside)
    capsys.readouterr()
    rc = main([str(a) for a in build(env, out)])
    err = capsys.readouterr().err
    lines = [x for x in err.strip().splitlines() if x.strip()]
    assert rc == 2, (rc, err)
    assert len(lines) == 1 and f"{lock}: is a symbolic link" in lines[0] and "never writes through" in lines[0], err
    assert _snapshot(outside) == before  # the file byte-identical, nothing created in the folder or for the dangling link
    assert lock.is_symlink() and os.readlink(lock) == str(target)


def test_open_no_follow_refuses_a_link(tmp_path: Path) -> None:
    outside = tmp_path / "precious.txt"
    outside.write_text("mine\n")
    for target in (outside, tmp_path / "absent"):
        link = tmp_path / "metrics.jsonl"
        link.unlink(missing_ok=True)
        link.symlink_to(target)
        with pytest.raises(OSError) as caught:
            open_no_follow(link)
        assert caught.value.errno == errno.ELOOP
    assert outside.read_text() == "mine\n" and not (tmp_path / "absent").exists()
    with open_no_follow(tmp_path / "log.jsonl") as fh:  # a plain file: created, then appended
        fh.write("1\n")
    with open_no_follow(tmp_path / "log.jsonl") as fh:
        fh.write("2\n")
    assert (tmp_path / "log.jsonl").read_text() == "1\n2\n"


def test_resume_refuses_links_planted_in_the_run_folder(
        tiny_bert: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """metrics.jsonl (appended in place), checkpoints/ (written into and pruned), a logit cache: a
    link planted at any of them stops --resume with one line naming it; the outside is untouched,
    and once the link is gone the run resumes."""
    data = write_sst2(tmp_path, 64, 16, real=False)
    t = tiny_bert(layers=2, hidden=32, heads=2, intermediate=64)
    s = tiny_bert(layers=1, hidden=32, heads=2, intermediate=64, seed=2)
    out = tmp_path / "run"
    config = DistillConfig(teacher=str(t), student=str(s), task="sst2", data_dir=str(data), out=str(out),
                           stage="prediction", num_train_epochs=1, learning_rate=1e-3, train_batch_size=16,
                           eval_step=2, checkpoint_steps=2)
    with pytest.raises(TrainingInterrupted):
        distill(config, stop_after_steps=3)
    argv = ["distill", "--teacher", str(t), "--student", str(s), "--task", "sst2", "--data-dir", str(data),
            "--out", str(out), "--stage", "prediction", "--epochs", "1", "--learning-rate", "1e-3",
            "--batch-size", "16", "--eval-step", "2", "--checkpoint-steps", "2", "--resume"]
    outside = tmp_path / "outside"
    outside.mkdir()
    for name in ("metrics.jsonl", "checkpoints", "teacher_logits.pt"):
        original = out / name
        moved = outside / name
        original.rename(moved)  # what the link points to: the run's own file or folder, now outside
        for target in (moved, outside / "absent"):
            original.symlink_to(target)
            before = _snapshot(outside)
            capsys.readouterr()
            assert main(argv) == 2
            err = capsys.readouterr().err
            assert len(err.strip().splitlines()) == 1 and f"{original}: is a symbolic link" in err, err
            assert _snapshot(outside) == before
            original.unlink()
        moved.rename(original)
    assert main(argv) == 0  # nothing of the run was changed by the refusals
    assert (out / "final").is_dir() and not (out / "metrics.jsonl").is_symlink()

"""Tidy after faults (issue 10, item 6).

- A run killed (``kill -9``, in a child process) at several points — right after a checkpoint,
  after the final evaluation was logged, before ``run.json`` says complete — and resumed has the
  uninterrupted run's ``metrics.jsonl``, line for line (no duplicated or dropped line).
- Temporary files and folders of dead processes are removed by the next command writing there;
  a live writer's are left alone.
- Failed, pruned and killed trials' model folders are removed unless ``--keep-models``.
- Outputs get the user's umask (0644 files with 022), not mkstemp's 0600.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from confdistill.distillation import DistillConfig, distill
from confdistill.folders import claim_output, remove_stale_temps
from confdistill.io import atomic_directory, atomic_path, atomic_write, write_json
from distill_helpers import metrics_log, one_thread, weights, write_sst2

pytestmark = pytest.mark.usefixtures(one_thread.__name__)

SRC = Path(__file__).resolve().parents[1] / "src"

KILLED_RUN = textwrap.dedent(
    """
    import json, os, sys
    import torch
    torch.set_num_threads(1)
    import confdistill.distillation.trainer as trainer
    from confdistill.distillation import DistillConfig, distill

    point = sys.argv[1]
    config = DistillConfig(**json.loads(sys.argv[2]))
    if point == "after_checkpoint_2":
        real, n = trainer.save_checkpoint, [0]
        def save(*a, **k):
            out = real(*a, **k)
            n[0] += 1
            if n[0] == 2:
                os._exit(137)
            return out
        trainer.save_checkpoint = save
    elif point == "after_final_eval":
        trainer._plot_loss_curves = lambda *a, **k: os._exit(137)  # the eval line is in the log
    elif point == "before_complete":
        real_write = trainer.write_json
        def write(path, data):
            if data.get("status") == "complete":
                os._exit(137)
            real_write(path, data)
        trainer.write_json = write
    distill(config)
    """
)


@pytest.mark.parametrize("point", ["after_checkpoint_2", "after_final_eval", "before_complete"])
def test_resume_after_a_kill_neither_duplicates_nor_drops_a_log_line(
        point: str, tiny_bert: Callable[..., Path], tmp_path: Path) -> None:
    data = write_sst2(tmp_path, 48, 16, real=False)
    t = tiny_bert(layers=2, hidden=32, heads=2, intermediate=64)
    s = tiny_bert(layers=1, hidden=32, heads=2, intermediate=64, seed=2)
    settings = dict(teacher=str(t), student=str(s), task="sst2", data_dir=str(data), stage="prediction",
                    num_train_epochs=2, learning_rate=1e-3, train_batch_size=16, eval_step=4, checkpoint_steps=2)
    full = tmp_path / "full"
    distill(DistillConfig(out=str(full), **settings))
    cut = tmp_path / "cut"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run([sys.executable, "-c", KILLED_RUN, point, json.dumps({**settings, "out": str(cut)})],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 137, done.stderr[-2000:]
    assert json.loads((cut / "run.json").read_text())["status"] == "running"
    distill(DistillConfig(out=str(cut), resume=True, **settings))
    assert metrics_log(cut) == metrics_log(full)
    a, b = weights(full / "final"), weights(cut / "final")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def umask() -> Iterator[Callable[[int], None]]:
    old = os.umask(0o022)
    os.umask(old)
    yield lambda mask: os.umask(mask)
    os.umask(old)


@pytest.mark.parametrize(("mask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)])
def test_outputs_follow_the_umask(tmp_path: Path, umask: Callable[[int], None], mask: int, file_mode: int,
                                  dir_mode: int) -> None:
    umask(mask)
    with atomic_write(tmp_path / "a.txt") as fh:
        fh.write("x")
    with atomic_path(tmp_path / "b.png") as tmp:
        tmp.write_bytes(b"png")
    write_json(tmp_path / "c.json", {})
    with atomic_directory(tmp_path / "model") as tmp:
        (tmp / "weights.bin").write_bytes(b"w")
        os.chmod(tmp / "weights.bin", 0o600)  # as safetensors leaves it
    for name in ("a.txt", "b.png", "c.json", "model/weights.bin"):
        assert (tmp_path / name).stat().st_mode & 0o777 == file_mode, name
    assert (tmp_path / "model").stat().st_mode & 0o777 == dir_mode


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path: Path) -> None:
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    dead, live = _dead_pid(), os.getpid()
    stale = [out / f".run.json.{dead}.abcd1234.tmp", out / f".loss_curves.{dead}.x1y2z3w4.tmp.png",
             out / "checkpoints" / f".step-00000004.{dead}.q9w8e7r6.tmp", out / f".final.old-{dead}",
             out / ".metrics.jsonl.k3j4h5g6.tmp"]  # the last: an old-style name without a pid
    kept = [out / f".run.json.{live}.abcd1234.tmp", out / ".hidden_by_the_user", out / "checkpoints" / "step-00000002"]
    for p in stale + kept:
        if "step-" in p.name or "old-" in p.name:
            p.mkdir()
            (p / "state.pt").write_bytes(b"half")
        else:
            p.write_text("half")
    assert set(remove_stale_temps(out)) == set(stale[:4])  # shared use: only dead writers' names
    assert stale[4].exists()
    with claim_output(out, resume=True):  # the next command writing there (exclusive): old-style too
        pass
    assert not any(p.exists() for p in stale) and all(p.exists() for p in kept)


def test_failed_pruned_and_killed_trials_leave_no_models(tmp_path: Path) -> None:
    from confdistill.tuning.study import SearchSpace, StudyOptions, TrialResult, open_study, run_study
    from test_tuning_pruning import _objective

    objective, task, _student = _objective(tmp_path)
    student_dir = objective.exp_dir / task.key / "students" / "trial00003"
    for stage in ("init", "stage1", "stage2"):
        for part in ("final", "best", "checkpoints"):
            (student_dir / stage / part).mkdir(parents=True)
            (student_dir / stage / part / "model.safetensors").write_bytes(b"0" * 1000)
        (student_dir / stage / "run.json").write_text("{}")
    (student_dir / "stage2" / "teacher_logits.pt").write_bytes(b"0")
    objective.tidy([3])
    left = sorted(str(p.relative_to(student_dir)) for p in student_dir.rglob("*") if p.is_file())
    assert left == ["stage1/run.json", "stage2/run.json"]  # small records stay, models go

    # A study calls tidy for trials that were killed (RUNNING, worker gone), failed or pruned.
    class Recording:
        def __init__(self) -> None:
            self.tidied: list[int] = []

        def tidy(self, numbers: list[int]) -> None:
            self.tidied += numbers

        def __call__(self, params: dict[str, Any], ctx: Any) -> TrialResult:
            return TrialResult(sigma=0.1, dev_accuracy=0.9, teacher_dev_accuracy=0.9)

    space = SearchSpace(stage1_epochs=(1.0, 2.0), stage2_epochs=(1.0, 2.0))
    opts = StudyOptions(out=tmp_path / "study", n_trials=1, space=space, kappa=0.05, show_progress=False)
    run_study(Recording(), opts)
    study = open_study(StudyOptions(out=tmp_path / "study", n_trials=2, space=space, kappa=0.05, show_progress=False))
    killed = study.ask()
    space.suggest(killed)
    killed.set_user_attr("worker", f"{socket.gethostname()}:{_dead_pid()}")
    rec = Recording()
    run_study(rec, StudyOptions(out=tmp_path / "study", n_trials=2, space=space, kappa=0.05, show_progress=False))
    assert rec.tidied == [killed.number]


def test_keep_models_keeps_them(tmp_path: Path) -> None:
    from test_tuning_pruning import _objective

    objective, task, _student = _objective(tmp_path)
    objective.keep_models = True
    final = objective.exp_dir / task.key / "students" / "trial00001" / "stage2" / "final"
    final.mkdir(parents=True)
    objective.tidy([1])
    assert final.is_dir()

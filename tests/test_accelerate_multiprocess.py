"""``accelerate launch`` with 2 CPU processes runs the same command and matches one process.

Both runs use the same global batch (33) and order; each of the two processes takes half of every
global batch (the last batch has 1 row, so one process runs a zero-weight filler row), scales its
loss so that DDP's gradient average equals the single-process gradient, and dropout is off. The
results then differ only by float summation order: we require max |Δw| ≤ 1e-5 after both stages
(observed ~1e-7).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from distill_helpers import copy_model, write_sst2

VENV_BIN = Path(sys.executable).parent
TOLERANCE = 1e-5


def _run(cmd: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.slow
def test_two_processes_match_one(tiny_bert: Callable[..., Path], tmp_path: Path) -> None:
    accelerate = VENV_BIN / "accelerate"
    if not accelerate.exists():
        pytest.skip("the accelerate launcher is not installed beside this python")
    data = write_sst2(tmp_path, 100, 24, real=False)
    no_dropout = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    t = copy_model(tiny_bert(layers=2, hidden=64, heads=2, intermediate=64), tmp_path / "t", **no_dropout)
    s = copy_model(tiny_bert(layers=1, hidden=32, heads=2, intermediate=64, seed=2), tmp_path / "s", **no_dropout)
    args = ["distill", "--stage", "both", "--teacher", str(t), "--student", str(s), "--task", "sst2",
            "--data-dir", str(data), "--train-batch-size", "33", "--intermediate-epochs", "1",
            "--prediction-epochs", "1", "--intermediate-lr", "1e-3", "--prediction-lr", "1e-3",
            "--eval-step", "2", "--checkpoint-steps", "2", "--device", "cpu"]
    _run([sys.executable, "-m", "confdistill", *args, "--out", str(tmp_path / "one")])
    # `accelerate launch --cpu --num_processes 2` starts ONE process (accelerate's CPU launcher
    # needs mpirun for more); `--multi_gpu` uses torchrun, which on a CPU-only machine gives two
    # gloo processes (DistributedType.MULTI_CPU), and our `--device cpu` keeps them on the CPU.
    _run([str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
          "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "confdistill", *args,
          "--out", str(tmp_path / "two")])

    import json

    run_two = json.loads((tmp_path / "two" / "run.json").read_text())
    assert run_two["world_size"] == 2 and run_two["status"] == "complete"
    for sub in ("intermediate/final", "final"):
        a, b = load_file(str(tmp_path / "one" / sub / "model.safetensors")), \
            load_file(str(tmp_path / "two" / sub / "model.safetensors"))
        start = load_file(str(s / "model.safetensors"))
        worst = max(float((a[k] - b[k]).abs().max()) for k in a)
        moved = max(float((a[k] - start[k]).abs().max()) for k in a if k in start)
        assert worst <= TOLERANCE, (sub, worst)
        assert moved > 100 * TOLERANCE  # training did move the weights: the comparison means something
    run_one = json.loads((tmp_path / "one" / "run.json").read_text())
    assert run_two["n_train"] == run_one["n_train"] == 100
    assert run_two["beta"] == pytest.approx(run_one["beta"], rel=1e-3)
    torch.testing.assert_close(torch.load(tmp_path / "two" / "teacher_logits.pt")["logits"],
                               torch.load(tmp_path / "one" / "teacher_logits.pt")["logits"], atol=1e-5, rtol=1e-5)


def test_a_single_process_launch_says_so_first(tiny_bert: Callable[..., Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """``accelerate launch --num_processes 2`` without ``--multi_gpu`` on a CPU runs ONE process:
    distill's first line says so (it used to record ``world_size: 1`` silently)."""
    import json

    from confdistill.cli.main import main
    from confdistill.distillation.batches import single_process_launch_note

    data = write_sst2(tmp_path, 16, 8, real=False)
    args = ["distill", "--stage", "prediction", "--teacher", str(tiny_bert(layers=2)), "--student",
            str(tiny_bert(layers=1, seed=2)), "--task", "sst2", "--data-dir", str(data), "--num-train-epochs", "1",
            "--device", "cpu"]
    accelerate = VENV_BIN / "accelerate"
    if not accelerate.exists():
        pytest.skip("the accelerate launcher is not installed beside this python")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([str(accelerate), "launch", "--cpu", "--num_processes", "2", "--num_machines", "1",
                           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "confdistill", "--quiet",
                           *args, "--out", str(tmp_path / "launched")], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((tmp_path / "launched" / "run.json").read_text())["world_size"] == 1
    ours = [line for line in proc.stderr.splitlines() if line.startswith(("distill", "prediction done"))]
    assert ours[0].startswith("distill: accelerate launch started 1 process here (world size 1)"), proc.stderr
    assert "--multi_gpu --num_processes N" in ours[0]
    # The same in-process: the note is the command's very first line; absent alone and under torchrun's 2.
    for name, value in (("ACCELERATE_MIXED_PRECISION", "no"), ("ACCELERATE_USE_CPU", "True"),
                        ("ACCELERATE_DYNAMO_BACKEND", "NO")):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    capsys.readouterr()
    try:
        assert main(["--quiet", *args, "--out", str(tmp_path / "in-process")]) == 0
    finally:
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=True)  # built under the launcher's variables
    assert capsys.readouterr().err.splitlines()[0] == single_process_launch_note("distill")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert single_process_launch_note("distill") is None
    for name in ("ACCELERATE_MIXED_PRECISION", "ACCELERATE_USE_CPU", "ACCELERATE_DYNAMO_BACKEND", "WORLD_SIZE"):
        monkeypatch.delenv(name)
    assert single_process_launch_note("distill") is None

"""Never overwrite without being asked (issue 10, item 2).

Every command that writes a folder or a file refuses an existing non-empty target with exit 2, one
line naming it and saying how to proceed (``--overwrite``, or ``--resume`` where it applies), leaves
it byte-identical, and never replaces a file with a folder or the reverse.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from confdistill.cli.main import main
from confdistill.prediction.softmax_file import write_softmax
from distill_helpers import one_thread, write_sst2
from input_helpers import tiny_experiment

pytestmark = pytest.mark.usefixtures(one_thread.__name__)


def snapshot(path: Path) -> dict[str, str]:
    """Relative name -> SHA-256 of every file under ``path`` (or of ``path`` itself)."""
    if path.is_file():
        return {".": hashlib.sha256(path.read_bytes()).hexdigest()}
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture
def refuses(capsys: pytest.CaptureFixture[str]) -> Callable[..., str]:
    def check(argv: list[str], *needles: str, untouched: Path | None = None) -> str:
        before = snapshot(untouched) if untouched is not None else None
        capsys.readouterr()
        assert main([str(a) for a in argv]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        for needle in needles:
            assert needle in err, (needle, err)
        if untouched is not None:
            assert snapshot(untouched) == before
        return err

    return check


def test_make_student_onto_an_existing_model_leaves_it_byte_identical(
        tiny_bert: Callable[..., Path], tmp_path: Path, refuses: Callable[..., str]) -> None:
    teacher = tiny_bert(layers=2, hidden=32, heads=2, intermediate=64)
    other = tiny_bert(layers=2, hidden=32, heads=2, intermediate=64, seed=5)
    existing = tmp_path / "model"
    import shutil

    shutil.copytree(other, existing)
    base = ["make-student", "--from", str(teacher), "--layers", "1", "--out"]
    refuses([*base, existing], f"{existing}: --out already exists and is not empty", "--overwrite",
            untouched=existing)
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    refuses([*base, a_file], "is a file, not a folder", untouched=a_file)
    refuses([*base, a_file, "--overwrite"], "never replaced by one", untouched=a_file)
    refuses([*base, a_file / "sub"], "is a file, so no folder can be made inside it", untouched=a_file)
    # An empty folder is fine, and --overwrite replaces a model as a whole.
    (tmp_path / "empty").mkdir()
    assert main([*base, str(tmp_path / "empty")]) == 0
    assert main([*base, str(existing), "--overwrite"]) == 0
    assert json.loads((existing / "student.json").read_text())["layers"] == 1
    # No temporary left (the lock beside a folder swapped in whole stays, like every .lock file).
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [".empty.lock", ".model.lock"]


def test_training_commands_refuse_a_non_empty_out(tiny_bert: Callable[..., Path], tmp_path: Path,
                                                   refuses: Callable[..., str]) -> None:
    data = write_sst2(tmp_path, 48, 16, real=False)
    t = tiny_bert(layers=2, hidden=32, heads=2, intermediate=64)
    foreign = tmp_path / "docs"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("years of work")
    distill = ["distill", "--teacher", t, "--student", t, "--task", "sst2", "--data-dir", data]
    finetune = ["finetune", "--model", t, "--task", "sst2", "--data-dir", data]
    for argv in (distill, finetune):
        refuses([*argv, "--out", foreign], f"{foreign}: --out already exists and is not empty",
                "--resume to continue it, --overwrite to replace it", untouched=foreign)
        refuses([*argv, "--out", foreign / "thesis.tex"], "is a file, not a folder", untouched=foreign)
        refuses([*argv, "--out", foreign, "--resume", "--overwrite"], "not both", untouched=foreign)


def test_finetune_overwrite_replaces_only_after_validation(tiny_bert: Callable[..., Path], tmp_path: Path,
                                                           refuses: Callable[..., str]) -> None:
    data = write_sst2(tmp_path, 48, 16, real=False)
    t = tiny_bert(layers=1, hidden=32, heads=2, intermediate=64)
    out = tmp_path / "run"
    argv = ["finetune", "--model", str(t), "--task", "sst2", "--data-dir", str(data), "--out", str(out),
            "--epochs", "1", "--batch-size", "16", "--eval-step", "none", "--checkpoint-steps", "none"]
    assert main(argv) == 0
    (out / "stray.txt").write_text("x")
    # A bad input with --overwrite: refused before anything of the old run is removed.
    bad = [*argv[:6], str(tmp_path / "nowhere"), *argv[7:], "--overwrite"]
    refuses(bad, "nowhere", untouched=out)
    assert main([*argv, "--overwrite"]) == 0
    assert not (out / "stray.txt").exists() and json.loads((out / "run.json").read_text())["status"] == "complete"


def _experiment(tmp_path: Path, teacher: Path, data: Path, out: Path) -> Path:
    return tiny_experiment(tmp_path / "exp.toml", out=out, data=data, teacher=teacher)


def test_run_demo_tune_refuse_a_foreign_folder_and_continue_their_own(
        tiny_bert: Callable[..., Path], tmp_path: Path, refuses: Callable[..., str]) -> None:
    data = write_sst2(tmp_path, 24, 12, real=False)
    t = tiny_bert(layers=2, hidden=32, heads=2, intermediate=64)
    foreign = tmp_path / "docs"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("years of work")
    exp = _experiment(tmp_path, t, data, foreign)
    refuses(["run", exp], "output folder already exists and is not empty", "--overwrite", untouched=foreign)
    refuses(["run", exp, "--out", foreign / "thesis.tex"], "is a file, not a folder", untouched=foreign)
    refuses(["demo", "--out", foreign, "--quick"], "--out already exists and is not empty", untouched=foreign)
    refuses(["tune", exp, "--trials", "1", "--kappa", "0.05", "--out", foreign], "--out already exists and is not empty",
            "another --out", untouched=foreign)
    # An experiment's own folder is continued (here: only planned).
    own = tmp_path / "exp_out"
    own.mkdir()
    (own / "experiment.json").write_text("{}")
    assert main(["run", str(exp), "--out", str(own), "--dry-run"]) == 0


def test_augment_and_table_refuse_existing_outputs(tiny_bert: Callable[..., Path], tmp_path: Path,
                                                   refuses: Callable[..., str]) -> None:
    data = write_sst2(tmp_path, 12, 6, real=False)
    existing = tmp_path / "aug.tsv"
    existing.write_text("sentence\tlabel\nmine\t1\n")
    refuses(["augment", "--task", "SST-2", "--data-dir", data, "--model", tiny_bert(), "--out", existing],
            "--out already exists: use --overwrite", untouched=existing)
    refuses(["augment", "--task", "SST-2", "--data-dir", data, "--model", tiny_bert(), "--out", tmp_path],
            "is a folder, not a file")

    root = tmp_path / "root"
    rng = np.random.default_rng(0)
    for model in ("T", "S"):
        for split in ("train", "eval"):
            p = rng.uniform(0.05, 0.95, 40)
            write_softmax(root / model / f"A_on_{split}" / "eval_results.csv", np.stack([p, 1 - p], 1),
                          (np.arange(40) % 2).astype(np.int64))
    out = tmp_path / "rq1"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    argv = ["table", "--root", root, "--teacher", "A=T", "--student", "S", "--kappa", "0.1", "--bootstrap", "10",
            "--no-plot", "--out", out]
    refuses(argv, "--out already exists and is not empty", "--overwrite", untouched=out)
    assert main([str(a) for a in argv] + ["--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["rq1.csv", "rq1.json", "rq1.md"]  # replaced as a whole

"""Clear errors at the boundary (issue 10, item 5): read-only and full file systems, bad tune settings.

OS errors become one line naming the path and the cause, exit 2, with nothing partial left. The
file-system cases run on a small tmpfs (``mount -t tmpfs``), which needs root and mount rights; where
the machine does not allow it they are skipped with the reason.
"""

from __future__ import annotations

import errno
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from confdistill.cli.main import main
from confdistill.errors import describe_os_error
from confdistill.io import os_error_in, save_tensors
from distill_helpers import one_thread, write_sst2
from input_helpers import ONE_EPOCH, other_vocab_copy, tiny_experiment

pytestmark = pytest.mark.usefixtures(one_thread.__name__)


def _mount(path: Path, *options: str) -> str | None:
    """Mount a tmpfs at ``path``; None when done, else why not."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return "needs root to mount a tmpfs"
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(path)],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"mount failed: {exc}"
    return None if done.returncode == 0 else f"mount not permitted here: {done.stderr.strip()}"


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    mounted: list[Path] = []

    def make(*options: str) -> Path:
        path = tmp_path / f"fs-{uuid.uuid4().hex[:6]}"
        why = _mount(path, *options)
        if why is not None:
            pytest.skip(f"tmpfs file-system test skipped: {why}")
        mounted.append(path)
        return path

    yield make
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


def _fill(fs: Path, leave: int) -> None:
    """Fill ``fs`` until about ``leave`` bytes are free."""
    st = os.statvfs(fs)
    free = st.f_bavail * st.f_frsize
    with open(fs / "ballast", "wb") as fh:
        fh.write(b"\0" * max(0, free - leave))


def _one_line(capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "internal error" not in err and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def test_read_only_file_system(tiny_bert: Callable[..., Path], tmp_path: Path, tmpfs: Callable[..., Path],
                               capsys: pytest.CaptureFixture[str]) -> None:
    data = write_sst2(tmp_path, 16, 8, real=False)
    t = tiny_bert()
    ro = tmpfs("size=1m", "ro")
    cases = [
        ["make-student", "--from", t, "--layers", "1", "--out", ro / "s"],
        ["distill", "--teacher", t, "--student", t, "--task", "sst2", "--data-dir", data, "--out", ro / "d"],
        ["finetune", "--model", t, "--task", "sst2", "--data-dir", data, "--out", ro / "f"],
        ["predict", "--model", t, "--task", "SST-2", "--data-dir", data, "--out", ro / "p.csv", "--no-progress"],
        ["augment", "--task", "SST-2", "--data-dir", data, "--model", t, "--out", ro / "a.tsv"],
    ]
    capsys.readouterr()
    for argv in cases:
        assert main([str(a) for a in argv]) == 2, argv
        _one_line(capsys, str(ro), "read-only file system")
    assert os.listdir(ro) == []


def test_full_disk_names_the_path_and_leaves_nothing_partial(
        tiny_bert: Callable[..., Path], tmp_path: Path, tmpfs: Callable[..., Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    data = write_sst2(tmp_path, 48, 16, real=False)
    t = tiny_bert(layers=2, hidden=32, heads=2, intermediate=64)
    fs = tmpfs("size=2m")  # smaller than one tiny model (~4 MB)
    capsys.readouterr()
    assert main(["make-student", "--from", str(t), "--layers", "1", "--out", str(fs / "s")]) == 2
    _one_line(capsys, str(fs / "s"), "no space left on device")
    assert os.listdir(fs) == [".s.lock"]  # the half-written model folder is gone (its lock file stays)
    # distill: the disk fills while writing (torch's zip writer hides the OSError: found anyway)
    assert main(["distill", "--teacher", str(t), "--student", str(t), "--task", "sst2", "--data-dir", str(data),
                 "--out", str(fs / "d"), "--epochs", "1", "--batch-size", "16", "--eval-step", "none"]) == 2
    _one_line(capsys, str(fs / "d"), "no space left on device")
    leftovers = [p for p in (fs / "d").rglob("*") if ".tmp" in p.name or ".old-" in p.name] if (fs / "d").exists() else []
    assert leftovers == []
    # predict: a nearly full disk, the file and sidecar stay as they were (here: absent)
    for p in fs.iterdir():
        subprocess.run(["rm", "-rf", str(p)], check=True)
    _fill(fs, 2048)
    assert main(["predict", "--model", str(t), "--task", "SST-2", "--data-dir", str(data), "--out",
                 str(fs / "p.csv"), "--no-progress"]) == 2
    _one_line(capsys, "no space left on device")
    assert sorted(os.listdir(fs)) in (["ballast"], [".p.csv.lock", "ballast"])


def test_wrapped_os_errors_are_found() -> None:
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 26496 vs 26390")  # noqa: B904
    except RuntimeError as exc:
        found = os_error_in(exc)
    assert found is not None and found.errno == errno.ENOSPC
    assert os_error_in(ValueError("Error while serializing: I/O error: No space left on device (os error 28)")).errno == 28
    assert os_error_in(KeyError("x")) is None
    # A bug raised while handling an unrelated OS error stays a bug (exit 1), not an OS error.
    try:
        try:
            raise FileNotFoundError(errno.ENOENT, "nope", "x")
        except FileNotFoundError:
            raise KeyError("bug")  # noqa: B904
    except KeyError as exc:
        assert os_error_in(exc) is None
    assert describe_os_error(OSError(errno.EROFS, "Read-only file system", "/x")) == "/x: read-only file system"
    assert "free some space" in describe_os_error(OSError(errno.ENOSPC, "No space", "/y"))


def test_save_tensors_on_a_full_disk(tmpfs: Callable[..., Path]) -> None:
    import torch

    fs = tmpfs("size=64k")
    with pytest.raises(OSError) as info:
        save_tensors({"a": torch.zeros(100_000)}, fs / "t.pt")
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(fs / "t.pt")


# ---- tune validates every setting before the first trial ------------------------------------------


def _tune_experiment(tmp_path: Path, teacher: Path, data: Path, *, stage2: str = ONE_EPOCH,
                     student: str = 'name = "L1"\nlayers = 1') -> Path:
    return tiny_experiment(tmp_path / f"exp-{uuid.uuid4().hex[:6]}.toml", out=tmp_path / "exp", data=data,
                           teacher=teacher, student=student, stage2=stage2, kappa="kappa = 0.05")


def test_tune_refuses_bad_settings_before_any_trial(tiny_bert: Callable[..., Path], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:

    data = write_sst2(tmp_path, 16, 8, real=False)
    t = tiny_bert(layers=2, hidden=32, heads=2, intermediate=64)
    other = other_vocab_copy(t, tmp_path / "other_vocab")
    out = tmp_path / "tune"
    good = _tune_experiment(tmp_path, t, data)
    cases = [
        ([good, "--trials", "1", "--kappa", "-1"], "--kappa: expected a tolerance on σ > 0"),
        ([good, "--trials", "1", "--kappa", "0"], "--kappa: expected a tolerance on σ > 0"),
        ([good, "--trials", "0"], "--trials: expected a number of trials >= 1"),
        ([good, "--trials", "1", "--epsilon", "-0.1"], "--epsilon"),
        ([good, "--trials", "1", "--lambda-choices", "-1"], "--lambda-choices"),
        ([good, "--trials", "1", "--compare-lambda", "-2"], "--compare-lambda"),
        ([_tune_experiment(tmp_path, t, data, stage2="num_train_epochs = 1.0, train_batch_size = 0"), "--trials", "1"],
         "stage2.train_batch_size: must be >= 1"),
        ([_tune_experiment(tmp_path, t, data, stage2="num_train_epochs = -2.0, train_batch_size = 8"), "--trials", "1"],
         "stage2.num_train_epochs: must be > 0"),
        # stage 1 across tokenizers (stage 2 alone runs across them: tests/test_cross_tokenizer.py)
        ([_tune_experiment(tmp_path, t, data, student=f'name = "O"\ndir = "{other}"\nstages = ["stage1", "stage2"]'),
          "--trials", "1"], "different vocabularies"),
    ]
    capsys.readouterr()
    for argv, needle in cases:
        assert main(["tune", *map(str, argv), "--out", str(out)]) == 2, argv
        _one_line(capsys, needle)
        assert not out.exists() and not (tmp_path / "exp").exists()  # nothing ran, nothing written


def test_full_disk_names_the_path_in_every_command(
        tiny_bert: Callable[..., Path], tmp_path: Path, tmpfs: Callable[..., Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    """With less than a page free, each command's first write fails: the line names the path.

    (Before: ten commands said "no space left on device" alone — Python's writes, flushes and
    fsyncs on an open file raise an OSError without a file name, and Optuna's SQLite commit an
    AssertionError.)
    """
    data = write_sst2(tmp_path, 16, 8, real=False)
    t = tiny_bert(layers=2, hidden=32, heads=2, intermediate=64)
    preds = tmp_path / "preds.csv"
    preds.write_text("pred,p0,p1,label\n" + "".join(f"{i % 2},{0.3 + i % 2 * 0.4},{0.7 - i % 2 * 0.4},{i % 2}\n"
                                                     for i in range(20)))
    root = tmp_path / "root"
    for model in ("T", "S"):
        (root / model / "A_on_eval").mkdir(parents=True)
        (root / model / "A_on_eval" / "eval_results.csv").write_text(preds.read_text())
    fs = tmpfs("size=1m")
    toml = tiny_experiment(tmp_path / "exp.toml", out=fs / "exp", data=data, teacher=t, stage1=None,
                           kappa="kappa = 0.05")
    train = data / "SST-2" / "train.tsv"
    cases = {
        "make-student": ["--from", t, "--layers", "1", "--out", fs / "s"],
        "distill": ["--teacher", t, "--student", t, "--task", "sst2", "--data-dir", data, "--out", fs / "d",
                    "--epochs", "1", "--eval-step", "none"],
        "finetune": ["--model", t, "--task", "sst2", "--data-dir", data, "--out", fs / "f", "--epochs", "1"],
        "predict": ["--model", t, "--task", "SST-2", "--data-dir", data, "--out", fs / "p.csv", "--no-progress"],
        "augment": ["--task", "SST-2", "--data-dir", data, "--model", t, "--out", fs / "a.tsv", "--n-aug", "2"],
        "analyze": ["--teacher", preds, "--student", preds, "--kappa", "0.05", "--json", fs / "a.json"],
        "table": ["--root", root, "--teacher", "A=T", "--student", "S", "--bootstrap", "10", "--out", fs / "rq1"],
        "general-distill": ["--teacher", t, "--corpus", train, "--text-column", "sentence", "--layers", "1",
                            "--hidden", "32", "--heads", "2", "--intermediate", "64", "--out", fs / "g"],
        "export": ["--model", t, "--out", fs / "x"],
        "run": [toml, "--out", fs / "r"],
        "tune": [toml, "--trials", "1", "--out", fs / "tu"],
        "demo": ["--quick", "--out", fs / "demo"],
    }
    cases["analyze --out"] = [*cases["analyze"][:-2], "--out", fs / "an"]
    for name, args in cases.items():
        for p in fs.iterdir():
            subprocess.run(["rm", "-rf", str(p)], check=True)
        _fill(fs, 2048)  # less than one page: the first block written fails
        capsys.readouterr()
        assert main([name.split()[0], *map(str, args)]) == 2, name
        line = _one_line(capsys, "no space left on device")
        assert f": error: {fs}/" in line, (name, line)  # the path, at the start of the message

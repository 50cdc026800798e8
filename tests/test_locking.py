"""One writer per folder (issue 10, item 4).

Two processes claiming one ``--out`` at the same moment: exactly one runs, every time (repeated
tries); the other stops at once with "OUT is in use by process N", having touched nothing. The lock
is the kernel's (``flock``): it goes with the process, however the process dies. Workers of one
tune study share the folder (shared locks) and keep exclusive writers out.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from confdistill.cli.main import main
from confdistill.errors import InputError
from confdistill.folders import claim_output, lock_holder, output_lock
from distill_helpers import write_sst2

SRC = Path(__file__).resolve().parents[1] / "src"
ENV = {**os.environ, "PYTHONPATH": str(SRC)}

# The claim distill/finetune make (confdistill.distillation.run_files), then a run's work.
CLAIMER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from confdistill.errors import InputError
    from confdistill.distillation.run_files import claim_run_dir

    out, go = Path(sys.argv[1]), float(sys.argv[2])
    while time.time() < go:
        pass
    try:
        with claim_run_dir(out, resume=False, overwrite=False):
            (out / "run.json").write_text("{}")
            time.sleep(0.3)
    except InputError as exc:
        print(exc, file=sys.stderr)
        sys.exit(2)
    """
)

HOLDER = textwrap.dedent(
    """
    import sys, time
    from confdistill.folders import output_lock
    with output_lock(sys.argv[1], shared=sys.argv[2] == "shared"):
        print("locked", flush=True)
        time.sleep(60)
    """
)


# A process that runs CLI commands on request, each at a given instant: two of them race on one
# --out the way CLAIMER's do, with the imports paid once instead of per try.
RACER = textwrap.dedent(
    """
    import contextlib, io, json, os, sys, time
    from confdistill.cli.main import main
    import confdistill.models.loading, confdistill.models.onnx_export, transformers  # imports paid up front
    print("ready", flush=True)
    for line in sys.stdin:
        job = json.loads(line)
        while time.time() < job["go"]:
            pass
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            rc = main(job["argv"])
        print(json.dumps({"rc": rc, "err": err.getvalue(), "pid": os.getpid()}), flush=True)
    """
)


def _race(argv_for: Callable[[Path], list[str]], outs: list[Path]) -> list[list[dict]]:
    """Two RACERs run ``argv_for(out)`` at the same instant, for each of ``outs`` in turn."""
    procs = [subprocess.Popen([sys.executable, "-c", RACER], env=ENV, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True) for _ in range(2)]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        rounds = []
        for out in outs:
            job = json.dumps({"go": time.time() + 0.2, "argv": [str(a) for a in argv_for(out)]})
            for p in procs:
                assert p.stdin is not None
                p.stdin.write(job + "\n")
                p.stdin.flush()
            rounds.append([json.loads(p.stdout.readline()) for p in procs if p.stdout is not None])
        return rounds
    finally:
        for p in procs:
            p.kill()
            p.wait()


@pytest.mark.parametrize(("command", "tries"), [("make-student", 8), ("export", 3)])
def test_two_exports_or_make_students_on_one_out_exactly_one_runs(
        tiny_bert: Callable[..., Path], tmp_path: Path, command: str, tries: int) -> None:
    """Issue 21: both used to run (each writing the whole folder); now the second stops at once."""
    t = tiny_bert(layers=2, hidden=32, heads=2, intermediate=64)
    extra = ["--layers", "1"] if command == "make-student" else []
    source = "--from" if command == "make-student" else "--model"
    outs = [tmp_path / f"out{i}" for i in range(tries)]
    for out, results in zip(outs, _race(lambda o: [command, source, t, *extra, "--out", o], outs), strict=True):
        assert sorted(r["rc"] for r in results) == [0, 2], results
        winner = next(r["pid"] for r in results if r["rc"] == 0)
        loser = next(r["err"] for r in results if r["rc"] == 2)
        assert (f"{out} is in use by process {winner}" in loser
                or "already exists and is not empty" in loser), loser  # (it came after the winner finished)
        assert len(loser.strip().splitlines()) == 1, loser
        assert (out / "config.json").is_file()

# Holds the locks of file targets (and of folders swapped in whole): .NAME.lock beside each.
FILE_HOLDER = textwrap.dedent(
    """
    import contextlib, sys, time
    from confdistill.folders import output_lock
    with contextlib.ExitStack() as stack:
        for target in sys.argv[1:]:
            stack.enter_context(output_lock(target, kind="file"))
        print("locked", flush=True)
        time.sleep(60)
    """
)


def _holder(path: Path, mode: str = "exclusive") -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), mode], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked", proc.stderr.read()
    return proc


def test_two_processes_on_one_out_exactly_one_runs_every_time(tmp_path: Path) -> None:
    for attempt in range(8):
        out = tmp_path / f"run{attempt}"
        go = time.time() + 1.5  # both start claiming at the same moment
        procs = [subprocess.Popen([sys.executable, "-c", CLAIMER, str(out), str(go)], env=ENV,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
        results = [(p.wait(timeout=60), p.stderr.read()) for p in procs]
        codes = sorted(code for code, _ in results)
        assert codes == [0, 2], results
        loser = next(err for code, err in results if code == 2)
        winner = next(p.pid for p, (code, _) in zip(procs, results, strict=True) if code == 0)
        assert f"{out} is in use by process {winner}" in loser or "already exists and is not empty" in loser, loser


def test_distill_into_a_folder_in_use_stops_at_once_touching_nothing(
        tiny_bert: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_sst2(tmp_path, 24, 12, real=False)
    t = tiny_bert(layers=2, hidden=32, heads=2, intermediate=64)
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text('{"status": "running"}')
    holder = _holder(out)
    capsys.readouterr()
    try:
        listing = sorted(p.name for p in out.iterdir())
        for argv in (["distill", "--teacher", str(t), "--student", str(t), "--resume"],
                     ["finetune", "--model", str(t), "--resume"]):
            started = time.monotonic()
            rc = main([*argv, "--task", "sst2", "--data-dir", str(data), "--out", str(out)])
            err = capsys.readouterr().err
            assert rc == 2 and f"{out} is in use by process {holder.pid}" in err, err
            assert len(err.strip().splitlines()) == 1 and time.monotonic() - started < 10
            assert sorted(p.name for p in out.iterdir()) == listing
            assert (out / "run.json").read_text() == '{"status": "running"}'
    finally:
        holder.kill()
        holder.wait()
    # kill -9 released it: the kernel drops a dead process's lock, nothing stale to remove.
    assert lock_holder(out) is None
    with output_lock(out):
        pass


def test_predict_and_run_take_the_lock(tiny_bert: Callable[..., Path], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    data = write_sst2(tmp_path, 16, 12, real=False)
    target = tmp_path / "p.csv"
    holder = subprocess.Popen([sys.executable, "-c", FILE_HOLDER, str(target)], env=ENV, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        rc = main(["predict", "--model", str(tiny_bert()), "--task", "SST-2", "--data-dir", str(data),
                   "--out", str(target), "--no-progress"])
        err = capsys.readouterr().err
        assert rc == 2 and f"{target} is in use by process {holder.pid}" in err and not target.exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert main(["predict", "--model", str(tiny_bert()), "--task", "SST-2", "--data-dir", str(data),
                 "--out", str(target), "--no-progress"]) == 0


def test_every_writing_command_stops_at_once_on_an_out_in_use(
        tiny_bert: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """export, make-student, augment --out, table --out and analyze --out hold the same lock as
    distill (beside a folder swapped in whole, or a file): a second writer stops before any work —
    analyze and table with inputs that do not even exist, so the lock is seen first."""
    t = tiny_bert()
    data = write_sst2(tmp_path, 16, 12, real=False)
    nowhere = tmp_path / "nowhere"
    argvs = {
        "export": ["export", "--model", t, "--out", tmp_path / "x"],
        "make-student": ["make-student", "--from", t, "--layers", "1", "--out", tmp_path / "s"],
        "augment": ["augment", "--task", "SST-2", "--data-dir", data, "--model", t, "--out", tmp_path / "a.tsv"],
        "table": ["table", "--root", nowhere, "--teacher", "A=T", "--student", "S", "--out", tmp_path / "rq1"],
        "analyze": ["analyze", "--teacher", nowhere / "t.csv", "--student", nowhere / "s.csv", "--out", tmp_path / "an"],
    }
    targets = [str(argv[-1]) for argv in argvs.values()]
    holder = subprocess.Popen([sys.executable, "-c", FILE_HOLDER, *targets], env=ENV, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        for command, argv in argvs.items():
            capsys.readouterr()
            rc = main([str(a) for a in argv])
            err = capsys.readouterr().err
            assert rc == 2 and f"{argv[-1]} is in use by process {holder.pid}" in err, (command, err)
            assert len(err.strip().splitlines()) == 1 and not Path(argv[-1]).exists(), (command, err)
    finally:
        holder.kill()
        holder.wait()


def test_tune_workers_share_a_folder_and_keep_exclusive_writers_out(tmp_path: Path) -> None:
    out = tmp_path / "tune"
    worker = _holder(out, "shared")
    try:
        with output_lock(out, shared=True):  # a second worker of the study: welcome
            pass
        # A run/distill into the tune folder is kept out.
        with pytest.raises(InputError, match=f"is in use by process {worker.pid}"), \
                claim_output(out, ours=lambda p: True):
            pass
    finally:
        worker.kill()
        worker.wait()
    exclusive = _holder(out)
    try:
        with pytest.raises(InputError, match="is in use"), output_lock(out, shared=True):
            pass
    finally:
        exclusive.kill()
        exclusive.wait()


def test_lock_is_reentrant_and_a_failed_block_leaves_no_folder(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b"
    with output_lock(out), output_lock(out):  # nested claims of one process: fine
        assert lock_holder(out) is None  # our own lock is not "another process"
    with pytest.raises(RuntimeError), output_lock(out / "c"):
        raise RuntimeError("validation failed")
    assert not (out / "c").exists()  # made only for the lock: removed again
    with pytest.raises(RuntimeError), output_lock(tmp_path / "new" / "deep"):
        raise RuntimeError("validation failed")
    assert not (tmp_path / "new").exists()


def test_only_rank_0_of_a_launch_claims_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under ``accelerate launch`` every rank runs distill: rank 0 holds OUT's lock, the others
    must not try (they would find it held by rank 0)."""
    from confdistill.distillation.run_files import claim_run_dir, launch_rank

    out = tmp_path / "run"
    holder = _holder(out)  # stands in for rank 0
    try:
        monkeypatch.setenv("RANK", "1")
        assert launch_rank() == 1
        with claim_run_dir(out, resume=True, overwrite=False):
            pass
        monkeypatch.setenv("RANK", "0")
        with pytest.raises(InputError, match="is in use"), claim_run_dir(out, resume=True, overwrite=False):
            pass
    finally:
        holder.kill()
        holder.wait()

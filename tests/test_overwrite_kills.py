"""Every command's replace-with-``--overwrite`` is the old or the new result after any kill (issue 22, item 1).

For ``analyze --out``, ``export`` and ``make-student`` (a folder swapped in) and ``finetune`` and
``general-distill`` (a run folder emptied for ``--overwrite``), the real command is killed at each
file-system step of that replacement (tests/kill_helpers.py). After each kill, once a reader of
the target or the next command has looked, the target is byte for byte the old result or the new
one, and nothing temporary is left. The first state of each kind (killed before the decision,
between the two renames, after it) is then given to the real next command.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from confdistill.cli.main import main
from confdistill.prediction.softmax_file import write_softmax
from distill_helpers import metrics_log, one_thread, weights, write_sst2
from kill_helpers import kill_matrix, tree, visible
from test_general_distill import _corpus

pytestmark = pytest.mark.usefixtures(one_thread.__name__)


def cli(argv: list) -> int:
    return main([str(a) for a in argv])


def _check_swap_matrix(rows: list[dict], old: dict, new: dict, name: str, extra: tuple[str, ...] = ()) -> None:
    assert rows[-1]["code"] == 0 and len(rows) > 8, rows[-1]   # several kill points, then it completes
    kinds = {r["kind"] for r in rows}
    assert {"before", "gone", "decided"} <= kinds, kinds       # the case: killed between the renames
    for r in rows[:-1]:
        assert r["code"] == 137
        # As the kill left it: old, new, or (between the two renames) missing with the journal beside it.
        assert r["pre"] in (old, new) or r["kind"] == "gone", r["k"]
        # A reader recovers it; the next command leaves nothing beside it.
        assert r["after_reader"] in (old, new) and r["post"] in (old, new), r["k"]
        assert r["listing"] == sorted([name, *extra]), (r["k"], r["listing"])
    decided_at = min(r["k"] for r in rows if r["kind"] != "before")   # the journal's rename
    assert all((r["post"] == old) == (r["k"] < decided_at) for r in rows[:-1])
    assert rows[-1]["post"] == new


def _next_command(snapshot: Path, folder: Path, argv: list, expect: dict, name: str) -> None:
    """Put the state a kill left back in place and run the real next command on it."""
    shutil.rmtree(folder)
    shutil.copytree(snapshot, folder, symlinks=True)
    assert cli([str(a) for a in argv]) == 0
    assert tree(folder / name) == expect
    assert visible(folder) == [name]


def test_make_student_overwrite_killed_at_every_step(tiny_bert: Callable[..., Path], tmp_path: Path) -> None:
    teacher = tiny_bert(layers=2, hidden=32, heads=2, intermediate=64)
    work, out = tmp_path / "work", tmp_path / "work" / "student"
    assert cli(["make-student", "--from", teacher, "--layers", "2", "--out", out]) == 0
    old = tree(out)
    argv = ["make-student", "--from", teacher, "--layers", "1", "--out", out, "--overwrite"]
    rows = kill_matrix(argv, out, tmp_path / "snaps", reader="confdistill.models.files:check_dir")
    new = tree(out)
    assert new != old
    _check_swap_matrix(rows, old, new, "student")
    # Killed between the two renames: the next make-student, even without --overwrite, finds the
    # swap finished (so it refuses), and with --overwrite writes the same new student.
    shutil.rmtree(work)
    shutil.copytree(tmp_path / "snaps" / "gone", work)
    assert cli(["make-student", "--from", teacher, "--layers", "2", "--out", out]) == 2
    assert tree(out) == new
    for kind in ("gone", "before"):
        _next_command(tmp_path / "snaps" / kind, work, argv, new, "student")


def test_export_overwrite_killed_at_every_step(tiny_bert: Callable[..., Path], tmp_path: Path) -> None:
    a = tiny_bert(layers=1, hidden=32, heads=2, intermediate=64)
    b = tiny_bert(layers=1, hidden=32, heads=2, intermediate=64, seed=3)
    work, out = tmp_path / "work", tmp_path / "work" / "onnx"
    assert cli(["export", "--model", a, "--format", "onnx", "--out", out]) == 0
    old = tree(out)
    argv = ["export", "--model", b, "--format", "onnx", "--out", out, "--overwrite"]
    rows = kill_matrix(argv, out, tmp_path / "snaps", reader="confdistill.models.onnx_dir:is_onnx_dir")
    new = tree(out)
    _check_swap_matrix(rows, old, new, "onnx")
    shutil.rmtree(work)
    shutil.copytree(tmp_path / "snaps" / "gone", work)
    from confdistill.models.onnx_dir import is_onnx_dir, read_onnx_manifest

    assert is_onnx_dir(out) and read_onnx_manifest(out)["source_model"] == str(b.resolve())  # the new export
    assert visible(work) == ["onnx"]


def _softmax(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.05, 0.95, 80)
    write_softmax(path, np.stack([p, 1 - p], 1), (np.arange(80) % 2).astype(np.int64))
    return path


def test_analyze_out_overwrite_killed_at_every_step(tmp_path: Path) -> None:
    t, s1, s2 = (_softmax(tmp_path / f"{n}.csv", seed) for n, seed in (("t", 0), ("s1", 1), ("s2", 2)))
    work, out = tmp_path / "work", tmp_path / "work" / "analysis"
    common = ["analyze", "--teacher", t, "--bootstrap", "20", "--no-plots", "--out", out]
    assert cli([*common, "--student", s1]) == 0
    old = tree(out)
    argv = [*common, "--student", s2, "--overwrite"]
    rows = kill_matrix(argv, out, tmp_path / "snaps", reader="confdistill.folders:recover_folder")
    new = tree(out)
    assert new != old
    _check_swap_matrix(rows, old, new, "analysis")
    for kind in ("gone", "decided", "before"):
        _next_command(tmp_path / "snaps" / kind, work, argv, new, "analysis")


def _same_weights(a: Path, b: Path) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def _check_clear_matrix(rows: list[dict], old: dict) -> None:
    assert rows[-1]["code"] == 0 and {r["kind"] for r in rows[:-1]} == {"undecided", "decided"}
    for r in rows[:-1]:
        # The old run (a kill before the decision: every entry put back), or the emptied folder.
        assert r["post"] in (old, {}), r["k"]
        assert (r["post"] == old) == (r["kind"] == "undecided"), r["k"]
        assert r["listing"] == (sorted(old_top(old)) if r["post"] == old else []), r["k"]
    assert sum(r["kind"] == "undecided" for r in rows) >= len(old_top(old))   # a kill between every two moves


def old_top(files: dict) -> set[str]:
    return {name.split("/")[0] for name in files}


def test_finetune_overwrite_killed_at_every_clear_step(tiny_bert: Callable[..., Path], tmp_path: Path) -> None:
    data = write_sst2(tmp_path, 40, 12, real=False)
    model = tiny_bert(layers=1, hidden=32, heads=2, intermediate=64)
    out = tmp_path / "ft"
    base = ["finetune", "--model", model, "--task", "sst2", "--data-dir", data, "--out", out, "--epochs", "1",
            "--batch-size", "16", "--checkpoint-steps", "2", "--learning-rate", "1e-3"]
    assert cli([*base, "--seed", "1"]) == 0
    old = tree(out)
    rows = kill_matrix([*base, "--overwrite"], out, tmp_path / "snaps", mode="clear",
                       reader="confdistill.folders:recover_folder")
    _check_clear_matrix(rows, old)
    shutil.copytree(out, tmp_path / "new")
    # The next command on what each kill left: --resume continues the old run (complete: nothing to
    # do) or starts the new one in the emptied folder, which ends as the uninterrupted new run.
    for kind, expect in (("undecided", "old"), ("decided", "new")):
        shutil.rmtree(out)
        shutil.copytree(tmp_path / "snaps" / kind, out)
        assert cli([*base, "--resume"]) == 0
        if expect == "old":
            assert tree(out) == old
        else:
            assert _same_weights(out / "final", tmp_path / "new" / "final")
            assert metrics_log(out) == metrics_log(tmp_path / "new")


def test_general_distill_overwrite_killed_at_every_clear_step(tiny_bert: Callable[..., Path], tmp_path: Path) -> None:
    teacher = tiny_bert(layers=2, hidden=32, heads=2, intermediate=64)
    corpus = _corpus(tmp_path / "c.txt", 24)
    out = tmp_path / "general"
    base = ["general-distill", "--teacher", teacher, "--corpus", corpus, "--layers", "1", "--hidden", "32",
            "--heads", "2", "--intermediate", "64", "--out", out, "--device", "cpu", "--batch-size", "8",
            "--epochs", "1", "--checkpoint-steps", "2"]
    assert cli([*base, "--seed", "1"]) == 0
    old = tree(out)
    rows = kill_matrix([*base, "--overwrite"], out, tmp_path / "snaps", mode="clear",
                       reader="confdistill.folders:recover_folder")
    _check_clear_matrix(rows, old)
    shutil.copytree(out, tmp_path / "new")
    shutil.rmtree(out)
    shutil.copytree(tmp_path / "snaps" / "decided", out)
    assert cli([*base, "--resume"]) == 0
    assert _same_weights(out / "final", tmp_path / "new" / "final")

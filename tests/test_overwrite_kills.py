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


def _restore(snapshot: Path, folder: Path) -> None:
    """Put the state a kill left back in place."""
    shutil.rmtree(folder)
    shutil.copytree(snapshot, folder, symlinks=True)


def _next_command(snapshot: Path, folder: Path, argv: list, expect: dict, name: str) -> None:
    """Run the real next command on the state a kill left."""
    _restore(snapshot, folder)
    assert cli(argv) == 0
    assert tree(folder / name) == expect
    assert visible(folder) == [name]


def _swap_case(first: list, argv: list, out: Path, snaps: Path, reader: str) -> tuple[dict, dict]:
    """Write ``out`` with ``first``, then replace it with ``argv`` killed at every step: (old, new)."""
    assert cli(first) == 0
    old = tree(out)
    rows = kill_matrix(argv, out, snaps, reader=reader)
    new = tree(out)
    assert old is not None and new != old
    _check_swap_matrix(rows, old, new, out.name)
    return old, new


def test_make_student_overwrite_killed_at_every_step(tiny_bert: Callable[..., Path], tmp_path: Path) -> None:
    teacher = tiny_bert(layers=2, hidden=32, heads=2, intermediate=64)
    work, out, snaps = tmp_path / "work", tmp_path / "work" / "student", tmp_path / "snaps"
    first = ["make-student", "--from", teacher, "--layers", "2", "--out", out]
    argv = ["make-student", "--from", teacher, "--layers", "1", "--out", out, "--overwrite"]
    _old, new = _swap_case(first, argv, out, snaps, "confdistill.models.files:check_dir")
    # Killed between the two renames: the next make-student, even without --overwrite, finds the
    # swap finished (so it refuses), and with --overwrite writes the same new student.
    _restore(snaps / "gone", work)
    assert cli(first) == 2
    assert tree(out) == new
    for kind in ("gone", "before"):
        _next_command(snaps / kind, work, argv, new, "student")


def test_export_overwrite_killed_at_every_step(tiny_bert: Callable[..., Path], tmp_path: Path) -> None:
    from confdistill.models.onnx_dir import is_onnx_dir, read_onnx_manifest

    a = tiny_bert(layers=1, hidden=32, heads=2, intermediate=64)
    b = tiny_bert(layers=1, hidden=32, heads=2, intermediate=64, seed=3)
    work, out, snaps = tmp_path / "work", tmp_path / "work" / "onnx", tmp_path / "snaps"
    _swap_case(["export", "--model", a, "--format", "onnx", "--out", out],
               ["export", "--model", b, "--format", "onnx", "--out", out, "--overwrite"], out, snaps,
               "confdistill.models.onnx_dir:is_onnx_dir")
    _restore(snaps / "gone", work)
    assert is_onnx_dir(out) and read_onnx_manifest(out)["source_model"] == str(b.resolve())  # the new export
    assert visible(work) == ["onnx"]


def _softmax(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.05, 0.95, 80)
    write_softmax(path, np.stack([p, 1 - p], 1), (np.arange(80) % 2).astype(np.int64))
    return path


def test_analyze_out_overwrite_killed_at_every_step(tmp_path: Path) -> None:
    t, s1, s2 = (_softmax(tmp_path / f"{n}.csv", seed) for n, seed in (("t", 0), ("s1", 1), ("s2", 2)))
    work, out, snaps = tmp_path / "work", tmp_path / "work" / "analysis", tmp_path / "snaps"
    common = ["analyze", "--teacher", t, "--bootstrap", "20", "--no-plots", "--out", out]
    argv = [*common, "--student", s2, "--overwrite"]
    _old, new = _swap_case([*common, "--student", s1], argv, out, snaps, "confdistill.folders:recover_folder")
    for kind in ("gone", "decided", "before"):
        _next_command(snaps / kind, work, argv, new, "analysis")


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


def _clear_case(base: list, out: Path, tmp_path: Path) -> None:
    """An old run in ``out`` (seed 1), then ``--overwrite`` killed at every step of its clear; the real
    next command (``--resume``) on what a kill left keeps the old, complete run (before the decision)
    or runs the new one in the emptied folder, ending as the uninterrupted ``--overwrite`` run."""
    assert cli([*base, "--seed", "1"]) == 0
    old = tree(out)
    rows = kill_matrix([*base, "--overwrite"], out, tmp_path / "snaps", mode="clear",
                       reader="confdistill.folders:recover_folder")
    _check_clear_matrix(rows, old)
    shutil.copytree(out, tmp_path / "new")
    for kind in ("undecided", "decided"):
        _restore(tmp_path / "snaps" / kind, out)
        assert cli([*base, "--resume"]) == 0
        if kind == "undecided":
            assert tree(out) == old
        else:
            assert _same_weights(out / "final", tmp_path / "new" / "final")
            assert metrics_log(out) == metrics_log(tmp_path / "new")


def test_finetune_overwrite_killed_at_every_clear_step(tiny_bert: Callable[..., Path], tmp_path: Path) -> None:
    data = write_sst2(tmp_path, 40, 12, real=False)
    model = tiny_bert(layers=1, hidden=32, heads=2, intermediate=64)
    _clear_case(["finetune", "--model", model, "--task", "sst2", "--data-dir", data, "--out", tmp_path / "ft",
                 "--epochs", "1", "--batch-size", "16", "--checkpoint-steps", "2", "--learning-rate", "1e-3"],
                tmp_path / "ft", tmp_path)


def test_general_distill_overwrite_killed_at_every_clear_step(tiny_bert: Callable[..., Path], tmp_path: Path) -> None:
    teacher = tiny_bert(layers=2, hidden=32, heads=2, intermediate=64)
    corpus = _corpus(tmp_path / "c.txt", 24)
    _clear_case(["general-distill", "--teacher", teacher, "--corpus", corpus, "--layers", "1", "--hidden", "32",
                 "--heads", "2", "--intermediate", "64", "--out", tmp_path / "general", "--device", "cpu",
                 "--batch-size", "8", "--epochs", "1", "--checkpoint-steps", "2"], tmp_path / "general", tmp_path)

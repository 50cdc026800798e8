"""A prediction file and its sidecar are one unit (issue 10, item 3).

``kill -9`` is simulated in a child process: every file-system step of the write (each fsync,
rename and unlink) is a kill point, and the child calls ``os._exit`` instead of taking it. After
each kill the pair on disk is never a new file beside an old sidecar (at worst the file without
its sidecar), and once the interrupted commit is finished (by the next writer or a reader,
:func:`confdistill.commit.recover_commit`) it is exactly the old pair or exactly the new one, with
no temporary file left.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from confdistill.commit import commit_files, recover_commit, sidecar_matches
from confdistill.folders import remove_stale_temps
from confdistill.io import sha256_file, temp_sibling
from confdistill.prediction.softmax_file import sidecar_path, write_softmax
from kill_helpers import child_env

CHILD = textwrap.dedent(
    """
    import os, sys
    import numpy as np
    from confdistill.prediction.softmax_file import write_softmax
    from kill_helpers import arm

    path, kill_at, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    arm(kill_at)  # the kill_at-th file-system step exits at once: what kill -9 leaves
    rng = np.random.default_rng(n)
    p = rng.dirichlet([1, 1], size=n)
    meta = None if os.environ.get("NO_META") else {"model": f"model-{n}", "split": "dev"}
    write_softmax(path, p, (np.arange(n) % 2).astype(np.int64), meta=meta)
    """
)


def _probs(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(n)
    return rng.dirichlet([1, 1], size=n), (np.arange(n) % 2).astype(np.int64)


def _write(path: Path, n: int, *, meta: bool = True) -> None:
    write_softmax(path, *_probs(n), meta={"model": f"model-{n}", "split": "dev"} if meta else None)


def _pair(path: Path) -> tuple[bytes | None, bytes | None]:
    side = sidecar_path(path)
    return (path.read_bytes() if path.exists() else None, side.read_bytes() if side.exists() else None)


def _run_child(path: Path, kill_at: int, n: int, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**child_env(), **(env_extra or {})}
    return subprocess.run([sys.executable, "-c", CHILD, str(path), str(kill_at), str(n)], env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("fmt", [".csv", ".parquet"])
def test_kill_at_every_write_step_leaves_a_consistent_pair(tmp_path: Path, fmt: str) -> None:
    ref = tmp_path / "ref"
    _write(ref / f"old{fmt}", 10)
    _write(ref / f"new{fmt}", 12)
    old, new = _pair(ref / f"old{fmt}"), _pair(ref / f"new{fmt}")
    work = tmp_path / "work"
    path = work / f"p{fmt}"
    seen_old = seen_new = 0
    for kill_at in range(1, 40):
        for f in work.glob("*") if work.exists() else []:
            f.unlink()
        for f in work.glob(".*") if work.exists() else []:
            f.unlink()
        work.mkdir(exist_ok=True)
        path.write_bytes(old[0])
        sidecar_path(path).write_bytes(old[1])
        done = _run_child(path, kill_at, 12)
        if done.returncode == 0:
            assert kill_at > 3, "the write has several kill points"
            assert _pair(path) == new
            break
        assert done.returncode == 137, done.stderr
        # Before any recovery: never a new file beside the old sidecar (or the reverse).
        data, side = _pair(path)
        assert data in (old[0], new[0])
        if side is not None:
            assert (data, side) in (old, new), f"mismatched pair after a kill at step {kill_at}"
            assert sidecar_matches(path, sidecar_path(path)) is True
        # The next writer or reader finishes the commit (or finds nothing to finish) and the
        # dead writer's temporary files go: exactly the old pair or exactly the new one.
        recover_commit(path)
        remove_stale_temps(work, exclusive=True)
        assert _pair(path) in (old, new), f"kill at step {kill_at}"
        seen_old += _pair(path) == old
        seen_new += _pair(path) == new
        assert sorted(p.name for p in work.iterdir()) == sorted([path.name, sidecar_path(path).name])
    else:
        pytest.fail("the write never completed")
    assert seen_old and seen_new  # kill points both before and after the commit decision


def test_without_sidecar_the_old_one_is_removed_as_one_unit(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    for kill_at in range(1, 30):
        for f in tmp_path.iterdir():
            f.unlink()
        _write(path, 10)
        old = _pair(path)
        done = _run_child(path, kill_at, 12, {"NO_META": "1"})
        recover_commit(path)
        remove_stale_temps(tmp_path, exclusive=True)
        data, side = _pair(path)
        if done.returncode == 0:
            assert side is None and data != old[0]
            break
        assert (data, side) == old or (side is None and data != old[0]), kill_at
    else:
        pytest.fail("the write never completed")


def test_failure_in_the_commit_never_leaves_a_mixed_pair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception (not a kill) at any rename: before the decision the old pair stays, after it
    the commit is finished (now, or by the next reader); never a mixed pair, no temporary left."""
    import os

    ref = tmp_path / "ref"
    _write(ref / "new.tsv", 12)
    new = _pair(ref / "new.tsv")
    work = tmp_path / "work"
    work.mkdir()
    path = work / "p.tsv"
    real = os.replace
    outcomes = []
    for fail_at in (1, 2, 3):
        for f in work.iterdir():
            f.unlink()
        _write(path, 10)
        old = _pair(path)
        calls = [0]

        def flaky(src: str, dst: str, calls: list[int] = calls, fail_at: int = fail_at) -> None:
            calls[0] += 1
            if calls[0] == fail_at:
                raise OSError(28, "No space left on device", str(dst))
            real(src, dst)

        monkeypatch.setattr(os, "replace", flaky)
        with pytest.raises(OSError):
            _write(path, 12)
        monkeypatch.setattr(os, "replace", real)
        recover_commit(path)  # what the next reader does
        assert _pair(path) in (old, new), fail_at
        outcomes.append("old" if _pair(path) == old else "new")
        assert {p.name for p in work.iterdir()} == {path.name, sidecar_path(path).name}
    assert outcomes == ["old", "new", "new"]


def test_sidecar_records_the_file_hash_and_rows(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    _write(path, 7)
    meta = json.loads(sidecar_path(path).read_text())
    assert meta["file_sha256"] == sha256_file(path) and meta["n_rows"] == 7
    assert sidecar_matches(path, sidecar_path(path)) is True
    path.write_text(path.read_text() + "")  # same bytes: still a pair
    assert sidecar_matches(path, sidecar_path(path)) is True
    _write(tmp_path / "q.csv", 9)
    path.write_bytes((tmp_path / "q.csv").read_bytes())  # another file beside this sidecar
    assert sidecar_matches(path, sidecar_path(path)) is False


def test_journal_of_a_live_writer_is_left_alone(tmp_path: Path) -> None:
    a = tmp_path / "a.txt"
    tmp = temp_sibling(a)
    tmp.write_text("new")
    journal = tmp_path / ".a.txt.commit"
    journal.write_text(json.dumps({"pid": 1, "ops": [["move", tmp.name, a.name]]}))  # pid 1 is alive
    assert recover_commit(a) is False and not a.exists()
    journal.write_text(json.dumps({"pid": 2 ** 22 + 12345, "ops": [["move", tmp.name, a.name]]}))  # no such pid
    assert recover_commit(a) is True and a.read_text() == "new" and not journal.exists()
    with pytest.raises(ValueError, match="one folder"):
        commit_files([(tmp_path / "x", tmp_path / "sub" / "x")])
    # A planted journal may not touch anything but the pair's own files and our temporaries.
    (tmp_path / "victim.txt").write_text("keep")
    for ops in ([["unlink", "victim.txt"]], [["unlink", "../victim.txt"]], [["move", "victim.txt", a.name]],
                [["move", tmp.name, "../x"]], "rm -rf /"):
        journal.write_text(json.dumps({"pid": 2 ** 22 + 12345, "ops": ops}))
        assert recover_commit(a) is False and not journal.exists()
    assert (tmp_path / "victim.txt").read_text() == "keep"


def test_predict_split_failure_keeps_the_earlier_pair(tiny_bert: Callable[..., Path], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from confdistill.prediction.predict import predict_split
    from distill_helpers import write_sst2

    data = write_sst2(tmp_path, 16, 12, real=False)
    out = tmp_path / "p.csv"
    predict_split(tiny_bert(), "SST-2", data, "dev", out, progress=False)
    before = _pair(out)

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("confdistill.commit.commit_files", boom)
    with pytest.raises(OSError):
        predict_split(tiny_bert(), "SST-2", data, "dev", out, progress=False, overwrite=True)
    assert _pair(out) == before and sorted(p.name for p in tmp_path.glob(".p*")) == []

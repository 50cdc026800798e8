"""A folder replaced or emptied is the old one or the new one after any kill (issue 22, item 1).

``kill -9`` is simulated as in tests/test_unit_commit.py: a child process calls ``os._exit``
instead of its k-th file-system step (fsync, rename, unlink, rmdir, mkdir) of the swap or the
clear. After each kill, once the next command or a reader has looked (``recover_folder``,
``remove_stale_temps``), the target is byte for byte the old folder or the new one and nothing
temporary is left beside it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from confdistill.errors import InputError
from confdistill.folders import LOCK_FILE, clear_directory, recover_folder, remove_stale_temps
from confdistill.io import atomic_directory
from confdistill.models.files import check_dir
from confdistill.swap import recover_folder_swap
from kill_helpers import child_env

SWAP_CHILD = textwrap.dedent(
    """
    import sys
    from kill_helpers import arm
    from pathlib import Path
    from confdistill.io import atomic_directory

    target, kill_at = Path(sys.argv[1]), int(sys.argv[2])
    with atomic_directory(target) as tmp:
        (tmp / "weights.bin").write_bytes(b"new" * 1000)
        (tmp / "sub").mkdir()
        (tmp / "sub" / "config.json").write_text('{"new": true}')
        arm(kill_at)  # from here: the swap's own steps
    """
)

CLEAR_CHILD = textwrap.dedent(
    """
    import sys
    from kill_helpers import arm
    from pathlib import Path
    from confdistill.folders import clear_directory

    out, kill_at = Path(sys.argv[1]), int(sys.argv[2])
    arm(kill_at)
    clear_directory(out)
    """
)


def tree(path: Path) -> dict[str, str] | None:
    """Relative name -> SHA-256 of every file under ``path`` (None when it does not exist)."""
    if not path.exists():
        return None
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


def _old_model(path: Path) -> None:
    (path / "sub").mkdir(parents=True)
    (path / "weights.bin").write_bytes(b"old" * 500)
    (path / "tokenizer.json").write_text("{}")
    (path / "sub" / "config.json").write_text('{"old": true}')


def _child(code: str, *args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], env=child_env(), capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("existing", [True, False], ids=["replace", "create"])
def test_kill_at_every_swap_step_leaves_old_or_new(tmp_path: Path, existing: bool) -> None:
    ref = tmp_path / "ref"
    _old_model(ref / "old")
    new_ref = ref / "new"
    with atomic_directory(new_ref) as tmp:
        (tmp / "weights.bin").write_bytes(b"new" * 1000)
        (tmp / "sub").mkdir()
        (tmp / "sub" / "config.json").write_text('{"new": true}')
    old, new = tree(ref / "old") if existing else None, tree(new_ref)
    work = tmp_path / "work"
    target = work / "model"
    seen: dict[str, int] = {"old": 0, "new": 0, "gone": 0}
    for kill_at in range(1, 60):
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        if existing:
            shutil.copytree(ref / "old", target)
        done = _child(SWAP_CHILD, target, kill_at)
        if done.returncode == 0:
            assert kill_at > 8, "the swap has several kill points"
            assert tree(target) == new
            assert sorted(os.listdir(work)) == ["model"]
            break
        assert done.returncode == 137, done.stderr
        now = tree(target)
        # Before anyone looks: the old folder, the new one, or (between the two renames) none,
        # and then the decision is on disk to finish it.
        assert now in (old, new) or (now is None and (work / ".model.swap").is_file()), kill_at
        seen["gone"] += now is None and existing
        # A reader (loading the model) recovers: exactly the old or the new folder.
        if existing or now is not None or (work / ".model.swap").is_file():
            check_dir(target)
        assert tree(target) in (old, new), kill_at
        seen["old" if tree(target) == old else "new"] += 1
        # The next command writing there removes what the dead writer left.
        remove_stale_temps(work, recursive=False, names=["model"])
        assert sorted(os.listdir(work)) == (["model"] if tree(target) is not None else []), kill_at
    else:
        pytest.fail("the swap never completed")
    assert seen["new"] and (seen["old"] or not existing)  # kill points before and after the decision
    assert seen["gone"] or not existing  # the case: killed between the two renames


def test_old_copy_left_by_an_earlier_version_is_put_back(tmp_path: Path) -> None:
    """Versions before the journal, killed between the renames, left only ``.NAME.old-PID``."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    pid = int(dead.stdout)
    _old_model(tmp_path / f".model.old-{pid}")
    tmp = tmp_path / f".model.{pid}.abcd1234.tmp"
    tmp.mkdir()
    (tmp / "half").write_text("half-written")
    before = tree(tmp_path / f".model.old-{pid}")
    assert recover_folder_swap(tmp_path / "model")
    assert tree(tmp_path / "model") == before
    recover_folder(tmp_path / "model")
    assert sorted(os.listdir(tmp_path)) == ["model"]


def test_a_live_writers_swap_is_left_alone(tmp_path: Path) -> None:
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        _old_model(tmp_path / f".model.old-{live.pid}")
        (tmp_path / f".model.{live.pid}.abcd1234.tmp").mkdir()
        (tmp_path / ".model.swap").write_text(json.dumps(
            {"pid": live.pid, "new": f".model.{live.pid}.abcd1234.tmp", "old": f".model.old-{live.pid}"}))
        before = sorted(os.listdir(tmp_path))
        assert not recover_folder_swap(tmp_path / "model")
        recover_folder(tmp_path / "model")
        assert sorted(os.listdir(tmp_path)) == before
    finally:
        live.kill()
        live.wait()
    recover_folder(tmp_path / "model")  # its writer gone: finished
    assert sorted(os.listdir(tmp_path)) == ["model"] and tree(tmp_path / "model") == {}


def test_a_planted_journal_moves_nothing(tmp_path: Path) -> None:
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "x").write_text("keep")
    (tmp_path / ".model.swap").write_text(json.dumps({"pid": 1 << 22, "new": "precious", "old": None}))
    assert not recover_folder_swap(tmp_path / "model")
    assert sorted(os.listdir(tmp_path)) == ["precious"]
    with pytest.raises(InputError, match="does not exist"):
        check_dir(tmp_path / "model")


def _old_run(out: Path) -> None:
    _old_model(out / "final")
    (out / "checkpoints" / "step-00000002").mkdir(parents=True)
    (out / "checkpoints" / "step-00000002" / "state.pt").write_bytes(b"state" * 100)
    (out / "run.json").write_text('{"status": "complete"}')
    (out / "metrics.jsonl").write_text('{"step": 1}\n')
    (out / LOCK_FILE).write_text("")


def test_kill_at_every_clear_step_leaves_old_or_empty(tmp_path: Path) -> None:
    """``--overwrite`` of a run folder: the old run, or the emptied folder the new run starts in."""
    ref = tmp_path / "ref"
    _old_run(ref)
    old = tree(ref)
    out = tmp_path / "out"
    seen = {"old": 0, "empty": 0}
    for kill_at in range(1, 60):
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(ref, out)
        done = _child(CLEAR_CHILD, out, kill_at)
        if done.returncode == 0:
            assert kill_at > 6
            assert os.listdir(out) == [LOCK_FILE]
            break
        assert done.returncode == 137, done.stderr
        # A reader of the run's model, or the next command claiming the folder, recovers it.
        if kill_at % 2:
            recover_folder(out / "final")
        remove_stale_temps(out, exclusive=True)
        now = tree(out)
        assert now in (old, {LOCK_FILE: old[LOCK_FILE]}), kill_at
        assert sorted(os.listdir(out)) == (sorted(os.listdir(ref)) if now == old else [LOCK_FILE]), kill_at
        seen["old" if now == old else "empty"] += 1
    else:
        pytest.fail("the clear never completed")
    assert seen["old"] >= 4 and seen["empty"]  # kills between the moves put every entry back


def test_clear_that_fails_midway_puts_everything_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _old_run(tmp_path / "out")
    before = tree(tmp_path / "out")
    real, calls = os.replace, [0]

    def failing(src: object, dst: object) -> None:
        calls[0] += 1
        if calls[0] == 3:
            raise OSError(28, "No space left on device")
        real(src, dst)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(OSError):
        clear_directory(tmp_path / "out")
    monkeypatch.setattr(os, "replace", real)
    assert tree(tmp_path / "out") == before
    assert sorted(os.listdir(tmp_path / "out")) == sorted([LOCK_FILE, "checkpoints", "final", "metrics.jsonl",
                                                           "run.json"])

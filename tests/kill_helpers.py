"""Kill a real command at every file-system step of its folder swap or ``--overwrite`` clear.

:func:`kill_matrix` runs the command (``confdistill.cli.main.main(argv)``) in a child process.
When the command reaches the step under test — :func:`confdistill.swap.replace_folder` of
``target``, or :func:`confdistill.swap.clear_folder` of it — the child explores it: for k = 1, 2, …
it restores the folder as it was, forks, and the fork takes the step but calls ``os._exit(137)``
instead of its k-th fsync/rename/unlink/rmdir/mkdir (what ``kill -9`` leaves: no cleanup runs).
After each kill the child records the target as the kill left it, lets a reader of the target
recover it, then does what the next command does first (``remove_stale_temps``), and records the
target and its folder again. Forking keeps this to one start of torch per command; the fork
only touches files. The first state of each kind (killed before the decision, between the two
renames, after the decision…) is kept as a copy for the test to run the real next command on.
Then the command finishes normally.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

SRC = Path(__file__).resolve().parents[1] / "src"

CHILD = textwrap.dedent(
    """
    import json, os, shutil, sys
    from pathlib import Path

    import torch
    torch.set_num_threads(1)

    import confdistill.folders as folders
    import confdistill.swap as swap
    from confdistill.cli.main import main
    from confdistill.io import _prefix
    from kill_helpers import arm, tree, visible

    cfg = json.loads(sys.argv[1])
    target, snaps, mode = Path(cfg["target"]).absolute(), Path(cfg["snaps"]), cfg["mode"]
    folder = target.parent if mode == "replace" else target   # what a kill can change
    results = []

    def restore(pristine):
        for name in visible(folder):
            p = folder / name
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
        for p in pristine.iterdir():
            (shutil.copytree(p, folder / p.name, symlinks=True) if p.is_dir() else shutil.copy2(p, folder / p.name))

    def kind_of(code):
        if code == 0:
            return "done"
        names = visible(folder)
        if mode == "clear":
            return "decided" if any(n.startswith(".cleared-") for n in names) else "undecided"
        if f".{target.name}.swap" in names:
            return "gone" if target.name not in names else "decided"
        return "before"

    def explore(step):
        pristine = snaps / "pristine"
        pristine.mkdir(parents=True)
        for name in visible(folder):
            p = folder / name
            shutil.copytree(p, pristine / name, symlinks=True) if p.is_dir() else shutil.copy2(p, pristine / name)
        for k in range(1, 500):
            restore(pristine)
            pid = os.fork()
            if pid == 0:
                try:
                    step(arm, k)
                finally:
                    os._exit(0)
            code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
            kind = kind_of(code)
            row = {"k": k, "code": code, "kind": kind, "pre": tree(target)}
            if code != 0 and not (snaps / kind).exists():
                shutil.copytree(folder, snaps / kind, symlinks=True, ignore=shutil.ignore_patterns("*.lock"))
            reader = cfg["reader"]
            if reader:   # a reader of the target recovers it
                module, name = reader.split(":")
                __import__(module, fromlist=[name]).__dict__[name](target if mode == "replace" else target / "final")
            row["after_reader"] = tree(target)
            if mode == "replace":   # what the next command on the target does first
                folders.remove_stale_temps(folder, recursive=False, names=[target.name])
            else:
                folders.remove_stale_temps(folder, exclusive=True)
            row["post"], row["listing"] = tree(target), visible(folder)
            results.append(row)
            if code == 0:
                break
        restore(pristine)
        shutil.rmtree(pristine)
        (snaps / "results.json").write_text(json.dumps(results))

    real_replace, real_clear = swap.replace_folder, folders.clear_folder

    def hooked_replace(tmp, tgt):
        if Path(tgt).absolute() != target:
            return real_replace(tmp, tgt)
        held = snaps / "new"
        shutil.move(tmp, held)   # the command's finished temporary, out of the way while exploring

        def step(arm, k):
            mine = Path(__import__("tempfile").mkdtemp(prefix=_prefix(target.name), suffix=".tmp", dir=folder))
            shutil.copytree(held, mine, dirs_exist_ok=True, symlinks=True)
            arm(k)
            real_replace(mine, target)

        explore(step)
        shutil.move(held, tmp)
        real_replace(tmp, tgt)

    def hooked_clear(path, *, keep):
        if Path(path).absolute() != target:
            return real_clear(path, keep=keep)

        def step(arm, k):
            arm(k)
            real_clear(path, keep=keep)

        explore(step)
        real_clear(path, keep=keep)

    swap.replace_folder = hooked_replace
    folders.clear_folder = hooked_clear
    code = main(cfg["argv"])
    sys.exit(code)
    """
)


def arm(kill_at: int) -> None:
    """From now on, the ``kill_at``-th call of os.replace/rename/unlink/fsync/rmdir/mkdir in this
    process exits at once (``os._exit(137)``: no cleanup runs, what ``kill -9`` leaves)."""
    calls = [0]

    def killing(fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            calls[0] += 1
            if calls[0] == kill_at:
                os._exit(137)
            return fn(*args, **kwargs)
        return wrapped

    for name in ("replace", "rename", "unlink", "fsync", "rmdir", "mkdir"):
        setattr(os, name, killing(getattr(os, name)))


def tree(path: Path) -> dict[str, str] | None:
    """Relative name -> SHA-256 of every file under ``path``, lock files aside (None: no such folder)."""
    path = Path(path)
    if not path.is_dir():
        return None
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file() and not p.name.endswith(".lock")}


def visible(folder: Path) -> list[str]:
    """The entries of ``folder`` other than lock files (held by the running command), sorted."""
    return sorted(n for n in os.listdir(folder) if not n.endswith(".lock"))


def child_env() -> dict[str, str]:
    """The environment of a child process that imports these sources and this helper."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(Path(__file__).parent)]),
            "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def kill_matrix(argv: list[Any], target: Path, snaps: Path, *, mode: str = "replace",
                reader: str | None = None) -> list[dict[str, Any]]:
    """Run ``confdistill ARGV`` killing it at each step of its swap (``mode="replace"``) or clear
    (``"clear"``) of ``target``; returns one record per kill point (see the module docstring).
    reader: ``"module:function"`` called on the target (``OUT/final`` for a clear) after each kill."""
    cfg = {"argv": [str(a) for a in argv], "target": str(target), "snaps": str(snaps), "mode": mode,
           "reader": reader}
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(cfg)], env=child_env(), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((snaps / "results.json").read_text())

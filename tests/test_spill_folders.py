"""DuckDB's spill folders are named per process and removed once their owner is gone (issue 22, item 2).

A killed analysis used to leave its ``confdistill-duckdb-*`` folder in the temporary directory for
good (on 10^8-row logs, gigabytes). Now the folder carries the owner's pid; the next analysis
removes dead owners' folders and keeps a live process's, and a normal run leaves none.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest

from confdistill.cli.main import main
from confdistill.prediction.softmax_file import write_softmax

SRC = Path(__file__).resolve().parents[1] / "src"

#: An analysis that dies (kill -9) while its DuckDB connection, and so its spill folder, is open.
KILLED_ANALYSIS = textwrap.dedent(
    """
    import os, sys
    from confdistill.prediction.sources import connect

    with connect() as con:
        con.execute("SELECT 1").fetchall()
        os._exit(137)
    """
)


def _softmax_pair(folder: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 60)
    p = rng.uniform(0.05, 0.95, 60)
    t, s = folder / "t.csv", folder / "s.csv"
    write_softmax(t, np.stack([p, 1 - p], 1), labels)
    q = np.clip(p + rng.normal(0, 0.02, 60), 0.01, 0.99)
    write_softmax(s, np.stack([q, 1 - q], 1), labels)
    return t, s


def _spills(tmp: Path) -> list[str]:
    return sorted(p.name for p in tmp.iterdir() if p.name.startswith("confdistill-duckdb-"))


def test_dead_owners_spill_folders_go_live_ones_stay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "PYTHONPATH": str(SRC), "TMPDIR": str(tmp)}
    killed = subprocess.Popen([sys.executable, "-c", KILLED_ANALYSIS], env=env)
    assert killed.wait(timeout=120) == 137
    left = _spills(tmp)
    assert len(left) == 1 and left[0].startswith(f"confdistill-duckdb-{killed.pid}-")  # what the kill left
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        planted_live = tmp / f"confdistill-duckdb-{live.pid}-abcd1234"
        planted_live.mkdir()
        (planted_live / "duckdb_temp_block-1.block").write_bytes(b"x" * 100)
        monkeypatch.setattr(tempfile, "tempdir", str(tmp))
        t, s = _softmax_pair(tmp_path)
        assert main(["analyze", "--teacher", str(t), "--student", str(s), "--bootstrap", "20"]) == 0
        capsys.readouterr()
        # The killed analysis's folder is gone, the live process's kept, this run's own removed.
        assert _spills(tmp) == [planted_live.name]
    finally:
        live.kill()
        live.wait()
    assert main(["analyze", "--teacher", str(t), "--student", str(s), "--bootstrap", "20"]) == 0
    assert _spills(tmp) == []  # its owner is gone now


def test_spill_folder_names_its_owner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from confdistill.prediction.sources import connect

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with connect() as con:
        assert con.execute("SELECT current_setting('temp_directory')").fetchone()[0].startswith(
            str(tmp_path / f"confdistill-duckdb-{os.getpid()}-"))
        assert len(_spills(tmp_path)) == 1
    assert _spills(tmp_path) == []

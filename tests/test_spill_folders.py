"""A killed analysis leaves nothing in the temporary directory (issue 22, item 2).

The DuckDB engine spilled into a ``confdistill-duckdb-*`` folder that a kill left behind for good (on
10^8-row logs, gigabytes). The streaming engine's only spill is the aligned rows of a text pair,
written for its second pass to an anonymous temporary file (``tempfile.TemporaryFile``: unlinked at
once, so the kernel frees it however the process dies). These tests kill an analysis while that
file holds rows and check the temporary directory is empty afterwards, and that a normal run also
leaves nothing there.
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

#: An analysis killed (os._exit, as kill -9: no clean-up runs) right after its spill holds rows.
KILLED_ANALYSIS = textwrap.dedent(
    """
    import os, sys
    from confdistill.properties import stream_engine
    from confdistill.properties.stream_analysis import analyze_pair

    write = stream_engine.Spill.write

    def write_then_die(self, t, s):
        write(self, t, s)
        self.file.flush()
        assert os.fstat(self.file.fileno()).st_size > 0
        os._exit(137)

    stream_engine.Spill.write = write_then_die
    analyze_pair(sys.argv[1], sys.argv[2], n_bootstrap=10)
    """
)


def _softmax_pair(folder: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    p = rng.uniform(0.05, 0.95, 300)
    t, s = folder / "t.csv", folder / "s.csv"
    write_softmax(t, np.stack([p, 1 - p], 1), labels)
    q = np.clip(p + rng.normal(0, 0.02, 300), 0.01, 0.99)
    write_softmax(s, np.stack([q, 1 - q], 1), labels)
    return t, s


def test_a_killed_analysis_leaves_no_spill(tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    t, s = _softmax_pair(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(SRC), "TMPDIR": str(tmp)}
    killed = subprocess.run([sys.executable, "-c", KILLED_ANALYSIS, str(t), str(s)], env=env,
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == 137, killed.stderr  # it died with rows in its spill
    assert sorted(os.listdir(tmp)) == []


def test_a_normal_analysis_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    t, s = _softmax_pair(tmp_path)
    assert main(["analyze", "--teacher", str(t), "--student", str(s), "--bootstrap", "20"]) == 0
    capsys.readouterr()
    assert sorted(os.listdir(tmp)) == []

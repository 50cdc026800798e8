"""Tuning on a real database: two ``confdistill tune`` worker processes (the CLI, real tiny
distillations) share one study in a throw-away PostgreSQL server.

The fixture starts the server itself: ``initdb`` into a temporary folder and ``pg_ctl start`` on a
Unix socket in that folder only (no TCP), as an unprivileged user when the tests run as root
(PostgreSQL refuses to run as root), and stops and deletes it afterwards. Where no server can be
started — no server binaries (``.ci/run`` installs Debian's ``postgresql``), no psycopg (the
``postgres`` extra), no unprivileged user — the test is skipped with the reason; with
``CONFDISTILL_REQUIRE_POSTGRES=1`` (set by ``.ci/run`` once the server is installed) it fails instead.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from distill_helpers import read_csv_rows, write_word_sst2

optuna = pytest.importorskip("optuna")

SRC = Path(__file__).resolve().parents[1] / "src"


def _unavailable(reason: str) -> None:
    if os.environ.get("CONFDISTILL_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"CONFDISTILL_REQUIRE_POSTGRES=1 but {reason}")
    pytest.skip(reason)


def _server_bin() -> Path | None:
    """The folder with initdb, pg_ctl and postgres: on PATH, or Debian's /usr/lib/postgresql/N/bin."""
    dirs = [Path(p).resolve().parent for p in filter(None, (shutil.which("pg_ctl"),))]
    dirs += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
                                     if Path(p).parent.name.isdigit() else 0, reverse=True)]
    for d in dirs:
        if all((d / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            return d
    return None


def _free_port() -> int:
    # Only names the socket file (.s.PGSQL.PORT) and the shared-memory key: no TCP listener is opened.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """``postgresql+psycopg://postgres@/tune?host=SOCKET_DIR&port=PORT`` of a fresh server."""
    try:
        import psycopg
    except ImportError:
        _unavailable("psycopg is not installed (pip install 'confdistill[postgres]')")
    bindir = _server_bin()
    if bindir is None:
        _unavailable("PostgreSQL server binaries (initdb, pg_ctl, postgres) not found: apt-get install postgresql")
    run_as: dict[str, Any] = {}
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root
        for name in ("postgres", "nobody"):
            with contextlib.suppress(KeyError):
                pw = pwd.getpwnam(name)
                run_as = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
                break
        else:
            _unavailable("running as root and no unprivileged user (postgres, nobody) to run the PostgreSQL server")
    # A short path (a socket's is limited to ~100 bytes) that the server's user can reach: /tmp
    # under root (TMPDIR may be a folder of root's own).
    root = Path(tempfile.mkdtemp(prefix="confdistill-pg-", dir="/tmp" if run_as and os.path.isdir("/tmp") else None))
    if run_as:
        os.chown(root, run_as["user"], run_as["group"])
    data, log, port = root / "data", root / "server.log", _free_port()
    env = {**os.environ, "LC_ALL": "C", "TZ": "UTC"}

    def pg(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(bindir / argv[0]), *argv[1:]], capture_output=True, text=True, env=env,
                              cwd=root, timeout=timeout, **run_as)

    started = False
    try:
        r = pg("initdb", "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
        if r.returncode != 0:
            _unavailable(f"initdb failed: {(r.stderr or r.stdout).strip().splitlines()[-1:]}")
        with open(data / "postgresql.conf", "a", encoding="utf-8") as fh:
            fh.write(f"\nlisten_addresses = ''\nunix_socket_directories = '{root}'\nport = {port}\n"
                     "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 40\n")
        r = pg("pg_ctl", "-D", str(data), "-l", str(log), "-w", "-t", "60", "start")
        started = r.returncode == 0
        if not started:
            tail = log.read_text(errors="replace").strip().splitlines()[-3:] if log.is_file() else r.stderr
            _unavailable(f"pg_ctl start failed: {tail}")
        with psycopg.connect(host=str(root), port=port, user="postgres", dbname="postgres", autocommit=True) as con:
            con.execute("CREATE DATABASE tune")
        yield f"postgresql+psycopg://postgres@/tune?host={root}&port={port}"
    finally:
        if started:
            pg("pg_ctl", "-D", str(data), "-m", "fast", "-w", "-t", "60", "stop")
        shutil.rmtree(root, ignore_errors=True)


def _experiment_toml(tmp_path: Path, teacher: Path) -> Path:
    from confdistill.experiments.config import experiment_from_dict
    from confdistill.tuning.objective import experiment_to_toml

    write_word_sst2(tmp_path / "glue")
    stage = {"num_train_epochs": 1.0, "train_batch_size": 8, "eval_step": None, "checkpoint_steps": None}
    cfg = experiment_from_dict({
        "experiment": {"name": "tiny", "output_dir": "out", "seed": 3, "max_length": 32},
        "analysis": {"n_bootstrap": 20},
        "footprint": {"enabled": False},
        "tasks": {"SST-2": {
            "data_dir": str(tmp_path / "glue"),
            "teacher": {"dir": str(teacher)},
            "students": [{"name": "L1", "from": "teacher", "layers": 1, "stage1": stage, "stage2": stage}],
        }},
    }, base_dir=tmp_path)
    path = tmp_path / "exp.toml"
    path.write_text(experiment_to_toml(cfg))
    return path


N_TRIALS, EPSILON = 5, 0.05


@pytest.mark.slow
def test_two_cli_workers_share_one_postgresql_study(postgres_url: str, tiny_bert, tmp_path: Path) -> None:
    pytest.importorskip("confdistill.distillation.trainer")
    teacher = tiny_bert(layers=2, hidden=32, heads=2, intermediate=64)
    exp = _experiment_toml(tmp_path, teacher)
    out = tmp_path / "tune"  # local workers of one study share --out (and its experiment folder)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    argv = [sys.executable, "-m", "confdistill.cli.main", "tune", str(exp), "--trials", str(N_TRIALS),
            "--storage", postgres_url, "--study-name", "pg-study", "--out", str(out),
            "--epsilon", str(EPSILON), "--kappa", "0.1", "--seed", "5"]
    started = time.monotonic()
    procs = [subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e[-3000:] for _, e in outs]
    elapsed = time.monotonic() - started

    study = optuna.load_study(study_name="pg-study", storage=postgres_url)
    assert len(optuna.get_all_study_names(storage=postgres_url)) == 1  # one study, both workers in it
    trials = study.get_trials(deepcopy=False)
    finished = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    done = [t for t in finished if t.state.name == "COMPLETE"]
    # Every trial finished (none failed); both stop at the shared target (a worker ends the trial
    # it was running when the other reached it).
    assert len(finished) == len(trials), [(t.number, t.state.name, t.user_attrs.get("fail_reason")) for t in trials]
    assert N_TRIALS <= len(finished) <= N_TRIALS + 1
    # No trial repeated: distinct numbers and configurations, the baseline run once.
    assert sorted(t.number for t in finished) == list(range(len(finished)))
    assert len({tuple(sorted(t.params.items())) for t in finished}) == len(finished)
    assert [t.user_attrs["role"] for t in finished].count("baseline") == 1
    workers = {t.user_attrs["worker"] for t in finished}
    assert len(workers) == 2, workers  # both processes ran trials
    # The best respects the constraint: the lowest σ among trials with accuracy ≥ teacher − ε.
    feasible = [t for t in done
                if t.user_attrs["dev_accuracy"] >= t.user_attrs["teacher_dev_accuracy"] - EPSILON - 1e-12]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["storage"].startswith("postgresql+psycopg://") and summary["study_name"] == "pg-study"
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    assert summary["trials"] == counts  # the last worker to write saw every trial

    if feasible:
        want = min(feasible, key=lambda t: (t.values[0], -t.user_attrs["dev_accuracy"], t.number))
        assert summary["best"]["trial"] == want.number == study.best_trial.number
        assert summary["best"]["dev_accuracy"] >= summary["min_dev_accuracy"] - 1e-12
    else:
        assert summary["best"] is None
    assert [int(r["number"]) for r in read_csv_rows(out / "trials.csv")] == [t.number for t in trials]
    print(f"two workers, {len(finished)} trials ({counts}) on PostgreSQL in {elapsed:.1f} s")

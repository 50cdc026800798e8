"""`confdistill analyze`: JSON reproduces the paper, bad input → exit 2 with no output, plots."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import confdistill.cli.main as cli_main
from confdistill.prediction.softmax_file import write_softmax
from test_confidence import PAPER, paper_pair


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """Run the real ``confdistill`` entry point with only this command registered (isolated from
    other sub-commands); returns (exit code, stdout, stderr)."""
    monkeypatch.setattr(cli_main, "SUBCOMMAND_MODULES", ["analyze"])

    def run(*argv: str | Path) -> tuple[int, str, str]:
        try:
            code = cli_main.main([str(a) for a in argv])
        except SystemExit as exc:  # argparse usage errors
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def _pair(tmp_path: Path, n: int = 200, seed: int = 0) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    sign = np.where(labels == 0, 1.0, -1.0)
    t = 1 / (1 + np.exp(-(sign * 2.0 + rng.normal(0, 1, n))))
    s = np.clip(t + rng.normal(0, 0.05, n), 0, 1)
    return (write_softmax(tmp_path / "teacher.csv", np.stack([t, 1 - t], 1), labels),
            write_softmax(tmp_path / "student.csv", np.stack([s, 1 - s], 1), labels))


@pytest.mark.parametrize(("task", "teacher", "split", "t_acc", "s_acc", "sigma"), PAPER,
                         ids=[f"{p[0]}-{p[2]}" for p in PAPER])
def test_json_reproduces_paper(cli, tmp_path: Path, paper_outputs: Path, task, teacher, split, t_acc, s_acc,
                               sigma) -> None:
    t, s = paper_pair(paper_outputs, task, teacher, split)
    code, out, err = cli("analyze", "--teacher", t, "--student", s, "--json", tmp_path / "r.json",
                         "--bootstrap", "100")
    assert code == 0, err
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["teacher_accuracy"] == pytest.approx(t_acc, abs=1e-9)
    assert data["student_accuracy"] == pytest.approx(s_acc, abs=1e-9)
    assert data["sigma"] == pytest.approx(sigma, abs=1e-9)
    assert data["verdict"] == "no verdict" and data["kappa"] is None
    assert f"{sigma:.6f}" in out and "no verdict" in out


def test_mrpc_4l_real_mismatch_refused(cli, tmp_path: Path, paper_outputs: Path) -> None:
    t, s = paper_pair(paper_outputs, "MRPC", "bert-base-uncased-finetuned-mrpc", "eval", "TinyBERT_4L_312D")
    code, _out, err = cli("analyze", "--teacher", t, "--student", s, "--json", tmp_path / "r.json",
                         "--out", tmp_path / "out")
    assert code == 2
    assert err.count("\n") == 1 and str(s) in err and "1725 rows" in err and "408" in err
    assert not (tmp_path / "r.json").exists() and not (tmp_path / "out").exists()


def test_verdicts_and_outputs(cli, tmp_path: Path) -> None:
    t, s = _pair(tmp_path)
    out_dir = tmp_path / "out"
    code, out, err = cli("analyze", "--teacher", t, "--student", s, "--kappa", "1.0", "--out", out_dir,
                         "--json", tmp_path / "r.json")
    assert code == 0, err
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["verdict"] == "holds" and data["kappa"] == 1.0 and data["kappa_source"] == "user"
    assert json.loads((out_dir / "analysis.json").read_text()) == data
    for name in ("confidence_teacher.png", "confidence_student.png", "delta_conf.png", "reliability.png"):
        assert (out_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "HOLDS" in out
    code, out, err = cli("analyze", "--teacher", t, "--student", s, "--kappa", "1e-6", "--json",
                         tmp_path / "r2.json", "--out", tmp_path / "noplots", "--no-plots")
    assert code == 0 and "FAILS" in out
    assert json.loads((tmp_path / "r2.json").read_text())["verdict"] == "fails"
    assert sorted(p.name for p in (tmp_path / "noplots").iterdir()) == ["analysis.json", "worst.csv"]
    # β-derived κ_β agrees with the formula κ_β = T·sqrt(β / (2(1−α) n_b)) (train split: N = n); it is a
    # consistency check of the measurement, never the verdict
    code, out, err = cli("analyze", "--teacher", t, "--student", s, "--beta", "3.5", "--alpha", "0.2",
                         "--temperature", "2", "--json", tmp_path / "r3.json", "--bootstrap", "0")
    d = json.loads((tmp_path / "r3.json").read_text())
    assert code == 0 and d["kappa_from_beta"] == pytest.approx(2 * np.sqrt(3.5 / (2 * 0.8 * d["n_both"])))
    assert d["kappa"] is None and d["verdict"] == "no verdict"
    assert d["bound_check"] == ("consistent" if d["sigma"] <= d["kappa_from_beta"] else "violated")


def test_same_seed_same_json(cli, tmp_path: Path) -> None:
    t, s = _pair(tmp_path)
    for name in ("a.json", "b.json"):
        assert cli("analyze", "--teacher", t, "--student", s, "--seed", "3", "--json", tmp_path / name)[0] == 0
    assert (tmp_path / "a.json").read_text() == (tmp_path / "b.json").read_text()


BAD_FILES = {
    "rows.csv": ("pred,p0,p1,label\n0,0.9,0.1,0\n", "student has 1 rows but the teacher", None),
    "labels.csv": ("pred,p0,p1,label\n0,0.9,0.1,0\n1,0.2,0.8,0\n1,0.3,0.7,1\n", "label 0 differs", 2),
    "columns.csv": ("p0,p1,label\n0.9,0.1,0\n0.2,0.8,1\n0.3,0.7,1\n", "missing column", None),
    "unlabelled.csv": ("pred,p0,p1\n0,0.9,0.1\n1,0.2,0.8\n1,0.3,0.7\n", "only the teacher file has a `label`", None),
    "extra.csv": ("pred,p0,p1,label,x\n0,0.9,0.1,0,1\n1,0.2,0.8,1,1\n1,0.3,0.7,1,1\n", "unexpected column", None),
    "nan.csv": ("pred,p0,p1,label\n0,0.9,0.1,0\n1,NaN,0.8,1\n1,0.3,0.7,1\n", "non-finite", 2),
    "inf.csv": ("pred,p0,p1,label\n0,0.9,0.1,0\n1,0.2,0.8,1\n1,-inf,0.7,1\n", "non-finite", 3),
    "range.csv": ("pred,p0,p1,label\n0,0.9,0.1,0\n1,1.5,-0.5,1\n1,0.3,0.7,1\n", "outside", 2),
    "sum.csv": ("pred,p0,p1,label\n0,0.9,0.1,0\n1,0.2,0.8,1\n1,0.3,0.6,1\n", "sum to", 3),
    "empty.csv": ("", "empty file", None),
    "delimiter.csv": ("pred\tp0\tp1\tlabel\n0\t0.9\t0.1\t0\n", "tab-separated", None),
    "fields.csv": ("pred,p0,p1,label\n0,0.9,0.1,0\n1;0.2;0.8;1\n1,0.3,0.7,1\n", "expected 4 fields", 2),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_student_file_exit_2_no_output(cli, tmp_path: Path, name: str) -> None:
    teacher = tmp_path / "teacher.csv"
    teacher.write_text("pred,p0,p1,label\n0,0.9,0.1,0\n1,0.2,0.8,1\n1,0.3,0.7,1\n")
    content, pattern, row = BAD_FILES[name]
    student = tmp_path / name
    student.write_text(content)
    previous = tmp_path / "r.json"
    previous.write_text('{"earlier": "result"}\n')
    # --overwrite: even when replacing is allowed, a failed analysis replaces nothing
    code, out, err = cli("analyze", "--teacher", teacher, "--student", student, "--json", previous,
                         "--out", tmp_path / "out", "--overwrite")
    assert code == 2
    assert err.startswith(f"confdistill analyze: error: {student}") and err.count("\n") == 1
    assert pattern in err and "Traceback" not in err
    if row is not None:
        assert f"row {row}" in err
    assert previous.read_text() == '{"earlier": "result"}\n'  # an earlier result is never overwritten
    assert not (tmp_path / "out").exists() and out == ""


def test_bom_accepted_and_argmax_warning(cli, tmp_path: Path) -> None:
    t = tmp_path / "t.csv"
    t.write_bytes(b"\xef\xbb\xbfpred,p0,p1,label\n0,0.9,0.1,0\n1,0.2,0.8,1\n0,0.3,0.7,1\n")
    s = tmp_path / "s.csv"
    s.write_text("pred,p0,p1,label\n0,0.8,0.2,0\n1,0.4,0.6,1\n1,0.3,0.7,1\n")
    code, _out, err = cli("analyze", "--teacher", t, "--student", s, "--json", tmp_path / "r.json")
    assert code == 0
    assert "warning" in err and "pred` different from the argmax" in err and "row 3" in err
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["teacher_accuracy"] == pytest.approx(2 / 3) and data["n_both"] == 2  # row 3: pred 0 ≠ label 1
    assert data["sigma"] == pytest.approx(0.15)  # Δ = 0.1, −0.2


@pytest.mark.parametrize(("args", "pattern"), [
    (["--run", "run.json", "--beta", "2"], "not allowed with"),
    (["--beta", "2", "--temperature", "0.5"], "T >= 1"),
    (["--beta", "2", "--alpha", "1"], "[0, 1)"),
    (["--kappa", "-1"], "--kappa"),
    (["--kappa", "0"], "--kappa"),
    (["--check"], "--check needs --kappa"),
    (["--thresholds", "0.9,0.5"], "--thresholds"),
    (["--thresholds", "0.5,0.5"], "--thresholds"),
    (["--thresholds", "0,0.9"], "--thresholds"),
    (["--thresholds", "0.5,1.5"], "--thresholds"),
    (["--thresholds", "0.5,x"], "--thresholds"),
    (["--worst", "-1"], "--worst"),
    (["--run", "missing-run.json"], "missing-run.json"),
])
def test_usage_errors(cli, tmp_path: Path, args: list[str], pattern: str) -> None:
    t, s = _pair(tmp_path)
    code, _out, err = cli("analyze", "--teacher", t, "--student", s, "--json", tmp_path / "r.json", *args)
    assert code == 2 and pattern in err and err.count("\n") == 1
    assert not (tmp_path / "r.json").exists()


def test_cli_path_does_not_import_torch(tmp_path: Path) -> None:
    t, s = _pair(tmp_path)
    code = ("import sys, confdistill.cli.main as m; m.SUBCOMMAND_MODULES = ['analyze']; "
            f"rc = m.main(['analyze', '--teacher', {str(t)!r}, '--student', {str(s)!r}, '--bootstrap', '10']); "
            "sys.exit(3 if 'torch' in sys.modules else rc)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_check_exit_code_gates_on_the_verdict(cli, tmp_path: Path) -> None:
    t, s = _pair(tmp_path)
    sigma = json.loads(_analyze_json(cli, tmp_path, t, s))["sigma"]
    code, out, err = cli("analyze", "--teacher", t, "--student", s, "--kappa", f"{sigma * 2}", "--check")
    assert code == 0 and "HOLDS" in out
    code, out, err = cli("analyze", "--teacher", t, "--student", s, "--kappa", f"{sigma / 2}", "--check")
    assert code == 1 and "FAILS" in out and "fails" in err
    # without --check the verdict does not change the exit code
    code, _, _ = cli("analyze", "--teacher", t, "--student", s, "--kappa", f"{sigma / 2}")
    assert code == 0


def _analyze_json(cli, tmp_path: Path, t: Path, s: Path) -> str:
    code, _, err = cli("analyze", "--teacher", t, "--student", s, "--json", tmp_path / "probe.json")
    assert code == 0, err
    return (tmp_path / "probe.json").read_text()


def test_run_json_gives_the_bound_check_never_a_verdict(cli, tmp_path: Path) -> None:
    t, s = _pair(tmp_path)
    run = tmp_path / "run.json"
    run.write_text(json.dumps({"beta": 50.0, "n_train": 200, "alpha": 0.0, "temperature": 1.0}))
    code, out, err = cli("analyze", "--teacher", t, "--student", s, "--run", run, "--json", tmp_path / "r.json")
    assert code == 0, err
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["verdict"] == "no verdict" and data["kappa"] is None
    assert data["bound_check"] == "consistent" and data["kappa_from_beta"] > data["sigma"]
    assert "HOLDS" not in out and "no verdict" in out


def test_worst_csv_and_flips_in_out_dir(cli, tmp_path: Path) -> None:
    t, s = _pair(tmp_path)
    code, _, err = cli("analyze", "--teacher", t, "--student", s, "--out", tmp_path / "o", "--worst", "2",
                       "--thresholds", "0.5,0.75")
    assert code == 0, err
    data = json.loads((tmp_path / "o" / "analysis.json").read_text())
    assert list(data["flips"]) == ["0.5", "0.75"]
    lines = (tmp_path / "o" / "worst.csv").read_text().splitlines()
    assert lines[0].startswith("kind,row,id,label,teacher_pred,student_pred")
    rows = [line for line in lines[1:] if line.startswith("largest_delta")]
    assert len(rows) == min(2, data["n"])


def test_out_is_never_overwritten_unless_asked_and_then_replaced_whole(cli, tmp_path: Path) -> None:
    t, s = _pair(tmp_path)
    out = tmp_path / "o"
    assert cli("analyze", "--teacher", t, "--student", s, "--out", out, "--no-plots")[0] == 0
    before = (out / "analysis.json").read_bytes()
    (out / "stray.txt").write_text("from another run")
    code, _, err = cli("analyze", "--teacher", t, "--student", s, "--out", out, "--kappa", "0.5")
    assert code == 2 and "--overwrite" in err and err.count("\n") == 1
    assert (out / "analysis.json").read_bytes() == before and (out / "stray.txt").exists()
    code, _, err = cli("analyze", "--teacher", t, "--student", s, "--out", out, "--kappa", "0.5", "--overwrite")
    assert code == 0, err
    assert json.loads((out / "analysis.json").read_text())["kappa"] == 0.5
    assert not (out / "stray.txt").exists()  # the folder is one unit: nothing of the old one stays
    (tmp_path / "f.json").write_text("{}")
    code, _, err = cli("analyze", "--teacher", t, "--student", s, "--json", tmp_path / "f.json")
    assert code == 2 and "--overwrite" in err and (tmp_path / "f.json").read_text() == "{}"
    code, _, err = cli("analyze", "--teacher", t, "--student", s, "--out", tmp_path / "f.json", "--overwrite")
    assert code == 2 and (tmp_path / "f.json").read_text() == "{}"  # a file never becomes a folder

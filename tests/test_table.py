"""`confdistill table`: the RQ1 table from the research folder layout."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

import confdistill.cli.main as cli_main
from confdistill.prediction.softmax_file import write_softmax
from confdistill.reports.table import build_rq1_table
from test_confidence import PAPER

PAPER_TEACHERS = {"SST-2": "bert-base-uncased-finetuned-sst2", "RTE": "bert-base-uncased-rte",
                  "MRPC": "bert-base-uncased-finetuned-mrpc", "QQP": "bert-base-uncased-QQP"}


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    monkeypatch.setattr(cli_main, "SUBCOMMAND_MODULES", ["table"])

    def run(*argv: str | Path) -> tuple[int, str, str]:
        try:
            code = cli_main.main([str(a) for a in argv])
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def _layout(root: Path) -> None:
    """TASK A: teacher T, students S1 (valid) and S2 (train labels shifted: invalid); eval of S2 missing."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 300), ("eval", 80)):
        labels = rng.integers(0, 2, n)
        t = np.where(labels == 0, 0.85, 0.15) + rng.normal(0, 0.05, n)
        t = np.clip(t, 0.01, 0.99)
        write_softmax(root / "T" / f"A_on_{split}" / "eval_results.csv", np.stack([t, 1 - t], 1), labels)
        s = np.clip(t + rng.normal(0, 0.03, n), 0, 1)
        write_softmax(root / "S1" / f"A_on_{split}" / "eval_results.csv", np.stack([s, 1 - s], 1), labels)
        if split == "train":
            write_softmax(root / "S2" / f"A_on_{split}" / "eval_results.csv", np.stack([s, 1 - s], 1),
                          np.roll(labels, 1))


def test_synthetic_layout(cli, tmp_path: Path) -> None:
    root, out = tmp_path / "root", tmp_path / "rq1"
    _layout(root)
    code, stdout, err = cli("table", "--root", root, "--teacher", "A=T", "--student", "S1", "--student", "S2",
                            "--beta", "A:S1=0.5", "--bootstrap", "100", "--out", out)
    assert code == 0, err
    data = json.loads((out / "rq1.json").read_text())
    ok = {(r["student"], r["split"]): r for r in data["rows"]}
    assert set(ok) == {("S1", "train"), ("S1", "eval")}
    assert [(m["student"], m["split"]) for m in data["missing"]] == [("S2", "eval")]
    assert [(m["student"], m["split"]) for m in data["invalid"]] == [("S2", "train")]
    assert "label" in data["invalid"][0]["reason"] and "differs" in data["invalid"][0]["reason"]
    # κ from β for S1: sqrt(β / (2 n_b)) over the train rows; verdict only on the train row
    train = ok[("S1", "train")]
    assert train["kappa"] == pytest.approx(np.sqrt(0.5 / (2 * train["n_both"])))
    assert train["verdict"] == ("holds" if train["sigma"] <= train["kappa"] else "fails")
    assert ok[("S1", "eval")]["verdict"] == "" and ok[("S1", "eval")]["kappa"] == train["kappa"]
    # the CSV holds the same numbers as the JSON
    with open(out / "rq1.csv", newline="") as fh:
        rows = {(r["student"], r["split"]): r for r in csv.DictReader(fh)}
    assert float(rows[("S1", "train")]["sigma"]) == train["sigma"]
    assert rows[("S2", "train")]["status"] == "invalid" and rows[("S2", "eval")]["status"] == "missing"
    md = (out / "rq1.md").read_text()
    assert "| A | S1 | train |" in md and "Missing pairs" in md and "Invalid pairs" in md
    assert (out / "rq1_sigma.png").read_bytes()[:4] == b"\x89PNG"
    assert "1 invalid" in stdout


def test_paper_table(paper_outputs: Path) -> None:
    table = build_rq1_table(paper_outputs, PAPER_TEACHERS, ["TinyBERT_6L_768D", "TinyBERT_4L_312D"],
                            kappa=0.05, n_bootstrap=50)
    rows = {(r.task, r.student, r.split): r for r in table.rows}
    for task, _teacher, split, t_acc, s_acc, sigma in PAPER:
        r = rows[(task, "TinyBERT_6L_768D", split)]
        assert r.status == "ok"
        assert (r.teacher_accuracy, r.student_accuracy) == (pytest.approx(t_acc, abs=1e-9),
                                                            pytest.approx(s_acc, abs=1e-9))
        assert r.sigma == pytest.approx(sigma, abs=1e-9)
    # κ = 0.05: σ(train) SST-2 6L 0.031 holds, RTE 6L 0.076 fails; eval rows carry no verdict
    assert rows[("SST-2", "TinyBERT_6L_768D", "train")].verdict == "holds"
    assert rows[("RTE", "TinyBERT_6L_768D", "train")].verdict == "fails"
    assert rows[("SST-2", "TinyBERT_6L_768D", "eval")].verdict == ""
    bad = rows[("MRPC", "TinyBERT_4L_312D", "eval")]
    assert bad.status == "invalid" and "1725 rows" in bad.reason
    assert rows[("QQP", "TinyBERT_4L_312D", "train")].status == "missing"
    assert rows[("QQP", "TinyBERT_4L_312D", "eval")].status == "ok"


@pytest.mark.parametrize(("args", "pattern"), [
    (["--teacher", "A"], "expected TASK=MODEL"),
    (["--teacher", "A=T", "--beta", "B:S1=1"], "task 'B' is not among"),
    (["--teacher", "A=T", "--beta", "A:S9=1"], "student 'S9' is not among"),
    (["--teacher", "A=T", "--beta", "A:S1=x"], "is not a number"),
    (["--teacher", "A=T", "--kappa", "1", "--beta", "A:S1=1"], "not allowed with"),
])
def test_usage_errors(cli, tmp_path: Path, args: list[str], pattern: str) -> None:
    _layout(tmp_path / "root")
    code, _out, err = cli("table", "--root", tmp_path / "root", "--student", "S1", *args, "--out", tmp_path / "o")
    assert code == 2 and pattern in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_missing_root_is_usage_error(cli, tmp_path: Path) -> None:
    code, _out, err = cli("table", "--root", tmp_path / "nope", "--teacher", "A=T", "--student", "S",
                         "--out", tmp_path / "o")
    assert code == 2 and "--root" in err and not (tmp_path / "o").exists()


def test_reliability_curve_hand_computed() -> None:
    from confdistill.reports.plots import reliability_curve

    conf = np.array([0.55, 0.65, 0.95, 0.92, 1.0])
    ok = np.array([True, False, True, False, True])
    rc = reliability_curve(conf, ok, n_bins=2)  # bins [0, 0.5), [0.5, 1]
    assert rc["count"].tolist() == [0.0, 5.0]
    assert rc["accuracy"][1] == pytest.approx(0.6) and rc["confidence"][1] == pytest.approx(0.814)
    assert rc["ece"] == pytest.approx(0.214)
    rc = reliability_curve(conf, ok, n_bins=10)
    # bins: 0.55 → [0.5, 0.6), 0.65 → [0.6, 0.7), 0.92 and 0.95 → [0.9, 1.0], 1.0 → last bin
    assert rc["count"][5] == 1 and rc["count"][6] == 1 and rc["count"][9] == 3
    # ECE = (1·|1 − 0.55| + 1·|0 − 0.65| + 3·|2/3 − 0.9567|) / 5
    assert rc["ece"] == pytest.approx((0.45 + 0.65 + 3 * abs(2 / 3 - (0.95 + 0.92 + 1.0) / 3)) / 5)

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
    # β gives S1's train row a bound check, never a verdict: κ_β = sqrt(β / (2 n_b)) (the rows are X_train)
    train, ev = ok[("S1", "train")], ok[("S1", "eval")]
    assert train["kappa_from_beta"] == pytest.approx(np.sqrt(0.5 / (2 * train["n_both"])))
    assert train["bound_check"] == ("consistent" if train["sigma"] <= train["kappa_from_beta"] else "violated")
    assert train["kappa"] is None and train["kappa_source"] is None
    assert (train["verdict"], train["verdict_95"]) == ("no verdict", "no verdict")
    # the eval row is not covered by the bound (and shows no κ_β number to misread)
    assert ev["bound_check"] == "not covered" and ev["kappa_from_beta"] is None
    assert any("not covered by the bound" in n for n in ev["notes"])
    # the CSV holds the same numbers as the JSON
    with open(out / "rq1.csv", newline="") as fh:
        rows = {(r["student"], r["split"]): r for r in csv.DictReader(fh)}
    assert float(rows[("S1", "train")]["sigma"]) == train["sigma"]
    assert rows[("S2", "train")]["status"] == "invalid" and rows[("S2", "eval")]["status"] == "missing"
    assert rows[("S1", "eval")]["bound_check"] == "not covered" and rows[("S1", "train")]["verdict_95"] == "no verdict"
    md = (out / "rq1.md").read_text()
    assert "| A | S1 | train |" in md and "Missing pairs" in md and "Invalid pairs" in md
    assert "verdict_95" in md and "not covered" in md
    assert (out / "rq1_sigma.png").read_bytes()[:4] == b"\x89PNG"
    assert "1 invalid" in stdout


def test_tolerance_and_beta_together(cli, tmp_path: Path) -> None:
    """--kappa judges both splits; --beta only checks the bound on train (the two are independent)."""
    root, out = tmp_path / "root", tmp_path / "rq1"
    _layout(root)
    code, _stdout, err = cli("table", "--root", root, "--teacher", "A=T", "--student", "S1", "--kappa", "0.02",
                             "--beta", "A:S1=1e-9", "--bootstrap", "200", "--out", out)
    assert code == 0, err
    ok = {r["split"]: r for r in json.loads((out / "rq1.json").read_text())["rows"]}
    for split, r in ok.items():
        assert r["kappa"] == 0.02 and r["kappa_source"] == "user"
        assert r["verdict"] == ("holds" if r["sigma"] <= 0.02 else "fails"), split
        lo, hi = r["sigma_lower95"], r["sigma_upper95"]
        assert lo <= r["sigma"] <= hi
        assert r["verdict_95"] == ("holds" if hi <= 0.02 else "fails" if lo > 0.02 else "undecided")
    # σ ≈ 0.03 > 0.02: fails against the tolerance; a β of 1e-9 cannot bound it: violated, β mis-measured
    assert ok["train"]["verdict"] == "fails" and ok["train"]["bound_check"] == "violated"
    assert any("mis-measured" in n for n in ok["train"]["notes"])
    assert ok["eval"]["bound_check"] == "not covered"
    md = (out / "rq1.md").read_text()
    assert "β bound violated" in md and "violated (" in md
    with open(out / "rq1.csv", newline="") as fh:
        csv_rows = {r["split"]: r for r in csv.DictReader(fh)}
    assert csv_rows["train"]["verdict_95"] == ok["train"]["verdict_95"]
    assert csv_rows["train"]["bound_check"] == "violated" and "mis-measured" in csv_rows["train"]["notes"]


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
    # tolerance κ = 0.05: σ(train) SST-2 6L 0.031 holds, RTE 6L 0.076 fails (also at 95%: 67k and 2k rows);
    # σ(eval) of SST-2 6L, 0.068, is judged against the same tolerance and not covered by the bound
    sst2, rte = rows[("SST-2", "TinyBERT_6L_768D", "train")], rows[("RTE", "TinyBERT_6L_768D", "train")]
    assert (sst2.verdict, sst2.verdict_95) == ("holds", "holds")
    assert (rte.verdict, rte.verdict_95) == ("fails", "fails")
    assert sst2.bound_check is None and sst2.kappa == 0.05  # no β for the paper's runs: no check
    ev = rows[("SST-2", "TinyBERT_6L_768D", "eval")]
    assert ev.verdict == "fails" and any("not covered by the bound" in n for n in ev.notes)
    bad = rows[("MRPC", "TinyBERT_4L_312D", "eval")]
    assert bad.status == "invalid" and "1725 rows" in bad.reason
    assert rows[("QQP", "TinyBERT_4L_312D", "train")].status == "missing"
    assert rows[("QQP", "TinyBERT_4L_312D", "eval")].status == "ok"


@pytest.mark.parametrize(("args", "pattern"), [
    (["--teacher", "A"], "expected TASK=MODEL"),
    (["--teacher", "A=T", "--beta", "B:S1=1"], "task 'B' is not among"),
    (["--teacher", "A=T", "--beta", "A:S9=1"], "student 'S9' is not among"),
    (["--teacher", "A=T", "--beta", "A:S1=x"], "is not a number"),
    (["--teacher", "A=T", "--beta", "A:S1=-1"], "expected a total loss >= 0"),
    (["--teacher", "A=T", "--kappa", "0"], "--kappa: expected a tolerance"),
    (["--teacher", "A=T", "--kappa", "nan"], "--kappa: expected a tolerance"),
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


def test_collapsed_teacher_is_listed_as_not_informative(tmp_path: Path) -> None:
    # a teacher stuck on class 0 and its student: σ ≈ 0, but the table must not say "holds" (issue 18)
    n = 200
    labels = np.arange(n) % 2
    t = np.full(n, 0.9)
    s = t - 1e-6 * (np.arange(n) % 3)
    for model, p in (("T", t), ("S", s)):
        write_softmax(tmp_path / model / "A_on_eval" / "eval_results.csv", np.stack([p, 1 - p], 1), labels)
    table = build_rq1_table(tmp_path, {"A": "T"}, ["S"], kappa=0.05, n_bootstrap=0, splits=["eval"])
    (row,) = table.ok
    assert (row.verdict, row.verdict_95) == ("not informative", "not informative")
    md = table.to_markdown()
    assert "| not informative | not informative |" in md and "holds" not in md
    assert "- A / S / eval: the teacher predicts class 0 on every row" in md

"""Issue 18, item 3: a pair the check cannot judge is "not informative", never "holds".

Hand-made cases: a 3-class teacher that predicts class 0 on every row (and its student, the same),
a teacher that is no better than the majority class, and a σ set of fewer than 30 rows. Each must
give "not informative" for both verdicts whatever κ, name its cause in ``warnings``, make
``analyze --check`` exit 1, and head the experiment report (Markdown and HTML).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from confdistill.prediction.softmax_file import outputs_from_arrays, write_softmax
from confdistill.properties import analyze_pair
from confdistill.properties.informative import MIN_SET_ROWS
from confdistill.reports.html import INTRO, render_html
from confdistill.reports.markdown import render_markdown
from confdistill.reports.report import student_row
from test_cli_analyze import cli  # noqa: F401  (the fixture)

COLLAPSED = "the teacher predicts class 0 on every row"


def _collapsed(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Teacher and student stuck on class 0 with almost the same probabilities; labels uniform over 3."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    t = np.tile([0.90, 0.06, 0.04], (n, 1))
    s = t + rng.normal(0.0, 1e-5, (n, 3))
    return t, s / s.sum(axis=1, keepdims=True), labels


@pytest.mark.parametrize("kappa", [None, 0.05, 0.5, 1.0])
def test_collapsed_teacher_never_holds(kappa: float | None) -> None:
    t, s, labels = _collapsed()
    res = analyze_pair(outputs_from_arrays(t, labels), outputs_from_arrays(s, labels), kappa=kappa, n_bootstrap=200)
    assert res.sigma < 1e-4 and res.agreement == 1.0  # what used to read as "φ_cnf HOLDS"
    assert res.verdict == res.verdict_95 == "not informative"
    assert res.not_informative[0].startswith(COLLAPSED)
    assert any(w.startswith("the student predicts class 0 on every row") for w in res.warnings)
    assert any(w.startswith("the teacher is no better than the majority class: accuracy 0.3333 <= 0.3333")
               for w in res.warnings)
    assert "HOLDS" not in res.summary() and "NOT INFORMATIVE" in res.summary().splitlines()[0]


def test_collapsed_teacher_fails_the_gate(cli, tmp_path: Path) -> None:  # noqa: F811
    t, s, labels = _collapsed()
    tf, sf = write_softmax(tmp_path / "t.csv", t, labels), write_softmax(tmp_path / "s.csv", s, labels)
    code, out, err = cli("analyze", "--teacher", tf, "--student", sf, "--kappa", "0.05", "--check",
                         "--json", tmp_path / "r.json", "--bootstrap", "50")
    assert code == 1
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["verdict"] == data["verdict_95"] == "not informative"
    assert data["warnings"][:len(data["not_informative"])] == data["not_informative"]
    assert out.splitlines()[0].startswith("φ_cnf NOT INFORMATIVE") and COLLAPSED in out.splitlines()[1]
    assert "holds" not in out.lower() and "not informative" in err


def test_teacher_at_the_majority_class() -> None:
    # 70% of rows are class 0; the teacher predicts both classes but is right on only 70% of rows.
    n = 100
    labels = (np.arange(n) >= 70).astype(np.int64)
    t_pred = labels.copy()
    t_pred[:15], t_pred[70:85] = 1, 0   # 15 wrong each way: accuracy 0.70 = the majority share
    p = np.where(t_pred == 0, 0.8, 0.2)
    probs = np.stack([p, 1 - p], axis=1)
    res = analyze_pair(outputs_from_arrays(probs, labels), outputs_from_arrays(probs, labels), kappa=0.05,
                       n_bootstrap=0)
    assert res.teacher_accuracy == pytest.approx(0.7)
    assert res.not_informative == ["the teacher is no better than the majority class: accuracy 0.7000 <= 0.7000, "
                                   "the share of class 0"]
    assert res.verdict == "not informative"
    # one more correct row: better than the majority class, and the verdict is a real one again
    t_pred[0] = 0
    p = np.where(t_pred == 0, 0.8, 0.2)
    probs = np.stack([p, 1 - p], axis=1)
    res = analyze_pair(outputs_from_arrays(probs, labels), outputs_from_arrays(probs, labels), kappa=0.05,
                       n_bootstrap=0)
    assert res.not_informative == [] and res.verdict == "holds"


@pytest.mark.parametrize(("n_set", "word"), [(MIN_SET_ROWS - 1, "not informative"), (MIN_SET_ROWS, "holds")])
def test_fewer_than_30_rows_in_the_set(n_set: int, word: str) -> None:
    # n_set rows both correct, 10 rows both wrong; two classes predicted by both
    labels = np.array([0, 1] * 30 + [0] * 10)[: n_set + 10]
    labels[n_set:] = np.arange(10) % 2
    good = np.where(labels[:n_set] == 0, 0.8, 0.3)
    bad = np.where(labels[n_set:] == 0, 0.4, 0.6)
    p0 = np.concatenate([good, bad])
    probs = np.stack([p0, 1 - p0], axis=1)
    res = analyze_pair(outputs_from_arrays(probs, labels), outputs_from_arrays(probs, labels), kappa=0.05,
                       n_bootstrap=0)
    assert res.n_set == n_set and res.verdict == res.verdict_95 == word
    if word == "not informative":
        assert res.not_informative == [f"only {n_set} rows are in the σ set (both models correct); a verdict "
                                       "needs at least 30"]


def test_report_shows_the_causes_first(tmp_path: Path) -> None:
    t, s, labels = _collapsed()
    a = analyze_pair(outputs_from_arrays(t, labels), outputs_from_arrays(s, labels), kappa=0.05,
                     n_bootstrap=0).to_dict()
    row = student_row("X", "X", "tiny", a, a, {})
    assert row["answer"] == "not informative"
    results = {"experiment": "e", "rows": [row], "footprint": {}, "provenance": {}}
    md = render_markdown(results, [])
    answer = md.split("## Can tiny replace the teacher? (X)")[1]
    assert answer.lstrip().startswith("**not informative**: The check cannot judge this student")
    assert answer.index(COLLAPSED) < answer.index("Accuracy (dev)")
    page = render_html(results, [], tmp_path)
    block = page.split('<section class="answer"')[1]
    assert block.index("not informative") < block.index(COLLAPSED) < block.index("Accuracy (dev)")
    assert "holds" not in md.split(INTRO)[0]


def test_judge_with_a_cause_is_not_informative_but_still_checks_the_bound() -> None:
    from confdistill.properties.verdict import BoundInputs, judge

    args = {"bound": BoundInputs(beta=10.0, n_train=100), "split": "train", "n_set": 90, "n_rows": 100, "k": 2}
    plain = judge(0.01, (0.009, 0.011), tolerance=0.05, **args)
    assert (plain.verdict, plain.verdict_95) == ("holds", "holds")
    cause = "the teacher predicts class 0 on every row"
    j = judge(0.01, (0.009, 0.011), tolerance=0.05, causes=[cause], **args)
    assert (j.verdict, j.verdict_95) == ("not informative", "not informative")
    assert j.bound_check == plain.bound_check == "consistent" and j.kappa_beta == plain.kappa_beta
    assert judge(0.01, (0.009, 0.011), tolerance=None, causes=[cause], **args).verdict == "not informative"
    assert j.lines()[0].startswith("φ_cnf: not informative")

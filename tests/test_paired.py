"""Issue 18, item 4: negative / positive flips and McNemar's exact test, against pandas and scipy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from confdistill.prediction.softmax_file import outputs_from_arrays
from confdistill.properties import analyze_files, analyze_pair
from confdistill.reports.answer import facts
from confdistill.reports.report import student_row
from test_confidence import PAPER, paper_pair


@pytest.mark.parametrize(("task", "teacher", "split"), [p[:3] for p in PAPER], ids=[f"{p[0]}-{p[2]}" for p in PAPER])
def test_flips_and_mcnemar_on_the_papers_files(paper_outputs: Path, task: str, teacher: str, split: str) -> None:
    t_file, s_file = paper_pair(paper_outputs, task, teacher, split)
    t, s = pd.read_csv(t_file), pd.read_csv(s_file)
    t_ok, s_ok = t["pred"] == t["label"], s["pred"] == s["label"]
    b, c = int((t_ok & ~s_ok).sum()), int((~t_ok & s_ok).sum())
    n = len(t)
    assert b > 0 and c > 0  # real discordant pairs both ways
    d = analyze_files(t_file, s_file, n_bootstrap=300).to_dict()
    assert d["negative_flips"]["count"] == b and d["positive_flips"]["count"] == c
    assert d["negative_flips"]["rate"] == pytest.approx(b / n, abs=1e-15)
    assert d["positive_flips"]["rate"] == pytest.approx(c / n, abs=1e-15)
    assert d["accuracy_test"]["discordant"] == [b, c]
    assert d["accuracy_test"]["mcnemar_p"] == pytest.approx(binomtest(b, b + c, 0.5).pvalue, rel=1e-12)
    # the accuracy change is exactly the flips' difference
    assert d["student_accuracy"] - d["teacher_accuracy"] == pytest.approx((c - b) / n, abs=1e-12)
    for key in ("negative_flips", "positive_flips"):
        lo, hi = d[key]["ci95"]
        assert lo <= d[key]["rate"] <= hi and lo < hi


def test_unlabelled_logs_have_no_flips_against_labels() -> None:
    from confdistill.prediction.softmax_file import SoftmaxOutputs

    p = np.random.default_rng(1).dirichlet([1, 1], 50)
    log = SoftmaxOutputs(probs=p, pred=p.argmax(1), label=None)
    d = analyze_pair(log, log, n_bootstrap=0).to_dict()
    assert d["negative_flips"] is d["positive_flips"] is d["accuracy_test"] is None


def test_no_discordant_row_gives_p_one_and_the_report_shows_the_flips() -> None:
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 200)
    p0 = np.where(labels == 0, 0.8, 0.2) + rng.normal(0, 0.01, 200)
    probs = np.stack([p0, 1 - p0], 1)
    a = analyze_pair(outputs_from_arrays(probs, labels), outputs_from_arrays(probs, labels), n_bootstrap=50).to_dict()
    assert a["accuracy_test"] == {"mcnemar_p": 1.0, "discordant": [0, 0]}
    assert a["negative_flips"] == {"rate": 0.0, "ci95": [0.0, 0.0], "count": 0}
    # beside the accuracy change in the report
    student = probs.copy()
    student[:10] = student[:10, ::-1]  # 10 rows flipped: the teacher was right on all of them
    a = analyze_pair(outputs_from_arrays(probs, labels), outputs_from_arrays(student, labels), n_bootstrap=50).to_dict()
    b, c = a["accuracy_test"]["discordant"]
    assert (b, c) == (10, 0)
    text = dict((w, t) for w, t, _ in facts(student_row("X", "X", "s", a, a, {})))["Accuracy (dev)"]
    assert "negative flips (teacher right, student wrong) 5.0% (10 rows)" in text
    assert f"McNemar's exact p = {binomtest(10, 10, 0.5).pvalue:.3g}" in text


@pytest.mark.parametrize(("b", "c"), [(16, 14), (488, 106), (16, 29), (198, 14), (0, 7), (3, 3), (1, 0), (2, 1000),
                                      (99_000, 100_000), (4_990_000, 5_000_000)])
def test_mcnemar_equals_scipys_binomtest(b: int, c: int) -> None:
    from confdistill.properties.paired import mcnemar_exact

    assert mcnemar_exact(b, c) == pytest.approx(binomtest(b, b + c, 0.5).pvalue, rel=1e-12, abs=1e-300)
    assert mcnemar_exact(b, c) == mcnemar_exact(c, b)


def test_an_analysis_with_discordant_rows_does_not_import_scipy_stats(tmp_path: Path) -> None:
    # scipy.stats costs seconds of start-up: a small analysis must stay instant (issue 18, item 2)
    import subprocess
    import sys

    code = ("import sys, numpy as np\n"
            "from confdistill.prediction.softmax_file import outputs_from_arrays\n"
            "from confdistill.properties import analyze_pair\n"
            "rng = np.random.default_rng(0); y = rng.integers(0, 2, 300)\n"
            "t = rng.dirichlet([1, 1], 300); s = rng.dirichlet([1, 1], 300)\n"
            "d = analyze_pair(outputs_from_arrays(t, y), outputs_from_arrays(s, y), n_bootstrap=20).to_dict()\n"
            "assert min(d['accuracy_test']['discordant']) > 0\n"
            "print('scipy.stats' in sys.modules); sys.exit(1 if 'scipy.stats' in sys.modules else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mcnemar_exact_sum_equals_the_incomplete_beta_path(monkeypatch: pytest.MonkeyPatch) -> None:
    import confdistill.properties.paired as paired

    cases = [(16, 14), (198, 14), (0, 7), (2, 1000), (4_990, 5_000), (9_900, 10_000), (19_000, 3)]
    exact = [paired.mcnemar_exact(b, c) for b, c in cases]
    monkeypatch.setattr(paired, "EXACT_MAX_DISCORDANT", 0)
    beta = [paired.mcnemar_exact(b, c) for b, c in cases]
    assert exact == pytest.approx(beta, rel=1e-12, abs=1e-300)
    assert exact == pytest.approx([binomtest(b, b + c, 0.5).pvalue for b, c in cases], rel=1e-12, abs=1e-300)

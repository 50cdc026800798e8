"""Issue 18, item 5: ``--slice-by label|length|COLUMN``, against pandas ``groupby``; bad slice inputs exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from confdistill.experiments.config import load_experiment
from confdistill.prediction.softmax_file import read_softmax, write_softmax
from confdistill.properties import analyze_files, analyze_pair
from confdistill.reports.answer import slice_table
from test_cli_analyze import cli  # noqa: F401  (the fixture)
from test_confidence import paper_pair
from test_experiment_config import BASE, write

PAIRS = [("SST-2", "bert-base-uncased-finetuned-sst2", "eval"), ("RTE", "bert-base-uncased-rte", "eval"),
         ("RTE", "bert-base-uncased-rte", "train")]


def _frame(t_file: Path, s_file: Path) -> pd.DataFrame:
    """The pair as one frame with the per-row quantities, computed with pandas alone."""
    t, s = pd.read_csv(t_file), pd.read_csv(s_file)
    df = pd.DataFrame({"label": t["label"], "t_ok": t["pred"] == t["label"], "s_ok": s["pred"] == s["label"],
                       "delta": t["p0"] - s["p0"], "t_pred": t["pred"], "s_pred": s["pred"],
                       "t_conf": t[["p0", "p1"]].max(axis=1), "s_conf": s[["p0", "p1"]].max(axis=1)})
    df["both"] = df["t_ok"] & df["s_ok"]
    df["neg"] = df["t_ok"] & ~df["s_ok"]
    ta, sa = df["t_conf"] >= 0.9, df["s_conf"] >= 0.9
    df["flip90"] = (ta != sa) | (ta & sa & (df["t_pred"] != df["s_pred"]))
    return df


def _check_against_pandas(rows: list[dict], df: pd.DataFrame, key: str) -> None:
    g = df.groupby(key)
    sigma = df[df["both"]].groupby(key)["delta"].std(ddof=0)
    assert [r["value"] for r in rows] == sorted(g.groups)
    for r in rows:
        v = r["value"]
        assert r["n"] == len(g.get_group(v)) and r["n_set"] == int(g["both"].sum()[v])
        assert r["sigma"] == pytest.approx(sigma[v], rel=1e-9, abs=1e-15)
        assert r["accuracy"]["teacher"] == pytest.approx(g["t_ok"].mean()[v], abs=1e-15)
        assert r["accuracy"]["student"] == pytest.approx(g["s_ok"].mean()[v], abs=1e-15)
        assert r["negative_flip_rate"] == pytest.approx(g["neg"].mean()[v], abs=1e-15)
        assert r["flip_rate"]["0.9"] == pytest.approx(g["flip90"].mean()[v], abs=1e-15)


@pytest.mark.parametrize(("task", "teacher", "split"), PAIRS, ids=[f"{p[0]}-{p[2]}" for p in PAIRS])
def test_sigma_per_label_slice_equals_pandas_groupby(paper_outputs: Path, task: str, teacher: str, split: str) -> None:
    t_file, s_file = paper_pair(paper_outputs, task, teacher, split)
    res = analyze_files(t_file, s_file, kappa=0.07, n_bootstrap=0, slice_by=["label"])
    rows = res.to_dict()["slices"]["label"]
    _check_against_pandas(rows, _frame(t_file, s_file), "label")
    for r in rows:
        assert r["verdict"] == ("holds" if r["sigma"] <= 0.07 else "fails")  # every slice has >= 30 set rows
        assert r["n_both"] == r["n_set"]


def test_length_and_data_file_column_slices(paper_outputs: Path, shared_dir: Path, tmp_path: Path) -> None:
    dev = shared_dir / "data" / "glue" / "SST-2" / "dev.tsv"
    if not dev.is_file():
        pytest.skip(f"{dev} is absent")
    t_file, s_file = paper_pair(paper_outputs, "SST-2", "bert-base-uncased-finetuned-sst2", "eval")
    teacher = read_softmax(t_file)
    teacher.meta.update({"task": "SST-2", "data_file": str(dev)})
    res = analyze_pair(teacher, read_softmax(s_file), n_bootstrap=0, slice_by=["length"])
    df = _frame(t_file, s_file)
    text = pd.read_csv(dev, sep="\t", quoting=3)["sentence"]
    words = text.str.split().str.len()
    # quartile buckets as pandas cuts them: [min, q1], (q1, q2], (q2, q3], (q3, max]
    df["bucket"] = pd.qcut(words, 4, labels=False)
    rows = res.to_dict()["slices"]["length"]
    assert [r["value"] for r in rows] == [f"Q{b + 1}: {words[df['bucket'] == b].min()}-{words[df['bucket'] == b].max()} words"
                                          for b in range(4)]
    for r, b in zip(rows, range(4), strict=True):
        r["value"] = b
    _check_against_pandas(rows, df, "bucket")


def _custom(tmp_path: Path, n: int, sources: list[str]) -> tuple[Path, Path]:
    """A custom-data pair with a ``source`` column in the data file, named by the teacher's sidecar."""
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, n)
    data = tmp_path / "dev.csv"
    pd.DataFrame({"text": [f"w {'x ' * int(k)}" for k in rng.integers(1, 20, n)], "label": labels,
                  "source": [sources[i % len(sources)] for i in range(n)], "uid": np.arange(n)}).to_csv(data, index=False)
    p = np.clip(np.where(labels == 0, 0.8, 0.25) + rng.normal(0, 0.1, n), 0.01, 0.99)
    q = np.clip(p + rng.normal(0, 0.05, n), 0.01, 0.99)
    meta = {"task": "custom", "data_file": str(data), "columns": {"text": "text", "label": "label"}}
    return (write_softmax(tmp_path / "t.csv", np.stack([p, 1 - p], 1), labels, meta=meta),
            write_softmax(tmp_path / "s.csv", np.stack([q, 1 - q], 1), labels))


def test_column_of_the_data_file(tmp_path: Path) -> None:
    t, s = _custom(tmp_path, 400, ["web", "app", "mail"])
    rows = analyze_files(t, s, n_bootstrap=0, slice_by=["source"]).to_dict()["slices"]["source"]
    df = _frame(t, s)
    df["source"] = pd.read_csv(tmp_path / "dev.csv")["source"]
    _check_against_pandas(rows, df, "source")
    _header, cells = slice_table({"slices": {"source": rows}})
    most = max(range(3), key=lambda i: rows[i]["sigma"])
    assert [("◀ moves most" in c[4]) for c in cells] == [i == most for i in range(3)]


def test_bad_slices_exit_2_and_write_nothing(cli, tmp_path: Path) -> None:  # noqa: F811
    t, s = _custom(tmp_path, 1001, ["web"])
    bare_t = write_softmax(tmp_path / "bare_t.csv", np.stack([np.full(40, 0.8), np.full(40, 0.2)], 1), np.zeros(40, int))
    out = tmp_path / "r.json"
    cases = [
        ((t, s, "nope"), "--slice-by nope: no such column: expected label, length, a column of the prediction file "
                         "(pred, p0, p1, label) or of its data file; the data file"),
        ((t, s, "uid"), "--slice-by uid: 1001 distinct values (more than 1000)"),
        ((bare_t, bare_t, "length"), "--slice-by length: needs the data file of the rows"),
        ((bare_t, bare_t, "nope"), "no data file (the teacher's sidecar names none"),
    ]
    for (tf, sf, spec), message in cases:
        code, _out, err = cli("analyze", "--teacher", tf, "--student", sf, "--slice-by", spec, "--json", out,
                              "--bootstrap", "0")
        assert code == 2 and message in err, err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        assert not out.exists()
    (tmp_path / "dev.csv").unlink()
    code, _out, err = cli("analyze", "--teacher", t, "--student", s, "--slice-by", "length", "--json", out)
    assert code == 2 and "named by the teacher's sidecar is missing" in err and not out.exists()
    code, _out, _err = cli("analyze", "--teacher", t, "--student", s, "--slice-by", "label", "--slice-by", "pred",
                           "--json", out, "--bootstrap", "0")
    assert code == 0 and list(json.loads(out.read_text())["slices"]) == ["label", "pred"]


def test_experiment_file_takes_slice_by(tmp_path: Path) -> None:
    cfg = load_experiment(write(tmp_path, BASE + '\n[analysis]\nslice_by = ["label", "length"]\n'))
    assert cfg.analysis.slice_by == ("label", "length")
    assert load_experiment(write(tmp_path, BASE, "plain.toml")).analysis.slice_by == ()


def test_label_slice_of_unlabelled_logs_is_refused() -> None:
    from confdistill.errors import InputError
    from confdistill.prediction.softmax_file import SoftmaxOutputs

    p = np.random.default_rng(4).dirichlet([1, 1], 60)
    log = SoftmaxOutputs(probs=p, pred=p.argmax(1), label=None)
    with pytest.raises(InputError, match=r"^slice_by label: the files have no `label` column"):
        analyze_pair(log, log, n_bootstrap=0, slice_by=["label"])
    rows = analyze_pair(log, log, n_bootstrap=0, slice_by=["pred"]).to_dict()["slices"]["pred"]
    assert [r["n"] for r in rows] == np.bincount(p.argmax(1)).tolist()
    assert all(r["accuracy"] is None and r["negative_flip_rate"] is None and r["n_both"] is None for r in rows)


def test_report_has_the_per_slice_table(paper_outputs: Path, tmp_path: Path) -> None:
    from confdistill.reports.html import render_html
    from confdistill.reports.markdown import render_markdown
    from confdistill.reports.report import student_row

    t_file, s_file = paper_pair(paper_outputs, "SST-2", "bert-base-uncased-finetuned-sst2", "eval")
    a = analyze_files(t_file, s_file, kappa=0.07, n_bootstrap=0, slice_by=["label"]).to_dict()
    results = {"experiment": "e", "rows": [student_row("SST-2", "SST-2", "6L", a, a, {})], "footprint": {},
               "provenance": {}}
    md = render_markdown(results, [])
    table = md.split("### Slices (dev)")[1].split("\n\n")[1].splitlines()
    # label 0 has the larger σ (0.0757 against 0.0588): the confidence moves most there
    assert table[2].startswith("| label | 0 | 428 | 384 | 0.0757 ◀ moves most | fails |")
    assert table[3].startswith("| label | 1 | 444 | 411 | 0.0588 | holds |")
    assert "<h3>Slices (dev)</h3>" in render_html(results, [], tmp_path)

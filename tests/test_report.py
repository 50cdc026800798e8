"""The report from a hand-made experiment folder: table values, κ from β, verdicts, footprint ratios,
a self-contained HTML and a Markdown file whose figure links resolve. No models: seconds."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from confdistill.experiments.config import experiment_from_dict
from confdistill.experiments.runner import TaskPaths, analyze_student, prediction_files
from confdistill.io import write_json
from confdistill.prediction.softmax_file import write_softmax
from confdistill.reports.report import collect_results, write_report

N_TRAIN, N_DEV = 400, 200


def probs_near(p0: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    q = np.clip(p0 + rng.normal(0.0, noise, p0.shape), 0.001, 0.999)
    return np.stack([q, 1 - q], axis=1)


@pytest.fixture(scope="module")
def experiment_dir(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """OUT with predictions of a teacher and two students: "close" (tiny Δconf) and "far" (large)."""
    out = tmp_path_factory.mktemp("report") / "out"
    cfg = experiment_from_dict(
        {"teacher": {"dir": str(out)},  # never opened: the report reads only the files below
         "students": [{"name": "close", "layers": 2}, {"name": "far", "layers": 1}],
         "analysis": {"n_bootstrap": 50},
         "tasks": {"SST-2": {"data_dir": str(out)}}},
        source="<test>", out=out)
    task = cfg.tasks[0]
    rng = np.random.default_rng(0)
    betas = {"close": 0.5, "far": 0.5}
    for role, n in (("train", N_TRAIN), ("dev", N_DEV)):
        labels = rng.integers(0, 2, n)
        # a confident, mostly correct teacher
        p0 = np.where(labels == 0, rng.uniform(0.6, 0.99, n), rng.uniform(0.01, 0.4, n))
        write_softmax(prediction_files(out, task.key, "teacher", role)[0], np.stack([p0, 1 - p0], 1), labels,
                      meta={"split": role})
        for name, noise in (("close", 0.005), ("far", 0.15)):
            write_softmax(prediction_files(out, task.key, name, role)[0], probs_near(p0, noise, rng), labels,
                          meta={"split": role})
    paths = TaskPaths(out / task.key)
    for s in task.students:
        run = {"beta": betas[s.name], "beta_mean": betas[s.name] / N_TRAIN, "n_train": N_TRAIN,
               "alpha": 0.0, "temperature": 1.0}
        run_json = paths.student(s.name) / "stage2" / "run.json"
        write_json(run_json, run)
        for stage, base in (("stage1", 5.0), ("stage2", 0.7)):
            metrics = paths.student(s.name) / stage / "metrics.jsonl"
            metrics.parent.mkdir(parents=True, exist_ok=True)
            metrics.write_text("".join(json.dumps({"step": i, "loss": base / i}) + "\n" for i in range(1, 30))
                               + json.dumps({"step": 29, "eval": {"accuracy": 0.9}}) + "\n")
        write_json(paths.student(s.name) / "analysis.json", analyze_student(cfg, task, s, run_json))
    fps = {"teacher": (22.7e6, 90.9e6, 12.0, 3.0), "close": (10.0e6, 40.0e6, 6.0, 1.5),
           "far": (5.0e6, 20.0e6, 3.0, 0.75)}
    for model, (params, size, b1, b32) in fps.items():
        write_json(paths.root / "footprint" / f"{model}.json",
                   {"parameters": int(params), "size_bytes": int(size), "seq_len": 64, "threads": 2,
                    "latency_ms": {"1": b1, "32": b32}})
    results = collect_results(cfg)
    write_report(results, out)
    return {"out": out, "cfg": cfg, "results": results}


def test_rows_match_an_independent_sigma_and_kappa(experiment_dir: dict[str, Any]) -> None:
    from confdistill.prediction.softmax_file import read_softmax

    out = experiment_dir["out"]
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [r["student"] for r in rows] == ["close", "far"]
    for r in rows:
        for role in ("train", "dev"):
            t = read_softmax(out / r["files"][f"teacher_{role}"])
            s = read_softmax(out / r["files"][f"student_{role}"])
            both = (t.probs.argmax(1) == t.label) & (s.probs.argmax(1) == s.label)
            sigma = float(np.std(t.probs[both, 0] - s.probs[both, 0]))  # population std, numpy's own
            assert r[f"sigma_{role}"] == pytest.approx(sigma, rel=1e-9)
            assert r[f"teacher_accuracy_{role}"] == pytest.approx(float(np.mean(t.probs.argmax(1) == t.label)))
        # κ = T·sqrt(β / (2·(1−α)·n_both)) (notes/kappa.md), written out by hand
        assert r["kappa"] == pytest.approx(np.sqrt(0.5 / (2 * r["n_both_train"])), rel=1e-9)
        assert r["kappa_source"] == "beta" and r["beta"] == 0.5
    close, far = rows
    assert close["verdict"] == "holds" and close["sigma_train"] < close["kappa"]
    assert far["verdict"] == "fails" and far["sigma_train"] > far["kappa"]
    assert far["analysis"]["dev"]["kappa"] == pytest.approx(far["kappa"])  # dev judged against train's κ


def test_footprint_ratios(experiment_dir: dict[str, Any]) -> None:
    fp = experiment_dir["results"]["footprint"]["SST-2"]
    assert fp["close"]["speedup"] == {"1": pytest.approx(2.0), "32": pytest.approx(2.0)}
    assert fp["far"]["speedup"]["1"] == pytest.approx(4.0)
    assert fp["far"]["parameter_ratio"] == pytest.approx(22.7 / 5.0)
    md = (experiment_dir["out"] / "report.md").read_text()
    assert "| SST-2 | far | 5.00 M (÷4.5) | 20.0 | 3.00 | 0.75 | 4.00× | 4.00× |" in md


def test_html_is_self_contained(experiment_dir: dict[str, Any]) -> None:
    out = experiment_dir["out"]
    html = (out / "report.html").read_text()
    pngs = sorted((out / "figures").glob("*.png"))
    # summary + per student (confidence + 2 Δconf) + reliability + training loss
    assert len(pngs) == 1 + 2 * 3 + 1 + 1
    images = re.findall(r'<img [^>]*src="([^"]+)"', html)
    assert len(images) == len(pngs)
    for src in images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    for banned in ("<script", "<link", "http://", "https://", 'src="figures'):
        assert banned not in html
    assert '<td class="ok">holds</td>' in html and '<td class="bad">fails</td>' in html


def test_markdown_links_resolve_and_table_has_the_numbers(experiment_dir: dict[str, Any]) -> None:
    out = experiment_dir["out"]
    md = (out / "report.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert links and all((out / link).is_file() for link in links)
    assert {Path(link).name for link in links} == {p.name for p in (out / "figures").glob("*.png")}
    rows = experiment_dir["results"]["rows"]
    for r in rows:
        line = next(x for x in md.splitlines() if x.startswith(f"| SST-2 | {r['student']} | "))
        assert f"{r['sigma_train']:.4f}" in line and f"{r['kappa']:.4f}" in line and r["verdict"] in line

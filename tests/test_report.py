"""The experiment report from hand-made analyses (the keys of ``PairAnalysis.to_dict()``, built by
tests/report_helpers.py): the answer per student comes first, its verdict words, tables that scroll
inside their box, provenance, every plot drawn from the JSON summaries. No models: seconds."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from confdistill.experiments.results import collect_results
from confdistill.properties.calibration import reliability, units_from_rows
from confdistill.reports import _figure, plots
from confdistill.reports.answer import NO_TOLERANCE, combined_verdict, facts, headline
from confdistill.reports.markdown import md_table
from confdistill.reports.report import SCHEMA, student_row, write_report
from report_helpers import fake_analysis, make_experiment


def build(out: Path, **kw: Any) -> dict[str, Any]:
    cfg = make_experiment(out, **kw)
    results = collect_results(cfg, command=["confdistill", "run", "exp.toml", "--out", str(out)])
    write_report(results, out)
    return {"out": out, "cfg": cfg, "results": results, "html": (out / "report.html").read_text(),
            "md": (out / "report.md").read_text()}


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A tolerance of 0.05: student "close" (σ ≈ 0.01) holds, "far" (σ ≈ 0.13) fails."""
    return build(tmp_path_factory.mktemp("report") / "out")


@pytest.fixture(scope="module")
def label_free(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """No tolerance and files without labels."""
    return build(tmp_path_factory.mktemp("report_nolabel") / "out", kappa=None, labelled=False)


def body(html: str) -> str:
    return html.split("<body>", 1)[1]


def answer_blocks(html: str) -> list[str]:
    return re.findall(r'<section class="answer".*?</section>', html, flags=re.S)


# ----------------------------------------------------------------------------- data


def test_rows_carry_the_answer_figures(report: dict[str, Any]) -> None:
    out = report["out"]
    data = json.loads((out / "results.json").read_text())
    assert data["schema"] == SCHEMA
    rows = data["rows"]
    assert [r["student"] for r in rows] == ["close", "far"]
    for r in rows:
        analysis = json.loads((out / "SST-2" / "students" / r["student"] / "analysis.json").read_text())
        train, dev = analysis["train"], analysis["dev"]
        assert r["sigma_train"] == train["sigma"] and r["sigma_dev"] == dev["sigma"]
        assert r["accuracy_change_dev"] == pytest.approx(dev["student_accuracy"] - dev["teacher_accuracy"])
        assert r["flips_dev"] == dev["flips"]
        assert r["ece_change_dev"] == dev["calibration"]["delta"]["ece"]
        assert r["ece_change_ci95_dev"] == dev["calibration"]["ci95"]["delta"]["ece"]
        assert r["bound"]["check"] == train["bound_check"] and r["bound"]["kappa_beta"] == train["kappa_from_beta"]
        assert r["kappa"] == 0.05 and r["analysis"] == {"train": train, "dev": dev}
    close, far = rows
    assert (close["verdict"], close["verdict_95"], close["verdict_95_dev"], close["answer"]) == ("holds",) * 4
    assert (far["verdict"], far["verdict_95"], far["answer"]) == ("fails",) * 3
    assert {f["key"] for f in data["figures"]} == {None, "SST-2/close", "SST-2/far"}


def test_footprint_ratios(report: dict[str, Any]) -> None:
    fp = report["results"]["footprint"]["SST-2"]
    assert fp["close"]["speedup"] == {"1": pytest.approx(2.0), "32": pytest.approx(2.0)}
    assert fp["far"]["speedup"]["1"] == pytest.approx(4.0)
    assert fp["far"]["parameter_ratio"] == pytest.approx(22.7 / 5.0)
    assert "| SST-2 | far | PyTorch | 5.00 M (÷4.5) | 20.0 | 3.00 | 0.75 | 4.00× | 4.00× |" in report["md"]


def test_combined_verdict() -> None:
    assert combined_verdict("holds", "holds") == "holds"
    assert combined_verdict("holds", "fails") == "fails"
    assert combined_verdict("undecided", "holds") == "undecided"
    assert combined_verdict("no verdict", "no verdict") == "no verdict"


def test_undecided_answer_names_the_interval() -> None:
    train = fake_analysis(split="train", noise=0.02, kappa=0.05)
    dev = fake_analysis(split="dev", noise=0.02, kappa=0.05, seed=1)
    dev.update(sigma=0.05, sigma_one_sided95=[0.045, 0.056], verdict="holds", verdict_95="undecided")
    row = student_row("SST-2", "SST-2", "mid", train, dev, {})
    word, sentence = headline(row)
    assert word == "undecided" and "σ(dev) in [0.0450, 0.0560]" in sentence and "κ = 0.0500" in sentence


# ----------------------------------------------------------------------------- the page


def test_answer_block_is_the_first_thing_in_the_body(report: dict[str, Any]) -> None:
    page = body(report["html"])
    first = page.index('<section class="answer"')
    # Only the page title comes before the first answer.
    assert re.fullmatch(r"\s*<h1>.*?</h1>\s*", page[:first], flags=re.S)
    blocks = answer_blocks(page)
    assert len(blocks) == 2
    last_answer_end = page.index(blocks[-1]) + len(blocks[-1])
    assert "<img" not in page[:last_answer_end] and "<table" not in page[:last_answer_end]
    for block, r in zip(blocks, report["results"]["rows"], strict=True):
        assert f"Can {r['student']} replace the teacher?" in block
        for tau in ("0.5", "0.9"):
            assert f"Decision flips at τ = {tau} (dev)" in block
        assert "Accuracy (dev)" in block and "Calibration (dev, ECE)" in block and "M parameters" in block
        assert "Consistency check of the β measurement (not a verdict)" in block
    # The Markdown report has the same order: answers before the first figure.
    md = report["md"]
    assert md.index("## Can close replace the teacher?") < md.index("## Can far replace the teacher?") < md.index("![")


def test_verdict_words(report: dict[str, Any], label_free: dict[str, Any]) -> None:
    close, far = answer_blocks(report["html"])
    assert '<span class="badge ok">holds</span>' in close and '<span class="badge bad">fails</span>' in far
    assert "holds (point), holds (95%)" in close and "fails (point), fails (95%)" in far
    # The bound check speaks of consistency, never "holds".
    bound_close = re.search(r"not a verdict\)</dt><dd[^>]*>(.*?)</dd>", close).group(1)
    bound_far = re.search(r"not a verdict\)</dt><dd[^>]*>(.*?)</dd>", far).group(1)
    assert bound_close.startswith("consistent") and "holds" not in bound_close
    assert bound_far.startswith("violated") and "mis-measured" in bound_far
    for block in answer_blocks(label_free["html"]):
        assert '<span class="badge na">no verdict</span>' in block and NO_TOLERANCE in block
        assert "no labels" in block and "agree" in block
    assert NO_TOLERANCE in label_free["md"]


def test_label_free_report_has_no_calibration_plot(label_free: dict[str, Any]) -> None:
    names = {p.name for p in (label_free["out"] / "figures").glob("*.png")}
    assert not any("reliability" in n for n in names) and "SST-2_far_flips.png" in names
    row = label_free["results"]["rows"][0]
    assert row["labelled"] is False and row["set"] == "agree" and row["ece_change_dev"] is None
    what = [w for w, _t, _c in facts(row)]
    assert "confidence gap (agree rows), train" in what


def test_tables_scroll_inside_their_box(report: dict[str, Any]) -> None:
    html = report["html"]
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    assert re.search(r"\.scroll\{overflow-x:auto", html)
    tables = [m.start() for m in re.finditer("<table", html)]
    assert len(tables) >= 5  # worst × 2, summary, footprint, provenance
    for at in tables:
        assert html[:at].endswith('<div class="scroll">')


def test_inputs_that_moved(report: dict[str, Any]) -> None:
    page = body(report["html"])
    worst = report["results"]["rows"][1]["analysis"]["dev"]["worst"]
    details = page[page.index('id="details-SST-2-far"'):]
    # text (escaped), both probabilities and the gold label of the first worst row
    w = worst[0]
    assert "The inputs that moved (dev)" in details
    assert f"{w['teacher_p'][0]:.3f} / {w['teacher_p'][1]:.3f}" in details
    assert f"{w['student_p'][0]:.3f} / {w['student_p'][1]:.3f}" in details
    assert "&lt;b&gt;acting&lt;/b&gt;" in page and "<b>acting" not in page
    # the plots come before the table
    assert details.index("<img") < details.index("The inputs that moved")
    assert md_table(["a"], [["x | y\nz"]]).splitlines()[-1] == "| x \\| y z |"


def test_provenance(report: dict[str, Any]) -> None:
    from confdistill import __version__

    prov = report["results"]["provenance"]
    assert prov["confdistill_version"] == __version__ and prov["command"].startswith("confdistill run exp.toml")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", prov["created"])
    entry = next(f for f in prov["files"] if f["path"] == "SST-2/predictions/far.dev.csv")
    digest = hashlib.sha256((report["out"] / entry["path"]).read_bytes()).hexdigest()
    assert entry["sha256"] == digest and entry["data_sha256"] == "dev-sha" and entry["data_file"] == "/data/SST-2/dev.tsv"
    assert len(prov["files"]) == 6  # teacher train/dev once, each student train/dev
    html = report["html"]
    prov_html = html[html.index('id="provenance"'):]
    for needle in (__version__, digest, "dev-sha", "confdistill run exp.toml", prov["created"]):
        assert needle in prov_html
    assert digest in report["md"] and "## Provenance" in report["md"]


def test_plots_written_and_embedded(report: dict[str, Any]) -> None:
    out = report["out"]
    pngs = sorted((out / "figures").glob("*.png"))
    # per student: confidence × 2, Δconf × 2, reliability, flips; + σ summary + training loss
    assert len(pngs) == 2 * 6 + 3  # per student 6; σ summary, speed-up against σ, training loss
    html = report["html"]
    images = re.findall(r'<img [^>]*src="([^"]+)"', html)
    assert len(images) == len(pngs)
    for src in images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    for banned in ("<script", "<link", "http://", "https://", 'src="figures'):
        assert banned not in html
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report["md"])
    assert {Path(link).name for link in links} == {p.name for p in pngs}
    assert all((out / link).is_file() for link in links)


# ----------------------------------------------------------------------------- plots


@pytest.fixture()
def captured(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The matplotlib figures the plot functions save (inspected instead of the pixels)."""
    figs: list[Any] = []
    real = _figure.save

    def keep(fig: Any, path: Any) -> Path:
        figs.append({"axes": [ax for ax in fig.axes if ax.get_visible()], "path": Path(path)})
        return real(fig, path)

    monkeypatch.setattr(_figure, "save", keep)
    return figs


def test_write_analysis_plots(tmp_path: Path, captured: list[Any]) -> None:
    analysis = fake_analysis(split="dev", kappa=0.05)
    paths = plots.write_analysis_plots(analysis, tmp_path)
    assert [p.name for p in paths] == ["confidence_teacher.png", "confidence_student.png", "delta_conf.png",
                                       "reliability.png", "flips.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in paths)
    conf_ax = captured[0]["axes"][0]
    assert conf_ax.get_xlabel() == "p(class 0)" and conf_ax.get_xlim() == (0.0, 1.0)
    delta_ax = captured[2]["axes"][0]
    assert sum("κ" in t.get_text() for t in delta_ax.get_legend().get_texts()) == 1
    assert len(captured[3]["axes"]) == 2  # reliability + bin counts
    flip_ax = captured[4]["axes"][0]
    assert {t.get_text() for t in flip_ax.texts} == {"τ = 0.5: " + f"{100 * analysis['flips']['0.5']['rate']:.1f}%",
                                                      "τ = 0.9: " + f"{100 * analysis['flips']['0.9']['rate']:.1f}%"}
    # label-free, no tolerance: no reliability plot, no κ line
    free = fake_analysis(split="dev", kappa=None, labelled=False)
    names = [p.name for p in plots.write_analysis_plots(free, tmp_path / "free")]
    assert "reliability.png" not in names and len(names) == 4
    delta_free = next(c for c in captured if c["path"].name == "delta_conf.png" and "free" in str(c["path"]))
    assert not any("κ" in t.get_text() for t in delta_free["axes"][0].get_legend().get_texts())


def test_plots_are_deterministic(tmp_path: Path) -> None:
    analysis = fake_analysis(split="train")
    a = plots.write_analysis_plots(analysis, tmp_path / "a")
    b = plots.write_analysis_plots(analysis, tmp_path / "b")
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]


@pytest.mark.parametrize(("kind", "label"), [("p0", "p(class 0)"), ("label", "p(gold label)"),
                                             ("pred", "p(predicted class)")])
def test_confidence_axis(kind: str, label: str, tmp_path: Path, captured: list[Any]) -> None:
    assert plots.confidence_axis(kind) == label
    hist = {"edges": np.linspace(0, 1, 51).tolist(), "count": [5] + [0] * 48 + [7]}
    plots.plot_confidence_density({"teacher": hist}, tmp_path / "c.png", delta_kind=kind, title="t")
    ax = captured[-1]["axes"][0]
    assert ax.get_xlabel() == label and ax.get_xlim() == (0.0, 1.0)
    for line in ax.get_lines():
        assert line.get_xdata().min() >= 0.0 and line.get_xdata().max() <= 1.0


def test_density_stays_inside_the_edges() -> None:
    edges = np.linspace(0, 1, 51)
    for count in ([10] + [0] * 49, [0] * 49 + [10], [3, 1] + [0] * 46 + [2, 9]):
        dens = np.asarray(count, float) / (sum(count) * 0.02)
        x, y = plots.smooth_density(edges, dens)
        assert x[0] == 0.0 and x[-1] == 1.0 and (y >= 0).all()
        # Reflection keeps all the mass on [0, 1]: the bin-centre values integrate to 1.
        assert float(np.sum(y[1:-1]) * 0.02) == pytest.approx(1.0, abs=1e-12)


def test_loss_curves_one_panel_per_stage(tmp_path: Path, captured: list[Any]) -> None:
    runs = {}
    for stage, base in (("stage2", 0.7), ("finetune", 1.0), ("stage1", 5.0)):
        p = tmp_path / f"{stage}.jsonl"
        p.write_text("".join(json.dumps({"step": i, "loss": base / i}) + "\n" for i in range(1, 10)) + '{"step": 9, "lo')
        runs[stage] = {"teacher" if stage == "finetune" else "s": p}
    assert plots.read_losses(runs["stage1"]["s"])[1][0] == 5.0  # the cut last line is skipped
    plots.plot_stage_losses(runs, tmp_path / "loss.png", title="loss")
    axes = captured[-1]["axes"]
    assert [ax.get_title() for ax in axes] == ["finetune", "stage1", "stage2"]
    assert all(ax.get_yscale() == "log" for ax in axes)


def test_per_row_helpers_still_draw(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.5, 1.0, 300)
    assert plots.plot_confidence_histogram(conf, tmp_path / "c.png", title="c", xlabel="p0").is_file()
    assert plots.plot_delta_histogram(rng.normal(0, 0.02, 300), tmp_path / "d.png", sigma=0.02, mean=0.0,
                                      kappa=0.05).is_file()
    # arrays' reliability diagram: the analysis' own bins (the rows-only copy of sklearn's binning is gone)
    probs = np.stack([conf, 1 - conf], 1)
    units = units_from_rows(probs, np.zeros(300, dtype=np.int64), (rng.uniform(size=300) >= conf).astype(np.int64))
    assert plots.plot_reliability_bins({"teacher": reliability(units)}, tmp_path / "r.png").is_file()

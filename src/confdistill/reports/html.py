"""``report.html``: one self-contained page that answers "can the student replace the teacher?" first.

Layout: the title, then one answer block per student (verdict word, its sentence, the figures that
matter to the decision), before any plot or table; then per student the plots and the inputs that
moved; then the summary tables, the training curves and the provenance. Inline CSS, figures as
base64 PNG data URIs, no scripts and no external resources, so the file opens offline and can be
mailed. Every table sits in a box that scrolls sideways (``overflow-x: auto``) and the page has a
viewport meta tag, so it stays readable on a 420 px wide phone.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from typing import Any

from confdistill.reports import answer as ans

INTRO = (
    "φ_cnf holds for a student when σ, the population standard deviation of Δconf(x) = c_teacher(x) − "
    "c_student(x) over the rows both models classify correctly, is at most the tolerance κ you state "
    "(c = p(class 0) for two classes). The point verdict compares σ itself with κ (the paper's); the 95% "
    "verdict holds when the one-sided 95% upper bound of σ is ≤ κ, fails when the lower bound is > κ, "
    "and is undecided otherwise. The β-derived bound κ_β is shown only as a check that β was measured "
    "right: it is satisfied whenever it is (docs/method.md), so it is never the answer. A decision at τ "
    "is the class whose probability is ≥ τ, or abstain; a flip is a row whose decision differs between "
    "teacher and student, over all rows. The answer is \"not informative\" when either model predicts one "
    "class on every row, the teacher is no better than the majority class, or fewer than 30 rows are in "
    "the σ set: a small σ means nothing then. Negative flips are rows the teacher gets right and the "
    "student wrong; McNemar's exact test asks whether the accuracy changed."
)

CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:1.5rem auto;max-width:1200px;
 color:#222;line-height:1.45;padding:0 1rem}
h1{font-size:1.5rem;margin:.5rem 0 1rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
h3{font-size:1rem;margin-top:1.5rem}
.answer{border:1px solid #ccd;border-radius:6px;padding:.6rem 1rem 1rem;margin:0 0 1.2rem;background:#fafbff}
.answer h2{margin-top:.3rem;border:0}.answer .task{color:#666;font-weight:normal;font-size:.9rem}
.headline{font-size:1.05rem;margin:.4rem 0 .8rem}
.badge{display:inline-block;padding:.05rem .5rem;border-radius:4px;font-weight:700;margin-right:.4rem}
.facts{display:grid;grid-template-columns:minmax(9em,15em) 1fr;gap:.35rem 1rem;margin:0}
.facts dt{font-weight:600;color:#444}.facts dd{margin:0;overflow-wrap:anywhere}
.ok{background:#e3f4e3;color:#135d13}.bad{background:#fbe3e3;color:#8a1414}
.warn{background:#fff2d6;color:#7a5200}.na{color:#666}.check{background:#e6eef8;color:#23466e}
.facts dd.ok,.facts dd.bad,.facts dd.warn,.facts dd.check{padding:0 .3rem;border-radius:3px}
.scroll{overflow-x:auto;max-width:100%;margin:1rem 0;border:1px solid #eee}
table{border-collapse:collapse;font-size:.88rem}
th,td{border:1px solid #ccc;padding:.3rem .55rem;text-align:right;white-space:nowrap}
th{background:#f3f3f3;white-space:normal;min-width:4.5em;text-align:left;vertical-align:bottom}
td.l{text-align:left}td.text{text-align:left;white-space:normal;min-width:16em;max-width:36em}
td.hash{white-space:normal;word-break:break-all;min-width:12em;font-family:monospace;font-size:.8rem;text-align:left}
td.ok,td.bad,td.warn,td.check{font-weight:600}
.figs{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,480px),1fr));gap:1rem;align-items:start}
figure{margin:0;min-width:0}figure.wide{grid-column:1/-1;max-width:1000px}
figure img{width:100%;height:auto;border:1px solid #eee}figcaption{font-size:.85rem;color:#555}
code{background:#f5f5f5;padding:0 .2rem;overflow-wrap:anywhere}.note{color:#555;font-size:.9rem}
@media (max-width:600px){body{padding:0 .6rem;margin:.8rem auto}h1{font-size:1.25rem}
 .facts{display:block}.facts dt{margin-top:.5rem}td.text{min-width:12em}}
"""


def _anchor(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")


def table(header: list[str], cells: list[list[str]], *, classes: dict[int, str] | None = None) -> str:
    """An HTML table inside a sideways-scrolling box; ``classes``: extra CSS class per column."""
    classes = classes or {}
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(
            f'<td class="{" ".join(c for c in (ans.cell_class(c), classes.get(j, "")) if c)}">{html.escape(c)}</td>'
            for j, c in enumerate(row)) + "</tr>"
        for row in cells
    )
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _figure(out: Path, f: dict[str, Any]) -> str:
    data = base64.b64encode((out / f["path"]).read_bytes()).decode("ascii")
    title = html.escape(f["title"])
    wide = ' class="wide"' if f.get("wide") else ""
    return f'<figure{wide}><img alt="{title}" src="data:image/png;base64,{data}"><figcaption>{title}</figcaption></figure>'


def _footprints(results: dict[str, Any], row: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    fps = results.get("footprint", {}).get(row["task"], {})
    return fps.get(row["student"]), fps.get("teacher")


def answer_block(results: dict[str, Any], row: dict[str, Any]) -> str:
    """The "can <student> replace the teacher?" block of one student."""
    word, sentence = ans.headline(row)
    fp, teacher_fp = _footprints(results, row)
    facts = "".join(f'<dt>{html.escape(what)}</dt><dd class="{ans.WORD_CLASS.get(w, "")}">{html.escape(text)}</dd>'
                    for what, text, w in ans.facts(row, fp, teacher_fp))
    key = _anchor(f"{row['task']}-{row['student']}")
    return (f'<section class="answer" id="answer-{key}">'
            f"<h2>Can {html.escape(row['student'])} replace the teacher? "
            f'<span class="task">{html.escape(row["task"])}</span></h2>'
            f'<p class="headline"><span class="badge {ans.WORD_CLASS.get(word, "")}">{html.escape(word)}</span>'
            f"{html.escape(sentence)}</p><dl class=\"facts\">{facts}</dl>"
            f'<p class="note"><a href="#details-{key}">Plots and the inputs that moved ↓</a></p></section>')


def render_html(results: dict[str, Any], figures: list[dict[str, Any]], out: Path) -> str:
    """report.html: the answers first, then plots, inputs that moved, tables and provenance."""
    name = html.escape(results["experiment"])
    parts = ['<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>confdistill report: {name}</title><style>{CSS}</style></head><body>",
             f"<h1>Can the students replace the teacher? <span class=\"note\">confdistill report: {name}</span></h1>"]
    parts += [answer_block(results, r) for r in results["rows"]]
    parts.append(f'<p class="note">{html.escape(INTRO)}</p>')
    for row in results["rows"]:
        key = f"{row['task']}/{row['student']}"
        parts.append(f'<section class="details" id="details-{_anchor(key.replace("/", "-"))}">'
                     f"<h2>{html.escape(row['task'])} · {html.escape(row['student'])}: plots</h2><div class=\"figs\">")
        parts += [_figure(out, f) for f in figures if f.get("key") == key]
        parts.append("</div><h3>The inputs that moved (dev)</h3>")
        header, cells = ans.worst_table(row["analysis"]["dev"])
        if cells:
            parts.append('<p class="note">The rows with the largest |Δconf| and every decision flip at the highest '
                         "threshold; text from the data file named in the prediction file's sidecar.</p>")
            parts.append(table(header, cells, classes={1: "l", 2: "text"}))
        else:
            parts.append('<p class="note">None recorded.</p>')
        header, cells = ans.slice_table(row["analysis"]["dev"])
        if cells:
            parts += ["<h3>Slices (dev)</h3>", table(header, cells, classes={0: "l", 1: "l"})]
        parts.append("</section>")
    h1, c1 = ans.rq1_table(results)
    parts += ["<h2>Summary: all students</h2>", table(h1, c1, classes={0: "l", 1: "l"})]
    if results["footprint"]:
        h2, c2 = ans.footprint_table(results)
        parts += ["<h3>What distillation bought</h3>", table(h2, c2, classes={0: "l", 1: "l"}),
                  f'<p class="note">CPU latency: median of timed forward passes after warm-up, fixed-length inputs '
                  f"({_seq_len(results)} tokens), {_threads(results)} thread(s), per example.</p>"]
    for section, title in (("summary", "σ against the tolerance"), ("training", "Training-loss curves")):
        figs = [f for f in figures if f["section"] == section and f.get("key") is None]
        if figs:
            parts += [f"<h2>{title}</h2>", '<div class="figs">', *[_figure(out, f) for f in figs], "</div>"]
    parts += [provenance_html(results), "</body></html>"]
    return "\n".join(parts)


def provenance_html(results: dict[str, Any]) -> str:
    """Version, date, command and the hashes of the files behind the numbers."""
    prov = results.get("provenance") or {}
    items = [("confdistill", prov.get("confdistill_version")), ("created (UTC)", prov.get("created")),
             ("command", prov.get("command") or "not recorded"), ("Python", prov.get("python")),
             ("experiment.json SHA-256", prov.get("experiment_json_sha256"))]
    dl = "".join(f"<dt>{html.escape(k)}</dt><dd><code>{html.escape(str(v if v is not None else '–'))}</code></dd>"
                 for k, v in items)
    header = ["prediction file", "SHA-256", "rows", "data file (sidecar)", "data SHA-256"]
    cells = [[f["path"], f.get("sha256") or "–", ans.fmt(f.get("n_rows")), f.get("data_file") or "–",
              f.get("data_sha256") or "–"] for f in prov.get("files", [])]
    return (f'<h2 id="provenance">Provenance</h2><dl class="facts">{dl}</dl>'
            + table(header, cells, classes={0: "l", 1: "hash", 3: "l", 4: "hash"})
            + '<p class="note"><code>results.json</code> next to this page holds every number above as data '
              "(schema: docs/formats.md, “Experiment results”).</p>")


def _seq_len(results: dict[str, Any]) -> str:
    vals = {fp.get("seq_len") for fps in results["footprint"].values() for fp in fps.values()}
    return ", ".join(str(v) for v in sorted(v for v in vals if v is not None)) or "?"


def _threads(results: dict[str, Any]) -> str:
    vals = {fp.get("threads") for fps in results["footprint"].values() for fp in fps.values()}
    return ", ".join(str(v) for v in sorted(v for v in vals if v is not None)) or "?"

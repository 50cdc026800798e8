"""``report.md``: the same report as ``report.html`` in Markdown, figures linked from ``figures/``.

Same order as the HTML page: the answer per student first (verdict word, sentence, the figures of
the decision as a list), then per student the plots and the inputs that moved, then the summary
tables, the training curves and the provenance. The words come from :mod:`confdistill.reports.answer`.
"""

from __future__ import annotations

from typing import Any

from confdistill.reports import answer as ans
from confdistill.reports.html import INTRO


def md_table(header: list[str], cells: list[list[str]]) -> str:
    """A pipe table; ``|`` and line breaks inside cells are escaped so a text cell stays one row."""
    def cell(c: str) -> str:
        return c.replace("|", "\\|").replace("\r", " ").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in cells]
    return "\n".join(lines)


def render_markdown(results: dict[str, Any], figures: list[dict[str, Any]]) -> str:
    """report.md: answers, figure links relative to the report's folder, tables, provenance."""
    parts = [f"# Can the students replace the teacher? (confdistill report: {results['experiment']})", ""]
    for row in results["rows"]:
        word, sentence = ans.headline(row)
        fps = results.get("footprint", {}).get(row["task"], {})
        parts += [f"## Can {row['student']} replace the teacher? ({row['task']})", "",
                  f"**{word}**: {sentence}", ""]
        parts += [f"- **{what}**: {text}" for what, text, _w in ans.facts(row, fps.get(row["student"]),
                                                                          fps.get("teacher"))]
        parts.append("")
    parts += [INTRO, ""]
    for row in results["rows"]:
        key = f"{row['task']}/{row['student']}"
        parts += [f"## {row['task']} · {row['student']}: plots", ""]
        parts += [f"![{f['title']}]({f['path']})" for f in figures if f.get("key") == key]
        header, cells = ans.worst_table(row["analysis"]["dev"])
        parts += ["", "### The inputs that moved (dev)", "",
                  md_table(header, cells) if cells else "None recorded.", ""]
        header, cells = ans.slice_table(row["analysis"]["dev"])
        if cells:
            parts += ["### Slices (dev)", "", md_table(header, cells), ""]
    h1, c1 = ans.rq1_table(results)
    parts += ["## Summary: all students", "", md_table(h1, c1), ""]
    if results["footprint"]:
        h2, c2 = ans.footprint_table(results)
        parts += ["### What distillation bought", "", md_table(h2, c2), ""]
    for section, title in (("summary", "σ against the tolerance"), ("training", "Training-loss curves")):
        figs = [f for f in figures if f["section"] == section and f.get("key") is None]
        if figs:
            parts += [f"## {title}", ""] + [f"![{f['title']}]({f['path']})" for f in figs] + [""]
    prov = results.get("provenance") or {}
    parts += ["## Provenance", "",
              f"- confdistill {prov.get('confdistill_version', '?')}, created {prov.get('created', '?')} (UTC), "
              f"Python {prov.get('python', '?')}",
              f"- command: `{prov.get('command')}`" if prov.get("command") else "- command: not recorded",
              f"- experiment.json SHA-256: `{prov.get('experiment_json_sha256') or '–'}`", ""]
    files = [[f"`{f['path']}`", f.get("sha256") or "–", ans.fmt(f.get("n_rows")), f.get("data_file") or "–",
              f.get("data_sha256") or "–"] for f in prov.get("files", [])]
    if files:
        parts += [md_table(["prediction file", "SHA-256", "rows", "data file (sidecar)", "data SHA-256"], files), ""]
    parts += ["`results.json` holds every number above as data (schema: docs/formats.md, "
              "\"Experiment results (results.json)\").", ""]
    return "\n".join(parts)

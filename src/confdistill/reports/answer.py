"""The report's answer to "can this student replace the teacher?", as plain text cells.

Everything here turns one row of ``results.json`` (see docs/formats.md, "Experiment results") into
words and formatted numbers, shared by the HTML and the Markdown renderers so both say the same:

- :func:`headline`: the one-word answer (``holds`` / ``fails`` / ``undecided`` / ``no verdict`` /
  ``not informative``) and its sentence. It is φ_cnf judged against the user's tolerance κ with the
  one-sided 95% bounds of σ (``verdict_95``) on train and dev; without a tolerance there is no
  verdict, and the β bound is never the answer (docs/method.md: it holds whenever β is measured
  right). "not informative" comes first, its sentence naming the causes before any figure.
- :func:`facts`: what replacing the teacher changes: accuracy, σ against κ, decision flips at every
  operating threshold, ECE, the footprint gain, then the bound check as a check of the measurement.
- :func:`worst_table`, :func:`slice_table`, :func:`rq1_table`, :func:`footprint_table`: header + cells of
  the tables.
"""

from __future__ import annotations

import math
from typing import Any

#: CSS class of a verdict word (the renderers colour them).
WORD_CLASS = {"holds": "ok", "fails": "bad", "undecided": "warn", "no verdict": "na", "not informative": "bad",
              "consistent": "check", "violated": "warn", "not covered": "na"}
NO_TOLERANCE = "no verdict: state a tolerance (kappa)"
PART_WORDS = (("teacher_only", "teacher acts & student abstains"), ("student_only", "student acts & teacher abstains"),
              ("class_change", "class changes"))


def fmt(x: Any, digits: int = 4) -> str:
    """A number for a cell: fixed digits, "–" for missing / non-finite."""
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}f}" if math.isfinite(x) else "–"
    return str(x)


def pct(x: Any, digits: int = 1) -> str:
    """A share as a percentage, "–" when missing."""
    return "–" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{100 * x:.{digits}f}%"


def _signed(x: float, digits: int = 4) -> str:
    return f"{x:+.{digits}f}".replace("-", "−")


def _num(x: Any, digits: int = 4) -> str:
    """:func:`fmt` with a typographic minus, for running text."""
    return fmt(x, digits).replace("-", "−")


def combined_verdict(train: str | None, dev: str | None) -> str:
    """The answer from the two splits' ``verdict_95``: not informative if either cannot be judged (a
    collapsed model is no pass, whatever the other split says), fails if either fails, holds if both hold."""
    words = [w for w in (train, dev) if w is not None]
    if "not informative" in words:
        return "not informative"
    if not words or any(w == "no verdict" for w in words):
        return "no verdict"
    if "fails" in words:
        return "fails"
    return "holds" if all(w == "holds" for w in words) else "undecided"


def headline(row: dict[str, Any]) -> tuple[str, str]:
    """(answer word, sentence) for one student."""
    word = row.get("answer") or combined_verdict(row.get("verdict_95"), row.get("verdict_95_dev"))
    kappa = row.get("kappa")
    if word == "not informative":
        causes = "; ".join(row.get("not_informative") or []) or "see the warnings"
        return word, f"The check cannot judge this student, so it is no pass: {causes}."
    if word == "no verdict" or kappa is None:
        return "no verdict", "state a tolerance (kappa) to judge φ_cnf; the figures below are what replacing it changes."
    upper = {s: (row.get(f"sigma_one_sided95_{s}") or [None, None])[1] for s in ("train", "dev")}
    lower = {s: (row.get(f"sigma_one_sided95_{s}") or [None, None])[0] for s in ("train", "dev")}
    if word == "holds":
        return word, (f"Confidence is preserved within the tolerance κ = {fmt(kappa)} at 95% on train and dev "
                      f"(σ(train) ≤ {fmt(upper['train'])}, σ(dev) ≤ {fmt(upper['dev'])}).")
    v95 = {"train": row.get("verdict_95"), "dev": row.get("verdict_95_dev")}
    if word == "fails":
        failed = [s for s in ("train", "dev") if v95[s] == "fails"]
        moved = ", ".join(f"σ({s}) ≥ {fmt(lower[s])}" for s in failed)
        return word, (f"Confidence moves more than the tolerance κ = {fmt(kappa)}: {moved} at 95% "
                      f"(fails on {' and '.join(failed)}).")
    open_ = [s for s in ("train", "dev") if v95[s] == "undecided"]
    spans = ", ".join(f"σ({s}) in [{fmt(lower[s])}, {fmt(upper[s])}]" for s in open_)
    which = "each interval contains" if len(open_) > 1 else "the interval contains"
    return word, f"Undecided at 95%: {spans}; {which} the tolerance κ = {fmt(kappa)}, more rows would decide."


def _sigma_fact(row: dict[str, Any], split: str) -> tuple[str, str, str]:
    suffix = "" if split == "train" else "_dev"
    sigma = row.get(f"sigma_{split}")
    lo, hi = row.get(f"sigma_one_sided95_{split}") or [None, None]
    # Without labels σ is over the rows where both predict the same class: not the paper's φ_cnf set.
    prop = "φ_cnf" if row.get("set", "both_correct") == "both_correct" else "confidence gap (agree rows)"
    what = f"{prop}, {split}" + (" (the paper's property)" if split == "train" and prop == "φ_cnf" else
                                 " (not covered by the bound)" if split != "train" else "")
    if row.get("kappa") is None:
        return what, f"σ = {fmt(sigma)} (one-sided 95%: {fmt(lo)} to {fmt(hi)}): {NO_TOLERANCE}", "no verdict"
    point, v95 = row.get(f"verdict{suffix}"), row.get(f"verdict_95{suffix}")
    return what, (f"σ = {fmt(sigma)} (one-sided 95%: {fmt(lo)} to {fmt(hi)}) against κ = {fmt(row['kappa'])}: "
                  f"{point} (point), {v95} (95%)"), str(v95)


def _flip_facts(row: dict[str, Any]) -> list[tuple[str, str, str]]:
    out = []
    for tau, f in (row.get("flips_dev") or {}).items():
        ci = f.get("ci95") or [None, None]
        parts = " · ".join(f"{words} {pct(f.get(key))}" for key, words in PART_WORDS)
        out.append((f"Decision flips at τ = {tau} (dev)",
                    f"{pct(f.get('rate'))} of all rows (95%: {pct(ci[0])} to {pct(ci[1])}) — {parts}", ""))
    if not out:
        out.append(("Decision flips (dev)", "not computed", "na"))
    return out


def _paired_text(row: dict[str, Any]) -> str:
    """Beside the accuracy change: negative / positive flips and McNemar's exact p (dev)."""
    neg, pos, test = (row.get(k) for k in ("negative_flips_dev", "positive_flips_dev", "accuracy_test_dev"))
    if not (neg and pos and test):
        return ""
    return (f"; negative flips (teacher right, student wrong) {pct(neg.get('rate'))} ({neg.get('count')} rows), "
            f"positive flips {pct(pos.get('rate'))} ({pos.get('count')} rows), McNemar's exact p = "
            f"{test['mcnemar_p']:.3g}")


def _gain_text(fp: dict[str, Any] | None, teacher: dict[str, Any] | None) -> str:
    if not fp:
        return "not measured (no footprint)"
    text = f"{fp['parameters'] / 1e6:.2f} M parameters"
    if teacher:
        text += f" (teacher {teacher['parameters'] / 1e6:.2f} M, ÷{fp.get('parameter_ratio', 0):.1f})"
    text += f", {fp['size_bytes'] / 1e6:.1f} MB on disk"
    if fp.get("size_ratio"):
        text += f" (÷{fp['size_ratio']:.1f})"
    speed = ", ".join(f"{v:.1f}× at batch {b}" for b, v in (fp.get("speedup") or {}).items())
    return text + (f"; CPU latency {speed}" if speed else "")


def _bound_text(row: dict[str, Any]) -> tuple[str, str]:
    b = row.get("bound") or {}
    check = b.get("check")
    if check is None:
        return "not available (no β from a stage-2 run)", "na"
    shown = (f"σ(train) = {fmt(row.get('sigma_train'))}, κ_β = {fmt(b.get('kappa_beta'))} "
             f"(β = {fmt(b.get('beta'), 4)}, N = {fmt(b.get('n_train'))}, γ = {fmt(b.get('gamma'), 3)})")
    if check == "consistent":
        return f"consistent: σ(train) ≤ κ_β, as the bound proves when β is measured right; {shown}", "check"
    if check == "violated":
        return f"violated: σ(train) > κ_β, so β was mis-measured; {shown}", "warn"
    return f"{check}; {shown}", "na"


def facts(row: dict[str, Any], fp: dict[str, Any] | None = None,
          teacher_fp: dict[str, Any] | None = None) -> list[tuple[str, str, str]]:
    """``[(what, text, css word)]`` for one student: what replacing the teacher changes."""
    out: list[tuple[str, str, str]] = []
    if row.get("labelled", True) and row.get("teacher_accuracy_dev") is not None:
        change = row.get("accuracy_change_dev")
        out.append(("Accuracy (dev)", f"teacher {pct(row['teacher_accuracy_dev'])} → student "
                    f"{pct(row.get('student_accuracy_dev'))} ({_signed(100 * change, 1) if change is not None else '–'}"
                    " points)" + _paired_text(row), ""))
    else:
        out.append(("Accuracy (dev)", f"– (no labels); the models agree on {pct(row.get('agreement_dev'))} of rows", "na"))
    out += [_sigma_fact(row, "train"), _sigma_fact(row, "dev")]
    out += _flip_facts(row)
    if row.get("ece_teacher_dev") is not None:
        ci = row.get("ece_change_ci95_dev") or [None, None]
        delta = row.get("ece_change_dev")
        out.append(("Calibration (dev, ECE)", f"teacher {fmt(row['ece_teacher_dev'], 3)} → student "
                    f"{fmt(row.get('ece_student_dev'), 3)} ({_signed(delta, 3) if delta is not None else '–'}, "
                    f"95%: {_num(ci[0], 3)} to {_num(ci[1], 3)})", ""))
    else:
        out.append(("Calibration (dev, ECE)", "– (no labels)", "na"))
    out.append(("What the student saves", _gain_text(fp, teacher_fp), ""))
    text, word = _bound_text(row)
    out.append(("Consistency check of the β measurement (not a verdict)", text, word))
    shown = set(row.get("not_informative") or [])  # already the headline's sentence
    notes = [n for n in dict.fromkeys([*(row.get("notes") or []), *(row.get("warnings") or [])]) if n not in shown]
    if notes:
        out.append(("Notes", "; ".join(notes), ""))
    return out


def worst_table(analysis: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The inputs that moved (``worst`` of an analysis): row, why, text, gold label, both probabilities."""
    header = ["row", "why", "text", "gold label", "teacher p", "student p", "Δconf"]
    cells = []
    for w in analysis.get("worst") or []:
        kind = {"largest_delta": "largest |Δconf|", "flip": "decision flip"}.get(w.get("kind"), str(w.get("kind")))
        cells.append([str(w.get("row")) + (f" ({w['id']})" if w.get("id") is not None else ""), kind,
                      w.get("text") or "–", fmt(w.get("label")), _probs(w.get("teacher_p")),
                      _probs(w.get("student_p")), _signed(w["delta"], 3) if w.get("delta") is not None else "–"])
    return header, cells


def slice_table(analysis: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The per-slice table of an analysis (``slices``): one row per slice value, the slice where the
    confidence moves most (largest σ among the informative slices) marked."""
    from confdistill.properties.slices import moves_most

    slices = analysis.get("slices") or {}
    taus = list(dict.fromkeys(t for rows in slices.values() for r in rows for t in r["flip_rate"]))
    header = ["slice by", "value", "rows", "σ set", "σ", "φ_cnf (point)", "negative flips",
              *[f"flips @ {t}" for t in taus], "accuracy (teacher → student)"]
    cells = []
    for spec, rows in slices.items():
        most = moves_most(rows)
        for i, r in enumerate(rows):
            acc = r.get("accuracy")
            cells.append([spec, str(r["value"]), str(r["n"]), str(r["n_set"]),
                          fmt(r.get("sigma")) + (" ◀ moves most" if i == most else ""), str(r["verdict"]),
                          pct(r.get("negative_flip_rate")), *[pct(r["flip_rate"].get(t)) for t in taus],
                          "–" if acc is None else f"{pct(acc['teacher'])} → {pct(acc['student'])}"])
    return header, cells


def _probs(p: list[float] | None) -> str:
    """``[p0, p1, …]`` as "0.912 / 0.088"; for many classes the three largest, as "c: p"."""
    if not p:
        return "–"
    if len(p) <= 3:
        return " / ".join(f"{x:.3f}" for x in p)
    top = sorted(range(len(p)), key=lambda c: (-p[c], c))[:3]
    return ", ".join(f"{c}: {p[c]:.3f}" for c in top)


def rq1_table(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the summary table, one row per task × student."""
    taus = list(dict.fromkeys(t for r in results["rows"] for t in (r.get("flips_dev") or {})))
    header = ["task", "student", "answer", "accuracy dev (teacher → student)", "σ(train)", "σ(dev)",
              "κ (tolerance)", "φ_cnf train (point, 95%)", "φ_cnf dev (point, 95%)",
              *[f"flips @ {t} (dev)" for t in taus], "ΔECE (dev)", "bound check"]
    cells = []
    for r in results["rows"]:
        flips = r.get("flips_dev") or {}
        cells.append([r["task"], r["student"], headline(r)[0],
                      f"{pct(r.get('teacher_accuracy_dev'))} → {pct(r.get('student_accuracy_dev'))}",
                      fmt(r.get("sigma_train")), fmt(r.get("sigma_dev")),
                      fmt(r.get("kappa")), f"{r.get('verdict')}, {r.get('verdict_95')}",
                      f"{r.get('verdict_dev')}, {r.get('verdict_95_dev')}",
                      *[pct((flips.get(t) or {}).get("rate")) for t in taus],
                      _signed(r["ece_change_dev"], 3) if r.get("ece_change_dev") is not None else "–",
                      (r.get("bound") or {}).get("check") or "–"])
    return header, cells


def footprint_table(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the "what distillation bought" table."""
    batch_sizes: list[str] = []
    for fps in results["footprint"].values():
        for fp in fps.values():
            batch_sizes += [b for b in fp["latency_ms"] if b not in batch_sizes]
    header = ["task", "model", "runtime", "parameters", "size on disk (MB)",
              *[f"ms/example @ batch {b}" for b in batch_sizes], *[f"speed-up @ {b}" for b in batch_sizes],
              "accuracy (dev)", "σ (train)", "φ_cnf (95%)"]
    by_model = {(r["task"], r["student"]): r for r in results["rows"]}
    cells = []
    for task, fps in results["footprint"].items():
        teacher_acc = next((r.get("teacher_accuracy_dev") for r in results["rows"] if r["task"] == task), None)
        for model, fp in fps.items():
            ratio = fp.get("parameter_ratio")
            params = f"{fp['parameters'] / 1e6:.2f} M" + ("" if model == "teacher" or not ratio else f" (÷{ratio:.1f})")
            runtime = "ONNX Runtime" + (" int8" if fp.get("quantization") == "int8" else "") \
                if fp.get("runtime") == "onnxruntime" else "PyTorch"
            row = by_model.get((task, model), {})
            acc = teacher_acc if model == "teacher" else row.get("student_accuracy_dev")
            cells.append([task, model, runtime, params, f"{fp['size_bytes'] / 1e6:.1f}",
                          *[fmt(fp["latency_ms"].get(b), 2) for b in batch_sizes],
                          *[(f"{fp['speedup'][b]:.2f}×" if b in fp.get("speedup", {}) else "–") for b in batch_sizes],
                          "–" if acc is None else f"{100 * acc:.1f}%",
                          "–" if model == "teacher" else fmt(row.get("sigma_train"), 4),
                          "–" if model == "teacher" else str(row.get("verdict_95") or "–")])
    return header, cells


def cell_class(text: str) -> str:
    """CSS class of a table cell: verdict words coloured, the rest plain."""
    if text in WORD_CLASS:
        return WORD_CLASS[text]
    # "point, 95%" cells are coloured by the 95% word, the one the answer uses.
    words = [w.strip() for w in text.split(",")]
    return WORD_CLASS[words[-1]] if len(words) == 2 and all(w in WORD_CLASS for w in words) else ""

"""The readable summary ``confdistill analyze`` prints, from an analysis dict (``PairAnalysis.to_dict()``).

The answer comes first (can the student replace the teacher, against the user's tolerance), then
the evidence: σ with its intervals, decisions at each operating threshold, calibration, and the
bound check as what it is — a check of the measurement, never a verdict.
"""

from __future__ import annotations

from typing import Any


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100.0 * x:.2f}%"


def _f(x: float | None, digits: int = 6) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def paired_text(a: dict[str, Any]) -> str:
    """Negative/positive flips and McNemar's p, the paired view of the accuracy change (one line)."""
    neg, pos, test = a["negative_flips"], a["positive_flips"], a["accuracy_test"]
    def one(f: dict[str, Any]) -> str:
        return f"{_pct(f['rate'])} ({f['count']} rows, 95% [{_pct(f['ci95'][0])}, {_pct(f['ci95'][1])}])"
    return (f"negative flips (teacher right, student wrong) {one(neg)}; positive flips {one(pos)}; "
            f"McNemar's exact test p = {test['mcnemar_p']:.3g} on the {sum(test['discordant'])} discordant rows")


def slice_lines(a: dict[str, Any]) -> list[str]:
    """One line per slice value (``--slice-by``), the slice where the confidence moves most marked."""
    from confdistill.properties.slices import moves_most

    out = []
    for spec, rows in (a.get("slices") or {}).items():
        out.append(f"slices by {spec}:")
        most = moves_most(rows)
        for i, r in enumerate(rows):
            acc = r.get("accuracy")
            acc_text = "" if acc is None else f", accuracy {acc['teacher']:.4f} → {acc['student']:.4f}, " \
                f"negative flips {_pct(r['negative_flip_rate'])}"
            flips = ", ".join(f"flips@{tau} {_pct(x)}" for tau, x in r["flip_rate"].items())
            out.append(f"  {r['value']}: n = {r['n']}, set {r['n_set']}, σ = {_f(r['sigma'])} ({r['verdict']})"
                       f"{acc_text}, {flips}" + ("  ◀ confidence moves most" if i == most else ""))
    return out


def summary_text(a: dict[str, Any]) -> str:
    """Multi-line text of one analysis (keys of docs/formats.md, "Analysis result")."""
    lo, hi = a["sigma_ci95"]
    low1, up1 = a["sigma_one_sided95"]
    split = f" on the {a['split']} split" if a.get("split") else ""
    set_text = "both correct" if a["set"] == "both_correct" else "both predict the same class (no labels)"
    what = {"p0": "p0", "label": "p(label)", "pred": "p(predicted class)"}[a["delta_kind"]]
    lines = []
    if a["verdict"] == "not informative":
        # The causes first: a user must not read the figures below as a pass.
        lines.append(f"φ_cnf NOT INFORMATIVE{split}: the check cannot judge this pair (σ = {a['sigma']:.6f} means "
                     "nothing here):")
        lines += [f"  - {cause}" for cause in a.get("not_informative") or []]
    elif a.get("kappa") is None:
        lines.append("φ_cnf: no verdict — state a tolerance with --kappa (the spread of the confidence gap you accept)")
    else:
        cmp = "<=" if a["verdict"] == "holds" else ">"
        lines.append(f"φ_cnf {a['verdict'].upper()}{split}: σ = {a['sigma']:.6f} {cmp} κ = {a['kappa']:.6f} "
                     f"(your tolerance); with 95% confidence: {a['verdict_95']} "
                     f"(one-sided bounds [{low1:.6f}, {up1:.6f}])")
        if a.get("split") not in (None, "train"):
            lines.append(f"  (φ_cnf is defined on X_train; this is σ of the {a['split']} split against the same κ, "
                         "not covered by the bound)")
    lines += [
        f"teacher: {a.get('teacher_path') or '<memory>'}",
        f"student: {a.get('student_path') or '<memory>'}",
        f"rows: n = {a['n']} (aligned by {a['aligned_by']}), k = {a['k']}; set ({set_text}): "
        f"n = {a['n_set']} ({_pct(a['n_set'] / a['n'])})",
    ]
    if a["labelled"]:
        lines.append(f"accuracy: teacher {a['teacher_accuracy']:.4f}, student {a['student_accuracy']:.4f}; "
                     f"agreement {a['agreement']:.4f}")
        if a.get("accuracy_test"):
            lines.append(f"  {paired_text(a)}")
    else:
        lines.append(f"agreement {a['agreement']:.4f} (no labels: no accuracy or calibration)")
    lines += [
        f"Δconf ({what}, teacher − student): mean {a['mean_delta']:+.6f}, σ = {a['sigma']:.6f}, "
        f"95% bootstrap CI [{lo:.6f}, {hi:.6f}] ({a['n_bootstrap']} resamples, {a['bootstrap_method']}, "
        f"seed {a['seed']})",
        f"Wasserstein distance between the confidence distributions: {a['wasserstein']:.6f}",
    ]
    for tau, f in a.get("flips", {}).items():
        lo_f, hi_f = f["ci95"]
        lines.append(f"decisions at τ = {tau}: {_pct(f['rate'])} of rows flip [{_pct(lo_f)}, {_pct(hi_f)}] — "
                     f"teacher acts/student abstains {_pct(f['teacher_only'])}, student acts/teacher abstains "
                     f"{_pct(f['student_only'])}, class changes {_pct(f['class_change'])}")
    lines += slice_lines(a)
    cal = a.get("calibration")
    if cal:
        t, s, d = cal["teacher"], cal["student"], cal["delta"]
        lines.append(f"calibration (teacher → student, Δ): ECE {t['ece']:.4f} → {s['ece']:.4f} ({d['ece']:+.4f}), "
                     f"ACE {t['ace']:.4f} → {s['ace']:.4f}, MCE {t['mce']:.4f} → {s['mce']:.4f}, "
                     f"Brier {t['brier']:.4f} → {s['brier']:.4f}, NLL {t['nll']:.4f} → {s['nll']:.4f}")
    nt = a["normality"]
    if nt.get("p_value") is not None:
        lines.append(f"normality of Δconf (D'Agostino–Pearson): K² = {nt['statistic']:.4g}, p = {nt['p_value']:.3g}")
    else:
        lines.append(f"normality of Δconf: not tested ({nt.get('reason')})")
    check = a.get("bound_check")
    if check is not None:
        kb = a.get("kappa_from_beta")
        lines.append(f"bound check (consistency of the measurement, not a verdict): {check}"
                     + ("" if kb is None else f"; κ_β = {kb:.6f} from β = {a['beta']:.6g}, N = {a['n_train']}, "
                        f"α = {a['alpha']:g}, T = {a['temperature']:g}"))
    for note in a.get("judgement_notes") or []:
        lines.append(f"note: {note}")
    return "\n".join(lines)


__all__ = ["paired_text", "slice_lines", "summary_text"]

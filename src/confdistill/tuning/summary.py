"""Reading a study back: one row per trial, the best feasible trial, the Pareto front, the
summary (summary.json) with the λ comparison, and its printable lines."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from confdistill.tuning.options import StudyOptions
from confdistill.tuning.sampler import pruner_settings
from confdistill.tuning.space import PARAM_NAMES
from confdistill.tuning.storage import default_storage_url, redact_url

if TYPE_CHECKING:
    import optuna


def trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """One dict per trial (every state), in trial-number order: the trials.csv rows."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        ua = t.user_attrs
        row: dict[str, Any] = {
            "number": t.number,
            "state": t.state.name,
            "role": ua.get("role", "search"),
            "worker": ua.get("worker", ""),
        }
        for name in PARAM_NAMES:
            row[name] = t.params.get(name)
        for name in ("sigma", "dev_accuracy", "teacher_dev_accuracy", "constraint", "kappa", "verdict", "seconds",
                     "fail_reason"):
            row[name] = ua.get(name)
        c = t.constraints.get("accuracy") if hasattr(t, "constraints") else ua.get("constraint")
        row["feasible"] = None if c is None else bool(c <= 0)
        if t.state.name == "PRUNED" and t.intermediate_values:
            last = max(t.intermediate_values)
            row["pruned_at_step"] = last
            row["pruned_sigma"] = t.intermediate_values[last]
        for k, v in ua.items():
            if k.startswith("x_"):
                row[k[2:]] = v
        rows.append(row)
    return rows


def complete_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r["state"] == "COMPLETE" and r["sigma"] is not None]


def pareto_front(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Completed rows not dominated in (σ ↓, dev accuracy ↑), sorted by σ."""
    done = complete_rows(rows)
    front = []
    for r in done:
        dominated = any(
            o["sigma"] <= r["sigma"]
            and o["dev_accuracy"] >= r["dev_accuracy"]
            and (o["sigma"] < r["sigma"] or o["dev_accuracy"] > r["dev_accuracy"])
            for o in done
        )
        if not dominated:
            front.append(r)
    return sorted(front, key=lambda r: (r["sigma"], -r["dev_accuracy"]))


def best_row(rows: Sequence[dict[str, Any]], *, where: Callable[[dict[str, Any]], bool] | None = None) -> dict | None:
    """The feasible completed row with the smallest σ (ties: higher accuracy, then lower number)."""
    cands = [r for r in complete_rows(rows) if r["feasible"] and (where is None or where(r))]
    if not cands:
        return None
    return min(cands, key=lambda r: (r["sigma"], -r["dev_accuracy"], r["number"]))


def _judged(row: dict[str, Any], kappa: float | None) -> Any:
    """:func:`confdistill.properties.verdict.judge` of a trial's σ(X_train) against the study's κ.

    The one-sided 95% bounds come from the trial's analysis (``sigma_lower95`` / ``sigma_upper95``
    columns); an objective that does not give them has no ``verdict_95`` (None in the summary).
    """
    from confdistill.properties.verdict import judge

    lo, hi = row.get("sigma_lower95"), row.get("sigma_upper95")
    n = row.get("n_both") or 1
    causes = row.get("not_informative")  # the trial analysis' causes (issue 18): a list, when recorded
    return judge(float(row["sigma"]), (lo, hi), tolerance=kappa, bound=None, split="train", n_set=int(n),
                 n_rows=int(n), k=2, causes=causes if isinstance(causes, list) else ())


def _brief(row: dict[str, Any] | None, kappa: float | None) -> dict[str, Any] | None:
    if row is None:
        return None
    j = _judged(row, kappa)
    known95 = row.get("sigma_lower95") is not None and row.get("sigma_upper95") is not None
    out = {
        "trial": row["number"],
        "role": row["role"],
        "sigma": row["sigma"],
        "dev_accuracy": row["dev_accuracy"],
        "teacher_dev_accuracy": row["teacher_dev_accuracy"],
        "feasible": row["feasible"],
        "kappa_own": row["kappa"],
        "verdict_own": row["verdict"],
        "verdict": j.verdict,
        "verdict_95": j.verdict_95 if known95 else None,
        "bound_check": row.get("bound_check"),  # the trial's β bound: a check of β, never the target
        "params": {k: row[k] for k in PARAM_NAMES},
    }
    if kappa is not None:
        out["phi_cnf_holds"] = j.verdict == "holds"
    return out


def summarize(rows: Sequence[dict[str, Any]], opts: StudyOptions) -> dict[str, Any]:
    """The content of summary.json (see :func:`run_study`). κ is the user's tolerance (never κ_β)."""
    baseline = next((r for r in complete_rows(rows) if r["role"] == "baseline"), None)
    kappa = None if opts.kappa is None else float(opts.kappa)
    kappa_source = None if kappa is None else "user tolerance (--kappa or the experiment's kappa)"
    best = best_row(rows)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    teacher_acc = next((r["teacher_dev_accuracy"] for r in complete_rows(rows)), None)
    base_b, best_b = _brief(baseline, kappa), _brief(best, kappa)
    summary: dict[str, Any] = {
        "study_name": opts.study_name,
        "storage": redact_url(opts.storage or default_storage_url(opts.out)),
        "objective": opts.mode,
        "epsilon": opts.epsilon,
        "target_trials": opts.n_trials,
        "pruner": pruner_settings(opts),
        "trials": counts,
        "teacher_dev_accuracy": teacher_acc,
        "min_dev_accuracy": None if teacher_acc is None else teacher_acc - opts.epsilon,
        "kappa": kappa,
        "kappa_source": kappa_source,
        "baseline": base_b,
        "best": best_b,
        "phi_cnf_restored": None if best_b is None or kappa is None else best_b["verdict"] == "holds",
        "best_verdict_95": None if best_b is None else best_b["verdict_95"],
        "baseline_already_holds": None if base_b is None or kappa is None else base_b["verdict"] == "holds",
        "pareto_front": [r["number"] for r in pareto_front(rows)],
    }
    if best is not None and baseline is not None:
        summary["sigma_change"] = best["sigma"] - baseline["sigma"]
        summary["accuracy_change"] = best["dev_accuracy"] - baseline["dev_accuracy"]
    summary["lambda_comparison"] = compare_lambda(rows, kappa, min_dev_accuracy=summary["min_dev_accuracy"])
    return summary


def _lam(r: dict[str, Any]) -> float:
    return float(r["lambda_conf"] or 0.0)


def _arm(row: dict[str, Any] | None, kappa: float | None, min_acc: float | None) -> dict[str, Any] | None:
    """A trial's line of the λ comparison: :func:`_brief` plus its verdict against κ and the floor."""
    b = _brief(row, kappa)
    if b is None:
        return None
    b["lambda_conf"] = float(b["params"]["lambda_conf"] or 0.0)
    b["accuracy_ok"] = None if min_acc is None else bool(b["dev_accuracy"] >= min_acc - 1e-12)
    return b


def compare_lambda(
    rows: Sequence[dict[str, Any]], kappa: float | None, *, min_dev_accuracy: float | None = None
) -> dict[str, Any]:
    """Tuning alone vs the confidence-aware loss (issue RQ2, part 3), on this study's task and student.

    - ``baseline``: the experiment's own settings (no tuning; its λ as the file sets it);
    - ``tuning_alone``: the best feasible *searched* trial with λ = 0 (hyper-parameters tuned, plain
      TinyBERT loss);
    - ``confidence_loss_at_baseline``: the ``--compare-lambda`` trials, the baseline with only λ > 0
      changed (the loss without tuning), by λ;
    - ``confidence_loss_tuned``: the best feasible searched trial with λ > 0 (tuning + the loss).

    Each arm has σ(X_train), dev accuracy, ``accuracy_ok`` (≥ teacher − ε), ``verdict`` (σ vs the
    tolerance κ, through :func:`confdistill.properties.verdict.judge`), ``verdict_95`` and its parameters; ``counts`` says how many completed trials each arm had (a missing arm is
    ``None`` and explained in ``notes``); ``restores`` lists the arms whose best trial both keeps
    the accuracy and holds φ_cnf.
    """
    done = complete_rows(rows)
    searched0 = [r for r in done if r["role"] == "search" and _lam(r) == 0.0]
    searched_l = [r for r in done if r["role"] == "search" and _lam(r) > 0.0]
    arms_at_base = sorted((r for r in done if r["role"] == "baseline+lambda"), key=_lam)
    baseline = next((r for r in done if r["role"] == "baseline"), None)
    out: dict[str, Any] = {
        "kappa": kappa,
        "min_dev_accuracy": min_dev_accuracy,
        "baseline": _arm(baseline, kappa, min_dev_accuracy),
        "tuning_alone": _arm(best_row(searched0), kappa, min_dev_accuracy),
        "confidence_loss_at_baseline": [_arm(r, kappa, min_dev_accuracy) for r in arms_at_base],
        "confidence_loss_tuned": _arm(best_row(searched_l), kappa, min_dev_accuracy),
        "counts": {
            "tuning_alone": len(searched0),
            "confidence_loss_at_baseline": len(arms_at_base),
            "confidence_loss_tuned": len(searched_l),
        },
    }
    notes: list[str] = []
    if not searched0:
        notes.append("no searched trial had λ = 0, so tuning alone is untested: run a tuning-alone study "
                     "with --lambda-choices 0 (another --study-name or --out)")
    elif out["tuning_alone"] is None:
        notes.append(f"none of the {len(searched0)} searched λ = 0 trials kept dev accuracy ≥ teacher − ε")
    if not arms_at_base:
        notes.append("the loss without tuning was not run: add --compare-lambda (e.g. --compare-lambda 0.3,1,3)")
    if not searched_l:
        notes.append("no searched trial had λ > 0: tuning + the loss is untested (see --lambda-choices)")
    elif out["confidence_loss_tuned"] is None:
        notes.append(f"none of the {len(searched_l)} searched λ > 0 trials kept dev accuracy ≥ teacher − ε")
    if kappa is None:
        notes.append("no tolerance κ (--kappa): no verdicts")
    out["notes"] = notes
    named = [("baseline", out["baseline"]), ("tuning_alone", out["tuning_alone"]),
             *((f"confidence_loss_at_baseline[λ={a['lambda_conf']:g}]", a) for a in out["confidence_loss_at_baseline"]),
             ("confidence_loss_tuned", out["confidence_loss_tuned"])]
    out["restores"] = [n for n, a in named if a is not None and a["verdict"] == "holds" and a["feasible"]]
    return out


def format_summary(summary: dict[str, Any]) -> list[str]:
    """The study's summary as printable lines: trials, baseline vs best, κ, and the λ comparison
    (one line per arm: σ, dev accuracy, verdict against κ) with its notes."""

    def arm(label: str, a: dict[str, Any] | None, missing: str) -> str:
        if a is None:
            return f"  {label:<28} {missing}"
        acc = "" if a.get("accuracy_ok") is None else (" (≥ floor)" if a["accuracy_ok"] else " (below floor)")
        v95 = "" if a.get("verdict_95") is None else f", at 95%: {a['verdict_95']}"
        return (f"  {label:<28} σ = {a['sigma']:.4g}, dev accuracy = {a['dev_accuracy']:.4f}{acc}, "
                f"φ_cnf {a.get('verdict', 'no verdict')}{v95} (trial {a['trial']}, "
                f"λ = {a['params']['lambda_conf']:g})")

    lines = [f"trials: {json.dumps(summary['trials'])}"]
    base, best = summary.get("baseline"), summary.get("best")
    if base:
        lines.append(f"baseline: σ = {base['sigma']:.4g}, dev accuracy = {base['dev_accuracy']:.4f}")
    if best:
        lines.append(f"best:     σ = {best['sigma']:.4g}, dev accuracy = {best['dev_accuracy']:.4f} "
                     f"(trial {best['trial']})")
    else:
        lines.append("best:     no feasible trial yet")
    restored = summary["phi_cnf_restored"]
    if summary.get("best_verdict_95") is not None:
        restored = f"{restored} (best trial at 95%: {summary['best_verdict_95']})"
    lines.append(f"κ = {summary['kappa']} ({summary['kappa_source']}); φ_cnf restored: {restored}")
    cmp = summary.get("lambda_comparison")
    if cmp:
        floor = cmp.get("min_dev_accuracy")
        lines.append("tuning alone vs the confidence-aware loss"
                     + ("" if floor is None else f" (accuracy floor {floor:.4f})") + ":")
        lines.append(arm("baseline (no tuning)", cmp.get("baseline"), "not run"))
        lines.append(arm("tuning alone (λ = 0)", cmp.get("tuning_alone"), "no feasible searched λ = 0 trial"))
        for a in cmp.get("confidence_loss_at_baseline") or []:
            lines.append(arm("loss alone (baseline + λ)", a, ""))
        if not cmp.get("confidence_loss_at_baseline"):
            lines.append(arm("loss alone (baseline + λ)", None, "not run (--compare-lambda)"))
        lines.append(arm("tuning + loss (λ > 0)", cmp.get("confidence_loss_tuned"), "no feasible searched λ > 0 trial"))
        restores = cmp.get("restores") or []
        lines.append(f"  restores φ_cnf within the accuracy floor: {', '.join(restores) if restores else 'none'}")
        lines.extend(f"  note: {n}" for n in cmp.get("notes") or [])
    return lines

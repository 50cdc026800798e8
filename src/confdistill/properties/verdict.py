"""The one κ rule: φ_cnf verdicts against the user's tolerance, and the β bound as its own check.

Why a module of its own: ``analyze``, ``table``, the experiment runner, the report and ``tune`` all
give a verdict, and they used to disagree (dev judged against κ_β in one place, not in another).
Everything that gives a verdict calls :func:`judge`, so there is one answer for one σ.

Two questions, kept apart (docs/method.md, "Verdicts"):

- **φ_cnf against a tolerance.** κ is what the *user* accepts as the spread of the confidence gap
  (``--kappa``, an experiment's ``kappa``). ``verdict`` is the paper's point verdict (σ ≤ κ);
  ``verdict_95`` reads the one-sided 95% bootstrap bounds on σ: "holds" when the upper bound is
  ≤ κ, "fails" when the lower bound is > κ, "undecided" otherwise. Without a tolerance there is no
  verdict ("no verdict"): the β bound is never used as one.
- **The β bound as a consistency check.** κ_β = γ·sqrt(β / (N(1−α))) (:mod:`.bound`) is a theorem
  about σ over X_train when β is measured as defined, so σ(train) ≤ κ_β always holds: it cannot
  answer "may the student replace the teacher?". ``bound_check`` says "consistent" (σ(train) ≤ κ_β)
  or "violated" (then β was mis-measured, and a note says so), "not covered" on any other split,
  and None without β. It is never reported as "holds".

numpy-free on purpose (plain floats); never imports torch.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confdistill.errors import InputError
from confdistill.properties.bound import gamma_factor, kappa_bound

#: The verdict when the pair cannot be judged (:mod:`.informative` names the causes).
NOT_INFORMATIVE = "not informative"
#: Keys of a distillation run.json that :func:`read_run_json` takes.
RUN_JSON_KEYS = ("beta", "beta_mean", "n_train", "alpha", "temperature")


@dataclass(frozen=True)
class BoundInputs:
    """What the β bound needs, from ``--beta/--beta-mean/--n-train/--alpha/--temperature`` or a run.json.

    beta: the prediction-layer loss, TOTAL over X_train (nats); beta_mean: the same as a mean per
    train row (give one of the two); n_train: N, the rows β was summed over (None: the analysed
    rows, when they are the train split); alpha, temperature: the distillation's α ∈ [0, 1) and
    T ≥ 1; source: where the values came from, for messages (e.g. "OUT/stage2/run.json", "--beta").
    When both β and β_mean are set (a run.json records both), the total β is used.
    """

    beta: float | None = None
    beta_mean: float | None = None
    n_train: int | None = None
    alpha: float = 0.0
    temperature: float = 1.0
    source: str | None = None

    @property
    def has_beta(self) -> bool:
        return self.beta is not None or self.beta_mean is not None


def bound_from_options(
    *,
    beta: float | None = None,
    beta_mean: float | None = None,
    n_train: int | None = None,
    alpha: float = 0.0,
    temperature: float = 1.0,
    source: str | None = None,
) -> BoundInputs | None:
    """The :class:`BoundInputs` of command-line style options; None when neither β nor β_mean is given."""
    if beta is None and beta_mean is None:
        return None
    if beta is not None and beta_mean is not None:
        raise InputError("give either --beta (total over the train split) or --beta-mean, not both")
    if source is None:
        source = "--beta" if beta is not None else "--beta-mean"
    return BoundInputs(beta=beta, beta_mean=beta_mean, n_train=n_train, alpha=float(alpha),
                       temperature=float(temperature), source=source)


def read_run_json(path: str | Path) -> BoundInputs:
    """β, β_mean, N, α and T of a stage-2 distillation ``run.json`` (written by ``confdistill distill``).

    Raises InputError naming the file (and the key) when it is missing, not JSON, has no ``beta``
    (a stage-1 or regression run), or holds a value the bound cannot use.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("no such distillation run.json (give the run.json of a stage-2 distillation)", path=path)
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"not a readable JSON file ({exc})", path=path) from None
    if not isinstance(run, dict):
        raise InputError("expected a distillation run.json (a JSON object)", path=path)

    def number(key: str, *, required: bool, default: float | None = None) -> float | None:
        value = run.get(key)
        if value is None:
            if required:
                raise InputError(
                    f"key {key!r} is missing: not a stage-2 (prediction-layer) distillation run.json, "
                    "whose β the bound needs", path=path)
            return default
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise InputError(f"key {key!r}: expected a finite number, got {value!r}", path=path)
        return float(value)

    beta = float(number("beta", required=True))  # type: ignore[arg-type]
    n_train = float(number("n_train", required=True))  # type: ignore[arg-type]
    if beta < 0:
        raise InputError(f"key 'beta': expected a total loss >= 0, got {beta!r}", path=path)
    if n_train < 1 or n_train != int(n_train):
        raise InputError(f"key 'n_train': expected a positive whole number of rows, got {run.get('n_train')!r}",
                         path=path)
    alpha = float(number("alpha", required=False, default=0.0))  # type: ignore[arg-type]
    temperature = float(number("temperature", required=False, default=1.0))  # type: ignore[arg-type]
    if not 0.0 <= alpha < 1.0:
        raise InputError(f"key 'alpha': expected a hard-label weight in [0, 1), got {alpha!r}", path=path)
    if temperature < 1.0:
        raise InputError(f"key 'temperature': expected T >= 1 (the bound needs it), got {temperature!r}", path=path)
    return BoundInputs(beta=beta, beta_mean=number("beta_mean", required=False), n_train=int(n_train),
                       alpha=alpha, temperature=temperature, source=str(path))


def validate_tolerance(tolerance: float | None) -> float | None:
    """The user's κ as a float, or None; InputError naming --kappa unless finite and > 0."""
    if tolerance is None:
        return None
    if isinstance(tolerance, bool) or not isinstance(tolerance, int | float) or not math.isfinite(tolerance) \
            or tolerance <= 0:
        raise InputError(f"--kappa: expected a tolerance on σ > 0 (a finite number, e.g. 0.05), got {tolerance!r}")
    return float(tolerance)


def _is_train(split: str | None) -> bool:
    return split is None or str(split).lower() == "train"


@dataclass
class Judgement:
    """The answer of :func:`judge` for one σ. ``to_dict()`` gives its keys of the analysis JSON.

    tolerance: the user's κ (None: no verdict). verdict: "holds" | "fails" | "no verdict" |
    "not informative". verdict_95: "holds" | "fails" | "undecided" | "no verdict" | "not informative".
    bound_check: "consistent" | "violated" | "not covered" | None (no β). kappa_beta / gamma: κ_β and its γ (None without β,
    or on a non-train split whose N is unknown). beta: the total β used; n_train: N.
    notes: caveats in words. split / sigma / one_sided95: what was judged (for :meth:`lines`).
    """

    tolerance: float | None
    verdict: str
    verdict_95: str
    bound_check: str | None
    kappa_beta: float | None
    gamma: float | None
    beta: float | None
    n_train: int | None
    alpha: float
    temperature: float
    notes: list[str] = field(default_factory=list)
    split: str = "train"
    sigma: float = math.nan
    one_sided95: tuple[float, float] = (math.nan, math.nan)

    def to_dict(self) -> dict[str, Any]:
        """The judgement's keys of ``analysis.json`` (docs/formats.md); NaN becomes null."""
        return {
            "kappa": _clean(self.tolerance),
            "kappa_source": None if self.tolerance is None else "user",
            "verdict": self.verdict,
            "verdict_95": self.verdict_95,
            "bound_check": self.bound_check,
            "kappa_from_beta": _clean(self.kappa_beta),
            "beta": _clean(self.beta),
            "n_train": self.n_train,
            "gamma": _clean(self.gamma),
            "alpha": self.alpha,
            "temperature": self.temperature,
            "judgement_notes": list(self.notes),
        }

    def lines(self) -> list[str]:
        """Readable lines: the verdicts against the tolerance, the bound check, the notes."""
        s = f"σ({self.split})"
        lo, hi = self.one_sided95
        out: list[str] = []
        if self.verdict == NOT_INFORMATIVE:
            out.append("φ_cnf: not informative (the check cannot judge this pair; see the warnings)")
        elif self.tolerance is None:
            out.append("φ_cnf: no verdict (no tolerance: give --kappa K, the largest σ of the confidence "
                       "gap you accept)")
        else:
            cmp = "<=" if self.verdict == "holds" else ">"
            out.append(f"φ_cnf {self.verdict.upper()}: {s} = {_g(self.sigma)} {cmp} κ = {_g(self.tolerance)} "
                       "(your tolerance)")
            out.append(f"  with 95% confidence: {self.verdict_95} (one-sided 95% bounds on σ: "
                       f"[{_g(lo)}, {_g(hi)}])")
        if self.bound_check is not None:
            if self.kappa_beta is None:
                out.append(f"β bound: {self.bound_check}")
            else:
                cmp = "<=" if self.sigma <= self.kappa_beta else ">"
                out.append(f"β bound: {self.bound_check} ({s} = {_g(self.sigma)} {cmp} κ_β = {_g(self.kappa_beta)}; "
                           f"β = {_g(self.beta)}, N = {self.n_train}, α = {self.alpha:g}, T = {self.temperature:g}, "
                           f"γ = {_g(self.gamma)})")
        out.extend(f"note: {n}" for n in self.notes)
        return out


def _g(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.4g}"


def _clean(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def judge(
    sigma: float,
    one_sided95: tuple[float, float],
    *,
    tolerance: float | None,
    bound: BoundInputs | None,
    split: str | None,
    n_set: int,
    n_rows: int,
    k: int,
    causes: Sequence[str] = (),
) -> Judgement:
    """Judge one σ: φ_cnf against the tolerance (point and 95%), and the β bound as a check.

    Args:
        sigma: σ of Δconf over the set (both-correct rows, or rows where both models agree).
        one_sided95: (lower, upper) one-sided 95% bootstrap bounds on σ.
        tolerance: the user's κ (> 0, finite; InputError naming --kappa otherwise), or None.
        bound: β and the distillation's N, α, T, or None (no bound check).
        split: the analysed split; None counts as "train" (the file is taken to be X_train).
        n_set, n_rows, k: rows in the set, rows analysed, classes.
        causes: why the pair cannot be judged (:func:`confdistill.properties.informative.causes`); any
            cause makes both verdicts "not informative", with or without a tolerance.

    γ of κ_β uses n_set only when the analysed rows ARE X_train (split train and n_rows == N);
    otherwise it is the paper's γ = T, which needs n_b ≥ N/2 (a note says when n_set < n_rows/2).
    """
    tol = validate_tolerance(tolerance)
    split_name = "train" if split is None else str(split)
    train = _is_train(split)
    notes: list[str] = []
    lower, upper = (math.nan if v is None else float(v) for v in one_sided95)
    sigma = float(sigma)
    if causes:
        # A collapsed or chance-level model gives a tiny σ for the wrong reason: never "holds".
        verdict = verdict_95 = NOT_INFORMATIVE
    elif tol is None:
        verdict = verdict_95 = "no verdict"
    elif not math.isfinite(sigma):
        verdict = verdict_95 = "no verdict"
        notes.append("σ is undefined (no row in the set): no verdict")
    else:
        verdict = "holds" if sigma <= tol else "fails"
        if upper <= tol:
            verdict_95 = "holds"
        elif lower > tol:
            verdict_95 = "fails"
        else:
            verdict_95 = "undecided"
    if not train:
        notes.append(f"σ({split_name}) is not covered by the bound (κ_β bounds σ over X_train, the train split "
                     "β was summed over); it is compared with the tolerance only")

    alpha = 0.0 if bound is None else float(bound.alpha)
    temperature = 1.0 if bound is None else float(bound.temperature)
    n_train = None if bound is None or bound.n_train is None else int(bound.n_train)
    bound_check = kappa_beta = gamma = beta_total = None
    if bound is not None and bound.has_beta:
        if n_train is None and train:
            n_train = int(n_rows)  # the analysed file is X_train itself
        if n_train is not None:
            if bound.beta is None:  # a run.json has both: the total is the measured quantity
                if not math.isfinite(bound.beta_mean) or bound.beta_mean < 0:
                    raise InputError(f"--beta-mean: expected a mean loss >= 0, got {bound.beta_mean!r}")
                beta_total = float(bound.beta_mean) * n_train
            else:
                beta_total = float(bound.beta)  # type: ignore[arg-type]
            # n_b is known only when the analysed rows are the N rows β was summed over.
            is_x_train = train and n_rows == n_train and n_set >= 1
            n_b = n_set if is_x_train else None
            kappa_beta = kappa_bound(beta_total, n_train, alpha=alpha, temperature=temperature, n_both=n_b)
            gamma = gamma_factor(n_train, temperature=temperature, n_both=n_b)
            if n_b is None:
                why = (f"the analysed rows ({n_rows}) are not the N = {n_train} rows β was summed over"
                       if train else "n_b of X_train is unknown on this split")
                notes.append(f"γ = T (the paper's form: {why}; valid when n_b >= N/2)")
                if n_set < n_rows / 2:
                    notes.append(f"n_set = {n_set} < n_rows/2 = {n_rows / 2:g}: the bound's condition for γ = T "
                                 "(n_b >= N/2) does not hold on these rows")
            if k > 2 and temperature > 1:
                notes.append("κ_β is heuristic for k > 2 classes at T > 1 (|Δp| ≤ T·|Δq^T| is proven for two "
                             "classes only)")
        elif bound.beta is not None:
            # Validate β even when κ_β cannot be computed, so a bad value is never silent.
            if not math.isfinite(bound.beta) or bound.beta < 0:
                raise InputError(f"--beta: expected a total loss >= 0, got {bound.beta!r}")
            beta_total = float(bound.beta)
        if not train:
            bound_check = "not covered"  # κ_β is shown only when N was given (γ = T then)
        elif kappa_beta is not None and math.isfinite(sigma):
            if sigma <= kappa_beta:
                bound_check = "consistent"
            else:
                bound_check = "violated"
                src = f" (from {bound.source})" if bound.source else ""
                notes.append(
                    f"β bound violated: σ(train) = {_g(sigma)} > κ_β = {_g(kappa_beta)}. The bound cannot fail when "
                    f"β{src} is measured as docs/method.md defines it, so β was mis-measured: not the total over "
                    "this X_train, not with this student's final weights in eval mode, or with the wrong N, α "
                    "or T. Re-measure β before reading κ_β.")
    return Judgement(
        tolerance=tol, verdict=verdict, verdict_95=verdict_95, bound_check=bound_check, kappa_beta=kappa_beta,
        gamma=gamma, beta=beta_total, n_train=n_train, alpha=alpha, temperature=temperature, notes=notes,
        split=split_name, sigma=sigma, one_sided95=(lower, upper))


__all__ = ["NOT_INFORMATIVE", "RUN_JSON_KEYS", "BoundInputs", "Judgement", "bound_from_options", "judge",
           "read_run_json", "validate_tolerance"]

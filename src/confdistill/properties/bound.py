"""The κ bound on σ(X_train) from the prediction-layer distillation loss β.

Derivation (``docs/method.md``, "Confidence preservation φ_cnf and the κ bound"): with
ℓ(x) = (1−α)·KL(q_t^T(x) ‖ q_s^T(x)) + α·CE(y, p_s(x)) and β = Σ_{x ∈ X_train} ℓ(x) (the TOTAL over
the train split, eval mode, final student), for the n_b train rows both models classify correctly

    σ_S ≤ T·sqrt(β / (2·(1−α)·n_b)) = γ·sqrt(β / (N·(1−α))),   γ = T·sqrt(N / (2·n_b)),

(std ≤ RMS; |Δp0| ≤ T·|Δq0^T| for T ≥ 1; Pinsker |Δq| ≤ TV ≤ sqrt(KL/2); CE ≥ 0). When n_b is
unknown the paper's form γ = T is used, which is implied by the above whenever n_b ≥ N/2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from confdistill.errors import InputError


def _check_common(n_train: int, alpha: float, temperature: float) -> None:
    if not isinstance(n_train, int | float) or n_train < 1 or int(n_train) != n_train:
        raise InputError(f"--n-train: expected a positive whole number of train examples, got {n_train!r}")
    if not (math.isfinite(alpha) and 0.0 <= alpha < 1.0):
        raise InputError(f"--alpha: expected a hard-label weight in [0, 1), got {alpha!r}")
    if not math.isfinite(temperature) or temperature < 1.0:
        raise InputError(
            f"--temperature: expected T >= 1, got {temperature!r} (for T < 1 the bound does not hold: "
            "|Δp0| <= T·|Δq0^T| needs T >= 1)")


def gamma_factor(n_train: int, *, temperature: float = 1.0, n_both: int | None = None) -> float:
    """γ = T·sqrt(N / (2·n_b)); the paper's γ = T when ``n_both`` is None."""
    if n_both is None:
        return float(temperature)
    if n_both < 1:
        raise InputError(f"n_both must be >= 1 to bound σ, got {n_both}")
    return float(temperature) * math.sqrt(n_train / (2.0 * n_both))


def kappa_bound(
    beta: float,
    n_train: int,
    *,
    alpha: float = 0.0,
    temperature: float = 1.0,
    n_both: int | None = None,
) -> float:
    """κ = γ·sqrt(β / (N·(1−α))), an upper bound on σ over the both-correct train rows.

    Args:
        beta: total prediction-layer loss over the N train examples (nats; NOT the mean).
        n_train: N, number of train examples β was summed over.
        alpha: hard-label weight α in [0, 1).
        temperature: distillation temperature T >= 1.
        n_both: n_b, train rows both models classify correctly; None → γ = T (paper's form).

    Returns:
        κ in probability units (same units as σ).
    """
    if not math.isfinite(beta) or beta < 0:
        raise InputError(f"--beta: expected a total loss >= 0, got {beta!r}")
    _check_common(n_train, alpha, temperature)
    gamma = gamma_factor(int(n_train), temperature=temperature, n_both=n_both)
    return gamma * math.sqrt(beta / (n_train * (1.0 - alpha)))


@dataclass
class KappaResolution:
    """Which κ an analysis uses and where it came from (all fields go into the JSON)."""

    kappa: float | None
    kappa_source: str | None        # "user" (--kappa), "beta" (derived), None (unknown)
    kappa_note: str | None          # caveats, e.g. "heuristic (k>2, T>1)"
    kappa_from_beta: float | None   # the β-derived bound, also when --kappa took precedence
    beta: float | None              # total β used (β_mean·N when given as a mean)
    n_train: int | None
    gamma: float | None
    alpha: float
    temperature: float


def resolve_kappa(
    *,
    kappa: float | None,
    beta: float | None,
    beta_mean: float | None,
    alpha: float,
    temperature: float,
    n_train: int | None,
    n_rows: int,
    n_both: int,
    k: int,
    split: str | None,
) -> KappaResolution:
    """Decide κ for one analysed pair (user tolerance takes precedence over the β-derived bound).

    ``split`` is the analysed split ("train", "eval" or None = unknown, treated as train).
    ``n_rows``/``n_both`` are the analysed file's row count and both-correct count: they are N and
    n_b only when the analysed split is the full train split.
    """
    notes: list[str] = []
    if kappa is not None and (not math.isfinite(kappa) or kappa < 0):
        raise InputError(f"--kappa: expected a tolerance >= 0, got {kappa!r}")
    if beta is not None and beta_mean is not None:
        raise InputError("give either --beta (total over the train split) or --beta-mean, not both")
    kappa_beta = gamma = beta_total = None
    n_used: int | None = n_train
    if beta is not None or beta_mean is not None:
        if split not in (None, "train") and n_train is None:
            raise InputError(
                f"--n-train is required with --beta/--beta-mean when the analysed split is {split!r}: "
                "β is a total over the train split, so N cannot be taken from these files")
        n_used = int(n_train) if n_train is not None else n_rows
        _check_common(n_used, alpha, temperature)
        if beta_mean is not None:
            if not math.isfinite(beta_mean) or beta_mean < 0:
                raise InputError(f"--beta-mean: expected a mean loss >= 0, got {beta_mean!r}")
            beta_total = float(beta_mean) * n_used
        else:
            beta_total = float(beta)  # type: ignore[arg-type]
        # n_b is only known when the analysed rows ARE the train split that β was summed over.
        nb = n_both if split in (None, "train") and n_used == n_rows and n_both > 0 else None
        if nb is None:
            notes.append("γ = T (paper's form; n_both of the train split unknown, valid when n_b >= N/2)")
        gamma = gamma_factor(n_used, temperature=temperature, n_both=nb)
        kappa_beta = kappa_bound(beta_total, n_used, alpha=alpha, temperature=temperature, n_both=nb)
        if k > 2 and temperature > 1:
            notes.append("heuristic (k>2, T>1)")
    if kappa is not None:
        value, source = float(kappa), "user"
        if kappa_beta is not None:
            notes.append(f"--kappa takes precedence over the β-derived bound {kappa_beta:.6g}")
    elif kappa_beta is not None:
        value, source = kappa_beta, "beta"
    else:
        value, source = None, None
    return KappaResolution(
        kappa=value, kappa_source=source, kappa_note="; ".join(notes) or None, kappa_from_beta=kappa_beta,
        beta=beta_total, n_train=n_used, gamma=gamma, alpha=float(alpha), temperature=float(temperature))


def verdict(sigma: float, kappa: float | None) -> str:
    """φ_cnf verdict: "holds" when σ ≤ κ, "fails" when σ > κ, "no verdict" when κ is unknown."""
    if kappa is None:
        return "no verdict"
    return "holds" if sigma <= kappa else "fails"


__all__ = ["KappaResolution", "gamma_factor", "kappa_bound", "resolve_kappa", "verdict"]

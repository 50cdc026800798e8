"""The κ bound on σ(X_train) from the prediction-layer distillation loss β.

Derivation (``docs/method.md``, "Confidence preservation φ_cnf and the κ bound"): with
ℓ(x) = (1−α)·KL(q_t^T(x) ‖ q_s^T(x)) + α·CE(y, p_s(x)) and β = Σ_{x ∈ X_train} ℓ(x) (the TOTAL over
the train split, eval mode, final student), for the n_b train rows both models classify correctly

    σ_S ≤ T·sqrt(β / (2·(1−α)·n_b)) = γ·sqrt(β / (N·(1−α))),   γ = T·sqrt(N / (2·n_b)),

(std ≤ RMS; |Δp0| ≤ T·|Δq0^T| for T ≥ 1; Pinsker |Δq| ≤ TV ≤ sqrt(KL/2); CE ≥ 0). When n_b is
unknown the paper's form γ = T is used, which is implied by the above whenever n_b ≥ N/2.

This module is the arithmetic only. Whether σ is judged against a tolerance or checked against
κ_β (and which γ applies to which rows) is decided in one place, :mod:`.verdict`: the bound is
a consistency check of β, never a verdict, because it cannot fail when β is measured right.
"""

from __future__ import annotations

import math

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


__all__ = ["gamma_factor", "kappa_bound"]

"""The one κ rule (properties/verdict.py): hand-computed cases for every branch of :func:`judge`,
the bound as a check that is never a verdict, and run.json reading."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from confdistill.errors import InputError
from confdistill.properties.verdict import (
    BoundInputs,
    bound_from_options,
    judge,
    read_run_json,
    validate_tolerance,
)

#: Paper-style bound: β = 100 over N = 400 train rows, α = 0, T = 1 → sqrt(β/N) = 0.5.
PAPER_BOUND = BoundInputs(beta=100.0, n_train=400)
TO_DICT_KEYS = {"kappa", "kappa_source", "verdict", "verdict_95", "bound_check", "kappa_from_beta", "beta",
                "n_train", "gamma", "alpha", "temperature", "judgement_notes"}


def _judge(sigma: float, bounds: tuple[float, float] | None = None, **kw):
    opts = {"tolerance": None, "bound": None, "split": "train", "n_set": 200, "n_rows": 400, "k": 2, **kw}
    return judge(sigma, bounds or (sigma, sigma), **opts)


# ------------------------------------------------------------------ the verdicts against the tolerance


@pytest.mark.parametrize(("sigma", "bounds", "verdict", "verdict_95"), [
    (0.04, (0.030, 0.045), "holds", "holds"),       # upper one-sided bound 0.045 <= 0.05
    (0.04, (0.030, 0.060), "holds", "undecided"),   # the point holds, the interval straddles κ
    (0.05, (0.040, 0.050), "holds", "holds"),       # σ = κ holds; upper = κ holds
    (0.06, (0.040, 0.070), "fails", "undecided"),
    (0.06, (0.055, 0.070), "fails", "fails"),       # lower one-sided bound 0.055 > 0.05
    (0.06, (0.050, 0.070), "fails", "undecided"),   # lower = κ is not > κ
])
def test_verdict_and_verdict_95(sigma: float, bounds: tuple[float, float], verdict: str, verdict_95: str) -> None:
    j = _judge(sigma, bounds, tolerance=0.05)
    assert (j.verdict, j.verdict_95) == (verdict, verdict_95)
    d = j.to_dict()
    assert d["kappa"] == 0.05 and d["kappa_source"] == "user"
    assert d["bound_check"] is None and d["kappa_from_beta"] is None  # no β: no check


def test_no_tolerance_is_no_verdict_even_with_beta() -> None:
    j = _judge(0.01, tolerance=None, bound=PAPER_BOUND)
    assert (j.verdict, j.verdict_95) == ("no verdict", "no verdict")
    assert j.to_dict()["kappa"] is None and j.to_dict()["kappa_source"] is None
    # the β bound is a check, not a tolerance: it never turns into a verdict
    assert j.bound_check == "consistent" and j.kappa_beta == pytest.approx(0.5)


@pytest.mark.parametrize("bad", [0, 0.0, -0.1, math.nan, math.inf, True, "0.05"])
def test_bad_tolerance_names_kappa(bad: object) -> None:
    with pytest.raises(InputError, match="--kappa"):
        _judge(0.1, tolerance=bad)
    with pytest.raises(InputError, match="--kappa"):
        validate_tolerance(bad)  # type: ignore[arg-type]


def test_nan_sigma_gives_no_verdict() -> None:
    j = _judge(math.nan, (math.nan, math.nan), tolerance=0.05, bound=PAPER_BOUND)
    assert (j.verdict, j.verdict_95, j.bound_check) == ("no verdict", "no verdict", None)


def test_one_sided_bounds_may_be_null() -> None:
    j = judge(0.04, (None, None), tolerance=0.05, bound=None, split="train", n_set=1, n_rows=1, k=2)
    assert (j.verdict, j.verdict_95) == ("holds", "undecided")


# ------------------------------------------------------------------ the β bound as a check


def test_paper_form_gamma_t_consistent_and_violated() -> None:
    # rows analysed (300) are not the N = 400 rows β was summed over → γ = T = 1, κ_β = sqrt(100/400)
    j = _judge(0.4, bound=PAPER_BOUND, n_rows=300, n_set=200)
    assert j.kappa_beta == pytest.approx(0.5) and j.gamma == 1.0 and j.bound_check == "consistent"
    assert any("γ = T" in n for n in j.notes)
    j = _judge(0.6, bound=PAPER_BOUND, n_rows=300, n_set=200)
    assert j.bound_check == "violated"
    note = next(n for n in j.notes if "violated" in n)
    assert "mis-measured" in note and "0.5" in note and "0.6" in note and "N, α or T" in note


def test_gamma_from_n_set_when_the_rows_are_x_train() -> None:
    # split train and n_rows == N: γ = T·sqrt(N / (2 n_set)) = sqrt(400/800)
    j = _judge(0.3, bound=PAPER_BOUND, n_rows=400, n_set=400)
    assert j.gamma == pytest.approx(math.sqrt(0.5))
    assert j.kappa_beta == pytest.approx(0.5 * math.sqrt(0.5))
    assert j.bound_check == "consistent" and not any("γ = T" in n for n in j.notes)
    # n_set = N/2 gives γ = 1: the sharper γ and the paper's form agree there
    assert _judge(0.3, bound=PAPER_BOUND, n_rows=400, n_set=200).kappa_beta == pytest.approx(0.5)
    # σ just above the sharper κ_β but below the paper's: violated (the sharper bound is still a theorem)
    assert _judge(0.4, bound=PAPER_BOUND, n_rows=400, n_set=400).bound_check == "violated"


def test_n_train_defaults_to_the_rows_on_train_and_split_none_is_train() -> None:
    j = judge(0.3, (0.3, 0.3), tolerance=None, bound=BoundInputs(beta=100.0), split=None, n_set=200, n_rows=400,
              k=2)
    assert j.n_train == 400 and j.kappa_beta == pytest.approx(0.5) and j.bound_check == "consistent"
    assert j.split == "train"


def test_beta_mean_is_multiplied_by_n() -> None:
    j = _judge(0.3, bound=BoundInputs(beta_mean=0.25), n_rows=400, n_set=200)
    assert j.beta == pytest.approx(100.0) and j.kappa_beta == pytest.approx(0.5)
    # both given (a run.json records both): the total is used
    assert _judge(0.3, bound=BoundInputs(beta=100.0, beta_mean=1.0)).beta == 100.0
    with pytest.raises(InputError, match="not both"):
        bound_from_options(beta=100.0, beta_mean=0.25)
    with pytest.raises(InputError, match="--beta-mean"):
        _judge(0.3, bound=BoundInputs(beta_mean=-1.0))


def test_alpha_and_temperature() -> None:
    # κ_β = T·sqrt(β/(N(1−α))) with γ = T: 2·sqrt(100/(400·0.25)) = 2
    j = _judge(0.3, bound=BoundInputs(beta=100.0, n_train=400, alpha=0.75, temperature=2.0), n_rows=10, n_set=9)
    assert j.kappa_beta == pytest.approx(2.0) and j.gamma == 2.0
    assert (j.alpha, j.temperature) == (0.75, 2.0)
    with pytest.raises(InputError, match="--temperature"):
        _judge(0.3, bound=BoundInputs(beta=1.0, temperature=0.5))
    with pytest.raises(InputError, match="--alpha"):
        _judge(0.3, bound=BoundInputs(beta=1.0, alpha=1.0))
    with pytest.raises(InputError, match="--beta"):
        _judge(0.3, bound=BoundInputs(beta=-1.0))


def test_small_set_says_the_condition_does_not_hold() -> None:
    # γ = T needs n_b >= N/2: 100 of 300 rows is fewer than half
    j = _judge(0.1, bound=PAPER_BOUND, n_rows=300, n_set=100)
    assert any("does not hold" in n and "n_set = 100" in n for n in j.notes)
    assert not any("does not hold" in n for n in _judge(0.1, bound=PAPER_BOUND, n_rows=300, n_set=150).notes)


def test_eval_split_is_not_covered() -> None:
    j = _judge(0.9, tolerance=0.05, bound=BoundInputs(beta=100.0), split="eval", n_rows=80, n_set=60)
    assert j.bound_check == "not covered" and j.kappa_beta is None  # N of X_train unknown here
    assert j.verdict == "fails"  # σ(eval) against the same tolerance
    assert any("σ(eval) is not covered by the bound" in n for n in j.notes)
    # with N given, κ_β is shown (γ = T: n_b of X_train is unknown on eval), still not covered
    j = _judge(0.01, bound=BoundInputs(beta=100.0, n_train=400, temperature=2.0), split="eval", n_rows=80, n_set=60)
    assert j.kappa_beta == pytest.approx(1.0) and j.bound_check == "not covered"
    # without β: no check at all, but the eval σ is still labelled
    j = _judge(0.01, tolerance=0.05, split="eval")
    assert j.bound_check is None and any("not covered" in n for n in j.notes) and j.verdict == "holds"


def test_heuristic_note_for_many_classes_at_t_above_one() -> None:
    j = _judge(0.1, bound=BoundInputs(beta=100.0, n_train=400, temperature=2.0), k=3)
    assert any("heuristic" in n for n in j.notes)
    assert not any("heuristic" in n for n in _judge(0.1, bound=BoundInputs(beta=100.0, n_train=400), k=3).notes)


def test_bound_without_beta_is_no_check() -> None:
    j = _judge(0.1, bound=BoundInputs(n_train=400, alpha=0.5))
    assert j.bound_check is None and j.kappa_beta is None and j.beta is None
    assert j.to_dict()["alpha"] == 0.5 and j.to_dict()["n_train"] == 400
    assert bound_from_options(alpha=0.5) is None
    assert bound_from_options(beta=1.0, n_train=4) == BoundInputs(beta=1.0, n_train=4, source="--beta")


def _binary_pair(rng: np.random.Generator, n: int, *, spread: float, temperature: float):
    """Logits of a teacher and a student near it, labels, and β = Σ KL(q_t^T ‖ q_s^T) over all rows."""
    labels = rng.integers(0, 2, n)
    z_t = np.where(labels == 0, 1.0, -1.0) * rng.gamma(2.0, 1.5, n) + rng.normal(0, 1.0, n)
    z_s = z_t + rng.normal(0, spread, n)  # z = logit of class 0 minus logit of class 1

    def probs(z: np.ndarray, t: float) -> np.ndarray:
        p0 = 1.0 / (1.0 + np.exp(-z / t))
        return np.stack([p0, 1.0 - p0], axis=1)

    q_t, q_s = probs(z_t, temperature), probs(z_s, temperature)
    beta = float(np.sum(q_t * (np.log(q_t) - np.log(q_s))))
    p_t, p_s = probs(z_t, 1.0), probs(z_s, 1.0)
    both = (p_t.argmax(1) == labels) & (p_s.argmax(1) == labels)
    sigma = float(np.std(p_t[both, 0] - p_s[both, 0]))
    return sigma, beta, int(both.sum())


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_the_bound_always_holds_when_beta_is_measured_right(seed: int, temperature: float) -> None:
    """σ(X_train) ≤ κ_β on paper-style pairs (why it cannot be a target); a β too small is caught."""
    rng = np.random.default_rng(seed)
    n = 500
    sigma, beta, n_both = _binary_pair(rng, n, spread=[0.05, 0.5, 2.0][seed % 3], temperature=temperature)
    bound = BoundInputs(beta=beta, n_train=n, temperature=temperature)
    j = judge(sigma, (sigma, sigma), tolerance=None, bound=bound, split="train", n_set=n_both, n_rows=n, k=2)
    assert j.bound_check == "consistent" and sigma <= j.kappa_beta
    # the paper's γ = T holds too (n_b >= N/2 here)
    j = judge(sigma, (sigma, sigma), tolerance=None, bound=bound, split="train", n_set=n_both, n_rows=n + 1, k=2)
    assert j.bound_check == "consistent"
    # a β too small (e.g. a mean passed as a total, here β/N²) is reported as a mis-measurement
    small = BoundInputs(beta=beta / n**2, n_train=n, temperature=temperature)
    j = judge(sigma, (sigma, sigma), tolerance=None, bound=small, split="train", n_set=n_both, n_rows=n, k=2)
    assert j.bound_check == "violated" and any("mis-measured" in note for note in j.notes)


def test_the_bound_never_prints_holds() -> None:
    cases = []
    for split in ("train", "eval", None):
        for sigma in (0.0, 0.3, 0.7):
            for bound in (None, PAPER_BOUND, BoundInputs(beta=0.0, n_train=400)):
                cases.append(_judge(sigma, tolerance=0.5, bound=bound, split=split))
    seen = {j.bound_check for j in cases}
    assert seen == {None, "consistent", "violated", "not covered"}
    for j in cases:
        bound_lines = [line for line in j.lines() if line.startswith("β bound")]
        assert not any("holds" in line.lower() for line in bound_lines)
        assert set(j.to_dict()) == TO_DICT_KEYS
        json.dumps(j.to_dict(), allow_nan=False)


def test_lines_read_the_answer() -> None:
    j = _judge(0.06, (0.055, 0.07), tolerance=0.05, bound=PAPER_BOUND)
    text = "\n".join(j.lines())
    assert "φ_cnf FAILS" in text and "0.06 > κ = 0.05" in text and "with 95% confidence: fails" in text
    assert "β bound: consistent" in text and "κ_β = 0.5" in text
    assert "no verdict" in "\n".join(_judge(0.06).lines())


# ------------------------------------------------------------------ run.json


def _run_json(path: Path, **values: object) -> Path:
    run = {"status": "complete", "stage": "prediction", "beta": 12.5, "beta_mean": 0.125, "n_train": 100,
           "alpha": 0.25, "temperature": 2.0, **values}
    path.write_text(json.dumps({k: v for k, v in run.items() if v is not ...}))
    return path


def test_read_run_json(tmp_path: Path) -> None:
    b = read_run_json(_run_json(tmp_path / "run.json"))
    assert b == BoundInputs(beta=12.5, beta_mean=0.125, n_train=100, alpha=0.25, temperature=2.0,
                            source=str(tmp_path / "run.json"))
    # κ_β from it on its own X_train (n_rows == N: γ = T·sqrt(N / (2 n_set)))
    j = judge(0.1, (0.1, 0.1), tolerance=None, bound=b, split="train", n_set=40, n_rows=100, k=2)
    assert j.kappa_beta == pytest.approx(2.0 * math.sqrt(100 / 80) * math.sqrt(12.5 / (100 * 0.75)))


@pytest.mark.parametrize(("values", "pattern"), [
    ({"beta": ...}, "'beta' is missing"),
    ({"beta": None}, "'beta' is missing"),
    ({"n_train": ...}, "'n_train' is missing"),
    ({"beta": "x"}, "'beta': expected a finite number"),
    ({"beta": -1}, "'beta': expected a total loss >= 0"),
    ({"n_train": 2.5}, "'n_train': expected a positive whole number"),
    ({"alpha": 1.0}, "'alpha'"),
    ({"temperature": 0.5}, "'temperature'"),
])
def test_read_run_json_errors_name_the_key(tmp_path: Path, values: dict, pattern: str) -> None:
    path = _run_json(tmp_path / "run.json", **values)
    with pytest.raises(InputError, match=pattern) as exc:
        read_run_json(path)
    assert str(path) in str(exc.value)


def test_read_run_json_missing_or_not_json(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"no such distillation run\.json"):
        read_run_json(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputError, match="not a readable JSON"):
        read_run_json(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(InputError, match="JSON object"):
        read_run_json(tmp_path / "list.json")

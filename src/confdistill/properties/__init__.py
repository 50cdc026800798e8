"""Confidence preservation φ_cnf and the κ bound (numpy/scipy only: importing this never imports torch).

    >>> from confdistill.properties import analyze_files
    >>> result = analyze_files("teacher/eval_results.csv", "student/eval_results.csv", kappa=0.05)
    >>> result.sigma, result.verdict, result.to_dict()["sigma_ci95"]
"""

from confdistill.properties.bound import KappaResolution, gamma_factor, kappa_bound, resolve_kappa, verdict
from confdistill.properties.confidence import (
    PairAnalysis,
    align_pair,
    analyze_files,
    analyze_pair,
    bootstrap_sigma_ci,
    infer_split,
    normality_test,
    population_sigma,
    wasserstein,
)

__all__ = [
    "KappaResolution",
    "PairAnalysis",
    "align_pair",
    "analyze_files",
    "analyze_pair",
    "bootstrap_sigma_ci",
    "gamma_factor",
    "infer_split",
    "kappa_bound",
    "normality_test",
    "population_sigma",
    "resolve_kappa",
    "verdict",
    "wasserstein",
]

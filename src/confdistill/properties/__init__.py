"""Can the student replace the teacher? φ_cnf, decisions, calibration (numpy/duckdb: importing this never imports torch).

    >>> from confdistill.properties import analyze_files
    >>> result = analyze_files("teacher/eval_results.csv", "student/eval_results.csv", kappa=0.05)
    >>> result.sigma, result.verdict, result.verdict_95, result.to_dict()["flips"]
"""

from confdistill.properties.bound import gamma_factor, kappa_bound
from confdistill.properties.confidence import PairAnalysis, infer_split
from confdistill.properties.sigma_stats import (
    bootstrap_sigma_ci,
    normality_test,
    population_sigma,
    wasserstein,
)
from confdistill.properties.stream_analysis import analyze_files, analyze_pair
from confdistill.properties.verdict import BoundInputs, Judgement, judge, read_run_json

__all__ = [
    "BoundInputs",
    "Judgement",
    "PairAnalysis",
    "analyze_files",
    "analyze_pair",
    "bootstrap_sigma_ci",
    "gamma_factor",
    "infer_split",
    "judge",
    "kappa_bound",
    "normality_test",
    "population_sigma",
    "read_run_json",
    "wasserstein",
]

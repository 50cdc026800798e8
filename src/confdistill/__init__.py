"""confdistill: TinyBERT distillation and the confidence-preservation check (phi_cnf).

Importing the package (and the analysis API) never imports torch, so the CLI starts fast.
"""

__version__ = "0.1.0"

"""Build configuration beyond pyproject.toml: the optional C parser for softmax CSV files.

``confdistill.prediction._native`` makes ``confdistill analyze`` parse CSV/TSV softmax files
several times faster than pyarrow. It is optional: if it cannot be compiled (no C compiler),
the install still succeeds and the files are read by pyarrow (same results, slower).
"""

import sys

from setuptools import Extension, setup

_ARGS = [] if sys.platform == "win32" else ["-O3", "-ffp-contract=off"]

setup(
    ext_modules=[
        Extension(
            "confdistill.prediction._native",
            ["src/confdistill/prediction/_native.c"],
            extra_compile_args=_ARGS,
            optional=True,
        )
    ]
)

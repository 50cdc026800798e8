"""Whether the user asked for silence (``confdistill --quiet``): no progress bars, no step logs.

tqdm reads ``TQDM_DISABLE`` only for bars that do not set ``disable`` themselves; ours do (rank 0
only, ``--no-progress``), so every bar also asks :func:`quiet`. Standard library only.
"""

from __future__ import annotations

import os


def quiet() -> bool:
    """True under ``confdistill --quiet`` (``CONFDISTILL_QUIET=1``)."""
    return os.environ.get("CONFDISTILL_QUIET") == "1"

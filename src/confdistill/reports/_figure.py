"""matplotlib set-up shared by the plot modules: the Agg backend and a deterministic, atomic save.

Imported lazily by the plot functions (matplotlib costs a second to import), so importing the
report modules stays cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from confdistill.io import atomic_path


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig: Any, path: str | Path) -> Path:
    """Save ``fig`` as a PNG at ``path`` atomically and close it; returns the path."""
    plt = pyplot()
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            # No "Software" stamp: the same inputs give the same bytes.
            fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png", metadata={"Software": None})
    finally:
        plt.close(fig)
    return path

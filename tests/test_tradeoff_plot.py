"""The trade-off figure: points where the data puts them, κ's label readable on a log x-axis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from confdistill.reports import _figure, run_plots


@pytest.mark.parametrize("speedups", [(1.0, 2.5, 3.0), (1.0, 9.0, 40.0)], ids=["linear", "log"])
def test_kappa_label_sits_inside_the_axes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          speedups: tuple[float, ...]) -> None:
    captured: dict[str, Any] = {}
    save = _figure.save

    def keep(fig: Any, path: str | Path) -> Path:
        fig.canvas.draw()
        ax = fig.axes[0]
        captured["scale"] = ax.get_xscale()
        captured["axes"] = ax.get_window_extent()
        captured["labels"] = {t.get_text(): t.get_window_extent() for t in ax.texts}
        return save(fig, path)

    monkeypatch.setattr(_figure, "save", keep)
    points = [{"model": name, "speedup": s, "sigma": sigma, "ci": None, "runtime": "torch"}
              for name, s, sigma in zip(("teacher", "L3", "L3-onnx-int8"), speedups, (0.0, 0.04, 0.05), strict=True)]
    out = run_plots.plot_tradeoff(points, tmp_path / "t.png", kappa=0.045, title="t", batch="32")
    assert out.stat().st_size > 0
    assert captured["scale"] == ("log" if speedups[-1] / speedups[0] > 8 else "linear")
    label = captured["labels"]["tolerance κ = 0.045"]
    axes = captured["axes"]
    assert axes.x0 <= label.x0 < label.x1 <= axes.x1 and axes.y0 <= label.y0 < label.y1 <= axes.y1
    assert set(captured["labels"]) >= {"teacher", "L3", "L3-onnx-int8"}

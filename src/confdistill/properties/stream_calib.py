"""Calibration cells of a large labelled pair, streamed: the exact adaptive-ECE bins without sorting all rows.

ACE bin = ⌊rank·15/N⌋ with rows ranked by (confidence, row), so bin j starts at rank r_j = ⌈j·N/15⌉.
The first pass (:mod:`.stream_pass`) counts each model's confidence on 2^20 bins; the bins holding
the 14 starts follow from the cumulative counts. The second pass (:class:`CellPass`) adds every row
to the cells of :func:`confdistill.properties.pair.calibration_cells` — keyed by (teacher ECE bin,
teacher correct, student ECE bin, student correct, teacher ACE bin, student ACE bin) — except the
rows in those few bins, whose ACE bin depends on their rank inside the bin: they are kept (a few
numbers each) and ranked at the end. Imports numpy only.
"""

from __future__ import annotations

import numpy as np

from confdistill.properties.calibration import N_BINS, N_SLOTS, NLL_FLOOR, CalibrationUnits, ece_bin
from confdistill.properties.pair import ACE_CUT_BINS
from confdistill.properties.stream_pass import Rows, fine_bin

#: Cell key radix: (t_bin, t_ok, s_bin, s_ok, t_ace, s_ace), the first the most significant.
_RADIX = (N_SLOTS, 2, N_SLOTS, 2, N_BINS, N_BINS)
_SIZE = int(np.prod(_RADIX))
_SUMS = ("t_conf", "t_ok", "t_brier", "t_nll", "s_conf", "s_ok", "s_brier", "s_nll")


def start_bins(hist: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(fine bin, 0-based rank inside it) of the rows starting ACE bins 1..14, from a (2^20 + 1,) histogram."""
    starts = np.asarray([(j * n + N_BINS - 1) // N_BINS for j in range(1, N_BINS)], dtype=np.int64)
    before = np.concatenate([[0], np.cumsum(hist)])
    where = np.searchsorted(before, starts, side="right") - 1
    return where.astype(np.int64), starts - before[where]


class CellPass:
    """The second pass: add aligned chunks (:meth:`add`), then :meth:`units` gives both models' cells."""

    def __init__(self, t_hist: np.ndarray, s_hist: np.ndarray, n: int) -> None:
        self.starts = [start_bins(t_hist, n), start_bins(s_hist, n)]
        # per fine bin: how many start bins lie below it, and whether it holds a start (lookups, not searches)
        grid = np.arange(ACE_CUT_BINS + 1)
        self.below = [np.searchsorted(np.sort(b), grid, side="left").astype(np.int8) for b, _ in self.starts]
        self.holds = [np.isin(grid, b) for b, _ in self.starts]
        self.count = np.zeros(_SIZE, dtype=np.int64)
        self.sums = np.zeros((len(_SUMS), _SIZE))
        self.kept: list[dict[str, np.ndarray]] = []

    def add(self, r: Rows) -> None:
        assert r.label is not None
        m, idx = r.row.size, np.arange(r.row.size)
        cols: dict[str, np.ndarray] = {"row": r.row}
        pending = np.zeros(m, dtype=bool)
        for i, (pre, p, conf, ok) in enumerate((("t", r.tp, r.t_conf, r.t_ok), ("s", r.sp, r.s_conf, r.s_ok))):
            fine = fine_bin(conf)
            # outside the start bins, the ACE bin is the number of start bins below the row's bin
            pending |= self.holds[i][fine]
            brier = np.zeros(m)
            for c in range(p.shape[1]):  # Σ_c (p_c − 1[c = y])², from the difference itself
                d = p[:, c] - (r.label == c)
                brier += d * d
            cols.update({f"{pre}_conf": conf, f"{pre}_ok": ok.astype(np.float64), f"{pre}_brier": brier,
                         f"{pre}_nll": -np.log(np.maximum(p[idx, r.label], NLL_FLOOR)),
                         f"{pre}_bin": ece_bin(conf), f"{pre}_fine": fine, f"{pre}_ace": self.below[i][fine]})
        if pending.any():
            self.kept.append({name: v[pending] for name, v in cols.items()})
        self._add(cols, pending)

    def _add(self, cols: dict[str, np.ndarray], skip: np.ndarray | None = None) -> None:
        """Add rows to their cells; rows in ``skip`` go to a slot past the last cell (dropped)."""
        key = np.zeros(cols["row"].size, dtype=np.int64)
        for name, size in zip(("t_bin", "t_ok", "s_bin", "s_ok", "t_ace", "s_ace"), _RADIX, strict=True):
            key = key * size + cols[name].astype(np.int64)
        if skip is not None:
            key[skip] = _SIZE
        self.count += np.bincount(key, minlength=_SIZE + 1)[:_SIZE]
        for j, name in enumerate(_SUMS):
            self.sums[j] += np.bincount(key, weights=cols[name], minlength=_SIZE + 1)[:_SIZE]

    def _rank_kept(self) -> None:
        """The kept rows' ACE bins: ranked by (confidence, row) inside their bins."""
        if not self.kept:
            return
        rows = {name: np.concatenate([c[name] for c in self.kept]) for name in self.kept[0]}
        for pre, (bins, offsets) in zip(("t", "s"), self.starts, strict=True):
            order = np.lexsort((rows["row"], rows[f"{pre}_conf"], rows[f"{pre}_fine"]))
            fine, conf, row = rows[f"{pre}_fine"][order], rows[f"{pre}_conf"][order], rows["row"][order]
            first = np.searchsorted(fine, bins, side="left")  # each start bin's first row in that order
            cut = first + offsets
            # a row's ACE bin: the number of starts (fine, conf, row) at or before it
            ace = np.zeros(row.size, dtype=np.int64)
            for c in cut.tolist():
                ace += (fine > fine[c]) | ((fine == fine[c]) & ((conf > conf[c]) | ((conf == conf[c]) & (row >= row[c]))))
            i = 0 if pre == "t" else 1
            out = np.where(self.holds[i][fine], ace, self.below[i][fine])
            back = np.empty_like(out)
            back[order] = out
            rows[f"{pre}_ace"] = back
        self._add(rows)
        self.kept = []

    def units(self) -> tuple[CalibrationUnits, CalibrationUnits]:
        """Both models' cells in key order (the order of the SQL engine's ORDER BY)."""
        self._rank_kept()
        used = np.flatnonzero(self.count)
        parts, rest = {}, used.copy()
        for name, size in zip(reversed(("t_bin", "t_ok", "s_bin", "s_ok", "t_ace", "s_ace")), reversed(_RADIX),
                              strict=True):
            parts[name] = rest % size
            rest //= size
        count = self.count[used].astype(np.float64)
        sums = {name: self.sums[j, used] for j, name in enumerate(_SUMS)}
        return tuple(CalibrationUnits(  # type: ignore[return-value]
            count=count, bin=parts[f"{m}_bin"], ace_bin=parts[f"{m}_ace"], sum_conf=sums[f"{m}_conf"],
            sum_correct=sums[f"{m}_ok"], sum_brier=sums[f"{m}_brier"], sum_nll=sums[f"{m}_nll"])
            for m in ("t", "s"))


__all__ = ["CellPass", "start_bins"]

"""The figures of a teacher/student pair as mergeable per-chunk aggregates, in numpy.

Each aligned chunk of rows (:class:`Rows`) adds to one :class:`Aggregates`: counts, the decision
cells (the same groups :func:`confdistill.properties.pair.decision_cells` made in SQL, so the flip
counts and the paired test read them unchanged), the Δ histogram with per-bin power sums, the
confidence histograms (Wasserstein, plots, the adaptive ECE's edges), class counts, the worst
rows, and — up to ``EXACT_MAX_N`` rows — the rows themselves for the exact bootstrap.

Determinism: chunks are added in row order, integer counts are exact, float sums are kept per
chunk and added with ``math.fsum`` (the Δ sum) or in a fixed order (the bin arrays), so the result
does not depend on how many threads parsed the files. Imports numpy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from confdistill.prediction.softmax_file import row_max, take_class
from confdistill.prediction.stream import Batch
from confdistill.properties import pair as eng
from confdistill.properties.pair import ACE_CUT_BINS, CURVE_GRID, DELTA_BINS, W1_BINS

_GRID = np.asarray(CURVE_GRID, dtype=np.float64)


@dataclass
class Rows:
    """One aligned chunk: both models' per-row columns, as view ``v`` of the SQL engine had them."""

    row: np.ndarray      # 1-based global row
    ids: np.ndarray | None
    t_pred: np.ndarray
    s_pred: np.ndarray
    label: np.ndarray | None
    tp: np.ndarray
    sp: np.ndarray
    t_c: np.ndarray
    s_c: np.ndarray
    delta: np.ndarray
    t_conf: np.ndarray
    s_conf: np.ndarray
    t_ok: np.ndarray
    s_ok: np.ndarray
    agree: np.ndarray
    in_set: np.ndarray


def derive(t: Batch, s: Batch, kind: str) -> Rows:
    """The per-row columns of an aligned chunk (``kind``: what Δconf compares, "p0", "label" or "pred")."""
    m = len(t)
    cls = {"p0": None, "label": t.label, "pred": t.pred}[kind]
    t_c = t.p[:, 0] if cls is None else take_class(t.p, cls)
    s_c = s.p[:, 0] if cls is None else take_class(s.p, cls)
    agree = t.pred == s.pred
    if t.label is not None:
        t_ok, s_ok = t.pred == t.label, s.pred == t.label
        in_set = t_ok & s_ok
    else:
        t_ok = s_ok = np.zeros(m, dtype=bool)
        in_set = agree
    return Rows(row=np.arange(t.row0 + 1, t.row0 + m + 1, dtype=np.int64), ids=t.ids, t_pred=t.pred,
                s_pred=s.pred, label=t.label, tp=t.p, sp=s.p, t_c=t_c, s_c=s_c, delta=t_c - s_c,
                t_conf=take_class(t.p, t.pred), s_conf=take_class(s.p, s.pred), t_ok=t_ok, s_ok=s_ok, agree=agree,
                in_set=in_set)


def acts(conf: np.ndarray, tau: float) -> np.ndarray:
    """A model acts at τ when its confidence in its prediction is >= τ."""
    return conf >= tau


class TopRows:
    """The ``size`` rows with the largest |Δ| (ties: the earlier row), over chunks."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.keep: dict[str, np.ndarray] | None = None

    def add(self, r: Rows, mask: np.ndarray | None = None) -> None:
        if self.size <= 0:
            return
        sel = np.flatnonzero(mask) if mask is not None else np.arange(r.row.size)
        if sel.size > self.size:
            # only rows at least as far as the size-th largest |Δ| can enter (ties kept: the row decides)
            a = np.abs(r.delta[sel])
            sel = sel[a >= np.partition(a, sel.size - self.size)[sel.size - self.size]]
        cand = {"row": r.row[sel], "t_pred": r.t_pred[sel], "s_pred": r.s_pred[sel], "delta": r.delta[sel],
                "t_c": r.t_c[sel], "s_c": r.s_c[sel], "tp": r.tp[sel], "sp": r.sp[sel],
                "label": r.label[sel] if r.label is not None else np.full(sel.size, -1),
                "ids": r.ids[sel] if r.ids is not None else np.full(sel.size, None, dtype=object)}
        if self.keep is not None:
            cand = {key: np.concatenate([self.keep[key], v]) for key, v in cand.items()}
        order = np.lexsort((cand["row"], -np.abs(cand["delta"])))[:self.size]
        self.keep = {key: v[order] for key, v in cand.items()}

    def records(self, kind: str, labelled: bool) -> list[dict[str, Any]]:
        if self.keep is None:
            return []
        d, out = self.keep, []
        for i in range(d["row"].size):
            out.append({"row": int(d["row"][i]), "id": d["ids"][i], "kind": kind, "delta": float(d["delta"][i]),
                        "teacher_conf": float(d["t_c"][i]), "student_conf": float(d["s_c"][i]),
                        "teacher_pred": int(d["t_pred"][i]), "student_pred": int(d["s_pred"][i]),
                        "teacher_p": [float(x) for x in d["tp"][i]], "student_p": [float(x) for x in d["sp"][i]],
                        "label": int(d["label"][i]) if labelled else None, "text": None})
        return out


class Aggregates:
    """Everything one pass over the aligned rows gives (see the module docstring)."""

    def __init__(self, k: int, labelled: bool, high_conf: float, thresholds: list[float], worst: int,
                 flip_tau: float | None) -> None:
        self.k, self.labelled, self.high_conf = k, labelled, float(high_conf)
        grid = set(CURVE_GRID)
        self.extra = sorted({float(t) for t in thresholds if float(t) not in grid})
        self.radix = [2, 2, 2, 2, 2, len(_GRID) + 1, len(_GRID) + 1, *([2, 2] * len(self.extra))]
        size = int(np.prod(self.radix))
        # dense counts while the key space is small (always, unless many thresholds off the grid)
        self.dense = np.zeros(size, dtype=np.int64) if size <= 1 << 22 else None
        self.cells: dict[int, int] = {}
        self.n = 0
        self.delta_sums: list[float] = []
        self.lo, self.hi = math.inf, -math.inf
        # Δ's power sums per bin are taken about the first Δ seen in the bin (small powers; a bin of
        # equal values sums exact zeros); the sums about the mean, known only at the end, follow by the
        # binomial expansion (:meth:`delta_bins`).
        self.dbin = np.zeros((5, DELTA_BINS))  # count, Σ(Δ − ref)^1..4
        self.ref = np.full(DELTA_BINS, np.nan)
        self.conf_hist = np.zeros((2, W1_BINS))
        self.ace_hist = np.zeros((2, ACE_CUT_BINS + 1), dtype=np.int64) if labelled else None
        self.classes = np.zeros((3, k), dtype=np.int64)
        self.top, self.flips_top = TopRows(worst), TopRows(worst)
        self.flip_tau = flip_tau
        self.set_rows: list[tuple[np.ndarray, ...]] | None = []
        self.n_set_kept = 0
        self.all_rows: list[tuple[np.ndarray, ...]] | None = []

    def add(self, r: Rows) -> None:
        m = r.row.size
        self.n += m
        self._cells(r)
        d = r.delta[r.in_set]
        if d.size:
            self.delta_sums.append(float(np.sum(d)))
            self.lo, self.hi = min(self.lo, float(d.min())), max(self.hi, float(d.max()))
            b = np.minimum(np.floor((d + 1.0) * (DELTA_BINS // 2)).astype(np.int64), DELTA_BINS - 1)
            if np.isnan(self.ref[b]).any():
                first = np.full(DELTA_BINS, np.nan)
                first[b[::-1]] = d[::-1]  # repeated indices: the last assignment, i.e. the first row, stays
                self.ref = np.where(np.isnan(self.ref), first, self.ref)
            x = d - self.ref[b]
            p = np.ones_like(x)
            self.dbin[0] += np.bincount(b, minlength=DELTA_BINS)
            for j in range(1, 5):
                p = p * x
                self.dbin[j] += np.bincount(b, weights=p, minlength=DELTA_BINS)
            for i, c in enumerate((r.t_c[r.in_set], r.s_c[r.in_set])):
                self.conf_hist[i] += np.bincount(np.minimum(np.floor(c * W1_BINS).astype(np.int64), W1_BINS - 1),
                                                 minlength=W1_BINS)
        if self.ace_hist is not None and self.all_rows is None:
            for i, c in enumerate((r.t_conf, r.s_conf)):
                self.ace_hist[i] += np.bincount(fine_bin(c), minlength=ACE_CUT_BINS + 1)
        self.classes[0] += np.bincount(r.t_pred, minlength=self.k)
        self.classes[1] += np.bincount(r.s_pred, minlength=self.k)
        if r.label is not None:
            self.classes[2] += np.bincount(r.label, minlength=self.k)
        self.top.add(r)
        if self.flip_tau is not None:
            self.flips_top.add(r, flipped(r, self.flip_tau))
        self._keep(r, d)

    def _keep(self, r: Rows, d: np.ndarray) -> None:
        # the rows themselves, while few enough for the exact bootstrap and the exact W1
        if self.set_rows is not None:
            self.n_set_kept += d.size
            if self.n_set_kept > eng.EXACT_MAX_N:
                self.set_rows = None
            else:
                self.set_rows.append((d, r.t_c[r.in_set], r.s_c[r.in_set]))
        if self.all_rows is not None and self.labelled:
            self.all_rows.append((r.t_pred, r.s_pred, r.label, r.tp, r.sp))  # type: ignore[arg-type]
            if self.n > eng.EXACT_MAX_N:
                # too many rows to keep: the adaptive ECE's histogram starts from the kept ones
                assert self.ace_hist is not None
                for p in self.all_rows:
                    for i, (probs, pred) in enumerate(((p[3], p[0]), (p[4], p[1]))):
                        self.ace_hist[i] += np.bincount(fine_bin(take_class(probs, pred)), minlength=ACE_CUT_BINS + 1)
                self.all_rows = None

    def _cells(self, r: Rows) -> None:
        fields = [r.t_ok, r.s_ok, r.agree, row_max(r.tp) > self.high_conf,
                  row_max(r.sp) > self.high_conf, grid_count(r.t_conf), grid_count(r.s_conf)]
        for t in self.extra:
            fields += [acts(r.t_conf, t), acts(r.s_conf, t)]
        key = np.zeros(r.row.size, dtype=np.int64)
        for f, size in zip(fields, self.radix, strict=True):
            key = key * size + f
        if self.dense is not None:
            self.dense += np.bincount(key, minlength=self.dense.size)
            return
        keys, counts = np.unique(key, return_counts=True)
        for kk, c in zip(keys.tolist(), counts.tolist(), strict=True):
            self.cells[kk] = self.cells.get(kk, 0) + c

    def decision_cells(self) -> dict[str, np.ndarray]:
        """The groups as :func:`confdistill.properties.pair.decision_cells` returns them (sd/lo/hi aside)."""
        if self.dense is not None:
            self.cells = {int(i): int(self.dense[i]) for i in np.flatnonzero(self.dense)}
        keys = np.asarray(sorted(self.cells), dtype=np.int64)
        names = ["t_ok", "s_ok", "agree", "th", "sh", "ga", "gb"]
        for i in range(len(self.extra)):
            names += [f"xa{i}", f"xb{i}"]
        out: dict[str, np.ndarray] = {}
        rest = keys.copy()
        for name, size in zip(reversed(names), reversed(self.radix), strict=True):
            out[name] = rest % size
            rest //= size
        for name in names:
            if name not in ("ga", "gb"):
                out[name] = out[name].astype(bool)
        out["n"] = np.asarray([self.cells[k] for k in keys.tolist()], dtype=np.int64)
        out["extra"] = np.asarray(self.extra)
        out["in_set"] = (out["t_ok"] & out["s_ok"]) if self.labelled else out["agree"]
        return out

    def counts(self) -> dict[str, Any]:
        """As :func:`confdistill.properties.pair.basic_counts`."""
        c = self.decision_cells()
        cnt = c["n"]
        n_set = int(cnt[c["in_set"]].sum())
        return {"n": self.n, "t_ok": int(cnt[c["t_ok"]].sum()), "s_ok": int(cnt[c["s_ok"]].sum()),
                "agree": int(cnt[c["agree"]].sum()), "n_set": n_set,
                "mean": math.fsum(self.delta_sums) / n_set if n_set else math.nan,
                "min": self.lo if n_set else math.nan, "max": self.hi if n_set else math.nan,
                "t_high": int(cnt[c["th"]].sum()), "s_high": int(cnt[c["sh"]].sum())}

    def delta_bins(self, mean: float) -> dict[str, np.ndarray]:
        """As :func:`confdistill.properties.pair.delta_bins`: per bin, count and Σ (Δ − mean)^1..4."""
        n, s1, s2, s3, s4 = self.dbin
        d = np.where(n > 0, self.ref, mean) - mean
        return {"n": n.copy(), "s1": s1 + n * d, "s2": s2 + 2 * d * s1 + n * d**2,
                "s3": s3 + 3 * d * s2 + 3 * d**2 * s1 + n * d**3,
                "s4": s4 + 4 * d * s3 + 6 * d**2 * s2 + 4 * d**3 * s1 + n * d**4}

    def class_counts(self) -> dict[str, dict[int, int]]:
        """As :func:`confdistill.properties.informative.class_counts`."""
        names = ["teacher", "student", *(["label"] if self.labelled else [])]
        out: dict[str, dict[int, int]] = {"teacher": {}, "student": {}, "label": {}}
        for i, name in enumerate(names):
            out[name] = {c: int(m) for c, m in enumerate(self.classes[i].tolist()) if m}
        return out

    def set_arrays(self) -> dict[str, np.ndarray]:
        assert self.set_rows is not None
        return {name: np.concatenate([p[i] for p in self.set_rows]) if self.set_rows else np.zeros(0)
                for i, name in enumerate(("delta", "t_c", "s_c"))}

    def calibration_rows(self) -> dict[str, np.ndarray] | None:
        if self.all_rows is None:
            return None
        return {name: np.concatenate([p[i] for p in self.all_rows])
                for i, name in enumerate(("t_pred", "s_pred", "label", "tp", "sp"))}


def grid_count(conf: np.ndarray) -> np.ndarray:
    """How many τ of the flip-curve grid (0.50 … 0.99) a model acts at: #{τ <= conf}.

    j = ⌊100·conf⌋ corrected by one exact comparison either way (j/100 is correctly rounded, the very
    double the grid holds), without a search per row."""
    j = np.floor(conf * 100.0)
    j += (conf >= (j + 1.0) / 100.0).astype(np.float64) - (conf < j / 100.0)
    return np.clip(j - 49.0, 0, len(_GRID)).astype(np.int64)


def fine_bin(conf: np.ndarray) -> np.ndarray:
    """The bin of the adaptive ECE's 2^20-bin confidence histogram (1.0 in a bin of its own)."""
    return np.minimum(np.floor(conf * ACE_CUT_BINS).astype(np.int64), ACE_CUT_BINS)


def flipped(r: Rows, tau: float) -> np.ndarray:
    """Rows whose decisions at τ differ (one acts alone, or both act with different classes)."""
    ta, sa = acts(r.t_conf, tau), acts(r.s_conf, tau)
    return (ta != sa) | (ta & sa & ~r.agree)


__all__ = ["Aggregates", "Rows", "TopRows", "derive", "fine_bin", "flipped", "grid_count"]

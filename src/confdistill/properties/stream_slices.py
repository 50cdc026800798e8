"""Slices on the streaming engine: per slice value, mergeable counts and σ's (n, mean, M2) in one more pass.

What a slice is, and the JSON, are :mod:`.slices`' (its readers of the data file are reused); here
each aligned chunk adds, per value of the slice key, the row and set counts, both accuracies, the
negative flips, the flips at each threshold, and the set's Δ as (count, mean, M2) merged with
Chan et al.'s pairwise update (deterministic: chunks come in row order). Imports numpy only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from confdistill.errors import InputError, setting_name
from confdistill.properties import slices as sl
from confdistill.properties.stream_pass import Rows, acts


def _own(r: Rows, expr: str) -> np.ndarray:
    """A column of the teacher's prediction file, named as :func:`.slices.column_keys` names it."""
    if expr == "t_pred":
        return r.t_pred
    if expr == "label":
        assert r.label is not None
        return r.label
    if expr == "id":
        assert r.ids is not None
        return r.ids
    return r.tp[:, int(expr[3:])]


class SliceStats:
    """Per value of one slice key: the sums of its rows (:meth:`add` a chunk with each row's value)."""

    def __init__(self, thresholds: Sequence[float], labelled: bool) -> None:
        self.thresholds, self.labelled = [float(t) for t in thresholds], labelled
        self.stats: dict[Any, np.ndarray] = {}   # value -> [n, n_set, t_ok, s_ok, neg, mean, M2, flips…]
        self.seen: set[Any] = set()

    def add(self, r: Rows, values: np.ndarray) -> None:
        if values.dtype == object:
            index: dict[Any, int] = {}
            inv = np.fromiter((index.setdefault(v, len(index)) for v in values.tolist()), dtype=np.int64,
                              count=values.size)
            uniq = list(index)
        else:
            u, inv = np.unique(values, return_inverse=True)
            uniq = u.tolist()
        self.seen.update(uniq)
        if len(self.seen) > sl.MAX_VALUES:
            return  # refused at the end; only the distinct values are still counted
        size = len(uniq)

        def count(mask: np.ndarray) -> np.ndarray:
            return np.bincount(inv, weights=mask, minlength=size)

        inv_s, d = inv[r.in_set], r.delta[r.in_set]
        ns = np.bincount(inv_s, minlength=size).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.bincount(inv_s, weights=d, minlength=size) / ns
        m2 = np.bincount(inv_s, weights=(d - mean[inv_s]) ** 2, minlength=size)
        flips = [count(_flip(r, t)) for t in self.thresholds]
        part = np.column_stack([np.bincount(inv, minlength=size).astype(np.float64), ns, count(r.t_ok),
                                count(r.s_ok), count(r.t_ok & ~r.s_ok), mean, m2, *flips])
        for i, v in enumerate(uniq):
            self.stats[v] = _merge(self.stats[v], part[i]) if v in self.stats else part[i]

    def result(self, spec: str, kappa: float | None, labels: Sequence[str]) -> list[dict[str, Any]]:
        if len(self.seen) > sl.MAX_VALUES:
            raise InputError(f"{setting_name('slice_by')} {spec}: {len(self.seen)} distinct values (more than {sl.MAX_VALUES}): "
                             "that is an identifier, not a subgroup; slice by a column with fewer values")
        out = []
        for v in sorted(self.stats, key=lambda x: (x is None, x)):
            st = self.stats[v]
            n, n_set = int(st[0]), int(st[1])
            sigma = math.sqrt(max(float(st[6]) / n_set, 0.0)) if n_set else math.nan
            out.append({
                "value": v, "n": n, "n_set": n_set, "n_both": n_set if self.labelled else None, "sigma": sigma,
                "verdict": sl.slice_verdict(sigma, n_set, kappa),
                "negative_flip_rate": int(st[4]) / n if self.labelled else None,
                "flip_rate": {lab: int(st[7 + i]) / n for i, lab in enumerate(labels)},
                "accuracy": {"teacher": int(st[2]) / n, "student": int(st[3]) / n} if self.labelled else None,
            })
        return out


def _flip(r: Rows, tau: float) -> np.ndarray:
    ta, sa = acts(r.t_conf, tau), acts(r.s_conf, tau)
    return (ta != sa) | (ta & sa & (r.t_pred != r.s_pred))


def _merge(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Two partial sums of one value; (count, mean, M2) of the set's Δ by the pairwise update."""
    out = a + b
    na, nb = a[1], b[1]
    if na == 0 or nb == 0:
        out[5:7] = a[5:7] if nb == 0 else b[5:7]
        return out
    n = na + nb
    d = b[5] - a[5]
    out[5] = a[5] + d * nb / n
    out[6] = a[6] + b[6] + d * d * na * nb / n
    return out


def plan(facts: sl.Pair, specs: Sequence[str]) -> list[tuple[str, Callable[[Rows], np.ndarray]]]:
    """Each slice spec and how to read each chunk's key values (InputError for a spec that names nothing)."""
    out: list[tuple[str, Callable[[Rows], np.ndarray]]] = []
    for spec in dict.fromkeys(str(s).strip() for s in specs):
        if not spec:
            raise InputError(f"{setting_name('slice_by')}: empty name; expected label, length or a column name")
        if spec == "label":
            if not facts.labelled:
                raise InputError(f"{setting_name('slice_by')} label: the files have no `label` column (unlabelled logs); slice by "
                                 "length or a column instead")
            out.append((spec, lambda r: _own(r, "label")))
            continue
        if spec == "length":
            values: list[Any] | None = sl.length_keys(facts, spec)
        else:
            expr, values = sl.column_keys(facts, spec)
            if values is None:
                out.append((spec, lambda r, e=expr: _own(r, e)))
                continue
        distinct = len(set(values))
        if distinct > sl.MAX_VALUES:
            raise InputError(f"{setting_name('slice_by')} {spec}: {distinct} distinct values (more than {sl.MAX_VALUES}): that is "
                             "an identifier, not a subgroup; slice by a column with fewer values")
        arr = np.empty(len(values), dtype=object)
        arr[:] = values
        out.append((spec, lambda r, a=arr: a[r.row - 1]))
    return out


def slice_pass(facts: sl.Pair, specs: Sequence[str], again: Callable[[Callable[[Rows], None]], None], *,
               kappa: float | None, thresholds: Sequence[float],
               labels: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """``{spec: [one dict per slice value, in value order]}``; ``again(add)`` runs one more pass over the pair."""
    keys = plan(facts, specs)
    if not keys:
        return {}
    stats = [SliceStats(thresholds, facts.labelled) for _ in keys]

    def add(r: Rows) -> None:
        for (_, key), st in zip(keys, stats, strict=True):
            st.add(r, key(r))

    again(add)
    return {spec: st.result(spec, kappa, labels) for (spec, _), st in zip(keys, stats, strict=True)}


__all__ = ["SliceStats", "slice_pass"]

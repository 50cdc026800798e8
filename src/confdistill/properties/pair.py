"""A teacher/student pair as one DuckDB table, and the aggregate queries every figure is computed from.

The pair is materialised once (``pair``: the two sources joined by row, or by id) and every
figure is then an aggregate query over the view ``v`` on top of it, which adds per-row
expressions (confidences, correctness, the σ set, Brier and NLL terms, ECE bins). Nothing here
holds per-row arrays in Python except below ``EXACT_MAX_N`` rows, where the exact row bootstrap
and the exact Wasserstein distance need them: so memory is bounded by DuckDB's limit
(``confdistill.prediction.sources.MEMORY_LIMIT``, spilling to disk past it) whatever the row count.

Hand-written SQL rather than a dataframe library: every figure is a sum over rows, which is what
a SQL engine streams best, and DuckDB reads the CSV/Parquet shards directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from confdistill.errors import InputError
from confdistill.prediction.sources import SoftmaxSource, dbl

#: Up to this many rows the per-row values come to numpy (exact row bootstrap, exact W1).
EXACT_MAX_N = 50_000
DELTA_BINS = 4000         # Δ on [-1, 1]: moments, the bootstrap histogram above EXACT_MAX_N, the plot
W1_BINS = 1 << 16         # CDF resolution of the Wasserstein distance above EXACT_MAX_N
CONF_PLOT_BINS = 64       # confidence density plots, on [0, 1] (W1_BINS merged)
DELTA_PLOT_BINS = 400     # Δconf histogram, on [-1, 1] (0.005 wide: a good student has σ ≈ 0.01)
NLL_FLOOR = 1e-12


def _prob_of(prefix: str, k: int, cls: str) -> str:
    return f"(CASE {cls} " + " ".join(f"WHEN {c} THEN {prefix}p{c}" for c in range(k)) + " END)"


@dataclass
class Pair:
    """The materialised pair: ``con`` holds table ``pair`` and view ``v``.

    View ``v`` columns: ``row`` (1-based, the teacher's order), ``id`` (or NULL), ``t_pred``,
    ``s_pred``, ``label`` (NULL when unlabelled), ``t_p0…``, ``s_p0…``, ``t_c``/``s_c`` (the
    confidence Δconf compares), ``delta`` (t_c − s_c), ``t_conf``/``s_conf`` (probability of the
    model's own prediction), ``t_max``/``s_max`` (row maxima), ``in_set`` (both correct, or agree
    when unlabelled) and, when labelled, ``t_ok``/``s_ok``, ``t_brier``/``s_brier``,
    ``t_nll``/``s_nll``, ``t_bin``/``s_bin`` (ECE bins, torchmetrics semantics).
    """

    con: Any
    teacher: SoftmaxSource
    student: SoftmaxSource
    n: int
    k: int
    labelled: bool
    aligned_by: str
    delta_kind: str

    def one(self, sql: str) -> tuple[Any, ...]:
        return self.con.execute(sql).fetchone()

    def numpy(self, sql: str) -> dict[str, np.ndarray]:
        return self.con.execute(sql).fetchnumpy()


def build_pair(con: Any, teacher: SoftmaxSource, student: SoftmaxSource, *, delta: str = "auto") -> Pair:
    """Join two validated sources into table ``pair`` and view ``v`` (InputError if they do not describe
    the same examples: class counts, labelled vs not, row counts per shard, ids, gold labels)."""
    tname = teacher.name
    if teacher.k != student.k:
        raise InputError(f"student has {student.k} classes but the teacher ({tname}) has {teacher.k}",
                         path=student.name)
    if teacher.has_label != student.has_label:
        which = "teacher" if teacher.has_label else "student"
        raise InputError(f"only the {which} file has a `label` column: analyse two labelled files or two "
                         "unlabelled logs, not one of each", path=student.name)
    if teacher.n != student.n:
        where = student.name
        if len(teacher.shard_rows) == len(student.shard_rows) > 1:
            i = next(i for i, (a, b) in enumerate(zip(teacher.shard_rows, student.shard_rows, strict=True))
                     if a != b)
            where = str(student.files[i])
            detail = f"shard {i + 1} has {student.shard_rows[i]} rows, the teacher's ({teacher.files[i]}) " \
                     f"{teacher.shard_rows[i]}"
        else:
            detail = f"student has {student.n} rows but the teacher ({tname}) has {teacher.n}"
        raise InputError(f"{detail}: the files are not predictions on the same examples (check the split "
                         "and that neither run was cut short)", path=where)
    k, labelled = teacher.k, teacher.has_label
    if delta == "auto":
        kind = "p0" if k == 2 else ("label" if labelled else "pred")
    elif delta == "label" and not labelled:
        raise InputError("--delta label needs a `label` column; unlabelled logs compare p0 or the predicted class")
    elif delta in ("p0", "label", "pred"):
        kind = delta
    else:
        raise InputError(f"--delta: expected 'p0', 'label' or 'pred', got {delta!r}")
    use_id = teacher.has_id and student.has_id
    t_cols = ", ".join(f"t.p{c} AS t_p{c}" for c in range(k))
    s_cols = ", ".join(f"s.p{c} AS s_p{c}" for c in range(k))
    lab = ", t.label AS label, s.label AS s_label" if labelled else ", CAST(NULL AS BIGINT) AS label"
    tid = "t.id AS id" if teacher.has_id else "CAST(NULL AS VARCHAR) AS id"
    select = (f"SELECT {teacher.global_row_sql('t')} AS row, {tid}, t.pred AS t_pred, s.pred AS s_pred{lab}, "
              f"{t_cols}, {s_cols}")
    if use_id:
        con.execute(f"CREATE OR REPLACE TEMP TABLE pair AS {select} FROM {teacher.scan} t JOIN {student.scan} s "
                    "ON t.id = s.id")
        n = con.execute("SELECT count(*) FROM pair").fetchone()[0]
        if n != teacher.n:
            first = con.execute(f"SELECT {teacher.global_row_sql('t')} AS g, t.id FROM {teacher.scan} t ANTI JOIN "
                                f"{student.scan} s ON t.id = s.id ORDER BY g LIMIT 1").fetchone()
            raise InputError(f"id {first[1]!r} of the teacher's row {first[0]} is not in the student file",
                             path=student.name)
    else:
        # Both sources are stored in row order: row i of one is row i of the other. Materialised:
        # every figure is a scan of ``pair``, and a table scans on all threads (the join does not).
        con.execute(f"CREATE OR REPLACE TEMP TABLE pair AS {select} FROM {teacher.scan} t POSITIONAL JOIN "
                    f"{student.scan} s")
        n = teacher.n
    if labelled:
        bad = con.execute("SELECT count(*), min(row) FROM pair WHERE label <> s_label").fetchone()
        if bad[0]:
            t_label, s_label = con.execute(f"SELECT label, s_label FROM pair WHERE row = {bad[1]}").fetchone()
            f, r = student.locate(bad[1]) if not use_id else (student.name, None)
            raise InputError(
                f"label {s_label} differs from the teacher's label {t_label} ({tname}, same row"
                f"{'' if not use_id else ' id'}): {bad[0]} row(s) disagree, the files are not aligned",
                path=f, row=r)
    # Two views: binding a view costs time per query, so the calibration terms (ECE bins, Brier,
    # NLL: dozens of expressions) live in their own view ``vc``, queried once.
    derived, calib = _derived(k, kind, labelled)
    con.execute(f"CREATE OR REPLACE TEMP VIEW v AS SELECT *, {derived} FROM pair")
    if calib:
        con.execute(f"CREATE OR REPLACE TEMP VIEW vc AS SELECT *, {calib} FROM v")
    return Pair(con=con, teacher=teacher, student=student, n=int(n), k=k, labelled=labelled,
                aligned_by="id" if use_id else "row", delta_kind=kind)


def _edge(j: str) -> str:
    """SQL: ECE boundary number ``j`` (0..16) of np.linspace(0, 1, 16), bit for bit: j·step with
    step = 1/15 rounded, exactly 1.0 for j = 15, and 2.0 past the last. Arithmetic only: a CASE
    costs DuckDB several times more per row."""
    step = dbl(np.linspace(0.0, 1.0, 16)[1])
    return f"(least(CAST({j} AS DOUBLE) * {step}, {dbl(1.0)}) + CAST(({j}) > 15 AS DOUBLE))"


def _derived(k: int, kind: str, labelled: bool) -> tuple[str, str]:
    """SELECT lists of view ``v`` (confidences, Δ, the set, correctness) and ``vc`` (calibration terms)."""
    cols: dict[str, str] = {}
    cal: dict[str, str] = {}
    for m in ("t", "s"):
        pre = f"{m}_"
        cls = {"p0": "0", "label": "label", "pred": "t_pred"}[kind]
        cols[f"{m}_c"] = f"{pre}p0" if kind == "p0" else _prob_of(pre, k, cls)
        cols[f"{m}_conf"] = _prob_of(pre, k, f"{m}_pred")
        cols[f"{m}_max"] = "greatest(" + ", ".join(f"{pre}p{c}" for c in range(k)) + ")"
    cols["delta"] = f"({cols['t_c']}) - ({cols['s_c']})"
    if labelled:
        cols["in_set"] = "(t_pred = label AND s_pred = label)"
        for m in ("t", "s"):
            pre = f"{m}_"
            cols[f"{m}_ok"] = f"({m}_pred = label)"
            cal[f"{m}_brier"] = " + ".join(f"pow({pre}p{c} - CAST(label = {c} AS DOUBLE), 2)" for c in range(k))
            cal[f"{m}_nll"] = f"-ln(greatest({_prob_of(pre, k, 'label')}, {dbl(NLL_FLOOR)}))"
            # torchmetrics' bucketize(conf, linspace(0, 1, 16), right=True) - 1 = the boundaries passed:
            # floor(15·conf), corrected by one exact comparison either way against the boundaries as
            # np.linspace makes them (j·step with step = 1/15 rounded, the last exactly 1.0).
            j = f"CAST(floor({m}_conf * 15) AS INTEGER)"
            cal[f"{m}_bin"] = (f"({j} + CAST({m}_conf >= {_edge(j + ' + 1')} AS INTEGER) "
                               f"- CAST({m}_conf < {_edge(j)} AS INTEGER))")
    else:
        cols["in_set"] = "(t_pred = s_pred)"
    return (", ".join(f"{expr} AS {name}" for name, expr in cols.items()),
            ", ".join(f"{expr} AS {name}" for name, expr in cal.items()))


# --------------------------------------------------------------------------------------------
# Aggregates
# --------------------------------------------------------------------------------------------


def decision_cells(pair: Pair, high_conf: float, thresholds: list[float]) -> dict[str, np.ndarray]:
    """One scan, grouped: every row count the analysis needs besides calibration.

    Groups of rows with equal (t_ok, s_ok, agree, t_max > high_conf, s_max > high_conf, ga, gb,
    xa_i, xb_i): ga/gb count the thresholds of decisions.CURVE each model's own confidence reaches
    (:func:`_grid_count`), xa_i/xb_i compare it with the other thresholds. Per group: the row count
    and Σ, min, max of Δ. Grouping instead of one FILTER per figure evaluates each per-row
    expression once, which is what makes a 10 M-row scan cheap.
    """
    grid = set(CURVE_GRID)
    extra = sorted({float(t) for t in thresholds if float(t) not in grid})
    ok = ["t_ok", "s_ok"] if pair.labelled else ["false AS t_ok", "false AS s_ok"]
    cols = [*ok, "t_pred = s_pred AS agree", f"t_max > {dbl(high_conf)} AS th", f"s_max > {dbl(high_conf)} AS sh",
            f"{_grid_count('t_conf')} AS ga", f"{_grid_count('s_conf')} AS gb"]
    for i, t in enumerate(extra):
        cols += [f"t_conf >= {dbl(t)} AS xa{i}", f"s_conf >= {dbl(t)} AS xb{i}"]
    names = [c.rsplit(" AS ", 1)[1] if " AS " in c else c for c in cols]
    r = pair.numpy(f"SELECT {', '.join(cols)}, count(*) AS n, sum(delta) AS sd, min(delta) AS lo, max(delta) AS hi "
                   f"FROM v GROUP BY {', '.join(names)}")
    r["extra"] = np.asarray(extra)
    r["in_set"] = (r["t_ok"] & r["s_ok"]) if pair.labelled else r["agree"].astype(bool)
    return r


CURVE_GRID = [round(j / 100, 2) for j in range(50, 100)]


def basic_counts(cells: dict[str, np.ndarray], n: int) -> dict[str, Any]:
    """Row counts from :func:`decision_cells`: correct (labelled), agreement, the set, high-confidence
    rows, and Δ's mean, min and max over the set."""
    cnt, in_set = cells["n"].astype(np.int64), cells["in_set"].astype(bool)
    n_set = int(cnt[in_set].sum())
    return {"n": n, "t_ok": int(cnt[cells["t_ok"].astype(bool)].sum()), "s_ok": int(cnt[cells["s_ok"].astype(bool)].sum()),
            "agree": int(cnt[cells["agree"].astype(bool)].sum()), "n_set": n_set,
            "mean": float(cells["sd"][in_set].sum() / n_set) if n_set else math.nan,
            "min": float(cells["lo"][in_set].min()) if n_set else math.nan,
            "max": float(cells["hi"][in_set].max()) if n_set else math.nan,
            "t_high": int(cnt[cells["th"].astype(bool)].sum()), "s_high": int(cnt[cells["sh"].astype(bool)].sum())}


def flip_counts(cells: dict[str, np.ndarray], n: int, thresholds: list[float]) -> np.ndarray:
    """(len(thresholds), 4) int64 counts per τ: [same, teacher_only, student_only, class_change] over all rows,
    from :func:`decision_cells` (the teacher acts at τ iff its confidence in its prediction is >= τ)."""
    cnt, d = cells["n"].astype(np.int64), ~cells["agree"].astype(bool)
    extra = cells["extra"].tolist()
    out = np.zeros((len(thresholds), 4), dtype=np.int64)
    for row, t in enumerate(thresholds):
        t = float(t)
        if t in CURVE_GRID:
            j = CURVE_GRID.index(t)
            ta, sa = cells["ga"] > j, cells["gb"] > j
        else:
            i = extra.index(t)
            ta, sa = cells[f"xa{i}"].astype(bool), cells[f"xb{i}"].astype(bool)
        out[row] = [0, cnt[ta & ~sa].sum(), cnt[~ta & sa].sum(), cnt[ta & sa & d].sum()]
    out[:, 0] = n - out[:, 1:].sum(axis=1)
    return out


def delta_bins(pair: Pair, mean: float) -> dict[str, np.ndarray]:
    """Per bin of Δ over the set (DELTA_BINS equal bins on [-1, 1]): count and Σ of the centred Δ^1..4.

    One scan serves σ's central moments m2..m4 (the normality test), the bootstrap histogram above
    EXACT_MAX_N rows, and the Δ plot (bins merged)."""
    c = f"(delta - {dbl(mean)})"
    r = pair.numpy(f"SELECT least(CAST(floor((delta + {dbl(1.0)}) * {DELTA_BINS // 2}) AS BIGINT), {DELTA_BINS - 1}) AS b, "
                   f"count(*) AS n, sum({c}) AS s1, sum(pow({c}, 2)) AS s2, sum(pow({c}, 3)) AS s3, "
                   f"sum(pow({c}, 4)) AS s4 FROM v WHERE in_set GROUP BY b")
    out = {name: np.zeros(DELTA_BINS) for name in ("n", "s1", "s2", "s3", "s4")}
    idx = r["b"].astype(np.intp)
    for name in out:
        out[name][idx] = r[name]
    return out


def confidence_bins(pair: Pair) -> tuple[np.ndarray, np.ndarray]:
    """Counts of t_c and of s_c over the set on W1_BINS equal bins of [0, 1] (W1 and the density plots)."""
    parts = [f"SELECT {i} AS w, least(CAST(floor({m}_c * {W1_BINS}) AS BIGINT), {W1_BINS - 1}) AS b FROM s"
             for i, m in enumerate(("t", "s"))]
    r = pair.numpy(f"WITH s AS (SELECT t_c, s_c FROM v WHERE in_set) SELECT w, b, count(*) AS n FROM "
                   f"({' UNION ALL '.join(parts)}) GROUP BY w, b")
    hist = np.zeros((2, W1_BINS))
    hist[r["w"].astype(np.intp), r["b"].astype(np.intp)] = r["n"]
    return hist[0], hist[1]


def binned_wasserstein(t_hist: np.ndarray, s_hist: np.ndarray) -> float:
    """W1 between two samples from their counts on W1_BINS bins of [0, 1] (error <= 1/W1_BINS)."""
    ft, fs = np.cumsum(t_hist) / max(t_hist.sum(), 1.0), np.cumsum(s_hist) / max(s_hist.sum(), 1.0)
    return float(np.abs(ft - fs).sum() / W1_BINS)


def plot_histograms(t_hist: np.ndarray, s_hist: np.ndarray, delta: np.ndarray) -> dict[str, Any]:
    """Bin counts for the plots, merged from the fine bins: t_c and s_c (CONF_PLOT_BINS on [0, 1]), Δ
    (DELTA_PLOT_BINS on [-1, 1])."""
    def merge(h: np.ndarray, bins: int) -> list[int]:
        return h.reshape(bins, -1).sum(axis=1).astype(np.int64).tolist()
    return {"teacher_conf": {"edges": np.linspace(0.0, 1.0, CONF_PLOT_BINS + 1).tolist(),
                             "count": merge(t_hist, CONF_PLOT_BINS)},
            "student_conf": {"edges": np.linspace(0.0, 1.0, CONF_PLOT_BINS + 1).tolist(),
                             "count": merge(s_hist, CONF_PLOT_BINS)},
            "delta": {"edges": np.linspace(-1.0, 1.0, DELTA_PLOT_BINS + 1).tolist(),
                      "count": merge(delta, DELTA_PLOT_BINS)}}


def set_arrays(pair: Pair) -> dict[str, np.ndarray]:
    """Δ, t_c and s_c of the set rows in row order (only below EXACT_MAX_N rows)."""
    return pair.numpy("SELECT delta, t_c, s_c FROM v WHERE in_set ORDER BY row")


def _grid_count(col: str) -> str:
    """SQL: how many τ of decisions.CURVE (0.50, 0.51 … 0.99) are <= ``col``, without 50 comparisons.

    j = floor(100·x) is corrected by one comparison either way: j/100 is correctly rounded, so it
    is exactly the double CURVE holds (np.round(…, 2) also divides by 100)."""
    j = f"CAST(floor({col} * 100) AS INTEGER)"
    hundred = dbl(100.0)
    fixed = (f"({j} + CAST({col} >= CAST({j} + 1 AS DOUBLE) / {hundred} AS INTEGER) "
             f"- CAST({col} < CAST({j} AS DOUBLE) / {hundred} AS INTEGER))")
    return f"greatest(least({fixed} - 49, 50), 0)"


def calibration_rows(pair: Pair) -> dict[str, np.ndarray]:
    """Per-row probabilities, predictions and labels of both models (labelled, below EXACT_MAX_N rows)."""
    cols = ", ".join([*(f"t_p{c}" for c in range(pair.k)), *(f"s_p{c}" for c in range(pair.k))])
    return pair.numpy(f"SELECT t_pred, s_pred, label, {cols} FROM v ORDER BY row")


ACE_CUT_BINS = 1 << 20


def ace_cuts(pair: Pair, m: str) -> list[tuple[float, int, bool]]:
    """The (confidence, row, first of its value) of the rows that start ACE bins 1..14 of model ``m``.

    ACE bin = floor(rank·15/N) with rows ranked by (confidence, row): bin j starts at rank
    r_j = ceil(j·N/15). No sort of all rows: a histogram of the confidence on 2^20 bins finds the
    bin holding each r_j, and only the rows of those bins are ranked. A row's ACE bin is then the
    number of starts it is at or after (a plain comparison, no per-row rank kept). "First of its
    value" means no earlier row has the same confidence, so ``conf >= c`` alone decides.
    """
    n = pair.n
    starts = [(j * n + 14) // 15 for j in range(1, 15)]  # 0-based ranks
    key = f"least(CAST(floor({m}_conf * {ACE_CUT_BINS}) AS BIGINT), {ACE_CUT_BINS})"
    h = pair.numpy(f"SELECT {key} AS b, count(*) AS n FROM v GROUP BY b ORDER BY b")
    before = np.concatenate([[0], np.cumsum(h["n"])])  # rows in bins < h["b"][i]
    where = np.searchsorted(before, starts, side="right") - 1
    bins, offsets = h["b"][where].astype(np.int64), np.asarray(starts) - before[where]
    wanted = sorted(set(zip(bins.tolist(), offsets.tolist(), strict=True)))
    # the starting row (rank o within its bin, rk = o + 1) and the one before it (same bin, or none)
    cond = " OR ".join(f"(b = {b} AND rk IN ({o}, {o + 1}))" for b, o in wanted)
    rows = pair.con.execute(
        f"SELECT b, rk, c, row FROM (SELECT {key} AS b, {m}_conf AS c, row, row_number() OVER "
        f"(PARTITION BY {key} ORDER BY {m}_conf, row) AS rk FROM v WHERE {key} IN "
        f"({', '.join(str(b) for b, _ in wanted)})) WHERE {cond}").fetchall()
    found = {(int(b), int(rk) - 1): (float(c), int(r)) for b, rk, c, r in rows}
    out = []
    for b, o in zip(bins.tolist(), offsets.tolist(), strict=True):
        c, r = found[(b, o)]
        prev = found.get((b, o - 1))
        out.append((c, r, prev is None or prev[0] < c))
    return out


def _ace_expr(m: str, cuts: list[tuple[float, int, bool]]) -> str:
    # (conf, row) >= (c, r): conf >= c when the start is the first row of its value, else the tie is
    # split by row, as integer arithmetic (boolean OR/AND costs DuckDB more per row).
    return " + ".join(f"CAST({m}_conf >= {dbl(c)} AS INTEGER)" if first else
                      f"CAST({m}_conf > {dbl(c)} AS INTEGER) + CAST({m}_conf = {dbl(c)} AS INTEGER) * "
                      f"CAST(row >= {r} AS INTEGER)" for c, r, first in cuts)


def calibration_cells(pair: Pair) -> dict[str, np.ndarray]:
    """Cells of rows with equal (t_bin, t_ok, s_bin, s_ok, t_ace, s_ace): count and the sums of each model's
    confidence, correctness, Brier and NLL terms (ACE bins as :func:`ace_cuts` defines them)."""
    t_ace, s_ace = _ace_expr("t", ace_cuts(pair, "t")), _ace_expr("s", ace_cuts(pair, "s"))
    sums = ", ".join(f"sum({m}_conf) AS {m}_sum_conf, sum(CAST({m}_ok AS DOUBLE)) AS {m}_sum_correct, "
                     f"sum({m}_brier) AS {m}_sum_brier, sum({m}_nll) AS {m}_sum_nll" for m in ("t", "s"))
    return pair.numpy(
        f"SELECT t_bin, t_ok, s_bin, s_ok, {t_ace} AS t_ace, {s_ace} AS s_ace, count(*) AS count, {sums} FROM vc "
        "GROUP BY t_bin, t_ok, s_bin, s_ok, t_ace, s_ace ORDER BY t_bin, t_ok, s_bin, s_ok, t_ace, s_ace")


__all__ = [
    "EXACT_MAX_N",
    "Pair",
    "ace_cuts",
    "basic_counts",
    "binned_wasserstein",
    "build_pair",
    "calibration_cells",
    "calibration_rows",
    "confidence_bins",
    "decision_cells",
    "delta_bins",
    "flip_counts",
    "plot_histograms",
    "set_arrays",
]

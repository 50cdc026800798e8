"""Benchmark: `confdistill analyze` (every figure, no plots) vs the notebook's way, and at production size.

    .venv/bin/python benchmarks/bench_analyze.py [--rows 10000000] [--repeat 3] [--dir DIR] [--keep]
    .venv/bin/python benchmarks/bench_analyze.py --rows 0 --parquet-rows 100000000 --shards 20 --dir DIR
    .venv/bin/python benchmarks/bench_analyze.py --rows 0 --small-rows 10000 --repeat 5

The three figures of issue 18, item 2 (each way in its own fresh Python process, alternating, in
the same run; run it alone on the machine):

1. CSV (``--rows``, default 10 M): generates a teacher/student pair of softmax files
   (``pred,p0,p1,label``, float32-derived probabilities written as the research code wrote them) and
   times, alternating:

   - analyze: ``confdistill analyze --teacher T.csv --student S.csv --kappa 0.05 --json R.json``:
     validation (the row checks), accuracies, σ with its bootstrap intervals, decisions and flip
     rates at 0.5/0.9 and on the τ curve, negative flips and McNemar, calibration of both models with
     intervals, Wasserstein, normality, the 20 worst rows and flips; no plots;
   - notebook: ``pandas.read_csv`` of both files, ``concat``, filter the both-correct rows, ``np.std``.

   Target: analyze ≥ 1.5× faster than the notebook (wall).
2. Parquet (``--parquet-rows``, e.g. 100000000, ``--shards`` per model, default 20): writes the pair
   as shards (streamed, bounded memory) and times, alternating, analyze on the two directories and
   DuckDB computing σ alone on the same files (one query: the both-correct filter and
   ``stddev_pop``). Targets: analyze ≤ 4× DuckDB's σ-alone time, peak RSS ≤ 1.5 GiB, not growing
   with n (give several sizes to see it).
3. Small (``--small-rows``, default 0 = skip; the target is for 10000): analyze on a small CSV pair,
   start-up included. Target: under 1 s.

Wall time is measured around the process (interpreter start and imports included); CPU time is
the child's user + system time; peak memory is the child's own peak resident set (``VmHWM`` of
``/proc/self/status``, reported by the child). Both ways must print the same σ.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# Appended to each child: its peak resident memory since exec, as the last stderr line.
REPORT_HWM = """
import sys as _sys
_sys.stderr.write(next(line for line in open("/proc/self/status") if line.startswith("VmHWM:")))
"""

NOTEBOOK = """
import sys
import numpy as np
import pandas as pd
t = pd.read_csv(sys.argv[1])
s = pd.read_csv(sys.argv[2])
df = pd.concat([t.add_prefix("t_"), s.add_prefix("s_")], axis=1)
both = df[(df.t_pred == df.t_label) & (df.s_pred == df.s_label)]
sigma = np.std(both.t_p0 - both.s_p0)
print(repr(float(sigma)), (df.t_pred == df.t_label).mean(), (df.s_pred == df.s_label).mean())
""" + REPORT_HWM

# σ alone, as DuckDB computes it best: one aggregate over the two shard globs joined by position.
DUCKDB_SIGMA = """
import sys
import duckdb
t, s = sys.argv[1], sys.argv[2]
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")  # DuckDB draws one on stdout for queries of seconds
q = (f"SELECT stddev_pop(t.p0 - s.p0), count(*) FROM read_parquet('{t}/*.parquet') t POSITIONAL JOIN "
     f"read_parquet('{s}/*.parquet') s WHERE t.pred = t.label AND s.pred = s.label")
sigma, n = con.execute(q).fetchone()
print(repr(float(sigma)), n)
""" + REPORT_HWM

# The real entry point; only the analyze sub-command is registered so that the benchmark does not
# depend on the other sub-commands (their modules import the standard library only anyway).
ANALYZE = """
import sys
import confdistill.cli.main as m
m.SUBCOMMAND_MODULES = ["analyze"]
rc = m.main(sys.argv[1:])
""" + REPORT_HWM + "sys.exit(rc)\n"


def generate(path_t: Path, path_s: Path, rows: int, *, seed: int = 0, chunk: int = 1_000_000,
             parquet: bool = False, csv: bool = True) -> None:
    """Write a binary teacher/student pair of ``rows`` rows in chunks (bounded memory): CSV at the
    paths (``csv``) and/or Parquet beside them (``parquet``)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from confdistill.prediction.softmax_file import parquet_options

    rng = np.random.default_rng(seed)
    fields = [("pred", pa.int64()), ("p0", pa.float64()), ("p1", pa.float64()), ("label", pa.int64())]
    schema = pa.schema(fields)
    with contextlib.ExitStack() as stack:
        writers = []
        for path in (path_t, path_s) if csv else ():
            fh = stack.enter_context(open(path, "wb"))
            fh.write(b"pred,p0,p1,label\n")
            writers.append(stack.enter_context(
                pacsv.CSVWriter(fh, schema, write_options=pacsv.WriteOptions(include_header=False))))
        pq_writers = [stack.enter_context(pq.ParquetWriter(p.with_suffix(".parquet"), schema, **parquet_options(2)))
                      for p in (path_t, path_s)] if parquet else []
        for start in range(0, rows, chunk):
            m = min(chunk, rows - start)
            label = rng.integers(0, 2, m)
            sign = np.where(label == 0, 1.0, -1.0)
            # teacher logits favour the label (~93% accuracy); student = teacher + noise
            zt = sign * 2.5 + rng.normal(0, 1.6, m)
            zs = zt + rng.normal(0, 0.4, m)
            for j, z in enumerate((zt, zs)):
                p0 = (1.0 / (1.0 + np.exp(-z))).astype(np.float32)
                p1 = (np.float32(1.0) - p0).astype(np.float32)
                table = pa.table({"pred": (p1 > p0).astype(np.int64), "p0": p0.astype(np.float64),
                                  "p1": p1.astype(np.float64), "label": label}, schema=schema)
                if csv:
                    writers[j].write_table(table)
                if parquet:
                    pq_writers[j].write_table(table)


def measure(args: list[str]) -> tuple[float, float, float, str]:
    """Run a child process; return (wall seconds, peak RSS in MiB, CPU seconds, stdout).

    Peak RSS is the child's own ``VmHWM`` (``/proc/self/status``), printed by the child as its
    last stderr line: ``ru_maxrss`` would also count the benchmark process's pages that the
    child inherited between fork and exec.
    """
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"child failed ({proc.returncode}): {' '.join(args)}\n{proc.stderr}")
    hwm_kib = int(proc.stderr.strip().splitlines()[-1].split()[1])
    return wall, hwm_kib / 1024.0, cpu, proc.stdout


def generate_parquet_shards(root: Path, rows: int, shards: int, *, seed: int = 0) -> tuple[Path, Path]:
    """``root/teacher/part-*.parquet`` and ``root/student/part-*.parquet``: ``rows`` rows in ``shards`` shards."""
    dirs = (root / "teacher", root / "student")
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
    per = -(-rows // shards)
    tmp = root / "tmp"
    tmp.mkdir(exist_ok=True)
    for i in range(shards):
        m = min(per, rows - i * per)
        if m <= 0:
            break
        generate(tmp / "t.csv", tmp / "s.csv", m, seed=seed + i, parquet=True, csv=False)
        for src, d in ((tmp / "t.parquet", dirs[0]), (tmp / "s.parquet", dirs[1])):
            os.replace(src, d / f"part-{i:05d}.parquet")
    shutil.rmtree(tmp)
    return dirs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000, help="CSV rows (0: skip the CSV comparison)")
    parser.add_argument("--repeat", type=int, default=1, help="alternating runs of each way (default 1)")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--parquet-rows", default="", help="comma-separated sizes for the Parquet shard runs")
    parser.add_argument("--shards", type=int, default=20, help="Parquet shards per model (default 20)")
    parser.add_argument("--small-rows", type=int, default=0,
                        help="rows of the small-input run (10000 for the target; default 0: skip)")
    parser.add_argument("--dir", type=Path, default=None, help="where to generate (default: a temp dir)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the generated files in --dir and reuse them on the next run with the same sizes")
    args = parser.parse_args()
    if args.keep and args.dir is None:
        parser.error("--keep needs --dir")
    work = args.dir if args.keep else Path(tempfile.mkdtemp(prefix="bench_analyze.", dir=args.dir))
    work.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    print(f"machine: {os.cpu_count()} CPUs, load average before: {os.getloadavg()}")
    try:
        if args.rows:
            csv_comparison(args, work, py)
        for rows in [int(x) for x in args.parquet_rows.split(",") if x.strip()]:
            root = work / f"parquet-{rows}"
            stamp = root / "generated.json"
            want = {"rows": rows, "shards": args.shards, "seed": 0}
            if not (args.keep and stamp.exists() and json.loads(stamp.read_text()) == want):
                t0 = time.perf_counter()
                generate_parquet_shards(root, rows, args.shards)
                stamp.write_text(json.dumps(want))
                print(f"generated 2 x {rows:,} rows as {args.shards} Parquet shards each in "
                      f"{time.perf_counter() - t0:.0f} s")
            parquet_comparison(args, root, py, rows)
        if args.small_rows:
            small_run(args, work, py)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def csv_comparison(args: argparse.Namespace, work: Path, py: str) -> None:
    """Generate (or reuse) the CSV pair and time analyze against the notebook, alternating."""
    t_csv, s_csv = work / "teacher.csv", work / "student.csv"
    stamp = work / "generated.json"
    want = {"rows": args.rows, "seed": 0}
    if args.keep and stamp.exists() and json.loads(stamp.read_text()) == want:
        print(f"reusing the generated pair in {work}")
    else:
        stamp.unlink(missing_ok=True)
        t0 = time.perf_counter()
        generate(t_csv, s_csv, args.rows)
        stamp.write_text(json.dumps(want))
        print(f"generated 2 x {args.rows:,} rows in {time.perf_counter() - t0:.1f} s in {work}")
    size = (t_csv.stat().st_size + s_csv.stat().st_size) / 2**20
    print(f"{size:,.0f} MiB of CSV")
    runs: dict[str, list[tuple[float, float, float]]] = {"analyze": [], "notebook": []}
    sigma_nb = sigma_an = None
    for _ in range(args.repeat):
        wall, rss, cpu, out = measure([py, "-c", NOTEBOOK, str(t_csv), str(s_csv)])
        runs["notebook"].append((wall, rss, cpu))
        sigma_nb = float(out.split()[0])
        res = work / "r.json"
        wall, rss, cpu, _ = measure(_analyze_args(py, t_csv, s_csv, res, args.bootstrap))
        runs["analyze"].append((wall, rss, cpu))
        sigma_an = json.loads(res.read_text())["sigma"]
        print("  run: " + ", ".join(f"{k} {v[-1][0]:.2f} s wall / {v[-1][2]:.2f} s CPU" for k, v in runs.items()),
              flush=True)
    print(f"load average after: {os.getloadavg()}")
    print(f"sigma: analyze {sigma_an!r}, notebook {sigma_nb!r}, |diff| = {abs(sigma_an - sigma_nb):.2e}")
    best = {k: (min(w for w, _, _ in v), max(r for _, r, _ in v), min(c for _, _, c in v)) for k, v in runs.items()}
    print(f"{'way':<36}{'wall s (best)':>14}{'CPU s (best)':>14}{'peak RSS MiB':>14}")
    for name, label in (("notebook", "notebook (pandas, CSV, σ only)"), ("analyze", "confdistill analyze (CSV, all)")):
        print(f"{label:<36}{best[name][0]:>14.2f}{best[name][2]:>14.2f}{best[name][1]:>14.0f}")
    print(f"analyze vs notebook on CSV: {best['notebook'][0] / best['analyze'][0]:.2f}x wall (target >= 1.5x), "
          f"{best['notebook'][2] / best['analyze'][2]:.2f}x CPU")


def _analyze_args(py: str, teacher: Path, student: Path, res: Path, bootstrap: int) -> list[str]:
    return [py, "-c", ANALYZE, "analyze", "--teacher", str(teacher), "--student", str(student), "--kappa", "0.05",
            "--json", str(res), "--overwrite", "--bootstrap", str(bootstrap)]


def parquet_comparison(args: argparse.Namespace, root: Path, py: str, rows: int) -> None:
    """analyze on the shard directories against DuckDB's σ alone on the same files, alternating."""
    res = root / "r.json"
    runs: dict[str, list[tuple[float, float, float]]] = {"duckdb": [], "analyze": []}
    sigma_db = None
    for _ in range(args.repeat):
        wall, rss, cpu, out = measure([py, "-c", DUCKDB_SIGMA, str(root / "teacher"), str(root / "student")])
        sigma_db = float(out.split()[-2])  # the last line: sigma count
        runs["duckdb"].append((wall, rss, cpu))
        runs["analyze"].append(measure(_analyze_args(py, root / "teacher", root / "student", res, args.bootstrap))[:3])
        print("  run: " + ", ".join(f"{k} {v[-1][0]:.1f} s wall / {v[-1][1]:,.0f} MiB" for k, v in runs.items()),
              flush=True)
    r = json.loads(res.read_text())
    # best wall and CPU, largest peak memory over the runs
    (wa, ra, ca), (wd, rd, _) = ((min(w for w, _, _ in v), max(m for _, m, _ in v), min(c for _, _, c in v))
                                 for v in (runs["analyze"], runs["duckdb"]))
    print(f"Parquet {rows:>12,} rows, {args.shards} shards per model: analyze {wa:.1f} s wall, {ca:.1f} s CPU, "
          f"peak RSS {ra:,.0f} MiB (target <= 1536); DuckDB σ alone {wd:.1f} s, {rd:,.0f} MiB; "
          f"analyze / DuckDB = {wa / wd:.2f}x (target <= 4x); sigma {r['sigma']!r} vs DuckDB {sigma_db!r}", flush=True)


def small_run(args: argparse.Namespace, work: Path, py: str) -> None:
    """analyze on a small CSV pair, start-up included (target: under 1 s for 10 k rows)."""
    t_csv, s_csv = work / "small_teacher.csv", work / "small_student.csv"
    generate(t_csv, s_csv, args.small_rows, seed=1)
    walls = [measure(_analyze_args(py, t_csv, s_csv, work / "small.json", args.bootstrap))[0]
             for _ in range(max(args.repeat, 1))]
    print(f"small: {args.small_rows:,} rows, analyze (start-up included) best {min(walls):.2f} s, "
          f"median {float(np.median(walls)):.2f} s over {len(walls)} runs (target < 1 s)", flush=True)


if __name__ == "__main__":
    main()

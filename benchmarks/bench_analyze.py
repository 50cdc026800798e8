"""Benchmark: `confdistill analyze` (no plots) vs the notebook's way, on a generated 10 M-row pair.

    .venv/bin/python benchmarks/bench_analyze.py [--rows 10000000] [--repeat 1] [--parquet] [--dir DIR] [--keep]

Generates a teacher/student pair of softmax files (``pred,p0,p1,label``, float32-derived
probabilities written as the research code wrote them) in a temporary directory, then times,
side by side in the same run, each in its own fresh Python process:

- analyze: ``confdistill analyze --teacher T.csv --student S.csv --json R.json`` (full analysis:
  validation, accuracies, σ, 1000-resample bootstrap CI, Wasserstein, normality; no plots);
- notebook: ``pandas.read_csv`` of both files, ``concat``, filter the both-correct rows, ``np.std``.

Wall time is measured around the process (interpreter start and imports included); CPU time is
the child's user + system time (both threads of a 2-core machine count; on a machine shared with
other jobs it is the steadier figure); peak memory is the child's own peak resident set
(``VmHWM`` of ``/proc/self/status``, reported by the child). Both must print the same σ.
With ``--parquet`` the pair is also written as Parquet and analyze is timed on it.
With ``--keep`` the generated files stay in ``--dir`` (required) and a later run with the same
``--rows`` reuses them instead of generating again.
The parser needs no warm-up (a compiled C extension, no JIT): every analyze run is a cold start.
Which parser ran is printed (``fast C parser`` or ``pyarrow`` when the extension is not built).
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

# The real entry point; only the analyze sub-command is registered so that the benchmark does not
# depend on the other sub-commands (their modules import the standard library only anyway).
ANALYZE = """
import sys
import confdistill.cli.main as m
m.SUBCOMMAND_MODULES = ["analyze"]
rc = m.main(sys.argv[1:])
""" + REPORT_HWM + "sys.exit(rc)\n"


def generate(path_t: Path, path_s: Path, rows: int, *, seed: int = 0, chunk: int = 1_000_000,
             parquet: bool = False) -> None:
    """Write a binary teacher/student pair of ``rows`` rows in chunks (bounded memory)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from confdistill.prediction.softmax_file import parquet_options

    rng = np.random.default_rng(seed)
    fields = [("pred", pa.int64()), ("p0", pa.float64()), ("p1", pa.float64()), ("label", pa.int64())]
    schema = pa.schema(fields)
    with contextlib.ExitStack() as stack:
        writers = []
        for path in (path_t, path_s):
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=1, help="alternating runs of each way (default 1)")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--parquet", action="store_true", help="also time analyze on Parquet copies")
    parser.add_argument("--dir", type=Path, default=None, help="where to generate (default: a temp dir)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the generated files in --dir and reuse them on the next run with the same --rows")
    args = parser.parse_args()
    if args.keep and args.dir is None:
        parser.error("--keep needs --dir")

    if args.keep:
        work = args.dir
        work.mkdir(parents=True, exist_ok=True)
    else:
        work = Path(tempfile.mkdtemp(prefix="bench_analyze.", dir=args.dir))
    try:
        t_csv, s_csv = work / "teacher.csv", work / "student.csv"
        stamp = work / "generated.json"
        want = {"rows": args.rows, "parquet": args.parquet, "seed": 0}
        if args.keep and stamp.exists() and json.loads(stamp.read_text()) == want:
            print(f"reusing the generated pair in {work}")
        else:
            stamp.unlink(missing_ok=True)
            t0 = time.perf_counter()
            generate(t_csv, s_csv, args.rows, parquet=args.parquet)
            stamp.write_text(json.dumps(want))
            print(f"generated 2 x {args.rows:,} rows in {time.perf_counter() - t0:.1f} s in {work}")
        size = (t_csv.stat().st_size + s_csv.stat().st_size) / 2**20
        print(f"{size:,.0f} MiB of CSV; machine: {os.cpu_count()} CPUs, load average before: {os.getloadavg()}")
        py = sys.executable
        parser_used = subprocess.run(
            [py, "-c", "from confdistill.prediction.fast_csv import available; "
                       "print('fast C parser' if available() else 'pyarrow (C extension not built)')"],
            capture_output=True, text=True, check=True).stdout.strip()
        print(f"CSV parser used by analyze: {parser_used}")
        runs: dict[str, list[tuple[float, float, float]]] = {"analyze": [], "notebook": [], "analyze_parquet": []}
        sigma_nb = sigma_an = None
        for _ in range(args.repeat):
            wall, rss, cpu, out = measure([py, "-c", NOTEBOOK, str(t_csv), str(s_csv)])
            runs["notebook"].append((wall, rss, cpu))
            sigma_nb = float(out.split()[0])
            res = work / "r.json"
            wall, rss, cpu, _ = measure([py, "-c", ANALYZE, "analyze", "--teacher", str(t_csv), "--student",
                                         str(s_csv), "--json", str(res), "--bootstrap", str(args.bootstrap)])
            runs["analyze"].append((wall, rss, cpu))
            sigma_an = json.loads(res.read_text())["sigma"]
            if args.parquet:
                wall, rss, cpu, _ = measure([py, "-c", ANALYZE, "analyze", "--teacher",
                                             str(t_csv.with_suffix(".parquet")), "--student",
                                             str(s_csv.with_suffix(".parquet")), "--json", str(res),
                                             "--bootstrap", str(args.bootstrap)])
                runs["analyze_parquet"].append((wall, rss, cpu))
            print("  run: " + ", ".join(f"{k} {v[-1][0]:.2f} s wall / {v[-1][2]:.2f} s CPU"
                                        for k, v in runs.items() if v), flush=True)
        print(f"load average after: {os.getloadavg()}")
        print(f"sigma: analyze {sigma_an!r}, notebook {sigma_nb!r}, |diff| = {abs(sigma_an - sigma_nb):.2e}")
        best = {k: (min(w for w, _, _ in v), max(r for _, r, _ in v), min(c for _, _, c in v))
                for k, v in runs.items() if v}
        print(f"{'way':<32}{'wall s (best)':>14}{'CPU s (best)':>14}{'peak RSS MiB':>14}")
        for name, label in (("notebook", "notebook (pandas, CSV)"), ("analyze", "confdistill analyze (CSV)"),
                            ("analyze_parquet", "confdistill analyze (Parquet)")):
            if name in best:
                print(f"{label:<32}{best[name][0]:>14.2f}{best[name][2]:>14.2f}{best[name][1]:>14.0f}")
        print(f"speed-up on CSV: {best['notebook'][0] / best['analyze'][0]:.2f}x wall, "
              f"{best['notebook'][2] / best['analyze'][2]:.2f}x CPU")
        if "analyze_parquet" in best:
            print(f"speed-up, analyze on Parquet vs notebook on CSV: "
                  f"{best['notebook'][0] / best['analyze_parquet'][0]:.2f}x wall")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

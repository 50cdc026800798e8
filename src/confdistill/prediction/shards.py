"""Where a softmax source's rows are: its shard files, their headers and sidecars (no DuckDB here).

A source is one file, a directory of files or a glob; this module resolves it to shard files in
name order, checks each header (``[id,]pred,p0..p{k-1}[,label]``), reads sidecars, and, when the
engine rejects a file's text, names the first offending row with a slow pure-Python pass.
"""

from __future__ import annotations

import codecs
import contextlib
import glob
import json
from pathlib import Path
from typing import Any

from confdistill.delimited import Reader
from confdistill.errors import InputError
from confdistill.folders import recover_folder

CSV_EXT = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
PARQUET_EXT = {".parquet", ".pq"}
_DELIMITER_NAMES = {",": "comma", "\t": "tab", ";": "semicolon", "|": "pipe", " ": "space"}


def sidecar_path(path: str | Path) -> Path:
    """The sidecar of ``path``: ``<path>.meta.json`` (e.g. ``eval_results.csv.meta.json``)."""
    path = Path(path)
    return path.with_name(path.name + ".meta.json")


def expected_columns(k: int, *, with_id: bool = False, with_label: bool = True) -> list[str]:
    """Column names of a k-class file: ``[id,]pred,p0,...,p{k-1}[,label]``."""
    return (["id"] if with_id else []) + ["pred"] + [f"p{c}" for c in range(k)] + (["label"] if with_label else [])


def resolve_files(spec: str | Path) -> list[Path]:
    """The shard files of a source: the file itself, a directory's softmax files, or a glob's matches.

    Shards are taken in name order (so ``part-00000.parquet``, ``part-00001.parquet`` … concatenate
    in order); sidecars (``*.meta.json``) and hidden files are ignored. All shards must share one
    format (CSV, TSV or Parquet).
    """
    text = str(spec)
    path = Path(spec)
    if not path.is_file():
        recover_folder(path)  # a folder replaced by a killed writer: the old or the new one
    if any(ch in text for ch in "*?[") and not path.exists():
        files = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file()
                       and not p.endswith(".meta.json"))
        if not files:
            raise InputError("the glob matches no file (expected softmax files `pred,p0,...[,label]`)", path=text)
    elif path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")
                       and p.suffix.lower() in {*CSV_EXT, *PARQUET_EXT})
        if not files:
            raise InputError("directory holds no .csv, .tsv or .parquet softmax file", path=path)
    elif not path.exists():
        raise InputError("file not found (expected a softmax output file `pred,p0,...,label`)", path=path)
    else:
        files = [path]
    kinds = {"parquet" if f.suffix.lower() in PARQUET_EXT else CSV_EXT.get(f.suffix.lower(), "text")
             for f in files}
    if len(kinds) > 1:
        raise InputError(f"shards mix formats ({', '.join(sorted(map(repr, kinds)))}): use one format per model",
                         path=text)
    return files


def check_header(path: Path, names: list[str], *, delimiter: str | None) -> tuple[int, bool, bool]:
    """Validate column names; return (k, has_id, has_label). Order: ``[id,]pred,p0..p{k-1}[,label]``."""
    if len(names) == 1 and delimiter is not None:
        for cand, cname in _DELIMITER_NAMES.items():
            if cand != delimiter and cand in names[0] and "pred" in names[0]:
                expected = _DELIMITER_NAMES[delimiter]
                raise InputError(
                    f"header is {cname}-separated but {expected}-separated values were expected "
                    f"(`.csv` = comma, `.tsv` = tab): rewrite the file with {expected}s or rename it",
                    path=path, row=None)
    stripped = [n.strip() for n in names]
    has_id = bool(stripped) and stripped[0] == "id"
    body = stripped[1:] if has_id else stripped
    pcols = [n for n in body if n.startswith("p") and n[1:].isdigit()]
    k = len(pcols)
    if k < 2:
        raise InputError(
            f"expected columns `[id,]pred,p0,...,p{{k-1}},label` with k >= 2 probability columns, "
            f"got {','.join(stripped)!r}", path=path)
    has_label = "label" in stripped
    want = expected_columns(k, with_id=has_id, with_label=has_label)
    if stripped != want:
        want = expected_columns(k, with_id=has_id)
        missing = [c for c in want if c not in stripped]
        extra = [c for c in stripped if c not in want]
        detail = []
        if missing:
            detail.append("missing column(s) " + ", ".join(missing))
        if extra:
            detail.append("unexpected column(s) " + ", ".join(repr(c) for c in extra))
        if not detail:
            detail.append("columns out of order")
        raise InputError(f"{'; '.join(detail)}: expected header {','.join(want)!r} (or without `label` for "
                         f"unlabelled logs), got {','.join(stripped)!r}", path=path)
    return k, has_id, has_label


def read_header_line(path: Path) -> str:
    """First line of the file, decoded as UTF-8 without BOM."""
    with open(path, "rb") as fh:
        raw = fh.readline(1 << 20)
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8):]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"header is not UTF-8 text ({exc.reason}); expected a CSV/TSV softmax file",
                         path=path, row=None) from None
    if "\r" in text.rstrip("\r\n"):
        raise InputError("cannot read the header line (a bare \\r line end?): expected `pred,p0,...,p{k-1},label` "
                         "followed by a \\n or \\r\\n line end", path=path)
    return text.rstrip("\r\n")


def sniff_delimiter(header: str) -> str:
    counts = {d: header.count(d) for d in (",", "\t", ";", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def text_header(path: Path, delimiter: str | None) -> tuple[str, list[str]]:
    if path.stat().st_size == 0:
        raise InputError("empty file, expected a header `pred,p0,...,p{k-1},label` and one row per example",
                         path=path)
    header = read_header_line(path)
    if not header.strip():
        raise InputError("empty header line, expected `pred,p0,...,p{k-1},label`", path=path)
    if delimiter is None:
        delimiter = CSV_EXT.get(path.suffix.lower()) or sniff_delimiter(header)
    return delimiter, next(Reader([header], path, delimiter=delimiter))


def diagnose_rows(path: Path, delimiter: str, cols: list[str]) -> None:
    ncols = len(cols)
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = Reader(fh, path, delimiter=delimiter)
        next(reader, None)
        row_no = 0
        for row in reader:
            if not row:  # blank lines are skipped by the reader too
                continue
            row_no += 1
            where = f"(line {reader.line_num})"
            if len(row) != ncols:
                hint = ""
                if len(row) == 1:
                    for cand, cname in _DELIMITER_NAMES.items():
                        if cand != delimiter and cand in row[0]:
                            hint = f"; the row looks {cname}-separated"
                            break
                raise InputError(f"expected {ncols} fields ({','.join(cols)}), got {len(row)} {where}{hint}",
                                 path=path, row=row_no)
            for name, value in zip(cols, row, strict=True):
                if name == "id":
                    continue
                text = value.strip()
                if text == "":
                    raise InputError(f"missing value in column {name!r} {where}", path=path, row=row_no)
                try:
                    float(text)
                except ValueError:
                    kind = "an integer class index" if name in ("pred", "label") else "a number"
                    raise InputError(f"column {name!r}: expected {kind}, got {value!r} {where}",
                                     path=path, row=row_no) from None


def read_sidecar(path: Path, n: int, notes: list[str]) -> dict[str, Any]:
    """The sidecar JSON of ``path`` ({} if absent); a row-count mismatch adds a note.

    A file and its sidecar are written as one unit (:mod:`confdistill.commit`); a commit a killed
    writer left half done is finished first, and a sidecar whose ``file_sha256`` is not the file's
    (it describes other predictions) is ignored with a note rather than trusted.
    """
    from confdistill.commit import recover_commit, sidecar_matches

    side = sidecar_path(path)
    with contextlib.suppress(OSError):  # a read-only folder: read what is there
        recover_commit(path)
    if not side.exists():
        return {}
    try:
        meta = json.loads(side.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"sidecar is not valid JSON ({exc})", path=side) from None
    if not isinstance(meta, dict):
        raise InputError("sidecar must hold a JSON object", path=side)
    if "file_sha256" in meta and sidecar_matches(path, side) is False:
        notes.append(f"{side}: describes another file (its file_sha256 is not this file's): ignored")
        return {}
    if "n_rows" in meta and meta["n_rows"] != n:
        notes.append(f"{side}: n_rows {meta['n_rows']} in the sidecar but {n} rows in the file "
                     "(sidecar out of date?)")
    return meta


__all__ = [
    "CSV_EXT",
    "PARQUET_EXT",
    "check_header",
    "diagnose_rows",
    "expected_columns",
    "read_header_line",
    "read_sidecar",
    "resolve_files",
    "sidecar_path",
    "sniff_delimiter",
    "text_header",
]

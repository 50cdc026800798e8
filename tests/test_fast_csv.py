"""The fast C parser and analysis kernels (confdistill.prediction._native via fast_csv).

References are independent of the code under test: Python's correctly rounded ``float()``
for every number, the pyarrow reader (the parser used when the extension is missing) for whole
files and error messages, and the numpy implementations of the analysis for the kernels.
"""

from __future__ import annotations

import math
import shutil
import struct
import sysconfig
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from confdistill.errors import InputError
from confdistill.prediction import fast_csv
from confdistill.prediction.softmax_file import SoftmaxFormatWarning, read_softmax
from confdistill.properties import confidence

needs_native = pytest.mark.skipif(not fast_csv.available(),
                                  reason="C extension confdistill.prediction._native not built")


def _bits(x: float) -> bytes:
    return struct.pack("<d", x)


def _same_float(text: str) -> None:
    got = fast_csv.parse_float(text)
    want = float(text)
    assert _bits(got) == _bits(want), (text, got, want)


def test_extension_is_built_where_a_compiler_exists() -> None:
    # A silent build failure would make every run use the slow pyarrow path.
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        pytest.skip(f"no C compiler ({compiler}): the extension is optional")
    assert fast_csv.available(), "the C extension was not built: run `pip install -e .` again"


# --------------------------------------------------------------------------------------------
# Numbers: bit-identical to float()
# --------------------------------------------------------------------------------------------

HARD = [
    "0", "0.0", "-0.0", "1", "1.0", "0.5", ".5", "5.", "+0.5", "1e0", "1E5", "1e+05", "1.2e-05",
    "0.9325519800186157", "0.004727179650217295", "0.15746349096298218",
    "9007199254740993",  # 2^53 + 1: halfway, ties to even
    "9007199254740995", "18446744073709551615", "18446744073709551616",
    "2.2250738585072011e-308", "2.2250738585072012e-308", "2.2250738585072014e-308",  # min normal edge
    "4.9406564584124654e-324", "2.4703282292062328e-324", "2.4703282292062327e-324",  # min subnormal
    "1.7976931348623157e308", "1.7976931348623158e308", "1.7976931348623159e308",  # max / overflow
    "1e-400", "1e400", "1e-300", "7.3177701707893310e+15", "0.1", "0.3", "1e23", "8.98846567431158e307",
    "1.00000000000000011102230246251565404236316680908203125",  # exact halfway, > 19 digits
    "0.000000000000000000000000000000000000001234567890123456789",  # leading zeros not counted
    "123456789012345678901234567890", "3.14159265358979323846264338327950288",
    "4503599627370496.5", "4503599627370497.5", "1.448997445238699", "2.9802322387695312e-08",
    # "0." + 16-19 digits (the parser's fast path) followed by an exponent or more digits:
    "0.1234567890123456e-5", "0.12345678901234567E+3", "0.123456789012345678e2", "0.1234567890123456789E0",
    "0.12345678901234567890", "0.1234567890123456789012e-3", "-0.9999999999999999e0", "0.0000000000000000e5",
]


@needs_native
@pytest.mark.parametrize("text", HARD)
def test_hard_cases(text: str) -> None:
    _same_float(text)


@needs_native
@settings(max_examples=600, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_any_double_in_every_notation(x: float) -> None:
    for text in (repr(x), f"{x:.17g}", f"{x:.9g}", f"{x:.20g}", f"{x:.25e}", f"{x:.3e}", f"{x:.16e}"):
        _same_float(text)


@needs_native
@settings(max_examples=600, deadline=None)
@given(st.floats(min_value=0.0, max_value=1.0, width=32))
def test_float32_probabilities(x: float) -> None:
    # How softmax files are written: float32 widened to float64, shortest repr (16-17 digits).
    for text in (repr(x), f"{x:.17g}", f"{x:.9g}", f"{np.float32(x)!r}".removeprefix("np.float32(")[:-1]):
        _same_float(text)


@needs_native
@settings(max_examples=800, deadline=None)
@given(st.text("0123456789", min_size=1, max_size=22), st.integers(0, 22), st.integers(-400, 400),
       st.booleans(), st.booleans())
def test_digit_strings(digits: str, point: int, exponent: int, with_exp: bool, negative: bool) -> None:
    point = min(point, len(digits))
    text = ("-" if negative else "") + digits[:point] + "." + digits[point:]
    if with_exp:
        text += f"e{exponent}"
    _same_float(text)
    _same_float(digits)


@needs_native
@pytest.mark.parametrize("text", ["", "-", ".", "e5", "1e", "1e+", "nan", "inf", "0x1p3", " 1", "1 ", "1_0",
                                  "1..2", "1.2.3", "--1", '"1"', "1,2"])
def test_outside_the_grammar_is_rejected(text: str) -> None:
    with pytest.raises(ValueError):
        fast_csv.parse_float(text)


@needs_native
def test_many_random_values_against_float() -> None:
    rng = np.random.default_rng(7)
    values = np.concatenate([
        rng.random(3000), rng.random(3000).astype(np.float32).astype(np.float64),
        np.exp(rng.uniform(-745, 709, 3000)),
        rng.integers(0, 2**63, 3000, dtype=np.int64).view(np.float64),
    ])
    for x in values[np.isfinite(values)].tolist():
        for text in (repr(x), f"{x:.17g}", f"{x:.15g}"):
            _same_float(text)


# --------------------------------------------------------------------------------------------
# Files: identical to the pyarrow reader
# --------------------------------------------------------------------------------------------


def _read_both(path: Path, monkeypatch: pytest.MonkeyPatch, **kw: object) -> tuple[object, object]:
    """(fast parser result, pyarrow result) of read_softmax: values or (InputError message, notes)."""
    out = []
    for disable in (False, True):
        with monkeypatch.context() as m:
            m.setattr(fast_csv, "CHUNK_BYTES", 64)  # many pieces and threads even on small files
            if disable:
                m.setattr(fast_csv, "_native", None)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    res = read_softmax(path, **kw)
                    out.append(("ok", res, [str(w.message) for w in caught
                                            if issubclass(w.category, SoftmaxFormatWarning)]))
                except InputError as exc:
                    out.append(("error", str(exc), None))
    return out[0], out[1]


def _assert_same(fast: tuple, slow: tuple) -> None:
    assert fast[0] == slow[0], (fast, slow)
    if fast[0] == "error":
        assert fast[1] == slow[1]
        return
    a, b = fast[1], slow[1]
    assert a.probs.shape == b.probs.shape and a.probs.dtype == b.probs.dtype == np.float64
    assert np.array_equal(a.probs.view(np.uint64), b.probs.view(np.uint64))  # bit for bit
    assert a.pred.dtype == b.pred.dtype == np.int64 and np.array_equal(a.pred, b.pred)
    assert a.label.dtype == b.label.dtype == np.int64 and np.array_equal(a.label, b.label)
    assert (a.ids is None) == (b.ids is None)
    if a.ids is not None:
        assert a.ids.tolist() == b.ids.tolist()
    assert a.notes == b.notes and fast[2] == slow[2]


def _format(x: float, style: int) -> str:
    if style == 0:
        return repr(x)
    if style == 1:
        return f"{x:.17g}"
    if style == 2:
        return f"{x:.6e}"
    return f"{x:.9g}"


@needs_native
@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 60), k=st.integers(2, 5), with_id=st.booleans(), crlf=st.booleans(), bom=st.booleans(),
       tab=st.booleans(), final_newline=st.booleans(), style=st.integers(0, 3), seed=st.integers(0, 2**31 - 1))
def test_random_files_match_arrow(tmp_path_factory: pytest.TempPathFactory, n: int, k: int, with_id: bool,
                                  crlf: bool, bom: bool, tab: bool, final_newline: bool, style: int,
                                  seed: int) -> None:
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, size=(n, k))
    probs = (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)).astype(np.float32).astype(np.float64)
    pred = probs.argmax(axis=1)
    if n > 2 and seed % 3 == 0:
        pred[1] = (pred[1] + 1) % k  # pred not the argmax: a warning, identical in both readers
    label = rng.integers(0, k, n)
    sep = "\t" if tab else ","
    nl = "\r\n" if crlf else "\n"
    header = (["id"] if with_id else []) + ["pred"] + [f"p{c}" for c in range(k)] + ["label"]
    lines = [sep.join(header)]
    for i in range(n):
        fields = ([f"row-{i}é"] if with_id else []) + [str(pred[i])] + \
                 [_format(v, style) for v in probs[i]] + [str(label[i])]
        lines.append(sep.join(fields))
    text = nl.join(lines) + (nl if final_newline else "")
    path = tmp_path_factory.mktemp("f") / ("s.tsv" if tab else "s.csv")
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode())
    fast, slow = _read_both(path, monkeypatch=pytest.MonkeyPatch())
    _assert_same(fast, slow)


def _rows(*rows: str, header: str = "pred,p0,p1,label") -> str:
    return "\n".join([header, *rows]) + "\n"


# Inputs the fast parser either hands to pyarrow or flags for the numpy checks: the message (or
# the values and warnings) must be exactly those of the pyarrow reader.
EDGE = {
    "quoted": _rows('0,"0.9",0.1,0', "1,0.2,0.8,1"),
    "spaces": _rows("0, 0.9 ,0.1,0", "1,0.2,0.8,1"),
    "nan": _rows("0,0.9,0.1,0", "1,nan,0.8,1"),
    "inf_text": _rows("0,0.9,0.1,0", "1,0.2,inf,1"),
    "overflow": _rows("0,0.9,0.1,0", "1,0.2,1e400,1"),
    "above_one": _rows("0,1.2,-0.2,0"),
    "negative_zero": _rows("0,1.0,-0.0,0", "1,0,1,1"),
    "sum": _rows("0,0.9,0.1,0", "1,0.3,0.6,1"),
    "text": _rows("0,0.9,0.1,0", "1,abc,0.8,1"),
    "float_pred": _rows("0,0.9,0.1,0", "1.0,0.2,0.8,1"),
    "plus_pred": _rows("0,0.9,0.1,0", "+1,0.2,0.8,1"),
    "missing": _rows("0,0.9,0.1,0", "1,,0.8,1"),
    "short_row": _rows("0,0.9,0.1,0", "1,0.2,0.8"),
    "long_row": _rows("0,0.9,0.1,0", "1,0.2,0.8,1,5"),
    "blank_line": _rows("0,0.9,0.1,0", "", "1,0.2,0.8,1"),
    "trailing_blank_lines": _rows("0,0.9,0.1,0", "1,0.2,0.8,1", "", ""),
    "label_range": _rows("0,0.9,0.1,0", "1,0.2,0.8,2"),
    "negative_label": _rows("0,0.9,0.1,0", "1,0.2,0.8,-1"),
    "pred_range": _rows("0,0.9,0.1,0", "7,0.2,0.8,1"),
    "huge_int": _rows("0,0.9,0.1,0", "1,0.2,0.8,123456789012345678901"),
    "not_argmax": _rows("0,0.9,0.1,0", "0,0.2,0.8,1"),
    "near_tie": _rows("0,0.4999999,0.5000001,0"),
    "lone_cr": "pred,p0,p1,label\r0,0.9,0.1,0\r1,0.2,0.8,1\r",
    "semicolon_rows": "pred,p0,p1,label\n0;0.9;0.1;0\n",
    "long_digits": _rows("0,0.90000000000000000000000000001,0.09999999999999999999999999999,0"),
    "dup_id": _rows("a,0,0.9,0.1,0", "b,0,0.9,0.1,0", "a,1,0.2,0.8,1", header="id,pred,p0,p1,label"),
    "quoted_id": _rows('"a",0,0.9,0.1,0', "b,1,0.2,0.8,1", header="id,pred,p0,p1,label"),
    "empty_id": _rows(",0,0.9,0.1,0", "b,1,0.2,0.8,1", header="id,pred,p0,p1,label"),
    "bad_utf8_id": None,
    "header_only_newline": "pred,p0,p1,label\n\n",
}


@needs_native
@pytest.mark.parametrize("name", list(EDGE))
def test_edge_cases_match_arrow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    path = tmp_path / f"{name}.csv"
    if EDGE[name] is None:  # invalid UTF-8 in an id
        path.write_bytes(b"id,pred,p0,p1,label\n\xff\xfe,0,0.9,0.1,0\nb,1,0.2,0.8,1\n")
    else:
        path.write_bytes(EDGE[name].encode())
    fast, slow = _read_both(path, monkeypatch)
    _assert_same(fast, slow)


@needs_native
def test_bad_row_is_named_from_any_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 2000 good rows, one bad row far into the file: found by a later thread, same message.
    rows = ["0,0.75,0.25,0"] * 2000
    rows[1500] = "1,0.3,0.6,1"
    path = tmp_path / "late.csv"
    path.write_text(_rows(*rows))
    fast, slow = _read_both(path, monkeypatch)
    assert fast[0] == "error" and "row 1501" in fast[1]
    _assert_same(fast, slow)


@needs_native
def test_threads_split_at_line_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    p0 = rng.random(5000).astype(np.float32).astype(np.float64)
    lines = [f"{int(a < 0.5)},{a!r},{1.0 - a!r},{int(a < 0.5)}" for a in p0.tolist()]
    path = tmp_path / "many.csv"
    path.write_text(_rows(*lines))
    monkeypatch.setattr(fast_csv, "CHUNK_BYTES", 1000)
    results = [fast_csv.read_delimited_fast(path, len("pred,p0,p1,label\n"), ",", 2, False, sum_tolerance=1e-3,
                                            tie_tolerance=1e-6, threads=t) for t in (1, 2, 3, 7)]
    for r in results:
        assert r is not None and not r.needs_check
        assert np.array_equal(r.probs[:, 0], p0) and r.probs.shape == (5000, 2)
        assert np.array_equal(r.probs[:, 1], np.array([1.0 - a for a in p0.tolist()]))
        assert np.array_equal(r.pred, (p0 < 0.5).astype(np.int64))


# --------------------------------------------------------------------------------------------
# Analysis kernels: bit-identical to the numpy code they replace
# --------------------------------------------------------------------------------------------


def _pair(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = (1 / (1 + np.exp(-rng.normal(2, 1.5, n)))).astype(np.float32).astype(np.float64)
    b = np.clip(a + rng.normal(0, 0.05, n), 0, 1).astype(np.float32).astype(np.float64)
    return a, b


@needs_native
@pytest.mark.parametrize(("n", "as_float32"), [(60_001, True), (60_001, False), (1_000_003, True), (9, True)])
def test_wasserstein_and_sort_match_numpy(monkeypatch: pytest.MonkeyPatch, n: int, as_float32: bool) -> None:
    a, b = _pair(n, 1)
    if not as_float32:
        a = a + 1e-12  # no longer float32 values: the float64 sort path
    fast = confidence.wasserstein(a, b)
    sa = confidence._sorted(a)
    monkeypatch.setattr(fast_csv, "_native", None)
    slow = confidence.wasserstein(a, b)
    assert _bits(fast) == _bits(slow)
    assert np.array_equal(sa, np.sort(a))
    assert _bits(fast) == _bits(float(np.mean(np.abs(np.sort(a) - np.sort(b)))))


@needs_native
@pytest.mark.parametrize("n", [60_000, 200_003])
def test_histogram_bootstrap_matches_numpy(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    a, b = _pair(n, n)
    d = a - b
    mo = confidence._Moments.of(d)
    lo, hi = float(mo.centred.min()), float(mo.centred.max())
    fast = confidence._histogram_moments(mo.centred, mo.sq, lo, confidence.HISTOGRAM_BINS / (hi - lo))
    ci_fast = confidence.bootstrap_sigma_ci(d, 300, 5, method="histogram")
    monkeypatch.setattr(fast_csv, "_native", None)
    slow = confidence._histogram_moments(mo.centred, mo.sq, lo, confidence.HISTOGRAM_BINS / (hi - lo))
    for x, y in zip(fast, slow, strict=True):
        assert np.array_equal(x.view(np.uint64), y.view(np.uint64))
    assert fast[0].sum() == n
    assert ci_fast == confidence.bootstrap_sigma_ci(d, 300, 5, method="histogram")


@needs_native
def test_analyze_files_identical_with_and_without_extension(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    n = 150_000  # n_both above EXACT_BOOTSTRAP_MAX_N: the histogram bootstrap
    a, b = _pair(n, 11)
    rng = np.random.default_rng(2)
    label = rng.integers(0, 2, n)
    paths = []
    for name, p0 in (("t.csv", a), ("s.csv", b)):
        p1 = np.array([1.0 - x for x in p0.astype(np.float32).tolist()], dtype=np.float32).astype(np.float64)
        pred = (p1 > p0).astype(int)
        path = tmp_path / name
        path.write_text(_rows(*(f"{q},{x!r},{y!r},{lab}" for q, x, y, lab in
                                zip(pred.tolist(), p0.tolist(), p1.tolist(), label.tolist(), strict=True))))
        paths.append(path)
    with monkeypatch.context() as m:
        m.setattr(fast_csv, "CHUNK_BYTES", 1 << 16)
        fast = confidence.analyze_files(*paths, kappa=0.05).to_dict()
    monkeypatch.setattr(fast_csv, "_native", None)
    slow = confidence.analyze_files(*paths, kappa=0.05).to_dict()
    assert fast["bootstrap_method"] == "histogram"
    assert json_equal(fast, slow)
    assert math.isfinite(fast["wasserstein"]) and fast["sigma"] > 0


def json_equal(a: object, b: object) -> bool:
    """Exact equality of JSON-like values (floats compared bit for bit, NaN == NaN)."""
    if isinstance(a, float) and isinstance(b, float):
        return _bits(a) == _bits(b) or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return a == b


@pytest.mark.parametrize("level", [0.95, 0.9, 0.5, 0.0, 1.0])
def test_bootstrap_quantiles_match_numpy(level: float) -> None:
    rng = np.random.default_rng(int(level * 100))
    for m in (1, 2, 3, 10, 999, 1000, 1001):
        x = rng.normal(0.04, 0.001, m)
        tail = (1.0 - level) / 2.0
        got = confidence._quantiles(x, [tail, 1.0 - tail])
        want = np.quantile(x, [tail, 1.0 - tail])
        assert np.array_equal(got.view(np.uint64), want.view(np.uint64)), (m, got, want)

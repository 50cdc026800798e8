/*
 * _native: single-pass parser for the softmax CSV/TSV format `[id,]pred,p0,...,p{k-1},label`.
 *
 * Used by confdistill.prediction.fast_csv (which owns the Python side: header checks, threads,
 * fallbacks). Functions work on a byte range [start, end) of a buffer (an mmap of the file)
 * whose rows start at `start`; they release the GIL, so Python threads parse disjoint ranges of
 * one file concurrently.
 *
 * Exactness: every probability is the correctly rounded float64 of its decimal text, i.e.
 * bit-identical to Python's float() of the field:
 *   - up to 19 significant digits (digits read eight at a time): the Eisel-Lemire algorithm
 *     with 128-bit truncated powers of five (table built in Python with big integers,
 *     fast_csv._pow5_table); the 128-bit product is always sufficient (Mushtak & Lemire, "Fast
 *     number parsing without fallback", 2023), and the classic "cannot decide" guard still
 *     falls back to strtod. (Clinger's exact fast path for <= 2^53 was dropped: with 16- and
 *     17-digit values at random its branch mispredicts and made the parse ~15% slower.)
 *   - more than 19 significant digits, or the guard: glibc's strtod_l in the "C" locale
 *     (correctly rounded). Without glibc, such a field makes the whole parse fail (the caller
 *     then uses pyarrow).
 * Anything outside the simple grammar (quotes, spaces, nan/inf, blank lines, a wrong number of
 * fields, integers that are not plain digits) returns "not handled" and the caller falls back to
 * the pyarrow reader, whose error messages are the reference.
 *
 * Compiled with -ffp-contract=off: the row checks must round exactly like numpy's passes.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#if defined(__GLIBC__)
#include <locale.h>
#define HAVE_STRTOD_L 1
static locale_t c_locale = (locale_t)0;
#else
#define HAVE_STRTOD_L 0
#endif

#define SMALLEST_POW5 (-342)
#define LARGEST_POW5 308
#define POW5_ENTRIES (LARGEST_POW5 - SMALLEST_POW5 + 1)

/* (hi, lo) 128-bit truncated powers of five, q = -342..308 (set once by set_pow5_table). */
static uint64_t pow5_table[2 * POW5_ENTRIES];
static int pow5_ready = 0;

static const uint64_t pow10_u64[9] = {1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000};

typedef unsigned __int128 u128;

#define INLINE static inline __attribute__((always_inline))

INLINE int is_digit(char c) { return (unsigned char)(c - '0') < 10; }

/* SWAR: eight ASCII digits at once (as in fast_float / simdjson); the first byte must land in
 * the lowest byte of the word, hence the swap on big-endian machines. */
INLINE uint64_t read8(const char *p) {
    uint64_t v;
    memcpy(&v, p, sizeof v);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

/* Eight digit values (0..9, one per byte, first digit in the lowest byte) -> their number. */
INLINE uint64_t parse_8values(uint64_t v) {
    const uint64_t mask = 0x000000FF000000FFULL;
    const uint64_t mul1 = 0x000F424000000064ULL; /* 100 + (1000000 << 32) */
    const uint64_t mul2 = 0x0000271000000001ULL; /* 1 + (10000 << 32) */
    v = (v * 10) + (v >> 8);
    v = (((v & mask) * mul1) + (((v >> 16) & mask) * mul2)) >> 32;
    return (uint32_t)v;
}

/* Non-digit bytes of eight (x = bytes ^ '0'...): bit 7 set in each byte that is not 0..9 (carries
 * only spill into higher bytes, which lie after the first non-digit and are ignored). */
INLINE uint64_t nondigits(uint64_t x) {
    return ((x + 0x7676767676767676ULL) | x) & 0x8080808080808080ULL;
}

/* Accumulate the digits at p into *w (wrapping past 19 digits: the caller checks the count).
 * Eight bytes at a time: the leading run of digits in a word is found without a branch per
 * digit (a data-dependent branch per digit costs more than the arithmetic on this hardware). */
INLINE const char *scan_digits(const char *p, const char *end, uint64_t *w) {
    uint64_t acc = *w;
    while (end - p >= 8) {
        uint64_t x = read8(p) ^ 0x3030303030303030ULL; /* digits become bytes 0..9 */
        uint64_t m = nondigits(x);
        if (m == 0) {
            acc = acc * 100000000ULL + parse_8values(x);
            p += 8;
            continue;
        }
        int d = __builtin_ctzll(m) >> 3; /* digits before the first non-digit, 0..7 */
        /* Branch-free for d = 0 too (the shift in two steps gives 0 instead of undefined): 16 or
         * 17 digits vary at random in these files, and a mispredicted branch costs ~20 cycles. */
        acc = acc * pow10_u64[d] + parse_8values((x << (63 - 8 * d)) << 1);
        p += d;
        *w = acc;
        return p;
    }
    while (p < end && is_digit(*p)) {
        acc = acc * 10 + (uint64_t)(*p - '0');
        p++;
    }
    *w = acc;
    return p;
}

/* Eisel-Lemire: w (> 0, < 2^64) * 10^q as float64 bits without sign; returns 0 if undecided. */
INLINE int eisel_lemire(uint64_t w, int64_t q, uint64_t *bits) {
    if (q < SMALLEST_POW5) {
        *bits = 0;
        return 1;
    }
    if (q > LARGEST_POW5) {
        *bits = (uint64_t)0x7FF << 52;
        return 1;
    }
    int lz = __builtin_clzll(w);
    w <<= lz;
    const int index = 2 * (int)(q - SMALLEST_POW5);
    u128 first = (u128)w * pow5_table[index];
    uint64_t hi = (uint64_t)(first >> 64), lo = (uint64_t)first;
    const uint64_t precision_mask = 0xFFFFFFFFFFFFFFFFULL >> 55; /* 52 mantissa bits + 3 */
    if ((hi & precision_mask) == precision_mask) {
        u128 second = (u128)w * pow5_table[index + 1];
        uint64_t shi = (uint64_t)(second >> 64);
        lo += shi;
        if (shi > lo) hi++;
    }
    /* The classic "cannot decide" case of Eisel-Lemire; proven unreachable with 128-bit powers
     * and w < 2^64 (Mushtak & Lemire), kept as a cheap safety net. */
    if (lo == 0xFFFFFFFFFFFFFFFFULL && (q < -27 || q > 55)) return 0;
    int upperbit = (int)(hi >> 63);
    int shift = upperbit + 64 - 52 - 3;
    uint64_t mantissa = hi >> shift;
    int32_t power2 = (int32_t)(((((152170 + 65536) * (int32_t)q) >> 16) + 63) + upperbit - lz + 1023);
    if (power2 <= 0) { /* subnormal */
        if (-power2 + 1 >= 64) {
            *bits = 0;
            return 1;
        }
        mantissa >>= -power2 + 1;
        mantissa += (mantissa & 1);
        mantissa >>= 1;
        power2 = (mantissa < ((uint64_t)1 << 52)) ? 0 : 1;
        *bits = (mantissa & ~((uint64_t)1 << 52)) | ((uint64_t)power2 << 52);
        return 1;
    }
    if (lo <= 1 && q >= -4 && q <= 23 && (mantissa & 3) == 1) {
        if ((mantissa << shift) == hi) mantissa &= ~(uint64_t)1; /* exactly halfway: to even */
    }
    mantissa += (mantissa & 1);
    mantissa >>= 1;
    if (mantissa >= ((uint64_t)2 << 52)) {
        mantissa = (uint64_t)1 << 52;
        power2++;
    }
    mantissa &= ~((uint64_t)1 << 52);
    if (power2 >= 0x7FF) {
        *bits = (uint64_t)0x7FF << 52;
        return 1;
    }
    *bits = mantissa | ((uint64_t)power2 << 52);
    return 1;
}

/* Correctly rounded strtod of text [s, e) in the C locale; returns 0 if unavailable/unparsed. */
static int slow_parse(const char *s, const char *e, double *out) {
#if HAVE_STRTOD_L
    if (c_locale == (locale_t)0) return 0;
    size_t len = (size_t)(e - s);
    char stackbuf[128];
    char *buf = len < sizeof(stackbuf) ? stackbuf : (char *)malloc(len + 1);
    if (buf == NULL) return 0;
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *endp = NULL;
    double v = strtod_l(buf, &endp, c_locale);
    int ok = endp == buf + len;
    if (buf != stackbuf) free(buf);
    if (!ok) return 0;
    *out = v;
    return 1;
#else
    (void)s;
    (void)e;
    (void)out;
    return 0;
#endif
}

/* w * 10^q (w < 2^64) as the correctly rounded float64, negated if neg; 0 if undecided. */
INLINE int finish_f64(uint64_t w, int64_t q, int neg, const char *field, const char *p, double *out) {
    double v;
    if (w == 0) {
        v = 0.0;
    } else {
        uint64_t bits;
        if (!eisel_lemire(w, q, &bits)) return slow_parse(field, p, out);
        memcpy(&v, &bits, sizeof v);
    }
    *out = neg ? -v : v;
    return 1;
}

/* Parse `[+-]digits[.digits][(e|E)[+-]digits]` (or `[+-].digits...`) at *pp; 0 on failure. */
INLINE int parse_f64(const char **pp, const char *end, double *out) {
    const char *p = *pp;
    const char *field = p;
    int neg = 0;
    if (p < end && (*p == '-' || *p == '+')) {
        neg = *p == '-';
        p++;
    }
    /* Fast path for how probabilities are written ("0." and 16-19 digits, no exponent): three
     * independent 8-byte loads instead of the digit loop. Anything else takes the general path. */
    if (end - p >= 26 && p[0] == '0' && p[1] == '.') {
        uint64_t x1 = read8(p + 2) ^ 0x3030303030303030ULL, x2 = read8(p + 10) ^ 0x3030303030303030ULL;
        uint64_t x3 = read8(p + 18) ^ 0x3030303030303030ULL;
        uint64_t m3 = nondigits(x3);
        if ((nondigits(x1) | nondigits(x2)) == 0 && m3 != 0) {
            int d = __builtin_ctzll(m3) >> 3; /* digits after the first 16 */
            /* The byte after the digits, taken from the register rather than loaded again (a
             * load here would sit on the critical path from one field to the next). */
            uint64_t next = (x3 >> (8 * d)) & 0xFF;
            if (d <= 3 && next != ('e' ^ '0') && next != ('E' ^ '0')) { /* <= 19 digits, no exponent */
                uint64_t w = parse_8values(x1) * 100000000ULL + parse_8values(x2);
                w = w * pow10_u64[d] + parse_8values((x3 << (63 - 8 * d)) << 1);
                p += 18 + d;
                *pp = p;
                return finish_f64(w, -(16 + d), neg, field, p, out);
            }
        }
    }
    const char *digits = p;
    uint64_t w = 0;
    p = scan_digits(p, end, &w);
    int64_t nd = p - digits, nfrac = 0;
    if (p < end && *p == '.') {
        p++;
        const char *f = p;
        p = scan_digits(p, end, &w);
        nfrac = p - f;
        nd += nfrac;
    }
    if (nd == 0) return 0;
    int64_t exp10 = 0;
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        int eneg = 0;
        if (p < end && (*p == '-' || *p == '+')) {
            eneg = *p == '-';
            p++;
        }
        const char *e = p;
        while (p < end && is_digit(*p)) {
            if (exp10 < 100000000) exp10 = exp10 * 10 + (*p - '0');
            p++;
        }
        if (p == e) return 0;
        if (eneg) exp10 = -exp10;
    }
    *pp = p;
    if (nd > 19) { /* leading zeros are not significant */
        for (const char *s = digits; s < p && (*s == '0' || *s == '.'); s++) nd -= *s == '0';
        if (nd > 19) return slow_parse(field, p, out);
    }
    return finish_f64(w, exp10 - nfrac, neg, field, p, out);
}

/* `-?digits` (at most 18 digits) at *pp; 0 on failure. */
INLINE int parse_i64(const char **pp, const char *end, int64_t *out) {
    const char *p = *pp;
    int neg = 0;
    if (p < end && *p == '-') {
        neg = 1;
        p++;
    }
    const char *d = p;
    int64_t v = 0;
    while (p < end && is_digit(*p)) {
        v = v * 10 + (*p - '0');
        p++;
    }
    if (p == d || p - d > 18) return 0;
    *pp = p;
    *out = neg ? -v : v;
    return 1;
}

static PyObject *set_pow5_table(PyObject *self, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    if (view.len != (Py_ssize_t)sizeof(pow5_table)) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "pow5 table has the wrong size");
        return NULL;
    }
    memcpy(pow5_table, view.buf, sizeof(pow5_table));
    PyBuffer_Release(&view);
    pow5_ready = 1;
    Py_RETURN_NONE;
}

/* count_rows(buf, start, end) -> rows in [start, end): newlines, plus a last unterminated line. */
static PyObject *count_rows(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t start, end;
    if (!PyArg_ParseTuple(args, "y*nn", &view, &start, &end)) return NULL;
    if (start < 0 || end > view.len || start > end) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "bad range");
        return NULL;
    }
    const unsigned char *p = (const unsigned char *)view.buf;
    Py_ssize_t count = 0;
    Py_BEGIN_ALLOW_THREADS
    Py_ssize_t i = start;
#if defined(__SSE2__)
    /* 16 bytes per step; per-byte match counters (0..255) summed every 255 steps. */
    const __m128i nl = _mm_set1_epi8('\n');
    while (end - i >= 16) {
        __m128i acc = _mm_setzero_si128();
        int steps = 0;
        for (; steps < 255 && end - i >= 16; steps++, i += 16)
            acc = _mm_sub_epi8(acc, _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(p + i)), nl));
        __m128i sums = _mm_sad_epu8(acc, _mm_setzero_si128());
        count += (Py_ssize_t)_mm_cvtsi128_si64(sums) + (Py_ssize_t)_mm_cvtsi128_si64(_mm_unpackhi_epi64(sums, sums));
    }
#endif
    for (; i < end; i++) count += p[i] == '\n';
    if (end > start && p[end - 1] != '\n') count++;
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(count);
}

/* The row loop of parse(); returns the rows parsed (failed/needs_check set as described there). */
INLINE Py_ssize_t parse_rows(const char *base, Py_ssize_t start, Py_ssize_t end, int at_eof, const int k,
                             const int have_ids, const char delim, Py_ssize_t row0, Py_ssize_t n, double *probs,
                             int64_t *pred, int64_t *label, int64_t *idoff, int64_t *idlen, double *vals,
                             double sum_tol, double tie_tol, int *needs_check_out, int *failed_out) {
    int needs_check = 0, failed = 0;
    const char *p = base + start, *stop = base + end;
    Py_ssize_t r = row0;
    while (p < stop) {
        if (r >= n) {
            failed = 1;
            break;
        }
        if (have_ids) {
            const char *s = p;
            while (p < stop && *p != delim && *p != '\n' && *p != '\r' && *p != '"') p++;
            if (p >= stop || *p != delim) {
                failed = 1;
                break;
            }
            idoff[r] = s - base;
            idlen[r] = p - s;
            p++;
        }
        int64_t pr, lb;
        if (!parse_i64(&p, stop, &pr) || p >= stop || *p != delim) {
            failed = 1;
            break;
        }
        p++;
        int c;
        for (c = 0; c < k; c++) {
            if (!parse_f64(&p, stop, &vals[c]) || p >= stop || *p != delim) break;
            p++;
        }
        if (c < k || !parse_i64(&p, stop, &lb)) {
            failed = 1;
            break;
        }
        if (p < stop) {
            if (*p == '\n') {
                p++;
            } else if (*p == '\r' && p + 1 < stop && p[1] == '\n') {
                p += 2;
            } else {
                failed = 1;
                break;
            }
        } else if (!at_eof) {
            failed = 1;
            break;
        }
        /* The numpy checks of validate_arrays, row by row, same operations and order. */
        double v0 = vals[0], total = v0, mx = v0;
        int ok = v0 >= 0.0 && v0 <= 1.0;
        probs[r] = v0;
        for (c = 1; c < k; c++) {
            double v = vals[c];
            probs[(size_t)c * n + r] = v;
            ok &= v >= 0.0 && v <= 1.0;
            total += v;
            mx = v > mx ? v : mx;
        }
        if (!ok || fabs(total - 1.0) > sum_tol || pr < 0 || pr >= k || lb < 0 || lb >= k ||
            vals[pr] + tie_tol < mx)
            needs_check = 1;
        pred[r] = pr;
        label[r] = lb;
        r++;
    }
    *needs_check_out = needs_check;
    *failed_out = failed;
    return r - row0;
}

/*
 * parse(buf, start, end, at_eof, k, has_id, delim, row0, n, probs, pred, label, id_off, id_len,
 *       sum_tol, tie_tol) -> (rows parsed or -1, needs_check)
 *
 * probs: float64 buffer of k*n (column c at c*n); pred, label: int64 buffers of n; rows of this
 * range go to row0, row0+1, ... id_off/id_len: int64 buffers of n (byte offset and length of the
 * id field) when has_id, else None. Returns rows = -1 when the text is outside the grammar
 * (caller falls back). needs_check = 1 when some row would fail (or warn in) the validation:
 * a probability outside [0, 1], |row sum - 1| > sum_tol, pred/label outside [0, k), or pred's
 * probability + tie_tol < the row maximum -- the same float64 operations as the numpy checks.
 */
static PyObject *parse(PyObject *self, PyObject *args) {
    Py_buffer text, probs_b, pred_b, label_b, idoff_b = {0}, idlen_b = {0};
    Py_ssize_t start, end, row0, n;
    int at_eof, k, has_id;
    int delim_i;
    PyObject *idoff_o, *idlen_o;
    double sum_tol, tie_tol;
    if (!pow5_ready) {
        PyErr_SetString(PyExc_RuntimeError, "set_pow5_table() was not called");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "y*nnpipinnw*w*w*OOdd", &text, &start, &end, &at_eof, &k, &has_id, &delim_i,
                          &row0, &n, &probs_b, &pred_b, &label_b, &idoff_o, &idlen_o, &sum_tol, &tie_tol))
        return NULL;
    int have_ids = 0;
    PyObject *result = NULL;
    if (has_id) {
        if (PyObject_GetBuffer(idoff_o, &idoff_b, PyBUF_WRITABLE) < 0) goto done;
        if (PyObject_GetBuffer(idlen_o, &idlen_b, PyBUF_WRITABLE) < 0) {
            PyBuffer_Release(&idoff_b);
            goto done;
        }
        have_ids = 1;
    }
    if (k < 1 || start < 0 || end > text.len || start > end || row0 < 0 || row0 > n ||
        probs_b.len < (Py_ssize_t)sizeof(double) * k * n || pred_b.len < (Py_ssize_t)sizeof(int64_t) * n ||
        label_b.len < (Py_ssize_t)sizeof(int64_t) * n ||
        (have_ids && (idoff_b.len < (Py_ssize_t)sizeof(int64_t) * n || idlen_b.len < (Py_ssize_t)sizeof(int64_t) * n))) {
        PyErr_SetString(PyExc_ValueError, "bad arguments");
        goto done;
    }
    double *vals = (double *)malloc(sizeof(double) * (size_t)k);
    if (vals == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    const char delim = (char)delim_i;
    const char *base = (const char *)text.buf;
    double *probs = (double *)probs_b.buf;
    int64_t *pred = (int64_t *)pred_b.buf, *label = (int64_t *)label_b.buf;
    int64_t *idoff = have_ids ? (int64_t *)idoff_b.buf : NULL, *idlen = have_ids ? (int64_t *)idlen_b.buf : NULL;
    Py_ssize_t rows = 0;
    int needs_check = 0, failed = 0;
    Py_BEGIN_ALLOW_THREADS
    rows = parse_rows(base, start, end, at_eof, k, have_ids, delim, row0, n, probs, pred, label, idoff, idlen, vals,
                      sum_tol, tie_tol, &needs_check, &failed);
    Py_END_ALLOW_THREADS
    free(vals);
    result = Py_BuildValue("ni", failed ? (Py_ssize_t)-1 : rows, needs_check);
done:
    if (have_ids) {
        PyBuffer_Release(&idoff_b);
        PyBuffer_Release(&idlen_b);
    }
    PyBuffer_Release(&text);
    PyBuffer_Release(&probs_b);
    PyBuffer_Release(&pred_b);
    PyBuffer_Release(&label_b);
    return result;
}

/* parse_float(bytes) -> float: the field parser on one token (for tests); ValueError if rejected. */
static PyObject *parse_float(PyObject *self, PyObject *arg) {
    Py_buffer view;
    if (!pow5_ready) {
        PyErr_SetString(PyExc_RuntimeError, "set_pow5_table() was not called");
        return NULL;
    }
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    const char *p = (const char *)view.buf, *end = p + view.len;
    double v;
    int ok = parse_f64(&p, end, &v) && p == end;
    PyBuffer_Release(&view);
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "not a number in the fast grammar");
        return NULL;
    }
    return PyFloat_FromDouble(v);
}

/* ---- numeric kernels for confdistill.properties.confidence (bit-identical to its numpy code) ---- */

/* histogram_moments(centred, sq, lo, scale, bins, counts, s1, s2) -> bool: per bin
 * min(int((centred - lo) * scale), bins - 1): row count (int64), sums of centred and of sq
 * (float64, added in row order from 0.0: exactly np.bincount(idx, weights=...)).
 * False (nothing usable) if a position is NaN or negative: the caller uses numpy then. */
static PyObject *histogram_moments(PyObject *self, PyObject *args) {
    Py_buffer cb, qb, nb, s1b, s2b;
    double lo, scale;
    Py_ssize_t bins;
    if (!PyArg_ParseTuple(args, "y*y*ddnw*w*w*", &cb, &qb, &lo, &scale, &bins, &nb, &s1b, &s2b)) return NULL;
    Py_ssize_t n = cb.len / (Py_ssize_t)sizeof(double);
    PyObject *result = NULL;
    if (bins < 1 || qb.len != cb.len || nb.len < bins * (Py_ssize_t)sizeof(int64_t) ||
        s1b.len < bins * (Py_ssize_t)sizeof(double) || s2b.len < bins * (Py_ssize_t)sizeof(double)) {
        PyErr_SetString(PyExc_ValueError, "bad arguments");
        goto done;
    }
    const double *c = (const double *)cb.buf, *q = (const double *)qb.buf;
    int64_t *cnt = (int64_t *)nb.buf;
    double *s1 = (double *)s1b.buf, *s2 = (double *)s2b.buf;
    int bad = 0;
    Py_BEGIN_ALLOW_THREADS
    memset(cnt, 0, (size_t)bins * sizeof(int64_t));
    for (Py_ssize_t b = 0; b < bins; b++) s1[b] = s2[b] = 0.0;
    for (Py_ssize_t i = 0; i < n; i++) {
        double pos = c[i] - lo;
        pos *= scale;
        if (!(pos >= 0.0 && pos < 9.0e18)) {
            bad = 1;
            break;
        }
        int64_t idx = (int64_t)pos; /* truncation, as ndarray.astype(np.intp) */
        if (idx > bins - 1) idx = bins - 1;
        cnt[idx]++;
        s1[idx] += c[i];
        s2[idx] += q[i];
    }
    Py_END_ALLOW_THREADS
    result = PyBool_FromLong(!bad);
done:
    PyBuffer_Release(&cb);
    PyBuffer_Release(&qb);
    PyBuffer_Release(&nb);
    PyBuffer_Release(&s1b);
    PyBuffer_Release(&s2b);
    return result;
}

/* to_float32_exact(x, out) -> bool: out = float32(x) for float64 x; False when some value is
 * not exactly a float32 (NaN included), i.e. np.array_equal(x.astype(np.float32), x). */
static PyObject *to_float32_exact(PyObject *self, PyObject *args) {
    Py_buffer xb, ob;
    if (!PyArg_ParseTuple(args, "y*w*", &xb, &ob)) return NULL;
    Py_ssize_t n = xb.len / (Py_ssize_t)sizeof(double);
    if (ob.len != n * (Py_ssize_t)sizeof(float)) {
        PyBuffer_Release(&xb);
        PyBuffer_Release(&ob);
        PyErr_SetString(PyExc_ValueError, "bad arguments");
        return NULL;
    }
    const double *x = (const double *)xb.buf;
    float *o = (float *)ob.buf;
    int exact = 1;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        float f = (float)x[i];
        o[i] = f;
        exact &= (double)f == x[i];
        if ((i & 4095) == 4095 && !exact) break;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&xb);
    PyBuffer_Release(&ob);
    return PyBool_FromLong(exact);
}

/* numpy's pairwise summation (loops_utils.h: blocks of 128 with 8 accumulators, halves rounded to
 * multiples of 8) of the terms |float64(a[i]) - float64(b[i])|: the same float64 value as
 * np.add.reduce(np.abs(a.astype(np.float64) - b.astype(np.float64))) on a contiguous array,
 * without materialising the difference array. */
static double pairwise_absdiff(const float *a, const float *b, Py_ssize_t n) {
    if (n < 8) {
        double res = 0.0;
        for (Py_ssize_t i = 0; i < n; i++) res += fabs((double)a[i] - (double)b[i]);
        return res;
    }
    if (n <= 128) {
        double r[8];
        for (int j = 0; j < 8; j++) r[j] = fabs((double)a[j] - (double)b[j]);
        Py_ssize_t i;
        for (i = 8; i < n - (n % 8); i += 8)
            for (int j = 0; j < 8; j++) r[j] += fabs((double)a[i + j] - (double)b[i + j]);
        double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++) res += fabs((double)a[i] - (double)b[i]);
        return res;
    }
    Py_ssize_t n2 = n / 2;
    n2 -= n2 % 8;
    return pairwise_absdiff(a, b, n2) + pairwise_absdiff(a + n2, b + n2, n - n2);
}

/* mean_abs_diff_f32(a, b) -> float: np.mean(np.abs(float64(a) - float64(b))) for float32 a, b. */
static PyObject *mean_abs_diff_f32(PyObject *self, PyObject *args) {
    Py_buffer ab, bb;
    if (!PyArg_ParseTuple(args, "y*y*", &ab, &bb)) return NULL;
    Py_ssize_t n = ab.len / (Py_ssize_t)sizeof(float);
    if (bb.len != ab.len || n == 0) {
        PyBuffer_Release(&ab);
        PyBuffer_Release(&bb);
        PyErr_SetString(PyExc_ValueError, "bad arguments");
        return NULL;
    }
    double total;
    Py_BEGIN_ALLOW_THREADS
    total = 0.0 + pairwise_absdiff((const float *)ab.buf, (const float *)bb.buf, n);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&ab);
    PyBuffer_Release(&bb);
    return PyFloat_FromDouble(total / (double)n);
}

static PyMethodDef methods[] = {
    {"mean_abs_diff_f32", mean_abs_diff_f32, METH_VARARGS, "mean_abs_diff_f32(a, b) -> float (see the C source)."},
    {"histogram_moments", histogram_moments, METH_VARARGS, "Bootstrap histogram pass (see the C source)."},
    {"to_float32_exact", to_float32_exact, METH_VARARGS, "to_float32_exact(x, out) -> bool"},
    {"set_pow5_table", set_pow5_table, METH_O, "Install the 128-bit powers-of-five table (bytes)."},
    {"count_rows", count_rows, METH_VARARGS, "count_rows(buf, start, end) -> int"},
    {"parse", parse, METH_VARARGS, "parse(...) -> (rows or -1, needs_check); see the C source."},
    {"parse_float", parse_float, METH_O, "parse_float(bytes) -> float (tests)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_native",
                                    "Fast exact softmax CSV parser and analysis kernels.", -1,
                                    methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__native(void) {
#if HAVE_STRTOD_L
    if (c_locale == (locale_t)0) c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
#endif
    return PyModule_Create(&module);
}

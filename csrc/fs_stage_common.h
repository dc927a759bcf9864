/* Row helpers shared by the stage kernels (static inline; no cffi declarations).
 *
 * The one copy of the helpers that stages.c and stages_extra.c both use: entry
 * checks, the row max, numpy's pairwise float64 summation, softmax weights and
 * entropy, the k-th largest finite value, the min_keep floor and the Z-function of a
 * reversed history window. What the core kernels need too (size check, saturation,
 * float32 rounding, quickselect, exp constants) is in fs_util.h. Header-only so that
 * each stage file still compiles to self-contained, inlinable code.
 * The weights and the entropy use fsc_exp / fsc_log, vectorisable polynomial
 * versions of libm's functions, in row loops compiled per ISA (FSC_PER_ISA).
 */
#ifndef FS_STAGE_COMMON_H
#define FS_STAGE_COMMON_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "fastsample.h" /* fs_cpu_isa */
#include "fs_util.h"    /* checks, saturation, float32 rounding, quickselect, exp constants */
#include "stages.h"

#define FSC_MASS_TOL 1e-6 /* docs/spec.md §4: cum >= p - 1e-6 */
#define FSC_HEAP_MAX 256  /* k-th largest: heap up to this k, else quickselect */

/* ---------------------------------------------------------------- checks */

/* B rows of V: sizes non-negative, B * V representable, buffers present; B = 0
 * passes with any V >= 0 (the core kernels want V >= 1 even then). */
static inline int fsc_check_block(const float *logits, const float *out, int64_t B,
                                  int64_t V) {
    if (B == 0 && V >= 0)
        return FS_STAGE_OK;
    return fs_block_ok(logits, out, B, V, INT64_MAX) ? FS_STAGE_OK : FS_STAGE_E_SIZE;
}

static inline int fsc_check_ws(const void *ws, int64_t len, int64_t need) {
    if (need <= 0)
        return FS_STAGE_OK;
    return (ws && len >= need) ? FS_STAGE_OK : FS_STAGE_E_SIZE;
}

/* Offsets of B histories into nhist tokens: 0 <= o[0] <= ... <= o[B] <= nhist. */
static inline int fsc_check_offsets(const int64_t *hist, int64_t nhist,
                                    const int64_t *offsets, int64_t B) {
    if (nhist < 0 || !offsets || (nhist > 0 && !hist))
        return FS_STAGE_E_SIZE;
    if (offsets[0] < 0)
        return FS_STAGE_E_OFFSETS;
    for (int64_t b = 0; b < B; b++)
        if (offsets[b + 1] < offsets[b])
            return FS_STAGE_E_OFFSETS;
    return offsets[B] <= nhist ? FS_STAGE_OK : FS_STAGE_E_OFFSETS;
}

/* Entry checks of a kernel over B rows and their histories: the block, then the
 * offsets (not read when B = 0; the caller returns early on B = 0 too). */
static inline int fsc_check_hist_block(const float *logits, const float *out, int64_t B,
                                       int64_t V, const int64_t *hist, int64_t nhist,
                                       const int64_t *offsets) {
    int rc = fsc_check_block(logits, out, B, V);
    if (rc || B == 0)
        return rc;
    return fsc_check_offsets(hist, nhist, offsets, B);
}

static inline int fsc_check_tokens(const int64_t *hist, int64_t start, int64_t end,
                                   int64_t V) {
    /* one unsigned compare per token and no early exit: the loop vectorises (a
     * negative token is a huge unsigned one) */
    uint64_t bad = 0;
    for (int64_t i = start; i < end; i++)
        bad |= (uint64_t)hist[i] >= (uint64_t)V;
    return bad ? FS_STAGE_E_HISTORY : FS_STAGE_OK;
}

/* ---------------------------------------------------------------- row helpers */

/* numpy's pairwise summation of a contiguous float64 array: np.sum's rounding. */
static inline double fsc_pairwise(const double *a, int64_t n) {
    if (n < 8) {
        double r = 0.0;
        for (int64_t i = 0; i < n; i++)
            r += a[i];
        return r;
    }
    if (n <= 128) {
        double r[8];
        int64_t i;
        for (int j = 0; j < 8; j++)
            r[j] = a[j];
        for (i = 8; i < n - (n % 8); i += 8)
            for (int j = 0; j < 8; j++)
                r[j] += a[i + j];
        double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++)
            res += a[i];
        return res;
    }
    int64_t n2 = n / 2;
    n2 -= n2 % 8;
    return fsc_pairwise(a, n2) + fsc_pairwise(a + n2, n - n2);
}

static inline double fsc_pw_sum(const double *a, int64_t n) {
    return n <= 0 ? 0.0 : fsc_pairwise(a, n);
}

/* ---------------------------------------------------------------- exp and log */

/* fsc_exp: float64 exp without a libm call, so that a loop of it vectorises.
 * x = k ln2 + r with k = round(x / ln2) (the 1.5 * 2^52 shift rounds to an integer)
 * and r = (x - k LN2_HI) - k LN2_LO, where k LN2_HI and the first subtraction are exact
 * (LN2_HI has 32 significant bits); exp(r) = 1 + r + r^2 q(r), q the Taylor series
 * to r^11 / 13! (truncation < 1e-17 relative on |r| <= ln2 / 2), by Estrin's scheme
 * for short dependency chains; 2^k as two exact power-of-two factors, so a subnormal
 * result is rounded once. Measured against glibc's exp (csrc/tests/test_stages.c):
 * at most 1 ulp over [-746, 710], 1 unit of the last subnormal place below 2^-1022;
 * x <= -746 and -inf give 0, x >= 710 and +inf give +inf, NaN gives NaN.
 * Only IEEE multiply, add and bit moves, no FMA: the result is the same bit for bit
 * in scalar code and in every vector width (FSC_PER_ISA below). */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF /* gcc does not fuse under -std=c99; clang must be told */
#endif

/* Why a second exp beside the core's (fs_simd.inc expw/exp4/exp8): stage results must
 * not depend on the CPU, so this one has no FMA and gives the same bits at every
 * ISA; the core's takes FMA per level for the canonical chain's speed. The constants
 * (FS_EXP_*, the 1/n! coefficients FS_RF*) are shared, in fs_util.h. */

/* 2^k for an integer-valued k in [-1022, 1023]: k + 1023 lands in the low mantissa
 * bits of k + SHIFT_BIAS and is shifted into the exponent field. */
static inline double fsc_pow2i(double k) {
    double kb = k + FS_EXP_SHIFT_BIAS;
    uint64_t bits;
    memcpy(&bits, &kb, sizeof bits);
    bits <<= 52;
    double s;
    memcpy(&s, &bits, sizeof s);
    return s;
}

static inline double fsc_exp(double x) {
    x = x < -746.0 ? -746.0 : x; /* the result rounds to 0 / overflows anyway; NaN stays */
    x = x > 710.0 ? 710.0 : x;
    const double k = (x * FS_EXP_LOG2E + FS_EXP_SHIFT) - FS_EXP_SHIFT;
    const double r = (x - k * FS_EXP_LN2_HI) - k * FS_EXP_LN2_LO;
    const double r2 = r * r, r4 = r2 * r2, r8 = r4 * r4;
    /* coefficients 1 / (i + 2)!, i = 0 .. 11 */
    const double q01 = FS_RF2 + r * FS_RF3;
    const double q23 = FS_RF4 + r * FS_RF5;
    const double q45 = FS_RF6 + r * FS_RF7;
    const double q67 = FS_RF8 + r * FS_RF9;
    const double q89 = FS_RF10 + r * FS_RF11;
    const double qab = FS_RF12 + r * FS_RF13;
    const double q = ((q01 + r2 * q23) + r4 * (q45 + r2 * q67)) + r8 * (q89 + r2 * qab);
    const double p = 1.0 + (r + r2 * q);
    const double k1 = (k * 0.5 + FS_EXP_SHIFT) - FS_EXP_SHIFT; /* |k1|, |k - k1| <= 539 */
    return (p * fsc_pow2i(k1)) * fsc_pow2i(k - k1);
}

/* fsc_log: float64 natural log without a libm call (vectorisable, like fsc_exp).
 * x = 2^e m with m in [sqrt(1/2), sqrt(2)) (a subnormal x is first scaled by 2^54,
 * exactly); with f = m - 1 and s = f / (2 + f), ln m = 2 atanh(s) = 2s + s R(s^2),
 * R(z) = sum 2 z^n / (2n + 1) to n = 10 (truncation < 1e-17 relative, z <= 0.0295),
 * evaluated as f - (f^2/2 - s (f^2/2 + R)) so that the large part f stays exact;
 * e ln 2 in two parts as in fsc_exp. Measured against glibc's log: at most 1 ulp on
 * (0, 1e6], subnormals included; 0 -> -inf, x < 0 -> NaN, +inf -> +inf, NaN -> NaN. */
static inline double fsc_log(double x) {
    const int sub = x < 0x1p-1022;
    const double xs = sub ? x * 0x1p54 : x;
    uint64_t bits;
    memcpy(&bits, &xs, sizeof bits);
    /* the biased exponent as a double: bits >> 52 in the low mantissa bits of 2^52 */
    uint64_t eb = (bits >> 52) | 0x4330000000000000u;
    double e;
    memcpy(&e, &eb, sizeof e);
    e -= 4503599627370496.0 + (sub ? 1023.0 + 54.0 : 1023.0);
    uint64_t mb = (bits & 0x000FFFFFFFFFFFFFu) | 0x3FF0000000000000u; /* m in [1, 2) */
    double m;
    memcpy(&m, &mb, sizeof m);
    const int big = m > 1.4142135623730951;
    m = big ? m * 0.5 : m;
    e = big ? e + 1.0 : e;
    const double f = m - 1.0;
    const double s = f / (2.0 + f);
    const double z = s * s, z2 = z * z, z4 = z2 * z2, z8 = z4 * z4;
    const double r12 = 0.6666666666666666 + z * 0.4; /* 2/3, 2/5 */
    const double r34 = 0.2857142857142857 + z * 0.2222222222222222;
    const double r56 = 0.18181818181818182 + z * 0.15384615384615385;
    const double r78 = 0.13333333333333333 + z * 0.11764705882352941;
    const double r9a = 0.10526315789473684 + z * 0.09523809523809523; /* 2/19, 2/21 */
    const double R = z * (((r12 + z2 * r34) + z4 * (r56 + z2 * r78)) + z8 * r9a);
    const double hfsq = 0.5 * f * f;
    double y = e * FS_EXP_LN2_HI - ((hfsq - (s * (hfsq + R) + e * FS_EXP_LN2_LO)) - f);
    y = x == 0.0 ? -INFINITY : y;
    y = x < 0.0 ? NAN : y;
    y = x == INFINITY ? INFINITY : y;
    return x != x ? x : y;
}

/* The hot loops over a row: each body is compiled for the baseline ISA and, on x86-64,
 * inside AVX2 and AVX-512F target functions (wider vectors; no FMA is enabled or
 * contracted, so every copy rounds the same way); FSC_CALL_ISA runs the copy that
 * fs_cpu_isa() allows. csrc/tests/test_stages.c checks that the copies agree bit for bit. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FSC_X86 1
#define FSC_PER_ISA(name, params, ...)                                                   \
    static inline void name##_base params __VA_ARGS__                                   \
    __attribute__((target("avx2"))) static inline void name##_avx2 params __VA_ARGS__   \
    __attribute__((target("avx512f"))) static inline void name##_avx512 params __VA_ARGS__
#define FSC_CALL_ISA(name, ...)                                                          \
    do {                                                                                 \
        const int isa_ = fs_cpu_isa();                                                   \
        if (isa_ == FS_ISA_AVX512)                                                       \
            name##_avx512(__VA_ARGS__);                                                  \
        else if (isa_ == FS_ISA_AVX2)                                                    \
            name##_avx2(__VA_ARGS__);                                                    \
        else                                                                             \
            name##_base(__VA_ARGS__);                                                    \
    } while (0)
#else
#define FSC_PER_ISA(name, params, ...) static inline void name##_base params __VA_ARGS__
#define FSC_CALL_ISA(name, ...) name##_base(__VA_ARGS__)
#endif

/* ---------------------------------------------------------------- row scans */

FSC_PER_ISA(fsc_count_finite_row, (const float *row, int64_t V, int64_t *n), {
    int64_t c = 0;
    for (int64_t i = 0; i < V; i++)
        c += row[i] > -INFINITY;
    *n = c;
})

static inline int64_t fsc_count_finite(const float *row, int64_t V) {
    int64_t n;
    FSC_CALL_ISA(fsc_count_finite_row, row, V, &n);
    return n;
}

/* Thirty-two running maxima (four vectors of eight, so that four compares are in
 * flight), reduced in a fixed order: the same maximum as a scalar loop, NaN ignored
 * (the core's per-ISA row_max in fs_rows.inc answers NaN rows by operand order and
 * flags them; stage rows are not checked for NaN). Spelled as gcc vector selects,
 * which the baseline's SSE, AVX2 and AVX-512 copies all lower with the same lanes, so
 * which of equal maxima (+0.0, -0.0) comes back does not depend on the CPU (gcc left
 * the old eight-scalar loop unvectorised: 8% of a Smoothing-first step). */
#if defined(__GNUC__) || defined(__clang__)
typedef float fsc_v8f __attribute__((vector_size(32)));
typedef int32_t fsc_v8i __attribute__((vector_size(32)));

/* a = x where x > a, else a (a macro: a vector argument of a function compiled
 * without AVX would change the ABI) */
#define FSC_V8_MAX(a, x)                                                                 \
    do {                                                                                 \
        const fsc_v8i gt_ = (x) > (a);                                                   \
        (a) = (fsc_v8f)(((fsc_v8i)(x) & gt_) | ((fsc_v8i)(a) & ~gt_));                   \
    } while (0)
#endif

FSC_PER_ISA(fsc_row_max_row, (const float *row, int64_t V, float *out), {
    float m[32];
    for (int j = 0; j < 32; j++)
        m[j] = -INFINITY;
    int64_t i = 0;
#if defined(__GNUC__) || defined(__clang__)
    fsc_v8f a[4];
    memcpy(a, m, sizeof a);
    for (; i + 32 <= V; i += 32) {
        fsc_v8f x[4];
        memcpy(x, row + i, sizeof x);
        for (int k = 0; k < 4; k++)
            FSC_V8_MAX(a[k], x[k]);
    }
    memcpy(m, a, sizeof a);
#else
    for (; i + 32 <= V; i += 32)
        for (int j = 0; j < 32; j++)
            m[j] = row[i + j] > m[j] ? row[i + j] : m[j];
#endif
    for (; i < V; i++)
        m[0] = row[i] > m[0] ? row[i] : m[0];
    float r = m[0];
    for (int j = 1; j < 32; j++)
        r = m[j] > r ? m[j] : r;
    *out = r;
})

static inline double fsc_row_max(const float *row, int64_t V) {
    float r;
    FSC_CALL_ISA(fsc_row_max_row, row, V, &r);
    return (double)r;
}

/* w[i] = exp(row[i] - m) (0 where masked) */
FSC_PER_ISA(fsc_exp_row, (const float *row, int64_t V, double m, double *w), {
    for (int64_t i = 0; i < V; i++)
        w[i] = fsc_exp((double)row[i] - m);
})

/* o[i] = float32(row[i] / t) saturated (fs_sat_f32), -inf kept: Temperature's rule,
 * branch-free so each copy vectorises (the float64 division per token stays) */
FSC_PER_ISA(fsc_temp_row, (const float *row, float *o, int64_t V, double t), {
    for (int64_t i = 0; i < V; i++) {
        const double y = (double)row[i] / t;
        const double c = y < -(double)FLT_MAX ? -(double)FLT_MAX
                                              : (y > (double)FLT_MAX ? (double)FLT_MAX : y);
        o[i] = row[i] > -INFINITY ? (float)c : -INFINITY;
    }
})

/* o[i] = float32(top - kf d^2 + sf d^3) saturated, d = row[i] - top, -inf (and NaN)
 * kept as -inf: Smoothing's rule, branch-free so each copy vectorises (d^3 as d^2 d:
 * within an ulp of numpy's pow, the same in every copy) */
FSC_PER_ISA(fsc_smooth_row, (const float *row, float *o, int64_t V, double top, double kf,
                             double sf), {
    for (int64_t i = 0; i < V; i++) {
        const double d = (double)row[i] - top;
        const double d2 = d * d;
        const double y = top - kf * d2 + sf * (d2 * d);
        const double c = y < -(double)FLT_MAX ? -(double)FLT_MAX
                                              : (y > (double)FLT_MAX ? (double)FLT_MAX : y);
        o[i] = row[i] > -INFINITY ? (float)c : -INFINITY;
    }
})

/* The probability-threshold stages' keep pass: out[i] = row[i] where it is finite and
 * w[i] / W >= thr, else -inf; *nkeep = how many are kept (one division per token, in
 * vector lanes in the wider copies: the same quotient) */
FSC_PER_ISA(fsc_keep_p_ge, (const float *row, float *out, const double *w, double W,
                            double thr, int64_t V, int64_t *nkeep), {
    int64_t n = 0;
    for (int64_t i = 0; i < V; i++) {
        const int keep = (row[i] > -INFINITY) & (w[i] / W >= thr);
        out[i] = keep ? row[i] : -INFINITY;
        n += keep;
    }
    *nkeep = n;
})

/* max over i of w[i] / W (w >= 0, finite), or 0 */
FSC_PER_ISA(fsc_max_p, (const double *w, double W, int64_t V, double *pmax), {
    double m = 0.0;
    for (int64_t i = 0; i < V; i++) {
        const double p = w[i] / W;
        m = p > m ? p : m;
    }
    *pmax = m;
})

/* t[i] = (w[i] / W)^2 */
FSC_PER_ISA(fsc_p_squared, (const double *w, double W, int64_t V, double *t), {
    for (int64_t i = 0; i < V; i++) {
        const double p = w[i] / W;
        t[i] = p * p;
    }
})

/* d[i] = (d[i] - mean)^2 */
FSC_PER_ISA(fsc_sq_dev, (double *d, double mean, int64_t n), {
    for (int64_t i = 0; i < n; i++)
        d[i] = (d[i] - mean) * (d[i] - mean);
})

/* t[i] = p ln p for p = w[i] / W > 0, else NaN (p ln p is never NaN for p > 0);
 * *marks = how many NaN */
FSC_PER_ISA(fsc_plogp_row, (const double *w, double W, int64_t V, double *t,
                            int64_t *marks), {
    int64_t m = 0;
    for (int64_t i = 0; i < V; i++) {
        const double p = w[i] / W;
        t[i] = p > 0.0 ? p * fsc_log(p) : NAN;
        m += !(p > 0.0);
    }
    *marks = m;
})

/* w = exp(l - max) (0 where masked); returns W = sum(w) (numpy's rounding). */
static inline double fsc_weights(const float *row, int64_t V, double m, double *w) {
    FSC_CALL_ISA(fsc_exp_row, row, V, m, w);
    return fsc_pw_sum(w, V);
}

/* -sum p ln p over p = w / W > 0 (the reference's _entropy, which sums p[p > 0] in
 * order: the terms are compacted before the pairwise sum); tmp holds V doubles. */
static inline double fsc_entropy(const double *w, double W, int64_t V, double *tmp) {
    int64_t marks;
    FSC_CALL_ISA(fsc_plogp_row, w, W, V, tmp, &marks);
    if (marks == 0) /* most rows have no p = 0: nothing to compact */
        return -fsc_pw_sum(tmp, V);
    int64_t n = 0;
    for (int64_t i = 0; i < V; i++) {
        const double t = tmp[i];
        tmp[n] = t; /* n <= i: never overwrites a term not yet read */
        n += t == t;    /* not the NaN mark */
    }
    return -fsc_pw_sum(tmp, n);
}

/* The k-th largest finite value (k clipped to [1, nfin]); ws holds V floats. A heap
 * for small k, else fs_util.h's quickselect on the finite values. Not the core's radix
 * fs_kth_largest: that one needs uint32 keys and 1024 counters beside the values,
 * which the stages' float workspace (V floats, part of their C API) does not hold. */
static inline double fsc_kth_largest(const float *row, int64_t V, int64_t k, int64_t nfin,
                                     float *ws) {
    if (nfin == 0)
        return -INFINITY;
    k = k < 1 ? 1 : (k > nfin ? nfin : k);
    if (k == 1)
        return fsc_row_max(row, V);
    if (k <= FSC_HEAP_MAX) {
        /* min-heap of the k largest so far; ws[0] is the smallest of them */
        int64_t size = 0;
        for (int64_t i = 0; i < V; i++) {
            float x = row[i];
            if (!(x > -INFINITY))
                continue;
            if (size < k) {
                int64_t j = size++;
                while (j > 0 && ws[(j - 1) / 2] > x) {
                    ws[j] = ws[(j - 1) / 2];
                    j = (j - 1) / 2;
                }
                ws[j] = x;
            } else if (x > ws[0]) {
                int64_t j = 0;
                for (;;) {
                    int64_t c = 2 * j + 1;
                    if (c >= k)
                        break;
                    if (c + 1 < k && ws[c + 1] < ws[c])
                        c++;
                    if (ws[c] >= x)
                        break;
                    ws[j] = ws[c];
                    j = c;
                }
                ws[j] = x;
            }
        }
        return (double)ws[0];
    }
    int64_t n = 0;
    for (int64_t i = 0; i < V; i++)
        if (row[i] > -INFINITY)
            ws[n++] = row[i];
    return (double)fs_select_f32(ws, n, n - k);
}

/* out = l where finite and l >= t, else -inf; returns the kept count. */
static inline int64_t fsc_keep_ge(const float *row, float *out, int64_t V, double t) {
    const float f = fs_f32_ceil(t); /* x >= f iff (double)x >= t */
    int64_t n = 0;
    for (int64_t i = 0; i < V; i++) {
        float x = row[i];
        int keep = (x > -INFINITY) & (x >= f);
        out[i] = keep ? x : -INFINITY;
        n += keep;
    }
    return n;
}

/* The min_keep floor (docs/internals.md): if fewer than min_keep survive, keep the
 * union with l >= the min_keep-th largest finite logit (ties kept). */
static inline void fsc_finish(const float *row, float *out, int64_t V, int64_t nkeep,
                              int64_t min_keep, int64_t nfin, float *ws) {
    if (min_keep < 1)
        min_keep = 1;
    if (nkeep >= min_keep)
        return;
    const float t = (float)fsc_kth_largest(row, V, min_keep, nfin, ws); /* a finite logit */
    for (int64_t i = 0; i < V; i++)
        out[i] = row[i] >= t ? row[i] : out[i];
}

/* Z-function of the reversed window rev[i] = hist[end - 1 - i], i < n:
 * z[i] = length of the longest common prefix of rev and rev[i:]. */
static inline void fsc_z_reversed(const int64_t *hist, int64_t end, int64_t n, int32_t *z) {
    if (n == 0)
        return;
    const int64_t last = end - 1;
    z[0] = (int32_t)n;
    int64_t left = 0, right = 0;
    for (int64_t i = 1; i < n; i++) {
        int64_t k = 0;
        if (i < right) {
            k = right - i;
            if (z[i - left] < k)
                k = z[i - left];
        }
        while (i + k < n && hist[last - k] == hist[last - i - k])
            k++;
        z[i] = (int32_t)k;
        if (i + k > right) {
            left = i;
            right = i + k;
        }
    }
}

#endif

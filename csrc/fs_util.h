/* ISA-independent helpers shared by the core kernels (fastsample.c) and the stage
 * kernels (fs_stage_common.h): size checks, float32 rounding in a safe direction,
 * saturation, the constants of the two float64 exps, and sorting / selection of
 * float32 values in the caller's buffer. Header-only (static inline, no cffi
 * declarations, no state, no allocation), so each translation unit inlines them.
 * Inputs never hold NaN where an order is needed (callers filter or check first). */
#ifndef FS_UTIL_H
#define FS_UTIL_H

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* The larger helpers are plain `static` (no inline hint), so the compiler's inlining
 * choices in the core's hot loops stay as measured; `unused` because each file
 * includes more of them than it calls. */
#if defined(__GNUC__) || defined(__clang__)
#define FS_UTIL_FN static __attribute__((unused))
#else
#define FS_UTIL_FN static inline
#endif

/* ---------------------------------------------------------------- checks */

/* B rows of V: B >= 0, 1 <= V <= vmax, B * V representable, buffers present when
 * B > 0. The callers map a failure to their own error code. */
static inline int fs_block_ok(const void *x, const void *out, int64_t B, int64_t V,
                              int64_t vmax) {
    return B >= 0 && V >= 1 && V <= vmax && B <= INT64_MAX / V && (B == 0 || (x && out));
}

/* ---------------------------------------------------------------- float32 rounding */

/* The smallest float32 >= x (x a double, not NaN; -inf and below -FLT_MAX give
 * -FLT_MAX): for float32 y > -inf, y >= x iff y >= fs_f32_ceil(x). */
FS_UTIL_FN float fs_f32_ceil(double x) {
    if (x <= -(double)FLT_MAX) return -FLT_MAX;  /* (float)x would be out of range */
    if (x > (double)FLT_MAX) return INFINITY;
    float a = (float)x;
    if ((double)a < x) a = nextafterf(a, INFINITY);
    return a;
}

/* The largest float32 <= x: for float32 y, y <= x iff y <= fs_f32_floor(x). */
FS_UTIL_FN float fs_f32_floor(double x) {
    if (x >= (double)FLT_MAX) return FLT_MAX;
    if (x < -(double)FLT_MAX) return -INFINITY;
    float a = (float)x;
    if ((double)a > x) a = nextafterf(a, -INFINITY);
    return a;
}

/* float64 -> float32, saturating at the float32 range (NaN passes through); the
 * clamps are selects, so loops of it vectorise. */
static inline float fs_sat_f32(double y) {
    y = y < -(double)FLT_MAX ? -(double)FLT_MAX : y;
    y = y > (double)FLT_MAX ? (double)FLT_MAX : y;
    return (float)y;
}

/* ---------------------------------------------------------------- exp constants */

/* Shared by the two float64 exps, which keep separate contracts: fsc_exp
 * (fs_stage_common.h: no FMA, the same bits on every ISA, the stages' accuracy) and
 * the core's per-ISA expw/exp4/exp8 (fs_simd.inc: FMA, speed of the canonical chain,
 * bit-identical only within one level). */
#define FS_EXP_LOG2E 1.4426950408889634          /* 1 / ln 2 */
#define FS_EXP_SHIFT 6755399441055744.0          /* 1.5 * 2^52: rounds to an integer */
#define FS_EXP_SHIFT_BIAS 6755399441056767.0     /* 1.5 * 2^52 + 1023 */
#define FS_EXP_LN2_HI 0.6931471803691238         /* ln 2 to 32 bits: k * LN2_HI exact */
#define FS_EXP_LN2_LO 1.9082149292705877e-10     /* ln 2 - LN2_HI */
/* 1 / n! (Taylor coefficients of exp) */
#define FS_RF2 0.5
#define FS_RF3 0.16666666666666666
#define FS_RF4 0.041666666666666664
#define FS_RF5 0.008333333333333333
#define FS_RF6 0.001388888888888889
#define FS_RF7 0.0001984126984126984
#define FS_RF8 2.48015873015873e-05
#define FS_RF9 2.7557319223985893e-06
#define FS_RF10 2.755731922398589e-07
#define FS_RF11 2.505210838544172e-08
#define FS_RF12 2.08767569878681e-09
#define FS_RF13 1.6059043836821613e-10
#define FS_RF14 1.1470745597729725e-11

/* ---------------------------------------------------------------- sort and select */

#define FS_SMALL_SORT 24

FS_UTIL_FN void fs_isort_f32(float *a, int64_t n) {
    for (int64_t i = 1; i < n; i++) {
        float x = a[i];
        int64_t j = i - 1;
        while (j >= 0 && a[j] > x) { a[j + 1] = a[j]; j--; }
        a[j + 1] = x;
    }
}

FS_UTIL_FN void fs_sift_f32(float *a, int64_t root, int64_t n) {
    for (;;) {
        int64_t c = 2 * root + 1;
        if (c >= n) return;
        if (c + 1 < n && a[c + 1] > a[c]) c++;
        if (!(a[c] > a[root])) return;
        float t = a[c]; a[c] = a[root]; a[root] = t;
        root = c;
    }
}

FS_UTIL_FN void fs_heapsort_f32(float *a, int64_t n) {
    for (int64_t i = n / 2 - 1; i >= 0; i--) fs_sift_f32(a, i, n);
    for (int64_t e = n - 1; e > 0; e--) {
        float t = a[0]; a[0] = a[e]; a[e] = t;
        fs_sift_f32(a, 0, e);
    }
}

static inline float fs_median3(float a, float b, float c) {
    if (a > b) { float t = a; a = b; b = t; }
    if (b > c) b = c;
    return a > b ? a : b;
}

/* Hoare partition around pivot: afterwards a[0..j] <= pivot <= a[j+1..n). */
FS_UTIL_FN int64_t fs_partition_f32(float *a, int64_t n, float pivot) {
    int64_t i = -1, j = n;
    for (;;) {
        do i++; while (a[i] < pivot);
        do j--; while (a[j] > pivot);
        if (i >= j) return j;
        float t = a[i]; a[i] = a[j]; a[j] = t;
    }
}

/* Recursion / iteration budget before the heapsort fallback: 2 log2(n) + 4. */
FS_UTIL_FN int fs_depth(int64_t n) {
    int d = 0;
    while (n > 1) { n >>= 1; d++; }
    return 2 * d + 4;
}

/* Sort ascending: quicksort (median of three, Hoare: ties split evenly) with an
 * insertion sort for short ranges and a heapsort when the depth runs out. */
FS_UTIL_FN void fs_sort_f32_depth(float *a, int64_t n, int depth) {
    while (n > FS_SMALL_SORT) {
        if (depth-- <= 0) { fs_heapsort_f32(a, n); return; }
        int64_t j = fs_partition_f32(a, n, fs_median3(a[0], a[n / 2], a[n - 1]));
        /* recurse on the smaller side, loop on the larger */
        if (j + 1 < n - j - 1) { fs_sort_f32_depth(a, j + 1, depth); a += j + 1; n -= j + 1; }
        else { fs_sort_f32_depth(a + j + 1, n - j - 1, depth); n = j + 1; }
    }
    fs_isort_f32(a, n);
}

FS_UTIL_FN void fs_sort_f32(float *a, int64_t n) { fs_sort_f32_depth(a, n, fs_depth(n)); }

/* The value of rank r (0-based, ascending) of a[0..n), 0 <= r < n; a is reordered.
 * Quickselect on the same partition, heapsort when the depth runs out (no quadratic
 * case), insertion sort for the last short range. */
FS_UTIL_FN float fs_select_f32(float *a, int64_t n, int64_t r) {
    int depth = fs_depth(n);
    while (n > FS_SMALL_SORT) {
        if (depth-- <= 0) { fs_heapsort_f32(a, n); return a[r]; }
        int64_t j = fs_partition_f32(a, n, fs_median3(a[0], a[n / 2], a[n - 1]));
        if (r <= j) n = j + 1;
        else { a += j + 1; n -= j + 1; r -= j + 1; }
    }
    fs_isort_f32(a, n);
    return a[r];
}

#endif

/* Test scaffolding shared by every csrc/tests/test_*.c: the CHECK counter macro, a
 * seeded splitmix64 stream (each test file defines HARNESS_SEED before including
 * this) and the random logit rows fed to the kernels (smooth, tied, partly masked,
 * one token left; never all masked). */
#ifndef FS_TEST_HARNESS_H
#define FS_TEST_HARNESS_H

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static int failures = 0;
static int checks = 0;

/* Reports the failed condition, then the optional printf-style note. */
static void harness_fail_(const char *file, int line, const char *cond, const char *fmt, ...) {
    va_list ap;
    failures++;
    fprintf(stderr, "FAIL %s:%d: %s: ", file, line, cond);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* CHECK(cond) or CHECK(cond, fmt, ...): the trailing "" gives the bare form a
 * format, so C99 never sees an empty variadic argument list. */
#define CHECK(...) CHECK_(__VA_ARGS__, "")
#define CHECK_(cond, ...)                                             \
    do {                                                              \
        checks++;                                                     \
        if (!(cond))                                                  \
            harness_fail_(__FILE__, __LINE__, #cond, __VA_ARGS__);    \
    } while (0)

/* ---------------------------------------------------------------- random input */

static uint64_t rng_state = HARNESS_SEED;

static inline uint64_t next_u64(void) { /* splitmix64 */
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15u);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    return z ^ (z >> 31);
}

static inline double uniform01(void) { return (double)(next_u64() >> 11) * 0x1.0p-53; }

static inline int64_t below(int64_t n) { return (int64_t)(next_u64() % (uint64_t)n); }

enum { SMOOTH, TIES, MASKED, ONE_LEFT, NSTYLES };

static inline void fill_row(float *row, int64_t V, int style) {
    for (int64_t i = 0; i < V; i++) {
        double u = uniform01();
        row[i] = (float)(style == TIES ? floor(u * 6.0) / 2.0 : -3.0 * log1p(20.0 * u) + u);
    }
    if (style == MASKED)
        for (int64_t i = 0; i < V; i++)
            if (uniform01() < 0.6)
                row[i] = -INFINITY;
    if (style == ONE_LEFT) {
        int64_t keep = below(V);
        for (int64_t i = 0; i < V; i++)
            if (i != keep)
                row[i] = -INFINITY;
    }
    int64_t nfin = 0;
    for (int64_t i = 0; i < V; i++)
        nfin += row[i] > -INFINITY;
    if (!nfin)
        row[below(V)] = 0.5f;
}

/* Gaussian-ish logits: the sum of three uniforms, times scale. */
static inline void fill_gauss(float *row, int64_t V, double scale) {
    for (int64_t i = 0; i < V; i++)
        row[i] = (float)((uniform01() + uniform01() + uniform01() - 1.5) * scale);
}

/* B rows of V, each of a random style (caller frees) */
static inline float *new_logits(int64_t B, int64_t V) {
    float *x = malloc((size_t)(B * V) * sizeof(float));
    for (int64_t b = 0; b < B; b++)
        fill_row(x + b * V, V, (int)below(NSTYLES));
    return x;
}

/* equal -inf, or within rel relative to max(1, |want|) */
static inline int close_within(double got, double want, double rel) {
    if (want == -INFINITY || got == -INFINITY)
        return got == want;
    return fabs(got - want) <= rel * fmax(1.0, fabs(want));
}

#endif

/* Test scaffolding shared by csrc/tests/test_stages.c and test_stages_extra.c: the
 * CHECK counter macro, a seeded splitmix64 stream (each test file defines
 * STAGE_TEST_SEED before including this) and the random logit rows both feed to the
 * stage kernels (smooth, tied, partly masked, one token left; never all masked). */
#ifndef FS_STAGE_TEST_H
#define FS_STAGE_TEST_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static int failures = 0;
static int checks = 0;

#define CHECK(cond, ...)                                         \
    do {                                                         \
        checks++;                                                \
        if (!(cond)) {                                           \
            failures++;                                          \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                        \
            fputc('\n', stderr);                                 \
        }                                                        \
    } while (0)

/* ---------------------------------------------------------------- random input */

static uint64_t rng_state = STAGE_TEST_SEED;

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

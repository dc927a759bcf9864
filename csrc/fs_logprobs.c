/* Log-probabilities (fs_logprobs.h): one pass over each row for W = sum exp(x - m)
 * (float64 weights and sums) and the rank count #(x > x[token]), from the same loads.
 *
 * The pass (fs_logprobs.inc) uses the core kernels' exps, so this file compiles
 * fs_simd.inc per instruction-set level as fastsample.c does (portable C, AVX2+FMA,
 * AVX-512 inside target regions; runtime dispatch by fs_cpu_isa). The top N and the
 * row max come from fs_topk_checked, run by the caller. */
#include "fs_logprobs.h"

#include "fastsample.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "fs_util.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FS_X86 1
#include <immintrin.h>
#else
#define FS_X86 0
#endif

/* fs_simd.inc's sizes (as fastsample.c): only its exps are used here */
#define FS_BS 256
#define FS_SLACK 64
#if defined(__GNUC__) || defined(__clang__)
#pragma GCC diagnostic ignored "-Wunused-function"
#endif
/* fs_simd.inc's weights take temperatures through this (fs_select.inc's, not used here) */
static inline float fs_temp(float x, double t) { return fs_sat_f32((double)x / t); }

#define FS_ISA_UNIT "fs_logprobs_unit.inc"
#include "fs_isa_levels.inc"

#if FS_X86
#define FSL_PASS(isa, ...)                                                         \
    ((isa) == FS_ISA_AVX512 ? lse_rank_avx512(__VA_ARGS__)                          \
     : (isa) == FS_ISA_AVX2 ? lse_rank_avx2(__VA_ARGS__) : lse_rank_base(__VA_ARGS__))
#else
#define FSL_PASS(isa, ...) lse_rank_base(__VA_ARGS__)
#endif

int fs_logprobs(const float *x, int64_t B, int64_t V, const int64_t *tokens,
                const float *top_vals, const int32_t *top_idx, int64_t kk, int64_t n,
                float *lp, int32_t *rank, int32_t *top_ids, float *top_lp, int isa) {
    if (B < 0 || V < 1 || V > INT32_MAX || n < 0 || kk < 1 || kk > V || B > INT64_MAX / V)
        return FS_E_SIZE;
    if (B == 0)
        return FS_OK;
    if (!x || !tokens || !top_vals || !top_idx || !lp || !rank ||
        (n > 0 && (!top_ids || !top_lp)))
        return FS_E_SIZE;
    for (int64_t b = 0; b < B; b++)
        if (tokens[b] < -1 || tokens[b] >= V)
            return FS_E_TOKEN;
    const int best = fs_cpu_isa();
    isa = isa > best ? best : isa < FS_ISA_BASE ? FS_ISA_BASE : isa;
    for (int64_t b = 0; b < B; b++) {
        const int64_t t = tokens[b];
        int32_t *ti = n ? top_ids + b * n : top_ids;
        float *tl = n ? top_lp + b * n : top_lp;
        if (t < 0) {
            lp[b] = NAN;
            rank[b] = -1;
            for (int64_t q = 0; q < n; q++) {
                ti[q] = -1;
                tl[q] = NAN;
            }
            continue;
        }
        const float *row = x + b * V, *tv = top_vals + b * kk;
        const int32_t *tx = top_idx + b * kk;
        /* the row max is the top-1 (a valid row: finite; else any finite stand-in) */
        const double m = tv[0] > -INFINITY && tv[0] < INFINITY ? (double)tv[0] : 0.0;
        int64_t c;
        const double lse = log(FSL_PASS(isa, row, V, m, row[t], &c));
        lp[b] = (float)(((double)row[t] - m) - lse);
        rank[b] = (int32_t)(c + 1);
        for (int64_t q = 0; q < n; q++) {
            const int ok = q < kk && tv[q] > -INFINITY && tx[q] >= 0 && tx[q] < V;
            ti[q] = ok ? tx[q] : -1;
            tl[q] = ok ? (float)(((double)tv[q] - m) - lse) : -INFINITY;
        }
    }
    return FS_OK;
}

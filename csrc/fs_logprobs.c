/* Log-probabilities (fs_logprobs.h): one pass over each row for W = sum exp(x - m)
 * (float64 weights from fsc_exp, float64 sums) and the rank count #(x > x[token]),
 * compiled per ISA (FSC_PER_ISA: at AVX-512 the exps run 8 to a 512-bit vector).
 *
 * The weights of a chunk go to a stack buffer (a plain loop the compiler vectorises)
 * and are summed into 8 lane accumulators in a fixed order, so the sum is the same on
 * every ISA and no fast-math reassociation is needed. */
#include "fs_logprobs.h"

#include <math.h>
#include <stdint.h>

#include "fs_stage_common.h"

#define FSL_CHUNK 512

/* *s = sum exp(row[i] - m) (lanes i mod 8, then pairwise), *c = #(row[i] > xt). */
FSC_PER_ISA(fsl_lse_rank, (const float *row, int64_t V, double m, float xt, double *s,
                           int64_t *c), {
    double w[FSL_CHUNK];
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t cnt = 0;
    for (int64_t a = 0; a < V; a += FSL_CHUNK) {
        const int64_t len = V - a < FSL_CHUNK ? V - a : FSL_CHUNK;
        const float *r = row + a;
        for (int64_t i = 0; i < len; i++)
            w[i] = fsc_exp((double)r[i] - m);
        for (int64_t i = len; i < ((len + 7) & ~(int64_t)7); i++)
            w[i] = 0.0;
        for (int64_t i = 0; i < len; i += 8)
            for (int j = 0; j < 8; j++)
                acc[j] += w[i + j];
        for (int64_t i = 0; i < len; i++)
            cnt += r[i] > xt;
    }
    *s = ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
    *c = cnt;
})

int fs_logprobs(const float *x, int64_t B, int64_t V, const int64_t *tokens,
                const float *top_vals, const int32_t *top_idx, int64_t kk, int64_t n,
                float *lp, int32_t *rank, int32_t *top_ids, float *top_lp) {
    if (B < 0 || V < 1 || V > INT32_MAX || n < 0 || kk < 1 || kk > V || B > INT64_MAX / V)
        return 1;
    if (B == 0)
        return 0;
    if (!x || !tokens || !top_vals || !top_idx || !lp || !rank ||
        (n > 0 && (!top_ids || !top_lp)))
        return 1;
    for (int64_t b = 0; b < B; b++)
        if (tokens[b] < -1 || tokens[b] >= V)
            return 4;
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
        const double m = tv[0] > -INFINITY && tv[0] < INFINITY ? (double)tv[0] : 0.0;
        double s;
        int64_t c;
        FSC_CALL_ISA(fsl_lse_rank, row, V, m, row[t], &s, &c);
        const double lse = log(s);
        lp[b] = (float)(((double)row[t] - m) - lse);
        rank[b] = (int32_t)(c + 1);
        for (int64_t q = 0; q < n; q++) {
            const int ok = q < kk && tv[q] > -INFINITY && tx[q] >= 0 && tx[q] < V;
            ti[q] = ok ? tx[q] : -1;
            tl[q] = ok ? (float)(((double)tv[q] - m) - lse) : -INFINITY;
        }
    }
    return 0;
}

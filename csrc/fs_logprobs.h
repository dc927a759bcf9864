/* Log-probabilities of sampled tokens and of each row's top N (docs/spec.md §9).
 *
 * The caller runs fs_topk_checked first (top kk = min(max(n, 1), V) of every row: the
 * block-maxima machinery; its first value is the row max) and hands its output here;
 * this file adds one pass per row for the log-sum-exp and the rank count.
 * Buffers are caller-owned; nothing is allocated; every index is checked. */
#ifndef FS_LOGPROBS_H
#define FS_LOGPROBS_H

#include <stdint.h>

/* FS_CDEF_BEGIN */
/* Per row b with tokens[b] in [0, V): lp[b] = float32 log-probability of the token,
 * rank[b] = 1 + #(x > x[token]), top_lp[b, q] = float32 log-probability of
 * top_vals[b, q] (q < min(n, kk)), top_ids[b, q] = top_idx[b, q], and past the row's
 * finite tokens (or q >= kk) id -1, -inf. tokens[b] == -1: NaN, -1, ids -1, NaN.
 * top_vals / top_idx: (B, kk) from fs_topk_checked, kk >= 1 (kk >= min(n, V)).
 * isa: the instruction-set level (FS_ISA_*), lowered to what the CPU runs.
 * Returns FS_OK, FS_E_SIZE (bad sizes / NULL buffer) or FS_E_TOKEN (a token outside
 * [-1, V)). */
int fs_logprobs(const float *x, int64_t B, int64_t V, const int64_t *tokens,
                const float *top_vals, const int32_t *top_idx, int64_t kk, int64_t n,
                float *lp, int32_t *rank, int32_t *top_ids, float *top_lp, int isa);
/* FS_CDEF_END */

#endif

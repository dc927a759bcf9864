/* Token constraints of docs/spec.md §10 in C: the packed bitmask (apply_token_bitmask,
 * which also serves AllowedTokens with the ids packed into one bitmask row) and the
 * BadWords / MinTokens edits, over a block of B rows of V float32 logits.
 *
 * Conventions (those of stages.h): `logits` and `out` are (B, V) row-major; `out` is
 * written completely, or is `logits` itself for an in-place edit (each token is read
 * before it is written); status codes are stages.h's FS_STAGE_*; every size, offset
 * and token id is checked before it indexes anything; no allocation and no global
 * state (reentrant, safe on disjoint rows from several threads).
 */
#ifndef FS_CONSTRAINTS_H
#define FS_CONSTRAINTS_H

#include <stdint.h>

/* FS_CDEF_BEGIN */
/* out[b, v] = logits[b, v] where bit v % 32 of bitmask[rows[b], v / 32] is set, else
 * -inf; rows[b] = -1: the row unchanged. bitmask: (R, W) uint32, W >= ceil(V / 32);
 * rows in [-1, R) (else FS_STAGE_E_ID). isa: fastsample.h's fs_isa (lowered to the
 * CPU's). */
int fs_apply_token_bitmask(const float *logits, float *out, int64_t B, int64_t V,
                           const uint32_t *bitmask, int64_t R, int64_t W, const int64_t *rows,
                           int isa);

/* For each sequence s (tokens[seq_offsets[i] .. seq_offsets[i + 1]), each non-empty,
 * the same for every row): when row b's history (hist[offsets[b] .. offsets[b + 1]))
 * ends with s without its last token, that token is -inf. */
int fs_bad_words(const float *logits, float *out, int64_t B, int64_t V,
                 const int64_t *hist, int64_t nhist, const int64_t *offsets,
                 const int64_t *tokens, int64_t ntokens, const int64_t *seq_offsets,
                 int64_t nseq);

/* stop[0 .. nstop) are -inf in row b while position[b] < n[b]. */
int fs_min_tokens(const float *logits, float *out, int64_t B, int64_t V, const int64_t *n,
                  const uint64_t *position, const int64_t *stop, int64_t nstop);
/* FS_CDEF_END */

#endif

/* Core kernels of the C backend: the fused canonical chain of fs.sample and its
 * truncations alone, the draw, argmax, token log-probabilities, row validity,
 * softmax, log-softmax and top-k.
 *
 * Conventions shared by every entry point:
 * - `x` is (B, V) row-major float32 and is never written; outputs are written
 *   completely for rows [0, B).
 * - Per-row parameters are (B,) arrays (double for reals, int64_t for integers,
 *   uint64_t for seeds and positions).
 * - Workspaces are caller-owned and sized by the matching fs_*_ws_bytes(V); nothing
 *   is allocated here. Their contents on entry do not matter.
 * - Every size is checked before it is used: a bad one returns an FS_E_* code (the
 *   Python wrapper raises ValueError) instead of reading or writing out of bounds.
 * - `isa` picks the code path: FS_ISA_BASE (portable C), FS_ISA_AVX2 (AVX2 + FMA),
 *   FS_ISA_AVX512 (AVX-512 F/BW/DQ/VL). A level above fs_cpu_isa() is lowered to it,
 *   so any value is safe. No global mutable state: every function is reentrant and
 *   safe to call from several threads on disjoint outputs and workspaces.
 */
#ifndef FASTSAMPLE_H
#define FASTSAMPLE_H

#include <stddef.h>
#include <stdint.h>

/* FS_CDEF_BEGIN */
enum fs_status {
    FS_OK = 0,
    FS_E_SIZE = -1,        /* negative or overflowing B/V, V == 0, NULL buffer */
    FS_E_WORKSPACE = -2,   /* workspace shorter than fs_*_ws_bytes(V) */
    FS_E_PARAM = -3,       /* k outside [0, V] or NaN in a row (topk), temperature <= 0
                              (softmax), NaN parameter (canonical chain) */
    FS_E_TOKEN = -4        /* token outside [-1, V) (token_logprob) */
};

enum fs_isa { FS_ISA_BASE = 0, FS_ISA_AVX2 = 1, FS_ISA_AVX512 = 2 };

enum fs_token { FS_INVALID_ROW = -2 };  /* sample_canonical: a NaN/+inf/all-masked row */

int fs_cpu_isa(void);

size_t fs_canonical_ws_bytes(int64_t V);
int fs_sample_canonical(const float *x, int64_t B, int64_t V, const int64_t *top_k,
                        const double *top_p, const double *min_p, const double *temperature,
                        const int64_t *min_keep, int temperature_last, const uint64_t *seed,
                        const uint64_t *position, int32_t *out, void *ws, size_t ws_bytes,
                        int isa);
/* One row with scalar parameters (B = 1 without seven one-element arrays). */
int fs_sample_canonical_row(const float *x, int64_t V, int64_t top_k, double top_p,
                            double min_p, double temperature, int64_t min_keep,
                            int temperature_last, uint64_t seed, uint64_t position,
                            int32_t *out, void *ws, size_t ws_bytes, int isa);
/* The survivors of the chain's truncations TopK -> TopP -> MinP (min_keep floor) per
 * row, no temperature and no draw; workspace: fs_canonical_ws_bytes(V). Rows go in
 * order: row b's ids (ascending) and values go to ids/vals[offsets[b] .. offsets[b+1])
 * (offsets[0] = 0) and invalid[b] = 1 for a row with NaN, +inf or every logit -inf
 * (no survivors). A row whose survivors do not fit in cap entries stops the call
 * there: *done = the rows written (B when all were), and then offsets[*done + 1] -
 * offsets[*done] is that row's count (grow the buffers, call again from it). */
int fs_truncate_canonical(const float *x, int64_t B, int64_t V, const int64_t *top_k,
                          const double *top_p, const double *min_p, const int64_t *min_keep,
                          int32_t *ids, float *vals, int64_t cap, int64_t *offsets,
                          uint8_t *invalid, int64_t *done, void *ws, size_t ws_bytes, int isa);
/* One row with scalar parameters: *count = its survivors (written when <= cap), -1 for
 * an invalid row. */
int fs_truncate_canonical_row(const float *x, int64_t V, int64_t top_k, double top_p,
                              double min_p, int64_t min_keep, int32_t *ids, float *vals,
                              int64_t cap, int64_t *count, void *ws, size_t ws_bytes, int isa);
/* The same under a packed token bitmask (docs/spec.md §10), read in each row's first
 * pass: bitmask (R, W) uint32 rows, W >= ceil(V/32); rows (B,): row b's bitmask row, -1
 * for none (FS_E_PARAM outside [-1, R)). A row the bitmask leaves without a finite
 * logit is invalid, as is a row with NaN or +inf anywhere (allowed or not). */
int fs_sample_canonical_masked(const float *x, int64_t B, int64_t V, const int64_t *top_k,
                               const double *top_p, const double *min_p,
                               const double *temperature, const int64_t *min_keep,
                               int temperature_last, const uint64_t *seed,
                               const uint64_t *position, const uint32_t *bitmask, int64_t R,
                               int64_t W, const int64_t *rows, int32_t *out, void *ws,
                               size_t ws_bytes, int isa);
int fs_sample_canonical_row_masked(const float *x, int64_t V, int64_t top_k, double top_p,
                                   double min_p, double temperature, int64_t min_keep,
                                   int temperature_last, uint64_t seed, uint64_t position,
                                   const uint32_t *words, int64_t W, int32_t *out, void *ws,
                                   size_t ws_bytes, int isa);
int fs_truncate_canonical_masked(const float *x, int64_t B, int64_t V, const int64_t *top_k,
                                 const double *top_p, const double *min_p,
                                 const int64_t *min_keep, const uint32_t *bitmask, int64_t R,
                                 int64_t W, const int64_t *rows, int32_t *ids, float *vals,
                                 int64_t cap, int64_t *offsets, uint8_t *invalid, int64_t *done,
                                 void *ws, size_t ws_bytes, int isa);
int fs_draw(const float *x, int64_t B, int64_t V, const uint64_t *seed,
            const uint64_t *position, int32_t *out, void *ws, size_t ws_bytes, int isa);
int fs_argmax(const float *x, int64_t B, int64_t V, int32_t *out, int isa);
int fs_invalid_rows(const float *x, int64_t B, int64_t V, uint8_t *out, int isa);
int fs_token_logprob(const float *x, int64_t B, int64_t V, const int64_t *tokens,
                     double *out, int isa);
int fs_softmax(const float *x, int64_t B, int64_t V, const double *temperature, float *out,
               int isa);
int fs_log_softmax(const float *x, int64_t B, int64_t V, float *out, int isa);
/* The same, with each row's validity (NaN, +inf or every entry -inf: 1) written to
 * invalid[b] from the kernel's own max pass (the row is not read again to check it);
 * an invalid row's output is undefined. */
int fs_softmax_checked(const float *x, int64_t B, int64_t V, const double *temperature,
                       float *out, uint8_t *invalid, int isa);
int fs_log_softmax_checked(const float *x, int64_t B, int64_t V, float *out, uint8_t *invalid,
                           int isa);

size_t fs_topk_ws_bytes(int64_t V);
/* Rows with NaN: FS_E_PARAM. */
int fs_topk(const float *x, int64_t B, int64_t V, int64_t k, float *values, int32_t *indices,
            void *ws, size_t ws_bytes, int isa);
/* invalid[b] = 1 for a row with NaN, +inf or every entry -inf (docs/spec.md §7), checked in the
 * same pass (the row is read once); that row's values/indices are then undefined
 * (within bounds). k = 0: values, indices and ws may be NULL. */
int fs_topk_checked(const float *x, int64_t B, int64_t V, int64_t k, float *values,
                    int32_t *indices, uint8_t *invalid, void *ws, size_t ws_bytes, int isa);
/* The chain plan's edited row (csrc/fs_chain.c), without a second read of it:
 * fs_canonical_copy copies row into work in the pass that takes its block maxima (into
 * ws; *bad: the row holds a NaN); or fs_canonical_overlay takes the block maxima of row
 * and copies into work (same offsets) only the blocks that hold one of ids or ids2 (the
 * ids the edits may write; when those are most blocks, it copies the whole row in that
 * pass). The caller then edits work in place at some ids (inside those blocks) and hands
 * them (ids64, ids32 and ids64b, duplicates and ids outside [0, V) allowed)
 * with the same ws to fs_sample_canonical_edited (the chain with temperature last, or
 * 1, or greedy) or fs_truncate_canonical_edited (the survivors, *count = -1 for an
 * invalid row; more than cap is FS_E_SIZE), which take those blocks' maxima again and
 * go on as fs_sample_canonical_row / fs_truncate_canonical_row on the edited row. row:
 * NULL after fs_canonical_copy; after fs_canonical_overlay, the input row, read where
 * work holds no copy (a pass that needs every token copies the rest into work first);
 * an edited id outside the copied blocks is FS_E_PARAM. words (not NULL; only with
 * fs_canonical_overlay, the same words for each call): the row under a packed token
 * bitmask (docs/spec.md §10): the maxima are the masked row's (*bad: a NaN or +inf
 * anywhere, allowed or not), the copied blocks are masked, and the kernels read the
 * rest through the bitmask (a pass that needs every token writes it masked). */
int fs_canonical_copy(const float *row, float *work, int64_t V, int *bad, void *ws,
                      size_t ws_bytes, int isa);
int fs_canonical_overlay(const float *row, float *work, int64_t V, const int64_t *ids,
                         int64_t nids, const int64_t *ids2, int64_t nids2,
                         const uint32_t *words, int *bad, void *ws, size_t ws_bytes, int isa);
int fs_sample_canonical_edited(float *work, const float *row, int64_t V, const int64_t *ids64,
                               int64_t n64, const int32_t *ids32, int64_t n32,
                               const int64_t *ids64b, int64_t n64b, const uint32_t *words,
                               int bad, int64_t top_k, double top_p, double min_p,
                               double temperature, int64_t min_keep, uint64_t seed,
                               uint64_t position, int32_t *out, void *ws, size_t ws_bytes,
                               int isa);
int fs_truncate_canonical_edited(float *work, const float *row, int64_t V, const int64_t *ids64,
                                 int64_t n64, const int32_t *ids32, int64_t n32,
                                 const int64_t *ids64b, int64_t n64b, const uint32_t *words,
                                 int bad, int64_t top_k, double top_p, double min_p,
                                 int64_t min_keep, int32_t *ids, float *vals, int64_t cap,
                                 int64_t *count, void *ws, size_t ws_bytes, int isa);
/* work = row under the packed bitmask words (docs/spec.md §10: -inf where a bit is
 * clear), *bad = 1 when any row value is NaN or +inf, allowed or not: the chain plan's
 * masked copy before a pass that reads every token. */
int fs_mask_copy(const float *row, const uint32_t *words, float *work, int64_t V, int *bad,
                 int isa);
/* A whole-distribution stage first (csrc/fs_whole_first.inc), the chain plan's first cut
 * for chains that start with one: kind is fs_chain.h's FS_CHAIN_EPSILON, _ETA, _TOP_A,
 * _P_LESS, _TOP_N_SIGMA, _XTC, _TYPICAL or _TAIL_FREE, (a, b) its parameters (XTC:
 * probability, threshold), min_keep its floor; or the terminal FS_CHAIN_MIROSTAT
 * (a = mu, b = m) or FS_CHAIN_MIROSTAT_V2 (a = mu). temperature: a Temperature before
 * it (1: none; > 0). *count = its survivors (ids ascending, values after
 * the temperature; more than cap is FS_E_SIZE), -1 for an invalid row, -3 when a
 * token lies within rounding of the threshold (run the stage kernels). draw: 0 when
 * stages follow, else the temperature of the draw that follows (1: none). XTC with
 * draw 1, a probability threshold with draw (when it can decide without the
 * survivors), and the Mirostats: the token of the draw over the survivors in *token,
 * *count = 0 (the Mirostats: *lp = its log-probability among them). Workspace:
 * fs_canonical_ws_bytes(V). */
int fs_whole_first_row(const float *x, int64_t V, int kind, double a, double b,
                       int64_t min_keep, double temperature, uint64_t seed, uint64_t position,
                       double draw, int32_t *ids, float *vals, int64_t cap, int64_t *count,
                       int32_t *token, double *lp, void *ws, size_t ws_bytes, int isa);
/* A Mirostat terminal (kind FS_CHAIN_MIROSTAT: mu, m; FS_CHAIN_MIROSTAT_V2: mu) on a row
 * x of n tokens, the survivors of a chain's stages over a vocabulary of vocab >= n
 * tokens (Mirostat v1's Zipf k reads it): *token the drawn index into x and *lp its
 * log-probability among the kept (for the mu update); *token -1 for an invalid row
 * (NaN, +inf, every logit -inf), -3 when the k lies within rounding of an integer
 * (run the stage kernel). Workspace: fs_canonical_ws_bytes(n). */
int fs_mirostat_row(const float *x, int64_t n, int64_t vocab, int kind, double mu, double m,
                    uint64_t seed, uint64_t position, int32_t *token, double *lp, void *ws,
                    size_t ws_bytes, int isa);
/* XTC first with stages after it, on one row after a first Temperature (1: none; > 0,
 * then the transformed row is written to tout, V floats): the ids it removes
 * (ascending) into removed[0..*count), cap entries at most; *count 0 when it does not
 * fire or removes nothing, -1 for an invalid row (NaN, +inf, every logit -inf; tout
 * not written), -3 when a p lies within rounding of the threshold (run the stage
 * kernel). The survivors are every other finite token: the caller reads the row (or
 * tout) itself, no gather. Workspace: fs_canonical_ws_bytes(V). */
int fs_xtc_removed_row(const float *x, int64_t V, double probability, double threshold,
                       double temperature, uint64_t seed, uint64_t position, float *tout,
                       int32_t *removed, int64_t cap, int64_t *count, void *ws,
                       size_t ws_bytes, int isa);
/* FS_CDEF_END */

#endif

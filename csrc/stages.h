/* Stage kernels of the C backend: the logit-to-logit stages of fastsample.reference
 * (logit bias, penalties, DRY, top-n-sigma, typical, XTC, top-k, top-p, min-p,
 * temperature) over a block of B rows of V float32 logits.
 *
 * Conventions shared by every entry point:
 * - `logits` and `out` are (B, V) row-major; `out` is written completely and
 *   `logits` is never written. A row with no finite logit is copied unchanged.
 * - Per-row parameters are (B,) arrays (double for reals, int64_t for integers).
 * - Workspaces are caller-owned (nothing is allocated here); their lengths are
 *   passed in and checked. Contents on entry do not matter.
 * - Histories are one int64_t token array `hist` of `nhist` tokens with (B + 1,)
 *   offsets: row b owns hist[offsets[b] .. offsets[b + 1]).
 * - Every size, offset and token id is checked before it is used for indexing;
 *   a bad one returns an FS_STAGE_E_* code (the Python wrapper raises ValueError)
 *   instead of reading or writing out of bounds. Rows before the failing one may
 *   already be written.
 * - No global state: every function is reentrant and safe to call from several
 *   threads on disjoint outputs and workspaces.
 */
#ifndef FS_STAGES_H
#define FS_STAGES_H

#include <stdint.h>

/* FS_CDEF_BEGIN */
enum fs_stage_status {
    FS_STAGE_OK = 0,
    FS_STAGE_E_SIZE = 1,      /* negative size, size overflow, NULL buffer, short workspace */
    FS_STAGE_E_OFFSETS = 2,   /* history offsets not non-decreasing within [0, nhist] */
    FS_STAGE_E_HISTORY = 3,   /* history token outside [0, V) */
    FS_STAGE_E_ID = 4,        /* bias token id outside [0, V) */
    FS_STAGE_E_UNSORTED = 5   /* bias ids not in ascending order */
};

int fs_logit_bias(const float *logits, float *out, int64_t B, int64_t V,
                  const int64_t *ids, const double *values, int64_t n);

int fs_penalties(const float *logits, float *out, int64_t B, int64_t V,
                 const int64_t *hist, int64_t nhist, const int64_t *offsets,
                 const double *repeat, const double *frequency, const double *presence,
                 const int64_t *last_n, int32_t *counts, int64_t counts_len);

int fs_dry(const float *logits, float *out, int64_t B, int64_t V,
           const int64_t *hist, int64_t nhist, const int64_t *offsets,
           const double *multiplier, const double *base, const int64_t *allowed_length,
           const int64_t *last_n, const uint8_t *is_breaker, int64_t breaker_len,
           int32_t *z, int64_t z_len, int32_t *best, int64_t best_len);

/* fs_dry, and saw_inf[b] = 1 (when saw_inf is not NULL; other entries untouched) for a
 * row where a token DRY edits held +inf: the edit would hide an invalid row. listed
 * (not NULL): the last row's ids that DRY may have rewritten are left in z[0, *listed)
 * (the chain plan refreshes their blocks' maxima). */
int fs_dry_flagged(const float *logits, float *out, int64_t B, int64_t V,
                   const int64_t *hist, int64_t nhist, const int64_t *offsets,
                   const double *multiplier, const double *base, const int64_t *allowed_length,
                   const int64_t *last_n, const uint8_t *is_breaker, int64_t breaker_len,
                   int32_t *z, int64_t z_len, int32_t *best, int64_t best_len,
                   uint8_t *saw_inf, int64_t *listed);

int fs_dry_penalty(const int64_t *hist, int64_t nhist, int64_t V, double multiplier,
                   double base, int64_t allowed_length, int64_t last_n,
                   const uint8_t *is_breaker, int64_t breaker_len,
                   int32_t *z, int64_t z_len, int32_t *best, int64_t best_len,
                   int32_t *ids, float *penalties, int64_t cap, int64_t *count);

int fs_top_n_sigma(const float *logits, float *out, int64_t B, int64_t V,
                   const double *n, const int64_t *min_keep,
                   float *fws, int64_t fws_len, double *dws, int64_t dws_len);

int fs_top_k(const float *logits, float *out, int64_t B, int64_t V,
             const int64_t *k, const int64_t *min_keep,
             float *fws, int64_t fws_len, double *dws, int64_t dws_len);

int fs_min_p(const float *logits, float *out, int64_t B, int64_t V,
             const double *p, const int64_t *min_keep,
             float *fws, int64_t fws_len, double *dws, int64_t dws_len);

int fs_top_p(const float *logits, float *out, int64_t B, int64_t V,
             const double *p, const int64_t *min_keep,
             float *fws, int64_t fws_len, double *dws, int64_t dws_len);

int fs_typical(const float *logits, float *out, int64_t B, int64_t V,
               const double *p, const int64_t *min_keep,
               float *fws, int64_t fws_len, double *dws, int64_t dws_len);

int fs_xtc(const float *logits, float *out, int64_t B, int64_t V,
           const double *probability, const double *threshold, const int64_t *min_keep,
           const uint64_t *seed, const uint64_t *position,
           float *fws, int64_t fws_len, double *dws, int64_t dws_len);

/* Workspace lengths the truncations above need for a vocabulary of V:
 * fws >= V floats and dws >= fs_stage_dws_len(V) doubles. */
int64_t fs_stage_dws_len(int64_t V);

int fs_temperature(const float *logits, float *out, int64_t B, int64_t V, const double *t);
/* FS_CDEF_END */

#endif

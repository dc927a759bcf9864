/* One engine step of a common chain on one row: see fs_chain.h. The steps are the
 * kernels of the stage-by-stage route, called in the chain plan's order on the same
 * buffers; only the Python glue between them is gone. */
#include "fs_chain.h"

#include <math.h>

#include "fastsample.h"
#include "stages.h"

/* Whether a token of hist[0, n) holds NaN or +inf in the input: an edit there could
 * overwrite it and hide an invalid row. Only the ids an edit writes need the check:
 * everywhere else the kernel's own first pass still sees the input's value. */
static int hides_bad_value(const float *row, int64_t V, const int64_t *hist, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        int64_t t = hist[i];
        if (t < 0 || t >= V)
            return 1;  /* never reached: the chain checked its history; be safe */
        float x = row[t];
        if (x != x || x == INFINITY)
            return 1;
    }
    return 0;
}

int fs_chain_row(const float *row, int64_t V, const int64_t *hist, int64_t nhist,
                 const fs_chain_params *p, const uint8_t *is_breaker, int64_t breaker_len,
                 float *work, int32_t *ids, float *vals, float *tmp, int64_t vlen,
                 int32_t *counts, int32_t *best, int32_t *z, int64_t z_len,
                 double *dws, int64_t dws_len, void *ws, size_t ws_bytes, int isa,
                 int32_t *token) {
    if (!token)
        return FS_CHAIN_E_SIZE;
    *token = -2;
    if (!row || !p || !work || V < 1 || vlen < V || nhist < 0 || (nhist > 0 && !hist) ||
        p->n_after < 0 || p->n_after > 4)
        return FS_CHAIN_E_SIZE;
    const float *x = row;
    int64_t offsets[2] = {0, nhist};
    int rc;
    if (p->penalties) {  /* copies the row into work, then edits the window's tokens */
        int64_t w = p->penalty_last_n < 0 || p->penalty_last_n > nhist ? nhist : p->penalty_last_n;
        if (hides_bad_value(row, V, hist + (nhist - w), w))
            return FS_CHAIN_FALLBACK;
        rc = fs_penalties(row, work, 1, V, hist, nhist, offsets, &p->repeat, &p->frequency,
                          &p->presence, &p->penalty_last_n, counts, vlen);
        if (rc)
            return rc;
        x = work;
    }
    if (p->dry) {  /* the ids it writes are the followers it penalises: checked there */
        uint8_t saw_inf = 0;
        rc = fs_dry_flagged(x, work, 1, V, hist, nhist, offsets, &p->dry_multiplier,
                            &p->dry_base, &p->dry_allowed_length, &p->dry_last_n, is_breaker,
                            breaker_len, z, z_len, best, vlen, &saw_inf);
        if (rc)
            return rc;
        if (saw_inf)
            return FS_CHAIN_FALLBACK;
        x = work;
    }
    if (p->fused) {
        rc = fs_sample_canonical_row(x, V, p->top_k, p->top_p, p->min_p, p->temperature,
                                     p->min_keep, p->temperature_last, p->seed, p->position,
                                     token, ws, ws_bytes, isa);
        if (rc)
            return rc;
        return *token == FS_INVALID_ROW ? FS_CHAIN_FALLBACK : FS_CHAIN_OK;
    }
    int64_t n;
    rc = fs_truncate_canonical_row(x, V, p->top_k, p->top_p, p->min_p, p->min_keep, ids, vals,
                                   vlen, &n, ws, ws_bytes, isa);
    if (rc)
        return rc;
    if (n <= 0) {  /* invalid, or (never: cap = V) more survivors than fit */
        *token = -2;
        return FS_CHAIN_FALLBACK;
    }
    /* the later stages on the survivors as a (1, n) row, as the candidates route */
    float *cur = vals, *next = tmp;
    for (int s = 0; s < p->n_after; s++) {
        if (p->after[s] == FS_CHAIN_XTC) {
            rc = fs_xtc(cur, next, 1, n, &p->after_a[s], &p->after_b[s], &p->after_min_keep[s],
                        &p->seed, &p->position, work, vlen, dws, dws_len);
        } else if (p->after[s] == FS_CHAIN_TEMPERATURE) {
            rc = fs_temperature(cur, next, 1, n, &p->after_a[s]);
        } else {
            return FS_CHAIN_E_SIZE;
        }
        if (rc)
            return rc;
        float *t = cur;
        cur = next;
        next = t;
    }
    int32_t k;
    rc = fs_draw(cur, 1, n, &p->seed, &p->position, &k, ws, ws_bytes, isa);
    if (rc)
        return rc;
    if (k < 0 || k >= n)
        return FS_CHAIN_FALLBACK;  /* every survivor masked by the later stages */
    *token = ids[k];
    return FS_CHAIN_OK;
}

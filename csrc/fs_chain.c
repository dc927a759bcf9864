/* One engine step of a common chain on one row: see fs_chain.h. The steps are the
 * kernels of the stage-by-stage route, called in the chain plan's order on the same
 * buffers; only the Python glue between them is gone. */
#include "fs_chain.h"

#include <math.h>
#include <string.h>

#include "fastsample.h"
#include "fs_logprobs.h"
#include "stages.h"
#include "stages_extra.h"

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

/* after_stage left cur as it was (next not written): XTC that did not fire */
#define FS_CHAIN_SAME (-1000)
/* A whole-distribution stage on at least this many survivors runs as it does first
 * (fs_whole_first_row: one float exp pass, no sort; XTC: fs_xtc_removed_row, the ids
 * it removes) instead of its stage kernel (a float64 exp pass; Typical, TailFree: an
 * argsort of the survivors): a first cut that keeps most of a flat row leaves ~V */
#define FS_CHAIN_LONG 2048

/* Whether a stage kind also runs first, on a whole row (fs_whole_first_row's kinds
 * that are not terminals). */
static int runs_first(int kind) {
    return kind == FS_CHAIN_EPSILON || kind == FS_CHAIN_ETA || kind == FS_CHAIN_TOP_A ||
           kind == FS_CHAIN_P_LESS || kind == FS_CHAIN_TOP_N_SIGMA || kind == FS_CHAIN_XTC ||
           kind == FS_CHAIN_TYPICAL || kind == FS_CHAIN_TAIL_FREE;
}

/* dst = src (n values; src may be dst) with the ids rm[0..nr) at -inf: the survivors
 * of XTC, which removes a few tokens of a long row */
static void masked_copy(float *dst, const float *src, int64_t n, const int32_t *rm,
                        int64_t nr) {
    if (dst != src)
        memcpy(dst, src, (size_t)n * sizeof(float));
    for (int64_t r = 0; r < nr; r++)
        dst[rm[r]] = -INFINITY;
}

/* after_stage of a whole-distribution stage on a long row: fs_whole_first_row's
 * survivors (ids into rm, values into fws) written back as a row of n, -inf elsewhere;
 * a decision within rounding hands the row back, as first. */
static int long_stage(const fs_chain_params *p, int s, const float *cur, float *next,
                      int64_t n, float *fws, int32_t *rm, void *ws, size_t ws_bytes, int isa) {
    int64_t cnt;
    int32_t tok;
    double lp;
    int rc = fs_whole_first_row(cur, n, p->after[s], p->after_a[s], p->after_b[s],
                                p->after_min_keep[s], 1.0, p->seed, p->position, 0.0, rm, fws,
                                n, &cnt, &tok, &lp, ws, ws_bytes, isa);
    if (rc)
        return rc;
    if (cnt <= 0)
        return FS_CHAIN_FALLBACK;  /* undecided (or never: invalid) */
    for (int64_t i = 0; i < n; i++)
        next[i] = -INFINITY;
    for (int64_t q = 0; q < cnt; q++)
        next[rm[q]] = fws[q];
    return FS_CHAIN_OK;
}

/* Stage s of the stages on the survivors: its kernel on the (1, n) row cur into next
 * (fws: float scratch of fws_len >= n, dws: fs_stage_dws_len(n) doubles at least;
 * rm: n ids of scratch, or NULL; ws: the canonical workspace of n). Returns
 * FS_CHAIN_SAME when cur stays the row (next not written), FS_CHAIN_FALLBACK when a
 * long row's decision lies within rounding of its threshold (FS_CHAIN_LONG). */
static int after_stage(const fs_chain_params *p, int s, const float *cur, float *next,
                       int64_t n, float *fws, int64_t fws_len, double *dws, int64_t dws_len,
                       int32_t *rm, void *ws, size_t ws_bytes, int isa) {
    const double *a = &p->after_a[s], *b = &p->after_b[s], *c = &p->after_c[s];
    const int64_t *mk = &p->after_min_keep[s];
    const int kind = p->after[s];
    if (rm && n >= FS_CHAIN_LONG && kind != FS_CHAIN_XTC && runs_first(kind))
        return long_stage(p, s, cur, next, n, fws, rm, ws, ws_bytes, isa);
    switch (kind) {
    case FS_CHAIN_XTC:
        if (rm && n >= FS_CHAIN_LONG) {
            int64_t nr;
            int rc = fs_xtc_removed_row(cur, n, *a, *b, 1.0, p->seed, p->position, NULL, rm, n,
                                        &nr, ws, ws_bytes, isa);
            if (rc)
                return rc;
            if (nr < 0 || (nr > 0 && *mk > 1))
                return FS_CHAIN_FALLBACK;  /* undecided, or the floor: the stage kernels */
            if (nr == 0)
                return FS_CHAIN_SAME;
            masked_copy(next, cur, n, rm, nr);
            return FS_CHAIN_OK;
        }
        return fs_xtc(cur, next, 1, n, a, b, mk, &p->seed, &p->position, fws, fws_len, dws,
                      dws_len);
    case FS_CHAIN_TEMPERATURE:
        return fs_temperature(cur, next, 1, n, a);
    case FS_CHAIN_TOP_K: {
        /* k travels as a double (exact below 2^53): clamped, NaN as 0, before the cast */
        int64_t k = *a >= 9.2e18 ? INT64_MAX : *a <= -9.2e18 ? INT64_MIN : *a == *a ? (int64_t)*a : 0;
        return fs_top_k(cur, next, 1, n, &k, mk, fws, fws_len, dws, dws_len);
    }
    case FS_CHAIN_TOP_P:
        return fs_top_p(cur, next, 1, n, a, mk, fws, fws_len, dws, dws_len);
    case FS_CHAIN_MIN_P:
        return fs_min_p(cur, next, 1, n, a, mk, fws, fws_len, dws, dws_len);
    case FS_CHAIN_TYPICAL:
        return fs_typical(cur, next, 1, n, a, mk, fws, fws_len, dws, dws_len);
    case FS_CHAIN_TOP_N_SIGMA:
        return fs_top_n_sigma(cur, next, 1, n, a, mk, fws, fws_len, dws, dws_len);
    case FS_CHAIN_EPSILON:
        return fs_epsilon(cur, next, 1, n, a, mk, fws, fws_len, dws, dws_len);
    case FS_CHAIN_ETA:
        return fs_eta(cur, next, 1, n, a, mk, fws, fws_len, dws, dws_len);
    case FS_CHAIN_TOP_A:
        return fs_top_a(cur, next, 1, n, a, mk, fws, fws_len, dws, dws_len);
    case FS_CHAIN_P_LESS:
        return fs_p_less(cur, next, 1, n, mk, fws, fws_len, dws, dws_len);
    case FS_CHAIN_TAIL_FREE:
        return fs_tail_free(cur, next, 1, n, a, mk, fws, fws_len, dws, dws_len);
    case FS_CHAIN_DYNAMIC_TEMPERATURE:
        return fs_dynamic_temperature(cur, next, 1, n, a, b, c, dws, dws_len);
    case FS_CHAIN_SMOOTHING:
        return fs_smoothing(cur, next, 1, n, a, b);
    default:
        return FS_CHAIN_E_SIZE;
    }
}

/* fs_chain_row; when the chain is not fused and want_row is set, (*drawn, *ndrawn) is
 * the row of survivors the draw read (after the stages on them) and *kdrawn the drawn
 * index (without want_row, XTC first may draw over the whole row itself). */
static int chain_row_run(const float *row, int64_t V, const int64_t *hist, int64_t nhist,
                         fs_chain_params *p, const uint8_t *is_breaker,
                         int64_t breaker_len, float *work, int32_t *ids, float *vals,
                         float *tmp, int64_t vlen, int32_t *counts, int32_t *best, int32_t *z,
                         int64_t z_len, double *dws, int64_t dws_len, void *ws,
                         size_t ws_bytes, int isa, int32_t *token, int want_row,
                         const float **drawn, int64_t *ndrawn, int32_t *kdrawn,
                         int *whole_row) {
    if (!token)
        return FS_CHAIN_E_SIZE;
    *token = -2;
    if (!row || !p || !work || V < 1 || vlen < V || nhist < 0 || (nhist > 0 && !hist) ||
        p->n_after < 0 || p->n_after > FS_CHAIN_MAX_AFTER)
        return FS_CHAIN_E_SIZE;
    if (p->terminal && (want_row || p->fused || p->first == FS_CHAIN_MIROSTAT ||
                        p->first == FS_CHAIN_MIROSTAT_V2 ||
                        (p->terminal != FS_CHAIN_MIROSTAT && p->terminal != FS_CHAIN_MIROSTAT_V2 &&
                         p->terminal != FS_CHAIN_GREEDY && p->terminal != FS_CHAIN_ADAPTIVE_P)))
        return FS_CHAIN_E_SIZE;  /* a Mirostat, Greedy or AdaptiveP terminal: after stages, no
                                  * row out */
    const float *x = row;
    int64_t offsets[2] = {0, nhist};
    int rc;
    /* With edits, one pass takes the row's block maxima and only the blocks holding the
     * edits' windows are copied into work (the overlay); the edits rewrite work in
     * place, the kernel takes the maxima of the blocks they touched again and reads
     * each block from work or the row. Temperature first (HF order) divides the whole
     * edited row anyway, and a whole-distribution stage first reads every token: there
     * the first edit's kernel copies the row and the stage's own first pass follows.
     * A bitmask (words) rides in the overlay's first pass (the masked row's maxima), its
     * copied blocks and the kernel's reads; before a pass that reads every token it is a
     * masked copy of the row. */
    if (p->n_bias < 0 || (p->n_bias > 0 && (!p->bias_ids || !p->bias_values)))
        return FS_CHAIN_E_SIZE;
    const uint32_t *words = p->words;
    const int ready = (p->n_bias || p->penalties || p->dry || p->ngram > 0 || words) &&
                      !p->first &&
                      !(p->fused && !p->temperature_last && p->temperature != 1.0 &&
                        p->temperature > 0.0);
    int bad = 0;
    if (words && !ready) {
        /* a bitmask before a pass that reads every token (a stage first, temperature
         * first): the masked copy, in which the edits then run in place; a NaN/+inf
         * anywhere in the input (allowed or not) is the general route's */
        rc = fs_mask_copy(row, words, work, V, &bad, isa);
        if (rc)
            return rc;
        if (bad)
            return FS_CHAIN_FALLBACK;
        x = work;
    }
    int64_t pw = 0, listed = 0;
    const int64_t *pen_ids = NULL;  /* the ids Penalties writes: the window's tokens */
    if (p->n_bias && hides_bad_value(row, V, p->bias_ids, p->n_bias))
        return FS_CHAIN_FALLBACK;  /* (and an id outside [0, V): the general route raises) */
    if (p->ngram > 0 && hides_bad_value(row, V, hist, nhist))
        return FS_CHAIN_FALLBACK;  /* it bans history tokens (any of them, in principle) */
    if (p->penalties) {
        pw = p->penalty_last_n < 0 || p->penalty_last_n > nhist ? nhist : p->penalty_last_n;
        pen_ids = pw ? hist + (nhist - pw) : NULL;
        if (p->ngram <= 0 && hides_bad_value(row, V, pen_ids, pw))  /* (else checked) */
            return FS_CHAIN_FALLBACK;
    }
    if (ready) {  /* the overlay: only the blocks of the edits' windows are copied */
        int64_t dw = 0;
        if (p->dry)
            dw = p->dry_last_n < 0 || p->dry_last_n > nhist ? nhist : p->dry_last_n;
        int64_t ew = pw > dw ? pw : dw;  /* the windows end the history */
        if (p->ngram > 0)
            ew = nhist;  /* NoRepeatNGram may ban any history token */
        rc = fs_canonical_overlay(row, work, V, hist + (nhist - ew), ew, p->bias_ids,
                                  p->n_bias, words, &bad, ws, ws_bytes, isa);
        if (rc)
            return rc;
        x = work;
    }
    if (p->ngram > 0) {  /* its bans: in place on the overlay, else into a copy first */
        rc = fs_no_repeat_ngram(x, work, 1, V, hist, nhist, offsets, &p->ngram, z, z_len);
        if (rc)
            return rc;
        x = work;
    }
    if (p->n_bias) {  /* into work: in place on the overlay, else a copy of the row first */
        rc = fs_logit_bias(x, work, 1, V, p->bias_ids, p->bias_values, p->n_bias);
        if (rc)
            return rc;
        x = work;
    }
    if (p->penalties) {  /* into work (a copy of the row first unless ready) */
        rc = fs_penalties(x, work, 1, V, hist, nhist, offsets, &p->repeat, &p->frequency,
                          &p->presence, &p->penalty_last_n, counts, vlen);
        if (rc)
            return rc;
        x = work;
    }
    if (p->dry) {  /* the ids it writes are the followers it penalises: checked there */
        uint8_t saw_inf = 0;
        rc = fs_dry_flagged(x, work, 1, V, hist, nhist, offsets, &p->dry_multiplier,
                            &p->dry_base, &p->dry_allowed_length, &p->dry_last_n, is_breaker,
                            breaker_len, z, z_len, best, vlen, &saw_inf, &listed);
        if (rc)
            return rc;
        if (saw_inf)
            return FS_CHAIN_FALLBACK;
        x = work;
    }
    /* the history ids the edits may have written: Penalties' window, or with
     * NoRepeatNGram the whole history (DRY's followers are listed in z) */
    const int64_t *touched = p->ngram > 0 ? hist : pen_ids;
    const int64_t ntouched = p->ngram > 0 ? nhist : pw;
    if (p->fused) {
        rc = ready ? fs_sample_canonical_edited(work, row, V, touched, ntouched, z, listed,
                                                p->bias_ids, p->n_bias, words, bad, p->top_k,
                                                p->top_p, p->min_p, p->temperature,
                                                p->min_keep, p->seed, p->position, token, ws,
                                                ws_bytes, isa)
                   : fs_sample_canonical_row(x, V, p->top_k, p->top_p, p->min_p,
                                             p->temperature, p->min_keep, p->temperature_last,
                                             p->seed, p->position, token, ws, ws_bytes, isa);
        if (rc)
            return rc;
        return *token == FS_INVALID_ROW ? FS_CHAIN_FALLBACK : FS_CHAIN_OK;
    }
    int64_t n;
    /* The survivors are the whole row when no stage first cuts it (FS_CHAIN_WHOLE_ROW),
     * and for XTC first with stages after it, the whole row less the few ids it removes
     * (fs_xtc_removed_row; nothing when it does not fire): the stages read x itself, or
     * a copy with those ids at -inf, and ids are the positions. No gather of ~V
     * survivors: a masked token is what the stage kernels skip anyway. */
    int whole = p->first == FS_CHAIN_WHOLE_ROW;
    if (whole && p->n_after < 1)  /* (edits -> Greedy alone is the fused kernel at t = 0) */
        return FS_CHAIN_E_SIZE;
    int64_t nr = 0;  /* XTC's removed ids, in ids */
    if (p->first == FS_CHAIN_XTC && p->n_after > 0) {
        whole = 1;
        rc = fs_xtc_removed_row(x, V, p->first_a, p->first_b, p->first_temperature, p->seed,
                                p->position, vals, ids, vlen, &nr, ws, ws_bytes, isa);
        if (rc)
            return rc;
        if (nr < 0 || (nr > 0 && p->first_min_keep > 1))
            return FS_CHAIN_FALLBACK;  /* invalid, undecided, or the floor: the stages */
    } else if (whole) {  /* the stage kernels take any row: an invalid one is the general
                          * route's */
        uint8_t invalid;
        rc = fs_invalid_rows(x, 1, V, &invalid, isa);
        if (rc)
            return rc;
        if (invalid)
            return FS_CHAIN_FALLBACK;
    }
    const float *src = vals;
    if (whole) {
        n = V;
        src = x;
        if (p->first == FS_CHAIN_XTC && (nr > 0 || p->first_temperature != 1.0)) {
            /* with a temperature, vals already holds the divided row */
            masked_copy(vals, p->first_temperature == 1.0 ? x : vals, V, ids, nr);
            src = vals;
        }
    } else if (p->first) {  /* a whole-distribution stage first, on the (edited) row */
        int32_t tok;
        const int mirostat = p->first == FS_CHAIN_MIROSTAT || p->first == FS_CHAIN_MIROSTAT_V2;
        if (mirostat && (p->n_after != 0 || want_row))
            return FS_CHAIN_E_SIZE;  /* a terminal: nothing after it, no row to hand out */
        /* the draw in the call when nothing follows, or only a Temperature (> 0) */
        double draw = 0.0;
        if (!want_row && p->terminal)
            draw = 0.0;  /* the Mirostat or Greedy terminal takes the token */
        else if (!want_row && p->n_after == 0)
            draw = 1.0;
        else if (!want_row && p->n_after == 1 && p->after[0] == FS_CHAIN_TEMPERATURE &&
                 p->after_a[0] > 0.0 && p->after_a[0] < INFINITY)
            draw = p->after_a[0];
        rc = fs_whole_first_row(x, V, p->first, p->first_a, p->first_b, p->first_min_keep,
                                p->first_temperature, p->seed, p->position, draw, ids, vals,
                                vlen, &n, &tok,
                                &p->first_lp, ws, ws_bytes, isa);
        if (rc)
            return rc;
        if (n == 0 && tok >= 0) {  /* XTC or a Mirostat drew over its survivors */
            *token = tok;
            return FS_CHAIN_OK;
        }
    } else {
        rc = ready ? fs_truncate_canonical_edited(work, row, V, touched, ntouched, z, listed,
                                                  p->bias_ids, p->n_bias, words, bad,
                                                  p->top_k, p->top_p, p->min_p, p->min_keep,
                                                  ids, vals, vlen, &n, ws, ws_bytes, isa)
                   : fs_truncate_canonical_row(x, V, p->top_k, p->top_p, p->min_p,
                                               p->min_keep, ids, vals, vlen, &n, ws, ws_bytes,
                                               isa);
    }
    if (rc)
        return rc;
    if (n <= 0) {  /* invalid, or (never: cap = V) more survivors than fit */
        *token = -2;
        return FS_CHAIN_FALLBACK;
    }
    /* the later stages on the survivors as a (1, n) row, as the candidates route; each
     * writes vals or tmp (whichever it does not read), its float scratch is the third
     * of work, vals and tmp (work may be x itself, the edited row) */
    const float *cur = src;
    for (int s = 0; s < p->n_after; s++) {
        float *next = cur == tmp ? vals : tmp;
        float *fws = cur != work && next != work ? work : (cur != vals && next != vals ? vals
                                                                                       : tmp);
        rc = after_stage(p, s, cur, next, n, fws, vlen, dws, dws_len, best, ws, ws_bytes,
                         isa);
        if (rc == FS_CHAIN_SAME)
            continue;
        if (rc)
            return rc;
        cur = next;
    }
    if (want_row && cur != vals && cur != tmp) {  /* the row itself (every stage a no-op):
                                                    * the caller's logprobs use work */
        memcpy(vals, cur, (size_t)n * sizeof(float));
        cur = vals;
    }
    int32_t k;
    if (p->terminal == FS_CHAIN_GREEDY) {  /* the first maximum: fs.sample's greedy pass */
        rc = fs_sample_canonical_row(cur, n, 0, 1.0, 0.0, 0.0, 1, 1, p->seed, p->position, &k,
                                     ws, ws_bytes, isa);
        k = k == FS_INVALID_ROW ? -1 : k;  /* every survivor masked */
    } else if (p->terminal == FS_CHAIN_ADAPTIVE_P) {
        /* the stage-by-stage route's kernels: the reshaped row, the draw over it, and
         * the drawn token's log-probability among the survivors before the reshaping
         * (the caller's average update) */
        float *out = cur == tmp ? vals : tmp;
        rc = fs_adaptive_p(cur, out, 1, n, &p->terminal_m, &p->terminal_mu, &p->terminal_w,
                           dws, dws_len);
        if (!rc)
            rc = fs_draw(out, 1, n, &p->seed, &p->position, &k, ws, ws_bytes, isa);
        if (!rc && k >= 0 && k < n) {
            const int64_t k64 = k;
            rc = fs_token_logprob(cur, 1, n, &k64, &p->first_lp, isa);
        }
        cur = out;
    } else if (p->terminal)  /* its mu update reads the drawn token's log-probability */
        rc = fs_mirostat_row(cur, n, V, p->terminal, p->terminal_mu, p->terminal_m, p->seed,
                             p->position, &k, &p->first_lp, ws, ws_bytes, isa);
    else
        rc = fs_draw(cur, 1, n, &p->seed, &p->position, &k, ws, ws_bytes, isa);
    if (rc)
        return rc;
    if (k < 0 || k >= n)
        return FS_CHAIN_FALLBACK;  /* every survivor masked by the later stages */
    *token = whole ? k : ids[k];
    *whole_row = whole;
    *drawn = cur;
    *ndrawn = n;
    *kdrawn = k;
    return FS_CHAIN_OK;
}

int fs_chain_row(const float *row, int64_t V, const int64_t *hist, int64_t nhist,
                 fs_chain_params *p, const uint8_t *is_breaker, int64_t breaker_len,
                 float *work, int32_t *ids, float *vals, float *tmp, int64_t vlen,
                 int32_t *counts, int32_t *best, int32_t *z, int64_t z_len,
                 double *dws, int64_t dws_len, void *ws, size_t ws_bytes, int isa,
                 int32_t *token) {
    const float *drawn;
    int64_t ndrawn;
    int32_t kdrawn;
    int whole;
    return chain_row_run(row, V, hist, nhist, p, is_breaker, breaker_len, work, ids, vals, tmp,
                         vlen, counts, best, z, z_len, dws, dws_len, ws, ws_bytes, isa, token,
                         0, &drawn, &ndrawn, &kdrawn, &whole);
}

/* The top kk (<= nd) of a short row, descending, ties to the lower index, by insertion:
 * the survivors are a few dozen values, where fs_topk_checked's block machinery costs
 * more than the whole selection (about 1 us of a 12 us token). */
static void small_topk(const float *d, int64_t nd, int64_t kk, float *vals, int32_t *idx) {
    int64_t c = 0;
    for (int64_t i = 0; i < nd; i++) {
        float x = d[i];
        if (c == kk && !(x > vals[kk - 1]))
            continue;
        int64_t j = c < kk ? c++ : kk - 1;
        for (; j > 0 && x > vals[j - 1]; j--) {
            vals[j] = vals[j - 1];
            idx[j] = idx[j - 1];
        }
        vals[j] = x;
        idx[j] = (int32_t)i;
    }
}

int fs_chain_row_logprobs(const float *row, int64_t V, const int64_t *hist, int64_t nhist,
                          fs_chain_params *p, const uint8_t *is_breaker,
                          int64_t breaker_len, float *work, int32_t *ids, float *vals,
                          float *tmp, int64_t vlen, int32_t *counts, int32_t *best,
                          int32_t *z, int64_t z_len, double *dws, int64_t dws_len, void *ws,
                          size_t ws_bytes, int isa, int64_t nlp, float *lp, int32_t *rank,
                          int32_t *top_ids, float *top_lp, int32_t *token) {
    if (!token)
        return FS_CHAIN_E_SIZE;
    *token = -2;
    if (!p || p->fused || nlp < 0 || !lp || !rank || (nlp > 0 && (!top_ids || !top_lp)) ||
        !best)
        return FS_CHAIN_E_SIZE;
    const float *d = NULL;
    int64_t nd = 0;
    int32_t kd = -1;
    int whole = 0;
    int rc = chain_row_run(row, V, hist, nhist, p, is_breaker, breaker_len, work, ids, vals,
                           tmp, vlen, counts, best, z, z_len, dws, dws_len, ws, ws_bytes, isa,
                           token, 1, &d, &nd, &kd, &whole);
    if (rc)
        return rc;
    /* the log-probabilities of the survivors' row, as fs_logprobs of a (1, nd) row: its
     * top kk from fs_topk_checked into work and best (both free once the draw is done;
     * d is vals or tmp), then the LSE and rank pass; top ids mapped back to token ids */
    int64_t kk = nlp > 1 ? nlp : 1;
    if (kk > nd)
        kk = nd;
    if (nd * kk <= 16384) {
        small_topk(d, nd, kk, work, best);
    } else {
        if (fs_topk_ws_bytes(nd) > ws_bytes)
            return FS_CHAIN_E_SIZE;
        uint8_t invalid = 0;
        rc = fs_topk_checked(d, 1, nd, kk, work, best, &invalid, ws, ws_bytes, isa);
        if (rc)
            return rc;
    }
    int64_t tk = kd;
    rc = fs_logprobs(d, 1, nd, &tk, work, best, kk, nlp, lp, rank, top_ids, top_lp, isa);
    if (rc)
        return rc;
    for (int64_t q = 0; q < nlp && !whole; q++)  /* whole: the ids are the positions */
        if (top_ids[q] >= 0 && top_ids[q] < nd)
            top_ids[q] = ids[top_ids[q]];
    return FS_CHAIN_OK;
}

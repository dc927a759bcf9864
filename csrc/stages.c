/* Stage kernels of the C backend (see stages.h for the conventions).
 *
 * Each stage follows fastsample/reference.py formula for formula: float64
 * arithmetic, float32 rounding at the same points, saturation at the float32
 * range for non-truncations, the same tie rules. Sums the reference takes with
 * numpy's sum (W = sum(w), the entropy, the std) use numpy's pairwise summation
 * (fsc_pw_sum) so that they round the same way; running sums (top-p, typical) are
 * sequential, as np.cumsum is.
 *
 * Algorithms:
 * - k-th largest value (top-k, the min_keep floor): a size-k min-heap for
 *   k <= 256, else a three-way quickselect over a copy of the finite values.
 * - top-p / typical: a 1024-bin histogram of the probability mass over the sort
 *   key finds the bin where the running mass reaches p; only that bin's tokens
 *   are sorted (key, then id), so a row costs O(V + c log c), c = bin size.
 * - penalties: counts in a caller workspace indexed by token, touched only at the
 *   window's tokens (O(window), not O(V), apart from copying the row).
 * - DRY: Z-algorithm on the reversed window, linear in its length.
 */
#include "stages.h"

#include <math.h>
#include <string.h>

#include "fs_philox.h"
#include "fs_stage_common.h"  /* entry checks and row helpers shared with stages_extra.c */

#define LN_F32_MAX 88.7228391  /* DRY's exponent clamp, as the reference */
#define NBINS 1024             /* top-p / typical histogram */
#define BIN_SCALE 16.0         /* bins of 1/16 nat (logit distance or typical score) */

typedef struct {
    double key;
    int64_t id;
} keyed;

/* ---------------------------------------------------------------- histories */

/* The last last_n tokens of row b (all of them for last_n < 0). */
static void window(const int64_t *offsets, int64_t b, int64_t last_n, int64_t *start,
                   int64_t *end) {
    *start = offsets[b];
    *end = offsets[b + 1];
    if (last_n > 0 && *end - *start > last_n)
        *start = *end - last_n;
}

/* ---------------------------------------------------------------- sorted prefixes */

/* (key, id) order; every id is distinct, so this is a strict total order */
static int keyed_less(keyed a, keyed b) {
    return a.key < b.key || (a.key == b.key && a.id < b.id);
}

/* In-place heapsort (no allocation, no recursion; libc's qsort may malloc). */
static void sort_keyed(keyed *a, int64_t n) {
    for (int64_t end = n, start = n / 2; end > 1;) {
        if (start > 0) {
            start--;  /* heapify phase */
        } else {
            end--;  /* extraction phase: the largest goes to the end */
            keyed t = a[0];
            a[0] = a[end];
            a[end] = t;
        }
        int64_t j = start;
        keyed v = a[j];
        for (;;) {
            int64_t c = 2 * j + 1;
            if (c >= end)
                break;
            if (c + 1 < end && keyed_less(a[c], a[c + 1]))
                c++;
            if (!keyed_less(v, a[c]))
                break;
            a[j] = a[c];
            j = c;
        }
        a[j] = v;
    }
}

static int bin_of(double v) {
    v *= BIN_SCALE;
    if (!(v < NBINS - 1))
        return NBINS - 1;
    return v < 0.0 ? 0 : (int)v;
}

/* Shortest prefix, in (key ascending, id ascending) order, of the finite tokens
 * whose running mass sum(w / W) reaches target; returns the key of its last
 * token (+inf: never reached, keep every finite token). A token's bin is
 * bin_of(key + off), non-decreasing in key. Bins wholly before the cut are summed
 * unsorted (they cannot reach target - 1e-9); from the cut bin on, tokens are
 * sorted and summed one by one. pairs holds V keyed entries. */
static double prefix_cut(const float *row, const double *key, const double *w, double W,
                         int64_t V, double off, double target, keyed *pairs) {
    double hist[NBINS];
    int64_t count[NBINS];
    for (int b = 0; b < NBINS; b++) {
        hist[b] = 0.0;
        count[b] = 0;
    }
    for (int64_t i = 0; i < V; i++) {
        if (row[i] > -INFINITY) {
            int b = bin_of(key[i] + off);
            hist[b] += w[i] / W;
            count[b]++;
        }
    }
    double acc = 0.0;
    int first = NBINS;
    for (int b = 0; b < NBINS; b++) {
        if (acc + hist[b] >= target - 1e-9) {
            first = b;
            break;
        }
        acc += hist[b];
    }
    for (int b = first; b < NBINS; b++) {
        if (!count[b])
            continue;
        int64_t c = 0;
        for (int64_t i = 0; i < V; i++) {
            if (row[i] > -INFINITY && bin_of(key[i] + off) == b) {
                pairs[c].key = key[i];
                pairs[c].id = i;
                c++;
            }
        }
        sort_keyed(pairs, c);
        for (int64_t j = 0; j < c; j++) {
            acc += w[pairs[j].id] / W;
            if (acc >= target)
                return pairs[j].key;
        }
    }
    return INFINITY;
}

/* ---------------------------------------------------------------- logit bias */

int fs_logit_bias(const float *logits, float *out, int64_t B, int64_t V,
                  const int64_t *ids, const double *values, int64_t n) {
    int rc = fsc_check_block(logits, out, B, V);
    if (rc || B == 0)
        return rc;
    if (n < 0 || (n > 0 && (!ids || !values)))
        return FS_STAGE_E_SIZE;
    for (int64_t j = 0; j < n; j++) {
        if (ids[j] < 0 || ids[j] >= V)
            return FS_STAGE_E_ID;
        if (j && ids[j] < ids[j - 1])
            return FS_STAGE_E_UNSORTED;
    }
    for (int64_t b = 0; b < B; b++) {
        const float *row = logits + b * V;
        float *o = out + b * V;
        if (o != row) /* out == logits: edit in place (each token is read before its write) */
            memcpy(o, row, (size_t)V * sizeof(float));
        /* ids ascending: a run of equal ids adds up in the given order, as np.add.at */
        for (int64_t j = 0; j < n;) {
            int64_t t = ids[j];
            double acc = (double)row[t];
            int banned = 0;
            for (; j < n && ids[j] == t; j++) {
                acc += values[j];
                banned |= values[j] == -INFINITY;
            }
            o[t] = (banned || !(row[t] > -INFINITY)) ? -INFINITY : fs_sat_f32(acc);
        }
    }
    return FS_STAGE_OK;
}

/* ---------------------------------------------------------------- penalties */

int fs_penalties(const float *logits, float *out, int64_t B, int64_t V,
                 const int64_t *hist, int64_t nhist, const int64_t *offsets,
                 const double *repeat, const double *frequency, const double *presence,
                 const int64_t *last_n, int32_t *counts, int64_t counts_len) {
    int rc = fsc_check_hist_block(logits, out, B, V, hist, nhist, offsets);
    if (rc || B == 0)
        return rc;
    if (!repeat || !frequency || !presence || !last_n || fsc_check_ws(counts, counts_len, V))
        return FS_STAGE_E_SIZE;
    for (int64_t b = 0; b < B; b++) {
        const float *row = logits + b * V;
        float *o = out + b * V;
        if (o != row) /* out == logits: edit in place (each token is read before its write) */
            memcpy(o, row, (size_t)V * sizeof(float));
        if (last_n[b] == 0 || (repeat[b] == 1.0 && frequency[b] == 0.0 && presence[b] == 0.0))
            continue;
        int64_t start, end;
        window(offsets, b, last_n[b], &start, &end);
        if (end - start > INT32_MAX)
            return FS_STAGE_E_SIZE;
        if ((rc = fsc_check_tokens(hist, start, end, V)))
            return rc;
        /* count the window's tokens; each count is reset when its token is applied,
         * so the entries touched are zeroed first and left as found (zero) */
        for (int64_t i = start; i < end; i++)
            counts[hist[i]] = 0;
        for (int64_t i = start; i < end; i++)
            counts[hist[i]]++;
        for (int64_t i = start; i < end; i++) {
            int64_t t = hist[i];
            int32_t c = counts[t];
            if (c == 0)
                continue;
            counts[t] = 0;
            double x = (double)row[t];
            if (x > -INFINITY) {
                double y = x > 0 ? x / repeat[b] : x * repeat[b];
                o[t] = fs_sat_f32(y - ((double)c * frequency[b] + presence[b]));
            }
        }
    }
    return FS_STAGE_OK;
}

/* ---------------------------------------------------------------- DRY */

static int dry_active(double multiplier, double base, int64_t last_n) {
    return multiplier != 0.0 && base >= 1.0 && last_n != 0;
}

static double dry_amount(int64_t length, double multiplier, double base, int64_t allowed) {
    double expo = (double)length - (double)allowed;
    if (base > 1.0) {
        double cap = LN_F32_MAX / log(base);
        if (expo > cap)
            expo = cap;
    }
    return multiplier * pow(base, expo);
}

/* The repeat length at rev offset j (rev[i] = hist[last - i]; j a position where
 * rev[j] == rev[0]): how far rev[0..) and rev[j..) agree, stopping at a breaker of the
 * suffix (rev[rep_limit] is the last breaker, rev[0] never is), i.e. min(Z(j),
 * rep_limit); *work counts the comparisons. */
static int64_t dry_match(const int64_t *hist, int64_t last, int64_t n, int64_t j,
                         const uint8_t *brk, int64_t *work) {
    int64_t k = 1;
    while (k < n - j && hist[last - k] == hist[last - j - k] && !brk[hist[last - k]])
        k++;
    *work += k;
    return k;
}

/* docs/spec.md §4.1 repeat lengths of the window hist[start, end) (tokens already
 * checked): the number c of distinct tokens t with L(t) >= allowed, listed in z[0, c)
 * (first seen from the end of the window), with best[t] = L(t); no other entry of best
 * is read or written. z holds n = end - start entries.
 *
 * L(t) is the longest repeat length min(Z(j), rep_limit) over the rev offsets j whose
 * follower hist[end - j] is t, Z over the reversed window (fsc_z_reversed). Z(j) > 0
 * only where hist[end - 1 - j] is the last token, so with allowed >= 1 the lengths come
 * from those few positions, each match extended directly (and again when the list is
 * made, instead of storing it); a window whose matches would cost more than n
 * comparisons in all (long periodic runs) takes the linear Z route, so a call is O(n)
 * on any history. */
static int64_t dry_lengths(const int64_t *hist, int64_t start, int64_t end, int64_t allowed,
                           const uint8_t *brk, int32_t *z, int32_t *best) {
    const int64_t n = end - start, last = end - 1;
    if (n < 2 || brk[hist[last]])
        return 0;
    const int64_t tok = hist[last];
    int64_t c = 0;
    if (allowed >= 1) {
        int64_t work = 0, m = 0, j = 1;
        for (; j < n && work <= n; j++) {  /* the offsets whose repeat qualifies */
            if (hist[last - j] != tok)
                continue;
            if (dry_match(hist, last, n, j, brk, &work) >= allowed && !brk[hist[end - j]])
                z[m++] = (int32_t)j;
        }
        if (j == n && work <= n) {
            for (int64_t q = 0; q < m; q++)
                best[hist[end - z[q]]] = -1;
            /* the list overwrites z behind the reading position (c <= q) */
            for (int64_t q = 0; q < m; q++) {
                int64_t jq = z[q], t = hist[end - jq];
                int32_t length = (int32_t)dry_match(hist, last, n, jq, brk, &work);
                if (best[t] < 0)
                    z[c++] = (int32_t)t;
                if (best[t] < length)
                    best[t] = length;
            }
            return c;
        }
    }
    /* the linear route: Z over the whole window, capped at the last breaker */
    int64_t rep_limit = n;
    for (int64_t i = n - 1; i >= 0; i--) {
        if (brk[hist[start + i]]) {
            rep_limit = n - 1 - i;
            break;
        }
    }
    fsc_z_reversed(hist, end, n, z);
    for (int64_t j = 1; j < n; j++) {
        int64_t length = z[j] < rep_limit ? z[j] : rep_limit;
        z[j] = length >= allowed && !brk[hist[end - j]] ? (int32_t)(length + 1) : 0;
    }
    for (int64_t j = 1; j < n; j++)
        if (z[j] > 0)
            best[hist[end - j]] = -1;
    for (int64_t j = 1; j < n; j++) {  /* the list overwrites z behind j (c < j) */
        int32_t length = z[j] - 1;
        if (length < 0)
            continue;
        int64_t t = hist[end - j];
        if (best[t] < 0)
            z[c++] = (int32_t)t;
        if (best[t] < length)
            best[t] = length;
    }
    return c;
}

static int dry_check(int64_t V, const uint8_t *is_breaker, int64_t breaker_len, int32_t *best,
                     int64_t best_len) {
    if (!is_breaker || breaker_len != V || fsc_check_ws(best, best_len, V))
        return FS_STAGE_E_SIZE;
    return FS_STAGE_OK;
}

int fs_dry(const float *logits, float *out, int64_t B, int64_t V,
           const int64_t *hist, int64_t nhist, const int64_t *offsets,
           const double *multiplier, const double *base, const int64_t *allowed_length,
           const int64_t *last_n, const uint8_t *is_breaker, int64_t breaker_len,
           int32_t *z, int64_t z_len, int32_t *best, int64_t best_len) {
    return fs_dry_flagged(logits, out, B, V, hist, nhist, offsets, multiplier, base,
                          allowed_length, last_n, is_breaker, breaker_len, z, z_len, best,
                          best_len, NULL, NULL);
}

int fs_dry_flagged(const float *logits, float *out, int64_t B, int64_t V,
                   const int64_t *hist, int64_t nhist, const int64_t *offsets,
                   const double *multiplier, const double *base, const int64_t *allowed_length,
                   const int64_t *last_n, const uint8_t *is_breaker, int64_t breaker_len,
                   int32_t *z, int64_t z_len, int32_t *best, int64_t best_len,
                   uint8_t *saw_inf, int64_t *listed) {
    if (listed)
        *listed = 0;
    int rc = fsc_check_hist_block(logits, out, B, V, hist, nhist, offsets);
    if (rc || B == 0)
        return rc;
    if (!multiplier || !base || !allowed_length || !last_n)
        return FS_STAGE_E_SIZE;
    if ((rc = dry_check(V, is_breaker, breaker_len, best, best_len)))
        return rc;
    for (int64_t b = 0; b < B; b++) {
        const float *row = logits + b * V;
        float *o = out + b * V;
        if (o != row) /* out == logits: edit in place (each token is read before its write) */
            memcpy(o, row, (size_t)V * sizeof(float));
        if (listed)
            *listed = 0;
        if (!dry_active(multiplier[b], base[b], last_n[b]))
            continue;
        int64_t start, end;
        window(offsets, b, last_n[b], &start, &end);
        if (end - start > INT32_MAX || fsc_check_ws(z, z_len, end - start))
            return FS_STAGE_E_SIZE;
        if ((rc = fsc_check_tokens(hist, start, end, V)))
            return rc;
        int64_t c = dry_lengths(hist, start, end, allowed_length[b], is_breaker, z, best);
        if (listed)
            *listed = c;
        for (int64_t j = 0; j < c; j++) {
            int64_t t = z[j];
            double x = (double)row[t];
            if (x == INFINITY && saw_inf)
                saw_inf[b] = 1;
            if (x > -INFINITY)
                o[t] = fs_sat_f32(x - dry_amount(best[t], multiplier[b], base[b], allowed_length[b]));
        }
    }
    return FS_STAGE_OK;
}

/* In-place heapsort of int32 values, ascending. */
static void sort_i32(int32_t *a, int64_t n) {
    for (int64_t end = n, start = n / 2; end > 1;) {
        if (start > 0) {
            start--;
        } else {
            end--;
            int32_t t = a[0];
            a[0] = a[end];
            a[end] = t;
        }
        int64_t j = start;
        int32_t v = a[j];
        for (;;) {
            int64_t c = 2 * j + 1;
            if (c >= end)
                break;
            if (c + 1 < end && a[c] < a[c + 1])
                c++;
            if (!(v < a[c]))
                break;
            a[j] = a[c];
            j = c;
        }
        a[j] = v;
    }
}

int fs_dry_penalty(const int64_t *hist, int64_t nhist, int64_t V, double multiplier,
                   double base, int64_t allowed_length, int64_t last_n,
                   const uint8_t *is_breaker, int64_t breaker_len,
                   int32_t *z, int64_t z_len, int32_t *best, int64_t best_len,
                   int32_t *ids, float *penalties, int64_t cap, int64_t *count) {
    if (!count)
        return FS_STAGE_E_SIZE;
    *count = 0;
    if (V < 1 || V > INT32_MAX || nhist < 0 || (nhist > 0 && !hist))
        return FS_STAGE_E_SIZE;
    if (!dry_active(multiplier, base, last_n))
        return FS_STAGE_OK;
    int rc = dry_check(V, is_breaker, breaker_len, best, best_len);
    if (rc)
        return rc;
    int64_t start = 0, end = nhist;
    if (last_n > 0 && end > last_n)
        start = end - last_n;
    if (end - start > INT32_MAX || fsc_check_ws(z, z_len, end - start))
        return FS_STAGE_E_SIZE;
    if ((rc = fsc_check_tokens(hist, start, end, V)))
        return rc;
    int64_t c = dry_lengths(hist, start, end, allowed_length, is_breaker, z, best);
    if (c == 0)
        return FS_STAGE_OK;
    /* one id per distinct follower token (cap >= min(n - 1, V) is enough) */
    if (c > cap || !ids || !penalties)
        return FS_STAGE_E_SIZE;
    for (int64_t j = 0; j < c; j++)
        ids[j] = z[j];
    sort_i32(ids, c);  /* ids ascending, as the reference */
    for (int64_t j = 0; j < c; j++) {
        double a = dry_amount(best[ids[j]], multiplier, base, allowed_length);
        penalties[j] = (float)(a > (double)FLT_MAX ? (double)FLT_MAX : a);
    }
    *count = c;
    return FS_STAGE_OK;
}

/* ---------------------------------------------------------------- truncations */

int64_t fs_stage_dws_len(int64_t V) {
    return V < 0 || V > INT64_MAX / 4 ? -1 : 4 * V;
}

/* Common entry checks of the truncations: block, parameters, workspaces. */
static int trunc_check(const float *logits, float *out, int64_t B, int64_t V,
                       const void *p1, const void *p2, const float *fws, int64_t fws_len,
                       const double *dws, int64_t dws_len, int64_t dws_need) {
    int rc = fsc_check_block(logits, out, B, V);
    if (rc || B == 0)
        return rc;
    if (!p1 || !p2 || fsc_check_ws(fws, fws_len, V) || fsc_check_ws(dws, dws_len, dws_need))
        return FS_STAGE_E_SIZE;
    return FS_STAGE_OK;
}

int fs_top_n_sigma(const float *logits, float *out, int64_t B, int64_t V,
                   const double *n, const int64_t *min_keep,
                   float *fws, int64_t fws_len, double *dws, int64_t dws_len) {
    int rc = trunc_check(logits, out, B, V, n, min_keep, fws, fws_len, dws, dws_len, V);
    if (rc || B == 0)
        return rc;
    for (int64_t b = 0; b < B; b++) {
        const float *row = logits + b * V;
        float *o = out + b * V;
        int64_t nfin = fsc_count_finite(row, V);
        if (n[b] <= 0 || nfin == 0) {
            memcpy(o, row, (size_t)V * sizeof(float));
            continue;
        }
        /* np.std of the finite values, population (ddof = 0), numpy's rounding */
        int64_t c = 0;
        for (int64_t i = 0; i < V; i++)
            if (row[i] > -INFINITY)
                dws[c++] = (double)row[i];
        double mean = fsc_pw_sum(dws, c) / (double)c;
        FSC_CALL_ISA(fsc_sq_dev, dws, mean, c);
        double sigma = sqrt(fsc_pw_sum(dws, c) / (double)c);
        int64_t nk = fsc_keep_ge(row, o, V, fsc_row_max(row, V) - n[b] * sigma);
        fsc_finish(row, o, V, nk, min_keep[b], nfin, fws);
    }
    return FS_STAGE_OK;
}

int fs_top_k(const float *logits, float *out, int64_t B, int64_t V,
             const int64_t *k, const int64_t *min_keep,
             float *fws, int64_t fws_len, double *dws, int64_t dws_len) {
    int rc = trunc_check(logits, out, B, V, k, min_keep, fws, fws_len, dws, dws_len, 0);
    if (rc || B == 0)
        return rc;
    for (int64_t b = 0; b < B; b++) {
        const float *row = logits + b * V;
        float *o = out + b * V;
        int64_t nfin = fsc_count_finite(row, V);
        if (0 < k[b] && k[b] < nfin) {
            int64_t nk = fsc_keep_ge(row, o, V, fsc_kth_largest(row, V, k[b], nfin, fws));
            fsc_finish(row, o, V, nk, min_keep[b], nfin, fws);
        } else {
            memcpy(o, row, (size_t)V * sizeof(float));
        }
    }
    return FS_STAGE_OK;
}

int fs_min_p(const float *logits, float *out, int64_t B, int64_t V,
             const double *p, const int64_t *min_keep,
             float *fws, int64_t fws_len, double *dws, int64_t dws_len) {
    int rc = trunc_check(logits, out, B, V, p, min_keep, fws, fws_len, dws, dws_len, 0);
    if (rc || B == 0)
        return rc;
    for (int64_t b = 0; b < B; b++) {
        const float *row = logits + b * V;
        float *o = out + b * V;
        int64_t nfin = fsc_count_finite(row, V);
        if (p[b] <= 0.0 || nfin == 0) {
            memcpy(o, row, (size_t)V * sizeof(float));
            continue;
        }
        int64_t nk = fsc_keep_ge(row, o, V, fsc_row_max(row, V) + log(p[b]));
        fsc_finish(row, o, V, nk, min_keep[b], nfin, fws);
    }
    return FS_STAGE_OK;
}

/* Top-p (typical = 0: tokens ordered by logit, descending) and locally typical
 * sampling (typical = 1: ordered by |-ln p - H|): keep the shortest prefix of the
 * order whose mass reaches p (ties kept), then the min_keep floor. The double
 * workspace holds the weights, a key per token and V keyed pairs (fs_stage_dws_len). */
static int prefix_stage(int typical, const float *logits, float *out, int64_t B, int64_t V,
                        const double *p, const int64_t *min_keep, float *fws,
                        int64_t fws_len, double *dws, int64_t dws_len) {
    const int64_t need = fs_stage_dws_len(V);
    if (need < 0)
        return FS_STAGE_E_SIZE;
    int rc = trunc_check(logits, out, B, V, p, min_keep, fws, fws_len, dws, dws_len, need);
    if (rc || B == 0)
        return rc;
    double *w = dws, *key = dws + V;
    keyed *pairs = (keyed *)(dws + 2 * V);
    for (int64_t b = 0; b < B; b++) {
        const float *row = logits + b * V;
        float *o = out + b * V;
        int64_t nfin = fsc_count_finite(row, V);
        if (p[b] >= 1.0 || nfin == 0) {
            memcpy(o, row, (size_t)V * sizeof(float));
            continue;
        }
        double m = fsc_row_max(row, V);
        double W = fsc_weights(row, V, m, w);
        int64_t nk = 0;
        if (!typical) {
            /* order: logit descending, ties to the lower id; the bin is of m - l */
            for (int64_t i = 0; i < V; i++)
                key[i] = -(double)row[i];
            double last = prefix_cut(row, key, w, W, V, m, p[b] - FSC_MASS_TOL, pairs);
            nk = fsc_keep_ge(row, o, V, -last);
        } else {
            double h = fsc_entropy(w, W, V, key);
            double log_w = log(W);
            /* key = |-ln p - H| with ln p = (l - m) - ln W, as the reference */
            for (int64_t i = 0; i < V; i++)
                key[i] = row[i] > -INFINITY ? fabs(-(((double)row[i] - m) - log_w) - h)
                                            : INFINITY;
            double last = prefix_cut(row, key, w, W, V, 0.0, p[b] - FSC_MASS_TOL, pairs);
            for (int64_t i = 0; i < V; i++) {
                int keep = row[i] > -INFINITY && key[i] <= last;
                o[i] = keep ? row[i] : -INFINITY;
                nk += keep;
            }
        }
        fsc_finish(row, o, V, nk, min_keep[b], nfin, fws);
    }
    return FS_STAGE_OK;
}

int fs_top_p(const float *logits, float *out, int64_t B, int64_t V,
             const double *p, const int64_t *min_keep,
             float *fws, int64_t fws_len, double *dws, int64_t dws_len) {
    return prefix_stage(0, logits, out, B, V, p, min_keep, fws, fws_len, dws, dws_len);
}

int fs_typical(const float *logits, float *out, int64_t B, int64_t V,
               const double *p, const int64_t *min_keep,
               float *fws, int64_t fws_len, double *dws, int64_t dws_len) {
    return prefix_stage(1, logits, out, B, V, p, min_keep, fws, fws_len, dws, dws_len);
}

int fs_xtc(const float *logits, float *out, int64_t B, int64_t V,
           const double *probability, const double *threshold, const int64_t *min_keep,
           const uint64_t *seed, const uint64_t *position,
           float *fws, int64_t fws_len, double *dws, int64_t dws_len) {
    int rc = trunc_check(logits, out, B, V, probability, threshold, fws, fws_len, dws,
                         dws_len, V);
    if (rc || B == 0)
        return rc;
    if (!min_keep || !seed || !position)
        return FS_STAGE_E_SIZE;
    double *w = dws;
    for (int64_t b = 0; b < B; b++) {
        const float *row = logits + b * V;
        float *o = out + b * V;
        int64_t nfin = fsc_count_finite(row, V);
        double u = fs_uniform(seed[b], position[b], 0, FS_STREAM_XTC);
        if (probability[b] <= 0.0 || threshold[b] > 0.5 || !(u < probability[b]) || nfin == 0) {
            memcpy(o, row, (size_t)V * sizeof(float));
            continue;
        }
        double W = fsc_weights(row, V, fsc_row_max(row, V), w);
        int64_t above = 0;
        double smallest = INFINITY;
        for (int64_t i = 0; i < V; i++) {
            double pi = w[i] / W;
            if (row[i] > -INFINITY && pi >= threshold[b]) {
                above++;
                smallest = pi < smallest ? pi : smallest;
            }
        }
        if (above < 2) {
            memcpy(o, row, (size_t)V * sizeof(float));
            continue;
        }
        /* mask every token above the threshold except the least likely of them */
        int64_t nk = 0;
        for (int64_t i = 0; i < V; i++) {
            double pi = w[i] / W;
            int keep = row[i] > -INFINITY && !(pi >= threshold[b] && pi > smallest);
            o[i] = keep ? row[i] : -INFINITY;
            nk += keep;
        }
        fsc_finish(row, o, V, nk, min_keep[b], nfin, fws);
    }
    return FS_STAGE_OK;
}

/* ---------------------------------------------------------------- temperature */

int fs_temperature(const float *logits, float *out, int64_t B, int64_t V, const double *t) {
    int rc = fsc_check_block(logits, out, B, V);
    if (rc || B == 0)
        return rc;
    if (!t)
        return FS_STAGE_E_SIZE;
    for (int64_t b = 0; b < B; b++) {
        const float *row = logits + b * V;
        float *o = out + b * V;
        double tb = t[b];
        if (tb == 1.0) {
            memcpy(o, row, (size_t)V * sizeof(float));
        } else if (tb <= 0.0) {
            /* greedy: the first maximum keeps its logit, the rest are masked */
            int64_t best = 0;
            for (int64_t i = 1; i < V; i++)
                if (row[i] > row[best])
                    best = i;
            for (int64_t i = 0; i < V; i++)
                o[i] = -INFINITY;
            o[best] = row[best];
        } else {
            FSC_CALL_ISA(fsc_temp_row, row, o, V, tb);
        }
    }
    return FS_STAGE_OK;
}

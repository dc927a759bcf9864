/* The remaining stage kernels of the C backend (see stages_extra.h).
 *
 * Like stages.c, each stage follows fastsample/reference.py formula for formula:
 * float64 arithmetic, float32 rounding and saturation at the same points, the same
 * tie rules, and numpy's pairwise summation wherever the reference calls np.sum
 * (W, the entropy, sum p^2, tail-free's total, Mirostat's two sums), so masks
 * agree exactly and values to the last float32 ulp or so.
 *
 * Algorithms:
 * - epsilon / eta / top-a / p-less: one weights pass, one threshold, one keep pass.
 * - tail-free: the finite tokens sorted once (logit descending, ties to the lower
 *   id) by an LSD radix sort of (rank, id) keys; the second differences need every
 *   sorted p, so a partial sort would not do.
 * - Mirostat v1: only the top min(m, n) values are sorted (the m-th largest by
 *   heap / quickselect bounds the gather), then the TopK rule for the resulting k.
 * - no-repeat-n-gram: Z-function of the reversed history, linear in its length
 *   (a window of n-1 tokens equal to the last n-1 bans the token that followed it).
 */
#include "stages_extra.h"

#include <math.h>
#include <string.h>

#include "fs_stage_common.h"

#define LN2 0.69314718055994530942 /* math.log(2.0) */

enum { K_EPSILON, K_ETA, K_TOP_A, K_P_LESS };

int64_t fs_extra_dws_len(int64_t V) {
    return V < 0 || V > INT64_MAX / 4 ? -1 : 4 * V;
}

/* Block, parameter pointers and workspaces of every dws-taking entry point; V below
 * 2^31 (token ids travel in the low 32 bits of the radix-sort keys). */
static int entry_check(const float *logits, float *out, int64_t B, int64_t V,
                       const void *p1, const void *p2, const void *p3, const float *fws,
                       int64_t fws_len, int64_t fws_need, const double *dws,
                       int64_t dws_len) {
    int rc = fsc_check_block(logits, out, B, V);
    if (rc || B == 0)
        return rc;
    int64_t need = fs_extra_dws_len(V);
    if (need < 0 || V > INT32_MAX || !p1 || !p2 || !p3 || fsc_check_ws(fws, fws_len, fws_need) ||
        fsc_check_ws(dws, dws_len, need))
        return FS_STAGE_E_SIZE;
    return FS_STAGE_OK;
}

static void copy_row(const float *row, float *o, int64_t V) {
    memcpy(o, row, (size_t)V * sizeof(float));
}

/* ---------------------------------------------------------------- p thresholds */

/* epsilon / eta / top-a / p-less: mask p < threshold, then the min_keep floor. */
static void prob_row(const float *row, float *o, int64_t V, int kind, double a,
                     int64_t min_keep, float *fws, double *dws) {
    int64_t nfin = fsc_count_finite(row, V);
    if ((kind != K_P_LESS && a <= 0.0) || nfin == 0) {
        copy_row(row, o, V);
        return;
    }
    double *w = dws, *tmp = dws + V;
    const double W = fsc_weights(row, V, fsc_row_max(row, V), w);
    double thr;
    if (kind == K_EPSILON) {
        thr = a;
    } else if (kind == K_ETA) {
        double e2 = sqrt(a) * exp(-fsc_entropy(w, W, V, tmp));
        thr = e2 < a ? e2 : a; /* Python's min(a, e2) */
    } else if (kind == K_TOP_A) {
        double pmax;
        FSC_CALL_ISA(fsc_max_p, w, W, V, &pmax);
        thr = a * (pmax * pmax);
    } else {
        FSC_CALL_ISA(fsc_p_squared, w, W, V, tmp);
        thr = fsc_pw_sum(tmp, V) - FSC_MASS_TOL;
    }
    int64_t nk;
    FSC_CALL_ISA(fsc_keep_p_ge, row, o, w, W, thr, V, &nk);
    fsc_finish(row, o, V, nk, min_keep, nfin, fws);
}

static int prob_stage(int kind, const float *logits, float *out, int64_t B, int64_t V,
                      const double *a, const int64_t *min_keep, float *fws,
                      int64_t fws_len, double *dws, int64_t dws_len) {
    const void *pa = kind == K_P_LESS ? (const void *)min_keep : (const void *)a;
    int rc = entry_check(logits, out, B, V, pa, min_keep, min_keep, fws, fws_len, V, dws,
                         dws_len);
    if (rc || B == 0)
        return rc;
    for (int64_t b = 0; b < B; b++)
        prob_row(logits + b * V, out + b * V, V, kind, kind == K_P_LESS ? 0.0 : a[b],
                 min_keep[b], fws, dws);
    return FS_STAGE_OK;
}

int fs_epsilon(const float *logits, float *out, int64_t B, int64_t V,
               const double *epsilon, const int64_t *min_keep,
               float *fws, int64_t fws_len, double *dws, int64_t dws_len) {
    return prob_stage(K_EPSILON, logits, out, B, V, epsilon, min_keep, fws, fws_len, dws,
                      dws_len);
}

int fs_eta(const float *logits, float *out, int64_t B, int64_t V,
           const double *epsilon, const int64_t *min_keep,
           float *fws, int64_t fws_len, double *dws, int64_t dws_len) {
    return prob_stage(K_ETA, logits, out, B, V, epsilon, min_keep, fws, fws_len, dws,
                      dws_len);
}

int fs_top_a(const float *logits, float *out, int64_t B, int64_t V,
             const double *a, const int64_t *min_keep,
             float *fws, int64_t fws_len, double *dws, int64_t dws_len) {
    return prob_stage(K_TOP_A, logits, out, B, V, a, min_keep, fws, fws_len, dws, dws_len);
}

int fs_p_less(const float *logits, float *out, int64_t B, int64_t V,
              const int64_t *min_keep,
              float *fws, int64_t fws_len, double *dws, int64_t dws_len) {
    return prob_stage(K_P_LESS, logits, out, B, V, NULL, min_keep, fws, fws_len, dws,
                      dws_len);
}

/* ---------------------------------------------------------------- tail-free */

/* The finite tokens with l >= floor_value sorted by logit descending, ties to the
 * lower id (the reference's stable argsort of -row), as uint64 keys: a descending rank of the
 * logit in the high 32 bits, the id in the low 32. LSD radix sort, 8 bits a pass,
 * passes where every key has the same digit skipped; keys and tmp hold V entries.
 * Returns the sorted keys (keys or tmp). */
static uint64_t *sort_desc(const float *row, int64_t V, double floor_value, uint64_t *keys,
                           uint64_t *tmp) {
    int64_t c = 0;
    for (int64_t i = 0; i < V; i++) {
        if (!(row[i] > -INFINITY) || !((double)row[i] >= floor_value))
            continue;
        float x = row[i] + 0.0f; /* -0 -> +0: equal logits must tie */
        uint32_t u;
        memcpy(&u, &x, sizeof u);
        u = (u & 0x80000000u) ? ~u : (u | 0x80000000u); /* ascending with x */
        keys[c++] = ((uint64_t)~u << 32) | (uint64_t)i;
    }
    for (int shift = 0; shift < 64 && c > 1; shift += 8) {
        int64_t count[256] = {0};
        for (int64_t j = 0; j < c; j++)
            count[(keys[j] >> shift) & 255]++;
        if (count[(keys[0] >> shift) & 255] == c)
            continue;
        int64_t pos = 0;
        for (int d = 0; d < 256; d++) {
            int64_t t = count[d];
            count[d] = pos;
            pos += t;
        }
        for (int64_t j = 0; j < c; j++)
            tmp[count[(keys[j] >> shift) & 255]++] = keys[j];
        uint64_t *swap = keys;
        keys = tmp;
        tmp = swap;
    }
    return keys;
}

static inline int64_t key_id(uint64_t key) {
    return (int64_t)(key & 0xFFFFFFFFu);
}

static void tail_free_row(const float *row, float *o, int64_t V, double z, int64_t min_keep,
                          float *fws, double *dws) {
    int64_t n = fsc_count_finite(row, V);
    if (z >= 1.0 || n == 0) {
        copy_row(row, o, V);
        return;
    }
    double *w = dws, *sp = dws + 3 * V;
    const double W = fsc_weights(row, V, fsc_row_max(row, V), w);
    const uint64_t *order =
        sort_desc(row, V, -INFINITY, (uint64_t *)(dws + V), (uint64_t *)(dws + 2 * V));
    for (int64_t j = 0; j < n; j++)
        sp[j] = w[key_id(order[j])] / W;
    /* d_i = |p_i - 2 p_{i+1} + p_{i+2}| as np.diff(n=2) rounds it; w is free now */
    double *d = w;
    int64_t nd = n >= 2 ? n - 2 : 0;
    for (int64_t i = 0; i < nd; i++)
        d[i] = fabs((sp[i + 2] - sp[i + 1]) - (sp[i + 1] - sp[i]));
    const double total = fsc_pw_sum(d, nd);
    for (int64_t i = 0; i < V; i++)
        o[i] = -INFINITY;
    /* sorted position 0 kept; i+1 kept while cdf_i <= z (cdf never decreases);
     * position n-1 never reached here, as i + 1 <= n - 2 */
    o[key_id(order[0])] = row[key_id(order[0])];
    int64_t nk = 1;
    double cdf = 0.0;
    for (int64_t i = 0; i < nd; i++) {
        if (total > 0)
            cdf += d[i] / total;
        if (cdf > z)
            break;
        o[key_id(order[i + 1])] = row[key_id(order[i + 1])];
        nk++;
    }
    fsc_finish(row, o, V, nk, min_keep, n, fws);
}

int fs_tail_free(const float *logits, float *out, int64_t B, int64_t V,
                 const double *z, const int64_t *min_keep,
                 float *fws, int64_t fws_len, double *dws, int64_t dws_len) {
    int rc = entry_check(logits, out, B, V, z, min_keep, min_keep, fws, fws_len, V, dws,
                         dws_len);
    if (rc || B == 0)
        return rc;
    for (int64_t b = 0; b < B; b++)
        tail_free_row(logits + b * V, out + b * V, V, z[b], min_keep[b], fws, dws);
    return FS_STAGE_OK;
}

/* ---------------------------------------------------------------- logit transforms */

int fs_dynamic_temperature(const float *logits, float *out, int64_t B, int64_t V,
                           const double *t, const double *range_, const double *exponent,
                           double *dws, int64_t dws_len) {
    int rc = entry_check(logits, out, B, V, t, range_, exponent, NULL, 0, 0, dws, dws_len);
    if (rc || B == 0)
        return rc;
    for (int64_t b = 0; b < B; b++) {
        const float *row = logits + b * V;
        int64_t n = fsc_count_finite(row, V);
        double temp = t[b];
        if (!(range_[b] <= 0 || n <= 1)) {
            double lo = t[b] - range_[b];
            lo = lo > 0.0 ? lo : 0.0; /* Python's max(0.0, lo) */
            double hi = t[b] + range_[b];
            double W = fsc_weights(row, V, fsc_row_max(row, V), dws);
            double h = fsc_entropy(dws, W, V, dws + V);
            temp = lo + (hi - lo) * pow(h / log((double)n), exponent[b]);
        }
        if ((rc = fs_temperature(row, out + b * V, 1, V, &temp)))
            return rc;
    }
    return FS_STAGE_OK;
}

int fs_smoothing(const float *logits, float *out, int64_t B, int64_t V,
                 const double *factor, const double *curve) {
    int rc = fsc_check_block(logits, out, B, V);
    if (rc || B == 0)
        return rc;
    if (!factor || !curve)
        return FS_STAGE_E_SIZE;
    for (int64_t b = 0; b < B; b++) {
        const float *row = logits + b * V;
        float *o = out + b * V;
        const double f = factor[b];
        const double top = fsc_row_max(row, V); /* -inf: no finite logit */
        if (f <= 0 || top == -INFINITY) {
            copy_row(row, o, V);
            continue;
        }
        const double k = (3.0 - curve[b]) / 2.0, s = (curve[b] - 1.0) / 2.0;
        FSC_CALL_ISA(fsc_smooth_row, row, o, V, top, k * f, s * f);
    }
    return FS_STAGE_OK;
}

int fs_adaptive_p(const float *logits, float *out, int64_t B, int64_t V,
                  const double *target, const double *ema_sum, const double *ema_weight,
                  double *dws, int64_t dws_len) {
    int rc = entry_check(logits, out, B, V, target, ema_sum, ema_weight, NULL, 0, 0, dws,
                         dws_len);
    if (rc || B == 0)
        return rc;
    for (int64_t b = 0; b < B; b++) {
        const float *row = logits + b * V;
        float *o = out + b * V;
        if (target[b] < 0.0 || fsc_count_finite(row, V) == 0) {
            copy_row(row, o, V);
            continue;
        }
        /* Python's min(max(tau, 0.0), 1.0), NaN included */
        double tau = 2.0 * target[b] - ema_sum[b] / ema_weight[b];
        if (0.0 > tau)
            tau = 0.0;
        if (1.0 < tau)
            tau = 1.0;
        double *w = dws;
        const double W = fsc_weights(row, V, fsc_row_max(row, V), w);
        for (int64_t i = 0; i < V; i++) {
            if (row[i] > -INFINITY) {
                double d = fabs(w[i] / W - tau) / 0.3;
                o[i] = fs_sat_f32(5.0 - 10.0 * (d * d) / (1.0 + d));
            } else {
                o[i] = -INFINITY;
            }
        }
    }
    return FS_STAGE_OK;
}

/* ---------------------------------------------------------------- Mirostat */

/* llama.cpp's Mirostat v1 k for the current mu (the reference's _mirostat_k). */
static int64_t mirostat_k(const float *row, int64_t V, int64_t nfin, double mu, int64_t m,
                          float *fws, double *dws) {
    int64_t mm = m < nfin ? m : nfin;
    int64_t top = mm - 1;
    if (top <= 0)
        return 1;
    double *w = dws, *terms = dws + 3 * V;
    const double W = fsc_weights(row, V, fsc_row_max(row, V), w);
    /* the top mm values, descending: gather l >= the mm-th largest (ties may add
     * more), sort, use the first mm */
    const uint64_t *order = sort_desc(row, V, fsc_kth_largest(row, V, mm, nfin, fws),
                                      (uint64_t *)(dws + V), (uint64_t *)(dws + 2 * V));
    for (int64_t i = 0; i < top; i++) {
        double t = log((i + 2.0) / (i + 1.0));
        terms[i] = t * log((w[key_id(order[i])] / W) / (w[key_id(order[i + 1])] / W));
    }
    const double num = fsc_pw_sum(terms, top);
    for (int64_t i = 0; i < top; i++) {
        double t = log((i + 2.0) / (i + 1.0));
        terms[i] = t * t;
    }
    const double s = num / fsc_pw_sum(terms, top);
    const double e = s - 1.0;
    const double ratio = (e * pow(2.0, mu)) / (1.0 - pow((double)V, -e));
    const double k = pow(ratio, 1.0 / s);
    if (!isfinite(k) || k > (double)nfin)
        return nfin;
    return k < 1.0 ? 1 : (int64_t)k;
}

int fs_mirostat(const float *logits, float *out, int64_t B, int64_t V,
                const double *mu, const int64_t *m,
                float *fws, int64_t fws_len, double *dws, int64_t dws_len) {
    int rc = entry_check(logits, out, B, V, mu, m, m, fws, fws_len, V, dws, dws_len);
    if (rc || B == 0)
        return rc;
    for (int64_t b = 0; b < B; b++) {
        const float *row = logits + b * V;
        float *o = out + b * V;
        int64_t nfin = fsc_count_finite(row, V);
        int64_t k = nfin ? mirostat_k(row, V, nfin, mu[b], m[b], fws, dws) : 0;
        if (0 < k && k < nfin) { /* the TopK rule, ties kept */
            int64_t nk = fsc_keep_ge(row, o, V, fsc_kth_largest(row, V, k, nfin, fws));
            fsc_finish(row, o, V, nk, 1, nfin, fws);
        } else {
            copy_row(row, o, V);
        }
    }
    return FS_STAGE_OK;
}

int fs_mirostat_v2(const float *logits, float *out, int64_t B, int64_t V,
                   const double *mu, double *dws, int64_t dws_len) {
    int rc = entry_check(logits, out, B, V, mu, mu, mu, NULL, 0, 0, dws, dws_len);
    if (rc || B == 0)
        return rc;
    for (int64_t b = 0; b < B; b++) {
        const float *row = logits + b * V;
        float *o = out + b * V;
        if (fsc_count_finite(row, V) == 0) {
            copy_row(row, o, V);
            continue;
        }
        const double mx = fsc_row_max(row, V);
        const double logw = log(fsc_weights(row, V, mx, dws));
        int64_t nk = 0;
        for (int64_t i = 0; i < V; i++) {
            double x = (double)row[i];
            /* surprise = -ln p / ln 2 with ln p = (l - max) - ln W, as the reference */
            int keep = x > -INFINITY && -((x - mx) - logw) / LN2 <= mu[b];
            o[i] = keep ? row[i] : -INFINITY;
            nk += keep;
        }
        if (nk == 0) /* keep at least the max (all its ties) */
            for (int64_t i = 0; i < V; i++)
                if ((double)row[i] == mx)
                    o[i] = row[i];
    }
    return FS_STAGE_OK;
}

/* ---------------------------------------------------------------- no-repeat n-gram */

int fs_no_repeat_ngram(const float *logits, float *out, int64_t B, int64_t V,
                       const int64_t *hist, int64_t nhist, const int64_t *offsets,
                       const int64_t *n, int32_t *z, int64_t z_len) {
    int rc = fsc_check_hist_block(logits, out, B, V, hist, nhist, offsets);
    if (rc || B == 0)
        return rc;
    if (!n)
        return FS_STAGE_E_SIZE;
    for (int64_t b = 0; b < B; b++) {
        const float *row = logits + b * V;
        float *o = out + b * V;
        if (o != row) /* out == logits: ban in place */
            copy_row(row, o, V);
        const int64_t nb = n[b], start = offsets[b], end = offsets[b + 1], L = end - start;
        if (nb <= 0 || L < nb) /* no complete n-gram yet */
            continue;
        if ((rc = fsc_check_tokens(hist, start, end, V)))
            return rc;
        if (nb == 1) {
            for (int64_t i = start; i < end; i++)
                o[hist[i]] = -INFINITY;
            continue;
        }
        if (L > INT32_MAX || fsc_check_ws(z, z_len, L))
            return FS_STAGE_E_SIZE;
        /* an earlier copy of the last n-1 tokens ends at hist[end - 1 - j] exactly
         * when z[j] >= n - 1 (reversed window); the token after it, hist[end - j],
         * would complete a repeated n-gram */
        fsc_z_reversed(hist, end, L, z);
        for (int64_t j = 1; j < L; j++)
            if (z[j] >= nb - 1)
                o[hist[end - j]] = -INFINITY;
    }
    return FS_STAGE_OK;
}

/* Plain C test of the stage kernels (csrc/stages.c), for the sanitizer build:
 *
 *   gcc -std=c99 -Icsrc (every csrc .c file) csrc/tests/test_stages.c -lm
 *
 * Every entry point runs on random rows (smooth, tied, partly masked, one token
 * left, V = 1) and on bad input: negative or inconsistent sizes, NULL buffers,
 * short workspaces, bad history offsets, history / bias ids outside [0, V),
 * unsorted bias ids. Results are checked against small naive oracles written
 * here (top-k by full sort, min-p, temperature, logit bias, penalties, DRY by its
 * quadratic definition) or, for top-p / typical / XTC / top-n-sigma, against the
 * properties every truncation has (a subset of the finite tokens with their
 * values unchanged, at least min_keep of them, closed under ties). Inputs must be
 * left untouched. Workspaces are allocated at exactly the stated sizes so that
 * AddressSanitizer sees any overrun. Exits 0 when every check passes.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs_stage_common.h" /* fsc_exp, fsc_log and their per-ISA row loops */
#include "stages.h"

#define HARNESS_SEED 0x9E3779B97F4A7C15u
#include "harness.h" /* CHECK, random rows */

static int close_to(double got, double want) { return close_within(got, want, 1e-6); }

/* ---------------------------------------------------------------- naive oracles */

static double kth_largest_naive(const float *row, int64_t V, int64_t k) {
    /* k-th largest finite value by counting: the largest v with #{x >= v} >= k */
    int64_t nfin = 0;
    for (int64_t i = 0; i < V; i++)
        nfin += row[i] > -INFINITY;
    if (k < 1)
        k = 1;
    if (k > nfin)
        k = nfin;
    double best = -INFINITY;
    for (int64_t i = 0; i < V; i++) {
        if (!(row[i] > -INFINITY) || row[i] <= best)
            continue;
        int64_t ge = 0;
        for (int64_t j = 0; j < V; j++)
            ge += row[j] >= row[i];
        if (ge >= k)
            best = row[i];
    }
    return best;
}

/* The truncation "keep >= t, then the min_keep floor" (docs/internals.md). */
static void keep_ge_floor(const float *row, float *want, int64_t V, double t, int64_t min_keep) {
    int64_t nk = 0;
    for (int64_t i = 0; i < V; i++) {
        int keep = row[i] > -INFINITY && (double)row[i] >= t;
        want[i] = keep ? row[i] : -INFINITY;
        nk += keep;
    }
    if (nk < (min_keep < 1 ? 1 : min_keep)) {
        double f = kth_largest_naive(row, V, min_keep);
        for (int64_t i = 0; i < V; i++)
            if ((double)row[i] >= f)
                want[i] = row[i];
    }
}

static float sat(double v) {
    const double m = 3.4028234663852886e38;
    return (float)(v > m ? m : (v < -m ? -m : v));
}

/* docs/spec.md §4.1 by definition: for every earlier end e, grow the common suffix. */
static void dry_naive(const int64_t *x, int64_t n, int64_t V, const uint8_t *brk, int64_t allowed,
                      int64_t *len) {
    for (int64_t t = 0; t < V; t++)
        len[t] = -1;
    if (n < 2 || brk[x[n - 1]])
        return;
    for (int64_t e = 0; e + 1 < n; e++) {
        int64_t l = 0;
        while (l <= e && x[e - l] == x[n - 1 - l] && !brk[x[n - 1 - l]])
            l++;
        int64_t c = x[e + 1];
        if (!brk[c] && l >= allowed && l > len[c])
            len[c] = l;
    }
}

static double dry_amount(int64_t l, double mult, double base, int64_t allowed) {
    double expo = (double)l - (double)allowed;
    if (base > 1.0 && expo > 88.7228391 / log(base))
        expo = 88.7228391 / log(base);
    return mult * pow(base, expo);
}

/* ---------------------------------------------------------------- truncation helpers */


/* Run one truncation with exact-size workspaces; the input must stay unchanged. */
static int run_trunc(const char *name, int which, const float *x, float *out, int64_t B,
                     int64_t V, const double *dp, const int64_t *ip, const int64_t *mk) {
    float *copy = malloc((size_t)(B * V + 1) * sizeof(float));
    memcpy(copy, x, (size_t)(B * V) * sizeof(float));
    float *fws = malloc((size_t)V * sizeof(float));
    int64_t dn = fs_stage_dws_len(V);
    double *dws = malloc((size_t)dn * sizeof(double));
    int rc = -1;
    switch (which) {
    case 0: rc = fs_top_k(x, out, B, V, ip, mk, fws, V, dws, dn); break;
    case 1: rc = fs_min_p(x, out, B, V, dp, mk, fws, V, dws, dn); break;
    case 2: rc = fs_top_p(x, out, B, V, dp, mk, fws, V, dws, dn); break;
    case 3: rc = fs_typical(x, out, B, V, dp, mk, fws, V, dws, dn); break;
    case 4: rc = fs_top_n_sigma(x, out, B, V, dp, mk, fws, V, dws, dn); break;
    }
    CHECK(memcmp(copy, x, (size_t)(B * V) * sizeof(float)) == 0, "%s wrote its input", name);
    free(copy);
    free(fws);
    free(dws);
    return rc;
}

/* Properties of any truncation's row: kept tokens are finite and unchanged, at least
 * min(min_keep, nfin) of them, and (unless allow_gaps) closed upward: every finite
 * token at least as large as a kept one is kept. */
static void check_truncation_row(const char *name, const float *row, const float *o, int64_t V,
                                 int64_t min_keep, int allow_gaps) {
    int64_t nfin = 0, nk = 0;
    float lowest_kept = INFINITY;
    for (int64_t i = 0; i < V; i++) {
        nfin += row[i] > -INFINITY;
        if (o[i] > -INFINITY) {
            CHECK(o[i] == row[i], "%s changed a kept value at %lld", name, (long long)i);
            nk++;
            lowest_kept = row[i] < lowest_kept ? row[i] : lowest_kept;
        }
    }
    int64_t floor_k = min_keep < 1 ? 1 : min_keep;
    CHECK(nk >= (floor_k < nfin ? floor_k : nfin), "%s kept %lld < min_keep %lld", name,
          (long long)nk, (long long)floor_k);
    if (!allow_gaps)
        for (int64_t i = 0; i < V; i++)
            if (row[i] >= lowest_kept)
                CHECK(o[i] == row[i], "%s dropped %lld above a kept token", name, (long long)i);
}

/* ---------------------------------------------------------------- tests */

static void test_truncations(void) {
    static const int64_t vs[] = {1, 2, 3, 8, 50, 300, 2000};
    for (int iter = 0; iter < 300; iter++) {
        int64_t B = 1 + below(4), V = vs[below(7)];
        float *x = new_logits(B, V);
        float *out = malloc((size_t)(B * V) * sizeof(float));
        float *want = malloc((size_t)V * sizeof(float));
        int64_t k[4], mk[4];
        double p[4];
        for (int64_t b = 0; b < B; b++) {
            k[b] = below(V + 3) - 1;
            mk[b] = 1 + below(3);
            p[b] = uniform01() * 1.1 - 0.05;
        }
        /* top-k and min-p: exact oracles */
        CHECK(run_trunc("top_k", 0, x, out, B, V, NULL, k, mk) == FS_STAGE_OK, "top_k rc");
        for (int64_t b = 0; b < B; b++) {
            const float *row = x + b * V;
            int64_t nfin = 0;
            for (int64_t i = 0; i < V; i++)
                nfin += row[i] > -INFINITY;
            if (0 < k[b] && k[b] < nfin)
                keep_ge_floor(row, want, V, kth_largest_naive(row, V, k[b]), mk[b]);
            else
                memcpy(want, row, (size_t)V * sizeof(float));
            for (int64_t i = 0; i < V; i++)
                CHECK(out[b * V + i] == want[i], "top_k row %lld token %lld", (long long)b,
                      (long long)i);
        }
        CHECK(run_trunc("min_p", 1, x, out, B, V, p, NULL, mk) == FS_STAGE_OK, "min_p rc");
        for (int64_t b = 0; b < B; b++) {
            const float *row = x + b * V;
            if (p[b] <= 0.0) {
                memcpy(want, row, (size_t)V * sizeof(float));
            } else {
                double m = kth_largest_naive(row, V, 1);
                keep_ge_floor(row, want, V, m + log(p[b]), mk[b]);
            }
            for (int64_t i = 0; i < V; i++)
                CHECK(out[b * V + i] == want[i], "min_p row %lld token %lld", (long long)b,
                      (long long)i);
        }
        /* top-p, typical, top-n-sigma: properties (typical may skip the largest) */
        static const char *names[] = {"top_p", "typical", "top_n_sigma"};
        for (int w = 2; w <= 4; w++) {
            CHECK(run_trunc(names[w - 2], w, x, out, B, V, p, NULL, mk) == FS_STAGE_OK,
                  "%s rc", names[w - 2]);
            for (int64_t b = 0; b < B; b++)
                check_truncation_row(names[w - 2], x + b * V, out + b * V, V, mk[b], w == 3);
        }
        /* top-p keeps the whole row for p >= 1 and reaches the mass otherwise */
        for (int64_t b = 0; b < B; b++) {
            const float *row = x + b * V;
            double m = kth_largest_naive(row, V, 1), W = 0.0, kept = 0.0;
            CHECK(run_trunc("top_p", 2, row, out, 1, V, p + b, NULL, mk + b) == 0, "top_p rc");
            for (int64_t i = 0; i < V; i++) {
                W += exp((double)row[i] - m);
                kept += out[i] > -INFINITY ? exp((double)row[i] - m) : 0.0;
            }
            CHECK(kept / W >= (p[b] < 1.0 ? p[b] : 1.0) - 1e-5, "top_p mass %g < p %g",
                  kept / W, p[b]);
        }
        free(x);
        free(out);
        free(want);
    }
}

static void test_xtc_and_temperature(void) {
    for (int iter = 0; iter < 200; iter++) {
        int64_t B = 1 + below(4), V = 1 + below(40);
        float *x = new_logits(B, V);
        float *out = malloc((size_t)(B * V) * sizeof(float));
        double prob[4], thr[4], t[4];
        int64_t mk[4];
        uint64_t seed[4], pos[4];
        static const double temps[] = {0.0, -1.0, 1.0, 0.5, 2.0, 1e-30};
        for (int64_t b = 0; b < B; b++) {
            prob[b] = below(3) * 0.5;
            thr[b] = uniform01() * 0.6;
            mk[b] = 1 + below(3);
            seed[b] = next_u64();
            pos[b] = next_u64() >> 20;
            t[b] = temps[below(6)];
        }
        float *fws = malloc((size_t)V * sizeof(float));
        double *dws = malloc((size_t)V * sizeof(double));
        CHECK(fs_xtc(x, out, B, V, prob, thr, mk, seed, pos, fws, V, dws, V) == FS_STAGE_OK,
              "xtc rc");
        for (int64_t b = 0; b < B; b++) /* XTC masks the most likely: gaps allowed */
            check_truncation_row("xtc", x + b * V, out + b * V, V, mk[b], 1);
        /* probability 0: unchanged */
        double zero[4] = {0, 0, 0, 0};
        CHECK(fs_xtc(x, out, B, V, zero, thr, mk, seed, pos, fws, V, dws, V) == 0, "xtc rc");
        CHECK(memcmp(out, x, (size_t)(B * V) * sizeof(float)) == 0, "xtc p=0 changed the row");
        free(fws);
        free(dws);

        CHECK(fs_temperature(x, out, B, V, t) == FS_STAGE_OK, "temperature rc");
        for (int64_t b = 0; b < B; b++) {
            const float *row = x + b * V;
            int64_t first = 0;
            for (int64_t i = 1; i < V; i++)
                if (row[i] > row[first])
                    first = i;
            for (int64_t i = 0; i < V; i++) {
                float w;
                if (t[b] == 1.0)
                    w = row[i];
                else if (t[b] <= 0.0)
                    w = i == first ? row[i] : -INFINITY;
                else
                    w = row[i] > -INFINITY ? sat((double)row[i] / t[b]) : -INFINITY;
                CHECK(out[b * V + i] == w, "temperature row %lld token %lld", (long long)b,
                      (long long)i);
            }
        }
        free(x);
        free(out);
    }
}

static void test_logit_bias(void) {
    for (int iter = 0; iter < 200; iter++) {
        int64_t B = 1 + below(3), V = 1 + below(30), n = below(8);
        float *x = new_logits(B, V);
        float *out = malloc((size_t)(B * V) * sizeof(float));
        int64_t ids[8];
        double vals[8];
        for (int64_t j = 0; j < n; j++) {
            ids[j] = below(V);
            vals[j] = below(5) == 0 ? -INFINITY : (uniform01() - 0.5) * 10.0;
        }
        for (int64_t j = 1; j < n; j++) /* ascending (insertion sort keeps runs stable) */
            for (int64_t i = j; i > 0 && ids[i - 1] > ids[i]; i--) {
                int64_t ti = ids[i]; ids[i] = ids[i - 1]; ids[i - 1] = ti;
                double tv = vals[i]; vals[i] = vals[i - 1]; vals[i - 1] = tv;
            }
        CHECK(fs_logit_bias(x, out, B, V, ids, vals, n) == FS_STAGE_OK, "logit_bias rc");
        for (int64_t b = 0; b < B; b++)
            for (int64_t t = 0; t < V; t++) {
                double acc = x[b * V + t];
                int hit = 0, banned = 0;
                for (int64_t j = 0; j < n; j++)
                    if (ids[j] == t) {
                        acc += vals[j];
                        hit = 1;
                        banned |= vals[j] == -INFINITY;
                    }
                float w = !hit ? x[b * V + t]
                               : (banned || x[b * V + t] == -INFINITY ? -INFINITY : sat(acc));
                CHECK(close_to(out[b * V + t], w), "logit_bias token %lld", (long long)t);
            }
        free(x);
        free(out);
    }
}

/* Random histories: a small alphabet (many repeats), sometimes one repeated token. */
static void fill_history(int64_t *h, int64_t n, int64_t V) {
    int64_t alpha = 1 + below(V < 4 ? V : 4);
    int repeat = below(4) == 0;
    for (int64_t i = 0; i < n; i++)
        h[i] = repeat ? 0 : below(alpha);
}

static void test_history_stages(void) {
    for (int iter = 0; iter < 300; iter++) {
        int64_t B = 1 + below(3), V = 1 + below(12);
        float *x = new_logits(B, V);
        float *out = malloc((size_t)(B * V) * sizeof(float));
        int64_t offsets[4], lens[3];
        offsets[0] = 0;
        for (int64_t b = 0; b < B; b++) {
            lens[b] = below(60);
            offsets[b + 1] = offsets[b] + lens[b];
        }
        int64_t nh = offsets[B];
        int64_t *hist = malloc((size_t)(nh + 1) * sizeof(int64_t));
        for (int64_t b = 0; b < B; b++)
            fill_history(hist + offsets[b], lens[b], V);
        double rep[3], freq[3], pres[3], mult[3], base[3];
        int64_t last_n[3], allowed[3];
        static const int64_t lns[] = {-1, 0, 1, 5, 64};
        static const double bases[] = {0.9, 1.0, 1.75, 3.0};
        for (int64_t b = 0; b < B; b++) {
            rep[b] = 0.5 + uniform01();
            freq[b] = uniform01() - 0.3;
            pres[b] = uniform01();
            last_n[b] = lns[below(5)];
            mult[b] = below(4) == 0 ? 0.0 : 0.8;
            base[b] = bases[below(4)];
            allowed[b] = below(4);
        }
        int32_t *counts = malloc((size_t)V * sizeof(int32_t));
        CHECK(fs_penalties(x, out, B, V, hist, nh, offsets, rep, freq, pres, last_n, counts, V)
                  == FS_STAGE_OK, "penalties rc");
        for (int64_t b = 0; b < B; b++) {
            int64_t s = offsets[b], e = offsets[b + 1];
            if (last_n[b] > 0 && e - s > last_n[b])
                s = e - last_n[b];
            for (int64_t t = 0; t < V; t++) {
                int64_t c = 0;
                for (int64_t i = s; i < e; i++)
                    c += hist[i] == t;
                double l = x[b * V + t];
                float w = (float)l;
                if (c > 0 && last_n[b] != 0 && l > -INFINITY) {
                    double y = l > 0 ? l / rep[b] : l * rep[b];
                    w = sat(y - ((double)c * freq[b] + pres[b]));
                }
                CHECK(close_to(out[b * V + t], w), "penalties row %lld token %lld",
                      (long long)b, (long long)t);
            }
        }
        free(counts);

        /* DRY against its definition; dry_penalty must agree with dry */
        uint8_t *brk = calloc((size_t)V, 1);
        if (V > 2 && below(2))
            brk[below(V)] = 1;
        int64_t zn = nh > 0 ? nh : 1;
        int32_t *z = malloc((size_t)zn * sizeof(int32_t));
        int32_t *best = malloc((size_t)V * sizeof(int32_t));
        int64_t *len = malloc((size_t)V * sizeof(int64_t));
        CHECK(fs_dry(x, out, B, V, hist, nh, offsets, mult, base, allowed, last_n, brk, V, z, zn,
                     best, V) == FS_STAGE_OK, "dry rc");
        for (int64_t b = 0; b < B; b++) {
            int64_t s = offsets[b], e = offsets[b + 1];
            if (last_n[b] > 0 && e - s > last_n[b])
                s = e - last_n[b];
            int active = mult[b] != 0.0 && base[b] >= 1.0 && last_n[b] != 0;
            dry_naive(hist + s, e - s, V, brk, allowed[b], len);
            int32_t ids[16];
            float pen[16];
            int64_t count = -1;
            CHECK(fs_dry_penalty(hist + offsets[b], offsets[b + 1] - offsets[b], V, mult[b],
                                 base[b], allowed[b], last_n[b], brk, V, z, zn, best, V, ids,
                                 pen, 16, &count) == FS_STAGE_OK, "dry_penalty rc");
            int64_t j = 0;
            for (int64_t t = 0; t < V; t++) {
                double l = x[b * V + t];
                float w = (float)l;
                if (active && len[t] >= 0) {
                    double a = dry_amount(len[t], mult[b], base[b], allowed[b]);
                    if (l > -INFINITY)
                        w = sat(l - a);
                    CHECK(j < count && ids[j] == t && close_to(pen[j], a),
                          "dry_penalty entry for token %lld", (long long)t);
                    j++;
                }
                CHECK(close_to(out[b * V + t], w), "dry row %lld token %lld (L %lld)",
                      (long long)b, (long long)t, (long long)len[t]);
            }
            CHECK(count == j, "dry_penalty count %lld, expected %lld", (long long)count,
                  (long long)j);
        }
        free(brk);
        free(z);
        free(best);
        free(len);
        free(hist);
        free(x);
        free(out);
    }
}

static void test_long_repeat(void) {
    /* 32768 copies of one token: L = n - 1 for that token, linear time */
    const int64_t n = 32768, V = 1000;
    int64_t *hist = malloc((size_t)n * sizeof(int64_t));
    for (int64_t i = 0; i < n; i++)
        hist[i] = 7;
    uint8_t *brk = calloc((size_t)V, 1);
    int32_t *z = malloc((size_t)n * sizeof(int32_t));
    int32_t *best = malloc((size_t)V * sizeof(int32_t));
    int32_t ids[4];
    float pen[4];
    int64_t count = 0;
    CHECK(fs_dry_penalty(hist, n, V, 0.8, 1.75, 2, -1, brk, V, z, n, best, V, ids, pen, 4, &count)
              == FS_STAGE_OK, "long repeat rc");
    CHECK(count == 1 && ids[0] == 7 && close_to(pen[0], dry_amount(n - 1, 0.8, 1.75, 2)),
          "long repeat: count %lld", (long long)count);
    hist[n / 2] = 5; /* a breaker in the middle limits the match */
    brk[5] = 1;
    CHECK(fs_dry_penalty(hist, n, V, 0.8, 1.75, 2, -1, brk, V, z, n, best, V, ids, pen, 4, &count)
              == FS_STAGE_OK, "long repeat rc");
    CHECK(count == 1 && ids[0] == 7 && close_to(pen[0], dry_amount(n - n / 2 - 2, 0.8, 1.75, 2)),
          "long repeat with breaker: count %lld", (long long)count);
    free(hist);
    free(brk);
    free(z);
    free(best);
}

static void test_bad_input(void) {
    const int64_t B = 2, V = 5;
    float x[10] = {0, 1, 2, 3, 4, 4, 3, 2, 1, 0}, out[10], fws[5];
    double dws[20], d2[2] = {0.5, 0.5};
    int64_t i2[2] = {1, 1}, mk[2] = {1, 1};
    uint64_t u2[2] = {0, 0};
    int32_t counts[5], z[8], best[5], ids[8];
    float pen[8];
    uint8_t brk[5] = {0};
    int64_t count;

    /* sizes */
    CHECK(fs_top_k(x, out, -1, V, i2, mk, fws, V, dws, 20) == FS_STAGE_E_SIZE, "B < 0");
    CHECK(fs_top_k(x, out, B, 0, i2, mk, fws, V, dws, 20) == FS_STAGE_E_SIZE, "V = 0");
    CHECK(fs_top_k(x, out, INT64_MAX, 2, i2, mk, fws, V, dws, 20) == FS_STAGE_E_SIZE, "B*V");
    CHECK(fs_top_k(x, out, 0, V, NULL, NULL, NULL, 0, NULL, 0) == FS_STAGE_OK, "B = 0");
    CHECK(fs_top_k(NULL, out, B, V, i2, mk, fws, V, dws, 20) == FS_STAGE_E_SIZE, "NULL logits");
    CHECK(fs_top_k(x, out, B, V, i2, mk, fws, V - 1, dws, 20) == FS_STAGE_E_SIZE, "short fws");
    CHECK(fs_top_p(x, out, B, V, d2, mk, fws, V, dws, 19) == FS_STAGE_E_SIZE, "short dws");
    CHECK(fs_typical(x, out, B, V, d2, mk, fws, V, NULL, 20) == FS_STAGE_E_SIZE, "NULL dws");
    CHECK(fs_top_p(x, out, 1, INT64_MAX / 2, d2, mk, fws, V, dws, 20) == FS_STAGE_E_SIZE,
          "workspace length overflows");
    CHECK(fs_stage_dws_len(-1) < 0 && fs_stage_dws_len(V) == 4 * V, "fs_stage_dws_len");
    CHECK(fs_top_n_sigma(x, out, B, V, d2, NULL, fws, V, dws, 20) == FS_STAGE_E_SIZE, "NULL mk");
    CHECK(fs_min_p(x, out, B, V, NULL, mk, fws, V, dws, 20) == FS_STAGE_E_SIZE, "NULL p");
    CHECK(fs_xtc(x, out, B, V, d2, d2, mk, u2, NULL, fws, V, dws, 20) == FS_STAGE_E_SIZE,
          "NULL position");
    CHECK(fs_xtc(x, out, B, V, d2, d2, mk, u2, u2, fws, V, dws, V - 1) == FS_STAGE_E_SIZE,
          "xtc short dws");
    CHECK(fs_temperature(x, out, B, V, NULL) == FS_STAGE_E_SIZE, "NULL t");
    CHECK(fs_temperature(x, out, -3, V, d2) == FS_STAGE_E_SIZE, "temperature B < 0");

    /* bias ids */
    int64_t bad_ids[2] = {1, 5}, neg_ids[2] = {-1, 2}, unsorted[2] = {3, 1};
    CHECK(fs_logit_bias(x, out, B, V, bad_ids, d2, 2) == FS_STAGE_E_ID, "bias id = V");
    CHECK(fs_logit_bias(x, out, B, V, neg_ids, d2, 2) == FS_STAGE_E_ID, "bias id < 0");
    CHECK(fs_logit_bias(x, out, B, V, unsorted, d2, 2) == FS_STAGE_E_UNSORTED, "unsorted");
    CHECK(fs_logit_bias(x, out, B, V, NULL, d2, 2) == FS_STAGE_E_SIZE, "NULL ids");
    CHECK(fs_logit_bias(x, out, B, V, i2, d2, -1) == FS_STAGE_E_SIZE, "n < 0");

    /* histories */
    int64_t hist[6] = {0, 1, 2, 1, 2, 1};
    int64_t good_off[3] = {0, 3, 6}, dec_off[3] = {0, 4, 3}, past_off[3] = {0, 3, 7},
            neg_off[3] = {-1, 3, 6};
    int64_t bad_hist[6] = {0, 1, 5, 1, 2, 1}, neg_hist[6] = {0, 1, 2, 1, -2, 1};
    double rep[2] = {1.3, 1.3}, zero[2] = {0, 0}, mult[2] = {0.8, 0.8}, base[2] = {1.75, 1.75};
    int64_t ln[2] = {-1, -1}, allowed[2] = {1, 1};
    CHECK(fs_penalties(x, out, B, V, hist, 6, good_off, rep, zero, zero, ln, counts, V) == 0,
          "penalties good");
    CHECK(fs_penalties(x, out, B, V, hist, 6, dec_off, rep, zero, zero, ln, counts, V)
              == FS_STAGE_E_OFFSETS, "decreasing offsets");
    CHECK(fs_penalties(x, out, B, V, hist, 6, past_off, rep, zero, zero, ln, counts, V)
              == FS_STAGE_E_OFFSETS, "offsets past the history");
    CHECK(fs_penalties(x, out, B, V, hist, 6, neg_off, rep, zero, zero, ln, counts, V)
              == FS_STAGE_E_OFFSETS, "negative offset");
    CHECK(fs_penalties(x, out, B, V, bad_hist, 6, good_off, rep, zero, zero, ln, counts, V)
              == FS_STAGE_E_HISTORY, "history token = V");
    CHECK(fs_penalties(x, out, B, V, neg_hist, 6, good_off, rep, zero, zero, ln, counts, V)
              == FS_STAGE_E_HISTORY, "history token < 0");
    CHECK(fs_penalties(x, out, B, V, hist, 6, good_off, rep, zero, zero, ln, counts, V - 1)
              == FS_STAGE_E_SIZE, "short counts");
    CHECK(fs_penalties(x, out, B, V, NULL, 6, good_off, rep, zero, zero, ln, counts, V)
              == FS_STAGE_E_SIZE, "NULL history");
    CHECK(fs_dry(x, out, B, V, hist, 6, good_off, mult, base, allowed, ln, brk, V, z, 3, best, V)
              == FS_STAGE_OK, "dry good");
    CHECK(fs_dry(x, out, B, V, hist, 6, good_off, mult, base, allowed, ln, brk, V, z, 2, best, V)
              == FS_STAGE_E_SIZE, "dry short z");
    CHECK(fs_dry(x, out, B, V, hist, 6, good_off, mult, base, allowed, ln, brk, V - 1, z, 3, best,
                 V) == FS_STAGE_E_SIZE, "dry breaker table");
    CHECK(fs_dry(x, out, B, V, hist, 6, good_off, mult, base, allowed, ln, brk, V, z, 3, best,
                 V - 1) == FS_STAGE_E_SIZE, "dry short best");
    CHECK(fs_dry(x, out, B, V, bad_hist, 6, good_off, mult, base, allowed, ln, brk, V, z, 3, best,
                 V) == FS_STAGE_E_HISTORY, "dry history token = V");
    CHECK(fs_dry(x, out, B, V, hist, 6, dec_off, mult, base, allowed, ln, brk, V, z, 3, best, V)
              == FS_STAGE_E_OFFSETS, "dry decreasing offsets");
    CHECK(fs_dry_penalty(neg_hist, 6, V, 0.8, 1.75, 1, -1, brk, V, z, 8, best, V, ids, pen, 8,
                         &count) == FS_STAGE_E_HISTORY, "dry_penalty token < 0");
    CHECK(fs_dry_penalty(hist, 6, V, 0.8, 1.75, 0, -1, brk, V, z, 8, best, V, ids, pen, 1,
                         &count) == FS_STAGE_E_SIZE, "dry_penalty cap");
    CHECK(fs_dry_penalty(hist, 6, V, 0.8, 1.75, 1, -1, brk, V, z, 5, best, V, ids, pen, 8,
                         &count) == FS_STAGE_E_SIZE, "dry_penalty short z");
    CHECK(fs_dry_penalty(hist, 6, V, 0.8, 1.75, 1, -1, brk, V, z, 8, best, V, ids, pen, 8, NULL)
              == FS_STAGE_E_SIZE, "dry_penalty NULL count");
    CHECK(fs_dry_penalty(hist, 6, 0, 0.8, 1.75, 1, -1, brk, V, z, 8, best, V, ids, pen, 8,
                         &count) == FS_STAGE_E_SIZE, "dry_penalty V = 0");
    CHECK(fs_dry_penalty(hist, 6, V, 0.0, 1.75, 1, -1, NULL, 0, NULL, 0, NULL, 0, NULL, NULL, 0,
                         &count) == FS_STAGE_OK && count == 0, "dry_penalty inactive");
}

/* ---------------------------------------------------------------- exp */

/* |got - want| in units of want's last place (the smallest subnormal below 2^-1022). */
static double ulps(double got, double want) {
    if (got == want)
        return 0.0;
    if (!isfinite(want) || !isfinite(got))
        return INFINITY;
    double a = fabs(want);
    double unit = a < 0x1p-1022 ? 0x1p-1074 : nextafter(a, INFINITY) - a;
    return fabs(got - want) / unit;
}

/* fsc_exp / fsc_log against libm: <= 2 ulp (the documented bound; 1 measured against
 * glibc), libm's special values; and the row loops give the same bits at every ISA
 * level the CPU runs as the scalar functions (no FMA, so vector width cannot matter). */
static void test_exp_log_scalar(void) {
    double worst = 0.0, worst_x = 0.0, worst_l = 0.0, worst_lx = 0.0;
    for (int64_t i = 0; i <= 2000000; i++) { /* the whole range, subnormal results too */
        double x = -746.0 + 1456.0 * (double)i / 2000000.0;
        double e = ulps(fsc_exp(x), exp(x));
        if (e > worst) {
            worst = e;
            worst_x = x;
        }
    }
    for (int i = 0; i < 2000000; i++) {
        double x = -40.0 * uniform01(); /* where weights live: l - max in [-40, 0] */
        double e = ulps(fsc_exp(x), exp(x));
        if (e > worst) {
            worst = e;
            worst_x = x;
        }
        /* probabilities: (0, 1], subnormals included, and a stretch above 1 */
        double y = i % 3 == 0 ? uniform01() : (i % 3 == 1 ? exp(-745.0 * uniform01()) : 1.0 + 1e6 * uniform01());
        e = ulps(fsc_log(y), log(y));
        if (e > worst_l) {
            worst_l = e;
            worst_lx = y;
        }
    }
    CHECK(worst <= 2.0, "fsc_exp: %.3f ulp from libm at x = %.17g", worst, worst_x);
    CHECK(worst_l <= 2.0, "fsc_log: %.3f ulp from libm at x = %.17g", worst_l, worst_lx);
    printf("test_stages: fsc_exp worst %.3f ulp, fsc_log worst %.3f ulp from libm\n", worst,
           worst_l);

    const double zero[] = {-INFINITY, -1e300, -800.0, -746.0, -745.2};
    for (int i = 0; i < 5; i++)
        CHECK(fsc_exp(zero[i]) == 0.0, "fsc_exp(%g) = %g, want 0", zero[i], fsc_exp(zero[i]));
    const double inf[] = {710.0, 1e300, INFINITY};
    for (int i = 0; i < 3; i++)
        CHECK(fsc_exp(inf[i]) == INFINITY, "fsc_exp(%g) = %g, want inf", inf[i], fsc_exp(inf[i]));
    CHECK(fsc_exp(0.0) == 1.0 && fsc_exp(-0.0) == 1.0, "fsc_exp(0) != 1");
    CHECK(fsc_exp(-745.1) == 0x1p-1074, "fsc_exp(-745.1) = %g", fsc_exp(-745.1));
    CHECK(isnan(fsc_exp(NAN)), "fsc_exp(NaN) is not NaN");
    CHECK(fsc_log(1.0) == 0.0 && fsc_log(2.0) == log(2.0) && fsc_log(0.5) == log(0.5),
          "fsc_log(1, 2, 1/2)");
    CHECK(fsc_log(0x1p-1074) == log(0x1p-1074), "fsc_log(smallest subnormal) = %.17g",
          fsc_log(0x1p-1074));
    CHECK(fsc_log(0.0) == -INFINITY && fsc_log(-0.0) == -INFINITY, "fsc_log(0) != -inf");
    CHECK(isnan(fsc_log(-1.0)) && isnan(fsc_log(NAN)) && fsc_log(INFINITY) == INFINITY,
          "fsc_log(-1, NaN, inf)");
}

/* the exp and p*log(p) rows of a vector level equal the base ones, bit for bit */
static int same_rows(const double *v, const double *w, const double *u, const double *t,
                     int64_t V) {
    return !memcmp(v, w, (size_t)V * sizeof(double)) && !memcmp(u, t, (size_t)V * sizeof(double));
}

/* Smoothing's row loop: every copy gives the scalar rule bit for bit (saturation,
 * -inf and NaN to -inf included) */
static void test_smooth_rows(void) {
    for (int rep = 0; rep < 200; rep++) {
        int64_t V = 1 + below(rep < 100 ? 40 : 3000);
        float *row = malloc((size_t)V * sizeof(float)), *o = malloc((size_t)V * sizeof(float));
        float *want = malloc((size_t)V * sizeof(float));
        for (int64_t i = 0; i < V; i++) {
            double r = uniform01();
            row[i] = r < 0.1 ? -INFINITY : r < 0.12 ? NAN : (float)(40.0 * uniform01() - 30.0);
        }
        const double top = 10.0, kf = uniform01() < 0.1 ? 1e36 : 2.0 * uniform01() - 0.5,
                     sf = 2.0 * uniform01() - 1.0;
        for (int64_t i = 0; i < V; i++) {
            const double d = (double)row[i] - top;
            want[i] = row[i] > -INFINITY ? fs_sat_f32(top - kf * (d * d) + sf * ((d * d) * d))
                                         : -INFINITY;
        }
        fsc_smooth_row_base(row, o, V, top, kf, sf);
        CHECK(!memcmp(o, want, (size_t)V * sizeof(float)), "base smooth row (V = %lld)",
              (long long)V);
#ifdef FSC_X86
        const int isa = fs_cpu_isa();
        if (isa >= FS_ISA_AVX2) {
            fsc_smooth_row_avx2(row, o, V, top, kf, sf);
            CHECK(!memcmp(o, want, (size_t)V * sizeof(float)), "avx2 smooth row (V = %lld)",
                  (long long)V);
        }
        if (isa >= FS_ISA_AVX512) {
            fsc_smooth_row_avx512(row, o, V, top, kf, sf);
            CHECK(!memcmp(o, want, (size_t)V * sizeof(float)), "avx512 smooth row (V = %lld)",
                  (long long)V);
        }
#endif
        free(row);
        free(o);
        free(want);
    }
}

/* fsc_row_max and fsc_count_finite: every ISA copy gives the base copy's bits (which of
 * +0.0 / -0.0 too), the max ignores NaN, and both match a plain loop's value. */
static void test_row_scans(void) {
    for (int rep = 0; rep < 300; rep++) {
        int64_t V = rep < 100 ? (int64_t)rep : 1 + below(3000);
        float *row = malloc((size_t)(V > 0 ? V : 1) * sizeof(float));
        const int zeros = rep % 3 == 0;  /* a row whose max is a zero of either sign */
        for (int64_t i = 0; i < V; i++) {
            double r = uniform01();
            row[i] = r < 0.1 ? -INFINITY : r < 0.13 ? NAN
                     : zeros ? (r < 0.5 ? 0.0f : r < 0.8 ? -0.0f : -1.0f)
                             : (float)(40.0 * uniform01() - 30.0);
        }
        float want = -INFINITY;
        int64_t nfin = 0;
        for (int64_t i = 0; i < V; i++) {
            want = row[i] > want ? row[i] : want;
            nfin += row[i] > -INFINITY;
        }
        float m;
        int64_t c;
        fsc_row_max_row_base(row, V, &m);
        fsc_count_finite_row_base(row, V, &c);
        CHECK(m == want && c == nfin, "base row scans (V = %lld)", (long long)V);
#ifdef FSC_X86
        const int isa = fs_cpu_isa();
        float mi;
        int64_t ci;
        if (isa >= FS_ISA_AVX2) {
            fsc_row_max_row_avx2(row, V, &mi);
            fsc_count_finite_row_avx2(row, V, &ci);
            CHECK(!memcmp(&mi, &m, sizeof m) && ci == c, "avx2 row scans (V = %lld)", (long long)V);
        }
        if (isa >= FS_ISA_AVX512) {
            fsc_row_max_row_avx512(row, V, &mi);
            fsc_count_finite_row_avx512(row, V, &ci);
            CHECK(!memcmp(&mi, &m, sizeof m) && ci == c, "avx512 row scans (V = %lld)",
                  (long long)V);
        }
#endif
        free(row);
    }
}

static void test_exp_log_rows(void) {
    const int isa = fs_cpu_isa();
    for (int rep = 0; rep < 200; rep++) { /* every vector tail length, then longer rows */
        int64_t V = 1 + below(rep < 100 ? 40 : 3000);
        float *row = malloc((size_t)V * sizeof(float));
        double *w = malloc((size_t)V * sizeof(double)), *v = malloc((size_t)V * sizeof(double));
        double *t = malloc((size_t)V * sizeof(double)), *u = malloc((size_t)V * sizeof(double));
        for (int64_t i = 0; i < V; i++) { /* masked tokens, far tails (subnormal weights) */
            double r = uniform01();
            row[i] = r < 0.2 ? -INFINITY : (float)(-800.0 * uniform01() * (r < 0.5) - 20.0 * r);
        }
        const double m = uniform01() < 0.5 ? 0.0 : 3.5, W = 1.0 + 10.0 * uniform01();
        int same = 1;
        int64_t marks, nan = 0, vm;
        fsc_exp_row_base(row, V, m, w);
        fsc_plogp_row_base(w, W, V, t, &marks);
        for (int64_t i = 0; i < V; i++) {
            double e = fsc_exp((double)row[i] - m), p = w[i] / W;
            double pl = p > 0.0 ? p * fsc_log(p) : NAN;
            same &= !memcmp(&w[i], &e, sizeof e) && !memcmp(&t[i], &pl, sizeof pl);
            nan += pl != pl;
        }
        CHECK(same, "base row loops differ from scalar fsc_exp / fsc_log (V = %lld)",
              (long long)V);
        CHECK(marks == nan, "base plogp counts %lld NaN marks, not %lld", (long long)marks,
              (long long)nan);
#ifdef FSC_X86
        if (isa >= FS_ISA_AVX2) {
            fsc_exp_row_avx2(row, V, m, v);
            fsc_plogp_row_avx2(w, W, V, u, &vm);
            CHECK(same_rows(v, w, u, t, V) && vm == nan, "avx2 row loops differ (V = %lld)",
                  (long long)V);
        }
        if (isa >= FS_ISA_AVX512) {
            fsc_exp_row_avx512(row, V, m, v);
            fsc_plogp_row_avx512(w, W, V, u, &vm);
            CHECK(same_rows(v, w, u, t, V) && vm == nan, "avx512 row loops differ (V = %lld)",
                  (long long)V);
        }
#endif
        FSC_CALL_ISA(fsc_exp_row, row, V, m, v); /* the dispatched copies */
        FSC_CALL_ISA(fsc_plogp_row, w, W, V, u, &vm);
        CHECK(same_rows(v, w, u, t, V) && vm == nan, "dispatched row loops differ (V = %lld)",
              (long long)V);
        free(row);
        free(w);
        free(v);
        free(t);
        free(u);
    }
    (void)isa;
}

int main(void) {
    test_truncations();
    test_xtc_and_temperature();
    test_logit_bias();
    test_history_stages();
    test_long_repeat();
    test_bad_input();
    test_exp_log_scalar();
    test_exp_log_rows();
    test_smooth_rows();
    test_row_scans();
    printf("test_stages: %d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}

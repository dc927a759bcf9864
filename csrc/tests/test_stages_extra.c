/* Plain C test of the remaining stage kernels (csrc/stages_extra.c), for the
 * sanitizer build (csrc/sanitize.sh):
 *
 *   gcc -std=c99 -Icsrc (every csrc .c file) csrc/tests/test_stages_extra.c -lm
 *
 * Every entry point runs on random rows (smooth, tied, partly masked, one token
 * left, V = 1) against naive oracles written here from the reference's formulas
 * (plain loops, sequential sums, insertion sorts), with exactly-sized workspaces
 * so that AddressSanitizer sees any overrun, and on bad input: negative or
 * inconsistent sizes, NULL buffers, short workspaces, bad history offsets and
 * history tokens outside [0, V). Inputs must be left untouched. Exits 0 when every
 * check passes.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stages.h"
#include "stages_extra.h"

#define HARNESS_SEED 0x2545F4914F6CDD1Du
#include "harness.h" /* CHECK, random rows */

static int close_to(double got, double want) { return close_within(got, want, 1e-5); }

/* ---------------------------------------------------------------- naive helpers */

static int64_t nfinite(const float *row, int64_t V) {
    int64_t n = 0;
    for (int64_t i = 0; i < V; i++)
        n += row[i] > -INFINITY;
    return n;
}

static double rmax(const float *row, int64_t V) {
    double m = -INFINITY;
    for (int64_t i = 0; i < V; i++)
        m = row[i] > m ? row[i] : m;
    return m;
}

/* p = softmax over the finite entries (0 where masked), sequential sums */
static void probs(const float *row, int64_t V, double *p) {
    double m = rmax(row, V), W = 0.0;
    for (int64_t i = 0; i < V; i++)
        W += (p[i] = exp((double)row[i] - m));
    for (int64_t i = 0; i < V; i++)
        p[i] /= W;
}

static double entropy(const double *p, int64_t V) {
    double h = 0.0;
    for (int64_t i = 0; i < V; i++)
        if (p[i] > 0.0)
            h -= p[i] * log(p[i]);
    return h;
}

/* ids of the finite tokens, logit descending, ties to the lower id (insertion sort) */
static int64_t order_desc(const float *row, int64_t V, int64_t *ids) {
    int64_t n = 0;
    for (int64_t i = 0; i < V; i++) {
        if (!(row[i] > -INFINITY))
            continue;
        int64_t j = n++;
        while (j > 0 && row[ids[j - 1]] < row[i]) {
            ids[j] = ids[j - 1];
            j--;
        }
        ids[j] = i;
    }
    return n;
}

/* want = row where keep[i], then the min_keep floor (union with the top min_keep,
 * ties kept) */
static void apply_keep(const float *row, const int *keep, float *want, int64_t V,
                       int64_t min_keep, int64_t *ids) {
    int64_t nk = 0;
    for (int64_t i = 0; i < V; i++) {
        int k = keep[i] && row[i] > -INFINITY;
        want[i] = k ? row[i] : -INFINITY;
        nk += k;
    }
    if (min_keep < 1)
        min_keep = 1;
    if (nk >= min_keep)
        return;
    int64_t n = order_desc(row, V, ids);
    float t = row[ids[(min_keep < n ? min_keep : n) - 1]];
    for (int64_t i = 0; i < V; i++)
        if (row[i] >= t)
            want[i] = row[i];
}

static void compare_rows(const char *name, const float *got, const float *want, int64_t V,
                         int64_t b) {
    for (int64_t i = 0; i < V; i++)
        if (!close_to(got[i], want[i])) {
            CHECK(0, "%s row %lld token %lld: got %.9g want %.9g", name, (long long)b,
                  (long long)i, got[i], want[i]);
            return;
        }
    checks++;
}

/* ---------------------------------------------------------------- oracles per stage */

enum { EPS, ETA, TOPA, PLESS, TFS, MIRO, MIRO2, SMOOTH_T, ADAPT, DYNT, NSTAGES };
static const char *NAMES[NSTAGES] = {"epsilon", "eta", "top_a", "p_less", "tail_free",
                                     "mirostat", "mirostat_v2", "smoothing", "adaptive_p",
                                     "dynamic_temperature"};

typedef struct {
    double a, c, d; /* the stage's real parameters */
    int64_t k;      /* min_keep, or Mirostat's m */
} params;

static void oracle(int stage, const float *row, float *want, int64_t V, params q,
                   double *p, int *keep, int64_t *ids) {
    int64_t n = nfinite(row, V);
    probs(row, V, p);
    for (int64_t i = 0; i < V; i++)
        keep[i] = 1;
    switch (stage) {
    case EPS: case ETA: case TOPA: case PLESS: {
        double thr = q.a;
        if (stage == ETA) {
            double e2 = sqrt(q.a) * exp(-entropy(p, V));
            thr = e2 < q.a ? e2 : q.a;
        } else if (stage == TOPA) {
            double pm = 0.0;
            for (int64_t i = 0; i < V; i++)
                pm = p[i] > pm ? p[i] : pm;
            thr = q.a * pm * pm;
        } else if (stage == PLESS) {
            thr = -1e-6;
            for (int64_t i = 0; i < V; i++)
                thr += p[i] * p[i];
        }
        if (stage == PLESS || q.a > 0)
            for (int64_t i = 0; i < V; i++)
                keep[i] = p[i] >= thr;
        apply_keep(row, keep, want, V, q.k, ids);
        return;
    }
    case TFS: {
        if (q.a < 1.0) {
            order_desc(row, V, ids);
            double total = 0.0, cdf = 0.0;
            for (int64_t i = 0; i + 2 < n; i++)
                total += fabs(p[ids[i]] - 2 * p[ids[i + 1]] + p[ids[i + 2]]);
            for (int64_t i = 0; i < V; i++)
                keep[i] = 0;
            keep[ids[0]] = 1;
            for (int64_t i = 0; i + 2 < n; i++) {
                if (total > 0)
                    cdf += fabs(p[ids[i]] - 2 * p[ids[i + 1]] + p[ids[i + 2]]) / total;
                keep[ids[i + 1]] = !(cdf > q.a);
            }
        }
        apply_keep(row, keep, want, V, q.k, ids);
        return;
    }
    case MIRO: {
        int64_t top = (q.k < n ? q.k : n) - 1, k = 1;
        if (top > 0) {
            order_desc(row, V, ids);
            double num = 0.0, den = 0.0;
            for (int64_t i = 0; i < top; i++) {
                double t = log((i + 2.0) / (i + 1.0));
                num += t * log(p[ids[i]] / p[ids[i + 1]]);
                den += t * t;
            }
            double s = num / den, e = s - 1.0;
            double kf = pow((e * pow(2.0, q.a)) / (1.0 - pow((double)V, -e)), 1.0 / s);
            k = (!isfinite(kf) || kf > n) ? n : (kf < 1 ? 1 : (int64_t)kf);
        }
        int64_t m = order_desc(row, V, ids);
        float t = row[ids[(k < m ? k : m) - 1]];
        for (int64_t i = 0; i < V; i++)
            keep[i] = row[i] >= t;
        apply_keep(row, keep, want, V, 1, ids);
        return;
    }
    case MIRO2: {
        int64_t nk = 0;
        for (int64_t i = 0; i < V; i++)
            nk += keep[i] = row[i] > -INFINITY && -log(p[i]) / log(2.0) <= q.a;
        if (!nk)
            for (int64_t i = 0; i < V; i++)
                keep[i] = row[i] == rmax(row, V);
        apply_keep(row, keep, want, V, 1, ids);
        return;
    }
    case SMOOTH_T: {
        double top = rmax(row, V), k = (3.0 - q.c) / 2.0, s = (q.c - 1.0) / 2.0;
        for (int64_t i = 0; i < V; i++) {
            double d = (double)row[i] - top;
            want[i] = q.a <= 0 || !(row[i] > -INFINITY)
                          ? row[i]
                          : (float)(top - k * q.a * d * d + s * q.a * d * d * d);
        }
        return;
    }
    case ADAPT: {
        double tau = fmin(fmax(2.0 * q.a - q.c / q.d, 0.0), 1.0);
        for (int64_t i = 0; i < V; i++) {
            double d = fabs(p[i] - tau) / 0.3;
            want[i] = q.a < 0 || !(row[i] > -INFINITY) ? row[i]
                                                        : (float)(5.0 - 10.0 * d * d / (1.0 + d));
        }
        return;
    }
    case DYNT: {
        double t = q.a;
        if (q.c > 0 && n > 1) {
            double lo = fmax(q.a - q.c, 0.0), hi = q.a + q.c;
            t = lo + (hi - lo) * pow(entropy(p, V) / log((double)n), q.d);
        }
        int64_t first = 0;
        for (int64_t i = 1; i < V; i++)
            first = row[i] > row[first] ? i : first;
        for (int64_t i = 0; i < V; i++) {
            if (t == 1.0 || !(row[i] > -INFINITY))
                want[i] = row[i];
            else if (t <= 0.0)
                want[i] = i == first ? row[i] : -INFINITY;
            else
                want[i] = (float)((double)row[i] / t);
        }
        return;
    }
    }
}

/* Run one stage on a block with exact-size workspaces (NULL ws lengths where the
 * kernel takes none). Returns the status. */
static int run_stage(int stage, const float *x, float *out, int64_t B, int64_t V,
                     const double *a, const double *c, const double *d, const int64_t *k,
                     float *fws, int64_t fl, double *dws, int64_t dl) {
    switch (stage) {
    case EPS: return fs_epsilon(x, out, B, V, a, k, fws, fl, dws, dl);
    case ETA: return fs_eta(x, out, B, V, a, k, fws, fl, dws, dl);
    case TOPA: return fs_top_a(x, out, B, V, a, k, fws, fl, dws, dl);
    case PLESS: return fs_p_less(x, out, B, V, k, fws, fl, dws, dl);
    case TFS: return fs_tail_free(x, out, B, V, a, k, fws, fl, dws, dl);
    case MIRO: return fs_mirostat(x, out, B, V, a, k, fws, fl, dws, dl);
    case MIRO2: return fs_mirostat_v2(x, out, B, V, a, dws, dl);
    case SMOOTH_T: return fs_smoothing(x, out, B, V, a, c);
    case ADAPT: return fs_adaptive_p(x, out, B, V, a, c, d, dws, dl);
    default: return fs_dynamic_temperature(x, out, B, V, a, c, d, dws, dl);
    }
}

static params random_params(int stage, int64_t V) {
    static const double eps[] = {0.0, 1e-3, 0.01, 0.05, 0.2, 0.6};
    static const double tfs[] = {-0.1, 0.3, 0.7, 0.95, 0.99, 1.0};
    params q = {0.0, 0.0, 1.0, 1 + below(3)};
    if (below(5) == 0)
        q.k = V + 2;
    switch (stage) {
    case EPS: case ETA: q.a = eps[below(6)]; break;
    case TOPA: q.a = 2.0 * uniform01(); break;
    case TFS: q.a = tfs[below(6)]; break;
    case MIRO: q.a = 12.0 * uniform01(); q.k = 1 + below(V + 3); break;
    case MIRO2: q.a = 8.0 * uniform01(); break;
    case SMOOTH_T: q.a = uniform01() - 0.2; q.c = 4.0 * uniform01(); break;
    case ADAPT: q.a = uniform01() * 1.1 - 0.1; q.d = 1.0 + 9.0 * uniform01();
        q.c = q.d * uniform01(); break;
    case DYNT: q.a = 1.5 * uniform01(); q.c = uniform01() - 0.2; q.d = 0.5 + 2 * uniform01();
        break;
    }
    return q;
}

static void test_random_rows(void) {
    static const int64_t vs[] = {1, 2, 3, 7, 50, 300};
    for (int iter = 0; iter < 600; iter++) {
        int stage = iter % NSTAGES;
        int64_t B = 1 + below(4), V = vs[below(6)];
        float *x = new_logits(B, V), *out = malloc((size_t)(B * V) * sizeof(float));
        float *copy = malloc((size_t)(B * V) * sizeof(float)), *want = malloc(V * sizeof(float));
        memcpy(copy, x, (size_t)(B * V) * sizeof(float));
        double *a = malloc(B * sizeof(double)), *c = malloc(B * sizeof(double));
        double *d = malloc(B * sizeof(double));
        int64_t *k = malloc(B * sizeof(int64_t));
        params *q = malloc(B * sizeof(params));
        for (int64_t b = 0; b < B; b++) {
            q[b] = random_params(stage, V);
            a[b] = q[b].a, c[b] = q[b].c, d[b] = q[b].d, k[b] = q[b].k;
        }
        int64_t dl = fs_extra_dws_len(V);
        float *fws = malloc(V * sizeof(float));
        double *dws = malloc((size_t)dl * sizeof(double));
        int rc = run_stage(stage, x, out, B, V, a, c, d, k, fws, V, dws, dl);
        CHECK(rc == FS_STAGE_OK, "%s returned %d", NAMES[stage], rc);
        CHECK(memcmp(copy, x, (size_t)(B * V) * sizeof(float)) == 0, "%s wrote its input",
              NAMES[stage]);
        double *p = malloc(V * sizeof(double));
        int *keep = malloc(V * sizeof(int));
        int64_t *ids = malloc(V * sizeof(int64_t));
        for (int64_t b = 0; b < B && rc == FS_STAGE_OK; b++) {
            oracle(stage, x + b * V, want, V, q[b], p, keep, ids);
            compare_rows(NAMES[stage], out + b * V, want, V, b);
        }
        free(x), free(out), free(copy), free(want), free(a), free(c), free(d), free(k);
        free(q), free(fws), free(dws), free(p), free(keep), free(ids);
    }
}

/* ---------------------------------------------------------------- no-repeat n-gram */

static void ngram_naive(const float *row, float *want, int64_t V, const int64_t *h, int64_t L,
                        int64_t n) {
    memcpy(want, row, V * sizeof(float));
    if (n <= 0 || L < n)
        return;
    for (int64_t s = 0; s + n <= L; s++) {
        int64_t j = 0;
        while (j < n - 1 && h[s + j] == h[L - (n - 1) + j])
            j++;
        if (j == n - 1)
            want[h[s + n - 1]] = -INFINITY;
    }
}

static void test_ngram(void) {
    for (int iter = 0; iter < 300; iter++) {
        int64_t B = 1 + below(4), V = 1 + below(6);
        float *x = new_logits(B, V), *out = malloc((size_t)(B * V) * sizeof(float));
        float *want = malloc(V * sizeof(float));
        int64_t offsets[5] = {0}, n[4], longest = 0;
        for (int64_t b = 0; b < B; b++) {
            int64_t L = below(40);
            offsets[b + 1] = offsets[b] + L;
            longest = L > longest ? L : longest;
            n[b] = below(6) - 1;
        }
        int64_t nh = offsets[B];
        int64_t *hist = malloc((size_t)(nh ? nh : 1) * sizeof(int64_t));
        int64_t alpha = 1 + below(V);
        for (int64_t i = 0; i < nh; i++)
            hist[i] = below(alpha);
        int32_t *z = malloc((size_t)(longest ? longest : 1) * sizeof(int32_t));
        int rc = fs_no_repeat_ngram(x, out, B, V, hist, nh, offsets, n, z, longest ? longest : 1);
        CHECK(rc == FS_STAGE_OK, "no_repeat_ngram returned %d", rc);
        for (int64_t b = 0; b < B && rc == FS_STAGE_OK; b++) {
            ngram_naive(x + b * V, want, V, hist + offsets[b], offsets[b + 1] - offsets[b], n[b]);
            compare_rows("no_repeat_ngram", out + b * V, want, V, b);
        }
        /* a token outside [0, V) in an active row is an error, not a write */
        if (nh && n[0] >= 1 && offsets[1] - offsets[0] >= n[0]) {
            hist[offsets[0]] = V;
            rc = fs_no_repeat_ngram(x, out, B, V, hist, nh, offsets, n, z, longest);
            CHECK(rc == FS_STAGE_E_HISTORY, "bad history token gave %d", rc);
            hist[offsets[0]] = -1;
            rc = fs_no_repeat_ngram(x, out, B, V, hist, nh, offsets, n, z, longest);
            CHECK(rc == FS_STAGE_E_HISTORY, "negative history token gave %d", rc);
        }
        free(x), free(out), free(want), free(hist), free(z);
    }
    /* one token repeated 100k times: linear, and every n bans it */
    int64_t L = 100000, V = 3;
    int64_t *h = malloc(L * sizeof(int64_t)), off[2] = {0, L}, n = 50;
    for (int64_t i = 0; i < L; i++)
        h[i] = 2;
    int32_t *z = malloc(L * sizeof(int32_t));
    float x[3] = {0.f, 1.f, 2.f}, o[3];
    CHECK(fs_no_repeat_ngram(x, o, 1, V, h, L, off, &n, z, L) == FS_STAGE_OK, "long history");
    CHECK(o[0] == 0.f && o[1] == 1.f && o[2] == -INFINITY, "long history ban");
    free(h), free(z);
}

/* ---------------------------------------------------------------- bad input */

static void test_bad_input(void) {
    int64_t V = 8, B = 2, dl = fs_extra_dws_len(V);
    float *x = new_logits(B, V), out[16], fws[8];
    double *dws = malloc((size_t)dl * sizeof(double));
    double a[2] = {0.1, 0.1}, c[2] = {1.0, 1.0}, d[2] = {2.0, 2.0};
    int64_t k[2] = {1, 1};
    CHECK(fs_extra_dws_len(-1) == -1 && fs_extra_dws_len(INT64_MAX) == -1, "dws_len");
    for (int s = 0; s < NSTAGES; s++) {
        const char *nm = NAMES[s];
        CHECK(run_stage(s, x, out, -1, V, a, c, d, k, fws, V, dws, dl) == FS_STAGE_E_SIZE,
              "%s B < 0", nm);
        CHECK(run_stage(s, x, out, B, -1, a, c, d, k, fws, V, dws, dl) == FS_STAGE_E_SIZE,
              "%s V < 0", nm);
        CHECK(run_stage(s, x, out, B, 0, a, c, d, k, fws, V, dws, dl) == FS_STAGE_E_SIZE,
              "%s V = 0", nm);
        if (s != SMOOTH_T) /* nothing is read: the size check comes first */
            CHECK(run_stage(s, x, out, 1, (int64_t)INT32_MAX + 1, a, c, d, k, fws, V, dws, dl) ==
                      FS_STAGE_E_SIZE, "%s V >= 2^31", nm);
        CHECK(run_stage(s, x, out, INT64_MAX, V, a, c, d, k, fws, V, dws, dl) == FS_STAGE_E_SIZE,
              "%s B * V overflows", nm);
        CHECK(run_stage(s, NULL, out, B, V, a, c, d, k, fws, V, dws, dl) == FS_STAGE_E_SIZE,
              "%s NULL logits", nm);
        CHECK(run_stage(s, x, NULL, B, V, a, c, d, k, fws, V, dws, dl) == FS_STAGE_E_SIZE,
              "%s NULL out", nm);
        CHECK(run_stage(s, x, out, B, V, NULL, NULL, NULL, NULL, fws, V, dws, dl) ==
                  FS_STAGE_E_SIZE, "%s NULL parameters", nm);
        CHECK(run_stage(s, NULL, NULL, 0, V, NULL, NULL, NULL, NULL, NULL, 0, NULL, 0) ==
                  FS_STAGE_OK, "%s B = 0", nm);
        if (s != SMOOTH_T) {
            CHECK(run_stage(s, x, out, B, V, a, c, d, k, fws, V, dws, dl - 1) == FS_STAGE_E_SIZE,
                  "%s short dws", nm);
            CHECK(run_stage(s, x, out, B, V, a, c, d, k, fws, V, NULL, dl) == FS_STAGE_E_SIZE,
                  "%s NULL dws", nm);
        }
        if (s <= MIRO) {
            CHECK(run_stage(s, x, out, B, V, a, c, d, k, fws, V - 1, dws, dl) == FS_STAGE_E_SIZE,
                  "%s short fws", nm);
            CHECK(run_stage(s, x, out, B, V, a, c, d, k, NULL, V, dws, dl) == FS_STAGE_E_SIZE,
                  "%s NULL fws", nm);
        }
    }
    /* no-repeat n-gram: offsets and workspace */
    int64_t hist[6] = {1, 2, 1, 2, 1, 2}, n[2] = {2, 2}, z_len = 6;
    int32_t z[6];
    int64_t good[3] = {0, 3, 6}, back[3] = {0, 4, 3}, past[3] = {0, 3, 7}, neg[3] = {-1, 3, 6};
    CHECK(fs_no_repeat_ngram(x, out, B, V, hist, 6, good, n, z, z_len) == FS_STAGE_OK, "ngram ok");
    CHECK(fs_no_repeat_ngram(x, out, B, V, hist, 6, back, n, z, z_len) == FS_STAGE_E_OFFSETS,
          "ngram offsets out of order");
    CHECK(fs_no_repeat_ngram(x, out, B, V, hist, 6, past, n, z, z_len) == FS_STAGE_E_OFFSETS,
          "ngram offsets past the history");
    CHECK(fs_no_repeat_ngram(x, out, B, V, hist, 6, neg, n, z, z_len) == FS_STAGE_E_OFFSETS,
          "ngram negative offset");
    CHECK(fs_no_repeat_ngram(x, out, B, V, hist, 6, good, n, z, 2) == FS_STAGE_E_SIZE,
          "ngram short z");
    CHECK(fs_no_repeat_ngram(x, out, B, V, hist, 6, good, NULL, z, z_len) == FS_STAGE_E_SIZE,
          "ngram NULL n");
    CHECK(fs_no_repeat_ngram(x, out, B, V, NULL, 6, good, n, z, z_len) == FS_STAGE_E_SIZE,
          "ngram NULL history");
    CHECK(fs_no_repeat_ngram(x, out, B, V, hist, -1, good, n, z, z_len) == FS_STAGE_E_SIZE,
          "ngram negative history length");
    free(x);
    free(dws);
}

int main(void) {
    test_random_rows();
    test_ngram();
    test_bad_input();
    printf("test_stages_extra: %d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}

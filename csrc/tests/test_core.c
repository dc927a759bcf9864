/* C-level tests of the core kernels (fastsample.h), run by csrc/sanitize.sh under
 * AddressSanitizer and UndefinedBehaviorSanitizer. They exercise every entry point on
 * every instruction-set level this CPU runs, with hand-made rows whose answer is
 * known, size checks, agreement between levels on random rows, and a fuzz loop of
 * random shapes, parameters and NaN/inf rows whose tokens must stay in [0, V) or be
 * the invalid-row flag; and the truncations alone (fs_truncate_canonical) against a
 * naive sort-based form of the reference's rules, on rows of every top-p shape.
 * Workspaces are allocated at exactly the size the kernels ask for, so any read or
 * write past them is reported. Parity with the numpy reference is tested in Python
 * (tests/test_c_core.py, test_fast_canonical.py, test_fast_truncate.py). */

#include "fastsample.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HARNESS_SEED 0x9E3779B97F4A7C15u
#include "harness.h" /* CHECK, splitmix64, random rows */

typedef struct {
    int64_t k, mk;
    double p, mp, t;
    uint64_t seed, pos;
} params;

static int32_t sample1(const float *x, int64_t V, params q, int t_last, int isa) {
    size_t need = fs_canonical_ws_bytes(V);
    void *ws = malloc(need);
    int32_t out = -99;
    int rc = fs_sample_canonical(x, 1, V, &q.k, &q.p, &q.mp, &q.t, &q.mk, t_last, &q.seed,
                                 &q.pos, &out, ws, need, isa);
    CHECK(rc == FS_OK);
    free(ws);
    return out;
}

static params plain(void) {
    params q = {0, 1, 1.0, 0.0, 1.0, 7, 3};
    return q;
}

static void test_known_rows(int isa) {
    float x[300];
    for (int i = 0; i < 300; i++) x[i] = -2.0f;
    x[17] = x[40] = x[299] = 3.0f;
    params q = plain();
    q.t = 0.0; /* greedy: the first maximum */
    CHECK(sample1(x, 300, q, 1, isa) == 17);
    CHECK(sample1(x, 300, q, 0, isa) == 17);
    x[17] = -INFINITY;
    CHECK(sample1(x, 300, q, 1, isa) == 40);
    /* top-k 1 keeps the first max and its ties: a draw among 40 and 299 */
    q = plain();
    q.k = 1;
    for (uint64_t s = 0; s < 50; s++) {
        q.seed = s;
        int32_t t = sample1(x, 300, q, 1, isa);
        CHECK(t == 40 || t == 299);
    }
    /* min-p 0.99 with a unique max: that token */
    x[299] = 2.9f;
    q = plain();
    q.mp = 0.99;
    CHECK(sample1(x, 300, q, 1, isa) == 40);
    /* V = 1 */
    float one = 0.25f;
    q = plain();
    q.k = 5;
    q.p = 0.1;
    CHECK(sample1(&one, 1, q, 1, isa) == 0);
    CHECK(sample1(&one, 1, q, 0, isa) == 0);
    /* invalid rows: NaN, +inf, all masked, in both orders and greedy */
    float bad[64];
    for (int kind = 0; kind < 3; kind++) {
        for (int i = 0; i < 64; i++) bad[i] = kind == 2 ? -INFINITY : (float)i;
        if (kind == 0) bad[31] = NAN;
        if (kind == 1) bad[5] = INFINITY;
        for (int t_last = 0; t_last < 2; t_last++) {
            q = plain();
            CHECK(sample1(bad, 64, q, t_last, isa) == FS_INVALID_ROW);
            q.t = 0.5;
            CHECK(sample1(bad, 64, q, t_last, isa) == FS_INVALID_ROW);
            q.t = 0.0;
            CHECK(sample1(bad, 64, q, t_last, isa) == FS_INVALID_ROW);
        }
    }
}

static void test_sizes(void) {
    float x[16] = {0};
    int32_t out[2];
    uint64_t s[2] = {0, 0};
    size_t need = fs_canonical_ws_bytes(8);
    void *ws = malloc(need);
    CHECK(need > 0);
    CHECK(fs_canonical_ws_bytes(0) == 0 && fs_canonical_ws_bytes(-1) == 0);
    CHECK(fs_canonical_ws_bytes(INT64_MAX) == 0 && fs_topk_ws_bytes(0) == 0);
    CHECK(fs_draw(x, 2, 8, s, s, out, ws, need, 0) == FS_OK);
    CHECK(fs_draw(x, -1, 8, s, s, out, ws, need, 0) == FS_E_SIZE);
    CHECK(fs_draw(x, 2, 0, s, s, out, ws, need, 0) == FS_E_SIZE);
    CHECK(fs_draw(x, INT64_MAX / 4, 8, s, s, out, ws, need, 0) == FS_E_SIZE);
    CHECK(fs_draw(NULL, 2, 8, s, s, out, ws, need, 0) == FS_E_SIZE);
    CHECK(fs_draw(x, 2, 8, NULL, s, out, ws, need, 0) == FS_E_SIZE);
    CHECK(fs_draw(x, 2, 8, s, s, out, ws, need - 1, 0) == FS_E_WORKSPACE);
    CHECK(fs_draw(x, 2, 8, s, s, out, NULL, need, 0) == FS_E_WORKSPACE);
    CHECK(fs_draw(x, 0, 8, NULL, NULL, NULL, NULL, 0, 0) == FS_OK);
    CHECK(fs_draw(x, 2, 8, s, s, out, ws, need, 99) == FS_OK);  /* level lowered */
    CHECK(fs_draw(x, 2, 8, s, s, out, ws, need, -5) == FS_OK);
    int64_t k = 0, mk = 1;
    double p = 1.0, mp = 0.0, t = NAN;
    CHECK(fs_sample_canonical(x, 1, 8, &k, &p, &mp, &t, &mk, 1, s, s, out, ws, need, 0) == FS_E_PARAM);
    free(ws);
    float vals[16];
    int32_t ids[16];
    size_t tneed = fs_topk_ws_bytes(8);
    void *tws = malloc(tneed);
    CHECK(fs_topk(x, 2, 8, 9, vals, ids, tws, tneed, 0) == FS_E_PARAM);
    CHECK(fs_topk(x, 2, 8, -1, vals, ids, tws, tneed, 0) == FS_E_PARAM);
    CHECK(fs_topk(x, 2, 8, 8, vals, ids, tws, tneed - 1, 0) == FS_E_WORKSPACE);
    CHECK(fs_topk(x, 2, 8, 8, vals, ids, tws, tneed, 0) == FS_OK);
    CHECK(fs_topk(x, 2, 8, 0, NULL, NULL, NULL, 0, 0) == FS_OK);
    float nans[16];
    for (int i = 0; i < 16; i++) nans[i] = NAN;
    for (int isa = 0; isa <= fs_cpu_isa(); isa++)  /* NaN rows: an error, never a bad read */
        CHECK(fs_topk(nans, 2, 8, 3, vals, ids, tws, tneed, isa) == FS_E_PARAM);
    free(tws);
    int64_t tok[2] = {0, 8};
    double lp[2];
    CHECK(fs_token_logprob(x, 2, 8, tok, lp, 0) == FS_E_TOKEN);
    tok[1] = -2;
    CHECK(fs_token_logprob(x, 2, 8, tok, lp, 0) == FS_E_TOKEN);
    double temps[2] = {1.0, 0.0};
    float sm[16];
    CHECK(fs_softmax(x, 2, 8, temps, sm, 0) == FS_E_PARAM);
    CHECK(fs_log_softmax(x, -1, 8, sm, 0) == FS_E_SIZE);
    uint8_t inv[2];
    CHECK(fs_invalid_rows(x, 2, 8, inv, 0) == FS_OK && inv[0] == 0 && inv[1] == 0);
    CHECK(fs_argmax(x, 2, 8, NULL, 0) == FS_E_SIZE);
}

/* Every level gives the same tokens, top-k, argmax and (within rounding) softmax. */
static void test_levels_agree(int best) {
    const int64_t Vs[] = {1, 7, 255, 256, 257, 1000, 5000, 40000};
    for (size_t vi = 0; vi < sizeof Vs / sizeof Vs[0]; vi++) {
        int64_t V = Vs[vi];
        const int64_t B = 6;
        float *x = malloc((size_t)(B * V) * sizeof(float));
        for (int64_t b = 0; b < B; b++) {
            fill_gauss(x + b * V, V, b == 3 ? 40.0 : 3.0);
            if (b == 4)
                for (int64_t i = 0; i < V; i++) x[b * V + i] = roundf(x[b * V + i]);
            if (b == 5)
                for (int64_t i = 0; i < V; i++)
                    if (uniform01() < 0.7) x[b * V + i] = -INFINITY;
            x[b * V + below(V)] = 1.0f; /* at least one finite */
        }
        int64_t k[6] = {0, 40, 1, V, 3, 0}, mk[6] = {1, 1, 2, 1, 5, 1};
        double p[6] = {0.95, 0.9, 1.0, 0.5, 0.3, 1.0}, mp[6] = {0.0, 0.05, 0.0, 0.1, 0.0, 0.02};
        double t[6] = {1.0, 0.8, 1.3, 1.0, 0.5, 1.0};
        uint64_t seed[6] = {1, 2, 3, 4, 5, 6}, pos[6] = {9, 8, 7, 6, 5, 4};
        size_t need = fs_canonical_ws_bytes(V), tneed = fs_topk_ws_bytes(V);
        void *ws = malloc(need), *tws = malloc(tneed);
        /* k = V / 4 on long rows: the radix-select path of the top-k bound */
        int64_t kk = V < 50 ? V : V >= 5000 ? V / 4 : 50;
        int32_t ref[6], out[6], refd[6];
        int32_t *refi = malloc((size_t)(B * kk) * 4), *ids = malloc((size_t)(B * kk) * 4);
        float *refv = malloc((size_t)(B * kk) * 4), *vals = malloc((size_t)(B * kk) * 4);
        float *sm0 = malloc((size_t)(B * V) * sizeof(float)), *sm = malloc((size_t)(B * V) * sizeof(float));
        double temps[6] = {1.0, 0.7, 2.0, 1.0, 1.0, 0.3};
        for (int isa = 0; isa <= best; isa++) {
            for (int t_last = 0; t_last < 2; t_last++) {
                CHECK(fs_sample_canonical(x, B, V, k, p, mp, t, mk, t_last, seed, pos, out, ws, need,
                                          isa) == FS_OK);
                if (isa == 0 && t_last == 1) memcpy(ref, out, sizeof ref);
                for (int b = 0; b < B; b++) CHECK(out[b] >= 0 && out[b] < V);
                if (t_last == 1) CHECK(memcmp(out, ref, sizeof ref) == 0);
            }
            CHECK(fs_draw(x, B, V, seed, pos, out, ws, need, isa) == FS_OK);
            if (isa == 0) memcpy(refd, out, sizeof refd);
            CHECK(memcmp(out, refd, sizeof refd) == 0);
            CHECK(fs_topk(x, B, V, kk, vals, ids, tws, tneed, isa) == FS_OK);
            if (isa == 0) {
                memcpy(refv, vals, sizeof(float) * (size_t)(B * kk));
                memcpy(refi, ids, sizeof(int32_t) * (size_t)(B * kk));
                for (int b = 0; b < B; b++)
                    for (int64_t i = 1; i < kk; i++) {
                        float a = vals[b * kk + i - 1], c = vals[b * kk + i];
                        CHECK(a > c || (a == c && ids[b * kk + i - 1] < ids[b * kk + i]));
                    }
            }
            CHECK(memcmp(ids, refi, sizeof(int32_t) * (size_t)(B * kk)) == 0);
            CHECK(fs_softmax(x, B, V, temps, sm, isa) == FS_OK);
            if (isa == 0) memcpy(sm0, sm, sizeof(float) * (size_t)(B * V));
            for (int b = 0; b < B; b++) {
                double sum = 0.0;
                for (int64_t i = 0; i < V; i++) {
                    sum += sm[b * V + i];
                    CHECK(fabsf(sm[b * V + i] - sm0[b * V + i]) <= 1e-6f);
                    if (x[b * V + i] == -INFINITY) CHECK(sm[b * V + i] == 0.0f);
                }
                CHECK(fabs(sum - 1.0) < 1e-4);
            }
        }
        free(x); free(ws); free(tws); free(sm0); free(sm);
        free(refi); free(ids); free(refv); free(vals);
    }
}

/* Random shapes, parameters and NaN/inf rows: a token in [0, V) or the flag. */
static void test_fuzz(int best, int calls) {
    for (int c = 0; c < calls; c++) {
        const int64_t Vs[] = {1, 2, 3, 31, 255, 256, 257, 1000, 3000};
        int64_t V = Vs[below(9)], B = below(4);
        float *x = malloc((size_t)(B * V + 1) * sizeof(float));
        int64_t *k = malloc((size_t)(B + 1) * 8), *mk = malloc((size_t)(B + 1) * 8);
        double *p = malloc((size_t)(B + 1) * 8), *mp = malloc((size_t)(B + 1) * 8);
        double *t = malloc((size_t)(B + 1) * 8);
        uint64_t *seed = malloc((size_t)(B + 1) * 8);
        int32_t *out = malloc((size_t)(B + 1) * 4);
        int *bad = malloc((size_t)(B + 1) * sizeof(int));
        const double ps[] = {0.0, 1e-9, 0.3, 0.95, 1.0, 7.0}, mps[] = {0.0, 1e-300, 0.05, 0.9, 1.0, 3.0};
        const double ts[] = {0.0, -2.0, 1e-30, 0.7, 1.0, 1e30, INFINITY};
        const double scales[] = {1.0, 1e-3, 30.0, 1e35};
        for (int64_t b = 0; b < B; b++) {
            fill_gauss(x + b * V, V, scales[below(4)]);
            int kind = (int)below(8);
            bad[b] = 0;
            if (kind == 0) { x[b * V + below(V)] = NAN; bad[b] = 1; }
            if (kind == 1) { x[b * V + below(V)] = INFINITY; bad[b] = 1; }
            if (kind == 2) x[b * V + below(V)] = -INFINITY;
            if (kind == 3) {
                double frac = uniform01();
                for (int64_t i = 0; i < V; i++)
                    if (uniform01() < frac) x[b * V + i] = -INFINITY;
            }
            if (kind == 4) for (int64_t i = 0; i < V; i++) x[b * V + i] = roundf(x[b * V + i]);
            int finite = 0;
            for (int64_t i = 0; i < V; i++) finite |= x[b * V + i] > -INFINITY;
            if (!finite) bad[b] = 1;
            k[b] = below(V + 8) - 3;
            mk[b] = 1 + below(V + 2);
            p[b] = ps[below(6)];
            mp[b] = mps[below(6)];
            t[b] = ts[below(7)];
            seed[b] = next_u64();
        }
        int isa = (int)below(best + 1);
        size_t need = fs_canonical_ws_bytes(V);
        void *ws = malloc(need);
        CHECK(fs_sample_canonical(x, B, V, k, p, mp, t, mk, (int)(c & 1), seed, seed, out, ws,
                                  need, isa) == FS_OK);
        for (int64_t b = 0; b < B; b++) {
            if (bad[b]) {
                CHECK(out[b] == FS_INVALID_ROW);
            } else {
                CHECK(out[b] >= 0 && out[b] < V);
                if (out[b] >= 0 && out[b] < V) CHECK(x[b * V + out[b]] > -INFINITY);
            }
        }
        free(x); free(k); free(mk); free(p); free(mp); free(t); free(seed); free(out);
        free(bad); free(ws);
    }
}

/* ---------------------------------------------------------------- top-k */

/* An exact top-k of a NaN-free row, checked without sorting the row: distinct ids in
 * range, values copied bit for bit, order (value descending, id ascending), and no
 * unselected entry ahead of the k-th. Returns 1 if it holds. */
static int topk_exact(const float *x, int64_t V, int64_t k, const float *vals, const int32_t *ids,
                      unsigned char *mark) {
    int ok = 1;
    memset(mark, 0, (size_t)V);
    for (int64_t i = 0; i < k && ok; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= V || mark[id] || memcmp(&vals[i], &x[id], 4) != 0) { ok = 0; break; }
        mark[id] = 1;
        if (i > 0 && !(vals[i - 1] > vals[i] || (vals[i - 1] == vals[i] && ids[i - 1] < id))) ok = 0;
    }
    if (!ok || k == 0) return ok;
    const float vk = vals[k - 1];
    const int32_t ik = ids[k - 1];
    for (int64_t j = 0; j < V; j++)
        if (!mark[j] && (x[j] > vk || (x[j] == vk && j < ik))) return 0;
    return 1;
}

enum { TK_LLM, TK_UP, TK_DOWN, TK_EQUAL, TK_ROUND, TK_MASKED, TK_ONE, TK_SIGNED_ZERO,
       TK_INF, TK_NAN, TK_ALL_NEG_INF, TK_KINDS };

/* A row of one kind; returns 1 if it is invalid (docs/spec.md §7), with *nan for a NaN. */
static int topk_row_kind(float *x, int64_t V, int kind, int64_t pos, int *nan) {
    *nan = 0;
    fill_gauss(x, V, 3.0);
    for (int64_t i = 0; i < V; i++) {
        if (kind == TK_UP) x[i] = (float)i * 0.25f - 7.0f;
        if (kind == TK_DOWN) x[i] = 9.0f - (float)i * 0.125f;
        if (kind == TK_EQUAL) x[i] = 0.5f;
        if (kind == TK_ROUND) x[i] = roundf(x[i]);
        if (kind == TK_MASKED && uniform01() < 0.9) x[i] = -INFINITY;
        if (kind == TK_ONE || kind == TK_ALL_NEG_INF) x[i] = -INFINITY;
        if (kind == TK_SIGNED_ZERO) x[i] = uniform01() < 0.5 ? -0.0f : 0.0f;
    }
    if (kind == TK_ONE || kind == TK_MASKED) x[pos] = 2.0f;  /* one finite entry at least */
    if (kind == TK_SIGNED_ZERO) x[pos] = 1.0f;
    if (kind == TK_INF) x[pos] = INFINITY;
    if (kind == TK_NAN) { x[pos] = NAN; *nan = 1; }
    return kind == TK_INF || kind == TK_NAN || kind == TK_ALL_NEG_INF;
}

/* Both paths of top-k (single pass: V >= 65536 and V >= 16 k; two passes otherwise)
 * on rows that drive each branch, NaN / +inf at the start, middle and end: exact
 * results (also for +inf and all -inf rows), flags = the row check, every level
 * identical, fs_topk an error on NaN rows only. */
static void test_topk_paths(int best) {
    const int64_t Vs[] = {1, 300, 4099, 70001, 128256};
    for (size_t vi = 0; vi < sizeof Vs / sizeof Vs[0]; vi++) {
        const int64_t V = Vs[vi];
        const int64_t ks[] = {0, 1, 50, 1000, V / 16, V / 16 + 1, V};
        float *x = malloc((size_t)V * sizeof(float));
        float *vals = malloc((size_t)V * sizeof(float)), *v0 = malloc((size_t)V * sizeof(float));
        int32_t *ids = malloc((size_t)V * 4), *i0 = malloc((size_t)V * 4);
        unsigned char *mark = malloc((size_t)V);
        size_t need = fs_topk_ws_bytes(V);
        void *ws = malloc(need);
        for (int kind = 0; kind < TK_KINDS; kind++) {
            const int64_t where[] = {0, 5 % V, V / 2, V - 1};
            for (int w = 0; w < 4; w++) {
                if (w > 0 && kind < TK_ONE) break;  /* the position matters for these only */
                int nan;
                int bad = topk_row_kind(x, V, kind, where[w], &nan);
                for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++) {
                    const int64_t k = ks[ki];
                    if (k > V) continue;
                    for (int isa = 0; isa <= best; isa++) {
                        uint8_t flag = 7;
                        CHECK(fs_topk_checked(x, 1, V, k, vals, ids, &flag, ws, need, isa) == FS_OK);
                        CHECK(flag == bad);
                        for (int64_t i = 0; i < k; i++) CHECK(ids[i] >= 0 && ids[i] < V);
                        if (nan) {
                            CHECK(fs_topk(x, 1, V, k, vals, ids, ws, need, isa) == (k ? FS_E_PARAM : FS_OK));
                            continue;
                        }
                        CHECK(topk_exact(x, V, k, vals, ids, mark));
                        if (isa == 0) {
                            memcpy(v0, vals, (size_t)k * 4);
                            memcpy(i0, ids, (size_t)k * 4);
                        } else {
                            CHECK(memcmp(v0, vals, (size_t)k * 4) == 0 && memcmp(i0, ids, (size_t)k * 4) == 0);
                        }
                        CHECK(fs_topk(x, 1, V, k, vals, ids, ws, need, isa) == FS_OK);
                        CHECK(topk_exact(x, V, k, vals, ids, mark));
                    }
                }
            }
        }
        free(x); free(vals); free(v0); free(ids); free(i0); free(mark); free(ws);
    }
}

/* Random shapes, k and NaN/inf rows through fs_topk_checked at exactly the workspace
 * size: flags match fs_invalid_rows, ids stay in range, valid rows are exact. */
static void test_topk_fuzz(int best, int calls) {
    for (int c = 0; c < calls; c++) {
        const int64_t Vs[] = {1, 2, 17, 255, 1000, 3000, 65536, 65551};
        int64_t V = Vs[below(8)], B = below(V > 4096 ? 3 : 5);
        int64_t k = below(V + 1);
        if (V > 4096 && below(2)) k = below(V / 16 + 1);  /* the single-pass path */
        float *x = malloc((size_t)(B * V + 1) * sizeof(float));
        float *vals = malloc((size_t)(B * k + 1) * sizeof(float));
        int32_t *ids = malloc((size_t)(B * k + 1) * 4);
        uint8_t *flags = malloc((size_t)B + 1), *want = malloc((size_t)B + 1);
        unsigned char *mark = malloc((size_t)V);
        for (int64_t b = 0; b < B; b++) {
            int nan;
            (void)topk_row_kind(x + b * V, V, (int)below(TK_KINDS), below(V), &nan);
            if (below(4) == 0) x[b * V + below(V)] = below(2) ? NAN : INFINITY;
        }
        size_t need = fs_topk_ws_bytes(V);
        void *ws = malloc(need);
        int isa = (int)below(best + 1);
        CHECK(fs_topk_checked(x, B, V, k, vals, ids, flags, ws, need, isa) == FS_OK);
        CHECK(fs_invalid_rows(x, B, V, want, isa) == FS_OK);
        for (int64_t b = 0; b < B; b++) {
            CHECK(flags[b] == want[b]);
            int has_nan = 0;
            for (int64_t i = 0; i < V; i++) has_nan |= x[b * V + i] != x[b * V + i];
            for (int64_t i = 0; i < k; i++) CHECK(ids[b * k + i] >= 0 && ids[b * k + i] < V);
            if (!has_nan) CHECK(topk_exact(x + b * V, V, k, vals + b * k, ids + b * k, mark));
        }
        free(x); free(vals); free(ids); free(flags); free(want); free(mark); free(ws);
    }
}

/* ---------------------------------------------------------------- truncation */

typedef struct {
    float v;
    int32_t id;
} vid;

static int by_value_desc(const void *a, const void *b) {
    const vid *x = a, *y = b;
    if (x->v != y->v) return x->v > y->v ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* The j-th largest finite value of row (j clipped to [1, finite count]; -inf if none). */
static float naive_kth(const float *row, int64_t V, int64_t j, vid *s) {
    int64_t c = 0;
    for (int64_t i = 0; i < V; i++)
        if (row[i] > -INFINITY) { s[c].v = row[i]; s[c].id = (int32_t)i; c++; }
    if (c == 0) return -INFINITY;
    qsort(s, (size_t)c, sizeof *s, by_value_desc);
    return s[(j < 1 ? 1 : j > c ? c : j) - 1].v;
}

/* reference._truncate: mask the finite entries outside keep, after the min_keep floor. */
static void naive_apply(float *row, int64_t V, unsigned char *keep, int64_t mk, vid *s) {
    int64_t c = 0;
    for (int64_t i = 0; i < V; i++) c += keep[i] = keep[i] && row[i] > -INFINITY;
    if (c < mk) {
        float g = naive_kth(row, V, mk, s);
        for (int64_t i = 0; i < V; i++) keep[i] |= row[i] > -INFINITY && row[i] >= g;
    }
    for (int64_t i = 0; i < V; i++)
        if (!keep[i]) row[i] = -INFINITY;
}

/* TopK -> TopP -> MinP by the reference's rules, stage by stage with full sorts: row
 * (a copy of a valid row) ends with only the survivors finite. */
static void naive_truncate(float *row, int64_t V, int64_t k, double p, double pmin, int64_t mk,
                           unsigned char *keep, vid *s) {
    int64_t fin = 0;
    for (int64_t i = 0; i < V; i++) fin += row[i] > -INFINITY;
    float g = k > 0 && k < fin ? naive_kth(row, V, k, s) : -INFINITY;
    for (int64_t i = 0; i < V; i++) keep[i] = row[i] >= g;
    naive_apply(row, V, keep, mk, s);
    for (int64_t i = 0; i < V; i++) keep[i] = 1;
    if (p < 1.0) {
        int64_t c = 0;
        for (int64_t i = 0; i < V; i++)
            if (row[i] > -INFINITY) { s[c].v = row[i]; s[c].id = (int32_t)i; c++; }
        qsort(s, (size_t)c, sizeof *s, by_value_desc);
        double W = 0.0, cum = 0.0;
        for (int64_t a = 0; a < c; a++) W += exp((double)s[a].v - (double)s[0].v);
        int64_t last = c - 1;
        for (int64_t a = 0; a < c; a++) {
            cum += exp((double)s[a].v - (double)s[0].v) / W;
            if (cum >= p - 1e-6) { last = a; break; }
        }
        for (int64_t i = 0; i < V; i++) keep[i] = row[i] >= s[last].v;
    }
    naive_apply(row, V, keep, mk, s);
    for (int64_t i = 0; i < V; i++) keep[i] = 1;
    if (pmin > 0.0) {
        float m = -INFINITY;
        for (int64_t i = 0; i < V; i++) m = row[i] > m ? row[i] : m;
        double thr = (double)m + log(pmin);
        for (int64_t i = 0; i < V; i++) keep[i] = (double)row[i] >= thr;
    }
    naive_apply(row, V, keep, mk, s);
}

/* fs_truncate_canonical of B rows with room for every token; 1 if each row holds
 * exactly the naive survivors (ids ascending, vals = x[ids]) and flags match. */
static int truncate_matches(const float *x, int64_t B, int64_t V, const int64_t *k, const double *p,
                            const double *mp, const int64_t *mk, int isa) {
    size_t need = fs_canonical_ws_bytes(V);
    void *ws = malloc(need);
    int32_t *ids = malloc((size_t)(B * V) * 4);
    float *vals = malloc((size_t)(B * V) * 4), *row = malloc((size_t)V * 4);
    int64_t *off = malloc((size_t)(B + 1) * 8), done = -1;
    uint8_t *inv = malloc((size_t)B), *want_inv = malloc((size_t)B);
    unsigned char *keep = malloc((size_t)V);
    vid *s = malloc((size_t)V * sizeof *s);
    int ok = fs_truncate_canonical(x, B, V, k, p, mp, mk, ids, vals, B * V, off, inv, &done, ws,
                                   need, isa) == FS_OK && done == B && off[0] == 0;
    ok = ok && fs_invalid_rows(x, B, V, want_inv, isa) == FS_OK;
    for (int64_t b = 0; b < B && ok; b++) {
        ok = inv[b] == want_inv[b];
        if (inv[b]) { ok = ok && off[b + 1] == off[b]; continue; }
        memcpy(row, x + b * V, (size_t)V * 4);
        naive_truncate(row, V, k[b], p[b], mp[b], mk[b], keep, s);
        int64_t j = off[b];
        for (int64_t i = 0; i < V && ok; i++) {
            if (!(row[i] > -INFINITY)) continue;
            ok = j < off[b + 1] && ids[j] == i && vals[j] == x[b * V + i];
            j++;
        }
        ok = ok && j == off[b + 1];
        if (!ok)
            fprintf(stderr, "truncate row %ld (V %ld isa %d): k %ld p %g min_p %g min_keep %ld\n",
                    (long)b, (long)V, isa, (long)k[b], p[b], mp[b], (long)mk[b]);
    }
    free(ws); free(ids); free(vals); free(row); free(off); free(inv); free(want_inv);
    free(keep); free(s);
    return ok;
}

/* fs_truncate_canonical_row with room for cap: its count (-1: invalid), -99 on an error. */
static int64_t trunc1(const float *x, int64_t V, int64_t k, double p, double mp, int64_t mk,
                      int32_t *ids, float *vals, int64_t cap, int isa) {
    size_t need = fs_canonical_ws_bytes(V);
    void *ws = malloc(need);
    int64_t n = -99;
    int rc = fs_truncate_canonical_row(x, V, k, p, mp, mk, ids, vals, cap, &n, ws, need, isa);
    CHECK(rc == FS_OK);
    free(ws);
    return rc == FS_OK ? n : -99;
}

/* Hand-made rows with known survivors, invalid rows, the buffer protocol and sizes. */
static void test_truncate_known(int isa) {
    const float x[5] = {3.0f, 1.0f, 2.0f, -INFINITY, 2.0f};
    int32_t ids[8];
    float vals[8];
    /* top-k 2: the 2nd largest is 2, tied: {0, 2, 4} */
    CHECK(trunc1(x, 5, 2, 1.0, 0.0, 1, ids, vals, 8, isa) == 3);
    CHECK(ids[0] == 0 && ids[1] == 2 && ids[2] == 4 && vals[1] == 2.0f);
    /* every stage off: every finite token */
    CHECK(trunc1(x, 5, 0, 1.0, 0.0, 1, ids, vals, 8, isa) == 4 && ids[3] == 4);
    /* min-p 0.5: l >= 3 + ln 0.5 = 2.31: the max; min_keep 2 adds its ties at 2 */
    CHECK(trunc1(x, 5, 0, 1.0, 0.5, 1, ids, vals, 8, isa) == 1 && ids[0] == 0);
    CHECK(trunc1(x, 5, 0, 1.0, 0.5, 2, ids, vals, 8, isa) == 3);
    /* top-p 1e-9: the max alone; a count over cap writes nothing */
    CHECK(trunc1(x, 5, 0, 1e-9, 0.0, 1, ids, vals, 8, isa) == 1 && ids[0] == 0);
    ids[0] = -7;
    CHECK(trunc1(x, 5, 0, 1.0, 0.0, 1, ids, vals, 2, isa) == 4 && ids[0] == -7);
    /* invalid rows: NaN, +inf, every logit masked */
    float bad[3] = {0.0f, NAN, 1.0f};
    CHECK(trunc1(bad, 3, 0, 0.9, 0.0, 1, ids, vals, 8, isa) == -1);
    bad[1] = INFINITY;
    CHECK(trunc1(bad, 3, 0, 0.9, 0.0, 1, ids, vals, 8, isa) == -1);
    for (int i = 0; i < 3; i++) bad[i] = -INFINITY;
    CHECK(trunc1(bad, 3, 5, 0.9, 0.1, 1, ids, vals, 8, isa) == -1);
    float one = -2.5f;
    CHECK(trunc1(&one, 1, 3, 0.1, 0.9, 4, ids, vals, 1, isa) == 1);
    CHECK(ids[0] == 0 && vals[0] == -2.5f);

    /* the buffer protocol: rows of 300 survivors, room for 400 */
    const int64_t B = 4, V = 300;
    float *rows = malloc((size_t)(B * V) * 4);
    for (int64_t i = 0; i < B * V; i++) rows[i] = (float)(i % V % 7);
    rows[V + 3] = NAN;  /* row 1 invalid: no survivors */
    int64_t k[4] = {0, 0, 0, 2}, mk[4] = {1, 1, 1, 1}, off[5], done = -1;
    double p[4] = {1.0, 1.0, 1.0, 1.0}, mp[4] = {0.0, 0.0, 0.0, 0.0};
    uint8_t inv[4];
    int32_t *bid = malloc(400 * 4);
    float *bval = malloc(400 * 4);
    size_t need = fs_canonical_ws_bytes(V);
    void *ws = malloc(need);
    CHECK(fs_truncate_canonical(rows, B, V, k, p, mp, mk, bid, bval, 400, off, inv, &done, ws, need,
                                isa) == FS_OK);
    CHECK(done == 2 && off[0] == 0 && off[1] == 300 && off[2] == 300 && off[3] == 600);
    CHECK(inv[0] == 0 && inv[1] == 1 && bid[299] == 299);
    CHECK(fs_truncate_canonical(rows + 2 * V, 2, V, k + 2, p + 2, mp + 2, mk + 2, bid, bval, 400,
                                off, inv, &done, ws, need, isa) == FS_OK);
    /* row 3: the 2nd largest is a 6 (tied): ids 6, 13, ..., 293 */
    CHECK(done == 2 && off[1] == 300 && off[2] - off[1] == 42);
    CHECK(bid[300] == 6 && bid[341] == 293 && bval[341] == 6.0f);
    /* no room at all: ids and vals may be NULL; an invalid row still fits */
    CHECK(fs_truncate_canonical(rows + V, 2, V, k, p, mp, mk, NULL, NULL, 0, off, inv, &done, ws,
                                need, isa) == FS_OK);
    CHECK(done == 1 && inv[0] == 1 && off[1] == 0 && off[2] == 300);
    /* sizes and parameters */
#define TRUNC(x_, V_, ids_, cap_, off_, inv_, done_, need_)                                  \
    fs_truncate_canonical(x_, B, V_, k, p, mp, mk, ids_, bval, cap_, off_, inv_, done_, ws, \
                          need_, isa)
    CHECK(TRUNC(rows, V, bid, 400, off, inv, NULL, need) == FS_E_SIZE);
    CHECK(TRUNC(rows, V, bid, -1, off, inv, &done, need) == FS_E_SIZE);
    CHECK(TRUNC(rows, V, NULL, 400, off, inv, &done, need) == FS_E_SIZE);
    CHECK(TRUNC(rows, V, bid, 400, NULL, inv, &done, need) == FS_E_SIZE);
    CHECK(TRUNC(rows, V, bid, 400, off, NULL, &done, need) == FS_E_SIZE);
    CHECK(TRUNC(rows, V, bid, 400, off, inv, &done, need - 1) == FS_E_WORKSPACE);
    CHECK(TRUNC(rows, 0, bid, 400, off, inv, &done, need) == FS_E_SIZE);
    p[2] = NAN;
    CHECK(TRUNC(rows, V, bid, 400, off, inv, &done, need) == FS_E_PARAM);
#undef TRUNC
    off[0] = 9;
    CHECK(fs_truncate_canonical(rows, 0, V, NULL, NULL, NULL, NULL, NULL, NULL, 0, off, NULL, &done,
                                NULL, 0, isa) == FS_OK);
    CHECK(off[0] == 0 && done == 0);
    int64_t *no_count = NULL;
    CHECK(fs_truncate_canonical_row(rows, V, 0, 1.0, 0.0, 1, bid, bval, 400, no_count, ws, need,
                                    isa) == FS_E_SIZE);
    free(rows); free(bid); free(bval); free(ws);
}

/* A row of one top-p shape at full size (rows of csrc/fs_canonical.inc's top_p_row:
 * a histogram over part of the range (LLM-like), over all of it (flat, narrow, mostly
 * masked), ties, a range just over the histogram's depth). */
enum { TP_LLM, TP_FLAT, TP_NARROW, TP_MASKED_FLAT, TP_ROUND, TP_STEPS, TP_WIDE, TP_KINDS };

static void fill_top_p_row(float *x, int64_t V, int kind) {
    for (int64_t i = 0; i < V; i++) {
        double u = uniform01();
        /* an LLM-like tail: the value falls with the log of a random rank */
        double llm = -1.5 * log1p((double)below(V)) + 0.5 * (uniform01() + uniform01() - 1.0);
        x[i] = (float)(kind == TP_FLAT || kind == TP_MASKED_FLAT ? 2.0 * u - 1.0
                       : kind == TP_NARROW ? 1e-3 * u + 5.0
                       : kind == TP_ROUND ? round(2.0 * llm) / 2.0
                       : kind == TP_STEPS ? -(double)below(40) * 0.5
                       : kind == TP_WIDE ? 40.0 * u - 20.0 : llm);
        if (kind == TP_MASKED_FLAT && uniform01() < 0.97) x[i] = -INFINITY;
    }
    x[below(V)] = 1.0f;
}

/* Every level gives the naive survivors on rows of each top-p shape, for many p,
 * alone and with min_keep, top-k and min-p; the sampled token (t = 1) is one of them. */
static void test_truncate_top_p(int best) {
    const int64_t Vs[] = {1000, 128256};
    const double ps[] = {1e-7, 0.1, 0.5, 0.9, 0.95, 0.99, 0.999999};
    for (size_t vi = 0; vi < 2; vi++) {
        const int64_t V = Vs[vi], B = 7;
        float *x = malloc((size_t)(B * V) * 4);
        for (int kind = 0; kind < TP_KINDS; kind++) {
            for (int64_t b = 0; b < B; b++) fill_top_p_row(x + b * V, V, kind);
            int64_t k[7] = {0, 0, 0, 0, 0, 0, 0}, mk[7] = {1, 1, 1, 1, 1, 1, 1};
            double p[7], mp[7] = {0, 0, 0, 0, 0, 0, 0};
            for (int64_t b = 0; b < B; b++) p[b] = ps[b];
            for (int isa = 0; isa <= best; isa++) {
                CHECK(truncate_matches(x, B, V, k, p, mp, mk, isa), "kind %d V %ld", kind, (long)V);
                int64_t k2[7] = {0, 3000, 0, 40, 0, 0, V + 1}, mk2[7] = {300, 1, 2, 1, 1, 50, 1};
                double mp2[7] = {0, 0, 0.05, 0.05, 0.9, 0, 0.01};
                CHECK(truncate_matches(x, B, V, k2, p, mp2, mk2, isa), "mixed, kind %d", kind);
            }
            /* the sampling entry draws from the same set */
            size_t need = fs_canonical_ws_bytes(V);
            void *ws = malloc(need);
            int32_t *ids = malloc((size_t)V * 4);
            float *vals = malloc((size_t)V * 4);
            for (int64_t b = 0; b < B; b++) {
                int64_t n;
                CHECK(fs_truncate_canonical_row(x + b * V, V, 0, p[b], 0.0, 1, ids, vals, V, &n, ws,
                                                need, best) == FS_OK);
                for (uint64_t seed = 0; seed < 4; seed++) {
                    int32_t tok = -1;
                    double t = 1.0;
                    CHECK(fs_sample_canonical(x + b * V, 1, V, &k[b], &p[b], &mp[b], &t, &mk[b], 1,
                                              &seed, &seed, &tok, ws, need, best) == FS_OK);
                    int64_t lo = 0, hi = n;  /* binary search in the ascending ids */
                    while (lo < hi) {
                        int64_t mid = (lo + hi) / 2;
                        if (ids[mid] < tok) lo = mid + 1; else hi = mid;
                    }
                    CHECK(lo < n && ids[lo] == tok, "token %d not a survivor (kind %d)", tok,
                          kind);
                }
            }
            free(ws); free(ids); free(vals);
        }
        free(x);
    }
}

/* Random shapes, parameters and NaN/inf rows against the naive survivors. */
static void test_truncate_fuzz(int best, int calls) {
    for (int c = 0; c < calls; c++) {
        const int64_t Vs[] = {1, 2, 3, 31, 255, 256, 257, 1000, 3000};
        int64_t V = Vs[below(9)], B = 1 + below(3);
        float *x = malloc((size_t)(B * V) * sizeof(float));
        int64_t k[3], mk[3];
        double p[3], mp[3];
        const double ps[] = {0.0, 1e-9, 0.3, 0.95, 0.999, 1.0, 7.0};
        const double mps[] = {0.0, 1e-300, 0.05, 0.9, 1.0, 3.0};
        const double scales[] = {1.0, 1e-3, 30.0, 1e35};
        for (int64_t b = 0; b < B; b++) {
            fill_gauss(x + b * V, V, scales[below(4)]);
            int kind = (int)below(8);
            if (kind == 0) x[b * V + below(V)] = NAN;
            if (kind == 1) x[b * V + below(V)] = INFINITY;
            if (kind == 2) for (int64_t i = 0; i < V; i++) x[b * V + i] = -INFINITY;
            if (kind == 3) {
                double frac = uniform01();
                for (int64_t i = 0; i < V; i++)
                    if (uniform01() < frac) x[b * V + i] = -INFINITY;
            }
            if (kind == 4) for (int64_t i = 0; i < V; i++) x[b * V + i] = roundf(x[b * V + i]);
            k[b] = below(V + 8) - 3;
            mk[b] = 1 + below(V + 2);
            p[b] = ps[below(7)];
            mp[b] = mps[below(6)];
        }
        int isa = (int)below(best + 1);
        CHECK(truncate_matches(x, B, V, k, p, mp, mk, isa), "fuzz call %d", c);
        free(x);
    }
}

int main(int argc, char **argv) {
    int calls = argc > 1 ? atoi(argv[1]) : 3000;
    int best = fs_cpu_isa();
    printf("test_core: instruction-set levels 0..%d\n", best);
    for (int isa = 0; isa <= best; isa++) test_known_rows(isa);
    test_sizes();
    test_levels_agree(best);
    test_fuzz(best, calls);
    test_topk_paths(best);
    test_topk_fuzz(best, calls / 10);
    for (int isa = 0; isa <= best; isa++) test_truncate_known(isa);
    test_truncate_top_p(best);
    test_truncate_fuzz(best, calls / 3);
    printf("test_core: %d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}

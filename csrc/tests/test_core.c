/* C-level tests of the core kernels (fastsample.h), run by csrc/sanitize.sh under
 * AddressSanitizer and UndefinedBehaviorSanitizer. They exercise every entry point on
 * every instruction-set level this CPU runs, with hand-made rows whose answer is
 * known, size checks, agreement between levels on random rows, and a fuzz loop of
 * random shapes, parameters and NaN/inf rows whose tokens must stay in [0, V) or be
 * the invalid-row flag. Workspaces are allocated at exactly the size the kernels ask
 * for, so any read or write past them is reported. Parity with the numpy reference
 * is tested in Python (tests/test_c_core.py). */

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

/* A row of one kind; returns 1 if it is invalid (SPEC 7), with *nan for a NaN. */
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
    printf("test_core: %d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}

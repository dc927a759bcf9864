/* Tests of the token-constraint kernels (fs_constraints.h) and of the fused canonical
 * kernels under a packed bitmask (fs_sample_canonical_masked,
 * fs_truncate_canonical_masked): on random rows, bitmasks of every density and odd V,
 * at every instruction-set level, each equals the plain kernel on the row masked by
 * a scalar loop; bad sizes and rows give their error codes. */
#define HARNESS_SEED 0xB17A5Cu
#include "harness.h" /* CHECK, splitmix64, random rows */

#include <string.h>

#include "fastsample.h"
#include "fs_constraints.h"
#include "stages.h"

static int allowed(const uint32_t *w, int64_t v) { return (int)((w[v >> 5] >> (v & 31)) & 1u); }

static void fill_mask(uint32_t *w, int64_t W, double density) {
    for (int64_t j = 0; j < W; j++) {
        uint32_t x = 0;
        for (int b = 0; b < 32; b++) x |= (uint32_t)(uniform01() < density) << b;
        w[j] = x;
    }
}

static void masked_copy(const float *x, const uint32_t *w, int64_t V, float *out) {
    for (int64_t v = 0; v < V; v++) out[v] = allowed(w, v) ? x[v] : -INFINITY;
}

static void test_apply(int best) {
    static const int64_t Vs[] = {1, 5, 31, 32, 33, 255, 256, 257, 1000, 4099};
    for (size_t a = 0; a < sizeof Vs / sizeof Vs[0]; a++) {
        const int64_t V = Vs[a], W = (V + 31) / 32 + 1, B = 3, R = 2;
        float *x = malloc(B * V * 4), *out = malloc(B * V * 4), *want = malloc(V * 4);
        uint32_t *bm = malloc(R * W * 4);
        int64_t rows[3] = {1, -1, 0};
        for (int64_t b = 0; b < B; b++) fill_row(x + b * V, V, (int)below(NSTYLES));
        x[0] = NAN;  /* values are not checked */
        fill_mask(bm, R * W, 0.3);
        for (int isa = 0; isa <= best; isa++) {
            CHECK(fs_apply_token_bitmask(x, out, B, V, bm, R, W, rows, isa) == FS_STAGE_OK);
            for (int64_t b = 0; b < B; b++) {
                if (rows[b] < 0) memcpy(want, x + b * V, V * 4);
                else masked_copy(x + b * V, bm + rows[b] * W, V, want);
                CHECK(memcmp(want, out + b * V, V * 4) == 0, "V=%ld row %ld isa %d", (long)V,
                      (long)b, isa);
            }
            memcpy(out, x, B * V * 4);  /* in place */
            CHECK(fs_apply_token_bitmask(out, out, B, V, bm, R, W, rows, isa) == FS_STAGE_OK);
            masked_copy(x, bm + W, V, want);
            CHECK(memcmp(want, out, V * 4) == 0);
        }
        int64_t bad_rows[3] = {0, 2, 0};
        CHECK(fs_apply_token_bitmask(x, out, B, V, bm, R, W, bad_rows, 0) == FS_STAGE_E_ID);
        CHECK(fs_apply_token_bitmask(x, out, B, V, bm, R, (V + 31) / 32 - 1, rows, 0) ==
              FS_STAGE_E_SIZE);
        CHECK(fs_apply_token_bitmask(x, out, B, V, NULL, R, W, rows, 0) == FS_STAGE_E_SIZE);
        free(x), free(out), free(want), free(bm);
    }
}

/* The masked kernels' tokens and survivors equal the plain kernels' on the masked rows. */
static void test_fused(int best, int calls) {
    for (int c = 0; c < calls; c++) {
        const int64_t V = 1 + below(c % 3 == 0 ? 5000 : 700), B = 1 + below(4);
        const int64_t W = (V + 31) / 32, R = 3;
        float *x = malloc(B * V * 4), *xm = malloc(B * V * 4);
        uint32_t *bm = malloc(R * W * 4);
        int64_t rows[4], k[4], mk[4];
        double p[4], mp[4], t[4];
        uint64_t seed[4], pos[4];
        static const double dens[] = {0.01, 0.1, 0.5, 1.0};
        fill_mask(bm, R * W, dens[below(4)]);
        for (int64_t b = 0; b < B; b++) {
            fill_row(x + b * V, V, (int)below(NSTYLES));
            rows[b] = below(R + 1) - 1;
            if (rows[b] < 0) memcpy(xm + b * V, x + b * V, V * 4);
            else masked_copy(x + b * V, bm + rows[b] * W, V, xm + b * V);
            k[b] = below(3) ? below(60) : 0;
            mk[b] = 1 + below(3);
            p[b] = below(2) ? 0.9 : 1.0;
            mp[b] = below(2) ? 0.05 : 0.0;
            t[b] = below(4) ? 0.8 : (below(2) ? 0.0 : 1.0);
            seed[b] = next_u64();
            pos[b] = below(100);
        }
        /* a disallowed NaN invalidates its row in the masked kernel only: keep it out */
        int t_last = (int)below(2), isa = (int)below(best + 1);
        size_t nws = fs_canonical_ws_bytes(V);
        void *ws = malloc(nws);
        int32_t got[4], want[4];
        CHECK(fs_sample_canonical_masked(x, B, V, k, p, mp, t, mk, t_last, seed, pos, bm, R, W,
                                         rows, got, ws, nws, isa) == FS_OK);
        CHECK(fs_sample_canonical(xm, B, V, k, p, mp, t, mk, t_last, seed, pos, want, ws, nws,
                                  isa) == FS_OK);
        for (int64_t b = 0; b < B; b++)
            CHECK(got[b] == want[b], "call %d row %ld: %d != %d", c, (long)b, got[b], want[b]);
        int32_t *ids = malloc(B * V * 4 + 64), *ids2 = malloc(B * V * 4 + 64);
        float *vals = malloc(B * V * 4 + 64), *vals2 = malloc(B * V * 4 + 64);
        int64_t off[5], off2[5], done, done2;
        uint8_t inv[4], inv2[4];
        CHECK(fs_truncate_canonical_masked(x, B, V, k, p, mp, mk, bm, R, W, rows, ids, vals,
                                           B * V, off, inv, &done, ws, nws, isa) == FS_OK);
        CHECK(fs_truncate_canonical(xm, B, V, k, p, mp, mk, ids2, vals2, B * V, off2, inv2,
                                    &done2, ws, nws, isa) == FS_OK);
        CHECK(done == B && done2 == B);
        CHECK(memcmp(off, off2, (B + 1) * 8) == 0 && memcmp(inv, inv2, B) == 0);
        CHECK(memcmp(ids, ids2, off[B] * 4) == 0 && memcmp(vals, vals2, off[B] * 4) == 0,
              "call %d", c);
        int64_t bad_rows[4] = {R, 0, 0, 0};
        CHECK(fs_sample_canonical_masked(x, B, V, k, p, mp, t, mk, t_last, seed, pos, bm, R, W,
                                         bad_rows, got, ws, nws, isa) == FS_E_PARAM);
        CHECK(fs_sample_canonical_masked(x, B, V, k, p, mp, t, mk, t_last, seed, pos, bm, R,
                                         W - 1, rows, got, ws, nws, isa) == FS_E_SIZE);
        free(x), free(xm), free(bm), free(ws), free(ids), free(ids2), free(vals), free(vals2);
    }
}

static void test_bans(void) {
    const int64_t V = 10, B = 2;
    float x[20], out[20];
    for (int i = 0; i < 20; i++) x[i] = (float)i;
    int64_t hist[] = {1, 2, 7};
    int64_t off[] = {0, 2, 3};
    int64_t tok[] = {4, 1, 2, 3};
    int64_t seq[] = {0, 1, 4};
    CHECK(fs_bad_words(x, out, B, V, hist, 3, off, tok, 4, seq, 2) == FS_STAGE_OK);
    CHECK(out[4] == -INFINITY && out[3] == -INFINITY && out[14] == -INFINITY &&
          out[13] == 13.0f && out[0] == 0.0f);
    int64_t badtok[] = {4, 1, 2, 10};
    CHECK(fs_bad_words(x, out, B, V, hist, 3, off, badtok, 4, seq, 2) == FS_STAGE_E_ID);
    int64_t badoff[] = {0, 4, 3};
    CHECK(fs_bad_words(x, out, B, V, hist, 3, badoff, tok, 4, seq, 2) == FS_STAGE_E_OFFSETS);
    int64_t n[] = {3, 1};
    uint64_t pos[] = {2, 1};
    int64_t stop[] = {0, 9};
    memcpy(out, x, sizeof x);
    CHECK(fs_min_tokens(out, out, B, V, n, pos, stop, 2) == FS_STAGE_OK);
    CHECK(out[0] == -INFINITY && out[9] == -INFINITY && out[10] == 10.0f && out[19] == 19.0f);
    int64_t badstop[] = {10};
    CHECK(fs_min_tokens(x, out, B, V, n, pos, badstop, 1) == FS_STAGE_E_ID);
}

int main(int argc, char **argv) {
    int calls = argc > 1 ? atoi(argv[1]) : 600;
    int best = fs_cpu_isa();
    test_apply(best);
    test_fused(best, calls);
    test_bans();
    printf("test_constraints: %d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}

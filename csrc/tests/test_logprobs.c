/* C-level tests of fs_logprobs (fs_logprobs.h), run by csrc/sanitize.sh under
 * AddressSanitizer and UndefinedBehaviorSanitizer: a known answer, every size / token
 * check returning its code before any read, and a fuzz loop of random rows (ties,
 * masks, one token left) against a plain double-precision loop at every ISA level:
 * ranks and ids exact, log-probabilities within 1e-6 relative (float32 results).
 * The top N come from fs_topk_checked, as in the Python wrapper. Buffers are
 * allocated at exactly their size, so any read past them is reported. Parity with
 * the numpy reference is tested in Python (tests/test_logprobs.py). */

#include "fs_logprobs.h"
#include "fastsample.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HARNESS_SEED 0x10C9B0B5u
#include "harness.h"

/* fs_topk_checked for kk, then fs_logprobs; returns the latter's code. */
static int run(const float *x, int64_t B, int64_t V, const int64_t *tok, int64_t n, float *lp,
               int32_t *rank, int32_t *ids, float *tlp, int isa) {
    int64_t kk = n < 1 ? 1 : n > V ? V : n;
    float *vals = malloc(sizeof(float) * (size_t)(B * kk));
    int32_t *idx = malloc(sizeof(int32_t) * (size_t)(B * kk));
    uint8_t *bad = malloc((size_t)B);
    size_t wsb = fs_topk_ws_bytes(V);
    void *ws = malloc(wsb);
    int rc = fs_topk_checked(x, B, V, kk, vals, idx, bad, ws, wsb, isa);
    CHECK(rc == FS_OK, "topk rc %d", rc);
    rc = fs_logprobs(x, B, V, tok, vals, idx, kk, n, lp, rank, ids, tlp, isa);
    free(vals); free(idx); free(bad); free(ws);
    return rc;
}

static void test_known_answer(void) {
    const float x[4] = {0.0f, 1.0f, 1.0f, -INFINITY};
    const int64_t tok[1] = {2};
    float lp[1], tlp[5];
    int32_t rank[1], ids[5];
    CHECK(run(x, 1, 4, tok, 5, lp, rank, ids, tlp, FS_ISA_AVX512) == FS_OK);
    double lse = log(exp(-1.0) + 2.0);  /* max 1 */
    CHECK(rank[0] == 1);
    CHECK(ids[0] == 1 && ids[1] == 2 && ids[2] == 0 && ids[3] == -1 && ids[4] == -1);
    CHECK(fabs(lp[0] - (float)(-lse)) <= 1e-7);
    CHECK(fabs(tlp[2] - (float)(-1.0 - lse)) <= 1e-7);
    CHECK(tlp[3] == -INFINITY && tlp[4] == -INFINITY);
    const int64_t flagged[1] = {-1};
    CHECK(run(x, 1, 4, flagged, 5, lp, rank, ids, tlp, FS_ISA_BASE) == FS_OK);
    CHECK(isnan(lp[0]) && rank[0] == -1 && ids[0] == -1 && isnan(tlp[4]));
}

static void test_bad_input(void) {
    const float x[3] = {0.0f, 1.0f, 2.0f};
    const float v[3] = {2.0f, 1.0f, 0.0f};
    const int32_t i3[3] = {2, 1, 0};
    float lp[1], tlp[3];
    int32_t rank[1], ids[3];
    const int64_t ok[1] = {1}, high[1] = {3}, low[1] = {-2};
    CHECK(fs_logprobs(x, 1, 3, high, v, i3, 3, 3, lp, rank, ids, tlp, 0) == FS_E_TOKEN);
    CHECK(fs_logprobs(x, 1, 3, low, v, i3, 3, 3, lp, rank, ids, tlp, 0) == FS_E_TOKEN);
    CHECK(fs_logprobs(x, -1, 3, ok, v, i3, 3, 3, lp, rank, ids, tlp, 0) == FS_E_SIZE);
    CHECK(fs_logprobs(x, 1, 0, ok, v, i3, 3, 3, lp, rank, ids, tlp, 0) == FS_E_SIZE);
    CHECK(fs_logprobs(x, 1, 3, ok, v, i3, 4, 3, lp, rank, ids, tlp, 0) == FS_E_SIZE);  /* kk > V */
    CHECK(fs_logprobs(x, 1, 3, ok, v, i3, 0, 3, lp, rank, ids, tlp, 0) == FS_E_SIZE);  /* kk < 1 */
    CHECK(fs_logprobs(x, 1, 3, ok, v, i3, 3, -1, lp, rank, ids, tlp, 0) == FS_E_SIZE);
    CHECK(fs_logprobs(x, 1, 3, ok, v, i3, 3, 3, lp, rank, NULL, tlp, 0) == FS_E_SIZE);
    CHECK(fs_logprobs(NULL, 1, 3, ok, v, i3, 3, 3, lp, rank, ids, tlp, 0) == FS_E_SIZE);
    CHECK(fs_logprobs(NULL, 0, 3, NULL, NULL, NULL, 1, 3, NULL, NULL, NULL, NULL, 0) == FS_OK);
    CHECK(fs_logprobs(x, 1, 3, ok, v, i3, 3, 0, lp, rank, NULL, NULL, 0) == FS_OK);  /* n = 0 */
}

static void test_fuzz(void) {
    for (int iter = 0; iter < 300; iter++) {
        int64_t B = 1 + below(3), V = 1 + below(iter % 3 ? 60 : 3000), n = below(V + 4);
        float *x = new_logits(B, V);
        int64_t *tok = malloc(sizeof(int64_t) * (size_t)B);
        for (int64_t b = 0; b < B; b++) {
            int64_t t;
            do t = below(V); while (!(x[b * V + t] > -INFINITY));
            tok[b] = below(5) ? t : -1;
        }
        float *lp = malloc(sizeof(float) * (size_t)B), *tlp = malloc(sizeof(float) * (size_t)(B * n + 1));
        int32_t *rank = malloc(sizeof(int32_t) * (size_t)B), *ids = malloc(sizeof(int32_t) * (size_t)(B * n + 1));
        int isa = (int)below(3);
        CHECK(run(x, B, V, tok, n, lp, rank, ids, tlp, isa) == FS_OK);
        for (int64_t b = 0; b < B; b++) {
            const float *r = x + b * V;
            if (tok[b] < 0) {
                CHECK(isnan(lp[b]) && rank[b] == -1);
                continue;
            }
            double m = -INFINITY, s = 0.0;
            int32_t want_rank = 1;
            for (int64_t i = 0; i < V; i++) m = r[i] > m ? r[i] : m;
            for (int64_t i = 0; i < V; i++) {
                if (r[i] > -INFINITY) s += exp((double)r[i] - m);
                want_rank += r[i] > r[tok[b]];
            }
            double lse = log(s);
            CHECK(rank[b] == want_rank, "iter %d: rank %d vs %d", iter, rank[b], want_rank);
            CHECK(close_within(lp[b], ((double)r[tok[b]] - m) - lse, 1e-6), "iter %d", iter);
            int64_t prev = -1;
            for (int64_t q = 0; q < n; q++) {
                int32_t id = ids[b * n + q];
                CHECK(id >= -1 && id < V);
                if (id < 0) {
                    CHECK(tlp[b * n + q] == -INFINITY);
                    continue;
                }
                CHECK(close_within(tlp[b * n + q], ((double)r[id] - m) - lse, 1e-6));
                if (prev >= 0)  /* descending, ties to the lower id */
                    CHECK(r[prev] > r[id] || (r[prev] == r[id] && prev < id), "iter %d", iter);
                prev = id;
            }
        }
        free(x); free(tok); free(lp); free(tlp); free(rank); free(ids);
    }
}

int main(void) {
    test_known_answer();
    test_bad_input();
    test_fuzz();
    printf("test_logprobs: %d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}

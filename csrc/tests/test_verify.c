/* C-level tests of fs_verify_rows (fs_verify.h), run by csrc/sanitize.sh under
 * AddressSanitizer and UndefinedBehaviorSanitizer: known answers (greedy rows, a draft
 * the target masks, q = 0 at a draft the target keeps, ragged drafts, K = 0), dense and
 * compacted forms of the same rows giving the same result, every size / offset / id /
 * draft check returning its code before any read, and a fuzz loop of random shapes
 * whose tokens must stay in [0, V) or -1. Buffers are allocated at exactly their size,
 * so any read past them is reported. Parity with the numpy reference is tested in
 * Python (tests/test_verify.py). */

#include "fs_verify.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HARNESS_SEED 0x5EC0DE5EC0DEu
#include "harness.h"

/* Verify B requests of dense rows (ncols = V); q may be NULL. */
static int run_dense(const float *rows, int64_t B, int64_t K, int64_t V, const int32_t *d,
                     const float *q, const int64_t *n, int32_t *tok, int32_t *acc,
                     int32_t *bad) {
    uint64_t *seed = malloc(sizeof(uint64_t) * (size_t)B);
    uint64_t *pos = malloc(sizeof(uint64_t) * (size_t)B);
    for (int64_t b = 0; b < B; b++) {
        seed[b] = (uint64_t)b * 7u + 1u;
        pos[b] = UINT64_MAX - 1u;   /* position + j wraps */
    }
    for (int64_t i = 0; i < B * (K + 1); i++) tok[i] = -1;
    int rc = fs_verify_rows(rows, B * (K + 1), V, NULL, 0, NULL, 0, d, q, B, K, V, n, seed,
                            pos, 0, B, tok, acc, bad);
    free(seed);
    free(pos);
    return rc;
}

static void test_known_answers(void) {
    enum { B = 3, K = 2, V = 5 };
    float rows[B * (K + 1) * V];
    for (int i = 0; i < B * (K + 1) * V; i++) rows[i] = -INFINITY;
    /* request 0: greedy rows (one finite token each): 2, 4, 1 */
    rows[0 * V + 2] = 1.0f; rows[1 * V + 4] = 0.0f; rows[2 * V + 1] = 3.0f;
    /* request 1: step 0 masks the draft (3): rejected, emits one of {0, 1} */
    rows[3 * V + 0] = 0.0f; rows[3 * V + 1] = 0.5f;
    rows[4 * V + 0] = 0.0f; rows[5 * V + 0] = 0.0f;
    /* request 2: num_draft 0: the bonus draw from row 6 (one token: 4) */
    rows[6 * V + 4] = 2.0f;
    int32_t d[B * K] = {2, 4, 3, 0, 0, 0};
    int64_t n[B] = {2, 2, 0};
    int32_t tok[B * (K + 1)], acc[B], bad[B];
    CHECK(run_dense(rows, B, K, V, d, NULL, n, tok, acc, bad) == FS_VERIFY_OK);
    CHECK(acc[0] == 2 && tok[0] == 2 && tok[1] == 4 && tok[2] == 1);
    CHECK(acc[1] == 0 && (tok[3] == 0 || tok[3] == 1) && tok[4] == -1);
    CHECK(acc[2] == 0 && tok[6] == 4 && tok[7] == -1);
    for (int b = 0; b < B; b++) CHECK(bad[b] == -1);
    /* q = 0 at a draft the target keeps: accepted (request 1, draft 1) */
    float q[B * K * V];
    for (int i = 0; i < B * K * V; i++) q[i] = 0.25f;
    d[2] = 1;
    q[(1 * K + 0) * V + 1] = 0.0f;
    CHECK(run_dense(rows, B, K, V, d, q, n, tok, acc, bad) == FS_VERIFY_OK);
    CHECK(acc[1] >= 1 && tok[3] == 1);
    /* a NaN where the rule reads q: bad_q names the step */
    q[(1 * K + 0) * V + 0] = NAN;
    CHECK(run_dense(rows, B, K, V, d, q, n, tok, acc, bad) == FS_VERIFY_OK);
    CHECK(bad[1] == 0 && bad[0] == -1);
}

static void test_bad_input(void) {
    enum { B = 2, K = 1, V = 4 };
    float rows[B * (K + 1) * V];
    for (int i = 0; i < B * (K + 1) * V; i++) rows[i] = 0.0f;
    int32_t d[B * K] = {1, 2};
    int64_t n[B] = {1, 1};
    uint64_t s[B] = {0, 1}, p[B] = {0, 0};
    int32_t tok[B * (K + 1)], acc[B], bad[B];
    int32_t ids[4] = {0, 1, 2, 3};
    int64_t offs[B * (K + 1) + 1] = {0, 1, 2, 3, 4};
    CHECK(fs_verify_rows(rows, 3, V, NULL, 0, NULL, 0, d, NULL, B, K, V, n, s, p, 0, B, tok,
                         acc, bad) == FS_VERIFY_E_SIZE);          /* rows != B*(K+1) */
    CHECK(fs_verify_rows(rows, 4, V - 1, NULL, 0, NULL, 0, d, NULL, B, K, V, n, s, p, 0, B,
                         tok, acc, bad) == FS_VERIFY_E_SIZE);     /* dense ncols != V */
    CHECK(fs_verify_rows(rows, 4, V, NULL, 0, NULL, 0, d, NULL, B, K, V, n, s, p, 1, 3, tok,
                         acc, bad) == FS_VERIFY_E_SIZE);          /* b1 > B */
    CHECK(fs_verify_rows(NULL, 4, V, NULL, 0, NULL, 0, d, NULL, B, K, V, n, s, p, 0, B, tok,
                         acc, bad) == FS_VERIFY_E_SIZE);          /* NULL block */
    int64_t n_bad[B] = {2, 1};
    CHECK(fs_verify_rows(rows, 4, V, NULL, 0, NULL, 0, d, NULL, B, K, V, n_bad, s, p, 0, B,
                         tok, acc, bad) == FS_VERIFY_E_DRAFT);    /* num_draft > K */
    int32_t d_bad[B * K] = {4, 0};
    CHECK(fs_verify_rows(rows, 4, V, NULL, 0, NULL, 0, d_bad, NULL, B, K, V, n, s, p, 0, B,
                         tok, acc, bad) == FS_VERIFY_E_DRAFT);    /* draft >= V */
    int64_t offs_bad[B * (K + 1) + 1] = {0, 2, 1, 3, 4};
    CHECK(fs_verify_rows(rows, 4, 1, ids, 4, offs_bad, 1, d, NULL, B, K, V, n, s, p, 0, B,
                         tok, acc, bad) == FS_VERIFY_E_OFFSETS);  /* decreasing */
    int64_t offs_past[B * (K + 1) + 1] = {0, 1, 2, 3, 5};
    CHECK(fs_verify_rows(rows, 4, 1, ids, 4, offs_past, 1, d, NULL, B, K, V, n, s, p, 0, B,
                         tok, acc, bad) == FS_VERIFY_E_OFFSETS);  /* past ids_len */
    int32_t ids_bad[4] = {0, 1, 9, 3};
    CHECK(fs_verify_rows(rows, 4, 1, ids_bad, 4, offs, 1, d, NULL, B, K, V, n, s, p, 0, B,
                         tok, acc, bad) == FS_VERIFY_E_ID);       /* id >= V */
    CHECK(fs_verify_rows(rows, 4, 1, ids, 4, offs, 1, d, NULL, B, K, V, n, s, p, 0, B, tok,
                         acc, bad) == FS_VERIFY_OK);
}

/* Random rows, dense and compacted: the same tokens; every token in [0, V) or -1. */
static void test_fuzz(void) {
    for (int iter = 0; iter < 300; iter++) {
        int64_t B = 1 + below(5), K = below(4), V = 1 + below(40), R = B * (K + 1);
        float *dense = malloc(sizeof(float) * (size_t)(R * V));
        for (int64_t r = 0; r < R; r++) {
            fill_row(dense + r * V, V, (int)below(NSTYLES));
            if (below(8) == 0)
                for (int64_t c = 0; c < V; c++) dense[r * V + c] = -INFINITY;  /* empty row */
        }
        int64_t total = 0, width = 1;
        for (int64_t i = 0; i < R * V; i++) total += isfinite(dense[i]) ? 1 : 0;
        int32_t *ids = malloc(sizeof(int32_t) * (size_t)(total ? total : 1));
        int64_t *offs = malloc(sizeof(int64_t) * (size_t)(R + 1));
        offs[0] = 0;
        for (int64_t r = 0; r < R; r++) {
            int64_t k = offs[r];
            for (int64_t c = 0; c < V; c++)
                if (isfinite(dense[r * V + c])) ids[k++] = (int32_t)c;
            offs[r + 1] = k;
            if (k - offs[r] > width) width = k - offs[r];
        }
        float *block = malloc(sizeof(float) * (size_t)(R * width));
        for (int64_t r = 0; r < R; r++)
            for (int64_t c = 0; c < width; c++)
                block[r * width + c] = c < offs[r + 1] - offs[r]
                                           ? dense[r * V + ids[offs[r] + c]] : -INFINITY;
        int32_t *d = malloc(sizeof(int32_t) * (size_t)(B * K > 0 ? B * K : 1));
        for (int64_t i = 0; i < B * K; i++) d[i] = (int32_t)below(V);
        float *q = NULL;
        if (below(2)) {
            q = malloc(sizeof(float) * (size_t)(B * K * V > 0 ? B * K * V : 1));
            for (int64_t i = 0; i < B * K * V; i++) q[i] = (float)uniform01();
        }
        int64_t *n = malloc(sizeof(int64_t) * (size_t)B);
        uint64_t *s = malloc(sizeof(uint64_t) * (size_t)B), *p = malloc(sizeof(uint64_t) * (size_t)B);
        for (int64_t b = 0; b < B; b++) {
            n[b] = below(K + 1);
            s[b] = next_u64();
            p[b] = next_u64();
        }
        int32_t *t1 = malloc(sizeof(int32_t) * (size_t)R), *t2 = malloc(sizeof(int32_t) * (size_t)R);
        int32_t *a1 = malloc(sizeof(int32_t) * (size_t)B), *a2 = malloc(sizeof(int32_t) * (size_t)B);
        int32_t *q1 = malloc(sizeof(int32_t) * (size_t)B), *q2 = malloc(sizeof(int32_t) * (size_t)B);
        for (int64_t i = 0; i < R; i++) t1[i] = t2[i] = -1;
        CHECK(fs_verify_rows(dense, R, V, NULL, 0, NULL, 0, d, q, B, K, V, n, s, p, 0, B, t1,
                             a1, q1) == FS_VERIFY_OK);
        CHECK(fs_verify_rows(block, R, width, ids, total, offs, 1, d, q, B, K, V, n, s, p, 0,
                             B, t2, a2, q2) == FS_VERIFY_OK);
        for (int64_t i = 0; i < R; i++) {
            CHECK(t1[i] == t2[i], "iter %d: dense %d vs compacted %d", iter, t1[i], t2[i]);
            CHECK(t1[i] >= -1 && t1[i] < V);
        }
        for (int64_t b = 0; b < B; b++) CHECK(a1[b] == a2[b] && a1[b] <= n[b] && q1[b] == q2[b]);
        free(dense); free(ids); free(offs); free(block); free(d); free(q); free(n);
        free(s); free(p); free(t1); free(t2); free(a1); free(a2); free(q1); free(q2);
    }
}

int main(void) {
    test_known_answers();
    test_bad_input();
    test_fuzz();
    printf("test_verify: %d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}

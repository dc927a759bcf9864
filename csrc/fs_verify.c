/* Speculative decoding verification: see fs_verify.h and fastsample/reference.py's
 * verify_rows (the rule, step by step). Per step j of a request: one pass for the max
 * and the count of finite values, one for W = sum exp(l - max) in id order (float64),
 * then the accept test, and on a rejection two passes over max(0, p - q). On compacted
 * rows every pass visits only the candidates and q is read at candidate ids and the
 * draft token only. */
#include "fs_verify.h"

#include <math.h>
#include <stddef.h>

#include "fs_philox.h"

#define FS_STREAM_ACCEPT 2u
#define FS_STREAM_RECOVER 3u

/* One row's view: values, column count, and how a column maps to a token id. */
typedef struct {
    const float *v;
    const int32_t *ids;   /* NULL: dense, column = id */
    int64_t n;
} fs_vrow;

static inline int64_t vrow_id(const fs_vrow *r, int64_t c) {
    return r->ids ? (int64_t)r->ids[c] : c;
}

static int64_t vrow_column(const fs_vrow *r, int64_t t) {
    if (!r->ids)
        return t < r->n ? t : -1;
    int64_t a = 0, b = r->n;
    while (a < b) {
        int64_t mid = a + (b - a) / 2;
        if (r->ids[mid] < t)
            a = mid + 1;
        else
            b = mid;
    }
    return (a < r->n && r->ids[a] == t) ? a : -1;
}

/* q_j(t): the draft probability, or one-hot on the draft token d. */
static inline double q_at(const float *qrow, int64_t t, int64_t d) {
    return qrow ? (double)qrow[t] : (t == d ? 1.0 : 0.0);
}

/* Verify one request; returns nothing (writes tokens/accepted/bad_q). */
static void verify_request(const float *block, int64_t ncols, const int32_t *ids,
                           const int64_t *offsets, int sparse, const int32_t *draft,
                           const float *q, int64_t K, int64_t V, int64_t n, uint64_t seed,
                           uint64_t position, int64_t b, int32_t *tok, int32_t *accepted,
                           int32_t *bad_q) {
    const int64_t K1 = K + 1;
    for (int64_t j = 0; j <= n; j++) {
        const int64_t r = b * K1 + j;
        fs_vrow row;
        row.v = block + r * ncols;
        row.ids = sparse ? ids + offsets[r] : NULL;
        row.n = sparse ? offsets[r + 1] - offsets[r] : ncols;
        double m = -INFINITY;
        int64_t count = 0, only = -1;
        for (int64_t c = 0; c < row.n; c++) {
            double v = (double)row.v[c];
            if (isfinite(v)) {
                count++;
                only = c;
                if (v > m)
                    m = v;
            }
        }
        if (count == 0)
            return;
        double W = 0.0;
        for (int64_t c = 0; c < row.n; c++) {
            double v = (double)row.v[c];
            if (isfinite(v))
                W += exp(v - m);
        }
        const uint64_t pos = position + (uint64_t)j;
        if (j == n) {   /* every draft accepted: the bonus token, docs/spec.md §5's plain draw */
            double target = fs_uniform(seed, pos, 0u, FS_STREAM_DRAW) * W, cum = 0.0;
            for (int64_t c = 0; c < row.n; c++) {
                double v = (double)row.v[c];
                if (isfinite(v)) {
                    cum += exp(v - m);
                    if (cum > target) {
                        tok[j] = (int32_t)vrow_id(&row, c);
                        return;
                    }
                }
            }
            tok[j] = (int32_t)vrow_id(&row, only);
            return;
        }
        const int64_t d = draft[b * K + j];
        const float *qrow = q ? q + (b * K + j) * V : NULL;
        const double qd = qrow ? (double)qrow[d] : 1.0;
        int ok = qd >= 0.0;
        if (qrow) {
            for (int64_t c = 0; c < row.n; c++)
                if (isfinite((double)row.v[c]) && !((double)qrow[vrow_id(&row, c)] >= 0.0))
                    ok = 0;
        }
        if (!ok) {
            bad_q[b] = (int32_t)j;
            return;
        }
        const int64_t col = vrow_column(&row, d);
        int here = 0;
        double pd = 0.0;
        if (col >= 0 && isfinite((double)row.v[col])) {
            here = 1;
            pd = exp((double)row.v[col] - m) / W;
        }
        int accept;
        if (count == 1)   /* greedy: accept on the one token, else emit it */
            accept = here;
        else if (qd == 0.0)
            accept = pd > 0.0;
        else
            accept = fs_uniform(seed, pos, 0u, FS_STREAM_ACCEPT) < pd / qd;
        if (accept) {
            tok[j] = (int32_t)d;
            accepted[b] = (int32_t)(j + 1);
            continue;
        }
        const double u3 = fs_uniform(seed, pos, 0u, FS_STREAM_RECOVER);
        if (count == 1) {
            tok[j] = (int32_t)vrow_id(&row, only);
            return;
        }
        double R = 0.0;
        for (int64_t c = 0; c < row.n; c++) {
            double v = (double)row.v[c];
            if (isfinite(v)) {
                double x = exp(v - m) / W - q_at(qrow, vrow_id(&row, c), d);
                if (x > 0.0)
                    R += x;
            }
        }
        if (R > 0.0) {
            double target = u3 * R, cum = 0.0;
            int64_t last = -1;
            for (int64_t c = 0; c < row.n; c++) {
                double v = (double)row.v[c];
                if (isfinite(v)) {
                    double x = exp(v - m) / W - q_at(qrow, vrow_id(&row, c), d);
                    if (x > 0.0) {
                        cum += x;
                        last = c;
                        if (cum > target) {
                            tok[j] = (int32_t)vrow_id(&row, c);
                            return;
                        }
                    }
                }
            }
            tok[j] = (int32_t)vrow_id(&row, last);
            return;
        }
        /* Residual zero everywhere (only rounding gets here): the draw from p with u3. */
        double target = u3 * W, cum = 0.0;
        for (int64_t c = 0; c < row.n; c++) {
            double v = (double)row.v[c];
            if (isfinite(v)) {
                cum += exp(v - m);
                if (cum > target) {
                    tok[j] = (int32_t)vrow_id(&row, c);
                    return;
                }
            }
        }
        tok[j] = (int32_t)vrow_id(&row, only);
        return;
    }
}

int fs_verify_rows(const float *block, int64_t rows, int64_t ncols,
                   const int32_t *ids, int64_t ids_len, const int64_t *offsets, int sparse,
                   const int32_t *draft, const float *q, int64_t B, int64_t K, int64_t V,
                   const int64_t *num_draft, const uint64_t *seed, const uint64_t *position,
                   int64_t b0, int64_t b1,
                   int32_t *tokens, int32_t *accepted, int32_t *bad_q) {
    if (B < 0 || K < 0 || V < 1 || ncols < 0 || ids_len < 0 || b0 < 0 || b1 < b0 || b1 > B)
        return FS_VERIFY_E_SIZE;
    if (B == 0 || b0 == b1)
        return FS_VERIFY_OK;
    if (K > INT32_MAX - 1 || B > INT64_MAX / (K + 1) || rows != B * (K + 1))
        return FS_VERIFY_E_SIZE;
    if (ncols > 0 && rows > INT64_MAX / ncols)
        return FS_VERIFY_E_SIZE;
    if (K > 0 && (B > INT64_MAX / K || B * K > INT64_MAX / V))
        return FS_VERIFY_E_SIZE;
    if (!block || !num_draft || !seed || !position || !tokens || !accepted || !bad_q ||
        (K > 0 && !draft))
        return FS_VERIFY_E_SIZE;
    if (!sparse && ncols != V)
        return FS_VERIFY_E_SIZE;
    if (sparse && (!offsets || (ids_len > 0 && !ids)))
        return FS_VERIFY_E_SIZE;
    const int64_t K1 = K + 1;
    for (int64_t b = b0; b < b1; b++) {   /* check everything this range indexes */
        const int64_t n = num_draft[b];
        if (n < 0 || n > K)
            return FS_VERIFY_E_DRAFT;
        for (int64_t j = 0; j < n; j++)
            if (draft[b * K + j] < 0 || draft[b * K + j] >= V)
                return FS_VERIFY_E_DRAFT;
        if (!sparse)
            continue;
        for (int64_t j = 0; j <= n; j++) {
            const int64_t r = b * K1 + j, lo = offsets[r], hi = offsets[r + 1];
            if (lo < 0 || hi < lo || hi > ids_len || hi - lo > ncols)
                return FS_VERIFY_E_OFFSETS;
            for (int64_t i = lo; i < hi; i++)
                if (ids[i] < 0 || ids[i] >= V)
                    return FS_VERIFY_E_ID;
        }
    }
    for (int64_t b = b0; b < b1; b++) {
        accepted[b] = 0;
        bad_q[b] = -1;
        verify_request(block, ncols, ids, offsets, sparse, draft, q, K, V, num_draft[b],
                       seed[b], position[b], b, tokens + b * K1, accepted, bad_q);
    }
    return FS_VERIFY_OK;
}

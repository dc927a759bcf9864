/* Entry points of the core kernels (fastsample.h): size checks, workspace layout,
 * runtime CPU dispatch, and the loop over rows.
 *
 * The row kernels (fs_simd.inc, fs_mass.inc, fs_canonical.inc, fs_rows.inc) are
 * compiled three times: portable C, and on x86-64 with GCC or clang inside `target`
 * regions for AVX2+FMA and AVX-512. Each entry point lowers the requested level to
 * what the CPU supports (fs_cpu_isa) and picks the matching copy; nothing else changes
 * between levels, so every level gives the reference's tokens. No host-specific
 * architecture flag and no fast-math flag: the binary runs on any x86-64 and IEEE
 * semantics keep -inf exact. */

#include "fastsample.h"
#include "fs_chain.h" /* the stage kinds of fs_whole_first_row */
#include "fs_philox.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FS_X86 1
#include <immintrin.h>
#else
#define FS_X86 0
#endif

#define FS_BS 256              /* tokens per block of the block maxima */
#define FS_SLACK 64            /* spare entries after a gather buffer (vector stores) */
#define FS_TOL 1e-6            /* docs/spec.md §4 mass tolerance (reference.MASS_TOLERANCE) */
#define FS_NBINS_MASS 2048     /* mass histogram of a whole row (top-p) */
#define FS_CAND_CAP 1024       /* top-p: candidates gathered at most (else a bin pass) */
#define FS_ALIGN 64
#define FS_BS_MASK FS_BS         /* fs_bitmask.inc's blocks are the block maxima's */

/* Canonical-chain workspace of one row, carved from the caller's buffer. */
typedef struct {
    float *bmax, *bk, *tmp, *cv, *srt, *cv2, *sv;
    int32_t *ci, *ci2, *si;
    double *w, *hist, *bs;
    uint32_t *keys, *cnt;      /* radix select */
    /* The overlay of an edited row (fs_canonical_overlay): block j reads alt (the
     * edited copy, same offsets) where alt_blk[j], else the input row; alt NULL: none. */
    const float *alt;
    uint8_t *alt_blk;
} fs_cws;

/* Top-k workspace of one row: candidates (cv, ci) hold cap entries plus FS_SLACK. */
typedef struct {
    float *bmax, *tmpf, *cv;
    int32_t *ci;
    uint64_t *keys, *ktmp;
    uint32_t *cnt;             /* FS_TOPK_CNT counters */
    int64_t cap;
} fs_tws;
#define FS_TOPK_CNT (65536 + 64)

#include "fs_select.inc"

#define FS_ISA_UNIT "fs_core_unit.inc"
#include "fs_isa_levels.inc"

/* ------------------------------------------------------------------ dispatch */

int fs_cpu_isa(void) {
#if FS_X86
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
        __builtin_cpu_supports("bmi2") && __builtin_cpu_supports("popcnt"))
        return FS_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
        __builtin_cpu_supports("bmi2") && __builtin_cpu_supports("popcnt"))
        return FS_ISA_AVX2;
#endif
    return FS_ISA_BASE;
}

static int fs_level(int isa) {
    int best = fs_cpu_isa();
    if (isa > best) isa = best;
    return isa < FS_ISA_BASE ? FS_ISA_BASE : isa;
}

#if FS_X86
#define FS_DISPATCH(isa, name, ...)                                          \
    ((isa) == FS_ISA_AVX512 ? name##_avx512(__VA_ARGS__)                      \
     : (isa) == FS_ISA_AVX2 ? name##_avx2(__VA_ARGS__) : name##_base(__VA_ARGS__))
#else
#define FS_DISPATCH(isa, name, ...) name##_base(__VA_ARGS__)
#endif

/* ------------------------------------------------------------------ checks */

/* B >= 0, 1 <= V < 2^31 (ids are int32), B * V fits, buffers present when B > 0. */
static int fs_check_rows(const void *x, int64_t B, int64_t V, const void *out) {
    return fs_block_ok(x, out, B, V, INT32_MAX - FS_BS) ? FS_OK : FS_E_SIZE;
}

/* ------------------------------------------------------------------ workspaces */

static char *fs_take(char **p, size_t bytes) {
    char *r = *p;
    *p += (bytes + FS_ALIGN - 1) / FS_ALIGN * FS_ALIGN;
    return r;
}

/* The first FS_ALIGN-aligned address at or after base (base may be NULL: measuring). */
static char *fs_align_up(void *base) {
    uintptr_t a = (uintptr_t)base;
    return (char *)base + ((FS_ALIGN - a % FS_ALIGN) % FS_ALIGN);
}

/* Blocks of a row of V tokens, and a gather buffer's length (every block + slack). */
#define FS_NBLOCKS(V) (((size_t)(V) + FS_BS - 1) / FS_BS)
#define FS_GATHER_LEN(V) (FS_NBLOCKS(V) * FS_BS + FS_SLACK)

/* Lay out the canonical (or, below, top-k) workspace for rows of V tokens from base
 * (NULL: measure only); returns the bytes needed, alignment padding included. */
static size_t fs_canon_layout(int64_t V, void *base, fs_cws *o) {
    const size_t n = (size_t)V, nb = FS_NBLOCKS(V), c = FS_GATHER_LEN(V);
    char *p = fs_align_up(base), *start = (char *)base;
    fs_cws w;
    w.bmax = (float *)fs_take(&p, nb * 4);
    w.bk = (float *)fs_take(&p, nb * 4);
    w.tmp = (float *)fs_take(&p, n * 4);
    w.cv = (float *)fs_take(&p, c * 4);
    w.srt = (float *)fs_take(&p, c * 4);
    w.cv2 = (float *)fs_take(&p, c * 4);
    w.sv = (float *)fs_take(&p, c * 4);
    w.ci = (int32_t *)fs_take(&p, c * 4);
    w.ci2 = (int32_t *)fs_take(&p, c * 4);
    w.si = (int32_t *)fs_take(&p, c * 4);
    w.w = (double *)fs_take(&p, n * 8);
    w.hist = (double *)fs_take(&p, FS_HIST_LEN(FS_NBINS_MASS) * 8);
    w.bs = (double *)fs_take(&p, nb * 8);
    w.keys = (uint32_t *)fs_take(&p, c * 4);
    w.cnt = (uint32_t *)fs_take(&p, 1024 * 4);
    w.alt_blk = (uint8_t *)fs_take(&p, nb);
    w.alt = NULL;
    if (o) *o = w;
    return (size_t)(p - start) + FS_ALIGN;
}

static size_t fs_topk_layout(int64_t V, void *base, fs_tws *o) {
    const size_t nb = FS_NBLOCKS(V), c = FS_GATHER_LEN(V);
    char *p = fs_align_up(base), *start = (char *)base;
    fs_tws w;
    w.bmax = (float *)fs_take(&p, nb * 4);
    w.tmpf = (float *)fs_take(&p, c * 4);
    w.cv = (float *)fs_take(&p, c * 4);
    w.ci = (int32_t *)fs_take(&p, c * 4);
    w.keys = (uint64_t *)fs_take(&p, c * 8);
    w.ktmp = (uint64_t *)fs_take(&p, c * 8);
    w.cnt = (uint32_t *)fs_take(&p, FS_TOPK_CNT * 4);
    w.cap = (int64_t)(c - FS_SLACK);
    if (o) *o = w;
    return (size_t)(p - start) + FS_ALIGN;
}

size_t fs_canonical_ws_bytes(int64_t V) {
    if (V < 1 || V > INT32_MAX - FS_BS) return 0;
    return fs_canon_layout(V, NULL, NULL);
}

size_t fs_topk_ws_bytes(int64_t V) {
    if (V < 1 || V > INT32_MAX - FS_BS) return 0;
    return fs_topk_layout(V, NULL, NULL);
}

/* ------------------------------------------------------------------ entry points */

int fs_sample_canonical(const float *x, int64_t B, int64_t V, const int64_t *top_k,
                        const double *top_p, const double *min_p, const double *temperature,
                        const int64_t *min_keep, int temperature_last, const uint64_t *seed,
                        const uint64_t *position, int32_t *out, void *ws, size_t ws_bytes,
                        int isa) {
    int rc = fs_check_rows(x, B, V, out);
    if (rc) return rc;
    if (B == 0) return FS_OK;
    if (!top_k || !top_p || !min_p || !temperature || !min_keep || !seed || !position)
        return FS_E_SIZE;
    if (!ws || ws_bytes < fs_canonical_ws_bytes(V)) return FS_E_WORKSPACE;
    for (int64_t b = 0; b < B; b++)
        if (top_p[b] != top_p[b] || min_p[b] != min_p[b] || temperature[b] != temperature[b])
            return FS_E_PARAM;
    fs_cws w;
    fs_canon_layout(V, ws, &w);
    isa = fs_level(isa);
    for (int64_t b = 0; b < B; b++) {
        double u = fs_uniform(seed[b], position[b], 0u, FS_STREAM_DRAW);
        out[b] = FS_DISPATCH(isa, sample_row, x + b * V, V, top_k[b], top_p[b], min_p[b],
                             min_keep[b], temperature[b], temperature_last != 0, u, &w);
    }
    return FS_OK;
}

int fs_sample_canonical_row(const float *x, int64_t V, int64_t top_k, double top_p,
                            double min_p, double temperature, int64_t min_keep,
                            int temperature_last, uint64_t seed, uint64_t position,
                            int32_t *out, void *ws, size_t ws_bytes, int isa) {
    return fs_sample_canonical(x, 1, V, &top_k, &top_p, &min_p, &temperature, &min_keep,
                               temperature_last, &seed, &position, out, ws, ws_bytes, isa);
}

/* The bitmask arguments (docs/spec.md §10): rows of W >= ceil(V/32) words, row map in
 * [-1, R). */
static int fs_check_bitmask(int64_t B, int64_t V, const uint32_t *bitmask, int64_t R, int64_t W,
                            const int64_t *rows) {
    if (R < 0 || W < (V + 31) / 32 || (R > 0 && !bitmask) || (B > 0 && !rows)) return FS_E_SIZE;
    for (int64_t b = 0; b < B; b++)
        if (rows[b] < -1 || rows[b] >= R) return FS_E_PARAM;
    return FS_OK;
}

int fs_sample_canonical_masked(const float *x, int64_t B, int64_t V, const int64_t *top_k,
                               const double *top_p, const double *min_p,
                               const double *temperature, const int64_t *min_keep,
                               int temperature_last, const uint64_t *seed,
                               const uint64_t *position, const uint32_t *bitmask, int64_t R,
                               int64_t W, const int64_t *rows, int32_t *out, void *ws,
                               size_t ws_bytes, int isa) {
    int rc = fs_check_rows(x, B, V, out);
    if (rc) return rc;
    if (B == 0) return FS_OK;
    if (!top_k || !top_p || !min_p || !temperature || !min_keep || !seed || !position)
        return FS_E_SIZE;
    rc = fs_check_bitmask(B, V, bitmask, R, W, rows);
    if (rc) return rc;
    if (!ws || ws_bytes < fs_canonical_ws_bytes(V)) return FS_E_WORKSPACE;
    for (int64_t b = 0; b < B; b++)
        if (top_p[b] != top_p[b] || min_p[b] != min_p[b] || temperature[b] != temperature[b])
            return FS_E_PARAM;
    fs_cws w;
    fs_canon_layout(V, ws, &w);
    isa = fs_level(isa);
    for (int64_t b = 0; b < B; b++) {
        double u = fs_uniform(seed[b], position[b], 0u, FS_STREAM_DRAW);
        if (rows[b] >= 0)
            out[b] = FS_DISPATCH(isa, sample_row_masked, x + b * V, bitmask + rows[b] * W, V,
                                 top_k[b], top_p[b], min_p[b], min_keep[b], temperature[b],
                                 temperature_last != 0, u, &w);
        else
            out[b] = FS_DISPATCH(isa, sample_row, x + b * V, V, top_k[b], top_p[b], min_p[b],
                                 min_keep[b], temperature[b], temperature_last != 0, u, &w);
    }
    return FS_OK;
}

int fs_sample_canonical_row_masked(const float *x, int64_t V, int64_t top_k, double top_p,
                                   double min_p, double temperature, int64_t min_keep,
                                   int temperature_last, uint64_t seed, uint64_t position,
                                   const uint32_t *words, int64_t W, int32_t *out, void *ws,
                                   size_t ws_bytes, int isa) {
    int64_t row = 0;
    return fs_sample_canonical_masked(x, 1, V, &top_k, &top_p, &min_p, &temperature, &min_keep,
                                      temperature_last, &seed, &position, words, 1, W, &row, out,
                                      ws, ws_bytes, isa);
}

static int fs_truncate_rows(const float *x, int64_t B, int64_t V, const int64_t *top_k,
                            const double *top_p, const double *min_p, const int64_t *min_keep,
                            const uint32_t *bitmask, int64_t W, const int64_t *rows,
                            int32_t *ids, float *vals, int64_t cap, int64_t *offsets,
                            uint8_t *invalid, int64_t *done, void *ws, int isa);

int fs_truncate_canonical(const float *x, int64_t B, int64_t V, const int64_t *top_k,
                          const double *top_p, const double *min_p, const int64_t *min_keep,
                          int32_t *ids, float *vals, int64_t cap, int64_t *offsets,
                          uint8_t *invalid, int64_t *done, void *ws, size_t ws_bytes, int isa) {
    int rc = fs_check_rows(x, B, V, offsets);
    if (rc) return rc;
    if (!done || cap < 0 || (cap > 0 && (!ids || !vals))) return FS_E_SIZE;
    *done = 0;
    if (B == 0) {
        if (offsets) offsets[0] = 0;
        return FS_OK;
    }
    if (!top_k || !top_p || !min_p || !min_keep || !invalid) return FS_E_SIZE;
    if (!ws || ws_bytes < fs_canonical_ws_bytes(V)) return FS_E_WORKSPACE;
    for (int64_t b = 0; b < B; b++)
        if (top_p[b] != top_p[b] || min_p[b] != min_p[b]) return FS_E_PARAM;
    return fs_truncate_rows(x, B, V, top_k, top_p, min_p, min_keep, NULL, 0, NULL, ids, vals, cap,
                            offsets, invalid, done, ws, isa);
}

int fs_truncate_canonical_masked(const float *x, int64_t B, int64_t V, const int64_t *top_k,
                                 const double *top_p, const double *min_p,
                                 const int64_t *min_keep, const uint32_t *bitmask, int64_t R,
                                 int64_t W, const int64_t *rows, int32_t *ids, float *vals,
                                 int64_t cap, int64_t *offsets, uint8_t *invalid, int64_t *done,
                                 void *ws, size_t ws_bytes, int isa) {
    int rc = fs_check_rows(x, B, V, offsets);
    if (rc) return rc;
    if (!done || cap < 0 || (cap > 0 && (!ids || !vals))) return FS_E_SIZE;
    *done = 0;
    if (B == 0) {
        if (offsets) offsets[0] = 0;
        return FS_OK;
    }
    if (!top_k || !top_p || !min_p || !min_keep || !invalid) return FS_E_SIZE;
    rc = fs_check_bitmask(B, V, bitmask, R, W, rows);
    if (rc) return rc;
    if (!ws || ws_bytes < fs_canonical_ws_bytes(V)) return FS_E_WORKSPACE;
    for (int64_t b = 0; b < B; b++)
        if (top_p[b] != top_p[b] || min_p[b] != min_p[b]) return FS_E_PARAM;
    return fs_truncate_rows(x, B, V, top_k, top_p, min_p, min_keep, bitmask, W, rows, ids, vals,
                            cap, offsets, invalid, done, ws, isa);
}

/* fs_truncate_canonical(_masked)'s loop over checked rows (bitmask NULL: none). */
static int fs_truncate_rows(const float *x, int64_t B, int64_t V, const int64_t *top_k,
                            const double *top_p, const double *min_p, const int64_t *min_keep,
                            const uint32_t *bitmask, int64_t W, const int64_t *rows,
                            int32_t *ids, float *vals, int64_t cap, int64_t *offsets,
                            uint8_t *invalid, int64_t *done, void *ws, int isa) {
    fs_cws w;
    fs_canon_layout(V, ws, &w);
    isa = fs_level(isa);
    offsets[0] = 0;
    for (int64_t b = 0; b < B; b++) {
        int64_t c = bitmask && rows[b] >= 0
                        ? FS_DISPATCH(isa, truncate_row_masked, x + b * V, bitmask + rows[b] * W,
                                      V, top_k[b], top_p[b], min_p[b], min_keep[b], &w)
                        : FS_DISPATCH(isa, truncate_row, x + b * V, V, top_k[b], top_p[b],
                                      min_p[b], min_keep[b], &w);
        invalid[b] = (uint8_t)(c < 0);
        c = c < 0 ? 0 : c;
        offsets[b + 1] = offsets[b] + c;
        if (c > cap - offsets[b]) return FS_OK;  /* *done = b: the caller grows the buffers */
        if (c > 0) {
            memcpy(ids + offsets[b], w.si, (size_t)c * sizeof(int32_t));
            memcpy(vals + offsets[b], w.sv, (size_t)c * sizeof(float));
        }
        *done = b + 1;
    }
    return FS_OK;
}

int fs_truncate_canonical_row(const float *x, int64_t V, int64_t top_k, double top_p,
                              double min_p, int64_t min_keep, int32_t *ids, float *vals,
                              int64_t cap, int64_t *count, void *ws, size_t ws_bytes, int isa) {
    int64_t offsets[2], done;
    uint8_t invalid;
    if (!count) return FS_E_SIZE;
    int rc = fs_truncate_canonical(x, 1, V, &top_k, &top_p, &min_p, &min_keep, ids, vals, cap,
                                   offsets, &invalid, &done, ws, ws_bytes, isa);
    if (rc) return rc;
    *count = invalid ? -1 : offsets[1];
    return FS_OK;
}

int fs_canonical_copy(const float *row, float *work, int64_t V, int *bad, void *ws,
                      size_t ws_bytes, int isa) {
    if (!row || !work || !bad || V < 1 || V > INT32_MAX - FS_BS) return FS_E_SIZE;
    if (!ws || ws_bytes < fs_canonical_ws_bytes(V)) return FS_E_WORKSPACE;
    fs_cws w;
    fs_canon_layout(V, ws, &w);
    isa = fs_level(isa);
    int nan;
    FS_DISPATCH(isa, pass_max_to, row, work, V, w.bmax, &nan);
    *bad = nan;  /* +inf or all -inf: the row max says so after the edits */
    return FS_OK;
}

/* work[s, e) = row[s, e), masked by words when not NULL (s a multiple of 32) */
static void fs_copy_block(const float *row, const uint32_t *words, float *work, int64_t s,
                          int64_t e, int isa) {
    if (!words) {
        memcpy(work + s, row + s, (size_t)(e - s) * sizeof(float));
        return;
    }
    int nan;
    FS_DISPATCH(isa, mask_pass, row + s, words + s / 32, e - s, work + s, NULL, &nan);
}

int fs_mask_copy(const float *row, const uint32_t *words, float *work, int64_t V, int *bad,
                 int isa) {
    if (!row || !words || !work || !bad || V < 1) return FS_E_SIZE;
    int nan;
    FS_DISPATCH(fs_level(isa), mask_pass, row, words, V, work, NULL, &nan);
    *bad = nan;
    return FS_OK;
}

int fs_canonical_overlay(const float *row, float *work, int64_t V, const int64_t *ids,
                         int64_t nids, const int64_t *ids2, int64_t nids2,
                         const uint32_t *words, int *bad, void *ws, size_t ws_bytes, int isa) {
    if (!row || !work || !bad || V < 1 || V > INT32_MAX - FS_BS || nids < 0 ||
        (nids > 0 && !ids) || nids2 < 0 || (nids2 > 0 && !ids2))
        return FS_E_SIZE;
    if (!ws || ws_bytes < fs_canonical_ws_bytes(V)) return FS_E_WORKSPACE;
    fs_cws w;
    fs_canon_layout(V, ws, &w);
    isa = fs_level(isa);
    const int64_t nb = (int64_t)FS_NBLOCKS(V);
    int64_t cnt = 0;
    memset(w.alt_blk, 0, (size_t)nb);
    for (int64_t q = 0; q < nids + nids2; q++) {  /* the blocks an edit may touch */
        const int64_t t = q < nids ? ids[q] : ids2[q - nids];
        if (t < 0 || t >= V || w.alt_blk[t / FS_BS]) continue;
        w.alt_blk[t / FS_BS] = 1;
        cnt++;
    }
    int nan;
    if (cnt * 2 > nb) {
        /* most of the row (a long DRY window): one pass that copies it all beats a max
         * pass and then copies of most blocks (a second read of the row) */
        if (words)
            FS_DISPATCH(isa, mask_pass, row, words, V, work, w.bmax, &nan);
        else
            FS_DISPATCH(isa, pass_max_to, row, work, V, w.bmax, &nan);
        memset(w.alt_blk, 1, (size_t)nb);
    } else {
        if (words)  /* the masked row's maxima; NaN/+inf anywhere flags the input */
            FS_DISPATCH(isa, mask_pass, row, words, V, NULL, w.bmax, &nan);
        else
            FS_DISPATCH(isa, pass_max, row, V, w.bmax, &nan);
        for (int64_t j = 0; j < nb; j++) {
            if (!w.alt_blk[j]) continue;
            const int64_t s = j * FS_BS, e = s + FS_BS < V ? s + FS_BS : V;
            fs_copy_block(row, words, work, s, e, isa);
        }
    }
    *bad = nan;
    return FS_OK;
}

/* The checks of the _edited entries and the first pass they finish: the block maxima
 * of the edited blocks again, and the row max. row (not NULL): work holds only the
 * blocks fs_canonical_overlay copied; the overlay is set up in *w. */
static int fs_edited_first(const float *work, const float *row, int64_t V, const int64_t *ids64,
                           int64_t n64, const int32_t *ids32, int64_t n32,
                           const int64_t *ids64b, int64_t n64b, double top_p, double min_p,
                           void *ws, size_t ws_bytes, int isa, fs_cws *w, float *m32) {
    if (!work || V < 1 || V > INT32_MAX - FS_BS || n64 < 0 || n32 < 0 || (n64 > 0 && !ids64) ||
        (n32 > 0 && !ids32) || n64b < 0 || (n64b > 0 && !ids64b))
        return FS_E_SIZE;
    if (!ws || ws_bytes < fs_canonical_ws_bytes(V)) return FS_E_WORKSPACE;
    if (top_p != top_p || min_p != min_p) return FS_E_PARAM;
    fs_canon_layout(V, ws, w);
    if (row) {
        /* an id outside the copied blocks would be read from work uncopied: never
         * for the chain's edits (they write the history it copied); be safe */
        for (int64_t q = 0; q < n64; q++)
            if (ids64[q] >= 0 && ids64[q] < V && !w->alt_blk[ids64[q] / FS_BS]) return FS_E_PARAM;
        for (int64_t q = 0; q < n32; q++)
            if (ids32[q] >= 0 && ids32[q] < V && !w->alt_blk[ids32[q] / FS_BS]) return FS_E_PARAM;
        for (int64_t q = 0; q < n64b; q++)
            if (ids64b[q] >= 0 && ids64b[q] < V && !w->alt_blk[ids64b[q] / FS_BS]) return FS_E_PARAM;
        w->alt = work;
    }
    *m32 = FS_DISPATCH(isa, refresh_blocks, work, V, w->bmax, ids64, n64, ids32, n32, ids64b,
                       n64b);
    return FS_OK;
}

/* The overlay's way out: the blocks it did not copy go to work too (masked by words,
 * if any), and the overlay is dropped (a pass that reads every token: a whole-row
 * top-p, the blocked draw). */
static void fs_densify(const float *row, const uint32_t *words, float *work, int64_t V,
                       fs_cws *w, int isa) {
    const int64_t nb = (int64_t)FS_NBLOCKS(V);
    for (int64_t j = 0; j < nb; j++) {
        if (w->alt_blk[j]) continue;
        const int64_t s = j * FS_BS, e = s + FS_BS < V ? s + FS_BS : V;
        fs_copy_block(row, words, work, s, e, isa);
    }
    w->alt = NULL;
}

int fs_sample_canonical_edited(float *work, const float *row, int64_t V, const int64_t *ids64,
                               int64_t n64, const int32_t *ids32, int64_t n32,
                               const int64_t *ids64b, int64_t n64b, const uint32_t *words,
                               int bad, int64_t top_k, double top_p, double min_p,
                               double temperature, int64_t min_keep, uint64_t seed,
                               uint64_t position, int32_t *out, void *ws, size_t ws_bytes,
                               int isa) {
    fs_cws w;
    float m32;
    if (!out || temperature != temperature) return out ? FS_E_PARAM : FS_E_SIZE;
    if (words && !row) return FS_E_PARAM;  /* a bitmask reads through the overlay only */
    isa = fs_level(isa);
    int rc = fs_edited_first(work, row, V, ids64, n64, ids32, n32, ids64b, n64b, top_p, min_p,
                             ws, ws_bytes,
                             isa, &w, &m32);
    if (rc) return rc;
    double u = fs_uniform(seed, position, 0u, FS_STREAM_DRAW);
    int32_t tok = FS_NEED_DENSE;
    if (w.alt)  /* greedy too: its first maximum reads through the overlay */
        tok = FS_DISPATCH(isa, sample_row_ready, row, words, V, m32, bad, top_k, top_p, min_p,
                          min_keep, temperature, u, &w);
    if (tok == FS_NEED_DENSE) {
        if (w.alt) fs_densify(row, words, work, V, &w, isa);
        tok = FS_DISPATCH(isa, sample_row_ready, work, NULL, V, m32, bad, top_k, top_p, min_p,
                          min_keep, temperature, u, &w);
    }
    *out = tok;
    return FS_OK;
}

int fs_truncate_canonical_edited(float *work, const float *row, int64_t V, const int64_t *ids64,
                                 int64_t n64, const int32_t *ids32, int64_t n32,
                                 const int64_t *ids64b, int64_t n64b, const uint32_t *words,
                                 int bad, int64_t top_k, double top_p, double min_p,
                                 int64_t min_keep, int32_t *ids, float *vals, int64_t cap,
                                 int64_t *count, void *ws, size_t ws_bytes, int isa) {
    fs_cws w;
    float m32;
    if (!count || cap < 0 || (cap > 0 && (!ids || !vals))) return FS_E_SIZE;
    if (words && !row) return FS_E_PARAM;
    isa = fs_level(isa);
    int rc = fs_edited_first(work, row, V, ids64, n64, ids32, n32, ids64b, n64b, top_p, min_p,
                             ws, ws_bytes,
                             isa, &w, &m32);
    if (rc) return rc;
    if (min_keep < 1) min_keep = 1;
    int64_t c = FS_NEED_DENSE;
    if (w.alt)
        c = FS_DISPATCH(isa, truncate_row_ready, row, words, V, m32, bad, top_k, top_p, min_p,
                        min_keep, &w);
    if (c == FS_NEED_DENSE) {
        if (w.alt) fs_densify(row, words, work, V, &w, isa);
        c = FS_DISPATCH(isa, truncate_row_ready, work, NULL, V, m32, bad, top_k, top_p, min_p,
                        min_keep, &w);
    }
    if (c > cap) return FS_E_SIZE;
    if (c > 0) {
        memcpy(ids, w.si, (size_t)c * sizeof(int32_t));
        memcpy(vals, w.sv, (size_t)c * sizeof(float));
    }
    *count = c;
    return FS_OK;
}

int fs_whole_first_row(const float *x, int64_t V, int kind, double a, double b,
                       int64_t min_keep, double temperature, uint64_t seed, uint64_t position,
                       double draw, int32_t *ids, float *vals, int64_t cap, int64_t *count,
                       int32_t *token, double *lp, void *ws, size_t ws_bytes, int isa) {
    if (!x || !count || !token || !lp || V < 1 || V > INT32_MAX - FS_BS || cap < 0 ||
        (cap > 0 && (!ids || !vals)))
        return FS_E_SIZE;
    if (!ws || ws_bytes < fs_canonical_ws_bytes(V)) return FS_E_WORKSPACE;
    if (a != a || b != b || !(temperature > 0.0) || temperature == INFINITY ||
        !(draw >= 0.0) || draw == INFINITY)
        return FS_E_PARAM;
    if (kind != FS_CHAIN_EPSILON && kind != FS_CHAIN_ETA && kind != FS_CHAIN_TOP_A &&
        kind != FS_CHAIN_P_LESS && kind != FS_CHAIN_MIROSTAT && kind != FS_CHAIN_MIROSTAT_V2 &&
        kind != FS_CHAIN_TOP_N_SIGMA && kind != FS_CHAIN_XTC && kind != FS_CHAIN_TYPICAL &&
        kind != FS_CHAIN_TAIL_FREE)
        return FS_E_PARAM;
    fs_cws w;
    fs_canon_layout(V, ws, &w);
    isa = fs_level(isa);
    const double u_xtc = fs_uniform(seed, position, 0u, FS_STREAM_XTC);
    const double u = fs_uniform(seed, position, 0u, FS_STREAM_DRAW);
    int64_t c = FS_DISPATCH(isa, whole_first_row, x, V, V, kind, a, b, min_keep, temperature,
                            u_xtc, draw, u, token, lp, &w);
    if (c > cap) return FS_E_SIZE;
    if (c > 0) {
        memcpy(ids, w.si, (size_t)c * sizeof(int32_t));
        memcpy(vals, w.sv, (size_t)c * sizeof(float));
    }
    *count = c;
    return FS_OK;
}

int fs_mirostat_row(const float *x, int64_t n, int64_t vocab, int kind, double mu, double m,
                    uint64_t seed, uint64_t position, int32_t *token, double *lp, void *ws,
                    size_t ws_bytes, int isa) {
    if (!x || !token || !lp || n < 1 || n > INT32_MAX - FS_BS || vocab < n) return FS_E_SIZE;
    if (!ws || ws_bytes < fs_canonical_ws_bytes(n)) return FS_E_WORKSPACE;
    if (mu != mu || m != m) return FS_E_PARAM;
    if (kind != FS_CHAIN_MIROSTAT && kind != FS_CHAIN_MIROSTAT_V2) return FS_E_PARAM;
    fs_cws w;
    fs_canon_layout(n, ws, &w);
    const double u = fs_uniform(seed, position, 0u, FS_STREAM_DRAW);
    int32_t tok = -1;
    *lp = NAN;
    const int64_t c = FS_DISPATCH(fs_level(isa), whole_first_row, x, n, vocab, kind, mu, m, 1,
                                  1.0, 0.0, 1.0, u, &tok, lp, &w);
    *token = c == 0 && tok >= 0 ? tok : c == FS_WF_UNDECIDED ? FS_WF_UNDECIDED : -1;
    return FS_OK;
}

int fs_xtc_removed_row(const float *x, int64_t V, double probability, double threshold,
                       double temperature, uint64_t seed, uint64_t position, float *tout,
                       int32_t *removed, int64_t cap, int64_t *count, void *ws,
                       size_t ws_bytes, int isa) {
    if (!x || !count || V < 1 || V > INT32_MAX - FS_BS || cap < 0 || (cap > 0 && !removed) ||
        (temperature != 1.0 && !tout))
        return FS_E_SIZE;
    if (!ws || ws_bytes < fs_canonical_ws_bytes(V)) return FS_E_WORKSPACE;
    if (probability != probability || threshold != threshold || !(temperature > 0.0) ||
        temperature == INFINITY)
        return FS_E_PARAM;
    fs_cws w;
    fs_canon_layout(V, ws, &w);
    const double u_xtc = fs_uniform(seed, position, 0u, FS_STREAM_XTC);
    int64_t c = FS_DISPATCH(fs_level(isa), xtc_removed_row, x, V, probability, threshold,
                            temperature, u_xtc, tout, &w);
    if (c > cap) return FS_E_SIZE;
    if (c > 0) memcpy(removed, w.ci, (size_t)c * sizeof(int32_t));
    *count = c;
    return FS_OK;
}

int fs_draw(const float *x, int64_t B, int64_t V, const uint64_t *seed,
            const uint64_t *position, int32_t *out, void *ws, size_t ws_bytes, int isa) {
    int rc = fs_check_rows(x, B, V, out);
    if (rc) return rc;
    if (B == 0) return FS_OK;
    if (!seed || !position) return FS_E_SIZE;
    if (!ws || ws_bytes < fs_canonical_ws_bytes(V)) return FS_E_WORKSPACE;
    fs_cws w;
    fs_canon_layout(V, ws, &w);
    isa = fs_level(isa);
    for (int64_t b = 0; b < B; b++) {
        /* the canonical chain with every stage disabled is the plain draw */
        double u = fs_uniform(seed[b], position[b], 0u, FS_STREAM_DRAW);
        int32_t t = FS_DISPATCH(isa, sample_row, x + b * V, V, 0, 1.0, 0.0, 1, 1.0, 1, u, &w);
        out[b] = t == FS_INVALID_ROW ? -1 : t;
    }
    return FS_OK;
}

int fs_argmax(const float *x, int64_t B, int64_t V, int32_t *out, int isa) {
    int rc = fs_check_rows(x, B, V, out);
    if (rc) return rc;
    isa = fs_level(isa);
    for (int64_t b = 0; b < B; b++) out[b] = FS_DISPATCH(isa, argmax_row, x + b * V, V);
    return FS_OK;
}

int fs_invalid_rows(const float *x, int64_t B, int64_t V, uint8_t *out, int isa) {
    int rc = fs_check_rows(x, B, V, out);
    if (rc) return rc;
    isa = fs_level(isa);
    for (int64_t b = 0; b < B; b++) {
        int nan;
        float m = FS_DISPATCH(isa, row_max, x + b * V, V, &nan);
        out[b] = (uint8_t)(nan || !(m > -INFINITY && m < INFINITY));
    }
    return FS_OK;
}

int fs_token_logprob(const float *x, int64_t B, int64_t V, const int64_t *tokens,
                     double *out, int isa) {
    int rc = fs_check_rows(x, B, V, out);
    if (rc) return rc;
    if (B > 0 && !tokens) return FS_E_SIZE;
    for (int64_t b = 0; b < B; b++)
        if (tokens[b] < -1 || tokens[b] >= V) return FS_E_TOKEN;
    isa = fs_level(isa);
    for (int64_t b = 0; b < B; b++)
        out[b] = FS_DISPATCH(isa, token_logprob_row, x + b * V, V, tokens[b]);
    return FS_OK;
}

/* Streaming (non-temporal) output stores of softmax and log-softmax from this many
 * floats a call (2 MiB, twice a core's L2): past the caches, where the output would be
 * evicted unread. */
#define FS_STREAM_MIN ((int64_t)1 << 19)

int fs_softmax_checked(const float *x, int64_t B, int64_t V, const double *temperature,
                       float *out, uint8_t *invalid, int isa) {
    int rc = fs_check_rows(x, B, V, out);
    if (rc) return rc;
    if (B > 0 && !temperature) return FS_E_SIZE;
    for (int64_t b = 0; b < B; b++)
        if (!(temperature[b] > 0.0)) return FS_E_PARAM;
    isa = fs_level(isa);
    /* streaming stores only past the caches (the same values either way) */
    const int nt = B * V >= FS_STREAM_MIN;
    for (int64_t b = 0; b < B; b++) {
        int bad = FS_DISPATCH(isa, softmax_row, x + b * V, V, temperature[b], out + b * V, nt);
        if (invalid) invalid[b] = (uint8_t)bad;
    }
    return FS_OK;
}

int fs_softmax(const float *x, int64_t B, int64_t V, const double *temperature, float *out,
               int isa) {
    return fs_softmax_checked(x, B, V, temperature, out, NULL, isa);
}

int fs_log_softmax_checked(const float *x, int64_t B, int64_t V, float *out, uint8_t *invalid,
                           int isa) {
    int rc = fs_check_rows(x, B, V, out);
    if (rc) return rc;
    isa = fs_level(isa);
    /* streaming stores only past the caches: a small output is read back soon */
    const int nt = B * V >= FS_STREAM_MIN;
    for (int64_t b = 0; b < B; b++) {
        int bad = FS_DISPATCH(isa, log_softmax_row, x + b * V, V, out + b * V, nt);
        if (invalid) invalid[b] = (uint8_t)bad;
    }
    return FS_OK;
}

int fs_log_softmax(const float *x, int64_t B, int64_t V, float *out, int isa) {
    return fs_log_softmax_checked(x, B, V, out, NULL, isa);
}

/* Top-k of every row (fs_topk.inc). With `invalid`, each row's validity goes there;
 * without it (fs_topk), a row holding NaN stops the call with FS_E_PARAM. */
static int fs_topk_rows(const float *x, int64_t B, int64_t V, int64_t k, float *values,
                        int32_t *indices, uint8_t *invalid, void *ws, size_t ws_bytes, int isa) {
    int rc = fs_check_rows(x, B, V, x);
    if (rc) return rc;
    if (k < 0 || k > V) return FS_E_PARAM;
    if (B == 0) return FS_OK;
    if (k > 0 && (!values || !indices)) return FS_E_SIZE;
    if (k > 0 && (!ws || ws_bytes < fs_topk_ws_bytes(V))) return FS_E_WORKSPACE;
    fs_tws w;
    memset(&w, 0, sizeof w);
    if (k > 0) fs_topk_layout(V, ws, &w);  /* k = 0 only checks rows: no workspace */
    isa = fs_level(isa);
    for (int64_t b = 0; b < B; b++) {
        float *vb = k ? values + b * k : values;  /* no offset on NULL (k = 0) */
        int32_t *ib = k ? indices + b * k : indices;
        int f = FS_DISPATCH(isa, topk_row, x + b * V, V, k, vb, ib, &w);
        if (invalid) invalid[b] = (uint8_t)(f != 0);
        else if (f & FS_TK_NAN) return FS_E_PARAM;
    }
    return FS_OK;
}

int fs_topk(const float *x, int64_t B, int64_t V, int64_t k, float *values, int32_t *indices,
            void *ws, size_t ws_bytes, int isa) {
    if (k == 0 && fs_check_rows(x, B, V, x) == FS_OK) return FS_OK;  /* nothing to select */
    return fs_topk_rows(x, B, V, k, values, indices, NULL, ws, ws_bytes, isa);
}

int fs_topk_checked(const float *x, int64_t B, int64_t V, int64_t k, float *values,
                    int32_t *indices, uint8_t *invalid, void *ws, size_t ws_bytes, int isa) {
    if (B > 0 && !invalid) return FS_E_SIZE;
    return fs_topk_rows(x, B, V, k, values, indices, invalid, ws, ws_bytes, isa);
}

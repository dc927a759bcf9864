/* Token constraints (fs_constraints.h): the packed bitmask's masked copy, compiled per
 * instruction set like fastsample.c (fs_bitmask.inc in target regions, runtime
 * dispatch), and the BadWords / MinTokens bans, which touch a few tokens per row. */

#include "fs_constraints.h"

#include <math.h>
#include <string.h>

#include "fastsample.h" /* fs_cpu_isa, FS_ISA_* */
#include "fs_util.h"    /* fs_block_ok */
#include "stages.h"     /* FS_STAGE_* */

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FS_X86 1
#else
#define FS_X86 0
#endif

#define FS_MASK_ONLY /* fs_bitmask.inc: the masked copy only, not the fused kernels' gather */
#define FS_ISA_UNIT "fs_bitmask.inc"
#include "fs_isa_levels.inc"

static float fs_mask_row(int isa, const float *l, const uint32_t *words, int64_t n, float *v) {
    int bad;
    if (isa > fs_cpu_isa()) isa = fs_cpu_isa();
#if FS_X86
    if (isa == FS_ISA_AVX512) return mask_pass_avx512(l, words, n, v, NULL, &bad);
    if (isa == FS_ISA_AVX2) return mask_pass_avx2(l, words, n, v, NULL, &bad);
#endif
    return mask_pass_base(l, words, n, v, NULL, &bad);
}

/* B rows of V, buffers present (B = 0 passes with any V >= 0). */
static int fs_block(const float *logits, const float *out, int64_t B, int64_t V) {
    if (B == 0 && V >= 0) return FS_STAGE_OK;
    return fs_block_ok(logits, out, B, V, INT64_MAX) ? FS_STAGE_OK : FS_STAGE_E_SIZE;
}

int fs_apply_token_bitmask(const float *logits, float *out, int64_t B, int64_t V,
                           const uint32_t *bitmask, int64_t R, int64_t W, const int64_t *rows,
                           int isa) {
    int rc = fs_block(logits, out, B, V);
    if (rc || B == 0) return rc;
    if (R < 0 || W < (V + 31) / 32 || (R > 0 && !bitmask) || !rows) return FS_STAGE_E_SIZE;
    for (int64_t b = 0; b < B; b++)
        if (rows[b] < -1 || rows[b] >= R) return FS_STAGE_E_ID;
    for (int64_t b = 0; b < B; b++) {
        const float *row = logits + b * V;
        float *o = out + b * V;
        if (rows[b] >= 0)
            fs_mask_row(isa, row, bitmask + rows[b] * W, V, o);
        else if (o != row)
            memcpy(o, row, (size_t)V * sizeof(float));
    }
    return FS_STAGE_OK;
}

/* Copy row b to out unless in place. */
static void fs_copy_row(const float *logits, float *out, int64_t b, int64_t V) {
    if (out != logits) memcpy(out + b * V, logits + b * V, (size_t)V * sizeof(float));
}

int fs_bad_words(const float *logits, float *out, int64_t B, int64_t V,
                 const int64_t *hist, int64_t nhist, const int64_t *offsets,
                 const int64_t *tokens, int64_t ntokens, const int64_t *seq_offsets,
                 int64_t nseq) {
    int rc = fs_block(logits, out, B, V);
    if (rc || B == 0) return rc;
    if (nhist < 0 || !offsets || (nhist > 0 && !hist) || ntokens < 0 || nseq < 0 ||
        !seq_offsets || (ntokens > 0 && !tokens))
        return FS_STAGE_E_SIZE;
    if (offsets[0] < 0) return FS_STAGE_E_OFFSETS;
    for (int64_t b = 0; b < B; b++)
        if (offsets[b + 1] < offsets[b]) return FS_STAGE_E_OFFSETS;
    if (offsets[B] > nhist) return FS_STAGE_E_OFFSETS;
    if (seq_offsets[0] != 0 || seq_offsets[nseq] != ntokens) return FS_STAGE_E_OFFSETS;
    for (int64_t s = 0; s < nseq; s++)   /* each sequence non-empty */
        if (seq_offsets[s + 1] <= seq_offsets[s]) return FS_STAGE_E_OFFSETS;
    for (int64_t i = 0; i < ntokens; i++)
        if (tokens[i] < 0 || tokens[i] >= V) return FS_STAGE_E_ID;
    for (int64_t b = 0; b < B; b++) {
        fs_copy_row(logits, out, b, V);
        float *o = out + b * V;
        const int64_t *h = hist + offsets[b];
        const int64_t hn = offsets[b + 1] - offsets[b];
        for (int64_t s = 0; s < nseq; s++) {
            const int64_t a = seq_offsets[s], e = seq_offsets[s + 1], plen = e - a - 1;
            if (plen > hn) continue;
            int64_t i = 0;
            while (i < plen && h[hn - plen + i] == tokens[a + i]) i++;
            if (i == plen) o[tokens[e - 1]] = -INFINITY;
        }
    }
    return FS_STAGE_OK;
}

int fs_min_tokens(const float *logits, float *out, int64_t B, int64_t V, const int64_t *n,
                  const uint64_t *position, const int64_t *stop, int64_t nstop) {
    int rc = fs_block(logits, out, B, V);
    if (rc || B == 0) return rc;
    if (!n || !position || nstop < 0 || (nstop > 0 && !stop)) return FS_STAGE_E_SIZE;
    for (int64_t j = 0; j < nstop; j++)
        if (stop[j] < 0 || stop[j] >= V) return FS_STAGE_E_ID;
    for (int64_t b = 0; b < B; b++) {
        fs_copy_row(logits, out, b, V);
        if (n[b] > 0 && position[b] < (uint64_t)n[b])
            for (int64_t j = 0; j < nstop; j++) out[b * V + stop[j]] = -INFINITY;
    }
    return FS_STAGE_OK;
}

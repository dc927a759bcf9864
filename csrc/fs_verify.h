/* Speculative decoding verification (docs/spec.md §11): the C kernel of
 * fastsample/reference.py's verify_rows, the rejection rule over processed target rows.
 *
 * `block` is (rows, ncols) row-major float32, rows = B * (K + 1): row b*(K+1) + j holds
 * request b's processed logits at step j. Dense (`sparse` 0): column = token id
 * (ncols = V). Compacted (`sparse` 1): row r's first offsets[r+1] - offsets[r] columns
 * are the tokens ids[offsets[r] .. offsets[r+1]) (ascending), the rest ignored.
 * `q` is (B, K, V) float32 draft probabilities, or NULL (q one-hot on the draft token).
 * Requests [b0, b1) are verified (callers split a batch across threads); tokens
 * (B, K+1) and accepted, bad_q (B,) are written only for those requests (tokens must
 * be -1-filled by the caller). Everything indexed is checked first: a bad size,
 * offset, id, draft token or num_draft returns FS_VERIFY_E_* before any read with it.
 * No allocation, no global state: reentrant.
 */
#ifndef FS_VERIFY_H
#define FS_VERIFY_H

#include <stdint.h>

/* FS_CDEF_BEGIN */
enum {
    FS_VERIFY_OK = 0,
    FS_VERIFY_E_SIZE = 1,     /* negative or inconsistent size, NULL buffer, bad b0/b1 */
    FS_VERIFY_E_OFFSETS = 2,  /* offsets decreasing, past ids_len, or a row wider than ncols */
    FS_VERIFY_E_ID = 3,       /* a candidate id outside [0, V) */
    FS_VERIFY_E_DRAFT = 4,    /* num_draft outside [0, K] or a used draft token outside [0, V) */
};

int fs_verify_rows(const float *block, int64_t rows, int64_t ncols,
                   const int32_t *ids, int64_t ids_len, const int64_t *offsets, int sparse,
                   const int32_t *draft, const float *q, int64_t B, int64_t K, int64_t V,
                   const int64_t *num_draft, const uint64_t *seed, const uint64_t *position,
                   int64_t b0, int64_t b1,
                   int32_t *tokens, int32_t *accepted, int32_t *bad_q);
/* FS_CDEF_END */

#endif

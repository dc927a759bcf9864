/* The remaining stage kernels of the C backend: epsilon, eta, top-a, p-less,
 * tail-free, dynamic temperature, smoothing, Mirostat v1's truncation, Mirostat
 * v2's truncation, the adaptive-p transform and the no-repeat-n-gram ban, each the
 * function of the same name in fastsample/reference.py.
 *
 * Conventions are those of stages.h: (B, V) row-major float32 `logits` (never
 * written) and `out` (written completely); per-row parameters as (B,) arrays
 * (double for reals, int64_t for integers); caller-owned workspaces whose lengths
 * are passed in and checked (`fws` >= V floats, `dws` >= fs_extra_dws_len(V)
 * doubles; contents on entry do not matter); histories as one int64_t array with
 * (B + 1,) offsets. A row with no finite logit is copied unchanged. A bad size,
 * offset or history token returns an FS_STAGE_E_* code before anything is indexed
 * with it. No global state: every function is reentrant.
 */
#ifndef FS_STAGES_EXTRA_H
#define FS_STAGES_EXTRA_H

#include <stdint.h>

/* FS_CDEF_BEGIN */
/* doubles of workspace every function below needs for a vocabulary of V (-1: V too big) */
int64_t fs_extra_dws_len(int64_t V);

int fs_epsilon(const float *logits, float *out, int64_t B, int64_t V,
               const double *epsilon, const int64_t *min_keep,
               float *fws, int64_t fws_len, double *dws, int64_t dws_len);

int fs_eta(const float *logits, float *out, int64_t B, int64_t V,
           const double *epsilon, const int64_t *min_keep,
           float *fws, int64_t fws_len, double *dws, int64_t dws_len);

int fs_top_a(const float *logits, float *out, int64_t B, int64_t V,
             const double *a, const int64_t *min_keep,
             float *fws, int64_t fws_len, double *dws, int64_t dws_len);

int fs_p_less(const float *logits, float *out, int64_t B, int64_t V,
              const int64_t *min_keep,
              float *fws, int64_t fws_len, double *dws, int64_t dws_len);

int fs_tail_free(const float *logits, float *out, int64_t B, int64_t V,
                 const double *z, const int64_t *min_keep,
                 float *fws, int64_t fws_len, double *dws, int64_t dws_len);

int fs_dynamic_temperature(const float *logits, float *out, int64_t B, int64_t V,
                           const double *t, const double *range_, const double *exponent,
                           double *dws, int64_t dws_len);

int fs_smoothing(const float *logits, float *out, int64_t B, int64_t V,
                 const double *factor, const double *curve);

int fs_mirostat(const float *logits, float *out, int64_t B, int64_t V,
                const double *mu, const int64_t *m,
                float *fws, int64_t fws_len, double *dws, int64_t dws_len);

int fs_mirostat_v2(const float *logits, float *out, int64_t B, int64_t V,
                   const double *mu, double *dws, int64_t dws_len);

int fs_adaptive_p(const float *logits, float *out, int64_t B, int64_t V,
                  const double *target, const double *ema_sum, const double *ema_weight,
                  double *dws, int64_t dws_len);

/* z: int32 workspace of at least the longest history row (1 if all are empty) */
int fs_no_repeat_ngram(const float *logits, float *out, int64_t B, int64_t V,
                       const int64_t *hist, int64_t nhist, const int64_t *offsets,
                       const int64_t *n, int32_t *z, int64_t z_len);
/* FS_CDEF_END */

#endif

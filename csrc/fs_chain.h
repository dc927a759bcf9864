/* One engine step of a common chain on one row, in one call (the chain plan's per-token
 * path for B = 1, fastsample/plan.py's row program).
 *
 * The chain: [LogitBias] [Penalties] [DRY] (each optional, in this order; a NoRepeatNGram
 * anywhere among them) -> TopK -> TopP -> MinP
 * (one min_keep), or one whole-distribution stage (fs_whole_first_row), or nothing
 * (FS_CHAIN_WHOLE_ROW: the stages read the whole row) -> up to eight stages on the
 * survivors (a truncation, XTC, a temperature, smoothing) -> Dist, a Mirostat
 * (fs_mirostat_row, told the vocabulary size) or Greedy; llama.cpp's default order
 * and docs/spec.md §12's W10a and W10b. It composes the kernels the stage-by-stage route
 * calls (fs_logit_bias, fs_penalties, fs_dry, fs_sample_canonical_row or fs_truncate_canonical_row,
 * fs_xtc, fs_temperature, fs_draw) on the same data in the same order, so its token is
 * the chain's; what it saves is the Python glue between them (about half the time of
 * a W10 token). Everything but the row and the history is caller-owned workspace.
 *
 * Returns FS_CHAIN_OK with *token the drawn id, or FS_CHAIN_FALLBACK (*token = -2)
 * when the general route must decide: the row is invalid or the edits emptied it, an
 * id the edits write held NaN/+inf in the input (an edit could hide it), or a token of
 * a whole-distribution first stage lies within rounding of its threshold. p is read,
 * except first_lp, which a Mirostat first writes. Other
 * codes: a bad size (FS_CHAIN_E_SIZE) or a kernel's own error code.
 */
#ifndef FS_CHAIN_H
#define FS_CHAIN_H

#include <stddef.h>
#include <stdint.h>

/* FS_CDEF_BEGIN */
enum { FS_CHAIN_OK = 0, FS_CHAIN_FALLBACK = 100, FS_CHAIN_E_SIZE = 101 };  /* else a kernel's code */
/* the stages a chain may run on the survivors (its kernel on a (1, n) row) */
enum {
    FS_CHAIN_XTC = 1, FS_CHAIN_TEMPERATURE = 2, FS_CHAIN_TOP_K = 3, FS_CHAIN_TOP_P = 4,
    FS_CHAIN_MIN_P = 5, FS_CHAIN_TYPICAL = 6, FS_CHAIN_TOP_N_SIGMA = 7, FS_CHAIN_EPSILON = 8,
    FS_CHAIN_ETA = 9, FS_CHAIN_TOP_A = 10, FS_CHAIN_P_LESS = 11, FS_CHAIN_TAIL_FREE = 12,
    FS_CHAIN_DYNAMIC_TEMPERATURE = 13, FS_CHAIN_SMOOTHING = 14
};
/* terminals a chain may run first (fs_whole_first_row, on the whole row) */
enum { FS_CHAIN_MIROSTAT = 15, FS_CHAIN_MIROSTAT_V2 = 16 };
/* first: no truncation; the stages after run on the whole row (its ids are the
 * survivors' ids): a transform first (Smoothing, DynamicTemperature, ...) */
enum { FS_CHAIN_WHOLE_ROW = 17 };
/* terminal: the first maximum of the survivors (Greedy), instead of the draw */
enum { FS_CHAIN_GREEDY = 18 };
/* terminal: adaptive-p on the survivors (fs_adaptive_p, then the draw); the drawn
 * token's log-probability among them comes back for the caller's average update */
enum { FS_CHAIN_ADAPTIVE_P = 19 };
enum { FS_CHAIN_MAX_AFTER = 8 };

typedef struct {
    int64_t n_bias;                    /* LogitBias first (0: none): n_bias pairs */
    const int64_t *bias_ids;           /* ascending, each in [0, V); a run of one id adds */
    const double *bias_values;         /* its values up in order (fs_logit_bias's rule) */
    int64_t ngram;                     /* NoRepeatNGram's n (0: none): its bans commute
                                        with the other edits (-inf stays -inf), so it
                                        runs first, into a copy of the row */
    int penalties;                     /* then Penalties (0: none) */
    double repeat, frequency, presence;
    int64_t penalty_last_n;
    int dry;                           /* then DRY (0: none) */
    double dry_multiplier, dry_base;
    int64_t dry_allowed_length, dry_last_n;
    int fused;                         /* 1: the rest is fs.sample's fused chain */
    int first;                         /* not fused: 0, the truncations first; else a
                                        whole-distribution stage first (FS_CHAIN_EPSILON,
                                        _ETA, _TOP_A, _P_LESS, _TOP_N_SIGMA, _XTC:
                                        fs_whole_first_row) with these parameters;
                                        also a Mirostat terminal */
    double first_a, first_b;
    int64_t first_min_keep;
    double first_temperature;          /* a Temperature before it (1: none; > 0) */
    double first_lp;                   /* out, the Mirostats (FS_CHAIN_MIROSTAT, _V2 as
                                        first, then nothing: their a is mu, set per
                                        call): the drawn token's log-probability among
                                        the kept tokens, for the mu update;
                                        FS_CHAIN_WHOLE_ROW: no first stage, the stages
                                        after (n_after >= 1) read the whole row */
    int64_t top_k;                     /* the truncations TopK -> TopP -> MinP */
    double top_p, min_p;
    int64_t min_keep;
    double temperature;                /* fused only: its temperature and order */
    int temperature_last;
    int n_after;                       /* not fused: stages on the survivors, in order */
    int after[8];                      /* FS_CHAIN_XTC, FS_CHAIN_TEMPERATURE, ... */
    double after_a[8], after_b[8], after_c[8];  /* the stage's parameters, in order
                                        (TopK's k as a double; XTC: probability,
                                        threshold; DynamicTemperature: t, range,
                                        exponent) */
    int64_t after_min_keep[8];         /* the truncations' min_keep */
    int terminal;                      /* 0: Dist; FS_CHAIN_MIROSTAT or _V2: that
                                        terminal on the survivors (fs_mirostat_row; its
                                        log-probability out in first_lp); FS_CHAIN_GREEDY:
                                        their first maximum; not fused, not with a
                                        Mirostat first */
    double terminal_mu, terminal_m;    /* its mu (set per call) and m (v1);
                                        FS_CHAIN_ADAPTIVE_P: its ema_sum (per call) and
                                        target */
    double terminal_w;                 /* FS_CHAIN_ADAPTIVE_P: its ema_weight (per call) */
    const uint32_t *words;             /* set per call: NULL, or the row's packed token
                                        bitmask (docs/spec.md §10, ceil(V/32) words),
                                        applied before every stage: the fused chain and
                                        the truncations read the row through it, any
                                        other first step a masked copy */
    uint64_t seed, position;
} fs_chain_params;

int fs_chain_row(const float *row, int64_t V, const int64_t *hist, int64_t nhist,
                 fs_chain_params *p, const uint8_t *is_breaker, int64_t breaker_len,
                 float *work, int32_t *ids, float *vals, float *tmp, int64_t vlen,
                 int32_t *counts, int32_t *best, int32_t *z, int64_t z_len,
                 double *dws, int64_t dws_len, void *ws, size_t ws_bytes, int isa,
                 int32_t *token);
/* fs_chain_row of a chain that is not fused (the truncations, the stages on the
 * survivors, the draw), with docs/spec.md §9's processed log-probabilities of the row
 * the draw read: lp, rank, and the top nlp (>= 0) ids (token ids) and log-probabilities
 * (id -1, -inf past the survivors), as fs_logprobs. work and best (>= V entries) hold
 * its top-k; ws must also fit fs_topk_ws_bytes of the survivors. Same return codes. */
int fs_chain_row_logprobs(const float *row, int64_t V, const int64_t *hist, int64_t nhist,
                          fs_chain_params *p, const uint8_t *is_breaker,
                          int64_t breaker_len, float *work, int32_t *ids, float *vals,
                          float *tmp, int64_t vlen, int32_t *counts, int32_t *best,
                          int32_t *z, int64_t z_len, double *dws, int64_t dws_len, void *ws,
                          size_t ws_bytes, int isa, int64_t nlp, float *lp, int32_t *rank,
                          int32_t *top_ids, float *top_lp, int32_t *token);
/* FS_CDEF_END */

#endif

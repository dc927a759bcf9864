/* C-level tests of fs_chain_row (fs_chain.h), run by csrc/sanitize.sh under
 * AddressSanitizer and UndefinedBehaviorSanitizer: on random rows, histories and
 * programs, its token equals the kernels it composes called one by one (fs_penalties,
 * fs_dry, then fs_sample_canonical_row, or fs_truncate_canonical_row + fs_xtc /
 * fs_temperature on the survivors + fs_draw); a NaN/+inf at a history id or an invalid
 * row falls back; bad sizes return their code. fs_whole_first_row (a whole-distribution
 * stage first) gives the stage kernel's survivors. Buffers are allocated at exactly their
 * size. Parity with the numpy reference chain is tested in Python
 * (tests/test_chain_row.py). */

#include "fastsample.h"
#include "fs_chain.h"
#include "fs_logprobs.h"
#include "stages.h"
#include "stages_extra.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HARNESS_SEED 0xC4A1E5EEDu
#include "harness.h"

typedef struct {
    float *work, *vals, *tmp, *a, *b;
    int32_t *ids, *counts, *best, *z;
    double *dws;
    void *ws;
    size_t ws_bytes;
    int64_t dws_len;
} bufs;

static bufs alloc(int64_t V, int64_t nhist) {
    bufs w;
    w.work = malloc(sizeof(float) * (size_t)V);
    w.vals = malloc(sizeof(float) * (size_t)V);
    w.tmp = malloc(sizeof(float) * (size_t)V);
    w.a = malloc(sizeof(float) * (size_t)V);
    w.b = malloc(sizeof(float) * (size_t)V);
    w.ids = malloc(sizeof(int32_t) * (size_t)V);
    w.counts = malloc(sizeof(int32_t) * (size_t)V);
    w.best = malloc(sizeof(int32_t) * (size_t)V);
    w.z = malloc(sizeof(int32_t) * (size_t)(nhist > 0 ? nhist : 1));
    w.dws_len = fs_stage_dws_len(V);
    w.dws = malloc(sizeof(double) * (size_t)w.dws_len);
    w.ws_bytes = fs_canonical_ws_bytes(V);
    if (fs_topk_ws_bytes(V) > w.ws_bytes)  /* fs_chain_row_logprobs' top-k of the survivors */
        w.ws_bytes = fs_topk_ws_bytes(V);
    w.ws = malloc(w.ws_bytes);
    return w;
}

static void release(bufs *w) {
    free(w->work); free(w->vals); free(w->tmp); free(w->a); free(w->b); free(w->ids);
    free(w->counts); free(w->best); free(w->z); free(w->dws); free(w->ws);
}

/* The same step, kernel by kernel: -2 where fs_chain_row falls back. Not fused: the
 * survivors' row the draw read is left in *drawn (c entries), its drawn index in *k. */
static int32_t by_pieces_at(const float *row, int64_t V, const int64_t *hist, int64_t n,
                            const fs_chain_params *p, const uint8_t *brk, bufs *w,
                            const float **drawn, int64_t *nd, int32_t *k);
/* by_pieces' log-probability of the token AdaptiveP drew (the last call's), at the
 * instruction-set level of the fs_chain_row it is compared with (its sum's rounding) */
static double pieces_lp;
static int pieces_isa;

static int32_t by_pieces(const float *row, int64_t V, const int64_t *hist, int64_t n,
                         const fs_chain_params *p, const uint8_t *brk, bufs *w) {
    const float *d;
    int64_t nd;
    int32_t k;
    return by_pieces_at(row, V, hist, n, p, brk, w, &d, &nd, &k);
}

static int32_t by_pieces_at(const float *row, int64_t V, const int64_t *hist, int64_t n,
                            const fs_chain_params *p, const uint8_t *brk, bufs *w,
                            const float **drawn, int64_t *nd, int32_t *k) {
    *drawn = NULL;
    *nd = 0;
    *k = -1;
    int64_t offsets[2] = {0, n};
    const float *x = row;
    if (p->words) {  /* the bitmask first: a NaN/+inf anywhere is the input's, then a copy */
        for (int64_t i = 0; i < V; i++)
            if (isnan(row[i]) || row[i] == INFINITY) return -2;
        for (int64_t i = 0; i < V; i++)
            w->a[i] = (p->words[i / 32] >> (i % 32)) & 1u ? row[i] : -INFINITY;
        x = w->a;
    }
    for (int64_t i = 0; i < n && (p->penalties || p->dry || p->ngram > 0); i++)
        if (isnan(row[hist[i]]) || row[hist[i]] == INFINITY) return -2;
    for (int64_t i = 0; i < p->n_bias; i++)
        if (isnan(row[p->bias_ids[i]]) || row[p->bias_ids[i]] == INFINITY) return -2;
    if (p->n_bias) {
        CHECK(fs_logit_bias(x, w->a, 1, V, p->bias_ids, p->bias_values, p->n_bias) == 0);
        x = w->a;
    }
    if (p->penalties) {
        CHECK(fs_penalties(x, w->a, 1, V, hist, n, offsets, &p->repeat, &p->frequency,
                           &p->presence, &p->penalty_last_n, w->counts, V) == 0);
        x = w->a;
    }
    if (p->dry) {
        CHECK(fs_dry(x, w->a, 1, V, hist, n, offsets, &p->dry_multiplier, &p->dry_base,
                     &p->dry_allowed_length, &p->dry_last_n, brk, V, w->z, n > 0 ? n : 1,
                     w->best, V) == 0);
        x = w->a;
    }
    if (p->ngram > 0) {  /* last here, first in fs_chain_row: its bans commute */
        CHECK(fs_no_repeat_ngram(x, w->a, 1, V, hist, n, offsets, &p->ngram, w->z,
                                 n > 0 ? n : 1) == 0);
        x = w->a;
    }
    int32_t tok;
    if (p->fused) {
        CHECK(fs_sample_canonical_row(x, V, p->top_k, p->top_p, p->min_p, p->temperature,
                                      p->min_keep, p->temperature_last, p->seed, p->position,
                                      &tok, w->ws, w->ws_bytes, 0) == 0);
        return tok;
    }
    int64_t c;
    if (p->first) {  /* the stage on the whole row (after its temperature), compacted */
        const double *a = &p->first_a, *b = &p->first_b;
        const int64_t *mk = &p->first_min_keep;
        float *f = w->tmp, *src = (float *)x;
        double *d = w->dws;
        int64_t fl = V, dl = w->dws_len;
        for (int64_t i = 0; i < V; i++)
            if (isnan(x[i]) || x[i] == INFINITY) return -2;
        if (p->first_temperature != 1.0) {
            CHECK(fs_temperature(x, w->b, 1, V, &p->first_temperature) == 0);
            src = w->b;
        }
        int rc = -1;
        switch (p->first) {
        case FS_CHAIN_EPSILON: rc = fs_epsilon(src, w->work, 1, V, a, mk, f, fl, d, dl); break;
        case FS_CHAIN_ETA: rc = fs_eta(src, w->work, 1, V, a, mk, f, fl, d, dl); break;
        case FS_CHAIN_TOP_A: rc = fs_top_a(src, w->work, 1, V, a, mk, f, fl, d, dl); break;
        case FS_CHAIN_P_LESS: rc = fs_p_less(src, w->work, 1, V, mk, f, fl, d, dl); break;
        case FS_CHAIN_TOP_N_SIGMA: rc = fs_top_n_sigma(src, w->work, 1, V, a, mk, f, fl, d, dl); break;
        case FS_CHAIN_XTC: rc = fs_xtc(src, w->work, 1, V, a, b, mk, &p->seed, &p->position, f, fl, d, dl); break;
        case FS_CHAIN_WHOLE_ROW: memcpy(w->work, src, sizeof(float) * (size_t)V); rc = 0; break;
        }
        CHECK(rc == 0, "first kind %d rc %d", p->first, rc);
        c = 0;
        for (int64_t i = 0; i < V; i++) {
            if (w->work[i] == -INFINITY) continue;
            w->ids[c] = (int32_t)i;
            w->vals[c++] = w->work[i];
        }
    } else {
        CHECK(fs_truncate_canonical_row(x, V, p->top_k, p->top_p, p->min_p, p->min_keep,
                                        w->ids, w->vals, V, &c, w->ws, w->ws_bytes, 0) == 0);
    }
    if (c <= 0) return -2;
    float *cur = w->vals, *next = w->b;
    for (int s = 0; s < p->n_after; s++) {
        const double *a = &p->after_a[s], *b = &p->after_b[s], *cc = &p->after_c[s];
        const int64_t *mk = &p->after_min_keep[s];
        int64_t k = (int64_t)*a;
        float *f = w->tmp;
        double *d = w->dws;
        int64_t fl = V, dl = w->dws_len;
        int rc = -1;
        switch (p->after[s]) {
        case FS_CHAIN_XTC: rc = fs_xtc(cur, next, 1, c, a, b, mk, &p->seed, &p->position, f, fl, d, dl); break;
        case FS_CHAIN_TEMPERATURE: rc = fs_temperature(cur, next, 1, c, a); break;
        case FS_CHAIN_TOP_K: rc = fs_top_k(cur, next, 1, c, &k, mk, f, fl, d, dl); break;
        case FS_CHAIN_TOP_P: rc = fs_top_p(cur, next, 1, c, a, mk, f, fl, d, dl); break;
        case FS_CHAIN_MIN_P: rc = fs_min_p(cur, next, 1, c, a, mk, f, fl, d, dl); break;
        case FS_CHAIN_TYPICAL: rc = fs_typical(cur, next, 1, c, a, mk, f, fl, d, dl); break;
        case FS_CHAIN_TOP_N_SIGMA: rc = fs_top_n_sigma(cur, next, 1, c, a, mk, f, fl, d, dl); break;
        case FS_CHAIN_EPSILON: rc = fs_epsilon(cur, next, 1, c, a, mk, f, fl, d, dl); break;
        case FS_CHAIN_ETA: rc = fs_eta(cur, next, 1, c, a, mk, f, fl, d, dl); break;
        case FS_CHAIN_TOP_A: rc = fs_top_a(cur, next, 1, c, a, mk, f, fl, d, dl); break;
        case FS_CHAIN_P_LESS: rc = fs_p_less(cur, next, 1, c, mk, f, fl, d, dl); break;
        case FS_CHAIN_TAIL_FREE: rc = fs_tail_free(cur, next, 1, c, a, mk, f, fl, d, dl); break;
        case FS_CHAIN_DYNAMIC_TEMPERATURE: rc = fs_dynamic_temperature(cur, next, 1, c, a, b, cc, d, dl); break;
        case FS_CHAIN_SMOOTHING: rc = fs_smoothing(cur, next, 1, c, a, b); break;
        }
        CHECK(rc == 0, "after kind %d rc %d", p->after[s], rc);
        float *t = cur; cur = next; next = t;
    }
    if (p->terminal == FS_CHAIN_GREEDY) {  /* the first maximum, a plain loop */
        tok = -1;
        for (int64_t i = 0; i < c; i++)
            if (cur[i] > -INFINITY && (tok < 0 || cur[i] > cur[tok])) tok = (int32_t)i;
    } else if (p->terminal == FS_CHAIN_ADAPTIVE_P) {  /* reshape, draw, p before reshaping */
        CHECK(fs_adaptive_p(cur, next, 1, c, &p->terminal_m, &p->terminal_mu, &p->terminal_w,
                            w->dws, w->dws_len) == 0);
        CHECK(fs_draw(next, 1, c, &p->seed, &p->position, &tok, w->ws, w->ws_bytes, 0) == 0);
        pieces_lp = NAN;
        const int64_t t64 = tok;
        if (tok >= 0) CHECK(fs_token_logprob(cur, 1, c, &t64, &pieces_lp, pieces_isa) == 0);
        cur = next;
    } else {
        CHECK(fs_draw(cur, 1, c, &p->seed, &p->position, &tok, w->ws, w->ws_bytes, 0) == 0);
    }
    *drawn = cur;
    *nd = c;
    *k = tok;
    return tok < 0 ? -2 : w->ids[tok];
}

static fs_chain_params random_program(void) {
    fs_chain_params p;
    memset(&p, 0, sizeof p);
    p.penalties = below(3) != 0;
    p.repeat = 1.0 + uniform01();
    p.frequency = uniform01() * 0.3;
    p.presence = uniform01() * 0.3;
    p.penalty_last_n = below(3) == 0 ? -1 : 1 + below(64);
    p.dry = below(3) != 0;
    p.dry_multiplier = uniform01() * 2.0;
    p.dry_base = 1.0 + uniform01();
    p.dry_allowed_length = below(4);
    p.dry_last_n = below(3) == 0 ? -1 : below(300);
    p.ngram = below(4) == 0 ? 1 + below(4) : 0;
    p.fused = (int)below(2);
    p.top_k = below(50);
    p.top_p = below(2) ? 1.0 : 0.5 + 0.5 * uniform01();
    p.min_p = below(2) ? 0.0 : 0.2 * uniform01();
    p.min_keep = 1 + below(3);
    p.temperature = below(4) == 0 ? 0.0 : 0.5 + uniform01();
    p.temperature_last = (int)below(2);
    p.n_after = p.fused ? 0 : (int)below(FS_CHAIN_MAX_AFTER + 1);
    for (int s = 0; s < p.n_after; s++) {
        p.after[s] = 1 + (int)below(FS_CHAIN_SMOOTHING);   /* every kind */
        p.after_a[s] = p.after[s] == FS_CHAIN_TOP_K ? (double)below(30)
                       : p.after[s] == FS_CHAIN_EPSILON || p.after[s] == FS_CHAIN_ETA
                           ? 0.02 * uniform01() : 0.3 + uniform01();
        p.after_b[s] = 0.01 + 0.4 * uniform01();
        p.after_c[s] = 0.5 + uniform01();
        p.after_min_keep[s] = 1 + below(2);
    }
    p.first_temperature = 1.0;
    if (!p.fused && below(3) == 0) {  /* a whole-distribution stage first, or none */
        static const int kinds[7] = {FS_CHAIN_EPSILON, FS_CHAIN_ETA, FS_CHAIN_TOP_A,
                                     FS_CHAIN_P_LESS, FS_CHAIN_TOP_N_SIGMA, FS_CHAIN_XTC,
                                     FS_CHAIN_WHOLE_ROW};
        p.first = kinds[below(7)];
        p.first_a = p.first == FS_CHAIN_TOP_N_SIGMA ? 2.0 * uniform01()
                    : p.first == FS_CHAIN_XTC || p.first == FS_CHAIN_TOP_A ? uniform01()
                    : 0.03 * uniform01();
        p.first_b = 0.4 * uniform01();
        p.first_min_keep = 1 + below(3);
        if (p.first != FS_CHAIN_WHOLE_ROW && below(2))
            p.first_temperature = 0.4 + uniform01();
        if (p.first == FS_CHAIN_WHOLE_ROW && p.n_after == 0) {  /* it needs a stage */
            p.n_after = 1;
            p.after[0] = FS_CHAIN_SMOOTHING;
        }
    }
    if (!p.fused && below(5) == 0) {  /* Greedy */
        p.terminal = FS_CHAIN_GREEDY;
    } else if (!p.fused && below(4) == 0) {  /* AdaptiveP, its averages off target */
        const double decay = 0.95 * uniform01();
        p.terminal = FS_CHAIN_ADAPTIVE_P;
        p.terminal_m = below(8) == 0 ? -1.0 : uniform01();
        p.terminal_w = 1.0 / (1.0 - decay);
        p.terminal_mu = p.terminal_w * uniform01();
    }
    p.seed = next_u64();
    p.position = next_u64();
    return p;
}

/* A LogitBias first on one program in three: up to 12 ids ascending in [0, V), with
 * repeats (their biases add up) and now and then a -inf (a ban). The arrays are
 * static: one program at a time. */
static void add_bias(fs_chain_params *p, int64_t V) {
    static int64_t ids[12];
    static double vals[12];
    p->n_bias = below(3) == 0 ? 1 + below(12) : 0;
    int64_t t = below(V);
    for (int64_t i = 0; i < p->n_bias; i++) {
        if (i && below(4)) t += below(V - t > 0 ? V - t : 1);  /* else a repeat */
        ids[i] = t < V ? t : V - 1;
        t = ids[i];
        vals[i] = below(10) == 0 ? -INFINITY : 8.0 * uniform01() - 4.0;
    }
    p->bias_ids = ids;
    p->bias_values = vals;
}

/* Now and then a packed token bitmask for the row (p->words, into *words): most bits
 * set, a sparse one, or only a few allowed ids (the row's max among them or not). */
static void add_words(fs_chain_params *p, int64_t V, uint32_t **words, int always) {
    *words = NULL;
    p->words = NULL;
    if (!always && below(3) != 0) return;
    const int64_t nw = (V + 31) / 32;
    uint32_t *m = calloc((size_t)nw, sizeof(uint32_t));
    const int style = (int)below(3);
    for (int64_t i = 0; i < V; i++) {
        int on = style == 0 ? below(8) != 0 : style == 1 ? below(3) == 0 : below(V) < 4;
        if (on) m[i / 32] |= 1u << (i % 32);
    }
    *words = m;
    p->words = m;
}

/* fs_chain_row against by_pieces on random programs, rows and histories: iters rows
 * of V in [vmin, vmin + vspan), every one under a bitmask when masked (else a third). */
static void equals_pieces(int iters, int64_t vmin, int64_t vspan, int masked) {
    int handed_back = 0;
    for (int it = 0; it < iters; it++) {
        int64_t V = vmin + below(vspan), n = below(400);
        float *row = malloc(sizeof(float) * (size_t)V);
        int64_t *hist = malloc(sizeof(int64_t) * (size_t)(n > 0 ? n : 1));
        uint8_t *brk = calloc((size_t)V, 1);
        fill_row(row, V, (int)below(NSTYLES));
        int64_t span = 1 + below(V);   /* few distinct tokens: long repeats for DRY */
        for (int64_t i = 0; i < n; i++) hist[i] = below(span);
        for (int64_t i = 0; i < 3; i++) brk[below(V)] = (uint8_t)(below(4) == 0);
        if (below(20) == 0 && n > 0) row[hist[below(n)]] = below(2) ? NAN : INFINITY;
        if (below(40) == 0) row[below(V)] = NAN;
        fs_chain_params p = random_program();
        add_bias(&p, V);
        if (p.n_bias && below(20) == 0) row[p.bias_ids[0]] = below(2) ? NAN : INFINITY;
        uint32_t *words;
        add_words(&p, V, &words, masked);
        bufs w = alloc(V, n);
        pieces_isa = (int)below(3);
        int32_t want = by_pieces(row, V, hist, n, &p, brk, &w);
        int32_t got = 7;
        int rc = fs_chain_row(row, V, hist, n, &p, brk, V, w.work, w.ids, w.vals, w.tmp, V,
                              w.counts, w.best, w.z, n > 0 ? n : 1, w.dws, w.dws_len, w.ws,
                              w.ws_bytes, pieces_isa, &got);
        if (p.first && rc == FS_CHAIN_FALLBACK && want != -2) {  /* within rounding: handed back */
            handed_back++;
            release(&w);
            free(row); free(hist); free(brk); free(words);
            continue;
        }
        CHECK(rc == (want == -2 ? FS_CHAIN_FALLBACK : FS_CHAIN_OK), "rc %d want %d", rc, want);
        CHECK(got == want, "it %d: got %d want %d", it, got, want);
        CHECK(got == -2 || (got >= 0 && got < V));
        if (p.terminal == FS_CHAIN_ADAPTIVE_P && got >= 0)
            CHECK(p.first_lp == pieces_lp, "adaptive-p lp %.17g want %.17g", p.first_lp,
                  pieces_lp);
        CHECK(!words || got < 0 || (words[got / 32] >> (got % 32)) & 1u, "a masked token %d", got);
        release(&w);
        free(row); free(hist); free(brk); free(words);
    }
    CHECK(handed_back < 20, "%d rows handed back", handed_back);
}

static void test_equals_pieces(void) { equals_pieces(600, 1, 700, 0); }

/* Rows of many blocks under a bitmask: the overlay's masked first pass and copies,
 * the gathers through the bitmask from the row's other blocks, the masked densify. */
static void test_masked_equals_pieces(void) { equals_pieces(150, 2048, 30000, 1); }

/* A whole-distribution stage or XTC after a first cut that keeps every token of a row
 * of 2048 or more (FS_CHAIN_LONG): fs_whole_first_row's survivors or
 * fs_xtc_removed_row's removed ids stand in for the stage kernel; the token is the
 * kernels' one, or the row is handed back (a decision within rounding, XTC's floor). */
static void test_long_rows_equal_pieces(void) {
    static const int kinds[8] = {FS_CHAIN_XTC, FS_CHAIN_TYPICAL, FS_CHAIN_TAIL_FREE,
                                 FS_CHAIN_EPSILON, FS_CHAIN_ETA, FS_CHAIN_TOP_A,
                                 FS_CHAIN_P_LESS, FS_CHAIN_TOP_N_SIGMA};
    int handed_back = 0;
    for (int it = 0; it < 96; it++) {
        int64_t V = 2048 + below(2000);
        float *row = malloc(sizeof(float) * (size_t)V);
        fill_row(row, V, (int)below(NSTYLES));
        fs_chain_params p;
        memset(&p, 0, sizeof p);
        p.top_p = 1.0;   /* the cut keeps every token */
        p.min_keep = 1;
        p.first_temperature = 1.0;
        p.n_after = 1 + (int)below(2);
        const int kind = kinds[it % 8];
        p.after[0] = kind;
        p.after_a[0] = kind == FS_CHAIN_XTC ? 0.5 + 0.5 * uniform01()
                       : kind == FS_CHAIN_TOP_N_SIGMA ? 2.0 * uniform01()
                       : kind == FS_CHAIN_EPSILON || kind == FS_CHAIN_ETA ? 1e-3 * uniform01()
                       : uniform01();
        p.after_b[0] = kind == FS_CHAIN_XTC ? (below(2) ? 1e-4 : 0.1) * uniform01() : 0.0;
        p.after_min_keep[0] = 1 + below(3);
        p.after[1] = FS_CHAIN_TEMPERATURE;
        p.after_a[1] = 0.5 + uniform01();
        p.seed = next_u64();
        p.position = next_u64();
        bufs w = alloc(V, 1);
        int32_t want = by_pieces(row, V, NULL, 0, &p, NULL, &w);
        int32_t got = 7;
        int rc = fs_chain_row(row, V, NULL, 0, &p, NULL, 0, w.work, w.ids, w.vals, w.tmp, V,
                              w.counts, w.best, w.z, 1, w.dws, w.dws_len, w.ws, w.ws_bytes,
                              (int)below(3), &got);
        if (rc == FS_CHAIN_FALLBACK && want != -2) {
            handed_back++;
        } else {
            CHECK(rc == (want == -2 ? FS_CHAIN_FALLBACK : FS_CHAIN_OK), "rc %d want %d", rc,
                  want);
            CHECK(got == want, "long kind %d V %lld: got %d want %d", kind, (long long)V, got,
                  want);
        }
        release(&w);
        free(row);
    }
    CHECK(handed_back < 24, "%d long rows handed back", handed_back);
}

/* fs_chain_row_logprobs: the token of fs_chain_row, and fs_logprobs (after
 * fs_topk_checked) of the survivors' row the draw read, top ids mapped to token ids:
 * bit-identical, since its short-row top-k must give fs_topk_checked's order. */
static void test_logprobs_equal_pieces(void) {
    int handed_back = 0;
    for (int it = 0; it < 300; it++) {
        const int longrow = it % 60 == 0;  /* the whole row, its one stage a no-op */
        int64_t V = longrow ? 2048 + below(500) : 1 + below(700), n = below(200),
                nlp = below(4) == 0 ? below(300) : below(25);
        float *row = malloc(sizeof(float) * (size_t)V);
        int64_t *hist = malloc(sizeof(int64_t) * (size_t)(n > 0 ? n : 1));
        uint8_t *brk = calloc((size_t)V, 1);
        fill_row(row, V, (int)below(NSTYLES));
        for (int64_t i = 0; i < n; i++) hist[i] = below(1 + below(V));
        fs_chain_params p = random_program();
        add_bias(&p, V);
        p.fused = 0;
        p.terminal = 0;  /* Dist: these are its draw's log-probabilities */
        if (p.first == FS_CHAIN_WHOLE_ROW && p.n_after == 0) {
            p.n_after = 1;
            p.after[0] = FS_CHAIN_SMOOTHING;
        }
        if (longrow) {  /* XTC that never fires on 2048+ survivors leaves the row itself */
            p.first = FS_CHAIN_WHOLE_ROW;
            p.first_temperature = 1.0;   /* (the whole row takes none) */
            p.n_after = 1;
            p.after[0] = FS_CHAIN_XTC;
            p.after_a[0] = 0.0;
        }
        bufs w = alloc(V, n);
        float *lp = malloc(sizeof(float)), *top_lp = malloc(sizeof(float) * (size_t)(nlp + 1));
        int32_t *rank = malloc(sizeof(int32_t)), *top = malloc(sizeof(int32_t) * (size_t)(nlp + 1));
        int32_t got = 7;
        int rc = fs_chain_row_logprobs(row, V, hist, n, &p, brk, V, w.work, w.ids, w.vals, w.tmp,
                                       V, w.counts, w.best, w.z, n > 0 ? n : 1, w.dws, w.dws_len,
                                       w.ws, w.ws_bytes, 0, nlp, lp, rank, top, top_lp, &got);
        const float *d;
        int64_t nd;
        int32_t k;
        bufs w2 = alloc(V, n);
        int32_t want = by_pieces_at(row, V, hist, n, &p, brk, &w2, &d, &nd, &k);
        if (p.first && rc == FS_CHAIN_FALLBACK && want != -2) {  /* handed back */
            handed_back++;
            want = -2;
        }
        CHECK(rc == (want == -2 ? FS_CHAIN_FALLBACK : FS_CHAIN_OK), "rc %d want %d", rc, want);
        CHECK(got == want, "it %d: got %d want %d", it, got, want);
        if (want >= 0) {
            int64_t kk = nlp > 1 ? nlp : 1;
            kk = kk < nd ? kk : nd;
            float *tv = malloc(sizeof(float) * (size_t)kk), *wlp = malloc(sizeof(float));
            float *wtop_lp = malloc(sizeof(float) * (size_t)(nlp + 1));
            int32_t *ti = malloc(sizeof(int32_t) * (size_t)kk), *wrank = malloc(sizeof(int32_t));
            int32_t *wtop = malloc(sizeof(int32_t) * (size_t)(nlp + 1));
            uint8_t inv;
            void *tws = malloc(fs_topk_ws_bytes(nd));
            CHECK(fs_topk_checked(d, 1, nd, kk, tv, ti, &inv, tws, fs_topk_ws_bytes(nd), 0) == 0);
            int64_t tk = k;
            CHECK(fs_logprobs(d, 1, nd, &tk, tv, ti, kk, nlp, wlp, wrank, wtop, wtop_lp, 0) == 0);
            CHECK(lp[0] == wlp[0] && rank[0] == wrank[0], "it %d: lp %g/%g rank %d/%d", it,
                  (double)lp[0], (double)wlp[0], rank[0], wrank[0]);
            for (int64_t q = 0; q < nlp; q++) {
                int32_t id = wtop[q] >= 0 ? w2.ids[wtop[q]] : -1;
                CHECK(top[q] == id && (top_lp[q] == wtop_lp[q] || (isnan(top_lp[q]) && isnan(wtop_lp[q]))),
                      "it %d q %lld: id %d/%d", it, (long long)q, top[q], id);
            }
            free(tv); free(wlp); free(wtop_lp); free(ti); free(wrank); free(wtop); free(tws);
        }
        release(&w); release(&w2);
        free(lp); free(top_lp); free(rank); free(top);
        free(row); free(hist); free(brk);
    }
    CHECK(handed_back < 10, "%d rows handed back", handed_back);
    /* a fused program is a size error: it has no survivors' row */
    int64_t V = 8;
    float row[8] = {0};
    uint8_t brk[8] = {0};
    fs_chain_params p = random_program();
    p.fused = 1;
    bufs w = alloc(V, 1);
    float lp, tl[2];
    int32_t rank, ti[2], tok = 3;
    CHECK(fs_chain_row_logprobs(row, V, NULL, 0, &p, brk, V, w.work, w.ids, w.vals, w.tmp, V,
                                w.counts, w.best, w.z, 1, w.dws, w.dws_len, w.ws, w.ws_bytes, 0,
                                2, &lp, &rank, ti, tl, &tok) == FS_CHAIN_E_SIZE && tok == -2);
    release(&w);
}

static void test_bad_sizes(void) {
    int64_t V = 16, hist[2] = {1, 2};
    float row[16] = {0};
    uint8_t brk[16] = {0};
    fs_chain_params p = random_program();
    bufs w = alloc(V, 2);
    int32_t tok = 5;
    CHECK(fs_chain_row(row, V, hist, 2, &p, brk, V, w.work, w.ids, w.vals, w.tmp, V - 1,
                       w.counts, w.best, w.z, 2, w.dws, w.dws_len, w.ws, w.ws_bytes, 0,
                       &tok) == FS_CHAIN_E_SIZE && tok == -2);
    CHECK(fs_chain_row(row, 0, hist, 2, &p, brk, V, w.work, w.ids, w.vals, w.tmp, V,
                       w.counts, w.best, w.z, 2, w.dws, w.dws_len, w.ws, w.ws_bytes, 0,
                       &tok) == FS_CHAIN_E_SIZE);
    CHECK(fs_chain_row(row, V, NULL, 2, &p, brk, V, w.work, w.ids, w.vals, w.tmp, V,
                       w.counts, w.best, w.z, 2, w.dws, w.dws_len, w.ws, w.ws_bytes, 0,
                       &tok) == FS_CHAIN_E_SIZE);
    p.n_after = FS_CHAIN_MAX_AFTER + 1;
    CHECK(fs_chain_row(row, V, hist, 2, &p, brk, V, w.work, w.ids, w.vals, w.tmp, V,
                       w.counts, w.best, w.z, 2, w.dws, w.dws_len, w.ws, w.ws_bytes, 0,
                       &tok) == FS_CHAIN_E_SIZE);
    p = random_program();
    p.fused = 1;
    p.terminal = 0;
    p.penalties = p.dry = 1;
    p.dry_last_n = -1;
    int64_t bad_hist[2] = {1, 99};  /* a token outside [0, V): never read as an index */
    CHECK(fs_chain_row(row, V, bad_hist, 2, &p, brk, V, w.work, w.ids, w.vals, w.tmp, V,
                       w.counts, w.best, w.z, 2, w.dws, w.dws_len, w.ws, w.ws_bytes, 0,
                       &tok) == FS_CHAIN_FALLBACK);
    CHECK(fs_chain_row(row, V, hist, 2, &p, brk, V, w.work, w.ids, w.vals, w.tmp, V,
                       w.counts, w.best, w.z, 1, w.dws, w.dws_len, w.ws, w.ws_bytes, 0,
                       &tok) != FS_CHAIN_OK);   /* z shorter than the DRY window */
    /* the edited-row entries: bad sizes and ids outside [0, V) */
    int bad = 7;
    CHECK(fs_canonical_copy(NULL, w.work, V, &bad, w.ws, w.ws_bytes, 0) == FS_E_SIZE);
    CHECK(fs_canonical_copy(row, w.work, V, &bad, w.ws, 1, 0) == FS_E_WORKSPACE);
    CHECK(fs_canonical_copy(row, w.work, V, &bad, w.ws, w.ws_bytes, 0) == FS_OK && bad == 0);
    int64_t far[3] = {-5, 3, 1000};
    int32_t far32[2] = {-1, 99};
    int64_t cnt0 = 0;
    CHECK(fs_sample_canonical_edited(w.work, NULL, V, far, -1, NULL, 0, NULL, 0, NULL, 0, 3, 1.0, 0.0, 1.0, 1, 1, 2,
                                     &tok, w.ws, w.ws_bytes, 0) == FS_E_SIZE);
    CHECK(fs_sample_canonical_edited(w.work, NULL, V, far, 3, far32, 2, far, -1, NULL, 0, 3, 1.0, 0.0,
                                     1.0, 1, 1, 2, &tok, w.ws, w.ws_bytes, 0) == FS_E_SIZE);
    CHECK(fs_sample_canonical_edited(w.work, NULL, V, far, 3, far32, 2, far, 3, NULL, 0, 3, 1.0, 0.0, 1.0, 1, 1, 2,
                                     &tok, w.ws, w.ws_bytes, 0) == FS_OK && tok >= 0 && tok < V);
    /* a Mirostat terminal: not fused, not after a Mirostat first, only the Mirostats;
     * fs_mirostat_row: vocab >= n, a Mirostat kind */
    p = random_program();
    p.fused = 1;
    p.terminal = FS_CHAIN_MIROSTAT;
    CHECK(fs_chain_row(row, V, hist, 2, &p, brk, V, w.work, w.ids, w.vals, w.tmp, V,
                       w.counts, w.best, w.z, 2, w.dws, w.dws_len, w.ws, w.ws_bytes, 0,
                       &tok) == FS_CHAIN_E_SIZE);
    p.fused = 0;
    p.first = FS_CHAIN_MIROSTAT_V2;
    CHECK(fs_chain_row(row, V, hist, 2, &p, brk, V, w.work, w.ids, w.vals, w.tmp, V,
                       w.counts, w.best, w.z, 2, w.dws, w.dws_len, w.ws, w.ws_bytes, 0,
                       &tok) == FS_CHAIN_E_SIZE);
    p.first = 0;
    p.terminal = FS_CHAIN_TOP_K;
    CHECK(fs_chain_row(row, V, hist, 2, &p, brk, V, w.work, w.ids, w.vals, w.tmp, V,
                       w.counts, w.best, w.z, 2, w.dws, w.dws_len, w.ws, w.ws_bytes, 0,
                       &tok) == FS_CHAIN_E_SIZE);
    double lp;
    CHECK(fs_mirostat_row(row, V, V - 1, FS_CHAIN_MIROSTAT, 5.0, 10, 1, 2, &tok, &lp, w.ws,
                          w.ws_bytes, 0) == FS_E_SIZE);
    CHECK(fs_mirostat_row(row, V, V, FS_CHAIN_TOP_K, 5.0, 10, 1, 2, &tok, &lp, w.ws,
                          w.ws_bytes, 0) == FS_E_PARAM);
    CHECK(fs_mirostat_row(row, V, V, FS_CHAIN_MIROSTAT, NAN, 10, 1, 2, &tok, &lp, w.ws,
                          w.ws_bytes, 0) == FS_E_PARAM);
    CHECK(fs_mirostat_row(row, V, V, FS_CHAIN_MIROSTAT_V2, 5.0, 0, 1, 2, &tok, &lp, w.ws, 1,
                          0) == FS_E_WORKSPACE);
    float inval[4] = {NAN, 0.0f, 1.0f, 2.0f};
    CHECK(fs_mirostat_row(inval, 4, V, FS_CHAIN_MIROSTAT_V2, 5.0, 0, 1, 2, &tok, &lp, w.ws,
                          w.ws_bytes, 0) == FS_OK && tok == -1);
    /* fs_xtc_removed_row: a temperature needs tout */
    CHECK(fs_xtc_removed_row(row, V, 1.0, 0.1, 0.5, 1, 2, NULL, w.ids, V, &cnt0, w.ws,
                             w.ws_bytes, 0) == FS_E_SIZE);
    CHECK(fs_xtc_removed_row(inval, 4, 1.0, 0.1, 1.0, 1, 2, NULL, w.ids, V, &cnt0, w.ws,
                             w.ws_bytes, 0) == FS_OK && cnt0 == -1);
    int64_t cnt = 9;
    CHECK(fs_truncate_canonical_edited(w.work, NULL, V, far, 3, far32, 2, far, 3, NULL, 0, 3, 1.0, 0.0, 1, w.ids,
                                       w.vals, 2, &cnt, w.ws, w.ws_bytes, 0) == FS_E_SIZE);
    CHECK(fs_truncate_canonical_edited(w.work, NULL, V, far, 3, far32, 2, far, 3, NULL, 1, 3, 1.0, 0.0, 1, w.ids,
                                       w.vals, V, &cnt, w.ws, w.ws_bytes, 0) == FS_OK && cnt == -1);
    release(&w);
}

/* fs_whole_first_row against the stage kernels run on the whole row (after
 * fs_temperature when a temperature comes first): the same survivors (ids ascending,
 * values), at every instruction-set level, for every kind, on random rows of every
 * style (and constant rows, where p sits exactly on round thresholds); a row within
 * rounding of its threshold is handed back (-3), never decided differently. XTC with
 * draw and the Mirostats: the token of fs_draw over the stage's output, and (the
 * Mirostats) its log-probability there within 1e-12. */
static void test_whole_first_equals_stage_kernels(void) {
    static const int kinds[10] = {FS_CHAIN_EPSILON, FS_CHAIN_ETA, FS_CHAIN_TOP_A,
                                  FS_CHAIN_P_LESS, FS_CHAIN_TOP_N_SIGMA, FS_CHAIN_XTC,
                                  FS_CHAIN_MIROSTAT, FS_CHAIN_MIROSTAT_V2, FS_CHAIN_TYPICAL,
                                  FS_CHAIN_TAIL_FREE};
    int decided = 0, runs = 0;
    for (int it = 0; it < 800; it++) {
        int64_t V = 1 + below(it % 3 == 0 ? 3000 : 400);
        float *row = malloc(sizeof(float) * (size_t)V);
        if (below(10) == 0) {
            for (int64_t i = 0; i < V; i++) row[i] = 0.25f;
        } else {
            fill_row(row, V, (int)below(NSTYLES));
        }
        if (below(30) == 0) row[below(V)] = below(2) ? NAN : INFINITY;
        const int kind = kinds[below(10)];
        const int miro = kind == FS_CHAIN_MIROSTAT || kind == FS_CHAIN_MIROSTAT_V2;
        const int cdf = kind == FS_CHAIN_TYPICAL || kind == FS_CHAIN_TAIL_FREE;
        const int thr = kind == FS_CHAIN_EPSILON || kind == FS_CHAIN_ETA ||
                        kind == FS_CHAIN_TOP_A || kind == FS_CHAIN_P_LESS;
        double a = kind == FS_CHAIN_TOP_N_SIGMA ? 3.0 * uniform01() - 0.5
                   : kind == FS_CHAIN_XTC ? 1.2 * uniform01()
                   : kind == FS_CHAIN_TOP_A ? 1.5 * uniform01()
                   : cdf ? 1.1 * uniform01()
                   : miro ? 12.0 * uniform01() : 0.05 * uniform01();
        if (!miro && !cdf && below(8) == 0) a = 1.0 / (double)V;  /* p == a on a constant row */
        const double b = kind == FS_CHAIN_MIROSTAT ? (double)(1 + below(150)) : 0.6 * uniform01();
        const int64_t mk = miro ? 1 : 1 + below(4), m64 = (int64_t)b;
        const double t = below(2) ? 1.0 : 0.3 + 1.5 * uniform01();
        const uint64_t seed = next_u64(), pos = next_u64();
        bufs w = alloc(V, 1);
        int rc = 0;
        float *f = w.tmp, *in = row;
        double *d = w.dws;
        int64_t fl = V, dl = w.dws_len;
        if (t != 1.0) {
            CHECK(fs_temperature(row, w.b, 1, V, &t) == 0);
            in = w.b;
        }
        switch (kind) {
        case FS_CHAIN_EPSILON: rc = fs_epsilon(in, w.a, 1, V, &a, &mk, f, fl, d, dl); break;
        case FS_CHAIN_ETA: rc = fs_eta(in, w.a, 1, V, &a, &mk, f, fl, d, dl); break;
        case FS_CHAIN_TOP_A: rc = fs_top_a(in, w.a, 1, V, &a, &mk, f, fl, d, dl); break;
        case FS_CHAIN_P_LESS: rc = fs_p_less(in, w.a, 1, V, &mk, f, fl, d, dl); break;
        case FS_CHAIN_TOP_N_SIGMA: rc = fs_top_n_sigma(in, w.a, 1, V, &a, &mk, f, fl, d, dl); break;
        case FS_CHAIN_XTC: rc = fs_xtc(in, w.a, 1, V, &a, &b, &mk, &seed, &pos, f, fl, d, dl); break;
        case FS_CHAIN_MIROSTAT: rc = fs_mirostat(in, w.a, 1, V, &a, &m64, f, fl, d, dl); break;
        case FS_CHAIN_MIROSTAT_V2: rc = fs_mirostat_v2(in, w.a, 1, V, &a, d, dl); break;
        case FS_CHAIN_TYPICAL: rc = fs_typical(in, w.a, 1, V, &a, &mk, f, fl, d, dl); break;
        case FS_CHAIN_TAIL_FREE: rc = fs_tail_free(in, w.a, 1, V, &a, &mk, f, fl, d, dl); break;
        }
        int invalid = 0;
        for (int64_t i = 0; i < V; i++) invalid |= isnan(row[i]) || row[i] == INFINITY;
        CHECK(invalid || rc == 0, "kind %d rc %d", kind, rc);
        for (int isa = 0; isa <= 2; isa++) {
            for (int draw = 0; draw <= (kind == FS_CHAIN_XTC || miro || thr); draw++) {
                if (miro && !draw) continue;
                if (kind == FS_CHAIN_XTC && !draw && !invalid) {
                    /* fs_xtc_removed_row: the finite tokens fs_xtc masked, and with a
                     * temperature the divided row, bit for bit */
                    int64_t nr = 99;
                    runs++;
                    CHECK(fs_xtc_removed_row(row, V, a, b, t, seed, pos, w.tmp, w.best, V, &nr,
                                             w.ws, w.ws_bytes, isa) == FS_OK);
                    if (nr != -3) {
                        decided++;
                        int64_t q = 0, wrong = 0;
                        for (int64_t i = 0; i < V; i++) {
                            const int gone = in[i] > -INFINITY && w.a[i] == -INFINITY;
                            const int listed = q < nr && w.best[q] == i;
                            q += listed;
                            wrong += gone != listed && !(mk > 1 && nr > 0);
                            wrong += t != 1.0 && memcmp(&w.tmp[i], &in[i], sizeof(float));
                        }
                        CHECK(nr >= 0 && q == nr && wrong == 0, "xtc removed %lld, %lld wrong",
                              (long long)nr, (long long)wrong);
                    }
                }
                if (miro && t == 1.0) {  /* fs_mirostat_row on the row: whole_first's draw */
                    int32_t mt = 99, wt = 98;
                    double mlp = 0.0, wlp = 1.0;
                    int64_t wc = 99;
                    CHECK(fs_mirostat_row(row, V, V, kind, a, b, seed, pos, &mt, &mlp, w.ws,
                                          w.ws_bytes, isa) == FS_OK);
                    CHECK(fs_whole_first_row(row, V, kind, a, b, mk, 1.0, seed, pos, 1.0, w.ids,
                                             w.vals, V, &wc, &wt, &wlp, w.ws, w.ws_bytes,
                                             isa) == FS_OK);
                    CHECK(invalid ? mt == -1 : wc == -3 ? mt == -3
                                             : mt == wt && !memcmp(&mlp, &wlp, sizeof mlp),
                          "mirostat_row %d want %d", mt, wt);
                }
                int64_t cnt = 99;
                int32_t tok = 99;
                double lp = 0.0;
                runs++;
                rc = fs_whole_first_row(row, V, kind, a, b, mk, t, seed, pos, draw, w.ids, w.vals,
                                        V, &cnt, &tok, &lp, w.ws, w.ws_bytes, isa);
                CHECK(rc == FS_OK, "rc %d", rc);
                if (invalid) {
                    CHECK(cnt == -1, "kind %d: an invalid row gave %lld", kind, (long long)cnt);
                    continue;
                }
                if (cnt == -3) continue;  /* handed back: the stage kernel decides */
                decided++;
                if (draw && cnt == 0) {  /* drawn in the call (a threshold: when it could) */
                    int32_t want;
                    CHECK(fs_draw(w.a, 1, V, &seed, &pos, &want, w.ws, w.ws_bytes, 0) == 0);
                    CHECK(cnt == 0 && tok == want, "kind %d draw %d want %d", kind, tok, want);
                    if (miro && tok == want) {
                        const int64_t t64 = want;
                        double wl;
                        CHECK(fs_token_logprob(w.a, 1, V, &t64, &wl, 0) == 0);
                        CHECK(fabs(lp - wl) <= 1e-12 * (1.0 + fabs(wl)), "lp %g want %g", lp, wl);
                    }
                    continue;
                }
                int64_t c = 0, bad = 0;
                for (int64_t i = 0; i < V; i++) {
                    if (w.a[i] == -INFINITY) continue;
                    bad += c >= cnt || w.ids[c] != i || w.vals[c] != w.a[i];
                    c++;
                }
                CHECK(c == cnt && bad == 0, "kind %d V %lld isa %d: %lld survivors, want %lld",
                      kind, (long long)V, isa, (long long)cnt, (long long)c);
            }
        }
        release(&w);
        free(row);
    }
    CHECK(decided > runs * 8 / 10, "only %d of %d rows decided without the stage kernels",
          decided, runs);
    /* bad sizes, kinds and temperatures */
    float row[4] = {0.f, 1.f, 2.f, 3.f};
    bufs w = alloc(4, 1);
    int64_t cnt;
    int32_t tok;
    double lp;
    CHECK(fs_whole_first_row(row, 4, FS_CHAIN_EPSILON, 0.1, 0, 1, 1.0, 1, 2, 0, w.ids, w.vals,
                             4, &cnt, &tok, &lp, w.ws, 1, 0) == FS_E_WORKSPACE);
    CHECK(fs_whole_first_row(row, 4, FS_CHAIN_TEMPERATURE, 0.1, 0, 1, 1.0, 1, 2, 0, w.ids,
                             w.vals, 4, &cnt, &tok, &lp, w.ws, w.ws_bytes, 0) == FS_E_PARAM);
    CHECK(fs_whole_first_row(row, 4, FS_CHAIN_EPSILON, NAN, 0, 1, 1.0, 1, 2, 0, w.ids, w.vals,
                             4, &cnt, &tok, &lp, w.ws, w.ws_bytes, 0) == FS_E_PARAM);
    CHECK(fs_whole_first_row(row, 4, FS_CHAIN_EPSILON, 0.1, 0, 1, 0.0, 1, 2, 0, w.ids, w.vals,
                             4, &cnt, &tok, &lp, w.ws, w.ws_bytes, 0) == FS_E_PARAM);
    CHECK(fs_whole_first_row(row, 4, FS_CHAIN_XTC, 0.1, 0.1, 1, 1.0, 1, 2, -1.0, w.ids,
                             w.vals, 4, &cnt, &tok, &lp, w.ws, w.ws_bytes, 0) == FS_E_PARAM);
    /* every kind takes a temperature before it (the rules without one inside: on the
     * transformed row) */
    CHECK(fs_whole_first_row(row, 4, FS_CHAIN_XTC, 0.1, 0.1, 1, 0.5, 1, 2, 0, w.ids, w.vals,
                             4, &cnt, &tok, &lp, w.ws, w.ws_bytes, 0) == FS_OK && cnt == 4 &&
          w.vals[3] == 6.0f);
    CHECK(fs_whole_first_row(row, 4, FS_CHAIN_TAIL_FREE, 0.5, 0, 1, 0.5, 1, 2, 0, w.ids,
                             w.vals, 4, &cnt, &tok, &lp, w.ws, w.ws_bytes, 0) == FS_OK &&
          cnt >= 1 && w.ids[cnt - 1] == 3);
    CHECK(fs_whole_first_row(row, 4, FS_CHAIN_EPSILON, -1.0, 0, 1, 1.0, 1, 2, 0, w.ids, w.vals,
                             3, &cnt, &tok, &lp, w.ws, w.ws_bytes, 0) == FS_E_SIZE);  /* 4 survive */
    CHECK(fs_whole_first_row(NULL, 4, FS_CHAIN_EPSILON, 0.1, 0, 1, 1.0, 1, 2, 0, w.ids, w.vals,
                             4, &cnt, &tok, &lp, w.ws, w.ws_bytes, 0) == FS_E_SIZE);
    release(&w);
}

/* NoRepeatNGram bans the row's max, far from Penalties' window (or with no Penalties):
 * the block maxima of every history token's block must be taken again after the edits
 * (the overlay path), else the stale max sends greedy looking for a value that is gone.
 * Greedy, a top-k draw and the survivors' draw, each against the pieces. */
static void test_ngram_bans_the_max(void) {
    const int64_t V = 5000;
    float *row = malloc(sizeof(float) * (size_t)V);
    for (int64_t i = 0; i < V; i++) row[i] = (float)(i % 97) * 0.01f;
    row[4000] = 9.0f;   /* the max: banned (the history holds 7, 4000, ..., 7) */
    row[12] = 8.0f;
    int64_t hist[40];
    hist[0] = 7;
    hist[1] = 4000;
    for (int i = 2; i < 39; i++) hist[i] = 100 + i;
    hist[39] = 7;
    for (int c = 0; c < 6; c++) {
        fs_chain_params p;
        memset(&p, 0, sizeof p);
        p.ngram = 2;
        p.penalties = c % 2;
        p.repeat = 1.2;
        p.penalty_last_n = 4;   /* far from token 4000's block */
        p.first_temperature = 1.0;
        p.min_keep = 1;
        p.top_p = 1.0;
        if (c < 4) {
            p.fused = 1;
            p.temperature = c < 2 ? 0.0 : 0.8;   /* greedy, then a draw */
            p.top_k = c < 2 ? 0 : 3;
            p.temperature_last = 1;
        } else {
            p.top_k = 5;
            p.n_after = 1;
            p.after[0] = FS_CHAIN_TEMPERATURE;
            p.after_a[0] = 0.7;
        }
        p.seed = 3;
        p.position = (uint64_t)c;
        bufs w = alloc(V, 40);
        const int32_t want = by_pieces(row, V, hist, 40, &p, NULL, &w);
        int32_t got = 7;
        const int rc = fs_chain_row(row, V, hist, 40, &p, NULL, 0, w.work, w.ids, w.vals,
                                    w.tmp, V, w.counts, w.best, w.z, 40, w.dws, w.dws_len,
                                    w.ws, w.ws_bytes, (int)below(3), &got);
        CHECK(rc == FS_CHAIN_OK && got == want && got != 4000, "ngram case %d: rc %d got %d want %d",
              c, rc, got, want);
        CHECK(c >= 2 || want == 12, "greedy after the ban: %d", want);
        release(&w);
    }
    free(row);
}

int main(void) {
    test_ngram_bans_the_max();
    test_equals_pieces();
    test_masked_equals_pieces();
    test_long_rows_equal_pieces();
    test_logprobs_equal_pieces();
    test_whole_first_equals_stage_kernels();
    test_bad_sizes();
    printf("test_chain: %d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}

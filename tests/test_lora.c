/* test_lora.c - LoRA adapters at inference (src/lora.c, format/lora_format.c):
 *   - against two independent references recorded in tests/data/lora_ref.txt
 *     (numpy float64 on PEFT-merged weights, llama.cpp with the GGUF adapter): the
 *     greedy ids and each step's top-1 log-prob of the F32 model with the adapter;
 *   - the forms agree exactly: PEFT (F32 or BF16 file) and GGUF adapters, on a
 *     GGUF or an HF base (q / k rows permuted either way) give bitwise the same
 *     logits; alpha, rsLoRA and the caller's scale enter only as their product;
 *     a zero B or scale 0 is the base model bit for bit;
 *   - batch invariance: sequences with two adapters and none, mixed prefill
 *     chunks and decode rows in one batch, get bitwise their logits alone;
 *   - sessions: set_lora resets on a change, share_prefix refuses mixed adapters;
 *   - bad adapters are refused with a message that says what is wrong.
 * Models and adapters are written here (herd_init_model, lora_writer.h).
 */
#include <math.h>
#include <stdint.h>
#include <unistd.h>

#include <omp.h>

#include "herd.h"
#include "kernels/kernels.h"
#include "lora_writer.h"
#include "test.h"

#pragma GCC diagnostic ignored "-Wformat-truncation" /* paths under a short mkdtemp dir */

#ifndef DATA_DIR
#define DATA_DIR "tests/data"
#endif
#define MAXN 64

static char tmp[] = "/tmp/herd_lora_XXXXXX";
static herd_error err;

/* ---- the fixture ---------------------------------------------------------- */

typedef struct {
    char name[32], mk[256];
    unsigned long long fnv;              /* of the GGUF adapter herd wrote when llama.cpp ran it */
    int greedy_np[MAXN], greedy_ll[MAXN], greedy_llh[MAXN];
    double lp_np[MAXN], lp_ll[MAXN];
} fx_case;

typedef struct {
    char shape[256];
    int seed, n_prompt, n_gen, greedy_base[MAXN];
    int32_t prompt[MAXN];
    fx_case cases[4];
    int n_cases;
} fixture;

static int read_ints(const char *s, int *out) {
    int n = 0;
    char *e;
    for (long v = strtol(s, &e, 10); e != s && n < MAXN; v = strtol(s, &e, 10)) out[n++] = (int)v, s = e;
    return n;
}
static int read_doubles(const char *s, double *out) {
    int n = 0;
    char *e;
    for (double v = strtod(s, &e); e != s && n < MAXN; v = strtod(s, &e)) out[n++] = v, s = e;
    return n;
}

static int load_fixture(fixture *f) {
    memset(f, 0, sizeof *f);
    FILE *fp = fopen(DATA_DIR "/lora_ref.txt", "r");
    if (!fp) return 0;
    char line[4096];
    fx_case *c = NULL;
    while (fgets(line, sizeof line, fp)) {
        line[strcspn(line, "\n")] = 0;
        char *v = strchr(line, ' ');
        if (line[0] == '#' || !v) continue;
        *v++ = 0;
        int tmpi[MAXN];
        if (!strcmp(line, "shape")) snprintf(f->shape, sizeof f->shape, "%s", v);
        else if (!strcmp(line, "seed")) f->seed = atoi(v);
        else if (!strcmp(line, "prompt")) {
            f->n_prompt = read_ints(v, tmpi);
            for (int i = 0; i < f->n_prompt; i++) f->prompt[i] = tmpi[i];
        } else if (!strcmp(line, "n_gen")) f->n_gen = atoi(v);
        else if (!strcmp(line, "greedy_base")) read_ints(v, f->greedy_base);
        else if (!strcmp(line, "case") && f->n_cases < 4) {
            c = &f->cases[f->n_cases++];
            snprintf(c->name, sizeof c->name, "%s", v);
        } else if (c && !strcmp(line, "mk_lora")) snprintf(c->mk, sizeof c->mk, "%s", v);
        else if (c && !strcmp(line, "greedy_np")) read_ints(v, c->greedy_np);
        else if (c && !strcmp(line, "greedy_llamacpp")) read_ints(v, c->greedy_ll);
        else if (c && !strcmp(line, "greedy_llamacpp_herd_gguf")) read_ints(v, c->greedy_llh);
        else if (c && !strcmp(line, "herd_gguf_fnv1a")) c->fnv = strtoull(v, NULL, 16);
        else if (c && !strcmp(line, "logprob_np")) read_doubles(v, c->lp_np);
        else if (c && !strcmp(line, "logprob_llamacpp")) read_doubles(v, c->lp_ll);
    }
    fclose(fp);
    return f->n_gen > 0 && f->n_gen <= MAXN && f->n_cases > 0;
}

/* "--dim 64 --layers 2 ..." (herd init's flags) into a config. */
static void parse_shape(const char *s, herd_config *c) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", s);
    for (char *k = strtok(buf, " "), *v; k && (v = strtok(NULL, " ")); k = strtok(NULL, " ")) {
        int x = atoi(v);
        if (!strcmp(k, "--dim")) c->dim = x;
        else if (!strcmp(k, "--layers")) c->n_layers = x;
        else if (!strcmp(k, "--heads")) c->n_heads = x;
        else if (!strcmp(k, "--kv-heads")) c->n_kv_heads = x;
        else if (!strcmp(k, "--ffn")) c->ffn_dim = x;
    }
    c->head_dim = c->dim / c->n_heads;
}

/* mk_lora's flags into writer parameters. */
static void parse_mk(const char *s, test_lora *p) {
    *p = (test_lora){ 8, 16, 0x7F, 1, 0, HERD_F32, 0.05f, 0 };
    char buf[256];
    snprintf(buf, sizeof buf, "%s", s);
    for (char *k = strtok(buf, " "); k; k = strtok(NULL, " ")) {
        if (!strcmp(k, "--rslora")) { p->rslora = 1; continue; }
        char *v = strtok(NULL, " ");
        if (!v) break;
        if (!strcmp(k, "--rank")) p->rank = atoi(v);
        else if (!strcmp(k, "--alpha")) p->alpha = strtof(v, NULL);
        else if (!strcmp(k, "--seed")) p->seed = strtoull(v, NULL, 10);
        else if (!strcmp(k, "--b-range")) p->b_range = strtof(v, NULL);
        else if (!strcmp(k, "--targets")) {
            p->targets = 0;
            for (const char *t = v; *t; t++) p->targets |= 1u << (strchr("qkvogud", *t) - "qkvogud");
        }
    }
}

/* ---- running -------------------------------------------------------------- */

static herd_session *new_session(const herd_model *m, const herd_lora *l) {
    herd_session_params sp = herd_session_default_params();
    sp.n_ctx = 128;
    herd_session *s = NULL;
    if (herd_session_new(&s, m, sp, &err) || herd_session_set_lora(s, l, &err)) {
        CHECKF(0, "session: %s", err.msg);
        herd_session_free(s);
        return NULL;
    }
    return s;
}

/* Greedy n ids after the prompt; logits of each step into lg ((n, V), may be
 * NULL), top-1 log-probs into lp (may be NULL). */
static int greedy(const herd_model *m, const herd_lora *l, const fixture *f, int *ids, float *lg, double *lp) {
    herd_session *s = new_session(m, l);
    if (!s) return 0;
    const int V = herd_model_config(m)->vocab_size;
    int ok = herd_session_eval(s, f->prompt, f->n_prompt, NULL, &err) == HERD_OK;
    for (int t = 0; t < f->n_gen && ok; t++) {
        const float *z = herd_session_logits(s);
        int best = 0;
        for (int v = 1; v < V; v++) best = z[v] > z[best] ? v : best;
        double sum = 0;
        for (int v = 0; v < V; v++) sum += exp((double)z[v] - z[best]);
        if (lp) lp[t] = -log(sum);
        if (lg) memcpy(lg + (size_t)t * V, z, (size_t)V * sizeof *z);
        ids[t] = best;
        int32_t id = best;
        ok = herd_session_eval(s, &id, 1, NULL, &err) == HERD_OK;
    }
    CHECKF(ok, "greedy: %s", err.msg);
    herd_session_free(s);
    return ok;
}

static herd_lora *load(const herd_model *m, const char *path, float scale) {
    herd_lora *l = NULL;
    if (herd_lora_load(&l, m, path, scale, &err)) CHECKF(0, "load %s: %s", path, err.msg);
    return l;
}

static int same_floats(const float *a, const float *b, size_t n) { return !memcmp(a, b, n * sizeof *a); }

static unsigned long long fnv1a_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    unsigned long long h = 0xcbf29ce484222325ull;
    for (int ch; (ch = fgetc(f)) != EOF;) h = (h ^ (unsigned)ch) * 0x100000001b3ull;
    fclose(f);
    return h;
}

/* ---- the checks ----------------------------------------------------------- */

static void check_case(const fixture *f, const fx_case *c, herd_model *gg, herd_model *hf, const herd_config *cfg) {
    char dir[512], gpath[512], bdir[512];
    snprintf(dir, sizeof dir, "%s/%s", tmp, c->name);
    snprintf(gpath, sizeof gpath, "%s/%s.gguf", tmp, c->name);
    snprintf(bdir, sizeof bdir, "%s/%s_bf16", tmp, c->name);
    test_lora p;
    parse_mk(c->mk, &p);
    if (tl_write(dir, gpath, cfg, &p, &err)) { CHECKF(0, "%s", err.msg); return; }
    p.dtype = HERD_BF16;
    if (tl_write(bdir, NULL, cfg, &p, &err)) { CHECKF(0, "%s", err.msg); return; }
    const int V = cfg->vocab_size, N = f->n_gen;
    float *lg[6];
    for (int i = 0; i < 6; i++) lg[i] = malloc((size_t)N * V * sizeof(float));
    int ids[6][MAXN];
    double lp[MAXN];
    herd_lora *l_peft = load(gg, dir, 1), *l_gguf = load(gg, gpath, 1), *l_bf = load(gg, bdir, 1);
    herd_lora *h_peft = load(hf, dir, 1), *h_gguf = load(hf, gpath, 1);
    if (!l_peft || !l_gguf || !l_bf || !h_peft || !h_gguf) goto out;
    CHECK(herd_lora_rank(l_peft) == p.rank);
    int n_t = 0;
    for (int t = 0; t < 7; t++) n_t += p.targets >> t & 1;
    CHECK(herd_lora_n_adapted(l_peft) == n_t * cfg->n_layers);

    /* F32 GGUF base + PEFT adapter against the references */
    greedy(gg, l_peft, f, ids[0], lg[0], lp);
    int same_np = !memcmp(ids[0], c->greedy_np, (size_t)N * sizeof(int));
    CHECKF(same_np, "%s: greedy with the adapter differs from numpy's", c->name);
    CHECKF(!memcmp(ids[0], c->greedy_ll, (size_t)N * sizeof(int)), "%s: differs from llama.cpp's", c->name);
    double worst = 0, worst_ll = 0;
    for (int t = 0; t < N; t++) {
        worst = fmax(worst, fabs(lp[t] - c->lp_np[t]));
        worst_ll = fmax(worst_ll, fabs(lp[t] - c->lp_ll[t]));
    }
    CHECKF(worst < 1e-3, "%s: top-1 log-prob off numpy's by %.3g", c->name, worst);
    CHECKF(worst_ll < 1e-3, "%s: top-1 log-prob off llama.cpp's by %.3g", c->name, worst_ll);
    printf("%s: %d greedy ids %s numpy's; top-1 log-prob within %.2g of numpy, %.2g of llama.cpp\n",
           c->name, N, same_np ? "=" : "!=", worst, worst_ll);
    CHECKF(memcmp(ids[0], f->greedy_base, (size_t)N * sizeof(int)), "%s: the adapter changed nothing", c->name);

    /* the other forms: bitwise the same logits */
    greedy(gg, l_gguf, f, ids[1], lg[1], NULL);
    CHECKF(same_floats(lg[0], lg[1], (size_t)N * V), "%s: GGUF adapter != PEFT adapter on a GGUF base", c->name);
    greedy(gg, l_bf, f, ids[2], lg[2], NULL);
    CHECKF(same_floats(lg[0], lg[2], (size_t)N * V), "%s: BF16 adapter file != F32", c->name);
    greedy(hf, h_peft, f, ids[3], lg[3], NULL);
    greedy(hf, h_gguf, f, ids[4], lg[4], NULL);
    CHECKF(same_floats(lg[3], lg[4], (size_t)N * V), "%s: GGUF adapter != PEFT adapter on an HF base", c->name);

    /* written as a GGUF adapter (herd lora convert) from the GGUF and the HF base: the very
     * file llama.cpp was run on (its hash), and loaded back it is the PEFT adapter bitwise */
    for (int src = 0; src < 2; src++) {
        char cpath[512];
        snprintf(cpath, sizeof cpath, "%s/%s_conv%d.gguf", tmp, c->name, src);
        herd_lora *back = NULL;
        if (herd_lora_save_gguf(src ? h_peft : l_peft, cpath, &err) || herd_lora_load(&back, gg, cpath, 1, &err)) {
            CHECKF(0, "%s: save_gguf: %s", c->name, err.msg);
            continue;
        }
        CHECKF(fnv1a_file(cpath) == c->fnv, "%s: the GGUF adapter written from the %s base is not the file "
               "llama.cpp ran (fnv %016llx, recorded %016llx)", c->name, src ? "HF" : "GGUF", fnv1a_file(cpath), c->fnv);
        greedy(gg, back, f, ids[5], lg[5], NULL);
        CHECKF(same_floats(lg[0], lg[5], (size_t)N * V), "%s: the written GGUF adapter != the PEFT one", c->name);
        CHECKF(!memcmp(ids[5], c->greedy_llh, (size_t)N * sizeof(int)), "%s: != llama.cpp with herd's GGUF", c->name);
        herd_lora_free(back);
    }

    /* merged by herd quantize (F32), from the GGUF and from the HF form: the references again */
    for (int src = 0; src < 2; src++) {
        char mpath[512], base[512];
        snprintf(mpath, sizeof mpath, "%s/%s_merged%d.gguf", tmp, c->name, src);
        snprintf(base, sizeof base, src ? "%s/hf" : "%s/F32.gguf", tmp); /* main's models */
        herd_quantize_params qp = herd_quantize_default_params();
        qp.ftype = HERD_FTYPE_F32;
        qp.lora = src ? gpath : dir;
        herd_model *mm = NULL;
        if (herd_quantize(base, mpath, &qp, &err) ||
            herd_model_load(&mm, mpath, &err)) {
            CHECKF(0, "%s: merge: %s", c->name, err.msg);
            continue;
        }
        int mids[MAXN];
        double mlp[MAXN], mw = 0;
        greedy(mm, NULL, f, mids, NULL, mlp);
        for (int t = 0; t < N; t++) mw = fmax(mw, fabs(mlp[t] - c->lp_np[t]));
        CHECKF(!memcmp(mids, c->greedy_np, (size_t)N * sizeof(int)) && mw < 1e-3,
               "%s: merged from %s: greedy %s numpy's, log-probs within %.3g", c->name, src ? "HF" : "GGUF",
               memcmp(mids, c->greedy_np, (size_t)N * sizeof(int)) ? "!=" : "=", mw);
        herd_model_free(mm);
    }
out:
    herd_lora_free(l_peft), herd_lora_free(l_gguf), herd_lora_free(l_bf);
    herd_lora_free(h_peft), herd_lora_free(h_gguf);
    for (int i = 0; i < 6; i++) free(lg[i]);
}

/* Scale, alpha and rsLoRA enter as one product; a zero delta is the base model. */
static void check_scales(const fixture *f, herd_model *m, const herd_config *cfg) {
    const int V = cfg->vocab_size, N = f->n_gen;
    float *a = malloc((size_t)N * V * sizeof(float)), *b = malloc((size_t)N * V * sizeof(float));
    int ids[MAXN];
    char d1[512], d2[512], d3[512], d4[512];
    snprintf(d1, sizeof d1, "%s/s_a16", tmp);
    snprintf(d2, sizeof d2, "%s/s_a32", tmp);
    snprintf(d3, sizeof d3, "%s/s_rs", tmp);
    snprintf(d4, sizeof d4, "%s/s_zero", tmp);
    test_lora p = { 8, 16, 0x7F, 9, 0, HERD_F32, 0.05f, 0 };
    int ok = !tl_write(d1, NULL, cfg, &p, &err);
    p.alpha = 32;
    ok = ok && !tl_write(d2, NULL, cfg, &p, &err);
    p.alpha = 4 * sqrtf(8.0f); /* rsLoRA: alpha / sqrt(8) = 4 = 32 / 8 */
    p.rslora = 1;
    ok = ok && !tl_write(d3, NULL, cfg, &p, &err);
    p = (test_lora){ 8, 16, 0x7F, 9, 0, HERD_F32, 0.05f, 1 };
    ok = ok && !tl_write(d4, NULL, cfg, &p, &err);
    CHECKF(ok, "writing adapters: %s", err.msg);
    herd_lora *l16x2 = load(m, d1, 2), *l32 = load(m, d2, 1), *l16x0 = load(m, d1, 0), *lz = load(m, d4, 1);
    herd_lora *lrs = load(m, d3, 1);
    if (l16x2 && l32 && l16x0 && lz && lrs) {
        greedy(m, l32, f, ids, a, NULL);
        greedy(m, l16x2, f, ids, b, NULL);
        CHECKF(same_floats(a, b, (size_t)N * V), "alpha 16 at scale 2 != alpha 32");
        greedy(m, lrs, f, ids, b, NULL);
        /* the config holds alpha to 6 digits: close, not bitwise */
        double worst = 0;
        for (size_t i = 0; i < (size_t)N * V; i++) worst = fmax(worst, fabs((double)a[i] - b[i]));
        CHECKF(worst < 1e-3, "rsLoRA alpha / sqrt(r) != the same scale as alpha / r: %.3g", worst);
        greedy(m, NULL, f, ids, a, NULL);
        CHECKF(!memcmp(ids, f->greedy_base, (size_t)N * sizeof(int)), "base greedy != the fixture's (llama.cpp)");
        greedy(m, l16x0, f, ids, b, NULL);
        CHECKF(same_floats(a, b, (size_t)N * V), "scale 0 != the base model");
        greedy(m, lz, f, ids, b, NULL);
        CHECKF(same_floats(a, b, (size_t)N * V), "a zero B != the base model");
    }
    herd_lora_free(l16x2), herd_lora_free(l32), herd_lora_free(l16x0), herd_lora_free(lz), herd_lora_free(lrs);
    free(a), free(b);
}

/* herd_batch_eval_now from inside a batch's forward (herd_session_eval_batch_yield) */
typedef struct {
    herd_session *s;
    const int32_t *ids;
    int n, at, done;
} lora_yield;

static void lora_yield_cb(void *ctx, herd_batch *b, int layer) {
    lora_yield *y = ctx;
    herd_error e;
    if (layer == y->at) y->done += herd_batch_eval_now(b, &y->s, &y->ids, &y->n, NULL, NULL, 1, &e) == HERD_OK;
}

/* Sequences with adapter 1, adapter 2, none and adapter 1 again, prefilled in
 * chunks and decoded together in one pool (every other step one of them is
 * evaluated inside the others' forward, between two layers): each step's logits
 * bitwise equal to the sequence evaluated alone with the same chunks. */
static void check_batch(herd_model *m, const herd_config *cfg) {
    char d1[512], d2[512];
    snprintf(d1, sizeof d1, "%s/b1", tmp);
    snprintf(d2, sizeof d2, "%s/b2", tmp);
    test_lora p = { 8, 16, 0x7F, 21, 0, HERD_F32, 0.05f, 0 };
    int ok = !tl_write(d1, NULL, cfg, &p, &err);
    p.seed = 22, p.rank = 4, p.targets = 0x15; /* q, v, gate */
    ok = ok && !tl_write(d2, NULL, cfg, &p, &err);
    CHECKF(ok, "%s", err.msg);
    herd_lora *l1 = load(m, d1, 1), *l2 = load(m, d2, 1);
    if (!l1 || !l2) return;
    enum { NS = 4, STEPS = 12 };
    const herd_lora *who[NS] = { l1, l2, NULL, l1 };
    const int V = cfg->vocab_size;
    /* plans: sequence j feeds chunk[j][st] tokens at step st (its prompt in chunks, then one a step) */
    int chunk[NS][STEPS];
    int32_t ids[NS][64];
    for (int j = 0; j < NS; j++) {
        for (int i = 0; i < 64; i++) ids[j][i] = (int32_t)((j * 37 + i * 11) % 300 + 1);
        for (int st = 0; st < STEPS; st++) chunk[j][st] = st < j ? 0 : st == j ? 5 + 3 * j : st == j + 1 ? 4 : 1;
    }
    float *alone = malloc((size_t)NS * STEPS * V * sizeof(float));
    for (int j = 0; j < NS; j++) {
        herd_session *s = new_session(m, who[j]);
        int done = 0;
        for (int st = 0; st < STEPS && s; st++) {
            if (!chunk[j][st]) continue;
            CHECKF(herd_session_eval(s, ids[j] + done, chunk[j][st], NULL, &err) == HERD_OK, "%s", err.msg);
            memcpy(alone + ((size_t)j * STEPS + st) * V, herd_session_logits(s), (size_t)V * sizeof(float));
            done += chunk[j][st];
        }
        herd_session_free(s);
    }
    herd_session_params sp = herd_session_default_params();
    sp.n_ctx = 128;
    herd_kv_pool *pool;
    herd_session *s[NS] = { 0 };
    if (herd_kv_pool_new(&pool, m, sp, NS, 0, &err)) { CHECKF(0, "%s", err.msg); free(alone); return; }
    for (int j = 0; j < NS; j++)
        if (herd_session_new_on_pool(&s[j], pool, &err) || herd_session_set_lora(s[j], who[j], &err))
            CHECKF(0, "%s", err.msg);
    int done[NS] = { 0 }, mismatches = 0, compared = 0, evaluated_inside = 0;
    for (int st = 0; st < STEPS; st++) {
        herd_session *bs[NS];
        const int32_t *bi[NS];
        int bn[NS], js[NS], nb = 0;
        for (int j = 0; j < NS; j++)
            if (chunk[j][st]) bs[nb] = s[j], bi[nb] = ids[j] + done[j], bn[nb] = chunk[j][st], js[nb++] = j;
        if (st % 2 && nb >= 2) { /* one of them evaluated inside the others' forward, before layer `at` */
            const int k = st % nb;
            herd_session *ob[NS];
            const int32_t *oi[NS];
            int on[NS], no = 0;
            for (int q = 0; q < nb; q++)
                if (q != k) ob[no] = bs[q], oi[no] = bi[q], on[no++] = bn[q];
            lora_yield y = { bs[k], bi[k], bn[k], st % cfg->n_layers, 0 };
            CHECKF(herd_session_eval_batch_yield(ob, oi, on, NULL, NULL, no, lora_yield_cb, &y, &err) == HERD_OK,
                   "%s", err.msg);
            CHECK(y.done == 1);
            evaluated_inside++;
        } else {
            CHECKF(herd_session_eval_batch(bs, bi, bn, nb, &err) == HERD_OK, "%s", err.msg);
        }
        for (int k = 0; k < nb; k++) {
            const int j = js[k];
            mismatches += !same_floats(herd_session_logits(s[j]), alone + ((size_t)j * STEPS + st) * V, (size_t)V);
            compared++;
            done[j] += bn[k];
        }
    }
    CHECKF(mismatches == 0, "%d of %d batched steps differ from the sequence alone", mismatches, compared);
    printf("batch: %d steps of 4 sequences (two adapters, none) bitwise = alone, %d of them evaluated inside "
           "the others' forward\n", compared, evaluated_inside);

    /* sessions: a change of adapter resets, the same one does not; no sharing across */
    CHECK(herd_session_pos(s[0]) > 0);
    CHECK(herd_session_set_lora(s[0], l1, &err) == HERD_OK && herd_session_pos(s[0]) > 0);
    CHECK(herd_session_lora(s[0]) == l1);
    CHECK(herd_session_share_prefix(s[3], s[1], 4, &err) != HERD_OK && strstr(err.msg, "different LoRA adapters"));
    CHECK(herd_session_share_prefix(s[3], s[0], 4, &err) == HERD_OK && herd_session_pos(s[3]) == 4);
    CHECK(herd_session_set_lora(s[0], NULL, &err) == HERD_OK && herd_session_pos(s[0]) == 0);
    CHECK(herd_session_lora(s[0]) == NULL);
    for (int j = 0; j < NS; j++) herd_session_free(s[j]);
    herd_kv_pool_free(pool);
    herd_lora_free(l1), herd_lora_free(l2);
    free(alone);
}

/* lora_forward against lora_forward_ref on each ISA (AVX-512, AVX2, scalar, as
 * far as the CPU goes), and a row's result bitwise the same whatever the other
 * rows, their number and the threads. Sizes with every kind of tail: IC 203
 * (32 + 16 + masked / 16 + 8 + scalar), r 5 and 3 (a block of 4 and a lone row),
 * OC 1100 and 48 (chunks of 512, 128- and 64-wide bodies, 16- and 8-wide tails). */
static void check_kernel(void) {
    enum { IC = 203, T = 9 };
    const int64_t oc[2] = { 1100, 48 };
    const int r[2] = { 5, 3 };
    uint64_t s = 77;
    float *a[2], *bt[2], *o[2], *o_ref[2], *o_one[2], *o0[2], x[T * IC], t[T * 8];
    for (int k = 0; k < 2; k++) {
        a[k] = malloc(sizeof(float) * r[k] * IC), bt[k] = malloc(sizeof(float) * r[k] * oc[k]);
        o[k] = malloc(sizeof(float) * T * oc[k]), o_ref[k] = malloc(sizeof(float) * T * oc[k]);
        o_one[k] = malloc(sizeof(float) * T * oc[k]), o0[k] = malloc(sizeof(float) * T * oc[k]);
        for (int64_t i = 0; i < r[k] * IC; i++) a[k][i] = tl_uniform(&s, 0.1f);
        for (int64_t i = 0; i < r[k] * oc[k]; i++) bt[k][i] = tl_uniform(&s, 0.1f);
        for (int64_t i = 0; i < T * oc[k]; i++) o0[k][i] = tl_uniform(&s, 1);
    }
    for (int i = 0; i < T * IC; i++) x[i] = tl_uniform(&s, 1);
    const int32_t rows[T] = { 8, 0, 3, 5, 1, 7, 2, 6, 4 };
    for (int isa = HERD_ISA_AVX512; isa >= HERD_ISA_SCALAR; isa--) {
        herd_cpu_force_isa(isa);
        if (herd_cpu_isa() != isa) continue; /* the CPU lacks it */
        for (int k = 0; k < 2; k++) {
            memcpy(o[k], o0[k], sizeof(float) * T * oc[k]);
            memcpy(o_ref[k], o0[k], sizeof(float) * T * oc[k]);
            memcpy(o_one[k], o0[k], sizeof(float) * T * oc[k]);
        }
        lora_proj p[2] = { { a[0], bt[0], o[0], oc[0], r[0] }, { a[1], bt[1], o[1], oc[1], r[1] } };
        lora_proj pr[2] = { { a[0], bt[0], o_ref[0], oc[0], r[0] }, { a[1], bt[1], o_ref[1], oc[1], r[1] } };
        lora_proj p1[2] = { { a[0], bt[0], o_one[0], oc[0], r[0] }, { a[1], bt[1], o_one[1], oc[1], r[1] } };
        lora_forward(p, 2, x, rows, T, IC, t);
        lora_forward_ref(pr, 2, x, NULL, T, IC, t);
        double worst = 0;
        for (int k = 0; k < 2; k++)
            for (int64_t i = 0; i < T * oc[k]; i++) worst = fmax(worst, fabs((double)o[k][i] - o_ref[k][i]));
        CHECKF(worst < 1e-4, "isa %d: lora_forward vs its reference: %.3g", isa, worst);
        /* each row alone, in another order, on one thread: bitwise the same */
        const int saved = omp_get_max_threads();
        omp_set_num_threads(1);
        for (int i = T - 1; i >= 0; i--) lora_forward(p1, 2, x, &rows[i], 1, IC, t);
        omp_set_num_threads(saved);
        int same = 1;
        for (int k = 0; k < 2; k++) same &= !memcmp(o[k], o_one[k], sizeof(float) * T * oc[k]);
        CHECKF(same, "isa %d: a row's LoRA delta depends on the other rows or the threads", isa);
    }
    herd_cpu_force_isa(-1);
    for (int k = 0; k < 2; k++) free(a[k]), free(bt[k]), free(o[k]), free(o_ref[k]), free(o_one[k]), free(o0[k]);
}

/* ---- refusals -------------------------------------------------------------- */

static void put(const char *dir, const char *name, const char *text) {
    char p[600];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    if (f) fputs(text, f), fclose(f);
}

static void refused(const herd_model *m, const char *path, const char *want) {
    herd_lora *l = NULL;
    herd_status st = herd_lora_load(&l, m, path, 1, &err);
    CHECKF(st != HERD_OK && l == NULL && strstr(err.msg, want), "%s: want '%s', got %s", path, want,
           st ? err.msg : "success");
    herd_lora_free(l);
}

/* A safetensors adapter of the given tensors (shape [2, ic] for A-like names). */
static void st_adapter(const char *dir, const char *const *names, int n, const int64_t (*shapes)[2]) {
    herd_make_dirs(dir);
    put(dir, "adapter_config.json", "{\"peft_type\": \"LORA\", \"lora_alpha\": 16}");
    st_writer *w = st_writer_new();
    static float zeros[1 << 16];
    for (int i = 0; i < n; i++) st_writer_add(w, names[i], HERD_F32, 2, shapes[i], zeros, &err);
    char p[600];
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", dir);
    st_writer_write(w, p, &err);
    st_writer_free(w);
}

static void check_refusals(herd_model *m, const herd_config *cfg) {
    char d[600], q[600];
    snprintf(d, sizeof d, "%s/nope", tmp);
    refused(m, d, "no such file or directory");
    snprintf(d, sizeof d, "%s/empty", tmp);
    herd_make_dirs(d);
    refused(m, d, "no adapter_model.safetensors");
    put(d, "adapter_model.bin", "pickle");
    refused(m, d, "safe_serialization");
    snprintf(d, sizeof d, "%s/readme.txt", tmp);
    put(tmp, "readme.txt", "hello");
    refused(m, d, "not a LoRA adapter");

    /* a good adapter, then its config changed */
    snprintf(d, sizeof d, "%s/cfg", tmp);
    test_lora p = { 8, 16, 0x7F, 31, 0, HERD_F32, 0.05f, 0 };
    if (tl_write(d, NULL, cfg, &p, &err)) { CHECKF(0, "%s", err.msg); return; }
    snprintf(q, sizeof q, "%s/adapter_model.safetensors", d);
    herd_lora *ok = load(m, q, 1); /* the .safetensors file, config beside it */
    herd_lora_free(ok);
    struct { const char *json, *want; } cfgs[] = {
        { "{\"r\": 8, \"lora_alpha\": 16, \"use_dora\": true}", "DoRA" },
        { "{\"r\": 8, \"modules_to_save\": [\"lm_head\"]}", "modules_to_save" },
        { "{\"r\": 8, \"alpha_pattern\": {\"q_proj\": 4}}", "alpha_pattern" },
        { "{\"peft_type\": \"PREFIX_TUNING\"}", "peft_type is PREFIX_TUNING" },
        { "{\"r\": 16, \"lora_alpha\": 16}", "says r = 16" },
        { "{\"r\": 8, \"fan_in_fan_out\": true}", "fan_in_fan_out" },
        { "{\"r\": 8, \"bias\": \"all\"}", "bias is all" },
        { "{\"r\": \"eight\"}", "'r' must be an integer" },
        { "{\"r\": 8, \"lora_alpha\": \"x\"}", "'lora_alpha' must be a number" },
        { "[1, 2", "not a JSON object" },
    };
    for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++) {
        put(d, "adapter_config.json", cfgs[i].json);
        refused(m, d, cfgs[i].want);
    }
    put(d, "adapter_config.json", "{\"r\": 4, \"rank_pattern\": {\"q_proj\": 4}, \"lora_alpha\": 8}");
    ok = load(m, d, 1); /* r from each pair's shape when rank_pattern is given */
    herd_lora_free(ok);
    snprintf(q, sizeof q, "%s/adapter_config.json", d);
    unlink(q);
    refused(m, d, "adapter_config.json: missing");

    /* an adapter for another model: other widths, more layers */
    herd_config c2 = *cfg;
    c2.dim = cfg->dim * 2;
    c2.head_dim = c2.dim / c2.n_heads;
    snprintf(d, sizeof d, "%s/wide", tmp);
    p.targets = 1;
    if (!tl_write(d, NULL, &c2, &p, &err)) refused(m, d, "takes 64 inputs");
    c2 = *cfg;
    c2.n_layers = cfg->n_layers + 2;
    snprintf(d, sizeof d, "%s/deep", tmp);
    if (!tl_write(d, NULL, &c2, &p, &err)) refused(m, d, "is for layer 2; the model has 2 layers");

    /* tensors that are not pairs of the seven projections */
    const int64_t C = cfg->dim;
    {
        const char *nm[] = { "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight" };
        const int64_t sh[][2] = { { 2, C } };
        snprintf(d, sizeof d, "%s/half", tmp);
        st_adapter(d, nm, 1, sh);
        refused(m, d, "has its A matrix but not its B");
    }
    {
        const char *nm[] = { "base_model.model.lm_head.lora_A.weight" };
        const int64_t sh[][2] = { { 2, C } };
        snprintf(d, sizeof d, "%s/head", tmp);
        st_adapter(d, nm, 1, sh);
        refused(m, d, "embeddings or the output layer");
    }
    {
        const char *nm[] = { "base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector" };
        const int64_t sh[][2] = { { 1, C } };
        snprintf(d, sizeof d, "%s/dora", tmp);
        st_adapter(d, nm, 1, sh);
        refused(m, d, "DoRA");
    }
    {
        const char *nm[] = { "base_model.model.model.layers.0.self_attn.rotary.lora_A.weight" };
        const int64_t sh[][2] = { { 2, C } };
        snprintf(d, sizeof d, "%s/odd", tmp);
        st_adapter(d, nm, 1, sh);
        refused(m, d, "is not a LoRA matrix");
    }
    {
        const char *nm[] = { "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
                             "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight" };
        const int64_t sh[][2] = { { 2, C }, { C, 3 } };
        snprintf(d, sizeof d, "%s/ranks", tmp);
        st_adapter(d, nm, 2, sh);
        refused(m, d, "B must be [64, 2]");
    }
    /* a truncated file */
    snprintf(d, sizeof d, "%s/cfg", tmp);
    put(d, "adapter_config.json", "{\"r\": 8, \"lora_alpha\": 16}");
    snprintf(q, sizeof q, "%s/adapter_model.safetensors", d);
    CHECK(truncate(q, 100) == 0);
    refused(m, d, "adapter_model.safetensors");
    /* a model is not an adapter */
    snprintf(q, sizeof q, "%s/F32.gguf", tmp);
    refused(m, q, "is a model, not a LoRA adapter");
}

/* Damaged files: bytes of a good adapter (its safetensors file or its GGUF)
 * overwritten, truncated or cut short, 300 times: each load succeeds or fails
 * with a message; never a crash (the suite runs under ASan / UBSan too). */
static void check_damage(const herd_model *m, const herd_config *cfg) {
    char d[600], sp[700], gp[600];
    snprintf(d, sizeof d, "%s/dmg", tmp);
    snprintf(gp, sizeof gp, "%s/dmg.gguf", tmp);
    snprintf(sp, sizeof sp, "%s/adapter_model.safetensors", d);
    test_lora p = { 4, 8, 0x55, 41, 0, HERD_F32, 0.05f, 0 };
    if (tl_write(d, gp, cfg, &p, &err)) { CHECKF(0, "%s", err.msg); return; }
    uint64_t s = 99;
    int failed = 0, loaded = 0, silent = 0;
    for (int round = 0; round < 300; round++) {
        const char *path = round % 2 ? gp : sp;
        FILE *f = fopen(path, "rb");
        if (!f) break;
        fseek(f, 0, SEEK_END);
        const long n = ftell(f);
        fseek(f, 0, SEEK_SET);
        unsigned char *buf = malloc((size_t)n), *orig = malloc((size_t)n);
        if (!buf || !orig || fread(orig, 1, (size_t)n, f) != (size_t)n) { fclose(f); free(buf); free(orig); break; }
        fclose(f);
        memcpy(buf, orig, (size_t)n);
        long len = n;
        const int kind = (int)(tl_uniform(&s, 1) * 1.5f + 1.5f); /* 0: bytes, 1: header bytes, 2: cut */
        if (kind == 2) len = (long)((tl_uniform(&s, 0.5f) + 0.5f) * (float)n);
        else
            for (int k = 0; k < 1 + round % 8; k++) {
                const long span = kind == 1 && n > 512 ? 512 : n;
                const long at = (long)((tl_uniform(&s, 0.5f) + 0.5f) * (float)span) % span;
                buf[at] = (unsigned char)(s >> 13);
            }
        f = fopen(path, "wb");
        if (f) fwrite(buf, 1, (size_t)len, f), fclose(f);
        herd_lora *l = NULL;
        err.msg[0] = 0;
        const char *what = round % 2 ? gp : d;
        if (herd_lora_load(&l, m, what, 1, &err) == HERD_OK) loaded++, herd_lora_free(l);
        else failed++, silent += err.msg[0] == 0;
        f = fopen(path, "wb"); /* restored for the next round */
        if (f) fwrite(orig, 1, (size_t)n, f), fclose(f);
        free(buf), free(orig);
    }
    CHECKF(failed + loaded == 300 && silent == 0, "damaged adapters: %d loaded, %d refused, %d without a message",
           loaded, failed, silent);
    CHECK(failed > 100); /* most damage is seen */
    printf("damaged adapters: %d refused with a message, %d still loadable (bytes of weights)\n", failed, loaded);
}

int main(void) {
    fixture f;
    if (!load_fixture(&f)) {
        CHECKF(0, "cannot read %s/lora_ref.txt", DATA_DIR);
        TEST_MAIN_END("test_lora");
    }
    if (!mkdtemp(tmp)) { perror("mkdtemp"); return 1; }
    herd_init_params ip = { .seed = (uint64_t)f.seed };
    herd_config_default(&ip.config);
    parse_shape(f.shape, &ip.config);
    ip.config.tie_embeddings = 0;
    char hf[600], gg[600], q4[600];
    snprintf(hf, sizeof hf, "%s/hf", tmp);
    snprintf(gg, sizeof gg, "%s/F32.gguf", tmp);
    snprintf(q4, sizeof q4, "%s/Q4_0.gguf", tmp);
    herd_model *mg = NULL, *mh = NULL;
    if (herd_init_model(&ip, hf, gg, HERD_F32, &err) || herd_model_load(&mg, gg, &err) ||
        herd_model_load(&mh, hf, &err)) {
        CHECKF(0, "model: %s", err.msg);
    } else {
        const herd_config *cfg = herd_model_config(mg);
        for (int i = 0; i < f.n_cases; i++) check_case(&f, &f.cases[i], mg, mh, cfg);
        check_kernel();
        check_scales(&f, mg, cfg);
        check_batch(mg, cfg);
        check_refusals(mg, cfg);
        check_damage(mg, cfg);
        /* an adapter of one model on another */
        herd_lora *l = NULL;
        char d[600];
        snprintf(d, sizeof d, "%s/all", tmp);
        herd_session *s = new_session(mg, NULL);
        if (s && herd_lora_load(&l, mh, d, 1, &err) == HERD_OK)
            CHECK(herd_session_set_lora(s, l, &err) != HERD_OK && strstr(err.msg, "another model"));
        herd_lora_free(l);
        herd_session_free(s);
        /* a quantized base (QLoRA's arithmetic): the adapter applies */
        herd_model *mq = NULL;
        snprintf(hf, sizeof hf, "%s/hf_q4", tmp);
        if (herd_init_model(&ip, hf, q4, HERD_Q4_0, &err) == HERD_OK && herd_model_load(&mq, q4, &err) == HERD_OK) {
            herd_lora *lq = load(mq, d, 1);
            int a[MAXN], b[MAXN];
            if (lq && greedy(mq, lq, &f, a, NULL, NULL) && greedy(mq, NULL, &f, b, NULL, NULL))
                CHECKF(memcmp(a, b, sizeof(int) * (size_t)f.n_gen), "Q4_0 base: the adapter changed nothing");
            herd_lora_free(lq);
        } else CHECKF(0, "Q4_0: %s", err.msg);
        herd_model_free(mq);
    }
    herd_model_free(mg);
    herd_model_free(mh);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd)) perror("rm");
    TEST_MAIN_END("test_lora");
}

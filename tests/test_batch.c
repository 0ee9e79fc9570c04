/* test_batch.c - the batched forward (src/batch.c): for random herd-init models of
 * several weight types and both KV types, sequences evaluated together (mixed
 * prefill chunks and decode rows, sequences joining late, batches split into
 * rounds) give logits BITWISE identical to each sequence evaluated alone with the
 * same chunks; a sequence's logits do not depend on how its prompt was chunked;
 * all_logits rows equal the step-by-step logits; prefix sharing gives the logits
 * of recomputing; bad batches are refused without changing any session.
 */
#include <omp.h>
#include <stdint.h>
#include <unistd.h>

#include "herd.h"
#include "model.h" /* the output weights, for the hidden-state check */
#include "test.h"

enum { NSEQ = 6, MAXLEN = 700, NCTX = 768 };

static uint64_t rng = 88172645463325252ull;
static int rnd(int n) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (int)(rng % (uint64_t)n);
}

typedef struct {
    int32_t ids[MAXLEN];
    int len;                 /* tokens in all */
    int start;               /* step at which it joins the batch */
    int chunk[MAXLEN];       /* tokens evaluated at each step (0: none) */
    int n_steps;
} seqplan;

/* A plan: sequence j joins at step start, prefills in random chunks, then decodes
 * one token a step. Sequence 0 has a long prompt (more than one round). */
static void make_plan(seqplan *p, int V) {
    for (int j = 0; j < NSEQ; j++) {
        seqplan *q = &p[j];
        q->len = j == 0 ? 600 + rnd(60) : 20 + rnd(120);
        q->start = j == 0 ? 0 : rnd(6);
        for (int i = 0; i < q->len; i++) q->ids[i] = rnd(V);
        int prompt = q->len - 8 - rnd(8), done = 0, st = 0;
        for (; st < q->start; st++) q->chunk[st] = 0;
        while (done < q->len) {
            int k = done < prompt ? 1 + rnd(j == 0 ? 600 : 48) : 1;
            if (k > q->len - done) k = q->len - done;
            q->chunk[st++] = k;
            done += k;
        }
        q->n_steps = st;
    }
}

static int bitwise_eq(const float *a, const float *b, int n) { return memcmp(a, b, (size_t)n * sizeof(float)) == 0; }

static void test_model_type(const char *dir, int type, int kv_type) {
    char gguf[256];
    snprintf(gguf, sizeof gguf, "%s/m_%s.gguf", dir, herd_type_name(type));
    herd_error err;
    herd_model *m;
    if (access(gguf, R_OK) != 0) {
        herd_init_params ip = { .seed = 11 };
        herd_config_default(&ip.config);
        ip.config.dim = 96; ip.config.n_layers = 2; ip.config.n_heads = 4; ip.config.n_kv_heads = 2;
        ip.config.head_dim = 32; ip.config.ffn_dim = 160; ip.config.tie_embeddings = 0;
        char hf[256];
        snprintf(hf, sizeof hf, "%s/hf_%s", dir, herd_type_name(type));
        if (herd_init_model(&ip, hf, gguf, type, &err)) { CHECKF(0, "init %s: %s", gguf, err.msg); return; }
    }
    if (herd_model_load(&m, gguf, &err)) { CHECKF(0, "load %s: %s", gguf, err.msg); return; }
    int V = herd_model_config(m)->vocab_size;
    seqplan plan[NSEQ];
    make_plan(plan, V);
    int max_steps = 0;
    for (int j = 0; j < NSEQ; j++) max_steps = plan[j].n_steps > max_steps ? plan[j].n_steps : max_steps;
    herd_session_params sp = herd_session_default_params();
    sp.n_ctx = NCTX;
    sp.kv_type = kv_type;

    /* alone: each sequence in its own standalone session, logits after each step */
    float *ref = malloc((size_t)NSEQ * MAXLEN * V * sizeof(float));
    for (int j = 0; j < NSEQ; j++) {
        herd_session *s;
        if (herd_session_new(&s, m, sp, &err)) { CHECKF(0, "%s", err.msg); continue; }
        int done = 0;
        for (int st = 0; st < plan[j].n_steps; st++) {
            int k = plan[j].chunk[st];
            if (!k) continue;
            CHECKF(herd_session_eval(s, plan[j].ids + done, k, NULL, &err) == HERD_OK, "%s", err.msg);
            memcpy(ref + ((size_t)j * MAXLEN + st) * V, herd_session_logits(s), (size_t)V * sizeof(float));
            done += k;
        }
        herd_session_free(s);
    }

    /* sequence 0 alone, every position's logits at once: what the batch's all-logits
     * rows of sequence 0 must be */
    float *ref_all0 = malloc((size_t)plan[0].len * V * sizeof(float));
    {
        herd_session *s0;
        if (herd_session_new(&s0, m, sp, &err) == HERD_OK) {
            CHECKF(herd_session_eval(s0, plan[0].ids, plan[0].len, ref_all0, &err) == HERD_OK, "%s", err.msg);
            herd_session_free(s0);
        }
    }

    /* together: one pool, one herd_session_eval_batch per step (sequence 0's
     * every logit too, herd_session_eval_batch_logits) */
    herd_kv_pool *pool;
    herd_session *ss[NSEQ];
    CHECKF(herd_kv_pool_new(&pool, m, sp, NSEQ, 0, &err) == HERD_OK, "%s", err.msg);
    for (int j = 0; j < NSEQ; j++) CHECK(herd_session_new_on_pool(&ss[j], pool, &err) == HERD_OK);
    int done[NSEQ] = { 0 }, n_bad = 0, n_cmp = 0, n_all = 0, bad_all0 = 0;
    for (int st = 0; st < max_steps; st++) {
        herd_session *bs[NSEQ];
        const int32_t *bi[NSEQ];
        int bn[NSEQ], who[NSEQ], n = 0;
        for (int j = 0; j < NSEQ; j++) {
            if (st >= plan[j].n_steps || !plan[j].chunk[st]) continue;
            bs[n] = ss[j], bi[n] = plan[j].ids + done[j], bn[n] = plan[j].chunk[st], who[n++] = j;
        }
        if (!n) continue;
        float *al[NSEQ] = { 0 };
        for (int i = 0; i < n; i++)
            if (who[i] == 0) al[i] = malloc((size_t)bn[i] * V * sizeof(float));
        CHECKF(herd_session_eval_batch_logits(bs, bi, bn, al, n, &err) == HERD_OK, "%s", err.msg);
        for (int i = 0; i < n; i++)
            if (al[i]) {
                n_all++;
                bad_all0 += memcmp(al[i], ref_all0 + (size_t)done[0] * V, (size_t)bn[i] * V * sizeof(float)) != 0;
                free(al[i]);
            }
        for (int i = 0; i < n; i++) {
            int j = who[i];
            done[j] += bn[i];
            n_cmp++;
            if (!bitwise_eq(herd_session_logits(ss[j]), ref + ((size_t)j * MAXLEN + st) * V, V)) {
                if (n_bad++ < 3)
                    fprintf(stderr, "test_batch: %s kv %s: sequence %d step %d (%d rows of %d in the batch): "
                            "logits differ from alone\n", herd_type_name(type), herd_type_name(kv_type),
                            j, st, bn[i], n);
            }
        }
    }
    CHECKF(n_bad == 0, "%s kv %s: %d of %d batched logits differ from evaluating alone",
           herd_type_name(type), herd_type_name(kv_type), n_bad, n_cmp);
    CHECKF(n_all > 0 && bad_all0 == 0, "%s kv %s: %d of %d batched all-logits chunks of sequence 0 differ "
           "from its logits alone", herd_type_name(type), herd_type_name(kv_type), bad_all0, n_all);
    free(ref_all0);

    /* chunking: sequence 1 token by token, and its whole prompt in one call with
     * all logits, give the same logits at every position as the plan's chunks */
    {
        const seqplan *q = &plan[1];
        herd_session *a, *b;
        CHECK(herd_session_new(&a, m, sp, &err) == HERD_OK);
        CHECK(herd_session_new(&b, m, sp, &err) == HERD_OK);
        float *all = malloc((size_t)q->len * V * sizeof(float));
        CHECKF(herd_session_eval(b, q->ids, q->len, all, &err) == HERD_OK, "%s", err.msg);
        CHECK(bitwise_eq(herd_session_logits(b), all + (size_t)(q->len - 1) * V, V));
        int bad_one = 0, bad_all = 0, pos = 0;
        for (int st = 0; st < q->n_steps; st++) {
            if (!q->chunk[st]) continue;
            for (int i = 0; i < q->chunk[st]; i++)
                herd_session_eval(a, q->ids + pos + i, 1, NULL, &err);
            pos += q->chunk[st];
            const float *r = ref + ((size_t)1 * MAXLEN + st) * V;
            bad_one += !bitwise_eq(herd_session_logits(a), r, V);
            bad_all += !bitwise_eq(all + (size_t)(pos - 1) * V, r, V);
        }
        CHECKF(bad_one == 0, "%s kv %s: token-by-token logits differ from chunked at %d steps",
               herd_type_name(type), herd_type_name(kv_type), bad_one);
        CHECKF(bad_all == 0, "%s kv %s: all_logits rows differ from chunked at %d steps",
               herd_type_name(type), herd_type_name(kv_type), bad_all);
        free(all);
        herd_session_free(a);
        herd_session_free(b);
    }

    /* prefix sharing: ss[2] takes ss[1]'s first 70 positions, then evaluates the
     * rest of sequence 1; its logits equal ss[1]'s own */
    {
        const seqplan *q = &plan[1];
        int n_pos = q->len > 70 ? 70 : q->len - 1;
        CHECKF(herd_session_share_prefix(ss[2], ss[1], n_pos, &err) == HERD_OK, "%s", err.msg);
        CHECK(herd_session_pos(ss[2]) == n_pos);
        CHECKF(herd_session_eval(ss[2], q->ids + n_pos, q->len - n_pos, NULL, &err) == HERD_OK, "%s", err.msg);
        CHECKF(bitwise_eq(herd_session_logits(ss[2]), herd_session_logits(ss[1]), V),
               "%s kv %s: logits after a shared prefix differ", herd_type_name(type), herd_type_name(kv_type));
        CHECK(herd_session_share_prefix(ss[2], ss[1], herd_session_pos(ss[1]) + 1, &err) == HERD_ERR_RANGE);
        CHECK(herd_session_share_prefix(ss[2], ss[2], 1, &err) == HERD_ERR_ARG);
    }

    /* bad batches change nothing */
    {
        int p0 = herd_session_pos(ss[3]), p1 = herd_session_pos(ss[4]);
        int32_t ok = 1, bad = V;
        herd_session *dup[2] = { ss[3], ss[3] }, *two[2] = { ss[3], ss[4] };
        const int32_t *ids2[2] = { &ok, &ok }, *idsb[2] = { &ok, &bad };
        int n1[2] = { 1, 1 }, nbig[2] = { 1, NCTX };
        CHECK(herd_session_eval_batch(dup, ids2, n1, 2, &err) == HERD_ERR_ARG);
        CHECK(strstr(err.msg, "twice") != NULL);
        CHECK(herd_session_eval_batch(two, idsb, n1, 2, &err) == HERD_ERR_RANGE);
        CHECK(herd_session_eval_batch(two, ids2, nbig, 2, &err) == HERD_ERR_RANGE);
        CHECK(herd_session_eval_batch(two, ids2, n1, 0, &err) == HERD_ERR_ARG);
        CHECK(herd_session_pos(ss[3]) == p0 && herd_session_pos(ss[4]) == p1);
    }
    /* pages: sharing whole pages costs none, a reset returns a session's own */
    {
        int P = herd_kv_page_size(), used = herd_kv_pool_pages_used(pool);
        CHECK(herd_kv_pool_pages_total(pool) == NSEQ * ((NCTX + P - 1) / P + 1));
        CHECK(herd_session_pos(ss[0]) >= 2 * P);
        CHECKF(herd_session_share_prefix(ss[5], ss[0], 2 * P, &err) == HERD_OK, "%s", err.msg);
        CHECK(herd_kv_pool_pages_used(pool) <= used); /* ss[5]'s own pages went, two shared came */
        used = herd_kv_pool_pages_used(pool);
        herd_session_reset(ss[5]);
        CHECK(herd_kv_pool_pages_used(pool) == used); /* the shared pages stay with ss[0] */
        herd_session_reset(ss[0]);
        CHECK(herd_kv_pool_pages_used(pool) < used);
    }
    for (int j = 0; j < NSEQ; j++) herd_session_free(ss[j]);
    CHECK(herd_kv_pool_pages_used(pool) == 0);
    herd_kv_pool_free(pool);

    /* a pool out of pages refuses the batch and changes nothing */
    {
        herd_kv_pool *small;
        herd_session *a, *b;
        CHECKF(herd_kv_pool_new(&small, m, sp, 2, 3, &err) == HERD_OK, "%s", err.msg);
        CHECK(herd_session_new_on_pool(&a, small, &err) == HERD_OK);
        CHECK(herd_session_new_on_pool(&b, small, &err) == HERD_OK);
        int P = herd_kv_page_size();
        herd_session *two[2] = { a, b };
        const int32_t *ids2[2] = { plan[0].ids, plan[0].ids };
        int n2[2] = { 2 * P, 2 * P };
        CHECK(herd_session_eval_batch(two, ids2, n2, 2, &err) == HERD_ERR_NOMEM);
        CHECK(strstr(err.msg, "pages") != NULL);
        CHECK(herd_session_pos(a) == 0 && herd_session_pos(b) == 0 && herd_kv_pool_pages_used(small) == 0);
        n2[1] = P;
        CHECKF(herd_session_eval_batch(two, ids2, n2, 2, &err) == HERD_OK, "%s", err.msg);
        CHECK(herd_kv_pool_pages_used(small) == 3);
        herd_session_free(a);
        herd_session_free(b);
        herd_kv_pool_free(small);
    }
    free(ref);
    herd_model_free(m);
}

/* Hidden states (herd_session_eval_batch_out, for embeddings): what the output
 * projection reads (W_out . h = the logits, a float64 dot over the F32 weights),
 * bitwise the same alone or beside other sequences, which keep their logits. */
static void test_hidden(const char *dir) {
    char gguf[256];
    snprintf(gguf, sizeof gguf, "%s/m_F32.gguf", dir);
    herd_error err;
    herd_model *m;
    if (herd_model_load(&m, gguf, &err)) { CHECKF(0, "load %s: %s", gguf, err.msg); return; }
    const int C = herd_model_config(m)->dim, V = herd_model_config(m)->vocab_size;
    enum { N = 30 };
    int32_t ids[3][N];
    for (int j = 0; j < 3; j++)
        for (int i = 0; i < N; i++) ids[j][i] = rnd(V);
    herd_session_params sp = herd_session_default_params();
    sp.n_ctx = 64;
    sp.n_threads = 2;
    sp.kv_type = HERD_F32;
    herd_session *a, *b, *c;
    float *h = malloc((size_t)N * C * sizeof *h), *h0 = malloc((size_t)N * C * sizeof *h0);
    float *L = malloc((size_t)N * V * sizeof *L), *l1 = malloc((size_t)V * sizeof *l1);
    CHECK(herd_session_new(&a, m, sp, &err) == HERD_OK && herd_session_new(&b, m, sp, &err) == HERD_OK &&
          herd_session_new(&c, m, sp, &err) == HERD_OK);
    const int32_t *ip = ids[0];
    int n = N;
    CHECKF(herd_session_eval_batch_out(&a, &ip, &n, NULL, &h, 1, &err) == HERD_OK, "%s", err.msg);
    CHECKF(herd_session_eval(b, ids[0], N, L, &err) == HERD_OK, "%s", err.msg);
    CHECKF(herd_session_eval(c, ids[1], N, NULL, &err) == HERD_OK, "%s", err.msg);
    memcpy(l1, herd_session_logits(c), (size_t)V * sizeof *l1);
    const float *W = m->output.data; /* (V, C) F32 */
    double worst = 0;
    for (int r = 0; r < N; r += 7)
        for (int v = 0; v < V; v++) {
            double d = 0;
            for (int k = 0; k < C; k++) d += (double)W[(size_t)v * C + k] * h[(size_t)r * C + k];
            const double e = fabs(d - L[(size_t)r * V + v]) / (1 + fabs(L[(size_t)r * V + v]));
            worst = e > worst ? e : worst;
        }
    CHECKF(m->output.type == HERD_F32 && worst < 1e-4, "W_out . hidden against the logits: worst relative "
           "error %.3g", worst);
    /* beside two sequences that want logits, in one batch */
    herd_kv_pool *pool;
    herd_session *ss[3];
    CHECKF(herd_kv_pool_new(&pool, m, sp, 3, 0, &err) == HERD_OK, "%s", err.msg);
    for (int j = 0; j < 3; j++) CHECK(herd_session_new_on_pool(&ss[j], pool, &err) == HERD_OK);
    const int32_t *bi[3] = { ids[0], ids[1], ids[2] };
    int bn[3] = { N, N, N };
    float *hs[3] = { h0, NULL, NULL };
    CHECKF(herd_session_eval_batch_out(ss, bi, bn, NULL, hs, 3, &err) == HERD_OK, "%s", err.msg);
    CHECK(bitwise_eq(h0, h, N * C));
    CHECK(bitwise_eq(herd_session_logits(ss[1]), l1, V));
    for (int j = 0; j < 3; j++) herd_session_free(ss[j]);
    herd_kv_pool_free(pool);
    herd_session_free(a);
    herd_session_free(b);
    herd_session_free(c);
    free(h);
    free(h0);
    free(L);
    free(l1);
    herd_model_free(m);
}

/* Evaluating sessions inside a batched forward (herd_session_eval_batch_yield,
 * herd_batch_eval_now): on a 4-layer model, a batch of a decode row and a prompt
 * chunk yields before each layer; at chosen layers it evaluates a fresh prompt
 * (its every logit), a session that first takes a prefix of one in the batch
 * (mid-forward: those pages are half written for this step), a decode row and a
 * prompt's hidden states. Every sequence, in the batch or evaluated inside it,
 * ends bitwise as evaluated alone, for every pair of layers. Evaluations the
 * batch cannot take are refused and leave the session as it was. */
enum { J_A = 40, J_B = 50, J_C = 30, J_D = 24, J_SHARE = 33, J_H = 12 };
typedef struct {
    int at[2];                 /* the layer before which group k is evaluated */
    herd_session *js[4];       /* c, d (after sharing), e (decode), h (hidden) */
    const int32_t *jids[4];
    int jn[4];
    float *c_all, *h_out;
    herd_session *share_src;   /* d first takes J_SHARE positions of it */
    herd_session *in_batch, *other_pool; /* refusals, tried at the first call */
    int calls, layers_seen, refusals_ok, done;
} yield_plan;

static void yield_cb(void *ctx, herd_batch *b, int layer) {
    yield_plan *q = ctx;
    herd_error err;
    q->calls++;
    q->layers_seen |= 1 << layer;
    if (q->calls == 1 && q->in_batch) {
        const int32_t id = 1, bad = -1;
        const int32_t *pid = &id, *pbad = &bad;
        int one = 1, zero = 0, big = herd_batch_room(b) + 1;
        int ok = herd_batch_eval_now(b, &q->in_batch, &pid, &one, NULL, NULL, 1, &err) == HERD_ERR_ARG &&
                 strstr(err.msg, "already") != NULL;
        ok &= herd_batch_eval_now(b, &q->other_pool, &pid, &one, NULL, NULL, 1, &err) == HERD_ERR_ARG;
        ok &= herd_batch_eval_now(b, &q->js[2], &pbad, &one, NULL, NULL, 1, &err) == HERD_ERR_RANGE;
        ok &= herd_batch_eval_now(b, &q->js[2], &pid, &big, NULL, NULL, 1, &err) == HERD_ERR_RANGE;
        ok &= herd_batch_eval_now(b, &q->js[2], &pid, &zero, NULL, NULL, 1, &err) == HERD_ERR_ARG;
        ok &= herd_batch_eval_now(b, &q->js[2], &pid, &one, NULL, NULL, 0, &err) == HERD_ERR_ARG;
        ok &= herd_session_pos(q->js[2]) == 20 && herd_session_pos(q->in_batch) == J_B;
        q->refusals_ok = ok;
    }
    if (layer == q->at[0]) { /* c alone */
        float *al[1] = { q->c_all };
        q->done += herd_batch_eval_now(b, &q->js[0], &q->jids[0], &q->jn[0], al, NULL, 1, &err) == HERD_OK;
    }
    if (layer == q->at[1]) { /* d after sharing a's prefix, e's decode row and h's hidden states together */
        if (herd_session_share_prefix(q->js[1], q->share_src, J_SHARE, &err)) return;
        float *hs[3] = { NULL, NULL, q->h_out };
        q->done += herd_batch_eval_now(b, &q->js[1], &q->jids[1], &q->jn[1], NULL, hs, 3, &err) == HERD_OK;
    }
}

static void test_eval_now(const char *dir, int type) {
    char gguf[256];
    snprintf(gguf, sizeof gguf, "%s/j_%s.gguf", dir, herd_type_name(type));
    herd_error err;
    herd_model *m;
    herd_init_params ip = { .seed = 23 };
    herd_config_default(&ip.config);
    ip.config.dim = 64; ip.config.n_layers = 4; ip.config.n_heads = 4; ip.config.n_kv_heads = 2;
    ip.config.head_dim = 32; ip.config.ffn_dim = 96; ip.config.tie_embeddings = 0;
    char hf[256];
    snprintf(hf, sizeof hf, "%s/jhf_%s", dir, herd_type_name(type));
    if (herd_init_model(&ip, hf, gguf, type, &err) || herd_model_load(&m, gguf, &err)) {
        CHECKF(0, "%s: %s", gguf, err.msg);
        return;
    }
    const int V = herd_model_config(m)->vocab_size, C = herd_model_config(m)->dim;
    int32_t a[J_A + 1], bq[J_B + 10], cq[J_C], dq[J_SHARE + J_D], hq[J_H];
    for (int i = 0; i <= J_A; i++) a[i] = rnd(V);
    for (int i = 0; i < J_B + 10; i++) bq[i] = rnd(V);
    for (int i = 0; i < J_C; i++) cq[i] = rnd(V);
    memcpy(dq, a, J_SHARE * sizeof *dq); /* the prefix it shares with sequence a */
    for (int i = J_SHARE; i < J_SHARE + J_D; i++) dq[i] = rnd(V);
    for (int i = 0; i < J_H; i++) hq[i] = rnd(V);
    herd_session_params sp = herd_session_default_params();
    sp.n_ctx = 128;
    sp.kv_type = HERD_F16;
    /* alone: a's next token after its prompt, b's second chunk, c's prompt (every
     * logit), d's tail after the shared prefix, e's decode row; h's hidden states */
    float *ref[5], *c_all = malloc((size_t)J_C * V * sizeof(float)), *c_ref = malloc((size_t)J_C * V * sizeof(float));
    float *h_out = malloc((size_t)J_H * C * sizeof(float)), *h_ref = malloc((size_t)J_H * C * sizeof(float));
    {
        herd_session *s;
        const int32_t *seq[5] = { a, bq, cq, dq, bq };
        const int pre[5] = { J_A, J_B, 0, 0, 20 }, now[5] = { 1, 10, J_C, J_SHARE + J_D, 1 };
        for (int j = 0; j < 5; j++) {
            ref[j] = malloc((size_t)V * sizeof(float));
            CHECK(herd_session_new(&s, m, sp, &err) == HERD_OK);
            if (pre[j]) herd_session_eval(s, seq[j], pre[j], NULL, &err);
            CHECKF(herd_session_eval(s, seq[j] + pre[j], now[j], j == 2 ? c_ref : NULL, &err) == HERD_OK, "%s", err.msg);
            memcpy(ref[j], herd_session_logits(s), (size_t)V * sizeof(float));
            herd_session_free(s);
        }
        CHECK(herd_session_new(&s, m, sp, &err) == HERD_OK);
        const int32_t *ph = hq;
        int nh = J_H;
        CHECKF(herd_session_eval_batch_out(&s, &ph, &nh, NULL, &h_ref, 1, &err) == HERD_OK, "%s", err.msg);
        herd_session_free(s);
    }
    int bad = 0, runs = 0, calls_ok = 1, done_ok = 1, refusals_ok = 1;
    for (int l1 = 0; l1 < 4; l1++)
        for (int l2 = l1; l2 < 4; l2++) {
            herd_kv_pool *pool, *other;
            herd_session *s[6], *o;
            CHECKF(herd_kv_pool_new(&pool, m, sp, 6, 0, &err) == HERD_OK, "%s", err.msg);
            CHECKF(herd_kv_pool_new(&other, m, sp, 1, 0, &err) == HERD_OK, "%s", err.msg);
            for (int j = 0; j < 6; j++) CHECK(herd_session_new_on_pool(&s[j], pool, &err) == HERD_OK);
            CHECK(herd_session_new_on_pool(&o, other, &err) == HERD_OK);
            herd_session_eval(s[0], a, J_A, NULL, &err);
            herd_session_eval(s[1], bq, J_B, NULL, &err);
            herd_session_eval(s[4], bq, 20, NULL, &err);
            herd_session *bs[2] = { s[0], s[1] };
            const int32_t *bi[2] = { a + J_A, bq + J_B };
            int bn[2] = { 1, 10 };
            yield_plan q = { .at = { l1, l2 }, .js = { s[2], s[3], s[4], s[5] },
                             .jids = { cq, dq + J_SHARE, bq + 20, hq }, .jn = { J_C, J_D, 1, J_H },
                             .c_all = c_all, .h_out = h_out, .share_src = s[0], .in_batch = s[1], .other_pool = o };
            CHECKF(herd_session_eval_batch_yield(bs, bi, bn, NULL, NULL, 2, yield_cb, &q, &err) == HERD_OK, "%s", err.msg);
            calls_ok &= q.calls == 4 && q.layers_seen == 0xF;
            done_ok &= q.done == 2 && herd_session_pos(s[2]) == J_C && herd_session_pos(s[3]) == J_SHARE + J_D &&
                       herd_session_pos(s[4]) == 21 && herd_session_pos(s[5]) == J_H &&
                       herd_session_pos(s[0]) == J_A + 1 && herd_session_pos(s[1]) == J_B + 10;
            refusals_ok &= q.refusals_ok && herd_session_pos(o) == 0;
            for (int j = 0; j < 5; j++) bad += !bitwise_eq(herd_session_logits(s[j]), ref[j], V);
            bad += !bitwise_eq(c_all, c_ref, J_C * V);
            bad += !bitwise_eq(h_out, h_ref, J_H * C);
            runs++;
            for (int j = 0; j < 6; j++) herd_session_free(s[j]);
            herd_session_free(o);
            herd_kv_pool_free(pool);
            herd_kv_pool_free(other);
        }
    CHECKF(bad == 0, "%s: %d of %d logits / hidden states differ from evaluating alone", herd_type_name(type), bad,
           runs * 7);
    CHECKF(calls_ok, "%s: yield not called once before each of the 4 layers", herd_type_name(type));
    CHECKF(done_ok, "%s: an evaluation inside the batch failed or left a session at the wrong position",
           herd_type_name(type));
    CHECKF(refusals_ok, "%s: an evaluation the batch cannot take was not refused, or changed a session",
           herd_type_name(type));
    /* a batch of more than one round does not yield */
    {
        herd_session *s1;
        herd_session_params sp2 = sp;
        sp2.n_ctx = 256;
        CHECK(herd_session_new(&s1, m, sp2, &err) == HERD_OK); /* a standalone session: a 128-row workspace */
        int32_t ids[129];
        for (int i = 0; i < 129; i++) ids[i] = rnd(V);
        const int32_t *ip1 = ids;
        int n1 = 129;
        yield_plan q = { .at = { -1, -1 } };
        CHECKF(herd_session_eval_batch_yield(&s1, &ip1, &n1, NULL, NULL, 1, yield_cb, &q, &err) == HERD_OK, "%s", err.msg);
        CHECK(q.calls == 0 && herd_session_pos(s1) == 129);
        herd_session_free(s1);
    }
    /* out of pages inside the batch: refused, nothing changed, the batch goes on */
    {
        herd_kv_pool *small;
        herd_session *x, *y;
        CHECKF(herd_kv_pool_new(&small, m, sp, 2, 1, &err) == HERD_OK, "%s", err.msg);
        CHECK(herd_session_new_on_pool(&x, small, &err) == HERD_OK && herd_session_new_on_pool(&y, small, &err) == HERD_OK);
        const int32_t *px = a, *py = bq;
        int nx = 4, ny = 4;
        yield_plan q = { .at = { 2, -1 }, .js = { y }, .jids = { bq }, .jn = { 4 }, .c_all = NULL };
        CHECKF(herd_session_eval_batch_yield(&x, &px, &nx, NULL, NULL, 1, yield_cb, &q, &err) == HERD_OK, "%s", err.msg);
        CHECK(q.done == 0 && herd_session_pos(y) == 0 && herd_session_pos(x) == 4);
        herd_session *alone;
        CHECK(herd_session_new(&alone, m, sp, &err) == HERD_OK);
        herd_session_eval(alone, a, 4, NULL, &err);
        CHECK(bitwise_eq(herd_session_logits(alone), herd_session_logits(x), V));
        CHECK(herd_session_eval_batch(&y, &py, &ny, 1, &err) == HERD_ERR_NOMEM); /* (the page is x's) */
        herd_session_free(alone);
        herd_session_free(x);
        herd_session_free(y);
        herd_kv_pool_free(small);
    }
    for (int j = 0; j < 5; j++) free(ref[j]);
    free(c_all);
    free(c_ref);
    free(h_out);
    free(h_ref);
    herd_model_free(m);
}

int main(void) {
    char dir[] = "/tmp/herd_test_batch_XXXXXX";
    if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
    const int types[] = { HERD_F32, HERD_Q8_0, HERD_Q4_0, HERD_BF16 };
    for (int i = 0; i < 4; i++) {
        test_model_type(dir, types[i], HERD_F32);
        if (types[i] == HERD_Q4_0 || types[i] == HERD_F32) test_model_type(dir, types[i], HERD_F16);
        if (types[i] == HERD_Q8_0) test_model_type(dir, types[i], HERD_Q8_0);
    }
    test_hidden(dir);
    test_eval_now(dir, HERD_F32);
    test_eval_now(dir, HERD_Q4_0);
    test_eval_now(dir, HERD_Q8_0);
    test_eval_now(dir, HERD_BF16);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    TEST_MAIN_END("test_batch");
}

/* sched.c - the request queue and the scheduler thread: continuous batching over
 * --parallel slots, each slot one herd_session with its own -c context, all on one
 * paged KV pool (herd_kv_pool).
 *
 * One step:
 *   1. drop cancelled sequences (client gone), free their slots and pages;
 *   2. admit queued requests into free slots; the prompt's longest prefix cached
 *      in ANY slot (running or idle) is not recomputed: a free slot's own cache is
 *      rewound to it, or another slot's pages are shared (herd_session_share_prefix),
 *      so a system prompt common to many requests is computed once; that holds for
 *      requests that arrive together too: a prompt that shares >= WAIT_MIN more
 *      tokens with a prompt still being prefilled waits for that prefill and then
 *      shares its pages (one computes the system prompt, not all of them);
 *   3. one herd_session_eval_batch over every running slot: the next token of each
 *      decoding sequence and a chunk (<= chunk rows, --prefill-chunk, <= budget =
 *      2 chunks in all, the budget going round the slots) of each prompt still being
 *      prefilled, so long prompts do not stall the others (a short prefill, <= PREFILL_ALONE
 *      rows, runs alone every other step at most: time to first token; decode
 *      rows fill its last tile); out of KV pages, idle slots' cached prefixes are
 *      dropped, then the sequence with the most prompt left goes back to the
 *      queue (or fails, when it is answering already or alone);
 *      While that forward runs, before each of its layers, requests that arrived
 *      meanwhile are admitted and the short prompts among them evaluated at once,
 *      whole, with their own rows only, their first tokens chosen and sent
 *      (prefill_between_layers; not with --no-interleave): a new request waits
 *      a layer for its first token, not the rest of the others' step;
 *   4. pick the next token of each sequence that has logits for one (in
 *      parallel across sequences), then stream each one's text, finishing it on
 *      an end id, a stop string, max_tokens or a full context.
 *
 * Invariants:
 *   - Only this thread touches the model, the pool, the sessions and the slots.
 *   - slot.cache[0 .. n_cache) are exactly the tokens in the session's KV
 *     (n_cache == herd_session_pos). They stay after a request ends, for reuse,
 *     except after a cancel (pages returned at once).
 *   - A slot with r != NULL holds one scheduler reference to r, released once
 *     the response is complete (req_emit(..., done = 1)).
 * Sampling: frequency/presence penalties are applied here to a copy of the logits
 * (OpenAI's definition, over this request's generated tokens), then
 * herd_sampler_sample does temperature / top-p / seed (temperature 0: argmax).
 * logprobs are log-softmax of the model's raw logits. The batched forward is
 * batch invariant, so at temperature 0 a request's output does not depend on
 * what else runs.
 * Not here: HTTP, JSON (parse.c, api.c), the KV pages themselves (src/kvcache.c).
 */
#define _GNU_SOURCE /* memmem */
#include "server/server.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PREFILL_CHUNK 64 /* the default chunk: rows of one prompt in a step */
#define PREFILL_ALONE 32
#define TILE 8      /* rows the batched matmuls take at a time (Q4_0 / Q8_0) */
#define FILL_FROM 5 /* a last tile with this many prompt rows takes decode rows too */
#define WAIT_MIN 16 /* prompt tokens worth waiting a step or more for (~one step's rows) */
#define MAX_TOP 20

typedef struct {
    herd_session *s;
    int32_t *cache;     /* (n_ctx) tokens in the KV cache */
    int n_cache;
    srv_req *r;         /* NULL: free */
    uint64_t ticket;    /* which admission r came in by */
    int n_done;         /* prompt tokens in the cache */
    int wait;           /* -1, or the slot whose prefill this prompt's prefix waits for */
    uint64_t wait_ticket; /* that slot's admission when the wait began */
    int wait_k;         /* prompt tokens the two share */
    int lora_idx;       /* the adapter table entry its session carries (referenced), or -1 */
    int32_t next;       /* sampled, not yet evaluated */
    int decoding;
    int fresh;          /* admitted, none of its prompt scheduled yet */
    herd_sampler *smp;
    herd_json_state *js;  /* response_format: where the output is in its grammar (NULL: free text) */
    int g_masks;          /* pick(): the grammar refused the sampled token (counted into the stats after) */
    herd_detok dt;
    srv_out out;
    float *echo_lg;     /* (chunk, V) a scored echo's prompt logits (NULL otherwise) */
    float *emb_rows;    /* (chunk, C) an embedding's hidden states of a chunk (NULL otherwise) */
    double *emb_sum;    /* (C) their sum over the prompt so far */
    float *work;        /* (V) penalised logits */
    int *counts;        /* (V) generated-token counts, zero between requests */
    int32_t *gen;       /* (n_ctx) generated ids */
    /* chosen by pick() (in parallel across slots), emitted by emit() */
    int32_t pick_id;
    float pick_lp;              /* its log-probability (logprobs requested) */
    int n_top;                  /* top_logprobs entries */
    int32_t top[MAX_TOP];
    float top_lp[MAX_TOP];
} slot;

struct srv_sched {
    const herd_model *m;
    int n_slots, n_ctx, V, queue_max;
    slot *slots;
    herd_kv_pool *pool;      /* the KV pages of every slot */
    int rr;                  /* slot that gets the prefill budget first */
    int last_prefill_only;   /* the last step ran prefill rows alone */
    uint64_t tickets;        /* admissions so far */
    int finished;            /* sequences that finished in the last step */
    double linger_s;         /* srv_params.linger_ms */
    int interleave;          /* !srv_params.no_interleave: new prompts run between a step's layers */
    int ends_prompts;        /* the step under way ends prompts (prefill_between_layers) */
    int chunk, budget;       /* prompt rows of one sequence in a step, of all together */
    pthread_t th;
    int started;
    pthread_mutex_t mu;      /* queue, draining */
    pthread_cond_t cv;
    srv_req *head, *tail;
    int n_queued, draining;
    int detach;              /* an adapter was unloaded: idle slots let go of it (under mu) */
    srv_adapters *adapters;  /* NULL: no adapters */
    pthread_mutex_t stats_mu;
    srv_stats st;
    double win_start, t_start;
    uint64_t win_tokens;
    /* the load summary (stderr every LOG_EVERY s while busy, unless quiet): its
     * window's start and the counters then */
    int quiet;
    double log_t;
    uint64_t log_req, log_prompt, log_reused, log_gen;
    double log_busy;
};

#define LOG_EVERY 10.0

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int sched_n_ctx(const srv_sched *s) { return s->n_ctx; }

void sched_use_adapters(srv_sched *s, srv_adapters *A) { s->adapters = A; }

void sched_adapter_unloaded(srv_sched *s) {
    pthread_mutex_lock(&s->mu);
    s->detach = 1;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

void sched_adapter_loaded(srv_sched *s, int i) {
    pthread_mutex_lock(&s->stats_mu);
    s->st.model_requests[i + 1] = s->st.model_tokens[i + 1] = 0;
    pthread_mutex_unlock(&s->stats_mu);
}

/* Slot sl's session takes adapter entry want (-1: none; r references it): the
 * slot holds a reference while its session carries it. A change resets the
 * session (its cache belonged to the other). Fails only for the workspace of a
 * higher rank than any before (out of memory). */
static int slot_take_adapter(srv_sched *s, slot *sl, int want, const herd_lora *l, herd_error *err) {
    if (sl->lora_idx == want) return 0;
    if (herd_session_set_lora(sl->s, l, err)) return -1;
    sl->n_cache = 0;
    if (want >= 0) adapters_ref_index(s->adapters, want);
    if (sl->lora_idx >= 0) adapters_unref(s->adapters, sl->lora_idx);
    sl->lora_idx = want;
    return 0;
}

/* Idle slots let go of adapters no longer served (the last reference frees one). */
static void detach_adapters(srv_sched *s) {
    for (int i = 0; i < s->n_slots; i++) {
        slot *sl = &s->slots[i];
        herd_error err;
        if (!sl->r && sl->lora_idx >= 0 && !adapters_live(s->adapters, sl->lora_idx))
            slot_take_adapter(s, sl, -1, NULL, &err); /* (to none: cannot fail) */
    }
}

const double srv_lat_bounds[SRV_LAT_BUCKETS - 1] = { 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 10 };

/* Under the stats lock. */
static void hist_add(srv_hist *h, double v) {
    int i = 0;
    while (i < SRV_LAT_BUCKETS - 1 && v > srv_lat_bounds[i]) i++;
    h->bucket[i]++;
    h->count++;
    h->sum += v;
}

int sched_new(srv_sched **out, const herd_model *m, const srv_params *p, herd_error *err) {
    *out = NULL;
    srv_sched *s = calloc(1, sizeof *s);
    if (!s) abort();
    int n_slots = p->n_parallel, n_ctx = p->n_ctx;
    s->m = m;
    s->n_slots = n_slots;
    s->queue_max = p->queue_max;
    s->quiet = p->quiet;
    s->linger_s = p->linger_ms > 0 ? p->linger_ms * 1e-3 : 0;
    s->interleave = !p->no_interleave;
    s->chunk = p->prefill_chunk > 0 ? p->prefill_chunk : PREFILL_CHUNK;
    s->budget = 2 * s->chunk;
    s->V = herd_model_config(m)->vocab_size;
    const herd_config *c = herd_model_config(m);
    if (n_ctx <= 0) n_ctx = c->max_seq_len < 4096 ? c->max_seq_len : 4096;
    s->n_ctx = n_ctx;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    pthread_mutex_init(&s->stats_mu, NULL);
    s->slots = calloc((size_t)n_slots, sizeof *s->slots);
    if (!s->slots) abort();
    herd_session_params sp = herd_session_default_params();
    sp.n_ctx = n_ctx;
    sp.n_threads = p->n_threads;
    sp.kv_type = p->kv_type;
    if (herd_kv_pool_new(&s->pool, m, sp, n_slots, p->kv_pages, err)) {
        sched_free(s);
        return -1;
    }
    for (int i = 0; i < n_slots; i++) {
        slot *sl = &s->slots[i];
        sl->wait = -1;
        sl->lora_idx = -1;
        if (herd_session_new_on_pool(&sl->s, s->pool, err)) {
            sched_free(s);
            return -1;
        }
        sl->cache = malloc((size_t)n_ctx * sizeof *sl->cache);
        sl->gen = malloc((size_t)n_ctx * sizeof *sl->gen);
        sl->work = malloc((size_t)s->V * sizeof *sl->work);
        sl->counts = calloc((size_t)s->V, sizeof *sl->counts);
        if (!sl->cache || !sl->gen || !sl->work || !sl->counts) abort();
    }
    s->st.n_slots = n_slots;
    s->st.kv_tokens_capacity = (long)n_slots * n_ctx;
    s->win_start = s->t_start = now_s();
    *out = s;
    return 0;
}

void sched_free(srv_sched *s) {
    if (!s) return;
    for (int i = 0; s->slots && i < s->n_slots; i++) {
        slot *sl = &s->slots[i];
        herd_session_free(sl->s);
        herd_sampler_free(sl->smp);
        out_free(&sl->out);
        free(sl->cache);
        free(sl->gen);
        free(sl->work);
        free(sl->counts);
        free(sl->echo_lg);
    }
    free(s->slots);
    herd_kv_pool_free(s->pool);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->stats_mu);
    free(s);
}

void sched_stats(srv_sched *s, srv_stats *st) {
    pthread_mutex_lock(&s->stats_mu);
    *st = s->st;
    pthread_mutex_unlock(&s->stats_mu);
    pthread_mutex_lock(&s->mu);
    st->queue_depth = s->n_queued;
    pthread_mutex_unlock(&s->mu);
    if (st->running == 0) st->tokens_per_s = 0;
    st->up_s = now_s() - s->t_start;
}

int sched_submit_n(srv_sched *s, srv_req **rs, int n) {
    pthread_mutex_lock(&s->mu);
    /* (n choices more than the whole queue holds go in when it is empty) */
    int rc = s->draining ? 503 : s->n_queued + n > s->queue_max && (n == 1 || s->n_queued > 0) ? 429 : 0;
    for (int i = 0; i < n && !rc; i++) {
        srv_req *r = rs[i];
        pthread_mutex_lock(&r->mu);
        r->refs++;
        pthread_mutex_unlock(&r->mu);
        r->next = NULL;
        if (s->tail) s->tail->next = r;
        else s->head = r;
        s->tail = r;
        s->n_queued++;
        r->t_submit = now_s();
        r->first_seen = 0;
    }
    if (!rc) { /* counted before the scheduler can admit them, so its counts agree */
        pthread_mutex_lock(&s->stats_mu);
        s->st.requests += (uint64_t)n;
        s->st.model_requests[rs[0]->model_index] += (uint64_t)n; /* choices of one request */
        pthread_mutex_unlock(&s->stats_mu);
        pthread_cond_signal(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int sched_submit(srv_sched *s, srv_req *r) { return sched_submit_n(s, &r, 1); }

/* ---- per-sequence work ----------------------------------------------------------- */


/* Empties the slot's KV cache: its pages go back to the pool. */
static void forget(slot *sl) {
    herd_session_reset(sl->s);
    sl->n_cache = 0;
}

/* Frees the slot's per-request state; returns its request (reference kept). */
static srv_req *vacate(srv_sched *s, slot *sl) {
    srv_req *r = sl->r;
    for (int i = 0; i < sl->out.n_gen && i < s->n_ctx; i++) sl->counts[sl->gen[i]] = 0;
    out_free(&sl->out);
    herd_sampler_free(sl->smp);
    sl->smp = NULL;
    herd_json_state_free(sl->js);
    sl->js = NULL;
    free(sl->echo_lg);
    sl->echo_lg = NULL;
    free(sl->emb_rows);
    free(sl->emb_sum);
    sl->emb_rows = NULL;
    sl->emb_sum = NULL;
    sl->r = NULL;
    pthread_mutex_lock(&s->stats_mu);
    s->st.running--;
    pthread_mutex_unlock(&s->stats_mu);
    return r;
}

static void release_slot(srv_sched *s, slot *sl) { req_release(vacate(s, sl)); }

/* Puts a sequence still in its prompt (nothing sent yet) back at the head of
 * the queue, its pages returned: it runs again when pages are free. */
static void requeue_slot(srv_sched *s, slot *sl) {
    forget(sl);
    srv_req *r = vacate(s, sl);
    r->requeued = 1;
    pthread_mutex_lock(&s->mu);
    r->next = s->head;
    s->head = r;
    if (!s->tail) s->tail = r;
    s->n_queued++;
    pthread_mutex_unlock(&s->mu);
    pthread_mutex_lock(&s->stats_mu);
    s->st.requeued++;
    pthread_mutex_unlock(&s->stats_mu);
}

static void finish(srv_sched *s, slot *sl, const char *reason) {
    size_t n;
    const char *rest = herd_detok_flush(&sl->dt, &n);
    buf_put(&sl->out.text, rest, n);
    out_finish(&sl->out, sl->r, reason);
    release_slot(s, sl);
    s->finished++;
}

static void fail_slot(srv_sched *s, slot *sl, const char *msg) {
    out_fail(sl->r, msg);
    release_slot(s, sl);
}

/* Tokens a and b (n of them at most) start with in common. */
static int common_ids(const int32_t *a, const int32_t *b, int n) {
    int k = 0;
    while (k < n && a[k] == b[k]) k++;
    return k;
}

/* r's prompt tokens cached in sl (its last token is always computed: its
 * logits); none when sl's cache was computed with another adapter. */
static int common_prefix(const slot *sl, const srv_req *r) {
    if (herd_session_lora(sl->s) != r->lora) return 0;
    return common_ids(sl->cache, r->prompt, sl->n_cache < r->n_prompt - 1 ? sl->n_cache : r->n_prompt - 1);
}

/* A prefill still running in another slot whose prompt shares >= WAIT_MIN more
 * tokens with sl's than sl holds: sl waits for it (step() leaves sl out until
 * then). Only slots that wait for no one lead, so waits never form a cycle. */
static void find_leader(srv_sched *s, slot *sl) {
    const srv_req *r = sl->r;
    int best_k = sl->n_done + WAIT_MIN - 1;
    sl->wait = -1;
    for (int i = 0; i < s->n_slots; i++) {
        const slot *o = &s->slots[i];
        if (o == sl || !o->r || o->decoding || o->wait >= 0 || o->r->lora != r->lora) continue;
        const int lim = o->r->n_prompt < r->n_prompt - 1 ? o->r->n_prompt : r->n_prompt - 1;
        const int k = common_ids(o->r->prompt, r->prompt, lim);
        if (k > best_k && o->n_done < k) best_k = k, sl->wait = i;
    }
    if (sl->wait >= 0) sl->wait_ticket = s->slots[sl->wait].ticket, sl->wait_k = best_k;
}

/* Gives sl the longest prefix of its prompt cached in another slot, where that
 * is longer than what sl holds: the pages are shared, not recomputed. Returns the
 * tokens gained. */
static int adopt_prefix(srv_sched *s, slot *sl) {
    const int had = sl->n_done; /* == n_cache while in its prompt */
    int src = -1, best = had;
    for (int i = 0; i < s->n_slots; i++) {
        const int k = &s->slots[i] == sl ? 0 : common_prefix(&s->slots[i], sl->r);
        if (k > best) src = i, best = k;
    }
    if (src < 0) return 0;
    herd_error err;
    if (herd_session_share_prefix(sl->s, s->slots[src].s, best, &err) == HERD_OK)
        memcpy(sl->cache, s->slots[src].cache, (size_t)best * sizeof *sl->cache);
    sl->n_cache = sl->n_done = herd_session_pos(sl->s); /* 0 after a failed share */
    return sl->n_done > had ? sl->n_done - had : 0;
}

/* An echo with logprobs needs the logits of every prompt position, so its whole
 * prompt is computed (no cached prefix), s->chunk rows' logits at a time. */
static int scored(const srv_req *r) { return r->echo && r->logprobs; }
/* computed whole, no cached prefix: a scored echo (every position's logits) or an
 * embedding (every position's hidden state) */
static int whole(const srv_req *r) { return scored(r) || r->kind == REQ_EMBED; }

/* Puts r into a free slot. The prompt's longest prefix cached in any slot,
 * running or idle, is not recomputed: the slot's own cache is rewound to it, or
 * the pages of another slot are shared (herd_session_share_prefix). The free slot
 * chosen is the one whose cache shares most, else the one holding least. */
static int admit(srv_sched *s, srv_req *r) {
    int best = -1, best_common = -1;
    for (int i = 0; i < s->n_slots; i++) {
        slot *sl = &s->slots[i];
        if (sl->r) continue;
        int k = common_prefix(sl, r);
        if (k > best_common || (k == best_common && sl->n_cache < s->slots[best].n_cache))
            best = i, best_common = k;
    }
    if (best < 0) return 0;
    slot *sl = &s->slots[best];
    if (whole(r)) best_common = 0;
    herd_error err;
    if (slot_take_adapter(s, sl, r->model_index - 1, r->lora, &err)) {
        out_fail(r, err.msg);
        req_release(r);
        return 1;
    }
    herd_session_rewind(sl->s, best_common); /* (a change of adapter emptied it: best_common is 0) */
    sl->n_cache = sl->n_done = best_common;
    sl->decoding = 0;
    sl->fresh = 1;
    sl->r = r;
    if (!whole(r)) adopt_prefix(s, sl); /* a longer prefix another slot holds */
    best_common = sl->n_done;
    sl->ticket = ++s->tickets;
    sl->wait = -1;
    if (!whole(r)) find_leader(s, sl);
    herd_detok_init(&sl->dt);
    out_init(&sl->out, r);
    sl->out.n_cached = best_common;
    if (scored(r) && !(sl->echo_lg = malloc((size_t)s->chunk * (size_t)s->V * sizeof *sl->echo_lg))) {
        pthread_mutex_lock(&s->stats_mu);
        s->st.running++;
        pthread_mutex_unlock(&s->stats_mu);
        fail_slot(s, sl, "out of memory for the prompt's logits (echo with logprobs)");
        return 1;
    }
    const int C = herd_model_config(s->m)->dim;
    if (r->kind == REQ_EMBED && (!(sl->emb_rows = malloc((size_t)s->chunk * C * sizeof *sl->emb_rows)) ||
                                 !(sl->emb_sum = calloc((size_t)C, sizeof *sl->emb_sum)))) {
        pthread_mutex_lock(&s->stats_mu);
        s->st.running++;
        pthread_mutex_unlock(&s->stats_mu);
        fail_slot(s, sl, "out of memory for the prompt's hidden states (embeddings)");
        return 1;
    }
    herd_sampler_params sp = herd_sampler_default_params();
    sp.temperature = r->temperature;
    sp.top_p = r->top_p;
    sp.top_k = r->top_k;
    sp.min_p = r->min_p;
    sp.repeat_penalty = 1;
    sp.repeat_last_n = 0;
    sp.seed = r->seed;
    if (herd_sampler_new(&sl->smp, sp, s->V, &err) ||
        (r->grammar && herd_json_state_new(&sl->js, r->grammar, &err))) {
        pthread_mutex_lock(&s->stats_mu);
        s->st.running++;
        pthread_mutex_unlock(&s->stats_mu);
        fail_slot(s, sl, err.msg);
        return 1;
    }
    pthread_mutex_lock(&s->stats_mu);
    s->st.running++;
    if (!r->requeued) { /* counted once, at its first admission */
        hist_add(&s->st.queue_wait, now_s() - r->t_submit);
        s->st.prompt_tokens += (uint64_t)r->n_prompt;
        s->st.reused_tokens += (uint64_t)best_common;
    }
    pthread_mutex_unlock(&s->stats_mu);
    return 1;
}

/* Admits queued requests in FIFO order while slots are free (running of them are
 * taken); cancelled ones are dropped. Returns the slots taken then. Called with
 * s->mu held. */
static int admit_queued(srv_sched *s, int running) {
    while (s->head && running < s->n_slots) {
        srv_req *r = s->head;
        s->head = r->next;
        if (!s->head) s->tail = NULL;
        s->n_queued--;
        if (req_cancelled(r)) {
            req_emit(r, NULL, 0, 1);
            req_release(r);
            continue;
        }
        admit(s, r);
        running++;
    }
    return running;
}

/* Length of the longest proper prefix of a stop string that the text ends with:
 * that much must be held back while streaming. */
static size_t stop_holdback(const srv_req *r, const srv_buf *t) {
    size_t hold = 0;
    for (int i = 0; i < r->n_stops; i++) {
        size_t sl = strlen(r->stops[i]);
        for (size_t k = sl - 1; k > hold; k--)
            if (k <= t->n && memcmp(t->p + t->n - k, r->stops[i], k) == 0) { hold = k; break; }
    }
    return hold;
}

/* Cuts the text at the first stop string that starts at or after from - (len - 1)
 * and at or after floor. */
static int cut_stop(const srv_req *r, srv_buf *t, size_t from, size_t floor) {
    size_t best = (size_t)-1;
    for (int i = 0; i < r->n_stops; i++) {
        size_t sl = strlen(r->stops[i]), start = from >= sl ? from - sl + 1 : 0;
        if (start < floor) start = floor; /* never in the echoed prompt */
        if (t->n < start + sl) continue;
        const char *p = memmem(t->p + start, t->n - start, r->stops[i], sl);
        if (p && (size_t)(p - t->p) < best) best = (size_t)(p - t->p);
    }
    if (best == (size_t)-1) return 0;
    t->n = best;
    t->p[best] = 0;
    return 1;
}

/* Token id's log-probability (sl->pick_lp) and the top_logprobs list: log-softmax
 * of the raw logits. */
static void logprobs_of(const srv_sched *s, slot *sl, const float *logits, int32_t id) {
    const srv_req *r = sl->r;
    float mx = logits[0];
    for (int i = 1; i < s->V; i++) mx = logits[i] > mx ? logits[i] : mx;
    double sum = 0;
    for (int i = 0; i < s->V; i++) sum += exp((double)(logits[i] - mx));
    float lse = mx + (float)log(sum);
    int k = 0, want = r->top_logprobs < MAX_TOP ? r->top_logprobs : MAX_TOP;
    for (int i = 0; i < s->V && want > 0; i++) { /* insertion into a small sorted list */
        float v = logits[i];
        if (k == want && v <= sl->top_lp[k - 1]) continue;
        int j = k < want ? k++ : k - 1;
        while (j > 0 && sl->top_lp[j - 1] < v) sl->top[j] = sl->top[j - 1], sl->top_lp[j] = sl->top_lp[j - 1], j--;
        sl->top[j] = i;
        sl->top_lp[j] = v;
    }
    for (int i = 0; i < k; i++) sl->top_lp[i] -= lse;
    sl->n_top = k;
    sl->pick_lp = logits[id] - lse;
}

static int is_stop_id(const srv_req *r, int32_t id) {
    for (int i = 0; i < r->n_stop_ids; i++)
        if (r->stop_ids[i] == id) return 1;
    return 0;
}

static int is_eos(const herd_config *c, int32_t id) {
    for (int i = 0; i < c->n_eos; i++)
        if (c->eos_ids[i] == id) return 1;
    return 0;
}

/* Chooses the next token of a slot whose session holds fresh logits (and its
 * logprobs): touches only the slot, so slots are picked in parallel. */
static void pick(const srv_sched *s, slot *sl) {
    srv_req *r = sl->r;
    const float *logits = herd_session_logits(sl->s), *l = logits;
    /* ignore_eos / min_tokens hold the end back (a grammar's own end is kept) */
    const int hold = !r->grammar && (r->ignore_eos || sl->out.n_gen < r->min_tokens);
    if (r->freq_penalty != 0 || r->pres_penalty != 0 || r->n_bias || hold) {
        memcpy(sl->work, logits, (size_t)s->V * sizeof *sl->work);
        for (int i = 0; i < r->n_bias; i++) sl->work[r->bias[i].id] += r->bias[i].v;
        if (hold) {
            const herd_config *c = herd_model_config(s->m);
            for (int i = 0; i < c->n_eos; i++)
                if (c->eos_ids[i] >= 0 && c->eos_ids[i] < s->V) sl->work[c->eos_ids[i]] = -INFINITY;
            for (int i = 0; i < r->n_stop_ids && sl->out.n_gen < r->min_tokens; i++)
                sl->work[r->stop_ids[i]] = -INFINITY;
        }
        for (int i = 0; i < sl->out.n_gen; i++) { /* each distinct id once */
            int32_t t = sl->gen[i];
            if (sl->counts[t] <= 0) continue;
            sl->work[t] -= r->freq_penalty * (float)sl->counts[t] + r->pres_penalty;
            sl->counts[t] = -sl->counts[t];
        }
        for (int i = 0; i < sl->out.n_gen; i++)
            if (sl->counts[sl->gen[i]] < 0) sl->counts[sl->gen[i]] = -sl->counts[sl->gen[i]];
        l = sl->work;
    }
    sl->pick_id = herd_sampler_sample(sl->smp, l, NULL, 0);
    sl->g_masks = 0;
    if (sl->js && !herd_json_state_allows(sl->js, sl->pick_id)) {
        sl->g_masks = 1;
        /* refused: sample again among the allowed (the same distribution as
         * sampling from the masked logits, which a refusal alone pays for) */
        if (l != sl->work) memcpy(sl->work, logits, (size_t)s->V * sizeof *sl->work);
        l = sl->work;
        sl->pick_id = herd_json_state_mask(sl->js, sl->work) ? herd_sampler_sample(sl->smp, l, NULL, 0) : -1;
    }
    if (r->logprobs && sl->pick_id >= 0) logprobs_of(s, sl, logits, sl->pick_id);
}

/* Streams the slot's picked token. Returns 1 when the sequence goes on
 * (sl->next set), 0 when it finished. */
static int emit(srv_sched *s, slot *sl) {
    srv_req *r = sl->r;
    int32_t id = sl->pick_id;
    if (!r->first_seen) {
        r->first_seen = 1;
        pthread_mutex_lock(&s->stats_mu);
        hist_add(&s->st.ttft, now_s() - r->t_submit);
        pthread_mutex_unlock(&s->stats_mu);
    }
    if (id < 0 || is_eos(herd_model_config(s->m), id) || is_stop_id(r, id)) { /* < 0: the grammar allows nothing */
        finish(s, sl, "stop");
        return 0;
    }
    srv_out *o = &sl->out;
    if (sl->js) herd_json_state_accept(sl->js, id);
    if (r->logprobs)
        out_add_logprob(o, r, herd_model_tokenizer(s->m), id, sl->pick_lp, sl->top, sl->top_lp, sl->n_top, o->text.n);
    sl->gen[o->n_gen++] = id;
    sl->counts[id]++;
    pthread_mutex_lock(&s->stats_mu);
    s->st.generated_tokens++;
    s->st.model_tokens[r->model_index]++;
    s->win_tokens++;
    pthread_mutex_unlock(&s->stats_mu);
    size_t n, before = o->text.n;
    const char *txt = herd_detok_push(&sl->dt, herd_model_tokenizer(s->m), id, &n);
    buf_put(&o->text, txt, n);
    if (r->n_stops && cut_stop(r, &o->text, before, o->echo_len)) {
        finish(s, sl, "stop");
        return 0;
    }
    if (o->n_gen >= r->max_tokens || sl->n_cache >= s->n_ctx) {
        finish(s, sl, "length");
        return 0;
    }
    out_stream_text(o, r, o->text.n - stop_holdback(r, &o->text));
    sl->next = id;
    sl->decoding = 1;
    return 1;
}

/* An embedding's chunk of k rows: their hidden states into the sum. */
static void embed_rows(const srv_sched *s, slot *sl, int k) {
    const int C = herd_model_config(s->m)->dim;
    for (int i = 0; i < k; i++)
        for (int c = 0; c < C; c++) sl->emb_sum[c] += sl->emb_rows[(size_t)i * C + c];
}

/* The prompt is done: its mean hidden state, at unit length, is the answer. */
static void embed_done(const srv_sched *s, slot *sl) {
    const int C = herd_model_config(s->m)->dim;
    srv_out *o = &sl->out;
    if (!(o->embedding = malloc((size_t)C * sizeof *o->embedding))) abort();
    double norm = 0;
    for (int c = 0; c < C; c++) norm += sl->emb_sum[c] * sl->emb_sum[c];
    norm = norm > 0 ? sqrt(norm) : 1; /* the mean's 1/n cancels in the unit vector */
    for (int c = 0; c < C; c++) o->embedding[c] = (float)(sl->emb_sum[c] / norm);
    o->n_embedding = C;
}

/* Prompt token q into an echo's answer: its text (not a BOS that tokenizing the
 * prompt string added) and, with logprobs, its log-probability under lg, the
 * logits of position q - 1 (q = 0, lg NULL: none, null). */
static void echo_token(srv_sched *s, slot *sl, int q, const float *lg) {
    srv_req *r = sl->r;
    srv_out *o = &sl->out;
    const herd_tokenizer *t = herd_model_tokenizer(s->m);
    const int32_t id = r->prompt[q];
    if (r->logprobs && !lg) {
        out_add_logprob(o, r, t, id, NAN, NULL, NULL, 0, o->text.n);
    } else if (r->logprobs) {
        logprobs_of(s, sl, lg, id);
        out_add_logprob(o, r, t, id, sl->pick_lp, sl->top, sl->top_lp, sl->n_top, o->text.n);
    }
    if (!(q == 0 && r->bos_added)) {
        size_t nb = 0;
        const char *b = herd_token_bytes(t, id, &nb);
        buf_put(&o->text, b ? b : "", b ? nb : 0);
    }
    o->echo_len = o->text.n;
}

/* Echo: prompt positions [p0, p0 + k) were just evaluated. Scored (logprobs), row i
 * of lg gives token p0 + i + 1 its log-probability, in order from token 0 (the last
 * row's logits choose the first generated token instead); otherwise the prompt's
 * text goes in once it is all in the cache (a cached prefix is not evaluated). */
static void echo_prompt(srv_sched *s, slot *sl, int p0, int k, const float *lg) {
    const srv_req *r = sl->r;
    if (scored(r)) {
        if (p0 == 0) echo_token(s, sl, 0, NULL);
        for (int i = 0; i < k && p0 + i + 1 < r->n_prompt; i++) echo_token(s, sl, p0 + i + 1, lg + (size_t)i * s->V);
    } else if (p0 + k == r->n_prompt) {
        for (int q = 0; q < r->n_prompt; q++) echo_token(s, sl, q, NULL);
    }
}

/* ---- the loop -------------------------------------------------------------------- */

/* After a forward: the n tokens ids evaluated for sl go into its cache, a prompt
 * chunk's echo / hidden rows are taken, and a prompt scored or embedded whole is
 * finished. Returns 1 when sl has logits to choose its next token from. */
static int settle(srv_sched *s, slot *sl, const int32_t *ids, int n, const float *al, const float *hs) {
    memcpy(sl->cache + sl->n_cache, ids, (size_t)n * sizeof *ids);
    sl->n_cache += n;
    if (sl->decoding) return 1;
    if (sl->r->echo) echo_prompt(s, sl, sl->n_done, n, al);
    if (hs) embed_rows(s, sl, n);
    sl->n_done += n;
    if (sl->n_done < sl->r->n_prompt) return 0;
    if (sl->r->max_tokens == 0) { /* the prompt scored (or embedded), nothing to generate */
        if (sl->r->kind == REQ_EMBED) embed_done(s, sl);
        finish(s, sl, "length");
        return 0;
    }
    return 1;
}

/* A new prompt that goes between the layers of a step (prefill_between_layers):
 * none of it evaluated, not waiting for another's prefix, not computed whole,
 * at most a chunk. */
static int short_fresh(const srv_sched *s, const slot *sl) {
    return sl->r && sl->fresh && sl->wait < 0 && !whole(sl->r) && sl->r->n_prompt - sl->n_done <= s->chunk;
}

/* Called by the step's forward before each of its layers: requests that arrived
 * while it runs are admitted, and the short new prompts (short_fresh: those the
 * step left out for this, and those just admitted; at most the budget's rows at
 * a time) are evaluated at once, whole, while the step waits
 * (herd_batch_eval_now), and their first tokens chosen and sent. A request that
 * arrives while others decode then waits for at most one layer, not for the rest
 * of their step, and its prompt runs with its own rows only: the batched matmuls
 * cost about as much per row beyond a few rows as a row alone, so its first token
 * comes about as fast as on an idle server. The decoders' step takes that much
 * longer. The queue lock is
 * only tried: a connection thread holding it delays admission by a layer, never
 * the forward. A prompt that fails here (pages) goes into the next step's batch,
 * where running out of pages is dealt with. A step that ends prompts itself
 * takes only those it left out, before its first layer. */
static void prefill_between_layers(void *ctx, herd_batch *b, int layer) {
    srv_sched *s = ctx;
    if (s->ends_prompts && layer > 0) return; /* its first tokens would wait for these */
    int running = 0;
    for (int i = 0; i < s->n_slots; i++) running += s->slots[i].r != NULL;
    if (running < s->n_slots && !pthread_mutex_trylock(&s->mu)) {
        if (s->head) admit_queued(s, running);
        pthread_mutex_unlock(&s->mu);
    }
    herd_session *ss[s->n_slots];
    const int32_t *ids[s->n_slots];
    int n_ids[s->n_slots], who[s->n_slots], n = 0, rows = 0;
    const int room = herd_batch_room(b);
    for (int i = 0; i < s->n_slots; i++) {
        slot *sl = &s->slots[i];
        if (!short_fresh(s, sl)) continue;
        const int k = sl->r->n_prompt - sl->n_done;
        if (rows + k > s->budget || rows + k > room) continue;
        ss[n] = sl->s, ids[n] = sl->r->prompt + sl->n_done, n_ids[n] = k, who[n++] = i;
        rows += k;
    }
    if (!n) return;
    for (int j = 0; j < n; j++) s->slots[who[j]].fresh = 0;
    herd_error err;
    if (herd_batch_eval_now(b, ss, ids, n_ids, NULL, NULL, n, &err)) return;
    for (int j = 0; j < n; j++) {
        slot *sl = &s->slots[who[j]];
        if (settle(s, sl, ids[j], n_ids[j], NULL, NULL)) {
            pick(s, sl);
            emit(s, sl);
        }
    }
    pthread_mutex_lock(&s->stats_mu);
    s->st.interleaved += (uint64_t)n;
    pthread_mutex_unlock(&s->stats_mu);
}

static void step(srv_sched *s) {
    herd_session *ss[s->n_slots];
    const int32_t *ids[s->n_slots];
    float *al[s->n_slots]; /* a scored echo's prompt rows: their logits */
    float *hs[s->n_slots]; /* an embedding's prompt rows: their hidden states */
    int n_ids[s->n_slots], who[s->n_slots], n = 0, budget = 0;
    int first = 0; /* the batch ends a prompt: its first token comes from this step */
    s->rr = (s->rr + 1) % s->n_slots; /* the prefill budget goes round the slots */
    /* short new prompts are left to prefill_between_layers (before the first
     * layer, their first tokens before the others' next ones), unless nothing
     * else runs (then they are the batch) or the step's rows leave no room for
     * one of them between its layers (herd_batch_room; with a large
     * --prefill-chunk): then they take their turn in the step */
    for (int defer = s->interleave; defer >= 0; defer--) {
        int rows = 0, later = 0; /* the step's rows; the longest prompt left to its layers */
        n = 0, budget = s->budget, first = 0;
        for (int ii = 0; ii < s->n_slots; ii++) {
            int i = (s->rr + ii) % s->n_slots;
            slot *sl = &s->slots[i];
            if (!sl->r) continue;
            if (sl->wait >= 0) {
                const slot *lead = &s->slots[sl->wait];
                if (lead->r && lead->ticket == sl->wait_ticket && !lead->decoding && lead->n_done < sl->wait_k)
                    continue; /* its prefix is still being computed */
                sl->wait = -1;
                const int gained = adopt_prefix(s, sl);
                sl->out.n_cached += gained;
                pthread_mutex_lock(&s->stats_mu);
                s->st.reused_tokens += (uint64_t)gained;
                pthread_mutex_unlock(&s->stats_mu);
            }
            al[n] = hs[n] = NULL;
            if (sl->decoding) {
                ids[n] = &sl->next;
                n_ids[n] = 1;
            } else if (defer && short_fresh(s, sl)) {
                const int k = sl->r->n_prompt - sl->n_done;
                later = k > later ? k : later;
                continue;
            } else {
                int k = sl->r->n_prompt - sl->n_done;
                k = k < s->chunk ? k : s->chunk;
                k = k < budget ? k : budget;
                if (k <= 0) continue;
                budget -= k;
                sl->fresh = 0;
                first |= sl->n_done + k == sl->r->n_prompt;
                ids[n] = sl->r->prompt + sl->n_done;
                n_ids[n] = k;
                al[n] = sl->echo_lg;
                hs[n] = sl->emb_rows;
            }
            rows += n_ids[n];
            ss[n] = sl->s;
            who[n++] = i;
        }
        if (n && (!later || later <= herd_kv_pool_batch_rows(s->pool) - rows)) break;
    }
    if (!n) return;
    /* A short prefill that ends a prompt (a new request's prompt, or what its
     * cached prefix leaves) runs without the decode rows, every other step at
     * most: its first token then waits for a step of its own rows, not for
     * everyone's (time to first token), and decoding loses one step in two at
     * worst. Not the middle chunks of a long prompt (--prefill-chunk 32 or less):
     * alone they gave no one a first token sooner and halved the decoders' rate
     * (8 decoders, a 710-token prompt in chunks of 16: their median gap 106-134
     * ms, in chunks of 32 176-231, against 171-172 in chunks of 64). Except a few decode
     * rows that fill its last tile of TILE rows, where FILL_FROM or more of it are
     * prompt rows: the batched matmuls take 8 rows at a time, and 5 to 7 rows cost
     * 85-97% of what 8 do (bench_batch), so those decode rows come cheap. Not
     * filling gave later requests no better a first token (8 streams, 3
     * interleaved runs, median 35 / 34 / 39 ms against 37 / 35 / 38). */
    int n_pre = 0, rows_pre = 0;
    for (int j = 0; j < n; j++)
        if (!s->slots[who[j]].decoding) n_pre++, rows_pre += n_ids[j];
    if (n_pre && n_pre < n && rows_pre <= PREFILL_ALONE && first && !s->last_prefill_only) {
        /* prompt rows first, then decode rows in the order of the list (which
         * starts at a slot that moves each step: the free rides go round) */
        herd_session *ss2[n];
        const int32_t *ids2[n];
        float *al2[n], *hs2[n];
        int n2[n], who2[n], k = 0;
        for (int pass = 0; pass < 2; pass++)
            for (int j = 0; j < n; j++)
                if (s->slots[who[j]].decoding == pass)
                    ss2[k] = ss[j], ids2[k] = ids[j], al2[k] = al[j], hs2[k] = hs[j], n2[k] = n_ids[j],
                    who2[k++] = who[j];
        const int r = rows_pre % TILE, fill = r >= FILL_FROM ? TILE - r : 0;
        n = n_pre + (fill < n - n_pre ? fill : n - n_pre);
        pthread_mutex_lock(&s->stats_mu);
        s->st.fill_rows += (uint64_t)(n - n_pre);
        pthread_mutex_unlock(&s->stats_mu);
        for (int j = 0; j < n; j++)
            ss[j] = ss2[j], ids[j] = ids2[j], al[j] = al2[j], hs[j] = hs2[j], n_ids[j] = n2[j], who[j] = who2[j];
        s->last_prefill_only = 1;
    } else {
        s->last_prefill_only = 0;
    }
    herd_error err;
    double t0 = now_s();
    s->ends_prompts = first;
    herd_status st = herd_session_eval_batch_yield(ss, ids, n_ids, al, hs, n,
                                                   s->interleave ? prefill_between_layers : NULL, s, &err);
    if (st == HERD_ERR_NOMEM) { /* out of KV pages: drop the prefixes idle slots keep */
        for (int i = 0; i < s->n_slots; i++)
            if (!s->slots[i].r && s->slots[i].n_cache) forget(&s->slots[i]);
        st = herd_session_eval_batch_out(ss, ids, n_ids, al, hs, n, &err);
    }
    while (st == HERD_ERR_NOMEM) {
        /* still out: take the running sequence with the most prompt left (the
         * newest work) off, which frees its pages, and try again; it may be one
         * this step leaves out (waiting for another's prefix, or past the prefill
         * budget): those hold pages too. One still in its prompt goes back to the
         * queue (it runs when others have finished); one already answering, or
         * the only one (its prompt does not fit the pool), fails with a message.
         * A failed batch changed no session. */
        slot *v = NULL;
        int most = -1, running = 0;
        for (int i = 0; i < s->n_slots; i++) {
            slot *sl = &s->slots[i];
            const int left = !sl->r ? -1 : sl->decoding ? 0 : sl->r->n_prompt - sl->n_done;
            running += sl->r != NULL;
            if (left > most) v = sl, most = left;
        }
        if (!v) break;
        if (!v->decoding && running > 1) {
            requeue_slot(s, v);
        } else {
            forget(v);
            char msg[1200];
            snprintf(msg, sizeof msg, "the KV cache is full (%d pages of %d positions, shared by every "
                     "sequence): retry later, or start the server with more --kv-pages (%s)",
                     herd_kv_pool_pages_total(s->pool), herd_kv_page_size(), err.msg);
            fail_slot(s, v, msg);
        }
        for (int j = 0; j < n; j++)
            if (&s->slots[who[j]] == v) {
                n--;
                ss[j] = ss[n], ids[j] = ids[n], al[j] = al[n], hs[j] = hs[n], n_ids[j] = n_ids[n], who[j] = who[n];
                break;
            }
        if (n == 0) return; /* nothing of this step is left */
        st = herd_session_eval_batch_out(ss, ids, n_ids, al, hs, n, &err);
    }
    if (st) {
        /* a failed batch leaves the sessions' state unknown: reset them */
        for (int j = 0; j < n; j++) {
            slot *sl = &s->slots[who[j]];
            forget(sl);
            fail_slot(s, sl, err.msg);
        }
        return;
    }
    double t1 = now_s();
    pthread_mutex_lock(&s->stats_mu);
    s->st.forward_s += t1 - t0;
    s->st.steps++;
    s->st.step_sequences += (uint64_t)n;
    if (n > s->st.step_sequences_max) s->st.step_sequences_max = n;
    pthread_mutex_unlock(&s->stats_mu);
    int todo[s->n_slots], n_todo = 0;
    for (int j = 0; j < n; j++)
        if (settle(s, &s->slots[who[j]], ids[j], n_ids[j], al[j], hs[j])) todo[n_todo++] = who[j];
    /* choosing (argmax or a draw over the vocabulary, logprobs) runs on the
     * forward's threads; streaming the text stays on this thread (one pick runs
     * here: a region of one thread still costs libgomp's futex wake) */
    if (n_todo == 1) pick(s, &s->slots[todo[0]]);
    else {
#pragma omp parallel for schedule(dynamic, 1)
        for (int j = 0; j < n_todo; j++) pick(s, &s->slots[todo[j]]);
    }
    uint64_t g_tokens = 0, g_masks = 0;
    for (int j = 0; j < n_todo; j++) {
        const slot *sl = &s->slots[todo[j]];
        g_tokens += sl->js != NULL;
        g_masks += (uint64_t)sl->g_masks;
    }
    if (g_tokens) {
        pthread_mutex_lock(&s->stats_mu);
        s->st.grammar_tokens += g_tokens;
        s->st.grammar_masks += g_masks;
        pthread_mutex_unlock(&s->stats_mu);
    }
    for (int j = 0; j < n_todo; j++) emit(s, &s->slots[todo[j]]);
    double t2 = now_s();
    pthread_mutex_lock(&s->stats_mu);
    s->st.step_s += t2 - t0;
    pthread_mutex_unlock(&s->stats_mu);
}

/* One line of load summary on stderr for the window since log_t, once it is
 * LOG_EVERY long and something happened in it (the rate is over the time in
 * steps: while busy); then a new window from t. Called with s->mu held. */
static void log_window(srv_sched *s, double t, int running) {
    if (t - s->log_t < LOG_EVERY) return;
    pthread_mutex_lock(&s->stats_mu);
    const uint64_t req = s->st.requests, prm = s->st.prompt_tokens, reu = s->st.reused_tokens,
                   gen = s->st.generated_tokens;
    const double busy = s->st.step_s;
    pthread_mutex_unlock(&s->stats_mu);
    if (!s->quiet && (req != s->log_req || gen != s->log_gen))
        fprintf(stderr, "herd serve: last %.0f s: %llu requests, %llu prompt tokens (%llu from cache), "
                "%llu generated (%.1f tok/s over %.1f s busy); now %d running, %d queued, KV pages %d of %d\n",
                t - s->log_t, (unsigned long long)(req - s->log_req), (unsigned long long)(prm - s->log_prompt),
                (unsigned long long)(reu - s->log_reused), (unsigned long long)(gen - s->log_gen),
                busy > s->log_busy ? (double)(gen - s->log_gen) / (busy - s->log_busy) : 0.0, busy - s->log_busy,
                running, s->n_queued, herd_kv_pool_pages_used(s->pool), herd_kv_pool_pages_total(s->pool));
    s->log_t = t;
    s->log_req = req, s->log_prompt = prm, s->log_reused = reu, s->log_gen = gen, s->log_busy = busy;
}

static void *loop(void *arg) {
    srv_sched *s = arg;
    s->log_t = now_s();
    for (;;) {
        int running = 0;
        for (int i = 0; i < s->n_slots; i++) running += s->slots[i].r != NULL;
        if (s->adapters) detach_adapters(s); /* (slots that finished with an unloaded one too) */
        pthread_mutex_lock(&s->mu);
        if (!s->head && !running && !s->draining && !s->detach) { /* idle: the summary if one is due, then wait */
            log_window(s, now_s(), 0);
            while (!s->head && !running && !s->draining && !s->detach) pthread_cond_wait(&s->cv, &s->mu);
        }
        if (s->detach) { /* woken to let go of an unloaded adapter: again from the top */
            s->detach = 0;
            pthread_mutex_unlock(&s->mu);
            continue;
        }
        /* A client whose response just ended often sends its next request at once
         * (an agent's next turn, a batch job's next item): it then arrives a few ms
         * into the next step and waits all of it. While others decode, the step is
         * held back up to linger_s for as many requests as sequences finished (as
         * slots are free), so they join it. */
        const int want = s->finished < s->n_slots - running ? s->finished : s->n_slots - running;
        if (want > 0 && running && s->linger_s > 0) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            const long ns = until.tv_nsec + (long)(s->linger_s * 1e9);
            until.tv_sec += ns / 1000000000L;
            until.tv_nsec = ns % 1000000000L;
            const double t0 = now_s();
            while (s->n_queued < want && !s->draining && pthread_cond_timedwait(&s->cv, &s->mu, &until) == 0) {}
            const double held = now_s() - t0;
            pthread_mutex_lock(&s->stats_mu);
            s->st.lingers++;
            s->st.linger_s += held;
            pthread_mutex_unlock(&s->stats_mu);
        }
        s->finished = 0;
        if (s->draining && !s->head && !running) {
            pthread_mutex_unlock(&s->mu);
            break;
        }
        running = admit_queued(s, running);
        pthread_mutex_unlock(&s->mu);
        for (int i = 0; i < s->n_slots; i++) {
            slot *sl = &s->slots[i];
            if (sl->r && req_cancelled(sl->r)) {
                req_emit(sl->r, NULL, 0, 1);
                release_slot(s, sl);
                forget(sl); /* its pages go back to the pool */
                pthread_mutex_lock(&s->stats_mu);
                s->st.cancelled++;
                pthread_mutex_unlock(&s->stats_mu);
            }
        }
        step(s);
        long kv = 0;
        for (int i = 0; i < s->n_slots; i++) kv += s->slots[i].n_cache;
        double t = now_s();
        pthread_mutex_lock(&s->stats_mu);
        s->st.kv_tokens_in_use = kv;
        s->st.kv_pages_in_use = herd_kv_pool_pages_used(s->pool);
        s->st.kv_pages_total = herd_kv_pool_pages_total(s->pool);
        if (t - s->win_start >= 1.0) {
            s->st.tokens_per_s = (double)s->win_tokens / (t - s->win_start);
            s->win_tokens = 0;
            s->win_start = t;
        }
        pthread_mutex_unlock(&s->stats_mu);
        if (t - s->log_t >= LOG_EVERY) { /* (checked here first: no lock taken on most steps) */
            int run = 0;
            for (int i = 0; i < s->n_slots; i++) run += s->slots[i].r != NULL;
            pthread_mutex_lock(&s->mu);
            log_window(s, t, run);
            pthread_mutex_unlock(&s->mu);
        }
    }
    return NULL;
}

int sched_start(srv_sched *s) {
    if (pthread_create(&s->th, NULL, loop, s)) return -1;
    s->started = 1;
    return 0;
}

void sched_drain(srv_sched *s) {
    pthread_mutex_lock(&s->mu);
    s->draining = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (s->started) pthread_join(s->th, NULL);
    s->started = 0;
}

/* test_sched.c - the server's scheduler (src/server/sched.c) without HTTP:
 * requests that arrive together (queued before the scheduler thread starts, so
 * one admission round takes them all) and share a long prompt prefix: one
 * computes it, the others wait for its pages (they recompute none of it: the
 * reused-token counter), and every output is identical to that request's alone
 * on a fresh scheduler (temperature 0). Two groups of prompts with different
 * prefixes, one unrelated prompt, and one prompt that is another's whole prompt
 * plus more; prefixes longer than one step's prefill chunk. A short prompt
 * among decoders (its step's tile filled with decode rows). Random traffic on a
 * small KV pool: bursts, cancellations, prompts put back in the queue.
 */
#include <pthread.h>
#include <unistd.h>

#include "herd.h"
#include "server/server.h"
#include "test.h"

enum { NREQ = 8, MAXP = 4096 };

static srv_params params(void) {
    srv_params p = { 0 };
    p.n_parallel = NREQ;
    p.n_ctx = 1024;
    p.kv_type = HERD_F32;
    p.n_threads = 2;
    p.queue_max = 64;
    return p;
}

/* A request's options beyond its prompt (zero: temperature 0, not streamed). */
typedef struct {
    int stream, seed, logprobs;
    double temperature;
    const char *stop;
} req_opts;

static srv_req *request_o(const srv_api *api, const char *prompt, int max_tokens, req_opts q) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "model", "m");
    cJSON_AddStringToObject(o, "prompt", prompt);
    cJSON_AddNumberToObject(o, "max_tokens", max_tokens);
    cJSON_AddNumberToObject(o, "temperature", q.temperature);
    if (q.stream) cJSON_AddTrueToObject(o, "stream");
    if (q.seed) cJSON_AddNumberToObject(o, "seed", q.seed);
    if (q.logprobs) cJSON_AddNumberToObject(o, "logprobs", q.logprobs);
    if (q.stop) cJSON_AddStringToObject(o, "stop", q.stop);
    char *body = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    int status = 0;
    char *err = NULL;
    srv_req *r = api_parse_request(api, REQ_COMPLETION, body, strlen(body), &status, &err);
    CHECKF(r != NULL, "request refused (%d): %s", status, err ? err : "");
    free(body);
    free(err);
    return r;
}

static srv_req *request_n(const srv_api *api, const char *prompt, int max_tokens) {
    return request_o(api, prompt, max_tokens, (req_opts){ 0 });
}

static srv_req *request(const srv_api *api, const char *prompt) { return request_n(api, prompt, 6); }

static void wait_done(srv_req *r) {
    pthread_mutex_lock(&r->mu);
    while (!r->done) pthread_cond_wait(&r->cv, &r->mu);
    pthread_mutex_unlock(&r->mu);
}

static void append(char **acc, const char *add) {
    const size_t had = *acc ? strlen(*acc) : 0, n = strlen(add);
    *acc = realloc(*acc, had + n + 1);
    memcpy(*acc + had, add, n + 1);
}

/* Appends choices[0].text of the JSON object at json (n bytes) to *acc (a
 * malloc'd string, NULL at first), and its logprobs' token_logprobs when the
 * request asked for them. Returns 0 when there is no such text. */
static int add_text(char **acc, const char *json, size_t n) {
    cJSON *o = cJSON_ParseWithLength(json, n);
    const cJSON *c0 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(o, "choices"), 0);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(c0, "text");
    const cJSON *lp = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(c0, "logprobs"),
                                                       "token_logprobs");
    const int ok = cJSON_IsString(t);
    if (ok) append(acc, t->valuestring);
    if (ok && lp) {
        char *p = cJSON_PrintUnformatted(lp);
        append(acc, p);
        free(p);
    }
    cJSON_Delete(o);
    return ok;
}

/* The completion's text (malloc'd), or NULL: the body's, or the text of every
 * event of a stream (server-sent events, "data: {...}" lines). */
static char *text_of(const srv_req *r) {
    const char *p = r->out.p ? r->out.p : "";
    char *acc = NULL;
    if (!r->stream) {
        add_text(&acc, p, r->out.n);
        return acc;
    }
    int events = 0;
    for (const char *e = strstr(p, "data: {"); e; e = strstr(e + 1, "data: {")) {
        const char *end = strstr(e, "\n\n");
        if (!end) break;
        if (!add_text(&acc, e + 6, (size_t)(end - e - 6))) { free(acc); return NULL; } /* an error event */
        events++;
    }
    if (events && !acc) acc = strdup("");
    return strstr(p, "data: [DONE]") ? acc : (free(acc), NULL);
}

/* Waits for r, then checks its text is want (request i of what). */
static void check_text(srv_req *r, const char *want, const char *what, int i) {
    wait_done(r);
    char *t = text_of(r);
    CHECKF(t && want && !strcmp(t, want), "%s: request %d: '%s', alone: '%s'", what, i, t ? t : "(none)",
           want ? want : "(none)");
    free(t);
}

/* Prompt tokens a and b start with in common. */
static int common_tokens(const srv_req *a, const srv_req *b) {
    int k = 0;
    while (k < a->n_prompt && k < b->n_prompt && a->prompt[k] == b->prompt[k]) k++;
    return k;
}

/* The text of prompt alone on a fresh scheduler (nothing cached to share). */
static char *alone_text(const herd_model *m, const srv_api *api, const char *prompt, int max_tokens, req_opts q) {
    srv_sched *s;
    srv_params p = params();
    herd_error err;
    if (sched_new(&s, m, &p, &err)) { CHECKF(0, "sched_new: %s", err.msg); return NULL; }
    srv_req *r = request_o(api, prompt, max_tokens, q);
    char *t = NULL;
    if (r && sched_submit(s, r) == 0 && sched_start(s) == 0) {
        wait_done(r);
        t = text_of(r);
    }
    sched_drain(s);
    srv_stats st;
    sched_stats(s, &st);
    CHECKF(st.reused_tokens == 0, "alone reused %llu tokens", (unsigned long long)st.reused_tokens);
    sched_free(s);
    if (r) req_release(r);
    CHECKF(t != NULL, "no text alone for '%.40s...'", prompt);
    return t;
}

/* A scheduler (no_interleave as given) running nd requests "BASE Decoder i."
 * of max_tokens each (r[0 .. nd)), returned once all of them decode; NULL if
 * it could not be made. */
static srv_sched *start_decoders(const herd_model *m, const srv_api *api, const char *base, int no_interleave,
                                 srv_req **r, int nd, int max_tokens) {
    srv_sched *s;
    srv_params p = params();
    p.no_interleave = no_interleave;
    herd_error err;
    if (sched_new(&s, m, &p, &err)) { CHECKF(0, "sched_new: %s", err.msg); return NULL; }
    for (int i = 0; i < nd; i++) {
        char pr[4200];
        snprintf(pr, sizeof pr, "%s Decoder %d.", base, i);
        r[i] = request_n(api, pr, max_tokens);
        if (r[i]) CHECK(sched_submit(s, r[i]) == 0);
    }
    CHECK(sched_start(s) == 0);
    srv_stats st;
    for (int spin = 0; spin < 100000; spin++) { /* until all of them decode */
        sched_stats(s, &st);
        if (st.generated_tokens >= 2 * (uint64_t)nd) break;
        usleep(100);
    }
    return s;
}

/* A short prompt that arrives while others decode, with prefills between
 * layers off (--no-interleave), runs in a step of its own, and decode rows fill
 * that step's last tile of 8 rows: every output is still the one it has alone.
 * The short prompt is a running one's whole prompt plus a few tokens (5 to 7
 * rows left to compute: a tile to fill). */
static void test_fill(const herd_model *m, const srv_api *api, const char *base) {
    enum { ND = 4, LONG = 120 };
    static char late_prompt[4200];
    snprintf(late_prompt, sizeof late_prompt, "%s More.", base);
    char *want[ND + 1];
    for (int i = 0; i < ND; i++) {
        char pr[4200];
        snprintf(pr, sizeof pr, "%s Decoder %d.", base, i);
        want[i] = alone_text(m, api, pr, LONG, (req_opts){ 0 });
    }
    want[ND] = alone_text(m, api, late_prompt, 6, (req_opts){ 0 });
    srv_req *r[ND + 1] = { 0 };
    srv_sched *s = start_decoders(m, api, base, 1, r, ND, LONG);
    if (!s) return;
    srv_stats st;
    r[ND] = request_n(api, late_prompt, 6);
    if (r[ND]) CHECK(sched_submit(s, r[ND]) == 0);
    for (int i = 0; i <= ND; i++)
        if (r[i]) check_text(r[i], want[i], "fill", i);
    sched_drain(s);
    sched_stats(s, &st);
    /* the short prompt's rows after what it shares with a decoder's prompt */
    const int left = r[ND] && r[0] ? r[ND]->n_prompt - common_tokens(r[ND], r[0]) : -1;
    CHECKF(left >= 5 && left <= 7, "the short prompt leaves %d rows, not 5 to 7 (a tile to fill)", left);
    CHECKF(st.fill_rows > 0, "no decode row filled the short prefill's tile (%d prompt rows left to compute; "
           "%llu tokens generated)", left, (unsigned long long)st.generated_tokens);
    printf("  a short prompt (%d rows to compute) among %d decoders: %llu decode rows rode in prefill steps\n",
           left, ND, (unsigned long long)st.fill_rows);
    sched_free(s);
    for (int i = 0; i <= ND; i++) {
        if (r[i]) req_release(r[i]);
        free(want[i]);
    }
}

/* Short prompts that arrive while others decode are evaluated between two layers
 * of the running step (herd_batch_eval_now) and their first tokens sent then:
 * late requests, one at a time while four decode, until one has gone that way
 * (the scheduler spends most of its time in the forward, so it comes soon); the
 * late ones' outputs and log-probabilities and the decoders' outputs are those
 * they have alone. */
static void test_interleave(const herd_model *m, const srv_api *api, const char *base) {
    enum { ND = 4, LONG = 600, LATE = 12 };
    char *want[ND], *want_late[LATE], late[LATE][4200];
    for (int i = 0; i < ND; i++) {
        char pr[4200];
        snprintf(pr, sizeof pr, "%s Decoder %d.", base, i);
        want[i] = alone_text(m, api, pr, LONG, (req_opts){ 0 });
    }
    for (int i = 0; i < LATE; i++) {
        snprintf(late[i], sizeof late[i], "%s Late %d.", base, i);
        want_late[i] = alone_text(m, api, late[i], 4, (req_opts){ .logprobs = 1 });
    }
    srv_req *r[ND] = { 0 };
    srv_sched *s = start_decoders(m, api, base, 0, r, ND, LONG);
    if (!s) return;
    srv_stats st;
    sched_stats(s, &st);
    const uint64_t before = st.interleaved; /* (the decoders' prompts after the shared prefix among them) */
    int sent = 0;
    for (; sent < LATE; sent++) {
        srv_req *q = request_o(api, late[sent], 4, (req_opts){ .logprobs = 1 });
        if (!q) break;
        CHECK(sched_submit(s, q) == 0);
        check_text(q, want_late[sent], "late", sent);
        req_release(q);
        sched_stats(s, &st);
        if (st.interleaved > before) break;
    }
    sched_stats(s, &st);
    const uint64_t decoded = st.generated_tokens;
    for (int i = 0; i < ND; i++)
        if (r[i]) check_text(r[i], want[i], "decoder beside late prompts", i);
    sched_drain(s);
    CHECKF(st.interleaved > before, "none of %d late prompts was evaluated between layers", sent);
    CHECKF(decoded < (uint64_t)ND * LONG, "the decoders had finished before the late prompts went");
    printf("  late prompts among %d decoders: %llu of %d evaluated between the layers of a step\n", ND,
           (unsigned long long)(st.interleaved - before), sent + 1);
    sched_free(s);
    for (int i = 0; i < ND; i++) {
        if (r[i]) req_release(r[i]);
        free(want[i]);
    }
    for (int i = 0; i < LATE; i++) free(want_late[i]);
}

/* --prefill-chunk: with chunks of 8 tokens, two long prompts that arrive together
 * (unrelated: nothing shared) are evaluated 8 rows each a step, so their prefill
 * takes at least ceil(n / 8) steps (4 to 5 with the default 64), and each answer is
 * the one it has alone (with the default chunk). */
static void test_chunk(const herd_model *m, const srv_api *api, const char *pa, const char *pb) {
    enum { CHUNK = 8, GEN = 6 };
    char pr[2][4200];
    snprintf(pr[0], sizeof pr[0], "%s First question?", pa);
    snprintf(pr[1], sizeof pr[1], "%s Second question?", pb);
    char *want[2] = { alone_text(m, api, pr[0], GEN, (req_opts){ 0 }), alone_text(m, api, pr[1], GEN, (req_opts){ 0 }) };
    srv_sched *s;
    srv_params p = params();
    p.prefill_chunk = CHUNK;
    herd_error err;
    if (sched_new(&s, m, &p, &err)) { CHECKF(0, "sched_new: %s", err.msg); return; }
    srv_req *r[2];
    for (int i = 0; i < 2; i++) {
        r[i] = request_n(api, pr[i], GEN);
        if (r[i]) CHECK(sched_submit(s, r[i]) == 0);
    }
    CHECK(sched_start(s) == 0);
    for (int i = 0; i < 2; i++)
        if (r[i]) check_text(r[i], want[i], "chunk 8", i);
    sched_drain(s);
    srv_stats st;
    sched_stats(s, &st);
    const int longest = r[0] && r[1] ? (r[0]->n_prompt > r[1]->n_prompt ? r[0]->n_prompt : r[1]->n_prompt) : 0;
    CHECKF(longest > 100, "prompts of %d tokens: longer than 100", longest);
    CHECKF(st.steps >= (uint64_t)((longest + CHUNK - 1) / CHUNK + GEN - 1),
           "%llu steps for a %d-token prompt in chunks of %d, then %d tokens", (unsigned long long)st.steps, longest,
           CHUNK, GEN);
    printf("  prompts of %d and %d tokens in chunks of %d: %llu steps\n", r[0] ? r[0]->n_prompt : 0,
           r[1] ? r[1]->n_prompt : 0, CHUNK, (unsigned long long)st.steps);
    sched_free(s);
    for (int i = 0; i < 2; i++) {
        if (r[i]) req_release(r[i]);
        free(want[i]);
    }
}

/* A short new prompt goes between a step's layers only where it fits there:
 * with --prefill-chunk 300 a long prompt's chunk takes 300 of the 512 rows a
 * round holds, so a 200-odd-token prompt that arrives with it (short: at most a
 * chunk) takes its turn in the step instead (it waited for the long prompt's
 * prefill to end before); both answers as alone. */
static void test_no_room(const herd_model *m, const srv_api *api, const char *pa, const char *pb) {
    enum { CHUNK = 300 };
    static char lp[3 * MAXP], sp[MAXP];
    snprintf(lp, sizeof lp, "%s%s%sLong question?", pa, pb, pa);
    snprintf(sp, sizeof sp, "%sShort question?", pb);
    char *want[2] = { alone_text(m, api, lp, 2, (req_opts){ 0 }), alone_text(m, api, sp, 2, (req_opts){ 0 }) };
    srv_sched *s;
    srv_params p = params();
    p.prefill_chunk = CHUNK;
    herd_error err;
    if (sched_new(&s, m, &p, &err)) { CHECKF(0, "sched_new: %s", err.msg); return; }
    srv_req *r[2] = { request_n(api, lp, 2), request_n(api, sp, 2) };
    for (int i = 0; i < 2; i++)
        if (r[i]) CHECK(sched_submit(s, r[i]) == 0);
    CHECK(sched_start(s) == 0);
    for (int i = 0; i < 2; i++)
        if (r[i]) check_text(r[i], want[i], "no room between layers", i);
    sched_drain(s);
    srv_stats st;
    sched_stats(s, &st);
    if (r[0] && r[1]) {
        CHECKF(r[0]->n_prompt > 2 * CHUNK && r[1]->n_prompt <= CHUNK && r[1]->n_prompt > 512 - CHUNK,
               "prompts of %d and %d tokens: the long one more than two chunks, the short one a chunk at most "
               "but more than the %d rows a chunk leaves", r[0]->n_prompt, r[1]->n_prompt, 512 - CHUNK);
        CHECKF(st.interleaved == 0, "the short prompt was left to the layers (%llu), where it did not fit",
               (unsigned long long)st.interleaved);
    }
    sched_free(s);
    for (int i = 0; i < 2; i++) {
        if (r[i]) req_release(r[i]);
        free(want[i]);
    }
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static int rnd(int n) {
    rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17;
    return (int)(rng_state % (uint64_t)n);
}

/* Random traffic on a small KV pool: requests in bursts, prompts on three
 * system prompts (waits, shared pages, cached prefixes) or none, some cancelled
 * at a random moment, some put back in the queue (or failed, when already
 * answering) when the pool is full. Every request ends;
 * every one that completes has its text alone; nothing hangs (a wait that never
 * ended would), and the sanitizers see no error. */
static void test_stress(const herd_model *m, const srv_api *api, const char *sys[3]) {
    enum { NS = 48 };
    static char pr[NS][1200];
    int ntok[NS];
    req_opts q[NS];
    char *want[NS];
    for (int i = 0; i < NS; i++) {
        const int k = rnd(4);
        snprintf(pr[i], sizeof pr[i], "%s%s item %d of %d.", k < 3 ? sys[k] : "", rnd(2) ? " Please" : "", rnd(50), i);
        ntok[i] = 1 + rnd(16);
        /* streamed or not, sampled (a seed) or greedy, logprobs, a stop string */
        q[i] = (req_opts){ .stream = rnd(2), .logprobs = rnd(4) ? 0 : 2, .stop = rnd(5) ? NULL : "e" };
        if (rnd(3) == 0) q[i].temperature = 0.9, q[i].seed = 1 + i;
        want[i] = alone_text(m, api, pr[i], ntok[i], q[i]);
    }
    srv_sched *s;
    srv_params p = params();
    p.n_parallel = 6;
    p.kv_pages = 12; /* 64 positions a page: a few prompts of hundreds of tokens fill it */
    herd_error err;
    if (sched_new(&s, m, &p, &err)) { CHECKF(0, "sched_new: %s", err.msg); return; }
    CHECK(sched_start(s) == 0);
    srv_req *r[NS] = { 0 };
    int cancel_at[NS];
    for (int i = 0; i < NS;) {
        for (int b = 1 + rnd(6); b > 0 && i < NS; b--, i++) { /* a burst */
            r[i] = request_o(api, pr[i], ntok[i], q[i]);
            cancel_at[i] = rnd(4) == 0 ? rnd(3000) : -1; /* us after submission */
            if (r[i]) CHECK(sched_submit(s, r[i]) == 0);
        }
        usleep((useconds_t)rnd(3000));
        for (int j = 0; j < i; j++)
            if (r[j] && cancel_at[j] >= 0 && rnd(3) == 0) {
                pthread_mutex_lock(&r[j]->mu);
                if (!r[j]->done) r[j]->cancelled = 1;
                pthread_mutex_unlock(&r[j]->mu);
                cancel_at[j] = -2; /* asked (it may have ended before) */
            }
    }
    int same = 0, failed = 0, cancelled = 0;
    for (int i = 0; i < NS; i++) {
        if (!r[i]) continue;
        wait_done(r[i]);
        char *t = text_of(r[i]);
        if (t && want[i] && !strcmp(t, want[i])) same++;
        else if (r[i]->out.n && strstr(r[i]->out.p, "the KV cache is full")) failed++;
        else if (cancel_at[i] == -2) cancelled++;
        else CHECKF(0, "stress: request %d ended with neither its alone text nor an error: '%.300s'", i,
                    r[i]->out.p ? r[i]->out.p : "");
        free(t);
    }
    sched_drain(s);
    srv_stats st;
    sched_stats(s, &st);
    CHECKF(st.running == 0 && st.queue_depth == 0, "stress: %d running, %d queued after the drain", st.running,
           st.queue_depth);
    CHECKF(same >= NS / 4, "stress: only %d of %d requests completed as alone", same, NS);
    printf("  stress: %d requests: %d as alone, %d cancelled, %d failed (KV full), %llu times put back in the "
           "queue (pool full); %llu prompt tokens reused\n", NS, same, cancelled, failed,
           (unsigned long long)st.requeued, (unsigned long long)st.reused_tokens);
    sched_free(s);
    for (int i = 0; i < NS; i++) {
        if (r[i]) req_release(r[i]);
        free(want[i]);
    }
}

int main(void) {
    char dir[] = "/tmp/herd_test_sched_XXXXXX";
    if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
    char gguf[300], hf[300];
    snprintf(gguf, sizeof gguf, "%s/m.gguf", dir);
    snprintf(hf, sizeof hf, "%s/hf", dir);
    herd_error err;
    herd_init_params ip = { .seed = 5 };
    herd_config_default(&ip.config);
    ip.config.dim = 96; ip.config.n_layers = 2; ip.config.n_heads = 4; ip.config.n_kv_heads = 2;
    ip.config.head_dim = 32; ip.config.ffn_dim = 160;
    herd_model *m;
    if (herd_init_model(&ip, hf, gguf, HERD_F32, &err) || herd_model_load(&m, gguf, &err)) {
        CHECKF(0, "model: %s", err.msg);
        TEST_MAIN_END("test_sched");
    }
    const srv_api api = { m, "m", 1024, NULL, NULL }; /* no response_format here */

    /* two long shared prefixes (hundreds of tokens: more than one prefill chunk) */
    static char pa[MAXP / 2], pb[MAXP / 2], prompts[NREQ][MAXP];
    size_t na = 0, nb = 0;
    for (int i = 0; i < 10; i++) na += (size_t)snprintf(pa + na, sizeof pa - na, "rule %d: keep the river calm. ", i);
    for (int i = 0; i < 8; i++) nb += (size_t)snprintf(pb + nb, sizeof pb - nb, "stone %d lies by the light. ", i);
    for (int i = 0; i < 4; i++) snprintf(prompts[i], MAXP, "%sQuestion %d?", pa, i);
    for (int i = 4; i < 7; i++) snprintf(prompts[i], MAXP, "%sAsk %d, then answer.", pb, i);
    snprintf(prompts[7], MAXP, "%sAsk 4, then answer. And then some more.", pb); /* prompt 4 whole, plus more */
    const char *unrelated = "An unrelated short prompt.";

    /* alone: each on a fresh scheduler (no cache to share) */
    char *alone[NREQ + 1];
    for (int i = 0; i <= NREQ; i++) alone[i] = alone_text(m, &api, i < NREQ ? prompts[i] : unrelated, 6, (req_opts){ 0 });

    /* together: all queued first, then one admission round */
    srv_sched *s;
    srv_params p = params();
    p.n_parallel = NREQ + 1;
    CHECK(sched_new(&s, m, &p, &err) == 0);
    srv_req *r[NREQ + 1];
    for (int i = 0; i <= NREQ; i++) {
        r[i] = request(&api, i < NREQ ? prompts[i] : unrelated);
        if (!r[i]) TEST_MAIN_END("test_sched");
        CHECK(sched_submit(s, r[i]) == 0);
    }
    /* what sharing saves: each prompt's longest common prefix with an earlier one
     * (its last token is always computed), where that is worth waiting for
     * (sched.c's WAIT_MIN, 16 tokens; BOS and a first word are computed again) */
    uint64_t shareable = 0;
    for (int i = 1; i <= NREQ; i++) {
        int best = 0;
        for (int j = 0; j < i; j++) {
            const int k = common_tokens(r[i], r[j]);
            best = k > best ? k : best;
        }
        best = best < r[i]->n_prompt - 1 ? best : r[i]->n_prompt - 1;
        shareable += best >= 16 ? (uint64_t)best : 0;
    }
    CHECKF(r[0]->n_prompt > 200 && r[4]->n_prompt > 200, "prefixes of %d and %d tokens: longer than a prefill chunk",
           r[0]->n_prompt, r[4]->n_prompt);
    CHECK(sched_start(s) == 0);
    for (int i = 0; i <= NREQ; i++) check_text(r[i], alone[i], "together", i);
    sched_drain(s);
    srv_stats st;
    sched_stats(s, &st);
    CHECKF(st.reused_tokens == shareable, "prompt tokens reused: %llu; the common prefixes hold %llu",
           (unsigned long long)st.reused_tokens, (unsigned long long)shareable);
    printf("  %llu of %llu prompt tokens shared, not recomputed, by requests that arrived together\n",
           (unsigned long long)st.reused_tokens, (unsigned long long)st.prompt_tokens);
    sched_free(s);
    for (int i = 0; i <= NREQ; i++) {
        req_release(r[i]);
        free(alone[i]);
    }
    test_fill(m, &api, pb);
    test_interleave(m, &api, pb);
    test_chunk(m, &api, pa, pb);
    test_no_room(m, &api, pa, pb);
    const char *sys[3] = { pa, pb, "A third, shorter system prompt for the stress test, forty tokens or so." };
    test_stress(m, &api, sys);
    herd_model_free(m);
    char cmd[350];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    TEST_MAIN_END("test_sched");
}

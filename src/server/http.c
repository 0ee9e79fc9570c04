/* http.c - the HTTP side of `herd serve` on libmicrohttpd: one thread per
 * connection, request bodies accumulated up to a limit (413 beyond it), routes,
 * Bearer auth, /health, /metrics, /v1/models, and the shutdown sequence.
 *
 * Threads: connection threads parse and validate (parse.c), enqueue (sched.c) and
 * then wait on the request's condition variable: a non-streamed request waits for
 * the whole body; a streamed one is an MHD callback response whose reader blocks
 * until the scheduler appended bytes. When the response is destroyed (sent, or the
 * client went away and the write failed), its free callback marks an unfinished
 * request cancelled; the scheduler then drops the sequence and frees its slot.
 *
 * Shutdown (SIGINT / SIGTERM, taken with sigwait on the main thread): stop
 * accepting connections, answer 503 to new requests on open ones, let the
 * scheduler finish every queued and running request, wait for the responses to
 * be sent, stop the daemon.
 */
#include "server/server.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <omp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    srv_params p;
    herd_model *m;
    herd_json_vocab *json_vocab; /* the grammars' side of the vocabulary, made once */
    srv_sched *sched;
    srv_api api;
    srv_adapters adapters;     /* the LoRA adapters served by name (--lora, /v1/load_lora_adapter) */
    int adapters_ready;
    char model_id[256];
    long created;
    volatile int stopping;
    pthread_mutex_t mu;        /* active, status counters */
    pthread_cond_t cv;
    int active;                /* requests whose HTTP side is not finished */
    uint64_t by_status[6];     /* 2xx, 400, 401, 404/405, 413/429/503, 5xx */
} server;

typedef struct {
    srv_buf body;
    int too_big;
    int active;    /* a non-streamed completion counted in server.active until its reply is sent */
    double t0;     /* the request's start (monotonic s), and "METHOD /path" for the request log */
    char what[128];
} conn_ctx;

/* The status of the response queued on this connection thread (MHD runs a
 * connection's callbacks on its own thread), for the request log. */
static _Thread_local int tl_status;

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void count_status(server *sv, int status) {
    tl_status = status;
    int k = status < 300 ? 0 : status == 400 ? 1 : status == 401 ? 2 : status == 404 || status == 405 ? 3
          : status < 500 || status == 503 ? 4 : 5;
    pthread_mutex_lock(&sv->mu);
    sv->by_status[k]++;
    pthread_mutex_unlock(&sv->mu);
}

/* --cors: the origin browsers may read answers from (every response carries it) */
static void add_cors(const server *sv, struct MHD_Response *res) {
    if (!sv->p.cors) return;
    MHD_add_response_header(res, "Access-Control-Allow-Origin", sv->p.cors);
    if (strcmp(sv->p.cors, "*")) MHD_add_response_header(res, "Vary", "Origin");
}

static enum MHD_Result send_body(server *sv, struct MHD_Connection *c, int status, const char *type,
                                 const char *body, size_t len, const char *retry_after) {
    struct MHD_Response *res = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!res) return MHD_NO;
    add_cors(sv, res);
    MHD_add_response_header(res, "Content-Type", type);
    if (retry_after) MHD_add_response_header(res, "Retry-After", retry_after);
    enum MHD_Result rc = MHD_queue_response(c, (unsigned)status, res);
    MHD_destroy_response(res);
    count_status(sv, status);
    return rc;
}

static enum MHD_Result send_json(server *sv, struct MHD_Connection *c, int status, const char *json) {
    return send_body(sv, c, status, "application/json", json, strlen(json), NULL);
}

static enum MHD_Result send_error(server *sv, struct MHD_Connection *c, int status, const char *msg,
                                  const char *type, const char *param, const char *code) {
    char *e = api_error_json(msg, type, param, code);
    enum MHD_Result rc = send_body(sv, c, status, "application/json", e, strlen(e),
                                   status == 429 || status == 503 ? "1" : NULL);
    free(e);
    return rc;
}

/* ---- streaming ------------------------------------------------------------------- */

static void active_done(server *sv) {
    pthread_mutex_lock(&sv->mu);
    sv->active--;
    pthread_cond_broadcast(&sv->cv);
    pthread_mutex_unlock(&sv->mu);
}

typedef struct {
    server *sv;
    srv_req *r;
} stream_ctx;

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    srv_req *r = ((stream_ctx *)cls)->r;
    (void)pos;
    pthread_mutex_lock(&r->mu);
    while (r->out_read == r->out.n && !r->done) pthread_cond_wait(&r->cv, &r->mu);
    size_t k = r->out.n - r->out_read;
    if (k > max) k = max;
    if (k) {
        memcpy(buf, r->out.p + r->out_read, k);
        r->out_read += k;
        if (r->out_read == r->out.n) r->out_read = r->out.n = 0;
    }
    pthread_mutex_unlock(&r->mu);
    return k ? (ssize_t)k : MHD_CONTENT_READER_END_OF_STREAM;
}

static void stream_free(void *cls) {
    stream_ctx *sc = cls;
    srv_req *r = sc->r;
    pthread_mutex_lock(&r->mu);
    if (!r->done) r->cancelled = 1; /* the client is gone before the end */
    pthread_mutex_unlock(&r->mu);
    req_release(r);
    active_done(sc->sv);
    free(sc);
}

/* ---- endpoints ------------------------------------------------------------------- */

static enum MHD_Result completions(server *sv, struct MHD_Connection *c, int kind, conn_ctx *cc) {
    int status;
    char *err;
    srv_req *r = api_parse_request(&sv->api, kind, cc->body.p ? cc->body.p : "", cc->body.n, &status, &err);
    if (!r) {
        enum MHD_Result rc = send_json(sv, c, status, err);
        free(err);
        return rc;
    }
    int q = 503;
    if (!sv->stopping && r->n_choices > 1) { /* n choices: requests of their own that answer into r */
        srv_req *ch[SRV_MAX_INPUTS];
        for (int i = 0; i < r->n_choices; i++) ch[i] = req_choice(r, i);
        q = sched_submit_n(sv->sched, ch, r->n_choices);
        for (int i = 0; i < r->n_choices; i++) req_release(ch[i]); /* the scheduler holds them now */
    } else if (!sv->stopping) {
        q = sched_submit(sv->sched, r);
    }
    if (q) {
        req_release(r);
        return q == 429 ? send_error(sv, c, 429, "The server is busy: the request queue is full. Retry "
                                     "after a moment.", "rate_limit_error", NULL, "rate_limit_exceeded")
                        : send_error(sv, c, 503, "The server is shutting down.", "server_error", NULL,
                                     "service_unavailable");
    }
    pthread_mutex_lock(&sv->mu);
    sv->active++;
    pthread_mutex_unlock(&sv->mu);
    if (r->stream) {
        stream_ctx *sc = malloc(sizeof *sc);
        if (!sc) abort();
        sc->sv = sv;
        sc->r = r;
        struct MHD_Response *res = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_read,
                                                                     sc, stream_free);
        if (!res) {
            stream_free(sc);
            return MHD_NO;
        }
        add_cors(sv, res);
        MHD_add_response_header(res, "Content-Type", "text/event-stream");
        MHD_add_response_header(res, "Cache-Control", "no-cache");
        enum MHD_Result rc = MHD_queue_response(c, 200, res);
        MHD_destroy_response(res);
        count_status(sv, 200);
        return rc;
    }
    pthread_mutex_lock(&r->mu);
    while (!r->done) pthread_cond_wait(&r->cv, &r->mu);
    pthread_mutex_unlock(&r->mu);
    enum MHD_Result rc = send_body(sv, c, r->status, "application/json", r->out.p ? r->out.p : "", r->out.n, NULL);
    req_release(r);
    cc->active = 1; /* queued, not sent: `completed` ends it, so a drain waits for the bytes to go out */
    return rc;
}

/* The model (adapter NULL) or an adapter, which names its base as "parent" (as
 * vLLM lists LoRA modules). */
static cJSON *model_json(server *sv, const char *adapter) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", adapter ? adapter : sv->model_id);
    cJSON_AddStringToObject(o, "object", "model");
    cJSON_AddNumberToObject(o, "created", (double)sv->created);
    cJSON_AddStringToObject(o, "owned_by", "herd");
    if (adapter) cJSON_AddStringToObject(o, "parent", sv->model_id);
    return o;
}

static enum MHD_Result send_cjson(server *sv, struct MHD_Connection *c, int status, cJSON *o) {
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!s) abort();
    enum MHD_Result rc = send_json(sv, c, status, s);
    free(s);
    return rc;
}

static enum MHD_Result models(server *sv, struct MHD_Connection *c, const char *url) {
    if (!strcmp(url, "/v1/models")) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "object", "list");
        cJSON *data = cJSON_AddArrayToObject(o, "data");
        char names[SRV_MAX_LORA][SRV_NAME_MAX + 1];
        const int n = adapters_list(&sv->adapters, names, NULL);
        cJSON_AddItemToArray(data, model_json(sv, NULL));
        for (int i = 0; i < n; i++) cJSON_AddItemToArray(data, model_json(sv, names[i]));
        return send_cjson(sv, c, 200, o);
    }
    const char *id = url + strlen("/v1/models/");
    if (!strcmp(id, sv->model_id)) return send_cjson(sv, c, 200, model_json(sv, NULL));
    const char *name;
    const int i = adapters_ref(&sv->adapters, id, NULL, &name);
    if (i >= 0) {
        cJSON *o = model_json(sv, name);
        adapters_unref(&sv->adapters, i);
        return send_cjson(sv, c, 200, o);
    }
    char msg[600];
    snprintf(msg, sizeof msg, "The model '%.200s' does not exist; this server serves '%.256s'%s.", id, sv->model_id,
             sv->p.n_lora || sv->p.lora_runtime ? " and its LoRA adapters" : "");
    return send_error(sv, c, 404, msg, "invalid_request_error", "model", "model_not_found");
}

/* POST /v1/load_lora_adapter {"lora_name", "lora_path"} and /v1/unload_lora_adapter
 * {"lora_name"} (vLLM's, with --lora-runtime): the adapter is read on this
 * connection's thread; the scheduler meets it when a request names it. */
static enum MHD_Result lora_admin(server *sv, struct MHD_Connection *c, int load, const conn_ctx *cc) {
    cJSON *root = cJSON_ParseWithLength(cc->body.p ? cc->body.p : "", cc->body.n);
    const cJSON *jn = cJSON_GetObjectItemCaseSensitive(root, "lora_name");
    const cJSON *jp = cJSON_GetObjectItemCaseSensitive(root, "lora_path");
    const char *name = cJSON_IsString(jn) ? jn->valuestring : NULL, *path = cJSON_IsString(jp) ? jp->valuestring : NULL;
    char msg[1200];
    enum MHD_Result rc;
    if (!cJSON_IsObject(root)) {
        rc = send_error(sv, c, 400, "We could not parse the JSON body of your request: expected an object.",
                        "invalid_request_error", NULL, "invalid_json");
    } else if (!name || !*name || strlen(name) > SRV_NAME_MAX || strpbrk(name, " \t\r\n\"\\")) {
        rc = send_error(sv, c, 400, "Invalid 'lora_name': expected a name of 1-200 characters without spaces or "
                        "quotes.", "invalid_request_error", "lora_name", "invalid_value");
    } else if (!load) {
        const int i = adapters_remove(&sv->adapters, name);
        if (i < 0) {
            snprintf(msg, sizeof msg, "The LoRA adapter '%.200s' is not loaded.", name);
            rc = send_error(sv, c, 404, msg, "invalid_request_error", "lora_name", "model_not_found");
        } else {
            sched_adapter_unloaded(sv->sched);
            snprintf(msg, sizeof msg, "Success: LoRA adapter '%.200s' removed successfully.", name);
            rc = send_body(sv, c, 200, "text/plain; charset=utf-8", msg, strlen(msg), NULL);
            if (!sv->p.quiet) fprintf(stderr, "herd serve: adapter '%s' unloaded\n", name);
        }
    } else if (!path || !*path) {
        rc = send_error(sv, c, 400, "Missing required parameter: 'lora_path'.", "invalid_request_error", "lora_path",
                        "missing_required_parameter");
    } else if (!strcmp(name, sv->model_id)) {
        rc = send_error(sv, c, 400, "Invalid 'lora_name': it is the served model's own id.", "invalid_request_error",
                        "lora_name", "invalid_value");
    } else {
        herd_lora *l;
        herd_error e;
        int i = -1;
        if (herd_lora_load(&l, sv->m, path, 1, &e) == HERD_OK && (i = adapters_add(&sv->adapters, name, l, &e)) < 0)
            herd_lora_free(l);
        if (i < 0) {
            snprintf(msg, sizeof msg, "Cannot load the LoRA adapter '%.200s': %.900s", name, e.msg);
            rc = send_error(sv, c, 400, msg, "invalid_request_error", "lora_path", "invalid_value");
        } else {
            sched_adapter_loaded(sv->sched, i);
            if (!sv->p.quiet)
                fprintf(stderr, "herd serve: adapter '%s' (%s) loaded: rank %d, %d projections\n", name, path,
                        herd_lora_rank(l), herd_lora_n_adapted(l));
            snprintf(msg, sizeof msg, "Success: LoRA adapter '%.200s' added successfully.", name);
            rc = send_body(sv, c, 200, "text/plain; charset=utf-8", msg, strlen(msg), NULL);
        }
    }
    cJSON_Delete(root);
    return rc;
}

static enum MHD_Result metrics(server *sv, struct MHD_Connection *c) {
    srv_stats st;
    sched_stats(sv->sched, &st);
    uint64_t bs[6];
    pthread_mutex_lock(&sv->mu);
    memcpy(bs, sv->by_status, sizeof bs);
    pthread_mutex_unlock(&sv->mu);
    srv_buf b = { 0 };
#define METRIC(name, type, help, fmt, val) \
    buf_printf(&b, "# HELP " name " " help "\n# TYPE " name " " type "\n" name " " fmt "\n", val)
    METRIC("herd_requests_total", "counter", "Sequences accepted into the queue (a request with n choices counts n).", "%llu",
           (unsigned long long)st.requests);
    METRIC("herd_prompt_tokens_total", "counter", "Prompt tokens of admitted requests.", "%llu",
           (unsigned long long)st.prompt_tokens);
    METRIC("herd_prompt_tokens_reused_total", "counter", "Prompt tokens served from a slot's cached prefix.",
           "%llu", (unsigned long long)st.reused_tokens);
    METRIC("herd_generated_tokens_total", "counter", "Tokens generated.", "%llu",
           (unsigned long long)st.generated_tokens);
    METRIC("herd_requests_cancelled_total", "counter", "Sequences cancelled because the client went away.",
           "%llu", (unsigned long long)st.cancelled);
    METRIC("herd_queue_depth", "gauge", "Requests waiting for a slot.", "%d", st.queue_depth);
    METRIC("herd_running_sequences", "gauge", "Sequences being prefilled or decoded.", "%d", st.running);
    METRIC("herd_batch_steps_total", "counter", "Batched forwards (one per scheduler step).", "%llu",
           (unsigned long long)st.steps);
    METRIC("herd_batch_sequences_total", "counter",
           "Sequences carried by the batched forwards, summed (divided by steps: the mean batch).", "%llu",
           (unsigned long long)st.step_sequences);
    METRIC("herd_batch_sequences_max", "gauge", "The most sequences one batched forward has carried.", "%d",
           st.step_sequences_max);
    METRIC("herd_requests_requeued_total", "counter",
           "Prompts put back in the queue mid-prefill because the KV pool was full (they run later).", "%llu",
           (unsigned long long)st.requeued);
    METRIC("herd_prefill_fill_rows_total", "counter",
           "Decode rows that rode in a short prefill's step, filling its last tile of 8 rows.", "%llu",
           (unsigned long long)st.fill_rows);
    METRIC("herd_prefills_interleaved_total", "counter",
           "Prompts evaluated at once between two layers of a step under way, instead of after it.",
           "%llu", (unsigned long long)st.interleaved);
    METRIC("herd_grammar_tokens_total", "counter",
           "Tokens sampled under a grammar (response_format, guided_*, a required tool call).", "%llu",
           (unsigned long long)st.grammar_tokens);
    METRIC("herd_grammar_masks_total", "counter",
           "Of those, sampled tokens the grammar refused: the vocabulary masked and the token sampled again.",
           "%llu", (unsigned long long)st.grammar_masks);
    METRIC("herd_forward_seconds_total", "counter", "Scheduler time in the batched forward.", "%.6f",
           st.forward_s);
    METRIC("herd_step_seconds_total", "counter",
           "Scheduler time in steps: the forward, then sampling and streaming the new tokens.", "%.6f", st.step_s);
    METRIC("herd_lingers_total", "counter",
           "Steps held back after a sequence finished, for its client's next request (--linger).", "%llu",
           (unsigned long long)st.lingers);
    METRIC("herd_linger_seconds_total", "counter", "Scheduler time spent holding steps back (--linger).", "%.6f",
           st.linger_s);
    METRIC("herd_uptime_seconds", "gauge", "Seconds since the scheduler started.", "%.3f", st.up_s);
    METRIC("herd_slots", "gauge", "Sequence slots (--parallel).", "%d", st.n_slots);
    METRIC("herd_kv_tokens_in_use", "gauge", "Tokens held in the KV caches (cached prefixes included).", "%ld",
           st.kv_tokens_in_use);
    METRIC("herd_kv_tokens_capacity", "gauge", "KV cache capacity in tokens (slots x context).", "%ld",
           st.kv_tokens_capacity);
    METRIC("herd_kv_pages_in_use", "gauge", "Pages of the paged KV pool held by sequences (shared pages once).",
           "%d", st.kv_pages_in_use);
    METRIC("herd_kv_pages_total", "gauge", "Pages in the KV pool.", "%d", st.kv_pages_total);
    METRIC("herd_generation_tokens_per_second", "gauge", "Aggregate generation rate over the last second.",
           "%.3f", st.tokens_per_s);
#undef METRIC
    const struct { const char *name, *help; const srv_hist *h; } hs[2] = {
        { "herd_request_queue_seconds", "Time a request waited in the queue for a slot.", &st.queue_wait },
        { "herd_time_to_first_token_seconds",
          "Time from a request's queueing to its first generated token (prompt prefill included).", &st.ttft },
    };
    for (int k = 0; k < 2; k++) {
        buf_printf(&b, "# HELP %s %s\n# TYPE %s histogram\n", hs[k].name, hs[k].help, hs[k].name);
        uint64_t cum = 0;
        for (int i = 0; i < SRV_LAT_BUCKETS; i++) {
            cum += hs[k].h->bucket[i];
            if (i < SRV_LAT_BUCKETS - 1)
                buf_printf(&b, "%s_bucket{le=\"%g\"} %llu\n", hs[k].name, srv_lat_bounds[i], (unsigned long long)cum);
            else
                buf_printf(&b, "%s_bucket{le=\"+Inf\"} %llu\n", hs[k].name, (unsigned long long)cum);
        }
        buf_printf(&b, "%s_sum %.6f\n%s_count %llu\n", hs[k].name, hs[k].h->sum, hs[k].name,
                   (unsigned long long)hs[k].h->count);
    }
    buf_printf(&b, "# HELP herd_lora_adapters_in_memory LoRA adapters held: served, or unloaded and still in use.\n"
                   "# TYPE herd_lora_adapters_in_memory gauge\nherd_lora_adapters_in_memory %d\n",
               adapters_in_memory(&sv->adapters));
    /* by model: the served one and each adapter served now */
    char names[SRV_MAX_LORA][SRV_NAME_MAX + 1];
    int idx[SRV_MAX_LORA];
    const int n_ad = adapters_list(&sv->adapters, names, idx);
    const char *const mh[2][2] = { { "herd_model_requests_total", "Sequences accepted, by the model they named (an adapter's name or the model's)." },
                                   { "herd_model_generated_tokens_total", "Tokens generated, by the model the request named." } };
    for (int k = 0; k < 2; k++) {
        buf_printf(&b, "# HELP %s %s\n# TYPE %s counter\n", mh[k][0], mh[k][1], mh[k][0]);
        for (int i = -1; i < n_ad; i++) {
            const int at = i < 0 ? 0 : idx[i] + 1;
            buf_printf(&b, "%s{model=\"", mh[k][0]);
            for (const char *q = i < 0 ? sv->model_id : names[i]; *q; q++) /* a label value's escapes */
                buf_str(&b, *q == '"' ? "\\\"" : *q == '\\' ? "\\\\" : *q == '\n' ? "\\n" : (char[2]){ *q, 0 });
            buf_printf(&b, "\"} %llu\n", (unsigned long long)(k ? st.model_tokens[at] : st.model_requests[at]));
        }
    }
    static const char *const cls[6] = { "2xx", "400", "401", "404", "4xx_busy", "5xx" };
    buf_str(&b, "# HELP herd_http_responses_total HTTP responses by status class.\n"
                "# TYPE herd_http_responses_total counter\n");
    for (int i = 0; i < 6; i++)
        buf_printf(&b, "herd_http_responses_total{status=\"%s\"} %llu\n", cls[i], (unsigned long long)bs[i]);
    enum MHD_Result rc = send_body(sv, c, 200, "text/plain; version=0.0.4", b.p, b.n, NULL);
    buf_free(&b);
    return rc;
}

/* The answer to a CORS preflight (OPTIONS with Access-Control-Request-*): which
 * methods and headers the page may use, cached by the browser for a day. */
static enum MHD_Result preflight(server *sv, struct MHD_Connection *c) {
    struct MHD_Response *res = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    if (!res) return MHD_NO;
    add_cors(sv, res);
    MHD_add_response_header(res, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Access-Control-Request-Headers");
    MHD_add_response_header(res, "Access-Control-Allow-Headers", h && *h ? h : "Authorization, Content-Type");
    MHD_add_response_header(res, "Access-Control-Max-Age", "86400");
    enum MHD_Result rc = MHD_queue_response(c, 204, res);
    MHD_destroy_response(res);
    count_status(sv, 204);
    return rc;
}

static int authorized(server *sv, struct MHD_Connection *c) {
    if (!sv->p.api_key) return 1;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7)) return 0;
    h += 7;
    while (*h == ' ') h++;
    size_t n = strlen(h), k = strlen(sv->p.api_key);
    unsigned diff = n != k;
    for (size_t i = 0; i < n && i < k; i++) diff |= (unsigned char)(h[i] ^ sv->p.api_key[i]);
    return diff == 0;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                               const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    server *sv = cls;
    (void)version;
    conn_ctx *cc = *con_cls;
    if (!cc) {
        cc = calloc(1, sizeof *cc);
        if (!cc) return MHD_NO;
        cc->t0 = mono_s();
        /* "METHOD /path" with anything unprintable as '?', for the request log */
        snprintf(cc->what, sizeof cc->what, "%.8s %.100s", method, url);
        for (char *p = cc->what; *p; p++)
            if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f) *p = '?';
        *con_cls = cc;
        tl_status = 0;
        return MHD_YES;
    }
    if (*upload_size) {
        if (!cc->too_big && cc->body.n + *upload_size > sv->p.max_body) {
            cc->too_big = 1;
            buf_free(&cc->body);
        }
        if (!cc->too_big) buf_put(&cc->body, upload, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    int get = !strcmp(method, "GET") || !strcmp(method, "HEAD"), post = !strcmp(method, "POST");
    if (sv->p.cors && !strcmp(method, "OPTIONS")) /* a browser's preflight: no key is sent with it */
        return preflight(sv, c);
    if (!strcmp(url, "/") && get) {
        return send_body(sv, c, 200, "text/html; charset=utf-8", srv_web_page, strlen(srv_web_page), NULL);
    }
    if (!strcmp(url, "/health") && get)
        return sv->stopping ? send_json(sv, c, 503, "{\"status\":\"shutting down\"}")
                            : send_json(sv, c, 200, "{\"status\":\"ok\"}");
    if (!strcmp(url, "/metrics") && get) return metrics(sv, c);
    int tok = !strcmp(url, "/tokenize"), detok = !strcmp(url, "/detokenize");
    int keyed = !strncmp(url, "/v1/", 4) || tok || detok; /* the API: behind --api-key */
    if (keyed && !authorized(sv, c))
        return send_error(sv, c, 401, "Incorrect API key provided. Send it as 'Authorization: Bearer KEY'.",
                          "invalid_request_error", NULL, "invalid_api_key");
    int chat = !strcmp(url, "/v1/chat/completions"), compl = !strcmp(url, "/v1/completions");
    int resp = !strcmp(url, "/v1/responses"), emb = !strcmp(url, "/v1/embeddings");
    int mdl = !strcmp(url, "/v1/models") || !strncmp(url, "/v1/models/", 11);
    int ld = sv->p.lora_runtime && !strcmp(url, "/v1/load_lora_adapter");
    int uld = sv->p.lora_runtime && !strcmp(url, "/v1/unload_lora_adapter");
    if ((chat || compl || resp || emb || tok || detok || ld || uld) && !post) return send_error(sv, c, 405, "Use POST for this endpoint.",
                                                    "invalid_request_error", NULL, "method_not_allowed");
    if (mdl && !get) return send_error(sv, c, 405, "Use GET for this endpoint.", "invalid_request_error", NULL,
                                       "method_not_allowed");
    if (cc->too_big) {
        char msg[200];
        snprintf(msg, sizeof msg, "The request body is larger than the limit of %zu bytes.", sv->p.max_body);
        return send_error(sv, c, 413, msg, "invalid_request_error", NULL, "request_too_large");
    }
    if (chat || compl || resp || emb)
        return completions(sv, c, chat ? REQ_CHAT : compl ? REQ_COMPLETION : resp ? REQ_RESPONSE : REQ_EMBED, cc);
    if (tok || detok) {
        int status;
        char *b = (tok ? api_tokenize : api_detokenize)(&sv->api, cc->body.p ? cc->body.p : "", cc->body.n, &status);
        enum MHD_Result rc = send_json(sv, c, status, b);
        free(b);
        return rc;
    }
    if (mdl) return models(sv, c, url);
    if (ld || uld) return lora_admin(sv, c, ld, cc);
    char msg[300];
    snprintf(msg, sizeof msg, "Unknown request URL: %.8s %.200s.", method, url);
    return send_error(sv, c, 404, msg, "invalid_request_error", NULL, "unknown_url");
}

/* Ends a request: the request log's line (status, or "-" when none was sent, and
 * the seconds to the last byte; "closed early" when the client went away first). */
static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode t) {
    (void)c;
    server *sv = cls;
    conn_ctx *cc = *con_cls;
    if (!cc) return;
    if (!sv->p.quiet) {
        char st[16] = "-";
        if (tl_status) snprintf(st, sizeof st, "%d", tl_status);
        fprintf(stderr, "herd serve: %s %s %.3f s%s\n", cc->what, st, mono_s() - cc->t0,
                t == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : ", closed early");
    }
    tl_status = 0;
    if (cc->active) active_done(cls);
    buf_free(&cc->body);
    free(cc);
    *con_cls = NULL;
}

/* ---- run --------------------------------------------------------------------------- */

static void model_id_from_path(char *out, size_t cap, const char *path) {
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    size_t b = n;
    while (b > 0 && path[b - 1] != '/') b--;
    snprintf(out, cap, "%.*s", (int)(n - b), path + b);
}

int srv_run(const srv_params *p, herd_error *err) {
    server *sv = calloc(1, sizeof *sv);
    if (!sv) abort();
    sv->p = *p;
    pthread_mutex_init(&sv->mu, NULL);
    pthread_cond_init(&sv->cv, NULL);
    sv->created = (long)time(NULL);
    if (p->alias) snprintf(sv->model_id, sizeof sv->model_id, "%s", p->alias);
    else model_id_from_path(sv->model_id, sizeof sv->model_id, p->model_path);
    int rc = -1;
    struct MHD_Daemon *d = NULL;
    union {
        struct sockaddr sa;
        struct sockaddr_in v4;
        struct sockaddr_in6 v6;
    } addr;
    memset(&addr, 0, sizeof addr);
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC;
    if (inet_pton(AF_INET, p->host, &addr.v4.sin_addr) == 1) {
        addr.v4.sin_family = AF_INET;
        addr.v4.sin_port = htons((uint16_t)p->port);
    } else if (inet_pton(AF_INET6, p->host, &addr.v6.sin6_addr) == 1) {
        addr.v6.sin6_family = AF_INET6;
        addr.v6.sin6_port = htons((uint16_t)p->port);
        flags |= MHD_USE_IPv6;
    } else {
        snprintf(err->msg, sizeof err->msg, "--host '%s' is not an IPv4 or IPv6 address", p->host);
        goto out;
    }
    if (herd_model_load(&sv->m, p->model_path, err)) goto out;
    if (sched_new(&sv->sched, sv->m, p, err)) goto out;
    adapters_init(&sv->adapters, sv->m);
    sv->adapters_ready = 1;
    sched_use_adapters(sv->sched, &sv->adapters);
    for (int i = 0; i < p->n_lora; i++) {
        herd_error e2;
        herd_lora *l;
        if (!strcmp(p->lora_names[i], sv->model_id)) {
            snprintf(err->msg, sizeof err->msg, "--lora %s: the name is the model's own id; name the adapter "
                     "differently", p->lora_names[i]);
            goto out;
        }
        if (herd_lora_load(&l, sv->m, p->lora_paths[i], 1, &e2)) {
            snprintf(err->msg, sizeof err->msg, "--lora %.200s: %.800s", p->lora_names[i], e2.msg);
            goto out;
        }
        fprintf(stderr, "herd serve: adapter '%s' (%s): rank %d, %d projections\n", p->lora_names[i],
                p->lora_paths[i], herd_lora_rank(l), herd_lora_n_adapted(l));
        if (adapters_add(&sv->adapters, p->lora_names[i], l, &e2) < 0) { /* (names checked unique) */
            herd_lora_free(l);
            snprintf(err->msg, sizeof err->msg, "--lora %.200s: %.800s", p->lora_names[i], e2.msg);
            goto out;
        }
    }
    /* Loading ran OpenMP on this thread, whose pool keeps its threads; the
     * scheduler thread's forwards get a pool of their own. With more OpenMP
     * threads than CPUs, libgomp stops spinning at barriers and sleeps at each
     * (a forward has hundreds): free this thread's pool before the scheduler starts. */
    omp_pause_resource_all(omp_pause_hard);
    sv->api.model = sv->m;
    sv->api.model_id = sv->model_id;
    sv->api.n_ctx = sched_n_ctx(sv->sched);
    const herd_config *mc = herd_model_config(sv->m);
    if (herd_json_vocab_new(&sv->json_vocab, herd_model_tokenizer(sv->m), mc->eos_ids, mc->n_eos, err)) goto out;
    sv->api.json_vocab = sv->json_vocab;
    sv->api.adapters = p->n_lora || p->lora_runtime ? &sv->adapters : NULL;

    /* signals go to sigwait below, never to the worker threads created after this */
    sigset_t sigs, old;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, &old);
    signal(SIGPIPE, SIG_IGN);
    if (sched_start(sv->sched)) {
        snprintf(err->msg, sizeof err->msg, "cannot start the scheduler thread");
        goto out;
    }
    d = MHD_start_daemon(flags, (uint16_t)p->port, NULL, NULL, handler, sv, MHD_OPTION_SOCK_ADDR, &addr.sa,
                         MHD_OPTION_NOTIFY_COMPLETED, completed, sv, MHD_OPTION_CONNECTION_LIMIT, 512u,
                         MHD_OPTION_CONNECTION_TIMEOUT, 600u, MHD_OPTION_END);
    if (!d) {
        snprintf(err->msg, sizeof err->msg, "cannot listen on %s:%d (address in use, or not permitted); pick "
                 "another --port", p->host, p->port);
        sched_drain(sv->sched);
        goto out;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    int port = di ? di->port : p->port;
    fprintf(stderr, "herd serve: model '%s', %d slots x %d tokens; listening on http://%s%s%s:%d/\n",
            sv->model_id, p->n_parallel, sv->api.n_ctx, strchr(p->host, ':') ? "[" : "", p->host,
            strchr(p->host, ':') ? "]" : "", port);
    fflush(stderr);

    int sig = 0;
    sigwait(&sigs, &sig);
    fprintf(stderr, "herd serve: %s, finishing in-flight requests\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    sv->stopping = 1;
    MHD_socket lfd = MHD_quiesce_daemon(d);
    sched_drain(sv->sched);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 30;
    pthread_mutex_lock(&sv->mu);
    while (sv->active > 0)
        if (pthread_cond_timedwait(&sv->cv, &sv->mu, &until)) break;
    pthread_mutex_unlock(&sv->mu);
    MHD_stop_daemon(d);
    if (lfd != MHD_INVALID_SOCKET) close(lfd);
    d = NULL;
    fprintf(stderr, "herd serve: stopped\n");
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    rc = 0;
out:
    if (d) MHD_stop_daemon(d);
    sched_free(sv->sched); /* (its sessions first: they may carry adapters) */
    if (sv->adapters_ready) adapters_free(&sv->adapters);
    herd_json_vocab_free(sv->json_vocab);
    herd_model_free(sv->m);
    pthread_mutex_destroy(&sv->mu);
    pthread_cond_destroy(&sv->cv);
    free(sv);
    return rc;
}

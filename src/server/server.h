/* server.h - private header of `herd serve` (src/server/): the OpenAI-compatible
 * HTTP server. Only tools/cmd_serve.c and the server's own files include it; the
 * server itself uses nothing but the public herd.h.
 *
 * Pieces:
 *   http.c      libmicrohttpd daemon (thread per connection), routes, auth, body
 *               limits, /health, /metrics, /v1/models, shutdown (srv_run)
 *   parse.c     request JSON -> srv_req (validation, OpenAI error objects),
 *               /tokenize and /detokenize
 *   api.c       requests' lifecycle and the response JSON / SSE chunks the
 *               scheduler writes
 *   responses.c POST /v1/responses on the chat machinery
 *   embed.c     POST /v1/embeddings
 *   sched.c     the request queue and the one scheduler thread that owns the model,
 *               the sessions (one per slot) and sampling
 *   toolcall.c  Llama 3.1 tool calls: tools -> prompt messages, model text -> calls
 *   web.c       the chat page served at GET /
 *
 * Request lifecycle (invariants):
 *   - An HTTP thread parses and validates, then enqueues; from then on the request
 *     is shared by two owners (refs = 2): the HTTP side (released when the response
 *     is destroyed) and the scheduler (released when the sequence finishes).
 *   - Only the scheduler writes out/done; only the HTTP side sets cancelled. Both
 *     under req->mu; the HTTP side waits on req->cv.
 *   - done is set exactly once, after the last byte of the response is in out.
 */
#ifndef HERD_SERVER_H
#define HERD_SERVER_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "herd.h"

#define SRV_MAX_LORA 16       /* adapters one server holds at once */
#define SRV_NAME_MAX 200      /* an adapter's name (its model id), bytes */

typedef struct {
    const char *model_path;
    const char *alias;      /* the model id clients send and /v1/models lists; NULL: the path's base name */
    const char *host;       /* "127.0.0.1" */
    int port;               /* 0: any free port (printed on stderr) */
    const char *api_key;    /* NULL: no auth */
    const char *cors;       /* Access-Control-Allow-Origin for browsers on other origins ("*" or one
                             * origin); NULL: none, only same-origin pages (the chat page) may read */
    int n_parallel;         /* slots: sequences decoded together */
    int n_ctx;              /* context per slot; 0: min(model, 4096) */
    int kv_pages;           /* pages of the shared KV pool; 0: every slot can fill its context */
    int kv_type;            /* HERD_F32 (default), HERD_F16, ... */
    int n_threads;          /* 0: all cores */
    int queue_max;          /* queued requests before 429 */
    size_t max_body;        /* bytes; larger bodies get 413 */
    double linger_ms;       /* after a sequence finishes, wait up to this long for the next request before the next step */
    int no_interleave;      /* new prompts wait for the running step to end (not evaluated between its layers) */
    int prefill_chunk;      /* prompt rows a sequence gets per step (twice that for all prompts together); 0: 64.
                             * A scored echo holds a chunk's logits (chunk x vocabulary floats): --prefill-chunk
                             * takes at most 512 (262 MB at Llama 3's vocabulary) */
    int quiet;              /* no request log and no load summaries on stderr */
    int n_lora;             /* LoRA adapters served beside the model (--lora NAME=PATH) */
    const char *lora_names[SRV_MAX_LORA]; /* their model ids */
    const char *lora_paths[SRV_MAX_LORA];
    int lora_runtime;       /* POST /v1/load_lora_adapter and /v1/unload_lora_adapter are served */
} srv_params;

/* Loads the model, serves until SIGINT/SIGTERM, drains in-flight requests and
 * returns 0; non-zero with a message in err when it cannot start. */
int srv_run(const srv_params *p, herd_error *err);

/* ---- growable byte buffer ---------------------------------------------------- */

typedef struct {
    char *p;
    size_t n, cap;
} srv_buf;
void buf_put(srv_buf *b, const char *s, size_t n); /* aborts on OOM (our invariant) */
void buf_str(srv_buf *b, const char *s);
void buf_printf(srv_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_free(srv_buf *b);
/* Appends s as valid UTF-8 (invalid bytes become U+FFFD). */
void buf_utf8(srv_buf *b, const char *s, size_t n);

/* ---- requests ----------------------------------------------------------------- */

/* REQ_RESPONSE: /v1/responses (responses.c); REQ_EMBED: /v1/embeddings (embed.c) */
enum { REQ_CHAT, REQ_COMPLETION, REQ_RESPONSE, REQ_EMBED };
#define SRV_MAX_CHOICES 16   /* a request's n at most */
#define SRV_MAX_INPUTS 64    /* completions: prompts x n at most */
#define SRV_MAX_BIAS 1024    /* logit_bias entries at most */
#define SRV_MAX_STOP_IDS 16  /* stop_token_ids at most */
#define SRV_MAX_STOPS 4

/* One prompt of a completions request with several. */
typedef struct srv_input {
    int32_t *ids;
    int n;
    int bos_added;           /* tokenizing the prompt string added its BOS */
    int max_tokens;
} srv_input;

typedef struct srv_req {
    /* set by the HTTP thread before enqueue, read-only afterwards */
    int kind, stream, include_usage;
    int32_t *prompt;
    int n_prompt;
    int max_tokens;          /* already clamped to the context */
    float temperature, top_p, freq_penalty, pres_penalty, min_p;
    int top_k;               /* 0: off (vLLM's top_k and min_p, which clients send as extra fields) */
    int n_bias;              /* logit_bias: added to these tokens' logits (the front owns the array) */
    struct srv_bias { int32_t id; float v; } *bias;
    /* vLLM's: never end on an end token (ignore_eos: benchmarks' fixed lengths), not
     * before min_tokens, and also end on these ids (not part of the answer) */
    int ignore_eos, min_tokens, n_stop_ids;
    int32_t stop_ids[SRV_MAX_STOP_IDS];
    uint64_t seed;
    int logprobs, top_logprobs; /* chat: bool + 0..20; completions: logprobs = N (0..5) + 1 */
    char *stops[SRV_MAX_STOPS];
    int n_stops;
    int tools;               /* tools were given: parse the output for tool calls */
    herd_json_grammar *grammar; /* response_format json_object / json_schema (the front owns it; NULL: text) */
    int echo;                /* completions: the answer starts with the prompt (and its logprobs) */
    int embed_base64;        /* embeddings: encoding_format base64 */
    int bos_added;           /* prompt[0] is the BOS tokenizing a string prompt added (not echoed as text) */
    int n_choices;           /* choices: n per prompt; each runs as a request of its own */
    /* completions with several prompts (front only; n_inputs 1 and inputs NULL
     * otherwise); choice i answers prompt i / per_input */
    int n_inputs, per_input;
    struct srv_input *inputs;
    int prompt_total;        /* usage: every prompt's tokens, once */
    int index;               /* this request's choice (0 .. n - 1) */
    struct srv_req *front;   /* n > 1: the request the HTTP side answers from (NULL: itself) */
    char id[48];
    long created;
    const char *model_id;    /* the model the body named: the served one or an adapter's name */
    const herd_lora *lora;   /* that adapter (NULL: the model itself) */
    int model_index;         /* 0: the model, i + 1: adapter table entry i, referenced by the
                              * front until it is freed (and the per-model counters' index) */
    struct srv_adapters *adapters; /* that table (model_index > 0) */
    struct srv_req *next;    /* queue link (under the queue's mutex) */
    double t_submit;         /* queued (scheduler clock), for the latency histograms */
    int first_seen;          /* the scheduler has counted its first token */
    int requeued;            /* the scheduler put it back in the queue (KV pool full) */

    /* shared, under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    srv_buf out;             /* response bytes not yet sent (stream) or the whole body */
    size_t out_read;
    int done, cancelled, refs;
    int status;              /* HTTP status of a non-streamed response */
    /* a front (n > 1), under mu: choices not yet finished, their completion
     * tokens, and (not streamed) each finished choice's object by index */
    int pending, gen_total, cached_total; /* cached: each prompt's first choice's */
    cJSON **choices;
} srv_req;

srv_req *req_new(void);
void req_release(srv_req *r); /* drops one reference; frees at zero */
/* Choice i of front (n > 1): a copy of its fields that answers into front. */
srv_req *req_choice(srv_req *front, int i);

/* Appends bytes to the response and wakes the HTTP side (a choice's go to its
 * front; done = 1 from a choice ends only that choice, and the response once
 * all have ended). */
void req_emit(srv_req *r, const char *s, size_t n, int done);
/* 1 once the client went away (a choice: its front's client). */
int req_cancelled(srv_req *r);

/* ---- adapters.c: the LoRA adapters served by name ------------------------------ */

typedef struct {
    char name[SRV_NAME_MAX + 1];
    herd_lora *l;
    int refs;     /* the table's while live, each request naming it, each slot carrying it */
    int live;     /* nameable and listed (not unloaded) */
} srv_adapter;
typedef struct srv_adapters {
    pthread_mutex_t mu;
    const herd_model *m;
    srv_adapter a[SRV_MAX_LORA];
} srv_adapters;
void adapters_init(srv_adapters *A, const herd_model *m);
void adapters_free(srv_adapters *A); /* at shutdown: every adapter, whatever its references */
/* The live adapter called name, referenced (its adapter and its stable name in *l
 * and *id, each may be NULL): its index, or -1. */
int adapters_ref(srv_adapters *A, const char *name, const herd_lora **l, const char **id);
void adapters_ref_index(srv_adapters *A, int i);   /* one more reference to a referenced entry */
void adapters_unref(srv_adapters *A, int i);       /* the last one frees the adapter */
int adapters_live(srv_adapters *A, int i);
/* Serves l as name (the table takes it): its index, or -1 with err (the name is
 * taken, or the table is full). */
int adapters_add(srv_adapters *A, const char *name, herd_lora *l, herd_error *err);
/* Stops serving name (freed once its last user lets go): its index, or -1. */
int adapters_remove(srv_adapters *A, const char *name);
/* The live adapters' names (and indexes), in table order; returns how many. */
int adapters_list(srv_adapters *A, char (*names)[SRV_NAME_MAX + 1], int *index);
int adapters_in_memory(srv_adapters *A); /* served, or unloaded but still in use */

/* ---- parse.c and api.c ------------------------------------------------------------ */

typedef struct {
    const herd_model *model;
    const char *model_id;
    int n_ctx;
    const herd_json_vocab *json_vocab; /* for response_format and forced tool calls' grammars */
    struct srv_adapters *adapters;     /* adapters a request may name as its model (NULL: none) */
} srv_api;

/* An OpenAI error body: {"error": {"message", "type", "param", "code"}}. */
char *api_error_json(const char *message, const char *type, const char *param, const char *code);

/* Parses and validates a request body into a new srv_req. On failure returns NULL,
 * sets *status (400, 404) and *error_body (malloc'd OpenAI error JSON). */
srv_req *api_parse_request(const srv_api *a, int kind, const char *body, size_t len, int *status,
                           char **error_body);

/* POST /tokenize, as vLLM: {"prompt": text, "add_special_tokens": true} or
 * {"messages": [...], "tools": [...]} (a chat request's prompt, the answer's header
 * included) -> {"count", "max_model_len", "tokens"}; POST /detokenize: {"tokens":
 * [ids]} -> {"prompt": text}. "model" is optional. Return the body (malloc'd) and
 * set *status (200, or 400 / 404 with an OpenAI error body). */
char *api_tokenize(const srv_api *a, const char *body, size_t len, int *status);
char *api_detokenize(const srv_api *a, const char *body, size_t len, int *status);

/* A choice has ended with n_gen tokens (n_cached from the cache) and, not
 * streamed, its answer object (the front's last end writes the response). */
void out_choice_done(srv_req *r, int n_gen, int n_cached, cJSON *choice);

/* Per-sequence output state kept by the scheduler and formatted by api.c. */
typedef struct srv_out {
    srv_buf text;            /* all generated text (after stop-string cuts), after the echoed prompt */
    size_t echo_len;         /* bytes of text that are the echoed prompt (stop strings start after) */
    size_t sent;             /* bytes of text already streamed */
    int n_gen;
    int n_cached;            /* prompt tokens the KV cache supplied (not computed) */
    int role_sent;           /* chat: the role chunk; responses: 1 response.created, 2 the message item */
    int seq;                 /* responses: the next event's sequence_number */
    float *embedding;        /* embeddings: (C) the pooled vector, set when the prompt is done */
    int n_embedding;
    int holding_tool;        /* streaming: text held back while it may be a tool call */
    /* logprobs not yet sent (streaming) or all (non-streaming): chat: an array of
     * {token, logprob, bytes, top_logprobs}; completions: the legacy object
     * {tokens, token_logprobs, top_logprobs, text_offset}. NULL when none. */
    cJSON *lp;
} srv_out;

/* ---- embed.c: POST /v1/embeddings ----------------------------------------------- */

/* The choice's answer: {"object": "embedding", "index", "embedding"} from o->embedding. */
void embed_finish(srv_out *o, srv_req *r);
/* The response of all of a front's embeddings (takes its choices). */
cJSON *embed_list(srv_req *f);

/* ---- responses.c: POST /v1/responses as a chat request -------------------------- */

srv_req *resp_parse_request(const srv_api *a, const char *body, size_t len, int *status, char **error_body);
void resp_stream_text(srv_out *o, srv_req *r, size_t upto);
void resp_finish(srv_out *o, srv_req *r, const char *reason);

void out_init(srv_out *o, const srv_req *r);
void out_free(srv_out *o);
/* Records one sampled token's logprob data (lp: its log-prob; top ids/lps: k best;
 * lp NAN: the first prompt token of an echo, which has none: null, null). */
void out_add_logprob(srv_out *o, const srv_req *r, const herd_tokenizer *t, int32_t id, float lp,
                     const int32_t *top_ids, const float *top_lps, int k, size_t text_offset);
/* Streams text[sent .. upto) as a content chunk (if non-empty). */
void out_stream_text(srv_out *o, srv_req *r, size_t upto);
/* Finishes the response: reason "stop" / "length"; parses tool calls when asked. */
void out_finish(srv_out *o, srv_req *r, const char *reason);
/* Ends the response with a server error (msg) instead. */
void out_fail(srv_req *r, const char *msg);

/* ---- toolcall.c --------------------------------------------------------------- */

typedef struct {
    char *name;
    char *arguments;         /* a JSON object as text */
} tc_call;

/* Parses a model's reply as Llama 3.1 tool calls. Returns the number of calls
 * (0: not a call; *calls NULL). Free with tc_free. */
int tc_parse(const char *text, size_t len, tc_call **calls);
void tc_free(tc_call *calls, int n);
/* 1 when text (the reply so far) could still turn out to be a tool call. */
int tc_maybe_call(const char *text, size_t len);
/* The OpenAI "tool_calls" array for calls; ids "call_<prefix>_<i>". */
cJSON *tc_to_openai(const tc_call *calls, int n, const char *id_prefix, int streaming);

/* Builds the message list for herd_chat_render from an OpenAI messages array and
 * an optional tools array, as the Llama 3.1 HF template renders tools: a system
 * message with "Environment: ipython" and the dates, the tool definitions (JSON,
 * indent 4) and instructions in the first user message. Returns 0 or sets
 * err->msg and returns -1. Free *msgs with herd_chat_messages_free. */
int tc_build_messages(const cJSON *messages, const cJSON *tools, herd_chat_message **msgs,
                      size_t *n, herd_error *err);

/* ---- sched.c ------------------------------------------------------------------ */

typedef struct srv_sched srv_sched;

/* Latency histograms of /metrics (Prometheus: cumulative buckets, upper bounds
 * in seconds; the last is +Inf). */
#define SRV_LAT_BUCKETS 12
extern const double srv_lat_bounds[SRV_LAT_BUCKETS - 1];
typedef struct {
    uint64_t bucket[SRV_LAT_BUCKETS]; /* not cumulative: observations per bucket */
    uint64_t count;
    double sum;
} srv_hist;

typedef struct {
    /* counters (read with the scheduler's stats lock) */
    uint64_t requests, prompt_tokens, generated_tokens, cancelled, reused_tokens;
    uint64_t steps, step_sequences; /* batched forwards, and sequences summed over them */
    uint64_t fill_rows;             /* decode rows carried by a short prefill's step */
    uint64_t interleaved;           /* prompts evaluated between two layers of a step under way */
    uint64_t grammar_tokens, grammar_masks; /* tokens sampled under a grammar; refused, so masked and resampled */
    uint64_t requeued;              /* prefills put back in the queue: the KV pool was full */
    uint64_t model_requests[SRV_MAX_LORA + 1], model_tokens[SRV_MAX_LORA + 1]; /* by srv_req.model_index */
    int queue_depth, running, n_slots, step_sequences_max;
    long kv_tokens_in_use, kv_tokens_capacity;
    int kv_pages_in_use, kv_pages_total;
    double tokens_per_s;
    /* scheduler seconds: in the batched forward, in whole steps (forward, sampling,
     * streaming), and since the scheduler started */
    double forward_s, step_s, up_s;
    /* steps held back for a follow-up request (--linger), and the seconds held */
    uint64_t lingers;
    double linger_s;
    /* per request: queued -> admitted into a slot; queued -> its first generated
     * token chosen (time to first token, the HTTP parsing before it left out) */
    srv_hist queue_wait, ttft;
} srv_stats;

/* One KV pool for all slots (p: n_parallel, n_ctx, kv_pages, kv_type, n_threads,
 * queue_max). */
int sched_new(srv_sched **out, const herd_model *m, const srv_params *p, herd_error *err);
/* Starts the thread. */
int sched_start(srv_sched *s);
/* Queues r (taking the scheduler's reference). Returns 0, 429 when the queue is
 * full, 503 when draining. */
int sched_submit(srv_sched *s, srv_req *r);
/* Queues the n choices of one request, all or none (same returns; an n larger
 * than the whole queue goes in when the queue is empty). */
int sched_submit_n(srv_sched *s, srv_req **r, int n);
/* Stops admitting new requests, finishes every queued and running one, joins. */
void sched_drain(srv_sched *s);
void sched_free(srv_sched *s);
void sched_stats(srv_sched *s, srv_stats *st);
int sched_n_ctx(const srv_sched *s);
/* The adapter table requests name adapters from (before sched_start): a slot
 * whose session carries one holds a reference, and lets go of it once the
 * adapter is unloaded and the slot idle. */
void sched_use_adapters(srv_sched *s, srv_adapters *A);
/* An adapter was unloaded: idle slots let go of it (the scheduler wakes for it);
 * one was loaded into entry i: its per-model counters start from zero. */
void sched_adapter_unloaded(srv_sched *s);
void sched_adapter_loaded(srv_sched *s, int i);

/* ---- web.c -------------------------------------------------------------------- */

extern const char srv_web_page[];

#endif

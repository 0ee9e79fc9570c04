/* api.c - the OpenAI API's answers: requests' lifecycle (a choice answers into
 * its front; every request ends through front_end_locked), and the responses the
 * scheduler writes (chat.completion / text_completion objects, SSE chunks, usage,
 * logprobs, tool_calls; /v1/responses in responses.c, /v1/embeddings in embed.c).
 * The request bodies are read in parse.c. No model work happens here.
 */
#include "server/server.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- buffers and requests ------------------------------------------------------ */

void buf_put(srv_buf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) abort(); /* out of memory: no sane way to answer */
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

void buf_str(srv_buf *b, const char *s) { buf_put(b, s, strlen(s)); }

void buf_printf(srv_buf *b, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k < 0) return;
    if ((size_t)k < sizeof tmp) { buf_put(b, tmp, (size_t)k); return; }
    char *big = malloc((size_t)k + 1);
    if (!big) abort();
    va_start(ap, fmt);
    vsnprintf(big, (size_t)k + 1, fmt, ap);
    va_end(ap);
    buf_put(b, big, (size_t)k);
    free(big);
}

void buf_free(srv_buf *b) {
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}

void buf_utf8(srv_buf *b, const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned c = u[i];
        int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        int ok = len > 0 && i + (size_t)len <= n;
        for (int k = 1; ok && k < len; k++) ok = (u[i + k] & 0xC0) == 0x80;
        if (ok && len == 2) ok = c >= 0xC2;
        if (ok && len == 3) {
            unsigned cp = ((c & 15u) << 12) | ((u[i + 1] & 63u) << 6) | (u[i + 2] & 63u);
            ok = cp >= 0x800 && !(cp >= 0xD800 && cp <= 0xDFFF);
        }
        if (ok && len == 4) {
            unsigned cp = ((c & 7u) << 18) | ((u[i + 1] & 63u) << 12) | ((u[i + 2] & 63u) << 6) | (u[i + 3] & 63u);
            ok = cp >= 0x10000 && cp <= 0x10FFFF;
        }
        if (ok) {
            buf_put(b, s + i, (size_t)len);
            i += (size_t)len;
        } else {
            buf_put(b, "\xEF\xBF\xBD", 3);
            i++;
        }
    }
    buf_put(b, "", 0);
}

srv_req *req_new(void) {
    srv_req *r = calloc(1, sizeof *r);
    if (!r) abort();
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    r->refs = 1;
    r->status = 200;
    r->n_choices = r->n_inputs = r->per_input = r->pending = 1;
    return r;
}

void req_release(srv_req *r) {
    if (!r) return;
    pthread_mutex_lock(&r->mu);
    int left = --r->refs;
    pthread_mutex_unlock(&r->mu);
    if (left) return;
    free(r->prompt);
    if (!r->front) { /* choices share their front's */
        herd_json_grammar_free(r->grammar);
        free(r->bias);
        if (r->model_index > 0) adapters_unref(r->adapters, r->model_index - 1);
    }
    for (int i = 0; i < r->n_stops; i++) free(r->stops[i]);
    buf_free(&r->out);
    if (r->choices)
        for (int i = 0; i < r->n_choices; i++) cJSON_Delete(r->choices[i]);
    free(r->choices);
    for (int k = 0; r->inputs && k < r->n_inputs; k++) free(r->inputs[k].ids);
    free(r->inputs);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    srv_req *front = r->front;
    free(r);
    req_release(front);
}

srv_req *req_choice(srv_req *f, int i) {
    srv_req *r = malloc(sizeof *r);
    if (!r) abort();
    *r = *f; /* the request's fields; what is per choice or owned is set below */
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    r->out = (srv_buf){ 0 };
    r->out_read = 0;
    r->done = r->cancelled = 0;
    r->refs = 1;
    r->status = 200;
    r->pending = 1, r->gen_total = 0;
    r->choices = NULL;
    r->n_inputs = 1;
    r->inputs = NULL;
    r->next = NULL;
    const srv_input *in = f->inputs ? &f->inputs[i / f->per_input] : NULL; /* when it has several */
    if (in) r->n_prompt = in->n, r->bos_added = in->bos_added, r->max_tokens = in->max_tokens;
    r->prompt = malloc((size_t)(r->n_prompt ? r->n_prompt : 1) * sizeof *r->prompt);
    if (!r->prompt) abort();
    memcpy(r->prompt, in ? in->ids : f->prompt, (size_t)r->n_prompt * sizeof *r->prompt);
    for (int k = 0; k < f->n_stops; k++)
        if (!(r->stops[k] = strdup(f->stops[k]))) abort();
    r->index = i;
    /* choices of a prompt sample apart, reproducibly with a seed */
    r->seed = f->seed + (uint64_t)(i % f->per_input);
    r->front = f;
    pthread_mutex_lock(&f->mu);
    f->refs++;
    pthread_mutex_unlock(&f->mu);
    return r;
}

static cJSON *envelope(const srv_req *r, const char *object);
static cJSON *usage_obj(int n_prompt, int n_gen, int n_cached);

/* All choices of front f (a request of one choice is its own front) have ended
 * (f->mu held): streamed, the usage over them and [DONE]; not streamed, one object
 * with every choice by index and the usage (the prompt counted once). After a
 * failure (out_fail) no usage, and not streamed the error is the answer. */
static void front_end_locked(srv_req *f) {
    int chat = f->kind == REQ_CHAT;
    cJSON *c = NULL;
    if (f->kind == REQ_EMBED) {
        if (f->status == 200) {
            f->out.n = 0;
            c = embed_list(f);
        }
    } else if (f->kind == REQ_RESPONSE) { /* streamed: its events ended it (no [DONE]); else its response object */
        if (f->stream) {
            f->done = 1;
            return;
        }
        if (f->status == 200) {
            f->out.n = 0;
            c = f->choices[0];
            f->choices[0] = NULL;
        }
    } else if (f->stream) {
        if (f->include_usage && f->status == 200) {
            c = envelope(f, chat ? "chat.completion.chunk" : "text_completion");
            cJSON_AddArrayToObject(c, "choices");
            cJSON_AddItemToObject(c, "usage", usage_obj(f->prompt_total, f->gen_total, f->cached_total));
        }
    } else if (f->status == 200) {
        f->out.n = 0;
        c = envelope(f, chat ? "chat.completion" : "text_completion");
        cJSON *arr = cJSON_AddArrayToObject(c, "choices");
        for (int i = 0; i < f->n_choices; i++)
            if (f->choices[i]) {
                cJSON_AddItemToArray(arr, f->choices[i]);
                f->choices[i] = NULL;
            }
        cJSON_AddItemToObject(c, "usage", usage_obj(f->prompt_total, f->gen_total, f->cached_total));
    }
    if (c) {
        char *j = cJSON_PrintUnformatted(c);
        cJSON_Delete(c);
        if (!j) abort();
        if (f->stream) buf_str(&f->out, "data: ");
        buf_str(&f->out, j);
        if (f->stream) buf_str(&f->out, "\n\n");
        free(j);
    }
    if (f->stream) buf_str(&f->out, "data: [DONE]\n\n");
    f->done = 1;
}

void req_emit(srv_req *r, const char *s, size_t n, int done) {
    srv_req *f = r->front ? r->front : r;
    pthread_mutex_lock(&f->mu);
    if (n) buf_put(&f->out, s, n);
    if (done && --f->pending == 0) front_end_locked(f);
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

int req_cancelled(srv_req *r) {
    srv_req *f = r->front ? r->front : r;
    pthread_mutex_lock(&f->mu);
    int c = f->cancelled;
    pthread_mutex_unlock(&f->mu);
    return c;
}

/* Choice r has ended with n_gen tokens and (not streamed) its object. */
void out_choice_done(srv_req *r, int n_gen, int n_cached, cJSON *choice) {
    srv_req *f = r->front ? r->front : r;
    pthread_mutex_lock(&f->mu);
    f->gen_total += n_gen;
    if (r->index % f->per_input == 0) f->cached_total += n_cached;
    if (choice && f->choices) {
        cJSON_Delete(f->choices[r->index]);
        f->choices[r->index] = choice;
        choice = NULL;
    }
    pthread_mutex_unlock(&f->mu);
    cJSON_Delete(choice);
    req_emit(r, NULL, 0, 1);
}

/* ---- responses ------------------------------------------------------------------- */

void out_init(srv_out *o, const srv_req *r) {
    memset(o, 0, sizeof *o);
    o->holding_tool = r->tools;
}

void out_free(srv_out *o) {
    buf_free(&o->text);
    free(o->embedding);
    o->embedding = NULL;
    cJSON_Delete(o->lp);
    o->lp = NULL;
}

static cJSON *token_json(const herd_tokenizer *t, int32_t id, float lp, int with_bytes) {
    size_t n = 0;
    const char *b = herd_token_bytes(t, id, &n);
    srv_buf s = { 0 };
    buf_utf8(&s, b ? b : "", b ? n : 0);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "token", s.p);
    cJSON_AddNumberToObject(o, "logprob", lp);
    if (with_bytes) {
        cJSON *arr = cJSON_AddArrayToObject(o, "bytes");
        for (size_t i = 0; i < n; i++) cJSON_AddItemToArray(arr, cJSON_CreateNumber((unsigned char)b[i]));
    }
    buf_free(&s);
    return o;
}

void out_add_logprob(srv_out *o, const srv_req *r, const herd_tokenizer *t, int32_t id, float lp,
                     const int32_t *top_ids, const float *top_lps, int k, size_t text_offset) {
    if (!r->logprobs) return;
    if (r->kind == REQ_CHAT) {
        if (isnan(lp)) return; /* (no echo in chat) */
        if (!o->lp) o->lp = cJSON_CreateArray();
        cJSON *e = token_json(t, id, lp, 1);
        cJSON *top = cJSON_AddArrayToObject(e, "top_logprobs");
        for (int i = 0; i < k; i++) cJSON_AddItemToArray(top, token_json(t, top_ids[i], top_lps[i], 1));
        cJSON_AddItemToArray(o->lp, e);
        return;
    }
    if (!o->lp) {
        o->lp = cJSON_CreateObject();
        cJSON_AddArrayToObject(o->lp, "tokens");
        cJSON_AddArrayToObject(o->lp, "token_logprobs");
        cJSON_AddArrayToObject(o->lp, "top_logprobs");
        cJSON_AddArrayToObject(o->lp, "text_offset");
    }
    cJSON *tok = token_json(t, id, lp, 0);
    cJSON_AddItemToArray(cJSON_GetObjectItem(o->lp, "tokens"),
                         cJSON_CreateString(cJSON_GetObjectItem(tok, "token")->valuestring));
    cJSON_Delete(tok);
    cJSON_AddItemToArray(cJSON_GetObjectItem(o->lp, "token_logprobs"), isnan(lp) ? cJSON_CreateNull() : cJSON_CreateNumber(lp));
    cJSON *top = isnan(lp) ? cJSON_CreateNull() : cJSON_CreateObject();
    for (int i = 0; i < k; i++) {
        cJSON *tj = token_json(t, top_ids[i], top_lps[i], 0);
        const char *s = cJSON_GetObjectItem(tj, "token")->valuestring;
        if (!cJSON_GetObjectItemCaseSensitive(top, s)) cJSON_AddNumberToObject(top, s, top_lps[i]);
        cJSON_Delete(tj);
    }
    cJSON_AddItemToArray(cJSON_GetObjectItem(o->lp, "top_logprobs"), top);
    cJSON_AddItemToArray(cJSON_GetObjectItem(o->lp, "text_offset"), cJSON_CreateNumber((double)text_offset));
}

/* The logprobs value of a choice: takes o->lp (NULL -> JSON null). */
static cJSON *take_logprobs(srv_out *o, const srv_req *r) {
    if (!r->logprobs) return cJSON_CreateNull();
    cJSON *lp = o->lp;
    o->lp = NULL;
    if (r->kind == REQ_CHAT) {
        cJSON *w = cJSON_CreateObject();
        cJSON_AddItemToObject(w, "content", lp ? lp : cJSON_CreateArray());
        return w;
    }
    return lp ? lp : cJSON_CreateNull();
}

static cJSON *envelope(const srv_req *r, const char *object) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", r->id);
    cJSON_AddStringToObject(o, "object", object);
    cJSON_AddNumberToObject(o, "created", (double)r->created);
    cJSON_AddStringToObject(o, "model", r->model_id);
    cJSON_AddStringToObject(o, "system_fingerprint", "herd");
    return o;
}

/* usage, with OpenAI's prompt_tokens_details.cached_tokens: prompt tokens the
 * KV cache supplied instead of computing them (a shared prefix). */
static cJSON *usage_obj(int n_prompt, int n_gen, int n_cached) {
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "prompt_tokens", n_prompt);
    cJSON_AddNumberToObject(u, "completion_tokens", n_gen);
    cJSON_AddNumberToObject(u, "total_tokens", n_prompt + n_gen);
    cJSON_AddNumberToObject(cJSON_AddObjectToObject(u, "prompt_tokens_details"), "cached_tokens", n_cached);
    return u;
}

static void send_event(srv_req *r, cJSON *obj) {
    char *s = cJSON_PrintUnformatted(obj);
    cJSON_Delete(obj);
    if (!s) abort();
    srv_buf b = { 0 };
    buf_str(&b, "data: ");
    buf_str(&b, s);
    buf_str(&b, "\n\n");
    free(s);
    req_emit(r, b.p, b.n, 0);
    buf_free(&b);
}

/* One streamed chunk: chat delta (takes ownership) or completion text. */
static void send_chunk(srv_out *o, srv_req *r, cJSON *delta, const char *text, size_t n,
                       const char *finish, int with_lp) {
    int chat = r->kind == REQ_CHAT;
    cJSON *c = envelope(r, chat ? "chat.completion.chunk" : "text_completion");
    cJSON *choices = cJSON_AddArrayToObject(c, "choices"), *ch = cJSON_CreateObject();
    cJSON_AddNumberToObject(ch, "index", r->index);
    if (chat) cJSON_AddItemToObject(ch, "delta", delta);
    else {
        srv_buf s = { 0 };
        buf_utf8(&s, text ? text : "", text ? n : 0);
        cJSON_AddStringToObject(ch, "text", s.p);
        buf_free(&s);
    }
    cJSON_AddItemToObject(ch, "logprobs", with_lp ? take_logprobs(o, r) : cJSON_CreateNull());
    if (finish) cJSON_AddStringToObject(ch, "finish_reason", finish);
    else cJSON_AddNullToObject(ch, "finish_reason");
    cJSON_AddItemToArray(choices, ch);
    if (r->include_usage) cJSON_AddNullToObject(c, "usage");
    send_event(r, c);
}

static void ensure_role(srv_out *o, srv_req *r) {
    if (o->role_sent || r->kind != REQ_CHAT) return;
    o->role_sent = 1;
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "role", "assistant");
    cJSON_AddStringToObject(d, "content", "");
    send_chunk(o, r, d, NULL, 0, NULL, 0);
}

static void send_text(srv_out *o, srv_req *r, const char *s, size_t n) {
    if (r->kind == REQ_CHAT) {
        srv_buf t = { 0 };
        buf_utf8(&t, s, n);
        cJSON *d = cJSON_CreateObject();
        cJSON_AddStringToObject(d, "content", t.p);
        buf_free(&t);
        send_chunk(o, r, d, NULL, 0, NULL, 1);
    } else send_chunk(o, r, NULL, s, n, NULL, 1);
}

void out_stream_text(srv_out *o, srv_req *r, size_t upto) {
    if (r->kind == REQ_RESPONSE) return resp_stream_text(o, r, upto);
    if (!r->stream) return;
    ensure_role(o, r);
    if (o->holding_tool) {
        if (tc_maybe_call(o->text.p ? o->text.p : "", o->text.n)) return;
        o->holding_tool = 0;
    }
    if (upto > o->text.n) upto = o->text.n;
    if (upto <= o->sent) return;
    send_text(o, r, o->text.p + o->sent, upto - o->sent);
    o->sent = upto;
}

void out_finish(srv_out *o, srv_req *r, const char *reason) {
    if (r->kind == REQ_RESPONSE) return resp_finish(o, r, reason);
    if (r->kind == REQ_EMBED) return embed_finish(o, r);
    char tc_id[64]; /* tool call ids: the response id's hex, and the choice when n > 1 */
    if (r->front) snprintf(tc_id, sizeof tc_id, "%s_%d", r->id + 9, r->index);
    else snprintf(tc_id, sizeof tc_id, "%s", r->id + 9);
    tc_call *calls = NULL;
    int n_calls = r->tools ? tc_parse(o->text.p ? o->text.p : "", o->text.n, &calls) : 0;
    if (n_calls) reason = "tool_calls";
    int chat = r->kind == REQ_CHAT;
    if (r->stream) {
        ensure_role(o, r);
        if (n_calls) {
            cJSON *arr = tc_to_openai(calls, n_calls, tc_id, 1), *c;
            int i = 0;
            cJSON_ArrayForEach(c, arr) { /* name first, then the arguments, as OpenAI streams them */
                cJSON *f = cJSON_GetObjectItem(c, "function");
                char *args = strdup(cJSON_GetObjectItem(f, "arguments")->valuestring);
                cJSON_ReplaceItemInObject(f, "arguments", cJSON_CreateString(""));
                cJSON *d = cJSON_CreateObject(), *l = cJSON_AddArrayToObject(d, "tool_calls");
                cJSON_AddItemToArray(l, cJSON_Duplicate(c, 1));
                send_chunk(o, r, d, NULL, 0, NULL, 0);
                d = cJSON_CreateObject();
                l = cJSON_AddArrayToObject(d, "tool_calls");
                cJSON *t = cJSON_CreateObject();
                cJSON_AddNumberToObject(t, "index", i++);
                cJSON_AddStringToObject(cJSON_AddObjectToObject(t, "function"), "arguments", args);
                cJSON_AddItemToArray(l, t);
                send_chunk(o, r, d, NULL, 0, NULL, 0);
                free(args);
            }
            cJSON_Delete(arr);
        } else if (o->text.n > o->sent) {
            send_text(o, r, o->text.p + o->sent, o->text.n - o->sent);
            o->sent = o->text.n;
        }
        send_chunk(o, r, chat ? cJSON_CreateObject() : NULL, "", 0, reason, 1);
        out_choice_done(r, o->n_gen, o->n_cached, NULL); /* the last choice's end adds the usage and [DONE] */
    } else {
        cJSON *ch = cJSON_CreateObject();
        cJSON_AddNumberToObject(ch, "index", r->index);
        srv_buf t = { 0 };
        buf_utf8(&t, o->text.p ? o->text.p : "", o->text.n);
        if (chat) {
            cJSON *m = cJSON_AddObjectToObject(ch, "message");
            cJSON_AddStringToObject(m, "role", "assistant");
            if (n_calls) {
                cJSON_AddNullToObject(m, "content");
                cJSON_AddItemToObject(m, "tool_calls", tc_to_openai(calls, n_calls, tc_id, 0));
            } else cJSON_AddStringToObject(m, "content", t.p);
            cJSON_AddNullToObject(m, "refusal");
        } else cJSON_AddStringToObject(ch, "text", t.p);
        buf_free(&t);
        cJSON_AddItemToObject(ch, "logprobs", take_logprobs(o, r));
        cJSON_AddStringToObject(ch, "finish_reason", reason);
        out_choice_done(r, o->n_gen, o->n_cached, ch); /* the last choice's end writes the object */
    }
    tc_free(calls, n_calls);
}

void out_fail(srv_req *r, const char *msg) {
    char *e = api_error_json(msg, "server_error", NULL, "internal_error");
    srv_req *f = r->front ? r->front : r;
    pthread_mutex_lock(&f->mu);
    if (r->stream) { /* an error event; the last choice's end adds [DONE] */
        buf_printf(&f->out, "data: %s\n\n", e);
        f->status = 500;
    } else if (f->status == 200) { /* the answer is the error (the first choice's to fail) */
        f->status = 500;
        f->out.n = 0;
        buf_str(&f->out, e);
    }
    pthread_mutex_unlock(&f->mu);
    req_emit(r, NULL, 0, 1);
    free(e);
}

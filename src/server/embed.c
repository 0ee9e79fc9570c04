/* embed.c - POST /v1/embeddings: each input's embedding is the mean of its
 * tokens' final-normed hidden states (herd_session_eval_batch_out; the scheduler
 * sums them chunk by chunk, sched.c), scaled to unit length as OpenAI's are, so a
 * dot product is the cosine similarity.
 *
 * A generative Llama's pooled states are a usable but weak embedding; a model
 * trained for embeddings (with Llama's architecture) gives good ones the same way.
 * The whole prompt is computed (a cached prefix has no hidden states to pool).
 * Not streamed; dimensions only the model's (no truncation).
 */
#include "server/server.h"

#include <stdlib.h>
#include <string.h>

/* Base64 of the vector's float32 bytes (little-endian), as OpenAI's base64 format. */
static char *base64(const float *v, int n) {
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *b = (const unsigned char *)v;
    const size_t len = (size_t)n * sizeof *v;
    char *out = malloc(4 * ((len + 2) / 3) + 1), *p = out;
    if (!out) abort();
    for (size_t i = 0; i < len; i += 3) {
        const uint32_t x = (uint32_t)b[i] << 16 | (i + 1 < len ? (uint32_t)b[i + 1] << 8 : 0) |
                           (i + 2 < len ? b[i + 2] : 0);
        *p++ = tab[x >> 18 & 63];
        *p++ = tab[x >> 12 & 63];
        *p++ = i + 1 < len ? tab[x >> 6 & 63] : '=';
        *p++ = i + 2 < len ? tab[x & 63] : '=';
    }
    *p = 0;
    return out;
}

void embed_finish(srv_out *o, srv_req *r) {
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "object", "embedding");
    cJSON_AddNumberToObject(e, "index", r->index);
    if (r->embed_base64) {
        char *s = base64(o->embedding, o->n_embedding);
        cJSON_AddStringToObject(e, "embedding", s);
        free(s);
    } else {
        cJSON_AddItemToObject(e, "embedding", cJSON_CreateFloatArray(o->embedding, o->n_embedding));
    }
    out_choice_done(r, 0, 0, e);
}

cJSON *embed_list(srv_req *f) {
    cJSON *c = cJSON_CreateObject(), *data;
    cJSON_AddStringToObject(c, "object", "list");
    data = cJSON_AddArrayToObject(c, "data");
    for (int i = 0; i < f->n_choices; i++)
        if (f->choices[i]) {
            cJSON_AddItemToArray(data, f->choices[i]);
            f->choices[i] = NULL;
        }
    cJSON_AddStringToObject(c, "model", f->model_id);
    cJSON *u = cJSON_AddObjectToObject(c, "usage");
    cJSON_AddNumberToObject(u, "prompt_tokens", f->prompt_total);
    cJSON_AddNumberToObject(u, "total_tokens", f->prompt_total);
    return c;
}

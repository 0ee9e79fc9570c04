/* data.c - training data preparation (herd data) and tokenizer files on their own
 * (herd tokenizer train, herd data -m DIR without weights).
 *
 * A document is a whole plain text file, or one line of a JSONL file (its "text"
 * string). Each document is tokenized on its own as <|begin_of_text|> + ids
 * (special-token text inside it stays plain text, as Meta's tokenizer does), and the
 * documents are concatenated with nothing between them into the token file of
 * src/train/tokfile.h. Everything is held in memory until the atomic write, so a
 * failed run leaves no partial file.
 * Not here: chat-style "messages" (fine-tuning), shuffling (the loader's job).
 */
#include "core/core.h"
#include "model.h"
#include "tokenizer.h"
#include "train/tokfile.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- tokenizer files ------------------------------------------------------------- */

herd_status herd_tokenizer_load(herd_tokenizer **out, const char *path, herd_error *err) {
    *out = NULL;
    if (!path) return herd_errf(err, HERD_ERR_ARG, "tokenizer: NULL path");
    struct stat sb;
    if (stat(path, &sb) != 0)
        return herd_errf(err, HERD_ERR_IO, "tokenizer '%s' not found: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode)) {
        static const char *const cands[] = { "tokenizer.json", "tokenizer.model",
                                             "original/tokenizer.model" };
        char p[4096];
        for (int i = 0; i < 3; i++) {
            snprintf(p, sizeof p, "%s/%s", path, cands[i]);
            if (!herd_file_exists(p)) continue;
            return i == 0 ? herd_tokenizer_load_hf_json(out, p, err)
                          : herd_tokenizer_load_tiktoken(out, p, err);
        }
        return herd_errf(err, HERD_ERR_IO, "%s: no tokenizer found (looked for tokenizer.json, "
                         "tokenizer.model and original/tokenizer.model)", path);
    }
    if (herd_ends_with(path, ".gguf")) {
        herd_model *m;
        herd_status st = herd_model_load(&m, path, err);
        if (st) return st;
        *out = m->tok; /* take the tokenizer over from the model */
        m->tok = NULL;
        herd_model_free(m);
        return HERD_OK;
    }
    if (herd_ends_with(path, ".json")) return herd_tokenizer_load_hf_json(out, path, err);
    return herd_tokenizer_load_tiktoken(out, path, err);
}

herd_status herd_tokenizer_save(const herd_tokenizer *t, const char *dir, herd_error *err) {
    char p[4096];
    snprintf(p, sizeof p, "%s/tokenizer.model", dir);
    herd_status st = herd_tokenizer_write_tiktoken(t, p, err);
    if (st) return st;
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    return herd_tokenizer_write_hf_json(t, p, err);
}

/* ---- documents -> ids ---------------------------------------------------------------- */

typedef struct {
    uint32_t *ids;
    size_t n, cap;
    uint64_t n_docs;
} idbuf;

typedef struct {
    const herd_tokenizer *t;
    const herd_data_params *p;
    idbuf train, val;
    uint64_t doc_index; /* across all inputs, for the validation split */
} prep;

static int in_val(double f, uint64_t i) {
    return f > 0 && floor((double)(i + 1) * f) > floor((double)i * f);
}

/* Tokenizes one document (BOS + text) into the training or validation buffer. */
static herd_status add_doc(prep *d, const char *text, size_t len, const char *where,
                           herd_error *err) {
    int32_t *ids;
    size_t n;
    herd_status st = herd_tokenize(d->t, text, len, 1, 0, &ids, &n, err);
    if (st) return st;
    idbuf *b = in_val(d->p->val_fraction, d->doc_index++) ? &d->val : &d->train;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 1 << 16;
        while (cap < b->n + n) cap *= 2;
        uint32_t *q = realloc(b->ids, cap * sizeof *q);
        if (!q) {
            free(ids);
            return herd_errf(err, HERD_ERR_NOMEM, "data: %s: out of memory after %zu tokens", where, b->n);
        }
        b->ids = q;
        b->cap = cap;
    }
    for (size_t i = 0; i < n; i++) b->ids[b->n + i] = (uint32_t)ids[i];
    b->n += n;
    b->n_docs++;
    free(ids);
    return HERD_OK;
}

static herd_status add_jsonl(prep *d, const char *path, const char *buf, size_t len,
                             herd_error *err) {
    size_t line = 0;
    for (size_t i = 0; i < len;) {
        const char *s = buf + i, *nl = memchr(s, '\n', len - i);
        size_t n = nl ? (size_t)(nl - s) : len - i;
        i += n + (nl ? 1 : 0);
        line++;
        size_t k = 0;
        while (k < n && (s[k] == ' ' || s[k] == '\t' || s[k] == '\r')) k++;
        if (k == n) continue; /* blank line */
        const char *end = NULL;
        cJSON *j = cJSON_ParseWithLengthOpts(s, n, &end, 0);
        if (!j) {
            size_t at = end && end >= s && end <= s + n ? (size_t)(end - s) : 0;
            return herd_errf(err, HERD_ERR_FORMAT, "data: %s:%zu: invalid JSON near column %zu; "
                             "expected one object per line such as {\"text\": \"...\"}",
                             path, line, at + 1);
        }
        if (end) {
            size_t r = (size_t)(end - s);
            while (r < n && (s[r] == ' ' || s[r] == '\t' || s[r] == '\r')) r++;
            if (r < n) {
                cJSON_Delete(j);
                return herd_errf(err, HERD_ERR_FORMAT, "data: %s:%zu: unexpected text after the "
                                 "JSON value at column %zu; expected one object per line",
                                 path, line, (size_t)(end - s) + 1);
            }
        }
        const cJSON *txt = cJSON_GetObjectItemCaseSensitive(j, "text");
        if (!cJSON_IsString(txt) || !txt->valuestring) {
            const char *what = !cJSON_IsObject(j) ? "is not a JSON object"
                               : txt ? "has a \"text\" field that is not a string"
                                     : "has no \"text\" field";
            cJSON_Delete(j);
            return herd_errf(err, HERD_ERR_FORMAT, "data: %s:%zu: the line %s; expected "
                             "{\"text\": \"...\"} (chat \"messages\" are not supported here)",
                             path, line, what);
        }
        char where[4200];
        snprintf(where, sizeof where, "%s:%zu", path, line);
        herd_status st = add_doc(d, txt->valuestring, strlen(txt->valuestring), where, err);
        cJSON_Delete(j);
        if (st) return st;
    }
    return HERD_OK;
}

static herd_status add_input(prep *d, const char *path, herd_data_stats *stats, herd_error *err) {
    char *buf;
    size_t len;
    herd_status st = herd_read_file(path, &buf, &len, err);
    if (st) {
        char msg[sizeof err->msg];
        snprintf(msg, sizeof msg, "%s", err ? err->msg : "");
        return herd_errf(err, st, "data: input %s", msg);
    }
    stats->n_bytes += len;
    herd_data_format f = d->p->format;
    if (f == HERD_DATA_AUTO) f = herd_ends_with(path, ".jsonl") || herd_ends_with(path, ".json")
                                 ? HERD_DATA_JSONL : HERD_DATA_TEXT;
    if (f == HERD_DATA_JSONL) st = add_jsonl(d, path, buf, len, err);
    else if (len) st = add_doc(d, buf, len, path, err); /* an empty file is no document */
    free(buf);
    return st;
}

herd_status herd_data_prepare(const herd_tokenizer *t, const herd_data_params *p,
                              herd_data_stats *stats, herd_error *err) {
    herd_data_stats local;
    if (!stats) stats = &local;
    memset(stats, 0, sizeof *stats);
    if (!t || !p || !p->out_path || (p->n_inputs && !p->inputs))
        return herd_errf(err, HERD_ERR_ARG, "data: NULL tokenizer, parameters or output path");
    if (p->n_inputs == 0) return herd_errf(err, HERD_ERR_ARG, "data: no input files");
    if (!(p->val_fraction >= 0 && p->val_fraction < 1))
        return herd_errf(err, HERD_ERR_ARG, "data: validation fraction %g; expected 0 <= f < 1",
                         p->val_fraction);
    if (p->val_fraction > 0 && !p->val_path)
        return herd_errf(err, HERD_ERR_ARG, "data: a validation fraction needs a validation output path");
    uint32_t vocab = p->vocab_size ? p->vocab_size : (uint32_t)herd_tokenizer_n_vocab(t);
    if (vocab < (uint32_t)herd_tokenizer_n_vocab(t))
        return herd_errf(err, HERD_ERR_ARG, "data: vocab_size %u is smaller than the tokenizer's %d "
                         "tokens", vocab, herd_tokenizer_n_vocab(t));
    for (size_t i = 0; i < p->n_inputs; i++) { /* fail before hours of tokenizing */
        struct stat sb;
        if (stat(p->inputs[i], &sb) != 0)
            return herd_errf(err, HERD_ERR_IO, "data: input '%s' not found: %s", p->inputs[i],
                             strerror(errno));
        if (S_ISDIR(sb.st_mode))
            return herd_errf(err, HERD_ERR_ARG, "data: input '%s' is a directory; expected a text "
                             "or JSONL file", p->inputs[i]);
    }
    prep d = { .t = t, .p = p };
    herd_status st = HERD_OK;
    for (size_t i = 0; i < p->n_inputs && !st; i++) st = add_input(&d, p->inputs[i], stats, err);
    if (!st && d.train.n == 0)
        st = herd_errf(err, HERD_ERR_FORMAT, "data: the inputs hold no documents for training "
                       "(%llu for validation)", (unsigned long long)d.val.n_docs);
    if (!st && p->val_fraction > 0 && d.val.n == 0)
        st = herd_errf(err, HERD_ERR_ARG, "data: a validation fraction of %g selects none of the "
                       "%llu documents; use more documents (JSONL) or split the files yourself",
                       p->val_fraction, (unsigned long long)d.train.n_docs);
    if (!st) st = tokfile_write(p->out_path, d.train.ids, d.train.n, vocab, err);
    if (!st && p->val_fraction > 0) st = tokfile_write(p->val_path, d.val.ids, d.val.n, vocab, err);
    stats->n_docs = d.train.n_docs;
    stats->n_tokens = d.train.n;
    stats->n_val_docs = d.val.n_docs;
    stats->n_val_tokens = d.val.n;
    free(d.train.ids);
    free(d.val.ids);
    return st;
}

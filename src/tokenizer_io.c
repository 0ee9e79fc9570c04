/* tokenizer_io.c - loads the Llama 3 vocabulary from Meta's tiktoken
 * tokenizer.model, HF tokenizer.json or GGUF tokenizer.ggml.* keys, and writes all
 * three. Whatever the source, ids are the same: BPE id == rank, then 256 specials.
 *
 * Loaders validate everything (base64, ranks 0..N-1 without gaps or duplicates,
 * byte-level strings, special ids n_bpe..n_bpe+255) and name the file and line,
 * entry or key in errors. tokenizer.json merges and GGUF merges are not read: the
 * ranks determine BPE (merges are derived from ranks when writing). Special names
 * come from the file (json, gguf) or are Llama 3.1's (tiktoken, which has none).
 * Not here: sentencepiece/Llama 2 vocabularies, WordPiece, normalizers.
 */
#include "tokenizer_impl.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- tiktoken ------------------------------------------------------------------- */

static int b64_val(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Strict standard base64 (padding required); returns decoded length or -1. */
static long b64_decode(const char *s, size_t n, char *out) {
    if (n == 0 || n % 4) return -1;
    size_t k = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4], pad = 0;
        for (int j = 0; j < 4; j++) {
            if (s[i + j] == '=' && i + 4 == n && j >= 2) { v[j] = 0; pad++; continue; }
            if (pad) return -1; /* '=' followed by data */
            v[j] = b64_val((unsigned char)s[i + j]);
            if (v[j] < 0) return -1;
        }
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        out[k++] = (char)(w >> 16);
        if (pad < 2) out[k++] = (char)(w >> 8);
        if (pad < 1) out[k++] = (char)w;
    }
    return (long)k;
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static size_t b64_encode(const char *in, size_t n, char *out) {
    size_t k = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t w = (uint32_t)(uint8_t)in[i] << 16;
        if (i + 1 < n) w |= (uint32_t)(uint8_t)in[i + 1] << 8;
        if (i + 2 < n) w |= (uint8_t)in[i + 2];
        out[k++] = B64[w >> 18 & 63];
        out[k++] = B64[w >> 12 & 63];
        out[k++] = i + 1 < n ? B64[w >> 6 & 63] : '=';
        out[k++] = i + 2 < n ? B64[w & 63] : '=';
    }
    out[k] = 0;
    return k;
}

herd_status herd_tokenizer_from_tiktoken_text(herd_tokenizer **out, const char *text, size_t len,
                                              const char *name, herd_error *err) {
    *out = NULL;
    if (!name) name = "tokenizer.model";
    /* First pass: the number of non-blank lines is the number of tokens N, so a
     * rank >= N is a gap (or out of range) and a rank seen twice is a duplicate. */
    size_t n_lines = 0;
    for (size_t i = 0; i < len;) {
        const char *nl = memchr(text + i, '\n', len - i);
        size_t e = nl ? (size_t)(nl - text) : len;
        for (size_t k = i; k < e; k++)
            if (text[k] != ' ' && text[k] != '\t' && text[k] != '\r') { n_lines++; break; }
        i = e + 1;
    }
    if (n_lines == 0) return herd_errf(err, HERD_ERR_FORMAT, "%s: no tokens; expected 'base64 rank' lines", name);
    herd_tok_str *tok = calloc(n_lines, sizeof *tok);
    size_t *line_of = calloc(n_lines, sizeof *line_of);
    char *blob = malloc(len + 1);
    herd_status st = HERD_OK;
    if (!tok || !line_of || !blob) {
        st = herd_errf(err, HERD_ERR_NOMEM, "%s: out of memory", name);
        goto done;
    }
    size_t n_tok = 0, pos = 0, blob_n = 0, line = 0;
    while (pos < len) {
        line++;
        const char *ls = text + pos;
        const char *nl = memchr(ls, '\n', len - pos);
        size_t ll = nl ? (size_t)(nl - ls) : len - pos;
        pos += ll + (nl ? 1 : 0);
        while (ll && (ls[ll - 1] == '\r' || ls[ll - 1] == ' ' || ls[ll - 1] == '\t')) ll--;
        size_t a = 0;
        while (a < ll && (ls[a] == ' ' || ls[a] == '\t')) a++;
        if (a == ll) continue; /* blank line */
        size_t b = a;
        while (b < ll && ls[b] != ' ' && ls[b] != '\t') b++;
        size_t c = b;
        while (c < ll && (ls[c] == ' ' || ls[c] == '\t')) c++;
        if (c == ll) {
            st = herd_errf(err, HERD_ERR_FORMAT, "%s:%zu: expected 'base64 rank', got one field '%.*s'",
                           name, line, (int)(ll - a > 60 ? 60 : ll - a), ls + a);
            goto done;
        }
        long dl = b64_decode(ls + a, b - a, blob + blob_n);
        if (dl <= 0) {
            st = herd_errf(err, HERD_ERR_FORMAT, "%s:%zu: bad base64 token '%.*s'; expected standard "
                           "base64 with padding", name, line, (int)(b - a > 60 ? 60 : b - a), ls + a);
            goto done;
        }
        uint64_t rank = 0;
        size_t d = c;
        for (; d < ll && ls[d] >= '0' && ls[d] <= '9' && rank <= (uint64_t)INT32_MAX; d++)
            rank = rank * 10 + (uint64_t)(ls[d] - '0');
        if (d != ll || d == c) {
            st = herd_errf(err, HERD_ERR_FORMAT, "%s:%zu: bad rank '%.*s'; expected a decimal number "
                           "after the base64 token", name, line, (int)(ll - c > 40 ? 40 : ll - c), ls + c);
            goto done;
        }
        if (rank >= n_lines) {
            st = herd_errf(err, HERD_ERR_FORMAT, "%s:%zu: rank %llu but the file has %zu tokens; "
                           "expected ranks 0..N-1 without gaps", name, line, (unsigned long long)rank, n_lines);
            goto done;
        }
        if (tok[rank].ptr) {
            st = herd_errf(err, HERD_ERR_FORMAT, "%s:%zu: duplicate rank %llu, already used on line %zu",
                           name, line, (unsigned long long)rank, line_of[rank]);
            goto done;
        }
        tok[rank].ptr = blob + blob_n;
        tok[rank].len = (size_t)dl;
        line_of[rank] = line;
        blob_n += (size_t)dl;
        n_tok++;
    }
    st = herd_tokenizer_build(out, tok, n_tok, NULL, name, line_of, err);
done:
    free(tok);
    free(line_of);
    free(blob);
    return st;
}

herd_status herd_tokenizer_load_tiktoken(herd_tokenizer **out, const char *path, herd_error *err) {
    *out = NULL;
    char *text;
    size_t len;
    herd_status st = herd_read_file(path, &text, &len, err);
    if (st != HERD_OK) {
        if (err) {
            char m[sizeof err->msg];
            snprintf(m, sizeof m, "%s", err->msg);
            herd_errf(err, st, "tiktoken tokenizer: %s; expected Meta's tokenizer.model ('base64 rank' "
                      "lines)", m);
        }
        return st;
    }
    st = herd_tokenizer_from_tiktoken_text(out, text, len, path, err);
    free(text);
    return st;
}

/* ---- HF tokenizer.json ------------------------------------------------------------ */

static int json_int(const cJSON *v, int64_t *out) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= (double)INT32_MAX) || d != (double)(int64_t)d) return 0;
    *out = (int64_t)d;
    return 1;
}

static herd_status hf_json_build(herd_tokenizer **out, const cJSON *root, const char *path,
                                 herd_error *err) {
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    if (!cJSON_IsObject(model) || !cJSON_IsObject(vocab))
        return herd_errf(err, HERD_ERR_FORMAT, "%s: no \"model\": {\"vocab\": {...}} object; expected a "
                         "Hugging Face tokenizer.json", path);
    if (type && !(cJSON_IsString(type) && strcmp(type->valuestring, "BPE") == 0))
        return herd_errf(err, HERD_ERR_UNSUPPORTED, "%s: model.type is %s; herd supports only byte-level "
                         "\"BPE\" (Llama 3)", path, cJSON_IsString(type) ? type->valuestring : "not a string");
    if (added && !cJSON_IsArray(added))
        return herd_errf(err, HERD_ERR_FORMAT, "%s: \"added_tokens\" is not an array", path);
    /* Added (special) token ids, so vocab entries duplicating them are skipped. */
    int64_t max_added = -1, min_added = INT64_MAX;
    const cJSON *a;
    int ai = 0;
    cJSON_ArrayForEach(a, added) {
        int64_t id;
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(a, "content");
        if (!json_int(cJSON_GetObjectItemCaseSensitive(a, "id"), &id) || !cJSON_IsString(c))
            return herd_errf(err, HERD_ERR_FORMAT, "%s: added_tokens[%d]: expected {\"id\": integer, "
                             "\"content\": string}", path, ai);
        if (id > max_added) max_added = id;
        if (id < min_added) min_added = id;
        ai++;
    }
    int n_vocab_entries = cJSON_GetArraySize(vocab);
    size_t cap = (size_t)n_vocab_entries + 1;
    herd_tok_str *tok = calloc(cap, sizeof *tok);
    char *blob = malloc(cap * (HERD_TOK_MAX_LEN + 1));
    herd_tok_str sp[HERD_TOK_N_SPECIAL];
    char names[HERD_TOK_N_SPECIAL][40];
    herd_status st = HERD_OK;
    if (!tok || !blob) { st = herd_errf(err, HERD_ERR_NOMEM, "%s: out of memory", path); goto done; }
    /* n_bpe = vocab entries that are not added tokens. */
    size_t n_bpe = 0, blob_n = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, vocab) {
        int64_t id;
        if (!json_int(v, &id)) {
            st = herd_errf(err, HERD_ERR_FORMAT, "%s: model.vocab entry \"%.60s\": id is not a "
                           "non-negative integer", path, v->string);
            goto done;
        }
        int is_added = 0;
        cJSON_ArrayForEach(a, added) {
            int64_t aid;
            if (id > max_added || id < min_added) break;
            if (json_int(cJSON_GetObjectItemCaseSensitive(a, "id"), &aid) && aid == id) { is_added = 1; break; }
        }
        if (is_added) continue;
        if ((size_t)id >= cap) {
            st = herd_errf(err, HERD_ERR_FORMAT, "%s: model.vocab entry \"%.60s\" has id %lld but there are "
                           "%d entries; expected ids 0..N-1 without gaps", path, v->string, (long long)id,
                           n_vocab_entries);
            goto done;
        }
        if (tok[id].ptr) {
            st = herd_errf(err, HERD_ERR_FORMAT, "%s: model.vocab entry \"%.60s\" reuses id %lld",
                           path, v->string, (long long)id);
            goto done;
        }
        size_t sl = strlen(v->string);
        if (sl > 2 * HERD_TOK_MAX_LEN) {
            st = herd_errf(err, HERD_ERR_FORMAT, "%s: model.vocab entry \"%.60s...\" is longer than %d bytes",
                           path, v->string, HERD_TOK_MAX_LEN);
            goto done;
        }
        uint32_t bad;
        long bl = herd_bytelevel_to_bytes(v->string, sl, blob + blob_n, &bad);
        if (bl < 0 || bl > HERD_TOK_MAX_LEN) {
            st = herd_errf(err, HERD_ERR_FORMAT, "%s: model.vocab entry \"%.60s\" (id %lld): character "
                           "U+%04X is not a GPT-2 byte-level character; expected a byte-level BPE vocab",
                           path, v->string, (long long)id, bad);
            goto done;
        }
        tok[id].ptr = blob + blob_n;
        tok[id].len = (size_t)bl;
        blob_n += (size_t)bl;
        n_bpe++;
    }
    for (size_t i = 0; i < n_bpe; i++)
        if (!tok[i].ptr) {
            st = herd_errf(err, HERD_ERR_FORMAT, "%s: model.vocab has no id %zu among %zu tokens; expected "
                           "ids 0..N-1 without gaps", path, i, n_bpe);
            goto done;
        }
    for (int k = 0; k < HERD_TOK_N_SPECIAL; k++) {
        sp[k].ptr = herd_tokenizer_default_special(k, names[k], sizeof names[k]);
        sp[k].len = strlen(sp[k].ptr);
    }
    ai = 0;
    cJSON_ArrayForEach(a, added) {
        int64_t id = -1;
        json_int(cJSON_GetObjectItemCaseSensitive(a, "id"), &id); /* validated above */
        const char *c = cJSON_GetObjectItemCaseSensitive(a, "content")->valuestring;
        if (id < (int64_t)n_bpe || id >= (int64_t)n_bpe + HERD_TOK_N_SPECIAL) {
            st = herd_errf(err, HERD_ERR_FORMAT, "%s: added_tokens[%d] \"%.60s\" has id %lld; expected the "
                           "special tokens at ids %zu..%zu, right after the %zu BPE tokens", path, ai, c,
                           (long long)id, n_bpe, n_bpe + HERD_TOK_N_SPECIAL - 1, n_bpe);
            goto done;
        }
        sp[id - (int64_t)n_bpe].ptr = c;
        sp[id - (int64_t)n_bpe].len = strlen(c);
        ai++;
    }
    st = herd_tokenizer_build(out, tok, n_bpe, sp, path, NULL, err);
done:
    free(tok);
    free(blob);
    return st;
}

herd_status herd_tokenizer_load_hf_json(herd_tokenizer **out, const char *path, herd_error *err) {
    *out = NULL;
    char *text;
    size_t len;
    herd_status st = herd_read_file(path, &text, &len, err);
    if (st != HERD_OK) return st;
    cJSON *root = cJSON_ParseWithLength(text, len);
    if (!root) {
        const char *e = cJSON_GetErrorPtr();
        size_t line = 1;
        if (e && e >= text && e <= text + len)
            for (const char *p = text; p < e; p++) line += *p == '\n';
        st = herd_errf(err, HERD_ERR_FORMAT, "%s:%zu: invalid JSON; expected a Hugging Face tokenizer.json",
                       path, line);
    } else {
        st = hf_json_build(out, root, path, err);
        cJSON_Delete(root);
    }
    free(text);
    return st;
}

/* ---- GGUF ------------------------------------------------------------------------- */

herd_status herd_tokenizer_load_gguf(herd_tokenizer **out, const gguf_file *g, herd_error *err) {
    *out = NULL;
    const char *name = g->file.path ? g->file.path : "gguf";
    gguf_str model;
    herd_status st = gguf_get_str(g, "tokenizer.ggml.model", &model, err);
    if (st != HERD_OK) return st;
    if (model.len != 4 || memcmp(model.ptr, "gpt2", 4) != 0)
        return herd_errf(err, HERD_ERR_UNSUPPORTED, "%s: tokenizer.ggml.model is '%.*s'; herd supports only "
                         "'gpt2' (byte-level BPE, Llama 3)", name, (int)(model.len > 40 ? 40 : model.len),
                         model.ptr);
    const gguf_kv *tk = gguf_find(g, "tokenizer.ggml.tokens");
    if (!tk || tk->type != GGUF_T_ARRAY || tk->arr_type != GGUF_T_STRING || !tk->arr_strs)
        return herd_errf(err, HERD_ERR_FORMAT, "%s: tokenizer.ggml.tokens %s; expected an array of strings",
                         name, tk ? "has the wrong type" : "is missing");
    size_t n = (size_t)tk->arr_n;
    const gguf_kv *tt = gguf_find(g, "tokenizer.ggml.token_type");
    if (tt && (tt->type != GGUF_T_ARRAY || (tt->arr_type != GGUF_T_INT32 && tt->arr_type != GGUF_T_UINT32) ||
               tt->arr_n != n))
        return herd_errf(err, HERD_ERR_FORMAT, "%s: tokenizer.ggml.token_type: expected an int32 array of "
                         "%zu entries (one per token)", name, n);
    if (n < 256 + HERD_TOK_N_SPECIAL)
        return herd_errf(err, HERD_ERR_FORMAT, "%s: tokenizer.ggml.tokens has %zu entries; expected at least "
                         "512 (256 bytes + 256 specials)", name, n);
    /* Specials (control 3 / user-defined 4) are the last 256 tokens. */
    size_t n_bpe = n - HERD_TOK_N_SPECIAL;
    for (size_t i = 0; tt && i < n; i++) {
        int32_t ty;
        memcpy(&ty, (const char *)tt->arr_data + 4 * i, 4);
        int is_sp = ty == 3 || ty == 4;
        if (is_sp != (i >= n_bpe))
            return herd_errf(err, HERD_ERR_FORMAT, "%s: tokenizer.ggml.token_type[%zu] = %d; expected %s "
                             "(herd needs the 256 special tokens last, after %zu BPE tokens)", name, i, ty,
                             i >= n_bpe ? "3 (control)" : "1 (normal)", n_bpe);
    }
    herd_tok_str *tok = calloc(n, sizeof *tok);
    char *blob = malloc(n_bpe * (HERD_TOK_MAX_LEN + 1) + 1);
    if (!tok || !blob) {
        free(tok); free(blob);
        return herd_errf(err, HERD_ERR_NOMEM, "%s: out of memory", name);
    }
    size_t blob_n = 0;
    for (size_t i = 0; i < n; i++) {
        gguf_str s = tk->arr_strs[i];
        if (i >= n_bpe) { tok[i].ptr = s.ptr; tok[i].len = s.len; continue; }
        uint32_t bad = 0;
        long bl = s.len > 2 * HERD_TOK_MAX_LEN ? -1 : herd_bytelevel_to_bytes(s.ptr, s.len, blob + blob_n, &bad);
        if (bl <= 0 || bl > HERD_TOK_MAX_LEN) {
            st = herd_errf(err, HERD_ERR_FORMAT, "%s: tokenizer.ggml.tokens[%zu] '%.*s': %s", name, i,
                           (int)(s.len > 60 ? 60 : s.len), s.ptr,
                           bl < 0 && s.len <= 2 * HERD_TOK_MAX_LEN ? "not a GPT-2 byte-level string" :
                           "empty or too long");
            free(tok); free(blob);
            return st;
        }
        tok[i].ptr = blob + blob_n;
        tok[i].len = (size_t)bl;
        blob_n += (size_t)bl;
    }
    st = herd_tokenizer_build(out, tok, n_bpe, tok + n_bpe, name, NULL, err);
    free(tok);
    free(blob);
    return st;
}

/* ---- writers ------------------------------------------------------------------------ */

static herd_status open_tmp(const char *path, char **tmp, FILE **fp, herd_error *err) {
    size_t n = strlen(path) + 8;
    *tmp = malloc(n);
    if (!*tmp) return herd_errf(err, HERD_ERR_NOMEM, "out of memory");
    snprintf(*tmp, n, "%s.tmp", path);
    *fp = fopen(*tmp, "wb");
    if (!*fp) {
        herd_status st = herd_errf(err, HERD_ERR_IO, "cannot create '%s': %s", *tmp, strerror(errno));
        free(*tmp);
        return st;
    }
    return HERD_OK;
}

static herd_status close_tmp(const char *path, char *tmp, FILE *fp, herd_error *err) {
    int bad = ferror(fp);
    bad |= fclose(fp) != 0;
    herd_status st = HERD_OK;
    if (bad) st = herd_errf(err, HERD_ERR_IO, "error writing '%s': %s", tmp, strerror(errno));
    else if (rename(tmp, path) != 0)
        st = herd_errf(err, HERD_ERR_IO, "cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
    if (st != HERD_OK) remove(tmp);
    free(tmp);
    return st;
}

herd_status herd_tokenizer_write_tiktoken(const herd_tokenizer *t, const char *path, herd_error *err) {
    char *tmp;
    FILE *fp;
    herd_status st = open_tmp(path, &tmp, &fp, err);
    if (st != HERD_OK) return st;
    char b64[4 * HERD_TOK_MAX_LEN / 3 + 8];
    for (int32_t i = 0; i < herd_tokenizer_n_bpe(t); i++) {
        size_t n;
        const char *b = herd_token_bytes(t, i, &n);
        b64_encode(b, n, b64);
        fprintf(fp, "%s %d\n", b64, i);
    }
    return close_tmp(path, tmp, fp, err);
}

/* A JSON string literal of arbitrary bytes (invalid UTF-8 cannot occur here: the
 * byte-level form is ASCII + U+00A1..U+0143, specials are checked by the caller). */
static void json_str(FILE *fp, const char *s, size_t n) {
    fputc('"', fp);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') fprintf(fp, "\\%c", c);
        else if (c < 0x20) fprintf(fp, "\\u%04x", c);
        else fputc(c, fp);
    }
    fputc('"', fp);
}

/* Byte-level string of token id (buf >= 2*HERD_TOK_MAX_LEN+1). */
static size_t bytelevel_of(const herd_tokenizer *t, int32_t id, size_t from, size_t n, char *buf) {
    size_t len;
    const char *b = herd_token_bytes(t, id, &len);
    if (n > len - from) n = len - from;
    return herd_bytes_to_bytelevel(b + from, n, buf);
}

static const char PATTERN_JSON[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}{1,3}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*"
    "|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+";

herd_status herd_tokenizer_write_hf_json(const herd_tokenizer *t, const char *path, herd_error *err) {
    int n_bpe = herd_tokenizer_n_bpe(t);
    for (int k = 0; k < HERD_TOK_N_SPECIAL; k++) { /* specials come from files; JSON needs UTF-8 */
        size_t n;
        const char *s = herd_token_bytes(t, n_bpe + k, &n);
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)s[i] >= 0x80)
                return herd_errf(err, HERD_ERR_UNSUPPORTED, "write %s: special token %d has non-ASCII bytes; "
                                 "herd writes only ASCII special names", path, k);
    }
    char *tmp;
    FILE *fp;
    herd_status st = open_tmp(path, &tmp, &fp, err);
    if (st != HERD_OK) return st;
    char bos[64];
    size_t bos_n;
    const char *bp = herd_token_bytes(t, n_bpe + HERD_SP_BOS, &bos_n);
    snprintf(bos, sizeof bos, "%.*s", (int)bos_n, bp);
    fprintf(fp, "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": [");
    for (int k = 0; k < HERD_TOK_N_SPECIAL; k++) {
        size_t n;
        const char *s = herd_token_bytes(t, n_bpe + k, &n);
        fprintf(fp, "%s\n    {\"id\": %d, \"content\": ", k ? "," : "", n_bpe + k);
        json_str(fp, s, n);
        fprintf(fp, ", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, "
                    "\"normalized\": false, \"special\": true}");
    }
    fprintf(fp, "\n  ],\n  \"normalizer\": null,\n");
    fprintf(fp, "  \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [\n"
                "    {\"type\": \"Split\", \"pattern\": {\"Regex\": \"%s\"}, \"behavior\": \"Isolated\", \"invert\": false},\n"
                "    {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false}]},\n",
            PATTERN_JSON);
    fprintf(fp, "  \"post_processor\": {\"type\": \"TemplateProcessing\",\n"
                "    \"single\": [{\"SpecialToken\": {\"id\": ");
    json_str(fp, bos, strlen(bos));
    fprintf(fp, ", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}],\n"
                "    \"pair\": [{\"SpecialToken\": {\"id\": ");
    json_str(fp, bos, strlen(bos));
    fprintf(fp, ", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}, {\"SpecialToken\": {\"id\": ");
    json_str(fp, bos, strlen(bos));
    fprintf(fp, ", \"type_id\": 1}}, {\"Sequence\": {\"id\": \"B\", \"type_id\": 1}}],\n"
                "    \"special_tokens\": {");
    json_str(fp, bos, strlen(bos));
    fprintf(fp, ": {\"id\": ");
    json_str(fp, bos, strlen(bos));
    fprintf(fp, ", \"ids\": [%d], \"tokens\": [", n_bpe + HERD_SP_BOS);
    json_str(fp, bos, strlen(bos));
    fprintf(fp, "]}}},\n");
    fprintf(fp, "  \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, "
                "\"use_regex\": true},\n");
    fprintf(fp, "  \"model\": {\"type\": \"BPE\", \"dropout\": null, \"unk_token\": null, "
                "\"continuing_subword_prefix\": null, \"end_of_word_suffix\": null, \"fuse_unk\": false, "
                "\"byte_fallback\": false, \"ignore_merges\": true,\n    \"vocab\": {");
    char a[2 * HERD_TOK_MAX_LEN + 1], b[2 * HERD_TOK_MAX_LEN + 1];
    for (int32_t i = 0; i < n_bpe; i++) {
        size_t n = bytelevel_of(t, i, 0, HERD_TOK_MAX_LEN, a);
        fprintf(fp, "%s\n      ", i ? "," : "");
        json_str(fp, a, n);
        fprintf(fp, ": %d", i);
    }
    fprintf(fp, "\n    },\n    \"merges\": [");
    int first = 1;
    size_t left[HERD_TOK_MAX_LEN];
    for (int32_t i = 0; i < n_bpe; i++) {
        size_t n_m = herd_tokenizer_merges(t, i, left);
        for (size_t k = 0; k < n_m; k++) {
            size_t na = bytelevel_of(t, i, 0, left[k], a);
            size_t nb = bytelevel_of(t, i, left[k], HERD_TOK_MAX_LEN, b);
            char m[4 * HERD_TOK_MAX_LEN + 2];
            memcpy(m, a, na);
            m[na] = ' ';
            memcpy(m + na + 1, b, nb);
            fprintf(fp, "%s\n      ", first ? "" : ",");
            first = 0;
            json_str(fp, m, na + 1 + nb);
        }
    }
    fprintf(fp, "\n    ]\n  }\n}\n");
    return close_tmp(path, tmp, fp, err);
}

void herd_tokenizer_write_gguf_kv(const herd_tokenizer *t, gguf_writer *w) {
    int n_bpe = herd_tokenizer_n_bpe(t), n = herd_tokenizer_n_vocab(t);
    size_t left[HERD_TOK_MAX_LEN], n_merges = 0, cap_merges = (size_t)n;
    char *strs = malloc((size_t)n * (2 * HERD_TOK_MAX_LEN + 1));
    const char **ptrs = malloc((size_t)n * sizeof *ptrs);
    size_t *lens = malloc((size_t)n * sizeof *lens);
    int32_t *types = malloc((size_t)n * sizeof *types);
    char **merges = malloc(cap_merges * sizeof *merges);
    size_t *mlens = malloc(cap_merges * sizeof *mlens);
    int ok = strs && ptrs && lens && types && merges && mlens;
    for (int i = 0; ok && i < n; i++) {
        char *s = strs + (size_t)i * (2 * HERD_TOK_MAX_LEN + 1);
        ptrs[i] = s;
        if (i < n_bpe) lens[i] = bytelevel_of(t, i, 0, HERD_TOK_MAX_LEN, s);
        else {
            const char *sp = herd_token_bytes(t, i, &lens[i]);
            memcpy(s, sp, lens[i]);
        }
        types[i] = i < n_bpe ? 1 : 3;
        size_t n_m = i < n_bpe ? herd_tokenizer_merges(t, i, left) : 0;
        for (size_t k = 0; ok && k < n_m; k++) {
            if (n_merges == cap_merges) {
                cap_merges *= 2;
                char **m2 = realloc(merges, cap_merges * sizeof *m2);
                if (m2) merges = m2;
                size_t *l2 = realloc(mlens, cap_merges * sizeof *l2);
                if (l2) mlens = l2;
                if (!m2 || !l2) { ok = 0; break; }
            }
            char *m = malloc(4 * HERD_TOK_MAX_LEN + 2);
            if (!m) { ok = 0; break; }
            size_t na = bytelevel_of(t, i, 0, left[k], m);
            m[na] = ' ';
            size_t nb = bytelevel_of(t, i, left[k], HERD_TOK_MAX_LEN, m + na + 1);
            merges[n_merges] = m;
            mlens[n_merges++] = na + 1 + nb;
        }
    }
    /* gguf_writer has no error channel; on out-of-memory the keys are left out and
     * the loader will report tokenizer.ggml.tokens missing. */
    if (ok) {
        gguf_writer_add_str(w, "tokenizer.ggml.model", "gpt2");
        gguf_writer_add_str(w, "tokenizer.ggml.pre", "llama-bpe");
        gguf_writer_add_str_array(w, "tokenizer.ggml.tokens", ptrs, lens, (size_t)n);
        gguf_writer_add_i32_array(w, "tokenizer.ggml.token_type", types, (size_t)n);
        gguf_writer_add_str_array(w, "tokenizer.ggml.merges", (const char *const *)merges, mlens, n_merges);
        gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)(n_bpe + HERD_SP_BOS));
        gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)(n_bpe + HERD_SP_EOS));
        gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", 1);
    }
    for (size_t i = 0; i < n_merges; i++) free(merges[i]);
    free(strs); free(ptrs); free(lens); free(types); free(merges); free(mlens);
}

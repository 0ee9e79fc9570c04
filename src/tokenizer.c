/* tokenizer.c - the Llama 3 tokenizer: tiktoken byte-pair encoding with Meta's
 * pre-tokenizer regex, 256 special tokens after the BPE ranks, and a streaming
 * UTF-8 detokenizer. Loading and writing files is in tokenizer_io.c.
 *
 * Encoding, as Meta's models/llama3/tokenizer.py + tiktoken:
 *   1. special=1: exact special-token texts ("<|eot_id|>") become their ids; the text
 *      between them goes through steps 2-5. special=0: they are plain text.
 *   2. Invalid UTF-8 (herd's choice; Python str cannot hold it, so Meta has none):
 *      the input is cut into maximal valid UTF-8 runs, and every byte that does not
 *      start a valid sequence becomes one piece of its own (its single-byte token).
 *      Valid input is never affected. Nothing is dropped, nothing crashes.
 *   3. Meta's chunking: 400,000-code-point chunks, then slices with at most 25,000
 *      consecutive whitespace (Python str.isspace) or non-whitespace code points.
 *      (Meta chunks before finding specials; herd after, so with special=1 a run of
 *      over 25,000 chars that contains special text may split elsewhere. special=0,
 *      Meta's default, is exact.)
 *   4. PCRE2 (UTF + UCP, JIT when available) runs Meta's regex over each slice.
 *   5. Each regex piece that is itself a token maps directly; otherwise the adjacent
 *      pair whose concatenation has the lowest rank is merged, leftmost first, until
 *      no pair is a token. A linked list + binary min-heap keyed (rank, offset) keeps
 *      that O(n log n) for long pieces.
 *
 * Ids: BPE token id == rank (0..n_bpe-1); specials are n_bpe..n_bpe+255.
 * A tokenizer is immutable after construction; all calls on it are thread-safe
 * (per-call scratch, shared compiled regex).
 * herd_tokenizer_split runs steps 2-4 only and hands each piece to a callback
 * (BPE training in bpe_train.c counts them).
 * Not here: training, normalizers, other models' pre-tokenizers.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer_impl.h"

#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

static const char LLAMA3_PATTERN[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

#define MAX_ENCODE_CHARS 400000     /* Meta: TIKTOKEN_MAX_ENCODE_CHARS */
#define MAX_NO_WHITESPACE_CHARS 25000 /* Meta: MAX_NO_WHITESPACES_CHARS */

/* Open-addressing hash table from byte strings to ids (linear probing, -1 empty). */
typedef struct {
    int32_t *slots;
    size_t mask;
} tok_table;

struct herd_tokenizer {
    int n_bpe;
    int n_vocab;          /* n_bpe + 256 */
    char *blob;           /* all token bytes, BPE then specials */
    size_t *off;          /* (n_vocab) */
    uint32_t *len;        /* (n_vocab) */
    tok_table bpe;        /* BPE bytes -> rank */
    tok_table special;    /* special text -> id */
    size_t max_special_len;
    pcre2_code *re;
};

/* ---- hash table -------------------------------------------------------------- */

static uint64_t hash_bytes(const char *p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)p[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

static int table_init(tok_table *tb, size_t n) {
    size_t cap = 16;
    while (cap < 2 * n + 1) cap *= 2;
    tb->slots = malloc(cap * sizeof *tb->slots);
    if (!tb->slots) return 0;
    memset(tb->slots, 0xff, cap * sizeof *tb->slots);
    tb->mask = cap - 1;
    return 1;
}

/* Returns the id stored for bytes, or -1. */
static int32_t table_get(const herd_tokenizer *t, const tok_table *tb, const char *p, size_t n) {
    size_t i = hash_bytes(p, n) & tb->mask;
    for (;;) {
        int32_t id = tb->slots[i];
        if (id < 0) return -1;
        if (t->len[id] == n && memcmp(t->blob + t->off[id], p, n) == 0) return id;
        i = (i + 1) & tb->mask;
    }
}

/* Inserts id; returns the id already holding the same bytes, or -1 when new. */
static int32_t table_put(const herd_tokenizer *t, tok_table *tb, int32_t id) {
    const char *p = t->blob + t->off[id];
    size_t n = t->len[id];
    size_t i = hash_bytes(p, n) & tb->mask;
    for (;;) {
        int32_t o = tb->slots[i];
        if (o < 0) { tb->slots[i] = id; return -1; }
        if (t->len[o] == n && memcmp(t->blob + t->off[o], p, n) == 0) return o;
        i = (i + 1) & tb->mask;
    }
}

/* ---- construction ------------------------------------------------------------ */

const char *herd_tokenizer_default_special(int k, char *buf, size_t cap) {
    static const char *const named[] = {
        "<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
        "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>",
        "<|reserved_special_token_2|>", "<|start_header_id|>", "<|end_header_id|>",
        "<|eom_id|>", "<|eot_id|>", "<|python_tag|>",
    };
    if (k < 11) snprintf(buf, cap, "%s", named[k]);
    else snprintf(buf, cap, "<|reserved_special_token_%d|>", k - 8);
    return buf;
}

void herd_tokenizer_free(herd_tokenizer *t) {
    if (!t) return;
    free(t->blob);
    free(t->off);
    free(t->len);
    free(t->bpe.slots);
    free(t->special.slots);
    if (t->re) pcre2_code_free(t->re);
    free(t);
}

static herd_status compile_regex(herd_tokenizer *t, herd_error *err) {
    int ec;
    PCRE2_SIZE eo;
    t->re = pcre2_compile((PCRE2_SPTR)LLAMA3_PATTERN, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP,
                          &ec, &eo, NULL);
    if (!t->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof msg);
        return herd_errf(err, HERD_ERR_UNSUPPORTED,
                         "tokenizer: PCRE2 cannot compile Meta's pre-tokenizer regex at offset %zu: %s; "
                         "hint: herd needs PCRE2 built with Unicode support", (size_t)eo, (char *)msg);
    }
    pcre2_jit_compile(t->re, PCRE2_JIT_COMPLETE); /* optional: falls back to the interpreter */
    return HERD_OK;
}

static const char *where(const char *src, const size_t *lines, size_t i, char *buf, size_t cap) {
    if (lines) snprintf(buf, cap, "%s:%zu", src, lines[i]);
    else snprintf(buf, cap, "%s: token %zu", src, i);
    return buf;
}

herd_status herd_tokenizer_build(herd_tokenizer **out, const herd_tok_str *bpe, size_t n_bpe,
                                 const herd_tok_str *specials, const char *src,
                                 const size_t *lines, herd_error *err) {
    *out = NULL;
    if (!src) src = "tokenizer";
    if (n_bpe < 256 || n_bpe > (size_t)INT32_MAX - HERD_TOK_N_SPECIAL)
        return herd_errf(err, HERD_ERR_FORMAT,
                         "%s: %zu BPE tokens; expected 256 to %d (byte-level BPE has all 256 bytes)",
                         src, n_bpe, INT32_MAX - HERD_TOK_N_SPECIAL);
    herd_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return herd_errf(err, HERD_ERR_NOMEM, "%s: out of memory", src);
    t->n_bpe = (int)n_bpe;
    t->n_vocab = (int)n_bpe + HERD_TOK_N_SPECIAL;
    char names[HERD_TOK_N_SPECIAL][40];
    herd_tok_str sp[HERD_TOK_N_SPECIAL];
    for (int k = 0; k < HERD_TOK_N_SPECIAL; k++) {
        if (specials) sp[k] = specials[k];
        else {
            sp[k].ptr = herd_tokenizer_default_special(k, names[k], sizeof names[k]);
            sp[k].len = strlen(sp[k].ptr);
        }
    }
    size_t total = 0;
    char wb[1200];
    for (size_t i = 0; i < (size_t)t->n_vocab; i++) {
        const herd_tok_str *s = i < n_bpe ? &bpe[i] : &sp[i - n_bpe];
        if (s->len == 0 || s->len > HERD_TOK_MAX_LEN) {
            herd_tokenizer_free(t);
            if (i >= n_bpe)
                return herd_errf(err, HERD_ERR_FORMAT, "%s: special token %zu (id %zu) has %zu bytes; "
                                 "expected 1 to %d", src, i - n_bpe, i, s->len, HERD_TOK_MAX_LEN);
            return herd_errf(err, HERD_ERR_FORMAT, "%s (id %zu): token has %zu bytes; expected 1 to %d",
                             where(src, lines, i, wb, sizeof wb), i, s->len, HERD_TOK_MAX_LEN);
        }
        total += s->len + 1;
    }
    t->blob = malloc(total);
    t->off = malloc((size_t)t->n_vocab * sizeof *t->off);
    t->len = malloc((size_t)t->n_vocab * sizeof *t->len);
    if (!t->blob || !t->off || !t->len || !table_init(&t->bpe, n_bpe) ||
        !table_init(&t->special, HERD_TOK_N_SPECIAL)) {
        herd_tokenizer_free(t);
        return herd_errf(err, HERD_ERR_NOMEM, "%s: out of memory for %zu tokens", src, n_bpe);
    }
    size_t pos = 0;
    for (size_t i = 0; i < (size_t)t->n_vocab; i++) {
        const herd_tok_str *s = i < n_bpe ? &bpe[i] : &sp[i - n_bpe];
        memcpy(t->blob + pos, s->ptr, s->len);
        t->blob[pos + s->len] = 0;
        t->off[i] = pos;
        t->len[i] = (uint32_t)s->len;
        pos += s->len + 1;
        if (i >= n_bpe && s->len > t->max_special_len) t->max_special_len = s->len;
    }
    for (size_t i = 0; i < n_bpe; i++) {
        int32_t o = table_put(t, &t->bpe, (int32_t)i);
        if (o >= 0) {
            char wa[600];
            herd_status st = herd_errf(err, HERD_ERR_FORMAT,
                "%s (id %zu): duplicate token, same bytes as %s (id %d); expected every token once",
                where(src, lines, i, wb, sizeof wb), i, where(src, lines, (size_t)o, wa, sizeof wa), o);
            herd_tokenizer_free(t);
            return st;
        }
    }
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        if (table_get(t, &t->bpe, &c, 1) < 0) {
            herd_tokenizer_free(t);
            return herd_errf(err, HERD_ERR_FORMAT, "%s: no token for the single byte 0x%02x; expected "
                             "all 256 bytes in a byte-level BPE vocabulary", src, b);
        }
    }
    for (int k = 0; k < HERD_TOK_N_SPECIAL; k++) {
        int32_t o = table_put(t, &t->special, t->n_bpe + k);
        if (o >= 0) { /* the message reads t: written before t is freed */
            herd_status st = herd_errf(err, HERD_ERR_FORMAT, "%s: special token %d '%.*s' duplicates special %d",
                                       src, k, (int)sp[k].len, sp[k].ptr, o - t->n_bpe);
            herd_tokenizer_free(t);
            return st;
        }
    }
    herd_status st = compile_regex(t, err);
    if (st != HERD_OK) { herd_tokenizer_free(t); return st; }
    *out = t;
    return HERD_OK;
}

herd_status herd_tokenizer_from_tokens(herd_tokenizer **out, const char *const *tokens,
                                       const size_t *lens, size_t n_tokens, herd_error *err) {
    *out = NULL;
    if (n_tokens > (size_t)INT32_MAX - 512 || (n_tokens && (!tokens || !lens)))
        return herd_errf(err, HERD_ERR_ARG, "tokenizer: bad token list (%zu tokens)", n_tokens);
    herd_tok_str *v = malloc((256 + n_tokens) * sizeof *v);
    char *bytes = malloc(256);
    if (!v || !bytes) {
        free(v); free(bytes);
        return herd_errf(err, HERD_ERR_NOMEM, "tokenizer: out of memory");
    }
    for (int b = 0; b < 256; b++) {
        bytes[b] = (char)b;
        v[b].ptr = bytes + b;
        v[b].len = 1;
    }
    for (size_t i = 0; i < n_tokens; i++) {
        v[256 + i].ptr = tokens[i];
        v[256 + i].len = lens[i];
    }
    herd_status st = herd_tokenizer_build(out, v, 256 + n_tokens, NULL, "token list", NULL, err);
    free(v);
    free(bytes);
    return st;
}

int herd_tokenizer_n_bpe(const herd_tokenizer *t) { return t->n_bpe; }
int herd_tokenizer_n_vocab(const herd_tokenizer *t) { return t->n_vocab; }

const char *herd_token_bytes(const herd_tokenizer *t, int32_t id, size_t *len) {
    if (!t || id < 0 || id >= t->n_vocab) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = t->len[id];
    return t->blob + t->off[id];
}

int32_t herd_tokenizer_special_id(const herd_tokenizer *t, const char *text) {
    if (!t || !text) return -1;
    return table_get(t, &t->special, text, strlen(text));
}

/* ---- per-call encoder state ---------------------------------------------------- */

typedef struct {
    const herd_tokenizer *t;
    int32_t *ids;
    size_t n_ids, cap_ids;
    /* BPE scratch, grown to the longest piece */
    size_t cap_bpe;
    int32_t *next, *prev, *rank;
    uint64_t *heap;
    size_t n_heap;
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jstack;
    herd_error *err;
    /* herd_tokenizer_split: each pre-tokenizer piece goes here instead of to BPE */
    herd_piece_fn piece_fn;
    void *piece_ctx;
} enc;

static int push_id(enc *e, int32_t id) {
    if (e->n_ids == e->cap_ids) {
        size_t cap = e->cap_ids ? 2 * e->cap_ids : 64;
        int32_t *p = realloc(e->ids, cap * sizeof *p);
        if (!p) return 0;
        e->ids = p;
        e->cap_ids = cap;
    }
    e->ids[e->n_ids++] = id;
    return 1;
}

static int grow_bpe(enc *e, size_t n) {
    if (n <= e->cap_bpe) return 1;
    size_t cap = n < 256 ? 256 : n;
    int32_t *a = realloc(e->next, cap * sizeof *a);
    if (a) e->next = a;
    int32_t *b = realloc(e->prev, cap * sizeof *b);
    if (b) e->prev = b;
    int32_t *c = realloc(e->rank, cap * sizeof *c);
    if (c) e->rank = c;
    uint64_t *h = realloc(e->heap, cap * sizeof *h);
    if (h) e->heap = h;
    if (!a || !b || !c || !h) return 0;
    e->cap_bpe = cap;
    return 1;
}

static void heap_push(enc *e, uint64_t key) {
    size_t i = e->n_heap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (e->heap[p] <= key) break;
        e->heap[i] = e->heap[p];
        i = p;
    }
    e->heap[i] = key;
}

static uint64_t heap_pop(enc *e) {
    uint64_t top = e->heap[0], last = e->heap[--e->n_heap];
    size_t i = 0, n = e->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && e->heap[c + 1] < e->heap[c]) c++;
        if (e->heap[c] >= last) break;
        e->heap[i] = e->heap[c];
        i = c;
    }
    if (n) e->heap[i] = last;
    return top;
}

/* Rank of the pair starting at node i (bytes from i to the end of the node after
 * next), or -1 when there is no next node or the pair is not a token. */
static int32_t pair_rank(enc *e, const char *p, size_t n, int32_t i) {
    int32_t j = e->next[i];
    if ((size_t)j >= n) return -1;
    return table_get(e->t, &e->t->bpe, p + i, (size_t)(e->next[j] - i));
}

static void set_rank(enc *e, const char *p, size_t n, int32_t i) {
    e->rank[i] = pair_rank(e, p, n, i);
    if (e->rank[i] >= 0) heap_push(e, ((uint64_t)e->rank[i] << 32) | (uint32_t)i);
}

/* Byte-pair merges on p[0..n). Afterwards the parts are the
 * nodes reachable from 0 by next[] (node i covers p[i .. next[i])). */
static int bpe_merge(enc *e, const char *p, size_t n) {
    if (!grow_bpe(e, n)) return 0;
    e->n_heap = 0;
    for (size_t i = 0; i < n; i++) {
        e->next[i] = (int32_t)i + 1;
        e->prev[i] = (int32_t)i - 1;
    }
    for (size_t i = 0; i + 1 < n; i++) set_rank(e, p, n, (int32_t)i);
    while (e->n_heap) {
        uint64_t key = heap_pop(e);
        int32_t i = (int32_t)(uint32_t)key, r = (int32_t)(key >> 32);
        if (e->rank[i] != r) continue; /* stale: node merged away or its pair changed */
        int32_t j = e->next[i], k = e->next[j];
        e->next[i] = k;
        if ((size_t)k < n) e->prev[k] = i;
        e->rank[j] = -1;
        set_rank(e, p, n, i);
        if (e->prev[i] >= 0) set_rank(e, p, n, e->prev[i]);
    }
    return 1;
}

static int encode_piece(enc *e, const char *p, size_t n) {
    const herd_tokenizer *t = e->t;
    if (e->piece_fn) return e->piece_fn(e->piece_ctx, p, n);
    int32_t id = table_get(t, &t->bpe, p, n);
    if (id >= 0) return push_id(e, id);
    if (!bpe_merge(e, p, n)) return 0;
    for (int32_t i = 0; (size_t)i < n; i = e->next[i]) {
        id = table_get(t, &t->bpe, p + i, (size_t)(e->next[i] - i));
        if (id < 0 || !push_id(e, id)) return 0; /* id < 0 impossible: every part is a token */
    }
    return 1;
}

size_t herd_tokenizer_merges(const herd_tokenizer *t, int32_t id, size_t *left_len) {
    if (id < 0 || id >= t->n_bpe) return 0;
    const char *p = t->blob + t->off[id];
    size_t n = t->len[id], k = 0;
    int32_t rl[HERD_TOK_MAX_LEN], rr[HERD_TOK_MAX_LEN];
    for (size_t i = 1; i < n; i++) {
        int32_t a = table_get(t, &t->bpe, p, i), b = table_get(t, &t->bpe, p + i, n - i);
        if (a < 0 || b < 0) continue;
        size_t j = k++; /* insertion sort by (rank of left, rank of right) */
        while (j > 0 && (rl[j - 1] > a || (rl[j - 1] == a && rr[j - 1] > b))) {
            rl[j] = rl[j - 1]; rr[j] = rr[j - 1]; left_len[j] = left_len[j - 1];
            j--;
        }
        rl[j] = a; rr[j] = b; left_len[j] = i;
    }
    return k;
}

/* ---- UTF-8 helpers --------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at p (RFC 3629: no overlongs, no surrogates,
 * at most U+10FFFF), 0 if invalid or truncated. *cp receives the code point. */
static size_t utf8_seq(const uint8_t *p, size_t n, uint32_t *cp) {
    uint8_t c = p[0];
    if (c < 0x80) { *cp = c; return 1; }
    size_t len;
    uint8_t lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) len = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0) lo = 0xa0;
        if (c == 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0) lo = 0x90;
        if (c == 0xf4) hi = 0x8f;
    } else return 0;
    if (n < len) return 0;
    if (p[1] < lo || p[1] > hi) return 0;
    uint32_t v = c & (0x7f >> len);
    v = (v << 6) | (p[1] & 0x3f);
    for (size_t i = 2; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80) return 0;
        v = (v << 6) | (p[i] & 0x3f);
    }
    *cp = v;
    return len;
}

/* Python's str.isspace, which Meta's chunking uses. */
static int py_isspace(uint32_t c) {
    return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 ||
           c == 0x202f || c == 0x205f || c == 0x3000;
}

/* ---- pre-tokenizer ----------------------------------------------------------------- */

/* Runs the regex over a valid UTF-8 slice and encodes every match. */
static herd_status encode_regex(enc *e, const char *s, size_t n) {
    size_t off = 0;
    while (off < n) {
        int rc = pcre2_match(e->t->re, (PCRE2_SPTR)s, n, off, PCRE2_NO_UTF_CHECK, e->md, e->mctx);
        if (rc < 0 && rc != PCRE2_ERROR_NOMATCH) /* e.g. JIT stack exhausted: interpreter */
            rc = pcre2_match(e->t->re, (PCRE2_SPTR)s, n, off, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT,
                             e->md, e->mctx);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return herd_errf(e->err, HERD_ERR_UNSUPPORTED, "tokenize: pre-tokenizer regex failed at "
                             "byte %zu of a %zu-byte slice: %s", off, n, (char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md);
        size_t a = ov[0], b = ov[1];
        /* Every code point is a letter, number, space or other, so matches tile the
         * text; a gap would be a bug, but its bytes are still encoded, not dropped. */
        if (a > off && !encode_piece(e, s + off, a - off)) goto oom;
        if (b == a) { /* cannot happen (no alternative matches empty); step one char */
            uint32_t cp;
            size_t l = utf8_seq((const uint8_t *)s + a, n - a, &cp);
            b = a + (l ? l : 1);
        }
        if (!encode_piece(e, s + a, b - a)) goto oom;
        off = b;
    }
    if (off < n && !encode_piece(e, s + off, n - off)) goto oom;
    return HERD_OK;
oom:
    return herd_errf(e->err, HERD_ERR_NOMEM, "tokenize: out of memory");
}

/* Meta's _split_whitespaces_or_nonwhitespaces over one chunk of valid UTF-8. */
static herd_status encode_slices(enc *e, const char *s, size_t n) {
    if (n == 0) return HERD_OK;
    uint32_t cp;
    utf8_seq((const uint8_t *)s, n, &cp);
    int cur_space = py_isspace(cp);
    size_t cur_len = 0, start = 0;
    for (size_t i = 0; i < n;) {
        size_t l = utf8_seq((const uint8_t *)s + i, n - i, &cp);
        if (!l) l = 1; /* unreachable: the caller validated */
        int sp = py_isspace(cp);
        if (sp != cur_space) {
            cur_len = 1;
            cur_space = sp;
        } else if (++cur_len > MAX_NO_WHITESPACE_CHARS) {
            herd_status st = encode_regex(e, s + start, i - start);
            if (st) return st;
            start = i;
            cur_len = 1;
        }
        i += l;
    }
    return encode_regex(e, s + start, n - start);
}

/* Text without special tokens: valid UTF-8 runs in 400,000-code-point chunks;
 * each invalid byte on its own. */
static herd_status encode_plain(enc *e, const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        size_t start = i, n_cp = 0;
        uint32_t cp;
        size_t l = 0;
        while (i < n && (l = utf8_seq((const uint8_t *)s + i, n - i, &cp)) != 0) {
            i += l;
            if (++n_cp == MAX_ENCODE_CHARS) break;
        }
        if (i > start) {
            herd_status st = encode_slices(e, s + start, i - start);
            if (st) return st;
        }
        if (i < n && l == 0) {
            char c = s[i++];
            if (e->piece_fn ? !e->piece_fn(e->piece_ctx, &c, 1)
                            : !push_id(e, table_get(e->t, &e->t->bpe, &c, 1)))
                return herd_errf(e->err, HERD_ERR_NOMEM, "tokenize: out of memory");
        }
    }
    return HERD_OK;
}

static herd_status encode_special(enc *e, const char *s, size_t n) {
    const herd_tokenizer *t = e->t;
    size_t start = 0, i = 0;
    while (i + 1 < n) {
        const char *p = memchr(s + i, '<', n - i - 1);
        if (!p) break;
        i = (size_t)(p - s);
        if (s[i + 1] != '|') { i++; continue; }
        /* Every special is "<|name|>" with no '|' in name, so at most one candidate
         * starts here: up to the first "|>". */
        size_t lim = t->max_special_len < n - i ? t->max_special_len : n - i;
        const char *q = NULL;
        for (size_t k = 2; k + 1 < lim; k++)
            if (s[i + k] == '|' && s[i + k + 1] == '>') { q = s + i + k + 2; break; }
        int32_t id = q ? table_get(t, &t->special, s + i, (size_t)(q - (s + i))) : -1;
        if (id < 0) { i++; continue; }
        herd_status st = encode_plain(e, s + start, i - start);
        if (st) return st;
        if (!push_id(e, id)) return herd_errf(e->err, HERD_ERR_NOMEM, "tokenize: out of memory");
        i = start = (size_t)(q - s);
    }
    return encode_plain(e, s + start, n - start);
}

/* Per-call PCRE2 state; enc_close frees it and the BPE scratch (not e->ids). */
static herd_status enc_open(enc *e) {
    e->md = pcre2_match_data_create_from_pattern(e->t->re, NULL);
    e->mctx = pcre2_match_context_create(NULL);
    /* The JIT's default 32 KiB stack is too small for \s+(?!\S) over 25,000 spaces. */
    e->jstack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, NULL);
    if (!e->md || !e->mctx || !e->jstack)
        return herd_errf(e->err, HERD_ERR_NOMEM, "tokenize: out of memory");
    pcre2_jit_stack_assign(e->mctx, NULL, e->jstack);
    return HERD_OK;
}

static void enc_close(enc *e) {
    if (e->md) pcre2_match_data_free(e->md);
    if (e->mctx) pcre2_match_context_free(e->mctx);
    if (e->jstack) pcre2_jit_stack_free(e->jstack);
    free(e->next); free(e->prev); free(e->rank); free(e->heap);
}

herd_status herd_tokenizer_split(const herd_tokenizer *t, const char *text, size_t len,
                                 herd_piece_fn fn, void *ctx, herd_error *err) {
    if (!t || !fn || (!text && len))
        return herd_errf(err, HERD_ERR_ARG, "tokenize: NULL tokenizer, text or callback");
    enc e = { .t = t, .err = err, .piece_fn = fn, .piece_ctx = ctx };
    herd_status st = enc_open(&e);
    if (st == HERD_OK) st = encode_plain(&e, text, len);
    enc_close(&e);
    return st;
}

herd_status herd_tokenize(const herd_tokenizer *t, const char *text, size_t len, int bos,
                          int special, int32_t **ids, size_t *n_ids, herd_error *err) {
    if (ids) *ids = NULL;
    if (n_ids) *n_ids = 0;
    if (!t || !ids || !n_ids || (!text && len))
        return herd_errf(err, HERD_ERR_ARG, "tokenize: NULL tokenizer, text or output");
    enc e = { .t = t, .err = err };
    herd_status st = enc_open(&e);
    if (st) goto done;
    if (bos && !push_id(&e, t->n_bpe + HERD_SP_BOS)) {
        st = herd_errf(err, HERD_ERR_NOMEM, "tokenize: out of memory");
        goto done;
    }
    st = special ? encode_special(&e, text, len) : encode_plain(&e, text, len);
done:
    enc_close(&e);
    if (st != HERD_OK) {
        free(e.ids);
        return st;
    }
    if (!e.ids) e.ids = malloc(sizeof(int32_t)); /* callers may free a zero-length result */
    *ids = e.ids;
    *n_ids = e.n_ids;
    return HERD_OK;
}

/* ---- streaming detokenizer ---------------------------------------------------------- */

void herd_detok_init(herd_detok *d) { memset(d, 0, sizeof *d); }

static size_t put_fffd(char *o, size_t k) {
    o[k] = (char)0xef; o[k + 1] = (char)0xbf; o[k + 2] = (char)0xbd;
    return k + 3;
}

/* Decodes pending + bytes into d->out: complete sequences are copied, each maximal
 * invalid subpart becomes one U+FFFD (as Python's errors="replace"), and a valid
 * but incomplete tail stays pending unless final. */
static const char *detok_run(herd_detok *d, const char *bytes, size_t n, int final, size_t *len) {
    uint8_t buf[3 + HERD_TOK_MAX_LEN];
    size_t m = 0, k = 0;
    for (int i = 0; i < d->n_pending && i < 3; i++) buf[m++] = (uint8_t)d->pending[i];
    if (n > HERD_TOK_MAX_LEN) n = HERD_TOK_MAX_LEN; /* cannot happen: the loaders cap token length */
    memcpy(buf + m, bytes, n);
    m += n;
    d->n_pending = 0;
    size_t i = 0;
    while (i < m) {
        uint32_t cp;
        size_t l = utf8_seq(buf + i, m - i, &cp);
        if (l) {
            memcpy(d->out + k, buf + i, l);
            k += l;
            i += l;
            continue;
        }
        /* invalid or truncated: how many bytes form a valid prefix? */
        uint8_t c = buf[i];
        size_t want = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
        size_t ok = 1;
        if (want) {
            uint8_t lo = 0x80, hi = 0xbf;
            if (c == 0xe0) lo = 0xa0;
            if (c == 0xed) hi = 0x9f;
            if (c == 0xf0) lo = 0x90;
            if (c == 0xf4) hi = 0x8f;
            while (i + ok < m && ok < want) {
                uint8_t x = buf[i + ok];
                if (ok == 1 ? (x < lo || x > hi) : (x & 0xc0) != 0x80) break;
                ok++;
            }
            if (i + ok == m && ok < want && !final) { /* incomplete so far: wait for more */
                for (size_t j = 0; j < ok; j++) d->pending[j] = (char)buf[i + j];
                d->n_pending = (int)ok;
                break;
            }
        }
        k = put_fffd(d->out, k);
        i += ok;
    }
    d->out[k] = 0;
    *len = k;
    return d->out;
}

const char *herd_detok_push(herd_detok *d, const herd_tokenizer *t, int32_t id, size_t *len) {
    size_t n = 0;
    const char *b = herd_token_bytes(t, id, &n);
    if (!b) {
        if (len) *len = 0;
        d->out[0] = 0;
        return d->out;
    }
    size_t l;
    const char *r = detok_run(d, b, n, 0, &l);
    if (len) *len = l;
    return r;
}

const char *herd_detok_flush(herd_detok *d, size_t *len) {
    size_t l;
    const char *r = detok_run(d, "", 0, 1, &l);
    if (len) *len = l;
    return r;
}

/* ---- GPT-2 byte-level mapping -------------------------------------------------------- */

/* bytes_to_unicode(): printable Latin-1 bytes map to themselves, the other 68 to
 * U+0100.. in byte order. */
static uint32_t byte_to_cp(uint8_t b) {
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) return b;
    uint32_t k = b <= 32 ? b : b <= 160 ? (uint32_t)b - 127 + 33 : 33 + 34; /* 0..32, 127..160, 173 */
    return 256 + k;
}

size_t herd_bytes_to_bytelevel(const char *bytes, size_t n, char *out) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t cp = byte_to_cp((uint8_t)bytes[i]);
        if (cp < 0x80) out[k++] = (char)cp;
        else {
            out[k++] = (char)(0xc0 | (cp >> 6));
            out[k++] = (char)(0x80 | (cp & 0x3f));
        }
    }
    out[k] = 0;
    return k;
}

static int cp_to_byte(uint32_t cp) {
    if (cp < 256) return byte_to_cp((uint8_t)cp) == cp ? (int)cp : -1;
    if (cp >= 256 + 68) return -1;
    uint32_t k = cp - 256;
    return k <= 32 ? (int)k : k <= 66 ? (int)(k - 33 + 127) : 173;
}

long herd_bytelevel_to_bytes(const char *s, size_t n, char *out, uint32_t *bad_cp) {
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t l = utf8_seq((const uint8_t *)s + i, n - i, &cp);
        if (!l) { *bad_cp = 0xfffd; return -1; }
        int b = cp_to_byte(cp);
        if (b < 0) { *bad_cp = cp; return -1; }
        out[k++] = (char)b;
        i += l;
    }
    return (long)k;
}

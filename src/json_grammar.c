/* json_grammar.c - constrained output: the tokens that keep a model's text valid
 * JSON, optionally JSON that a JSON Schema accepts (OpenAI's response_format
 * json_object / json_schema), or one of a list of texts (vLLM's guided_choice).
 *
 * A schema compiles into a graph of nodes (object, array, string, number,
 * integer, literals, anyOf, any); a sequence's place in it is a set of stacks of
 * frames, one frame per open value, advanced one byte at a time. A set, because
 * anyOf and enum alternatives can agree on a prefix (anyOf [string, null] decides
 * on the first byte, enum [1, 12] only on the byte after the 1): each stack is one
 * reading, and a byte that no stack accepts is not allowed. A token is allowed
 * when all its bytes are; an end token when the value is complete; other special
 * tokens never.
 *
 * What it enforces: type (and lists of types), properties in the schema's order
 * (optional ones may be left out, required ones may not; no other keys), required,
 * additionalProperties (without properties: false allows only {}, a schema types
 * every value), items, minItems, maxItems, minLength, maxLength (characters),
 * enum, const, anyOf, oneOf (as anyOf), allOf of one schema, $ref within the
 * document (#, #/$defs/..., recursion included). Annotations (title, description,
 * default, examples, format, ...) are ignored. Keywords that assert something it
 * cannot enforce (pattern, minimum, uniqueItems, ...) are an error, not ignored:
 * an answer that looks constrained and is not would be worse.
 *
 * Deliberate limits, so a sequence cannot run away or blow up: values nest at
 * most JG_DEPTH deep, at most JG_WS whitespace bytes in a row between tokens of
 * JSON, numbers at most JG_NUM bytes, at most JG_STACKS readings at once and
 * JG_ALTS anyOf alternatives tried per byte (nested anyOfs multiply), at most 64
 * properties per object and 64 values per enum. The value starts the text
 * and nothing but an end token may follow it (no whitespace before or after).
 * Keys are matched in the canonical escaping (what a JSON encoder writes).
 *
 * Invariants: a state's stacks are all non-empty; frame 0 is the root frame; a
 * state never holds a stack that has rejected a byte; the grammar is read-only
 * after herd_json_grammar_new, so any number of states (choices) share it.
 */
#define _GNU_SOURCE /* qsort_r */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "tokenizer.h"

#define JG_DEPTH 24
#define JG_STACKS 16
#define JG_WS 20
#define JG_NUM 24
#define JG_ALTS 64 /* anyOf alternatives tried per byte */
#define JG_TRIE 64 /* tokens up to this many bytes are walked as a trie in a mask */
#define JG_END 256 /* the pseudo-byte that asks: is the value complete? */

enum { K_ROOT, K_ANY, K_OBJECT, K_ARRAY, K_STRING, K_NUMBER, K_INTEGER, K_LITERAL, K_ANYOF, K_PENDING };

typedef struct {
    int kind;
    int free_keys;  /* object: any keys, each value of node item (no properties given) */
    int a0, a1;     /* object: props [a0, a1); literal: lits; anyof: alts */
    int item;       /* array: items; free object: values; root: the value */
    int min, max;   /* array: items; string: characters (max -1: none) */
    uint64_t req;   /* object: required properties, bit i = props[a0 + i] */
} jnode;

typedef struct {
    char *key; /* escaped as a JSON encoder writes it, without the quotes */
    int len, value;
} jprop;

typedef struct {
    char *text; /* the value as JSON text */
    int len;
} jlit;

enum { TOK_TEXT, TOK_END, TOK_NEVER };

/* The vocabulary's side, made once per tokenizer: each token's bytes and kind. */
struct herd_json_vocab {
    int V;
    const char **tok;   /* the tokenizer's bytes (it must outlive the vocabulary) */
    uint32_t *tok_len;
    uint8_t *tok_kind;
    int32_t *tok_plain; /* characters, when every byte is string text that needs no escape (else -1) */
    /* text tokens of at most JG_TRIE bytes in byte order, and how many leading
     * bytes each shares with the one before: a mask walks them as a trie */
    int32_t *order;
    uint8_t *lcp;
    int n_order;
};

struct herd_json_grammar {
    const herd_json_vocab *v; /* NULL: bytes only (feed, complete) */
    jnode *nodes;
    int n_nodes, cap_nodes;
    jprop *props;
    int n_props, cap_props;
    jlit *lits;
    int n_lits, cap_lits;
    int *alts;
    int n_alts, cap_alts;
    int root, any_string;
};

/* object phases: START, then */
enum { P_START, O_OPEN, O_KEY, O_KEYDONE, O_COLON, O_VALUE, O_COMMA };
enum { A_OPEN = 1, A_ITEM, A_COMMA };
enum { S_IN = 1, S_ESC, S_HEX, S_LOW_BS, S_LOW_U, S_U1, S_U2, S_U3, S_E0, S_ED, S_F0, S_F4 };
/* a \u escape's state, in a string frame's cand: a low surrogate must come (after
 * a high one), the first digit was d, this one is a high surrogate */
enum { U_LOW = 1, U_D = 2, U_HIGH = 4 };
enum { N_SIGN = 1, N_ZERO, N_INT, N_FRAC0, N_FRAC, N_EXP0, N_EXPS, N_EXP };

typedef struct {
    int32_t node;
    uint8_t ph, pos; /* pos: object, the next property it may write; string, \u digits */
    uint16_t pad;
    int32_t n;       /* key or literal bytes matched, items, characters, number bytes; key done: its property */
    uint32_t pad2;
    uint64_t cand;   /* candidate properties (key) or literals */
} frame;

typedef struct {
    int depth, ws;
    frame f[JG_DEPTH];
} jstack;

typedef struct {
    int n;
    int alts; /* anyOf alternatives tried for the byte being fed (at most JG_ALTS) */
    jstack s[JG_STACKS];
} jset;

struct herd_json_state {
    const herd_json_grammar *g;
    int ended;  /* an end token was accepted */
    jset set;   /* the readings so far */
    jset tmp[2]; /* scratch for trying bytes (no allocation per token) */
    jset *trie;  /* a mask's readings after each prefix length (JG_TRIE + 1; made at the first mask) */
};

/* ---- running ------------------------------------------------------------------ */

static void copy_stack(jstack *d, const jstack *s) {
    d->depth = s->depth;
    d->ws = s->ws;
    memcpy(d->f, s->f, (size_t)s->depth * sizeof *s->f);
}

static void copy_set(jset *d, const jset *s) {
    d->n = s->n;
    for (int i = 0; i < s->n; i++) copy_stack(&d->s[i], &s->s[i]);
}

static void keep(jset *out, const jstack *st) {
    if (out->n < JG_STACKS) copy_stack(&out->s[out->n++], st);
}

static int is_ws(int c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
static int is_digit(int c) { return c >= '0' && c <= '9'; }
static int is_hex(int c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

static uint64_t low_bits(int n) { return n >= 64 ? ~0ull : (1ull << n) - 1; }

static int required_left(const jnode *nd, int pos) { return pos < 64 && (nd->req >> pos) != 0; }

/* The properties a key may name at pos: the next ones up to the first required. */
static uint64_t key_cands(const jnode *nd, int pos) {
    uint64_t m = low_bits(nd->a1 - nd->a0) & ~low_bits(pos), r = nd->req & m;
    if (r) m &= ((r & -r) << 1) - 1;
    return m;
}

static void advance(const herd_json_grammar *g, jstack *st, int c, jset *out);

/* A value of node starts with byte c (an anyOf or any: each alternative). */
static void begin_alt(const herd_json_grammar *g, jstack *st, int node, int c, jset *out, int hops) {
    const jnode *nd = &g->nodes[node];
    if (nd->kind == K_ANYOF || nd->kind == K_ANY) {
        /* hops: an alternative that is (through $ref) its own anyOf adds nothing;
         * alts: nested anyOfs multiply, and a byte's work must stay bounded */
        for (int i = nd->a0; i < nd->a1 && hops < 8 && out->alts++ < JG_ALTS; i++) {
            jstack t;
            copy_stack(&t, st);
            begin_alt(g, &t, g->alts[i], c, out, hops + 1);
        }
        return;
    }
    if (st->depth == JG_DEPTH) return;
    frame *f = &st->f[st->depth++];
    memset(f, 0, sizeof *f);
    f->node = node;
    if (nd->kind == K_LITERAL) f->cand = low_bits(nd->a1 - nd->a0);
    advance(g, st, c, out);
}

static void begin(const herd_json_grammar *g, jstack *st, int node, int c, jset *out) {
    begin_alt(g, st, node, c, out, 0);
}

/* The top value is complete and c is not part of it: its parent takes c. */
static void pop_and_pass(const herd_json_grammar *g, jstack *st, int c, jset *out) {
    st->depth--;
    advance(g, st, c, out);
}

/* Whitespace between tokens of JSON, at most JG_WS bytes in a row. */
static void take_ws(jstack *st, jset *out) {
    if (++st->ws <= JG_WS) keep(out, st);
}

/* Whether byte n of a key follows an odd run of backslashes (a '"' there is text). */
static int escaped(const char *key, int n) {
    int k = 0;
    while (k < n && key[n - 1 - k] == '\\') k++;
    return k & 1;
}

static void object_byte(const herd_json_grammar *g, jstack *st, frame *f, const jnode *nd, int c, jset *out) {
    switch (f->ph) {
    case P_START:
        if (c != '{') return;
        f->ph = O_OPEN;
        break;
    case O_OPEN: case O_COMMA:
        if (is_ws(c)) return take_ws(st, out);
        if (c == '}' && f->ph == O_OPEN && (nd->free_keys || !required_left(nd, f->pos))) {
            st->depth--;
        } else if (c == '"' && nd->free_keys) {
            f->ph = O_KEYDONE;
            if (st->depth == JG_DEPTH) return;
            frame *k = &st->f[st->depth++];
            memset(k, 0, sizeof *k);
            k->node = g->any_string;
            k->ph = S_IN;
        } else if (c == '"') {
            if (!(f->cand = key_cands(nd, f->pos))) return;
            f->ph = O_KEY;
            f->n = 0;
        } else {
            return;
        }
        break;
    case O_KEY:
        if (c == '"' && !escaped(g->props[nd->a0 + __builtin_ctzll(f->cand)].key, f->n)) {
            int p = -1;
            for (int i = 0; i < nd->a1 - nd->a0; i++)
                if (f->cand >> i & 1 && g->props[nd->a0 + i].len == f->n) p = i;
            if (p < 0) return;
            f->n = p;
            f->pos = (uint8_t)(p + 1);
            f->ph = O_KEYDONE;
        } else {
            uint64_t m = 0;
            for (int i = 0; i < nd->a1 - nd->a0; i++) {
                const jprop *pr = &g->props[nd->a0 + i];
                if (f->cand >> i & 1 && pr->len > f->n && (uint8_t)pr->key[f->n] == c) m |= 1ull << i;
            }
            if (!m) return;
            f->cand = m;
            f->n++;
        }
        break;
    case O_KEYDONE:
        if (is_ws(c)) return take_ws(st, out);
        if (c != ':') return;
        f->ph = O_COLON;
        break;
    case O_COLON:
        if (is_ws(c)) return take_ws(st, out);
        f->ph = O_VALUE;
        st->ws = 0;
        return begin(g, st, nd->free_keys ? nd->item : g->props[nd->a0 + f->n].value, c, out);
    case O_VALUE:
        if (is_ws(c)) return take_ws(st, out);
        if (c == ',' && (nd->free_keys || key_cands(nd, f->pos))) {
            f->ph = O_COMMA;
        } else if (c == '}' && (nd->free_keys || !required_left(nd, f->pos))) {
            st->depth--;
        } else {
            return;
        }
        break;
    }
    st->ws = 0;
    keep(out, st);
}

static void array_byte(const herd_json_grammar *g, jstack *st, frame *f, const jnode *nd, int c, jset *out) {
    switch (f->ph) {
    case P_START:
        if (c != '[') return;
        f->ph = A_OPEN;
        break;
    case A_OPEN: case A_COMMA:
        if (is_ws(c)) return take_ws(st, out);
        if (f->ph == A_OPEN && c == ']') {
            if (nd->min > 0) return;
            st->depth--;
            break;
        }
        if (nd->max >= 0 && f->n >= nd->max) return;
        f->ph = A_ITEM;
        f->n++;
        st->ws = 0;
        return begin(g, st, nd->item, c, out);
    case A_ITEM:
        if (is_ws(c)) return take_ws(st, out);
        if (c == ',' && (nd->max < 0 || f->n < nd->max)) {
            f->ph = A_COMMA;
        } else if (c == ']' && f->n >= nd->min) {
            st->depth--;
        } else {
            return;
        }
        break;
    }
    st->ws = 0;
    keep(out, st);
}

/* One character more in a string with a maxLength. */
static int count_char(frame *f, const jnode *nd) {
    if (nd->max >= 0 && f->n >= nd->max) return 0;
    f->n++;
    return 1;
}

static void string_byte(jstack *st, frame *f, const jnode *nd, int c, jset *out) {
    switch (f->ph) {
    case P_START:
        if (c != '"') return;
        f->ph = S_IN;
        break;
    case S_IN:
        if (c == '"') {
            if (f->n < nd->min) return;
            st->depth--;
        } else if (c == '\\') {
            if (!count_char(f, nd)) return;
            f->ph = S_ESC;
        } else if (c < 0x20 || c == JG_END) {
            return;
        } else if (c < 0x80) {
            if (!count_char(f, nd)) return;
        } else {
            /* UTF-8: a lead byte counts the character, continuations follow */
            int ph = c >= 0xC2 && c <= 0xDF ? S_U1 : c == 0xE0 ? S_E0 : c == 0xED ? S_ED
                   : c >= 0xE1 && c <= 0xEF ? S_U2 : c == 0xF0 ? S_F0 : c >= 0xF1 && c <= 0xF3 ? S_U3
                   : c == 0xF4 ? S_F4 : 0;
            if (!ph || !count_char(f, nd)) return;
            f->ph = (uint8_t)ph;
        }
        break;
    case S_ESC:
        if (c == 'u') {
            f->ph = S_HEX;
            f->pos = 0;
            f->cand = 0;
        } else if (c && c < 256 && strchr("\"\\/bfnrt", c)) {
            f->ph = S_IN;
        } else {
            return;
        }
        break;
    case S_HEX: { /* surrogates only in pairs (strict parsers refuse lone ones), decided digit by digit */
        if (!is_hex(c)) return;
        const int d = c == 'd' || c == 'D', lo = (c | 0x20) >= 'c' && (c | 0x20) <= 'f';
        const int hi = (c >= '8' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'b');
        if (f->pos == 0) {
            if ((f->cand & U_LOW) && !d) return;
            if (d) f->cand |= U_D;
        } else if (f->pos == 1 && (f->cand & U_D)) {
            if ((f->cand & U_LOW) ? !lo : lo) return;
            if (!(f->cand & U_LOW) && hi) f->cand |= U_HIGH;
        }
        if (++f->pos == 4) f->ph = f->cand & U_HIGH ? S_LOW_BS : S_IN;
        break;
    }
    case S_LOW_BS: /* after a high surrogate: \u and a low one */
        if (c != '\\') return;
        f->ph = S_LOW_U;
        break;
    case S_LOW_U:
        if (c != 'u') return;
        f->ph = S_HEX;
        f->pos = 0;
        f->cand = U_LOW;
        break;
    default: { /* a continuation byte, in the range its lead byte allows */
        const int lo = f->ph == S_E0 ? 0xA0 : f->ph == S_F0 ? 0x90 : 0x80;
        const int hi = f->ph == S_ED ? 0x9F : f->ph == S_F4 ? 0x8F : 0xBF;
        if (c < lo || c > hi) return;
        f->ph = f->ph == S_U1 ? S_IN : f->ph == S_U2 || f->ph == S_E0 || f->ph == S_ED ? S_U1 : S_U2;
        break;
    }
    }
    st->ws = 0;
    keep(out, st);
}

static void number_byte(const herd_json_grammar *g, jstack *st, frame *f, const jnode *nd, int c, jset *out) {
    const int real = nd->kind == K_NUMBER;
    int ph = 0;
    switch (f->ph) {
    case P_START: ph = c == '-' ? N_SIGN : c == '0' ? N_ZERO : is_digit(c) ? N_INT : 0; break;
    case N_SIGN: ph = c == '0' ? N_ZERO : is_digit(c) ? N_INT : 0; break;
    case N_ZERO: case N_INT:
        ph = f->ph == N_INT && is_digit(c) ? N_INT : real && c == '.' ? N_FRAC0
           : real && (c == 'e' || c == 'E') ? N_EXP0 : 0;
        if (!ph) return pop_and_pass(g, st, c, out);
        break;
    case N_FRAC0: ph = is_digit(c) ? N_FRAC : 0; break;
    case N_FRAC:
        ph = is_digit(c) ? N_FRAC : c == 'e' || c == 'E' ? N_EXP0 : 0;
        if (!ph) return pop_and_pass(g, st, c, out);
        break;
    case N_EXP0: ph = c == '+' || c == '-' ? N_EXPS : is_digit(c) ? N_EXP : 0; break;
    case N_EXPS: ph = is_digit(c) ? N_EXP : 0; break;
    case N_EXP:
        if (!is_digit(c)) return pop_and_pass(g, st, c, out);
        ph = N_EXP;
        break;
    }
    if (!ph || ++f->n > JG_NUM) return;
    f->ph = (uint8_t)ph;
    st->ws = 0;
    keep(out, st);
}

static void literal_byte(const herd_json_grammar *g, jstack *st, frame *f, const jnode *nd, int c, jset *out) {
    uint64_t next = 0;
    int complete = 0;
    for (int i = 0; i < nd->a1 - nd->a0; i++) {
        if (!(f->cand >> i & 1)) continue;
        const jlit *l = &g->lits[nd->a0 + i];
        if (l->len == f->n) complete = 1;
        else if (c != JG_END && (uint8_t)l->text[f->n] == c) next |= 1ull << i;
    }
    if (next) {
        jstack t;
        copy_stack(&t, st);
        frame *tf = &t.f[t.depth - 1];
        tf->cand = next;
        tf->n++;
        t.ws = 0;
        keep(out, &t);
    }
    if (complete && f->n > 0) pop_and_pass(g, st, c, out);
}

/* Byte c (0..255, or JG_END) on stack st, which advance may change: every
 * reading that accepts it goes into out. */
static void advance(const herd_json_grammar *g, jstack *st, int c, jset *out) {
    frame *f = &st->f[st->depth - 1];
    const jnode *nd = &g->nodes[f->node];
    switch (nd->kind) {
    case K_ROOT:
        if (f->ph == 1) {
            if (c == JG_END) keep(out, st);
            return;
        }
        if (c == JG_END) return; /* no whitespace before the value either: it starts the answer */
        f->ph = 1;
        st->ws = 0;
        return begin(g, st, nd->item, c, out);
    case K_OBJECT: return object_byte(g, st, f, nd, c, out);
    case K_ARRAY: return array_byte(g, st, f, nd, c, out);
    case K_STRING: return string_byte(st, f, nd, c, out);
    case K_NUMBER: case K_INTEGER: return number_byte(g, st, f, nd, c, out);
    case K_LITERAL: return literal_byte(g, st, f, nd, c, out);
    default: return; /* any and anyOf never sit on a stack (begin expands them) */
    }
}

/* set <- the readings after byte c; 0 if none (set then unchanged). */
static int feed_byte(const herd_json_grammar *g, jset *set, int c, jset *tmp) {
    tmp->n = tmp->alts = 0;
    for (int i = 0; i < set->n; i++) {
        jstack t;
        copy_stack(&t, &set->s[i]);
        advance(g, &t, c, tmp);
    }
    if (!tmp->n) return 0;
    copy_set(set, tmp);
    return 1;
}

static int feed_bytes(const herd_json_grammar *g, jset *set, const char *b, size_t n, jset *tmp) {
    for (size_t i = 0; i < n; i++)
        if (!feed_byte(g, set, (uint8_t)b[i], tmp)) return 0;
    return 1;
}

/* ---- the public state ------------------------------------------------------------ */

herd_status herd_json_state_new(herd_json_state **out, const herd_json_grammar *g, herd_error *err) {
    *out = NULL;
    herd_json_state *s = calloc(1, sizeof *s);
    if (!s) return herd_errf(err, HERD_ERR_NOMEM, "json grammar: out of memory for a state");
    s->g = g;
    s->set.n = 1;
    s->set.s[0].depth = 1; /* frame 0: the root node (0), before the value */
    *out = s;
    return HERD_OK;
}

void herd_json_state_free(herd_json_state *s) {
    if (s) free(s->trie);
    free(s);
}

int herd_json_state_complete(herd_json_state *s) {
    if (s->ended) return 0;
    copy_set(&s->tmp[0], &s->set);
    return feed_byte(s->g, &s->tmp[0], JG_END, &s->tmp[1]);
}

int herd_json_state_feed(herd_json_state *s, const char *bytes, size_t len) {
    if (s->ended) return -1;
    copy_set(&s->tmp[0], &s->set);
    if (!feed_bytes(s->g, &s->tmp[0], bytes, len, &s->tmp[1])) return -1;
    copy_set(&s->set, &s->tmp[0]);
    return 0;
}

/* Token id's kind, TOK_NEVER when it is not one of the vocabulary's (or there is none). */
static int kind_of(const herd_json_state *s, int32_t id) {
    const herd_json_vocab *v = s->g->v;
    return !v || id < 0 || id >= v->V ? TOK_NEVER : v->tok_kind[id];
}

int herd_json_state_allows(herd_json_state *s, int32_t id) {
    const int kind = kind_of(s, id);
    if (s->ended || kind == TOK_NEVER) return 0;
    if (kind == TOK_END) return herd_json_state_complete(s);
    const herd_json_vocab *v = s->g->v;
    copy_set(&s->tmp[0], &s->set);
    return feed_bytes(s->g, &s->tmp[0], v->tok[id], v->tok_len[id], &s->tmp[1]);
}

int herd_json_state_accept(herd_json_state *s, int32_t id) {
    const int kind = kind_of(s, id);
    if (s->ended || kind == TOK_NEVER || (kind == TOK_END && !herd_json_state_complete(s))) return -1;
    if (kind == TOK_END) {
        s->ended = 1;
        return 0;
    }
    return herd_json_state_feed(s, s->g->v->tok[id], s->g->v->tok_len[id]); /* fed once: refused, unchanged */
}

int herd_json_state_mask(herd_json_state *s, float *logits) {
    const herd_json_grammar *g = s->g;
    const herd_json_vocab *v = g->v;
    if (!v) return 0;
    /* inside a string (every reading), a token of plain text is allowed if it fits:
     * most of the vocabulary, so it is not fed byte by byte */
    int room = -1;
    for (int k = 0; k < s->set.n; k++) {
        const jstack *st = &s->set.s[k];
        const frame *f = &st->f[st->depth - 1];
        const jnode *nd = &g->nodes[f->node];
        if (nd->kind != K_STRING || f->ph != S_IN) {
            room = -1;
            break;
        }
        const int r = nd->max < 0 ? INT32_MAX : nd->max - f->n;
        room = r > room ? r : room;
    }
    if (!s->trie && !(s->trie = malloc((JG_TRIE + 1) * sizeof *s->trie))) {
        for (int i = 0; i < v->V; i++) logits[i] = -INFINITY;
        return 0;
    }
    /* text tokens in byte order: trie[d] holds the readings after the first d
     * bytes of the current token, valid up to depth `valid`; a refused prefix
     * refuses every token after it that shares it */
    int n = 0, valid = 0, dead = INT32_MAX;
    copy_set(&s->trie[0], &s->set);
    for (int k = 0; k < v->n_order; k++) {
        const int32_t id = v->order[k];
        const int p = v->lcp[k];
        valid = p < valid ? p : valid;
        if (s->ended || p >= dead) {
            logits[id] = -INFINITY;
            continue;
        }
        dead = INT32_MAX;
        if (room >= 0 && v->tok_plain[id] >= 0 && v->tok_plain[id] <= room) {
            n++;
            continue;
        }
        const int len = (int)v->tok_len[id];
        int d = valid;
        for (; d < len; d++) {
            copy_set(&s->trie[d + 1], &s->trie[d]);
            if (!feed_byte(g, &s->trie[d + 1], (uint8_t)v->tok[id][d], &s->tmp[1])) break;
        }
        valid = d;
        if (d < len) {
            dead = d + 1;
            logits[id] = -INFINITY;
        } else {
            n++;
        }
    }
    /* the rest one by one: ends (allowed when the value is whole), specials, long tokens */
    const int complete = herd_json_state_complete(s);
    for (int i = 0; i < v->V; i++) {
        const int kind = v->tok_kind[i];
        if (kind == TOK_TEXT && v->tok_len[i] <= JG_TRIE) continue;
        if (kind == TOK_END ? complete : kind == TOK_TEXT && herd_json_state_allows(s, i)) n++;
        else logits[i] = -INFINITY;
    }
    return n;
}

/* ---- compiling a schema ---------------------------------------------------------- */

typedef struct {
    herd_json_grammar *g;
    const cJSON *doc;
    struct { char *ref; int node; } refs[256];
    int n_refs;
    herd_error *err;
    herd_status st;
} compiler;

static int cfail(compiler *c, const char *path, const char *fmt, const char *what) {
    if (c->st == HERD_OK) {
        c->st = herd_errf(c->err, HERD_ERR_UNSUPPORTED, "json schema at %s: ", path);
        const size_t k = strlen(c->err->msg);
        snprintf(c->err->msg + k, sizeof c->err->msg - k, fmt, what);
    }
    return -1;
}

static int oom(compiler *c) {
    if (c->st == HERD_OK) c->st = herd_errf(c->err, HERD_ERR_NOMEM, "json schema: out of memory");
    return -1;
}

/* Room for one more element in arr (n used of cap): 0, or -1 when out of memory
 * (arr kept, so what its elements own is still freed). */
#define GROW(arr, n, cap) ({                                                  \
    int ok_ = (n) < (cap);                                                    \
    if (!ok_) {                                                               \
        const int nc_ = (cap) ? 2 * (cap) : 16;                               \
        void *q_ = realloc((arr), (size_t)nc_ * sizeof *(arr));               \
        if (q_) (arr) = q_, (cap) = nc_, ok_ = 1;                             \
    }                                                                         \
    ok_ ? 0 : -1;                                                             \
})

static int add_node(compiler *c, int kind) {
    herd_json_grammar *g = c->g;
    if (GROW(g->nodes, g->n_nodes, g->cap_nodes)) return oom(c);
    jnode *nd = &g->nodes[g->n_nodes];
    memset(nd, 0, sizeof *nd);
    nd->kind = kind;
    nd->max = -1;
    return g->n_nodes++;
}

static int add_alt(compiler *c, int node) {
    herd_json_grammar *g = c->g;
    if (GROW(g->alts, g->n_alts, g->cap_alts)) return oom(c);
    g->alts[g->n_alts++] = node;
    return 0;
}

/* A literal: the value's JSON text (cJSON's canonical printing). */
static int add_lit(compiler *c, const cJSON *v) {
    herd_json_grammar *g = c->g;
    if (GROW(g->lits, g->n_lits, g->cap_lits)) return oom(c);
    char *t = cJSON_PrintUnformatted(v);
    if (!t) return oom(c);
    g->lits[g->n_lits++] = (jlit){ t, (int)strlen(t) };
    return 0;
}

static int literal_node(compiler *c, const char *const *texts, int n) {
    const int node = add_node(c, K_LITERAL);
    if (node < 0) return -1;
    c->g->nodes[node].a0 = c->g->n_lits;
    for (int i = 0; i < n; i++) {
        cJSON *v = cJSON_Parse(texts[i]);
        const int bad = !v || add_lit(c, v);
        cJSON_Delete(v);
        if (bad) return oom(c);
    }
    c->g->nodes[node].a1 = c->g->n_lits;
    return node;
}

static int compile(compiler *c, const cJSON *s, const char *path, int depth);

static const char *const ASSERTIONS[] = {
    "pattern", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
    "uniqueItems", "minProperties", "maxProperties", "patternProperties", "propertyNames",
    "dependentRequired", "dependentSchemas", "dependencies", "if", "then", "else", "not",
    "contains", "minContains", "maxContains", "prefixItems", "additionalItems",
    "unevaluatedProperties", "unevaluatedItems", "contentSchema",
};

/* A property / item / alternative sub-schema: path + suffix for messages. */
static int sub(compiler *c, const cJSON *s, const char *path, const char *suffix, int depth) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", path, suffix);
    return compile(c, s, p, depth + 1);
}

static int get_count(compiler *c, const cJSON *s, const char *key, const char *path, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(s, key);
    if (!v) return 0;
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 1e9 || v->valuedouble != floor(v->valuedouble))
        return cfail(c, path, "'%s' must be a non-negative integer", key);
    *out = (int)v->valuedouble;
    return 0;
}

static int compile_object(compiler *c, const cJSON *s, const char *path, int depth) {
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(s, "properties");
    const cJSON *req = cJSON_GetObjectItemCaseSensitive(s, "required");
    const cJSON *addl = cJSON_GetObjectItemCaseSensitive(s, "additionalProperties");
    if (props && !cJSON_IsObject(props)) return cfail(c, path, "'%s' must be an object", "properties");
    if (req && !cJSON_IsArray(req)) return cfail(c, path, "'%s' must be an array of names", "required");
    const int n = props ? cJSON_GetArraySize(props) : 0;
    if (n > 64) return cfail(c, path, "%s: at most 64 properties in an object", "properties");
    const int node = add_node(c, K_OBJECT);
    if (node < 0) return -1;
    if (n == 0) {
        if (req && req->child)
            return cfail(c, path, "'required' names '%.100s', which has no schema in 'properties'",
                         cJSON_IsString(req->child) ? req->child->valuestring : "?");
        if (cJSON_IsFalse(addl)) return node; /* only {} */
        const int v = addl && !cJSON_IsTrue(addl) ? sub(c, addl, path, "additionalProperties", depth) : 1;
        if (v < 0) return -1;
        c->g->nodes[node].free_keys = 1;
        c->g->nodes[node].item = v;
        return node;
    }
    /* properties go in consecutively: reserve them first, sub-schemas may add more */
    herd_json_grammar *g = c->g;
    const int a0 = g->n_props;
    for (int i = 0; i < n; i++) {
        if (GROW(g->props, g->n_props, g->cap_props)) return oom(c);
        g->props[g->n_props++] = (jprop){ 0 };
    }
    g->nodes[node].a0 = a0;
    g->nodes[node].a1 = a0 + n;
    int i = 0;
    const cJSON *p;
    cJSON_ArrayForEach(p, props) {
        cJSON *name = cJSON_CreateString(p->string);
        char *q = name ? cJSON_PrintUnformatted(name) : NULL;
        cJSON_Delete(name);
        if (!q) return oom(c);
        const int len = (int)strlen(q) - 2;
        memmove(q, q + 1, (size_t)len);
        q[len] = 0;
        g->props[a0 + i].key = q;
        g->props[a0 + i].len = len;
        char sfx[300];
        snprintf(sfx, sizeof sfx, "properties/%.200s", p->string);
        const int v = sub(c, p, path, sfx, depth);
        if (v < 0) return -1;
        g->props[a0 + i].value = v;
        i++;
    }
    const cJSON *r;
    cJSON_ArrayForEach(r, req) {
        if (!cJSON_IsString(r)) return cfail(c, path, "'%s' must be an array of names", "required");
        int k = 0;
        const cJSON *q;
        cJSON_ArrayForEach(q, props) {
            if (!strcmp(q->string, r->valuestring)) break;
            k++;
        }
        if (k == n) return cfail(c, path, "'required' names '%.100s', which has no schema in 'properties'",
                                 r->valuestring);
        g->nodes[node].req |= 1ull << k;
    }
    return node;
}

static int compile_typed(compiler *c, const cJSON *s, const char *type, const char *path, int depth) {
    if (!strcmp(type, "object")) return compile_object(c, s, path, depth);
    if (!strcmp(type, "array")) {
        const cJSON *items = cJSON_GetObjectItemCaseSensitive(s, "items");
        int mn = 0, mx = -1;
        if (get_count(c, s, "minItems", path, &mn) || get_count(c, s, "maxItems", path, &mx)) return -1;
        if (mx >= 0 && mn > mx) return cfail(c, path, "%s: minItems > maxItems accepts nothing", "array");
        const int it = items ? sub(c, items, path, "items", depth) : 1;
        if (it < 0) return -1;
        const int node = add_node(c, K_ARRAY);
        if (node < 0) return -1;
        c->g->nodes[node].item = it, c->g->nodes[node].min = mn, c->g->nodes[node].max = mx;
        return node;
    }
    if (!strcmp(type, "string")) {
        int mn = 0, mx = -1;
        if (get_count(c, s, "minLength", path, &mn) || get_count(c, s, "maxLength", path, &mx)) return -1;
        if (mx >= 0 && mn > mx) return cfail(c, path, "%s: minLength > maxLength accepts nothing", "string");
        const int node = add_node(c, K_STRING);
        if (node < 0) return -1;
        c->g->nodes[node].min = mn, c->g->nodes[node].max = mx;
        return node;
    }
    if (!strcmp(type, "number")) return add_node(c, K_NUMBER);
    if (!strcmp(type, "integer")) return add_node(c, K_INTEGER);
    if (!strcmp(type, "boolean")) return literal_node(c, (const char *const[]){ "true", "false" }, 2);
    if (!strcmp(type, "null")) return literal_node(c, (const char *const[]){ "null" }, 1);
    return cfail(c, path, "unknown type '%.60s'", type);
}

/* "$ref": a JSON pointer into the document ("#", "#/$defs/Name", ...). */
static int compile_ref(compiler *c, const char *ref, const char *path, int depth) {
    for (int i = 0; i < c->n_refs; i++)
        if (!strcmp(c->refs[i].ref, ref)) return c->refs[i].node; /* maybe still pending: recursion */
    if (ref[0] != '#' || (ref[1] && ref[1] != '/'))
        return cfail(c, path, "'$ref' '%.100s': only references within the schema (#/...) are supported", ref);
    const cJSON *t = c->doc;
    for (const char *p = ref + 1; *p == '/' && t;) {
        char key[256];
        size_t k = 0;
        for (p++; *p && *p != '/' && k + 1 < sizeof key; p++) {
            if (p[0] == '~' && (p[1] == '0' || p[1] == '1')) key[k++] = p[1] == '0' ? '~' : '/', p++;
            else key[k++] = *p;
        }
        key[k] = 0;
        t = cJSON_IsArray(t) ? cJSON_GetArrayItem(t, atoi(key)) : cJSON_GetObjectItemCaseSensitive(t, key);
    }
    if (!t) return cfail(c, path, "'$ref' '%.100s' points at nothing in the schema", ref);
    if (c->n_refs == (int)(sizeof c->refs / sizeof c->refs[0]))
        return cfail(c, path, "%s: too many distinct $ref targets", "$ref");
    const int node = add_node(c, K_PENDING);
    if (node < 0) return -1;
    char *copy = strdup(ref);
    if (!copy) return oom(c);
    c->refs[c->n_refs].ref = copy;
    c->refs[c->n_refs++].node = node;
    const int v = compile(c, t, ref, depth + 1);
    if (v < 0) return -1;
    if (c->g->nodes[v].kind == K_PENDING)
        return cfail(c, path, "'$ref' '%.100s' refers to itself without a value in between", ref);
    c->g->nodes[node] = c->g->nodes[v];
    return node;
}

static int compile_alts(compiler *c, const cJSON *list, const char *key, const char *path, int depth) {
    if (!cJSON_IsArray(list) || cJSON_GetArraySize(list) == 0)
        return cfail(c, path, "'%s' must be a non-empty array of schemas", key);
    int v[64], n = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, list) {
        if (n == 64) return cfail(c, path, "'%s': at most 64 alternatives", key);
        char sfx[64];
        snprintf(sfx, sizeof sfx, "%s/%d", key, n);
        if ((v[n++] = sub(c, x, path, sfx, depth)) < 0) return -1;
    }
    if (n == 1) return v[0];
    const int node = add_node(c, K_ANYOF);
    if (node < 0) return -1;
    c->g->nodes[node].a0 = c->g->n_alts;
    for (int i = 0; i < n; i++)
        if (add_alt(c, v[i])) return -1;
    c->g->nodes[node].a1 = c->g->n_alts;
    return node;
}

static int compile(compiler *c, const cJSON *s, const char *path, int depth) {
    if (depth > 64) return cfail(c, path, "%s: nested more than 64 deep", "schema");
    if (cJSON_IsTrue(s)) return 1; /* the any node */
    if (cJSON_IsFalse(s)) return cfail(c, path, "%s: the schema false accepts nothing", "schema");
    if (!cJSON_IsObject(s)) return cfail(c, path, "%s: expected an object (or true)", "schema");
    for (size_t i = 0; i < sizeof ASSERTIONS / sizeof *ASSERTIONS; i++)
        if (cJSON_GetObjectItemCaseSensitive(s, ASSERTIONS[i]))
            return cfail(c, path, "'%s' is not supported (herd enforces type, properties, required, "
                         "additionalProperties, items, minItems, maxItems, minLength, maxLength, enum, const, "
                         "anyOf, oneOf, allOf of one schema and $ref)", ASSERTIONS[i]);
    const cJSON *ref = cJSON_GetObjectItemCaseSensitive(s, "$ref");
    if (ref) {
        if (!cJSON_IsString(ref)) return cfail(c, path, "'%s' must be a string", "$ref");
        return compile_ref(c, ref->valuestring, path, depth);
    }
    const cJSON *en = cJSON_GetObjectItemCaseSensitive(s, "enum"), *cn = cJSON_GetObjectItemCaseSensitive(s, "const");
    if (en || cn) {
        if (en && (!cJSON_IsArray(en) || cJSON_GetArraySize(en) == 0))
            return cfail(c, path, "'%s' must be a non-empty array", "enum");
        if (en && cJSON_GetArraySize(en) > 64) return cfail(c, path, "'%s': at most 64 values", "enum");
        const int node = add_node(c, K_LITERAL);
        if (node < 0) return -1;
        c->g->nodes[node].a0 = c->g->n_lits;
        const cJSON *x;
        if (cn) {
            if (add_lit(c, cn)) return -1;
        } else {
            cJSON_ArrayForEach(x, en) if (add_lit(c, x)) return -1;
        }
        c->g->nodes[node].a1 = c->g->n_lits;
        return node;
    }
    const cJSON *any = cJSON_GetObjectItemCaseSensitive(s, "anyOf"), *one = cJSON_GetObjectItemCaseSensitive(s, "oneOf");
    const cJSON *all = cJSON_GetObjectItemCaseSensitive(s, "allOf"), *type = cJSON_GetObjectItemCaseSensitive(s, "type");
    if ((any != NULL) + (one != NULL) + (all != NULL) + (type != NULL) > 1)
        return cfail(c, path, "%s: combine at most one of type, anyOf, oneOf, allOf", "schema");
    if (any) return compile_alts(c, any, "anyOf", path, depth);
    if (one) return compile_alts(c, one, "oneOf", path, depth);
    if (all) {
        if (!cJSON_IsArray(all) || cJSON_GetArraySize(all) != 1)
            return cfail(c, path, "'%s' is supported with exactly one schema", "allOf");
        return sub(c, all->child, path, "allOf/0", depth);
    }
    if (!type) {
        if (cJSON_GetObjectItemCaseSensitive(s, "properties") || cJSON_GetObjectItemCaseSensitive(s, "required") ||
            cJSON_GetObjectItemCaseSensitive(s, "additionalProperties"))
            return compile_object(c, s, path, depth);
        if (cJSON_GetObjectItemCaseSensitive(s, "items")) return compile_typed(c, s, "array", path, depth);
        return 1; /* no constraint: any value */
    }
    if (cJSON_IsString(type)) return compile_typed(c, s, type->valuestring, path, depth);
    if (!cJSON_IsArray(type) || cJSON_GetArraySize(type) == 0)
        return cfail(c, path, "'%s' must be a type name or a non-empty array of them", "type");
    int v[8], n = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, type) {
        if (!cJSON_IsString(t) || n == 8) return cfail(c, path, "'%s' must be an array of at most 8 type names", "type");
        if ((v[n++] = compile_typed(c, s, t->valuestring, path, depth)) < 0) return -1;
    }
    if (n == 1) return v[0];
    const int node = add_node(c, K_ANYOF);
    if (node < 0) return -1;
    c->g->nodes[node].a0 = c->g->n_alts;
    for (int i = 0; i < n; i++)
        if (add_alt(c, v[i])) return -1;
    c->g->nodes[node].a1 = c->g->n_alts;
    return node;
}

/* Node 0 the root, 1 any value, then the any value's alternatives. */
static int builtins(compiler *c) {
    herd_json_grammar *g = c->g;
    if (add_node(c, K_ROOT) != 0 || add_node(c, K_ANY) != 1) return -1;
    const int obj = add_node(c, K_OBJECT), arr = add_node(c, K_ARRAY), str = add_node(c, K_STRING);
    const int num = add_node(c, K_NUMBER), lit = literal_node(c, (const char *const[]){ "true", "false", "null" }, 3);
    if (obj < 0 || arr < 0 || str < 0 || num < 0 || lit < 0) return -1;
    g->nodes[obj].free_keys = 1;
    g->nodes[obj].item = 1;
    g->nodes[arr].item = 1;
    g->any_string = str;
    g->nodes[1].a0 = g->n_alts;
    const int alts[] = { obj, arr, str, num, lit };
    for (int i = 0; i < 5; i++)
        if (add_alt(c, alts[i])) return -1;
    g->nodes[1].a1 = g->n_alts;
    return obj;
}

/* Characters in b if it is string text as it stands (no quote, backslash or
 * control character, whole UTF-8 sequences), else -1. */
static int32_t plain_chars(const char *b, size_t len) {
    int32_t n = 0;
    for (size_t i = 0; i < len; n++) {
        const uint8_t c = (uint8_t)b[i];
        if (c < 0x80) {
            if (c < 0x20 || c == '"' || c == '\\') return -1;
            i++;
            continue;
        }
        /* lead byte: its length and the range of the byte after it (as string_byte) */
        const int k = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        if (!k || i + (size_t)k > len) return -1;
        const uint8_t d = (uint8_t)b[i + 1];
        const int lo = c == 0xE0 ? 0xA0 : c == 0xF0 ? 0x90 : 0x80, hi = c == 0xED ? 0x9F : c == 0xF4 ? 0x8F : 0xBF;
        if (d < lo || d > hi) return -1;
        for (int j = 2; j < k; j++)
            if (((uint8_t)b[i + j] & 0xC0) != 0x80) return -1;
        i += (size_t)k;
    }
    return n;
}

static int by_bytes(const void *a, const void *b, void *ctx) {
    const herd_json_vocab *v = ctx;
    const int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    const uint32_t lx = v->tok_len[x], ly = v->tok_len[y];
    const int c = memcmp(v->tok[x], v->tok[y], lx < ly ? lx : ly);
    return c ? c : lx < ly ? -1 : lx > ly;
}

void herd_json_vocab_free(herd_json_vocab *v) {
    if (!v) return;
    free(v->tok);
    free(v->tok_len);
    free(v->tok_kind);
    free(v->tok_plain);
    free(v->order);
    free(v->lcp);
    free(v);
}

herd_status herd_json_vocab_new(herd_json_vocab **out, const herd_tokenizer *t, const int32_t *end_ids, int n_end,
                                herd_error *err) {
    *out = NULL;
    herd_json_vocab *v = calloc(1, sizeof *v);
    if (!v) return herd_errf(err, HERD_ERR_NOMEM, "json grammar: out of memory for the vocabulary");
    v->V = herd_tokenizer_n_vocab(t);
    v->tok = calloc((size_t)v->V, sizeof *v->tok);
    v->tok_len = calloc((size_t)v->V, sizeof *v->tok_len);
    v->tok_kind = calloc((size_t)v->V, 1);
    v->tok_plain = calloc((size_t)v->V, sizeof *v->tok_plain);
    v->order = malloc((size_t)v->V * sizeof *v->order);
    v->lcp = malloc((size_t)v->V);
    if (!v->tok || !v->tok_len || !v->tok_kind || !v->tok_plain || !v->order || !v->lcp) {
        herd_json_vocab_free(v);
        return herd_errf(err, HERD_ERR_NOMEM, "json grammar: out of memory for the vocabulary");
    }
    const int n_bpe = herd_tokenizer_n_bpe(t);
    for (int i = 0; i < v->V; i++) {
        size_t len = 0;
        v->tok[i] = herd_token_bytes(t, i, &len);
        v->tok_len[i] = (uint32_t)len;
        v->tok_kind[i] = i >= n_bpe || !v->tok[i] || len == 0 ? TOK_NEVER : TOK_TEXT;
        v->tok_plain[i] = v->tok_kind[i] == TOK_TEXT ? plain_chars(v->tok[i], len) : -1;
    }
    for (int i = 0; i < n_end; i++) /* the tokens that end the output */
        if (end_ids[i] >= 0 && end_ids[i] < v->V) v->tok_kind[end_ids[i]] = TOK_END;
    for (int i = 0; i < v->V; i++)
        if (v->tok_kind[i] == TOK_TEXT && v->tok_len[i] <= JG_TRIE) v->order[v->n_order++] = i;
    qsort_r(v->order, (size_t)v->n_order, sizeof *v->order, by_bytes, v);
    for (int k = 0; k < v->n_order; k++) {
        int p = 0;
        if (k > 0) {
            const int32_t x = v->order[k - 1], y = v->order[k];
            while (p < (int)v->tok_len[x] && p < (int)v->tok_len[y] && v->tok[x][p] == v->tok[y][p]) p++;
        }
        v->lcp[k] = (uint8_t)p;
    }
    *out = v;
    return HERD_OK;
}

void herd_json_grammar_free(herd_json_grammar *g) {
    if (!g) return;
    for (int i = 0; i < g->n_props; i++) free(g->props[i].key);
    for (int i = 0; i < g->n_lits; i++) free(g->lits[i].text);
    free(g->nodes);
    free(g->props);
    free(g->lits);
    free(g->alts);
    free(g);
}

herd_status herd_json_grammar_new(herd_json_grammar **out, const herd_json_vocab *v, const char *schema,
                                  herd_error *err) {
    *out = NULL;
    herd_json_grammar *g = calloc(1, sizeof *g);
    if (!g) return herd_errf(err, HERD_ERR_NOMEM, "json grammar: out of memory");
    g->v = v;
    compiler c = { .g = g, .err = err };
    const int any_object = builtins(&c);
    cJSON *doc = NULL;
    if (any_object >= 0 && schema) {
        if (!(doc = cJSON_Parse(schema))) {
            c.st = herd_errf(err, HERD_ERR_ARG, "json schema: not valid JSON (near byte %td)",
                             cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() - schema : (ptrdiff_t)0);
        } else {
            c.doc = doc;
            g->root = compile(&c, doc, "#", 0);
        }
    } else {
        g->root = any_object;
    }
    for (int i = 0; i < c.n_refs; i++) free(c.refs[i].ref);
    cJSON_Delete(doc);
    if (c.st != HERD_OK || g->root < 0) {
        herd_json_grammar_free(g);
        return c.st != HERD_OK ? c.st : herd_errf(err, HERD_ERR_NOMEM, "json grammar: out of memory");
    }
    g->nodes[0].item = g->root;
    *out = g;
    return HERD_OK;
}

herd_status herd_json_grammar_new_choice(herd_json_grammar **out, const herd_json_vocab *v,
                                         const char *const *choices, int n, herd_error *err) {
    *out = NULL;
    if (n < 1 || n > 64) return herd_errf(err, HERD_ERR_ARG, "choices: %d of them; expected 1 to 64", n);
    for (int i = 0; i < n; i++)
        if (!choices[i] || !choices[i][0]) return herd_errf(err, HERD_ERR_ARG, "choices: choice %d is empty", i);
    herd_json_grammar *g = calloc(1, sizeof *g);
    if (!g) return herd_errf(err, HERD_ERR_NOMEM, "json grammar: out of memory");
    g->v = v;
    compiler c = { .g = g, .err = err };
    int node = builtins(&c) < 0 ? -1 : add_node(&c, K_LITERAL); /* the texts as they are, not JSON */
    if (node >= 0) g->nodes[node].a0 = g->n_lits;
    for (int i = 0; node >= 0 && i < n; i++) {
        char *t = strdup(choices[i]);
        if (!t || GROW(g->lits, g->n_lits, g->cap_lits)) {
            free(t);
            node = oom(&c);
            break;
        }
        g->lits[g->n_lits++] = (jlit){ t, (int)strlen(t) };
    }
    if (node < 0) {
        herd_json_grammar_free(g);
        return c.st;
    }
    g->nodes[node].a1 = g->n_lits;
    g->root = g->nodes[0].item = node;
    *out = g;
    return HERD_OK;
}

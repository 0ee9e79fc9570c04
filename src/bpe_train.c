/* bpe_train.c - byte-level BPE training (herd tokenizer train): learns a tiktoken
 * vocabulary that the Llama 3 tokenizer in tokenizer.c then encodes with.
 *
 *   1. herd_bpe_trainer_add: the text is split by the Llama 3 pre-tokenizer
 *      (herd_tokenizer_split: Meta's regex, invalid UTF-8 bytes as pieces of their
 *      own) and each distinct piece ("word") is counted. Pieces never merge across
 *      their boundaries, exactly as the encoder never does.
 *   2. herd_bpe_train: every word starts as its bytes (ranks 0..255 = byte values).
 *      Repeatedly the adjacent pair (a, b) with the highest count summed over all
 *      words (weighted by word count) becomes a new token of rank n_bpe, and every
 *      occurrence, leftmost first, is replaced. Ties go to the smaller (a, b) in
 *      rank order, so training is deterministic and independent of hash order.
 *      Pairs whose bytes would exceed HERD_TOK_MAX_LEN are never counted.
 *      When a's bytes + b's bytes equal an existing token's (a+bc vs ab+c), the
 *      occurrences become that token and no new rank is added.
 *
 * Invariants of the incremental update (pair counts change only in the words that
 * held the merged pair):
 *   - pair.count is exactly the weighted number of adjacent occurrences in words;
 *   - pair.words lists every word that holds the pair (maybe also stale words and
 *     duplicates, skipped by a per-step stamp); new pairs all contain the merged
 *     token z, so only pairs with z ever get new words;
 *   - the max-heap holds, for each live pair, an entry with count >= pair.count
 *     (pair.pushed is the latest entry's count). A pop whose count is stale is
 *     pushed again with the true count, so the first exact pop is the true best.
 * Not here: the encoder (tokenizer.c), file writers (tokenizer_io.c), special
 * tokens (the constructor appends Llama 3.1's 256 after the BPE ranks).
 */
#include "tokenizer_impl.h"

#include <stdlib.h>
#include <string.h>

/* ---- growable arrays and hashing ------------------------------------------------ */

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 1;
    size_t c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return 0;
    *p = q;
    *cap = c;
    return 1;
}

static uint64_t hash_bytes(const char *p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)p[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

static uint64_t hash_u64(uint64_t x) {
    x ^= x >> 33; x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

/* A set of byte strings stored in an arena, id = insertion order. Used for the
 * distinct words of the corpus and for the tokens learned so far. */
typedef struct {
    char *arena;
    size_t n_arena, cap_arena;
    size_t *off;
    uint32_t *len;
    size_t n, cap;        /* strings */
    int32_t *slots;       /* open addressing, -1 empty */
    size_t mask;
} strset;

static void strset_free(strset *s) {
    free(s->arena); free(s->off); free(s->len); free(s->slots);
    memset(s, 0, sizeof *s);
}

static int strset_rehash(strset *s, size_t cap) {
    int32_t *sl = malloc(cap * sizeof *sl);
    if (!sl) return 0;
    memset(sl, 0xff, cap * sizeof *sl);
    for (size_t i = 0; i < s->n; i++) {
        size_t h = hash_bytes(s->arena + s->off[i], s->len[i]) & (cap - 1);
        while (sl[h] >= 0) h = (h + 1) & (cap - 1);
        sl[h] = (int32_t)i;
    }
    free(s->slots);
    s->slots = sl;
    s->mask = cap - 1;
    return 1;
}

/* Id of p[0..n), or -1. */
static int32_t strset_find(const strset *s, const char *p, size_t n) {
    if (!s->slots) return -1;
    for (size_t h = hash_bytes(p, n) & s->mask;; h = (h + 1) & s->mask) {
        int32_t i = s->slots[h];
        if (i < 0) return -1;
        if (s->len[i] == n && memcmp(s->arena + s->off[i], p, n) == 0) return i;
    }
}

/* Id of p[0..n), inserted when new; -1 when out of memory. */
static int32_t strset_add(strset *s, const char *p, size_t n) {
    int32_t id = strset_find(s, p, n);
    if (id >= 0) return id;
    if (s->n >= (size_t)INT32_MAX - 1) return -1;
    if (!s->slots || 2 * (s->n + 1) > s->mask + 1) {
        if (!strset_rehash(s, s->slots ? 2 * (s->mask + 1) : 1024)) return -1;
    }
    if (!grow((void **)&s->arena, &s->cap_arena, s->n_arena + n, 1)) return -1;
    size_t cap = s->cap;
    if (!grow((void **)&s->off, &cap, s->n + 1, sizeof *s->off)) return -1;
    cap = s->cap;
    if (!grow((void **)&s->len, &cap, s->n + 1, sizeof *s->len)) return -1;
    s->cap = cap;
    memcpy(s->arena + s->n_arena, p, n);
    s->off[s->n] = s->n_arena;
    s->len[s->n] = (uint32_t)n;
    s->n_arena += n;
    size_t h = hash_bytes(p, n) & s->mask;
    while (s->slots[h] >= 0) h = (h + 1) & s->mask;
    s->slots[h] = (int32_t)s->n;
    return (int32_t)s->n++;
}

/* ---- the trainer ---------------------------------------------------------------- */

struct herd_bpe_trainer {
    herd_tokenizer *splitter; /* the 256-byte vocabulary: only its pre-tokenizer is used */
    strset words;             /* distinct pieces of length >= 2 */
    int64_t *word_count;      /* (n words) */
    size_t cap_count;
    herd_bpe_stats stats;
};

static int count_piece(void *ctx, const char *p, size_t n) {
    herd_bpe_trainer *tr = ctx;
    tr->stats.n_pieces++;
    if (n < 2) return 1; /* a single byte has no pair: nothing to learn from it */
    size_t before = tr->words.n;
    int32_t w = strset_add(&tr->words, p, n);
    if (w < 0) return 0;
    if (tr->words.n != before) {
        if (!grow((void **)&tr->word_count, &tr->cap_count, tr->words.n, sizeof *tr->word_count))
            return 0;
        tr->word_count[w] = 0;
    }
    tr->word_count[w]++;
    return 1;
}

herd_status herd_bpe_trainer_new(herd_bpe_trainer **out, herd_error *err) {
    *out = NULL;
    herd_bpe_trainer *tr = calloc(1, sizeof *tr);
    if (!tr) return herd_errf(err, HERD_ERR_NOMEM, "tokenizer train: out of memory");
    herd_status st = herd_tokenizer_from_tokens(&tr->splitter, NULL, NULL, 0, err);
    if (st) { free(tr); return st; }
    *out = tr;
    return HERD_OK;
}

void herd_bpe_trainer_free(herd_bpe_trainer *tr) {
    if (!tr) return;
    herd_tokenizer_free(tr->splitter);
    strset_free(&tr->words);
    free(tr->word_count);
    free(tr);
}

herd_status herd_bpe_trainer_add(herd_bpe_trainer *tr, const char *text, size_t len,
                                 herd_error *err) {
    if (!tr || (!text && len))
        return herd_errf(err, HERD_ERR_ARG, "tokenizer train: NULL trainer or text");
    herd_status st = herd_tokenizer_split(tr->splitter, text, len, count_piece, tr, err);
    if (st) return st;
    tr->stats.n_bytes += len;
    tr->stats.n_unique = tr->words.n;
    return HERD_OK;
}

void herd_bpe_trainer_stats(const herd_bpe_trainer *tr, herd_bpe_stats *s) { *s = tr->stats; }

/* ---- pairs and the heap ------------------------------------------------------------ */

typedef struct {
    uint32_t a, b;       /* token ids */
    int64_t count;       /* weighted occurrences */
    int64_t pushed;      /* count of the latest heap entry */
    int32_t *words;      /* words that hold (or held) the pair */
    size_t n_words, cap_words;
    int dirty;           /* count grew during this step */
} pair;

typedef struct {
    int64_t count;
    uint32_t a, b;
} heap_entry;

typedef struct {
    const herd_bpe_trainer *tr;
    strset tokens;        /* id -> bytes, bytes -> id */
    int32_t *sym;         /* all words' symbols, word w at sym[w_off[w] .. + w_len[w]) */
    size_t *w_off;
    uint32_t *w_len;
    uint32_t *stamp;      /* (n words) last step that rewrote the word */
    pair *pairs;
    size_t n_pairs, cap_pairs;
    int32_t *pslots;      /* (a, b) -> pair index */
    size_t pmask;
    heap_entry *heap;
    size_t n_heap, cap_heap;
    int32_t *dirty;
    size_t n_dirty, cap_dirty;
} bpe;

static int heap_less(const heap_entry *x, const heap_entry *y) { /* x pops before y */
    if (x->count != y->count) return x->count > y->count;
    if (x->a != y->a) return x->a < y->a;
    return x->b < y->b;
}

static int heap_push(bpe *s, int64_t count, uint32_t a, uint32_t b) {
    if (!grow((void **)&s->heap, &s->cap_heap, s->n_heap + 1, sizeof *s->heap)) return 0;
    heap_entry e = { count, a, b };
    size_t i = s->n_heap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(&e, &s->heap[p])) break;
        s->heap[i] = s->heap[p];
        i = p;
    }
    s->heap[i] = e;
    return 1;
}

static heap_entry heap_pop(bpe *s) {
    heap_entry top = s->heap[0], last = s->heap[--s->n_heap];
    size_t i = 0, n = s->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && heap_less(&s->heap[c + 1], &s->heap[c])) c++;
        if (!heap_less(&s->heap[c], &last)) break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (n) s->heap[i] = last;
    return top;
}

static int pairs_rehash(bpe *s, size_t cap) {
    int32_t *sl = malloc(cap * sizeof *sl);
    if (!sl) return 0;
    memset(sl, 0xff, cap * sizeof *sl);
    for (size_t i = 0; i < s->n_pairs; i++) {
        uint64_t key = (uint64_t)s->pairs[i].a << 32 | s->pairs[i].b;
        size_t h = hash_u64(key) & (cap - 1);
        while (sl[h] >= 0) h = (h + 1) & (cap - 1);
        sl[h] = (int32_t)i;
    }
    free(s->pslots);
    s->pslots = sl;
    s->pmask = cap - 1;
    return 1;
}

/* Index of pair (a, b); created with count 0 when create is set. -1: absent or OOM. */
static int32_t pair_get(bpe *s, uint32_t a, uint32_t b, int create) {
    uint64_t key = (uint64_t)a << 32 | b;
    size_t h = hash_u64(key) & s->pmask;
    for (;; h = (h + 1) & s->pmask) {
        int32_t i = s->pslots[h];
        if (i < 0) break;
        if (s->pairs[i].a == a && s->pairs[i].b == b) return i;
    }
    if (!create) return -1;
    if (2 * (s->n_pairs + 1) > s->pmask + 1) {
        if (!pairs_rehash(s, 2 * (s->pmask + 1))) return -1;
        return pair_get(s, a, b, 1);
    }
    if (s->n_pairs >= (size_t)INT32_MAX ||
        !grow((void **)&s->pairs, &s->cap_pairs, s->n_pairs + 1, sizeof *s->pairs)) return -1;
    pair *p = &s->pairs[s->n_pairs];
    memset(p, 0, sizeof *p);
    p->a = a;
    p->b = b;
    s->pslots[h] = (int32_t)s->n_pairs;
    return (int32_t)s->n_pairs++;
}

/* Adds delta occurrences of (a, b); lists word w when add_word. Pairs too long to
 * become a token are not tracked. Returns 0 on OOM. */
static int pair_add(bpe *s, uint32_t a, uint32_t b, int64_t delta, int32_t w, int add_word) {
    if (s->tokens.len[a] + s->tokens.len[b] > HERD_TOK_MAX_LEN) return 1;
    int32_t i = pair_get(s, a, b, 1);
    if (i < 0) return 0;
    pair *p = &s->pairs[i];
    p->count += delta;
    if (add_word && (p->n_words == 0 || p->words[p->n_words - 1] != w)) {
        if (!grow((void **)&p->words, &p->cap_words, p->n_words + 1, sizeof *p->words)) return 0;
        p->words[p->n_words++] = w;
    }
    if (delta > 0 && p->count > p->pushed && !p->dirty) {
        if (!grow((void **)&s->dirty, &s->cap_dirty, s->n_dirty + 1, sizeof *s->dirty)) return 0;
        s->dirty[s->n_dirty++] = i;
        p->dirty = 1;
    }
    return 1;
}

/* Pushes the pairs whose count grew, so every live pair has an entry >= its count. */
static int flush_dirty(bpe *s) {
    for (size_t k = 0; k < s->n_dirty; k++) {
        pair *p = &s->pairs[s->dirty[k]];
        p->dirty = 0;
        if (p->count > p->pushed) {
            if (!heap_push(s, p->count, p->a, p->b)) return 0;
            p->pushed = p->count;
        }
    }
    s->n_dirty = 0;
    return 1;
}

/* Rewrites word w with (a, b) -> z, moving its pair counts; 0 on OOM. */
static int merge_word(bpe *s, int32_t w, uint32_t a, uint32_t b, uint32_t z) {
    int32_t *q = s->sym + s->w_off[w];
    uint32_t n = s->w_len[w];
    int64_t c = s->tr->word_count[w];
    uint32_t i = 0;
    while (i + 1 < n && !((uint32_t)q[i] == a && (uint32_t)q[i + 1] == b)) i++;
    if (i + 1 >= n) return 1; /* stale listing: the pair is gone from this word */
    for (uint32_t k = 0; k + 1 < n; k++)
        if (!pair_add(s, (uint32_t)q[k], (uint32_t)q[k + 1], -c, w, 0)) return 0;
    uint32_t m = 0;
    for (uint32_t k = 0; k < n;) {
        if (k + 1 < n && (uint32_t)q[k] == a && (uint32_t)q[k + 1] == b) {
            q[m++] = (int32_t)z;
            k += 2;
        } else q[m++] = q[k++];
    }
    s->w_len[w] = m;
    for (uint32_t k = 0; k + 1 < m; k++) {
        int with_z = (uint32_t)q[k] == z || (uint32_t)q[k + 1] == z;
        if (!pair_add(s, (uint32_t)q[k], (uint32_t)q[k + 1], c, w, with_z)) return 0;
    }
    return 1;
}

static void bpe_free(bpe *s) {
    strset_free(&s->tokens);
    free(s->sym); free(s->w_off); free(s->w_len); free(s->stamp);
    for (size_t i = 0; i < s->n_pairs; i++) free(s->pairs[i].words);
    free(s->pairs); free(s->pslots); free(s->heap); free(s->dirty);
}

/* Words as byte symbols, every pair counted and pushed. */
static int bpe_init(bpe *s) {
    const strset *W = &s->tr->words;
    for (int c = 0; c < 256; c++) {
        char ch = (char)c;
        if (strset_add(&s->tokens, &ch, 1) != c) return 0;
    }
    size_t n_sym = W->n_arena ? W->n_arena : 1, n_w = W->n ? W->n : 1;
    s->sym = malloc(n_sym * sizeof *s->sym);
    s->w_off = malloc(n_w * sizeof *s->w_off);
    s->w_len = malloc(n_w * sizeof *s->w_len);
    s->stamp = calloc(n_w, sizeof *s->stamp);
    if (!s->sym || !s->w_off || !s->w_len || !s->stamp || !pairs_rehash(s, 1 << 16)) return 0;
    for (size_t w = 0; w < W->n; w++) {
        s->w_off[w] = W->off[w];
        s->w_len[w] = W->len[w];
        for (size_t k = 0; k < W->len[w]; k++)
            s->sym[W->off[w] + k] = (uint8_t)W->arena[W->off[w] + k];
        const int32_t *q = s->sym + W->off[w];
        for (size_t k = 0; k + 1 < W->len[w]; k++)
            if (!pair_add(s, (uint32_t)q[k], (uint32_t)q[k + 1], s->tr->word_count[w], (int32_t)w, 1))
                return 0;
    }
    return flush_dirty(s);
}

/* Pops the best live pair into *best; 0 when none is left. */
static int next_best(bpe *s, int32_t *best) {
    while (s->n_heap) {
        heap_entry e = heap_pop(s);
        int32_t i = pair_get(s, e.a, e.b, 0);
        if (i < 0) continue;
        pair *p = &s->pairs[i];
        if (p->count <= 0) { p->pushed = 0; continue; }
        if (p->count != e.count) { /* stale, larger: retry with the true count */
            if (e.count == p->pushed) {
                if (!heap_push(s, p->count, p->a, p->b)) return -1;
                p->pushed = p->count;
            }
            continue;
        }
        *best = i;
        return 1;
    }
    return 0;
}

herd_status herd_bpe_train(herd_bpe_trainer *tr, int n_vocab, FILE *log, herd_tokenizer **out,
                           herd_error *err) {
    *out = NULL;
    if (!tr) return herd_errf(err, HERD_ERR_ARG, "tokenizer train: NULL trainer");
    if (n_vocab < 256 + HERD_TOK_N_SPECIAL || n_vocab > (1 << 30))
        return herd_errf(err, HERD_ERR_ARG, "tokenizer train: vocabulary size %d; expected %d to %d "
                         "(256 bytes + merges + %d special tokens)", n_vocab,
                         256 + HERD_TOK_N_SPECIAL, 1 << 30, HERD_TOK_N_SPECIAL);
    size_t n_bpe_target = (size_t)n_vocab - HERD_TOK_N_SPECIAL;
    bpe s = { .tr = tr };
    herd_status st = HERD_OK;
    uint32_t step = 0;
    if (!bpe_init(&s)) goto oom;
    while (s.tokens.n < n_bpe_target) {
        int32_t best;
        int r = next_best(&s, &best);
        if (r < 0) goto oom;
        if (r == 0) break; /* the corpus has no pair left to merge */
        uint32_t a = s.pairs[best].a, b = s.pairs[best].b;
        int64_t count = s.pairs[best].count;
        char buf[2 * HERD_TOK_MAX_LEN];
        size_t la = s.tokens.len[a], lb = s.tokens.len[b];
        memcpy(buf, s.tokens.arena + s.tokens.off[a], la);
        memcpy(buf + la, s.tokens.arena + s.tokens.off[b], lb);
        size_t before = s.tokens.n;
        int32_t z = strset_add(&s.tokens, buf, la + lb);
        if (z < 0) goto oom;
        step++;
        /* the pair's word list is not appended to while we walk it: z is in no old pair */
        int32_t *wl = s.pairs[best].words;
        size_t n_wl = s.pairs[best].n_words;
        for (size_t k = 0; k < n_wl; k++) {
            int32_t w = wl[k];
            if (s.stamp[w] == step) continue;
            s.stamp[w] = step;
            if (!merge_word(&s, w, a, b, (uint32_t)z)) goto oom;
        }
        pair *p = &s.pairs[best];
        free(p->words);
        p->words = NULL;
        p->n_words = p->cap_words = 0;
        p->pushed = 0;
        if (!flush_dirty(&s)) goto oom;
        if (s.tokens.n != before) {
            tr->stats.n_merges++;
            if (log && (tr->stats.n_merges % 500 == 0 || s.tokens.n == n_bpe_target))
                fprintf(log, "merge %d: rank %zu = %u + %u, count %lld, %u bytes\n",
                        tr->stats.n_merges, s.tokens.n - 1, a, b, (long long)count,
                        s.tokens.len[z]);
        }
    }
    {
        size_t n_new = s.tokens.n - 256;
        const char **toks = malloc((n_new ? n_new : 1) * sizeof *toks);
        size_t *lens = malloc((n_new ? n_new : 1) * sizeof *lens);
        if (!toks || !lens) { free(toks); free(lens); goto oom; }
        for (size_t i = 0; i < n_new; i++) {
            toks[i] = s.tokens.arena + s.tokens.off[256 + i];
            lens[i] = s.tokens.len[256 + i];
        }
        st = herd_tokenizer_from_tokens(out, toks, lens, n_new, err);
        free(toks);
        free(lens);
        tr->stats.n_vocab = st ? 0 : herd_tokenizer_n_vocab(*out);
    }
    bpe_free(&s);
    return st;
oom:
    bpe_free(&s);
    return herd_errf(err, HERD_ERR_NOMEM, "tokenizer train: out of memory (%zu distinct pieces)",
                     tr->words.n);
}

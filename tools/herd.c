/* herd.c - the command line: each subcommand parses its flags, calls herd.h and
 * maps the result to an exit code. On failure it prints one line `herd: ...` on
 * stderr and exits 1 (2 for usage errors). No model logic lives here.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "herd.h"
#include "cli.h"


static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("herd: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("herd: ", stderr);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "; see 'herd %s --help'\n", cmd);
    va_end(ap);
    exit(2);
}

/* ---- argument helpers ---------------------------------------------------- */

typedef struct {
    const char *cmd;
    int argc, i;
    char **argv;
} args;

static const char *next_value(args *a, const char *flag) {
    if (a->i + 1 >= a->argc) usage_error(a->cmd, "%s needs a value", flag);
    return a->argv[++a->i];
}

static long parse_long(args *a, const char *flag, const char *v, long lo, long hi) {
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi)
        usage_error(a->cmd, "%s expects an integer in %ld..%ld, got '%s'", flag, lo, hi, v);
    return x;
}

static double parse_double(args *a, const char *flag, const char *v, double lo, double hi) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !(x >= lo && x <= hi))
        usage_error(a->cmd, "%s expects a number in %g..%g, got '%s'", flag, lo, hi, v);
    return x;
}

/* "1 2 3" or "1,2,3" -> ids */
static int32_t *parse_ids(args *a, const char *v, size_t *n) {
    size_t cap = 16, k = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    const char *p = v;
    while (ids) {
        while (*p == ' ' || *p == ',' || *p == '\t' || *p == '\n') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (errno || end == p || x < 0 || x > INT32_MAX)
            usage_error(a->cmd, "--prompt-ids expects non-negative decimal ids, got '%.20s'", p);
        if (k == cap) ids = realloc(ids, (cap *= 2) * sizeof *ids);
        if (ids) ids[k++] = (int32_t)x;
        p = end;
    }
    if (!ids) die("out of memory");
    if (k == 0) usage_error(a->cmd, "--prompt-ids is empty");
    *n = k;
    return ids;
}

static herd_model *load_model(const char *path) {
    herd_model *m;
    herd_error err;
    if (herd_model_load(&m, path, &err)) die("%s", err.msg);
    return m;
}

static char *read_all(const char *path, size_t *len) {
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) die("cannot open '%s': %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n - 1, f);
        if (n < cap - 1) break;
        buf = realloc(buf, cap *= 2);
    }
    if (!buf) die("out of memory reading '%s'", path);
    if (ferror(f)) die("error reading '%s'", path);
    if (f != stdin) fclose(f);
    buf[n] = 0;
    *len = n;
    return buf;
}

static int is_help(const char *s) { return !strcmp(s, "-h") || !strcmp(s, "--help"); }

static void print_ids(const int32_t *ids, size_t n) {
    for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
    printf("\n");
}

/* ---- tokenize ------------------------------------------------------------- */

static const char *HELP_TOKENIZE =
    "usage: herd tokenize -m MODEL [--bos] [--special] (TEXT | -f FILE)\n"
    "       herd tokenize -m MODEL --chat MESSAGES.json\n"
    "Prints token ids, decimal, space-separated, on one line.\n"
    "  -m MODEL        HF directory or .gguf file (default " DEFAULT_MODEL ")\n"
    "  --bos           prepend <|begin_of_text|>\n"
    "  --special       parse special-token text such as <|eot_id|> as special tokens\n"
    "                  (default: ordinary text, as Meta's reference tokenizer does)\n"
    "  -f FILE         tokenize the bytes of FILE exactly ('-' for stdin)\n"
    "  --chat FILE     render an OpenAI-style JSON messages array with the Llama 3.1 chat\n"
    "                  format, ending with the assistant header\n"
    "Invalid UTF-8 bytes are tokenized as single-byte tokens.\n";

static int cmd_tokenize(int argc, char **argv) {
    args a = { "tokenize", argc, 0, argv };
    const char *model = DEFAULT_MODEL, *file = NULL, *text = NULL, *chat = NULL;
    int bos = 0, special = 0;
    for (a.i = 1; a.i < argc; a.i++) {
        const char *s = argv[a.i];
        if (is_help(s)) { fputs(HELP_TOKENIZE, stdout); return 0; }
        else if (!strcmp(s, "-m")) model = next_value(&a, s);
        else if (!strcmp(s, "-f")) file = next_value(&a, s);
        else if (!strcmp(s, "--chat")) chat = next_value(&a, s);
        else if (!strcmp(s, "--bos")) bos = 1;
        else if (!strcmp(s, "--special")) special = 1;
        else if (s[0] == '-' && s[1]) usage_error(a.cmd, "unknown flag '%s'", s);
        else if (!text) text = s;
        else usage_error(a.cmd, "more than one TEXT given; quote the text");
    }
    if (!!file + !!text + !!chat != 1) usage_error(a.cmd, "give exactly one of TEXT, -f FILE or --chat FILE");
    herd_model *m = load_model(model);
    const herd_tokenizer *t = herd_model_tokenizer(m);
    herd_error err;
    int32_t *ids = NULL;
    size_t n = 0, len;
    if (chat) {
        char *json = read_all(chat, &len);
        herd_chat_message *msgs;
        size_t n_msgs;
        if (herd_chat_parse_json(json, len, &msgs, &n_msgs, &err)) die("%s: %s", chat, err.msg);
        if (herd_chat_render(t, msgs, n_msgs, 1, &ids, &n, &err)) die("%s", err.msg);
        herd_chat_messages_free(msgs, n_msgs);
        free(json);
    } else {
        char *buf = file ? read_all(file, &len) : NULL;
        const char *src = file ? buf : text;
        if (!file) len = strlen(text);
        if (herd_tokenize(t, src, len, bos, special, &ids, &n, &err)) die("%s", err.msg);
        free(buf);
    }
    print_ids(ids, n);
    free(ids);
    herd_model_free(m);
    return 0;
}

/* ---- generation shared by generate and chat ------------------------------- */

/* --kv f32|f16|q8_0: the KV cache's element type. The CLI's default is F16 (half
 * the memory and cache traffic of F32; outputs compared bit for bit with recorded
 * f32-KV references pass --kv f32). */
#define KV_DEFAULT HERD_F16
static int parse_kv(args *a, const char *flag, const char *v) {
    if (!strcasecmp(v, "f32")) return HERD_F32;
    if (!strcasecmp(v, "f16")) return HERD_F16;
    if (!strcasecmp(v, "q8_0")) return HERD_Q8_0;
    usage_error(a->cmd, "%s expects f32, f16 or q8_0, got '%s'", flag, v);
    return HERD_F32;
}
#define HELP_KV "  --kv TYPE           KV cache type: f16 (default), f32 or q8_0\n"

typedef struct {
    const char *model;
    int n_predict, n_threads, n_ctx, kv_type;
    herd_sampler_params sp;
    int temp_set, top_p_set, top_k_set;
    int json;                  /* --json: the output is a JSON object */
    const char *json_schema;   /* --json-schema FILE: JSON that the schema accepts */
    const char *lora;          /* --lora PATH: an adapter applied to the model */
    float lora_scale;          /* --lora-scale S (default 1) */
} gen_opts;

static void gen_defaults(gen_opts *o) {
    memset(o, 0, sizeof *o);
    o->model = DEFAULT_MODEL;
    o->n_predict = 128;
    o->kv_type = KV_DEFAULT;
    o->sp = herd_sampler_default_params();
    o->sp.seed = (uint64_t)time(NULL);
    o->lora_scale = 1;
}

/* Parses a flag shared by generate and chat; returns 1 when it was one. */
static int gen_flag(args *a, gen_opts *o) {
    const char *s = a->argv[a->i];
    if (!strcmp(s, "-m")) o->model = next_value(a, s);
    else if (!strcmp(s, "-n")) o->n_predict = (int)parse_long(a, s, next_value(a, s), 0, 1 << 24);
    else if (!strcmp(s, "-t")) o->n_threads = (int)parse_long(a, s, next_value(a, s), 1, 1024);
    else if (!strcmp(s, "-c")) o->n_ctx = (int)parse_long(a, s, next_value(a, s), 1, 1 << 22);
    else if (!strcmp(s, "--kv")) o->kv_type = parse_kv(a, s, next_value(a, s));
    else if (!strcmp(s, "--temp")) { o->sp.temperature = (float)parse_double(a, s, next_value(a, s), 0, 100); o->temp_set = 1; }
    else if (!strcmp(s, "--top-k")) { o->sp.top_k = (int)parse_long(a, s, next_value(a, s), 0, 1 << 24); o->top_k_set = 1; }
    else if (!strcmp(s, "--top-p")) { o->sp.top_p = (float)parse_double(a, s, next_value(a, s), 1e-9, 1); o->top_p_set = 1; }
    else if (!strcmp(s, "--min-p")) o->sp.min_p = (float)parse_double(a, s, next_value(a, s), 0, 1);
    else if (!strcmp(s, "--repeat-penalty")) o->sp.repeat_penalty = (float)parse_double(a, s, next_value(a, s), 1e-3, 100);
    else if (!strcmp(s, "--repeat-last-n")) o->sp.repeat_last_n = (int)parse_long(a, s, next_value(a, s), 0, 1 << 24);
    else if (!strcmp(s, "--seed")) o->sp.seed = (uint64_t)parse_long(a, s, next_value(a, s), 0, LONG_MAX);
    else if (!strcmp(s, "--json")) o->json = 1;
    else if (!strcmp(s, "--json-schema")) o->json_schema = next_value(a, s);
    else if (!strcmp(s, "--lora")) o->lora = next_value(a, s);
    else if (!strcmp(s, "--lora-scale")) o->lora_scale = (float)parse_double(a, s, next_value(a, s), -1e6, 1e6);
    else return 0;
    return 1;
}

/* --json / --json-schema FILE: the grammar sampling keeps to (NULL: free text). */
static herd_json_grammar *load_grammar(const gen_opts *o, const herd_model *m, herd_json_vocab **vocab) {
    *vocab = NULL;
    if (!o->json && !o->json_schema) return NULL;
    size_t len;
    char *schema = o->json_schema ? read_all(o->json_schema, &len) : NULL;
    const herd_config *c = herd_model_config(m);
    herd_json_vocab *v;
    herd_json_grammar *g;
    herd_error err;
    if (herd_json_vocab_new(&v, herd_model_tokenizer(m), c->eos_ids, c->n_eos, &err)) die("%s", err.msg);
    if (herd_json_grammar_new(&g, v, schema, &err))
        die("--json-schema %s: %s", o->json_schema ? o->json_schema : "", err.msg);
    free(schema);
    *vocab = v;
    return g;
}

/* --lora PATH [--lora-scale S]: the adapter s carries from now on (NULL: none). */
static herd_lora *attach_lora(const char *path, float scale, const herd_model *m, herd_session *s) {
    if (!path) return NULL;
    herd_lora *l;
    herd_error err;
    if (herd_lora_load(&l, m, path, scale, &err) || herd_session_set_lora(s, l, &err)) die("--lora: %s", err.msg);
    return l;
}
#define HELP_LORA \
    "  --lora PATH         apply a LoRA adapter: a PEFT directory (adapter_config.json +\n" \
    "                      adapter_model.safetensors) or a llama.cpp GGUF adapter\n" \
    "  --lora-scale S      multiply the adapter's alpha / r by S (default 1)\n"

/* Model defaults (generation_config.json) for what the user did not set. */
static void apply_model_defaults(gen_opts *o, const herd_model *m) {
    const herd_config *c = herd_model_config(m);
    if (!o->temp_set && c->default_temperature >= 0) o->sp.temperature = c->default_temperature;
    if (!o->top_p_set && c->default_top_p > 0) o->sp.top_p = c->default_top_p;
    if (!o->top_k_set && c->default_top_k > 0) o->sp.top_k = c->default_top_k;
}

static int is_stop(const herd_config *c, int32_t id) {
    for (int i = 0; i < c->n_eos; i++)
        if (c->eos_ids[i] == id) return 1;
    return 0;
}

/* Generates up to n tokens after the session's current position (the prompt's
 * logits must be current). Streams text (or collects ids). Returns the count. */
static int run_generation(herd_session *s, const herd_model *m, herd_sampler *smp, int32_t *hist,
                          size_t n_hist, int n, int print_ids_only, int32_t *out_ids, const herd_json_grammar *g) {
    const herd_config *c = herd_model_config(m);
    const herd_tokenizer *t = herd_model_tokenizer(m);
    herd_detok dt;
    herd_detok_init(&dt);
    herd_error err;
    herd_json_state *js = NULL;
    float *masked = NULL; /* (V) the logits a refused token is sampled again from */
    if (g && (herd_json_state_new(&js, g, &err) ||
              !(masked = malloc((size_t)herd_tokenizer_n_vocab(t) * sizeof *masked))))
        die("out of memory for --json");
    int k = 0;
    for (; k < n; k++) {
        const float *logits = herd_session_logits(s);
        int32_t id = herd_sampler_sample(smp, logits, hist, n_hist + k);
        if (js && !herd_json_state_allows(js, id)) { /* sample again among the tokens the grammar allows */
            memcpy(masked, logits, (size_t)herd_tokenizer_n_vocab(t) * sizeof *masked);
            if (!herd_json_state_mask(js, masked)) break;
            id = herd_sampler_sample(smp, masked, hist, n_hist + k);
        }
        if (is_stop(c, id)) break;
        if (js) herd_json_state_accept(js, id);
        hist[n_hist + k] = id;
        if (out_ids) out_ids[k] = id;
        if (print_ids_only) printf(k ? " %d" : "%d", id);
        else {
            size_t len;
            const char *txt = herd_detok_push(&dt, t, id, &len);
            fwrite(txt, 1, len, stdout);
            fflush(stdout);
        }
        if (k + 1 == n) { k++; break; }
        if (herd_session_pos(s) >= herd_session_n_ctx(s)) { k++; break; }
        if (herd_session_eval(s, &id, 1, NULL, &err)) die("%s", err.msg);
    }
    if (!print_ids_only) {
        size_t len;
        const char *txt = herd_detok_flush(&dt, &len);
        fwrite(txt, 1, len, stdout);
    }
    herd_json_state_free(js);
    free(masked);
    return k;
}

static const char *HELP_GENERATE =
    "usage: herd generate -m MODEL (-p TEXT | --prompt-ids \"ID ID ...\") [options]\n"
    "Raw completion (no chat template); prints the generated text.\n"
    "  -m MODEL            HF directory or .gguf file (default " DEFAULT_MODEL ")\n"
    "  -p TEXT             prompt, encoded with <|begin_of_text|> first\n"
    "  --prompt-ids IDS    prompt token ids, used verbatim (space or comma separated)\n"
    "  -n N                tokens to generate (default 128); stops early on an end id\n"
    "  --temp T            temperature; 0 is greedy (default: generation_config.json, else 0.6)\n"
    "  --top-k K           keep the K most likely tokens (default 0 = off)\n"
    "  --top-p P           nucleus sampling as Meta's sample_top_p (default: model, else 0.9)\n"
    "  --min-p P           drop tokens below P x the top probability (default 0 = off)\n"
    "  --repeat-penalty R  penalise the last --repeat-last-n (64) tokens (default 1 = off)\n"
    "  --seed S            sampling seed (default: time)\n"
    "  --json              write a JSON object: sampling keeps to JSON (as response_format json_object)\n"
    "  --json-schema FILE  write JSON that the JSON Schema in FILE accepts (keywords: see README)\n"
    "  -t THREADS          threads (default: all cores)\n"
    "  -c CTX              context size (default min(model maximum, 8192))\n"
    HELP_KV
    HELP_LORA
    "  --ids               print the generated ids (one line) instead of text\n";

static int cmd_generate(int argc, char **argv) {
    args a = { "generate", argc, 0, argv };
    gen_opts o;
    gen_defaults(&o);
    const char *prompt = NULL, *prompt_ids = NULL;
    int ids_out = 0;
    for (a.i = 1; a.i < argc; a.i++) {
        const char *s = argv[a.i];
        if (is_help(s)) { fputs(HELP_GENERATE, stdout); return 0; }
        if (gen_flag(&a, &o)) continue;
        if (!strcmp(s, "-p")) prompt = next_value(&a, s);
        else if (!strcmp(s, "--prompt-ids")) prompt_ids = next_value(&a, s);
        else if (!strcmp(s, "--ids")) ids_out = 1;
        else usage_error(a.cmd, "unknown argument '%s'", s);
    }
    if (!prompt == !prompt_ids) usage_error(a.cmd, "give exactly one of -p TEXT or --prompt-ids");
    herd_model *m = load_model(o.model);
    apply_model_defaults(&o, m);
    herd_error err;
    int32_t *ids;
    size_t n;
    if (prompt) {
        if (herd_tokenize(herd_model_tokenizer(m), prompt, strlen(prompt), 1, 0, &ids, &n, &err))
            die("%s", err.msg);
    } else {
        ids = parse_ids(&a, prompt_ids, &n);
    }
    herd_session_params sp = herd_session_default_params();
    sp.n_ctx = o.n_ctx;
    sp.n_threads = o.n_threads;
    sp.kv_type = o.kv_type;
    herd_session *s;
    if (herd_session_new(&s, m, sp, &err)) die("%s", err.msg);
    herd_lora *lora = attach_lora(o.lora, o.lora_scale, m, s);
    if (n > (size_t)herd_session_n_ctx(s))
        die("the prompt has %zu tokens but the context holds %d; pass a larger -c or a shorter "
            "prompt", n, herd_session_n_ctx(s));
    if (herd_session_eval(s, ids, (int)n, NULL, &err)) die("%s", err.msg);
    herd_sampler *smp;
    if (herd_sampler_new(&smp, o.sp, herd_model_config(m)->vocab_size, &err)) die("%s", err.msg);
    int32_t *hist = malloc((n + (size_t)o.n_predict + 1) * sizeof *hist);
    if (!hist) die("out of memory");
    memcpy(hist, ids, n * sizeof *ids);
    herd_json_vocab *jv;
    herd_json_grammar *g = load_grammar(&o, m, &jv);
    run_generation(s, m, smp, hist, n, o.n_predict, ids_out, NULL, g);
    printf("\n");
    herd_json_grammar_free(g);
    herd_json_vocab_free(jv);
    free(hist);
    free(ids);
    herd_sampler_free(smp);
    herd_session_free(s);
    herd_lora_free(lora);
    herd_model_free(m);
    return 0;
}

/* ---- perplexity ------------------------------------------------------------ */

static const char *HELP_PERPLEXITY =
    "usage: herd perplexity -m MODEL (--prompt-ids \"ID ID ...\" | -f FILE [-c CTX])\n"
    "Mean negative log-likelihood (natural log) of tokens 1..n-1 given their prefix.\n"
    "  --prompt-ids IDS  one window, used verbatim (no BOS added)\n"
    "  -f FILE           text, split into windows of CTX tokens, each starting with BOS\n"
    "  -c CTX            window size for -f (default 512)\n"
    "  -t THREADS        threads (default: all cores)\n"
    "  --kv TYPE         KV cache type: f16 (default), f32 or q8_0\n"
    "  --lora PATH       score with a LoRA adapter applied (--lora-scale S: its scale x S)\n"
    "The last lines are 'nll: X' and 'ppl: Y'.\n";

/* nll of ids[1..n-1] in one window, evaluated from position 0. */
static double window_nll(herd_session *s, const herd_model *m, const int32_t *ids, int n,
                         float *logits, size_t *count) {
    herd_error err;
    int V = herd_model_config(m)->vocab_size;
    herd_session_reset(s);
    if (herd_session_eval(s, ids, n, logits, &err)) die("%s", err.msg);
    double total = 0;
    for (int i = 0; i + 1 < n; i++) {
        const float *l = logits + (size_t)i * V;
        float mx = l[0];
        for (int j = 1; j < V; j++) mx = l[j] > mx ? l[j] : mx;
        double sum = 0;
        for (int j = 0; j < V; j++) sum += exp((double)l[j] - mx);
        total += log(sum) + mx - l[ids[i + 1]];
    }
    *count += (size_t)(n - 1);
    return total;
}

static int cmd_perplexity(int argc, char **argv) {
    args a = { "perplexity", argc, 0, argv };
    const char *model = DEFAULT_MODEL, *prompt_ids = NULL, *file = NULL, *lora_path = NULL;
    int n_ctx = 512, n_threads = 0, kv_type = KV_DEFAULT;
    float lora_scale = 1;
    for (a.i = 1; a.i < argc; a.i++) {
        const char *s = argv[a.i];
        if (is_help(s)) { fputs(HELP_PERPLEXITY, stdout); return 0; }
        else if (!strcmp(s, "-m")) model = next_value(&a, s);
        else if (!strcmp(s, "--prompt-ids")) prompt_ids = next_value(&a, s);
        else if (!strcmp(s, "-f")) file = next_value(&a, s);
        else if (!strcmp(s, "-c")) n_ctx = (int)parse_long(&a, s, next_value(&a, s), 2, 1 << 22);
        else if (!strcmp(s, "-t")) n_threads = (int)parse_long(&a, s, next_value(&a, s), 1, 1024);
        else if (!strcmp(s, "--kv")) kv_type = parse_kv(&a, s, next_value(&a, s));
        else if (!strcmp(s, "--lora")) lora_path = next_value(&a, s);
        else if (!strcmp(s, "--lora-scale")) lora_scale = (float)parse_double(&a, s, next_value(&a, s), -1e6, 1e6);
        else usage_error(a.cmd, "unknown argument '%s'", s);
    }
    if (!prompt_ids == !file) usage_error(a.cmd, "give exactly one of --prompt-ids or -f FILE");
    herd_model *m = load_model(model);
    herd_error err;
    int32_t *ids;
    size_t n;
    if (prompt_ids) {
        ids = parse_ids(&a, prompt_ids, &n);
        if (n < 2) usage_error(a.cmd, "--prompt-ids needs at least 2 ids");
        n_ctx = (int)n;
    } else {
        size_t len;
        char *text = read_all(file, &len);
        if (herd_tokenize(herd_model_tokenizer(m), text, len, 0, 0, &ids, &n, &err)) die("%s", err.msg);
        free(text);
    }
    herd_session_params sp = herd_session_default_params();
    sp.n_ctx = n_ctx;
    sp.n_threads = n_threads;
    sp.kv_type = kv_type;
    herd_session *s;
    if (herd_session_new(&s, m, sp, &err)) die("%s", err.msg);
    herd_lora *lora = attach_lora(lora_path, lora_scale, m, s);
    size_t V = (size_t)herd_model_config(m)->vocab_size;
    float *logits = malloc((size_t)n_ctx * V * sizeof(float));
    int32_t *win = malloc((size_t)n_ctx * sizeof *win);
    if (!logits || !win) die("out of memory for %d x %zu logits", n_ctx, V);
    double total = 0;
    size_t count = 0;
    if (prompt_ids) {
        total = window_nll(s, m, ids, (int)n, logits, &count);
    } else {
        /* windows of n_ctx tokens: BOS + (n_ctx - 1) text tokens */
        int bos = herd_model_config(m)->bos_id, w = 0;
        for (size_t i = 0; i < n; i += (size_t)(n_ctx - 1), w++) {
            size_t k = n - i < (size_t)(n_ctx - 1) ? n - i : (size_t)(n_ctx - 1);
            if (k < 1) break;
            win[0] = bos;
            memcpy(win + 1, ids + i, k * sizeof *ids);
            total += window_nll(s, m, win, (int)k + 1, logits, &count);
            fprintf(stderr, "window %d: running ppl %.4f\n", w + 1, exp(total / count));
        }
        if (count == 0) die("%s: no tokens to score", file);
    }
    printf("tokens: %zu\nnll: %.6f\nppl: %.6f\n", count, total / count, exp(total / count));
    free(logits);
    free(win);
    free(ids);
    herd_session_free(s);
    herd_lora_free(lora);
    herd_model_free(m);
    return 0;
}

/* ---- chat ----------------------------------------------------------------- */

static const char *HELP_CHAT =
    "usage: herd chat -m MODEL [-s SYSTEM] [-p MESSAGE] [generation options]\n"
    "Chat with the Llama 3.1 prompt format, streaming. With -p: one turn, then exit.\n"
    "Without: reads one message per line from stdin; an empty line or EOF ends.\n"
    "  -s SYSTEM     system prompt\n"
    "  -p MESSAGE    one user message\n"
    "  -n N          max tokens per reply (default 512)\n"
    "  other options as 'herd generate' (--temp, --top-p, --top-k, --min-p, --seed, -t, -c, --kv,\n"
    "                --json, --json-schema FILE: each reply is such JSON, --lora PATH, --lora-scale S)\n";

static int cmd_chat(int argc, char **argv) {
    args a = { "chat", argc, 0, argv };
    gen_opts o;
    gen_defaults(&o);
    o.n_predict = 512;
    const char *system = NULL, *one = NULL;
    for (a.i = 1; a.i < argc; a.i++) {
        const char *s = argv[a.i];
        if (is_help(s)) { fputs(HELP_CHAT, stdout); return 0; }
        if (gen_flag(&a, &o)) continue;
        if (!strcmp(s, "-s")) system = next_value(&a, s);
        else if (!strcmp(s, "-p")) one = next_value(&a, s);
        else usage_error(a.cmd, "unknown argument '%s'", s);
    }
    herd_model *m = load_model(o.model);
    apply_model_defaults(&o, m);
    herd_json_vocab *jv;
    herd_json_grammar *g = load_grammar(&o, m, &jv);
    const herd_tokenizer *t = herd_model_tokenizer(m);
    herd_error err;
    herd_session_params sp = herd_session_default_params();
    sp.n_ctx = o.n_ctx;
    sp.n_threads = o.n_threads;
    sp.kv_type = o.kv_type;
    herd_session *s;
    if (herd_session_new(&s, m, sp, &err)) die("%s", err.msg);
    herd_lora *lora = attach_lora(o.lora, o.lora_scale, m, s);
    herd_sampler *smp;
    if (herd_sampler_new(&smp, o.sp, herd_model_config(m)->vocab_size, &err)) die("%s", err.msg);
    int n_ctx = herd_session_n_ctx(s);
    int32_t *done = malloc((size_t)n_ctx * sizeof *done); /* ids in the cache */
    int32_t *hist = malloc((size_t)n_ctx * 2 * sizeof *hist);
    size_t cap = 16, n_msgs = 0;
    herd_chat_message *msgs = malloc(cap * sizeof *msgs);
    char **owned = malloc(cap * sizeof *owned);
    if (!done || !hist || !msgs || !owned) die("out of memory");
    if (system) { msgs[n_msgs] = (herd_chat_message){ "system", system, 0 }; owned[n_msgs++] = NULL; }
    int interactive = one == NULL;
    char *line = NULL;
    size_t line_cap = 0;
    for (;;) {
        const char *user = one;
        if (interactive) {
            if (isatty(0)) { fputs("> ", stdout); fflush(stdout); }
            ssize_t r = getline(&line, &line_cap, stdin);
            if (r <= 0) break;
            while (r > 0 && (line[r - 1] == '\n' || line[r - 1] == '\r')) line[--r] = 0;
            if (r == 0) break;
            user = line;
        }
        if (n_msgs + 2 > cap) {
            cap *= 2;
            msgs = realloc(msgs, cap * sizeof *msgs);
            owned = realloc(owned, cap * sizeof *owned);
            if (!msgs || !owned) die("out of memory");
        }
        owned[n_msgs] = strdup(user);
        msgs[n_msgs] = (herd_chat_message){ "user", owned[n_msgs], 0 };
        n_msgs++;
        int32_t *ids;
        size_t n;
        if (herd_chat_render(t, msgs, n_msgs, 1, &ids, &n, &err)) die("%s", err.msg);
        if (n + 1 > (size_t)n_ctx) die("the conversation has %zu tokens but the context holds %d; "
                                       "pass a larger -c", n, n_ctx);
        /* keep the cached prefix that the new rendering shares */
        int keep = 0;
        while (keep < herd_session_pos(s) && (size_t)keep < n && done[keep] == ids[keep]) keep++;
        if ((size_t)keep == n) keep--; /* re-evaluate one token to get fresh logits */
        herd_session_rewind(s, keep);
        if (herd_session_eval(s, ids + keep, (int)n - keep, NULL, &err)) die("%s", err.msg);
        memcpy(done, ids, n * sizeof *ids);
        memcpy(hist, ids, n * sizeof *ids);
        int room = n_ctx - (int)n;
        int limit = o.n_predict < room ? o.n_predict : room;
        int32_t *reply = malloc(((size_t)limit + 1) * sizeof *reply);
        if (!reply) die("out of memory");
        int k = run_generation(s, m, smp, hist, n, limit, 0, reply, g);
        printf("\n");
        fflush(stdout);
        /* the cache now holds the reply's tokens except the last sampled one */
        for (int i = 0; i < k && (size_t)i + n < (size_t)n_ctx; i++) done[n + i] = reply[i];
        /* the reply as text becomes the assistant message */
        size_t tl = 0, tcap = 64;
        char *txt = malloc(tcap);
        for (int i = 0; i < k && txt; i++) {
            size_t bl;
            const char *b = herd_token_bytes(t, reply[i], &bl);
            if (tl + bl + 1 > tcap) txt = realloc(txt, tcap = 2 * (tl + bl + 1));
            if (txt) { memcpy(txt + tl, b, bl); tl += bl; }
        }
        if (!txt) die("out of memory");
        txt[tl] = 0;
        owned[n_msgs] = txt;
        msgs[n_msgs] = (herd_chat_message){ "assistant", txt, 0 };
        n_msgs++;
        free(reply);
        free(ids);
        if (!interactive) break;
    }
    for (size_t i = 0; i < n_msgs; i++) free(owned[i]);
    free(owned);
    free(msgs);
    free(line);
    free(done);
    free(hist);
    herd_json_grammar_free(g);
    herd_json_vocab_free(jv);
    herd_sampler_free(smp);
    herd_session_free(s);
    herd_lora_free(lora);
    herd_model_free(m);
    return 0;
}

/* ---- info ------------------------------------------------------------------ */

static int cmd_info(int argc, char **argv) {
    if (argc >= 2 && is_help(argv[1])) {
        puts("usage: herd info MODEL\nPrints architecture, hyperparameters, tensor types and parameter count.");
        return 0;
    }
    if (argc != 2) usage_error("info", "expected exactly one MODEL");
    herd_model *m = load_model(argv[1]);
    herd_model_print_info(m, stdout);
    herd_model_free(m);
    return 0;
}

/* ---- bench ----------------------------------------------------------------- */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static const char *HELP_BENCH =
    "usage: herd bench -m MODEL [-p 512] [-n 128] [-d 0] [-t THREADS] [-r REPS] [--kv TYPE] [--lora PATH] [--json]\n"
    "Prompt processing (pp: P tokens in one batch) and generation (tg: N tokens one\n"
    "at a time), each from an empty cache (or -d's), in tokens/s, median of REPS (5),\n"
    "after one warm-up, as llama-bench measures them. -p 0 or -n 0 skips that test.\n"
    "-d D: the cache holds D tokens before each test (filled once, not timed), as\n"
    "llama-bench -d: the speed at depth D, where attention reads a longer cache.\n"
    "--kv f16 (default), f32 or q8_0: the KV cache type. --lora PATH: with an adapter applied.\n"
    "With --json the last line is one JSON object with pp_tokens_per_s and tg_tokens_per_s.\n";

static int cmd_bench(int argc, char **argv) {
    args a = { "bench", argc, 0, argv };
    const char *model = DEFAULT_MODEL;
    int pp = 512, tg = 128, depth = 0, threads = 0, reps = 5, json = 0, kv_type = KV_DEFAULT;
    const char *lora_path = NULL;
    for (a.i = 1; a.i < argc; a.i++) {
        const char *s = argv[a.i];
        if (is_help(s)) { fputs(HELP_BENCH, stdout); return 0; }
        else if (!strcmp(s, "-m")) model = next_value(&a, s);
        else if (!strcmp(s, "-p")) pp = (int)parse_long(&a, s, next_value(&a, s), 0, 1 << 20);
        else if (!strcmp(s, "-n")) tg = (int)parse_long(&a, s, next_value(&a, s), 0, 1 << 20);
        else if (!strcmp(s, "-d")) depth = (int)parse_long(&a, s, next_value(&a, s), 0, 1 << 20);
        else if (!strcmp(s, "-t")) threads = (int)parse_long(&a, s, next_value(&a, s), 1, 1024);
        else if (!strcmp(s, "-r")) reps = (int)parse_long(&a, s, next_value(&a, s), 1, 1000);
        else if (!strcmp(s, "--json")) json = 1;
        else if (!strcmp(s, "--lora")) lora_path = next_value(&a, s);
        else if (!strcmp(s, "--kv")) kv_type = parse_kv(&a, s, next_value(&a, s));
        else usage_error(a.cmd, "unknown argument '%s'", s);
    }
    herd_model *m = load_model(model);
    herd_error err;
    herd_session_params sp = herd_session_default_params();
    sp.n_ctx = depth + (pp > tg ? pp : tg) + 1;
    if (sp.n_ctx > herd_model_config(m)->max_seq_len)
        die("-d %d plus the longer test (%d) needs a %d-token context; the model's maximum is %d", depth,
            pp > tg ? pp : tg, sp.n_ctx, herd_model_config(m)->max_seq_len);
    sp.n_threads = threads;
    sp.kv_type = kv_type;
    herd_session *s;
    if (herd_session_new(&s, m, sp, &err)) die("%s", err.msg);
    herd_lora *lora = attach_lora(lora_path, 1, m, s);
    int V = herd_model_config(m)->vocab_size, n = depth + (pp > tg ? pp : tg);
    int32_t *ids = malloc(((size_t)n + 1) * sizeof *ids);
    double *t_pp = calloc((size_t)reps, sizeof(double)), *t_tg = calloc((size_t)reps, sizeof(double));
    if (!ids || !t_pp || !t_tg) die("out of memory");
    uint64_t x = 42; /* random ids from a fixed xorshift stream */
    for (int i = 0; i <= n; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        ids[i] = (int32_t)(x % (uint64_t)V);
    }
    double pp_ts = 0, tg_ts = 0;
    if (depth && herd_session_eval(s, ids, depth, NULL, &err)) die("%s", err.msg); /* split into rounds there */
    const int32_t *run = ids + depth;
    for (int r = -1; r < reps; r++) { /* r = -1: warm-up */
        if (pp) {
            herd_session_rewind(s, depth);
            double t0 = now_s();
            if (herd_session_eval(s, run, pp, NULL, &err)) die("%s", err.msg);
            if (r >= 0) t_pp[r] = pp / (now_s() - t0);
        }
        if (tg) {
            herd_session_rewind(s, depth);
            double t0 = now_s();
            for (int i = 0; i < tg; i++)
                if (herd_session_eval(s, run + i, 1, NULL, &err)) die("%s", err.msg);
            if (r >= 0) t_tg[r] = tg / (now_s() - t0);
        }
    }
    if (pp) pp_ts = median(t_pp, reps);
    if (tg) tg_ts = median(t_tg, reps);
    const herd_config *c = herd_model_config(m);
    printf("model: %s  params %.1fM  threads %d  reps %d\n", model,
           herd_model_n_params(m) / 1e6, threads ? threads : 0, reps);
    char at[32] = "";
    if (depth) snprintf(at, sizeof at, " @ d%d", depth);
    if (pp) printf("pp%d%s: %8.2f tok/s (median; min %.2f, max %.2f)\n", pp, at, pp_ts, t_pp[0], t_pp[reps - 1]);
    if (tg) printf("tg%d%s: %8.2f tok/s (median; min %.2f, max %.2f)\n", tg, at, tg_ts, t_tg[0], t_tg[reps - 1]);
    if (json)
        printf("{\"model\": \"%s\", \"n_params\": %llu, \"dim\": %d, \"threads\": %d, \"reps\": %d, "
               "\"pp\": %d, \"tg\": %d, \"depth\": %d, \"pp_tokens_per_s\": %.3f, \"tg_tokens_per_s\": %.3f}\n",
               model, (unsigned long long)herd_model_n_params(m), c->dim, threads, reps, pp, tg, depth,
               pp_ts, tg_ts);
    free(ids);
    free(t_pp);
    free(t_tg);
    herd_session_free(s);
    herd_lora_free(lora);
    herd_model_free(m);
    return 0;
}

/* ---- init ------------------------------------------------------------------ */

static const char *HELP_INIT =
    "usage: herd init -o DIR [--gguf FILE] [--type F32|F16|BF16|Q8_0|Q4_0] [shape flags]\n"
    "Writes a random-weight Llama 3.1-architecture model: an HF directory DIR\n"
    "(config.json, generation_config.json, model.safetensors (BF16), tokenizer.model,\n"
    "tokenizer.json) and, with --gguf, a GGUF file of --type (default F32).\n"
    "  --dim N --layers N --heads N --kv-heads N --head-dim N --ffn N   shape\n"
    "                      (default: dim 64, 2 layers, 4 heads, 2 kv heads, ffn 192)\n"
    "  --preset NAME       tiny | llama3.2-1b | llama3.2-3b | llama3.1-8b\n"
    "  --config FILE       take the shape from a Hugging Face config.json\n"
    "                      (flags after it override it)\n"
    "  --tie               tie the output matrix to the embedding\n"
    "  --ctx N             max_position_embeddings (default 131072)\n"
    "  --rope-factor F     llama3 rope scaling factor (default 8; 0 disables scaling)\n"
    "  --tokenizer PATH    tokenizer.model, tokenizer.json, HF dir or GGUF to take the\n"
    "                      vocabulary from (default: 256 byte tokens + 256 specials)\n"
    "  --seed S            weight seed (default 1)\n";

static int cmd_init(int argc, char **argv) {
    args a = { "init", argc, 0, argv };
    herd_init_params p;
    memset(&p, 0, sizeof p);
    herd_config_default(&p.config);
    herd_config *c = &p.config;
    c->dim = 64; c->n_layers = 2; c->n_heads = 4; c->n_kv_heads = 2; c->ffn_dim = 192;
    p.seed = 1;
    const char *out = NULL, *gguf = NULL, *type = "F32";
    for (a.i = 1; a.i < argc; a.i++) {
        const char *s = argv[a.i];
        if (is_help(s)) { fputs(HELP_INIT, stdout); return 0; }
        else if (!strcmp(s, "-o")) out = next_value(&a, s);
        else if (!strcmp(s, "--gguf")) gguf = next_value(&a, s);
        else if (!strcmp(s, "--type")) type = next_value(&a, s);
        else if (!strcmp(s, "--dim")) c->dim = (int)parse_long(&a, s, next_value(&a, s), 2, 1 << 16);
        else if (!strcmp(s, "--layers")) c->n_layers = (int)parse_long(&a, s, next_value(&a, s), 1, 1024);
        else if (!strcmp(s, "--heads")) c->n_heads = (int)parse_long(&a, s, next_value(&a, s), 1, 1024);
        else if (!strcmp(s, "--kv-heads")) c->n_kv_heads = (int)parse_long(&a, s, next_value(&a, s), 1, 1024);
        else if (!strcmp(s, "--head-dim")) c->head_dim = (int)parse_long(&a, s, next_value(&a, s), 2, 4096);
        else if (!strcmp(s, "--ffn")) c->ffn_dim = (int)parse_long(&a, s, next_value(&a, s), 1, 1 << 18);
        else if (!strcmp(s, "--ctx")) c->max_seq_len = (int)parse_long(&a, s, next_value(&a, s), 1, 1 << 22);
        else if (!strcmp(s, "--rope-factor")) {
            double f = parse_double(&a, s, next_value(&a, s), 0, 1024);
            c->rope_scaling = f > 0;
            c->rope_factor = (float)f;
        }
        else if (!strcmp(s, "--tie")) c->tie_embeddings = 1;
        else if (!strcmp(s, "--config")) {
            herd_error err;
            if (herd_config_load(c, next_value(&a, s), &err)) die("%s", err.msg);
        }
        else if (!strcmp(s, "--tokenizer")) p.tokenizer_path = next_value(&a, s);
        else if (!strcmp(s, "--seed")) p.seed = (uint64_t)parse_long(&a, s, next_value(&a, s), 0, LONG_MAX);
        else if (!strcmp(s, "--preset")) {
            const char *v = next_value(&a, s);
            if (!strcmp(v, "tiny")) { c->dim = 128; c->n_layers = 2; c->n_heads = 4; c->n_kv_heads = 2; c->ffn_dim = 384; c->tie_embeddings = 0; }
            else if (!strcmp(v, "llama3.2-1b")) { c->dim = 2048; c->n_layers = 16; c->n_heads = 32; c->n_kv_heads = 8; c->ffn_dim = 8192; c->tie_embeddings = 1; c->rope_factor = 32; }
            else if (!strcmp(v, "llama3.2-3b")) { c->dim = 3072; c->n_layers = 28; c->n_heads = 24; c->n_kv_heads = 8; c->ffn_dim = 8192; c->tie_embeddings = 1; c->rope_factor = 32; }
            else if (!strcmp(v, "llama3.1-8b")) { c->dim = 4096; c->n_layers = 32; c->n_heads = 32; c->n_kv_heads = 8; c->ffn_dim = 14336; c->tie_embeddings = 0; }
            else usage_error(a.cmd, "unknown preset '%s' (tiny, llama3.2-1b, llama3.2-3b, llama3.1-8b)", v);
        }
        else usage_error(a.cmd, "unknown argument '%s'", s);
    }
    if (!out) usage_error(a.cmd, "-o DIR is required");
    int gtype = HERD_F32;
    if (!strcmp(type, "F32")) gtype = HERD_F32;
    else if (!strcmp(type, "F16")) gtype = HERD_F16;
    else if (!strcmp(type, "BF16")) gtype = HERD_BF16;
    else if (!strcmp(type, "Q8_0")) gtype = HERD_Q8_0;
    else if (!strcmp(type, "Q4_0")) gtype = HERD_Q4_0;
    else usage_error(a.cmd, "--type must be F32, F16, BF16, Q8_0 or Q4_0, got '%s'", type);
    herd_error err;
    if (herd_init_model(&p, out, gguf, gtype, &err)) die("%s", err.msg);
    fprintf(stderr, "herd: wrote %s%s%s\n", out, gguf ? " and " : "", gguf ? gguf : "");
    return 0;
}

/* ---- quantize -------------------------------------------------------------- */

static const char *HELP_QUANTIZE =
    "usage: herd quantize [-q] IN OUT TYPE [--lora ADAPTER [--lora-scale S]]\n"
    "Rewrites the model IN (HF directory or .gguf) as the GGUF file OUT with its\n"
    "matrices in TYPE; norms stay F32, metadata and tokenizer are kept.\n"
    "  TYPE  F32 | F16 | BF16 | Q8_0 | Q4_0 | Q6_K   every matrix of that type\n"
    "        Q4_K_M   llama.cpp's mixture: Q4_K, with Q6_K for output.weight and for\n"
    "                 attn_v / ffn_down of the first and last eighth of the layers\n"
    "                 and every third layer between\n"
    "        Q5_K_M   the same mixture on Q5_K\n"
    "  Rows whose length is not a multiple of the block (256 for K types) use Q8_0.\n"
    "  -q    no per-tensor lines on stderr\n"
    "  --lora ADAPTER  merge a LoRA adapter (PEFT directory or GGUF adapter) into the\n"
    "        matrices it adapts (W + s B A in F32, then TYPE): a fine-tune as a model\n"
    "  --lora-scale S  multiply the adapter's alpha / r by S (default 1)\n";

static int cmd_quantize(int argc, char **argv) {
    args a = { "quantize", argc, 0, argv };
    const char *pos[3];
    int n_pos = 0, quiet = 0;
    herd_quantize_params p = herd_quantize_default_params();
    for (a.i = 1; a.i < argc; a.i++) {
        const char *s = argv[a.i];
        if (is_help(s)) { fputs(HELP_QUANTIZE, stdout); return 0; }
        else if (!strcmp(s, "-q")) quiet = 1;
        else if (!strcmp(s, "--lora")) p.lora = next_value(&a, s);
        else if (!strcmp(s, "--lora-scale")) p.lora_scale = (float)parse_double(&a, s, next_value(&a, s), -1e6, 1e6);
        else if (s[0] == '-' && s[1]) usage_error(a.cmd, "unknown flag '%s'", s);
        else if (n_pos < 3) pos[n_pos++] = s;
        else usage_error(a.cmd, "too many arguments; expected IN OUT TYPE");
    }
    if (n_pos != 3) usage_error(a.cmd, "expected IN OUT TYPE");
    p.ftype = herd_ftype_from_name(pos[2]);
    if (p.ftype < 0)
        usage_error(a.cmd, "unknown TYPE '%s'; use F32, F16, BF16, Q8_0, Q4_0, Q4_K_M, Q5_K_M or Q6_K", pos[2]);
    p.log = quiet ? NULL : stderr;
    herd_error err;
    if (herd_quantize(pos[0], pos[1], &p, &err)) die("%s%s", p.lora && strstr(err.msg, p.lora) ? "--lora: " : "", err.msg);
    fprintf(stderr, "herd: wrote %s (%s%s)\n", pos[1], herd_ftype_name(p.ftype), p.lora ? ", LoRA merged" : "");
    return 0;
}

/* ---- lora ------------------------------------------------------------------ */

static const char *HELP_LORA_CMD =
    "usage: herd lora convert -m MODEL ADAPTER OUT.gguf [--lora-scale S]\n"
    "       herd lora info -m MODEL ADAPTER\n"
    "info: what the adapter adapts (per projection: layers, shape, ranks) and its size,\n"
    "after checking it against MODEL.\n"
    "Writes a LoRA adapter (a PEFT directory, its .safetensors, or a GGUF adapter) as\n"
    "llama.cpp's GGUF LoRA adapter, for llama.cpp (--lora), Ollama (ADAPTER) and herd:\n"
    "F32, q / k rows in GGUF's order, the adapter's scale (alpha / r, x S) folded into B.\n"
    "MODEL is the base model it adapts (its shapes are checked; HF or GGUF).\n"
    "To merge an adapter into a model instead: herd quantize IN OUT TYPE --lora ADAPTER.\n";

static int cmd_lora(int argc, char **argv) {
    args a = { "lora", argc, 0, argv };
    const char *model = NULL, *pos[3];
    int n_pos = 0;
    float scale = 1;
    for (a.i = 1; a.i < argc; a.i++) {
        const char *s = argv[a.i];
        if (is_help(s)) { fputs(HELP_LORA_CMD, stdout); return 0; }
        else if (!strcmp(s, "-m")) model = next_value(&a, s);
        else if (!strcmp(s, "--lora-scale")) scale = (float)parse_double(&a, s, next_value(&a, s), -1e6, 1e6);
        else if (s[0] == '-' && s[1]) usage_error(a.cmd, "unknown flag '%s'", s);
        else if (n_pos < 3) pos[n_pos++] = s;
        else usage_error(a.cmd, "too many arguments; expected convert ADAPTER OUT.gguf or info ADAPTER");
    }
    const int info = n_pos == 2 && !strcmp(pos[0], "info");
    if (!info && (n_pos != 3 || strcmp(pos[0], "convert")))
        usage_error(a.cmd, "expected: herd lora convert -m MODEL ADAPTER OUT.gguf, or herd lora info -m MODEL ADAPTER");
    if (!model) usage_error(a.cmd, "-m MODEL is required: the base model the adapter adapts");
    herd_model *m = load_model(model);
    herd_lora *l;
    herd_error err;
    if (herd_lora_load(&l, m, pos[1], scale, &err)) die("%s", err.msg);
    if (info) {
        herd_lora_print_info(l, stdout);
    } else {
        if (herd_lora_save_gguf(l, pos[2], &err)) die("%s", err.msg);
        fprintf(stderr, "herd: wrote %s (LoRA adapter, rank %d, %d projections)\n", pos[2], herd_lora_rank(l),
                herd_lora_n_adapted(l));
    }
    herd_lora_free(l);
    herd_model_free(m);
    return 0;
}

/* ---- main ------------------------------------------------------------------ */

static const char *HELP =
    "usage: herd COMMAND [options]       (herd COMMAND --help for details)\n"
    "  tokenize    text or a chat to token ids\n"
    "  generate    raw completion of a prompt\n"
    "  chat        Llama 3.1 chat, interactive or one turn (-p)\n"
    "  perplexity  mean negative log-likelihood of ids or a text file\n"
    "  bench       prompt and generation speed, tokens/s\n"
    "  info        a model's architecture, hyperparameters and tensor types\n"
    "  init        write a random-weight model (HF directory and GGUF)\n"
    "  quantize    rewrite a model as a GGUF of another type (Q8_0, Q4_K_M, ...)\n"
    "  lora        a LoRA adapter: convert to llama.cpp's GGUF form, or info\n"
    "  serve       OpenAI-compatible HTTP server with continuous batching\n"
    "  train       train from scratch or fine-tune (AdamW, checkpoints, --resume)\n"
    "  data        tokenize text or JSONL into a token file for train\n"
    "  tokenizer   train a byte-level BPE vocabulary (herd tokenizer train)\n"
    "MODEL is a Hugging Face directory or a .gguf file; without -m, " DEFAULT_MODEL "\n"
    "(herd data asks for the model whose vocabulary its token ids will be).\n";

int main(int argc, char **argv) {
    if (argc < 2 || is_help(argv[1])) { fputs(HELP, argc < 2 ? stderr : stdout); return argc < 2 ? 2 : 0; }
    const char *cmd = argv[1];
    struct { const char *name; int (*fn)(int, char **); } cmds[] = {
        { "tokenize", cmd_tokenize }, { "generate", cmd_generate }, { "perplexity", cmd_perplexity },
        { "chat", cmd_chat }, { "info", cmd_info }, { "bench", cmd_bench }, { "init", cmd_init },
        { "quantize", cmd_quantize }, { "serve", cmd_serve }, { "train", cmd_train }, { "lora", cmd_lora },
        { "data", cmd_data }, { "tokenizer", cmd_tokenizer },
    };
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (!strcmp(cmd, cmds[i].name)) return cmds[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "herd: unknown command '%s'; see 'herd --help'\n", cmd);
    return 2;
}

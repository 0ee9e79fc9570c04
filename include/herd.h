/* herd.h - the only public header of libherd: load Llama 3.1-family models
 * (Hugging Face directories, GGUF files), tokenize, render chat prompts, run the
 * forward pass and generate.
 *
 * Conventions: opaque handles; every fallible call returns herd_status and fills a
 * caller-owned herd_error with one line (what failed, where, expected vs got, hint).
 * The library never exits and never asserts on input.
 */
#ifndef HERD_H
#define HERD_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    HERD_OK = 0,
    HERD_ERR_IO,          /* a file could not be opened, read, mapped or written */
    HERD_ERR_FORMAT,      /* a file's contents are malformed or truncated */
    HERD_ERR_UNSUPPORTED, /* well-formed, but a feature herd does not handle */
    HERD_ERR_ARG,         /* a bad argument from the caller */
    HERD_ERR_RANGE,       /* a value out of range: token id, context length */
    HERD_ERR_NOMEM,       /* an allocation failed */
} herd_status;

typedef struct {
    char msg[1024];
} herd_error;

/* Tensor element types. The numbers are GGUF's (ggml_type) so files map 1:1. */
typedef enum {
    HERD_F32 = 0,
    HERD_F16 = 1,
    HERD_Q4_0 = 2,
    HERD_Q8_0 = 8,
    HERD_Q4_K = 12,
    HERD_Q5_K = 13,
    HERD_Q6_K = 14,
    HERD_BF16 = 30,
} herd_type;

const char *herd_type_name(int type); /* "F32", "Q8_0", ... or "?" */

/* Hyper-parameters of a Llama 3.1-architecture model. */
typedef struct {
    int dim;          /* C: hidden size */
    int n_layers;     /* L */
    int n_heads;      /* NH */
    int n_kv_heads;   /* NKV */
    int head_dim;     /* HS */
    int ffn_dim;      /* F */
    int vocab_size;   /* V */
    int max_seq_len;  /* max_position_embeddings */
    float norm_eps;
    float rope_theta;
    int rope_scaling; /* 1: llama3 frequency scaling below */
    float rope_factor, rope_low_freq_factor, rope_high_freq_factor;
    int rope_orig_max_pos;
    int tie_embeddings;
    int bos_id;
    int n_eos;
    int eos_ids[8];
    /* sampling defaults (generation_config.json), negative when absent */
    float default_temperature, default_top_p;
    int default_top_k;
} herd_config;

/* Fills the Llama 3.1 defaults for a shape (rope theta 500000, llama3 scaling
 * factor 8, eps 1e-5, vocab 128256, bos 128000, eos 128001/128008/128009). */
void herd_config_default(herd_config *c);

/* Reads a Hugging Face config.json (LlamaForCausalLM) into c, validating every
 * field herd relies on. */
herd_status herd_config_load(herd_config *c, const char *config_json_path, herd_error *err);

typedef struct herd_model herd_model;
typedef struct herd_tokenizer herd_tokenizer;
typedef struct herd_session herd_session;

/* Loads an HF directory (config.json + safetensors + tokenizer) or a .gguf file.
 * Weights are mmapped. */
herd_status herd_model_load(herd_model **out, const char *path, herd_error *err);
void herd_model_free(herd_model *m);
const herd_config *herd_model_config(const herd_model *m);
const herd_tokenizer *herd_model_tokenizer(const herd_model *m);
/* Prints architecture, hyperparameters, tensor types and parameter count. */
void herd_model_print_info(const herd_model *m, FILE *out);
uint64_t herd_model_n_params(const herd_model *m);

/* ---- tokenizer ---------------------------------------------------------- */

/* Encodes bytes (need not be NUL-terminated). bos: prepend <|begin_of_text|>.
 * special: special-token text such as <|eot_id|> becomes the special id
 * (default off, as Meta's reference tokenizer). *ids is malloc'd by the callee. */
herd_status herd_tokenize(const herd_tokenizer *t, const char *text, size_t len, int bos,
                          int special, int32_t **ids, size_t *n_ids, herd_error *err);
/* The bytes of one token (special tokens give their text). NULL if out of range. */
const char *herd_token_bytes(const herd_tokenizer *t, int32_t id, size_t *len);
int herd_tokenizer_n_vocab(const herd_tokenizer *t);
/* Id of a special token by its text, e.g. "<|eot_id|>"; -1 if absent. */
int32_t herd_tokenizer_special_id(const herd_tokenizer *t, const char *text);

/* Streaming detokenizer: buffers bytes of a UTF-8 sequence split across tokens.
 * herd_detok_push returns the bytes that are now complete (valid UTF-8, with
 * invalid bytes replaced by U+FFFD); herd_detok_flush returns whatever is left. */
typedef struct {
    char pending[8];
    int n_pending;
    char out[512];
} herd_detok;
void herd_detok_init(herd_detok *d);
const char *herd_detok_push(herd_detok *d, const herd_tokenizer *t, int32_t id, size_t *len);
const char *herd_detok_flush(herd_detok *d, size_t *len);

/* ---- chat ----------------------------------------------------------------- */

typedef struct {
    const char *role;    /* system, user, assistant, ipython (tool maps to ipython, developer to system) */
    const char *content;
    int eom;             /* assistant message that ended with <|eom_id|> */
} herd_chat_message;

/* Renders a dialog exactly as Meta's ChatFormat.encode_dialog_prompt: BOS, each
 * message, then the assistant header (when add_generation_prompt). */
herd_status herd_chat_render(const herd_tokenizer *t, const herd_chat_message *msgs, size_t n,
                             int add_generation_prompt, int32_t **ids, size_t *n_ids,
                             herd_error *err);
/* Parses an OpenAI-style JSON messages array into messages (strings owned by *store,
 * free with herd_chat_messages_free). */
herd_status herd_chat_parse_json(const char *json, size_t len, herd_chat_message **msgs,
                                 size_t *n, herd_error *err);
void herd_chat_messages_free(herd_chat_message *msgs, size_t n);

/* ---- inference ------------------------------------------------------------ */

typedef struct {
    int n_ctx;       /* context length; 0: min(model maximum, 8192) */
    int n_threads;   /* 0: all cores */
    int kv_type;     /* KV cache element type: HERD_F32 (default), HERD_F16 (half the
                        memory and cache traffic; keys / values rounded to f16) or
                        HERD_Q8_0 (about a quarter; head size a multiple of 32) */
} herd_session_params;
herd_session_params herd_session_default_params(void);

herd_status herd_session_new(herd_session **out, const herd_model *m, herd_session_params p,
                             herd_error *err);
void herd_session_free(herd_session *s);
int herd_session_n_ctx(const herd_session *s);
int herd_session_pos(const herd_session *s);
void herd_session_reset(herd_session *s);
/* Forgets every position from pos on (pos <= current position), keeping the prefix. */
void herd_session_rewind(herd_session *s, int pos);

/* Runs the model over n tokens appended at the current position. When all_logits
 * is non-NULL it receives (n, V) logits; the last token's logits are always
 * available from herd_session_logits. */
herd_status herd_session_eval(herd_session *s, const int32_t *ids, int n, float *all_logits,
                              herd_error *err);
const float *herd_session_logits(const herd_session *s); /* (V) */

/* Continuous batching: evaluates the next tokens of several sessions of the same
 * model in one forward, so each weight matrix is read once for all of them.
 * Session i gets n_ids[i] >= 1 tokens at its own position; afterwards each
 * session's herd_session_logits holds its last token's logits. The result equals
 * evaluating each session alone (up to float summation order). */
herd_status herd_session_eval_batch(herd_session *const *s, const int32_t *const *ids,
                                    const int *n_ids, int n_seq, herd_error *err);
/* herd_session_eval_batch that also writes, for each session i whose all_logits[i]
 * is non-NULL, the logits of every one of its tokens ((n_ids[i], V)): a prompt
 * scored while others decode. */
herd_status herd_session_eval_batch_logits(herd_session *const *s, const int32_t *const *ids,
                                           const int *n_ids, float *const *all_logits, int n_seq,
                                           herd_error *err);
/* herd_session_eval_batch_logits that, for each session i whose hidden[i] is
 * non-NULL, writes the final-normed hidden state of each new token instead
 * (n_ids[i] x dim floats: the last layer's output after the model's final norm,
 * what the output projection would read): no logits are computed for it, and
 * its herd_session_logits is left as it was. For embeddings (pooled). */
herd_status herd_session_eval_batch_out(herd_session *const *s, const int32_t *const *ids, const int *n_ids,
                                        float *const *all_logits, float *const *hidden, int n_seq,
                                        herd_error *err);
/* Urgent work inside a batched forward (a server's new prompt that should not
 * wait for the others' step to end: time to first token). When the batch is one
 * round (fewer rows than the pool's batch workspace holds), the _yield form calls
 * yield(ctx, b, layer) before each of its layers; yield may call
 * herd_batch_eval_now, which evaluates other sessions of the pool whole, at once,
 * as herd_session_eval_batch_out would (bitwise: the same arithmetic per row),
 * in the workspace rows the batch leaves free (herd_batch_room), and returns;
 * the batch then goes on where it was. A session in the batch cannot be
 * evaluated now; one that fails (room, context, KV pages: the error says) is left
 * as it was. yield runs on the evaluating thread, and evaluates the pool's
 * sessions only through herd_batch_eval_now (the batch's rows are in the pool's
 * workspace). */
typedef struct herd_batch herd_batch;
typedef void (*herd_batch_yield_fn)(void *ctx, herd_batch *b, int layer);
herd_status herd_session_eval_batch_yield(herd_session *const *s, const int32_t *const *ids, const int *n_ids,
                                          float *const *all_logits, float *const *hidden, int n_seq,
                                          herd_batch_yield_fn yield, void *ctx, herd_error *err);
int herd_batch_room(const herd_batch *b); /* rows herd_batch_eval_now may take */
herd_status herd_batch_eval_now(herd_batch *b, herd_session *const *s, const int32_t *const *ids,
                                const int *n_ids, float *const *all_logits, float *const *hidden, int n_seq,
                                herd_error *err);

/* KV pools: one KV cache of fixed-size pages shared by many sessions (a server's
 * slots), with prefix sharing. p gives each session's context (n_ctx), the KV
 * element type and the threads; n_seqs is how many sessions are evaluated together
 * (it sizes the batch workspace); n_pages = 0: n_seqs * (ceil(n_ctx / page) + 1).
 * Free every session of a pool before the pool. A standalone session
 * (herd_session_new) owns a private pool. One thread at a time evaluates the
 * sessions of a pool; herd_session_eval_batch uses the pool of its first session. */
typedef struct herd_kv_pool herd_kv_pool;
herd_status herd_kv_pool_new(herd_kv_pool **out, const herd_model *m, herd_session_params p,
                             int n_seqs, int n_pages, herd_error *err);
void herd_kv_pool_free(herd_kv_pool *p);
int herd_kv_pool_pages_used(const herd_kv_pool *p);  /* pages held by sessions (shared ones once) */
int herd_kv_pool_pages_total(const herd_kv_pool *p);
int herd_kv_pool_batch_rows(const herd_kv_pool *p);  /* rows one round of a batched forward takes */
int herd_kv_page_size(void);                         /* positions per page */
herd_status herd_session_new_on_pool(herd_session **out, herd_kv_pool *pool, herd_error *err);
/* dst forgets everything and takes src's first n_pos positions (n_pos <= src's
 * position; same pool, same adapter: herd_session_set_lora): whole pages are shared, not copied or recomputed, and
 * dst's position becomes n_pos. dst's logits are not set. */
herd_status herd_session_share_prefix(herd_session *dst, const herd_session *src, int n_pos,
                                      herd_error *err);

/* ---- LoRA adapters ---------------------------------------------------------- */

/* A LoRA adapter for a loaded model, applied at inference without merging: a
 * session that carries one computes each adapted projection as
 * W x + s * B (A x), so one model serves its plain form and many adapters at
 * once, in the same batch. path: a PEFT adapter directory (adapter_config.json +
 * adapter_model.safetensors, as peft / torchtune / unsloth save it), its
 * .safetensors file (the config beside it), or a llama.cpp GGUF adapter.
 * s = scale * lora_alpha / r (rsLoRA: / sqrt(r)). Adapters of q, k, v, o, gate,
 * up and down are applied; DoRA, embedding / lm_head adapters and
 * modules_to_save are refused with a message. The adapter must outlive the
 * sessions that carry it and the model must outlive the adapter. */
typedef struct herd_lora herd_lora;
herd_status herd_lora_load(herd_lora **out, const herd_model *m, const char *path, float scale,
                           herd_error *err);
void herd_lora_free(herd_lora *l);
int herd_lora_rank(const herd_lora *l);        /* the largest r of its matrices */
int herd_lora_n_adapted(const herd_lora *l);   /* projections it changes (layers x kinds) */
/* The adapter the session's forward applies (NULL: none). A different adapter
 * than the current one resets the session (its KV cache was computed with the
 * other weights). */
herd_status herd_session_set_lora(herd_session *s, const herd_lora *l, herd_error *err);
const herd_lora *herd_session_lora(const herd_session *s);
/* Writes the adapter as llama.cpp's GGUF LoRA adapter (F32, q / k rows in GGUF's
 * order, its scale folded into B and no alpha, which llama.cpp reads as scale 1):
 * for llama.cpp, Ollama and herd. */
herd_status herd_lora_save_gguf(const herd_lora *l, const char *path, herd_error *err);
/* What it adapts: per projection kind the layers, the shape and the ranks; its size. */
void herd_lora_print_info(const herd_lora *l, FILE *out);

/* ---- sampling ------------------------------------------------------------- */

typedef struct {
    float temperature;   /* 0: greedy */
    int top_k;           /* 0: off */
    float top_p;         /* 1: off; Meta's sample_top_p */
    float min_p;         /* 0: off */
    float repeat_penalty;/* 1: off */
    int repeat_last_n;
    uint64_t seed;
} herd_sampler_params;
herd_sampler_params herd_sampler_default_params(void); /* temp 0.6, top-p 0.9 */

typedef struct herd_sampler herd_sampler;
herd_status herd_sampler_new(herd_sampler **out, herd_sampler_params p, int n_vocab,
                             herd_error *err);
void herd_sampler_free(herd_sampler *s);
/* Picks the next token from logits (V); history is the ids so far (for penalties). */
int32_t herd_sampler_sample(herd_sampler *s, const float *logits, const int32_t *history,
                            size_t n_history);

/* ---- constrained output: JSON, optionally of a JSON Schema ------------------- */

/* A vocabulary for grammars: tokenizer t's tokens as bytes, sorted for masks
 * (~40 ms for Llama 3's 128K: make one and share it; t must outlive it). end_ids
 * end the output: allowed once the value is complete, and then nothing else is;
 * other special tokens never are. */
typedef struct herd_json_vocab herd_json_vocab;
herd_status herd_json_vocab_new(herd_json_vocab **out, const herd_tokenizer *t, const int32_t *end_ids,
                                int n_end, herd_error *err);
void herd_json_vocab_free(herd_json_vocab *v);

/* A grammar from a JSON Schema (text; NULL: any JSON object, OpenAI's
 * json_object) over vocabulary v (which must outlive it; NULL: bytes only, for
 * herd_json_state_feed and _complete): read-only once made, shared by any number
 * of states. Enforced: type,
 * properties (in the schema's order; optional ones may be left out), required,
 * additionalProperties, items, minItems, maxItems, minLength, maxLength, enum,
 * const, anyOf, oneOf (as anyOf), allOf of one schema, $ref within the schema;
 * annotations are ignored; other assertions (pattern, minimum, ...) are
 * HERD_ERR_UNSUPPORTED with the keyword and where it is. */
typedef struct herd_json_grammar herd_json_grammar;
herd_status herd_json_grammar_new(herd_json_grammar **out, const herd_json_vocab *v, const char *schema,
                                  herd_error *err);
void herd_json_grammar_free(herd_json_grammar *g);

/* A grammar whose output is exactly one of n texts (1..64, non-empty; not JSON:
 * the texts as they are), e.g. a classifier's labels. */
herd_status herd_json_grammar_new_choice(herd_json_grammar **out, const herd_json_vocab *v,
                                         const char *const *choices, int n, herd_error *err);

/* One output's place in a grammar. */
typedef struct herd_json_state herd_json_state;
herd_status herd_json_state_new(herd_json_state **out, const herd_json_grammar *g, herd_error *err);
void herd_json_state_free(herd_json_state *s);
int herd_json_state_allows(herd_json_state *s, int32_t id);  /* 1 if token id may come next */
/* Sets logits[i] = -INFINITY for every token that may not come next (V of them);
 * returns how many may. */
int herd_json_state_mask(herd_json_state *s, float *logits);
int herd_json_state_accept(herd_json_state *s, int32_t id); /* 0, or -1 (not allowed: unchanged) */
int herd_json_state_feed(herd_json_state *s, const char *bytes, size_t len); /* the same, for text */
int herd_json_state_complete(herd_json_state *s);           /* the value is whole: an end may come */

/* ---- tokenizer training and training data (herd tokenizer train, herd data) ---- */

/* Loads a tokenizer alone: tokenizer.model (tiktoken), tokenizer.json, a directory
 * with either (tokenizer.json first, as herd_model_load; no weights needed), or a
 * GGUF model. */
herd_status herd_tokenizer_load(herd_tokenizer **out, const char *path, herd_error *err);
void herd_tokenizer_free(herd_tokenizer *t);
/* Writes dir/tokenizer.model (tiktoken) and dir/tokenizer.json (HF); dir must exist. */
herd_status herd_tokenizer_save(const herd_tokenizer *t, const char *dir, herd_error *err);

/* Byte-level BPE training with Llama 3's pre-tokenizer: add text (any number of
 * calls), then train. n_vocab counts everything: 256 byte tokens, the learned
 * merges and the 256 special tokens after them (so n_vocab >= 512). A corpus with
 * too few distinct pairs gives a smaller vocabulary (see herd_tokenizer_n_vocab). */
typedef struct herd_bpe_trainer herd_bpe_trainer;
typedef struct {
    uint64_t n_bytes;   /* text added */
    uint64_t n_pieces;  /* pre-tokenizer pieces */
    uint64_t n_unique;  /* distinct pieces of two bytes or more */
    int n_merges;       /* tokens learned */
    int n_vocab;        /* of the trained tokenizer, specials included */
} herd_bpe_stats;
herd_status herd_bpe_trainer_new(herd_bpe_trainer **out, herd_error *err);
herd_status herd_bpe_trainer_add(herd_bpe_trainer *tr, const char *text, size_t len,
                                 herd_error *err);
/* log: a progress line every 500 merges; NULL: quiet. */
herd_status herd_bpe_train(herd_bpe_trainer *tr, int n_vocab, FILE *log, herd_tokenizer **out,
                           herd_error *err);
void herd_bpe_trainer_stats(const herd_bpe_trainer *tr, herd_bpe_stats *s);
void herd_bpe_trainer_free(herd_bpe_trainer *tr);

/* Training data: documents from plain text files (one document per file) or JSONL
 * (one document per line, a string "text" field; blank lines skipped), tokenized
 * with <|begin_of_text|> before each document and nothing between documents, and
 * written as a token file (src/train/tokfile.h). Invalid UTF-8 is kept byte-wise.
 * With val_fraction > 0, document i (counting across inputs) goes to val_path
 * instead when floor((i+1)*f) > floor(i*f): an even, deterministic spread. */
typedef enum { HERD_DATA_AUTO = 0, HERD_DATA_TEXT, HERD_DATA_JSONL } herd_data_format;
typedef struct {
    const char *const *inputs;
    size_t n_inputs;
    herd_data_format format; /* AUTO: .jsonl / .json files are JSONL, others text */
    const char *out_path;
    double val_fraction;     /* 0: no validation split */
    const char *val_path;
    uint32_t vocab_size;     /* written in the header; 0: the tokenizer's */
} herd_data_params;
typedef struct {
    uint64_t n_docs, n_tokens, n_bytes;  /* training file */
    uint64_t n_val_docs, n_val_tokens;   /* validation file */
} herd_data_stats;
herd_status herd_data_prepare(const herd_tokenizer *t, const herd_data_params *p,
                              herd_data_stats *stats, herd_error *err);

/* ---- writing models -------------------------------------------------------- */

typedef struct {
    herd_config config;
    uint64_t seed;
    const char *tokenizer_path; /* tokenizer.model / tokenizer.json / model to copy; NULL: byte vocab */
} herd_init_params;

/* Writes a random-weight model (bf16 values) as an HF directory (dir/) and, when
 * gguf_path is non-NULL, as a GGUF file of gguf_type (F32/F16/BF16/Q8_0/Q4_0). */
herd_status herd_init_model(const herd_init_params *p, const char *hf_dir, const char *gguf_path,
                            int gguf_type, herd_error *err);

/* GGUF file types (general.file_type; the numbers are llama.cpp's llama_ftype). */
typedef enum {
    HERD_FTYPE_F32 = 0,
    HERD_FTYPE_F16 = 1,
    HERD_FTYPE_Q4_0 = 2,
    HERD_FTYPE_Q8_0 = 7,
    HERD_FTYPE_Q4_K_M = 15, /* Q4_K, Q6_K for output and some attn_v / ffn_down */
    HERD_FTYPE_Q5_K_M = 17, /* the same mixture on Q5_K */
    HERD_FTYPE_Q6_K = 18,
    HERD_FTYPE_BF16 = 32,
} herd_ftype;
int herd_ftype_from_name(const char *name); /* "Q4_K_M" -> HERD_FTYPE_Q4_K_M; -1 if unknown */
const char *herd_ftype_name(int ftype);     /* "Q4_K_M", ... or "?" */

typedef struct {
    int ftype;  /* herd_ftype */
    FILE *log;  /* one line per matrix (name, shape, types); NULL: quiet */
    const char *lora;  /* a LoRA adapter (herd_lora_load's paths) merged in: W + s B A; NULL: none */
    float lora_scale;  /* its scale multiplier (1) */
} herd_quantize_params;
herd_quantize_params herd_quantize_default_params(void); /* Q4_K_M, quiet */

/* Rewrites the model at in_path (HF directory or GGUF, any type herd loads) as a
 * GGUF at out_path with every matrix requantized to p->ftype (llama.cpp's type rules;
 * rows not a multiple of the block size fall back to Q8_0), norms float32, the same
 * hyper-parameters and tokenizer. Written atomically; out_path may equal in_path.
 * With p->lora, each adapted matrix is written merged (W + s B A, in float32 before
 * it is requantized), as PEFT's merge_and_unload and llama.cpp's export-lora do. */
herd_status herd_quantize(const char *in_path, const char *out_path, const herd_quantize_params *p,
                          herd_error *err);

/* ---- training ------------------------------------------------------------- */

typedef enum { HERD_SCHEDULE_COSINE = 0, HERD_SCHEDULE_CONSTANT = 1 } herd_schedule;

typedef struct {
    const char *init_path;   /* model to start from (HF dir or GGUF; weights become f32) */
    const char *data_path;   /* token file (`herd data`) */
    const char *eval_path;   /* optional held-out token file */
    const char *out_dir;     /* checkpoint.bin, hf/, model.gguf, loss.svg */
    int batch, seq, steps;   /* B sequences of T tokens per micro-step; N optimizer steps */
    int accum;               /* micro-steps per optimizer step (gradient accumulation) */
    float lr, weight_decay, clip;  /* clip <= 0: no clipping */
    float beta1, beta2, eps;
    int warmup;              /* linear warmup steps */
    int schedule;            /* herd_schedule: after warmup, cosine to 0.1 lr or constant */
    uint64_t seed;           /* data order */
    int shuffle;             /* 0: windows in file order (step s uses (s*B + b)*T) */
    int eval_every, save_every; /* 0: only at the end */
    int resume;              /* continue from out_dir/checkpoint.bin when it exists */
    int log_json;            /* one JSON object per step instead of a progress line */
    int n_threads;           /* 0: all cores */
    FILE *log;               /* progress output; NULL: quiet */
    int from_scratch;        /* 1: keep init_path's shape and tokenizer, but start from a
                                seeded training initialisation (N(0, 0.02), residual
                                projections / sqrt(2L), norms 1) instead of its weights */
} herd_train_params;

/* B 8, T 256, accum 1, lr 3e-4, wd 0.1, clip 1, betas 0.9 / 0.95, eps 1e-8, no
 * warmup, cosine, seed 1, shuffle on; paths and steps must be set. */
herd_train_params herd_train_default_params(void);
/* Trains (or resumes) and writes out_dir/checkpoint.bin (every save_every steps and
 * at the end, atomically), out_dir/hf (safetensors F32), out_dir/model.gguf (F32)
 * and out_dir/loss.svg. Data files are validated before anything is written. */
herd_status herd_train(const herd_train_params *p, herd_error *err);

#ifdef __cplusplus
}
#endif
#endif

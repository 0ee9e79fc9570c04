/* cmd_serve.c - `herd serve`: flags -> srv_params -> srv_run (src/server/). The
 * server itself lives in the library; this file only parses the command line. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "server/server.h"

static const char *HELP_SERVE =
    "usage: herd serve [-m MODEL] [--host 127.0.0.1] [--port 8080] [--api-key KEY]\n"
    "                  [--parallel N] [-c CTX] [-t THREADS] [--kv-pages N] [--kv T]\n"
    "                  [--lora NAME=PATH ...] [--lora-runtime]\n"
    "OpenAI-compatible HTTP server: POST /v1/chat/completions, /v1/completions and\n"
    "/v1/responses (streaming with stream: true; structured output with response_format\n"
    "or text.format json_schema), POST /v1/embeddings, GET /v1/models, POST /tokenize\n"
    "and /detokenize, GET /health, GET /metrics, and a chat page at GET /. SIGINT or\n"
    "SIGTERM finishes in-flight requests and exits 0.\n"
    "  -m MODEL          HF directory or .gguf file; its base name is the model id\n"
    "                    (default " DEFAULT_MODEL ", the small model herd ships)\n"
    "  --alias NAME      the model id clients send and /v1/models lists (default:\n"
    "                    the model path's base name), e.g. the name an app expects\n"
    "  --host ADDR       IPv4 or IPv6 address to listen on (default 127.0.0.1)\n"
    "  --port N          TCP port (default 8080; 0 picks a free one, printed on stderr)\n"
    "  --api-key KEY     require 'Authorization: Bearer KEY' on /v1/* (default: none;\n"
    "                    also read from HERD_API_KEY)\n"
    "  --cors ORIGIN     let web pages of ORIGIN ('*': any) call the API from a\n"
    "                    browser: CORS headers and preflight answers (default: none,\n"
    "                    so other sites you visit cannot read this server's answers)\n"
    "  --parallel N      sequences decoded together, one slot each (default 4)\n"
    "  -c CTX            context per sequence in tokens (default min(model, 4096))\n"
    "  --kv-pages N      pages of 64 positions in the KV pool all sequences share\n"
    "                    (default: enough for every slot to fill its context); a\n"
    "                    prompt prefix cached in any slot is shared, not recomputed;\n"
    "                    a prompt that finds the pool full waits in the queue\n"
    "  --kv T            KV cache elements: f16 (default), f32 or q8_0 (--kv-type too)\n"
    "  -t THREADS        threads for the forward pass (default: all cores)\n"
    "  --queue N         requests waiting for a slot before 429 (default 64)\n"
    "  --max-body BYTES  request bodies above this get 413 (default 1048576)\n"
    "  --quiet           no request log (a line per request: method, path, status,\n"
    "                    seconds) and no load summaries (every 10 s while busy)\n"
    "  --linger MS       after a sequence finishes, hold the next step up to MS ms\n"
    "                    for the next request while others decode, so a client's\n"
    "                    follow-up joins at once instead of after a step (default 5;\n"
    "                    0: never wait)\n"
    "  --prefill-chunk N prompt tokens of one sequence evaluated per step, 2N for all\n"
    "                    (default 64, at most 512): a long prompt goes in chunks\n"
    "                    beside the others' decoding; smaller chunks keep their\n"
    "                    tokens coming faster meanwhile, larger ones give the long\n"
    "                    prompt its first token sooner\n"
    "  --no-interleave   a prompt that arrives while others decode waits for their\n"
    "                    step to end (by default a short one is evaluated between\n"
    "                    two layers of it, and its first token sent at once)\n"
    "  --lora NAME=PATH  serve a LoRA adapter (a PEFT directory or a GGUF adapter) as\n"
    "                    model NAME beside the model itself (up to 16; /v1/models\n"
    "                    lists them): a request naming it gets the adapted model,\n"
    "                    in the same batches as the others, prefixes cached per adapter\n"
    "  --lora-runtime    also serve POST /v1/load_lora_adapter {\"lora_name\", \"lora_path\"}\n"
    "                    and /v1/unload_lora_adapter {\"lora_name\"} (vLLM's): adapters\n"
    "                    come and go while the server runs (a path on this machine: keep\n"
    "                    it behind --api-key)\n";

static int usage(const char *fmt, const char *arg) {
    fputs("herd: ", stderr);
    fprintf(stderr, fmt, arg);
    fputs("; see 'herd serve --help'\n", stderr);
    return 2;
}

static int parse_int(const char *flag, const char *v, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || errno || end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "herd: %s expects an integer in %ld..%ld, got '%s'; see 'herd serve --help'\n", flag,
                lo, hi, v ? v : "");
        return -1;
    }
    *out = x;
    return 0;
}

int cmd_serve(int argc, char **argv) {
    srv_params p = { 0 };
    p.host = "127.0.0.1";
    p.port = 8080;
    p.n_parallel = 4;
    p.queue_max = 64;
    p.max_body = 1 << 20;
    p.linger_ms = 5;
    p.kv_type = HERD_F16; /* the CLI's default, as generate / chat / bench */
    p.model_path = DEFAULT_MODEL;
    p.api_key = getenv("HERD_API_KEY");
    if (p.api_key && !*p.api_key) p.api_key = NULL;
    static char names[SRV_MAX_LORA][201]; /* --lora NAME=PATH: the names */
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long x;
        if (!strcmp(s, "-h") || !strcmp(s, "--help")) { fputs(HELP_SERVE, stdout); return 0; }
        if (!strcmp(s, "--quiet")) { p.quiet = 1; continue; }
        if (!strcmp(s, "--lora-runtime")) { p.lora_runtime = 1; continue; }
        if (!strcmp(s, "--no-interleave")) { p.no_interleave = 1; continue; }
        int takes = !strcmp(s, "-m") || !strcmp(s, "--host") || !strcmp(s, "--port") || !strcmp(s, "--api-key") || !strcmp(s, "--cors") || !strcmp(s, "--alias") ||
                    !strcmp(s, "--parallel") || !strcmp(s, "-c") || !strcmp(s, "-t") || !strcmp(s, "--queue") ||
                    !strcmp(s, "--max-body") || !strcmp(s, "--kv-pages") || !strcmp(s, "--kv-type") || !strcmp(s, "--kv") ||
                    !strcmp(s, "--linger") || !strcmp(s, "--lora") || !strcmp(s, "--prefill-chunk");
        if (!takes) return usage(s[0] == '-' ? "unknown flag '%s'" : "unexpected argument '%s'", s);
        if (!v) return usage("%s needs a value", s);
        i++;
        if (!strcmp(s, "-m")) p.model_path = v;
        else if (!strcmp(s, "--host")) p.host = v;
        else if (!strcmp(s, "--api-key")) p.api_key = *v ? v : NULL;
        else if (!strcmp(s, "--alias")) {
            if (!*v || strlen(v) > 200 || strpbrk(v, " \t\r\n\"\\")) return usage("--alias expects a name of 1-200 characters without spaces or quotes, got '%s'", v);
            p.alias = v;
        }
        else if (!strcmp(s, "--cors")) {
            if (!*v || strpbrk(v, " \t\r\n,")) return usage("--cors expects '*' or one origin such as http://localhost:3000, got '%s'", v);
            p.cors = v;
        }
        else if (!strcmp(s, "--port")) { if (parse_int(s, v, 0, 65535, &x)) return 2; p.port = (int)x; }
        else if (!strcmp(s, "--parallel")) { if (parse_int(s, v, 1, 256, &x)) return 2; p.n_parallel = (int)x; }
        else if (!strcmp(s, "-c")) { if (parse_int(s, v, 2, 1 << 22, &x)) return 2; p.n_ctx = (int)x; }
        else if (!strcmp(s, "-t")) { if (parse_int(s, v, 1, 1024, &x)) return 2; p.n_threads = (int)x; }
        else if (!strcmp(s, "--kv-pages")) { if (parse_int(s, v, 1, 1 << 24, &x)) return 2; p.kv_pages = (int)x; }
        else if (!strcmp(s, "--kv-type") || !strcmp(s, "--kv")) {
            if (!strcmp(v, "F32") || !strcmp(v, "f32")) p.kv_type = HERD_F32;
            else if (!strcmp(v, "F16") || !strcmp(v, "f16")) p.kv_type = HERD_F16;
            else if (!strcmp(v, "Q8_0") || !strcmp(v, "q8_0")) p.kv_type = HERD_Q8_0;
            else return usage("--kv expects f32, f16 or q8_0, got '%s'", v);
        }
        else if (!strcmp(s, "--lora")) {
            const char *eq = strchr(v, '='), *bad = strpbrk(v, " \t\r\n\"\\");
            if (!eq || eq == v || !eq[1] || eq - v > 200 || (bad && bad < eq))
                return usage("--lora expects NAME=PATH (NAME: the model id requests use, without spaces or "
                             "quotes), got '%s'", v);
            if (p.n_lora == SRV_MAX_LORA) return usage("at most 16 --lora adapters%s", "");
            const size_t n = (size_t)(eq - v);
            for (int k = 0; k < p.n_lora; k++)
                if (strlen(p.lora_names[k]) == n && !strncmp(p.lora_names[k], v, n)) return usage("--lora %s: the name is given twice", v);
            memcpy(names[p.n_lora], v, n);
            names[p.n_lora][n] = 0;
            p.lora_names[p.n_lora] = names[p.n_lora];
            p.lora_paths[p.n_lora++] = eq + 1;
        }
        else if (!strcmp(s, "--prefill-chunk")) { if (parse_int(s, v, 1, 512, &x)) return 2; p.prefill_chunk = (int)x; }
        else if (!strcmp(s, "--linger")) { if (parse_int(s, v, 0, 1000, &x)) return 2; p.linger_ms = (double)x; }
        else if (!strcmp(s, "--queue")) { if (parse_int(s, v, 0, 1 << 20, &x)) return 2; p.queue_max = (int)x; }
        else { if (parse_int(s, v, 1024, 1L << 30, &x)) return 2; p.max_body = (size_t)x; }
    }
    herd_error err;
    if (srv_run(&p, &err)) {
        fprintf(stderr, "herd: %s\n", err.msg);
        return 1;
    }
    return 0;
}

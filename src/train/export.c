/* export.c - writing a trained model: an HF directory (config.json,
 * generation_config.json, tokenizer.model, tokenizer.json, model.safetensors in
 * F32, so the export is exact) and a GGUF (F32) that herd and llama.cpp load, plus
 * the loss-curve SVG. q / k rows are stored in HF rotate-half order in safetensors
 * and in Meta's interleaved order in GGUF, whatever order training used.
 * Not here: quantized exports (`herd quantize` the GGUF afterwards).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tokenizer.h"
#include "train/train.h"

/* Row h*HS + 2i + j (interleaved) <-> h*HS + j*HS/2 + i (rotate-half). to_interleaved
 * picks the direction. */
static void permute_rows(float *dst, const float *src, int heads, int64_t rows, int64_t cols,
                         int to_interleaved) {
    int64_t HS = rows / heads;
    for (int h = 0; h < heads; h++)
        for (int64_t i = 0; i < HS / 2; i++)
            for (int j = 0; j < 2; j++) {
                int64_t inter = h * HS + 2 * i + j, half = h * HS + j * HS / 2 + i;
                int64_t d = to_interleaved ? inter : half, s = to_interleaved ? half : inter;
                memcpy(dst + d * cols, src + s * cols, (size_t)cols * sizeof(float));
            }
}

typedef struct {
    const train_model *tm;
    st_writer *st;
    gguf_writer *gg;
    herd_status status;
    herd_error *err;
} export_ctx;

static void add_tensor(void *vctx, const char *hf_name, const char *gguf_name, int n_dims,
                       int64_t rows, int64_t cols, float *data, int qk_heads) {
    export_ctx *x = vctx;
    if (x->status) return;
    const float *hf = data, *gg = data;
    float *perm = NULL;
    if (qk_heads) {
        perm = malloc((size_t)rows * cols * sizeof(float));
        if (!perm) { x->status = herd_errf(x->err, HERD_ERR_NOMEM, "out of memory"); return; }
        /* the trained order is kept by one of the two files, the other is permuted */
        permute_rows(perm, data, qk_heads, rows, cols, !x->tm->rope_interleaved);
        if (x->tm->rope_interleaved) hf = perm; else gg = perm;
    }
    int64_t shape[2] = { rows, cols }, ne[2] = { cols, rows };
    if (n_dims == 1) shape[0] = cols;
    if (x->st) x->status = st_writer_add(x->st, hf_name, HERD_F32, n_dims, shape, hf, x->err);
    if (!x->status && x->gg)
        x->status = gguf_writer_add_tensor(x->gg, gguf_name, HERD_F32, n_dims, ne, gg, x->err);
    free(perm);
}

herd_status train_export(const train_model *tm, const herd_tokenizer *tok, const char *dir,
                         herd_error *err) {
    char hf[4096], path[4200];
    snprintf(hf, sizeof hf, "%s/hf", dir);
    if (herd_make_dirs(hf) != 0)
        return herd_errf(err, HERD_ERR_IO, "cannot create directory '%s': %s", hf, strerror(errno));
    const herd_config *c = &tm->c;
    herd_status st;
    snprintf(path, sizeof path, "%s/config.json", hf);
    if ((st = hf_config_write_dtype(c, path, "float32", err))) return st;
    snprintf(path, sizeof path, "%s/generation_config.json", hf);
    if ((st = hf_generation_config_write(c, path, err))) return st;
    snprintf(path, sizeof path, "%s/tokenizer.model", hf);
    if ((st = herd_tokenizer_write_tiktoken(tok, path, err))) return st;
    snprintf(path, sizeof path, "%s/tokenizer.json", hf);
    if ((st = herd_tokenizer_write_hf_json(tok, path, err))) return st;

    export_ctx x = { .tm = tm, .st = st_writer_new(), .gg = gguf_writer_new(), .err = err };
    float *div = NULL;
    if (!x.st || !x.gg) x.status = herd_errf(err, HERD_ERR_NOMEM, "out of memory");
    if (!x.status && c->rope_scaling) {
        div = malloc((size_t)(c->head_dim / 2) * sizeof(float));
        if (!div) x.status = herd_errf(err, HERD_ERR_NOMEM, "out of memory");
        else model_rope_divisors(c, div);
    }
    if (!x.status)
        x.status = model_gguf_add_header(x.gg, c, tok, "herd-train", HERD_FTYPE_F32, div, err);
    free(div);
    if (!x.status) train_model_each_tensor(tm, add_tensor, &x);
    snprintf(path, sizeof path, "%s/model.safetensors", hf);
    if (!x.status) x.status = st_writer_write(x.st, path, err);
    snprintf(path, sizeof path, "%s/model.gguf", dir);
    if (!x.status) x.status = gguf_writer_write(x.gg, path, err);
    st_writer_free(x.st);
    gguf_writer_free(x.gg);
    return x.status;
}

herd_status train_write_svg(const char *path, const float *losses, int n, const int *eval_steps,
                            const float *eval_losses, int n_eval, herd_error *err) {
    const double W = 640, H = 360, L = 60, R = 20, Tm = 20, Bm = 40;
    float lo = 0, hi = 1;
    int first = 1;
    for (int i = 0; i < n + n_eval; i++) {
        float y = i < n ? losses[i] : eval_losses[i - n];
        if (y != y) continue; /* NaN */
        if (first || y < lo) lo = y;
        if (first || y > hi) hi = y;
        first = 0;
    }
    if (hi - lo < 1e-6f) hi = lo + 1.0f;
    double xs = (W - L - R) / (n > 1 ? n - 1 : 1), ys = (H - Tm - Bm) / (hi - lo);
    fmt_atomic_file f;
    herd_status st = fmt_atomic_open(&f, path, err);
    if (st) return st;
    char buf[256];
#define OUT(...) do { int k_ = snprintf(buf, sizeof buf, __VA_ARGS__); fmt_atomic_write(&f, buf, (size_t)k_); } while (0)
    OUT("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%g\" height=\"%g\" font-family=\"sans-serif\" font-size=\"12\">\n", W, H);
    OUT("<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    OUT("<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" stroke=\"black\"/>\n", L, H - Bm, W - R, H - Bm);
    OUT("<line x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" stroke=\"black\"/>\n", L, Tm, L, H - Bm);
    OUT("<text x=\"%g\" y=\"%g\" text-anchor=\"end\">%.3f</text>\n", L - 4, Tm + 4, hi);
    OUT("<text x=\"%g\" y=\"%g\" text-anchor=\"end\">%.3f</text>\n", L - 4, H - Bm + 4, lo);
    OUT("<text x=\"%g\" y=\"%g\">step 1</text>\n", L, H - Bm + 16);
    OUT("<text x=\"%g\" y=\"%g\" text-anchor=\"end\">step %d</text>\n", W - R, H - Bm + 16, n);
    OUT("<text x=\"%g\" y=\"%g\" text-anchor=\"middle\">loss (blue: train, red: eval)</text>\n", W / 2, H - 8);
    OUT("<polyline fill=\"none\" stroke=\"steelblue\" stroke-width=\"1.5\" points=\"");
    for (int i = 0; i < n; i++)
        if (losses[i] == losses[i]) OUT("%.1f,%.1f ", L + i * xs, H - Bm - (losses[i] - lo) * ys);
    OUT("\"/>\n");
    for (int i = 0; i < n_eval; i++)
        OUT("<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"crimson\"/>\n", L + (eval_steps[i] - 1) * xs,
            H - Bm - (eval_losses[i] - lo) * ys);
    OUT("</svg>\n");
#undef OUT
    return fmt_atomic_commit(&f, err);
}

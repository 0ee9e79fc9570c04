/* trainer.c - herd_train(): the training loop that ties the model, AdamW, the data
 * loader, checkpoints and export together.
 *
 * Invariants (what resume relies on):
 *  - everything is allocated before the first step; the loop never allocates;
 *  - a step is a pure function of (params, m, v, step, loader pos): the data order
 *    depends only on pos, every op is deterministic for a thread count, and the
 *    gradient norm is summed serially; so resuming from a checkpoint written
 *    after step k replays steps k+1.. exactly;
 *  - data files are opened and validated before anything under out_dir is created
 *    or written, and the checkpoint is only ever replaced by rename.
 * Not here: LoRA / frozen parameters, distillation, multi-process data parallelism.
 */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "train/train.h"

herd_train_params herd_train_default_params(void) {
    herd_train_params p;
    memset(&p, 0, sizeof p);
    p.batch = 8; p.seq = 256; p.accum = 1;
    p.lr = 3e-4f; p.weight_decay = 0.1f; p.clip = 1.0f;
    p.beta1 = 0.9f; p.beta2 = 0.95f; p.eps = 1e-8f;
    p.schedule = HERD_SCHEDULE_COSINE;
    p.seed = 1; p.shuffle = 1;
    return p;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct {
    train_model *tm;
    float *m, *v;
    const adamw_params *a;
    float wd;
    uint64_t t;
} optim_ctx;

/* AdamW per tensor: decay on 2-D weights only. */
static void optim_tensor(void *vctx, const char *hf, const char *gg, int n_dims, int64_t rows,
                         int64_t cols, float *data, int qk) {
    optim_ctx *o = vctx;
    size_t off = (size_t)(data - o->tm->params), n = (size_t)rows * cols;
    adamw_update(data, o->tm->grads + off, o->m + off, o->v + off, n, o->a,
                 n_dims == 2 ? o->wd : 0.0f, o->t);
}

static double eval_loss(train_model *tm, train_loader *ld, int32_t *ids, int32_t *tg) {
    uint64_t n_batches = ld->n_windows / (uint64_t)tm->B;
    if (n_batches < 1) n_batches = 1;
    if (n_batches > 16) n_batches = 16;
    ld->pos = 0;
    double sum = 0.0;
    for (uint64_t i = 0; i < n_batches; i++) {
        loader_next(ld, ids, tg);
        sum += train_forward(tm, ids, tg);
    }
    return sum / (double)n_batches;
}

static void fmt_duration(char *buf, size_t n, double s) {
    if (s < 60) snprintf(buf, n, "%.0fs", s);
    else if (s < 3600) snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
    else snprintf(buf, n, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
}

static herd_status check_params(const herd_train_params *p, herd_error *err) {
    if (!p->init_path || !p->data_path || !p->out_dir)
        return herd_errf(err, HERD_ERR_ARG, "train: --init, --data and --out are required");
    if (p->batch < 1 || p->seq < 2 || p->steps < 1 || p->accum < 1)
        return herd_errf(err, HERD_ERR_ARG, "train: --batch (%d), --steps (%d), --accum (%d) "
                         "must be >= 1 and --seq (%d) >= 2", p->batch, p->steps, p->accum, p->seq);
    if (!(p->lr > 0) || !(p->weight_decay >= 0) || p->warmup < 0 || !(p->beta1 >= 0 && p->beta1 < 1) ||
        !(p->beta2 >= 0 && p->beta2 < 1) || !(p->eps > 0))
        return herd_errf(err, HERD_ERR_ARG, "train: need --lr > 0, --wd >= 0, --warmup >= 0, "
                         "betas in [0, 1) and eps > 0");
    if (p->eval_every < 0 || p->save_every < 0)
        return herd_errf(err, HERD_ERR_ARG, "train: --eval-every and --save-every must be >= 0");
    return HERD_OK;
}

typedef struct {
    herd_model *model;
    tokfile data, eval;
    train_model tm;
    train_loader ld, eval_ld;
    float *m, *v, *losses, *eval_losses;
    int *eval_steps;
    int32_t *ids, *targets;
} run;

static void run_free(run *r) {
    herd_model_free(r->model);
    tokfile_close(&r->data);
    tokfile_close(&r->eval);
    train_model_free(&r->tm);
    loader_free(&r->ld);
    loader_free(&r->eval_ld);
    free(r->m); free(r->v); free(r->losses); free(r->eval_losses); free(r->eval_steps);
    free(r->ids); free(r->targets);
}

static herd_status check_vocab(const tokfile *t, const herd_config *c, herd_error *err) {
    if (t->vocab_size > (uint32_t)c->vocab_size)
        return herd_errf(err, HERD_ERR_RANGE, "token file '%s' has vocabulary size %u but the "
                         "model's is %d; tokenize with this model's tokenizer", t->file.path,
                         t->vocab_size, c->vocab_size);
    return HERD_OK;
}

static herd_status train_loop(run *r, const herd_train_params *p, train_state *s,
                              const char *ckpt, herd_error *err) {
    train_model *tm = &r->tm;
    FILE *log = p->log;
    const int B = p->batch, T = p->seq, K = p->accum;
    adamw_params a = { p->lr, p->beta1, p->beta2, p->eps, p->weight_decay };
    int n_eval = 0;
    double t_start = now_s();
    uint64_t first = s->step;
    for (uint64_t step = s->step; step < (uint64_t)p->steps; step++) {
        double t0 = now_s();
        memset(tm->grads, 0, tm->n_params * sizeof(float));
        r->ld.pos = s->data_pos;
        double loss = 0.0;
        for (int k = 0; k < K; k++) {
            loader_next(&r->ld, r->ids, r->targets);
            loss += train_forward(tm, r->ids, r->targets);
            train_backward(tm, r->ids, r->targets, 1.0f / (float)K);
        }
        loss /= K;
        s->data_pos = r->ld.pos;
        /* torch.nn.utils.clip_grad_norm_: scale by clip / (norm + 1e-6) when below 1 */
        double norm = grad_global_norm(tm->grads, tm->n_params);
        if (p->clip > 0) {
            float coef = (float)(p->clip / (norm + 1e-6));
            if (coef < 1.0f)
                for (size_t i = 0; i < tm->n_params; i++) tm->grads[i] *= coef;
        }
        a.lr = lr_schedule((int)step, p->steps, p->warmup, p->lr,
                           p->schedule == HERD_SCHEDULE_COSINE);
        optim_ctx oc = { tm, r->m, r->v, &a, p->weight_decay, step + 1 };
        train_model_each_tensor(tm, optim_tensor, &oc);
        s->losses[step] = (float)loss;
        s->step = step + 1;
        if (!isfinite(loss))
            return herd_errf(err, HERD_ERR_RANGE, "train: loss is %g at step %llu; lower --lr "
                             "or set --clip", loss, (unsigned long long)step);
        double dt = now_s() - t0, tok_s = (double)B * T * K / (dt > 0 ? dt : 1e-9);
        double ev = NAN;
        int last = s->step == (uint64_t)p->steps;
        if (r->eval.ids && ((p->eval_every && s->step % p->eval_every == 0) || last)) {
            ev = eval_loss(tm, &r->eval_ld, r->ids, r->targets);
            r->eval_steps[n_eval] = (int)s->step;
            r->eval_losses[n_eval++] = (float)ev;
        }
        if (log && p->log_json) {
            fprintf(log, "{\"step\": %llu, \"loss\": %.9g, \"lr\": %.9g, \"grad_norm\": %.9g, "
                    "\"tokens_per_s\": %.1f", (unsigned long long)step, loss, a.lr, norm, tok_s);
            if (ev == ev) fprintf(log, ", \"eval_loss\": %.9g", ev);
            fputs("}\n", log);
            fflush(log);
        } else if (log) {
            double elapsed = now_s() - t_start;
            char eta[32];
            fmt_duration(eta, sizeof eta, elapsed / (double)(s->step - first) * (p->steps - s->step));
            fprintf(log, "step %llu/%d | loss %.4f | lr %.3e | grad norm %.3f | %.0f tok/s | ETA %s",
                    (unsigned long long)s->step, p->steps, loss, a.lr, norm, tok_s, eta);
            if (ev == ev) fprintf(log, " | eval loss %.4f", ev);
            fputc('\n', log);
            fflush(log);
        }
        if (p->save_every && s->step % p->save_every == 0 && !last) {
            herd_status st = checkpoint_save(ckpt, tm, r->m, r->v, s, err);
            if (st) return st;
        }
    }
    char path[4200];
    herd_status st = checkpoint_save(ckpt, tm, r->m, r->v, s, err);
    if (!st) st = train_export(tm, r->model->tok, p->out_dir, err);
    snprintf(path, sizeof path, "%s/loss.svg", p->out_dir);
    if (!st) st = train_write_svg(path, s->losses, (int)s->step, r->eval_steps, r->eval_losses,
                                  n_eval, err);
    if (!st && log && !p->log_json)
        fprintf(log, "wrote %s/checkpoint.bin, %s/hf, %s/model.gguf, %s\n", p->out_dir,
                p->out_dir, p->out_dir, path);
    return st;
}

herd_status herd_train(const herd_train_params *p, herd_error *err) {
    herd_status st = check_params(p, err);
    if (st) return st;
    run r;
    memset(&r, 0, sizeof r);
    /* data first: a bad file must fail before out_dir is touched */
    if ((st = tokfile_open(&r.data, p->data_path, err))) goto done;
    if (p->eval_path && (st = tokfile_open(&r.eval, p->eval_path, err))) goto done;
    if ((st = model_load(&r.model, p->init_path, err))) goto done;
    const herd_config *c = &r.model->config;
    if ((st = check_vocab(&r.data, c, err))) goto done;
    if (p->eval_path && (st = check_vocab(&r.eval, c, err))) goto done;
    if ((st = loader_init(&r.ld, &r.data, p->batch, p->seq, p->shuffle, p->seed, err))) goto done;
    if (p->eval_path && (st = loader_init(&r.eval_ld, &r.eval, p->batch, p->seq, 0, 0, err))) goto done;

    int saved_threads = omp_get_max_threads();
    omp_set_num_threads(p->n_threads > 0 ? p->n_threads : omp_get_num_procs());
    if ((st = train_model_new(&r.tm, c, r.model->rope_freqs, r.model->rope_interleaved, p->batch,
                              p->seq, err))) goto restore;
    if ((st = train_model_load(&r.tm, r.model, err))) goto restore;
    if (p->from_scratch) train_model_init_scratch(&r.tm, p->seed);
    size_t P = r.tm.n_params;
    r.m = calloc(P, sizeof(float));
    r.v = calloc(P, sizeof(float));
    r.losses = calloc((size_t)p->steps, sizeof(float));
    r.eval_losses = calloc((size_t)p->steps + 1, sizeof(float));
    r.eval_steps = calloc((size_t)p->steps + 1, sizeof(int));
    r.ids = malloc((size_t)p->batch * p->seq * sizeof(int32_t));
    r.targets = malloc((size_t)p->batch * p->seq * sizeof(int32_t));
    if (!r.m || !r.v || !r.losses || !r.eval_losses || !r.eval_steps || !r.ids || !r.targets) {
        st = herd_errf(err, HERD_ERR_NOMEM, "train: out of memory for the optimizer state");
        goto restore;
    }
    train_state s = { .B = p->batch, .T = p->seq, .accum = p->accum, .shuffle = p->shuffle,
                      .seed = p->seed, .losses = r.losses };
    herd_rng_seed(&s.rng, p->seed);
    if (herd_make_dirs(p->out_dir) != 0) {
        st = herd_errf(err, HERD_ERR_IO, "cannot create output directory '%s'", p->out_dir);
        goto restore;
    }
    char ckpt[4200];
    snprintf(ckpt, sizeof ckpt, "%s/checkpoint.bin", p->out_dir);
    if (p->resume && herd_file_exists(ckpt)) {
        if ((st = checkpoint_load(ckpt, &r.tm, r.m, r.v, &s, (uint64_t)p->steps, err))) goto restore;
        if (p->log && !p->log_json)
            fprintf(p->log, "resuming from %s at step %llu\n", ckpt, (unsigned long long)s.step);
    }
    if (p->log && !p->log_json && s.step == 0)
        fprintf(p->log, "training %llu parameters on %llu tokens: %d steps of %d x %d tokens%s\n",
                (unsigned long long)P, (unsigned long long)r.data.n_tokens, p->steps,
                p->batch * p->accum, p->seq, p->accum > 1 ? " (accumulated)" : "");
    st = train_loop(&r, p, &s, ckpt, err);
restore:
    omp_set_num_threads(saved_threads);
done:
    run_free(&r);
    return st;
}

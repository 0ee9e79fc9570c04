/* lora.h - a LoRA adapter's insides, shared by lora.c (loading, the delta) and
 * batch.c / forward.c (applying it to the sessions that carry it). Not public:
 * herd.h has the handle. */
#ifndef HERD_LORA_H
#define HERD_LORA_H

#include "session.h"

/* The projections an adapter may change, in each layer. */
enum { LORA_Q, LORA_K, LORA_V, LORA_O, LORA_GATE, LORA_UP, LORA_DOWN, LORA_N };

/* One adapted projection: y += B (A x). a = A (r, IC), bt = B^T (r, OC), F32, with
 * the adapter's scale folded into bt and B's q / k rows in the base model's RoPE
 * order. a NULL: this projection is not adapted. */
typedef struct {
    float *a, *bt;
    int64_t ic, oc;
    int r;
} lora_pair;

struct herd_lora {
    const herd_model *m;
    lora_pair *p;      /* (n_layers * LORA_N), [l * LORA_N + target] */
    int rank;          /* the largest r of its pairs */
    int n_pairs;       /* adapted projections */
    float scale;       /* the caller's multiplier */
};

/* For the n projections targets[] of layer l, which all read x (rows, IC):
 * outs[k] (rows, OC) += the delta of every row of segments segs[0 .. n_seg)
 * whose session carries an adapter that adapts targets[k] (x and outs[k] are the
 * workspace's: rows by their absolute index, row0 + t). One lora_forward per
 * adapter for all its rows. */
void lora_apply(herd_kv_pool *P, const fwd_seg *segs, int n_seg, int l, const int *targets, int n,
                const float *x, float *const *outs);

#endif

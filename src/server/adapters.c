/* adapters.c - the LoRA adapters a server serves, by name: loaded at startup
 * (--lora NAME=PATH) or while it runs (POST /v1/load_lora_adapter with
 * --lora-runtime), unloaded by name. One table under one mutex, shared by the
 * HTTP threads (a request's "model" takes a reference, load, unload, /v1/models)
 * and the scheduler (a slot whose session carries an adapter holds a reference).
 *
 * Lifetime: an adapter's references are the table's own while it is live
 * (nameable), each request that named it (taken by parse.c, dropped when the
 * request is freed) and each slot whose session carries it. Unloading drops the
 * table's: new requests get a 404 at once, requests already holding it finish,
 * idle slots let go of it at the scheduler's next pass (sched_detach_adapters),
 * and the last reference frees it. An entry is reused only once free, so a
 * request's model_id (the entry's name) and a session's adapter pointer stay
 * valid while referenced.
 */
#include "server/server.h"

#include <stdlib.h>
#include <string.h>

void adapters_init(srv_adapters *A, const herd_model *m) {
    memset(A, 0, sizeof *A);
    pthread_mutex_init(&A->mu, NULL);
    A->m = m;
}

void adapters_free(srv_adapters *A) {
    for (int i = 0; i < SRV_MAX_LORA; i++) herd_lora_free(A->a[i].l);
    pthread_mutex_destroy(&A->mu);
}

/* Under A->mu. */
static void unref_locked(srv_adapters *A, int i) {
    if (--A->a[i].refs > 0) return;
    herd_lora_free(A->a[i].l);
    memset(&A->a[i], 0, sizeof A->a[i]);
}

int adapters_ref(srv_adapters *A, const char *name, const herd_lora **l, const char **id) {
    int found = -1;
    pthread_mutex_lock(&A->mu);
    for (int i = 0; i < SRV_MAX_LORA && found < 0; i++)
        if (A->a[i].live && !strcmp(A->a[i].name, name)) found = i;
    if (found >= 0) {
        A->a[found].refs++;
        if (l) *l = A->a[found].l;
        if (id) *id = A->a[found].name;
    }
    pthread_mutex_unlock(&A->mu);
    return found;
}

void adapters_ref_index(srv_adapters *A, int i) {
    pthread_mutex_lock(&A->mu);
    A->a[i].refs++;
    pthread_mutex_unlock(&A->mu);
}

void adapters_unref(srv_adapters *A, int i) {
    pthread_mutex_lock(&A->mu);
    unref_locked(A, i);
    pthread_mutex_unlock(&A->mu);
}

int adapters_live(srv_adapters *A, int i) {
    pthread_mutex_lock(&A->mu);
    const int live = A->a[i].live;
    pthread_mutex_unlock(&A->mu);
    return live;
}

int adapters_add(srv_adapters *A, const char *name, herd_lora *l, herd_error *err) {
    int slot = -1;
    pthread_mutex_lock(&A->mu);
    for (int i = 0; i < SRV_MAX_LORA; i++) {
        if (A->a[i].live && !strcmp(A->a[i].name, name)) {
            pthread_mutex_unlock(&A->mu);
            snprintf(err->msg, sizeof err->msg, "the LoRA adapter '%.200s' is already loaded; unload it first", name);
            return -1;
        }
        if (slot < 0 && A->a[i].refs == 0) slot = i;
    }
    if (slot < 0) {
        pthread_mutex_unlock(&A->mu);
        snprintf(err->msg, sizeof err->msg, "%d LoRA adapters are loaded or still in use, the most a server "
                 "holds; unload one first", SRV_MAX_LORA);
        return -1;
    }
    srv_adapter *e = &A->a[slot];
    snprintf(e->name, sizeof e->name, "%s", name);
    e->l = l;
    e->refs = 1;
    e->live = 1;
    pthread_mutex_unlock(&A->mu);
    return slot;
}

int adapters_remove(srv_adapters *A, const char *name) {
    int found = -1;
    pthread_mutex_lock(&A->mu);
    for (int i = 0; i < SRV_MAX_LORA && found < 0; i++)
        if (A->a[i].live && !strcmp(A->a[i].name, name)) found = i;
    if (found >= 0) {
        A->a[found].live = 0;
        unref_locked(A, found);
    }
    pthread_mutex_unlock(&A->mu);
    return found;
}

int adapters_list(srv_adapters *A, char (*names)[SRV_NAME_MAX + 1], int *index) {
    int n = 0;
    pthread_mutex_lock(&A->mu);
    for (int i = 0; i < SRV_MAX_LORA; i++)
        if (A->a[i].live) {
            memcpy(names[n], A->a[i].name, sizeof A->a[i].name);
            if (index) index[n] = i;
            n++;
        }
    pthread_mutex_unlock(&A->mu);
    return n;
}

int adapters_in_memory(srv_adapters *A) {
    int n = 0;
    pthread_mutex_lock(&A->mu);
    for (int i = 0; i < SRV_MAX_LORA; i++) n += A->a[i].refs > 0;
    pthread_mutex_unlock(&A->mu);
    return n;
}

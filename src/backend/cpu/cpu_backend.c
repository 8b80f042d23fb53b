/*
 * cpu_backend.c - CPU graph executor over a persistent thread pool.
 *
 * DESIGN
 * - Threads are created once (tm__cpu_pool_init) and live until the pool is freed.
 *   The caller of tm__cpu_graph_compute() is thread 0; workers 1..n-1 sleep on a
 *   condition variable between graphs and spin on a barrier between nodes (a
 *   decode step has hundreds of nodes; a futex round trip per node would cost
 *   more than the small nodes themselves).
 * - Every thread walks the same node list and computes its share of each node;
 *   the barrier after each node publishes the writes (acq_rel on the counter).
 * - No allocation after init: per-thread scratch is reserved up front.
 * - Work sharing: kernels may claim chunks of a node from a shared counter
 *   (tm__cpu_chunk_claim) instead of a fixed split, so a thread that the OS
 *   deschedules (other processes on a busy host) does not hold the node back.
 *   The last thread into the barrier resets the counter before releasing the
 *   others; the pool a thread works for is found through a thread-local pointer
 *   set for the duration of a graph.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>

#include "backend/cpu/cpu_int.h"
#include "backend/cpu/simd_dot.h"

typedef struct cpu_worker {
    tm_cpu_pool *pool;
    int          ith;
    pthread_t    thread;
} cpu_worker;

struct tm_cpu_pool {
    int32_t         n_threads;
    size_t          scratch_bytes; /* per thread */
    char           *scratch;       /* [n_threads * scratch_bytes] */
    cpu_worker     *workers;       /* [n_threads]; [0] is the caller */
    pthread_mutex_t mu;
    pthread_cond_t  cv;
    const tm_graph *graph;      /* the graph being computed; under mu */
    uint64_t        generation; /* bumped per graph; under mu */
    bool            quit;       /* under mu */
    atomic_int      barrier_count;
    atomic_int      barrier_phase;
    atomic_int      n_done;    /* workers finished with the current graph */
    atomic_llong    chunk;     /* next chunk of the current node (tm__cpu_chunk_claim) */
    int32_t         n_started; /* threads created */
};

static const tm_cpu_kernel cpu_kernels[TM_OP_COUNT] = {
    [TM_OP_GET_ROWS] = tm__cpu_get_rows, [TM_OP_RMS_NORM] = tm__cpu_rms_norm,
    [TM_OP_MUL_MAT] = tm__cpu_mul_mat,   [TM_OP_ADD] = tm__cpu_binary,
    [TM_OP_MUL] = tm__cpu_binary,        [TM_OP_SCALE] = tm__cpu_unary,
    [TM_OP_SILU] = tm__cpu_unary,        [TM_OP_GELU] = tm__cpu_unary,
    [TM_OP_SOFTCAP] = tm__cpu_unary,     [TM_OP_SOFTMAX] = tm__cpu_softmax,
    [TM_OP_ROPE] = tm__cpu_rope,         [TM_OP_KV_STORE] = tm__cpu_kv_store,
    [TM_OP_ATTN] = tm__cpu_attn,
};

static void cpu_barrier(tm_cpu_pool *p) {
    if (p->n_threads == 1)
        return;
    int phase = atomic_load_explicit(&p->barrier_phase, memory_order_relaxed);
    /* acq_rel: publishes this thread's writes of the node and sees the others'. */
    if (atomic_fetch_add_explicit(&p->barrier_count, 1, memory_order_acq_rel) == p->n_threads - 1) {
        atomic_store_explicit(&p->barrier_count, 0, memory_order_relaxed);
        atomic_store_explicit(&p->chunk, 0, memory_order_relaxed); /* published by the release */
        /* release: the reset count and all node writes happen before the new phase. */
        atomic_fetch_add_explicit(&p->barrier_phase, 1, memory_order_release);
        return;
    }
    int spins = 0;
    /* acquire: pairs with the release above. */
    while (atomic_load_explicit(&p->barrier_phase, memory_order_acquire) == phase)
        if (++spins > 1000) {
            sched_yield();
            spins = 0;
        }
}

/* The pool the calling thread computes a graph for; NULL outside a graph. */
static _Thread_local tm_cpu_pool *cpu_tls_pool;

int64_t tm__cpu_chunk_claim(void) {
    tm_cpu_pool *p = cpu_tls_pool;
    if (p == NULL)
        return -1;
    return (int64_t)atomic_fetch_add_explicit(&p->chunk, 1, memory_order_relaxed);
}

static void cpu_run_graph(tm_cpu_pool *p, const tm_graph *g, int ith) {
    void   *scratch = p->scratch + (size_t)ith * p->scratch_bytes;
    int32_t n = tm_graph_n_nodes(g);
    cpu_tls_pool = p;
    for (int32_t i = 0; i < n; i++) {
        const tm_tensor *t = tm_graph_node(g, i);
        tm_cpu_kernel    k = cpu_kernels[t->op];
        if (k == NULL)
            continue; /* leaves and views */
        k(t, ith, p->n_threads, scratch);
        if (p->n_threads == 1)
            atomic_store_explicit(&p->chunk, 0, memory_order_relaxed);
        cpu_barrier(p);
    }
    cpu_tls_pool = NULL;
}

static void *cpu_worker_main(void *arg) {
    cpu_worker  *w = arg;
    tm_cpu_pool *p = w->pool;
    uint64_t     seen = 0;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (!p->quit && p->generation == seen)
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->quit) {
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        seen = p->generation;
        const tm_graph *g = p->graph;
        pthread_mutex_unlock(&p->mu);
        cpu_run_graph(p, g, w->ith);
        /* release: the caller reads n_done before reusing outputs and the graph. */
        atomic_fetch_add_explicit(&p->n_done, 1, memory_order_release);
    }
}

tm_status tm__cpu_pool_init(int32_t n_threads, size_t scratch_bytes, tm_cpu_pool **out) {
    *out = NULL;
    if (n_threads < 1 || n_threads > 512)
        return tm_fail(TM_ERR_INVALID, "thread count %d out of range 1..512", n_threads);
    tm_cpu_pool *p = tm_calloc(1, sizeof *p);
    if (p == NULL)
        return tm_fail(TM_ERR_NOMEM, "cpu pool");
    p->n_threads = n_threads;
    p->scratch_bytes = (scratch_bytes + 63) & ~(size_t)63;
    size_t total;
    if (!tm_size_mul(p->scratch_bytes, (size_t)n_threads, &total)) {
        tm_free(p);
        return tm_fail(TM_ERR_NOMEM, "cpu scratch size overflows");
    }
    p->scratch = tm_malloc(total > 0 ? total : 1);
    p->workers = tm_calloc((size_t)n_threads, sizeof *p->workers);
    if (p->scratch == NULL || p->workers == NULL) {
        tm_free(p->scratch);
        tm_free(p->workers);
        tm_free(p);
        return tm_fail(TM_ERR_NOMEM, "cpu scratch of %zu bytes", total);
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->n_started = 1;
    for (int32_t i = 1; i < n_threads; i++) {
        p->workers[i] = (cpu_worker){.pool = p, .ith = i};
        if (pthread_create(&p->workers[i].thread, NULL, cpu_worker_main, &p->workers[i]) != 0) {
            tm__cpu_pool_free(p);
            return tm_fail(TM_ERR_NOMEM, "cannot start cpu thread %d", i);
        }
        p->n_started++;
    }
    *out = p;
    return TM_OK;
}

void tm__cpu_pool_free(tm_cpu_pool *p) {
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->mu);
    p->quit = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int32_t i = 1; i < p->n_started; i++)
        pthread_join(p->workers[i].thread, NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    tm_free(p->scratch);
    tm_free(p->workers);
    tm_free(p);
}

int32_t tm__cpu_pool_n_threads(const tm_cpu_pool *p) { return p->n_threads; }

void tm__cpu_graph_compute(tm_cpu_pool *p, const tm_graph *g) {
    if (p->n_threads == 1) {
        cpu_run_graph(p, g, 0);
        return;
    }
    atomic_store_explicit(&p->n_done, 0, memory_order_relaxed);
    pthread_mutex_lock(&p->mu);
    p->graph = g;
    p->generation++;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    cpu_run_graph(p, g, 0);
    /* acquire: pairs with the workers' release; after this no worker touches g. */
    while (atomic_load_explicit(&p->n_done, memory_order_acquire) != p->n_threads - 1)
        sched_yield();
}

void tm__cpu_node_compute(const tm_tensor *dst, void *scratch) {
    tm_cpu_kernel k = cpu_kernels[dst->op];
    if (k != NULL)
        k(dst, 0, 1, scratch);
}

size_t tm__cpu_graph_scratch_bytes(const tm_graph *g) {
    size_t need = 0;
    for (int32_t i = 0; i < tm_graph_n_nodes(g); i++) {
        const tm_tensor *t = tm_graph_node(g, i);
        size_t           s = 0;
        if (t->op == TM_OP_MUL_MAT)
            s = tm__cpu_mul_mat_scratch(t);
        else if (t->op == TM_OP_ATTN)
            s = tm__cpu_attn_scratch(t);
        if (s > need)
            need = s;
    }
    return need;
}

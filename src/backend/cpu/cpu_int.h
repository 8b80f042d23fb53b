/*
 * cpu_int.h - private interface of the CPU backend: a persistent thread pool that
 * executes a tm_graph node by node, and the reference op kernels it calls.
 *
 * Kernels receive (dst, ith, nth, scratch): thread ith of nth computes its share
 * of dst's rows and may use its own scratch (cpu_pool's per-thread buffer of
 * tm__cpu_scratch_bytes() bytes). There is a barrier between nodes. Kernels take
 * no locks, never allocate and never fail: shapes were asserted when the graph
 * was built and inputs (token ids, positions) were validated by the caller.
 */
#ifndef TM_CPU_INT_H
#define TM_CPU_INT_H

#include "tm/tm_graph.h"

typedef struct tm_cpu_pool tm_cpu_pool;

/* n_threads >= 1 (the calling thread is thread 0); scratch_bytes per thread. */
tm_status tm__cpu_pool_init(int32_t n_threads, size_t scratch_bytes, tm_cpu_pool **out);
void      tm__cpu_pool_free(tm_cpu_pool *p);
int32_t   tm__cpu_pool_n_threads(const tm_cpu_pool *p);

/* Runs every node of g in order. The scratch each node needs must fit
 * (tm__cpu_graph_scratch_bytes at reserve time). */
void tm__cpu_graph_compute(tm_cpu_pool *p, const tm_graph *g);

/* Bytes of per-thread scratch the nodes of g need. */
size_t tm__cpu_graph_scratch_bytes(const tm_graph *g);

/* Runs one node on the calling thread only (tests). */
void tm__cpu_node_compute(const tm_tensor *dst, void *scratch);

/* ---- kernels (ops_*.c) ---------------------------------------------------------- */
typedef void (*tm_cpu_kernel)(const tm_tensor *dst, int ith, int nth, void *scratch);

void tm__cpu_get_rows(const tm_tensor *dst, int ith, int nth, void *scratch);
void tm__cpu_rms_norm(const tm_tensor *dst, int ith, int nth, void *scratch);
void tm__cpu_binary(const tm_tensor *dst, int ith, int nth, void *scratch);
void tm__cpu_unary(const tm_tensor *dst, int ith, int nth, void *scratch);
void tm__cpu_softmax(const tm_tensor *dst, int ith, int nth, void *scratch);
void tm__cpu_rope(const tm_tensor *dst, int ith, int nth, void *scratch);
void tm__cpu_mul_mat(const tm_tensor *dst, int ith, int nth, void *scratch);
void tm__cpu_kv_store(const tm_tensor *dst, int ith, int nth, void *scratch);
void tm__cpu_attn(const tm_tensor *dst, int ith, int nth, void *scratch);

size_t tm__cpu_mul_mat_scratch(const tm_tensor *dst);
/* true: every mul_mat takes the dequantize-to-float reference path (tests). */
void   tm__cpu_set_use_ref(bool on);
size_t tm__cpu_attn_scratch(const tm_tensor *dst);

/* Rows [*r0, *r1) of n for thread ith of nth. */
static inline void tm__cpu_split(int64_t n, int ith, int nth, int64_t *r0, int64_t *r1) {
    int64_t per = (n + nth - 1) / nth;
    *r0 = per * ith < n ? per * ith : n;
    *r1 = *r0 + per < n ? *r0 + per : n;
}

#endif /* TM_CPU_INT_H */

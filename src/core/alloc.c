/*
 * alloc.c - the replaceable allocator (libuv uv_replace_allocator, SQLite mem
 * methods) and an allocation counter that tests use to prove a hot path does
 * not allocate.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "tm/tm_status.h"

static void *std_malloc(size_t size, void *user) {
    (void)user;
    return malloc(size);
}
static void *std_realloc(void *p, size_t size, void *user) {
    (void)user;
    return realloc(p, size);
}
static void std_free(void *p, void *user) {
    (void)user;
    free(p);
}

static tm_allocator          tm_alloc_cur = {std_malloc, std_realloc, std_free, NULL};
static atomic_uint_least64_t tm_alloc_n;

void tm_set_allocator(const tm_allocator *a) {
    if (a == NULL)
        tm_alloc_cur = (tm_allocator){std_malloc, std_realloc, std_free, NULL};
    else
        tm_alloc_cur = *a;
}

uint64_t tm_alloc_count(void) { return atomic_load_explicit(&tm_alloc_n, memory_order_relaxed); }

static void *counted(void *p) {
    if (p != NULL)
        atomic_fetch_add_explicit(&tm_alloc_n, 1, memory_order_relaxed);
    return p;
}

void *tm_malloc(size_t size) {
    return counted(tm_alloc_cur.malloc_fn(size ? size : 1, tm_alloc_cur.user));
}

void *tm_calloc(size_t n, size_t size) {
    size_t total;
    if (!tm_size_mul(n, size, &total))
        return NULL;
    void *p = tm_malloc(total);
    if (p != NULL)
        memset(p, 0, total);
    return p;
}

void *tm_realloc(void *p, size_t size) {
    return counted(tm_alloc_cur.realloc_fn(p, size ? size : 1, tm_alloc_cur.user));
}

void tm_free(void *p) {
    if (p != NULL)
        tm_alloc_cur.free_fn(p, tm_alloc_cur.user);
}

char *tm_strndup(const char *s, size_t n) {
    char *d = tm_malloc(n + 1);
    if (d == NULL)
        return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *tm_strdup(const char *s) { return tm_strndup(s, strlen(s)); }

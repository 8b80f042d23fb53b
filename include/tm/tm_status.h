/*
 * tm_status.h - status codes, error detail, assertions and the allocator hook.
 *
 * Three kinds of failure, never mixed (STYLE.md section 4):
 *   1. input or environment failures return a tm_status; the detail message is
 *      recorded per thread and read back with tm_last_error();
 *   2. invariants of TensorMesh itself use TM_ASSERT (always on, aborts);
 *   3. expensive checks use TM_DEBUG_ASSERT (only with TM_DEBUG).
 *
 *     tm_status st = tm_gguf_open(&params, &file);
 *     if (st != TM_OK)
 *         fprintf(stderr, "error: %s\n", tm_last_error());
 *
 * Threads: every function here may be called from any thread; the last-error
 * buffer is thread-local. tm_set_allocator() must be called before any other
 * TensorMesh call and never while other threads use the library.
 */
#ifndef TM_STATUS_H
#define TM_STATUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__) || defined(__clang__)
#define TM_PRINTF_FMT(a, b) __attribute__((format(printf, a, b)))
#define TM_NORETURN __attribute__((noreturn))
#else
#define TM_PRINTF_FMT(a, b)
#define TM_NORETURN
#endif

#ifdef __cplusplus
extern "C" { /* CUDA .cu files include this header */
#endif

typedef enum tm_status {
    TM_OK = 0,
    TM_ERR_NOMEM = -1,
    TM_ERR_IO = -2,
    TM_ERR_FORMAT = -3,      /* malformed or unsupported file / request / message */
    TM_ERR_INVALID = -4,     /* caller passed a bad argument */
    TM_ERR_UNSUPPORTED = -5, /* no backend or loader implements this */
    TM_ERR_BACKEND = -6,     /* device or driver failure */
    TM_ERR_FULL = -7,        /* out of KV blocks / queue slots: retry later */
    TM_ERR_CANCELLED = -8,
    TM_ERR_NOT_FOUND = -9, /* a named key, tensor or file does not exist */
} tm_status;

/* Static string naming the status ("format error"). Never NULL. */
const char *tm_status_str(tm_status st);

/* Detail for the last failure recorded on this thread; "" when none. The
 * pointer is thread-local and valid until the next tm_fail() on this thread. */
const char *tm_last_error(void);

/* Records a formatted detail message and returns st, so it can be returned. */
tm_status tm_fail(tm_status st, const char *fmt, ...) TM_PRINTF_FMT(2, 3);

/* Clears the last error of this thread. */
void tm_clear_error(void);

TM_NORETURN void tm__panic(const char *file, int line, const char *expr);

#define TM_TRY(expr)                                                                               \
    do {                                                                                           \
        tm_status tm__st = (expr);                                                                 \
        if (tm__st != TM_OK)                                                                       \
            return tm__st;                                                                         \
    } while (0)

/* Invariant of TensorMesh itself; never reachable from input. Always enabled. */
#define TM_ASSERT(x) ((x) ? (void)0 : tm__panic(__FILE__, __LINE__, #x))

#ifdef TM_DEBUG
#define TM_DEBUG_ASSERT(x) TM_ASSERT(x)
#else
#define TM_DEBUG_ASSERT(x) ((void)0)
#endif

/* ---- allocation ------------------------------------------------------------
 * Every allocation in the library goes through these, so an embedder or a test
 * can replace the allocator (fault injection) and count allocations. */
typedef struct tm_allocator {
    void *(*malloc_fn)(size_t size, void *user);
    void *(*realloc_fn)(void *p, size_t size, void *user);
    void (*free_fn)(void *p, void *user);
    void *user;
} tm_allocator;

/* NULL restores the C library allocator. */
void tm_set_allocator(const tm_allocator *a);

void *tm_malloc(size_t size);
void *tm_calloc(size_t n, size_t size); /* overflow-checked: NULL when n*size overflows */
void *tm_realloc(void *p, size_t size);
void  tm_free(void *p); /* NULL is a no-op */
char *tm_strdup(const char *s);
char *tm_strndup(const char *s, size_t n);

/* Number of successful tm_malloc/tm_calloc/tm_realloc calls so far (all threads). */
uint64_t tm_alloc_count(void);

/* Overflow-checked size arithmetic: false on overflow, *out untouched. */
static inline bool tm_size_mul(size_t a, size_t b, size_t *out) {
    if (b != 0 && a > SIZE_MAX / b)
        return false;
    *out = a * b;
    return true;
}

static inline bool tm_size_add(size_t a, size_t b, size_t *out) {
    if (a > SIZE_MAX - b)
        return false;
    *out = a + b;
    return true;
}

#ifdef __cplusplus
}
#endif

#endif /* TM_STATUS_H */

/* test_core.c - status, allocator, half-precision conversions, dtype traits. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include "harness.h"
#include "tm/tm_dtype.h"
#include "tm/tm_io.h"
#include "tm/tm_status.h"

TEST(fail_records_message) {
    tm_status st = tm_fail(TM_ERR_FORMAT, "bad %d", 42);
    EXPECT_EQ_INT(st, TM_ERR_FORMAT);
    EXPECT_EQ_STR(tm_last_error(), "bad 42");
    tm_clear_error();
    EXPECT_EQ_STR(tm_last_error(), "");
}

TEST(size_mul_overflow) {
    size_t out = 7;
    EXPECT_TRUE(!tm_size_mul(SIZE_MAX / 2 + 1, 2, &out));
    EXPECT_EQ_INT(out, 7);
    EXPECT_TRUE(tm_size_mul(3, 5, &out));
    EXPECT_EQ_INT(out, 15);
    EXPECT_TRUE(!tm_size_add(SIZE_MAX, 1, &out));
    EXPECT_TRUE(tm_calloc(SIZE_MAX / 2, 4) == NULL);
}

static int   fail_after;
static void *inj_malloc(size_t n, void *u) {
    (void)u;
    return fail_after-- > 0 ? malloc(n) : NULL;
}
static void *inj_realloc(void *p, size_t n, void *u) {
    (void)u;
    return fail_after-- > 0 ? realloc(p, n) : NULL;
}
static void inj_free(void *p, void *u) {
    (void)u;
    free(p);
}

TEST(allocator_injection) {
    tm_allocator a = {inj_malloc, inj_realloc, inj_free, NULL};
    tm_set_allocator(&a);
    fail_after = 1;
    void *p = tm_malloc(16);
    void *q = tm_malloc(16);
    tm_set_allocator(NULL);
    EXPECT_TRUE(p != NULL);
    EXPECT_TRUE(q == NULL);
    free(p);
    uint64_t before = tm_alloc_count();
    char    *s = tm_strdup("abc");
    EXPECT_EQ_INT(tm_alloc_count(), before + 1);
    EXPECT_EQ_STR(s, "abc");
    tm_free(s);
}

TEST(f16_roundtrip_exhaustive) {
    /* Every finite half converts to float and back unchanged. */
    for (uint32_t h = 0; h < 0x10000u; h++) {
        if ((h & 0x7c00u) == 0x7c00u && (h & 0x3ffu))
            continue; /* NaN payloads may be quieted */
        uint16_t back = tm_f32_to_f16(tm_f16_to_f32((uint16_t)h));
        if (back != h) {
            EXPECT_EQ_INT(back, h);
            return;
        }
    }
    EXPECT_NEAR(tm_f16_to_f32(0x3c00), 1.0, 0);
    EXPECT_EQ_INT(tm_f32_to_f16(65520.0f), 0x7c00); /* rounds to inf */
    EXPECT_EQ_INT(tm_f32_to_f16(65519.0f), 0x7bff);
    EXPECT_EQ_INT(tm_f32_to_f16(1.0f + 1.0f / 2048), 0x3c00); /* tie to even */
    EXPECT_EQ_INT(tm_f32_to_f16(5.9604645e-08f), 0x0001);     /* smallest subnormal */
    EXPECT_EQ_INT(tm_f32_to_f16(2.98e-08f), 0x0000);
    EXPECT_EQ_INT(tm_f32_to_bf16(1.0f), 0x3f80);
    EXPECT_NEAR(tm_bf16_to_f32(0x3f80), 1.0, 0);
}

TEST(dtype_traits) {
    size_t n = 0;
    EXPECT_OK(tm_dtype_row_bytes(TM_DTYPE_Q4_K, 512, &n));
    EXPECT_EQ_INT(n, 288);
    EXPECT_EQ_INT(tm_dtype_row_bytes(TM_DTYPE_Q4_K, 100, &n), TM_ERR_FORMAT);
    EXPECT_TRUE(!tm_dtype_is_valid(4));
    EXPECT_TRUE(!tm_dtype_is_valid(1000));
    tm_dtype t;
    EXPECT_OK(tm_dtype_from_name("Q8_0", &t));
    EXPECT_EQ_INT(t, TM_DTYPE_Q8_0);
    EXPECT_EQ_STR(tm_dtype_name(TM_DTYPE_BF16), "bf16");
}

TEST(file_read_limits) {
    char *buf = NULL;
    EXPECT_EQ_INT(tm_file_read_all("/nonexistent/x", 100, &buf, NULL), TM_ERR_IO);
    EXPECT_TRUE(buf == NULL);
    tm_mmap m;
    EXPECT_EQ_INT(tm_mmap_open("/nonexistent/x", &m), TM_ERR_IO);
}

/* Minor page faults taken while reading one byte per page of m. */
static long core_read_faults(const tm_mmap *m) {
    struct rusage a, b;
    getrusage(RUSAGE_SELF, &a);
    volatile const unsigned char *c = m->data;
    unsigned                      sum = 0;
    for (size_t i = 0; i < m->size; i += 4096)
        sum += c[i];
    getrusage(RUSAGE_SELF, &b);
    EXPECT_TRUE(sum == (unsigned)(m->size / 4096) * 7u); /* the bytes are unchanged */
    return b.ru_minflt - a.ru_minflt;
}

/* tm_mem_prefault is safe on any range of a mapping (NULL, empty, unaligned, up to the
 * end) and leaves the bytes as they are. How many faults it saves depends on the kernel
 * (fault-around and large page-cache folios map up to 2 MiB per fault here), so the
 * counts are printed, not asserted; the server's first request is the measure
 * (docs/perf.md, Server). */
TEST(mem_prefault_maps_pages_in) {
    char path[] = "/tmp/tm_prefault_XXXXXX";
    int  fd = mkstemp(path);
    ASSERT_TRUE(fd >= 0);
    enum { PAGES = 2048 };
    unsigned char *buf = calloc(PAGES, 4096);
    for (size_t i = 0; i < (size_t)PAGES * 4096; i += 4096)
        buf[i] = 7;
    ASSERT_TRUE(write(fd, buf, (size_t)PAGES * 4096) == (ssize_t)PAGES * 4096);
    close(fd);
    free(buf);
    tm_mmap cold, warm;
    ASSERT_OK(tm_mmap_open(path, &cold));
    ASSERT_OK(tm_mmap_open(path, &warm));
    tm_mem_prefault(NULL, 100); /* no-ops */
    tm_mem_prefault(warm.data, 0);
    tm_mem_prefault((const char *)warm.data + 5, 10000);             /* unaligned start, inside */
    tm_mem_prefault((const char *)warm.data + 100, warm.size - 100); /* to the end */
    const long f_cold = core_read_faults(&cold), f_warm = core_read_faults(&warm);
    printf("  read faults: fresh mapping %ld, prefaulted %ld\n", f_cold, f_warm);
    EXPECT_TRUE(f_warm <= f_cold);
    tm_mmap_close(&cold);
    tm_mmap_close(&warm);
    unlink(path);
}

typedef struct prefetch_seen {
    int    calls;
    size_t last_done, total;
} prefetch_seen;

static void prefetch_cb(size_t done, size_t total, void *user) {
    prefetch_seen *s = user;
    if (done < s->last_done)
        s->calls = -1000; /* progress must never go backwards */
    s->calls++;
    s->last_done = done;
    s->total = total;
}

TEST(file_prefetch_reports_progress) {
    char path[] = "/tmp/tm_prefetch_XXXXXX";
    int  fd = mkstemp(path);
    ASSERT_TRUE(fd >= 0);
    FILE  *f = fdopen(fd, "wb");
    size_t n = ((size_t)40 << 20) + 123; /* 40 MiB + a partial page */
    for (size_t i = 0; i < n; i++)
        fputc((int)(i & 0xff), f);
    fclose(f);
    prefetch_seen seen = {0};
    EXPECT_OK(tm_file_prefetch(path, prefetch_cb, &seen));
    EXPECT_TRUE(seen.calls >= 3); /* every 16 MiB and once at the end */
    EXPECT_EQ_INT(seen.last_done, n);
    EXPECT_EQ_INT(seen.total, n);
    EXPECT_OK(tm_file_prefetch(path, NULL, NULL));
    unlink(path);
    EXPECT_EQ_INT(tm_file_prefetch("/nonexistent/model.gguf", NULL, NULL), TM_ERR_IO);
}

TM_TEST_MAIN()

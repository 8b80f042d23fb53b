/*
 * harness.h - a small unit-test harness in the style of libuv's: TEST(name)
 * registers a test, EXPECT_* print both values and mark the test failed,
 * ASSERT_* also return from it. Each test file is one executable; with no
 * arguments it runs every test, with a name it runs that one. The last line
 * printed is "N passed, N failed".
 *
 * Include this header in exactly one .c file per executable and end that file
 * with TM_TEST_MAIN().
 */
#ifndef TM_TEST_HARNESS_H
#define TM_TEST_HARNESS_H

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*tm_test_fn)(void);

typedef struct tm_test_entry {
    const char *name;
    tm_test_fn  fn;
} tm_test_entry;

#define TM_TEST_MAX 512
static tm_test_entry tm_tests[TM_TEST_MAX];
static int           tm_n_tests;
static int           tm_cur_failed;

static inline void tm_test_register(const char *name, tm_test_fn fn) {
    if (tm_n_tests < TM_TEST_MAX)
        tm_tests[tm_n_tests++] = (tm_test_entry){name, fn};
}

#define TEST(name)                                                                                 \
    static void                              test_##name(void);                                    \
    __attribute__((constructor)) static void reg_##name(void) {                                    \
        tm_test_register(#name, test_##name);                                                      \
    }                                                                                              \
    static void test_##name(void)

#define TM__FAIL_AT(...)                                                                           \
    do {                                                                                           \
        fprintf(stderr, "  %s:%d: ", __FILE__, __LINE__);                                          \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fputc('\n', stderr);                                                                       \
        tm_cur_failed = 1;                                                                         \
    } while (0)

#define EXPECT_TRUE(x)                                                                             \
    do {                                                                                           \
        if (!(x))                                                                                  \
            TM__FAIL_AT("expected true: %s", #x);                                                  \
    } while (0)

#define EXPECT_EQ_INT(a, b)                                                                        \
    do {                                                                                           \
        long long tm_a = (long long)(a), tm_b = (long long)(b);                                    \
        if (tm_a != tm_b)                                                                          \
            TM__FAIL_AT("%s == %s: %lld != %lld", #a, #b, tm_a, tm_b);                             \
    } while (0)

#define EXPECT_EQ_STR(a, b)                                                                        \
    do {                                                                                           \
        const char *tm_a = (a), *tm_b = (b);                                                       \
        if (tm_a == NULL || tm_b == NULL || strcmp(tm_a, tm_b) != 0)                               \
            TM__FAIL_AT("%s == %s: \"%s\" != \"%s\"", #a, #b, tm_a ? tm_a : "(null)",              \
                        tm_b ? tm_b : "(null)");                                                   \
    } while (0)

#define EXPECT_NEAR(a, b, tol)                                                                     \
    do {                                                                                           \
        double tm_a = (double)(a), tm_b = (double)(b);                                             \
        if (!(fabs(tm_a - tm_b) <= (tol)))                                                         \
            TM__FAIL_AT("%s ~= %s: %.9g vs %.9g (tol %g)", #a, #b, tm_a, tm_b, (double)(tol));     \
    } while (0)

/* Status checks print the library's last error on failure. */
#define EXPECT_OK(expr)                                                                            \
    do {                                                                                           \
        tm_status tm_s = (expr);                                                                   \
        if (tm_s != TM_OK)                                                                         \
            TM__FAIL_AT("%s: %s (%s)", #expr, tm_status_str(tm_s), tm_last_error());               \
    } while (0)

#define ASSERT_TRUE(x)                                                                             \
    do {                                                                                           \
        if (!(x)) {                                                                                \
            TM__FAIL_AT("assertion: %s", #x);                                                      \
            return;                                                                                \
        }                                                                                          \
    } while (0)

#define ASSERT_OK(expr)                                                                            \
    do {                                                                                           \
        tm_status tm_s = (expr);                                                                   \
        if (tm_s != TM_OK) {                                                                       \
            TM__FAIL_AT("%s: %s (%s)", #expr, tm_status_str(tm_s), tm_last_error());               \
            return;                                                                                \
        }                                                                                          \
    } while (0)

/* Path of ../shared/data relative to the source tree, or $TM_SHARED_DATA. NULL when absent:
 * tests that need it print SKIPPED loudly. */
static inline const char *tm_test_shared_data(void) {
    const char *e = getenv("TM_SHARED_DATA");
    if (e != NULL && *e)
        return e;
#ifdef TM_SOURCE_DIR
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s/../shared/data", TM_SOURCE_DIR);
    FILE *f = fopen(buf, "r");
    if (f != NULL) {
        fclose(f);
        return buf;
    }
#endif
    return NULL;
}

/* The real all-MiniLM-L6-v2 Hugging Face folder: $TM_MINILM_DIR, else models/all-MiniLM-L6-v2
 * in the source tree (scripts/fetch_models.sh minilm). NULL when absent. */
static inline const char *tm_test_minilm_dir(void) {
    const char *e = getenv("TM_MINILM_DIR");
    if (e != NULL && *e)
        return e;
#ifdef TM_SOURCE_DIR
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s/models/all-MiniLM-L6-v2/config.json", TM_SOURCE_DIR);
    FILE *f = fopen(buf, "r");
    if (f != NULL) {
        fclose(f);
        snprintf(buf, sizeof buf, "%s/models/all-MiniLM-L6-v2", TM_SOURCE_DIR);
        return buf;
    }
#endif
    return NULL;
}

#define TM_TEST_MAIN()                                                                             \
    int main(int argc, char **argv) {                                                              \
        int passed = 0, failed = 0;                                                                \
        for (int i = 0; i < tm_n_tests; i++) {                                                     \
            if (argc > 1 && strcmp(argv[1], tm_tests[i].name) != 0)                                \
                continue;                                                                          \
            tm_cur_failed = 0;                                                                     \
            tm_tests[i].fn();                                                                      \
            printf("%s %s\n", tm_cur_failed ? "FAIL" : "ok  ", tm_tests[i].name);                  \
            if (tm_cur_failed)                                                                     \
                failed++;                                                                          \
            else                                                                                   \
                passed++;                                                                          \
        }                                                                                          \
        printf("%d passed, %d failed\n", passed, failed);                                          \
        return failed ? 1 : 0;                                                                     \
    }

#endif /* TM_TEST_HARNESS_H */

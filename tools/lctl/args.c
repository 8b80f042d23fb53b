/*
 * args.c - small helpers shared by the lctl subcommands: checked number parsing,
 * token id lists, the KV cache and matmul activation options and a monotonic clock.
 * Every value from the command line is validated here before use; errors name the
 * command and the option.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lctl.h"
#include "tm/tm_dtype.h"
#include "tm/tm_model.h"
#include "tm/tm_status.h"

double lctl_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int lctl_parse_num(const char *cmd, const char *opt, const char *s, double lo, double hi,
                   bool integer, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !(v >= lo && v <= hi) ||
        (integer && v != (double)(long long)v)) {
        fprintf(stderr, "%s: %s needs %s in [%.15g, %.15g], got '%s'\n", cmd, opt,
                integer ? "an integer" : "a number", lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

int lctl_parse_ids(const char *cmd, const char *what, const char *s, int32_t **ids, size_t *n) {
    size_t cap = 16;
    *n = 0;
    *ids = tm_malloc(cap * sizeof **ids);
    if (*ids == NULL) {
        fprintf(stderr, "%s: out of memory\n", cmd);
        return -1;
    }
    const char *p = s;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == ',')
            p++;
        if (*p == '\0')
            return 0;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno != 0 || v < 0 || v > INT32_MAX ||
            (*end != '\0' && *end != ',' && *end != ' ' && *end != '\t' && *end != '\n' &&
             *end != '\r')) {
            fprintf(stderr,
                    "%s: %s: bad token id at byte %zu (ids are non-negative integers "
                    "separated by spaces or commas)\n",
                    cmd, what, (size_t)(p - s));
            return -1;
        }
        if (*n == cap) {
            cap *= 2;
            int32_t *g = tm_realloc(*ids, cap * sizeof **ids);
            if (g == NULL) {
                fprintf(stderr, "%s: out of memory\n", cmd);
                return -1;
            }
            *ids = g;
        }
        (*ids)[(*n)++] = (int32_t)v;
        p = end;
    }
}

int lctl_parse_kv_option(const char *cmd, const char *a, const char *val, tm_dtype *kv) {
    if (!strcmp(a, "--kv-f16") || !strcmp(a, "--kv-f32")) {
        *kv = !strcmp(a, "--kv-f16") ? TM_DTYPE_F16 : TM_DTYPE_F32;
        return 1;
    }
    if (strcmp(a, "--kv-type") != 0)
        return 0;
    tm_dtype t;
    if (val == NULL) {
        fprintf(stderr, "%s: --kv-type needs a value (f16 or f32)\n", cmd);
        return -1;
    }
    /* tm_dtype_from_name accepts every GGUF type; the cache takes these two only */
    if (tm_dtype_from_name(val, &t) != TM_OK || (t != TM_DTYPE_F16 && t != TM_DTYPE_F32)) {
        fprintf(stderr, "%s: --kv-type needs f16 or f32, got '%s'\n", cmd, val);
        return -1;
    }
    *kv = t;
    return 2;
}

int lctl_parse_act_option(const char *cmd, const char *a, const char *val, tm_act_type *act) {
    if (!strcmp(a, "--exact")) { /* docs/accuracy.md and older scripts use this name */
        *act = TM_ACT_F32;
        return 1;
    }
    if (strcmp(a, "--act-type") != 0)
        return 0;
    if (val == NULL) {
        fprintf(stderr, "%s: --act-type needs a value (q8, q16 or f32)\n", cmd);
        return -1;
    }
    if (tm_act_type_from_name(val, act) != TM_OK) {
        fprintf(stderr, "%s: --act-type needs q8, q16 or f32, got '%s'\n", cmd, val);
        return -1;
    }
    return 2;
}

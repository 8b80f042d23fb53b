/*
 * cpu_info_linux.c - the host CPU's name, memory and SIMD features (Linux).
 * Platform file: the only place that reads /proc and uses the compiler's CPU
 * feature builtins; a macOS or Windows port adds its own.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "backend/backend_int.h"

#if defined(__aarch64__)
#include <sys/auxv.h>
/* AT_HWCAP bits of the arm64 kernel ABI (asm/hwcap.h), for older C libraries. */
#ifndef HWCAP_ASIMD
#define HWCAP_ASIMD (1UL << 1)
#endif
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1UL << 20)
#endif
#endif

static tm_cpu_features cpu_feats;
static int             cpu_feats_done;

const tm_cpu_features *tm_cpu_features_get(void) {
    if (!cpu_feats_done) { /* idempotent: a race writes the same values */
        tm_cpu_features f = {0};
#if defined(__x86_64__) || defined(__i386__)
        __builtin_cpu_init();
        f.sse3 = __builtin_cpu_supports("sse3");
        f.ssse3 = __builtin_cpu_supports("ssse3");
        f.avx = __builtin_cpu_supports("avx");
        f.avx2 = __builtin_cpu_supports("avx2");
        f.fma = __builtin_cpu_supports("fma");
        f.avx512f = __builtin_cpu_supports("avx512f");
        f.avx512bw = __builtin_cpu_supports("avx512bw");
        f.avx512vl = __builtin_cpu_supports("avx512vl");
        f.avx512vnni = __builtin_cpu_supports("avx512vnni");
        /* f16c and avx-vnni have no builtin name in GCC 12: read /proc/cpuinfo flags. */
        FILE *fp = fopen("/proc/cpuinfo", "r");
        if (fp != NULL) {
            char line[8192];
            while (fgets(line, sizeof line, fp) != NULL) {
                if (strncmp(line, "flags", 5) == 0) {
                    f.f16c = strstr(line, " f16c") != NULL;
                    f.avx_vnni = strstr(line, " avx_vnni") != NULL;
                    break;
                }
            }
            fclose(fp);
        }
#elif defined(__aarch64__)
        /* What the kernel reports for this CPU, not what the compiler assumed:
         * the dotprod dots are built for every arm64 target and must only run
         * where sdot exists. */
        const unsigned long hw = getauxval(AT_HWCAP);
        f.neon = (hw & HWCAP_ASIMD) != 0;
        f.dotprod = f.neon && (hw & HWCAP_ASIMDDP) != 0;
#endif
        cpu_feats = f;
        cpu_feats_done = 1;
    }
    return &cpu_feats;
}

static void append(char *buf, size_t cap, bool on, const char *name) {
    if (!on)
        return;
    size_t n = strlen(buf);
    snprintf(buf + n, cap - n, "%s%s", n ? " " : "", name);
}

static size_t meminfo_kb(const char *key) {
    FILE *fp = fopen("/proc/meminfo", "r");
    if (fp == NULL)
        return 0;
    char          line[256];
    unsigned long v = 0;
    size_t        klen = strlen(key);
    while (fgets(line, sizeof line, fp) != NULL)
        if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
            sscanf(line + klen + 1, "%lu", &v);
            break;
        }
    fclose(fp);
    return (size_t)v;
}

tm_status tm__cpu_device_info(tm_device_info *out) {
    memset(out, 0, sizeof *out);
    snprintf(out->backend, sizeof out->backend, "cpu");
    snprintf(out->name, sizeof out->name, "cpu");
    FILE *fp = fopen("/proc/cpuinfo", "r");
    if (fp != NULL) {
        char line[1024];
        while (fgets(line, sizeof line, fp) != NULL) {
            if (strncmp(line, "model name", 10) == 0) {
                char *p = strchr(line, ':');
                if (p != NULL) {
                    p++;
                    while (*p == ' ')
                        p++;
                    p[strcspn(p, "\n")] = '\0';
                    snprintf(out->name, sizeof out->name, "%s", p);
                }
                break;
            }
        }
        fclose(fp);
    }
    const tm_cpu_features *f = tm_cpu_features_get();
    append(out->features, sizeof out->features, f->avx, "avx");
    append(out->features, sizeof out->features, f->avx2, "avx2");
    append(out->features, sizeof out->features, f->fma, "fma");
    append(out->features, sizeof out->features, f->f16c, "f16c");
    append(out->features, sizeof out->features, f->avx512f, "avx512f");
    append(out->features, sizeof out->features, f->avx512bw, "avx512bw");
    append(out->features, sizeof out->features, f->avx512vnni, "avx512vnni");
    append(out->features, sizeof out->features, f->avx_vnni, "avx_vnni");
    append(out->features, sizeof out->features, f->neon, "neon");
    append(out->features, sizeof out->features, f->dotprod, "dotprod");
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    out->n_cores = n > 0 ? (int32_t)n : 1;
    out->mem_total_bytes = meminfo_kb("MemTotal") * 1024;
    out->mem_free_bytes = meminfo_kb("MemAvailable") * 1024;
    return TM_OK;
}

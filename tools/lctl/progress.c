/*
 * progress.c - the progress bar lctl shows while a large model is read from disk.
 *
 * Models are mmap'd (zero copy), so "loading" is the first read of every page;
 * lctl_model_prefetch() does that read up front through tm_file_prefetch() and
 * draws a bar on stderr when stderr is a terminal (nothing otherwise, so logs and
 * pipes stay clean). Files under 64 MiB are not worth a bar and are skipped.
 * Also here: where the default model lives when a command is given none.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lctl.h"
#include "tm/tm_io.h"

typedef struct bar_state {
    const char *label;
    double      t0;
} bar_state;

static double bar_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void bar_draw(size_t done, size_t total, void *user) {
    const bar_state *b = user;
    const int        width = 30;
    double           frac = total ? (double)done / (double)total : 1.0;
    int              fill = (int)(frac * width + 0.5);
    double           dt = bar_now() - b->t0;
    fprintf(stderr, "\rloading %s [", b->label);
    for (int i = 0; i < width; i++)
        fputc(i < fill ? '#' : ' ', stderr);
    fprintf(stderr, "] %3d%% %.0f/%.0f MiB %.0f MiB/s", (int)(frac * 100 + 0.5),
            (double)done / (1 << 20), (double)total / (1 << 20),
            dt > 0 ? (double)done / (1 << 20) / dt : 0.0);
    if (done >= total)
        fputc('\n', stderr);
    fflush(stderr);
}

void lctl_model_prefetch(const char *path) {
    struct stat sb;
    if (!isatty(STDERR_FILENO) || stat(path, &sb) != 0)
        return;
    if (S_ISREG(sb.st_mode) && sb.st_size < ((off_t)64 << 20))
        return;
    const char *label = path;
    for (const char *p = path; *p; p++)
        if (*p == '/' && p[1] != '\0')
            label = p + 1;
    bar_state b = {label, bar_now()};
    (void)tm_file_prefetch(path, bar_draw, &b); /* a failure shows up in the real load */
}

const char *lctl_default_model(const char *prog) {
    const char *p = getenv("TM_DEFAULT_MODEL");
    if (p == NULL || *p == '\0')
        p = LCTL_DEFAULT_MODEL;
    if (tm_path_is_file(p) || tm_path_is_dir(p))
        return p;
    fprintf(stderr,
            "%s: no MODEL given and the default model %s is absent: run "
            "scripts/fetch_models.sh default (from the repository root), set TM_DEFAULT_MODEL, "
            "or pass a model path\n",
            prog, p);
    return NULL;
}

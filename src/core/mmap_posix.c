/*
 * mmap_posix.c - read-only file mappings and whole-file reads (POSIX).
 * The only file that calls mmap(); a Windows port adds mmap_win32.c.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tm/tm_io.h"

tm_status tm_mmap_open(const char *path, tm_mmap *out) {
    *out = (tm_mmap){0};
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return tm_fail(TM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return tm_fail(TM_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return tm_fail(TM_ERR_IO, "%s: not a regular file", path);
    }
    if (sb.st_size == 0) {
        close(fd);
        return TM_OK;
    }
    void *p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int   e = errno;
    close(fd); /* the mapping keeps the file alive */
    if (p == MAP_FAILED)
        return tm_fail(TM_ERR_IO, "%s: mmap failed: %s", path, strerror(e));
    out->data = p;
    out->size = (size_t)sb.st_size;
    return TM_OK;
}

void tm_mem_prefault(const void *p, size_t n) {
    if (p == NULL || n == 0)
        return;
    const long      ps = sysconf(_SC_PAGESIZE);
    const size_t    page = ps > 0 ? (size_t)ps : 4096;
    const uintptr_t b = (uintptr_t)p / page * page, e = (uintptr_t)p + n;
#ifdef MADV_POPULATE_READ
    if (madvise((void *)b, e - b, MADV_POPULATE_READ) == 0)
        return;
#endif
    /* older kernels (EINVAL): touch one byte per page */
    volatile const unsigned char *c = (const unsigned char *)p;
    unsigned char                 sink = 0;
    for (uintptr_t a = b < (uintptr_t)p ? (uintptr_t)p : b; a < e; a = (a / page + 1) * page)
        sink ^= c[a - (uintptr_t)p];
    (void)sink;
}

void tm_mmap_close(tm_mmap *m) {
    if (m->data != NULL)
        munmap((void *)m->data, m->size);
    *m = (tm_mmap){0};
}

tm_status tm_file_read_all(const char *path, size_t max_bytes, char **out, size_t *out_len) {
    *out = NULL;
    if (out_len)
        *out_len = 0;
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return tm_fail(TM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 4096, len = 0;
    char  *buf = tm_malloc(cap);
    if (buf == NULL) {
        fclose(f);
        return tm_fail(TM_ERR_NOMEM, "%s: out of memory", path);
    }
    for (;;) {
        if (len + 1 >= cap) {
            if (cap > max_bytes + 1) {
                tm_free(buf);
                fclose(f);
                return tm_fail(TM_ERR_FORMAT, "%s: larger than the %zu-byte limit", path,
                               max_bytes);
            }
            char *nb = tm_realloc(buf, cap * 2);
            if (nb == NULL) {
                tm_free(buf);
                fclose(f);
                return tm_fail(TM_ERR_NOMEM, "%s: out of memory", path);
            }
            buf = nb;
            cap *= 2;
        }
        size_t n = fread(buf + len, 1, cap - 1 - len, f);
        len += n;
        if (n == 0)
            break;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        tm_free(buf);
        return tm_fail(TM_ERR_IO, "%s: read error", path);
    }
    if (len > max_bytes) {
        tm_free(buf);
        return tm_fail(TM_ERR_FORMAT, "%s: larger than the %zu-byte limit", path, max_bytes);
    }
    buf[len] = '\0';
    *out = buf;
    if (out_len)
        *out_len = len;
    return TM_OK;
}

int tm_path_is_dir(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

int tm_path_is_file(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* Files of path to prefetch: the file itself, or the weight files of a folder. */
static int prefetch_wanted(const char *name) {
    size_t n = strlen(name);
    return (n > 12 && strcmp(name + n - 12, ".safetensors") == 0) ||
           (n > 5 && strcmp(name + n - 5, ".gguf") == 0);
}

tm_status tm_file_prefetch(const char *path,
                           void (*progress)(size_t done_bytes, size_t total_bytes, void *user),
                           void *user) {
    enum { MAX_FILES = 256 };
    char  *files[MAX_FILES];
    int    n_files = 0;
    size_t total = 0, done = 0;
    if (tm_path_is_dir(path)) {
        DIR *d = opendir(path);
        if (d == NULL)
            return tm_fail(TM_ERR_IO, "%s: cannot open folder: %s", path, strerror(errno));
        struct dirent *e;
        while ((e = readdir(d)) != NULL && n_files < MAX_FILES) {
            if (!prefetch_wanted(e->d_name))
                continue;
            size_t len = strlen(path) + strlen(e->d_name) + 2;
            char  *f = tm_malloc(len);
            if (f == NULL)
                break;
            snprintf(f, len, "%s/%s", path, e->d_name);
            files[n_files++] = f;
        }
        closedir(d);
    } else {
        files[n_files++] = tm_strdup(path);
        if (files[0] == NULL)
            return tm_fail(TM_ERR_NOMEM, "%s: out of memory", path);
    }
    tm_mmap   maps[MAX_FILES];
    tm_status st = TM_OK;
    int       n_maps = 0;
    for (int i = 0; i < n_files && st == TM_OK; i++) {
        st = tm_mmap_open(files[i], &maps[n_maps]);
        if (st == TM_OK)
            total += maps[n_maps++].size;
    }
    const size_t page = 4096, report = (size_t)16 << 20;
    size_t       next_report = report;
    for (int i = 0; i < n_maps && st == TM_OK; i++) {
        const volatile uint8_t *p = maps[i].data;
        uint8_t                 sink = 0;
        for (size_t off = 0; off < maps[i].size; off += page) {
            sink ^= p[off]; /* one byte per page pulls the page in */
            done += off + page <= maps[i].size ? page : maps[i].size - off;
            if (progress != NULL && done >= next_report) {
                progress(done, total, user);
                next_report = done + report;
            }
        }
        (void)sink;
    }
    if (progress != NULL && st == TM_OK)
        progress(total, total, user);
    for (int i = 0; i < n_maps; i++)
        tm_mmap_close(&maps[i]);
    for (int i = 0; i < n_files; i++)
        tm_free(files[i]);
    return st;
}

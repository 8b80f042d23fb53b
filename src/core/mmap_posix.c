/*
 * mmap_posix.c - read-only file mappings and whole-file reads (POSIX).
 * The only file that calls mmap(); a Windows port adds mmap_win32.c.
 */
#include <errno.h>
#include <fcntl.h>
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

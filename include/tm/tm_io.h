/*
 * tm_io.h - read-only file mappings and whole-file reads.
 *
 * A tm_mmap maps a file read-only; the descriptor is closed right after
 * mapping, so the mapping is the only handle. An empty file maps to
 * data == NULL, size == 0 (mmap cannot map zero bytes).
 *
 *     tm_mmap m = {0};
 *     if (tm_mmap_open("model.gguf", &m) != TM_OK) return tm_last_error();
 *     parse(m.data, m.size);
 *     tm_mmap_close(&m);
 *
 * Threads: a mapping is immutable; any thread may read it. open/close are not
 * synchronized for the same object.
 */
#ifndef TM_IO_H
#define TM_IO_H

#include <stddef.h>

#include "tm/tm_status.h"

typedef struct tm_mmap {
    const void *data; /* read-only mapping; NULL when size == 0 */
    size_t      size; /* bytes */
} tm_mmap;

tm_status tm_mmap_open(const char *path, tm_mmap *out);
void      tm_mmap_close(tm_mmap *m); /* zeroed or closed mapping is a no-op */

/* Maps in the pages of [p, p + n) of a read-only mapping now (page-table faults taken
 * here instead of at first use: a 0.5 GB model's first forward pass otherwise spends
 * ~0.7 s in them). madvise(MADV_POPULATE_READ) where the kernel has it, else one read
 * per page. Advisory: returns nothing, any range is safe. */
void tm_mem_prefault(const void *p, size_t n);

/* Reads a whole file into a NUL-terminated buffer (caller frees with tm_free).
 * Files over max_bytes are refused with TM_ERR_FORMAT. */
tm_status tm_file_read_all(const char *path, size_t max_bytes, char **out, size_t *out_len);

/* Reads a file (or every *.safetensors / *.gguf file of a folder) through the page
 * cache so a later mmap of it starts warm, calling progress(done, total, user)
 * every few MiB and once at the end (progress may be NULL). This is the slow
 * part of loading a large model from disk; the mapping itself is instant. */
tm_status tm_file_prefetch(const char *path,
                           void (*progress)(size_t done_bytes, size_t total_bytes, void *user),
                           void *user);

/* True when path exists and is a directory / a regular file. */
int tm_path_is_dir(const char *path);
int tm_path_is_file(const char *path);

#endif /* TM_IO_H */

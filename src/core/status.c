/*
 * status.c - status strings, the thread-local last-error buffer and panics.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "tm/tm_status.h"

static _Thread_local char tm_errbuf[1024];

const char *tm_status_str(tm_status st) {
    switch (st) {
    case TM_OK: return "ok";
    case TM_ERR_NOMEM: return "out of memory";
    case TM_ERR_IO: return "i/o error";
    case TM_ERR_FORMAT: return "format error";
    case TM_ERR_INVALID: return "invalid argument";
    case TM_ERR_UNSUPPORTED: return "unsupported";
    case TM_ERR_BACKEND: return "backend error";
    case TM_ERR_FULL: return "full";
    case TM_ERR_CANCELLED: return "cancelled";
    case TM_ERR_NOT_FOUND: return "not found";
    }
    return "unknown status";
}

const char *tm_last_error(void) { return tm_errbuf; }

void tm_clear_error(void) { tm_errbuf[0] = '\0'; }

tm_status tm_fail(tm_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tm_errbuf, sizeof tm_errbuf, fmt, ap);
    va_end(ap);
    return st;
}

void tm__panic(const char *file, int line, const char *expr) {
    fprintf(stderr, "%s:%d: TM_ASSERT(%s) failed\n", file, line, expr);
    fflush(stderr);
    abort();
}

/* Errors as values: a status code plus a per-thread message. */
#include "core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MG_ERROR_CAPACITY 1024

static _Thread_local char mg_error_message[MG_ERROR_CAPACITY];

/* Process-wide log sink; set once at start-up (documented in medground.h). */
static mg_log_fn mg_log_callback;
static void *mg_log_user_data;

const char *mg_last_error(void) { return mg_error_message; }

void mg_clear_error(void) { mg_error_message[0] = '\0'; }

const char *mg_status_name(mg_status status) {
    switch (status) {
    case MG_OK: return "MG_OK";
    case MG_ERR_INVALID_ARGUMENT: return "MG_ERR_INVALID_ARGUMENT";
    case MG_ERR_FORMAT: return "MG_ERR_FORMAT";
    case MG_ERR_SHAPE: return "MG_ERR_SHAPE";
    case MG_ERR_DTYPE: return "MG_ERR_DTYPE";
    case MG_ERR_IO: return "MG_ERR_IO";
    case MG_ERR_NO_MEMORY: return "MG_ERR_NO_MEMORY";
    case MG_ERR_NOT_FOUND: return "MG_ERR_NOT_FOUND";
    case MG_ERR_UNSUPPORTED: return "MG_ERR_UNSUPPORTED";
    case MG_ERR_INTERNAL: return "MG_ERR_INTERNAL";
    case MG_ERR_UNSAFE: return "MG_ERR_UNSAFE";
    }
    return "MG_ERR_UNKNOWN";
}

mg_status mg_error_v(mg_status status, const char *fmt, va_list args) {
    vsnprintf(mg_error_message, sizeof mg_error_message, fmt, args);
    return status;
}

mg_status mg_error(mg_status status, const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    mg_error_v(status, fmt, args);
    va_end(args);
    return status;
}

mg_status mg_error_prefix(mg_status status, const char *fmt, ...) {
    char prefix[MG_ERROR_CAPACITY];
    char previous[MG_ERROR_CAPACITY];
    va_list args;
    va_start(args, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, args);
    va_end(args);
    memcpy(previous, mg_error_message, sizeof previous);
    snprintf(mg_error_message, sizeof mg_error_message, "%s: %s", prefix, previous);
    return status;
}

void mg_set_log_callback(mg_log_fn fn, void *user_data) {
    mg_log_callback = fn;
    mg_log_user_data = user_data;
}

void mg_log(int level, const char *fmt, ...) {
    if (!mg_log_callback) return;
    char message[MG_ERROR_CAPACITY];
    va_list args;
    va_start(args, fmt);
    vsnprintf(message, sizeof message, fmt, args);
    va_end(args);
    mg_log_callback(level, message, mg_log_user_data);
}

void *mg_aligned_alloc(size_t bytes) {
    void *p = NULL;
    if (bytes == 0) bytes = 64;
    if (posix_memalign(&p, 64, bytes) != 0) return NULL;
    return p;
}

void mg_aligned_free(void *p) { free(p); }

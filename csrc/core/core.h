/* Internal helpers shared by every module. Not part of the public API. */
#ifndef MG_CORE_H
#define MG_CORE_H

#include "medground.h"

#include <stdarg.h>

#if defined(__GNUC__)
#define MG_PRINTF(fmt_index, first_arg) __attribute__((format(printf, fmt_index, first_arg)))
#else
#define MG_PRINTF(fmt_index, first_arg)
#endif

/* Records a printf-style message for the calling thread and returns status,
 * so failures read `return mg_error(MG_ERR_FORMAT, "%s: ...", path);`. */
mg_status mg_error(mg_status status, const char *fmt, ...) MG_PRINTF(2, 3);
mg_status mg_error_v(mg_status status, const char *fmt, va_list args);

/* Prepends "context: " to the current message (keeps the status). Used when
 * an inner failure should name the outer object ("tensor x: <inner>"). */
mg_status mg_error_prefix(mg_status status, const char *fmt, ...) MG_PRINTF(2, 3);

/* Sends a diagnostic to the log callback, if any. */
void mg_log(int level, const char *fmt, ...) MG_PRINTF(2, 3);

/* Whether f32 products may be taken in bf16 here: MG_FPMATH_BF16, or
 * MG_FPMATH_AUTO while the running model has said so with
 * mg_context_hint_bf16 (which returns the previous say, to restore). */
bool mg_context_fpmath_bf16(const mg_context *ctx);
bool mg_context_hint_bf16(mg_context *ctx, bool allow);

/* Propagate a failure unchanged. */
#define MG_TRY(expr)                        \
    do {                                    \
        mg_status mg_try_status_ = (expr);  \
        if (mg_try_status_ != MG_OK) return mg_try_status_; \
    } while (0)

/* Overflow-checked size arithmetic: false on overflow. */
static inline bool mg_mul_size(size_t a, size_t b, size_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool mg_add_size(size_t a, size_t b, size_t *out) {
    return !__builtin_add_overflow(a, b, out);
}

/* 64-byte aligned heap memory (free with mg_aligned_free). */
/* UTF-8 bytes of code point `c` (<= 0x10FFFF) into out; returns their count (1..4). */
static inline int mg_utf8_encode(uint32_t c, char out[4]) {
    if (c < 0x80) {
        out[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        out[0] = (char)(0xC0 | (c >> 6)), out[1] = (char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        out[0] = (char)(0xE0 | (c >> 12)), out[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        out[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (c >> 18)), out[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((c >> 6) & 0x3F)), out[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

void *mg_aligned_alloc(size_t bytes);
void mg_aligned_free(void *p);

#endif

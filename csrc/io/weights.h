/* Internal: what file readers need to fill an mg_weights table. */
#ifndef MG_IO_WEIGHTS_H
#define MG_IO_WEIGHTS_H

#include "core/core.h"

/* The table keeps `resource` alive (an mmap, a file) and calls release(resource)
 * from mg_weights_destroy, after the tensors are gone. On failure release is
 * NOT called: the caller still owns the resource. */
mg_status mg_weights_attach(mg_weights *weights, void *resource, void (*release)(void *resource));

/* Adopts a string array built by a reader (strings[i] NUL-terminated,
 * malloc'd, lengths[i] bytes; the arrays themselves malloc'd). Ownership
 * passes to the table even when this fails. */
mg_status mg_weights_adopt_string_array(mg_weights *weights, const char *key, int64_t length, char **strings,
                                        size_t *lengths);

#endif

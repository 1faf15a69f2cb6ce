/* Internal: what file readers need to fill an mg_weights table. */
#ifndef MG_IO_WEIGHTS_H
#define MG_IO_WEIGHTS_H

#include "core/core.h"

/* The table keeps `resource` alive (an mmap, a file) and calls release(resource)
 * from mg_weights_destroy, after the tensors are gone. */
mg_status mg_weights_attach(mg_weights *weights, void *resource, void (*release)(void *resource));

/* Metadata value kinds stored in the table. */
typedef enum { MG_META_INT, MG_META_FLOAT, MG_META_STRING } mg_meta_kind;
int64_t mg_weights_meta_count(const mg_weights *weights);
/* index-th key/kind (borrowed). */
const char *mg_weights_meta_key(const mg_weights *weights, int64_t index, mg_meta_kind *kind);

#endif

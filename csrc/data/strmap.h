/* A string-keyed open-addressing hash map (keys copied, values are void*
 * owned by the caller). Internal to the data module. */
#ifndef MG_DATA_STRMAP_H
#define MG_DATA_STRMAP_H

#include "core/core.h"

typedef struct mg_strmap {
    char **keys;
    void **values;
    uint64_t *hashes;
    int64_t capacity; /* power of two, 0 before the first insert */
    int64_t count;
} mg_strmap;

uint64_t mg_hash_bytes(const void *data, size_t n, uint64_t seed);

/* Returns the value slot for key, inserting an empty (NULL) one when absent;
 * *inserted tells which. NULL + message on allocation failure. */
void **mg_strmap_slot(mg_strmap *map, const char *key, bool *inserted);
/* NULL when absent. */
void *mg_strmap_get(const mg_strmap *map, const char *key);
/* Frees the keys; values are the caller's (free them first, by iterating). */
void mg_strmap_free(mg_strmap *map);

#endif

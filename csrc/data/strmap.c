/* String-keyed hash map for the dataset checker (images, masks, labels,
 * cases seen so far). Linear probing; grows at half load. */
#include "data/strmap.h"

#include <stdlib.h>
#include <string.h>

/* FNV-1a, 64-bit: cheap and good enough for keys and duplicate detection of
 * record contents (2^-64 accidental collision odds per pair). */
uint64_t mg_hash_bytes(const void *data, size_t n, uint64_t seed) {
    const uint8_t *p = data;
    uint64_t h = 0xcbf29ce484222325ull ^ seed;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static bool strmap_grow(mg_strmap *map) {
    int64_t capacity = map->capacity ? map->capacity * 2 : 64;
    char **keys = calloc((size_t)capacity, sizeof *keys);
    void **values = calloc((size_t)capacity, sizeof *values);
    uint64_t *hashes = calloc((size_t)capacity, sizeof *hashes);
    if (!keys || !values || !hashes) {
        free(keys);
        free(values);
        free(hashes);
        mg_error(MG_ERR_NO_MEMORY, "hash map: cannot grow to %lld entries", (long long)capacity);
        return false;
    }
    for (int64_t i = 0; i < map->capacity; i++) {
        if (!map->keys[i]) continue;
        int64_t j = (int64_t)(map->hashes[i] & (uint64_t)(capacity - 1));
        while (keys[j]) j = (j + 1) & (capacity - 1);
        keys[j] = map->keys[i];
        values[j] = map->values[i];
        hashes[j] = map->hashes[i];
    }
    free(map->keys);
    free(map->values);
    free(map->hashes);
    map->keys = keys;
    map->values = values;
    map->hashes = hashes;
    map->capacity = capacity;
    return true;
}

static int64_t strmap_find(const mg_strmap *map, const char *key, uint64_t h) {
    if (!map->capacity) return -1;
    int64_t i = (int64_t)(h & (uint64_t)(map->capacity - 1));
    while (map->keys[i]) {
        if (map->hashes[i] == h && strcmp(map->keys[i], key) == 0) return i;
        i = (i + 1) & (map->capacity - 1);
    }
    return -1 - i; /* free slot, encoded */
}

void **mg_strmap_slot(mg_strmap *map, const char *key, bool *inserted) {
    size_t length = strlen(key);
    uint64_t h = mg_hash_bytes(key, length, 0);
    *inserted = false;
    int64_t i = strmap_find(map, key, h);
    if (i >= 0) return &map->values[i];
    if ((map->count + 1) * 2 > map->capacity) {
        if (!strmap_grow(map)) return NULL;
        i = strmap_find(map, key, h);
    }
    i = -1 - i;
    char *copy = malloc(length + 1);
    if (!copy) {
        mg_error(MG_ERR_NO_MEMORY, "hash map: cannot copy a %zu-byte key", length);
        return NULL;
    }
    memcpy(copy, key, length + 1);
    map->keys[i] = copy;
    map->hashes[i] = h;
    map->values[i] = NULL;
    map->count++;
    *inserted = true;
    return &map->values[i];
}

void *mg_strmap_get(const mg_strmap *map, const char *key) {
    int64_t i = strmap_find(map, key, mg_hash_bytes(key, strlen(key), 0));
    return i >= 0 ? map->values[i] : NULL;
}

void mg_strmap_free(mg_strmap *map) {
    for (int64_t i = 0; i < map->capacity; i++) free(map->keys[i]);
    free(map->keys);
    free(map->values);
    free(map->hashes);
    memset(map, 0, sizeof *map);
}

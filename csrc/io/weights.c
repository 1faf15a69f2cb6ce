/* mg_weights: a name -> tensor table (open addressing on an FNV-1a hash) plus
 * typed metadata. File readers (safetensors.c, gguf.c) fill it. */
#include "weights.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    char *name;
    mg_tensor tensor;
    void *owned_copy; /* non-NULL when the table copied the data */
} mg_weight_entry;

typedef struct {
    char *key;
    mg_meta_kind kind;
    int64_t int_value;
    double float_value;
    char *string_value;
} mg_meta_entry;

typedef struct {
    void *resource;
    void (*release)(void *resource);
} mg_resource;

struct mg_weights {
    mg_weight_entry *entries;
    int64_t n_entries, cap_entries;
    int64_t *slots; /* index into entries, -1 empty; size n_slots (power of 2) */
    int64_t n_slots;
    mg_meta_entry *meta;
    int64_t n_meta, cap_meta;
    mg_resource *resources;
    int64_t n_resources, cap_resources;
};

static uint64_t mg_hash_name(const char *name) {
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        h ^= *p;
        h *= 1099511628211ull;
    }
    return h;
}

static char *mg_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *copy = malloc(n);
    if (copy) memcpy(copy, s, n);
    return copy;
}

static bool mg_grow(void **array, int64_t *capacity, int64_t needed, size_t element) {
    if (needed <= *capacity) return true;
    int64_t next = *capacity ? *capacity * 2 : 16;
    while (next < needed) next *= 2;
    void *grown = realloc(*array, (size_t)next * element);
    if (!grown) return false;
    *array = grown;
    *capacity = next;
    return true;
}

mg_status mg_weights_create(mg_weights **out) {
    *out = calloc(1, sizeof **out);
    if (!*out) return mg_error(MG_ERR_NO_MEMORY, "weights: out of memory");
    return MG_OK;
}

void mg_weights_destroy(mg_weights *weights) {
    if (!weights) return;
    for (int64_t i = 0; i < weights->n_entries; i++) {
        free(weights->entries[i].name);
        mg_aligned_free(weights->entries[i].owned_copy);
    }
    for (int64_t i = 0; i < weights->n_meta; i++) {
        free(weights->meta[i].key);
        free(weights->meta[i].string_value);
    }
    for (int64_t i = weights->n_resources - 1; i >= 0; i--)
        if (weights->resources[i].release) weights->resources[i].release(weights->resources[i].resource);
    free(weights->entries);
    free(weights->slots);
    free(weights->meta);
    free(weights->resources);
    free(weights);
}

mg_status mg_weights_attach(mg_weights *weights, void *resource, void (*release)(void *resource)) {
    if (!mg_grow((void **)&weights->resources, &weights->cap_resources, weights->n_resources + 1,
                 sizeof(mg_resource)))
        return mg_error(MG_ERR_NO_MEMORY, "weights: out of memory");
    weights->resources[weights->n_resources++] = (mg_resource){resource, release};
    return MG_OK;
}

static int64_t mg_find_slot(const mg_weights *weights, const char *name) {
    if (!weights->n_slots) return -1;
    uint64_t mask = (uint64_t)weights->n_slots - 1;
    for (uint64_t i = mg_hash_name(name) & mask;; i = (i + 1) & mask) {
        int64_t entry = weights->slots[i];
        if (entry < 0) return -1;
        if (strcmp(weights->entries[entry].name, name) == 0) return entry;
    }
}

static mg_status mg_rehash(mg_weights *weights, int64_t n_slots) {
    int64_t *slots = malloc((size_t)n_slots * sizeof *slots);
    if (!slots) return mg_error(MG_ERR_NO_MEMORY, "weights: out of memory");
    for (int64_t i = 0; i < n_slots; i++) slots[i] = -1;
    uint64_t mask = (uint64_t)n_slots - 1;
    for (int64_t e = 0; e < weights->n_entries; e++) {
        uint64_t i = mg_hash_name(weights->entries[e].name) & mask;
        while (slots[i] >= 0) i = (i + 1) & mask;
        slots[i] = e;
    }
    free(weights->slots);
    weights->slots = slots;
    weights->n_slots = n_slots;
    return MG_OK;
}

mg_status mg_weights_add(mg_weights *weights, const char *name, const mg_tensor *tensor, bool copy) {
    if (!name || !*name) return mg_error(MG_ERR_INVALID_ARGUMENT, "weights: empty tensor name");
    if (mg_find_slot(weights, name) >= 0)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "weights: duplicate tensor name '%s'", name);
    if ((weights->n_entries + 1) * 2 > weights->n_slots)
        MG_TRY(mg_rehash(weights, weights->n_slots ? weights->n_slots * 2 : 64));
    if (!mg_grow((void **)&weights->entries, &weights->cap_entries, weights->n_entries + 1,
                 sizeof(mg_weight_entry)))
        return mg_error(MG_ERR_NO_MEMORY, "weights: out of memory");
    mg_weight_entry entry = {mg_strdup(name), *tensor, NULL};
    if (!entry.name) return mg_error(MG_ERR_NO_MEMORY, "weights: out of memory");
    if (copy) {
        mg_tensor contiguous;
        mg_status status = mg_tensor_alloc(&contiguous, tensor->dtype, tensor->n_dims, tensor->shape);
        if (status == MG_OK) status = mg_tensor_convert(tensor, &contiguous);
        if (status != MG_OK) {
            mg_tensor_free_data(&contiguous);
            free(entry.name);
            return mg_error_prefix(status, "tensor %s", name);
        }
        entry.tensor = contiguous;
        entry.owned_copy = contiguous.data;
    }
    int64_t index = weights->n_entries++;
    weights->entries[index] = entry;
    uint64_t mask = (uint64_t)weights->n_slots - 1;
    uint64_t i = mg_hash_name(name) & mask;
    while (weights->slots[i] >= 0) i = (i + 1) & mask;
    weights->slots[i] = index;
    return MG_OK;
}

mg_status mg_weights_get(const mg_weights *weights, const char *name, mg_tensor *out) {
    int64_t entry = mg_find_slot(weights, name);
    if (entry < 0) return mg_error(MG_ERR_NOT_FOUND, "tensor %s: not in the checkpoint", name);
    *out = weights->entries[entry].tensor;
    return MG_OK;
}

bool mg_weights_has(const mg_weights *weights, const char *name) {
    return mg_find_slot(weights, name) >= 0;
}

int64_t mg_weights_count(const mg_weights *weights) { return weights->n_entries; }

const char *mg_weights_name(const mg_weights *weights, int64_t index) {
    if (index < 0 || index >= weights->n_entries) return NULL;
    return weights->entries[index].name;
}

/* ------------------------------------------------------------- metadata */

static mg_meta_entry *mg_meta_find(const mg_weights *weights, const char *key) {
    for (int64_t i = 0; i < weights->n_meta; i++)
        if (strcmp(weights->meta[i].key, key) == 0) return &weights->meta[i];
    return NULL;
}

static mg_status mg_meta_slot(mg_weights *weights, const char *key, mg_meta_entry **out) {
    mg_meta_entry *entry = mg_meta_find(weights, key);
    if (!entry) {
        if (!mg_grow((void **)&weights->meta, &weights->cap_meta, weights->n_meta + 1, sizeof(mg_meta_entry)))
            return mg_error(MG_ERR_NO_MEMORY, "weights: out of memory");
        entry = &weights->meta[weights->n_meta++];
        memset(entry, 0, sizeof *entry);
        entry->key = mg_strdup(key);
        if (!entry->key) {
            weights->n_meta--;
            return mg_error(MG_ERR_NO_MEMORY, "weights: out of memory");
        }
    }
    free(entry->string_value);
    entry->string_value = NULL;
    *out = entry;
    return MG_OK;
}

mg_status mg_weights_set_int(mg_weights *weights, const char *key, int64_t value) {
    mg_meta_entry *entry;
    MG_TRY(mg_meta_slot(weights, key, &entry));
    entry->kind = MG_META_INT;
    entry->int_value = value;
    return MG_OK;
}

mg_status mg_weights_set_float(mg_weights *weights, const char *key, double value) {
    mg_meta_entry *entry;
    MG_TRY(mg_meta_slot(weights, key, &entry));
    entry->kind = MG_META_FLOAT;
    entry->float_value = value;
    return MG_OK;
}

mg_status mg_weights_set_string(mg_weights *weights, const char *key, const char *value) {
    mg_meta_entry *entry;
    MG_TRY(mg_meta_slot(weights, key, &entry));
    entry->kind = MG_META_STRING;
    entry->string_value = mg_strdup(value);
    if (!entry->string_value) return mg_error(MG_ERR_NO_MEMORY, "weights: out of memory");
    return MG_OK;
}

mg_status mg_weights_get_int(const mg_weights *weights, const char *key, int64_t *out) {
    mg_meta_entry *entry = mg_meta_find(weights, key);
    if (!entry) return mg_error(MG_ERR_NOT_FOUND, "metadata key %s: not present", key);
    if (entry->kind == MG_META_INT) *out = entry->int_value;
    else return mg_error(MG_ERR_DTYPE, "metadata key %s: not an integer", key);
    return MG_OK;
}

mg_status mg_weights_get_float(const mg_weights *weights, const char *key, double *out) {
    mg_meta_entry *entry = mg_meta_find(weights, key);
    if (!entry) return mg_error(MG_ERR_NOT_FOUND, "metadata key %s: not present", key);
    if (entry->kind == MG_META_FLOAT) *out = entry->float_value;
    else if (entry->kind == MG_META_INT) *out = (double)entry->int_value;
    else return mg_error(MG_ERR_DTYPE, "metadata key %s: not a number", key);
    return MG_OK;
}

mg_status mg_weights_get_string(const mg_weights *weights, const char *key, const char **out) {
    mg_meta_entry *entry = mg_meta_find(weights, key);
    if (!entry) return mg_error(MG_ERR_NOT_FOUND, "metadata key %s: not present", key);
    if (entry->kind != MG_META_STRING) return mg_error(MG_ERR_DTYPE, "metadata key %s: not a string", key);
    *out = entry->string_value;
    return MG_OK;
}

int64_t mg_weights_meta_count(const mg_weights *weights) { return weights->n_meta; }

const char *mg_weights_meta_key(const mg_weights *weights, int64_t index, mg_meta_kind *kind) {
    if (index < 0 || index >= weights->n_meta) return NULL;
    if (kind) *kind = weights->meta[index].kind;
    return weights->meta[index].key;
}

/* Replaced by the file readers: see safetensors.c / gguf.c. */
mg_status mg_weights_open(const char *path, mg_weights **out) {
    *out = NULL;
    return mg_error(MG_ERR_UNSUPPORTED, "%s: checkpoint readers are not built yet", path);
}

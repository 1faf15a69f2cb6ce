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

/* One metadata value. Scalars keep their GGUF type so a GGUF -> GGUF round
 * trip preserves it; strings keep their length (they may hold NUL bytes). */
typedef struct {
    char *key;
    mg_value_type type;         /* scalar type, or MG_VALUE_ARRAY             */
    mg_value_type element_type; /* arrays only                                */
    int64_t int_value;
    double float_value;
    char *bytes;                /* string (NUL-terminated copy) or packed array */
    size_t n_bytes;
    int64_t length;             /* arrays: element count                      */
    char **strings;             /* string arrays: NUL-terminated copies       */
    size_t *string_lengths;
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

static void mg_meta_clear(mg_meta_entry *entry) {
    free(entry->bytes);
    if (entry->strings)
        for (int64_t i = 0; i < entry->length; i++) free(entry->strings[i]);
    free(entry->strings);
    free(entry->string_lengths);
    entry->bytes = NULL;
    entry->strings = NULL;
    entry->string_lengths = NULL;
    entry->n_bytes = 0;
    entry->length = 0;
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
        mg_meta_clear(&weights->meta[i]);
        free(weights->meta[i].key);
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

size_t mg_value_type_size(mg_value_type type) {
    switch (type) {
    case MG_VALUE_U8: case MG_VALUE_I8: case MG_VALUE_BOOL: return 1;
    case MG_VALUE_U16: case MG_VALUE_I16: return 2;
    case MG_VALUE_U32: case MG_VALUE_I32: case MG_VALUE_F32: return 4;
    case MG_VALUE_U64: case MG_VALUE_I64: case MG_VALUE_F64: return 8;
    case MG_VALUE_STRING: case MG_VALUE_ARRAY: break;
    }
    return 0;
}

const char *mg_value_type_name(mg_value_type type) {
    switch (type) {
    case MG_VALUE_U8: return "u8";
    case MG_VALUE_I8: return "i8";
    case MG_VALUE_U16: return "u16";
    case MG_VALUE_I16: return "i16";
    case MG_VALUE_U32: return "u32";
    case MG_VALUE_I32: return "i32";
    case MG_VALUE_F32: return "f32";
    case MG_VALUE_BOOL: return "bool";
    case MG_VALUE_STRING: return "string";
    case MG_VALUE_ARRAY: return "array";
    case MG_VALUE_U64: return "u64";
    case MG_VALUE_I64: return "i64";
    case MG_VALUE_F64: return "f64";
    }
    return "?";
}

static bool mg_value_type_is_integer(mg_value_type type) {
    return mg_value_type_size(type) != 0 && type != MG_VALUE_F32 && type != MG_VALUE_F64;
}

static mg_meta_entry *mg_meta_find(const mg_weights *weights, const char *key) {
    if (!key) return NULL;
    for (int64_t i = 0; i < weights->n_meta; i++)
        if (strcmp(weights->meta[i].key, key) == 0) return &weights->meta[i];
    return NULL;
}

/* The entry for key, created when absent and emptied when present. */
static mg_status mg_meta_slot(mg_weights *weights, const char *key, mg_meta_entry **out) {
    if (!key || !*key) return mg_error(MG_ERR_INVALID_ARGUMENT, "weights: empty metadata key");
    mg_meta_entry *entry = mg_meta_find(weights, key);
    if (!entry) {
        if (!mg_grow((void **)&weights->meta, &weights->cap_meta, weights->n_meta + 1, sizeof(mg_meta_entry)))
            return mg_error(MG_ERR_NO_MEMORY, "weights: out of memory");
        entry = &weights->meta[weights->n_meta];
        memset(entry, 0, sizeof *entry);
        entry->key = mg_strdup(key);
        if (!entry->key) return mg_error(MG_ERR_NO_MEMORY, "weights: out of memory");
        weights->n_meta++;
    }
    mg_meta_clear(entry);
    *out = entry;
    return MG_OK;
}

mg_status mg_weights_set_int_typed(mg_weights *weights, const char *key, mg_value_type type, int64_t value) {
    if (!mg_value_type_is_integer(type))
        return mg_error(MG_ERR_INVALID_ARGUMENT, "metadata key %s: %s is not an integer type", key,
                        mg_value_type_name(type));
    mg_meta_entry *entry;
    MG_TRY(mg_meta_slot(weights, key, &entry));
    entry->type = type;
    entry->int_value = value;
    entry->float_value = (double)value;
    return MG_OK;
}

mg_status mg_weights_set_float_typed(mg_weights *weights, const char *key, mg_value_type type, double value) {
    if (type != MG_VALUE_F32 && type != MG_VALUE_F64)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "metadata key %s: %s is not a float type", key,
                        mg_value_type_name(type));
    mg_meta_entry *entry;
    MG_TRY(mg_meta_slot(weights, key, &entry));
    entry->type = type;
    entry->float_value = value;
    return MG_OK;
}

mg_status mg_weights_set_int(mg_weights *weights, const char *key, int64_t value) {
    return mg_weights_set_int_typed(weights, key, MG_VALUE_I64, value);
}

mg_status mg_weights_set_float(mg_weights *weights, const char *key, double value) {
    return mg_weights_set_float_typed(weights, key, MG_VALUE_F64, value);
}

mg_status mg_weights_set_string_bytes(mg_weights *weights, const char *key, const char *value, size_t length) {
    mg_meta_entry *entry;
    MG_TRY(mg_meta_slot(weights, key, &entry));
    entry->type = MG_VALUE_STRING;
    entry->bytes = malloc(length + 1);
    if (!entry->bytes) return mg_error(MG_ERR_NO_MEMORY, "metadata key %s: no memory for %zu bytes", key, length);
    if (length) memcpy(entry->bytes, value, length);
    entry->bytes[length] = '\0';
    entry->n_bytes = length;
    return MG_OK;
}

mg_status mg_weights_set_string(mg_weights *weights, const char *key, const char *value) {
    if (!value) return mg_error(MG_ERR_INVALID_ARGUMENT, "metadata key %s: NULL string", key ? key : "");
    return mg_weights_set_string_bytes(weights, key, value, strlen(value));
}

mg_status mg_weights_set_array(mg_weights *weights, const char *key, mg_value_type element_type,
                               int64_t length, const void *data) {
    size_t element = mg_value_type_size(element_type);
    size_t total;
    if (element == 0)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "metadata key %s: arrays of %s need mg_weights_set_string_array",
                        key ? key : "", mg_value_type_name(element_type));
    if (length < 0 || !mg_mul_size((size_t)length, element, &total))
        return mg_error(MG_ERR_INVALID_ARGUMENT, "metadata key %s: bad array length %lld", key ? key : "",
                        (long long)length);
    mg_meta_entry *entry;
    MG_TRY(mg_meta_slot(weights, key, &entry));
    entry->type = MG_VALUE_ARRAY;
    entry->element_type = element_type;
    entry->bytes = malloc(total ? total : 1);
    if (!entry->bytes) return mg_error(MG_ERR_NO_MEMORY, "metadata key %s: no memory for %zu bytes", key, total);
    if (total) memcpy(entry->bytes, data, total);
    entry->n_bytes = total;
    entry->length = length;
    return MG_OK;
}

mg_status mg_weights_set_string_array(mg_weights *weights, const char *key, int64_t length,
                                      const char *const *strings, const size_t *lengths) {
    if (length < 0 || (uint64_t)length > SIZE_MAX / sizeof(char *))
        return mg_error(MG_ERR_INVALID_ARGUMENT, "metadata key %s: bad array length %lld", key ? key : "",
                        (long long)length);
    mg_meta_entry *entry;
    MG_TRY(mg_meta_slot(weights, key, &entry));
    entry->type = MG_VALUE_ARRAY;
    entry->element_type = MG_VALUE_STRING;
    size_t n = (size_t)length ? (size_t)length : 1;
    entry->strings = calloc(n, sizeof(char *));
    entry->string_lengths = calloc(n, sizeof(size_t));
    if (!entry->strings || !entry->string_lengths) {
        mg_meta_clear(entry);
        return mg_error(MG_ERR_NO_MEMORY, "metadata key %s: no memory for %lld strings", key, (long long)length);
    }
    entry->length = length;
    for (int64_t i = 0; i < length; i++) {
        size_t n_bytes = lengths ? lengths[i] : strlen(strings[i]);
        entry->strings[i] = malloc(n_bytes + 1);
        if (!entry->strings[i]) {
            mg_meta_clear(entry);
            return mg_error(MG_ERR_NO_MEMORY, "metadata key %s: no memory for string %lld", key, (long long)i);
        }
        if (n_bytes) memcpy(entry->strings[i], strings[i], n_bytes);
        entry->strings[i][n_bytes] = '\0';
        entry->string_lengths[i] = n_bytes;
    }
    return MG_OK;
}

/* Adopts an already-allocated string array (readers build it in place, so a
 * 150k-entry vocabulary is not copied twice). Takes ownership even on error. */
mg_status mg_weights_adopt_string_array(mg_weights *weights, const char *key, int64_t length, char **strings,
                                        size_t *lengths) {
    mg_meta_entry *entry;
    mg_status status = mg_meta_slot(weights, key, &entry);
    if (status != MG_OK) {
        for (int64_t i = 0; i < length; i++) free(strings[i]);
        free(strings);
        free(lengths);
        return status;
    }
    entry->type = MG_VALUE_ARRAY;
    entry->element_type = MG_VALUE_STRING;
    entry->strings = strings;
    entry->string_lengths = lengths;
    entry->length = length;
    return MG_OK;
}

static mg_status mg_meta_lookup(const mg_weights *weights, const char *key, mg_meta_entry **out) {
    *out = mg_meta_find(weights, key);
    if (!*out) return mg_error(MG_ERR_NOT_FOUND, "metadata key %s: not present", key ? key : "(null)");
    return MG_OK;
}

mg_status mg_weights_get_int(const mg_weights *weights, const char *key, int64_t *out) {
    mg_meta_entry *entry;
    MG_TRY(mg_meta_lookup(weights, key, &entry));
    if (!mg_value_type_is_integer(entry->type))
        return mg_error(MG_ERR_DTYPE, "metadata key %s: not an integer (it is %s)", key,
                        mg_value_type_name(entry->type));
    *out = entry->int_value;
    return MG_OK;
}

mg_status mg_weights_get_float(const mg_weights *weights, const char *key, double *out) {
    mg_meta_entry *entry;
    MG_TRY(mg_meta_lookup(weights, key, &entry));
    if (entry->type == MG_VALUE_F32 || entry->type == MG_VALUE_F64) *out = entry->float_value;
    else if (mg_value_type_is_integer(entry->type)) *out = (double)entry->int_value;
    else
        return mg_error(MG_ERR_DTYPE, "metadata key %s: not a number (it is %s)", key,
                        mg_value_type_name(entry->type));
    return MG_OK;
}

mg_status mg_weights_get_string(const mg_weights *weights, const char *key, const char **out) {
    size_t length;
    return mg_weights_get_string_bytes(weights, key, out, &length);
}

mg_status mg_weights_get_string_bytes(const mg_weights *weights, const char *key, const char **out,
                                      size_t *length) {
    mg_meta_entry *entry;
    MG_TRY(mg_meta_lookup(weights, key, &entry));
    if (entry->type != MG_VALUE_STRING)
        return mg_error(MG_ERR_DTYPE, "metadata key %s: not a string (it is %s)", key,
                        mg_value_type_name(entry->type));
    *out = entry->bytes;
    *length = entry->n_bytes;
    return MG_OK;
}

mg_status mg_weights_meta_type(const mg_weights *weights, const char *key, mg_value_type *type,
                               mg_value_type *element_type) {
    mg_meta_entry *entry;
    MG_TRY(mg_meta_lookup(weights, key, &entry));
    *type = entry->type;
    if (element_type) *element_type = entry->type == MG_VALUE_ARRAY ? entry->element_type : entry->type;
    return MG_OK;
}

mg_status mg_weights_get_array(const mg_weights *weights, const char *key, mg_value_type *element_type,
                               int64_t *length, const void **data) {
    mg_meta_entry *entry;
    MG_TRY(mg_meta_lookup(weights, key, &entry));
    if (entry->type != MG_VALUE_ARRAY)
        return mg_error(MG_ERR_DTYPE, "metadata key %s: not an array (it is %s)", key,
                        mg_value_type_name(entry->type));
    *element_type = entry->element_type;
    *length = entry->length;
    *data = entry->element_type == MG_VALUE_STRING ? NULL : entry->bytes;
    return MG_OK;
}

mg_status mg_weights_get_array_string(const mg_weights *weights, const char *key, int64_t index,
                                      const char **out, size_t *length) {
    mg_meta_entry *entry;
    MG_TRY(mg_meta_lookup(weights, key, &entry));
    if (entry->type != MG_VALUE_ARRAY || entry->element_type != MG_VALUE_STRING)
        return mg_error(MG_ERR_DTYPE, "metadata key %s: not an array of strings", key);
    if (index < 0 || index >= entry->length)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "metadata key %s: index %lld outside [0, %lld)", key,
                        (long long)index, (long long)entry->length);
    *out = entry->strings[index];
    if (length) *length = entry->string_lengths[index];
    return MG_OK;
}

int64_t mg_weights_meta_count(const mg_weights *weights) { return weights->n_meta; }

const char *mg_weights_meta_key(const mg_weights *weights, int64_t index) {
    if (index < 0 || index >= weights->n_meta) return NULL;
    return weights->meta[index].key;
}

/* safetensors reader: an 8-byte little-endian header length, a JSON header
 * {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]},
 *  "__metadata__": {"key": "value"}}, then the data buffer the offsets are
 * relative to. Format: huggingface/safetensors README ("Format" section).
 *
 * Every number comes from the file, so each is checked before use: the header
 * length against the file size, offsets against the data buffer, byte ranges
 * against shape x dtype, ranges against each other (no overlap, as the
 * reference loader requires). Tensors are views into the caller's buffer. */
#include "io/io.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The reference implementation refuses headers above 100 MB; so do we, so a
 * corrupt length cannot make us parse gigabytes of tensor data as JSON. */
#define MG_SAFETENSORS_MAX_HEADER ((uint64_t)100 * 1000 * 1000)

typedef struct {
    const char *name;
    mg_dtype dtype;
    int n_dims;
    int64_t shape[MG_MAX_DIMS];
    uint64_t begin, end;
    bool empty; /* a zero-size dimension: nothing to map */
} mg_st_entry;

static mg_status mg_st_dtype(const char *label, const char *name, const cJSON *value, mg_dtype *out) {
    static const struct {
        const char *text;
        mg_dtype dtype;
    } table[] = {
        {"F32", MG_F32}, {"F16", MG_F16}, {"BF16", MG_BF16}, {"F64", MG_F64}, {"I64", MG_I64},
        {"I32", MG_I32}, {"I16", MG_I16}, {"I8", MG_I8},     {"U8", MG_U8},   {"U16", MG_U16},
        {"BOOL", MG_BOOL},
    };
    if (!cJSON_IsString(value))
        return mg_error(MG_ERR_FORMAT, "%s: tensor %s: \"dtype\" is missing or not a string", label, name);
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        if (strcmp(value->valuestring, table[i].text) == 0) {
            *out = table[i].dtype;
            return MG_OK;
        }
    }
    return mg_error(MG_ERR_DTYPE,
                    "%s: tensor %s: dtype \"%.40s\" is not supported (F64, F32, F16, BF16, I64, I32, "
                    "I16, I8, U16, U8, BOOL)",
                    label, name, value->valuestring);
}

/* A JSON number that is an exact non-negative integer below 2^53 (the range
 * a double holds exactly; cJSON parses every number as a double). */
static bool mg_st_uint(const cJSON *item, uint64_t *out) {
    if (!cJSON_IsNumber(item)) return false;
    double v = item->valuedouble;
    if (!isfinite(v) || v < 0 || v > 9007199254740992.0 || v != floor(v)) return false;
    *out = (uint64_t)v;
    return true;
}

static mg_status mg_st_entry_parse(const char *label, const cJSON *item, uint64_t data_size, mg_st_entry *e) {
    const char *name = item->string;
    if (!cJSON_IsObject(item))
        return mg_error(MG_ERR_FORMAT, "%s: tensor %s: header entry is not an object", label, name);
    e->name = name;
    MG_TRY(mg_st_dtype(label, name, cJSON_GetObjectItemCaseSensitive(item, "dtype"), &e->dtype));

    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(item, "shape");
    if (!cJSON_IsArray(shape))
        return mg_error(MG_ERR_FORMAT, "%s: tensor %s: \"shape\" is missing or not an array", label, name);
    int64_t dims[64];
    int n_dims = cJSON_GetArraySize(shape);
    if (n_dims > 64) return mg_error(MG_ERR_FORMAT, "%s: tensor %s: %d dimensions", label, name, n_dims);
    uint64_t numel = 1;
    int i = 0;
    for (const cJSON *dim = shape->child; dim; dim = dim->next, i++) {
        uint64_t size;
        if (!mg_st_uint(dim, &size))
            return mg_error(MG_ERR_FORMAT,
                            "%s: tensor %s: shape entry %d is not a non-negative integer", label, name, i);
        dims[i] = (int64_t)size;
        if (size == 0) e->empty = true;
        else if (__builtin_mul_overflow(numel, size, &numel) || numel > ((uint64_t)1 << 50))
            return mg_error(MG_ERR_FORMAT, "%s: tensor %s: shape overflows the element count", label, name);
    }
    if (e->empty) numel = 0;

    const cJSON *offsets = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!cJSON_IsArray(offsets) || cJSON_GetArraySize(offsets) != 2 ||
        !mg_st_uint(offsets->child, &e->begin) || !mg_st_uint(offsets->child->next, &e->end))
        return mg_error(MG_ERR_FORMAT, "%s: tensor %s: \"data_offsets\" must be [begin, end] integers",
                        label, name);
    if (e->begin > e->end || e->end > data_size)
        return mg_error(MG_ERR_FORMAT,
                        "%s: tensor %s: data_offsets [%llu, %llu] outside the data buffer of %llu bytes",
                        label, name, (unsigned long long)e->begin, (unsigned long long)e->end,
                        (unsigned long long)data_size);
    uint64_t expected = numel * (uint64_t)mg_dtype_block_bytes(e->dtype);
    if (e->end - e->begin != expected)
        return mg_error(MG_ERR_FORMAT,
                        "%s: tensor %s: data_offsets span %llu bytes but shape x %s needs %llu", label,
                        name, (unsigned long long)(e->end - e->begin), mg_dtype_name(e->dtype),
                        (unsigned long long)expected);

    /* medground tensors are at most 4-D: leading size-1 dimensions carry no
     * information, so drop them when a checkpoint has more. */
    int first = 0;
    while (n_dims - first > MG_MAX_DIMS && dims[first] == 1) first++;
    if (n_dims - first > MG_MAX_DIMS)
        return mg_error(MG_ERR_UNSUPPORTED, "%s: tensor %s: %d dimensions (medground handles at most %d)",
                        label, name, n_dims, MG_MAX_DIMS);
    e->n_dims = n_dims - first;
    for (int d = 0; d < e->n_dims; d++) e->shape[d] = dims[first + d];
    return MG_OK;
}

static int mg_st_compare_begin(const void *a, const void *b) {
    const mg_st_entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

static int mg_st_compare_name(const void *a, const void *b) {
    return strcmp(((const mg_st_entry *)a)->name, ((const mg_st_entry *)b)->name);
}

static mg_status mg_st_metadata(const char *label, const cJSON *metadata, mg_weights *weights) {
    if (cJSON_IsNull(metadata)) return MG_OK;
    if (!cJSON_IsObject(metadata))
        return mg_error(MG_ERR_FORMAT, "%s: \"__metadata__\" is not an object", label);
    for (const cJSON *item = metadata->child; item; item = item->next) {
        if (!cJSON_IsString(item))
            return mg_error(MG_ERR_FORMAT, "%s: __metadata__ value of \"%.80s\" is not a string", label,
                            item->string);
        char key[512];
        snprintf(key, sizeof key, "safetensors.%s", item->string);
        MG_TRY(mg_weights_set_string(weights, key, item->valuestring));
    }
    return MG_OK;
}

static mg_status mg_st_add(const char *label, const uint8_t *data, const mg_st_entry *e, mg_weights *weights) {
    if (e->empty) {
        /* Valid in the format, but medground tensors have positive sizes; a
         * zero-size tensor carries no weights, so it is left out. */
        mg_log(2, "%s: tensor %s has a zero-size dimension; skipped", label, e->name);
        return MG_OK;
    }
    if (mg_weights_has(weights, e->name))
        return mg_error(MG_ERR_FORMAT, "%s: tensor %s appears twice", label, e->name);
    const uint8_t *p = data + e->begin;
    mg_tensor t;
    mg_status status = mg_tensor_init(&t, (void *)p, e->dtype, e->n_dims, e->shape);
    if (status != MG_OK) return mg_error_prefix(status, "%s: tensor %s", label, e->name);
    /* Offsets need only be byte-aligned in the format; kernels load whole
     * elements, so a misaligned tensor gets an aligned private copy. */
    bool aligned = ((uintptr_t)p % (uintptr_t)mg_dtype_block_bytes(e->dtype)) == 0;
    status = mg_weights_add(weights, e->name, &t, !aligned);
    if (status != MG_OK) return mg_error_prefix(status, "%s", label);
    return MG_OK;
}

mg_status mg_safetensors_parse(const uint8_t *bytes, size_t size, const char *label, mg_weights *weights) {
    if (size < 8)
        return mg_error(MG_ERR_FORMAT, "%s: %zu bytes is too short for a safetensors file (8-byte header length)",
                        label, size);
    uint64_t header_length = 0;
    for (int i = 7; i >= 0; i--) header_length = (header_length << 8) | bytes[i];
    if (header_length > size - 8)
        return mg_error(MG_ERR_FORMAT, "%s: header length %llu runs past the end of the file (%zu bytes)",
                        label, (unsigned long long)header_length, size);
    if (header_length > MG_SAFETENSORS_MAX_HEADER)
        return mg_error(MG_ERR_FORMAT, "%s: header length %llu exceeds the 100 MB limit", label,
                        (unsigned long long)header_length);
    if (header_length < 2)
        return mg_error(MG_ERR_FORMAT, "%s: header length %llu is too short for a JSON object", label,
                        (unsigned long long)header_length);
    const char *header = (const char *)bytes + 8;
    const uint8_t *data = bytes + 8 + header_length;
    uint64_t data_size = size - 8 - header_length;

    cJSON *root = cJSON_ParseWithLength(header, (size_t)header_length);
    if (!root) return mg_error(MG_ERR_FORMAT, "%s: header is not valid JSON", label);
    mg_status status = MG_OK;
    mg_st_entry *entries = NULL;
    if (!cJSON_IsObject(root)) {
        status = mg_error(MG_ERR_FORMAT, "%s: header is not a JSON object", label);
        goto done;
    }
    int n_items = cJSON_GetArraySize(root);
    entries = calloc((size_t)n_items + 1, sizeof *entries);
    if (!entries) {
        status = mg_error(MG_ERR_NO_MEMORY, "%s: no memory for %d header entries", label, n_items);
        goto done;
    }
    int n_entries = 0;
    bool seen_metadata = false;
    for (const cJSON *item = root->child; item; item = item->next) {
        if (strcmp(item->string, "__metadata__") == 0) {
            if (seen_metadata) {
                status = mg_error(MG_ERR_FORMAT, "%s: \"__metadata__\" appears twice", label);
                goto done;
            }
            seen_metadata = true;
            status = mg_st_metadata(label, item, weights);
            if (status != MG_OK) goto done;
            continue;
        }
        if (item->string[0] == '\0') {
            status = mg_error(MG_ERR_FORMAT, "%s: a tensor has an empty name", label);
            goto done;
        }
        status = mg_st_entry_parse(label, item, data_size, &entries[n_entries]);
        if (status != MG_OK) goto done;
        n_entries++;
    }

    /* No two tensors may share bytes (the reference loader demands the
     * ranges tile the buffer; we accept gaps but never overlap). */
    mg_st_entry *sorted = malloc(((size_t)n_entries + 1) * sizeof *sorted);
    if (!sorted) {
        status = mg_error(MG_ERR_NO_MEMORY, "%s: no memory to check offsets", label);
        goto done;
    }
    memcpy(sorted, entries, (size_t)n_entries * sizeof *sorted);
    /* JSON allows repeated keys and cJSON keeps them all: refuse them. */
    qsort(sorted, (size_t)n_entries, sizeof *sorted, mg_st_compare_name);
    for (int i = 1; i < n_entries && status == MG_OK; i++)
        if (strcmp(sorted[i].name, sorted[i - 1].name) == 0)
            status = mg_error(MG_ERR_FORMAT, "%s: tensor %s appears twice in the header", label, sorted[i].name);
    qsort(sorted, (size_t)n_entries, sizeof *sorted, mg_st_compare_begin);
    for (int i = 1; i < n_entries && status == MG_OK; i++) {
        if (sorted[i].begin < sorted[i - 1].end && sorted[i].begin != sorted[i].end) {
            status = mg_error(MG_ERR_FORMAT,
                              "%s: tensors %s [%llu, %llu) and %s [%llu, %llu) overlap in the data buffer",
                              label, sorted[i - 1].name, (unsigned long long)sorted[i - 1].begin,
                              (unsigned long long)sorted[i - 1].end, sorted[i].name,
                              (unsigned long long)sorted[i].begin, (unsigned long long)sorted[i].end);
            break;
        }
    }
    free(sorted);
    if (status != MG_OK) goto done;

    /* File (header) order, as the reference loader's keys() is sorted but
     * the header order is what a writer chose. */
    for (int i = 0; i < n_entries && status == MG_OK; i++) status = mg_st_add(label, data, &entries[i], weights);

done:
    free(entries);
    cJSON_Delete(root);
    return status;
}

mg_status mg_safetensors_load(const char *path, mg_weights *weights) {
    mg_mapped_file *file;
    MG_TRY(mg_mapped_file_open(path, &file));
    mg_status status = mg_weights_attach(weights, file, mg_mapped_file_release);
    if (status != MG_OK) {
        mg_mapped_file_release(file);
        return status;
    }
    return mg_safetensors_parse(file->data, file->size, path, weights);
}

/* GGUF v2/v3 reader and a streaming v3 writer.
 *
 * Layout (ggml docs/gguf.md): "GGUF" magic, u32 version, u64 tensor count,
 * u64 key/value count; key/values (u64-length string key, u32 value type,
 * value; arrays are u32 element type + u64 count + elements); tensor infos
 * (name, u32 n_dims, u64 dims innermost-first, u32 ggml type, u64 offset
 * relative to the data section); zero padding to general.alignment (default
 * 32); the data section. All little-endian.
 *
 * The reader trusts nothing: every count, length and offset is checked
 * against the bytes that remain before it is used, and messages name the
 * file and the key or tensor at fault. */
#include "io/io.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* The writer's stdio buffer: its writes are whole multiples of this, at multiples of it. */
#define MG_GGUF_WRITE_BUFFER ((size_t)8 << 20)

#define MG_GGUF_MAGIC 0x46554747u /* "GGUF" read as a little-endian u32 */
#define MG_GGUF_DEFAULT_ALIGNMENT 32
#define MG_GGUF_MAX_DIMS 4

/* ------------------------------------------------------------------ reader */

typedef struct {
    const uint8_t *bytes;
    size_t size;
    size_t pos;
    const char *label;
} mg_gguf_cursor;

static size_t mg_gguf_left(const mg_gguf_cursor *c) { return c->size - c->pos; }

static mg_status mg_gguf_take(mg_gguf_cursor *c, size_t n, const char *what, const uint8_t **out) {
    if (n > mg_gguf_left(c))
        return mg_error(MG_ERR_FORMAT, "%s: truncated at byte %zu: %s needs %zu bytes, %zu left", c->label,
                        c->pos, what, n, mg_gguf_left(c));
    *out = c->bytes + c->pos;
    c->pos += n;
    return MG_OK;
}

static mg_status mg_gguf_u32(mg_gguf_cursor *c, const char *what, uint32_t *out) {
    const uint8_t *p = NULL;
    MG_TRY(mg_gguf_take(c, 4, what, &p));
    memcpy(out, p, 4);
    return MG_OK;
}

static mg_status mg_gguf_u64(mg_gguf_cursor *c, const char *what, uint64_t *out) {
    const uint8_t *p = NULL;
    MG_TRY(mg_gguf_take(c, 8, what, &p));
    memcpy(out, p, 8);
    return MG_OK;
}

/* A length-prefixed string, borrowed from the buffer (not NUL-terminated). */
static mg_status mg_gguf_string(mg_gguf_cursor *c, const char *what, const char **out, size_t *length) {
    uint64_t n;
    MG_TRY(mg_gguf_u64(c, what, &n));
    if (n > mg_gguf_left(c))
        return mg_error(MG_ERR_FORMAT, "%s: %s: string length %llu runs past the end of the file", c->label,
                        what, (unsigned long long)n);
    const uint8_t *p = NULL;
    MG_TRY(mg_gguf_take(c, (size_t)n, what, &p));
    *out = (const char *)p;
    *length = (size_t)n;
    return MG_OK;
}

/* Copies a key/name into a NUL-terminated buffer; embedded NULs are refused
 * (they would make two different names compare equal). */
static mg_status mg_gguf_name(const mg_gguf_cursor *c, const char *what, const char *text, size_t length,
                              char **out) {
    if (length == 0) return mg_error(MG_ERR_FORMAT, "%s: %s is empty", c->label, what);
    if (memchr(text, '\0', length))
        return mg_error(MG_ERR_FORMAT, "%s: %s contains a NUL byte", c->label, what);
    *out = malloc(length + 1);
    if (!*out) return mg_error(MG_ERR_NO_MEMORY, "%s: no memory for %s", c->label, what);
    memcpy(*out, text, length);
    (*out)[length] = '\0';
    return MG_OK;
}

static bool mg_gguf_value_type_valid(uint32_t type) { return type <= MG_VALUE_F64; }

static int64_t mg_gguf_read_int(const uint8_t *p, mg_value_type type) {
    switch (type) {
    case MG_VALUE_U8: return *p;
    case MG_VALUE_I8: return (int8_t)*p;
    case MG_VALUE_BOOL: return *p != 0;
    case MG_VALUE_U16: { uint16_t v; memcpy(&v, p, 2); return v; }
    case MG_VALUE_I16: { int16_t v; memcpy(&v, p, 2); return v; }
    case MG_VALUE_U32: { uint32_t v; memcpy(&v, p, 4); return v; }
    case MG_VALUE_I32: { int32_t v; memcpy(&v, p, 4); return v; }
    case MG_VALUE_U64: { uint64_t v; memcpy(&v, p, 8); return (int64_t)v; }
    case MG_VALUE_I64: { int64_t v; memcpy(&v, p, 8); return v; }
    default: return 0;
    }
}

static mg_status mg_gguf_read_array(mg_gguf_cursor *c, const char *key, mg_weights *weights) {
    uint32_t element_type;
    uint64_t length;
    char what[300];
    snprintf(what, sizeof what, "metadata key %s", key);
    MG_TRY(mg_gguf_u32(c, what, &element_type));
    MG_TRY(mg_gguf_u64(c, what, &length));
    if (!mg_gguf_value_type_valid(element_type))
        return mg_error(MG_ERR_FORMAT, "%s: metadata key %s: unknown array element type %u", c->label, key,
                        element_type);
    if (element_type == MG_VALUE_ARRAY)
        return mg_error(MG_ERR_UNSUPPORTED, "%s: metadata key %s: arrays of arrays are not supported",
                        c->label, key);
    if (element_type == MG_VALUE_STRING) {
        /* each string costs at least its 8-byte length */
        if (length > mg_gguf_left(c) / 8)
            return mg_error(MG_ERR_FORMAT, "%s: metadata key %s: %llu strings cannot fit in the %zu bytes left",
                            c->label, key, (unsigned long long)length, mg_gguf_left(c));
        size_t n = length ? (size_t)length : 1;
        char **strings = calloc(n, sizeof *strings);
        size_t *lengths = calloc(n, sizeof *lengths);
        mg_status status = (strings && lengths) ? MG_OK
                                                 : mg_error(MG_ERR_NO_MEMORY, "%s: metadata key %s: no memory",
                                                            c->label, key);
        uint64_t done = 0;
        for (; status == MG_OK && done < length; done++) {
            const char *text;
            size_t text_length;
            snprintf(what, sizeof what, "metadata key %s element %llu", key, (unsigned long long)done);
            status = mg_gguf_string(c, what, &text, &text_length);
            if (status != MG_OK) break;
            strings[done] = malloc(text_length + 1);
            if (!strings[done]) {
                status = mg_error(MG_ERR_NO_MEMORY, "%s: %s: no memory", c->label, what);
                break;
            }
            memcpy(strings[done], text, text_length);
            strings[done][text_length] = '\0';
            lengths[done] = text_length;
        }
        if (status != MG_OK) {
            if (strings)
                for (uint64_t i = 0; i <= done && i < length; i++) free(strings[i]);
            free(strings);
            free(lengths);
            return status;
        }
        return mg_weights_adopt_string_array(weights, key, (int64_t)length, strings, lengths);
    }
    size_t element = mg_value_type_size((mg_value_type)element_type);
    if (length > mg_gguf_left(c) / element)
        return mg_error(MG_ERR_FORMAT, "%s: metadata key %s: %llu elements of %s run past the end of the file",
                        c->label, key, (unsigned long long)length, mg_value_type_name((mg_value_type)element_type));
    const uint8_t *p = NULL;
    MG_TRY(mg_gguf_take(c, (size_t)length * element, what, &p));
    return mg_weights_set_array(weights, key, (mg_value_type)element_type, (int64_t)length, p);
}

static mg_status mg_gguf_read_kv(mg_gguf_cursor *c, uint64_t index, mg_weights *weights) {
    char what[300];
    const char *text;
    size_t length;
    snprintf(what, sizeof what, "metadata key #%llu", (unsigned long long)index);
    MG_TRY(mg_gguf_string(c, what, &text, &length));
    char *key;
    MG_TRY(mg_gguf_name(c, what, text, length, &key));
    mg_status status = MG_OK;
    mg_value_type existing;
    if (mg_weights_meta_type(weights, key, &existing, NULL) == MG_OK) {
        status = mg_error(MG_ERR_FORMAT, "%s: metadata key %s appears twice", c->label, key);
        goto done;
    }
    mg_clear_error();
    uint32_t type;
    snprintf(what, sizeof what, "metadata key %s", key);
    status = mg_gguf_u32(c, what, &type);
    if (status != MG_OK) goto done;
    if (!mg_gguf_value_type_valid(type)) {
        status = mg_error(MG_ERR_FORMAT, "%s: metadata key %s: unknown value type %u", c->label, key, type);
        goto done;
    }
    const uint8_t *p = NULL;
    switch ((mg_value_type)type) {
    case MG_VALUE_STRING:
        status = mg_gguf_string(c, what, &text, &length);
        if (status == MG_OK) status = mg_weights_set_string_bytes(weights, key, text, length);
        break;
    case MG_VALUE_ARRAY:
        status = mg_gguf_read_array(c, key, weights);
        break;
    case MG_VALUE_F32:
        status = mg_gguf_take(c, 4, what, &p);
        if (status == MG_OK) {
            float v;
            memcpy(&v, p, 4);
            status = mg_weights_set_float_typed(weights, key, MG_VALUE_F32, v);
        }
        break;
    case MG_VALUE_F64:
        status = mg_gguf_take(c, 8, what, &p);
        if (status == MG_OK) {
            double v;
            memcpy(&v, p, 8);
            status = mg_weights_set_float_typed(weights, key, MG_VALUE_F64, v);
        }
        break;
    default:
        status = mg_gguf_take(c, mg_value_type_size((mg_value_type)type), what, &p);
        if (status == MG_OK)
            status = mg_weights_set_int_typed(weights, key, (mg_value_type)type,
                                              mg_gguf_read_int(p, (mg_value_type)type));
        break;
    }
done:
    free(key);
    return status;
}

typedef struct {
    char *name;
    mg_dtype dtype;
    int n_dims;
    int64_t shape[MG_MAX_DIMS]; /* outermost first */
    uint64_t offset, n_bytes;
    bool empty;
} mg_gguf_info;

static bool mg_gguf_dtype_supported(uint32_t type) {
    switch (type) {
    case MG_F32: case MG_F16: case MG_BF16: case MG_Q8_0: case MG_Q4_0:
    case MG_I8: case MG_I16: case MG_I32: case MG_I64: case MG_F64: return true;
    default: return false;
    }
}

static mg_status mg_gguf_read_info(mg_gguf_cursor *c, uint64_t index, mg_gguf_info *info) {
    char what[320];
    const char *text;
    size_t length;
    snprintf(what, sizeof what, "tensor info #%llu", (unsigned long long)index);
    MG_TRY(mg_gguf_string(c, what, &text, &length));
    MG_TRY(mg_gguf_name(c, what, text, length, &info->name));
    snprintf(what, sizeof what, "tensor %s", info->name);
    uint32_t n_dims, type;
    MG_TRY(mg_gguf_u32(c, what, &n_dims));
    if (n_dims > MG_GGUF_MAX_DIMS)
        return mg_error(MG_ERR_FORMAT, "%s: tensor %s: %u dimensions (GGUF allows at most %d)", c->label,
                        info->name, n_dims, MG_GGUF_MAX_DIMS);
    uint64_t dims[MG_GGUF_MAX_DIMS];
    uint64_t numel = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        MG_TRY(mg_gguf_u64(c, what, &dims[d]));
        if (dims[d] == 0) info->empty = true;
        else if (dims[d] > ((uint64_t)1 << 50) || __builtin_mul_overflow(numel, dims[d], &numel) ||
                 numel > ((uint64_t)1 << 50))
            return mg_error(MG_ERR_FORMAT, "%s: tensor %s: dimension %u = %llu overflows the element count",
                            c->label, info->name, d, (unsigned long long)dims[d]);
    }
    MG_TRY(mg_gguf_u32(c, what, &type));
    MG_TRY(mg_gguf_u64(c, what, &info->offset));
    if (!mg_gguf_dtype_supported(type))
        return mg_error(MG_ERR_UNSUPPORTED,
                        "%s: tensor %s: ggml type %u is not supported (f32, f16, bf16, q8_0, q4_0, i8, i16, "
                        "i32, i64, f64)",
                        c->label, info->name, type);
    info->dtype = (mg_dtype)type;
    info->n_dims = (int)n_dims;
    for (uint32_t d = 0; d < n_dims; d++) info->shape[n_dims - 1 - d] = (int64_t)dims[d];
    if (info->empty) {
        info->n_bytes = 0;
        return MG_OK;
    }
    int64_t block = mg_dtype_block_size(info->dtype);
    uint64_t row = n_dims ? dims[0] : 1;
    if (row % (uint64_t)block != 0)
        return mg_error(MG_ERR_FORMAT, "%s: tensor %s: rows of %llu elements are not whole %s blocks of %lld",
                        c->label, info->name, (unsigned long long)row, mg_dtype_name(info->dtype),
                        (long long)block);
    info->n_bytes = numel / (uint64_t)block * (uint64_t)mg_dtype_block_bytes(info->dtype);
    return MG_OK;
}

static int mg_gguf_compare_offset(const void *a, const void *b) {
    const mg_gguf_info *x = *(const mg_gguf_info *const *)a, *y = *(const mg_gguf_info *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* "A.key" -> "config.key" for the file's architecture A (see medground.h). */
static mg_status mg_gguf_alias_config(mg_weights *weights) {
    const char *arch;
    if (mg_weights_get_string(weights, "general.architecture", &arch) != MG_OK) {
        mg_clear_error();
        return MG_OK;
    }
    size_t arch_length = strlen(arch);
    if (arch_length == 0 || arch_length > 200) return MG_OK;
    int64_t n = mg_weights_meta_count(weights);
    for (int64_t i = 0; i < n; i++) {
        const char *key = mg_weights_meta_key(weights, i);
        if (strncmp(key, arch, arch_length) != 0 || key[arch_length] != '.') continue;
        char alias[1024];
        if ((size_t)snprintf(alias, sizeof alias, "config.%s", key + arch_length + 1) >= sizeof alias) continue;
        mg_value_type type, element_type;
        if (mg_weights_meta_type(weights, alias, &type, NULL) == MG_OK) continue;
        mg_clear_error();
        MG_TRY(mg_weights_meta_type(weights, key, &type, &element_type));
        if (type == MG_VALUE_STRING) {
            const char *value;
            size_t length;
            MG_TRY(mg_weights_get_string_bytes(weights, key, &value, &length));
            MG_TRY(mg_weights_set_string_bytes(weights, alias, value, length));
        } else if (type == MG_VALUE_F32 || type == MG_VALUE_F64) {
            double value;
            MG_TRY(mg_weights_get_float(weights, key, &value));
            MG_TRY(mg_weights_set_float_typed(weights, alias, type, value));
        } else if (type != MG_VALUE_ARRAY) {
            int64_t value;
            MG_TRY(mg_weights_get_int(weights, key, &value));
            MG_TRY(mg_weights_set_int_typed(weights, alias, type, value));
        } else if (element_type != MG_VALUE_STRING) {
            int64_t length;
            const void *data;
            MG_TRY(mg_weights_get_array(weights, key, &element_type, &length, &data));
            MG_TRY(mg_weights_set_array(weights, alias, element_type, length, data));
        }
        /* string arrays (vocabularies) are not duplicated */
    }
    return MG_OK;
}

mg_status mg_gguf_parse(const uint8_t *bytes, size_t size, const char *label, mg_weights *weights) {
    mg_gguf_cursor c = {bytes, size, 0, label};
    uint32_t magic, version;
    uint64_t n_tensors, n_kv;
    if (size < 4) return mg_error(MG_ERR_FORMAT, "%s: %zu bytes is too short for a GGUF file", label, size);
    MG_TRY(mg_gguf_u32(&c, "magic", &magic));
    if (magic != MG_GGUF_MAGIC) return mg_error(MG_ERR_FORMAT, "%s: not a GGUF file (bad magic)", label);
    MG_TRY(mg_gguf_u32(&c, "version", &version));
    if (version == 0x02000000u || version == 0x03000000u)
        return mg_error(MG_ERR_UNSUPPORTED, "%s: a big-endian GGUF file; only little-endian GGUF is supported", label);
    if (version != 2 && version != 3)
        return mg_error(MG_ERR_UNSUPPORTED, "%s: GGUF version %u is not supported (2 and 3 are)", label, version);
    MG_TRY(mg_gguf_u64(&c, "tensor count", &n_tensors));
    MG_TRY(mg_gguf_u64(&c, "metadata count", &n_kv));
    /* each key/value takes >= 12 bytes and each tensor info >= 24 */
    if (n_kv > mg_gguf_left(&c) / 12)
        return mg_error(MG_ERR_FORMAT, "%s: metadata count %llu cannot fit in the file", label,
                        (unsigned long long)n_kv);
    if (n_tensors > mg_gguf_left(&c) / 24)
        return mg_error(MG_ERR_FORMAT, "%s: tensor count %llu cannot fit in the file", label,
                        (unsigned long long)n_tensors);
    for (uint64_t i = 0; i < n_kv; i++) MG_TRY(mg_gguf_read_kv(&c, i, weights));

    uint64_t alignment = MG_GGUF_DEFAULT_ALIGNMENT;
    mg_value_type alignment_type;
    if (mg_weights_meta_type(weights, "general.alignment", &alignment_type, NULL) == MG_OK) {
        int64_t value;
        if (alignment_type != MG_VALUE_U32 || mg_weights_get_int(weights, "general.alignment", &value) != MG_OK)
            return mg_error(MG_ERR_FORMAT, "%s: general.alignment must be a u32", label);
        if (value <= 0 || (value & (value - 1)) != 0)
            return mg_error(MG_ERR_FORMAT, "%s: general.alignment %lld is not a power of two", label,
                            (long long)value);
        alignment = (uint64_t)value;
    }
    mg_clear_error();

    mg_gguf_info *infos = calloc(n_tensors ? (size_t)n_tensors : 1, sizeof *infos);
    mg_gguf_info **by_offset = calloc(n_tensors ? (size_t)n_tensors : 1, sizeof *by_offset);
    mg_status status = MG_OK;
    if (!infos || !by_offset) {
        status = mg_error(MG_ERR_NO_MEMORY, "%s: no memory for %llu tensor infos", label,
                          (unsigned long long)n_tensors);
        goto done;
    }
    for (uint64_t i = 0; i < n_tensors && status == MG_OK; i++) status = mg_gguf_read_info(&c, i, &infos[i]);
    if (status != MG_OK) goto done;

    uint64_t data_start = (c.pos + alignment - 1) / alignment * alignment;
    if (data_start > size && n_tensors > 0) {
        status = mg_error(MG_ERR_FORMAT, "%s: the data section would start at %llu, past the end of the file",
                          label, (unsigned long long)data_start);
        goto done;
    }
    uint64_t data_size = n_tensors > 0 ? size - data_start : 0;
    for (uint64_t i = 0; i < n_tensors; i++) {
        mg_gguf_info *info = &infos[i];
        by_offset[i] = info;
        if (info->offset % alignment != 0) {
            status = mg_error(MG_ERR_FORMAT, "%s: tensor %s: offset %llu is not a multiple of the alignment %llu",
                              label, info->name, (unsigned long long)info->offset,
                              (unsigned long long)alignment);
            goto done;
        }
        if (info->offset > data_size || info->n_bytes > data_size - info->offset) {
            status = mg_error(MG_ERR_FORMAT,
                              "%s: tensor %s: bytes [%llu, +%llu) run past the end of the data section (%llu bytes)",
                              label, info->name, (unsigned long long)info->offset,
                              (unsigned long long)info->n_bytes, (unsigned long long)data_size);
            goto done;
        }
    }
    qsort(by_offset, (size_t)n_tensors, sizeof *by_offset, mg_gguf_compare_offset);
    for (uint64_t i = 1; i < n_tensors; i++) {
        const mg_gguf_info *a = by_offset[i - 1], *b = by_offset[i];
        if (b->n_bytes && b->offset < a->offset + a->n_bytes) {
            status = mg_error(MG_ERR_FORMAT, "%s: tensors %s and %s overlap in the data section", label, a->name,
                              b->name);
            goto done;
        }
    }
    for (uint64_t i = 0; i < n_tensors && status == MG_OK; i++) {
        mg_gguf_info *info = &infos[i];
        if (info->empty) {
            mg_log(2, "%s: tensor %s has a zero-size dimension; skipped", label, info->name);
            continue;
        }
        if (mg_weights_has(weights, info->name)) {
            status = mg_error(MG_ERR_FORMAT, "%s: tensor %s appears twice", label, info->name);
            break;
        }
        const uint8_t *p = bytes + data_start + info->offset;
        mg_tensor t;
        status = mg_tensor_init(&t, (void *)p, info->dtype, info->n_dims, info->shape);
        if (status != MG_OK) {
            mg_error_prefix(status, "%s: tensor %s", label, info->name);
            break;
        }
        /* general.alignment may be 1: copy what kernels cannot load in place */
        size_t element_alignment = mg_dtype_is_quantized(info->dtype) ? 2 : (size_t)mg_dtype_block_bytes(info->dtype);
        bool aligned = (uintptr_t)p % element_alignment == 0;
        status = mg_weights_add(weights, info->name, &t, !aligned);
        if (status != MG_OK) mg_error_prefix(status, "%s", label);
    }
    if (status == MG_OK) status = mg_gguf_alias_config(weights);

done:
    if (infos)
        for (uint64_t i = 0; i < n_tensors; i++) free(infos[i].name);
    free(infos);
    free(by_offset);
    return status;
}

mg_status mg_gguf_load(const char *path, mg_weights *weights) {
    mg_mapped_file *file;
    MG_TRY(mg_mapped_file_open(path, &file));
    mg_status status = mg_weights_attach(weights, file, mg_mapped_file_release);
    if (status != MG_OK) {
        mg_mapped_file_release(file);
        return status;
    }
    return mg_gguf_parse(file->data, file->size, path, weights);
}

/* ------------------------------------------------------------------ writer */

typedef struct {
    char *name;
    mg_dtype dtype;
    int n_dims;
    int64_t shape[MG_MAX_DIMS];
    uint64_t n_bytes, offset;
} mg_gguf_out_tensor;

struct mg_gguf_writer {
    FILE *file;
    char *buffer; /* the file's stdio buffer, MG_GGUF_WRITE_BUFFER bytes (freed after fclose) */
    char *path;
    uint8_t *kv; /* serialised key/values */
    size_t kv_size, kv_capacity;
    char **keys;
    int64_t n_keys, cap_keys;
    mg_gguf_out_tensor *tensors;
    int64_t n_tensors, cap_tensors;
    uint64_t alignment;
    bool header_written, finished;
    int64_t next_tensor;
};

static mg_status mg_gguf_kv_append(mg_gguf_writer *w, const void *data, size_t n) {
    if (w->kv_size + n > w->kv_capacity) {
        size_t capacity = w->kv_capacity ? w->kv_capacity : 4096;
        while (capacity < w->kv_size + n) {
            if (capacity > SIZE_MAX / 2) return mg_error(MG_ERR_NO_MEMORY, "gguf writer: metadata too large");
            capacity *= 2;
        }
        uint8_t *grown = realloc(w->kv, capacity);
        if (!grown) return mg_error(MG_ERR_NO_MEMORY, "gguf writer: no memory for %zu bytes of metadata", capacity);
        w->kv = grown;
        w->kv_capacity = capacity;
    }
    if (n) memcpy(w->kv + w->kv_size, data, n);
    w->kv_size += n;
    return MG_OK;
}

static mg_status mg_gguf_kv_u32(mg_gguf_writer *w, uint32_t v) { return mg_gguf_kv_append(w, &v, 4); }
static mg_status mg_gguf_kv_u64(mg_gguf_writer *w, uint64_t v) { return mg_gguf_kv_append(w, &v, 8); }
static mg_status mg_gguf_kv_string(mg_gguf_writer *w, const char *s, size_t n) {
    MG_TRY(mg_gguf_kv_u64(w, n));
    return mg_gguf_kv_append(w, s, n);
}

/* Checks the writer state and the key, records it, writes key + type. */
static mg_status mg_gguf_kv_begin(mg_gguf_writer *w, const char *key, mg_value_type type) {
    if (!w || !key || !*key) return mg_error(MG_ERR_INVALID_ARGUMENT, "gguf writer: empty metadata key");
    if (w->header_written)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "%s: metadata key %s added after tensor data was started",
                        w->path, key);
    for (int64_t i = 0; i < w->n_keys; i++)
        if (strcmp(w->keys[i], key) == 0)
            return mg_error(MG_ERR_INVALID_ARGUMENT, "%s: metadata key %s added twice", w->path, key);
    if (w->n_keys == w->cap_keys) {
        int64_t capacity = w->cap_keys ? w->cap_keys * 2 : 32;
        char **grown = realloc(w->keys, (size_t)capacity * sizeof *grown);
        if (!grown) return mg_error(MG_ERR_NO_MEMORY, "gguf writer: out of memory");
        w->keys = grown;
        w->cap_keys = capacity;
    }
    size_t n = strlen(key);
    char *copy = malloc(n + 1);
    if (!copy) return mg_error(MG_ERR_NO_MEMORY, "gguf writer: out of memory");
    memcpy(copy, key, n + 1);
    w->keys[w->n_keys++] = copy;
    MG_TRY(mg_gguf_kv_string(w, key, n));
    return mg_gguf_kv_u32(w, (uint32_t)type);
}

mg_status mg_gguf_writer_open(const char *path, mg_gguf_writer **out) {
    *out = NULL;
    if (!path || !*path) return mg_error(MG_ERR_INVALID_ARGUMENT, "gguf writer: empty path");
    mg_gguf_writer *w = calloc(1, sizeof *w);
    if (!w) return mg_error(MG_ERR_NO_MEMORY, "gguf writer: out of memory");
    w->alignment = MG_GGUF_DEFAULT_ALIGNMENT;
    size_t n = strlen(path);
    w->path = malloc(n + 1);
    if (!w->path) {
        free(w);
        return mg_error(MG_ERR_NO_MEMORY, "gguf writer: out of memory");
    }
    memcpy(w->path, path, n + 1);
    w->file = fopen(path, "wb");
    if (!w->file) {
        mg_status status = mg_error(MG_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
        free(w->path);
        free(w);
        return status;
    }
    /* whole 8 MB writes at multiples of 8 MB (see mg_gguf_write_large);
     * glibc ignores the size unless given the buffer. Without memory for
     * it, stdio's own buffer writes the same bytes in smaller pieces. */
    w->buffer = malloc(MG_GGUF_WRITE_BUFFER);
    if (w->buffer && setvbuf(w->file, w->buffer, _IOFBF, MG_GGUF_WRITE_BUFFER) != 0) {
        free(w->buffer);
        w->buffer = NULL;
    }
    *out = w;
    return MG_OK;
}

void mg_gguf_writer_destroy(mg_gguf_writer *w) {
    if (!w) return;
    if (w->file) fclose(w->file);
    free(w->buffer); /* after fclose, which flushes from it */
    if (!w->finished) unlink(w->path); /* never leave a half-written file that looks valid */
    for (int64_t i = 0; i < w->n_keys; i++) free(w->keys[i]);
    for (int64_t i = 0; i < w->n_tensors; i++) free(w->tensors[i].name);
    free(w->keys);
    free(w->tensors);
    free(w->kv);
    free(w->path);
    free(w);
}

mg_status mg_gguf_writer_add_int(mg_gguf_writer *w, const char *key, mg_value_type type, int64_t value) {
    size_t size = mg_value_type_size(type);
    if (size == 0 || type == MG_VALUE_F32 || type == MG_VALUE_F64)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "gguf writer: metadata key %s: %s is not an integer type",
                        key ? key : "", mg_value_type_name(type));
    /* refuse values the type cannot hold instead of truncating them (u64
     * takes the 64 bits as given: callers pass values >= 2^63 negative) */
    static const struct { int64_t lo, hi; } range[] = {
        [MG_VALUE_U8] = {0, UINT8_MAX},          [MG_VALUE_I8] = {INT8_MIN, INT8_MAX},
        [MG_VALUE_U16] = {0, UINT16_MAX},        [MG_VALUE_I16] = {INT16_MIN, INT16_MAX},
        [MG_VALUE_U32] = {0, UINT32_MAX},        [MG_VALUE_I32] = {INT32_MIN, INT32_MAX},
        [MG_VALUE_BOOL] = {0, 1},                [MG_VALUE_U64] = {INT64_MIN, INT64_MAX},
        [MG_VALUE_I64] = {INT64_MIN, INT64_MAX},
    };
    if ((size_t)type < sizeof range / sizeof range[0] && (range[type].lo != 0 || range[type].hi != 0) &&
        (value < range[type].lo || value > range[type].hi))
        return mg_error(MG_ERR_INVALID_ARGUMENT, "gguf writer: metadata key %s: %lld does not fit in %s",
                        key ? key : "", (long long)value, mg_value_type_name(type));
    bool is_alignment = key && strcmp(key, "general.alignment") == 0;
    if (is_alignment && (type != MG_VALUE_U32 || value <= 0 || value > (1 << 30) || (value & (value - 1)) != 0))
        return mg_error(MG_ERR_INVALID_ARGUMENT,
                        "gguf writer: general.alignment must be a u32 power of two, got %lld (%s)",
                        (long long)value, mg_value_type_name(type));
    MG_TRY(mg_gguf_kv_begin(w, key, type));
    if (is_alignment) w->alignment = (uint64_t)value; /* offsets are laid out when the header is written */
    uint8_t bytes[8];
    uint64_t bits = (uint64_t)value;
    if (type == MG_VALUE_BOOL) bits = value != 0;
    for (size_t i = 0; i < size; i++) bytes[i] = (uint8_t)(bits >> (8 * i));
    return mg_gguf_kv_append(w, bytes, size);
}

mg_status mg_gguf_writer_add_float(mg_gguf_writer *w, const char *key, mg_value_type type, double value) {
    if (type != MG_VALUE_F32 && type != MG_VALUE_F64)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "gguf writer: metadata key %s: %s is not a float type",
                        key ? key : "", mg_value_type_name(type));
    MG_TRY(mg_gguf_kv_begin(w, key, type));
    if (type == MG_VALUE_F32) {
        float v = (float)value;
        return mg_gguf_kv_append(w, &v, 4);
    }
    return mg_gguf_kv_append(w, &value, 8);
}

mg_status mg_gguf_writer_add_string(mg_gguf_writer *w, const char *key, const char *value, size_t length) {
    if (!value && length) return mg_error(MG_ERR_INVALID_ARGUMENT, "gguf writer: metadata key %s: NULL string", key);
    MG_TRY(mg_gguf_kv_begin(w, key, MG_VALUE_STRING));
    return mg_gguf_kv_string(w, value ? value : "", length);
}

mg_status mg_gguf_writer_add_array(mg_gguf_writer *w, const char *key, mg_value_type element_type, int64_t length,
                                   const void *data) {
    size_t element = mg_value_type_size(element_type), total;
    if (element == 0)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "gguf writer: metadata key %s: use add_string_array for %s",
                        key ? key : "", mg_value_type_name(element_type));
    if (length < 0 || !mg_mul_size((size_t)length, element, &total))
        return mg_error(MG_ERR_INVALID_ARGUMENT, "gguf writer: metadata key %s: bad length %lld", key ? key : "",
                        (long long)length);
    MG_TRY(mg_gguf_kv_begin(w, key, MG_VALUE_ARRAY));
    MG_TRY(mg_gguf_kv_u32(w, (uint32_t)element_type));
    MG_TRY(mg_gguf_kv_u64(w, (uint64_t)length));
    return mg_gguf_kv_append(w, data, total);
}

mg_status mg_gguf_writer_add_string_array(mg_gguf_writer *w, const char *key, int64_t length,
                                          const char *const *strings, const size_t *lengths) {
    if (length < 0)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "gguf writer: metadata key %s: bad length %lld", key ? key : "",
                        (long long)length);
    MG_TRY(mg_gguf_kv_begin(w, key, MG_VALUE_ARRAY));
    MG_TRY(mg_gguf_kv_u32(w, MG_VALUE_STRING));
    MG_TRY(mg_gguf_kv_u64(w, (uint64_t)length));
    for (int64_t i = 0; i < length; i++)
        MG_TRY(mg_gguf_kv_string(w, strings[i], lengths ? lengths[i] : strlen(strings[i])));
    return MG_OK;
}

mg_status mg_gguf_writer_add_metadata_from(mg_gguf_writer *w, const mg_weights *weights) {
    int64_t n = mg_weights_meta_count(weights);
    for (int64_t i = 0; i < n; i++) {
        const char *key = mg_weights_meta_key(weights, i);
        mg_value_type type, element_type;
        MG_TRY(mg_weights_meta_type(weights, key, &type, &element_type));
        if (type == MG_VALUE_STRING) {
            const char *value;
            size_t length;
            MG_TRY(mg_weights_get_string_bytes(weights, key, &value, &length));
            MG_TRY(mg_gguf_writer_add_string(w, key, value, length));
        } else if (type == MG_VALUE_F32 || type == MG_VALUE_F64) {
            double value;
            MG_TRY(mg_weights_get_float(weights, key, &value));
            MG_TRY(mg_gguf_writer_add_float(w, key, type, value));
        } else if (type != MG_VALUE_ARRAY) {
            int64_t value;
            MG_TRY(mg_weights_get_int(weights, key, &value));
            MG_TRY(mg_gguf_writer_add_int(w, key, type, value));
        } else {
            int64_t length;
            const void *data;
            MG_TRY(mg_weights_get_array(weights, key, &element_type, &length, &data));
            if (element_type != MG_VALUE_STRING) {
                MG_TRY(mg_gguf_writer_add_array(w, key, element_type, length, data));
                continue;
            }
            MG_TRY(mg_gguf_kv_begin(w, key, MG_VALUE_ARRAY));
            MG_TRY(mg_gguf_kv_u32(w, MG_VALUE_STRING));
            MG_TRY(mg_gguf_kv_u64(w, (uint64_t)length));
            for (int64_t j = 0; j < length; j++) {
                const char *s;
                size_t s_length;
                MG_TRY(mg_weights_get_array_string(weights, key, j, &s, &s_length));
                MG_TRY(mg_gguf_kv_string(w, s, s_length));
            }
        }
    }
    return MG_OK;
}

mg_status mg_gguf_writer_add_tensor_info(mg_gguf_writer *w, const char *name, mg_dtype dtype, int n_dims,
                                         const int64_t *shape) {
    if (!name || !*name) return mg_error(MG_ERR_INVALID_ARGUMENT, "gguf writer: empty tensor name");
    if (w->header_written)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "%s: tensor %s declared after tensor data was started", w->path,
                        name);
    if (!mg_gguf_dtype_supported((uint32_t)dtype))
        return mg_error(MG_ERR_DTYPE, "%s: tensor %s: %s cannot be stored in GGUF", w->path, name,
                        mg_dtype_name(dtype));
    for (int64_t i = 0; i < w->n_tensors; i++)
        if (strcmp(w->tensors[i].name, name) == 0)
            return mg_error(MG_ERR_INVALID_ARGUMENT, "%s: tensor %s declared twice", w->path, name);
    mg_tensor probe;
    mg_status status = mg_tensor_init(&probe, NULL, dtype, n_dims, shape);
    if (status != MG_OK) return mg_error_prefix(status, "%s: tensor %s", w->path, name);
    if (w->n_tensors == w->cap_tensors) {
        int64_t capacity = w->cap_tensors ? w->cap_tensors * 2 : 64;
        mg_gguf_out_tensor *grown = realloc(w->tensors, (size_t)capacity * sizeof *grown);
        if (!grown) return mg_error(MG_ERR_NO_MEMORY, "gguf writer: out of memory");
        w->tensors = grown;
        w->cap_tensors = capacity;
    }
    mg_gguf_out_tensor *t = &w->tensors[w->n_tensors];
    memset(t, 0, sizeof *t);
    size_t n = strlen(name);
    t->name = malloc(n + 1);
    if (!t->name) return mg_error(MG_ERR_NO_MEMORY, "gguf writer: out of memory");
    memcpy(t->name, name, n + 1);
    t->dtype = dtype;
    t->n_dims = n_dims;
    for (int d = 0; d < MG_MAX_DIMS; d++) t->shape[d] = d < n_dims ? shape[d] : 1;
    t->n_bytes = mg_tensor_nbytes(&probe);
    w->n_tensors++;
    return MG_OK;
}

static mg_status mg_gguf_fwrite(mg_gguf_writer *w, const void *data, size_t n) {
    if (n && fwrite(data, 1, n, w->file) != n)
        return mg_error(MG_ERR_IO, "%s: write failed: %s", w->path, strerror(errno));
    return MG_OK;
}

static mg_status mg_gguf_pad(mg_gguf_writer *w, uint64_t position) {
    static const uint8_t zeros[256];
    uint64_t padding = (w->alignment - position % w->alignment) % w->alignment;
    while (padding > 0) {
        size_t n = padding > sizeof zeros ? sizeof zeros : (size_t)padding;
        MG_TRY(mg_gguf_fwrite(w, zeros, n));
        padding -= n;
    }
    return MG_OK;
}

static mg_status mg_gguf_write_header(mg_gguf_writer *w) {
    uint64_t offset = 0;
    for (int64_t i = 0; i < w->n_tensors; i++) {
        w->tensors[i].offset = offset;
        offset += (w->tensors[i].n_bytes + w->alignment - 1) / w->alignment * w->alignment;
    }
    uint32_t head32[2] = {MG_GGUF_MAGIC, 3};
    uint64_t head64[2] = {(uint64_t)w->n_tensors, (uint64_t)w->n_keys};
    MG_TRY(mg_gguf_fwrite(w, head32, sizeof head32));
    MG_TRY(mg_gguf_fwrite(w, head64, sizeof head64));
    MG_TRY(mg_gguf_fwrite(w, w->kv, w->kv_size));
    uint64_t position = sizeof head32 + sizeof head64 + w->kv_size;
    for (int64_t i = 0; i < w->n_tensors; i++) {
        const mg_gguf_out_tensor *t = &w->tensors[i];
        uint64_t name_length = strlen(t->name);
        uint32_t n_dims = (uint32_t)t->n_dims, type = (uint32_t)t->dtype;
        MG_TRY(mg_gguf_fwrite(w, &name_length, 8));
        MG_TRY(mg_gguf_fwrite(w, t->name, (size_t)name_length));
        MG_TRY(mg_gguf_fwrite(w, &n_dims, 4));
        for (int d = t->n_dims - 1; d >= 0; d--) { /* GGUF: innermost first */
            uint64_t dim = (uint64_t)t->shape[d];
            MG_TRY(mg_gguf_fwrite(w, &dim, 8));
        }
        MG_TRY(mg_gguf_fwrite(w, &type, 4));
        MG_TRY(mg_gguf_fwrite(w, &t->offset, 8));
        position += 8 + name_length + 4 + 8 * (uint64_t)t->n_dims + 4 + 8;
    }
    MG_TRY(mg_gguf_pad(w, position));
    free(w->kv); /* no longer needed: keep peak memory at one tensor */
    w->kv = NULL;
    w->kv_size = w->kv_capacity = 0;
    w->header_written = true;
    return MG_OK;
}

static bool mg_dtype_is_float(mg_dtype dtype) {
    return dtype == MG_F32 || dtype == MG_F16 || dtype == MG_BF16 || dtype == MG_F64 || mg_dtype_is_quantized(dtype);
}

/* Same-dtype strided copy, element by element in bytes (exact for integers,
 * which mg_tensor_convert would route through float). */
static void mg_gguf_gather(const mg_tensor *src, uint8_t *dst) {
    size_t element = (size_t)mg_dtype_block_bytes(src->dtype);
    int64_t numel = mg_tensor_numel(src);
    int n_dims = src->n_dims;
    int64_t index[MG_MAX_DIMS] = {0};
    for (int64_t i = 0; i < numel; i++) {
        const uint8_t *p = src->data;
        for (int d = 0; d < n_dims; d++) p += index[d] * src->strides[d];
        memcpy(dst + (size_t)i * element, p, element);
        for (int d = n_dims - 1; d >= 0; d--) {
            if (++index[d] < src->shape[d]) break;
            index[d] = 0;
        }
    }
}

#ifdef MADV_POPULATE_READ
#define MG_MADV_POPULATE_READ MADV_POPULATE_READ
#else
#define MG_MADV_POPULATE_READ 22 /* Linux >= 5.14; older kernels return EINVAL, which is ignored */
#endif

/* Large writes go through the file's stdio buffer in 8 MB pieces, with the
 * kernel told to read the source ahead and to map each piece's pages in
 * one call: for a tensor inside a mapped checkpoint this runs at `cp`
 * speed, where faulting the mapping in 4 KB at a time (inside write())
 * halves the throughput. The buffer is MG_GGUF_WRITE_BUFFER bytes and the
 * writer never seeks or flushes early, so every write() the C library
 * makes covers whole 8 MB of the file at a multiple of 8 MB: the page
 * cache then holds the fresh file in whole 2 MB folios, which a model
 * loaded from it maps with 2 MB pages (io/checkpoint.c). Writes at the
 * tensors' own offsets left a quarter of a file in smaller folios. */
static mg_status mg_gguf_write_large(mg_gguf_writer *w, const void *data, size_t n) {
    if (n < ((size_t)1 << 20)) return mg_gguf_fwrite(w, data, n);
    const size_t chunk = MG_GGUF_WRITE_BUFFER;
    long page = sysconf(_SC_PAGESIZE);
    uintptr_t page_mask = (uintptr_t)(page > 0 ? page : 4096) - 1;
    const uint8_t *p = data;
    for (size_t done = 0; done < n;) {
        const size_t want = n - done < chunk ? n - done : chunk;
        /* advise the next piece while this one is written (errors are
         * harmless: the memory may not be a file mapping) */
        const size_t ahead = n - done - want < chunk ? n - done - want : chunk;
        if (ahead) {
            uintptr_t start = (uintptr_t)(p + done + want) & ~page_mask;
            (void)madvise((void *)start, ahead + ((uintptr_t)(p + done + want) - start), MADV_WILLNEED);
        }
        uintptr_t start = (uintptr_t)(p + done) & ~page_mask;
        (void)madvise((void *)start, want + ((uintptr_t)(p + done) - start), MG_MADV_POPULATE_READ);
        MG_TRY(mg_gguf_fwrite(w, p + done, want));
        done += want;
    }
    return MG_OK;
}

/* ---- fast float conversions for the writer (f32 / f16 / bf16) ----
 * Each is exact IEEE round-to-nearest-even, as mg_tensor_convert, NumPy and
 * gguf-py; bf16 NaNs become quiet NaNs the way gguf-py's quantizer does. */

static inline uint16_t mg_gguf_f32_to_bf16_bits(uint32_t u) {
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define MG_GGUF_HAVE_F16C 1
__attribute__((target("avx,f16c"))) static void mg_gguf_f32_to_f16_f16c(const float *src, uint16_t *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    if (i < n) {
        float in[8] = {0};
        uint16_t out[8];
        memcpy(in, src + i, (n - i) * sizeof *in);
        _mm_storeu_si128((__m128i *)out, _mm256_cvtps_ph(_mm256_loadu_ps(in), _MM_FROUND_TO_NEAREST_INT));
        memcpy(dst + i, out, (n - i) * sizeof *out);
    }
}

__attribute__((target("avx,f16c"))) static void mg_gguf_f16_to_f32_f16c(const uint16_t *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    if (i < n) {
        uint16_t in[8] = {0};
        float out[8];
        memcpy(in, src + i, (n - i) * sizeof *in);
        _mm256_storeu_ps(out, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)in)));
        memcpy(dst + i, out, (n - i) * sizeof *out);
    }
}

/* CPUID.1:ECX has F16C (bit 29), AVX (28) and OSXSAVE (27); XCR0 bits 1-2
 * say the OS saves the YMM registers. (Read directly: clang 14's
 * __builtin_cpu_supports does not know "f16c".) */
static bool mg_gguf_f16c(void) {
    static int supported = -1;
    if (supported < 0) {
        unsigned a, b, c, d;
        supported = 0;
        if (__get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29)) && (c & (1u << 28)) && (c & (1u << 27))) {
            unsigned lo, hi;
            __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
            supported = (lo & 6u) == 6u;
        }
    }
    return supported == 1;
}
#else
static bool mg_gguf_f16c(void) { return false; }
#endif

static bool mg_gguf_is_plain_float(mg_dtype dtype) { return dtype == MG_F32 || dtype == MG_F16 || dtype == MG_BF16; }

/* Converts n contiguous elements; `scratch` holds n f32 (for two-step pairs). */
static void mg_gguf_convert_run(mg_dtype from, const void *src, mg_dtype to, void *dst, size_t n, float *scratch) {
    const float *f32 = NULL;
    if (from == MG_F32) {
        f32 = src;
    } else if (from == MG_BF16) {
        const uint16_t *b = src;
        uint32_t *out = to == MG_F32 ? dst : (uint32_t *)scratch;
        for (size_t i = 0; i < n; i++) out[i] = (uint32_t)b[i] << 16;
        f32 = (const float *)out;
    } else {
#ifdef MG_GGUF_HAVE_F16C
        float *out = to == MG_F32 ? dst : scratch;
        mg_gguf_f16_to_f32_f16c(src, out, n);
        f32 = out;
#endif
    }
    if (to == MG_F32) {
        if (f32 != dst) memcpy(dst, f32, n * sizeof(float));
    } else if (to == MG_BF16) {
        uint16_t *out = dst;
        const uint32_t *u = (const uint32_t *)f32;
        for (size_t i = 0; i < n; i++) out[i] = mg_gguf_f32_to_bf16_bits(u[i]);
    } else {
#ifdef MG_GGUF_HAVE_F16C
        mg_gguf_f32_to_f16_f16c(f32, dst, n);
#endif
    }
}

/* Contiguous f32/f16/bf16 -> another of them, 1 M elements at a time, so
 * converting costs two small buffers instead of a copy of the tensor. */
static mg_status mg_gguf_write_converted(mg_gguf_writer *w, const mg_gguf_out_tensor *t, const mg_tensor *src) {
    const size_t run = (size_t)1 << 20;
    size_t n = (size_t)mg_tensor_numel(src);
    size_t in_size = (size_t)mg_dtype_block_bytes(src->dtype), out_size = (size_t)mg_dtype_block_bytes(t->dtype);
    size_t buffer_n = n < run ? n : run;
    uint8_t *out = mg_aligned_alloc(buffer_n * out_size);
    float *scratch = mg_aligned_alloc(buffer_n * sizeof(float));
    mg_status status = MG_OK;
    if (!out || !scratch) {
        status = mg_error(MG_ERR_NO_MEMORY, "%s: tensor %s: no memory for conversion buffers", w->path, t->name);
    }
    for (size_t done = 0; status == MG_OK && done < n; done += buffer_n) {
        size_t m = n - done < buffer_n ? n - done : buffer_n;
        mg_gguf_convert_run(src->dtype, (const uint8_t *)src->data + done * in_size, t->dtype, out, m, scratch);
        status = mg_gguf_fwrite(w, out, m * out_size);
    }
    mg_aligned_free(out);
    mg_aligned_free(scratch);
    return status;
}

mg_status mg_gguf_writer_write_tensor(mg_gguf_writer *w, const char *name, const mg_tensor *tensor) {
    if (w->finished) return mg_error(MG_ERR_INVALID_ARGUMENT, "%s: writer already finished", w->path);
    if (w->next_tensor >= w->n_tensors)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "%s: tensor %s: all %lld declared tensors are already written",
                        w->path, name ? name : "?", (long long)w->n_tensors);
    mg_gguf_out_tensor *t = &w->tensors[w->next_tensor];
    if (name && strcmp(name, t->name) != 0)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "%s: tensor %s written out of order (next declared is %s)",
                        w->path, name, t->name);
    mg_tensor target;
    MG_TRY(mg_tensor_init(&target, NULL, t->dtype, t->n_dims, t->shape));
    if (mg_tensor_numel(tensor) != mg_tensor_numel(&target)) {
        char a[96], b[96];
        return mg_error(MG_ERR_SHAPE, "%s: tensor %s: declared %s, given %s", w->path, t->name,
                        mg_tensor_describe(&target, a, sizeof a), mg_tensor_describe(tensor, b, sizeof b));
    }
    bool same = tensor->dtype == t->dtype;
    bool same_shape = tensor->n_dims == t->n_dims;
    for (int d = 0; same_shape && d < t->n_dims; d++) same_shape = tensor->shape[d] == t->shape[d];
    if (!same_shape && !mg_tensor_is_contiguous(tensor)) {
        char a[96], b[96];
        return mg_error(MG_ERR_SHAPE, "%s: tensor %s: a strided source must have the declared shape %s, not %s",
                        w->path, t->name, mg_tensor_describe(&target, a, sizeof a),
                        mg_tensor_describe(tensor, b, sizeof b));
    }
    if (!same && !(mg_dtype_is_float(tensor->dtype) && mg_dtype_is_float(t->dtype)))
        return mg_error(MG_ERR_DTYPE, "%s: tensor %s: cannot store %s data as %s", w->path, t->name,
                        mg_dtype_name(tensor->dtype), mg_dtype_name(t->dtype));
    if (!w->header_written) MG_TRY(mg_gguf_write_header(w));

    mg_status status = MG_OK;
    bool needs_f16c = tensor->dtype == MG_F16 || t->dtype == MG_F16;
    if (same && mg_tensor_is_contiguous(tensor)) {
        status = mg_gguf_write_large(w, tensor->data, (size_t)t->n_bytes); /* straight from the source mmap */
    } else if (mg_tensor_is_contiguous(tensor) && mg_gguf_is_plain_float(tensor->dtype) &&
               mg_gguf_is_plain_float(t->dtype) && (!needs_f16c || mg_gguf_f16c())) {
        status = mg_gguf_write_converted(w, t, tensor);
    } else {
        target.data = mg_aligned_alloc((size_t)t->n_bytes);
        if (!target.data)
            return mg_error(MG_ERR_NO_MEMORY, "%s: tensor %s: no memory for %llu bytes", w->path, t->name,
                            (unsigned long long)t->n_bytes);
        if (same && !mg_dtype_is_quantized(t->dtype)) {
            mg_gguf_gather(tensor, target.data);
        } else {
            mg_tensor source = *tensor;
            /* reshape the view to the declared shape when it is contiguous so
             * quantization blocks follow the declared rows */
            if (mg_tensor_is_contiguous(tensor)) status = mg_tensor_reshape(tensor, t->n_dims, t->shape, &source);
            if (status == MG_OK) status = mg_tensor_convert(&source, &target);
            if (status != MG_OK) mg_error_prefix(status, "%s: tensor %s", w->path, t->name);
        }
        if (status == MG_OK) status = mg_gguf_fwrite(w, target.data, (size_t)t->n_bytes);
        mg_aligned_free(target.data);
    }
    if (status == MG_OK) status = mg_gguf_pad(w, t->n_bytes);
    if (status == MG_OK) w->next_tensor++;
    return status;
}

mg_status mg_gguf_writer_finish(mg_gguf_writer *w) {
    if (w->finished) return MG_OK;
    if (!w->header_written) MG_TRY(mg_gguf_write_header(w));
    if (w->next_tensor != w->n_tensors)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "%s: %lld of %lld tensors written (next missing: %s)", w->path,
                        (long long)w->next_tensor, (long long)w->n_tensors, w->tensors[w->next_tensor].name);
    int closed = fclose(w->file);
    w->file = NULL;
    if (closed != 0) return mg_error(MG_ERR_IO, "%s: closing failed: %s", w->path, strerror(errno));
    w->finished = true;
    return MG_OK;
}

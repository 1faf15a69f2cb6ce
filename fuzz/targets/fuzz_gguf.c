/* libFuzzer target: the GGUF v2/v3 parser (csrc/io/gguf.c) on arbitrary
 * bytes. Accepted tensors are touched at both ends and small ones are
 * dequantized to f32; every metadata value is read back through the public
 * getters; a table that parses is written again with the GGUF writer (to
 * a scratch file), so reader and writer agree on every value they accept. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "io/io.h"

static volatile uint8_t mg_fuzz_sink;

static void mg_fuzz_metadata(const mg_weights *weights) {
    int64_t n = mg_weights_meta_count(weights);
    for (int64_t i = 0; i < n; i++) {
        const char *key = mg_weights_meta_key(weights, i);
        mg_value_type type, element;
        if (mg_weights_meta_type(weights, key, &type, &element) != MG_OK) abort();
        if (type == MG_VALUE_STRING) {
            const char *s;
            size_t length;
            if (mg_weights_get_string_bytes(weights, key, &s, &length) != MG_OK) abort();
            if (length) mg_fuzz_sink ^= (uint8_t)(s[0] ^ s[length - 1]);
        } else if (type == MG_VALUE_ARRAY) {
            int64_t length;
            const void *values;
            if (mg_weights_get_array(weights, key, &element, &length, &values) != MG_OK) abort();
            if (element == MG_VALUE_STRING) {
                for (int64_t j = 0; j < length; j++) {
                    const char *s;
                    size_t n_s;
                    if (mg_weights_get_array_string(weights, key, j, &s, &n_s) != MG_OK) abort();
                    if (n_s) mg_fuzz_sink ^= (uint8_t)s[n_s - 1];
                }
            } else if (length > 0) {
                size_t bytes = (size_t)length * mg_value_type_size(element);
                mg_fuzz_sink ^= ((const uint8_t *)values)[bytes - 1];
            }
        } else if (type == MG_VALUE_F32 || type == MG_VALUE_F64) {
            double v;
            if (mg_weights_get_float(weights, key, &v) != MG_OK) abort();
        } else {
            int64_t v;
            if (mg_weights_get_int(weights, key, &v) != MG_OK) abort();
        }
    }
}

static void mg_fuzz_rewrite(const mg_weights *weights) {
    /* a private scratch file (never /dev/null: the writer deletes its file
     * when it does not finish) */
    char path[64];
    snprintf(path, sizeof path, "/tmp/mg_fuzz_gguf_%ld.gguf", (long)getpid());
    mg_gguf_writer *writer;
    if (mg_gguf_writer_open(path, &writer) != MG_OK) return;
    mg_status status = mg_gguf_writer_add_metadata_from(writer, weights);
    int64_t n = mg_weights_count(weights);
    for (int64_t i = 0; i < n && status == MG_OK; i++) {
        mg_tensor t;
        const char *name = mg_weights_name(weights, i);
        if (mg_weights_get(weights, name, &t) != MG_OK) abort();
        status = mg_gguf_writer_add_tensor_info(writer, name, t.dtype, t.n_dims, t.shape);
    }
    for (int64_t i = 0; i < n && status == MG_OK; i++) {
        mg_tensor t;
        const char *name = mg_weights_name(weights, i);
        if (mg_weights_get(weights, name, &t) != MG_OK) abort();
        status = mg_gguf_writer_write_tensor(writer, name, &t);
    }
    if (status == MG_OK) (void)mg_gguf_writer_finish(writer);
    mg_gguf_writer_destroy(writer);
    unlink(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *bytes = malloc(size ? size : 1);
    if (!bytes) return 0;
    for (size_t i = 0; i < size; i++) bytes[i] = data[i];
    mg_weights *weights = NULL;
    if (mg_weights_create(&weights) != MG_OK) {
        free(bytes);
        return 0;
    }
    if (mg_gguf_parse(bytes, size, "fuzz.gguf", weights) == MG_OK) {
        int64_t n = mg_weights_count(weights);
        int64_t total = 0;
        for (int64_t i = 0; i < n; i++) {
            mg_tensor t;
            if (mg_weights_get(weights, mg_weights_name(weights, i), &t) != MG_OK) abort();
            size_t nbytes = mg_tensor_nbytes(&t);
            const uint8_t *p = t.data;
            if (nbytes) mg_fuzz_sink ^= p[0] ^ p[nbytes - 1];
            total += mg_tensor_numel(&t);
            if (mg_tensor_numel(&t) <= 4096) {
                mg_tensor f;
                if (mg_tensor_alloc(&f, MG_F32, t.n_dims, t.shape) == MG_OK) {
                    (void)mg_tensor_convert(&t, &f);
                    mg_tensor_free_data(&f);
                }
            }
        }
        mg_fuzz_metadata(weights);
        if (total <= (1 << 16)) mg_fuzz_rewrite(weights);
    }
    mg_weights_destroy(weights);
    mg_clear_error();
    free(bytes);
    return 0;
}

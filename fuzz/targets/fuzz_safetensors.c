/* libFuzzer target: the safetensors header parser (csrc/io/safetensors.c)
 * and the config.json flattener, on arbitrary bytes. Every tensor the parser
 * accepts must lie inside the buffer: we touch its first and last byte and
 * convert small ones to f32, so ASan reports any view that escapes. */
#include <stdint.h>
#include <stdlib.h>

#include "io/io.h"

static volatile uint8_t mg_fuzz_sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mg_weights *weights = NULL;
    if (mg_weights_create(&weights) != MG_OK) return 0;
    /* copy into an exact-size heap block so ASan sees reads past the end */
    uint8_t *bytes = malloc(size ? size : 1);
    if (!bytes) {
        mg_weights_destroy(weights);
        return 0;
    }
    for (size_t i = 0; i < size; i++) bytes[i] = data[i];
    mg_status status = mg_safetensors_parse(bytes, size, "fuzz.safetensors", weights);
    if (status == MG_OK) {
        int64_t n = mg_weights_count(weights);
        for (int64_t i = 0; i < n; i++) {
            mg_tensor t;
            if (mg_weights_get(weights, mg_weights_name(weights, i), &t) != MG_OK) abort();
            size_t nbytes = mg_tensor_nbytes(&t);
            const uint8_t *p = t.data;
            if (nbytes) mg_fuzz_sink ^= p[0] ^ p[nbytes - 1];
            if (mg_tensor_numel(&t) <= 4096) {
                mg_tensor f;
                if (mg_tensor_alloc(&f, MG_F32, t.n_dims, t.shape) == MG_OK) {
                    (void)mg_tensor_convert(&t, &f);
                    mg_tensor_free_data(&f);
                }
            }
        }
        int64_t n_meta = mg_weights_meta_count(weights);
        for (int64_t i = 0; i < n_meta; i++) {
            const char *value;
            if (mg_weights_get_string(weights, mg_weights_meta_key(weights, i), &value) == MG_OK)
                mg_fuzz_sink ^= (uint8_t)value[0];
        }
    }
    mg_weights_destroy(weights);
    /* the same bytes as a config.json */
    if (mg_weights_create(&weights) == MG_OK) {
        (void)mg_config_json_parse((const char *)bytes, size, "fuzz/config.json", "config", weights);
        mg_weights_destroy(weights);
    }
    mg_clear_error();
    free(bytes);
    return 0;
}

/* libFuzzer target: mg_image_load_memory / mg_image_info_memory (PNG, JPEG,
 * BMP, PNM, ... through stb_image) on arbitrary bytes; decoded pixels are
 * read at both ends so ASan flags a short buffer. */
#include <stdint.h>
#include <stdlib.h>

#include "medground.h"

static volatile uint8_t mg_fuzz_sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *bytes = malloc(size ? size : 1);
    if (!bytes) return 0;
    for (size_t i = 0; i < size; i++) bytes[i] = data[i];
    int width, height, channels;
    mg_status info = mg_image_info_memory(bytes, size, &width, &height, &channels);
    mg_image image = {0};
    if (mg_image_load_memory(bytes, size, &image) == MG_OK) {
        if (info != MG_OK || image.width != width || image.height != height) abort();
        size_t n = (size_t)image.width * (size_t)image.height * (size_t)image.channels *
                   (size_t)mg_dtype_block_bytes(image.dtype);
        const uint8_t *p = image.pixels;
        if (n) mg_fuzz_sink ^= p[0] ^ p[n - 1];
        mg_image_free(&image);
    }
    mg_clear_error();
    free(bytes);
    return 0;
}

/* Image decoding through stb_image (Debian libstb: the implementation lives
 * in libstb.so, we only include the declarations).
 *
 * Every entry point checks the header with stbi_info before decoding so a
 * small file claiming a huge size (a decompression bomb) is refused before
 * stb allocates for it. stb's process-wide flags (vertical flip,
 * unpremultiply, iPhone PNG conversion) are never touched, so concurrent
 * callers see stb's defaults. */
#include "core/core.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stb_image.h>

#define MG_IMAGE_MAX_SIDE 65535
#define MG_IMAGE_MAX_PIXELS (INT64_C(1) << 30)

/* stb_image also reads GIF, PSD, TGA, HDR and PIC; TGA has no signature, so
 * arbitrary bytes can decode "successfully" as TGA. Accepting only the
 * formats we document, by their magic bytes, keeps errors meaningful. */
static const char *mg_image_format_name(const uint8_t *bytes, size_t n_bytes) {
    if (n_bytes >= 8 && memcmp(bytes, "\x89PNG\r\n\x1a\n", 8) == 0) return "PNG";
    if (n_bytes >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF) return "JPEG";
    if (n_bytes >= 2 && bytes[0] == 'B' && bytes[1] == 'M') return "BMP";
    if (n_bytes >= 2 && bytes[0] == 'P' && bytes[1] == '5') return "PGM";
    if (n_bytes >= 2 && bytes[0] == 'P' && bytes[1] == '6') return "PPM";
    return NULL;
}

static const char *mg_stb_reason(void) {
    const char *reason = stbi_failure_reason();
    return reason ? reason : "unknown reason";
}

static mg_status mg_image_check_format(const uint8_t *bytes, size_t n_bytes, const char *what,
                                       const char **format) {
    if (n_bytes == 0) return mg_error(MG_ERR_FORMAT, "%s: empty (0 bytes)", what);
    *format = mg_image_format_name(bytes, n_bytes);
    if (*format) return MG_OK;
    char hex[3 * 4 + 1] = {0};
    size_t shown = n_bytes < 4 ? n_bytes : 4;
    for (size_t i = 0; i < shown; i++) snprintf(hex + 3 * i, 4, "%02x ", bytes[i]);
    hex[3 * shown - 1] = '\0';
    return mg_error(MG_ERR_FORMAT,
                    "%s: not a PNG, JPEG, BMP, PGM (P5) or PPM (P6) file (starts with bytes %s)",
                    what, hex);
}

/* Applies the size limits to what stbi_info reported. */
static mg_status mg_image_check_size(const char *what, const char *format, int w, int h, int c,
                                     int *width, int *height, int *channels) {
    if (w <= 0 || h <= 0)
        return mg_error(MG_ERR_FORMAT, "%s: %s header gives a %dx%d image", what, format, w, h);
    if (w > MG_IMAGE_MAX_SIDE || h > MG_IMAGE_MAX_SIDE || (int64_t)w * h > MG_IMAGE_MAX_PIXELS)
        return mg_error(MG_ERR_FORMAT,
                        "%s: %s header claims %dx%d pixels; refusing images over %d per side or "
                        "2^30 pixels (a corrupt file or a decompression bomb)",
                        what, format, w, h, MG_IMAGE_MAX_SIDE);
    if (c < 1 || c > 4)
        return mg_error(MG_ERR_FORMAT, "%s: %s header gives %d channels", what, format, c);
    if (width) *width = w;
    if (height) *height = h;
    if (channels) *channels = c;
    return MG_OK;
}

/* Header check of an in-memory file. `what` names the source in messages
 * (a path, or "image in memory"). */
static mg_status mg_image_check_header(const uint8_t *bytes, size_t n_bytes, const char *what,
                                       int *width, int *height, int *channels,
                                       const char **format) {
    MG_TRY(mg_image_check_format(bytes, n_bytes, what, format));
    if (n_bytes > (size_t)INT32_MAX)
        return mg_error(MG_ERR_FORMAT, "%s: %zu bytes is more than the 2 GiB an image file may have",
                        what, n_bytes);
    int w = 0, h = 0, c = 0;
    /* stb refuses a PNG over 2^30 bytes of pixels inside stbi_info and then
     * reports "unknown image type"; read IHDR first so the message says the
     * size the file claims. */
    if (strcmp(*format, "PNG") == 0 && n_bytes >= 24 && memcmp(bytes + 12, "IHDR", 4) == 0) {
        uint32_t iw = (uint32_t)bytes[16] << 24 | (uint32_t)bytes[17] << 16 |
                      (uint32_t)bytes[18] << 8 | bytes[19];
        uint32_t ih = (uint32_t)bytes[20] << 24 | (uint32_t)bytes[21] << 16 |
                      (uint32_t)bytes[22] << 8 | bytes[23];
        if (iw > INT32_MAX || ih > INT32_MAX)
            return mg_error(MG_ERR_FORMAT, "%s: PNG header gives a %ux%u image", what, iw, ih);
        MG_TRY(mg_image_check_size(what, *format, (int)iw, (int)ih, 1, NULL, NULL, NULL));
    }
    if (!stbi_info_from_memory(bytes, (int)n_bytes, &w, &h, &c))
        return mg_error(MG_ERR_FORMAT, "%s: unreadable %s header (stb_image: %s)", what, *format,
                        mg_stb_reason());
    return mg_image_check_size(what, *format, w, h, c, width, height, channels);
}

/* The stb_image Debian ships (2.27) returns 16-bit PNM samples in file byte
 * order (big-endian) instead of native order; newer releases swap them. Decide
 * once by decoding a one-pixel PGM whose sample is 0x0102. */
static bool mg_stb_pnm16_needs_swap(void) {
    static const uint8_t probe[] = "P5 1 1 65535\n\x01\x02";
    int w, h, c;
    uint16_t *px = stbi_load_16_from_memory(probe, (int)sizeof probe - 1, &w, &h, &c, 0);
    bool swap = px && px[0] == 0x0201;
    stbi_image_free(px);
    return swap;
}

static mg_status mg_image_decode(const uint8_t *bytes, size_t n_bytes, const char *what,
                                 mg_image *out) {
    memset(out, 0, sizeof *out);
    int w, h, c;
    const char *format;
    MG_TRY(mg_image_check_header(bytes, n_bytes, what, &w, &h, &c, &format));
    int len = (int)n_bytes;
    bool sixteen = stbi_is_16_bit_from_memory(bytes, len) != 0;
    int dw = 0, dh = 0, dc = 0;
    void *pixels = sixteen ? (void *)stbi_load_16_from_memory(bytes, len, &dw, &dh, &dc, 0)
                           : (void *)stbi_load_from_memory(bytes, len, &dw, &dh, &dc, 0);
    if (!pixels)
        return mg_error(MG_ERR_FORMAT, "%s: corrupt or truncated %s (stb_image: %s)", what, format,
                        mg_stb_reason());
    if (dw != w || dh != h || dc < 1 || dc > 4) {
        stbi_image_free(pixels);
        return mg_error(MG_ERR_FORMAT, "%s: %s decodes to %dx%dx%d but its header said %dx%dx%d",
                        what, format, dw, dh, dc, w, h, c);
    }
    if (sixteen && format[0] == 'P' && format[1] != 'N' && mg_stb_pnm16_needs_swap()) {
        uint16_t *samples = pixels;
        for (size_t i = 0, n = (size_t)dw * (size_t)dh * (size_t)dc; i < n; i++)
            samples[i] = (uint16_t)((samples[i] >> 8) | (samples[i] << 8));
    }
    out->pixels = pixels;
    out->width = dw;
    out->height = dh;
    out->channels = dc;
    out->dtype = sixteen ? MG_U16 : MG_U8;
    return MG_OK;
}

static mg_status mg_open_file(const char *path, FILE **f) {
    *f = fopen(path, "rb");
    if (*f) return MG_OK;
    int err = errno;
    return mg_error(err == ENOENT ? MG_ERR_NOT_FOUND : MG_ERR_IO, "%s: cannot open (%s)", path,
                    strerror(err));
}

/* Reads a whole file. Caller frees *bytes with free(). */
static mg_status mg_read_file(const char *path, uint8_t **bytes, size_t *n_bytes) {
    *bytes = NULL;
    *n_bytes = 0;
    FILE *f;
    MG_TRY(mg_open_file(path, &f));
    mg_status status = MG_OK;
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0) size = ftell(f);
    if (size < 0 || fseek(f, 0, SEEK_SET) != 0) {
        status = mg_error(MG_ERR_IO, "%s: cannot determine the file size (not a regular file?)", path);
    } else if ((unsigned long)size > (unsigned long)INT32_MAX) {
        status = mg_error(MG_ERR_FORMAT, "%s: %ld bytes is more than the 2 GiB an image file may have",
                          path, size);
    } else {
        uint8_t *buffer = malloc(size > 0 ? (size_t)size : 1);
        if (!buffer) {
            status = mg_error(MG_ERR_NO_MEMORY, "%s: cannot allocate %ld bytes to read it", path, size);
        } else if (size > 0 && fread(buffer, 1, (size_t)size, f) != (size_t)size) {
            free(buffer);
            status = mg_error(MG_ERR_IO, "%s: read failed", path);
        } else {
            *bytes = buffer;
            *n_bytes = (size_t)size;
        }
    }
    fclose(f);
    return status;
}

mg_status mg_image_info_memory(const uint8_t *bytes, size_t n_bytes, int *width, int *height,
                               int *channels) {
    if (!bytes && n_bytes) return mg_error(MG_ERR_INVALID_ARGUMENT, "image bytes: NULL pointer");
    const char *format;
    return mg_image_check_header(bytes, n_bytes, "image in memory", width, height, channels, &format);
}

mg_status mg_image_info(const char *path, int *width, int *height, int *channels) {
    if (!path) return mg_error(MG_ERR_INVALID_ARGUMENT, "image path: NULL");
    /* Only the header is read (stbi_info_from_file stops after it), so
     * dataset scans stay cheap. */
    FILE *f;
    MG_TRY(mg_open_file(path, &f));
    uint8_t magic[8];
    size_t n_magic = fread(magic, 1, sizeof magic, f);
    const char *format;
    mg_status status = mg_image_check_format(magic, n_magic, path, &format);
    if (status == MG_OK && fseek(f, 0, SEEK_SET) != 0)
        status = mg_error(MG_ERR_IO, "%s: cannot seek (not a regular file?)", path);
    if (status == MG_OK) {
        int w = 0, h = 0, c = 0;
        if (!stbi_info_from_file(f, &w, &h, &c))
            status = mg_error(MG_ERR_FORMAT, "%s: unreadable %s header (stb_image: %s)", path, format,
                              mg_stb_reason());
        else
            status = mg_image_check_size(path, format, w, h, c, width, height, channels);
    }
    fclose(f);
    return status;
}

mg_status mg_image_load(const char *path, mg_image *out) {
    if (!out) return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_image_load: NULL output");
    memset(out, 0, sizeof *out);
    if (!path) return mg_error(MG_ERR_INVALID_ARGUMENT, "image path: NULL");
    uint8_t *bytes;
    size_t n_bytes;
    MG_TRY(mg_read_file(path, &bytes, &n_bytes));
    mg_status status = mg_image_decode(bytes, n_bytes, path, out);
    free(bytes);
    return status;
}

mg_status mg_image_load_memory(const uint8_t *bytes, size_t n_bytes, mg_image *out) {
    if (!out) return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_image_load_memory: NULL output");
    memset(out, 0, sizeof *out);
    if (!bytes && n_bytes) return mg_error(MG_ERR_INVALID_ARGUMENT, "image bytes: NULL pointer");
    return mg_image_decode(bytes, n_bytes, "image in memory", out);
}

void mg_image_free(mg_image *image) {
    if (!image) return;
    if (image->pixels) stbi_image_free(image->pixels);
    memset(image, 0, sizeof *image);
}

mg_status mg_image_as_tensor(const mg_image *image, mg_tensor *out) {
    if (!image || !image->pixels)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_image_as_tensor: image has no pixels");
    if (image->dtype != MG_U8 && image->dtype != MG_U16 && image->dtype != MG_F32)
        return mg_error(MG_ERR_DTYPE, "image dtype %s: expected u8, u16 or f32",
                        mg_dtype_name(image->dtype));
    if (image->channels < 1 || image->channels > 4)
        return mg_error(MG_ERR_SHAPE, "image has %d channels; expected 1..4", image->channels);
    int64_t shape[3] = {image->height, image->width, image->channels};
    return mg_tensor_init(out, image->pixels, image->dtype, 3, shape);
}

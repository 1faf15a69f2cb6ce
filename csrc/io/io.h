/* Internal: checkpoint file readers (safetensors, GGUF, config.json) and the
 * read-only file mapping they share. Each parser also works on a memory
 * buffer so the fuzz targets can drive it without files. */
#ifndef MG_IO_IO_H
#define MG_IO_IO_H

#include "io/weights.h"

/* A whole file mapped read-only. Release with mg_mapped_file_release (also
 * usable as an mg_weights_attach release callback). */
typedef struct mg_mapped_file {
    const uint8_t *data;
    size_t size;
    char *path;
} mg_mapped_file;
mg_status mg_mapped_file_open(const char *path, mg_mapped_file **out);
void mg_mapped_file_release(void *mapped_file);

/* Parse a safetensors / GGUF image of `size` bytes and add its tensors (views
 * into `bytes`, which must outlive the table; misaligned tensors are copied)
 * and metadata to `weights`. `label` names the source in messages (the path).
 * On failure `weights` may hold part of the file's tensors. */
mg_status mg_safetensors_parse(const uint8_t *bytes, size_t size, const char *label, mg_weights *weights);
mg_status mg_gguf_parse(const uint8_t *bytes, size_t size, const char *label, mg_weights *weights);

/* Map a file and parse it into `weights` (the mapping is attached). */
mg_status mg_safetensors_load(const char *path, mg_weights *weights);
mg_status mg_gguf_load(const char *path, mg_weights *weights);

/* Flatten a JSON object's members into metadata "prefix.key.sub" (numbers,
 * bools, strings, arrays of numbers/strings; null and arrays of objects are
 * skipped). */
mg_status mg_config_json_parse(const char *text, size_t length, const char *label, const char *prefix,
                               mg_weights *weights);

#endif

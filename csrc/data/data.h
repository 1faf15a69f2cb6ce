/* Internal helpers shared by the data module's files. Not public API. */
#ifndef MG_DATA_H
#define MG_DATA_H

#include "core/core.h"

/* A 2-D mask tensor -> contiguous int32 labels [h * w] (binary: 0/1).
 * Caller frees *labels with free(). */
mg_status mg_data_mask_labels(const mg_tensor *mask, bool binary, int32_t **labels,
                              int64_t *height, int64_t *width);

/* Objects of a contiguous label plane (see mg_mask_objects). */
mg_status mg_data_objects_from_labels(const int32_t *labels, int64_t height, int64_t width,
                                      const mg_mask_options *options,
                                      mg_mask_object **objects, int64_t *n_objects);

/* Decodes a mask image into labels as mg_mask_objects_file describes.
 * Caller frees *labels with free(). */
mg_status mg_data_load_mask_labels(const char *path, bool binary, int32_t **labels,
                                   int *width, int *height);

#endif

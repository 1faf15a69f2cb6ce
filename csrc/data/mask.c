/* Masks -> objects: per-label or per-connected-component boxes, areas and
 * centroids, and the pixel-box -> 0..1000 grid rule used in <box> tags. */
#include "data/data.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ labels */

/* Reads one element of a 2-D integer mask as a label (>= 0). */
static mg_status mask_value(const mg_tensor *mask, int64_t y, int64_t x, int32_t *out) {
    const uint8_t *p = (const uint8_t *)mask->data + y * mask->strides[0] + x * mask->strides[1];
    switch (mask->dtype) {
    case MG_U8:
    case MG_BOOL: *out = *p; return MG_OK;
    case MG_U16: {
        uint16_t v;
        memcpy(&v, p, sizeof v);
        *out = v;
        return MG_OK;
    }
    case MG_I32: {
        int32_t v;
        memcpy(&v, p, sizeof v);
        if (v < 0)
            return mg_error(MG_ERR_INVALID_ARGUMENT,
                            "mask: negative label %d at pixel (x=%lld, y=%lld)", v,
                            (long long)x, (long long)y);
        *out = v;
        return MG_OK;
    }
    default:
        return mg_error(MG_ERR_DTYPE, "mask: dtype %s is not a mask type (u8, u16, bool, i32)",
                        mg_dtype_name(mask->dtype));
    }
}

mg_status mg_data_mask_labels(const mg_tensor *mask, bool binary, int32_t **labels,
                              int64_t *height, int64_t *width) {
    *labels = NULL;
    if (!mask || !mask->data) return mg_error(MG_ERR_INVALID_ARGUMENT, "mask: NULL tensor");
    if (mask->device != MG_DEVICE_CPU)
        return mg_error(MG_ERR_UNSUPPORTED, "mask: must be on the CPU");
    if (mask->n_dims != 2) {
        char buf[64];
        return mg_error(MG_ERR_SHAPE, "mask: expected a 2-D [H, W] array, got %s",
                        mg_tensor_describe(mask, buf, sizeof buf));
    }
    int64_t h = mask->shape[0], w = mask->shape[1];
    if (h <= 0 || w <= 0 || h > INT32_MAX || w > INT32_MAX || h * w > ((int64_t)1 << 31))
        return mg_error(MG_ERR_SHAPE, "mask: size %lld x %lld is out of range", (long long)h,
                        (long long)w);
    int32_t *out = malloc((size_t)(h * w) * sizeof *out);
    if (!out)
        return mg_error(MG_ERR_NO_MEMORY, "mask: cannot allocate %lld labels", (long long)(h * w));
    bool contiguous_u8 = (mask->dtype == MG_U8 || mask->dtype == MG_BOOL) &&
                         mask->strides[1] == 1 && mask->strides[0] == w;
    if (contiguous_u8) {
        /* The common case (PNG masks) without the per-element dispatch. */
        const uint8_t *src = mask->data;
        for (int64_t i = 0; i < h * w; i++) out[i] = binary ? (src[i] != 0) : src[i];
    } else {
        for (int64_t y = 0; y < h; y++) {
            for (int64_t x = 0; x < w; x++) {
                int32_t v = 0;
                mg_status status = mask_value(mask, y, x, &v);
                if (status != MG_OK) {
                    free(out);
                    return status;
                }
                out[y * w + x] = binary ? (v != 0) : v;
            }
        }
    }
    *labels = out;
    *height = h;
    *width = w;
    return MG_OK;
}

/* ------------------------------------------------------------ union-find */

static int32_t uf_find(int32_t *parent, int32_t i) {
    while (parent[i] != i) {
        parent[i] = parent[parent[i]]; /* path halving */
        i = parent[i];
    }
    return i;
}

static void uf_union(int32_t *parent, int32_t a, int32_t b) {
    a = uf_find(parent, a);
    b = uf_find(parent, b);
    /* The smaller index (earlier in raster order) stays the root so that a
     * component's root is its first pixel. */
    if (a < b) parent[b] = a;
    else if (b < a) parent[a] = b;
}

/* ---------------------------------------------------------------- objects */

typedef struct object_list {
    mg_mask_object *items;
    int64_t count, capacity;
    double *sum_x, *sum_y; /* parallel accumulators */
} object_list;

static mg_status objects_push(object_list *list, int64_t label, int32_t x, int32_t y,
                              int64_t *index) {
    if (list->count == list->capacity) {
        int64_t capacity = list->capacity ? list->capacity * 2 : 16;
        mg_mask_object *items = realloc(list->items, (size_t)capacity * sizeof *items);
        if (items) list->items = items;
        double *sx = realloc(list->sum_x, (size_t)capacity * sizeof *sx);
        if (sx) list->sum_x = sx;
        double *sy = realloc(list->sum_y, (size_t)capacity * sizeof *sy);
        if (sy) list->sum_y = sy;
        if (!items || !sx || !sy)
            return mg_error(MG_ERR_NO_MEMORY, "mask: cannot grow the object list to %lld",
                            (long long)capacity);
        list->capacity = capacity;
    }
    mg_mask_object *o = &list->items[list->count];
    memset(o, 0, sizeof *o);
    o->label = label;
    o->x_min = o->x_max = x;
    o->y_min = o->y_max = y;
    list->sum_x[list->count] = 0;
    list->sum_y[list->count] = 0;
    *index = list->count++;
    return MG_OK;
}

static inline void objects_add_pixel(object_list *list, int64_t index, int32_t x, int32_t y) {
    mg_mask_object *o = &list->items[index];
    o->area++;
    if (x < o->x_min) o->x_min = x;
    if (x > o->x_max) o->x_max = x;
    if (y < o->y_min) o->y_min = y;
    if (y > o->y_max) o->y_max = y;
    list->sum_x[index] += x;
    list->sum_y[index] += y;
}

/* Objects sorted by label; ties keep discovery order, which is the order of
 * each object's first pixel in a raster scan (scipy.ndimage.label's order). */
typedef struct ranked_object {
    mg_mask_object object;
    int64_t rank;
} ranked_object;

static int compare_ranked(const void *pa, const void *pb) {
    const ranked_object *a = pa, *b = pb;
    if (a->object.label != b->object.label) return a->object.label < b->object.label ? -1 : 1;
    return a->rank < b->rank ? -1 : (a->rank > b->rank);
}

/* Simple open-addressing map label -> object index for label mode. */
typedef struct label_map {
    int32_t *keys;
    int64_t *values;
    int64_t capacity; /* power of two */
    int64_t count;
} label_map;

static mg_status label_map_init(label_map *map, int64_t capacity) {
    map->capacity = capacity;
    map->count = 0;
    map->keys = malloc((size_t)capacity * sizeof *map->keys);
    map->values = malloc((size_t)capacity * sizeof *map->values);
    if (!map->keys || !map->values) {
        free(map->keys);
        free(map->values);
        return mg_error(MG_ERR_NO_MEMORY, "mask: cannot allocate the label table");
    }
    for (int64_t i = 0; i < capacity; i++) map->keys[i] = -1;
    return MG_OK;
}

static void label_map_free(label_map *map) {
    free(map->keys);
    free(map->values);
}

static int64_t *label_map_slot(label_map *map, int32_t key, bool *found) {
    uint64_t h = (uint64_t)(uint32_t)key * 0x9E3779B97F4A7C15ull;
    int64_t i = (int64_t)(h >> 20) & (map->capacity - 1);
    while (map->keys[i] != -1 && map->keys[i] != key) i = (i + 1) & (map->capacity - 1);
    *found = map->keys[i] == key;
    if (!*found) map->keys[i] = key;
    return &map->values[i];
}

static mg_status label_map_grow(label_map *map) {
    label_map bigger;
    MG_TRY(label_map_init(&bigger, map->capacity * 2));
    for (int64_t i = 0; i < map->capacity; i++) {
        if (map->keys[i] == -1) continue;
        bool found;
        *label_map_slot(&bigger, map->keys[i], &found) = map->values[i];
        bigger.count++;
    }
    label_map_free(map);
    *map = bigger;
    return MG_OK;
}

static mg_status objects_by_label(const int32_t *labels, int64_t h, int64_t w,
                                  object_list *list) {
    label_map map;
    MG_TRY(label_map_init(&map, 1024));
    mg_status status = MG_OK;
    int32_t last_label = -1;
    int64_t last_index = -1;
    for (int64_t y = 0; y < h && status == MG_OK; y++) {
        for (int64_t x = 0; x < w; x++) {
            int32_t v = labels[y * w + x];
            if (v == 0) continue;
            if (v != last_label) {
                bool found;
                if (map.count * 2 >= map.capacity) {
                    status = label_map_grow(&map);
                    if (status != MG_OK) break;
                }
                int64_t *slot = label_map_slot(&map, v, &found);
                if (!found) {
                    map.count++;
                    status = objects_push(list, v, (int32_t)x, (int32_t)y, slot);
                    if (status != MG_OK) break;
                }
                last_label = v;
                last_index = *slot;
            }
            objects_add_pixel(list, last_index, (int32_t)x, (int32_t)y);
        }
    }
    label_map_free(&map);
    return status;
}

static mg_status objects_by_component(const int32_t *labels, int64_t h, int64_t w,
                                      int connectivity, object_list *list) {
    int32_t *parent = malloc((size_t)(h * w) * sizeof *parent);
    if (!parent)
        return mg_error(MG_ERR_NO_MEMORY, "mask: cannot allocate %lld union-find entries",
                        (long long)(h * w));
    /* Pass 1: link each foreground pixel to its already-visited neighbours
     * (left, up, and for 8-connectivity up-left and up-right) of equal label. */
    for (int64_t y = 0; y < h; y++) {
        for (int64_t x = 0; x < w; x++) {
            int32_t i = (int32_t)(y * w + x);
            int32_t v = labels[i];
            if (v == 0) {
                parent[i] = -1;
                continue;
            }
            parent[i] = i;
            if (x > 0 && labels[i - 1] == v) uf_union(parent, i, i - 1);
            if (y > 0) {
                int32_t up = (int32_t)(i - w);
                if (labels[up] == v) uf_union(parent, i, up);
                if (connectivity == 8) {
                    if (x > 0 && labels[up - 1] == v) uf_union(parent, i, up - 1);
                    if (x + 1 < w && labels[up + 1] == v) uf_union(parent, i, up + 1);
                }
            }
        }
    }
    /* Pass 2: roots are first pixels (uf_union keeps the smaller index), so
     * a root is met before any other pixel of its component. parent[root]
     * is reused to store -(object index) - 2 once the object exists. */
    mg_status status = MG_OK;
    for (int64_t i = 0; i < h * w && status == MG_OK; i++) {
        if (labels[i] == 0) continue;
        int32_t root = (int32_t)i;
        /* find without compression through already-renamed roots */
        while (parent[root] >= 0 && parent[root] != root) root = parent[root];
        int64_t index;
        if (parent[root] == root) {
            status = objects_push(list, labels[i], (int32_t)(i % w), (int32_t)(i / w), &index);
            if (status != MG_OK) break;
            if (index > INT32_MAX - 2) {
                status = mg_error(MG_ERR_NO_MEMORY, "mask: too many components");
                break;
            }
            parent[root] = (int32_t)(-index - 2);
        } else {
            index = -(int64_t)parent[root] - 2;
        }
        if (root != (int32_t)i) parent[i] = root;
        objects_add_pixel(list, index, (int32_t)(i % w), (int32_t)(i / w));
    }
    free(parent);
    return status;
}

mg_status mg_data_objects_from_labels(const int32_t *labels, int64_t h, int64_t w,
                                      const mg_mask_options *options,
                                      mg_mask_object **objects, int64_t *n_objects) {
    mg_mask_options defaults = {.binary = true, .connectivity = 0, .min_area = 0};
    if (!options) options = &defaults;
    if (options->connectivity != 0 && options->connectivity != 4 && options->connectivity != 8)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "mask: connectivity must be 0, 4 or 8, got %d",
                        options->connectivity);
    object_list list = {0};
    mg_status status = options->connectivity
                           ? objects_by_component(labels, h, w, options->connectivity, &list)
                           : objects_by_label(labels, h, w, &list);
    if (status != MG_OK) goto fail;
    ranked_object *ranked = NULL;
    int64_t kept = 0;
    if (list.count) {
        ranked = malloc((size_t)list.count * sizeof *ranked);
        if (!ranked) {
            status = mg_error(MG_ERR_NO_MEMORY, "mask: cannot sort %lld objects",
                              (long long)list.count);
            goto fail;
        }
        for (int64_t i = 0; i < list.count; i++) {
            mg_mask_object o = list.items[i];
            if (o.area < options->min_area) continue;
            o.centroid_x = list.sum_x[i] / (double)o.area;
            o.centroid_y = list.sum_y[i] / (double)o.area;
            ranked[kept].object = o;
            ranked[kept].rank = i;
            kept++;
        }
        qsort(ranked, (size_t)kept, sizeof *ranked, compare_ranked);
    }
    mg_mask_object *result = NULL;
    if (kept) {
        result = malloc((size_t)kept * sizeof *result);
        if (!result) {
            free(ranked);
            status = mg_error(MG_ERR_NO_MEMORY, "mask: cannot allocate %lld objects",
                              (long long)kept);
            goto fail;
        }
        for (int64_t i = 0; i < kept; i++) result[i] = ranked[i].object;
    }
    free(ranked);
    free(list.items);
    free(list.sum_x);
    free(list.sum_y);
    *objects = result;
    *n_objects = kept;
    return MG_OK;
fail:
    free(list.items);
    free(list.sum_x);
    free(list.sum_y);
    return status;
}

mg_status mg_mask_objects(const mg_tensor *mask, const mg_mask_options *options,
                          mg_mask_object **objects, int64_t *n_objects) {
    if (!objects || !n_objects)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_mask_objects: NULL output");
    *objects = NULL;
    *n_objects = 0;
    bool binary = options ? options->binary : true;
    int32_t *labels;
    int64_t h, w;
    MG_TRY(mg_data_mask_labels(mask, binary, &labels, &h, &w));
    mg_status status = mg_data_objects_from_labels(labels, h, w, options, objects, n_objects);
    free(labels);
    return status;
}

mg_status mg_data_load_mask_labels(const char *path, bool binary, int32_t **labels,
                                   int *width, int *height) {
    *labels = NULL;
    mg_image image;
    mg_status status = mg_image_load(path, &image);
    if (status != MG_OK) return status;
    int64_t w = image.width, h = image.height, c = image.channels;
    if (image.dtype != MG_U8 && image.dtype != MG_U16) {
        mg_image_free(&image);
        return mg_error(MG_ERR_DTYPE, "mask %s: expected 8- or 16-bit samples, got %s", path,
                        mg_dtype_name(image.dtype));
    }
    int32_t *out = malloc((size_t)(w * h) * sizeof *out);
    if (!out) {
        mg_image_free(&image);
        return mg_error(MG_ERR_NO_MEMORY, "mask %s: cannot allocate %lld labels", path,
                        (long long)(w * h));
    }
    const uint8_t *p8 = image.pixels;
    const uint16_t *p16 = image.pixels;
    for (int64_t i = 0; i < w * h; i++) {
        int32_t v = image.dtype == MG_U8 ? p8[i * c] : p16[i * c];
        if (c >= 3) {
            /* Alpha is ignored; colour channels must agree (a gray mask
             * stored as RGB) or the label would be ambiguous. */
            int32_t g = image.dtype == MG_U8 ? p8[i * c + 1] : p16[i * c + 1];
            int32_t b = image.dtype == MG_U8 ? p8[i * c + 2] : p16[i * c + 2];
            if ((g != v || b != v) && !(binary && (v || g || b))) {
                mg_image_free(&image);
                free(out);
                return mg_error(MG_ERR_UNSUPPORTED,
                                "mask %s: colour-coded pixel (x=%lld, y=%lld) = (%d, %d, %d); "
                                "convert it to a gray label image first",
                                path, (long long)(i % w), (long long)(i / w), v, g, b);
            }
            if (binary) v = v || g || b;
        }
        out[i] = binary ? (v != 0) : v;
    }
    mg_image_free(&image);
    *labels = out;
    *width = (int)w;
    *height = (int)h;
    return MG_OK;
}

mg_status mg_mask_objects_file(const char *path, const mg_mask_options *options,
                               mg_mask_object **objects, int64_t *n_objects, int *width,
                               int *height) {
    if (!path || !objects || !n_objects)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_mask_objects_file: NULL argument");
    *objects = NULL;
    *n_objects = 0;
    bool binary = options ? options->binary : true;
    int32_t *labels;
    int w, h;
    MG_TRY(mg_data_load_mask_labels(path, binary, &labels, &w, &h));
    mg_status status = mg_data_objects_from_labels(labels, h, w, options, objects, n_objects);
    free(labels);
    if (status != MG_OK) return mg_error_prefix(status, "mask %s", path);
    if (width) *width = w;
    if (height) *height = h;
    return MG_OK;
}

/* ------------------------------------------------------------------ grid */

/* The Med-GRIT construction code is unpublished (architecture.md §1.11), so
 * the rounding is ours, stated here once: Qwen-VL's grid maps a pixel
 * coordinate p of an image of size S to 1000*p/S (its inverse in
 * tokenization_qwen.py draw_bbox_on_latest_picture is int(g/1000*S)). We
 * take the pixel box's edges -- the top-left corner (x_min, y_min) and the
 * exclusive bottom-right corner (x_max+1, y_max+1), the COCO convention --
 * and round the top-left down and the bottom-right up. The grid box then
 * always covers the object, is never empty, and stays within 0..1000. */
mg_status mg_box_to_grid(const int32_t pixel_box[4], int width, int height,
                         int32_t grid_box[4]) {
    if (!pixel_box || !grid_box)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_box_to_grid: NULL box");
    if (width <= 0 || height <= 0)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_box_to_grid: image size %d x %d", width,
                        height);
    int32_t x0 = pixel_box[0], y0 = pixel_box[1], x1 = pixel_box[2], y1 = pixel_box[3];
    if (x0 < 0 || y0 < 0 || x1 < x0 || y1 < y0 || x1 >= width || y1 >= height)
        return mg_error(MG_ERR_INVALID_ARGUMENT,
                        "mg_box_to_grid: pixel box (%d,%d)-(%d,%d) is not inside a %d x %d image",
                        x0, y0, x1, y1, width, height);
    int64_t w = width, h = height;
    grid_box[0] = (int32_t)(1000 * (int64_t)x0 / w);
    grid_box[1] = (int32_t)(1000 * (int64_t)y0 / h);
    grid_box[2] = (int32_t)((1000 * ((int64_t)x1 + 1) + w - 1) / w);
    grid_box[3] = (int32_t)((1000 * ((int64_t)y1 + 1) + h - 1) / h);
    return MG_OK;
}

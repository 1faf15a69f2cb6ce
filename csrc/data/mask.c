/* Masks -> objects: per-label or per-connected-component boxes, areas and
 * centroids, and the pixel-box -> 0..1000 grid rule used in <box> tags. */
#include "data/data.h"

#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

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

/* ------------------------------------------------------------------ runs */

/* Objects are gathered from horizontal runs of equal non-zero label: one
 * raster pass emits the runs of a row, connected components join runs that
 * touch runs of the previous row (union-find over runs, not pixels), and the
 * statistics of a run are added in O(1). Background is skipped 8 bytes at a
 * time for u8 masks. */
typedef struct mask_run {
    int32_t x0, x1; /* inclusive columns */
    int32_t y;
    int32_t label;
} mask_run;

typedef struct run_list {
    mask_run *items;
    int64_t count, capacity;
} run_list;

static mg_status runs_push(run_list *list, int32_t x0, int32_t x1, int32_t y, int32_t label) {
    if (list->count == list->capacity) {
        int64_t capacity = list->capacity ? list->capacity * 2 : 256;
        if (capacity > INT32_MAX)
            return mg_error(MG_ERR_NO_MEMORY, "mask: more than %d runs", INT32_MAX);
        mask_run *grown = realloc(list->items, (size_t)capacity * sizeof *grown);
        if (!grown)
            return mg_error(MG_ERR_NO_MEMORY, "mask: cannot grow the run list to %lld",
                            (long long)capacity);
        list->items = grown;
        list->capacity = capacity;
    }
    list->items[list->count++] = (mask_run){x0, x1, y, label};
    return MG_OK;
}

static inline uint64_t load64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Foreground bits of 64 bytes (bit k = p[k] != 0); n < 64 reads n bytes. */
static inline uint64_t foreground_bits(const uint8_t *p, int n) {
    uint64_t bits = 0;
#ifdef __SSE2__
    if (n == 64) {
        const __m128i zero = _mm_setzero_si128();
        for (int k = 0; k < 4; k++) {
            __m128i v = _mm_loadu_si128((const __m128i *)(p + 16 * k));
            uint32_t zeros = (uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(v, zero));
            bits |= (uint64_t)(~zeros & 0xFFFFu) << (16 * k);
        }
        return bits;
    }
#endif
    for (int k = 0; k < n; k++) bits |= (uint64_t)(p[k] != 0) << k;
    return bits;
}

/* Binary runs of one u8 row from 64-pixel foreground bit masks: run starts
 * and ends are found with count-trailing-zeros, so fragmented masks (runs of
 * a pixel or two) cost a few operations per run and no mispredicted branch
 * per pixel. */
static mg_status binary_runs_of_u8_row(run_list *list, const uint8_t *row, int32_t w,
                                       int32_t y) {
    int32_t start = -1; /* open run, carried across words */
    for (int32_t x0 = 0; x0 < w; x0 += 64) {
        int n = w - x0 < 64 ? (int)(w - x0) : 64;
        uint64_t bits = foreground_bits(row + x0, n);
        if (start < 0 && !bits) continue;
        if (start >= 0 && bits == UINT64_MAX) continue; /* the run goes on */
        int pos = 0;
        while (pos < 64) {
            if (start < 0) {
                uint64_t rest = bits >> pos;
                if (!rest) break;
                pos += __builtin_ctzll(rest);
                start = x0 + pos;
            }
            uint64_t zeros = ~bits >> pos; /* pos < 64 here */
            if (!zeros) break;             /* the run goes on into the next word */
            pos += __builtin_ctzll(zeros);
            MG_TRY(runs_push(list, start, x0 + pos - 1, y, 1));
            start = -1;
        }
    }
    if (start >= 0) MG_TRY(runs_push(list, start, w - 1, y, 1));
    return MG_OK;
}

/* Runs of one u8 row (contiguous within the row). */
static mg_status runs_of_u8_row(run_list *list, const uint8_t *row, int32_t w, int32_t y,
                                bool binary) {
    if (binary) return binary_runs_of_u8_row(list, row, w, y);
    int32_t x = 0;
    while (x < w) {
        while (x + 8 <= w && load64(row + x) == 0) x += 8;
        while (x < w && row[x] == 0) x++;
        if (x >= w) break;
        int32_t start = x;
        uint8_t v = row[x];
        if (binary) {
            while (x < w && row[x] != 0) x++;
        } else {
            while (x < w && row[x] == v) x++;
        }
        MG_TRY(runs_push(list, start, x - 1, y, binary ? 1 : v));
    }
    return MG_OK;
}

/* Runs of one int32 label row (labels already checked >= 0). */
static mg_status runs_of_i32_row(run_list *list, const int32_t *row, int32_t w, int32_t y) {
    int32_t x = 0;
    while (x < w) {
        while (x < w && row[x] == 0) x++;
        if (x >= w) break;
        int32_t start = x, v = row[x];
        while (x < w && row[x] == v) x++;
        MG_TRY(runs_push(list, start, x - 1, y, v));
    }
    return MG_OK;
}

/* ---------------------------------------------------------------- objects */

typedef struct object_acc {
    mg_mask_object object;
    int64_t sum_x, sum_y; /* exact: < 2^31 pixels x < 2^31 coordinates */
    int64_t rank;         /* first run (raster order of the first pixel) */
} object_acc;

typedef struct object_list {
    object_acc *items;
    int64_t count, capacity;
} object_list;

static mg_status objects_push(object_list *list, const mask_run *run, int64_t rank,
                              int64_t *index) {
    if (list->count == list->capacity) {
        int64_t capacity = list->capacity ? list->capacity * 2 : 16;
        object_acc *grown = realloc(list->items, (size_t)capacity * sizeof *grown);
        if (!grown)
            return mg_error(MG_ERR_NO_MEMORY, "mask: cannot grow the object list to %lld",
                            (long long)capacity);
        list->items = grown;
        list->capacity = capacity;
    }
    object_acc *o = &list->items[list->count];
    memset(o, 0, sizeof *o);
    o->object.label = run->label;
    o->object.x_min = run->x0;
    o->object.x_max = run->x1;
    o->object.y_min = o->object.y_max = run->y;
    o->rank = rank;
    *index = list->count++;
    return MG_OK;
}

static inline void objects_add_run(object_list *list, int64_t index, const mask_run *run) {
    object_acc *o = &list->items[index];
    int64_t n = (int64_t)run->x1 - run->x0 + 1;
    o->object.area += n;
    if (run->x0 < o->object.x_min) o->object.x_min = run->x0;
    if (run->x1 > o->object.x_max) o->object.x_max = run->x1;
    if (run->y < o->object.y_min) o->object.y_min = run->y;
    if (run->y > o->object.y_max) o->object.y_max = run->y;
    o->sum_x += ((int64_t)run->x0 + run->x1) * n / 2;
    o->sum_y += (int64_t)run->y * n;
}

/* Open-addressing map label -> object index (label mode). */
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

/* Label mode, fed one row of runs at a time (no run list for the whole mask). */
typedef struct label_state {
    label_map map;
    int32_t last_label;
    int64_t last_index;
    int64_t seen; /* runs fed so far: ranks in raster order */
} label_state;

static mg_status label_state_init(label_state *st) {
    st->last_label = -1;
    st->last_index = -1;
    st->seen = 0;
    return label_map_init(&st->map, 1024);
}

static mg_status label_state_add(label_state *st, const run_list *runs, object_list *list) {
    for (int64_t i = 0; i < runs->count; i++) {
        const mask_run *run = &runs->items[i];
        if (run->label != st->last_label) {
            if (st->map.count * 2 >= st->map.capacity) MG_TRY(label_map_grow(&st->map));
            bool found;
            int64_t *slot = label_map_slot(&st->map, run->label, &found);
            if (!found) {
                st->map.count++;
                MG_TRY(objects_push(list, run, st->seen + i, slot));
            }
            st->last_label = run->label;
            st->last_index = *slot;
        }
        objects_add_run(list, st->last_index, run);
    }
    st->seen += runs->count;
    return MG_OK;
}

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
    /* the smaller index stays the root, so a component's root is its first
     * run in raster order (which holds its first pixel) */
    if (a < b) parent[b] = a;
    else if (b < a) parent[a] = b;
}

static mg_status objects_by_component(const run_list *runs, int connectivity,
                                      object_list *list) {
    int64_t n = runs->count;
    int32_t *parent = malloc((size_t)(n ? n : 1) * sizeof *parent);
    int32_t *object_of = malloc((size_t)(n ? n : 1) * sizeof *object_of);
    if (!parent || !object_of) {
        free(parent);
        free(object_of);
        return mg_error(MG_ERR_NO_MEMORY, "mask: cannot allocate %lld union-find entries",
                        (long long)n);
    }
    const mask_run *r = runs->items;
    int32_t reach = connectivity == 8 ? 1 : 0; /* diagonal neighbours touch */
    int64_t prev_begin = 0, prev_end = 0;      /* runs of the row above */
    for (int64_t i = 0; i < n;) {
        int32_t y = r[i].y;
        int64_t row_end = i;
        while (row_end < n && r[row_end].y == y) row_end++;
        if (prev_end > prev_begin && r[prev_begin].y != y - 1) prev_begin = prev_end; /* gap */
        int64_t j = prev_begin;
        for (int64_t c = i; c < row_end; c++) {
            parent[c] = (int32_t)c;
            while (j < prev_end && r[j].x1 < r[c].x0 - reach) j++;
            for (int64_t k = j; k < prev_end && r[k].x0 <= r[c].x1 + reach; k++)
                if (r[k].label == r[c].label) uf_union(parent, (int32_t)c, (int32_t)k);
        }
        /* point this row's runs at their roots: the next row's finds then
         * take one or two steps instead of walking back through old rows */
        for (int64_t c = i; c < row_end; c++) parent[c] = uf_find(parent, (int32_t)c);
        prev_begin = i;
        prev_end = row_end;
        i = row_end;
    }
    mg_status status = MG_OK;
    for (int64_t i = 0; i < n && status == MG_OK; i++) {
        int32_t root = uf_find(parent, (int32_t)i);
        int64_t index;
        if (root == (int32_t)i) {
            status = objects_push(list, &r[i], i, &index);
            object_of[i] = (int32_t)index;
        } else {
            index = object_of[root];
        }
        if (status == MG_OK) objects_add_run(list, index, &r[i]);
    }
    free(parent);
    free(object_of);
    return status;
}

static int compare_objects(const void *pa, const void *pb) {
    const object_acc *a = pa, *b = pb;
    if (a->object.label != b->object.label) return a->object.label < b->object.label ? -1 : 1;
    return a->rank < b->rank ? -1 : (a->rank > b->rank);
}

/* Gathers runs row by row: label mode folds each row into the objects at
 * once; component mode keeps every run for the union-find. */
typedef struct collector {
    const mg_mask_options *options;
    run_list runs;
    object_list list;
    label_state labels;
    bool labels_ready;
} collector;

static mg_status collector_init(collector *c, const mg_mask_options *options) {
    memset(c, 0, sizeof *c);
    c->options = options;
    if (!options->connectivity) {
        MG_TRY(label_state_init(&c->labels));
        c->labels_ready = true;
    }
    return MG_OK;
}

static mg_status collector_row_done(collector *c) {
    if (c->options->connectivity) return MG_OK;
    mg_status status = label_state_add(&c->labels, &c->runs, &c->list);
    c->runs.count = 0;
    return status;
}

static void collector_free(collector *c) {
    free(c->runs.items);
    free(c->list.items);
    if (c->labels_ready) label_map_free(&c->labels.map);
    memset(c, 0, sizeof *c);
}

/* Sorted, filtered objects; frees the collector. */
static mg_status collector_finish(collector *c, mg_mask_object **objects, int64_t *n_objects) {
    const mg_mask_options *options = c->options;
    mg_status status = MG_OK;
    if (options->connectivity)
        status = objects_by_component(&c->runs, options->connectivity, &c->list);
    if (status != MG_OK) {
        collector_free(c);
        return status;
    }
    object_list *list = &c->list;
    int64_t kept = 0;
    for (int64_t i = 0; i < list->count; i++) {
        object_acc o = list->items[i];
        if (o.object.area < options->min_area) continue;
        o.object.centroid_x = (double)o.sum_x / (double)o.object.area;
        o.object.centroid_y = (double)o.sum_y / (double)o.object.area;
        list->items[kept++] = o;
    }
    if (kept > 1) qsort(list->items, (size_t)kept, sizeof *list->items, compare_objects);
    mg_mask_object *result = NULL;
    if (kept) {
        result = malloc((size_t)kept * sizeof *result);
        if (!result) {
            collector_free(c);
            return mg_error(MG_ERR_NO_MEMORY, "mask: cannot allocate %lld objects",
                            (long long)kept);
        }
        for (int64_t i = 0; i < kept; i++) result[i] = list->items[i].object;
    }
    collector_free(c);
    *objects = result;
    *n_objects = kept;
    return MG_OK;
}

static mg_status check_options(const mg_mask_options *options) {
    if (options->connectivity != 0 && options->connectivity != 4 && options->connectivity != 8)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "mask: connectivity must be 0, 4 or 8, got %d",
                        options->connectivity);
    return MG_OK;
}

mg_status mg_data_objects_from_labels(const int32_t *labels, int64_t h, int64_t w,
                                      const mg_mask_options *options,
                                      mg_mask_object **objects, int64_t *n_objects) {
    mg_mask_options defaults = {.binary = true, .connectivity = 0, .min_area = 0};
    if (!options) options = &defaults;
    MG_TRY(check_options(options));
    collector c;
    MG_TRY(collector_init(&c, options));
    mg_status status = MG_OK;
    for (int64_t y = 0; y < h && status == MG_OK; y++) {
        status = runs_of_i32_row(&c.runs, labels + y * w, (int32_t)w, (int32_t)y);
        if (status == MG_OK) status = collector_row_done(&c);
    }
    if (status != MG_OK) {
        collector_free(&c);
        return status;
    }
    return collector_finish(&c, objects, n_objects);
}

/* Binary mask, one object (the most common call: a mask file -> its box):
 * per row, a branch-free count and column sum the compiler vectorises, then
 * the first / last foreground column found from each end. Cost does not
 * depend on how fragmented the foreground is. */
static mg_status binary_u8_object(const mg_tensor *mask, const mg_mask_options *options,
                                  mg_mask_object **objects, int64_t *n_objects) {
    int64_t h = mask->shape[0], w = mask->shape[1];
    const uint8_t *base = mask->data;
    int64_t area = 0, sum_x = 0, sum_y = 0;
    int64_t x_min = INT64_MAX, x_max = -1, y_min = -1, y_max = -1;
    for (int64_t y = 0; y < h; y++) {
        const uint8_t *row = base + y * mask->strides[0];
        /* first / last foreground column, skipping background 8 bytes at a time */
        int64_t first = 0, last = w - 1;
        while (first + 8 <= w && load64(row + first) == 0) first += 8;
        while (first < w && !row[first]) first++;
        if (first == w) continue;
        while (last >= 8 && load64(row + last - 7) == 0) last -= 8;
        while (!row[last]) last--;
        /* blocks of 4096 columns: 32-bit sums of offsets in the block (at most
         * 4096 * 4095 / 2) vectorise with plain SSE2 compare/and/add */
        uint64_t count = 0, columns = 0;
        for (int64_t b = first; b <= last; b += 4096) {
            int32_t n = (int32_t)(last + 1 - b < 4096 ? last + 1 - b : 4096);
            const uint8_t *p = row + b;
            uint32_t block_count = 0, block_columns = 0;
            for (int32_t k = 0; k < n; k++) {
                uint32_t on = p[k] != 0;
                block_count += on;
                block_columns += on ? (uint32_t)k : 0;
            }
            count += block_count;
            columns += block_columns + (uint64_t)block_count * (uint64_t)b;
        }
        if (first < x_min) x_min = first;
        if (last > x_max) x_max = last;
        if (y_min < 0) y_min = y;
        y_max = y;
        area += (int64_t)count;
        sum_x += (int64_t)columns;
        sum_y += (int64_t)count * y;
    }
    *objects = NULL;
    *n_objects = 0;
    if (area == 0 || area < options->min_area) return MG_OK;
    mg_mask_object *o = malloc(sizeof *o);
    if (!o) return mg_error(MG_ERR_NO_MEMORY, "mask: cannot allocate an object");
    o->label = 1;
    o->area = area;
    o->x_min = (int32_t)x_min;
    o->x_max = (int32_t)x_max;
    o->y_min = (int32_t)y_min;
    o->y_max = (int32_t)y_max;
    o->centroid_x = (double)sum_x / (double)area;
    o->centroid_y = (double)sum_y / (double)area;
    *objects = o;
    *n_objects = 1;
    return MG_OK;
}

mg_status mg_mask_objects(const mg_tensor *mask, const mg_mask_options *options,
                          mg_mask_object **objects, int64_t *n_objects) {
    if (!objects || !n_objects)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_mask_objects: NULL output");
    *objects = NULL;
    *n_objects = 0;
    mg_mask_options defaults = {.binary = true, .connectivity = 0, .min_area = 0};
    if (!options) options = &defaults;
    MG_TRY(check_options(options));
    bool u8_rows = mask && mask->data && mask->device == MG_DEVICE_CPU && mask->n_dims == 2 &&
                   (mask->dtype == MG_U8 || mask->dtype == MG_BOOL) && mask->strides[1] == 1 &&
                   mask->shape[0] > 0 && mask->shape[1] > 0 && mask->shape[0] <= INT32_MAX &&
                   mask->shape[1] <= INT32_MAX &&
                   mask->shape[0] * mask->shape[1] <= ((int64_t)1 << 31);
    if (u8_rows && options->binary && !options->connectivity)
        return binary_u8_object(mask, options, objects, n_objects);
    if (u8_rows) {
        /* the common case (PNG / NumPy u8 masks): read rows in place */
        collector c;
        MG_TRY(collector_init(&c, options));
        mg_status status = MG_OK;
        const uint8_t *base = mask->data;
        for (int64_t y = 0; y < mask->shape[0] && status == MG_OK; y++) {
            status = runs_of_u8_row(&c.runs, base + y * mask->strides[0],
                                    (int32_t)mask->shape[1], (int32_t)y, options->binary);
            if (status == MG_OK) status = collector_row_done(&c);
        }
        if (status != MG_OK) {
            collector_free(&c);
            return status;
        }
        return collector_finish(&c, objects, n_objects);
    }
    int32_t *labels;
    int64_t h, w;
    MG_TRY(mg_data_mask_labels(mask, options->binary, &labels, &h, &w));
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
 * and round the top-left down and the bottom-right up:
 *     x1 = floor(1000 * x_min / W),  x2 = ceil(1000 * (x_max + 1) / W)
 * (same for y with H), in exact integer arithmetic. The grid box then
 * always covers the object, is never empty (a 1-pixel object of a 4000-px
 * image still gets x2 > x1), and stays within 0..1000. Qwen-VL describes the
 * grid as [0, 1000); an object touching the right/bottom border gets 1000
 * here, which BiRD's parser and IoU read like any other integer (and the
 * checker accepts 0..1000 inclusive). tests/test_data_masks.py checks this
 * rule against exact rationals. */
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

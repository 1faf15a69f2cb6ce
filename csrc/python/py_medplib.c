/* Python bindings of MedPLIB (medground._C.medplib_*): the model, its MoE
 * load counters, the region sampler and mask post-processing. Handles are
 * PyCapsules; a KV cache capsule keeps its model alive. The GIL is released
 * around C work; a model is not safe to use from two threads at once. */
#include "py_common.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define MG_PY_MEDPLIB "medground.medplib"
#define MG_PY_MEDPLIB_CACHE "medground.medplib_cache"

int mg_py_register_medplib(PyObject *module);

typedef struct mg_py_medplib {
    mg_weights *weights;
    mg_medplib *model;
    mg_medplib_info info;
    int busy; /* a call is running (the model's scratch state is in use) */
} mg_py_medplib;

/* One call per model at a time (checked under the GIL), as for BiRD: a
 * second thread, or a streaming callback calling the model again, gets an
 * error instead of sharing the running call's scratch state. */
static mg_status mg_py_medplib_enter(mg_py_medplib *m) {
    if (m->busy)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "this MedPLIB model is already running a call (another thread, or "
                                                 "a streaming callback calling it again); one call at a time");
    m->busy = 1;
    return MG_OK;
}

/* status = call, without the GIL, inside the model's one-call-at-a-time guard. */
#define MG_PY_MEDPLIB_CALL(m, call)                                                                           \
    do {                                                                                                      \
        status = mg_py_medplib_enter(m);                                                                      \
        if (status == MG_OK) {                                                                                \
            Py_BEGIN_ALLOW_THREADS                                                                            \
            status = (call);                                                                                  \
            Py_END_ALLOW_THREADS                                                                              \
            (m)->busy = 0;                                                                                    \
        }                                                                                                     \
    } while (0)

typedef struct mg_py_medplib_cache {
    PyObject *model;
    mg_kv_cache *cache;
} mg_py_medplib_cache;

mg_kv_cache *mg_py_medplib_cache_of(PyObject *capsule) {
    mg_py_medplib_cache *c = PyCapsule_GetPointer(capsule, MG_PY_MEDPLIB_CACHE); /* sets the error */
    return c ? c->cache : NULL;
}

static void mg_py_medplib_destroy(PyObject *capsule) {
    mg_py_medplib *m = PyCapsule_GetPointer(capsule, MG_PY_MEDPLIB);
    if (!m) return;
    mg_medplib_free(m->model);
    mg_weights_destroy(m->weights);
    free(m);
}

static void mg_py_medplib_cache_destroy(PyObject *capsule) {
    mg_py_medplib_cache *c = PyCapsule_GetPointer(capsule, MG_PY_MEDPLIB_CACHE);
    if (!c) return;
    mg_kv_cache_free(c->cache);
    Py_XDECREF(c->model);
    free(c);
}

static mg_py_medplib *mg_py_medplib_get(PyObject *capsule) { return PyCapsule_GetPointer(capsule, MG_PY_MEDPLIB); }

/* A C-contiguous array of the given type and dimensionality (new reference). */
static PyArrayObject *mg_py_medplib_array(PyObject *object, int type, int n_dims, const char *what) {
    PyArrayObject *a = (PyArrayObject *)PyArray_FROMANY(object, type, n_dims, n_dims,
                                                        NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED | NPY_ARRAY_FORCECAST);
    if (!a) {
        PyErr_Clear();
        mg_py_raise(mg_error(MG_ERR_SHAPE, "%s must be a %d-D numeric array", what, n_dims));
    }
    return a;
}

static PyObject *mg_py_medplib_new(int n_dims, const int64_t *shape, int type) {
    npy_intp dims[4];
    for (int i = 0; i < n_dims; i++) dims[i] = (npy_intp)shape[i];
    return PyArray_SimpleNew(n_dims, dims, type);
}

static mg_tensor mg_py_medplib_view(PyObject *array, mg_dtype dtype) {
    PyArrayObject *a = (PyArrayObject *)array;
    mg_tensor t;
    int64_t shape[4];
    int n = PyArray_NDIM(a);
    for (int i = 0; i < n; i++) shape[i] = PyArray_DIM(a, i);
    mg_tensor_init(&t, PyArray_DATA(a), dtype, n, shape);
    return t;
}

/* medplib_load(path, dtype=None, strict=False, load_sam=True, capacity_factor=0, lora_scale=0) */
static PyObject *py_medplib_load(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"path", "dtype", "strict", "load_sam", "capacity_factor", "lora_scale", NULL};
    PyObject *path_object;
    const char *dtype = NULL;
    int strict = 0, load_sam = 1;
    float capacity_factor = 0, lora_scale = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&|zppff", keywords, PyUnicode_FSConverter, &path_object, &dtype,
                                     &strict, &load_sam, &capacity_factor, &lora_scale))
        return NULL;
    mg_medplib_options options;
    memset(&options, 0, sizeof options);
    options.weights.strict = strict != 0;
    options.load_sam = load_sam != 0;
    options.capacity_factor = capacity_factor;
    options.lora_scale = lora_scale;
    if (dtype) {
        mg_status status = mg_dtype_from_name(dtype, &options.weights.dtype);
        if (status != MG_OK) {
            Py_DECREF(path_object);
            return mg_py_raise(status);
        }
        options.weights.convert = true;
    }
    mg_py_medplib *m = calloc(1, sizeof *m);
    if (!m) {
        Py_DECREF(path_object);
        return PyErr_NoMemory();
    }
    const char *path = PyBytes_AS_STRING(path_object);
    mg_status status;
    Py_BEGIN_ALLOW_THREADS
    status = mg_weights_open(path, &m->weights);
    if (status == MG_OK) status = mg_medplib_load(m->weights, &options, &m->model);
    if (status == MG_OK) status = mg_medplib_get_info(m->model, &m->info);
    Py_END_ALLOW_THREADS
    Py_DECREF(path_object);
    if (status != MG_OK) {
        mg_medplib_free(m->model);
        mg_weights_destroy(m->weights);
        free(m);
        return mg_py_raise(status);
    }
    PyObject *capsule = PyCapsule_New(m, MG_PY_MEDPLIB, mg_py_medplib_destroy);
    if (!capsule) {
        mg_medplib_free(m->model);
        mg_weights_destroy(m->weights);
        free(m);
    }
    return capsule;
}

static PyObject *py_medplib_info(PyObject *self, PyObject *capsule) {
    mg_py_medplib *m = mg_py_medplib_get(capsule);
    if (!m) return NULL;
    const mg_medplib_info *i = &m->info;
    return Py_BuildValue("{s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:d,s:O,s:i,s:i,s:i}", "clip_image_size",
                         i->clip_image_size, "clip_patch_size", i->clip_patch_size, "clip_grid", i->clip_grid,
                         "clip_width", i->clip_width, "clip_layers_run", i->clip_layers_run, "image_tokens",
                         i->image_tokens, "hidden_size", i->hidden_size, "n_layers", i->n_layers, "vocab_size",
                         i->vocab_size, "n_experts", i->n_experts, "capacity_factor", (double)i->capacity_factor,
                         "has_region_adapter", i->has_region_adapter ? Py_True : Py_False, "seg_dim", i->seg_dim,
                         "sam_image_size", i->sam_image_size, "sam_low_res", i->sam_low_res);
}

/* medplib_encode_image(model, pixels f32 [3, S, S]) -> (embeddings [N, D], clip [N, W]) */
static PyObject *py_medplib_encode_image(PyObject *self, PyObject *args) {
    PyObject *capsule, *pixels_object;
    if (!PyArg_ParseTuple(args, "OO", &capsule, &pixels_object)) return NULL;
    mg_py_medplib *m = mg_py_medplib_get(capsule);
    if (!m) return NULL;
    mg_context *ctx = mg_py_default_context();
    if (!ctx) return NULL;
    PyArrayObject *pixels = mg_py_medplib_array(pixels_object, NPY_FLOAT32, 3, "pixels");
    if (!pixels) return NULL;
    int64_t es[2] = {m->info.image_tokens, m->info.hidden_size}, cs[2] = {m->info.image_tokens, m->info.clip_width};
    PyObject *emb = mg_py_medplib_new(2, es, NPY_FLOAT32), *clip = mg_py_medplib_new(2, cs, NPY_FLOAT32);
    if (!emb || !clip) {
        Py_DECREF(pixels);
        Py_XDECREF(emb);
        Py_XDECREF(clip);
        return NULL;
    }
    mg_tensor p = mg_py_medplib_view((PyObject *)pixels, MG_F32), e = mg_py_medplib_view(emb, MG_F32),
              c = mg_py_medplib_view(clip, MG_F32);
    mg_status status;
    MG_PY_MEDPLIB_CALL(m, mg_medplib_encode_image(ctx, m->model, &p, &e, &c));
    Py_DECREF(pixels);
    if (status != MG_OK) {
        Py_DECREF(emb);
        Py_DECREF(clip);
        return mg_py_raise(status);
    }
    return Py_BuildValue("(NN)", emb, clip);
}

/* medplib_region_grid_mask(mask u8 [H, W], image_size, patch_size, largest_component) -> u8 [g, g] */
static PyObject *py_medplib_region_grid_mask(PyObject *self, PyObject *args) {
    PyObject *mask_object;
    int image_size, patch_size, largest = 0;
    if (!PyArg_ParseTuple(args, "Oiip", &mask_object, &image_size, &patch_size, &largest)) return NULL;
    PyArrayObject *mask = (PyArrayObject *)PyArray_FROMANY(mask_object, NPY_NOTYPE, 0, 0, NPY_ARRAY_C_CONTIGUOUS);
    if (!mask) return NULL;
    if (PyArray_TYPE(mask) != NPY_UINT8 && PyArray_TYPE(mask) != NPY_BOOL) {
        Py_DECREF(mask);
        return mg_py_raise(mg_error(MG_ERR_DTYPE, "region mask must be uint8 or bool"));
    }
    if (PyArray_NDIM(mask) != 2 || PyArray_SIZE(mask) == 0) {
        Py_DECREF(mask);
        return mg_py_raise(mg_error(MG_ERR_SHAPE, "region mask must be a non-empty 2-D array [H, W]"));
    }
    if (image_size <= 0 || patch_size <= 0 || image_size % patch_size) {
        Py_DECREF(mask);
        return mg_py_raise(mg_error(MG_ERR_INVALID_ARGUMENT, "image_size %d must be a positive multiple of patch_size %d",
                                    image_size, patch_size));
    }
    int64_t g = image_size / patch_size, gs[2] = {g, g};
    PyObject *out = mg_py_medplib_new(2, gs, NPY_UINT8);
    if (!out) {
        Py_DECREF(mask);
        return NULL;
    }
    mg_tensor t = mg_py_medplib_view((PyObject *)mask, MG_U8);
    int n_on = 0;
    mg_context *ctx = mg_py_default_context();
    mg_status status;
    Py_BEGIN_ALLOW_THREADS
    status = mg_region_grid_mask(ctx, &t, image_size, patch_size, largest != 0, PyArray_DATA((PyArrayObject *)out), &n_on);
    Py_END_ALLOW_THREADS
    Py_DECREF(mask);
    if (status != MG_OK) {
        Py_DECREF(out);
        return mg_py_raise(status);
    }
    return out;
}

static PyArrayObject *mg_py_medplib_grid(PyObject *object, int64_t grid) {
    PyArrayObject *mask = mg_py_medplib_array(object, NPY_UINT8, 2, "grid_mask");
    if (mask && (PyArray_DIM(mask, 0) != grid || PyArray_DIM(mask, 1) != grid)) {
        Py_DECREF(mask);
        mg_py_raise(mg_error(MG_ERR_SHAPE, "grid_mask must be uint8 [%lld, %lld]", (long long)grid, (long long)grid));
        return NULL;
    }
    return mask;
}

/* medplib_region_sample(features f32 [g*g, C], grid, grid_mask u8 [g, g], max_points) -> (f32 [C], n) */
static PyObject *py_medplib_region_sample(PyObject *self, PyObject *args) {
    PyObject *features_object, *mask_object;
    long long grid;
    int max_points = 512;
    if (!PyArg_ParseTuple(args, "OLO|i", &features_object, &grid, &mask_object, &max_points)) return NULL;
    PyArrayObject *features = mg_py_medplib_array(features_object, NPY_FLOAT32, 2, "features");
    if (!features) return NULL;
    PyArrayObject *mask = grid > 0 && grid < 4096 ? mg_py_medplib_grid(mask_object, grid) : NULL;
    if (!mask) {
        Py_DECREF(features);
        if (!PyErr_Occurred()) mg_py_raise(mg_error(MG_ERR_INVALID_ARGUMENT, "grid %lld out of range", grid));
        return NULL;
    }
    int64_t cs[1] = {PyArray_DIM(features, 1)};
    PyObject *out = mg_py_medplib_new(1, cs, NPY_FLOAT32);
    mg_tensor f = mg_py_medplib_view((PyObject *)features, MG_F32);
    int n = 0;
    mg_status status = out ? mg_region_sample(&f, grid, PyArray_DATA(mask), max_points,
                                              PyArray_DATA((PyArrayObject *)out), &n)
                           : MG_ERR_NO_MEMORY;
    Py_DECREF(features);
    Py_DECREF(mask);
    if (status != MG_OK) {
        Py_XDECREF(out);
        return out ? mg_py_raise(status) : NULL;
    }
    return Py_BuildValue("(Ni)", out, n);
}

/* medplib_region_feature(model, clip [N, W], grid_mask u8 [g, g], max_points=512) -> (f32 [D], n) */
static PyObject *py_medplib_region_feature(PyObject *self, PyObject *args) {
    PyObject *capsule, *clip_object, *mask_object;
    int max_points = 512;
    if (!PyArg_ParseTuple(args, "OOO|i", &capsule, &clip_object, &mask_object, &max_points)) return NULL;
    mg_py_medplib *m = mg_py_medplib_get(capsule);
    if (!m) return NULL;
    mg_context *ctx = mg_py_default_context();
    if (!ctx) return NULL;
    PyArrayObject *clip = mg_py_medplib_array(clip_object, NPY_FLOAT32, 2, "clip_features");
    if (!clip) return NULL;
    PyArrayObject *mask = mg_py_medplib_grid(mask_object, m->info.clip_grid);
    if (!mask) {
        Py_DECREF(clip);
        return NULL;
    }
    int64_t ds[1] = {m->info.hidden_size};
    PyObject *out = mg_py_medplib_new(1, ds, NPY_FLOAT32);
    mg_tensor c = mg_py_medplib_view((PyObject *)clip, MG_F32);
    int n = 0;
    mg_status status = MG_ERR_NO_MEMORY;
    if (out) {
        MG_PY_MEDPLIB_CALL(m, mg_medplib_region_feature(ctx, m->model, &c, PyArray_DATA(mask), max_points,
                                           PyArray_DATA((PyArrayObject *)out), &n));
    }
    Py_DECREF(clip);
    Py_DECREF(mask);
    if (status != MG_OK) {
        Py_XDECREF(out);
        return out ? mg_py_raise(status) : NULL;
    }
    return Py_BuildValue("(Ni)", out, n);
}

/* medplib_cache_new(model, capacity, dtype=None) */
static PyObject *py_medplib_cache_new(PyObject *self, PyObject *args) {
    PyObject *capsule;
    int capacity;
    const char *dtype_name = NULL;
    if (!PyArg_ParseTuple(args, "Oi|z", &capsule, &capacity, &dtype_name)) return NULL;
    mg_py_medplib *m = mg_py_medplib_get(capsule);
    if (!m) return NULL;
    mg_py_medplib_cache *c = calloc(1, sizeof *c);
    if (!c) return PyErr_NoMemory();
    if (mg_py_kv_cache_create(mg_medplib_decoder(m->model), capacity, dtype_name, &c->cache) < 0) {
        free(c);
        return NULL;
    }
    PyObject *out = PyCapsule_New(c, MG_PY_MEDPLIB_CACHE, mg_py_medplib_cache_destroy);
    if (!out) {
        mg_kv_cache_free(c->cache);
        free(c);
        return NULL;
    }
    Py_INCREF(capsule);
    c->model = capsule;
    return out;
}

/* Optional f32 [n, D] embeddings argument (None allowed). 0 ok, -1 error. */
static int mg_py_medplib_optional(PyObject *object, const char *what, PyArrayObject **out) {
    *out = NULL;
    if (object == Py_None) return 0;
    *out = mg_py_medplib_array(object, NPY_FLOAT32, 2, what);
    return *out ? 0 : -1;
}

/* medplib_forward(model, cache, tokens, image_embeddings=None, region_embeddings=None, all_logits=False)
 * -> (logits [1 or T, V], hidden [T, D]) */
static PyObject *py_medplib_forward(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"model", "cache", "tokens", "image_embeddings", "region_embeddings", "all_logits", NULL};
    PyObject *capsule, *cache_capsule, *tokens_object, *image_object = Py_None, *region_object = Py_None;
    int all_logits = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOO|OOp", keywords, &capsule, &cache_capsule, &tokens_object,
                                     &image_object, &region_object, &all_logits))
        return NULL;
    mg_py_medplib *m = mg_py_medplib_get(capsule);
    if (!m) return NULL;
    mg_py_medplib_cache *c = PyCapsule_GetPointer(cache_capsule, MG_PY_MEDPLIB_CACHE);
    if (!c) return NULL;
    if (c->model != capsule) return mg_py_raise(mg_error(MG_ERR_INVALID_ARGUMENT, "medplib_forward: the cache belongs to another model"));
    mg_context *ctx = mg_py_default_context();
    if (!ctx) return NULL;
    PyArrayObject *tokens = mg_py_medplib_array(tokens_object, NPY_INT32, 1, "tokens");
    if (!tokens) return NULL;
    PyArrayObject *image = NULL, *region = NULL;
    if (mg_py_medplib_optional(image_object, "image_embeddings", &image) < 0 ||
        mg_py_medplib_optional(region_object, "region_embeddings", &region) < 0) {
        Py_DECREF(tokens);
        Py_XDECREF(image);
        return NULL;
    }
    int n_tokens = (int)PyArray_SIZE(tokens), T = 0;
    mg_status status = n_tokens > 0 ? mg_medplib_expanded_length(m->model, PyArray_DATA(tokens), n_tokens, &T)
                                    : mg_error(MG_ERR_INVALID_ARGUMENT, "medplib_forward: no tokens");
    PyObject *logits = NULL, *hidden = NULL;
    if (status == MG_OK) {
        int64_t ls[2] = {all_logits ? T : 1, m->info.vocab_size}, hs[2] = {T, m->info.hidden_size};
        logits = mg_py_medplib_new(2, ls, NPY_FLOAT32);
        hidden = mg_py_medplib_new(2, hs, NPY_FLOAT32);
        if (!logits || !hidden) status = mg_error(MG_ERR_NO_MEMORY, "medplib_forward: out of memory");
    }
    if (status == MG_OK) {
        mg_tensor lt = mg_py_medplib_view(logits, MG_F32), ht = mg_py_medplib_view(hidden, MG_F32), it, rt;
        if (image) it = mg_py_medplib_view((PyObject *)image, MG_F32);
        if (region) rt = mg_py_medplib_view((PyObject *)region, MG_F32);
        MG_PY_MEDPLIB_CALL(m, mg_medplib_forward(ctx, m->model, c->cache, PyArray_DATA(tokens), n_tokens, image ? &it : NULL,
                                    region ? &rt : NULL, &lt, &ht));
    }
    Py_DECREF(tokens);
    Py_XDECREF(image);
    Py_XDECREF(region);
    if (status != MG_OK) {
        Py_XDECREF(logits);
        Py_XDECREF(hidden);
        return mg_py_raise(status);
    }
    return Py_BuildValue("(NN)", logits, hidden);
}

/* medplib_generate(model, tokens, image_embeddings=None, region_embeddings=None, max_new_tokens=512,
 *   stop_tokens=(), seg_token=-1, do_sample=False, temperature=1, top_k=0, top_p=1, seed=0, callback=None)
 *   -> (new ids, seg_hidden [D] or None, seg_index) */
static PyObject *py_medplib_generate(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"model", "tokens", "image_embeddings", "region_embeddings", "max_new_tokens",
                               "stop_tokens", "seg_token", "do_sample", "temperature", "top_k", "top_p", "seed",
                               "callback", NULL};
    PyObject *capsule, *tokens_object, *image_object = Py_None, *region_object = Py_None, *stop_object = Py_None,
                                       *callback = Py_None;
    int max_new_tokens = 512, seg_token = -1, do_sample = 0, top_k = 0;
    float temperature = 1.0f, top_p = 1.0f;
    unsigned long long seed = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|OOiOipfifKO", keywords, &capsule, &tokens_object, &image_object,
                                     &region_object, &max_new_tokens, &stop_object, &seg_token, &do_sample,
                                     &temperature, &top_k, &top_p, &seed, &callback))
        return NULL;
    mg_py_medplib *m = mg_py_medplib_get(capsule);
    if (!m) return NULL;
    mg_context *ctx = mg_py_default_context();
    if (!ctx) return NULL;
    PyArrayObject *tokens = mg_py_medplib_array(tokens_object, NPY_INT32, 1, "tokens");
    if (!tokens) return NULL;
    PyArrayObject *image = NULL, *region = NULL, *stops = NULL;
    if (mg_py_medplib_optional(image_object, "image_embeddings", &image) < 0 ||
        mg_py_medplib_optional(region_object, "region_embeddings", &region) < 0 ||
        (stop_object != Py_None && !(stops = mg_py_medplib_array(stop_object, NPY_INT32, 1, "stop_tokens")))) {
        Py_DECREF(tokens);
        Py_XDECREF(image);
        Py_XDECREF(region);
        return NULL;
    }
    mg_py_stream stream;
    mg_generate_options options;
    if (mg_py_generate_options("medplib_generate", max_new_tokens, do_sample, temperature, top_k, top_p, seed,
                               stops, callback, &stream, &options) < 0) {
        Py_DECREF(tokens);
        Py_XDECREF(image);
        Py_XDECREF(region);
        Py_XDECREF(stops);
        return NULL;
    }
    int32_t *out = malloc((size_t)(max_new_tokens > 0 ? max_new_tokens : 1) * sizeof *out);
    int64_t ds[1] = {m->info.hidden_size};
    PyObject *seg = mg_py_medplib_new(1, ds, NPY_FLOAT32);
    int n_out = 0, seg_index = -1;
    mg_status status = out && seg ? MG_OK : mg_error(MG_ERR_NO_MEMORY, "medplib_generate: out of memory");
    if (status == MG_OK) {
        mg_tensor it, rt;
        if (image) it = mg_py_medplib_view((PyObject *)image, MG_F32);
        if (region) rt = mg_py_medplib_view((PyObject *)region, MG_F32);
        MG_PY_MEDPLIB_CALL(m, mg_medplib_generate(ctx, m->model, PyArray_DATA(tokens), (int)PyArray_SIZE(tokens), image ? &it : NULL,
                                     region ? &rt : NULL, &options, seg_token, out, max_new_tokens, &n_out,
                                     PyArray_DATA((PyArrayObject *)seg), &seg_index));
    }
    Py_DECREF(tokens);
    Py_XDECREF(image);
    Py_XDECREF(region);
    Py_XDECREF(stops);
    if (stream.failed || status != MG_OK) {
        free(out);
        Py_XDECREF(seg);
        return stream.failed ? NULL : mg_py_raise(status);
    }
    PyObject *list = PyList_New(n_out);
    for (int i = 0; list && i < n_out; i++) PyList_SET_ITEM(list, i, PyLong_FromLong(out[i]));
    free(out);
    if (!list) {
        Py_DECREF(seg);
        return NULL;
    }
    if (seg_index < 0) {
        Py_DECREF(seg);
        seg = Py_None;
        Py_INCREF(seg);
    }
    return Py_BuildValue("(NNi)", list, seg, seg_index);
}

/* medplib_seg_prompt(model, seg_hidden [D]) -> [seg_dim] */
static PyObject *py_medplib_seg_prompt(PyObject *self, PyObject *args) {
    PyObject *capsule, *hidden_object;
    if (!PyArg_ParseTuple(args, "OO", &capsule, &hidden_object)) return NULL;
    mg_py_medplib *m = mg_py_medplib_get(capsule);
    if (!m) return NULL;
    mg_context *ctx = mg_py_default_context();
    if (!ctx) return NULL;
    PyArrayObject *h = mg_py_medplib_array(hidden_object, NPY_FLOAT32, 1, "seg_hidden");
    if (!h) return NULL;
    if (PyArray_DIM(h, 0) != m->info.hidden_size) {
        Py_DECREF(h);
        return mg_py_raise(mg_error(MG_ERR_SHAPE, "seg_hidden must have %d values", m->info.hidden_size));
    }
    int64_t cs[1] = {m->info.seg_dim > 0 ? m->info.seg_dim : 1};
    PyObject *out = mg_py_medplib_new(1, cs, NPY_FLOAT32);
    mg_status status = MG_ERR_NO_MEMORY;
    if (out) MG_PY_MEDPLIB_CALL(m, mg_medplib_seg_prompt(ctx, m->model, PyArray_DATA(h), PyArray_DATA((PyArrayObject *)out)));
    Py_DECREF(h);
    if (status != MG_OK) {
        Py_XDECREF(out);
        return out ? mg_py_raise(status) : NULL;
    }
    return out;
}

/* medplib_sam_encode(model, pixels f32 [3, S, S]) -> [C, G, G] */
static PyObject *py_medplib_sam_encode(PyObject *self, PyObject *args) {
    PyObject *capsule, *pixels_object;
    if (!PyArg_ParseTuple(args, "OO", &capsule, &pixels_object)) return NULL;
    mg_py_medplib *m = mg_py_medplib_get(capsule);
    if (!m) return NULL;
    mg_sam *sam = mg_medplib_sam(m->model);
    if (!sam) return mg_py_raise(mg_error(MG_ERR_NOT_FOUND, "MedPLIB: no SAM-Med2D model (model.visual_model.*) was loaded"));
    mg_context *ctx = mg_py_default_context();
    if (!ctx) return NULL;
    mg_sam_info si;
    mg_sam_get_info(sam, &si);
    PyArrayObject *pixels = mg_py_medplib_array(pixels_object, NPY_FLOAT32, 3, "pixels");
    if (!pixels) return NULL;
    int64_t es[3] = {si.prompt_dim, si.grid, si.grid};
    PyObject *out = mg_py_medplib_new(3, es, NPY_FLOAT32);
    mg_status status = MG_ERR_NO_MEMORY;
    if (out) {
        mg_tensor p = mg_py_medplib_view((PyObject *)pixels, MG_F32), e = mg_py_medplib_view(out, MG_F32);
        MG_PY_MEDPLIB_CALL(m, mg_sam_encode_image(ctx, sam, &p, &e));
    }
    Py_DECREF(pixels);
    if (status != MG_OK) {
        Py_XDECREF(out);
        return out ? mg_py_raise(status) : NULL;
    }
    return out;
}

/* medplib_decode_mask(model, sam_embedding [C, G, G], seg_prompt [C]) -> (low_res [1, 4G, 4G], score) */
static PyObject *py_medplib_decode_mask(PyObject *self, PyObject *args) {
    PyObject *capsule, *emb_object, *prompt_object;
    if (!PyArg_ParseTuple(args, "OOO", &capsule, &emb_object, &prompt_object)) return NULL;
    mg_py_medplib *m = mg_py_medplib_get(capsule);
    if (!m) return NULL;
    mg_context *ctx = mg_py_default_context();
    if (!ctx) return NULL;
    mg_sam *sam = mg_medplib_sam(m->model);
    if (!sam) return mg_py_raise(mg_error(MG_ERR_NOT_FOUND, "MedPLIB: no SAM-Med2D model (model.visual_model.*) was loaded"));
    mg_sam_info si;
    mg_sam_get_info(sam, &si);
    PyArrayObject *emb = mg_py_medplib_array(emb_object, NPY_FLOAT32, 3, "sam_embedding");
    if (!emb) return NULL;
    PyArrayObject *prompt = mg_py_medplib_array(prompt_object, NPY_FLOAT32, 1, "seg_prompt");
    if (!prompt) {
        Py_DECREF(emb);
        return NULL;
    }
    mg_status status = MG_OK;
    if (PyArray_DIM(prompt, 0) != si.prompt_dim)
        status = mg_error(MG_ERR_SHAPE, "seg_prompt must have %d values", si.prompt_dim);
    int64_t ls[3] = {1, si.low_res_size, si.low_res_size};
    PyObject *low = status == MG_OK ? mg_py_medplib_new(3, ls, NPY_FLOAT32) : NULL;
    float score = 0;
    if (status == MG_OK && !low) status = mg_error(MG_ERR_NO_MEMORY, "out of memory");
    if (status == MG_OK) {
        mg_tensor e = mg_py_medplib_view((PyObject *)emb, MG_F32), l = mg_py_medplib_view(low, MG_F32);
        MG_PY_MEDPLIB_CALL(m, mg_medplib_decode_mask(ctx, m->model, &e, PyArray_DATA(prompt), &l, &score));
    }
    Py_DECREF(emb);
    Py_DECREF(prompt);
    if (status != MG_OK) {
        Py_XDECREF(low);
        return mg_py_raise(status);
    }
    return Py_BuildValue("(Nd)", low, (double)score);
}

/* medplib_postprocess(low_res f32 [h, w], sam_size, resized_h, resized_w, H, W, reference_crop, threshold)
 * -> (mask u8 [H, W], probs f32 [H, W]) */
static PyObject *py_medplib_postprocess(PyObject *self, PyObject *args) {
    PyObject *low_object;
    int sam_size, rh, rw, H, W, reference = 0;
    float threshold;
    if (!PyArg_ParseTuple(args, "Oiiiiipf", &low_object, &sam_size, &rh, &rw, &H, &W, &reference, &threshold)) return NULL;
    if (H <= 0 || W <= 0 || (int64_t)H * W > ((int64_t)1 << 32))
        return mg_py_raise(mg_error(MG_ERR_INVALID_ARGUMENT, "output size %dx%d out of range", W, H));
    mg_context *ctx = mg_py_default_context();
    if (!ctx) return NULL;
    PyArrayObject *low = mg_py_medplib_array(low_object, NPY_FLOAT32, 2, "low_res");
    if (!low) return NULL;
    int64_t hw[2] = {H, W};
    PyObject *mask = mg_py_medplib_new(2, hw, NPY_UINT8), *probs = mg_py_medplib_new(2, hw, NPY_FLOAT32);
    mg_status status = mask && probs ? MG_OK : mg_error(MG_ERR_NO_MEMORY, "out of memory");
    if (status == MG_OK) {
        mg_tensor l = mg_py_medplib_view((PyObject *)low, MG_F32), mk = mg_py_medplib_view(mask, MG_U8),
                  pr = mg_py_medplib_view(probs, MG_F32);
        Py_BEGIN_ALLOW_THREADS
        status = mg_medplib_postprocess(ctx, &l, sam_size, rh, rw, reference != 0, threshold, &mk, &pr);
        Py_END_ALLOW_THREADS
    }
    Py_DECREF(low);
    if (status != MG_OK) {
        Py_XDECREF(mask);
        Py_XDECREF(probs);
        return mg_py_raise(status);
    }
    return Py_BuildValue("(NN)", mask, probs);
}

/* ------------------------------------------------------ metadata-only load */

/* {key: bool | int | float | str} into the table (other values are skipped). */
static int mg_py_medplib_metadata(mg_weights *weights, PyObject *metadata) {
    if (metadata == Py_None) return 0;
    if (!PyDict_Check(metadata)) return mg_py_raise_int(mg_error(MG_ERR_INVALID_ARGUMENT, "metadata must be a dict"));
    PyObject *key, *value;
    Py_ssize_t position = 0;
    while (PyDict_Next(metadata, &position, &key, &value)) {
        const char *name = PyUnicode_Check(key) ? PyUnicode_AsUTF8(key) : NULL;
        if (!name) {
            PyErr_Clear();
            return mg_py_raise_int(mg_error(MG_ERR_INVALID_ARGUMENT, "metadata keys must be str"));
        }
        mg_status status = MG_OK;
        if (PyBool_Check(value) || PyLong_Check(value)) {
            long long v = PyLong_AsLongLong(value);
            if (v == -1 && PyErr_Occurred()) return -1;
            status = mg_weights_set_int(weights, name, v);
        } else if (PyFloat_Check(value)) {
            status = mg_weights_set_float(weights, name, PyFloat_AsDouble(value));
        } else if (PyUnicode_Check(value)) {
            const char *text = PyUnicode_AsUTF8(value);
            if (!text) return -1;
            status = mg_weights_set_string(weights, name, text);
        }
        if (status != MG_OK) return mg_py_raise_int(status);
    }
    return 0;
}

/* medplib_check_tensors(specs, metadata, strict=True, load_sam=True) -> info dict.
 * A metadata-only load of a checkpoint of any size: specs are (name, dtype,
 * shape); every tensor reads as zeros from one shared read-only anonymous
 * mapping (nothing committed while the loader needs no conversion: use f32),
 * and mg_medplib_load runs on that table. Raises what the loader raises. */
static PyObject *py_medplib_check_tensors(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"specs", "metadata", "strict", "load_sam", NULL};
    PyObject *specs, *metadata;
    int strict = 1, load_sam = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|pp", keywords, &specs, &metadata, &strict, &load_sam))
        return NULL;
    PyObject *sequence = PySequence_Fast(specs, "specs must be a sequence of (name, dtype, shape)");
    if (!sequence) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(sequence);
    typedef struct { const char *name; mg_dtype dtype; int n_dims; int64_t shape[MG_MAX_DIMS]; } spec_t;
    spec_t *parsed = calloc((size_t)(n > 0 ? n : 1), sizeof *parsed);
    mg_weights *weights = NULL;
    mg_status status = parsed ? mg_weights_create(&weights) : mg_error(MG_ERR_NO_MEMORY, "out of memory");
    int failed = status != MG_OK ? mg_py_raise_int(status) : 0;
    size_t largest = 64;
    for (Py_ssize_t i = 0; !failed && i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(sequence, i), *shape_object;
        const char *dtype_name;
        if (!PyTuple_Check(item) || !PyArg_ParseTuple(item, "ssO", &parsed[i].name, &dtype_name, &shape_object)) {
            PyErr_Clear();
            failed = mg_py_raise_int(mg_error(MG_ERR_INVALID_ARGUMENT, "spec %zd: expected (name, dtype, shape)", (ssize_t)i));
            break;
        }
        status = mg_dtype_from_name(dtype_name, &parsed[i].dtype);
        if (status != MG_OK) {
            failed = mg_py_raise_int(mg_error_prefix(status, "tensor %s", parsed[i].name));
            break;
        }
        PyObject *shape = PySequence_Fast(shape_object, "shape must be a sequence");
        if (!shape) {
            failed = -1;
            break;
        }
        parsed[i].n_dims = (int)PySequence_Fast_GET_SIZE(shape);
        if (parsed[i].n_dims < 1 || parsed[i].n_dims > MG_MAX_DIMS) {
            Py_DECREF(shape);
            failed = mg_py_raise_int(mg_error(MG_ERR_SHAPE, "tensor %s: %d dims", parsed[i].name, parsed[i].n_dims));
            break;
        }
        for (int d = 0; d < parsed[i].n_dims; d++) parsed[i].shape[d] = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(shape, d));
        Py_DECREF(shape);
        if (PyErr_Occurred()) {
            failed = -1;
            break;
        }
        mg_tensor probe;
        status = mg_tensor_init(&probe, NULL, parsed[i].dtype, parsed[i].n_dims, parsed[i].shape);
        if (status != MG_OK) {
            failed = mg_py_raise_int(mg_error_prefix(status, "tensor %s", parsed[i].name));
            break;
        }
        if (mg_tensor_nbytes(&probe) > largest) largest = mg_tensor_nbytes(&probe);
    }
    void *zeros = MAP_FAILED;
    if (!failed) {
        zeros = mmap(NULL, largest, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (zeros == MAP_FAILED)
            failed = mg_py_raise_int(mg_error(MG_ERR_NO_MEMORY, "medplib_check_tensors: cannot map %zu bytes", largest));
    }
    for (Py_ssize_t i = 0; !failed && i < n; i++) {
        mg_tensor t;
        status = mg_tensor_init(&t, zeros, parsed[i].dtype, parsed[i].n_dims, parsed[i].shape);
        if (status == MG_OK) status = mg_weights_add(weights, parsed[i].name, &t, false);
        if (status != MG_OK) failed = mg_py_raise_int(mg_error_prefix(status, "tensor %s", parsed[i].name));
    }
    if (!failed) failed = mg_py_medplib_metadata(weights, metadata);
    PyObject *result = NULL;
    if (!failed) {
        mg_medplib_options options;
        memset(&options, 0, sizeof options);
        options.weights.strict = strict != 0;
        options.load_sam = load_sam != 0;
        mg_medplib *model = NULL;
        mg_py_medplib holder;
        memset(&holder, 0, sizeof holder);
        Py_BEGIN_ALLOW_THREADS
        status = mg_medplib_load(weights, &options, &model);
        if (status == MG_OK) status = mg_medplib_get_info(model, &holder.info);
        mg_medplib_free(model);
        Py_END_ALLOW_THREADS
        if (status != MG_OK) {
            mg_py_raise(status);
        } else {
            PyObject *capsule = PyCapsule_New(&holder, MG_PY_MEDPLIB, NULL);
            if (capsule) {
                result = py_medplib_info(NULL, capsule);
                Py_DECREF(capsule);
            }
        }
    }
    if (zeros != MAP_FAILED) munmap(zeros, largest);
    mg_weights_destroy(weights);
    free(parsed);
    Py_DECREF(sequence);
    return result;
}

/* ------------------------------------------------------------------- MoE */

static mg_moe *mg_py_medplib_moe(PyObject *capsule, mg_py_medplib **m_out) {
    mg_py_medplib *m = mg_py_medplib_get(capsule);
    if (!m) return NULL;
    mg_moe *moe = mg_medplib_moe(m->model);
    if (!moe) mg_py_raise(mg_error(MG_ERR_NOT_FOUND, "MedPLIB: this checkpoint has a dense FFN (no MoE)"));
    if (m_out) *m_out = m;
    return moe;
}

/* medplib_moe_load(model) -> (routed int64 [L, E], dropped int64 [L]) */
static PyObject *py_medplib_moe_load(PyObject *self, PyObject *capsule) {
    mg_moe *moe = mg_py_medplib_moe(capsule, NULL);
    if (!moe) return NULL;
    const mg_moe_config *c = mg_moe_get_config(moe);
    int64_t rs[2] = {c->n_layers, c->n_experts}, ds[1] = {c->n_layers};
    PyObject *routed = mg_py_medplib_new(2, rs, NPY_INT64), *dropped = mg_py_medplib_new(1, ds, NPY_INT64);
    if (!routed || !dropped) {
        Py_XDECREF(routed);
        Py_XDECREF(dropped);
        return NULL;
    }
    mg_moe_get_load(moe, PyArray_DATA((PyArrayObject *)routed), PyArray_DATA((PyArrayObject *)dropped));
    return Py_BuildValue("(NN)", routed, dropped);
}

static PyObject *py_medplib_moe_reset(PyObject *self, PyObject *capsule) {
    mg_moe *moe = mg_py_medplib_moe(capsule, NULL);
    if (!moe) return NULL;
    mg_moe_reset_load(moe);
    Py_RETURN_NONE;
}

/* medplib_moe_route(model, layer, x f32 [T, H]) -> (experts int32 [T], probs f32 [T, E]) */
static PyObject *py_medplib_moe_route(PyObject *self, PyObject *args) {
    PyObject *capsule, *x_object;
    int layer;
    if (!PyArg_ParseTuple(args, "OiO", &capsule, &layer, &x_object)) return NULL;
    mg_py_medplib *m = NULL;
    mg_moe *moe = mg_py_medplib_moe(capsule, &m);
    if (!moe) return NULL;
    mg_context *ctx = mg_py_default_context();
    if (!ctx) return NULL;
    PyArrayObject *x = mg_py_medplib_array(x_object, NPY_FLOAT32, 2, "x");
    if (!x) return NULL;
    int64_t T = PyArray_DIM(x, 0), ts[1] = {T}, te[2] = {T, mg_moe_get_config(moe)->n_experts};
    PyObject *experts = mg_py_medplib_new(1, ts, NPY_INT32), *probs = mg_py_medplib_new(2, te, NPY_FLOAT32);
    mg_status status = experts && probs ? MG_OK : mg_error(MG_ERR_NO_MEMORY, "out of memory");
    if (status == MG_OK) {
        mg_tensor xt = mg_py_medplib_view((PyObject *)x, MG_F32);
        MG_PY_MEDPLIB_CALL(m, mg_moe_route(ctx, moe, layer, &xt, PyArray_DATA((PyArrayObject *)experts),
                                           PyArray_DATA((PyArrayObject *)probs)));
    }
    Py_DECREF(x);
    if (status != MG_OK) {
        Py_XDECREF(experts);
        Py_XDECREF(probs);
        return mg_py_raise(status);
    }
    return Py_BuildValue("(NN)", experts, probs);
}

/* medplib_moe_expert(model, layer, expert, x f32 [T, H]) -> [T, H]; expert = -1: the whole MoE block */
static PyObject *py_medplib_moe_expert(PyObject *self, PyObject *args) {
    PyObject *capsule, *x_object;
    int layer, expert;
    if (!PyArg_ParseTuple(args, "OiiO", &capsule, &layer, &expert, &x_object)) return NULL;
    mg_moe *moe = mg_py_medplib_moe(capsule, NULL);
    if (!moe) return NULL;
    mg_context *ctx = mg_py_default_context();
    if (!ctx) return NULL;
    PyArrayObject *x = mg_py_medplib_array(x_object, NPY_FLOAT32, 2, "x");
    if (!x) return NULL;
    int64_t s[2] = {PyArray_DIM(x, 0), PyArray_DIM(x, 1)};
    PyObject *out = mg_py_medplib_new(2, s, NPY_FLOAT32);
    mg_status status = out ? MG_OK : mg_error(MG_ERR_NO_MEMORY, "out of memory");
    if (status == MG_OK) {
        mg_tensor xt = mg_py_medplib_view((PyObject *)x, MG_F32), ot = mg_py_medplib_view(out, MG_F32);
        status = expert < 0 ? mg_moe_ffn(moe, ctx, layer, &xt, &ot) : mg_moe_expert_forward(ctx, moe, layer, expert, &xt, &ot);
    }
    Py_DECREF(x);
    if (status != MG_OK) {
        Py_XDECREF(out);
        return mg_py_raise(status);
    }
    return out;
}

/* medplib_moe_last_routes(model, layer) -> (experts int32 [n], probs f32 [n]) */
static PyObject *py_medplib_moe_last_routes(PyObject *self, PyObject *args) {
    PyObject *capsule;
    int layer;
    if (!PyArg_ParseTuple(args, "Oi", &capsule, &layer)) return NULL;
    mg_moe *moe = mg_py_medplib_moe(capsule, NULL);
    if (!moe) return NULL;
    int n = 0;
    mg_status status = mg_moe_last_routes(moe, layer, NULL, NULL, 0, &n);
    if (status != MG_OK && n == 0) return mg_py_raise(status);
    int64_t s[1] = {n > 0 ? n : 0};
    npy_intp dims[1] = {(npy_intp)s[0]};
    PyObject *experts = PyArray_SimpleNew(1, dims, NPY_INT32), *probs = PyArray_SimpleNew(1, dims, NPY_FLOAT32);
    if (!experts || !probs) {
        Py_XDECREF(experts);
        Py_XDECREF(probs);
        return NULL;
    }
    status = mg_moe_last_routes(moe, layer, PyArray_DATA((PyArrayObject *)experts), PyArray_DATA((PyArrayObject *)probs),
                                n, &n);
    if (status != MG_OK) {
        Py_DECREF(experts);
        Py_DECREF(probs);
        return mg_py_raise(status);
    }
    return Py_BuildValue("(NN)", experts, probs);
}

/* medplib_moe_capacity(model, n_tokens) -> int */
static PyObject *py_medplib_moe_capacity(PyObject *self, PyObject *args) {
    PyObject *capsule;
    long long n;
    if (!PyArg_ParseTuple(args, "OL", &capsule, &n)) return NULL;
    mg_moe *moe = mg_py_medplib_moe(capsule, NULL);
    if (!moe) return NULL;
    return PyLong_FromLongLong((long long)mg_moe_capacity(moe, n));
}

static PyMethodDef mg_py_medplib_methods[] = {
    {"medplib_load", (PyCFunction)(void (*)(void))py_medplib_load, METH_VARARGS | METH_KEYWORDS,
     "medplib_load(path, dtype=None, strict=False, load_sam=True, capacity_factor=0, lora_scale=0) -> handle"},
    {"medplib_info", py_medplib_info, METH_O, "medplib_info(model) -> dict"},
    {"medplib_encode_image", py_medplib_encode_image, METH_VARARGS,
     "medplib_encode_image(model, pixels [3, S, S]) -> (embeddings [N, D], clip_features [N, W])"},
    {"medplib_region_grid_mask", py_medplib_region_grid_mask, METH_VARARGS,
     "medplib_region_grid_mask(mask u8 [H, W], image_size, patch_size, largest_component) -> u8 [g, g]"},
    {"medplib_region_sample", py_medplib_region_sample, METH_VARARGS,
     "medplib_region_sample(features [g*g, C], grid, grid_mask [g, g], max_points=512) -> (mean [C], n_points)"},
    {"medplib_region_feature", py_medplib_region_feature, METH_VARARGS,
     "medplib_region_feature(model, clip_features, grid_mask, max_points=512) -> (row [D], n_points)"},
    {"medplib_cache_new", py_medplib_cache_new, METH_VARARGS,
     "medplib_cache_new(model, capacity, dtype=None) -> KV cache ('f32' / 'f16'; None: f16 for bf16 / q8_0 / q4_0 weights)"},
    {"medplib_forward", (PyCFunction)(void (*)(void))py_medplib_forward, METH_VARARGS | METH_KEYWORDS,
     "medplib_forward(model, cache, tokens, image_embeddings=None, region_embeddings=None, all_logits=False) -> (logits, hidden)"},
    {"medplib_generate", (PyCFunction)(void (*)(void))py_medplib_generate, METH_VARARGS | METH_KEYWORDS,
     "medplib_generate(model, tokens, ...) -> (new ids, seg_hidden or None, seg_index)"},
    {"medplib_seg_prompt", py_medplib_seg_prompt, METH_VARARGS, "medplib_seg_prompt(model, seg_hidden [D]) -> [seg_dim]"},
    {"medplib_sam_encode", py_medplib_sam_encode, METH_VARARGS, "medplib_sam_encode(model, pixels [3, S, S]) -> [C, G, G]"},
    {"medplib_decode_mask", py_medplib_decode_mask, METH_VARARGS,
     "medplib_decode_mask(model, sam_embedding, seg_prompt) -> (low_res [1, 4G, 4G], score)"},
    {"medplib_postprocess", py_medplib_postprocess, METH_VARARGS,
     "medplib_postprocess(low_res [h, w], sam_size, resized_h, resized_w, H, W, reference_crop, threshold) -> (mask, probs)"},
    {"medplib_check_tensors", (PyCFunction)(void (*)(void))py_medplib_check_tensors, METH_VARARGS | METH_KEYWORDS,
     "medplib_check_tensors(specs, metadata, strict=True, load_sam=True) -> info (metadata-only load)"},
    {"medplib_moe_load", py_medplib_moe_load, METH_O, "medplib_moe_load(model) -> (routed [L, E], dropped [L])"},
    {"medplib_moe_reset", py_medplib_moe_reset, METH_O, "medplib_moe_reset(model)"},
    {"medplib_moe_route", py_medplib_moe_route, METH_VARARGS, "medplib_moe_route(model, layer, x) -> (experts, probs)"},
    {"medplib_moe_expert", py_medplib_moe_expert, METH_VARARGS,
     "medplib_moe_expert(model, layer, expert, x) -> out (expert -1: the routed MoE block)"},
    {"medplib_moe_last_routes", py_medplib_moe_last_routes, METH_VARARGS,
     "medplib_moe_last_routes(model, layer) -> (experts, chosen probs) of the last forward"},
    {"medplib_moe_capacity", py_medplib_moe_capacity, METH_VARARGS, "medplib_moe_capacity(model, n_tokens) -> int"},
    {NULL, NULL, 0, NULL},
};

int mg_py_register_medplib(PyObject *module) { return PyModule_AddFunctions(module, mg_py_medplib_methods); }

/* Python bindings of the models module (medground._C).
 *
 * Layout: one block per model family. Handles are PyCapsules owning the C
 * object; a capsule that depends on another (a session on its model) holds a
 * reference to it. A model object is not safe to use from two threads at
 * once (it owns its scratch memory); the GIL is released around C work. */
#include "py_common.h"

#include <sys/mman.h>

int mg_py_register_sam(PyObject *module); /* SAM-Med2D / MedPLIB block at the end */

/* ======================================================================== */
/* == BiRD (Qwen-VL)                                                      == */
/* ======================================================================== */

#define MG_PY_BIRD "medground.bird"
#define MG_PY_BIRD_SESSION "medground.bird_session"
#define MG_PY_KV_CACHE "medground.kv_cache"

typedef struct mg_py_bird {
    mg_weights *weights;
    mg_bird *bird;
    PyObject *keepalive; /* arrays an in-memory table borrows (bird_load_arrays) */
    int busy;            /* a call is running (its scratch memory is in use)        */
} mg_py_bird;

typedef struct mg_py_bird_session {
    PyObject *model; /* strong reference: the session uses the model's decoder */
    mg_bird_session *session;
} mg_py_bird_session;

typedef struct mg_py_kv_cache {
    PyObject *model;
    mg_kv_cache *cache;
} mg_py_kv_cache;

static void mg_py_bird_destroy(PyObject *capsule) {
    mg_py_bird *m = PyCapsule_GetPointer(capsule, MG_PY_BIRD);
    if (!m) return;
    mg_bird_free(m->bird);
    mg_weights_destroy(m->weights);
    Py_XDECREF(m->keepalive);
    free(m);
}

static void mg_py_bird_session_destroy(PyObject *capsule) {
    mg_py_bird_session *s = PyCapsule_GetPointer(capsule, MG_PY_BIRD_SESSION);
    if (!s) return;
    mg_bird_session_free(s->session);
    Py_XDECREF(s->model);
    free(s);
}

static void mg_py_kv_cache_destroy(PyObject *capsule) {
    mg_py_kv_cache *c = PyCapsule_GetPointer(capsule, MG_PY_KV_CACHE);
    if (!c) return;
    mg_kv_cache_free(c->cache);
    Py_XDECREF(c->model);
    free(c);
}

static mg_py_bird *mg_py_bird_get(PyObject *capsule) {
    return PyCapsule_GetPointer(capsule, MG_PY_BIRD); /* sets TypeError/ValueError itself */
}

/* One call per model at a time (checked under the GIL): the model owns its
 * scratch memory, so a second thread, or a streaming callback calling the
 * model again, gets an error instead of corrupting the running call. */
static mg_status mg_py_bird_enter(mg_py_bird *m) {
    if (m->busy)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "this BiRD model is already running a call (another thread, or a "
                                                 "streaming callback calling it again); one call at a time");
    m->busy = 1;
    return MG_OK;
}

/* dtype=None keeps the file's dtypes; else every matrix is re-encoded. */
static int mg_py_weights_options(const char *dtype, bool strict, mg_model_weights_options *options) {
    options->convert = false;
    options->dtype = MG_F32;
    options->strict = strict;
    if (!dtype) return 0;
    mg_status status = mg_dtype_from_name(dtype, &options->dtype);
    if (status != MG_OK) return mg_py_raise_int(status);
    options->convert = true;
    return 0;
}

/* bird_load(path, dtype=None) -> model handle */
static PyObject *py_bird_load(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"path", "dtype", "strict", NULL};
    PyObject *path_object;
    const char *dtype = NULL;
    int strict = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&|zp", keywords, PyUnicode_FSConverter, &path_object, &dtype,
                                     &strict))
        return NULL;
    mg_model_weights_options options;
    if (mg_py_weights_options(dtype, strict != 0, &options) < 0) {
        Py_DECREF(path_object);
        return NULL;
    }
    mg_py_bird *m = calloc(1, sizeof *m);
    if (!m) {
        Py_DECREF(path_object);
        return PyErr_NoMemory();
    }
    const char *path = PyBytes_AS_STRING(path_object);
    mg_status status;
    Py_BEGIN_ALLOW_THREADS
    status = mg_weights_open(path, &m->weights);
    if (status == MG_OK) status = mg_bird_load(m->weights, &options, &m->bird);
    Py_END_ALLOW_THREADS
    Py_DECREF(path_object);
    if (status != MG_OK) {
        mg_bird_free(m->bird);
        mg_weights_destroy(m->weights);
        free(m);
        return mg_py_raise(status);
    }
    PyObject *capsule = PyCapsule_New(m, MG_PY_BIRD, mg_py_bird_destroy);
    if (!capsule) {
        mg_bird_free(m->bird);
        mg_weights_destroy(m->weights);
        free(m);
    }
    return capsule;
}

/* Metadata {key: bool | int | float | str} (config.json flattened by the
 * caller, e.g. "config.visual.width") into an in-memory table. */
static int mg_py_bird_set_metadata(mg_weights *weights, PyObject *metadata) {
    if (metadata == Py_None) return 0;
    if (!PyDict_Check(metadata)) {
        mg_py_raise(mg_error(MG_ERR_INVALID_ARGUMENT, "metadata must be a dict"));
        return -1;
    }
    PyObject *key, *value;
    Py_ssize_t position = 0;
    while (PyDict_Next(metadata, &position, &key, &value)) {
        const char *name = PyUnicode_Check(key) ? PyUnicode_AsUTF8(key) : NULL;
        if (!name) {
            PyErr_Clear();
            mg_py_raise(mg_error(MG_ERR_INVALID_ARGUMENT, "metadata keys must be str"));
            return -1;
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
        } else {
            continue; /* lists, None: not model hyper-parameters */
        }
        if (status != MG_OK) {
            mg_py_raise(mg_error_prefix(status, "metadata %s", name));
            return -1;
        }
    }
    return 0;
}

/* One (name, array, dtype name) entry -> a borrowed tensor in `weights`.
 * The dtype name says what the bytes are (bf16 arrives as uint16 bits). */
static int mg_py_bird_add_array(mg_weights *weights, PyObject *entry, PyObject *keepalive) {
    const char *name, *dtype_name;
    PyObject *array_object;
    if (!PyTuple_Check(entry) || !PyArg_ParseTuple(entry, "sOs", &name, &array_object, &dtype_name)) {
        PyErr_Clear();
        mg_py_raise(mg_error(MG_ERR_INVALID_ARGUMENT, "tensors must be (name, array, dtype) tuples"));
        return -1;
    }
    mg_dtype dtype;
    mg_status status = mg_dtype_from_name(dtype_name, &dtype);
    if (status != MG_OK) {
        mg_py_raise(mg_error_prefix(status, "tensor %s", name));
        return -1;
    }
    if (!PyArray_Check(array_object)) {
        mg_py_raise(mg_error(MG_ERR_INVALID_ARGUMENT, "tensor %s: expected a NumPy array", name));
        return -1;
    }
    PyArrayObject *array = (PyArrayObject *)array_object;
    int n_dims = PyArray_NDIM(array);
    if (n_dims < 1 || n_dims > MG_MAX_DIMS || mg_dtype_is_quantized(dtype) ||
        (int64_t)PyArray_ITEMSIZE(array) != mg_dtype_block_bytes(dtype) || !PyArray_ISALIGNED(array)) {
        mg_py_raise(mg_error(MG_ERR_DTYPE, "tensor %s: a %d-D array of %d-byte items cannot hold %s", name, n_dims,
                             (int)PyArray_ITEMSIZE(array), dtype_name));
        return -1;
    }
    int64_t shape[MG_MAX_DIMS];
    for (int i = 0; i < n_dims; i++) shape[i] = (int64_t)PyArray_DIM(array, i);
    mg_tensor t;
    status = mg_tensor_init(&t, PyArray_DATA(array), dtype, n_dims, shape);
    for (int i = 0; status == MG_OK && i < n_dims; i++) {
        npy_intp stride = PyArray_STRIDE(array, i);
        if (stride < 0) status = mg_error(MG_ERR_UNSUPPORTED, "tensor %s: negative strides", name);
        t.strides[i] = (int64_t)stride;
    }
    if (status == MG_OK) status = mg_weights_add(weights, name, &t, false);
    if (status != MG_OK) {
        mg_py_raise(mg_error_prefix(status, "tensor %s", name));
        return -1;
    }
    return PyList_Append(keepalive, array_object);
}

/* bird_load_arrays(tensors, metadata, dtype=None, strict=False) -> handle.
 * tensors: iterable of (name, ndarray, dtype name); the arrays are borrowed
 * (kept alive by the handle), strided views (e.g. transposes) allowed.
 * Used for pickle checkpoints (.bin, .pdparams) read in Python. */
static PyObject *py_bird_load_arrays(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"tensors", "metadata", "dtype", "strict", NULL};
    PyObject *tensors, *metadata;
    const char *dtype = NULL;
    int strict = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|zp", keywords, &tensors, &metadata, &dtype, &strict))
        return NULL;
    mg_model_weights_options options;
    if (mg_py_weights_options(dtype, strict != 0, &options) < 0) return NULL;
    PyObject *iterator = PyObject_GetIter(tensors);
    if (!iterator) return NULL;
    mg_py_bird *m = calloc(1, sizeof *m);
    if (!m) {
        Py_DECREF(iterator);
        return PyErr_NoMemory();
    }
    m->keepalive = PyList_New(0);
    mg_status status = m->keepalive ? mg_weights_create(&m->weights) : MG_ERR_NO_MEMORY;
    int failed = status != MG_OK ? (m->keepalive ? mg_py_raise_int(status) : -1) : 0;
    PyObject *entry;
    while (!failed && (entry = PyIter_Next(iterator))) {
        failed = mg_py_bird_add_array(m->weights, entry, m->keepalive);
        Py_DECREF(entry);
    }
    Py_DECREF(iterator);
    if (!failed && PyErr_Occurred()) failed = -1;
    if (!failed) failed = mg_py_bird_set_metadata(m->weights, metadata);
    if (!failed) {
        Py_BEGIN_ALLOW_THREADS
        status = mg_bird_load(m->weights, &options, &m->bird);
        Py_END_ALLOW_THREADS
        if (status != MG_OK) failed = mg_py_raise_int(status);
    }
    PyObject *capsule = failed ? NULL : PyCapsule_New(m, MG_PY_BIRD, mg_py_bird_destroy);
    if (!capsule) {
        mg_bird_free(m->bird);
        mg_weights_destroy(m->weights);
        Py_XDECREF(m->keepalive);
        free(m);
    }
    return capsule;
}

/* bird_check_tensors(specs, metadata, strict=True) -> None.
 * A metadata-only load: specs are (name, dtype name, shape) of a checkpoint
 * of any size; every tensor reads as zeros from one shared read-only
 * anonymous mapping (no memory is committed), and mg_bird_load runs on that
 * table with the given options. Raises what the loader raises (missing or
 * unused tensor, wrong shape). Only formats whose load needs no
 * conversion (f32 matrices) are cheap: the loader's conversions still run. */
static PyObject *py_bird_check_tensors(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"specs", "metadata", "strict", NULL};
    PyObject *specs, *metadata;
    int strict = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|p", keywords, &specs, &metadata, &strict)) return NULL;
    PyObject *sequence = PySequence_Fast(specs, "specs must be a sequence of (name, dtype, shape)");
    if (!sequence) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(sequence);
    mg_weights *weights = NULL;
    mg_status status = mg_weights_create(&weights);
    if (status != MG_OK) {
        Py_DECREF(sequence);
        return mg_py_raise(status);
    }
    /* Pass 1: parse and find the largest tensor. */
    size_t largest = 64;
    int failed = 0;
    typedef struct { const char *name; mg_dtype dtype; int n_dims; int64_t shape[MG_MAX_DIMS]; } spec_t;
    spec_t *parsed = calloc((size_t)(n > 0 ? n : 1), sizeof *parsed);
    if (!parsed) failed = (PyErr_NoMemory(), -1);
    for (Py_ssize_t i = 0; !failed && i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(sequence, i), *shape_object;
        const char *dtype_name;
        if (!PyTuple_Check(item) || !PyArg_ParseTuple(item, "ssO", &parsed[i].name, &dtype_name, &shape_object)) {
            PyErr_Clear();
            failed = mg_py_raise_int(mg_error(MG_ERR_INVALID_ARGUMENT, "spec %zd: expected (name, dtype, shape)", (ssize_t)i));
            break;
        }
        status = mg_dtype_from_name(dtype_name, &parsed[i].dtype);
        PyObject *shape = status == MG_OK ? PySequence_Fast(shape_object, "shape must be a sequence") : NULL;
        if (status != MG_OK) {
            failed = mg_py_raise_int(mg_error_prefix(status, "tensor %s", parsed[i].name));
            break;
        }
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
        for (int d = 0; d < parsed[i].n_dims; d++)
            parsed[i].shape[d] = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(shape, d));
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
        size_t bytes = mg_tensor_nbytes(&probe);
        if (bytes > largest) largest = bytes;
    }
    void *zeros = MAP_FAILED;
    if (!failed) {
        zeros = mmap(NULL, largest, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (zeros == MAP_FAILED)
            failed = mg_py_raise_int(mg_error(MG_ERR_NO_MEMORY, "bird_check_tensors: cannot map %zu bytes", largest));
    }
    for (Py_ssize_t i = 0; !failed && i < n; i++) {
        mg_tensor t;
        status = mg_tensor_init(&t, zeros, parsed[i].dtype, parsed[i].n_dims, parsed[i].shape);
        if (status == MG_OK) status = mg_weights_add(weights, parsed[i].name, &t, false);
        if (status != MG_OK) failed = mg_py_raise_int(mg_error_prefix(status, "tensor %s", parsed[i].name));
    }
    if (!failed) failed = mg_py_bird_set_metadata(weights, metadata);
    if (!failed) {
        mg_model_weights_options options = {false, MG_F32, strict != 0};
        mg_bird *bird = NULL;
        Py_BEGIN_ALLOW_THREADS
        status = mg_bird_load(weights, &options, &bird);
        mg_bird_free(bird);
        Py_END_ALLOW_THREADS
        if (status != MG_OK) failed = mg_py_raise_int(status);
    }
    mg_weights_destroy(weights);
    if (zeros != MAP_FAILED) munmap(zeros, largest);
    free(parsed);
    Py_DECREF(sequence);
    if (failed) return NULL;
    Py_RETURN_NONE;
}

/* bird_info(model) -> dict of the loaded hyper-parameters */
static PyObject *py_bird_info(PyObject *self, PyObject *capsule) {
    mg_py_bird *m = mg_py_bird_get(capsule);
    if (!m) return NULL;
    const mg_decoder_config *c = mg_decoder_get_config(mg_bird_decoder(m->bird));
    return Py_BuildValue("{s:i,s:i,s:L,s:i,s:i,s:i,s:i,s:i,s:L}", "image_size", mg_bird_image_size(m->bird),
                         "image_start_id", (int)mg_bird_image_start_id(m->bird), "image_tokens",
                         (long long)mg_bird_image_tokens(m->bird), "hidden_size", c->hidden_size, "vocab_size",
                         c->vocab_size, "n_layers", c->n_layers, "n_heads", c->n_heads, "head_dim", c->head_dim,
                         "vit_width", (long long)mg_vit_width(mg_bird_vit(m->bird)));
}

/* A C-contiguous float32 array of exactly n_dims dims (a new reference). */
static PyArrayObject *mg_py_float_array(PyObject *object, int n_dims, const char *what) {
    PyArrayObject *array = (PyArrayObject *)PyArray_FROMANY(object, NPY_FLOAT32, n_dims, n_dims,
                                                            NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED);
    if (!array) {
        PyErr_Clear();
        mg_py_raise(mg_error(MG_ERR_SHAPE, "%s must be a %d-D float32 array", what, n_dims));
    }
    return array;
}

static PyArrayObject *mg_py_token_array(PyObject *object) {
    PyArrayObject *array = (PyArrayObject *)PyArray_FROMANY(object, NPY_INT32, 1, 1,
                                                            NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED | NPY_ARRAY_FORCECAST);
    if (!array) {
        PyErr_Clear();
        mg_py_raise(mg_error(MG_ERR_INVALID_ARGUMENT, "tokens must be a 1-D sequence of integers"));
        return NULL;
    }
    if (PyArray_SIZE(array) == 0) {
        Py_DECREF(array);
        mg_py_raise(mg_error(MG_ERR_INVALID_ARGUMENT, "tokens is empty"));
        return NULL;
    }
    return array;
}

/* bird_encode_image(model, pixels[3,S,S], return_features=False)
 *   -> embeddings [image_tokens, hidden] (, vit features [T, width]) */
static PyObject *py_bird_encode_image(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"model", "pixels", "return_features", NULL};
    PyObject *capsule, *pixels_object;
    int return_features = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|p", keywords, &capsule, &pixels_object, &return_features))
        return NULL;
    mg_py_bird *m = mg_py_bird_get(capsule);
    if (!m) return NULL;
    mg_context *ctx = mg_py_default_context();
    if (!ctx) return NULL;
    PyArrayObject *pixels = mg_py_float_array(pixels_object, 3, "pixels");
    if (!pixels) return NULL;
    mg_vit *vit = mg_bird_vit(m->bird);
    npy_intp e_dims[2] = {(npy_intp)mg_bird_image_tokens(m->bird), (npy_intp)mg_resampler_dim(mg_bird_resampler(m->bird))};
    npy_intp f_dims[2] = {(npy_intp)mg_vit_n_tokens(vit), (npy_intp)mg_vit_width(vit)};
    PyObject *embeddings = PyArray_SimpleNew(2, e_dims, NPY_FLOAT32);
    PyObject *features = return_features ? PyArray_SimpleNew(2, f_dims, NPY_FLOAT32) : NULL;
    if (!embeddings || (return_features && !features)) {
        Py_DECREF(pixels);
        Py_XDECREF(embeddings);
        Py_XDECREF(features);
        return NULL;
    }
    mg_tensor p, e, f;
    mg_status status = mg_py_tensor_from_array(pixels, &p);
    if (status == MG_OK) status = mg_py_tensor_from_array((PyArrayObject *)embeddings, &e);
    if (status == MG_OK && features) status = mg_py_tensor_from_array((PyArrayObject *)features, &f);
    if (status == MG_OK) status = mg_py_bird_enter(m);
    if (status == MG_OK) {
        Py_BEGIN_ALLOW_THREADS
        status = mg_bird_encode_image(ctx, m->bird, &p, &e, features ? &f : NULL);
        Py_END_ALLOW_THREADS
        m->busy = 0;
    }
    Py_DECREF(pixels);
    if (status != MG_OK) {
        Py_DECREF(embeddings);
        Py_XDECREF(features);
        return mg_py_raise(status);
    }
    if (!features) return embeddings;
    return Py_BuildValue("(NN)", embeddings, features);
}

int mg_py_kv_cache_create(const mg_decoder *decoder, int capacity, const char *dtype_name, mg_kv_cache **out) {
    mg_dtype dtype = MG_F32;
    mg_status status = dtype_name ? mg_dtype_from_name(dtype_name, &dtype) : MG_OK;
    if (status == MG_OK)
        status = dtype_name ? mg_kv_cache_create_typed(decoder, capacity, dtype, out)
                            : mg_kv_cache_create(decoder, capacity, out);
    return status == MG_OK ? 0 : mg_py_raise_int(status);
}

/* kv_cache_new(model, capacity, dtype=None) -> cache handle (raw decoder cache) */
static PyObject *py_bird_kv_cache_new(PyObject *self, PyObject *args) {
    PyObject *capsule;
    int capacity;
    const char *dtype_name = NULL;
    if (!PyArg_ParseTuple(args, "Oi|z", &capsule, &capacity, &dtype_name)) return NULL;
    mg_py_bird *m = mg_py_bird_get(capsule);
    if (!m) return NULL;
    mg_py_kv_cache *c = calloc(1, sizeof *c);
    if (!c) return PyErr_NoMemory();
    if (mg_py_kv_cache_create(mg_bird_decoder(m->bird), capacity, dtype_name, &c->cache) < 0) {
        free(c);
        return NULL;
    }
    Py_INCREF(capsule);
    c->model = capsule;
    PyObject *handle = PyCapsule_New(c, MG_PY_KV_CACHE, mg_py_kv_cache_destroy);
    if (!handle) {
        mg_kv_cache_free(c->cache);
        Py_DECREF(capsule);
        free(c);
    }
    return handle;
}

/* kv_cache_dtype(cache) -> "f32" | "f16" (for BiRD and MedPLIB caches) */
static PyObject *py_kv_cache_dtype(PyObject *self, PyObject *capsule) {
    const mg_kv_cache *cache = NULL;
    if (PyCapsule_IsValid(capsule, MG_PY_KV_CACHE)) {
        cache = ((mg_py_kv_cache *)PyCapsule_GetPointer(capsule, MG_PY_KV_CACHE))->cache;
    } else {
        mg_kv_cache *medplib = mg_py_medplib_cache_of(capsule);
        if (!medplib) return NULL;
        cache = medplib;
    }
    return PyUnicode_FromString(mg_dtype_name(mg_kv_cache_dtype(cache)));
}

/* bird_forward(model, cache, tokens, image_embeddings=None, all_logits=False,
 *              layer_hidden=False) -> (logits, layer_hidden or None)
 * Appends the tokens to the cache; image rows are the <img> spans of these
 * tokens. */
static PyObject *py_bird_forward(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"model", "cache", "tokens", "image_embeddings", "all_logits", "layer_hidden", NULL};
    PyObject *capsule, *cache_capsule, *tokens_object, *images_object = Py_None;
    int all_logits = 0, want_layers = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOO|Opp", keywords, &capsule, &cache_capsule, &tokens_object,
                                     &images_object, &all_logits, &want_layers))
        return NULL;
    mg_py_bird *m = mg_py_bird_get(capsule);
    if (!m) return NULL;
    mg_py_kv_cache *c = PyCapsule_GetPointer(cache_capsule, MG_PY_KV_CACHE);
    if (!c) return NULL;
    if (c->model != capsule)
        return mg_py_raise(mg_error(MG_ERR_INVALID_ARGUMENT, "bird_forward: the cache belongs to another model"));
    mg_context *ctx = mg_py_default_context();
    if (!ctx) return NULL;
    PyArrayObject *tokens = mg_py_token_array(tokens_object);
    if (!tokens) return NULL;
    PyArrayObject *images = NULL;
    if (images_object != Py_None && !(images = mg_py_float_array(images_object, 2, "image_embeddings"))) {
        Py_DECREF(tokens);
        return NULL;
    }
    const mg_decoder_config *config = mg_decoder_get_config(mg_bird_decoder(m->bird));
    int n = (int)PyArray_SIZE(tokens);
    npy_intp l_dims[2] = {all_logits ? n : 1, config->vocab_size};
    npy_intp h_dims[3] = {config->n_layers + 1, n, config->hidden_size};
    PyObject *logits = PyArray_SimpleNew(2, l_dims, NPY_FLOAT32);
    PyObject *layers = want_layers ? PyArray_SimpleNew(3, h_dims, NPY_FLOAT32) : NULL;
    int32_t *rows = malloc((size_t)n * sizeof *rows);
    mg_status status = MG_OK;
    if (!logits || (want_layers && !layers) || !rows) status = mg_error(MG_ERR_NO_MEMORY, "bird_forward: out of memory");
    mg_tensor l_t, h_t, e_t;
    int n_rows = 0;
    if (status == MG_OK) status = mg_py_tensor_from_array((PyArrayObject *)logits, &l_t);
    if (status == MG_OK && layers) status = mg_py_tensor_from_array((PyArrayObject *)layers, &h_t);
    if (status == MG_OK && images) status = mg_py_tensor_from_array(images, &e_t);
    if (status == MG_OK) status = mg_bird_image_rows(m->bird, PyArray_DATA(tokens), n, rows, n, &n_rows);
    if (status == MG_OK && n_rows > 0 && !images)
        status = mg_error(MG_ERR_INVALID_ARGUMENT, "bird_forward: the tokens have %d image rows but no image_embeddings", n_rows);
    if (status == MG_OK) status = mg_py_bird_enter(m);
    if (status == MG_OK) {
        mg_decoder_input input = {PyArray_DATA(tokens), n, n_rows ? &e_t : NULL, rows, n_rows};
        Py_BEGIN_ALLOW_THREADS
        status = mg_decoder_forward(ctx, mg_bird_decoder(m->bird), c->cache, &input, &l_t, NULL, layers ? &h_t : NULL);
        Py_END_ALLOW_THREADS
        m->busy = 0;
    }
    free(rows);
    Py_DECREF(tokens);
    Py_XDECREF(images);
    if (status != MG_OK) {
        Py_XDECREF(logits);
        Py_XDECREF(layers);
        return mg_py_raise(status);
    }
    if (!layers) {
        Py_INCREF(Py_None);
        layers = Py_None;
    }
    return Py_BuildValue("(NN)", logits, layers);
}

/* bird_session_new(model, capacity) -> session handle */
static PyObject *py_bird_session_new(PyObject *self, PyObject *args) {
    PyObject *capsule;
    int capacity;
    if (!PyArg_ParseTuple(args, "Oi", &capsule, &capacity)) return NULL;
    mg_py_bird *m = mg_py_bird_get(capsule);
    if (!m) return NULL;
    mg_py_bird_session *s = calloc(1, sizeof *s);
    if (!s) return PyErr_NoMemory();
    mg_status status = mg_bird_session_create(m->bird, capacity, &s->session);
    if (status != MG_OK) {
        free(s);
        return mg_py_raise(status);
    }
    Py_INCREF(capsule);
    s->model = capsule;
    PyObject *handle = PyCapsule_New(s, MG_PY_BIRD_SESSION, mg_py_bird_session_destroy);
    if (!handle) {
        mg_bird_session_free(s->session);
        Py_DECREF(capsule);
        free(s);
    }
    return handle;
}

static PyObject *py_bird_session_length(PyObject *self, PyObject *handle) {
    mg_py_bird_session *s = PyCapsule_GetPointer(handle, MG_PY_BIRD_SESSION);
    if (!s) return NULL;
    return PyLong_FromLong(mg_kv_cache_length(mg_bird_session_cache(s->session)));
}

bool mg_py_stream_token(void *user_data, int32_t token) {
    mg_py_stream *stream = user_data;
    PyGILState_STATE gil = PyGILState_Ensure();
    PyObject *result = PyObject_CallFunction(stream->callback, "i", (int)token);
    bool go_on = result != NULL && (result == Py_None || PyObject_IsTrue(result) == 1);
    if (!result) stream->failed = true;
    Py_XDECREF(result);
    PyGILState_Release(gil);
    return go_on;
}

int mg_py_generate_options(const char *op, int max_new_tokens, int do_sample, float temperature, int top_k,
                           float top_p, unsigned long long seed, PyArrayObject *stops, PyObject *callback,
                           mg_py_stream *stream, mg_generate_options *options) {
    if (max_new_tokens < 0 || max_new_tokens > 1 << 20) {
        mg_py_raise(mg_error(MG_ERR_INVALID_ARGUMENT, "%s: max_new_tokens %d out of range", op, max_new_tokens));
        return -1;
    }
    if (callback != Py_None && !PyCallable_Check(callback)) {
        mg_py_raise(mg_error(MG_ERR_INVALID_ARGUMENT, "%s: callback must be callable or None", op));
        return -1;
    }
    stream->callback = callback;
    stream->failed = false;
    *options = (mg_generate_options){
        .max_new_tokens = max_new_tokens,
        .do_sample = do_sample != 0,
        .temperature = temperature,
        .top_k = top_k,
        .top_p = top_p,
        .seed = (uint64_t)seed,
        .stop_tokens = stops ? PyArray_DATA(stops) : NULL,
        .n_stop_tokens = stops ? (int)PyArray_SIZE(stops) : 0,
        .on_token = callback != Py_None ? mg_py_stream_token : NULL,
        .user_data = stream,
    };
    return 0;
}

/* bird_generate(model, session, tokens, image_embeddings=None, max_new_tokens=80,
 *   do_sample=False, temperature=1.0, top_k=0, top_p=1.0, seed=0,
 *   stop_tokens=(), callback=None) -> list of new token ids */
static PyObject *py_bird_generate(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"model", "session", "tokens", "image_embeddings", "max_new_tokens", "do_sample",
                               "temperature", "top_k", "top_p", "seed", "stop_tokens", "callback", NULL};
    PyObject *capsule, *session_capsule, *tokens_object, *images_object = Py_None, *stop_object = NULL,
                                                            *callback = Py_None;
    int max_new_tokens = 80, do_sample = 0, top_k = 0;
    float temperature = 1.0f, top_p = 1.0f;
    unsigned long long seed = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOO|OipfifKOO", keywords, &capsule, &session_capsule,
                                     &tokens_object, &images_object, &max_new_tokens, &do_sample, &temperature, &top_k,
                                     &top_p, &seed, &stop_object, &callback))
        return NULL;
    mg_py_bird *m = mg_py_bird_get(capsule);
    if (!m) return NULL;
    mg_py_bird_session *s = PyCapsule_GetPointer(session_capsule, MG_PY_BIRD_SESSION);
    if (!s) return NULL;
    if (s->model != capsule)
        return mg_py_raise(mg_error(MG_ERR_INVALID_ARGUMENT, "bird_generate: the session belongs to another model"));
    mg_context *ctx = mg_py_default_context();
    if (!ctx) return NULL;
    PyArrayObject *tokens = mg_py_token_array(tokens_object);
    if (!tokens) return NULL;
    PyArrayObject *images = NULL, *stops = NULL;
    if (images_object != Py_None && !(images = mg_py_float_array(images_object, 2, "image_embeddings"))) {
        Py_DECREF(tokens);
        return NULL;
    }
    if (stop_object && stop_object != Py_None) {
        stops = (PyArrayObject *)PyArray_FROMANY(stop_object, NPY_INT32, 1, 1,
                                                 NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_FORCECAST);
        if (!stops) {
            Py_DECREF(tokens);
            Py_XDECREF(images);
            return NULL;
        }
    }
    mg_py_stream stream;
    mg_generate_options options;
    if (mg_py_generate_options("bird_generate", max_new_tokens, do_sample, temperature, top_k, top_p, seed, stops,
                               callback, &stream, &options) < 0) {
        Py_DECREF(tokens);
        Py_XDECREF(images);
        Py_XDECREF(stops);
        return NULL;
    }
    int32_t *out = malloc((size_t)(max_new_tokens > 0 ? max_new_tokens : 1) * sizeof *out);
    int n_out = 0;
    mg_tensor e_t;
    mg_status status = out ? MG_OK : mg_error(MG_ERR_NO_MEMORY, "bird_generate: out of memory");
    if (status == MG_OK && images) status = mg_py_tensor_from_array(images, &e_t);
    if (status == MG_OK) status = mg_py_bird_enter(m);
    if (status == MG_OK) {
        Py_BEGIN_ALLOW_THREADS
        status = mg_bird_generate(ctx, m->bird, s->session, PyArray_DATA(tokens), (int)PyArray_SIZE(tokens),
                                  images ? &e_t : NULL, &options, out, max_new_tokens, &n_out);
        Py_END_ALLOW_THREADS
        m->busy = 0;
    }
    Py_DECREF(tokens);
    Py_XDECREF(images);
    Py_XDECREF(stops);
    if (stream.failed) {
        free(out);
        return NULL; /* the callback's exception */
    }
    if (status != MG_OK) {
        free(out);
        return mg_py_raise(status);
    }
    PyObject *list = PyList_New(n_out);
    for (int i = 0; list && i < n_out; i++) PyList_SET_ITEM(list, i, PyLong_FromLong(out[i]));
    free(out);
    return list;
}

/* bird_parse_boxes(text: bytes, width=0, height=0, grid=1000) -> list of
 * (valid, issues, (x1, y1, x2, y2), (grid x1, y1, x2, y2), label_start,
 *  label_length, span_start, span_length); spans are byte offsets. */
static PyObject *py_bird_parse_boxes(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"text", "width", "height", "grid", NULL};
    Py_buffer text;
    double width = 0, height = 0, grid = 1000;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*|ddd", keywords, &text, &width, &height, &grid)) return NULL;
    int64_t room = 16, count = 0;
    mg_bird_box *boxes = NULL;
    mg_status status = MG_OK;
    for (;;) {
        mg_bird_box *grown = realloc(boxes, (size_t)room * sizeof *boxes);
        if (!grown) {
            status = mg_error(MG_ERR_NO_MEMORY, "bird_parse_boxes: out of memory");
            break;
        }
        boxes = grown;
        status = mg_bird_parse_boxes(text.buf, (size_t)text.len, width, height, grid, boxes, room, &count);
        if (status != MG_OK || count <= room) break;
        room = count;
    }
    PyBuffer_Release(&text);
    if (status != MG_OK) {
        free(boxes);
        return mg_py_raise(status);
    }
    PyObject *list = PyList_New((Py_ssize_t)count);
    for (int64_t i = 0; list && i < count; i++) {
        const mg_bird_box *b = &boxes[i];
        PyObject *item = Py_BuildValue("(OI(dddd)(dddd)LLLL)", b->valid ? Py_True : Py_False, b->issues, b->x1, b->y1,
                                       b->x2, b->y2, b->grid_x1, b->grid_y1, b->grid_x2, b->grid_y2,
                                       (long long)b->label_start, (long long)b->label_length,
                                       (long long)b->span_start, (long long)b->span_length);
        if (!item) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, item);
    }
    free(boxes);
    return list;
}

/* bird_build_prompt(model, tokenizer_path, messages, system=None, with_image=True)
 * -> list of ids (mg_bird_build_prompt with a Qwen tokenizer loaded from
 * tokenizer_path, e.g. qwen.tiktoken). */
static PyObject *py_bird_build_prompt(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"model", "tokenizer_path", "messages", "system", "with_image", NULL};
    PyObject *capsule, *path_object, *messages_object;
    const char *system = NULL;
    int with_image = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO&O|zp", keywords, &capsule, PyUnicode_FSConverter, &path_object,
                                     &messages_object, &system, &with_image))
        return NULL;
    mg_py_bird *m = mg_py_bird_get(capsule);
    PyObject *sequence = m ? PySequence_Fast(messages_object, "messages must be a sequence of str") : NULL;
    if (!sequence) {
        Py_DECREF(path_object);
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(sequence);
    const char **messages = calloc((size_t)(n > 0 ? n : 1), sizeof *messages);
    int failed = messages ? 0 : (PyErr_NoMemory(), -1);
    for (Py_ssize_t i = 0; !failed && i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(sequence, i);
        messages[i] = PyUnicode_Check(item) ? PyUnicode_AsUTF8(item) : NULL;
        if (!messages[i]) {
            PyErr_Clear();
            failed = mg_py_raise_int(mg_error(MG_ERR_INVALID_ARGUMENT, "message %zd is not a str", (ssize_t)i));
        }
    }
    int32_t *ids = NULL;
    size_t n_ids = 0;
    if (!failed) {
        mg_tokenizer *tok = NULL;
        mg_status status = mg_tokenizer_load_qwen(PyBytes_AS_STRING(path_object), &tok);
        if (status == MG_OK)
            status = mg_bird_build_prompt(m->bird, tok, system, messages, (int)n, with_image != 0, &ids, &n_ids);
        mg_tokenizer_destroy(tok);
        if (status != MG_OK) failed = mg_py_raise_int(status);
    }
    free(messages);
    Py_DECREF(sequence);
    Py_DECREF(path_object);
    if (failed) return NULL;
    PyObject *list = PyList_New((Py_ssize_t)n_ids);
    for (size_t i = 0; list && i < n_ids; i++) PyList_SET_ITEM(list, (Py_ssize_t)i, PyLong_FromLong(ids[i]));
    free(ids);
    return list;
}

static PyMethodDef mg_py_bird_methods[] = {
    {"bird_load", (PyCFunction)(void (*)(void))py_bird_load, METH_VARARGS | METH_KEYWORDS,
     "bird_load(path, dtype=None, strict=False) -> handle. Load a Qwen-VL/BiRD checkpoint (HF folder, safetensors, GGUF; GPTQ int4 accepted)."},
    {"bird_load_arrays", (PyCFunction)(void (*)(void))py_bird_load_arrays, METH_VARARGS | METH_KEYWORDS,
     "bird_load_arrays(tensors, metadata, dtype=None, strict=False) -> handle. tensors: (name, ndarray, dtype) "
     "borrowed; metadata: flattened config ('config.hidden_size': 4096, ...)."},
    {"bird_check_tensors", (PyCFunction)(void (*)(void))py_bird_check_tensors, METH_VARARGS | METH_KEYWORDS,
     "bird_check_tensors(specs, metadata, strict=True) -> None. Metadata-only load of (name, dtype, shape) specs "
     "(zero-backed, nothing committed); raises what mg_bird_load raises."},
    {"bird_info", py_bird_info, METH_O, "bird_info(model) -> dict of hyper-parameters."},
    {"bird_build_prompt", (PyCFunction)(void (*)(void))py_bird_build_prompt, METH_VARARGS | METH_KEYWORDS,
     "bird_build_prompt(model, tokenizer_path, messages, system=None, with_image=True) -> ChatML ids "
     "(mg_bird_build_prompt; messages: user, assistant, ..., user)."},
    {"bird_parse_boxes", (PyCFunction)(void (*)(void))py_bird_parse_boxes, METH_VARARGS | METH_KEYWORDS,
     "bird_parse_boxes(text: bytes, width=0, height=0, grid=1000) -> [(valid, issues, pixels, grid_box, "
     "label_start, label_length, span_start, span_length)] (byte offsets)."},
    {"bird_encode_image", (PyCFunction)(void (*)(void))py_bird_encode_image, METH_VARARGS | METH_KEYWORDS,
     "bird_encode_image(model, pixels, return_features=False) -> embeddings (, vit features)."},
    {"bird_kv_cache_new", py_bird_kv_cache_new, METH_VARARGS,
     "bird_kv_cache_new(model, capacity, dtype=None) -> KV cache handle ('f32' / 'f16'; None: f16 for bf16 / q8_0 / q4_0 weights)."},
    {"kv_cache_dtype", py_kv_cache_dtype, METH_O, "kv_cache_dtype(cache) -> 'f32' or 'f16' (BiRD or MedPLIB cache)."},
    {"bird_forward", (PyCFunction)(void (*)(void))py_bird_forward, METH_VARARGS | METH_KEYWORDS,
     "bird_forward(model, cache, tokens, image_embeddings=None, all_logits=False, layer_hidden=False) -> (logits, layer_hidden)."},
    {"bird_session_new", py_bird_session_new, METH_VARARGS, "bird_session_new(model, capacity) -> session handle."},
    {"bird_session_length", py_bird_session_length, METH_O, "bird_session_length(session) -> cached positions."},
    {"bird_generate", (PyCFunction)(void (*)(void))py_bird_generate, METH_VARARGS | METH_KEYWORDS,
     "bird_generate(model, session, tokens, image_embeddings=None, max_new_tokens=80, do_sample=False, temperature=1.0, "
     "top_k=0, top_p=1.0, seed=0, stop_tokens=(), callback=None) -> new token ids."},
    {NULL, NULL, 0, NULL},
};

/* ====================== end of BiRD ====================================== */

/* ======================================================================== */
/* == MedPLIB / SAM (owned by the SAM/MedPLIB engineer)                   == */
/* ======================================================================== */

/* ====================== end of MedPLIB / SAM ============================= */

int mg_py_register_models(PyObject *module) {
    if (PyModule_AddFunctions(module, mg_py_bird_methods) < 0) return -1;
    if (mg_py_register_sam(module) < 0) return -1;
    return 0;
}

/* ======================================================================
 * SAM-Med2D / MedPLIB bindings (owned by the SAM/MedPLIB engineer; kept in
 * this one block and registered by mg_py_register_sam).
 * ====================================================================== */

/* A SAM model handle: the weights table it borrows from plus the model. */
typedef struct {
    mg_weights *weights;
    mg_sam *sam;
} mg_py_sam_handle;

#define MG_PY_SAM_CAPSULE "medground._C.SamModel"

static void mg_py_sam_capsule_free(PyObject *capsule) {
    mg_py_sam_handle *handle = PyCapsule_GetPointer(capsule, MG_PY_SAM_CAPSULE);
    if (!handle) return;
    mg_sam_destroy(handle->sam);
    mg_weights_destroy(handle->weights);
    free(handle);
}

static mg_py_sam_handle *mg_py_sam_from(PyObject *capsule) {
    return PyCapsule_GetPointer(capsule, MG_PY_SAM_CAPSULE);
}

/* dict {name: ndarray} -> new in-memory mg_weights holding copies. */
static int mg_py_weights_from_dict(PyObject *dict, mg_weights **out) {
    mg_status status = mg_weights_create(out);
    if (status != MG_OK) return mg_py_raise_int(status);
    PyObject *key, *value;
    Py_ssize_t position = 0;
    while (PyDict_Next(dict, &position, &key, &value)) {
        const char *name = PyUnicode_AsUTF8(key);
        if (!name) goto fail;
        PyArrayObject *array = (PyArrayObject *)PyArray_FROMANY(value, NPY_NOTYPE, 0, MG_MAX_DIMS,
                                                                NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED);
        if (!array) goto fail;
        mg_tensor tensor;
        status = mg_py_tensor_from_array(array, &tensor);
        if (status == MG_OK) status = mg_weights_add(*out, name, &tensor, true);
        Py_DECREF(array);
        if (status != MG_OK) {
            mg_error_prefix(status, "weight '%s'", name);
            mg_py_raise(status);
            goto fail;
        }
    }
    return 0;
fail:
    mg_weights_destroy(*out);
    *out = NULL;
    return -1;
}

/* sam_create(weights: dict | str, prefix="", decoder_heads=0) -> handle */
static PyObject *py_sam_create(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"weights", "prefix", "decoder_heads", NULL};
    PyObject *source;
    const char *prefix = "";
    int decoder_heads = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|si", keywords, &source, &prefix, &decoder_heads))
        return NULL;
    mg_py_sam_handle *handle = calloc(1, sizeof *handle);
    if (!handle) return PyErr_NoMemory();
    mg_status status = MG_OK;
    if (PyDict_Check(source)) {
        if (mg_py_weights_from_dict(source, &handle->weights) < 0) {
            free(handle);
            return NULL;
        }
    } else if (PyUnicode_Check(source)) {
        const char *path = PyUnicode_AsUTF8(source);
        if (!path) {
            free(handle);
            return NULL;
        }
        Py_BEGIN_ALLOW_THREADS
        status = mg_weights_open(path, &handle->weights);
        Py_END_ALLOW_THREADS
    } else {
        free(handle);
        PyErr_SetString(PyExc_TypeError, "weights must be a dict of name -> numpy array or a checkpoint path");
        return NULL;
    }
    if (status == MG_OK) status = mg_sam_create(handle->weights, prefix, decoder_heads, &handle->sam);
    if (status != MG_OK) {
        mg_weights_destroy(handle->weights);
        free(handle);
        return mg_py_raise(status);
    }
    PyObject *capsule = PyCapsule_New(handle, MG_PY_SAM_CAPSULE, mg_py_sam_capsule_free);
    if (!capsule) {
        mg_sam_destroy(handle->sam);
        mg_weights_destroy(handle->weights);
        free(handle);
    }
    return capsule;
}

static PyObject *py_sam_info(PyObject *self, PyObject *capsule) {
    mg_py_sam_handle *handle = mg_py_sam_from(capsule);
    if (!handle) return NULL;
    mg_sam_info info;
    mg_status status = mg_sam_get_info(handle->sam, &info);
    if (status != MG_OK) return mg_py_raise(status);
    int n_global = info.n_global_blocks < 16 ? info.n_global_blocks : 16;
    PyObject *global = PyTuple_New(n_global);
    if (!global) return NULL;
    for (int i = 0; i < n_global; i++) PyTuple_SET_ITEM(global, i, PyLong_FromLong(info.global_blocks[i]));
    return Py_BuildValue("{s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:N,s:O,s:i,s:i,s:i,s:i}", "image_size", info.image_size,
                         "patch_size", info.patch_size, "grid", info.grid, "embed_dim", info.embed_dim, "depth",
                         info.depth, "n_heads", info.n_heads, "window_size", info.window_size, "global_blocks",
                         global, "adapters", info.adapters ? Py_True : Py_False, "prompt_dim", info.prompt_dim,
                         "decoder_heads", info.decoder_heads, "n_mask_tokens", info.n_mask_tokens, "low_res_size",
                         info.low_res_size);
}

/* Contiguous f32 copy of an optional array argument (NULL for None). */
static PyArrayObject *mg_py_sam_f32(PyObject *object, int min_dims, int max_dims) {
    if (!object || object == Py_None) return NULL;
    return (PyArrayObject *)PyArray_FROMANY(object, NPY_FLOAT32, min_dims, max_dims,
                                            NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED | NPY_ARRAY_FORCECAST);
}

static PyObject *mg_py_sam_new_f32(int n_dims, const int64_t *shape, mg_tensor *tensor) {
    npy_intp dims[MG_MAX_DIMS];
    for (int i = 0; i < n_dims; i++) dims[i] = (npy_intp)shape[i];
    PyObject *array = PyArray_SimpleNew(n_dims, dims, NPY_FLOAT32);
    if (!array) return NULL;
    bool empty = false;
    for (int i = 0; i < n_dims; i++) empty = empty || shape[i] == 0;
    if (!empty) {
        mg_status status = mg_tensor_init(tensor, PyArray_DATA((PyArrayObject *)array), MG_F32, n_dims, shape);
        if (status != MG_OK) {
            Py_DECREF(array);
            return mg_py_raise(status);
        }
    }
    return array;
}

/* sam_preprocess(handle, pixels uint8 [H, W] or [H, W, 1|3]) -> f32 [3, S, S] */
static PyObject *py_sam_preprocess(PyObject *self, PyObject *args) {
    PyObject *capsule, *object;
    if (!PyArg_ParseTuple(args, "OO", &capsule, &object)) return NULL;
    mg_py_sam_handle *handle = mg_py_sam_from(capsule);
    if (!handle) return NULL;
    PyArrayObject *pixels = (PyArrayObject *)PyArray_FROMANY(object, NPY_UINT8, 2, 3,
                                                             NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED);
    if (!pixels) return NULL;
    int height = (int)PyArray_DIM(pixels, 0), width = (int)PyArray_DIM(pixels, 1);
    int channels = PyArray_NDIM(pixels) == 3 ? (int)PyArray_DIM(pixels, 2) : 1;
    mg_sam_info info;
    mg_sam_get_info(handle->sam, &info);
    mg_tensor image;
    PyObject *result = mg_py_sam_new_f32(3, (int64_t[]){3, info.image_size, info.image_size}, &image);
    if (!result) {
        Py_DECREF(pixels);
        return NULL;
    }
    mg_status status;
    Py_BEGIN_ALLOW_THREADS
    status = mg_sam_preprocess(handle->sam, PyArray_DATA(pixels), height, width, channels, &image);
    Py_END_ALLOW_THREADS
    Py_DECREF(pixels);
    if (status != MG_OK) {
        Py_DECREF(result);
        return mg_py_raise(status);
    }
    return result;
}

/* sam_encode_image(handle, image f32 [3, S, S]) -> f32 [C, G, G] */
static PyObject *py_sam_encode_image(PyObject *self, PyObject *args) {
    PyObject *capsule, *object;
    if (!PyArg_ParseTuple(args, "OO", &capsule, &object)) return NULL;
    mg_py_sam_handle *handle = mg_py_sam_from(capsule);
    if (!handle) return NULL;
    mg_context *ctx = mg_py_default_context();
    if (!ctx) return NULL;
    PyArrayObject *array = mg_py_sam_f32(object, 3, 3);
    if (!array) return PyErr_Occurred() ? NULL : mg_py_raise_message(MG_ERR_INVALID_ARGUMENT, "image is None");
    mg_sam_info info;
    mg_sam_get_info(handle->sam, &info);
    mg_tensor image, embedding;
    mg_status status = mg_py_tensor_from_array(array, &image);
    PyObject *result = NULL;
    if (status == MG_OK) {
        result = mg_py_sam_new_f32(3, (int64_t[]){info.prompt_dim, info.grid, info.grid}, &embedding);
        if (result) {
            Py_BEGIN_ALLOW_THREADS
            status = mg_sam_encode_image(ctx, handle->sam, &image, &embedding);
            Py_END_ALLOW_THREADS
        }
    }
    Py_DECREF(array);
    if (status != MG_OK) {
        Py_XDECREF(result);
        return mg_py_raise(status);
    }
    return result;
}

/* sam_encode_prompt(handle, points|None [N,2], labels|None [N], box|None [4], mask|None [4G,4G])
 * -> (sparse f32 [n, C], dense f32 [C, G, G]); coordinates in the S x S frame. */
static PyObject *py_sam_encode_prompt(PyObject *self, PyObject *args) {
    PyObject *capsule, *points_obj, *labels_obj, *box_obj, *mask_obj;
    if (!PyArg_ParseTuple(args, "OOOOO", &capsule, &points_obj, &labels_obj, &box_obj, &mask_obj)) return NULL;
    mg_py_sam_handle *handle = mg_py_sam_from(capsule);
    if (!handle) return NULL;
    mg_context *ctx = mg_py_default_context();
    if (!ctx) return NULL;
    mg_sam_info info;
    mg_sam_get_info(handle->sam, &info);
    PyArrayObject *points = NULL, *labels = NULL, *box = NULL, *mask = NULL;
    PyObject *sparse_array = NULL, *dense_array = NULL;
    mg_status status = MG_OK;
    int64_t n_points = 0;
    if (points_obj != Py_None) {
        points = mg_py_sam_f32(points_obj, 2, 2);
        if (!points) goto fail;
        if (PyArray_DIM(points, 1) != 2) {
            mg_py_raise_message(MG_ERR_SHAPE, "points must have shape [N, 2] (x, y)");
            goto fail;
        }
        n_points = PyArray_DIM(points, 0);
    }
    if (labels_obj != Py_None) {
        labels = (PyArrayObject *)PyArray_FROMANY(labels_obj, NPY_INT32, 1, 1,
                                                  NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED | NPY_ARRAY_FORCECAST);
        if (!labels) goto fail;
    }
    if ((points != NULL) != (labels != NULL)) {
        mg_py_raise_message(MG_ERR_INVALID_ARGUMENT, points ? "points were given without labels"
                                                            : "labels were given without points");
        goto fail;
    }
    if (labels && PyArray_DIM(labels, 0) != n_points) {
        mg_py_raise(mg_error(MG_ERR_SHAPE, "labels has %lld entries for %lld points",
                             (long long)PyArray_DIM(labels, 0), (long long)n_points));
        goto fail;
    }
    if (box_obj != Py_None) {
        box = mg_py_sam_f32(box_obj, 1, 2);
        if (!box) goto fail;
        if (PyArray_SIZE(box) != 4) {
            mg_py_raise_message(MG_ERR_SHAPE, "box must have 4 numbers (x1, y1, x2, y2)");
            goto fail;
        }
    }
    mg_tensor mask_tensor;
    if (mask_obj != Py_None) {
        mask = mg_py_sam_f32(mask_obj, 2, 3);
        if (!mask) goto fail;
        status = mg_py_tensor_from_array(mask, &mask_tensor);
        if (status == MG_OK && mask_tensor.n_dims == 3 && mask_tensor.shape[0] == 1)
            status = mg_tensor_reshape(&mask_tensor, 2, (int64_t[]){mask_tensor.shape[1], mask_tensor.shape[2]},
                                       &mask_tensor);
        if (status != MG_OK) {
            mg_py_raise(status);
            goto fail;
        }
    }
    const int64_t n_sparse = mg_sam_sparse_count(n_points, box != NULL);
    mg_tensor sparse, dense;
    sparse_array = mg_py_sam_new_f32(2, (int64_t[]){n_sparse, info.prompt_dim}, &sparse);
    dense_array = mg_py_sam_new_f32(3, (int64_t[]){info.prompt_dim, info.grid, info.grid}, &dense);
    if (!sparse_array || !dense_array) goto fail;
    Py_BEGIN_ALLOW_THREADS
    status = mg_sam_encode_prompt(ctx, handle->sam, points ? PyArray_DATA(points) : NULL,
                                  labels ? PyArray_DATA(labels) : NULL, n_points,
                                  box ? PyArray_DATA(box) : NULL, mask ? &mask_tensor : NULL,
                                  n_sparse > 0 ? &sparse : NULL, &dense);
    Py_END_ALLOW_THREADS
    if (status != MG_OK) {
        mg_py_raise(status);
        goto fail;
    }
    Py_XDECREF(points);
    Py_XDECREF(labels);
    Py_XDECREF(box);
    Py_XDECREF(mask);
    return Py_BuildValue("NN", sparse_array, dense_array);
fail:
    Py_XDECREF(points);
    Py_XDECREF(labels);
    Py_XDECREF(box);
    Py_XDECREF(mask);
    Py_XDECREF(sparse_array);
    Py_XDECREF(dense_array);
    return NULL;
}

static PyObject *py_sam_dense_pe(PyObject *self, PyObject *capsule) {
    mg_py_sam_handle *handle = mg_py_sam_from(capsule);
    if (!handle) return NULL;
    mg_sam_info info;
    mg_sam_get_info(handle->sam, &info);
    mg_tensor pe;
    PyObject *result = mg_py_sam_new_f32(3, (int64_t[]){info.prompt_dim, info.grid, info.grid}, &pe);
    if (!result) return NULL;
    mg_status status = mg_sam_dense_pe(handle->sam, &pe);
    if (status != MG_OK) {
        Py_DECREF(result);
        return mg_py_raise(status);
    }
    return result;
}

/* sam_decode(handle, embedding [C,G,G], sparse [n,C] | None, dense [C,G,G], multimask)
 * -> (low_res f32 [n_out, 4G, 4G], iou f32 [n_out]) */
static PyObject *py_sam_decode(PyObject *self, PyObject *args) {
    PyObject *capsule, *embedding_obj, *sparse_obj, *dense_obj;
    int multimask = 0;
    if (!PyArg_ParseTuple(args, "OOOOp", &capsule, &embedding_obj, &sparse_obj, &dense_obj, &multimask))
        return NULL;
    mg_py_sam_handle *handle = mg_py_sam_from(capsule);
    if (!handle) return NULL;
    mg_context *ctx = mg_py_default_context();
    if (!ctx) return NULL;
    mg_sam_info info;
    mg_sam_get_info(handle->sam, &info);
    PyArrayObject *embedding = mg_py_sam_f32(embedding_obj, 3, 3);
    PyArrayObject *dense = embedding ? mg_py_sam_f32(dense_obj, 3, 3) : NULL;
    PyArrayObject *sparse = NULL;
    PyObject *low_res_array = NULL, *iou_array = NULL;
    mg_status status = MG_OK;
    if (!embedding || !dense) {
        if (!PyErr_Occurred()) mg_py_raise_message(MG_ERR_INVALID_ARGUMENT, "embedding and dense must be arrays");
        goto fail;
    }
    if (sparse_obj != Py_None) {
        sparse = mg_py_sam_f32(sparse_obj, 2, 2);
        if (!sparse) goto fail;
    }
    mg_tensor embedding_t, dense_t, sparse_t, low_res, iou;
    status = mg_py_tensor_from_array(embedding, &embedding_t);
    if (status == MG_OK) status = mg_py_tensor_from_array(dense, &dense_t);
    bool use_sparse = sparse && PyArray_SIZE(sparse) > 0;
    if (status == MG_OK && use_sparse) status = mg_py_tensor_from_array(sparse, &sparse_t);
    if (status != MG_OK) {
        mg_py_raise(status);
        goto fail;
    }
    const int64_t n_out = multimask ? info.n_mask_tokens - 1 : 1;
    low_res_array = mg_py_sam_new_f32(3, (int64_t[]){n_out, info.low_res_size, info.low_res_size}, &low_res);
    iou_array = mg_py_sam_new_f32(1, (int64_t[]){n_out}, &iou);
    if (!low_res_array || !iou_array) goto fail;
    Py_BEGIN_ALLOW_THREADS
    status = mg_sam_decode(ctx, handle->sam, &embedding_t, use_sparse ? &sparse_t : NULL, &dense_t, multimask != 0,
                           &low_res, &iou);
    Py_END_ALLOW_THREADS
    if (status != MG_OK) {
        mg_py_raise(status);
        goto fail;
    }
    Py_DECREF(embedding);
    Py_DECREF(dense);
    Py_XDECREF(sparse);
    return Py_BuildValue("NN", low_res_array, iou_array);
fail:
    Py_XDECREF(embedding);
    Py_XDECREF(dense);
    Py_XDECREF(sparse);
    Py_XDECREF(low_res_array);
    Py_XDECREF(iou_array);
    return NULL;
}

/* sam_upscale_masks(handle, low_res [n, h, w], height, width) -> f32 [n, H, W] */
static PyObject *py_sam_upscale_masks(PyObject *self, PyObject *args) {
    PyObject *capsule, *object;
    int height, width;
    if (!PyArg_ParseTuple(args, "OOii", &capsule, &object, &height, &width)) return NULL;
    mg_py_sam_handle *handle = mg_py_sam_from(capsule);
    if (!handle) return NULL;
    mg_context *ctx = mg_py_default_context();
    if (!ctx) return NULL;
    if (height <= 0 || width <= 0 || height > 65535 || width > 65535)
        return mg_py_raise(mg_error(MG_ERR_INVALID_ARGUMENT, "output size %dx%d is out of range", width, height));
    PyArrayObject *array = mg_py_sam_f32(object, 3, 3);
    if (!array) return PyErr_Occurred() ? NULL : mg_py_raise_message(MG_ERR_INVALID_ARGUMENT, "low_res is None");
    mg_tensor low_res, out;
    mg_status status = mg_py_tensor_from_array(array, &low_res);
    PyObject *result = NULL;
    if (status == MG_OK) {
        result = mg_py_sam_new_f32(3, (int64_t[]){low_res.shape[0], height, width}, &out);
        if (result) {
            Py_BEGIN_ALLOW_THREADS
            status = mg_sam_upscale_masks(ctx, handle->sam, &low_res, &out);
            Py_END_ALLOW_THREADS
        }
    }
    Py_DECREF(array);
    if (status != MG_OK) {
        Py_XDECREF(result);
        return mg_py_raise(status);
    }
    return result;
}

static PyMethodDef mg_py_sam_methods[] = {
    {"sam_create", (PyCFunction)(void (*)(void))py_sam_create, METH_VARARGS | METH_KEYWORDS,
     "sam_create(weights: dict | str, prefix='', decoder_heads=0) -> SAM-Med2D handle"},
    {"sam_info", py_sam_info, METH_O, "sam_info(handle) -> dict of hyper-parameters"},
    {"sam_preprocess", py_sam_preprocess, METH_VARARGS,
     "sam_preprocess(handle, uint8 [H, W(, C)]) -> f32 [3, S, S] (SammedPredictor: normalise, nearest resize)"},
    {"sam_encode_image", py_sam_encode_image, METH_VARARGS, "sam_encode_image(handle, f32 [3, S, S]) -> [C, G, G]"},
    {"sam_encode_prompt", py_sam_encode_prompt, METH_VARARGS,
     "sam_encode_prompt(handle, points, labels, box, mask) -> (sparse [n, C], dense [C, G, G])"},
    {"sam_dense_pe", py_sam_dense_pe, METH_O, "sam_dense_pe(handle) -> [C, G, G]"},
    {"sam_decode", py_sam_decode, METH_VARARGS,
     "sam_decode(handle, embedding, sparse|None, dense, multimask) -> (low_res [n, 4G, 4G], iou [n])"},
    {"sam_upscale_masks", py_sam_upscale_masks, METH_VARARGS,
     "sam_upscale_masks(handle, low_res [n, h, w], height, width) -> [n, H, W]"},
    {NULL, NULL, 0, NULL},
};

int mg_py_register_sam(PyObject *module) { return PyModule_AddFunctions(module, mg_py_sam_methods); }

/* ====================== end of SAM-Med2D / MedPLIB bindings ============ */

/* Python bindings of the data module (medground._C). Thin: parse arguments,
 * check the array once, release the GIL around C work, wrap results.
 * python/medground/data/ is the user-facing layer. */
#include "py_common.h"

#include <stdlib.h>
#include <string.h>

/* A 2-D mask array as a tensor (no copy when already aligned and native).
 * New reference or NULL with an exception naming `what`. */
static PyArrayObject *mask_array(PyObject *object, const char *what, mg_tensor *tensor) {
    PyArrayObject *array = (PyArrayObject *)PyArray_FromAny(
        object, NULL, 0, 0, NPY_ARRAY_ALIGNED | NPY_ARRAY_NOTSWAPPED, NULL);
    if (!array) return NULL;
    if (PyArray_NDIM(array) != 2) {
        int n = PyArray_NDIM(array);
        Py_DECREF(array);
        return (PyArrayObject *)mg_py_raise(
            mg_error(MG_ERR_SHAPE, "%s: expected a 2-D [H, W] mask, got %d dimensions", what, n));
    }
    int type = PyArray_TYPE(array);
    if (type != NPY_UINT8 && type != NPY_BOOL && type != NPY_UINT16 && type != NPY_INT32) {
        if (!PyArray_ISINTEGER(array)) {
            /* a float mask (probabilities, logits) has no one right threshold */
            PyObject *name = PyObject_Str((PyObject *)PyArray_DESCR(array));
            const char *text = name ? PyUnicode_AsUTF8(name) : NULL;
            mg_status s = mg_error(MG_ERR_DTYPE,
                                   "%s: dtype %s is not a mask type (bool or integer labels); "
                                   "threshold float masks first",
                                   what, text ? text : "?");
            PyErr_Clear();
            Py_XDECREF(name);
            Py_DECREF(array);
            return (PyArrayObject *)mg_py_raise(s);
        }
        /* other integer types -> int32, each value checked (no silent wrap) */
        PyArrayObject *wide = (PyArrayObject *)PyArray_FromAny(
            (PyObject *)array, PyArray_DescrFromType(NPY_INT64), 2, 2,
            NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED | NPY_ARRAY_FORCECAST, NULL);
        if (!wide) {
            Py_DECREF(array);
            return NULL;
        }
        int is_unsigned = PyArray_ISUNSIGNED(array);
        npy_intp dims[2] = {PyArray_DIM(wide, 0), PyArray_DIM(wide, 1)};
        PyArrayObject *narrow = (PyArrayObject *)PyArray_SimpleNew(2, dims, NPY_INT32);
        if (!narrow) {
            Py_DECREF(wide);
            Py_DECREF(array);
            return NULL;
        }
        const int64_t *src = PyArray_DATA(wide);
        int32_t *dst = PyArray_DATA(narrow);
        npy_intp n = dims[0] * dims[1];
        for (npy_intp i = 0; i < n; i++) {
            /* uint64 above INT64_MAX arrives negative after the cast */
            if (src[i] < 0 || src[i] > INT32_MAX) {
                long long v = (long long)src[i];
                long long x = dims[1] ? (long long)(i % dims[1]) : 0;
                long long y = dims[1] ? (long long)(i / dims[1]) : 0;
                mg_status s =
                    (src[i] < 0 && !is_unsigned)
                        ? mg_error(MG_ERR_INVALID_ARGUMENT,
                                   "%s: negative label %lld at pixel (x=%lld, y=%lld)", what, v, x,
                                   y)
                        : mg_error(MG_ERR_INVALID_ARGUMENT,
                                   "%s: label at pixel (x=%lld, y=%lld) is out of range "
                                   "(labels are 0..%d)",
                                   what, x, y, INT32_MAX);
                Py_DECREF(narrow);
                Py_DECREF(wide);
                Py_DECREF(array);
                return (PyArrayObject *)mg_py_raise(s);
            }
            dst[i] = (int32_t)src[i];
        }
        Py_DECREF(wide);
        Py_DECREF(array);
        array = narrow;
    }
    mg_status status = mg_py_tensor_from_array(array, tensor);
    if (status != MG_OK) {
        Py_DECREF(array);
        return (PyArrayObject *)mg_py_raise(mg_error_prefix(status, "%s", what));
    }
    return array;
}

/* (labels int64[N], areas int64[N], boxes int32[N, 4], centroids float64[N, 2]) */
static PyObject *objects_to_python(const mg_mask_object *objects, int64_t n) {
    npy_intp n1[1] = {(npy_intp)n}, n4[2] = {(npy_intp)n, 4}, n2[2] = {(npy_intp)n, 2};
    PyObject *labels = PyArray_SimpleNew(1, n1, NPY_INT64);
    PyObject *areas = PyArray_SimpleNew(1, n1, NPY_INT64);
    PyObject *boxes = PyArray_SimpleNew(2, n4, NPY_INT32);
    PyObject *centroids = PyArray_SimpleNew(2, n2, NPY_FLOAT64);
    if (!labels || !areas || !boxes || !centroids) {
        Py_XDECREF(labels);
        Py_XDECREF(areas);
        Py_XDECREF(boxes);
        Py_XDECREF(centroids);
        return NULL;
    }
    int64_t *l = PyArray_DATA((PyArrayObject *)labels);
    int64_t *a = PyArray_DATA((PyArrayObject *)areas);
    int32_t *b = PyArray_DATA((PyArrayObject *)boxes);
    double *c = PyArray_DATA((PyArrayObject *)centroids);
    for (int64_t i = 0; i < n; i++) {
        l[i] = objects[i].label;
        a[i] = objects[i].area;
        b[4 * i + 0] = objects[i].x_min;
        b[4 * i + 1] = objects[i].y_min;
        b[4 * i + 2] = objects[i].x_max;
        b[4 * i + 3] = objects[i].y_max;
        c[2 * i + 0] = objects[i].centroid_x;
        c[2 * i + 1] = objects[i].centroid_y;
    }
    return Py_BuildValue("(NNNN)", labels, areas, boxes, centroids);
}

/* data_mask_objects(mask, binary, connectivity, min_area) */
static PyObject *py_data_mask_objects(PyObject *self, PyObject *args) {
    PyObject *object;
    int binary, connectivity;
    long long min_area;
    if (!PyArg_ParseTuple(args, "OpiL", &object, &binary, &connectivity, &min_area)) return NULL;
    mg_tensor mask;
    PyArrayObject *array = mask_array(object, "mask", &mask);
    if (!array) return NULL;
    mg_mask_options options = {.binary = binary, .connectivity = connectivity,
                               .min_area = min_area};
    mg_mask_object *objects = NULL;
    int64_t n = 0;
    mg_status status;
    Py_BEGIN_ALLOW_THREADS;
    status = mg_mask_objects(&mask, &options, &objects, &n);
    Py_END_ALLOW_THREADS;
    Py_DECREF(array);
    if (status != MG_OK) return mg_py_raise(status);
    PyObject *result = objects_to_python(objects, n);
    free(objects);
    return result;
}

/* data_mask_objects_file(path, binary, connectivity, min_area) -> (..., (w, h)) */
static PyObject *py_data_mask_objects_file(PyObject *self, PyObject *args) {
    const char *path;
    int binary, connectivity;
    long long min_area;
    if (!PyArg_ParseTuple(args, "spiL", &path, &binary, &connectivity, &min_area)) return NULL;
    mg_mask_options options = {.binary = binary, .connectivity = connectivity,
                               .min_area = min_area};
    mg_mask_object *objects = NULL;
    int64_t n = 0;
    int width = 0, height = 0;
    mg_status status;
    Py_BEGIN_ALLOW_THREADS;
    status = mg_mask_objects_file(path, &options, &objects, &n, &width, &height);
    Py_END_ALLOW_THREADS;
    if (status != MG_OK) return mg_py_raise(status);
    PyObject *result = objects_to_python(objects, n);
    free(objects);
    if (!result) return NULL;
    return Py_BuildValue("(N(ii))", result, width, height);
}

/* data_box_to_grid((x_min, y_min, x_max, y_max), width, height) */
static PyObject *py_data_box_to_grid(PyObject *self, PyObject *args) {
    int32_t box[4], grid[4];
    int width, height;
    if (!PyArg_ParseTuple(args, "(iiii)ii", &box[0], &box[1], &box[2], &box[3], &width, &height))
        return NULL;
    mg_status status = mg_box_to_grid(box, width, height, grid);
    if (status != MG_OK) return mg_py_raise(status);
    return Py_BuildValue("(iiii)", grid[0], grid[1], grid[2], grid[3]);
}

/* counts (any int sequence/array) -> mg_rle; validates the sum. */
static int rle_from_python(PyObject *counts, long long height, long long width, mg_rle *rle) {
    PyArrayObject *array = (PyArrayObject *)PyArray_FromAny(
        counts, PyArray_DescrFromType(NPY_INT64), 1, 1,
        NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED | NPY_ARRAY_FORCECAST, NULL);
    if (!array) return -1;
    npy_intp n = PyArray_DIM(array, 0);
    const int64_t *values = PyArray_DATA(array);
    uint32_t *c = malloc((size_t)(n ? n : 1) * sizeof *c);
    if (!c) {
        Py_DECREF(array);
        PyErr_NoMemory();
        return -1;
    }
    for (npy_intp i = 0; i < n; i++) {
        if (values[i] < 0 || values[i] > (int64_t)UINT32_MAX) {
            long long v = (long long)values[i];
            free(c);
            Py_DECREF(array);
            return mg_py_raise_int(mg_error(MG_ERR_INVALID_ARGUMENT,
                                            "rle: count %lld at index %lld is not a uint32", v,
                                            (long long)i));
        }
        c[i] = (uint32_t)values[i];
    }
    Py_DECREF(array);
    mg_status status = mg_rle_from_counts(c, n, height, width, rle);
    free(c);
    return status == MG_OK ? 0 : mg_py_raise_int(status);
}

static PyObject *rle_counts_array(const mg_rle *rle) {
    npy_intp n[1] = {(npy_intp)rle->n_counts};
    PyObject *array = PyArray_SimpleNew(1, n, NPY_UINT32);
    if (array && rle->n_counts)
        memcpy(PyArray_DATA((PyArrayObject *)array), rle->counts,
               (size_t)rle->n_counts * sizeof *rle->counts);
    return array;
}

/* data_rle_encode(mask) -> (height, width, counts uint32[]) */
static PyObject *py_data_rle_encode(PyObject *self, PyObject *args) {
    PyObject *object;
    if (!PyArg_ParseTuple(args, "O", &object)) return NULL;
    mg_tensor mask;
    PyArrayObject *array = mask_array(object, "mask", &mask);
    if (!array) return NULL;
    mg_rle rle;
    mg_status status;
    Py_BEGIN_ALLOW_THREADS;
    status = mg_rle_encode(&mask, &rle);
    Py_END_ALLOW_THREADS;
    Py_DECREF(array);
    if (status != MG_OK) return mg_py_raise(status);
    PyObject *counts = rle_counts_array(&rle);
    PyObject *result = counts ? Py_BuildValue("(LLN)", (long long)rle.height,
                                              (long long)rle.width, counts)
                              : NULL;
    mg_rle_free(&rle);
    return result;
}

/* data_rle_decode(counts, height, width) -> uint8[H, W] */
static PyObject *py_data_rle_decode(PyObject *self, PyObject *args) {
    PyObject *counts;
    long long height, width;
    if (!PyArg_ParseTuple(args, "OLL", &counts, &height, &width)) return NULL;
    mg_rle rle;
    if (rle_from_python(counts, height, width, &rle) < 0) return NULL;
    if (height <= 0 || width <= 0) {
        mg_rle_free(&rle);
        npy_intp dims[2] = {(npy_intp)(height > 0 ? height : 0), (npy_intp)(width > 0 ? width : 0)};
        return PyArray_ZEROS(2, dims, NPY_UINT8, 0);
    }
    npy_intp dims[2] = {(npy_intp)height, (npy_intp)width};
    PyObject *out = PyArray_SimpleNew(2, dims, NPY_UINT8);
    if (!out) {
        mg_rle_free(&rle);
        return NULL;
    }
    mg_tensor tensor;
    int64_t shape[2] = {height, width};
    mg_status status = mg_tensor_init(&tensor, PyArray_DATA((PyArrayObject *)out), MG_U8, 2, shape);
    if (status == MG_OK) {
        Py_BEGIN_ALLOW_THREADS;
        status = mg_rle_decode(&rle, &tensor);
        Py_END_ALLOW_THREADS;
    }
    mg_rle_free(&rle);
    if (status != MG_OK) {
        Py_DECREF(out);
        return mg_py_raise(status);
    }
    return out;
}

/* data_rle_to_string(counts, height, width) -> bytes */
static PyObject *py_data_rle_to_string(PyObject *self, PyObject *args) {
    PyObject *counts;
    long long height, width;
    if (!PyArg_ParseTuple(args, "OLL", &counts, &height, &width)) return NULL;
    mg_rle rle;
    if (rle_from_python(counts, height, width, &rle) < 0) return NULL;
    char *text = NULL;
    mg_status status = mg_rle_to_string(&rle, &text);
    mg_rle_free(&rle);
    if (status != MG_OK) return mg_py_raise(status);
    PyObject *result = PyBytes_FromString(text);
    free(text);
    return result;
}

/* data_rle_from_string(bytes, height, width) -> counts uint32[] */
static PyObject *py_data_rle_from_string(PyObject *self, PyObject *args) {
    const char *text;
    Py_ssize_t length;
    long long height, width;
    if (!PyArg_ParseTuple(args, "y#LL", &text, &length, &height, &width)) return NULL;
    if ((size_t)length != strlen(text))
        return mg_py_raise(mg_error(MG_ERR_FORMAT, "rle string: contains a NUL byte"));
    mg_rle rle;
    mg_status status = mg_rle_from_string(text, height, width, &rle);
    if (status != MG_OK) return mg_py_raise(status);
    PyObject *counts = rle_counts_array(&rle);
    mg_rle_free(&rle);
    return counts;
}

/* data_rle_stats(counts, height, width) -> (area, (x, y, w, h)) */
static PyObject *py_data_rle_stats(PyObject *self, PyObject *args) {
    PyObject *counts;
    long long height, width;
    if (!PyArg_ParseTuple(args, "OLL", &counts, &height, &width)) return NULL;
    mg_rle rle;
    if (rle_from_python(counts, height, width, &rle) < 0) return NULL;
    double bbox[4];
    mg_status status = mg_rle_to_bbox(&rle, bbox);
    int64_t area = mg_rle_area(&rle);
    mg_rle_free(&rle);
    if (status != MG_OK) return mg_py_raise(status);
    return Py_BuildValue("(L(dddd))", (long long)area, bbox[0], bbox[1], bbox[2], bbox[3]);
}

/* progress callback: re-takes the GIL to call the Python callable */
typedef struct progress_state {
    PyObject *callable;
    int failed;
} progress_state;

static void progress_trampoline(int64_t done, int64_t total, void *user_data) {
    progress_state *state = user_data;
    if (state->failed) return;
    PyGILState_STATE gil = PyGILState_Ensure();
    PyObject *r = PyObject_CallFunction(state->callable, "LL", (long long)done, (long long)total);
    if (!r) {
        /* a failing progress bar must not stop the check */
        PyErr_Clear();
        state->failed = 1;
    }
    Py_XDECREF(r);
    PyGILState_Release(gil);
}

/* data_check(inputs, images_dir, masks_dir, min_iou, label_variants,
 *            duplicates, progress) -> report JSON (str).
 * inputs: list of (name, split or None, bytes or None); None = read file. */
static PyObject *py_data_check(PyObject *self, PyObject *args) {
    PyObject *inputs, *images_obj, *masks_obj, *progress;
    double min_iou;
    int label_variants, duplicates;
    if (!PyArg_ParseTuple(args, "OOOdppO", &inputs, &images_obj, &masks_obj, &min_iou,
                          &label_variants, &duplicates, &progress))
        return NULL;
    if (!PyList_Check(inputs)) {
        PyErr_SetString(PyExc_TypeError, "data_check: inputs must be a list");
        return NULL;
    }
    const char *images_dir = images_obj == Py_None ? NULL : PyUnicode_AsUTF8(images_obj);
    const char *masks_dir = masks_obj == Py_None ? NULL : PyUnicode_AsUTF8(masks_obj);
    if (PyErr_Occurred()) return NULL;
    mg_data_check_options options;
    mg_data_check_options_default(&options);
    options.images_dir = images_dir;
    options.masks_dir = masks_dir;
    options.min_box_mask_iou = min_iou;
    options.check_label_variants = label_variants;
    options.check_duplicates = duplicates;
    progress_state state = {.callable = progress, .failed = 0};
    if (progress != Py_None) {
        options.progress = progress_trampoline;
        options.progress_user_data = &state;
    }
    mg_data_checker *checker;
    mg_status status = mg_data_checker_create(&options, &checker);
    if (status != MG_OK) return mg_py_raise(status);
    Py_ssize_t n = PyList_GET_SIZE(inputs);
    for (Py_ssize_t i = 0; i < n && status == MG_OK; i++) {
        PyObject *item = PyList_GET_ITEM(inputs, i);
        const char *name, *split = NULL;
        PyObject *split_obj, *data;
        if (!PyArg_ParseTuple(item, "sOO", &name, &split_obj, &data)) {
            mg_data_checker_destroy(checker);
            return NULL;
        }
        if (split_obj != Py_None && !(split = PyUnicode_AsUTF8(split_obj))) {
            mg_data_checker_destroy(checker);
            return NULL;
        }
        if (data == Py_None) {
            Py_BEGIN_ALLOW_THREADS;
            status = mg_data_checker_add_file(checker, name, split);
            Py_END_ALLOW_THREADS;
        } else {
            Py_buffer view;
            if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) {
                mg_data_checker_destroy(checker);
                return NULL;
            }
            Py_BEGIN_ALLOW_THREADS;
            status = mg_data_checker_add_buffer(checker, name, view.buf, (size_t)view.len, split);
            Py_END_ALLOW_THREADS;
            PyBuffer_Release(&view);
        }
    }
    char *json = NULL;
    if (status == MG_OK) {
        Py_BEGIN_ALLOW_THREADS;
        status = mg_data_checker_finish(checker);
        Py_END_ALLOW_THREADS;
    }
    if (status == MG_OK) status = mg_data_checker_report_json(checker, &json);
    mg_data_checker_destroy(checker);
    if (status != MG_OK) return mg_py_raise(status);
    PyObject *result = PyUnicode_FromString(json);
    free(json);
    return result;
}

static PyObject *py_data_case_id(PyObject *self, PyObject *args) {
    const char *name;
    if (!PyArg_ParseTuple(args, "s", &name)) return NULL;
    char out[1024];
    mg_status status = mg_data_case_id(name, out, sizeof out);
    if (status != MG_OK) return mg_py_raise(status);
    return PyUnicode_FromString(out);
}

static PyObject *py_data_modality(PyObject *self, PyObject *args) {
    const char *name;
    if (!PyArg_ParseTuple(args, "s", &name)) return NULL;
    char out[256];
    mg_status status = mg_data_modality(name, out, sizeof out);
    if (status != MG_OK) return mg_py_raise(status);
    return PyUnicode_FromString(out);
}

static PyMethodDef mg_data_methods[] = {
    {"data_mask_objects", py_data_mask_objects, METH_VARARGS,
     "data_mask_objects(mask, binary, connectivity, min_area) -> (labels, areas, boxes, "
     "centroids)"},
    {"data_mask_objects_file", py_data_mask_objects_file, METH_VARARGS,
     "data_mask_objects_file(path, binary, connectivity, min_area) -> (objects, (w, h))"},
    {"data_box_to_grid", py_data_box_to_grid, METH_VARARGS,
     "data_box_to_grid((x_min, y_min, x_max, y_max), width, height) -> 0..1000 grid box"},
    {"data_rle_encode", py_data_rle_encode, METH_VARARGS,
     "data_rle_encode(mask) -> (height, width, counts)"},
    {"data_rle_decode", py_data_rle_decode, METH_VARARGS,
     "data_rle_decode(counts, height, width) -> uint8[H, W]"},
    {"data_rle_to_string", py_data_rle_to_string, METH_VARARGS,
     "data_rle_to_string(counts, height, width) -> bytes (pycocotools compressed form)"},
    {"data_rle_from_string", py_data_rle_from_string, METH_VARARGS,
     "data_rle_from_string(bytes, height, width) -> counts"},
    {"data_rle_stats", py_data_rle_stats, METH_VARARGS,
     "data_rle_stats(counts, height, width) -> (area, (x, y, w, h))"},
    {"data_check", py_data_check, METH_VARARGS,
     "data_check(inputs, images_dir, masks_dir, min_iou, label_variants, duplicates, progress) "
     "-> report JSON"},
    {"data_case_id", py_data_case_id, METH_VARARGS, "data_case_id(image_name) -> case id"},
    {"data_modality", py_data_modality, METH_VARARGS, "data_modality(image_name) -> modality"},
    {NULL, NULL, 0, NULL},
};

int mg_py_register_data(PyObject *module) {
    return PyModule_AddFunctions(module, mg_data_methods);
}

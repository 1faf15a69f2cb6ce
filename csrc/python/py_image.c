/* Python bindings of the image module (medground._C). Thin: parse, check
 * the array once, release the GIL around the C kernel, wrap the result.
 * python/medground/image.py is the user-facing layer. */
#include "py_common.h"

#include <string.h>

/* An aligned, native-byte-order ndarray view of `object` (no copy when it
 * already is one) described as an image tensor. Returns a new reference,
 * or NULL with a Python error set naming `what`. */
static PyArrayObject *mg_py_image_array(PyObject *object, const char *what, mg_tensor *tensor) {
    PyArrayObject *array = (PyArrayObject *)PyArray_FromAny(
        object, NULL, 0, 0, NPY_ARRAY_ALIGNED | NPY_ARRAY_NOTSWAPPED, NULL);
    if (!array) return NULL;
    mg_dtype dtype;
    if (mg_py_dtype_from_npy(PyArray_TYPE(array), &dtype) != MG_OK) {
        PyObject *repr = PyObject_Str((PyObject *)PyArray_DESCR(array));
        const char *name = repr ? PyUnicode_AsUTF8(repr) : NULL;
        mg_status status = mg_error(MG_ERR_DTYPE,
                                    "%s: dtype %s is not an image type (uint8, uint16, int16, int32, "
                                    "float32, float64)",
                                    what, name ? name : "?");
        Py_XDECREF(repr);
        PyErr_Clear();
        Py_DECREF(array);
        return (PyArrayObject *)mg_py_raise(status);
    }
    int n_dims = PyArray_NDIM(array);
    if (n_dims != 2 && n_dims != 3) {
        Py_DECREF(array);
        return (PyArrayObject *)mg_py_raise(mg_error(
            MG_ERR_SHAPE, "%s: array has %d dimensions; expected 2 (H, W) or 3 (H, W, C)", what, n_dims));
    }
    if (n_dims == 3 && (PyArray_DIM(array, 2) < 1 || PyArray_DIM(array, 2) > 4)) {
        long long c = (long long)PyArray_DIM(array, 2);
        Py_DECREF(array);
        return (PyArrayObject *)mg_py_raise(
            mg_error(MG_ERR_SHAPE, "%s: %lld channels; expected 1 to 4 (H, W, C layout)", what, c));
    }
    mg_status status = mg_py_tensor_from_array(array, tensor);
    if (status != MG_OK) {
        Py_DECREF(array);
        return (PyArrayObject *)mg_py_raise(mg_error_prefix(status, "%s", what));
    }
    return array;
}

/* A new uint8/float32 ndarray and a tensor over its data. */
static PyObject *mg_py_new_image(int n_dims, const int64_t *shape, mg_dtype dtype, mg_tensor *tensor) {
    npy_intp dims[MG_MAX_DIMS];
    for (int i = 0; i < n_dims; i++) dims[i] = (npy_intp)shape[i];
    PyObject *array = PyArray_SimpleNew(n_dims, dims, mg_py_npy_type(dtype));
    if (!array) return NULL;
    mg_status status = mg_tensor_init(tensor, PyArray_DATA((PyArrayObject *)array), dtype, n_dims, shape);
    if (status != MG_OK) {
        Py_DECREF(array);
        return mg_py_raise(status);
    }
    return array;
}

static PyObject *mg_py_image_from_struct(mg_image *image) {
    int64_t shape[3] = {image->height, image->width, image->channels};
    mg_tensor tensor;
    PyObject *array = mg_py_new_image(3, shape, image->dtype, &tensor);
    if (array) memcpy(tensor.data, image->pixels, mg_tensor_nbytes(&tensor));
    mg_image_free(image);
    return array;
}

/* image_load(path: str | bytes-like) -> ndarray[H, W, C] uint8/uint16. A str
 * is a path; bytes/bytearray/memoryview hold a whole file. */
static PyObject *py_image_load(PyObject *self, PyObject *args) {
    PyObject *source;
    if (!PyArg_ParseTuple(args, "O", &source)) return NULL;
    mg_image image;
    mg_status status;
    if (PyUnicode_Check(source)) {
        const char *path = PyUnicode_AsUTF8(source);
        if (!path) return NULL;
        Py_BEGIN_ALLOW_THREADS
        status = mg_image_load(path, &image);
        Py_END_ALLOW_THREADS
    } else {
        Py_buffer buffer;
        if (PyObject_GetBuffer(source, &buffer, PyBUF_SIMPLE) < 0) return NULL;
        Py_BEGIN_ALLOW_THREADS
        status = mg_image_load_memory(buffer.buf, (size_t)buffer.len, &image);
        Py_END_ALLOW_THREADS
        PyBuffer_Release(&buffer);
    }
    if (status != MG_OK) return mg_py_raise(status);
    return mg_py_image_from_struct(&image);
}

/* image_info(path: str | bytes-like) -> (width, height, channels). */
static PyObject *py_image_info(PyObject *self, PyObject *args) {
    PyObject *source;
    if (!PyArg_ParseTuple(args, "O", &source)) return NULL;
    int width = 0, height = 0, channels = 0;
    mg_status status;
    if (PyUnicode_Check(source)) {
        const char *path = PyUnicode_AsUTF8(source);
        if (!path) return NULL;
        status = mg_image_info(path, &width, &height, &channels);
    } else {
        Py_buffer buffer;
        if (PyObject_GetBuffer(source, &buffer, PyBUF_SIMPLE) < 0) return NULL;
        status = mg_image_info_memory(buffer.buf, (size_t)buffer.len, &width, &height, &channels);
        PyBuffer_Release(&buffer);
    }
    if (status != MG_OK) return mg_py_raise(status);
    return Py_BuildValue("(iii)", width, height, channels);
}

/* image_resize(array, width, height, filter) -> ndarray like array. */
static PyObject *py_image_resize(PyObject *self, PyObject *args) {
    PyObject *object;
    int width, height, filter;
    if (!PyArg_ParseTuple(args, "Oiii", &object, &width, &height, &filter)) return NULL;
    if (width < 1 || height < 1 || width > 65535 || height > 65535)
        return mg_py_raise(mg_error(MG_ERR_INVALID_ARGUMENT, "resize: output size %dx%d (WxH) outside 1..65535",
                                    width, height));
    mg_tensor src, dst;
    PyArrayObject *array = mg_py_image_array(object, "resize input", &src);
    if (!array) return NULL;
    int64_t shape[3] = {height, width, src.n_dims == 3 ? src.shape[2] : 1};
    PyObject *result = mg_py_new_image(src.n_dims, shape, src.dtype == MG_F32 ? MG_F32 : MG_U8, &dst);
    if (!result) {
        Py_DECREF(array);
        return NULL;
    }
    mg_context *ctx = mg_py_default_context();
    mg_status status;
    Py_BEGIN_ALLOW_THREADS
    status = mg_image_resize(ctx, &src, (mg_resample)filter, &dst);
    Py_END_ALLOW_THREADS
    Py_DECREF(array);
    if (status != MG_OK) {
        Py_DECREF(result);
        return mg_py_raise(status);
    }
    return result;
}

/* image_to_rgb8(array u8/u16 [H, W(, C)]) -> uint8 [H, W, 3]. */
static PyObject *py_image_to_rgb8(PyObject *self, PyObject *args) {
    PyObject *object;
    if (!PyArg_ParseTuple(args, "O", &object)) return NULL;
    mg_tensor src, dst;
    PyArrayObject *array = mg_py_image_array(object, "to_rgb8 input", &src);
    if (!array) return NULL;
    int64_t shape[3] = {src.shape[0], src.shape[1], 3};
    PyObject *result = mg_py_new_image(3, shape, MG_U8, &dst);
    mg_status status = MG_OK;
    if (result) {
        Py_BEGIN_ALLOW_THREADS
        status = mg_image_to_rgb8(&src, &dst);
        Py_END_ALLOW_THREADS
    }
    Py_DECREF(array);
    if (result && status != MG_OK) {
        Py_DECREF(result);
        return mg_py_raise(status);
    }
    return result;
}

/* image_window(array, slope, intercept, lower, upper) -> uint8, same shape. */
static PyObject *py_image_window(PyObject *self, PyObject *args) {
    PyObject *object;
    double slope, intercept, lower, upper;
    if (!PyArg_ParseTuple(args, "Odddd", &object, &slope, &intercept, &lower, &upper)) return NULL;
    mg_tensor src, dst;
    PyArrayObject *array = mg_py_image_array(object, "window input", &src);
    if (!array) return NULL;
    PyObject *result = mg_py_new_image(src.n_dims, src.shape, MG_U8, &dst);
    mg_status status = MG_OK;
    if (result) {
        Py_BEGIN_ALLOW_THREADS
        status = mg_image_window(&src, slope, intercept, lower, upper, &dst);
        Py_END_ALLOW_THREADS
    }
    Py_DECREF(array);
    if (result && status != MG_OK) {
        Py_DECREF(result);
        return mg_py_raise(status);
    }
    return result;
}

/* image_center_crop(array, height, width) -> copy of the centered region. */
static PyObject *py_image_center_crop(PyObject *self, PyObject *args) {
    PyObject *object;
    long long height, width;
    if (!PyArg_ParseTuple(args, "OLL", &object, &height, &width)) return NULL;
    mg_tensor src, view;
    PyArrayObject *array = mg_py_image_array(object, "center_crop input", &src);
    if (!array) return NULL;
    mg_status status = mg_image_center_crop(&src, height, width, &view);
    PyObject *result = status == MG_OK ? mg_py_array_from_tensor(&view) : mg_py_raise(status);
    Py_DECREF(array);
    return result;
}

static int mg_py_floats(PyObject *sequence, int n, double *out, const char *what) {
    PyObject *fast = PySequence_Fast(sequence, what);
    if (!fast) return -1;
    Py_ssize_t len = PySequence_Fast_GET_SIZE(fast);
    if (len != n) {
        Py_DECREF(fast);
        mg_py_raise(mg_error(MG_ERR_INVALID_ARGUMENT, "%s: %zd values for %d channels", what, len, n));
        return -1;
    }
    for (Py_ssize_t i = 0; i < len; i++) {
        out[i] = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(fast, i));
        if (out[i] == -1.0 && PyErr_Occurred()) {
            Py_DECREF(fast);
            return -1;
        }
    }
    Py_DECREF(fast);
    return 0;
}

/* image_pad(array, height, width, value sequence, centered) -> padded copy. */
static PyObject *py_image_pad(PyObject *self, PyObject *args) {
    PyObject *object, *values;
    int height, width, centered;
    if (!PyArg_ParseTuple(args, "OiiOp", &object, &height, &width, &values, &centered)) return NULL;
    mg_tensor src, dst;
    PyArrayObject *array = mg_py_image_array(object, "pad input", &src);
    if (!array) return NULL;
    int channels = src.n_dims == 3 ? (int)src.shape[2] : 1;
    double fill[4];
    if (mg_py_floats(values, channels, fill, "pad value") < 0) {
        Py_DECREF(array);
        return NULL;
    }
    if (height < src.shape[0] || width < src.shape[1]) {
        Py_DECREF(array);
        return mg_py_raise(mg_error(MG_ERR_INVALID_ARGUMENT, "pad: %dx%d (HxW) is smaller than the %lldx%lld input",
                                    height, width, (long long)src.shape[0], (long long)src.shape[1]));
    }
    int64_t shape[3] = {height, width, channels};
    PyObject *result = mg_py_new_image(src.n_dims, shape, src.dtype == MG_F32 ? MG_F32 : MG_U8, &dst);
    mg_status status = MG_OK;
    if (result) {
        Py_BEGIN_ALLOW_THREADS
        status = mg_image_pad(&src, fill, centered != 0, &dst);
        Py_END_ALLOW_THREADS
    }
    Py_DECREF(array);
    if (result && status != MG_OK) {
        Py_DECREF(result);
        return mg_py_raise(status);
    }
    return result;
}

/* image_normalize(array [H, W, C], divisor, mean, std) -> float32 [C, H, W]. */
static PyObject *py_image_normalize(PyObject *self, PyObject *args) {
    PyObject *object, *mean_object, *std_object;
    double divisor;
    if (!PyArg_ParseTuple(args, "OdOO", &object, &divisor, &mean_object, &std_object)) return NULL;
    mg_tensor src, dst;
    PyArrayObject *array = mg_py_image_array(object, "normalize input", &src);
    if (!array) return NULL;
    int channels = src.n_dims == 3 ? (int)src.shape[2] : 1;
    double mean_d[4], std_d[4];
    if (mg_py_floats(mean_object, channels, mean_d, "normalize mean") < 0 ||
        mg_py_floats(std_object, channels, std_d, "normalize std") < 0) {
        Py_DECREF(array);
        return NULL;
    }
    float mean[4], std[4];
    for (int c = 0; c < channels; c++) mean[c] = (float)mean_d[c], std[c] = (float)std_d[c];
    int64_t shape[3] = {channels, src.shape[0], src.shape[1]};
    PyObject *result = mg_py_new_image(3, shape, MG_F32, &dst);
    mg_status status = MG_OK;
    if (result) {
        Py_BEGIN_ALLOW_THREADS
        status = mg_image_normalize(&src, (float)divisor, mean, std, &dst);
        Py_END_ALLOW_THREADS
    }
    Py_DECREF(array);
    if (result && status != MG_OK) {
        Py_DECREF(result);
        return mg_py_raise(status);
    }
    return result;
}

/* image_preprocess(array, kind 'qwen'|'clip_pad'|'sam', size) ->
 * (float32 [3, size, size], geometry dict). */
static PyObject *py_image_preprocess(PyObject *self, PyObject *args) {
    PyObject *object;
    const char *kind;
    int size;
    if (!PyArg_ParseTuple(args, "Osi", &object, &kind, &size)) return NULL;
    mg_status (*pipeline)(mg_context *, const mg_tensor *, int, mg_tensor *, mg_image_geometry *) = NULL;
    if (strcmp(kind, "qwen") == 0) pipeline = mg_image_preprocess_qwen;
    else if (strcmp(kind, "clip_pad") == 0) pipeline = mg_image_preprocess_clip_pad;
    else if (strcmp(kind, "sam") == 0) pipeline = mg_image_preprocess_sam;
    else
        return mg_py_raise(mg_error(MG_ERR_INVALID_ARGUMENT,
                                    "preprocess kind '%s': expected 'qwen', 'clip_pad' or 'sam'", kind));
    if (size < 1 || size > 65535)
        return mg_py_raise(mg_error(MG_ERR_INVALID_ARGUMENT, "preprocess: size %d outside 1..65535", size));
    mg_tensor src, dst;
    PyArrayObject *array = mg_py_image_array(object, "preprocess input", &src);
    if (!array) return NULL;
    int64_t shape[3] = {3, size, size};
    PyObject *result = mg_py_new_image(3, shape, MG_F32, &dst);
    if (!result) {
        Py_DECREF(array);
        return NULL;
    }
    mg_context *ctx = mg_py_default_context();
    mg_image_geometry g;
    memset(&g, 0, sizeof g);
    mg_status status;
    Py_BEGIN_ALLOW_THREADS
    status = pipeline(ctx, &src, size, &dst, &g);
    Py_END_ALLOW_THREADS
    Py_DECREF(array);
    if (status != MG_OK) {
        Py_DECREF(result);
        return mg_py_raise(status);
    }
    return Py_BuildValue(
        "(N{s:i,s:i,s:i,s:i,s:d,s:d,s:i,s:i,s:i,s:i})", result, "original_width", g.original_width,
        "original_height", g.original_height, "resized_width", g.resized_width, "resized_height",
        g.resized_height, "scale_x", g.scale_x, "scale_y", g.scale_y, "pad_left", g.pad_left, "pad_top",
        g.pad_top, "output_width", g.output_width, "output_height", g.output_height);
}

static PyMethodDef mg_image_methods[] = {
    {"image_load", py_image_load, METH_VARARGS,
     "image_load(path or bytes) -> ndarray[H, W, C] uint8/uint16 (stb_image decode)."},
    {"image_info", py_image_info, METH_VARARGS,
     "image_info(path or bytes) -> (width, height, channels) from the header."},
    {"image_resize", py_image_resize, METH_VARARGS,
     "image_resize(array u8/f32, width, height, filter 2|3) -> PIL-identical resize."},
    {"image_to_rgb8", py_image_to_rgb8, METH_VARARGS,
     "image_to_rgb8(array u8/u16) -> uint8[H, W, 3] as PIL convert('RGB')."},
    {"image_window", py_image_window, METH_VARARGS,
     "image_window(array, slope, intercept, lower, upper) -> uint8 linear window."},
    {"image_center_crop", py_image_center_crop, METH_VARARGS,
     "image_center_crop(array, height, width) -> centered region (copy)."},
    {"image_pad", py_image_pad, METH_VARARGS,
     "image_pad(array, height, width, value per channel, centered) -> padded copy."},
    {"image_normalize", py_image_normalize, METH_VARARGS,
     "image_normalize(array [H, W, C], divisor, mean, std) -> float32 [C, H, W]."},
    {"image_preprocess", py_image_preprocess, METH_VARARGS,
     "image_preprocess(array, 'qwen'|'clip_pad'|'sam', size) -> (float32 [3, size, size], geometry)."},
    {NULL, NULL, 0, NULL},
};

int mg_py_register_image(PyObject *module) {
    return PyModule_AddFunctions(module, mg_image_methods);
}

/* Python bindings of the io module (medground._C): the Weights table (a
 * checkpoint opened by mg_weights_open, tensors exposed as read-only NumPy
 * views of the mmap) and the streaming GGUF writer used by `convert`.
 * python/medground/checkpoint/ is the user-facing layer. */
#include "py_common.h"

#include <string.h>

/* ------------------------------------------------------------ Weights */

typedef struct {
    PyObject_HEAD
    mg_weights *weights;
} mg_py_weights;

static PyTypeObject mg_py_weights_type;

static int mg_py_weights_init(mg_py_weights *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"path", NULL};
    PyObject *path_object;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&", keywords, PyUnicode_FSConverter, &path_object)) return -1;
    const char *path = PyBytes_AS_STRING(path_object);
    mg_weights *weights = NULL;
    mg_status status;
    Py_BEGIN_ALLOW_THREADS
    status = mg_weights_open(path, &weights);
    Py_END_ALLOW_THREADS
    Py_DECREF(path_object);
    if (status != MG_OK) return mg_py_raise_int(status);
    mg_weights_destroy(self->weights);
    self->weights = weights;
    return 0;
}

static void mg_py_weights_dealloc(mg_py_weights *self) {
    mg_weights_destroy(self->weights);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int mg_py_weights_ready(mg_py_weights *self) {
    if (self->weights) return 0;
    mg_py_raise_message(MG_ERR_INVALID_ARGUMENT, "Weights object was not opened");
    return -1;
}

static mg_status mg_py_weights_lookup(mg_py_weights *self, PyObject *key, mg_tensor *tensor, const char **name) {
    if (!PyUnicode_Check(key)) return mg_error(MG_ERR_INVALID_ARGUMENT, "tensor names are str");
    *name = PyUnicode_AsUTF8(key);
    if (!*name) return MG_ERR_INVALID_ARGUMENT;
    return mg_weights_get(self->weights, *name, tensor);
}

/* A read-only ndarray over the tensor's bytes; the Weights object is the
 * array's base, so the mapping outlives every view. bf16 is exposed as its
 * uint16 bit patterns, q8_0/q4_0 as the raw blocks (uint8, last dim = bytes
 * per row). */
static PyObject *mg_py_weights_view(mg_py_weights *self, const mg_tensor *t) {
    npy_intp dims[MG_MAX_DIMS], strides[MG_MAX_DIMS];
    int n_dims = t->n_dims;
    int npy_type;
    for (int i = 0; i < n_dims; i++) {
        dims[i] = (npy_intp)t->shape[i];
        strides[i] = (npy_intp)t->strides[i];
    }
    if (t->dtype == MG_BF16) {
        npy_type = NPY_UINT16;
    } else if (mg_dtype_is_quantized(t->dtype)) {
        npy_type = NPY_UINT8;
        dims[n_dims - 1] = (npy_intp)(t->shape[n_dims - 1] / mg_dtype_block_size(t->dtype) *
                                      mg_dtype_block_bytes(t->dtype));
        strides[n_dims - 1] = 1;
    } else {
        npy_type = mg_py_npy_type(t->dtype);
        if (npy_type < 0) return mg_py_raise(mg_error(MG_ERR_DTYPE, "no NumPy type for %s", mg_dtype_name(t->dtype)));
    }
    PyArray_Descr *descr = PyArray_DescrFromType(npy_type);
    if (!descr) return NULL;
    PyObject *array = PyArray_NewFromDescr(&PyArray_Type, descr, n_dims, dims, strides, t->data, 0, NULL);
    if (!array) return NULL;
    Py_INCREF(self);
    if (PyArray_SetBaseObject((PyArrayObject *)array, (PyObject *)self) < 0) {
        Py_DECREF(array);
        return NULL;
    }
    return array;
}

static PyObject *mg_py_weights_getitem(mg_py_weights *self, PyObject *key) {
    if (mg_py_weights_ready(self) < 0) return NULL;
    mg_tensor t;
    const char *name;
    mg_status status = mg_py_weights_lookup(self, key, &t, &name);
    if (status != MG_OK) {
        if (PyErr_Occurred()) return NULL;
        return mg_py_raise(status);
    }
    return mg_py_weights_view(self, &t);
}

static Py_ssize_t mg_py_weights_len(mg_py_weights *self) {
    return self->weights ? (Py_ssize_t)mg_weights_count(self->weights) : 0;
}

static int mg_py_weights_contains(mg_py_weights *self, PyObject *key) {
    if (!self->weights || !PyUnicode_Check(key)) return 0;
    const char *name = PyUnicode_AsUTF8(key);
    if (!name) return -1;
    return mg_weights_has(self->weights, name);
}

static PyObject *mg_py_weights_names(mg_py_weights *self, PyObject *unused) {
    if (mg_py_weights_ready(self) < 0) return NULL;
    int64_t n = mg_weights_count(self->weights);
    PyObject *list = PyList_New((Py_ssize_t)n);
    if (!list) return NULL;
    for (int64_t i = 0; i < n; i++) {
        PyObject *name = PyUnicode_FromString(mg_weights_name(self->weights, i));
        if (!name) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, name);
    }
    return list;
}

static PyObject *mg_py_shape_tuple(const mg_tensor *t) {
    PyObject *shape = PyTuple_New(t->n_dims);
    if (!shape) return NULL;
    for (int d = 0; d < t->n_dims; d++) PyTuple_SET_ITEM(shape, d, PyLong_FromLongLong(t->shape[d]));
    return shape;
}

/* info(name) -> (dtype name, shape tuple, bytes) */
static PyObject *mg_py_weights_info(mg_py_weights *self, PyObject *key) {
    if (mg_py_weights_ready(self) < 0) return NULL;
    mg_tensor t;
    const char *name;
    mg_status status = mg_py_weights_lookup(self, key, &t, &name);
    if (status != MG_OK) return PyErr_Occurred() ? NULL : mg_py_raise(status);
    PyObject *shape = mg_py_shape_tuple(&t);
    if (!shape) return NULL;
    return Py_BuildValue("sNn", mg_dtype_name(t.dtype), shape, (Py_ssize_t)mg_tensor_nbytes(&t));
}

/* to_float32(name) -> a new float32 array (bf16/f16/q8_0/q4_0 converted). */
static PyObject *mg_py_weights_to_float32(mg_py_weights *self, PyObject *key) {
    if (mg_py_weights_ready(self) < 0) return NULL;
    mg_tensor t;
    const char *name = "?";
    mg_status status = mg_py_weights_lookup(self, key, &t, &name);
    if (status != MG_OK) return PyErr_Occurred() ? NULL : mg_py_raise(status);
    npy_intp dims[MG_MAX_DIMS];
    for (int d = 0; d < t.n_dims; d++) dims[d] = (npy_intp)t.shape[d];
    PyObject *array = PyArray_SimpleNew(t.n_dims, dims, NPY_FLOAT32);
    if (!array) return NULL;
    mg_tensor dst;
    status = mg_tensor_init(&dst, PyArray_DATA((PyArrayObject *)array), MG_F32, t.n_dims, t.shape);
    if (status == MG_OK) {
        Py_BEGIN_ALLOW_THREADS
        status = mg_tensor_convert(&t, &dst);
        Py_END_ALLOW_THREADS
    }
    if (status != MG_OK) {
        Py_DECREF(array);
        return mg_py_raise(mg_error_prefix(status, "tensor %s", name));
    }
    return array;
}

/* A Python value for one metadata key: int/float/bool/str (bytes when the
 * string is not UTF-8), numeric arrays as NumPy arrays, string arrays as
 * lists. */
static PyObject *mg_py_string_value(const char *s, size_t n) {
    PyObject *value = PyUnicode_DecodeUTF8(s, (Py_ssize_t)n, "strict");
    if (!value && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
        PyErr_Clear();
        value = PyBytes_FromStringAndSize(s, (Py_ssize_t)n);
    }
    return value;
}

static int mg_py_npy_of_value(mg_value_type type) {
    switch (type) {
    case MG_VALUE_U8: return NPY_UINT8;
    case MG_VALUE_I8: return NPY_INT8;
    case MG_VALUE_U16: return NPY_UINT16;
    case MG_VALUE_I16: return NPY_INT16;
    case MG_VALUE_U32: return NPY_UINT32;
    case MG_VALUE_I32: return NPY_INT32;
    case MG_VALUE_F32: return NPY_FLOAT32;
    case MG_VALUE_BOOL: return NPY_BOOL;
    case MG_VALUE_U64: return NPY_UINT64;
    case MG_VALUE_I64: return NPY_INT64;
    case MG_VALUE_F64: return NPY_FLOAT64;
    default: return -1;
    }
}

static PyObject *mg_py_meta_value(const mg_weights *weights, const char *key) {
    mg_value_type type, element;
    mg_status status = mg_weights_meta_type(weights, key, &type, &element);
    if (status != MG_OK) return mg_py_raise(status);
    if (type == MG_VALUE_STRING) {
        const char *s;
        size_t n;
        mg_weights_get_string_bytes(weights, key, &s, &n);
        return mg_py_string_value(s, n);
    }
    if (type == MG_VALUE_F32 || type == MG_VALUE_F64) {
        double v;
        mg_weights_get_float(weights, key, &v);
        return PyFloat_FromDouble(v);
    }
    if (type == MG_VALUE_BOOL) {
        int64_t v;
        mg_weights_get_int(weights, key, &v);
        return PyBool_FromLong(v != 0);
    }
    if (type != MG_VALUE_ARRAY) {
        int64_t v;
        mg_weights_get_int(weights, key, &v);
        if (type == MG_VALUE_U64) return PyLong_FromUnsignedLongLong((unsigned long long)v);
        return PyLong_FromLongLong(v);
    }
    int64_t length;
    const void *data;
    mg_weights_get_array(weights, key, &element, &length, &data);
    if (element == MG_VALUE_STRING) {
        PyObject *list = PyList_New((Py_ssize_t)length);
        if (!list) return NULL;
        for (int64_t i = 0; i < length; i++) {
            const char *s;
            size_t n;
            mg_weights_get_array_string(weights, key, i, &s, &n);
            PyObject *item = mg_py_string_value(s, n);
            if (!item) {
                Py_DECREF(list);
                return NULL;
            }
            PyList_SET_ITEM(list, (Py_ssize_t)i, item);
        }
        return list;
    }
    npy_intp dims[1] = {(npy_intp)length};
    PyObject *array = PyArray_SimpleNew(1, dims, mg_py_npy_of_value(element));
    if (array && length) memcpy(PyArray_DATA((PyArrayObject *)array), data, (size_t)length * mg_value_type_size(element));
    return array;
}

static PyObject *mg_py_weights_metadata(mg_py_weights *self, PyObject *unused) {
    if (mg_py_weights_ready(self) < 0) return NULL;
    PyObject *dict = PyDict_New();
    if (!dict) return NULL;
    int64_t n = mg_weights_meta_count(self->weights);
    for (int64_t i = 0; i < n; i++) {
        const char *key = mg_weights_meta_key(self->weights, i);
        PyObject *value = mg_py_meta_value(self->weights, key);
        if (!value || PyDict_SetItemString(dict, key, value) < 0) {
            Py_XDECREF(value);
            Py_DECREF(dict);
            return NULL;
        }
        Py_DECREF(value);
    }
    return dict;
}

/* metadata_types() -> {key: "u32" | "string" | "array[string]" ...} */
static PyObject *mg_py_weights_metadata_types(mg_py_weights *self, PyObject *unused) {
    if (mg_py_weights_ready(self) < 0) return NULL;
    PyObject *dict = PyDict_New();
    if (!dict) return NULL;
    int64_t n = mg_weights_meta_count(self->weights);
    for (int64_t i = 0; i < n; i++) {
        const char *key = mg_weights_meta_key(self->weights, i);
        mg_value_type type, element;
        mg_weights_meta_type(self->weights, key, &type, &element);
        char text[64];
        if (type == MG_VALUE_ARRAY) snprintf(text, sizeof text, "array[%s]", mg_value_type_name(element));
        else snprintf(text, sizeof text, "%s", mg_value_type_name(type));
        PyObject *value = PyUnicode_FromString(text);
        if (!value || PyDict_SetItemString(dict, key, value) < 0) {
            Py_XDECREF(value);
            Py_DECREF(dict);
            return NULL;
        }
        Py_DECREF(value);
    }
    return dict;
}

static PyMethodDef mg_py_weights_methods[] = {
    {"names", (PyCFunction)mg_py_weights_names, METH_NOARGS, "Tensor names in file order."},
    {"info", (PyCFunction)mg_py_weights_info, METH_O, "info(name) -> (dtype, shape, nbytes)."},
    {"to_float32", (PyCFunction)mg_py_weights_to_float32, METH_O,
     "to_float32(name) -> new float32 array (dequantized / widened)."},
    {"metadata", (PyCFunction)mg_py_weights_metadata, METH_NOARGS, "All metadata as a dict."},
    {"metadata_types", (PyCFunction)mg_py_weights_metadata_types, METH_NOARGS,
     "GGUF value type name of every metadata key."},
    {NULL, NULL, 0, NULL},
};

static PyMappingMethods mg_py_weights_mapping = {
    (lenfunc)mg_py_weights_len,
    (binaryfunc)mg_py_weights_getitem,
    NULL,
};

static PySequenceMethods mg_py_weights_sequence = {
    .sq_contains = (objobjproc)mg_py_weights_contains,
};

static PyTypeObject mg_py_weights_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "medground._C.Weights",
    .tp_basicsize = sizeof(mg_py_weights),
    .tp_dealloc = (destructor)mg_py_weights_dealloc,
    .tp_as_mapping = &mg_py_weights_mapping,
    .tp_as_sequence = &mg_py_weights_sequence,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Weights(path): a checkpoint (.safetensors file or folder, .gguf) opened zero-copy.\n"
              "w[name] is a read-only NumPy view of the mapped bytes (bf16 as uint16 bits,\n"
              "q8_0/q4_0 as raw uint8 blocks); w.to_float32(name) converts.",
    .tp_methods = mg_py_weights_methods,
    .tp_init = (initproc)mg_py_weights_init,
    .tp_new = PyType_GenericNew,
};

/* ---------------------------------------------------------- GGUFWriter */

typedef struct {
    PyObject_HEAD
    mg_gguf_writer *writer;
} mg_py_gguf_writer;

static int mg_py_gguf_writer_init(mg_py_gguf_writer *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"path", NULL};
    PyObject *path_object;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&", keywords, PyUnicode_FSConverter, &path_object)) return -1;
    mg_gguf_writer *writer;
    mg_status status = mg_gguf_writer_open(PyBytes_AS_STRING(path_object), &writer);
    Py_DECREF(path_object);
    if (status != MG_OK) return mg_py_raise_int(status);
    mg_gguf_writer_destroy(self->writer);
    self->writer = writer;
    return 0;
}

static void mg_py_gguf_writer_dealloc(mg_py_gguf_writer *self) {
    mg_gguf_writer_destroy(self->writer);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int mg_py_writer_ready(mg_py_gguf_writer *self) {
    if (self->writer) return 0;
    mg_py_raise_message(MG_ERR_INVALID_ARGUMENT, "GGUFWriter is closed");
    return -1;
}

static int mg_py_value_type_from_name(const char *name, mg_value_type *out) {
    for (int t = 0; t <= MG_VALUE_F64; t++) {
        if (strcmp(mg_value_type_name((mg_value_type)t), name) == 0) {
            *out = (mg_value_type)t;
            return 0;
        }
    }
    mg_py_raise(mg_error(MG_ERR_INVALID_ARGUMENT, "unknown GGUF value type '%s' (u8, i8, u16, i16, u32, i32, "
                                                  "u64, i64, f32, f64, bool)", name));
    return -1;
}

/* add_int(key, value, type='i64'): u64 values up to 2^64-1 are accepted
 * (stored as the same 64 bits). */
static PyObject *mg_py_writer_add_int(mg_py_gguf_writer *self, PyObject *args) {
    const char *key, *type_name = "i64";
    PyObject *number;
    if (!PyArg_ParseTuple(args, "sO|s", &key, &number, &type_name) || mg_py_writer_ready(self) < 0) return NULL;
    mg_value_type type;
    if (mg_py_value_type_from_name(type_name, &type) < 0) return NULL;
    long long value;
    if (type == MG_VALUE_U64) {
        unsigned long long u = PyLong_AsUnsignedLongLong(number);
        if (u == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
        value = (long long)u;
    } else {
        value = PyLong_AsLongLong(number);
        if (value == -1 && PyErr_Occurred()) return NULL;
    }
    mg_status status = mg_gguf_writer_add_int(self->writer, key, type, value);
    if (status != MG_OK) return mg_py_raise(status);
    Py_RETURN_NONE;
}

static PyObject *mg_py_writer_add_float(mg_py_gguf_writer *self, PyObject *args) {
    const char *key, *type_name = "f64";
    double value;
    if (!PyArg_ParseTuple(args, "sd|s", &key, &value, &type_name) || mg_py_writer_ready(self) < 0) return NULL;
    mg_value_type type;
    if (mg_py_value_type_from_name(type_name, &type) < 0) return NULL;
    mg_status status = mg_gguf_writer_add_float(self->writer, key, type, value);
    if (status != MG_OK) return mg_py_raise(status);
    Py_RETURN_NONE;
}

/* add_string(key, str | bytes) */
static PyObject *mg_py_writer_add_string(mg_py_gguf_writer *self, PyObject *args) {
    const char *key;
    PyObject *value;
    if (!PyArg_ParseTuple(args, "sO", &key, &value) || mg_py_writer_ready(self) < 0) return NULL;
    const char *data;
    Py_ssize_t length;
    if (PyUnicode_Check(value)) {
        data = PyUnicode_AsUTF8AndSize(value, &length);
        if (!data) return NULL;
    } else if (PyBytes_Check(value)) {
        data = PyBytes_AS_STRING(value);
        length = PyBytes_GET_SIZE(value);
    } else {
        return mg_py_raise(mg_error(MG_ERR_INVALID_ARGUMENT, "metadata key %s: a string value must be str or bytes", key));
    }
    mg_status status = mg_gguf_writer_add_string(self->writer, key, data, (size_t)length);
    if (status != MG_OK) return mg_py_raise(status);
    Py_RETURN_NONE;
}

/* add_array(key, ndarray) — element type from the array's dtype. */
static PyObject *mg_py_writer_add_array(mg_py_gguf_writer *self, PyObject *args) {
    const char *key;
    PyObject *object;
    if (!PyArg_ParseTuple(args, "sO", &key, &object) || mg_py_writer_ready(self) < 0) return NULL;
    PyArrayObject *array = (PyArrayObject *)PyArray_FromAny(object, NULL, 1, 1,
                                                            NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED |
                                                                NPY_ARRAY_NOTSWAPPED, NULL);
    if (!array) return NULL;
    int npy = PyArray_TYPE(array);
    mg_value_type type = MG_VALUE_STRING;
    for (int t = 0; t <= MG_VALUE_F64; t++)
        if (mg_py_npy_of_value((mg_value_type)t) == npy) type = (mg_value_type)t;
    if (type == MG_VALUE_STRING) {
        Py_DECREF(array);
        return mg_py_raise(mg_error(MG_ERR_DTYPE, "metadata key %s: array dtype has no GGUF type "
                                                  "(use uint8..int64, float32, float64, bool)", key));
    }
    mg_status status = mg_gguf_writer_add_array(self->writer, key, type, (int64_t)PyArray_SIZE(array),
                                                 PyArray_DATA(array));
    Py_DECREF(array);
    if (status != MG_OK) return mg_py_raise(status);
    Py_RETURN_NONE;
}

/* add_string_array(key, sequence of str | bytes) */
static PyObject *mg_py_writer_add_string_array(mg_py_gguf_writer *self, PyObject *args) {
    const char *key;
    PyObject *object;
    if (!PyArg_ParseTuple(args, "sO", &key, &object) || mg_py_writer_ready(self) < 0) return NULL;
    PyObject *sequence = PySequence_Fast(object, "add_string_array needs a sequence of str or bytes");
    if (!sequence) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(sequence);
    const char **strings = PyMem_Malloc(((size_t)n + 1) * sizeof *strings);
    size_t *lengths = PyMem_Malloc(((size_t)n + 1) * sizeof *lengths);
    PyObject *result = NULL;
    if (!strings || !lengths) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(sequence, i);
        Py_ssize_t length;
        if (PyUnicode_Check(item)) {
            strings[i] = PyUnicode_AsUTF8AndSize(item, &length);
            if (!strings[i]) goto done;
        } else if (PyBytes_Check(item)) {
            strings[i] = PyBytes_AS_STRING(item);
            length = PyBytes_GET_SIZE(item);
        } else {
            mg_py_raise(mg_error(MG_ERR_INVALID_ARGUMENT, "metadata key %s: element %zd is not str or bytes", key, i));
            goto done;
        }
        lengths[i] = (size_t)length;
    }
    mg_status status = mg_gguf_writer_add_string_array(self->writer, key, (int64_t)n, strings, lengths);
    if (status != MG_OK) {
        mg_py_raise(status);
        goto done;
    }
    result = Py_None;
    Py_INCREF(result);
done:
    PyMem_Free(strings);
    PyMem_Free(lengths);
    Py_DECREF(sequence);
    return result;
}

static PyObject *mg_py_writer_add_metadata_from(mg_py_gguf_writer *self, PyObject *object) {
    if (mg_py_writer_ready(self) < 0) return NULL;
    if (!PyObject_TypeCheck(object, &mg_py_weights_type) || !((mg_py_weights *)object)->weights)
        return mg_py_raise(mg_error(MG_ERR_INVALID_ARGUMENT, "add_metadata_from needs an open Weights"));
    mg_status status = mg_gguf_writer_add_metadata_from(self->writer, ((mg_py_weights *)object)->weights);
    if (status != MG_OK) return mg_py_raise(status);
    Py_RETURN_NONE;
}

static int mg_py_shape_from_sequence(PyObject *object, int *n_dims, int64_t *shape) {
    PyObject *sequence = PySequence_Fast(object, "shape must be a sequence of ints");
    if (!sequence) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(sequence);
    if (n > MG_MAX_DIMS) {
        Py_DECREF(sequence);
        mg_py_raise(mg_error(MG_ERR_SHAPE, "shape has %zd dimensions; at most %d", n, MG_MAX_DIMS));
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        shape[i] = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(sequence, i));
        if (shape[i] == -1 && PyErr_Occurred()) {
            Py_DECREF(sequence);
            return -1;
        }
    }
    *n_dims = (int)n;
    Py_DECREF(sequence);
    return 0;
}

/* add_tensor_info(name, dtype_name, shape) */
static PyObject *mg_py_writer_add_tensor_info(mg_py_gguf_writer *self, PyObject *args) {
    const char *name, *dtype_name;
    PyObject *shape_object;
    if (!PyArg_ParseTuple(args, "ssO", &name, &dtype_name, &shape_object) || mg_py_writer_ready(self) < 0) return NULL;
    mg_dtype dtype;
    mg_status status = mg_dtype_from_name(dtype_name, &dtype);
    if (status != MG_OK) return mg_py_raise(mg_error_prefix(status, "tensor %s", name));
    int n_dims;
    int64_t shape[MG_MAX_DIMS];
    if (mg_py_shape_from_sequence(shape_object, &n_dims, shape) < 0) return NULL;
    status = mg_gguf_writer_add_tensor_info(self->writer, name, dtype, n_dims, shape);
    if (status != MG_OK) return mg_py_raise(status);
    Py_RETURN_NONE;
}

static mg_status mg_py_writer_write(mg_py_gguf_writer *self, const char *name, const mg_tensor *t) {
    mg_status status;
    Py_BEGIN_ALLOW_THREADS
    status = mg_gguf_writer_write_tensor(self->writer, name, t);
    Py_END_ALLOW_THREADS
    return status;
}

/* write_tensor(name, array, source_dtype=None): the next declared tensor.
 * source_dtype "bf16" reads a uint16 array as bfloat16 bit patterns. */
static PyObject *mg_py_writer_write_tensor(mg_py_gguf_writer *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"name", "array", "source_dtype", NULL};
    const char *name, *source_dtype = NULL;
    PyObject *object;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "sO|z", keywords, &name, &object, &source_dtype) ||
        mg_py_writer_ready(self) < 0)
        return NULL;
    PyArrayObject *array = (PyArrayObject *)PyArray_FromAny(object, NULL, 0, 0,
                                                            NPY_ARRAY_ALIGNED | NPY_ARRAY_NOTSWAPPED, NULL);
    if (!array) return NULL;
    mg_tensor t;
    mg_status status;
    if (PyArray_NDIM(array) == 0) {
        mg_dtype dtype;
        status = mg_py_dtype_from_npy(PyArray_TYPE(array), &dtype);
        if (status == MG_OK) status = mg_tensor_init(&t, PyArray_DATA(array), dtype, 0, NULL);
    } else {
        status = mg_py_tensor_from_array(array, &t);
    }
    if (status == MG_OK && source_dtype && strcmp(source_dtype, "bf16") == 0) {
        if (t.dtype != MG_U16 && t.dtype != MG_I16)
            status = mg_error(MG_ERR_DTYPE, "source_dtype bf16 needs a uint16 array, got %s", mg_dtype_name(t.dtype));
        else t.dtype = MG_BF16;
    } else if (status == MG_OK && source_dtype) {
        status = mg_error(MG_ERR_INVALID_ARGUMENT, "source_dtype '%s' is not supported (only bf16)", source_dtype);
    }
    if (status == MG_OK) status = mg_py_writer_write(self, name, &t);
    Py_DECREF(array);
    if (status != MG_OK) return mg_py_raise(mg_error_prefix(status, "tensor %s", name));
    Py_RETURN_NONE;
}

/* write_tensor_from(weights, source_name, name=None): the next declared tensor
 * straight from an open Weights (no NumPy copy; mmap -> file). */
static PyObject *mg_py_writer_write_tensor_from(mg_py_gguf_writer *self, PyObject *args) {
    PyObject *weights_object;
    const char *source_name, *name = NULL;
    if (!PyArg_ParseTuple(args, "Os|z", &weights_object, &source_name, &name) || mg_py_writer_ready(self) < 0)
        return NULL;
    if (!PyObject_TypeCheck(weights_object, &mg_py_weights_type) || !((mg_py_weights *)weights_object)->weights)
        return mg_py_raise(mg_error(MG_ERR_INVALID_ARGUMENT, "write_tensor_from needs an open Weights"));
    mg_tensor t;
    mg_status status = mg_weights_get(((mg_py_weights *)weights_object)->weights, source_name, &t);
    if (status == MG_OK) status = mg_py_writer_write(self, name ? name : source_name, &t);
    if (status != MG_OK) return mg_py_raise(status);
    Py_RETURN_NONE;
}

static PyObject *mg_py_writer_finish(mg_py_gguf_writer *self, PyObject *unused) {
    if (mg_py_writer_ready(self) < 0) return NULL;
    mg_status status;
    Py_BEGIN_ALLOW_THREADS
    status = mg_gguf_writer_finish(self->writer);
    Py_END_ALLOW_THREADS
    if (status != MG_OK) return mg_py_raise(status);
    mg_gguf_writer_destroy(self->writer);
    self->writer = NULL;
    Py_RETURN_NONE;
}

/* close(): abandon (deletes the file unless finish() succeeded). */
static PyObject *mg_py_writer_close(mg_py_gguf_writer *self, PyObject *unused) {
    mg_gguf_writer_destroy(self->writer);
    self->writer = NULL;
    Py_RETURN_NONE;
}

static PyObject *mg_py_writer_enter(PyObject *self, PyObject *unused) {
    Py_INCREF(self);
    return self;
}

static PyObject *mg_py_writer_exit(mg_py_gguf_writer *self, PyObject *args) {
    mg_gguf_writer_destroy(self->writer);
    self->writer = NULL;
    Py_RETURN_FALSE;
}

static PyMethodDef mg_py_gguf_writer_methods[] = {
    {"add_int", (PyCFunction)mg_py_writer_add_int, METH_VARARGS, "add_int(key, value, type='i64')"},
    {"add_float", (PyCFunction)mg_py_writer_add_float, METH_VARARGS, "add_float(key, value, type='f64')"},
    {"add_string", (PyCFunction)mg_py_writer_add_string, METH_VARARGS, "add_string(key, str | bytes)"},
    {"add_array", (PyCFunction)mg_py_writer_add_array, METH_VARARGS, "add_array(key, 1-D ndarray)"},
    {"add_string_array", (PyCFunction)mg_py_writer_add_string_array, METH_VARARGS,
     "add_string_array(key, [str | bytes, ...])"},
    {"add_metadata_from", (PyCFunction)mg_py_writer_add_metadata_from, METH_O,
     "add_metadata_from(weights): copy every metadata entry, keeping types"},
    {"add_tensor_info", (PyCFunction)mg_py_writer_add_tensor_info, METH_VARARGS,
     "add_tensor_info(name, dtype, shape): declare a tensor (dtype: f32 f16 bf16 q8_0 q4_0 i8 i16 i32 i64 f64)"},
    {"write_tensor", (PyCFunction)(void (*)(void))mg_py_writer_write_tensor, METH_VARARGS | METH_KEYWORDS,
     "write_tensor(name, array, source_dtype=None): data of the next declared tensor, converted to its dtype"},
    {"write_tensor_from", (PyCFunction)mg_py_writer_write_tensor_from, METH_VARARGS,
     "write_tensor_from(weights, source_name, name=None): data of the next declared tensor from a Weights"},
    {"finish", (PyCFunction)mg_py_writer_finish, METH_NOARGS, "Check every tensor was written and close."},
    {"close", (PyCFunction)mg_py_writer_close, METH_NOARGS, "Abandon: delete the file unless finished."},
    {"__enter__", (PyCFunction)mg_py_writer_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)mg_py_writer_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject mg_py_gguf_writer_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "medground._C.GGUFWriter",
    .tp_basicsize = sizeof(mg_py_gguf_writer),
    .tp_dealloc = (destructor)mg_py_gguf_writer_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "GGUFWriter(path): streaming GGUF v3 writer. Add metadata and tensor infos, then\n"
              "write_tensor for each in order, then finish(). Unfinished files are deleted.",
    .tp_methods = mg_py_gguf_writer_methods,
    .tp_init = (initproc)mg_py_gguf_writer_init,
    .tp_new = PyType_GenericNew,
};

int mg_py_register_io(PyObject *module) {
    if (PyType_Ready(&mg_py_weights_type) < 0 || PyType_Ready(&mg_py_gguf_writer_type) < 0) return -1;
    Py_INCREF(&mg_py_weights_type);
    if (PyModule_AddObject(module, "Weights", (PyObject *)&mg_py_weights_type) < 0) {
        Py_DECREF(&mg_py_weights_type);
        return -1;
    }
    Py_INCREF(&mg_py_gguf_writer_type);
    if (PyModule_AddObject(module, "GGUFWriter", (PyObject *)&mg_py_gguf_writer_type) < 0) {
        Py_DECREF(&mg_py_gguf_writer_type);
        return -1;
    }
    return 0;
}

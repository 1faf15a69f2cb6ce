/* medground._C: module init and the status -> exception bridge. */
#define MG_PY_MAIN
#include "py_common.h"

#include <stdlib.h>

int mg_py_register_medplib(PyObject *module); /* py_medplib.c */

static PyObject *mg_errors_module;

static const char *mg_py_error_class_name(mg_status status) {
    switch (status) {
    case MG_ERR_INVALID_ARGUMENT: return "InvalidArgumentError";
    case MG_ERR_FORMAT: return "FormatError";
    case MG_ERR_SHAPE: return "ShapeError";
    case MG_ERR_DTYPE: return "DTypeError";
    case MG_ERR_IO: return "MedgroundIOError";
    case MG_ERR_NO_MEMORY: return "OutOfMemoryError";
    case MG_ERR_NOT_FOUND: return "NotFoundError";
    case MG_ERR_UNSUPPORTED: return "UnsupportedError";
    case MG_ERR_UNSAFE: return "UnsafeError";
    case MG_ERR_INTERNAL: return "InternalError";
    case MG_OK: break;
    }
    return "MedgroundError";
}

PyObject *mg_py_raise_message(mg_status status, const char *message) {
    if (!mg_errors_module) {
        mg_errors_module = PyImport_ImportModule("medground.errors");
        if (!mg_errors_module) return NULL;
    }
    PyObject *cls = PyObject_GetAttrString(mg_errors_module, mg_py_error_class_name(status));
    if (!cls) return NULL;
    PyErr_SetString(cls, message && *message ? message : mg_status_name(status));
    Py_DECREF(cls);
    return NULL;
}

PyObject *mg_py_raise(mg_status status) { return mg_py_raise_message(status, mg_last_error()); }

int mg_py_raise_int(mg_status status) {
    mg_py_raise(status);
    return -1;
}

int mg_py_npy_type(mg_dtype dtype) {
    switch (dtype) {
    case MG_F32: return NPY_FLOAT32;
    case MG_F16: return NPY_FLOAT16;
    case MG_F64: return NPY_FLOAT64;
    case MG_I8: return NPY_INT8;
    case MG_I16: return NPY_INT16;
    case MG_I32: return NPY_INT32;
    case MG_I64: return NPY_INT64;
    case MG_U8: return NPY_UINT8;
    case MG_U16: return NPY_UINT16;
    case MG_BOOL: return NPY_BOOL;
    default: return -1;
    }
}

mg_status mg_py_dtype_from_npy(int npy_type, mg_dtype *out) {
    switch (npy_type) {
    case NPY_FLOAT32: *out = MG_F32; return MG_OK;
    case NPY_FLOAT16: *out = MG_F16; return MG_OK;
    case NPY_FLOAT64: *out = MG_F64; return MG_OK;
    case NPY_INT8: *out = MG_I8; return MG_OK;
    case NPY_INT16: *out = MG_I16; return MG_OK;
    case NPY_INT32: *out = MG_I32; return MG_OK;
    case NPY_INT64: *out = MG_I64; return MG_OK;
    case NPY_UINT8: *out = MG_U8; return MG_OK;
    case NPY_UINT16: *out = MG_U16; return MG_OK;
    case NPY_BOOL: *out = MG_BOOL; return MG_OK;
    default: break;
    }
    PyArray_Descr *descr = PyArray_DescrFromType(npy_type);
    const char *name = "unknown";
    PyObject *str = descr ? PyObject_Str((PyObject *)descr) : NULL;
    if (str) name = PyUnicode_AsUTF8(str);
    mg_status status = MG_ERR_DTYPE;
    mg_error(status, "NumPy dtype %s is not supported (use uint8, uint16, int16, int32, float32, ...)",
             name ? name : "unknown");
    PyErr_Clear();
    Py_XDECREF(str);
    Py_XDECREF(descr);
    return status;
}

mg_status mg_py_tensor_from_array(PyArrayObject *array, mg_tensor *out) {
    int n_dims = PyArray_NDIM(array);
    if (n_dims > MG_MAX_DIMS)
        return mg_error(MG_ERR_SHAPE, "array has %d dimensions; at most %d are supported", n_dims,
                        MG_MAX_DIMS);
    mg_dtype dtype;
    mg_status status = mg_py_dtype_from_npy(PyArray_TYPE(array), &dtype);
    if (status != MG_OK) return status;
    int64_t shape[MG_MAX_DIMS];
    for (int i = 0; i < n_dims; i++) {
        shape[i] = PyArray_DIM(array, i);
        if (shape[i] == 0) return mg_error(MG_ERR_SHAPE, "array has a zero-size dimension (axis %d)", i);
    }
    status = mg_tensor_init(out, PyArray_DATA(array), dtype, n_dims, shape);
    if (status != MG_OK) return status;
    for (int i = 0; i < n_dims; i++) out->strides[i] = PyArray_STRIDE(array, i);
    return MG_OK;
}

PyObject *mg_py_array_from_tensor(const mg_tensor *t) {
    npy_intp dims[MG_MAX_DIMS];
    for (int i = 0; i < t->n_dims; i++) dims[i] = (npy_intp)t->shape[i];
    int npy_type = mg_py_npy_type(t->dtype);
    mg_dtype out_dtype = t->dtype;
    if (npy_type < 0) {
        npy_type = NPY_FLOAT32;
        out_dtype = MG_F32;
    }
    PyObject *array = PyArray_SimpleNew(t->n_dims, dims, npy_type);
    if (!array) return NULL;
    mg_tensor dst;
    mg_status status = mg_tensor_init(&dst, PyArray_DATA((PyArrayObject *)array), out_dtype, t->n_dims,
                                      t->shape);
    if (status == MG_OK) status = mg_tensor_convert(t, &dst);
    if (status != MG_OK) {
        Py_DECREF(array);
        return mg_py_raise(status);
    }
    return array;
}

static mg_context *mg_py_context;
static mg_device mg_py_device = MG_DEVICE_CPU;

/* Selects the device of the shared context (takes effect now). */
int mg_py_set_device(mg_device device) {
    mg_context_options options = {device, mg_py_context ? mg_context_n_threads(mg_py_context) : 0,
                                  mg_py_context ? mg_context_blas(mg_py_context) : MG_BLAS_DEFAULT,
                                  mg_py_context ? mg_context_fpmath(mg_py_context) : MG_FPMATH_DEFAULT};
    mg_context *ctx = NULL;
    mg_status status = mg_context_create(&options, &ctx);
    if (status != MG_OK) return mg_py_raise_int(status);
    mg_context_destroy(mg_py_context);
    mg_py_context = ctx;
    mg_py_device = device;
    return 0;
}

mg_context *mg_py_default_context(void) {
    if (!mg_py_context) {
        mg_context_options options = {mg_py_device, 0, MG_BLAS_DEFAULT, MG_FPMATH_DEFAULT};
        const char *env = getenv("MG_NUM_THREADS");
        if (env) options.n_threads = atoi(env);
        mg_status status = mg_context_create(&options, &mg_py_context);
        if (status != MG_OK) {
            mg_py_raise(status);
            return NULL;
        }
    }
    return mg_py_context;
}

/* Replaces the shared context (thread count / BLAS choice). */
int mg_py_reset_default_context(int n_threads, int blas) {
    mg_context_options options = {mg_py_device, n_threads, (mg_blas)blas,
                                  mg_py_context ? mg_context_fpmath(mg_py_context) : MG_FPMATH_DEFAULT};
    mg_context *ctx = NULL;
    mg_status status = mg_context_create(&options, &ctx);
    if (status != MG_OK) return mg_py_raise_int(status);
    mg_context_destroy(mg_py_context);
    mg_py_context = ctx;
    return 0;
}

static struct PyModuleDef mg_module_def = {
    PyModuleDef_HEAD_INIT, "medground._C", "medground's compiled core (C library bindings).", -1,
    NULL, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__C(void) {
    import_array();
    PyObject *module = PyModule_Create(&mg_module_def);
    if (!module) return NULL;
    if (PyModule_AddStringConstant(module, "__version__", MG_VERSION_STRING) < 0 ||
        mg_py_register_core(module) < 0 || mg_py_register_ops(module) < 0 ||
        mg_py_register_image(module) < 0 ||
        mg_py_register_io(module) < 0 || mg_py_register_tokenizer(module) < 0 ||
        mg_py_register_eval(module) < 0 || mg_py_register_data(module) < 0 ||
        mg_py_register_models(module) < 0 || mg_py_register_medplib(module) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}

/* Python bindings of the core: threads, BLAS choice, dtype conversion. */
#include "py_common.h"

static PyObject *py_set_num_threads(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"n_threads", "blas", NULL};
    int n_threads = 0;
    const char *blas = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|iz", keywords, &n_threads, &blas)) return NULL;
    int blas_value = MG_BLAS_DEFAULT;
    if (blas) {
        if (strcmp(blas, "onednn") == 0) blas_value = MG_BLAS_ONEDNN;
        else if (strcmp(blas, "openblas") == 0) blas_value = MG_BLAS_OPENBLAS;
        else return mg_py_raise(mg_error(MG_ERR_INVALID_ARGUMENT, "blas='%s': expected 'onednn' or 'openblas'", blas));
    }
    if (mg_py_reset_default_context(n_threads, blas_value) < 0) return NULL;
    Py_RETURN_NONE;
}

static PyObject *py_get_num_threads(PyObject *self, PyObject *unused) {
    mg_context *ctx = mg_py_default_context();
    if (!ctx) return NULL;
    return PyLong_FromLong(mg_context_n_threads(ctx));
}

static PyObject *py_get_blas(PyObject *self, PyObject *unused) {
    mg_context *ctx = mg_py_default_context();
    if (!ctx) return NULL;
    return PyUnicode_FromString(mg_context_blas(ctx) == MG_BLAS_OPENBLAS ? "openblas" : "onednn");
}

static const char *const mg_py_fpmath_names[] = {"default", "auto", "strict", "bf16"};

static PyObject *py_set_fpmath(PyObject *self, PyObject *arg) {
    const char *name = PyUnicode_Check(arg) ? PyUnicode_AsUTF8(arg) : NULL;
    if (!name) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "set_fpmath: mode must be a str");
        return NULL;
    }
    int mode = -1;
    for (int i = 0; i < 4; i++)
        if (strcmp(name, mg_py_fpmath_names[i]) == 0) mode = i;
    if (mode < 0)
        return mg_py_raise(mg_error(MG_ERR_INVALID_ARGUMENT,
                                    "fpmath '%s': expected 'auto', 'strict', 'bf16' or 'default'", name));
    mg_context *ctx = mg_py_default_context();
    if (!ctx) return NULL;
    mg_status status = mg_context_set_fpmath(ctx, (mg_fpmath)mode);
    if (status != MG_OK) return mg_py_raise(status);
    Py_RETURN_NONE;
}

static PyObject *py_get_fpmath(PyObject *self, PyObject *unused) {
    mg_context *ctx = mg_py_default_context();
    if (!ctx) return NULL;
    const int mode = (int)mg_context_fpmath(ctx);
    return PyUnicode_FromString(mode >= 0 && mode < 4 ? mg_py_fpmath_names[mode] : "unknown");
}

static PyObject *py_cpu_count(PyObject *self, PyObject *unused) { return PyLong_FromLong(mg_cpu_count()); }

/* quantize(array f32 2-D/1-D, dtype name) -> uint8 array of the block bytes, rows kept. */
static PyObject *py_quantize(PyObject *self, PyObject *args) {
    PyObject *object;
    const char *name;
    if (!PyArg_ParseTuple(args, "Os", &object, &name)) return NULL;
    mg_dtype dtype;
    mg_status status = mg_dtype_from_name(name, &dtype);
    if (status != MG_OK) return mg_py_raise(status);
    PyArrayObject *array = (PyArrayObject *)PyArray_FROMANY(object, NPY_FLOAT32, 1, 4, NPY_ARRAY_C_CONTIGUOUS);
    if (!array) return NULL;
    int n_dims = PyArray_NDIM(array);
    int64_t row = PyArray_DIM(array, n_dims - 1);
    size_t row_bytes = 0;
    status = mg_dtype_row_bytes(dtype, row, &row_bytes);
    if (status != MG_OK) {
        Py_DECREF(array);
        return mg_py_raise(status);
    }
    int64_t n_rows = PyArray_SIZE(array) / (row ? row : 1);
    npy_intp dims[2] = {(npy_intp)n_rows, (npy_intp)row_bytes};
    PyObject *result = PyArray_SimpleNew(2, dims, NPY_UINT8);
    if (!result) {
        Py_DECREF(array);
        return NULL;
    }
    const float *src = PyArray_DATA(array);
    uint8_t *dst = PyArray_DATA((PyArrayObject *)result);
    Py_BEGIN_ALLOW_THREADS
    for (int64_t r = 0; r < n_rows && status == MG_OK; r++)
        status = mg_quantize_row(dtype, src + r * row, dst + r * row_bytes, row);
    Py_END_ALLOW_THREADS
    Py_DECREF(array);
    if (status != MG_OK) {
        Py_DECREF(result);
        return mg_py_raise(status);
    }
    return result;
}

/* dequantize(uint8 array [rows, row_bytes], dtype name, n_per_row) -> f32 [rows, n]. */
static PyObject *py_dequantize(PyObject *self, PyObject *args) {
    PyObject *object;
    const char *name;
    long long n;
    if (!PyArg_ParseTuple(args, "OsL", &object, &name, &n)) return NULL;
    mg_dtype dtype;
    mg_status status = mg_dtype_from_name(name, &dtype);
    if (status != MG_OK) return mg_py_raise(status);
    size_t row_bytes = 0;
    status = mg_dtype_row_bytes(dtype, n, &row_bytes);
    if (status != MG_OK) return mg_py_raise(status);
    PyArrayObject *array = (PyArrayObject *)PyArray_FROMANY(object, NPY_UINT8, 1, 2, NPY_ARRAY_C_CONTIGUOUS);
    if (!array) return NULL;
    npy_intp total = PyArray_SIZE(array);
    if (row_bytes == 0 || total % (npy_intp)row_bytes) {
        Py_DECREF(array);
        return mg_py_raise(mg_error(MG_ERR_SHAPE, "%lld bytes is not a whole number of %s rows of %lld",
                                    (long long)total, name, n));
    }
    npy_intp dims[2] = {total / (npy_intp)row_bytes, (npy_intp)n};
    PyObject *result = PyArray_SimpleNew(2, dims, NPY_FLOAT32);
    if (!result) {
        Py_DECREF(array);
        return NULL;
    }
    const uint8_t *src = PyArray_DATA(array);
    float *dst = PyArray_DATA((PyArrayObject *)result);
    Py_BEGIN_ALLOW_THREADS
    for (npy_intp r = 0; r < dims[0] && status == MG_OK; r++)
        status = mg_dequantize_row(dtype, src + r * row_bytes, dst + r * n, n);
    Py_END_ALLOW_THREADS
    Py_DECREF(array);
    if (status != MG_OK) {
        Py_DECREF(result);
        return mg_py_raise(status);
    }
    return result;
}

/* to_bf16_bits / from_bf16_bits for tests: float32 array <-> uint16 bits. */
static PyObject *py_f32_to_bf16(PyObject *self, PyObject *object) {
    PyArrayObject *array = (PyArrayObject *)PyArray_FROMANY(object, NPY_FLOAT32, 0, 0, NPY_ARRAY_C_CONTIGUOUS);
    if (!array) return NULL;
    PyObject *result = PyArray_SimpleNew(PyArray_NDIM(array), PyArray_DIMS(array), NPY_UINT16);
    if (result) {
        const float *src = PyArray_DATA(array);
        uint16_t *dst = PyArray_DATA((PyArrayObject *)result);
        for (npy_intp i = 0; i < PyArray_SIZE(array); i++) dst[i] = mg_f32_to_bf16(src[i]);
    }
    Py_DECREF(array);
    return result;
}

static PyObject *py_f32_to_f16(PyObject *self, PyObject *object) {
    PyArrayObject *array = (PyArrayObject *)PyArray_FROMANY(object, NPY_FLOAT32, 0, 0, NPY_ARRAY_C_CONTIGUOUS);
    if (!array) return NULL;
    PyObject *result = PyArray_SimpleNew(PyArray_NDIM(array), PyArray_DIMS(array), NPY_UINT16);
    if (result) {
        const float *src = PyArray_DATA(array);
        uint16_t *dst = PyArray_DATA((PyArrayObject *)result);
        for (npy_intp i = 0; i < PyArray_SIZE(array); i++) dst[i] = mg_f32_to_f16(src[i]);
    }
    Py_DECREF(array);
    return result;
}

static PyObject *py_set_device(PyObject *self, PyObject *args) {
    const char *name;
    if (!PyArg_ParseTuple(args, "s", &name)) return NULL;
    mg_device device;
    if (strcmp(name, "cpu") == 0) device = MG_DEVICE_CPU;
    else if (strcmp(name, "cuda") == 0) device = MG_DEVICE_CUDA;
    else return mg_py_raise(mg_error(MG_ERR_INVALID_ARGUMENT, "device '%s': expected 'cpu' or 'cuda'", name));
    if (mg_py_set_device(device) < 0) return NULL;
    Py_RETURN_NONE;
}

static PyObject *py_get_device(PyObject *self, PyObject *unused) {
    mg_context *ctx = mg_py_default_context();
    if (!ctx) return NULL;
    return PyUnicode_FromString(mg_context_backend_name(ctx));
}

/* (available, reason): whether a CUDA context can be made here, and why not. */
static PyObject *py_cuda_status(PyObject *self, PyObject *unused) {
    mg_context_options options = {MG_DEVICE_CUDA, 1, MG_BLAS_DEFAULT, MG_FPMATH_DEFAULT};
    mg_context *ctx = NULL;
    mg_status status = mg_context_create(&options, &ctx);
    if (status == MG_OK) {
        mg_context_destroy(ctx);
        return Py_BuildValue("(Os)", Py_True, "");
    }
    return Py_BuildValue("(Os)", Py_False, mg_last_error());
}

static PyObject *py_built_with_cuda(PyObject *self, PyObject *unused) {
#ifdef MG_HAVE_CUDA
    Py_RETURN_TRUE;
#else
    Py_RETURN_FALSE;
#endif
}

static PyMethodDef mg_core_methods[] = {
    {"set_device", py_set_device, METH_VARARGS, "set_device('cpu'|'cuda'): device of the shared context."},
    {"get_device", py_get_device, METH_NOARGS, "Backend name of the shared context."},
    {"cuda_status", py_cuda_status, METH_NOARGS, "(available, reason) for the CUDA backend."},
    {"built_with_cuda", py_built_with_cuda, METH_NOARGS, "Whether this build contains the CUDA backend."},
    {"set_num_threads", (PyCFunction)(void (*)(void))py_set_num_threads, METH_VARARGS | METH_KEYWORDS,
     "set_num_threads(n_threads=0, blas=None): threads for medground's shared context (0 = all cores)."},
    {"get_num_threads", py_get_num_threads, METH_NOARGS, "Threads of the shared context."},
    {"get_blas", py_get_blas, METH_NOARGS, "GEMM provider of the shared context ('onednn'/'openblas')."},
    {"set_fpmath", py_set_fpmath, METH_O,
     "set_fpmath(mode): 'auto' (models decide), 'strict' (f32 products) or 'bf16'; 'default' re-reads MG_FPMATH."},
    {"get_fpmath", py_get_fpmath, METH_NOARGS, "Precision mode of the shared context: 'auto', 'strict' or 'bf16'."},
    {"cpu_count", py_cpu_count, METH_NOARGS, "Online CPU cores."},
    {"quantize", py_quantize, METH_VARARGS, "quantize(f32 array, dtype) -> uint8 [rows, row_bytes] (GGUF blocks)."},
    {"dequantize", py_dequantize, METH_VARARGS, "dequantize(uint8 [rows, row_bytes], dtype, n) -> f32 [rows, n]."},
    {"f32_to_bf16_bits", py_f32_to_bf16, METH_O, "float32 -> bf16 bit patterns (uint16), round to nearest even."},
    {"f32_to_f16_bits", py_f32_to_f16, METH_O, "float32 -> IEEE half bit patterns (uint16), round to nearest even."},
    {NULL, NULL, 0, NULL},
};

int mg_py_register_core(PyObject *module) { return PyModule_AddFunctions(module, mg_core_methods); }

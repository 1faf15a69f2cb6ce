/* Shared CPython/NumPy glue. Every csrc/python/py_<module>.c includes this
 * and defines `int mg_py_register_<module>(PyObject *module)` (0 on success,
 * -1 with a Python exception set). module.c calls each one at import. */
#ifndef MG_PY_COMMON_H
#define MG_PY_COMMON_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#define PY_ARRAY_UNIQUE_SYMBOL MG_PyArray_API
#ifndef MG_PY_MAIN
#define NO_IMPORT_ARRAY
#endif
#include <numpy/arrayobject.h>

#include "medground.h"
#include "core/core.h"

/* Raises the medground.errors class for `status` with mg_last_error() as the
 * message; returns NULL so callers write `return mg_py_raise(status);`. */
PyObject *mg_py_raise(mg_status status);
/* Same, for functions returning int. Returns -1. */
int mg_py_raise_int(mg_status status);
/* Raises a medground error class with a Python-side message. */
PyObject *mg_py_raise_message(mg_status status, const char *message);

/* numpy dtype number <-> mg_dtype. -1 / MG_ERR_DTYPE when there is none. */
int mg_py_npy_type(mg_dtype dtype);
mg_status mg_py_dtype_from_npy(int npy_type, mg_dtype *out);

/* Describe a NumPy array as an mg_tensor view (no copy; strides kept). The
 * array must stay alive while the tensor is used. At most 4-D; numel > 0. */
mg_status mg_py_tensor_from_array(PyArrayObject *array, mg_tensor *out);

/* A new contiguous NumPy array with the tensor's shape and a copy of its
 * data (f32, f16, integer types; bf16 and quantized are converted to f32). */
PyObject *mg_py_array_from_tensor(const mg_tensor *t);

/* The shared mg_context used by module-level functions (created lazily;
 * thread count from medground.set_num_threads or MG_NUM_THREADS). */
mg_context *mg_py_default_context(void);
/* A KV cache of `capacity` positions for decoder: dtype_name NULL -> the
 * decoder's default (mg_kv_cache_create), else "f32" / "f16". -1 with the
 * error set on failure. */
int mg_py_kv_cache_create(const mg_decoder *decoder, int capacity, const char *dtype_name, mg_kv_cache **out);
/* The decoder cache of a MedPLIB cache capsule; NULL with an error set. */
mg_kv_cache *mg_py_medplib_cache_of(PyObject *capsule);
/* Replace it (n_threads <= 0: all cores; blas: mg_blas value). -1 on error. */
int mg_py_reset_default_context(int n_threads, int blas);
/* Switch the shared context to another device. -1 with an exception on error. */
int mg_py_set_device(mg_device device);

/* Streaming generation: the C loop runs without the GIL and takes it back
 * for each token to call `callback(token)`; a falsy return stops, an
 * exception sets `failed` (and stops). */
typedef struct mg_py_stream {
    PyObject *callback;
    bool failed;
} mg_py_stream;
bool mg_py_stream_token(void *user_data, int32_t token);

/* Checks the generation arguments every model binding takes and fills
 * `options` (`stops` is borrowed: a contiguous int32 array or NULL;
 * `stream` must outlive the generation). 0, or -1 with an exception. */
int mg_py_generate_options(const char *op, int max_new_tokens, int do_sample, float temperature, int top_k,
                           float top_p, unsigned long long seed, PyArrayObject *stops, PyObject *callback,
                           mg_py_stream *stream, mg_generate_options *options);

int mg_py_register_core(PyObject *module);
int mg_py_register_ops(PyObject *module);
int mg_py_register_image(PyObject *module);
int mg_py_register_io(PyObject *module);
int mg_py_register_tokenizer(PyObject *module);
int mg_py_register_eval(PyObject *module);
int mg_py_register_data(PyObject *module);
int mg_py_register_models(PyObject *module);

#endif

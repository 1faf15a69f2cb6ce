/* Python bindings of the backend ops (medground._C.op_*), used by tests and
 * benchmarks. Arrays are passed to C as they are (dtype and strides kept),
 * so the C library's own validation and strided-view handling is what runs;
 * outputs are new contiguous float32 arrays. Every call uses the shared
 * context (medground.set_num_threads) and releases the GIL around C work. */
#include "py_common.h"

#include <time.h>

#include <math.h>

/* A NumPy argument viewed as an mg_tensor; array is NULL for None. */
typedef struct {
    PyArrayObject *array;
    mg_tensor tensor;
} mg_py_arg;

static void mg_py_arg_release(mg_py_arg *arg) {
    Py_XDECREF(arg->array);
    arg->array = NULL;
}

/* 0, or -1 with a medground exception naming the op and the argument. */
static int mg_py_arg_parse(const char *op, const char *name, PyObject *object, mg_py_arg *arg) {
    arg->array = NULL;
    if (!object || object == Py_None) return 0;
    arg->array = (PyArrayObject *)PyArray_FROMANY(object, NPY_NOTYPE, 0, 0, 0);
    if (!arg->array) return -1;
    if (PyArray_NDIM(arg->array) == 0) {
        mg_py_arg_release(arg);
        mg_py_raise(mg_error(MG_ERR_SHAPE, "%s: %s is a scalar; an array is needed", op, name));
        return -1;
    }
    mg_status status = mg_py_tensor_from_array(arg->array, &arg->tensor);
    if (status != MG_OK) {
        mg_py_arg_release(arg);
        mg_py_raise(mg_error_prefix(status, "%s: %s", op, name));
        return -1;
    }
    return 0;
}

static const mg_tensor *mg_py_arg_tensor(const mg_py_arg *arg) { return arg->array ? &arg->tensor : NULL; }

/* A new float32 array of this shape and its tensor view. */
static PyArrayObject *mg_py_new_output(int n_dims, const int64_t *shape, mg_tensor *t) {
    npy_intp dims[MG_MAX_DIMS] = {1, 1, 1, 1};
    for (int i = 0; i < n_dims; i++) dims[i] = (npy_intp)(shape[i] > 0 ? shape[i] : 1);
    PyArrayObject *array = (PyArrayObject *)PyArray_SimpleNew(n_dims, dims, NPY_FLOAT32);
    if (!array) return NULL;
    int64_t fixed[MG_MAX_DIMS];
    for (int i = 0; i < n_dims; i++) fixed[i] = dims[i];
    mg_status status = mg_tensor_init(t, PyArray_DATA(array), MG_F32, n_dims, fixed);
    if (status != MG_OK) {
        Py_DECREF(array);
        return (PyArrayObject *)mg_py_raise(status);
    }
    return array;
}

/* Converts a float tensor to `name` ("f16", "bf16", "q8_0", ...) in a new
 * heap buffer that the caller frees with mg_tensor_free_data (dst->data is
 * NULL after a failure). */
static mg_status mg_py_convert_weight(const char *op, const mg_tensor *src, const char *name,
                                      mg_tensor *dst) {
    mg_dtype dtype;
    dst->data = NULL;
    MG_TRY(mg_dtype_from_name(name, &dtype));
    /* A conv kernel [O, C, P, P] is quantized as the [O, C*P*P] matrix the
     * patch embedding multiplies by (its rows of P are not whole blocks). */
    mg_tensor flat;
    if (src->n_dims == 4 && mg_dtype_is_quantized(dtype) && mg_tensor_is_contiguous(src)) {
        int64_t shape[2] = {src->shape[0], src->shape[1] * src->shape[2] * src->shape[3]};
        MG_TRY(mg_tensor_reshape(src, 2, shape, &flat));
        src = &flat;
    }
    mg_status status = mg_tensor_alloc(dst, dtype, src->n_dims, src->shape);
    if (status != MG_OK) {
        dst->data = NULL;
        return mg_error_prefix(status, "%s: weight to %s", op, name);
    }
    status = mg_tensor_convert(src, dst);
    if (status != MG_OK) {
        mg_tensor_free_data(dst);
        dst->data = NULL;
        return mg_error_prefix(status, "%s: weight to %s", op, name);
    }
    return MG_OK;
}

static PyObject *mg_py_finish(mg_status status, PyArrayObject *out) {
    if (status != MG_OK) {
        Py_XDECREF(out);
        return mg_py_raise(status);
    }
    return (PyObject *)out;
}

/* ------------------------------------------------------------------ linear */

static double mg_py_seconds(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + 1e-9 * (double)now.tv_nsec;
}

/* op_linear and op_linear_timed: the weight is converted once, then the
 * linear runs `repeats` times (>= 1); *best gets the fastest run. */
static PyObject *mg_py_linear(PyObject *args, PyObject *kwargs, bool timed) {
    static char *keywords[] = {"x", "weight", "bias", "weight_dtype", "repeats", NULL};
    PyObject *x_obj, *w_obj, *b_obj = Py_None;
    const char *weight_dtype = "f32";
    int repeats = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|Osi", keywords, &x_obj, &w_obj, &b_obj, &weight_dtype,
                                     &repeats))
        return NULL;
    if (repeats < 1 || (!timed && repeats != 1))
        return mg_py_raise(mg_error(MG_ERR_INVALID_ARGUMENT, "op_linear: repeats %d (timed runs only, >= 1)", repeats));
    mg_context *ctx = mg_py_default_context();
    if (!ctx) return NULL;
    mg_py_arg x, w, b = {NULL, {0}};
    if (mg_py_arg_parse("op_linear", "x", x_obj, &x) < 0) return NULL;
    if (mg_py_arg_parse("op_linear", "weight", w_obj, &w) < 0 ||
        mg_py_arg_parse("op_linear", "bias", b_obj, &b) < 0) {
        mg_py_arg_release(&x);
        mg_py_arg_release(&w);
        return NULL;
    }
    int64_t shape[MG_MAX_DIMS];
    for (int i = 0; i < x.tensor.n_dims; i++) shape[i] = x.tensor.shape[i];
    shape[x.tensor.n_dims - 1] = w.tensor.shape[0];
    mg_tensor y;
    PyArrayObject *out = mg_py_new_output(x.tensor.n_dims, shape, &y);
    mg_status status = MG_OK;
    double best = 0.0;
    if (out) {
        Py_BEGIN_ALLOW_THREADS
        mg_tensor converted;
        converted.data = NULL;
        bool convert = strcmp(weight_dtype, "f32") != 0;
        status = convert ? mg_py_convert_weight("op_linear", &w.tensor, weight_dtype, &converted) : MG_OK;
        for (int r = 0; status == MG_OK && r < repeats; r++) {
            double started = mg_py_seconds();
            status = mg_linear(ctx, &x.tensor, convert ? &converted : &w.tensor, mg_py_arg_tensor(&b), &y);
            double seconds = mg_py_seconds() - started;
            if (r == 0 || seconds < best) best = seconds;
        }
        if (converted.data) mg_tensor_free_data(&converted);
        Py_END_ALLOW_THREADS
    }
    mg_py_arg_release(&x);
    mg_py_arg_release(&w);
    mg_py_arg_release(&b);
    if (!out) return NULL;
    PyObject *result = mg_py_finish(status, out);
    if (!timed || !result) return result;
    return Py_BuildValue("Nd", result, best);
}

static PyObject *py_op_linear(PyObject *self, PyObject *args, PyObject *kwargs) {
    return mg_py_linear(args, kwargs, false);
}

static PyObject *py_op_linear_timed(PyObject *self, PyObject *args, PyObject *kwargs) {
    return mg_py_linear(args, kwargs, true);
}

/* ------------------------------------------------------------------ matmul */

static PyObject *py_op_matmul(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"a", "b", "transpose_b", "dtype", NULL};
    PyObject *a_obj, *b_obj;
    int transpose_b = 0;
    const char *dtype = "f32";
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|ps", keywords, &a_obj, &b_obj, &transpose_b, &dtype))
        return NULL;
    if (strcmp(dtype, "f32") != 0 && strcmp(dtype, "bf16") != 0)
        return mg_py_raise(mg_error(MG_ERR_DTYPE, "op_matmul: dtype '%s': expected 'f32' or 'bf16'", dtype));
    mg_context *ctx = mg_py_default_context();
    if (!ctx) return NULL;
    mg_py_arg a, b;
    if (mg_py_arg_parse("op_matmul", "a", a_obj, &a) < 0) return NULL;
    if (mg_py_arg_parse("op_matmul", "b", b_obj, &b) < 0) {
        mg_py_arg_release(&a);
        return NULL;
    }
    /* Output shape from the operands when they make sense; otherwise a
     * placeholder, and mg_matmul reports what is wrong with the inputs. */
    const mg_tensor *ta = &a.tensor, *tb = &b.tensor;
    int64_t shape[3] = {1, 1, 1};
    int n_dims = 1;
    if (ta->n_dims >= 2 && tb->n_dims >= 2 && ta->n_dims <= 3 && tb->n_dims <= 3) {
        int64_t batch_a = ta->n_dims == 3 ? ta->shape[0] : 1, batch_b = tb->n_dims == 3 ? tb->shape[0] : 1;
        n_dims = ta->n_dims == 3 || tb->n_dims == 3 ? 3 : 2;
        int64_t M = ta->shape[ta->n_dims - 2];
        int64_t N = tb->shape[tb->n_dims - (transpose_b ? 2 : 1)];
        if (n_dims == 3) {
            shape[0] = batch_a > batch_b ? batch_a : batch_b;
            shape[1] = M;
            shape[2] = N;
        } else {
            shape[0] = M;
            shape[1] = N;
        }
    }
    mg_tensor c;
    PyArrayObject *out = mg_py_new_output(n_dims, shape, &c);
    mg_status status = MG_OK;
    if (out) {
        Py_BEGIN_ALLOW_THREADS
        if (strcmp(dtype, "bf16") == 0) {
            mg_tensor ca, cb;
            ca.data = NULL;
            cb.data = NULL;
            status = mg_py_convert_weight("op_matmul", ta, "bf16", &ca);
            if (status == MG_OK) status = mg_py_convert_weight("op_matmul", tb, "bf16", &cb);
            if (status == MG_OK) status = mg_matmul(ctx, &ca, &cb, transpose_b, &c);
            if (ca.data) mg_tensor_free_data(&ca);
            if (cb.data) mg_tensor_free_data(&cb);
        } else {
            status = mg_matmul(ctx, ta, tb, transpose_b, &c);
        }
        Py_END_ALLOW_THREADS
    }
    mg_py_arg_release(&a);
    mg_py_arg_release(&b);
    if (!out) return NULL;
    return mg_py_finish(status, out);
}

/* -------------------------------------------------------- element-wise ops */

typedef enum { MG_PY_ADD, MG_PY_MUL } mg_py_binary;

static PyObject *mg_py_binary_op(const char *op, mg_py_binary kind, PyObject *args) {
    PyObject *a_obj, *b_obj;
    if (!PyArg_ParseTuple(args, "OO", &a_obj, &b_obj)) return NULL;
    mg_context *ctx = mg_py_default_context();
    if (!ctx) return NULL;
    mg_py_arg a, b;
    if (mg_py_arg_parse(op, "a", a_obj, &a) < 0) return NULL;
    if (mg_py_arg_parse(op, "b", b_obj, &b) < 0) {
        mg_py_arg_release(&a);
        return NULL;
    }
    mg_tensor o;
    PyArrayObject *out = mg_py_new_output(a.tensor.n_dims, a.tensor.shape, &o);
    mg_status status = MG_OK;
    if (out) {
        Py_BEGIN_ALLOW_THREADS
        status = kind == MG_PY_ADD ? mg_add(ctx, &a.tensor, &b.tensor, &o) : mg_mul(ctx, &a.tensor, &b.tensor, &o);
        Py_END_ALLOW_THREADS
    }
    mg_py_arg_release(&a);
    mg_py_arg_release(&b);
    if (!out) return NULL;
    return mg_py_finish(status, out);
}

static PyObject *py_op_add(PyObject *self, PyObject *args) { return mg_py_binary_op("op_add", MG_PY_ADD, args); }
static PyObject *py_op_mul(PyObject *self, PyObject *args) { return mg_py_binary_op("op_mul", MG_PY_MUL, args); }

static PyObject *py_op_scale(PyObject *self, PyObject *args) {
    PyObject *x_obj;
    float factor;
    if (!PyArg_ParseTuple(args, "Of", &x_obj, &factor)) return NULL;
    mg_context *ctx = mg_py_default_context();
    if (!ctx) return NULL;
    mg_py_arg x;
    if (mg_py_arg_parse("op_scale", "x", x_obj, &x) < 0) return NULL;
    mg_tensor o;
    PyArrayObject *out = mg_py_new_output(x.tensor.n_dims, x.tensor.shape, &o);
    mg_status status = MG_OK;
    if (out) {
        Py_BEGIN_ALLOW_THREADS
        status = mg_scale(ctx, &x.tensor, factor, &o);
        Py_END_ALLOW_THREADS
    }
    mg_py_arg_release(&x);
    if (!out) return NULL;
    return mg_py_finish(status, out);
}

static PyObject *py_op_activate(PyObject *self, PyObject *args) {
    PyObject *x_obj;
    const char *name;
    if (!PyArg_ParseTuple(args, "Os", &x_obj, &name)) return NULL;
    static const struct {
        const char *name;
        mg_activation kind;
    } kinds[] = {{"gelu", MG_ACT_GELU_ERF},        {"gelu_erf", MG_ACT_GELU_ERF},
                 {"gelu_tanh", MG_ACT_GELU_TANH},  {"quick_gelu", MG_ACT_QUICK_GELU},
                 {"silu", MG_ACT_SILU},            {"relu", MG_ACT_RELU}};
    int found = -1;
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (strcmp(kinds[i].name, name) == 0) found = (int)i;
    if (found < 0)
        return mg_py_raise(mg_error(MG_ERR_INVALID_ARGUMENT,
                                    "op_activate: unknown activation '%s' (gelu, gelu_tanh, quick_gelu, silu, relu)", name));
    mg_context *ctx = mg_py_default_context();
    if (!ctx) return NULL;
    mg_py_arg x;
    if (mg_py_arg_parse("op_activate", "x", x_obj, &x) < 0) return NULL;
    mg_tensor o;
    PyArrayObject *out = mg_py_new_output(x.tensor.n_dims, x.tensor.shape, &o);
    mg_status status = MG_OK;
    if (out) {
        Py_BEGIN_ALLOW_THREADS
        status = mg_activate(ctx, &x.tensor, kinds[found].kind, &o);
        Py_END_ALLOW_THREADS
    }
    mg_py_arg_release(&x);
    if (!out) return NULL;
    return mg_py_finish(status, out);
}

/* ------------------------------------------------------------------ norms */

static PyObject *mg_py_norm(PyObject *args, PyObject *kwargs, bool rms) {
    static char *ln_keywords[] = {"x", "weight", "bias", "eps", NULL};
    static char *rms_keywords[] = {"x", "weight", "eps", NULL};
    const char *op = rms ? "op_rms_norm" : "op_layer_norm";
    PyObject *x_obj, *w_obj = Py_None, *b_obj = Py_None;
    float eps = 1e-5f;
    int ok = rms ? PyArg_ParseTupleAndKeywords(args, kwargs, "O|Of", rms_keywords, &x_obj, &w_obj, &eps)
                 : PyArg_ParseTupleAndKeywords(args, kwargs, "O|OOf", ln_keywords, &x_obj, &w_obj, &b_obj, &eps);
    if (!ok) return NULL;
    mg_context *ctx = mg_py_default_context();
    if (!ctx) return NULL;
    mg_py_arg x, w = {NULL, {0}}, b = {NULL, {0}};
    if (mg_py_arg_parse(op, "x", x_obj, &x) < 0) return NULL;
    if (mg_py_arg_parse(op, "weight", w_obj, &w) < 0 || mg_py_arg_parse(op, "bias", b_obj, &b) < 0) {
        mg_py_arg_release(&x);
        mg_py_arg_release(&w);
        return NULL;
    }
    mg_tensor o;
    PyArrayObject *out = mg_py_new_output(x.tensor.n_dims, x.tensor.shape, &o);
    mg_status status = MG_OK;
    if (out) {
        Py_BEGIN_ALLOW_THREADS
        status = rms ? mg_rms_norm(ctx, &x.tensor, mg_py_arg_tensor(&w), eps, &o)
                     : mg_layer_norm(ctx, &x.tensor, mg_py_arg_tensor(&w), mg_py_arg_tensor(&b), eps, &o);
        Py_END_ALLOW_THREADS
    }
    mg_py_arg_release(&x);
    mg_py_arg_release(&w);
    mg_py_arg_release(&b);
    if (!out) return NULL;
    return mg_py_finish(status, out);
}

static PyObject *py_op_layer_norm(PyObject *self, PyObject *args, PyObject *kwargs) {
    return mg_py_norm(args, kwargs, false);
}
static PyObject *py_op_rms_norm(PyObject *self, PyObject *args, PyObject *kwargs) {
    return mg_py_norm(args, kwargs, true);
}

/* ---------------------------------------------------------------- softmax */

static PyObject *py_op_softmax(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"x", "mask", "causal", NULL};
    PyObject *x_obj, *m_obj = Py_None;
    int causal = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|Op", keywords, &x_obj, &m_obj, &causal)) return NULL;
    mg_context *ctx = mg_py_default_context();
    if (!ctx) return NULL;
    mg_py_arg x, m = {NULL, {0}};
    if (mg_py_arg_parse("op_softmax", "x", x_obj, &x) < 0) return NULL;
    if (mg_py_arg_parse("op_softmax", "mask", m_obj, &m) < 0) {
        mg_py_arg_release(&x);
        return NULL;
    }
    mg_tensor o;
    PyArrayObject *out = mg_py_new_output(x.tensor.n_dims, x.tensor.shape, &o);
    mg_status status = MG_OK;
    if (out) {
        Py_BEGIN_ALLOW_THREADS
        status = mg_softmax(ctx, &x.tensor, mg_py_arg_tensor(&m), causal != 0, &o);
        Py_END_ALLOW_THREADS
    }
    mg_py_arg_release(&x);
    mg_py_arg_release(&m);
    if (!out) return NULL;
    return mg_py_finish(status, out);
}

/* ------------------------------------------------------------------- rope */

/* op_rope(x, positions, inv_freq, rotary_dim=None, inplace=False): with
 * inplace the (possibly strided) float32 array x is rotated in place and
 * returned; otherwise a new array. */
static PyObject *py_op_rope(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"x", "positions", "inv_freq", "rotary_dim", "inplace", NULL};
    PyObject *x_obj, *p_obj, *f_obj;
    int rotary_dim = -1, inplace = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOO|ip", keywords, &x_obj, &p_obj, &f_obj, &rotary_dim, &inplace))
        return NULL;
    mg_context *ctx = mg_py_default_context();
    if (!ctx) return NULL;
    PyArrayObject *positions = (PyArrayObject *)PyArray_FROMANY(p_obj, NPY_INT32, 1, 1, NPY_ARRAY_IN_ARRAY | NPY_ARRAY_FORCECAST);
    if (!positions) return NULL;
    PyArrayObject *inv_freq = (PyArrayObject *)PyArray_FROMANY(f_obj, NPY_FLOAT32, 1, 1, NPY_ARRAY_IN_ARRAY | NPY_ARRAY_FORCECAST);
    if (!inv_freq) {
        Py_DECREF(positions);
        return NULL;
    }
    mg_py_arg x;
    if (mg_py_arg_parse("op_rope", "x", x_obj, &x) < 0) {
        Py_DECREF(positions);
        Py_DECREF(inv_freq);
        return NULL;
    }
    if (rotary_dim < 0) rotary_dim = (int)x.tensor.shape[x.tensor.n_dims - 1];
    PyArrayObject *out = NULL;
    mg_tensor o;
    mg_status status = MG_OK;
    if (PyArray_DIM(positions, 0) != x.tensor.shape[0])
        status = mg_error(MG_ERR_SHAPE, "op_rope: %lld positions for %lld tokens",
                          (long long)PyArray_DIM(positions, 0), (long long)x.tensor.shape[0]);
    else if (rotary_dim >= 2 && PyArray_DIM(inv_freq, 0) < rotary_dim / 2)
        status = mg_error(MG_ERR_SHAPE, "op_rope: inv_freq has %lld entries; rotary_dim %d needs %d",
                          (long long)PyArray_DIM(inv_freq, 0), rotary_dim, rotary_dim / 2);
    else if (inplace && (!PyArray_ISWRITEABLE(x.array) || (PyObject *)x.array != x_obj))
        status = mg_error(MG_ERR_INVALID_ARGUMENT, "op_rope: inplace needs a writeable numpy array x");
    if (status == MG_OK) {
        if (inplace) {
            o = x.tensor;
            Py_INCREF(x.array);
            out = x.array;
        } else {
            out = mg_py_new_output(x.tensor.n_dims, x.tensor.shape, &o);
        }
    }
    if (out) {
        const int32_t *pos = PyArray_DATA(positions);
        const float *freq = PyArray_DATA(inv_freq);
        Py_BEGIN_ALLOW_THREADS
        status = mg_rope(ctx, &x.tensor, pos, freq, rotary_dim, &o);
        Py_END_ALLOW_THREADS
    }
    mg_py_arg_release(&x);
    Py_DECREF(positions);
    Py_DECREF(inv_freq);
    if (status != MG_OK && !out) return mg_py_raise(status);
    if (!out) return NULL;
    return mg_py_finish(status, out);
}

/* -------------------------------------------------------------- attention */

static PyObject *py_op_attention(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"q", "k", "v", "mask", "causal", "scale", NULL};
    PyObject *q_obj, *k_obj, *v_obj, *m_obj = Py_None, *s_obj = Py_None;
    int causal = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOO|OpO", keywords, &q_obj, &k_obj, &v_obj, &m_obj,
                                     &causal, &s_obj))
        return NULL;
    double scale = NAN;
    if (s_obj != Py_None) {
        scale = PyFloat_AsDouble(s_obj);
        if (scale == -1.0 && PyErr_Occurred()) return NULL;
    }
    mg_context *ctx = mg_py_default_context();
    if (!ctx) return NULL;
    mg_py_arg q, k = {NULL, {0}}, v = {NULL, {0}}, m = {NULL, {0}};
    if (mg_py_arg_parse("op_attention", "q", q_obj, &q) < 0) return NULL;
    if (mg_py_arg_parse("op_attention", "k", k_obj, &k) < 0 || mg_py_arg_parse("op_attention", "v", v_obj, &v) < 0 ||
        mg_py_arg_parse("op_attention", "mask", m_obj, &m) < 0) {
        mg_py_arg_release(&q);
        mg_py_arg_release(&k);
        mg_py_arg_release(&v);
        return NULL;
    }
    const mg_tensor *tq = &q.tensor, *tv = &v.tensor;
    if (isnan(scale)) scale = 1.0 / sqrt((double)tq->shape[tq->n_dims - 1]);
    int64_t shape[3] = {tq->shape[0], tq->n_dims > 1 ? tq->shape[1] : 1, tv->shape[tv->n_dims - 1]};
    mg_tensor o;
    PyArrayObject *out = mg_py_new_output(3, shape, &o);
    mg_status status = MG_OK;
    if (out) {
        Py_BEGIN_ALLOW_THREADS
        status = mg_attention(ctx, tq, &k.tensor, tv, mg_py_arg_tensor(&m), causal != 0, (float)scale, &o);
        Py_END_ALLOW_THREADS
    }
    mg_py_arg_release(&q);
    mg_py_arg_release(&k);
    mg_py_arg_release(&v);
    mg_py_arg_release(&m);
    if (!out) return NULL;
    return mg_py_finish(status, out);
}

/* ------------------------------------------------------------ patch embed */

static PyObject *py_op_patch_embed(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"image", "weight", "bias", "weight_dtype", NULL};
    PyObject *i_obj, *w_obj, *b_obj = Py_None;
    const char *weight_dtype = "f32";
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|Os", keywords, &i_obj, &w_obj, &b_obj, &weight_dtype))
        return NULL;
    mg_context *ctx = mg_py_default_context();
    if (!ctx) return NULL;
    mg_py_arg im, w = {NULL, {0}}, b = {NULL, {0}};
    if (mg_py_arg_parse("op_patch_embed", "image", i_obj, &im) < 0) return NULL;
    if (mg_py_arg_parse("op_patch_embed", "weight", w_obj, &w) < 0 ||
        mg_py_arg_parse("op_patch_embed", "bias", b_obj, &b) < 0) {
        mg_py_arg_release(&im);
        mg_py_arg_release(&w);
        return NULL;
    }
    const mg_tensor *ti = &im.tensor, *tw = &w.tensor;
    int64_t P = tw->n_dims == 4 && tw->shape[3] > 0 ? tw->shape[3] : 1;
    int64_t shape[2] = {1, tw->shape[0]};
    if (ti->n_dims == 3) shape[0] = (ti->shape[1] / P) * (ti->shape[2] / P);
    mg_tensor o;
    PyArrayObject *out = mg_py_new_output(2, shape, &o);
    mg_status status = MG_OK;
    if (out) {
        Py_BEGIN_ALLOW_THREADS
        mg_tensor converted;
        converted.data = NULL;
        bool convert = strcmp(weight_dtype, "f32") != 0;
        status = convert ? mg_py_convert_weight("op_patch_embed", tw, weight_dtype, &converted) : MG_OK;
        if (status == MG_OK)
            status = mg_patch_embed(ctx, ti, convert ? &converted : tw, mg_py_arg_tensor(&b), &o);
        if (converted.data) mg_tensor_free_data(&converted);
        Py_END_ALLOW_THREADS
    }
    mg_py_arg_release(&im);
    mg_py_arg_release(&w);
    mg_py_arg_release(&b);
    if (!out) return NULL;
    return mg_py_finish(status, out);
}

/* ------------------------------------------------------------ interpolate */

static PyObject *py_op_interpolate(PyObject *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"x", "size", "mode", "align_corners", NULL};
    PyObject *x_obj;
    long long height, width;
    const char *mode = "bicubic";
    int align_corners = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O(LL)|sp", keywords, &x_obj, &height, &width, &mode,
                                     &align_corners))
        return NULL;
    bool cubic = strcmp(mode, "bicubic") == 0;
    if (!cubic && strcmp(mode, "bilinear") != 0)
        return mg_py_raise(mg_error(MG_ERR_INVALID_ARGUMENT, "op_interpolate: mode '%s': expected 'bicubic' or 'bilinear'", mode));
    if (cubic && align_corners)
        return mg_py_raise(mg_error(MG_ERR_UNSUPPORTED, "op_interpolate: bicubic supports align_corners=False only"));
    if (height <= 0 || width <= 0 || height > (1 << 20) || width > (1 << 20))
        return mg_py_raise(mg_error(MG_ERR_INVALID_ARGUMENT, "op_interpolate: size (%lld, %lld) must be positive", height, width));
    mg_context *ctx = mg_py_default_context();
    if (!ctx) return NULL;
    mg_py_arg x;
    if (mg_py_arg_parse("op_interpolate", "x", x_obj, &x) < 0) return NULL;
    int64_t shape[3] = {x.tensor.shape[0], height, width};
    mg_tensor o;
    PyArrayObject *out = mg_py_new_output(3, shape, &o);
    mg_status status = MG_OK;
    if (out) {
        Py_BEGIN_ALLOW_THREADS
        status = cubic ? mg_interpolate_bicubic(ctx, &x.tensor, &o)
                       : mg_interpolate_bilinear(ctx, &x.tensor, align_corners != 0, &o);
        Py_END_ALLOW_THREADS
    }
    mg_py_arg_release(&x);
    if (!out) return NULL;
    return mg_py_finish(status, out);
}

static PyObject *py_op_kernel_info(PyObject *self, PyObject *unused) {
    mg_context *ctx = mg_py_default_context();
    if (!ctx) return NULL;
    const char *isa = NULL;
    bool bf16 = false;
    mg_status status = mg_cpu_kernel_info(ctx, &isa, &bf16);
    if (status != MG_OK) return mg_py_raise(status);
    return Py_BuildValue("{s:s,s:O,s:i,s:s}", "isa", isa, "native_bf16_gemm", bf16 ? Py_True : Py_False,
                         "threads", mg_context_n_threads(ctx), "blas",
                         mg_context_blas(ctx) == MG_BLAS_OPENBLAS ? "openblas" : "onednn");
}

static PyMethodDef mg_ops_methods[] = {
    {"op_kernel_info", py_op_kernel_info, METH_NOARGS,
     "op_kernel_info() -> {'isa', 'native_bf16_gemm', 'threads', 'blas'} of the shared context."},
    {"op_linear", (PyCFunction)(void (*)(void))py_op_linear, METH_VARARGS | METH_KEYWORDS,
     "op_linear(x, weight, bias=None, weight_dtype='f32') -> x @ weight.T + bias; the float32 weight "
     "is first converted to weight_dtype (f16, bf16, q8_0, q4_0) when given."},
    {"op_linear_timed", (PyCFunction)(void (*)(void))py_op_linear_timed, METH_VARARGS | METH_KEYWORDS,
     "op_linear_timed(x, weight, bias=None, weight_dtype='f32', repeats=1) -> (y, best seconds of one "
     "linear, the weight converted once beforehand)."},
    {"op_matmul", (PyCFunction)(void (*)(void))py_op_matmul, METH_VARARGS | METH_KEYWORDS,
     "op_matmul(a, b, transpose_b=False, dtype='f32') -> a @ b (or b^T); dtype='bf16' rounds both to bf16 first."},
    {"op_add", py_op_add, METH_VARARGS, "op_add(a, b) -> a + b (b broadcast onto a)."},
    {"op_mul", py_op_mul, METH_VARARGS, "op_mul(a, b) -> a * b (b broadcast onto a)."},
    {"op_scale", py_op_scale, METH_VARARGS, "op_scale(x, factor) -> x * factor."},
    {"op_layer_norm", (PyCFunction)(void (*)(void))py_op_layer_norm, METH_VARARGS | METH_KEYWORDS,
     "op_layer_norm(x, weight=None, bias=None, eps=1e-5) over the last axis."},
    {"op_rms_norm", (PyCFunction)(void (*)(void))py_op_rms_norm, METH_VARARGS | METH_KEYWORDS,
     "op_rms_norm(x, weight=None, eps=1e-5) over the last axis."},
    {"op_activate", py_op_activate, METH_VARARGS,
     "op_activate(x, kind): kind in gelu, gelu_tanh, quick_gelu, silu, relu."},
    {"op_softmax", (PyCFunction)(void (*)(void))py_op_softmax, METH_VARARGS | METH_KEYWORDS,
     "op_softmax(x, mask=None, causal=False) over the last axis."},
    {"op_rope", (PyCFunction)(void (*)(void))py_op_rope, METH_VARARGS | METH_KEYWORDS,
     "op_rope(x[T,H,D], positions[T], inv_freq[rotary_dim/2], rotary_dim=D, inplace=False)."},
    {"op_attention", (PyCFunction)(void (*)(void))py_op_attention, METH_VARARGS | METH_KEYWORDS,
     "op_attention(q[Tq,Hq,D], k[Tk,Hkv,D], v[Tk,Hkv,Dv], mask=None, causal=False, scale=1/sqrt(D))."},
    {"op_patch_embed", (PyCFunction)(void (*)(void))py_op_patch_embed, METH_VARARGS | METH_KEYWORDS,
     "op_patch_embed(image[C,H,W], weight[O,C,P,P], bias=None, weight_dtype='f32') -> [(H/P)*(W/P), O]."},
    {"op_interpolate", (PyCFunction)(void (*)(void))py_op_interpolate, METH_VARARGS | METH_KEYWORDS,
     "op_interpolate(x[C,H,W], size=(H2, W2), mode='bicubic'|'bilinear', align_corners=False)."},
    {NULL, NULL, 0, NULL},
};

int mg_py_register_ops(PyObject *module) { return PyModule_AddFunctions(module, mg_ops_methods); }

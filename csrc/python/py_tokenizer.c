/* Python bindings of the tokenizer module (medground._C): the Tokenizer
 * object (load from a file or from bytes, encode, batch encode, decode,
 * token lookups) and TokenStream (incremental decode for generation).
 * python/medground/tokenizer.py is the user-facing layer (NFC, allowed /
 * disallowed special tokens, GGUF metadata). */
#include "py_common.h"

#include <string.h>

typedef struct {
    PyObject_HEAD
    mg_tokenizer *tok;
} mg_py_tokenizer;

static PyTypeObject mg_py_tokenizer_type;

static int mg_py_tokenizer_ready(mg_py_tokenizer *self) {
    if (self->tok) return 0;
    mg_py_raise_message(MG_ERR_INVALID_ARGUMENT, "Tokenizer object was not loaded");
    return -1;
}

/* kind names: auto (format detection), qwen, tiktoken, sentencepiece,
 * medplib, hf_json */
static int mg_py_tokenizer_init(mg_py_tokenizer *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"path", "kind", NULL};
    PyObject *path_object;
    const char *kind = "auto";
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&|s", keywords, PyUnicode_FSConverter, &path_object, &kind))
        return -1;
    const char *path = PyBytes_AS_STRING(path_object);
    mg_tokenizer *tok = NULL;
    mg_status status;
    int which = strcmp(kind, "auto") == 0            ? 0
                : strcmp(kind, "qwen") == 0          ? 1
                : strcmp(kind, "sentencepiece") == 0 ? 2
                : strcmp(kind, "medplib") == 0       ? 3
                : strcmp(kind, "hf_json") == 0       ? 4
                                                     : -1;
    if (which < 0) {
        Py_DECREF(path_object);
        return mg_py_raise_int(mg_error(MG_ERR_INVALID_ARGUMENT,
                                        "Tokenizer kind '%s': expected auto, qwen, sentencepiece, medplib or hf_json",
                                        kind));
    }
    Py_BEGIN_ALLOW_THREADS
    switch (which) {
    case 1: status = mg_tokenizer_load_qwen(path, &tok); break;
    case 2: status = mg_tokenizer_load_sentencepiece(path, &tok); break;
    case 3: status = mg_tokenizer_load_medplib(path, &tok); break;
    case 4: status = mg_tokenizer_load_hf_json(path, &tok); break;
    default: status = mg_tokenizer_load(path, &tok); break;
    }
    Py_END_ALLOW_THREADS
    Py_DECREF(path_object);
    if (status != MG_OK) return mg_py_raise_int(status);
    mg_tokenizer_destroy(self->tok);
    self->tok = tok;
    return 0;
}

static void mg_py_tokenizer_dealloc(mg_py_tokenizer *self) {
    mg_tokenizer_destroy(self->tok);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* from_bytes(data, kind, name=None, pattern=None): kind is qwen, tiktoken
 * (ranks with `pattern`, no specials), sentencepiece, medplib or hf_json. */
static PyObject *mg_py_tokenizer_from_bytes(PyObject *cls, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"data", "kind", "name", "pattern", NULL};
    Py_buffer buffer;
    const char *kind;
    const char *name = NULL, *pattern = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y*s|zz", keywords, &buffer, &kind, &name, &pattern)) return NULL;
    mg_tokenizer *tok = NULL;
    mg_status status;
    const char *data = buffer.buf;
    size_t n = (size_t)buffer.len;
    int which = strcmp(kind, "qwen") == 0            ? 1
                : strcmp(kind, "sentencepiece") == 0 ? 2
                : strcmp(kind, "medplib") == 0       ? 3
                : strcmp(kind, "hf_json") == 0       ? 4
                : strcmp(kind, "tiktoken") == 0      ? 5
                                                     : -1;
    if (which < 0) {
        PyBuffer_Release(&buffer);
        return mg_py_raise(mg_error(MG_ERR_INVALID_ARGUMENT,
                                    "from_bytes kind '%s': expected qwen, tiktoken, sentencepiece, medplib or hf_json",
                                    kind));
    }
    Py_BEGIN_ALLOW_THREADS
    switch (which) {
    case 1: status = mg_tokenizer_load_qwen_memory(data, n, name, &tok); break;
    case 2: status = mg_tokenizer_load_sentencepiece_memory((const uint8_t *)data, n, name, &tok); break;
    case 3: status = mg_tokenizer_load_medplib_memory((const uint8_t *)data, n, name, &tok); break;
    case 4: status = mg_tokenizer_load_hf_json_memory(data, n, name, &tok); break;
    default: status = mg_tokenizer_load_tiktoken_memory(data, n, pattern, name, &tok); break;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&buffer);
    if (status != MG_OK) return mg_py_raise(status);
    mg_py_tokenizer *self = (mg_py_tokenizer *)((PyTypeObject *)cls)->tp_alloc((PyTypeObject *)cls, 0);
    if (!self) {
        mg_tokenizer_destroy(tok);
        return NULL;
    }
    self->tok = tok;
    return (PyObject *)self;
}

/* Text as UTF-8 bytes: str (lone surrogates are an InvalidArgumentError)
 * or any bytes-like object (validated by the C encoder). */
typedef struct {
    const char *data;
    Py_ssize_t size;
    Py_buffer buffer;
    bool has_buffer;
} mg_py_text;

static int mg_py_get_text(PyObject *object, mg_py_text *text, Py_ssize_t index) {
    text->has_buffer = false;
    if (PyUnicode_Check(object)) {
        text->data = PyUnicode_AsUTF8AndSize(object, &text->size);
        if (!text->data) {
            if (PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) {
                PyErr_Clear();
                if (index >= 0)
                    mg_py_raise(mg_error(MG_ERR_INVALID_ARGUMENT,
                                         "text %zd of the batch is not encodable as UTF-8 (lone surrogate)", index));
                else
                    mg_py_raise_message(MG_ERR_INVALID_ARGUMENT, "text is not encodable as UTF-8 (lone surrogate)");
            }
            return -1;
        }
        return 0;
    }
    if (PyObject_GetBuffer(object, &text->buffer, PyBUF_SIMPLE) == 0) {
        text->has_buffer = true;
        text->data = text->buffer.buf;
        text->size = text->buffer.len;
        return 0;
    }
    PyErr_Clear();
    if (index >= 0)
        mg_py_raise(mg_error(MG_ERR_INVALID_ARGUMENT, "text %zd of the batch is %s, not str or bytes", index,
                             Py_TYPE(object)->tp_name));
    else
        mg_py_raise(mg_error(MG_ERR_INVALID_ARGUMENT, "text is %s, not str or bytes", Py_TYPE(object)->tp_name));
    return -1;
}

static void mg_py_release_text(mg_py_text *text) {
    if (text->has_buffer) PyBuffer_Release(&text->buffer);
    text->has_buffer = false;
}

/* Options shared by encode and encode_batch. `allowed` holds borrowed UTF-8
 * pointers into `allowed_list` items (kept alive by the caller). */
typedef struct {
    mg_encode_options options;
    const char **allowed;
    PyObject *allowed_seq;
} mg_py_encode_opts;

static int mg_py_parse_opts(int special, PyObject *allowed, int add_bos, int add_eos, int expand_images,
                            mg_py_encode_opts *o) {
    memset(o, 0, sizeof *o);
    o->options.special = (mg_special_mode)special;
    o->options.add_bos = add_bos != 0;
    o->options.add_eos = add_eos != 0;
    o->options.expand_images = expand_images != 0;
    if (special < 0 || special > 2) {
        mg_py_raise(mg_error(MG_ERR_INVALID_ARGUMENT, "special mode %d: expected 0 (all), 1 (none) or 2 (list)", special));
        return -1;
    }
    if (special == MG_SPECIAL_LIST) {
        if (!allowed || allowed == Py_None) {
            mg_py_raise_message(MG_ERR_INVALID_ARGUMENT, "special mode 2 (list) needs an allowed list");
            return -1;
        }
        o->allowed_seq = PySequence_Fast(allowed, "allowed special tokens must be a sequence of str");
        if (!o->allowed_seq) return -1;
        Py_ssize_t n = PySequence_Fast_GET_SIZE(o->allowed_seq);
        o->allowed = PyMem_Malloc((size_t)(n + 1) * sizeof *o->allowed);
        if (!o->allowed) {
            Py_CLEAR(o->allowed_seq);
            PyErr_NoMemory();
            return -1;
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *item = PySequence_Fast_GET_ITEM(o->allowed_seq, i);
            const char *s = PyUnicode_Check(item) ? PyUnicode_AsUTF8(item) : NULL;
            if (!s) {
                PyErr_Clear();
                PyMem_Free(o->allowed);
                o->allowed = NULL;
                Py_CLEAR(o->allowed_seq);
                mg_py_raise(mg_error(MG_ERR_INVALID_ARGUMENT, "allowed special token %zd is not a str", i));
                return -1;
            }
            o->allowed[i] = s;
        }
        o->options.allowed = o->allowed;
        o->options.n_allowed = n;
    }
    return 0;
}

static void mg_py_free_opts(mg_py_encode_opts *o) {
    PyMem_Free(o->allowed);
    o->allowed = NULL;
    Py_CLEAR(o->allowed_seq);
}

static PyObject *mg_py_ids_list(const int32_t *ids, size_t n) {
    PyObject *list = PyList_New((Py_ssize_t)n);
    if (!list) return NULL;
    for (size_t i = 0; i < n; i++) {
        PyObject *value = PyLong_FromLong(ids[i]);
        if (!value) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, value);
    }
    return list;
}

/* encode(text, special=0, allowed=None, add_bos=False, add_eos=False,
 *        expand_images=False) -> list[int] */
static PyObject *mg_py_tokenizer_encode(mg_py_tokenizer *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"text", "special", "allowed", "add_bos", "add_eos", "expand_images", NULL};
    PyObject *text_object, *allowed = Py_None;
    int special = 0, add_bos = 0, add_eos = 0, expand_images = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|iOppp", keywords, &text_object, &special, &allowed, &add_bos,
                                     &add_eos, &expand_images))
        return NULL;
    if (mg_py_tokenizer_ready(self) < 0) return NULL;
    mg_py_encode_opts o;
    if (mg_py_parse_opts(special, allowed, add_bos, add_eos, expand_images, &o) < 0) return NULL;
    mg_py_text text;
    if (mg_py_get_text(text_object, &text, -1) < 0) {
        mg_py_free_opts(&o);
        return NULL;
    }
    int32_t *ids = NULL;
    size_t n_ids = 0;
    mg_status status;
    Py_BEGIN_ALLOW_THREADS
    status = mg_tokenizer_encode(self->tok, text.data, (size_t)text.size, &o.options, &ids, &n_ids);
    Py_END_ALLOW_THREADS
    mg_py_release_text(&text);
    mg_py_free_opts(&o);
    if (status != MG_OK) return mg_py_raise(status);
    PyObject *list = mg_py_ids_list(ids, n_ids);
    free(ids);
    return list;
}

/* encode_batch(texts, special=0, allowed=None, add_bos=False, add_eos=False,
 *              expand_images=False, n_threads=0) -> list[list[int]]
 * Runs on a private thread pool (n_threads <= 0: medground's thread count),
 * so concurrent callers never share one. */
static PyObject *mg_py_tokenizer_encode_batch(mg_py_tokenizer *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"texts", "special", "allowed", "add_bos", "add_eos", "expand_images", "n_threads", NULL};
    PyObject *texts_object, *allowed = Py_None;
    int special = 0, add_bos = 0, add_eos = 0, expand_images = 0, n_threads = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|iOpppi", keywords, &texts_object, &special, &allowed, &add_bos,
                                     &add_eos, &expand_images, &n_threads))
        return NULL;
    if (mg_py_tokenizer_ready(self) < 0) return NULL;
    PyObject *seq = PySequence_Fast(texts_object, "texts must be a sequence of str or bytes");
    if (!seq) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    mg_py_encode_opts o;
    if (mg_py_parse_opts(special, allowed, add_bos, add_eos, expand_images, &o) < 0) {
        Py_DECREF(seq);
        return NULL;
    }
    mg_py_text *texts = PyMem_Calloc((size_t)n + 1, sizeof *texts);
    const char **pointers = PyMem_Calloc((size_t)n + 1, sizeof *pointers);
    size_t *sizes = PyMem_Calloc((size_t)n + 1, sizeof *sizes);
    int32_t **ids = PyMem_Calloc((size_t)n + 1, sizeof *ids);
    size_t *n_ids = PyMem_Calloc((size_t)n + 1, sizeof *n_ids);
    PyObject *result = NULL;
    Py_ssize_t got = 0;
    if (!texts || !pointers || !sizes || !ids || !n_ids) {
        PyErr_NoMemory();
        goto done;
    }
    for (; got < n; got++) {
        if (mg_py_get_text(PySequence_Fast_GET_ITEM(seq, got), &texts[got], got) < 0) goto done;
        pointers[got] = texts[got].data;
        sizes[got] = (size_t)texts[got].size;
    }
    if (n_threads <= 0) {
        mg_context *ctx = mg_py_default_context();
        if (!ctx) goto done;
        n_threads = mg_context_n_threads(ctx);
    }
    if (n_threads > n) n_threads = (int)n;
    mg_status status = MG_OK;
    Py_BEGIN_ALLOW_THREADS
    mg_threadpool *pool = NULL;
    if (n_threads > 1) status = mg_threadpool_create(n_threads, &pool);
    if (status == MG_OK)
        status = mg_tokenizer_encode_batch(self->tok, pointers, sizes, (int64_t)n, &o.options, pool, ids, n_ids);
    mg_threadpool_destroy(pool);
    Py_END_ALLOW_THREADS
    if (status != MG_OK) {
        mg_py_raise(status);
        goto done;
    }
    result = PyList_New(n);
    for (Py_ssize_t i = 0; result && i < n; i++) {
        PyObject *list = mg_py_ids_list(ids[i], n_ids[i]);
        if (!list) Py_CLEAR(result);
        else PyList_SET_ITEM(result, i, list);
    }
done:
    for (Py_ssize_t i = 0; texts && i < got; i++) mg_py_release_text(&texts[i]);
    for (Py_ssize_t i = 0; ids && i < n; i++) free(ids[i]);
    PyMem_Free(texts);
    PyMem_Free(pointers);
    PyMem_Free(sizes);
    PyMem_Free(ids);
    PyMem_Free(n_ids);
    mg_py_free_opts(&o);
    Py_DECREF(seq);
    return result;
}

/* ids (sequence of int or integer ndarray) -> malloc'd int32 array. */
static int mg_py_get_ids(PyObject *object, int32_t **ids, size_t *n) {
    *ids = NULL;
    *n = 0;
    PyObject *seq = PySequence_Fast(object, "ids must be a sequence of int");
    if (!seq) return -1;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(seq);
    int32_t *out = malloc((size_t)count * sizeof *out + 1);
    if (!out) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        long long v = PyLong_AsLongLong(item);
        if (v == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            free(out);
            Py_DECREF(seq);
            mg_py_raise(mg_error(MG_ERR_INVALID_ARGUMENT, "id at position %zd is %s, not an int", i,
                                 Py_TYPE(item)->tp_name));
            return -1;
        }
        if (v < INT32_MIN || v > INT32_MAX) v = -1; /* out of range either way; C names it */
        out[i] = (int32_t)v;
    }
    Py_DECREF(seq);
    *ids = out;
    *n = (size_t)count;
    return 0;
}

/* decode(ids, skip_special=False) -> str */
static PyObject *mg_py_tokenizer_decode(mg_py_tokenizer *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"ids", "skip_special", NULL};
    PyObject *ids_object;
    int skip_special = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|p", keywords, &ids_object, &skip_special)) return NULL;
    if (mg_py_tokenizer_ready(self) < 0) return NULL;
    int32_t *ids;
    size_t n;
    if (mg_py_get_ids(ids_object, &ids, &n) < 0) return NULL;
    char *text = NULL;
    size_t n_bytes = 0;
    mg_status status;
    Py_BEGIN_ALLOW_THREADS
    status = mg_tokenizer_decode(self->tok, ids, n, skip_special != 0, &text, &n_bytes);
    Py_END_ALLOW_THREADS
    free(ids);
    if (status != MG_OK) return mg_py_raise(status);
    PyObject *result = PyUnicode_DecodeUTF8(text, (Py_ssize_t)n_bytes, "replace");
    free(text);
    return result;
}

/* token_to_id(token: str | bytes) -> int */
static PyObject *mg_py_tokenizer_token_to_id(mg_py_tokenizer *self, PyObject *token) {
    if (mg_py_tokenizer_ready(self) < 0) return NULL;
    mg_py_text text;
    if (mg_py_get_text(token, &text, -1) < 0) return NULL;
    int32_t id;
    mg_status status = mg_tokenizer_token_to_id(self->tok, text.data, (size_t)text.size, &id);
    mg_py_release_text(&text);
    if (status != MG_OK) return mg_py_raise(status);
    return PyLong_FromLong(id);
}

/* id_to_token(id) -> (bytes, is_special) */
static PyObject *mg_py_tokenizer_id_to_token(mg_py_tokenizer *self, PyObject *id_object) {
    if (mg_py_tokenizer_ready(self) < 0) return NULL;
    long long id = PyLong_AsLongLong(id_object);
    if (id == -1 && PyErr_Occurred()) return NULL;
    if (id < INT32_MIN || id > INT32_MAX) id = -1;
    const char *bytes;
    size_t n;
    bool special = false;
    mg_status status = mg_tokenizer_id_to_token(self->tok, (int32_t)id, &bytes, &n, &special);
    if (status != MG_OK) return mg_py_raise(status);
    return Py_BuildValue("(y#O)", bytes, (Py_ssize_t)n, special ? Py_True : Py_False);
}

/* add_tokens(tokens, special=False, strip_whitespace=False) */
static PyObject *mg_py_tokenizer_add_tokens(mg_py_tokenizer *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"tokens", "special", "strip_whitespace", NULL};
    PyObject *tokens_object;
    int special = 0, strip = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|pp", keywords, &tokens_object, &special, &strip)) return NULL;
    if (mg_py_tokenizer_ready(self) < 0) return NULL;
    PyObject *seq = PySequence_Fast(tokens_object, "tokens must be a sequence of str");
    if (!seq) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    const char **names = PyMem_Malloc((size_t)(n + 1) * sizeof *names);
    if (!names) {
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        names[i] = PyUnicode_Check(item) ? PyUnicode_AsUTF8(item) : NULL;
        if (!names[i]) {
            PyErr_Clear();
            PyMem_Free(names);
            Py_DECREF(seq);
            return mg_py_raise(mg_error(MG_ERR_INVALID_ARGUMENT, "token %zd is not a str (or not UTF-8)", i));
        }
    }
    mg_status status = mg_tokenizer_add_tokens(self->tok, names, (int64_t)n, special != 0, strip != 0);
    PyMem_Free(names);
    Py_DECREF(seq);
    if (status != MG_OK) return mg_py_raise(status);
    Py_RETURN_NONE;
}

static PyObject *mg_py_tokenizer_get_vocab_size(mg_py_tokenizer *self, void *closure) {
    if (mg_py_tokenizer_ready(self) < 0) return NULL;
    return PyLong_FromLong(mg_tokenizer_vocab_size(self->tok));
}

static PyObject *mg_py_tokenizer_get_bos_id(mg_py_tokenizer *self, void *closure) {
    if (mg_py_tokenizer_ready(self) < 0) return NULL;
    int32_t id = mg_tokenizer_bos_id(self->tok);
    if (id < 0) Py_RETURN_NONE;
    return PyLong_FromLong(id);
}

static PyObject *mg_py_tokenizer_get_eos_id(mg_py_tokenizer *self, void *closure) {
    if (mg_py_tokenizer_ready(self) < 0) return NULL;
    int32_t id = mg_tokenizer_eos_id(self->tok);
    if (id < 0) Py_RETURN_NONE;
    return PyLong_FromLong(id);
}

static PyObject *mg_py_tokenizer_get_kind(mg_py_tokenizer *self, void *closure) {
    if (mg_py_tokenizer_ready(self) < 0) return NULL;
    switch (mg_tokenizer_get_kind(self->tok)) {
    case MG_TOKENIZER_TIKTOKEN: return PyUnicode_FromString("tiktoken");
    case MG_TOKENIZER_HF_BYTE_BPE: return PyUnicode_FromString("hf_byte_bpe");
    default: return PyUnicode_FromString("sentencepiece");
    }
}

static PyObject *mg_py_tokenizer_get_wants_nfc(mg_py_tokenizer *self, void *closure) {
    if (mg_py_tokenizer_ready(self) < 0) return NULL;
    return PyBool_FromLong(mg_tokenizer_wants_nfc(self->tok));
}

static PyMethodDef mg_py_tokenizer_methods[] = {
    {"from_bytes", (PyCFunction)(void (*)(void))mg_py_tokenizer_from_bytes, METH_VARARGS | METH_KEYWORDS | METH_CLASS,
     "from_bytes(data, kind, name=None, pattern=None): load from memory; kind qwen, tiktoken, sentencepiece, "
     "medplib or hf_json"},
    {"encode", (PyCFunction)(void (*)(void))mg_py_tokenizer_encode, METH_VARARGS | METH_KEYWORDS,
     "encode(text, special=0, allowed=None, add_bos=False, add_eos=False, expand_images=False) -> list[int]"},
    {"encode_batch", (PyCFunction)(void (*)(void))mg_py_tokenizer_encode_batch, METH_VARARGS | METH_KEYWORDS,
     "encode_batch(texts, special=0, allowed=None, add_bos=False, add_eos=False, expand_images=False, "
     "n_threads=0) -> list[list[int]]"},
    {"decode", (PyCFunction)(void (*)(void))mg_py_tokenizer_decode, METH_VARARGS | METH_KEYWORDS,
     "decode(ids, skip_special=False) -> str"},
    {"token_to_id", (PyCFunction)mg_py_tokenizer_token_to_id, METH_O, "token_to_id(token: str | bytes) -> int"},
    {"id_to_token", (PyCFunction)mg_py_tokenizer_id_to_token, METH_O, "id_to_token(id) -> (bytes, is_special)"},
    {"add_tokens", (PyCFunction)(void (*)(void))mg_py_tokenizer_add_tokens, METH_VARARGS | METH_KEYWORDS,
     "add_tokens(tokens, special=False, strip_whitespace=False): append tokens matched verbatim"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef mg_py_tokenizer_getset[] = {
    {"vocab_size", (getter)mg_py_tokenizer_get_vocab_size, NULL, "number of ids", NULL},
    {"bos_id", (getter)mg_py_tokenizer_get_bos_id, NULL, "BOS id or None", NULL},
    {"eos_id", (getter)mg_py_tokenizer_get_eos_id, NULL, "EOS id or None", NULL},
    {"kind", (getter)mg_py_tokenizer_get_kind, NULL, "tiktoken, hf_byte_bpe or sentencepiece", NULL},
    {"wants_nfc", (getter)mg_py_tokenizer_get_wants_nfc, NULL, "the reference NFC-normalises text first", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject mg_py_tokenizer_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "medground._C.Tokenizer",
    .tp_basicsize = sizeof(mg_py_tokenizer),
    .tp_dealloc = (destructor)mg_py_tokenizer_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Tokenizer(path, kind='auto'): a Qwen tiktoken, SentencePiece or tokenizer.json vocabulary.",
    .tp_methods = mg_py_tokenizer_methods,
    .tp_getset = mg_py_tokenizer_getset,
    .tp_init = (initproc)mg_py_tokenizer_init,
    .tp_new = PyType_GenericNew,
};

/* ------------------------------------------------------------ TokenStream */

typedef struct {
    PyObject_HEAD
    PyObject *owner; /* the Tokenizer, kept alive */
    mg_token_stream *stream;
} mg_py_token_stream;

static int mg_py_stream_init(mg_py_token_stream *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"tokenizer", "skip_special", NULL};
    PyObject *owner;
    int skip_special = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!|p", keywords, &mg_py_tokenizer_type, &owner, &skip_special))
        return -1;
    if (mg_py_tokenizer_ready((mg_py_tokenizer *)owner) < 0) return -1;
    mg_token_stream *stream = NULL;
    mg_status status = mg_token_stream_create(((mg_py_tokenizer *)owner)->tok, skip_special != 0, &stream);
    if (status != MG_OK) return mg_py_raise_int(status);
    mg_token_stream_destroy(self->stream);
    Py_XDECREF(self->owner);
    Py_INCREF(owner);
    self->owner = owner;
    self->stream = stream;
    return 0;
}

static void mg_py_stream_dealloc(mg_py_token_stream *self) {
    mg_token_stream_destroy(self->stream);
    Py_XDECREF(self->owner);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *mg_py_stream_push(mg_py_token_stream *self, PyObject *id_object) {
    if (!self->stream) return mg_py_raise_message(MG_ERR_INVALID_ARGUMENT, "TokenStream was not created");
    long long id = PyLong_AsLongLong(id_object);
    if (id == -1 && PyErr_Occurred()) return NULL;
    if (id < INT32_MIN || id > INT32_MAX) id = -1;
    const char *text;
    size_t n;
    mg_status status = mg_token_stream_push(self->stream, (int32_t)id, &text, &n);
    if (status != MG_OK) return mg_py_raise(status);
    return PyUnicode_DecodeUTF8(text, (Py_ssize_t)n, "replace");
}

static PyObject *mg_py_stream_flush(mg_py_token_stream *self, PyObject *unused) {
    if (!self->stream) return mg_py_raise_message(MG_ERR_INVALID_ARGUMENT, "TokenStream was not created");
    const char *text;
    size_t n;
    mg_status status = mg_token_stream_flush(self->stream, &text, &n);
    if (status != MG_OK) return mg_py_raise(status);
    return PyUnicode_DecodeUTF8(text, (Py_ssize_t)n, "replace");
}

static PyMethodDef mg_py_stream_methods[] = {
    {"push", (PyCFunction)mg_py_stream_push, METH_O, "push(id) -> str: the text completed by this id"},
    {"flush", (PyCFunction)mg_py_stream_flush, METH_NOARGS, "flush() -> str: held bytes (as U+FFFD); resets"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject mg_py_token_stream_type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "medground._C.TokenStream",
    .tp_basicsize = sizeof(mg_py_token_stream),
    .tp_dealloc = (destructor)mg_py_stream_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "TokenStream(tokenizer, skip_special=False): incremental decoding for generation.",
    .tp_methods = mg_py_stream_methods,
    .tp_init = (initproc)mg_py_stream_init,
    .tp_new = PyType_GenericNew,
};

int mg_py_register_tokenizer(PyObject *module) {
    if (PyType_Ready(&mg_py_tokenizer_type) < 0 || PyType_Ready(&mg_py_token_stream_type) < 0) return -1;
    Py_INCREF(&mg_py_tokenizer_type);
    if (PyModule_AddObject(module, "Tokenizer", (PyObject *)&mg_py_tokenizer_type) < 0) {
        Py_DECREF(&mg_py_tokenizer_type);
        return -1;
    }
    Py_INCREF(&mg_py_token_stream_type);
    if (PyModule_AddObject(module, "TokenStream", (PyObject *)&mg_py_token_stream_type) < 0) {
        Py_DECREF(&mg_py_token_stream_type);
        return -1;
    }
    return 0;
}

/* Python bindings of the eval module (medground._C). Thin: sequences of str
 * become const char * arrays (borrowed UTF-8 buffers kept alive by the
 * sequence), results come back as NumPy arrays; the GIL is released around
 * the C work. */
#include "py_common.h"

/* A list/tuple of str as borrowed UTF-8 pointers. */
typedef struct py_strings {
    PyObject *seq;
    const char **items;
    Py_ssize_t n;
} py_strings;

static void py_strings_free(py_strings *s) {
    Py_XDECREF(s->seq);
    PyMem_Free(s->items);
    memset(s, 0, sizeof *s);
}

static int py_strings_get(PyObject *object, const char *what, py_strings *out) {
    memset(out, 0, sizeof *out);
    out->seq = PySequence_Fast(object, what);
    if (!out->seq) return -1;
    out->n = PySequence_Fast_GET_SIZE(out->seq);
    out->items = PyMem_Calloc((size_t)out->n + 1, sizeof *out->items);
    if (!out->items) {
        py_strings_free(out);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < out->n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(out->seq, i);
        if (!PyUnicode_Check(item)) {
            PyErr_Format(PyExc_TypeError, "%s[%zd]: expected str, got %s", what, i, Py_TYPE(item)->tp_name);
            py_strings_free(out);
            return -1;
        }
        out->items[i] = PyUnicode_AsUTF8(item);
        if (!out->items[i]) {
            py_strings_free(out);
            return -1;
        }
    }
    return 0;
}

/* refs: sequence (per image) of sequences of str -> flat list + offsets. */
typedef struct py_refs {
    PyObject *outer;
    PyObject **inner;
    const char **items;
    int64_t *offsets;
    Py_ssize_t n_images;
} py_refs;

static void py_refs_free(py_refs *r) {
    if (r->inner)
        for (Py_ssize_t i = 0; i < r->n_images; i++) Py_XDECREF(r->inner[i]);
    Py_XDECREF(r->outer);
    PyMem_Free(r->inner), PyMem_Free(r->items), PyMem_Free(r->offsets);
    memset(r, 0, sizeof *r);
}

static int py_refs_get(PyObject *object, py_refs *out) {
    memset(out, 0, sizeof *out);
    out->outer = PySequence_Fast(object, "references must be a sequence of sequences of str");
    if (!out->outer) return -1;
    out->n_images = PySequence_Fast_GET_SIZE(out->outer);
    out->inner = PyMem_Calloc((size_t)out->n_images + 1, sizeof *out->inner);
    out->offsets = PyMem_Calloc((size_t)out->n_images + 1, sizeof *out->offsets);
    if (!out->inner || !out->offsets) goto nomem;
    int64_t total = 0;
    for (Py_ssize_t i = 0; i < out->n_images; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(out->outer, i);
        if (PyUnicode_Check(item)) {
            PyErr_Format(PyExc_TypeError, "references[%zd]: expected a list of str, got one str", i);
            goto fail;
        }
        out->inner[i] = PySequence_Fast(item, "references[i] must be a sequence of str");
        if (!out->inner[i]) goto fail;
        total += PySequence_Fast_GET_SIZE(out->inner[i]);
        out->offsets[i + 1] = total;
    }
    out->items = PyMem_Calloc((size_t)total + 1, sizeof *out->items);
    if (!out->items) goto nomem;
    for (Py_ssize_t i = 0; i < out->n_images; i++) {
        for (Py_ssize_t j = 0; j < PySequence_Fast_GET_SIZE(out->inner[i]); j++) {
            PyObject *s = PySequence_Fast_GET_ITEM(out->inner[i], j);
            if (!PyUnicode_Check(s)) {
                PyErr_Format(PyExc_TypeError, "references[%zd][%zd]: expected str, got %s", i, j, Py_TYPE(s)->tp_name);
                goto fail;
            }
            if (!(out->items[out->offsets[i] + j] = PyUnicode_AsUTF8(s))) goto fail;
        }
    }
    return 0;
nomem:
    PyErr_NoMemory();
fail:
    py_refs_free(out);
    return -1;
}

typedef mg_status (*py_text_fn)(const char *, char **);


/* A list of str from n C strings (invalid UTF-8 replaced); NULL with an exception. */
static PyObject *py_text_list(char **texts, Py_ssize_t n) {
    PyObject *list = PyList_New(n);
    for (Py_ssize_t i = 0; list && i < n; i++) {
        PyObject *s = PyUnicode_DecodeUTF8(texts[i], (Py_ssize_t)strlen(texts[i]), "replace");
        if (!s) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, i, s);
    }
    return list;
}

static PyObject *py_map_text(PyObject *object, py_text_fn fn, const char *what) {
    py_strings in;
    if (py_strings_get(object, what, &in) < 0) return NULL;
    char **results = PyMem_Calloc((size_t)in.n + 1, sizeof *results);
    if (!results) {
        py_strings_free(&in);
        return PyErr_NoMemory();
    }
    mg_status st = MG_OK;
    Py_ssize_t failed = -1;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < in.n && st == MG_OK; i++) {
        st = fn(in.items[i], &results[i]);
        if (st) failed = i;
    }
    Py_END_ALLOW_THREADS
    PyObject *list = NULL;
    if (st) {
        mg_error_prefix(st, "%s[%zd]", what, failed);
        mg_py_raise(st);
    } else {
        list = py_text_list(results, in.n);
    }
    for (Py_ssize_t i = 0; i < in.n; i++) mg_eval_free(results[i]);
    PyMem_Free(results);
    py_strings_free(&in);
    return list;
}

static PyObject *py_bird_clean(PyObject *self, PyObject *arg) { return py_map_text(arg, mg_eval_bird_clean, "responses"); }
/* ptb_tokenize(texts): one pycocoevalcap tokenize call (captions joined by
 * '\n' as the jar reads them, so trailing contexts see the next caption). */
static PyObject *py_ptb_tokenize(PyObject *self, PyObject *arg) {
    py_strings in;
    if (py_strings_get(arg, "texts", &in) < 0) return NULL;
    char **results = PyMem_Calloc((size_t)in.n + 1, sizeof *results);
    if (!results) {
        py_strings_free(&in);
        return PyErr_NoMemory();
    }
    mg_status st;
    Py_BEGIN_ALLOW_THREADS
    st = mg_eval_ptb_tokenize_lines(in.items, in.n, results);
    Py_END_ALLOW_THREADS
    PyObject *list = NULL;
    if (st) {
        mg_py_raise(st);
    } else {
        list = py_text_list(results, in.n);
    }
    for (Py_ssize_t i = 0; i < in.n; i++) mg_eval_free(results[i]);
    PyMem_Free(results);
    py_strings_free(&in);
    return list;
}
static PyObject *py_vqa_normalize(PyObject *self, PyObject *arg) { return py_map_text(arg, mg_eval_vqa_normalize, "texts"); }

/* extract_boxes(text, bare_fallback) -> (float64 [n, 4], n_invalid, used_fallback) */
static PyObject *py_extract_boxes(PyObject *self, PyObject *args) {
    const char *text;
    int fallback = 1;
    if (!PyArg_ParseTuple(args, "s|p", &text, &fallback)) return NULL;
    mg_eval_box *boxes = NULL;
    int64_t n = 0, n_invalid = 0;
    bool used = false;
    mg_status st = mg_eval_extract_boxes(text, fallback, &boxes, &n, &n_invalid, &used);
    if (st) return mg_py_raise(st);
    npy_intp dims[2] = {(npy_intp)n, 4};
    PyObject *array = PyArray_SimpleNew(2, dims, NPY_FLOAT64);
    if (array && n) memcpy(PyArray_DATA((PyArrayObject *)array), boxes, (size_t)n * sizeof *boxes);
    mg_eval_free(boxes);
    if (!array) return NULL;
    return Py_BuildValue("(NLO)", array, (long long)n_invalid, used ? Py_True : Py_False);
}

static PyObject *py_new_array(int nd, npy_intp *dims, int type) { return PyArray_ZEROS(nd, dims, type, 0); }

/* vg(annotations, responses, clean, thresholds) -> dict of arrays */
static PyObject *py_vg(PyObject *self, PyObject *args) {
    PyObject *annotations_obj, *responses_obj, *thresholds_obj;
    int clean = 1;
    if (!PyArg_ParseTuple(args, "OOpO", &annotations_obj, &responses_obj, &clean, &thresholds_obj)) return NULL;
    PyArrayObject *thresholds = (PyArrayObject *)PyArray_FROMANY(thresholds_obj, NPY_FLOAT64, 1, 1, NPY_ARRAY_C_CONTIGUOUS);
    if (!thresholds) return NULL;
    py_strings annotations, responses;
    if (py_strings_get(annotations_obj, "annotations", &annotations) < 0) {
        Py_DECREF(thresholds);
        return NULL;
    }
    if (py_strings_get(responses_obj, "responses", &responses) < 0) {
        py_strings_free(&annotations);
        Py_DECREF(thresholds);
        return NULL;
    }
    PyObject *result = NULL;
    mg_eval_vg_record *records = NULL;
    if (annotations.n != responses.n) {
        mg_py_raise(mg_error(MG_ERR_SHAPE, "vg: %zd annotations but %zd responses", annotations.n, responses.n));
        goto done;
    }
    Py_ssize_t n = annotations.n;
    int n_t = (int)PyArray_SIZE(thresholds);
    records = PyMem_Calloc((size_t)n + 1, sizeof *records);
    if (!records) {
        PyErr_NoMemory();
        goto done;
    }
    mg_status st;
    Py_BEGIN_ALLOW_THREADS
    st = mg_eval_vg(annotations.items, responses.items, n, clean, PyArray_DATA(thresholds), n_t, records);
    Py_END_ALLOW_THREADS
    if (st) {
        mg_py_raise(st);
        goto done;
    }
    npy_intp dims1[1] = {n}, dims2[2] = {n, n_t};
    PyObject *n_gt = py_new_array(1, dims1, NPY_INT32), *n_gt_invalid = py_new_array(1, dims1, NPY_INT32),
             *n_pred = py_new_array(1, dims1, NPY_INT32), *n_pred_invalid = py_new_array(1, dims1, NPY_INT32),
             *fallback = py_new_array(1, dims1, NPY_BOOL), *iou_sum = py_new_array(1, dims1, NPY_FLOAT64),
             *hits = py_new_array(2, dims2, NPY_INT32);
    if (n_gt && n_gt_invalid && n_pred && n_pred_invalid && fallback && iou_sum && hits) {
        for (Py_ssize_t i = 0; i < n; i++) {
            ((int32_t *)PyArray_DATA((PyArrayObject *)n_gt))[i] = records[i].n_gt;
            ((int32_t *)PyArray_DATA((PyArrayObject *)n_gt_invalid))[i] = records[i].n_gt_invalid;
            ((int32_t *)PyArray_DATA((PyArrayObject *)n_pred))[i] = records[i].n_pred;
            ((int32_t *)PyArray_DATA((PyArrayObject *)n_pred_invalid))[i] = records[i].n_pred_invalid;
            ((npy_bool *)PyArray_DATA((PyArrayObject *)fallback))[i] = records[i].used_fallback;
            ((double *)PyArray_DATA((PyArrayObject *)iou_sum))[i] = records[i].best_iou_sum;
            for (int t = 0; t < n_t; t++) ((int32_t *)PyArray_DATA((PyArrayObject *)hits))[i * n_t + t] = records[i].hits[t];
        }
        result = Py_BuildValue("{sNsNsNsNsNsNsN}", "n_gt", n_gt, "n_gt_invalid", n_gt_invalid, "n_pred", n_pred,
                               "n_pred_invalid", n_pred_invalid, "used_fallback", fallback, "best_iou_sum", iou_sum,
                               "hits", hits);
    } else {
        Py_XDECREF(n_gt), Py_XDECREF(n_gt_invalid), Py_XDECREF(n_pred), Py_XDECREF(n_pred_invalid);
        Py_XDECREF(fallback), Py_XDECREF(iou_sum), Py_XDECREF(hits);
    }
done:
    PyMem_Free(records);
    py_strings_free(&annotations);
    py_strings_free(&responses);
    Py_DECREF(thresholds);
    return result;
}

/* roc(annotations, responses, clean) -> (correct bool[n], exact bool[n]) */
static PyObject *py_roc(PyObject *self, PyObject *args) {
    PyObject *annotations_obj, *responses_obj;
    int clean = 1;
    if (!PyArg_ParseTuple(args, "OOp", &annotations_obj, &responses_obj, &clean)) return NULL;
    py_strings annotations, responses;
    if (py_strings_get(annotations_obj, "annotations", &annotations) < 0) return NULL;
    if (py_strings_get(responses_obj, "responses", &responses) < 0) {
        py_strings_free(&annotations);
        return NULL;
    }
    PyObject *result = NULL;
    if (annotations.n != responses.n) {
        mg_py_raise(mg_error(MG_ERR_SHAPE, "roc: %zd annotations but %zd responses", annotations.n, responses.n));
    } else {
        npy_intp dims[1] = {annotations.n};
        PyObject *correct = py_new_array(1, dims, NPY_BOOL), *exact = py_new_array(1, dims, NPY_BOOL);
        if (correct && exact) {
            mg_status st;
            Py_BEGIN_ALLOW_THREADS
            st = mg_eval_roc(annotations.items, responses.items, annotations.n, clean,
                             PyArray_DATA((PyArrayObject *)correct), PyArray_DATA((PyArrayObject *)exact));
            Py_END_ALLOW_THREADS
            if (st) {
                Py_DECREF(correct), Py_DECREF(exact);
                mg_py_raise(st);
            } else {
                result = Py_BuildValue("(NN)", correct, exact);
            }
        } else {
            Py_XDECREF(correct), Py_XDECREF(exact);
        }
    }
    py_strings_free(&annotations);
    py_strings_free(&responses);
    return result;
}

/* caption(hyps, refs) -> (corpus tuple of 6, per-image float64 [n, 6]) */
static PyObject *py_caption(PyObject *self, PyObject *args) {
    PyObject *hyps_obj, *refs_obj;
    if (!PyArg_ParseTuple(args, "OO", &hyps_obj, &refs_obj)) return NULL;
    py_strings hyps;
    py_refs refs;
    if (py_strings_get(hyps_obj, "hypotheses", &hyps) < 0) return NULL;
    if (py_refs_get(refs_obj, &refs) < 0) {
        py_strings_free(&hyps);
        return NULL;
    }
    PyObject *result = NULL;
    if (hyps.n != refs.n_images) {
        mg_py_raise(mg_error(MG_ERR_SHAPE, "caption: %zd hypotheses but %zd reference lists", hyps.n, refs.n_images));
    } else {
        npy_intp dims[2] = {hyps.n, MG_EVAL_CAPTION_FIELDS};
        PyObject *per_image = py_new_array(2, dims, NPY_FLOAT64);
        double corpus[MG_EVAL_CAPTION_FIELDS] = {0};
        if (per_image) {
            mg_status st;
            Py_BEGIN_ALLOW_THREADS
            st = mg_eval_caption(hyps.items, refs.items, refs.offsets, hyps.n, corpus, PyArray_DATA((PyArrayObject *)per_image));
            Py_END_ALLOW_THREADS
            if (st) {
                Py_DECREF(per_image);
                mg_py_raise(st);
            } else {
                result = Py_BuildValue("((dddddd)N)", corpus[0], corpus[1], corpus[2], corpus[3], corpus[4], corpus[5], per_image);
            }
        }
    }
    py_strings_free(&hyps);
    py_refs_free(&refs);
    return result;
}

/* vqa(predictions, ground_truths) -> float64 [n, 9]: f1, precision, recall,
 * exact, closed_hit, bleu, bleu_1, bleu_2, bleu_3 */
static PyObject *py_vqa(PyObject *self, PyObject *args) {
    PyObject *pred_obj, *gt_obj;
    if (!PyArg_ParseTuple(args, "OO", &pred_obj, &gt_obj)) return NULL;
    py_strings preds, gts;
    if (py_strings_get(pred_obj, "predictions", &preds) < 0) return NULL;
    if (py_strings_get(gt_obj, "ground_truths", &gts) < 0) {
        py_strings_free(&preds);
        return NULL;
    }
    PyObject *result = NULL;
    mg_eval_vqa_record *records = NULL;
    if (preds.n != gts.n) {
        mg_py_raise(mg_error(MG_ERR_SHAPE, "vqa: %zd predictions but %zd ground truths", preds.n, gts.n));
    } else if (!(records = PyMem_Calloc((size_t)preds.n + 1, sizeof *records))) {
        PyErr_NoMemory();
    } else {
        mg_status st;
        Py_BEGIN_ALLOW_THREADS
        st = mg_eval_vqa(preds.items, gts.items, preds.n, records);
        Py_END_ALLOW_THREADS
        npy_intp dims[2] = {preds.n, 9};
        if (st) {
            mg_py_raise(st);
        } else if ((result = py_new_array(2, dims, NPY_FLOAT64))) {
            double *o = PyArray_DATA((PyArrayObject *)result);
            for (Py_ssize_t i = 0; i < preds.n; i++) {
                const mg_eval_vqa_record *r = &records[i];
                double row[9] = {r->f1, r->precision, r->recall, r->exact, r->closed_hit, r->bleu[0], r->bleu[1], r->bleu[2], r->bleu[3]};
                memcpy(o + i * 9, row, sizeof row);
            }
        }
    }
    PyMem_Free(records);
    py_strings_free(&preds);
    py_strings_free(&gts);
    return result;
}

static PyObject *py_sentence_bleu(PyObject *self, PyObject *args) {
    PyObject *refs_obj, *weights_obj;
    const char *hyp;
    if (!PyArg_ParseTuple(args, "OsO", &refs_obj, &hyp, &weights_obj)) return NULL;
    PyArrayObject *weights = (PyArrayObject *)PyArray_FROMANY(weights_obj, NPY_FLOAT64, 1, 1, NPY_ARRAY_C_CONTIGUOUS);
    if (!weights) return NULL;
    py_strings refs;
    if (py_strings_get(refs_obj, "references", &refs) < 0) {
        Py_DECREF(weights);
        return NULL;
    }
    double value = 0;
    mg_status st = mg_eval_sentence_bleu(refs.items, (int)refs.n, hyp, PyArray_DATA(weights), (int)PyArray_SIZE(weights), &value);
    py_strings_free(&refs);
    Py_DECREF(weights);
    if (st) return mg_py_raise(st);
    return PyFloat_FromDouble(value);
}

static PyArrayObject *py_mask_arg(PyObject *object, const char *what) {
    PyArrayObject *a = (PyArrayObject *)PyArray_FROMANY(object, NPY_UINT8, 2, 2, NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_FORCECAST);
    if (!a) PyErr_Format(PyExc_ValueError, "%s: expected a 2-D mask", what);
    return a;
}

static PyObject *py_mask_compare(PyObject *self, PyObject *args) {
    PyObject *p_obj, *g_obj;
    if (!PyArg_ParseTuple(args, "OO", &p_obj, &g_obj)) return NULL;
    PyArrayObject *p = py_mask_arg(p_obj, "prediction");
    if (!p) return NULL;
    PyArrayObject *g = py_mask_arg(g_obj, "ground truth");
    if (!g) {
        Py_DECREF(p);
        return NULL;
    }
    PyObject *result = NULL;
    if (PyArray_DIM(p, 0) != PyArray_DIM(g, 0) || PyArray_DIM(p, 1) != PyArray_DIM(g, 1)) {
        mg_py_raise(mg_error(MG_ERR_SHAPE, "mask_compare: prediction %ldx%ld vs ground truth %ldx%ld (resize first)",
                             (long)PyArray_DIM(p, 0), (long)PyArray_DIM(p, 1), (long)PyArray_DIM(g, 0), (long)PyArray_DIM(g, 1)));
    } else {
        mg_eval_mask_score s;
        mg_status st = mg_eval_mask_compare(PyArray_DATA(p), PyArray_DATA(g), PyArray_DIM(p, 0), PyArray_DIM(p, 1), &s);
        if (st) mg_py_raise(st);
        else
            result = Py_BuildValue("{sLsLsLsLsdsdsdsd}", "intersection", (long long)s.intersection, "union", (long long)s.union_,
                                   "pred_area", (long long)s.pred_area, "gt_area", (long long)s.gt_area, "iou", s.iou, "dice",
                                   s.dice, "medplib_iou", s.medplib_iou, "medplib_dice", s.medplib_dice);
    }
    Py_DECREF(p);
    Py_DECREF(g);
    return result;
}

static PyObject *py_mask_resize_nearest(PyObject *self, PyObject *args) {
    PyObject *obj;
    long long h, w;
    if (!PyArg_ParseTuple(args, "OLL", &obj, &h, &w)) return NULL;
    PyArrayObject *a = py_mask_arg(obj, "mask");
    if (!a) return NULL;
    if (h <= 0 || w <= 0) {
        Py_DECREF(a);
        return mg_py_raise(mg_error(MG_ERR_SHAPE, "mask_resize_nearest: target size %lldx%lld", h, w));
    }
    npy_intp dims[2] = {(npy_intp)h, (npy_intp)w};
    PyObject *out = PyArray_SimpleNew(2, dims, NPY_UINT8);
    if (out) {
        mg_status st = mg_eval_mask_resize_nearest(PyArray_DATA(a), PyArray_DIM(a, 0), PyArray_DIM(a, 1),
                                                   PyArray_DATA((PyArrayObject *)out), h, w);
        if (st) {
            Py_CLEAR(out);
            mg_py_raise(st);
        }
    }
    Py_DECREF(a);
    return out;
}

/* rle_decode(counts str, h, w) -> uint8 [h, w] (COCO masks are column-major) */
static PyObject *py_rle_decode(PyObject *self, PyObject *args) {
    const char *counts;
    long long h, w;
    if (!PyArg_ParseTuple(args, "sLL", &counts, &h, &w)) return NULL;
    if (h <= 0 || w <= 0) return mg_py_raise(mg_error(MG_ERR_SHAPE, "rle_decode: size %lldx%lld", h, w));
    npy_intp dims[2] = {(npy_intp)h, (npy_intp)w};
    PyObject *out = PyArray_EMPTY(2, dims, NPY_UINT8, 1 /* Fortran order */);
    if (!out) return NULL;
    mg_status st = mg_eval_rle_decode(counts, h, w, PyArray_DATA((PyArrayObject *)out));
    if (st) {
        Py_DECREF(out);
        return mg_py_raise(st);
    }
    return out;
}

static PyObject *py_rle_encode(PyObject *self, PyObject *arg) {
    PyArrayObject *a = (PyArrayObject *)PyArray_FROMANY(arg, NPY_UINT8, 2, 2, NPY_ARRAY_F_CONTIGUOUS | NPY_ARRAY_FORCECAST);
    if (!a) return NULL;
    char *counts = NULL;
    mg_status st = mg_eval_rle_encode(PyArray_DATA(a), PyArray_DIM(a, 0), PyArray_DIM(a, 1), &counts);
    Py_DECREF(a);
    if (st) return mg_py_raise(st);
    PyObject *s = PyBytes_FromString(counts);
    mg_eval_free(counts);
    return s;
}

/* ---- METEOR object ---------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    mg_meteor *meteor;
} py_meteor;

static void py_meteor_dealloc(py_meteor *self) {
    mg_meteor_destroy(self->meteor);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int py_meteor_init(py_meteor *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"function_words", "prefixes", "synsets", "exceptions", "paraphrases", "stem", "vocabulary", NULL};
    const char *function_words, *prefixes, *synsets = NULL, *exceptions = NULL;
    Py_buffer paraphrases = {0};
    int stem = 1;
    PyObject *vocabulary = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "ss|zzz*pO", keywords, &function_words, &prefixes, &synsets, &exceptions,
                                     &paraphrases, &stem, &vocabulary))
        return -1;
    py_strings vocab = {0};
    if (vocabulary != Py_None && py_strings_get(vocabulary, "vocabulary", &vocab) < 0) {
        if (paraphrases.obj) PyBuffer_Release(&paraphrases);
        return -1;
    }
    mg_meteor_resources r = {0};
    r.function_words = function_words;
    r.nonbreaking_prefixes = prefixes;
    r.synsets = synsets;
    r.exceptions = exceptions;
    /* the paraphrase text need not be NUL-terminated: the length bounds it */
    r.paraphrases = paraphrases.obj ? paraphrases.buf : NULL;
    r.paraphrases_length = paraphrases.obj ? (size_t)paraphrases.len : 0;
    r.stem = stem;
    r.vocabulary_texts = vocabulary != Py_None ? vocab.items : NULL;
    r.n_vocabulary_texts = vocab.n;
    mg_meteor *m = NULL;
    mg_status st;
    Py_BEGIN_ALLOW_THREADS
    st = mg_meteor_create(&r, &m);
    Py_END_ALLOW_THREADS
    if (paraphrases.obj) PyBuffer_Release(&paraphrases);
    py_strings_free(&vocab);
    if (st) return mg_py_raise_int(st);
    mg_meteor_destroy(self->meteor);
    self->meteor = m;
    return 0;
}

static PyObject *py_meteor_score(py_meteor *self, PyObject *args) {
    PyObject *hyps_obj, *refs_obj;
    if (!PyArg_ParseTuple(args, "OO", &hyps_obj, &refs_obj)) return NULL;
    if (!self->meteor) return mg_py_raise_message(MG_ERR_INVALID_ARGUMENT, "Meteor object is not initialised");
    py_strings hyps;
    py_refs refs;
    if (py_strings_get(hyps_obj, "hypotheses", &hyps) < 0) return NULL;
    if (py_refs_get(refs_obj, &refs) < 0) {
        py_strings_free(&hyps);
        return NULL;
    }
    PyObject *result = NULL;
    if (hyps.n != refs.n_images) {
        mg_py_raise(mg_error(MG_ERR_SHAPE, "meteor: %zd hypotheses but %zd reference lists", hyps.n, refs.n_images));
    } else {
        npy_intp d1[1] = {hyps.n}, d2[2] = {hyps.n, MG_METEOR_STATS};
        PyObject *per_image = py_new_array(1, d1, NPY_FLOAT64), *stats = py_new_array(2, d2, NPY_FLOAT64);
        double corpus = 0;
        if (per_image && stats) {
            mg_status st;
            Py_BEGIN_ALLOW_THREADS
            st = mg_meteor_score(self->meteor, hyps.items, refs.items, refs.offsets, hyps.n, &corpus,
                                 PyArray_DATA((PyArrayObject *)per_image), PyArray_DATA((PyArrayObject *)stats));
            Py_END_ALLOW_THREADS
            if (st) {
                Py_DECREF(per_image), Py_DECREF(stats);
                mg_py_raise(st);
            } else {
                result = Py_BuildValue("(dNN)", corpus, per_image, stats);
            }
        } else {
            Py_XDECREF(per_image), Py_XDECREF(stats);
        }
    }
    py_strings_free(&hyps);
    py_refs_free(&refs);
    return result;
}

static PyObject *py_meteor_normalize(py_meteor *self, PyObject *arg) {
    if (!self->meteor) return mg_py_raise_message(MG_ERR_INVALID_ARGUMENT, "Meteor object is not initialised");
    const char *text = PyUnicode_AsUTF8(arg);
    if (!text) return NULL;
    char *out = NULL;
    mg_status st = mg_meteor_normalize(self->meteor, text, &out);
    if (st) return mg_py_raise(st);
    PyObject *s = PyUnicode_DecodeUTF8(out, (Py_ssize_t)strlen(out), "replace");
    mg_eval_free(out);
    return s;
}

static PyObject *py_meteor_modules(py_meteor *self, void *closure) {
    return PyUnicode_FromString(self->meteor ? mg_meteor_modules(self->meteor) : "");
}

static PyMethodDef py_meteor_methods[] = {
    {"score", (PyCFunction)py_meteor_score, METH_VARARGS,
     "score(hypotheses, references) -> (corpus, per_image float64[n], stats float64[n, 23])"},
    {"normalize", (PyCFunction)py_meteor_normalize, METH_O, "Meteor's normaliser + lower-casing of one line."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef py_meteor_getset[] = {
    {"modules", (getter)py_meteor_modules, NULL, "Meteor modules in use", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject py_meteor_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "medground._C.Meteor",
    .tp_basicsize = sizeof(py_meteor),
    .tp_dealloc = (destructor)py_meteor_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "METEOR 1.5 scorer (C port); Meteor(function_words, prefixes, synsets=None, exceptions=None, "
              "paraphrases=None, stem=True, vocabulary=None)",
    .tp_methods = py_meteor_methods,
    .tp_getset = py_meteor_getset,
    .tp_init = (initproc)py_meteor_init,
    .tp_new = PyType_GenericNew,
};

/* ---- SPICE (spice.c) ------------------------------------------------ */

/* One side's tuples: elements (list of str), sizes (int32), offsets (int64). */
typedef struct py_spice_side {
    py_strings elements;
    PyArrayObject *sizes, *offsets;
} py_spice_side;

static void py_spice_side_free(py_spice_side *s) {
    py_strings_free(&s->elements);
    Py_XDECREF(s->sizes), Py_XDECREF(s->offsets);
    s->sizes = s->offsets = NULL;
}

static int py_spice_side_get(PyObject *e, PyObject *sz, PyObject *off, const char *what, py_spice_side *s) {
    memset(s, 0, sizeof *s);
    if (py_strings_get(e, what, &s->elements) < 0) return -1;
    s->sizes = (PyArrayObject *)PyArray_FROMANY(sz, NPY_INT32, 1, 1, NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_FORCECAST);
    s->offsets = s->sizes ? (PyArrayObject *)PyArray_FROMANY(off, NPY_INT64, 1, 1, NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_FORCECAST) : NULL;
    if (!s->sizes || !s->offsets) {
        py_spice_side_free(s);
        return -1;
    }
    return 0;
}

/* eval_spice(meteor|None, test_elements, test_sizes, test_offsets, ref_elements,
 * ref_sizes, ref_offsets, use_synsets) -> (per_image [n, 7, 6], corpus [7, 6],
 * test_truth bool[n_test_tuples], ref_truth bool[n_ref_tuples]) */
static PyObject *py_spice(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *meteor_obj, *te, *tsz, *toff, *re, *rsz, *roff;
    int use_synsets;
    if (!PyArg_ParseTuple(args, "OOOOOOOp", &meteor_obj, &te, &tsz, &toff, &re, &rsz, &roff, &use_synsets)) return NULL;
    mg_meteor *meteor = NULL;
    if (meteor_obj != Py_None) {
        if (!PyObject_TypeCheck(meteor_obj, &py_meteor_type))
            return mg_py_raise_message(MG_ERR_INVALID_ARGUMENT, "spice: synonyms must be a medground._C.Meteor or None");
        meteor = ((py_meteor *)meteor_obj)->meteor;
    }
    py_spice_side ts, rs;
    if (py_spice_side_get(te, tsz, toff, "candidate tuple elements", &ts) < 0) return NULL;
    if (py_spice_side_get(re, rsz, roff, "reference tuple elements", &rs) < 0) {
        py_spice_side_free(&ts);
        return NULL;
    }
    PyObject *result = NULL;
    npy_intp n1 = PyArray_SIZE(ts.offsets), n2 = PyArray_SIZE(rs.offsets);
    if (n1 < 1 || n1 != n2) {
        mg_py_raise(mg_error(MG_ERR_SHAPE, "spice: %zd candidate and %zd reference offsets (n_images + 1 each)",
                             (Py_ssize_t)n1, (Py_ssize_t)n2));
        goto out;
    }
    int64_t n_images = (int64_t)n1 - 1;
    const int64_t *to = PyArray_DATA(ts.offsets), *ro = PyArray_DATA(rs.offsets);
    int64_t nt = to[n_images], nr = ro[n_images];
    if (nt < 0 || nr < 0 || nt > PyArray_SIZE(ts.sizes) || nr > PyArray_SIZE(rs.sizes)) {
        mg_py_raise(mg_error(MG_ERR_SHAPE, "spice: offsets end at %lld / %lld tuples but %zd / %zd sizes are given",
                             (long long)nt, (long long)nr, (Py_ssize_t)PyArray_SIZE(ts.sizes), (Py_ssize_t)PyArray_SIZE(rs.sizes)));
        goto out;
    }
    int64_t ne[2] = {0, 0};
    const int32_t *szs[2] = {PyArray_DATA(ts.sizes), PyArray_DATA(rs.sizes)};
    int64_t counts[2] = {nt, nr};
    for (int side = 0; side < 2; side++)
        for (int64_t k = 0; k < counts[side]; k++) ne[side] += szs[side][k] > 0 ? szs[side][k] : 0;
    if (ne[0] > ts.elements.n || ne[1] > rs.elements.n) {
        mg_py_raise(mg_error(MG_ERR_SHAPE, "spice: sizes need %lld / %lld elements but %zd / %zd are given",
                             (long long)ne[0], (long long)ne[1], ts.elements.n, rs.elements.n));
        goto out;
    }
    npy_intp dims3[3] = {(npy_intp)n_images, MG_SPICE_CATEGORIES, MG_SPICE_FIELDS};
    npy_intp dims2[2] = {MG_SPICE_CATEGORIES, MG_SPICE_FIELDS};
    npy_intp dt[1] = {(npy_intp)nt}, dr[1] = {(npy_intp)nr};
    PyObject *per = PyArray_SimpleNew(3, dims3, NPY_FLOAT64), *corpus = PyArray_SimpleNew(2, dims2, NPY_FLOAT64);
    PyObject *tt = PyArray_SimpleNew(1, dt, NPY_BOOL), *rt = PyArray_SimpleNew(1, dr, NPY_BOOL);
    if (!per || !corpus || !tt || !rt) {
        Py_XDECREF(per), Py_XDECREF(corpus), Py_XDECREF(tt), Py_XDECREF(rt);
        goto out;
    }
    mg_spice_tuples a = {ts.elements.items, szs[0], to}, b = {rs.elements.items, szs[1], ro};
    mg_status st;
    Py_BEGIN_ALLOW_THREADS
    st = mg_spice_score(meteor, &a, &b, n_images, use_synsets != 0, PyArray_DATA((PyArrayObject *)per),
                        PyArray_DATA((PyArrayObject *)corpus), PyArray_DATA((PyArrayObject *)tt),
                        PyArray_DATA((PyArrayObject *)rt));
    Py_END_ALLOW_THREADS
    if (st) {
        Py_DECREF(per), Py_DECREF(corpus), Py_DECREF(tt), Py_DECREF(rt);
        mg_py_raise(st);
        goto out;
    }
    result = Py_BuildValue("NNNN", per, corpus, tt, rt);
out:
    py_spice_side_free(&ts);
    py_spice_side_free(&rs);
    return result;
}

static PyMethodDef mg_eval_methods[] = {
    {"eval_bird_clean", py_bird_clean, METH_O, "BiRD extract_information on each response."},
    {"eval_extract_boxes", py_extract_boxes, METH_VARARGS, "Boxes of a BiRD answer."},
    {"eval_vg", py_vg, METH_VARARGS, "Per-record visual grounding counts."},
    {"eval_roc", py_roc, METH_VARARGS, "Per-record ROC recall / exact flags."},
    {"eval_ptb_tokenize", py_ptb_tokenize, METH_O, "pycocoevalcap PTB tokenisation (C port)."},
    {"eval_caption", py_caption, METH_VARARGS, "BLEU-1..4, ROUGE-L, CIDEr-D of tokenised captions."},
    {"eval_vqa_normalize", py_vqa_normalize, METH_O, "MedPLIB normalize_word."},
    {"eval_vqa", py_vqa, METH_VARARGS, "MedPLIB VQA per-record scores."},
    {"eval_sentence_bleu", py_sentence_bleu, METH_VARARGS, "NLTK sentence_bleu without smoothing."},
    {"eval_mask_compare", py_mask_compare, METH_VARARGS, "Dice/IoU of two binary masks."},
    {"eval_mask_resize_nearest", py_mask_resize_nearest, METH_VARARGS, "PyTorch nearest resize of a mask."},
    {"eval_rle_decode", py_rle_decode, METH_VARARGS, "COCO RLE counts -> mask."},
    {"eval_rle_encode", py_rle_encode, METH_O, "mask -> COCO RLE counts (bytes)."},
    {"eval_spice", py_spice, METH_VARARGS, "SPICE tuple F-scores of scene-graph tuples (spice.c)."},
    {NULL, NULL, 0, NULL},
};

int mg_py_register_eval(PyObject *module) {
    if (PyType_Ready(&py_meteor_type) < 0) return -1;
    Py_INCREF(&py_meteor_type);
    if (PyModule_AddObject(module, "Meteor", (PyObject *)&py_meteor_type) < 0) {
        Py_DECREF(&py_meteor_type);
        return -1;
    }
    return PyModule_AddFunctions(module, mg_eval_methods);
}

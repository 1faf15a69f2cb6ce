/* Internal helpers of the eval module: growable strings, word interning,
 * whitespace splitting. Not part of the public API. */
#ifndef MG_EVAL_INTERNAL_H
#define MG_EVAL_INTERNAL_H

#include "core/core.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A growable NUL-terminated byte string. Owner frees data with free(). */
typedef struct mg_strbuf {
    char *data;
    size_t length;
    size_t capacity;
} mg_strbuf;

mg_status mg_strbuf_reserve(mg_strbuf *b, size_t extra);
mg_status mg_strbuf_append(mg_strbuf *b, const char *s, size_t n);
mg_status mg_strbuf_append_char(mg_strbuf *b, char c);
/* Hands the buffer to the caller (never NULL: "" when empty). */
char *mg_strbuf_take(mg_strbuf *b);
void mg_strbuf_free(mg_strbuf *b);

/* Copies n bytes into a new NUL-terminated heap string. */
char *mg_eval_strndup(const char *s, size_t n);

/* Word -> dense id table (open addressing, FNV-1a). Keys are copied. */
typedef struct mg_intern {
    char **keys;      /* by id */
    size_t *key_lengths;
    int32_t *slots;   /* -1 empty, else id */
    size_t n_slots;   /* power of two */
    int32_t count;
    size_t key_capacity;
} mg_intern;

mg_status mg_intern_init(mg_intern *t, size_t expected);
void mg_intern_free(mg_intern *t);
/* Id of the word, adding it when absent. */
mg_status mg_intern_add(mg_intern *t, const char *s, size_t n, int32_t *id);
/* Id or -1 when absent. */
int32_t mg_intern_find(const mg_intern *t, const char *s, size_t n);

/* Growable int32 array. */
typedef struct mg_ivec {
    int32_t *data;
    size_t length;
    size_t capacity;
} mg_ivec;
mg_status mg_ivec_push(mg_ivec *v, int32_t x);
void mg_ivec_free(mg_ivec *v);

/* Splits s on runs of whitespace as Python str.split() does (ASCII and the
 * Unicode spaces, e.g. the U+00A0 inside PTB tokens like "2\u00a01/2") and
 * interns every token; ids are appended to out. */
mg_status mg_eval_split_intern(mg_intern *t, const char *s, mg_ivec *out);
/* Byte length of the str.split() whitespace character at p, 0 if none. */
size_t mg_eval_py_space_len(const unsigned char *p);
/* Splits on the single character ' ' (Python str.split(" ")): empty tokens
 * are kept, so "" gives one empty token. */
mg_status mg_eval_split_space_intern(mg_intern *t, const char *s, mg_ivec *out);

static inline int mg_eval_is_space(unsigned char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* In-place Python str.lower() for ASCII, Latin-1, Latin Extended-A, Greek
 * (except Sigma) and Cyrillic (the cases that keep the UTF-8 length). */
void mg_eval_lower_inplace(char *s);

/* Exact sum of doubles (Shewchuk / Python math.fsum). */
double mg_eval_fsum(const double *values, int n);

/* Meteor's synonym tables, shared with SPICE (meteor.c). has_synonyms:
 * the synsets + exceptions were loaded. word_synsets: Meteor's
 * SynonymDictionary getSynSets(word) + getStemSynSets(word), replacing the
 * contents of out (ids may repeat); an error when no tables are loaded. */
bool mg_meteor_has_synonyms(const mg_meteor *m);
mg_status mg_meteor_word_synsets(const mg_meteor *m, const char *word, mg_ivec *out);

#endif

/* METEOR 1.5 as pycocoevalcap runs it (`meteor-1.5.jar - - -stdio -l en
 * -norm`: English, task "rank", normalise keeping punctuation, lower-case;
 * modules exact, stem, synonym, paraphrase). A port of the behaviour of
 * Meteor 1.5's Normalizer, Aligner (beam search), matchers and
 * MeteorScorer/MeteorStats, including their quirks:
 *  - words are compared by Java String.hashCode() (collisions match);
 *  - partial alignments accumulate module-weighted match counts into ints
 *    (Java compound assignment truncates: a lone stem/synonym word adds 0);
 *  - when a new path is branched, the match distance is added to the
 *    parent path, not to the new one;
 *  - paths are ordered with a stable sort (Collections.sort);
 *  - the corpus score sums per-segment statistics (chunks of perfectly
 *    matched single-chunk segments are not added), as the jar's EVAL. */
#include "eval/eval_internal.h"

#include <libstemmer.h>
#include <math.h>
#include <stdio.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

enum { MOD_EXACT = 0, MOD_STEM = 1, MOD_SYNONYM = 2, MOD_PARAPHRASE = 3, N_MODULES = 4 };

/* task "rank", English: alpha beta gamma delta; module weights. */
static const double METEOR_ALPHA = 0.85, METEOR_BETA = 0.20, METEOR_GAMMA = 0.60, METEOR_DELTA = 0.75;
static const double METEOR_WEIGHTS[N_MODULES] = {1.0, 0.6, 0.8, 0.6};
/* Aligner ranking weights (MeteorScorer.loadConfiguration). */
static const double ALIGN_WEIGHTS[N_MODULES] = {1.0, 0.5, 0.5, 0.5};
#define BEAM_SIZE 40

/* ---- Java string semantics ------------------------------------------- */

/* Decodes one UTF-8 code point (invalid bytes become U+FFFD). */
static uint32_t mg_utf8_next(const unsigned char **p) {
    const unsigned char *s = *p;
    uint32_t c = s[0];
    int extra = c < 0x80 ? 0 : c < 0xE0 ? 1 : c < 0xF0 ? 2 : 3;
    if (c >= 0x80 && c < 0xC0) {
        *p = s + 1;
        return 0xFFFD;
    }
    if (extra) c &= (0x3F >> extra);
    for (int i = 1; i <= extra; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            *p = s + i;
            return 0xFFFD;
        }
        c = (c << 6) | (s[i] & 0x3F);
    }
    *p = s + 1 + extra;
    return c;
}

static int32_t mg_java_hash(const char *s, size_t n) {
    uint32_t h = 0;
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    while (p < end) {
        uint32_t c = mg_utf8_next(&p);
        if (c >= 0x10000) {
            c -= 0x10000;
            h = 31 * h + (0xD800 + (c >> 10));
            h = 31 * h + (0xDC00 + (c & 0x3FF));
        } else {
            h = 31 * h + c;
        }
    }
    return (int32_t)h;
}

static size_t mg_java_length(const char *s) {
    size_t n = 0;
    const unsigned char *p = (const unsigned char *)s;
    while (*p) n += mg_utf8_next(&p) >= 0x10000 ? 2 : 1;
    return n;
}

static void mg_put_utf8(mg_strbuf *b, uint32_t c, mg_status *st) {
    char u[4];
    int n = mg_utf8_encode(c, u);
    if (!*st) *st = mg_strbuf_append(b, u, (size_t)n);
}

/* String.toLowerCase() for ASCII, Latin-1, Latin Extended-A, Greek and
 * Cyrillic capitals (the alphabets Meteor's normaliser knows). */
static uint32_t mg_java_lower(uint32_t c) {
    if (c >= 'A' && c <= 'Z') return c + 32;
    if ((c >= 0xC0 && c <= 0xDE && c != 0xD7)) return c + 32;
    if (c >= 0x100 && c <= 0x17F && c != 0x130 && c != 0x131 && c != 0x138 && c != 0x149 && c != 0x17F) {
        if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) return (c % 2 == 1) ? c + 1 : c;
        return (c % 2 == 0) ? c + 1 : c;
    }
    if (c == 0x178) return 0xFF;
    if (c >= 0x391 && c <= 0x3AB && c != 0x3A2) return c + 32;
    if (c >= 0x410 && c <= 0x42F) return c + 32;
    if (c >= 0x400 && c <= 0x40F) return c + 80;
    return c;
}

static char *mg_java_to_lower(const char *s, mg_status *st) {
    mg_strbuf b = {0};
    const unsigned char *p = (const unsigned char *)s;
    while (*p && !*st) mg_put_utf8(&b, mg_java_lower(mg_utf8_next(&p)), st);
    if (*st) {
        mg_strbuf_free(&b);
        return NULL;
    }
    return mg_strbuf_take(&b);
}

/* ---- resources -------------------------------------------------------- */

typedef struct mg_word_list {
    int32_t *offsets; /* by word id: [offsets[id], offsets[id+1]) in items */
    int32_t *items;
} mg_word_list;

struct mg_meteor {
    mg_intern function_words;
    mg_intern prefixes;
    int8_t *prefix_type; /* by prefix id: 1 any, 2 numeric only */
    bool has_synonyms, has_paraphrases, stem;
    mg_intern syn_words;            /* word -> synset list */
    int32_t *syn_offsets, *syn_ids; /* CSR by word id */
    mg_intern exc_forms;            /* form -> base words (ids in syn_words or -1) */
    int32_t *exc_offsets;
    char **exc_bases; int32_t n_exc_bases;
    /* paraphrases: phrase -> paraphrase list, kept in file order */
    mg_intern para_vocab;
    mg_intern para_phrases;          /* key: space-joined word ids as bytes */
    int32_t *para_offsets;           /* CSR: phrase id -> paraphrase indices */
    int32_t *para_list;
    int32_t *par_offsets, *par_words; /* paraphrase index -> word ids */
    int32_t n_paraphrases;
    int32_t max_phrase_words;
    pcre2_code *re[16];
    char modules[64];
};

static mg_status mg_load_lines_set(mg_intern *set, const char *text) {
    MG_TRY(mg_intern_init(set, 256));
    for (const char *p = text; *p;) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        size_t m = n;
        if (m && p[m - 1] == '\r') m--;
        int32_t id;
        MG_TRY(mg_intern_add(set, p, m, &id));
        if (!nl) break;
        p = nl + 1;
    }
    return MG_OK;
}

/* Line iterator: next line (without '\n'/'\r'), false at the end. */
static bool mg_next_line(const char **cursor, const char *end, const char **line, size_t *n) {
    const char *p = *cursor;
    if (p >= end || !*p) return false;
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *stop = nl ? nl : end;
    *line = p;
    *n = (size_t)(stop - p);
    if (*n && p[*n - 1] == '\r') (*n)--;
    *cursor = nl ? nl + 1 : end;
    return true;
}

static mg_status mg_load_prefixes(mg_meteor *m, const char *text) {
    MG_TRY(mg_intern_init(&m->prefixes, 256));
    size_t capacity = 256;
    m->prefix_type = malloc(capacity);
    if (!m->prefix_type) return mg_error(MG_ERR_NO_MEMORY, "meteor: out of memory");
    const char *cursor = text, *end = text + strlen(text), *line;
    size_t n;
    while (mg_next_line(&cursor, end, &line, &n)) {
        /* StringTokenizer: first token, optional "#NUMERIC_ONLY#" */
        size_t i = 0;
        while (i < n && mg_eval_is_space((unsigned char)line[i])) i++;
        size_t start = i;
        while (i < n && !mg_eval_is_space((unsigned char)line[i])) i++;
        if (i == start || line[start] == '#') continue;
        size_t word_n = i - start;
        while (i < n && mg_eval_is_space((unsigned char)line[i])) i++;
        size_t second = i;
        while (i < n && !mg_eval_is_space((unsigned char)line[i])) i++;
        int8_t type = (i - second == 14 && memcmp(line + second, "#NUMERIC_ONLY#", 14) == 0) ? 2 : 1;
        int32_t id;
        MG_TRY(mg_intern_add(&m->prefixes, line + start, word_n, &id));
        if ((size_t)id >= capacity) {
            capacity *= 2;
            int8_t *t = realloc(m->prefix_type, capacity);
            if (!t) return mg_error(MG_ERR_NO_MEMORY, "meteor: out of memory");
            m->prefix_type = t;
        }
        m->prefix_type[id] = type; /* Hashtable.put: the last line wins */
    }
    return MG_OK;
}

static mg_status mg_load_synonyms(mg_meteor *m, const char *synsets, const char *exceptions) {
    MG_TRY(mg_intern_init(&m->syn_words, 150000));
    mg_ivec offsets = {0}, ids = {0};
    mg_status st = MG_OK;
    const char *cursor = synsets, *end = synsets + strlen(synsets), *word, *line;
    size_t word_n, n;
    /* word line, then a line of synset numbers; a later duplicate replaces */
    mg_ivec owner = {0};
    while (!st && mg_next_line(&cursor, end, &word, &word_n)) {
        if (!mg_next_line(&cursor, end, &line, &n)) {
            st = mg_error(MG_ERR_FORMAT, "meteor synsets: word '%.*s' has no synset line", (int)word_n, word);
            break;
        }
        int32_t id;
        if ((st = mg_intern_add(&m->syn_words, word, word_n, &id))) break;
        if ((st = mg_ivec_push(&owner, id)) || (st = mg_ivec_push(&offsets, (int32_t)ids.length))) break;
        for (size_t i = 0; i < n && !st;) {
            while (i < n && mg_eval_is_space((unsigned char)line[i])) i++;
            if (i >= n) break;
            char *after;
            long v = strtol(line + i, &after, 10);
            if (after == line + i) {
                st = mg_error(MG_ERR_FORMAT, "meteor synsets: bad synset id in the line of '%.*s'", (int)word_n, word);
                break;
            }
            st = mg_ivec_push(&ids, (int32_t)v);
            i = (size_t)(after - line);
        }
    }
    if (!st) st = mg_ivec_push(&offsets, (int32_t)ids.length);
    if (!st) {
        /* CSR by word id: the last block of a word wins (Hashtable.put) */
        int32_t n_words = m->syn_words.count;
        int32_t *block = malloc(((size_t)n_words + 1) * sizeof *block);
        m->syn_offsets = malloc(((size_t)n_words + 1) * sizeof *m->syn_offsets);
        m->syn_ids = malloc((ids.length + 1) * sizeof *m->syn_ids);
        if (!block || !m->syn_offsets || !m->syn_ids) {
            free(block);
            st = mg_error(MG_ERR_NO_MEMORY, "meteor: out of memory for synonyms");
        } else {
            for (int32_t w = 0; w < n_words; w++) block[w] = -1;
            for (size_t b = 0; b < owner.length; b++) block[owner.data[b]] = (int32_t)b;
            int32_t k = 0;
            for (int32_t w = 0; w < n_words; w++) {
                m->syn_offsets[w] = k;
                int32_t b = block[w];
                for (int32_t j = offsets.data[b]; j < offsets.data[b + 1]; j++) {
                    /* a HashSet: drop repeats within the line */
                    bool seen = false;
                    for (int32_t q = m->syn_offsets[w]; q < k; q++) seen |= m->syn_ids[q] == ids.data[j];
                    if (!seen) m->syn_ids[k++] = ids.data[j];
                }
            }
            m->syn_offsets[n_words] = k;
            free(block);
        }
    }
    mg_ivec_free(&offsets), mg_ivec_free(&ids), mg_ivec_free(&owner);
    MG_TRY(st);
    /* exceptions: base line, then a line of forms; form -> [bases] */
    MG_TRY(mg_intern_init(&m->exc_forms, 8192));
    mg_ivec form_of = {0}, base_of = {0};
    mg_strbuf bases = {0};
    mg_ivec base_offsets = {0};
    cursor = exceptions;
    end = exceptions + strlen(exceptions);
    while (!st && mg_next_line(&cursor, end, &word, &word_n)) {
        if (!mg_next_line(&cursor, end, &line, &n)) break; /* Java would throw on a null line */
        int32_t base_index = (int32_t)base_offsets.length;
        if ((st = mg_ivec_push(&base_offsets, (int32_t)bases.length)) ||
            (st = mg_strbuf_append(&bases, word, word_n)) || (st = mg_strbuf_append_char(&bases, '\0')))
            break;
        for (size_t i = 0; i < n && !st;) {
            while (i < n && mg_eval_is_space((unsigned char)line[i])) i++;
            size_t s0 = i;
            while (i < n && !mg_eval_is_space((unsigned char)line[i])) i++;
            if (i == s0) break;
            int32_t fid;
            if ((st = mg_intern_add(&m->exc_forms, line + s0, i - s0, &fid))) break;
            if ((st = mg_ivec_push(&form_of, fid)) || (st = mg_ivec_push(&base_of, base_index))) break;
        }
    }
    if (!st) {
        int32_t n_forms = m->exc_forms.count;
        m->exc_offsets = calloc((size_t)n_forms + 1, sizeof *m->exc_offsets);
        m->n_exc_bases = (int32_t)form_of.length;
        m->exc_bases = malloc(((size_t)m->n_exc_bases + 1) * sizeof *m->exc_bases);
        int32_t *fill = calloc((size_t)n_forms + 1, sizeof *fill);
        if (!m->exc_offsets || !m->exc_bases || !fill) {
            free(fill);
            st = mg_error(MG_ERR_NO_MEMORY, "meteor: out of memory for exceptions");
        } else {
            for (size_t i = 0; i < form_of.length; i++) m->exc_offsets[form_of.data[i] + 1]++;
            for (int32_t f = 0; f < n_forms; f++) m->exc_offsets[f + 1] += m->exc_offsets[f];
            for (int32_t i = 0; i < m->n_exc_bases; i++) m->exc_bases[i] = NULL;
            for (size_t i = 0; i < form_of.length && !st; i++) {
                int32_t f = form_of.data[i];
                const char *b = bases.data + base_offsets.data[base_of.data[i]];
                char *copy = mg_eval_strndup(b, strlen(b));
                if (!copy) st = mg_error(MG_ERR_NO_MEMORY, "meteor: out of memory");
                m->exc_bases[m->exc_offsets[f] + fill[f]++] = copy;
            }
            free(fill);
        }
    }
    mg_ivec_free(&form_of), mg_ivec_free(&base_of), mg_ivec_free(&base_offsets);
    mg_strbuf_free(&bases);
    return st;
}

/* ---- normaliser (Normalizer.normalizeLine, English, keep punctuation) -- */

#define ALPHA "A-Za-z\\x{160}\\x{17D}\\x{161}\\x{17E}\\x{178}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{17E}" \
              "\\x{400}-\\x{4FF}\\x{500}-\\x{527}\\x{A640}-\\x{A66E}\\x{A67E}-\\x{A697}\\x{1D00}-\\x{1D7F}"
#define ALNUM "0-9" ALPHA

enum {
    RE_SEP_OTHER, RE_MULTI_DOT, RE_MULTI_DOT2, RE_COMMA, RE_COMMA2, RE_COMMA3, RE_QUOTE, RE_QUOTE2,
    RE_RM_DASH, RE_CONT1, RE_CONT2, RE_CONT3, RE_CONT4, RE_CONT5, RE_WHITE, RE_ALPHA, N_RE
};

static const char *const METEOR_PATTERNS[N_RE] = {
    [RE_SEP_OTHER] = "([^" ALNUM "\\s\\.\\'\\`\\,\\-\\x{2018}\\x{2019}])",
    [RE_MULTI_DOT] = "\\.([\\.]+)",
    [RE_MULTI_DOT2] = "DOTMULTI\\.([^\\.])",
    [RE_COMMA] = "([^0-9])[,]([^0-9])",
    [RE_COMMA2] = "([0-9])[,]([^0-9])",
    [RE_COMMA3] = "([^0-9])[,]([0-9])",
    [RE_QUOTE] = "([`\\x{2018}\\x{2019}])",
    [RE_QUOTE2] = "([\\x{201C}\\x{201D}]|'')",
    [RE_RM_DASH] = "([" ALNUM "\\.])[\\-]([" ALNUM "])",
    [RE_CONT1] = "([^" ALPHA "])[']([^" ALPHA "])",
    [RE_CONT2] = "([^" ALPHA "0-9])[']([" ALPHA "])",
    [RE_CONT3] = "([" ALPHA "])[']([^" ALPHA "])",
    [RE_CONT4] = "([" ALPHA "])[']([" ALPHA "])",
    [RE_CONT5] = "([0-9])[']([s])",
    [RE_WHITE] = "[ \\x{A0}\\x{2000}-\\x{200B}\\x{202F}\\x{205F}\\x{3000}]+",
    [RE_ALPHA] = "[" ALPHA "]",
};

static mg_status mg_compile_patterns(mg_meteor *m) {
    for (int i = 0; i < N_RE; i++) {
        int code;
        PCRE2_SIZE offset;
        m->re[i] = pcre2_compile((PCRE2_SPTR)METEOR_PATTERNS[i], PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_MATCH_INVALID_UTF,
                                 &code, &offset, NULL);
        if (!m->re[i]) return mg_error(MG_ERR_INTERNAL, "meteor: normaliser pattern %d does not compile at %zu", i, (size_t)offset);
    }
    return MG_OK;
}

/* Java Matcher.replaceAll with $1/$2 groups (pcre2_substitute, global). */
static char *mg_re_replace(const pcre2_code *re, const char *s, const char *replacement, mg_status *st) {
    if (*st) return NULL;
    size_t length = strlen(s);
    PCRE2_SIZE out_n = length * 3 + 64;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    for (int attempt = 0; attempt < 4; attempt++) {
        char *out = malloc(out_n);
        if (!out || !md) {
            free(out);
            pcre2_match_data_free(md);
            *st = mg_error(MG_ERR_NO_MEMORY, "meteor: out of memory normalising");
            return NULL;
        }
        PCRE2_SIZE n = out_n;
        int rc = pcre2_substitute(re, (PCRE2_SPTR)s, length, 0, PCRE2_SUBSTITUTE_GLOBAL | PCRE2_SUBSTITUTE_OVERFLOW_LENGTH,
                                  md, NULL, (PCRE2_SPTR)replacement, PCRE2_ZERO_TERMINATED, (PCRE2_UCHAR *)out, &n);
        if (rc >= 0) {
            pcre2_match_data_free(md);
            return out;
        }
        free(out);
        if (rc != PCRE2_ERROR_NOMEMORY) break;
        out_n = n + 1;
    }
    pcre2_match_data_free(md);
    *st = mg_error(MG_ERR_INTERNAL, "meteor: normaliser substitution failed");
    return NULL;
}

static char *mg_str_replace(const char *s, const char *from, const char *to, mg_status *st) {
    if (*st) return NULL;
    mg_strbuf b = {0};
    size_t from_n = strlen(from), to_n = strlen(to);
    for (const char *p = s;;) {
        const char *hit = strstr(p, from);
        size_t n = hit ? (size_t)(hit - p) : strlen(p);
        if ((*st = mg_strbuf_append(&b, p, n))) break;
        if (!hit) break;
        if ((*st = mg_strbuf_append(&b, to, to_n))) break;
        p = hit + from_n;
    }
    if (*st) {
        mg_strbuf_free(&b);
        return NULL;
    }
    return mg_strbuf_take(&b);
}

#define STEP(expr)                  \
    do {                            \
        char *next_ = (expr);       \
        free(line);                 \
        line = next_;               \
        if (*st) return NULL;       \
    } while (0)

/* Text made only of [a-z0-9] words and spaces: no normaliser rule applies
 * (no punctuation, dots, quotes, dashes or capitals), so the result is the
 * words joined by single spaces. Returns NULL when the text has other bytes. */
static char *mg_meteor_normalize_plain(const char *text, mg_status *st) {
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++, n++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == ' ')) return NULL;
    char *out = malloc(n + 1);
    if (!out) {
        *st = mg_error(MG_ERR_NO_MEMORY, "meteor: out of memory");
        return NULL;
    }
    size_t k = 0;
    for (const char *p = text; *p; p++) {
        if (*p == ' ') {
            if (k && out[k - 1] != ' ') out[k++] = ' ';
        } else {
            out[k++] = *p;
        }
    }
    if (k && out[k - 1] == ' ') k--;
    out[k] = '\0';
    return out;
}

static char *mg_meteor_normalize_line(const mg_meteor *m, const char *text, mg_status *st) {
    char *line = mg_meteor_normalize_plain(text, st);
    if (line || *st) return line;
    mg_strbuf b = {0};
    if ((*st = mg_strbuf_append_char(&b, ' ')) || (*st = mg_strbuf_append(&b, text, strlen(text))) ||
        (*st = mg_strbuf_append_char(&b, ' '))) {
        mg_strbuf_free(&b);
        return NULL;
    }
    line = mg_strbuf_take(&b);
    /* Each substitution runs only when the characters it needs occur (a
     * pattern that cannot match is a no-op): same result, far fewer regex
     * passes. Non-ASCII text always takes the full path. */
    bool non_ascii = false, other = false;
    for (const unsigned char *p = (const unsigned char *)line; *p; p++) {
        if (*p >= 0x80) non_ascii = true;
        else if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == ' ' ||
                   *p == '\t' || *p == '\n' || *p == '\v' || *p == '\f' || *p == '\r' || *p == '.' || *p == '\'' ||
                   *p == '`' || *p == ',' || *p == '-'))
            other = true;
    }
    if (non_ascii || other) STEP(mg_re_replace(m->re[RE_SEP_OTHER], line, " $1 ", st));
    if (strstr(line, "..")) {
        STEP(mg_re_replace(m->re[RE_MULTI_DOT], line, " DOTMULTI$1", st));
        while (strstr(line, "DOTMULTI.")) {
            STEP(mg_re_replace(m->re[RE_MULTI_DOT2], line, "DOTDOTMULTI $1", st));
            STEP(mg_str_replace(line, "DOTMULTI.", "DOTDOTMULTI", st));
        }
    }
    if (strchr(line, ',')) {
        STEP(mg_re_replace(m->re[RE_COMMA], line, "$1 , $2", st));
        STEP(mg_re_replace(m->re[RE_COMMA2], line, "$1 , $2", st));
        STEP(mg_re_replace(m->re[RE_COMMA3], line, "$1 , $2", st));
    }
    if (non_ascii || strchr(line, '`')) STEP(mg_re_replace(m->re[RE_QUOTE], line, "'", st));
    if (non_ascii || strstr(line, "''")) STEP(mg_re_replace(m->re[RE_QUOTE2], line, " \" ", st));
    if (non_ascii) STEP(mg_str_replace(line, "\xe2\x80\x93", "-", st));
    if (strchr(line, '-')) {
        STEP(mg_str_replace(line, "--", "-", st));
        STEP(mg_re_replace(m->re[RE_RM_DASH], line, "$1 $2", st));
    }
    if (strchr(line, '\'')) {
        STEP(mg_re_replace(m->re[RE_CONT1], line, "$1 ' $2", st));
        STEP(mg_re_replace(m->re[RE_CONT2], line, "$1 ' $2", st));
        STEP(mg_re_replace(m->re[RE_CONT3], line, "$1 ' $2", st));
        STEP(mg_re_replace(m->re[RE_CONT4], line, "$1 '$2", st));
        STEP(mg_re_replace(m->re[RE_CONT5], line, "$1 '$2", st));
    }
    /* StringTokenizer words; break a final '.' unless non-breaking */
    mg_ivec starts = {0}, lengths = {0};
    for (size_t i = 0; line[i];) {
        while (line[i] == ' ' || line[i] == '\t' || line[i] == '\n' || line[i] == '\r' || line[i] == '\f') i++;
        if (!line[i]) break;
        size_t s0 = i;
        while (line[i] && !(line[i] == ' ' || line[i] == '\t' || line[i] == '\n' || line[i] == '\r' || line[i] == '\f')) i++;
        if ((*st = mg_ivec_push(&starts, (int32_t)s0)) || (*st = mg_ivec_push(&lengths, (int32_t)(i - s0)))) break;
    }
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(m->re[RE_ALPHA], NULL);
    for (size_t w = 0; w < starts.length && !*st; w++) {
        const char *word = line + starts.data[w];
        size_t n = (size_t)lengths.data[w];
        const char *next = w + 1 < starts.length ? line + starts.data[w + 1] : NULL;
        if (n > 1 && word[n - 1] == '.') {
            const char *pre = word;
            size_t pre_n = n - 1;
            int32_t pid = mg_intern_find(&m->prefixes, pre, pre_n);
            int type = pid >= 0 ? m->prefix_type[pid] : 0;
            bool has_dot = memchr(pre, '.', pre_n) != NULL;
            bool has_alpha = md && pcre2_match(m->re[RE_ALPHA], (PCRE2_SPTR)pre, pre_n, 0, 0, md, NULL) >= 0;
            if (has_dot && has_alpha) {
                for (size_t k = 0; k < n && !*st; k++)
                    if (word[k] != '.') *st = mg_strbuf_append_char(&b, word[k]);
            } else if (type == 1 || (next && next[0] >= 'a' && next[0] <= 'z')) {
                *st = mg_strbuf_append(&b, word, n);
            } else if (type == 2 && next && next[0] >= '0' && next[0] <= '9') {
                *st = mg_strbuf_append(&b, word, n);
            } else {
                if (!(*st = mg_strbuf_append(&b, pre, pre_n))) *st = mg_strbuf_append(&b, " .", 2);
            }
        } else {
            *st = mg_strbuf_append(&b, word, n);
        }
        if (!*st) *st = mg_strbuf_append_char(&b, ' ');
    }
    pcre2_match_data_free(md);
    mg_ivec_free(&starts), mg_ivec_free(&lengths);
    if (*st) {
        mg_strbuf_free(&b);
        free(line);
        return NULL;
    }
    STEP(mg_strbuf_take(&b));
    while (strstr(line, "DOTDOTMULTI")) STEP(mg_str_replace(line, "DOTDOTMULTI", "DOTMULTI.", st));
    if (strstr(line, "DOTMULTI")) STEP(mg_str_replace(line, "DOTMULTI", ".", st));
    if (non_ascii || strstr(line, "  ")) STEP(mg_re_replace(m->re[RE_WHITE], line, " ", st));
    /* String.trim(): chars <= U+0020 */
    size_t lo = 0, hi = strlen(line);
    while (lo < hi && (unsigned char)line[lo] <= 0x20) lo++;
    while (hi > lo && (unsigned char)line[hi - 1] <= 0x20) hi--;
    char *trimmed = mg_eval_strndup(line + lo, hi - lo);
    free(line);
    if (!trimmed) {
        *st = mg_error(MG_ERR_NO_MEMORY, "meteor: out of memory");
        return NULL;
    }
    char *lower = mg_java_to_lower(trimmed, st);
    free(trimmed);
    return lower;
}
#undef STEP

mg_status mg_meteor_normalize(const mg_meteor *meteor, const char *text, char **out) {
    if (!meteor || !text || !out) return mg_error(MG_ERR_INVALID_ARGUMENT, "meteor_normalize: NULL argument");
    mg_status st = MG_OK;
    *out = mg_meteor_normalize_line(meteor, text, &st);
    return st;
}

/* ---- paraphrase table -------------------------------------------------- */

static mg_status mg_phrase_key(const mg_ivec *ids, size_t from, size_t n, mg_strbuf *key) {
    key->length = 0;
    MG_TRY(mg_strbuf_reserve(key, n * 4));
    for (size_t i = 0; i < n; i++) MG_TRY(mg_strbuf_append(key, (const char *)&ids->data[from + i], 4));
    return MG_OK;
}

/* Tokenises a line into vocabulary ids; false when a word is outside the
 * filter vocabulary (the entry can never match). */
static mg_status mg_para_words(mg_meteor *m, const mg_intern *filter, const char *line, size_t n, mg_ivec *ids, bool *usable) {
    ids->length = 0;
    *usable = true;
    for (size_t i = 0; i < n;) {
        while (i < n && mg_eval_is_space((unsigned char)line[i])) i++;
        size_t s0 = i;
        while (i < n && !mg_eval_is_space((unsigned char)line[i])) i++;
        if (i == s0) break;
        if (filter && mg_intern_find(filter, line + s0, i - s0) < 0) {
            *usable = false;
            return MG_OK;
        }
        int32_t id;
        MG_TRY(mg_intern_add(&m->para_vocab, line + s0, i - s0, &id));
        MG_TRY(mg_ivec_push(ids, id));
    }
    return MG_OK;
}

static mg_status mg_load_paraphrases(mg_meteor *m, const char *text, size_t length, const mg_intern *filter) {
    MG_TRY(mg_intern_init(&m->para_vocab, filter ? 4096 : 1 << 20));
    MG_TRY(mg_intern_init(&m->para_phrases, filter ? 4096 : 1 << 20));
    mg_ivec ref = {0}, par = {0}, owner = {0}, par_offsets = {0}, par_words = {0};
    mg_strbuf key = {0};
    mg_status st = MG_OK;
    const char *cursor = text, *end = text + length, *line;
    size_t n;
    const char *prev_ref = NULL;
    size_t prev_n = 0;
    bool prev_ok = false;
    while (!st && mg_next_line(&cursor, end, &line, &n)) { /* probability line, ignored */
        const char *ref_line, *par_line;
        size_t ref_n, par_n;
        if (!mg_next_line(&cursor, end, &ref_line, &ref_n) || !mg_next_line(&cursor, end, &par_line, &par_n)) {
            st = mg_error(MG_ERR_FORMAT, "meteor paraphrase table: truncated record at byte %zu", (size_t)(line - text));
            break;
        }
        bool ok1, ok2;
        /* the table is grouped by reference phrase: reuse the previous
         * line's words and filter decision when the phrase repeats */
        if (prev_ref && ref_n == prev_n && memcmp(ref_line, prev_ref, ref_n) == 0) {
            ok1 = prev_ok;
        } else {
            if ((st = mg_para_words(m, filter, ref_line, ref_n, &ref, &ok1))) break;
            prev_ref = ref_line, prev_n = ref_n, prev_ok = ok1;
        }
        if (!ok1 || ref.length == 0) continue;
        if ((st = mg_para_words(m, filter, par_line, par_n, &par, &ok2))) break;
        if (!ok2) continue;
        int32_t phrase;
        if ((st = mg_phrase_key(&ref, 0, ref.length, &key)) ||
            (st = mg_intern_add(&m->para_phrases, key.data, key.length, &phrase)))
            break;
        if ((int32_t)ref.length > m->max_phrase_words) m->max_phrase_words = (int32_t)ref.length;
        if ((st = mg_ivec_push(&owner, phrase)) || (st = mg_ivec_push(&par_offsets, (int32_t)par_words.length))) break;
        for (size_t i = 0; i < par.length && !st; i++) st = mg_ivec_push(&par_words, par.data[i]);
    }
    if (!st) st = mg_ivec_push(&par_offsets, (int32_t)par_words.length);
    if (!st) {
        int32_t n_phrases = m->para_phrases.count;
        m->n_paraphrases = (int32_t)owner.length;
        m->para_offsets = calloc((size_t)n_phrases + 1, sizeof *m->para_offsets);
        m->para_list = malloc(((size_t)m->n_paraphrases + 1) * sizeof *m->para_list);
        int32_t *fill = calloc((size_t)n_phrases + 1, sizeof *fill);
        if (!m->para_offsets || !m->para_list || !fill) {
            st = mg_error(MG_ERR_NO_MEMORY, "meteor: out of memory for paraphrases");
        } else {
            for (int32_t i = 0; i < m->n_paraphrases; i++) m->para_offsets[owner.data[i] + 1]++;
            for (int32_t p = 0; p < n_phrases; p++) m->para_offsets[p + 1] += m->para_offsets[p];
            for (int32_t i = 0; i < m->n_paraphrases; i++) {
                int32_t p = owner.data[i];
                m->para_list[m->para_offsets[p] + fill[p]++] = i; /* file order kept */
            }
            m->par_offsets = par_offsets.data, par_offsets.data = NULL;
            m->par_words = par_words.data, par_words.data = NULL;
        }
        free(fill);
    }
    mg_ivec_free(&ref), mg_ivec_free(&par), mg_ivec_free(&owner), mg_ivec_free(&par_offsets), mg_ivec_free(&par_words);
    mg_strbuf_free(&key);
    return st;
}

/* ---- create / destroy --------------------------------------------------- */

void mg_meteor_destroy(mg_meteor *m) {
    if (!m) return;
    mg_intern_free(&m->function_words);
    mg_intern_free(&m->prefixes);
    free(m->prefix_type);
    mg_intern_free(&m->syn_words);
    free(m->syn_offsets), free(m->syn_ids);
    mg_intern_free(&m->exc_forms);
    free(m->exc_offsets);
    if (m->exc_bases)
        for (int32_t i = 0; i < m->n_exc_bases; i++) free(m->exc_bases[i]);
    free(m->exc_bases);
    mg_intern_free(&m->para_vocab);
    mg_intern_free(&m->para_phrases);
    free(m->para_offsets), free(m->para_list), free(m->par_offsets), free(m->par_words);
    for (int i = 0; i < N_RE; i++) pcre2_code_free(m->re[i]);
    free(m);
}

const char *mg_meteor_modules(const mg_meteor *m) { return m ? m->modules : ""; }

mg_status mg_meteor_create(const mg_meteor_resources *r, mg_meteor **out) {
    if (!r || !out) return mg_error(MG_ERR_INVALID_ARGUMENT, "meteor_create: NULL argument");
    *out = NULL;
    if (!r->function_words) return mg_error(MG_ERR_INVALID_ARGUMENT, "meteor_create: the function-word list (english.words) is required");
    if (!r->nonbreaking_prefixes)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "meteor_create: the non-breaking prefix list (english.prefixes) is required");
    if ((r->synsets == NULL) != (r->exceptions == NULL))
        return mg_error(MG_ERR_INVALID_ARGUMENT, "meteor_create: synonyms need both english.synsets and english.exceptions");
    mg_meteor *m = calloc(1, sizeof *m);
    if (!m) return mg_error(MG_ERR_NO_MEMORY, "meteor_create: out of memory");
    mg_status st;
    if ((st = mg_compile_patterns(m)) || (st = mg_load_lines_set(&m->function_words, r->function_words)) ||
        (st = mg_load_prefixes(m, r->nonbreaking_prefixes)))
        goto fail;
    m->stem = r->stem;
    if (r->synsets) {
        if ((st = mg_load_synonyms(m, r->synsets, r->exceptions))) goto fail;
        m->has_synonyms = true;
    }
    if (r->paraphrases) {
        mg_intern filter;
        bool use_filter = r->vocabulary_texts != NULL;
        if (use_filter) {
            if ((st = mg_intern_init(&filter, 4096))) goto fail;
            for (int64_t i = 0; i < r->n_vocabulary_texts && !st; i++) {
                if (!r->vocabulary_texts[i]) continue;
                char *norm = mg_meteor_normalize_line(m, r->vocabulary_texts[i], &st);
                mg_ivec ids = {0};
                if (!st) st = mg_eval_split_intern(&filter, norm, &ids);
                mg_ivec_free(&ids);
                free(norm);
            }
            if (!st) st = mg_load_paraphrases(m, r->paraphrases, r->paraphrases_length, &filter);
            mg_intern_free(&filter);
        } else {
            st = mg_load_paraphrases(m, r->paraphrases, r->paraphrases_length, NULL);
        }
        if (st) goto fail;
        m->has_paraphrases = true;
    }
    snprintf(m->modules, sizeof m->modules, "exact%s%s%s", m->stem ? " stem" : "", m->has_synonyms ? " synonym" : "",
             m->has_paraphrases ? " paraphrase" : "");
    *out = m;
    return MG_OK;
fail:
    mg_meteor_destroy(m);
    return st;
}

/* ---- alignment ------------------------------------------------------------ */

typedef struct mg_match {
    int32_t start, length;           /* reference (line2) */
    int32_t match_start, match_length; /* hypothesis (line1) */
    int32_t module;                  /* index into the module list in use */
} mg_match;

typedef struct mg_match_list {
    mg_match *items;
    int32_t n, capacity;
} mg_match_list;

static mg_status mg_match_add(mg_match_list *l, mg_match m) {
    if (l->n == l->capacity) {
        int32_t capacity = l->capacity ? l->capacity * 2 : 8;
        mg_match *items = realloc(l->items, (size_t)capacity * sizeof *items);
        if (!items) return mg_error(MG_ERR_NO_MEMORY, "meteor: out of memory for matches");
        l->items = items;
        l->capacity = capacity;
    }
    l->items[l->n++] = m;
    return MG_OK;
}

typedef struct mg_path {
    const mg_match **matches; /* by line2 index */
    uint8_t *used1, *used2;
    int32_t match_count, matches1, matches2, all1, all2, chunks, idx, last_match_end, distance;
} mg_path;

typedef struct mg_words {
    char **w;
    int32_t *keys;
    int32_t *ids; /* mg_word_cache ids */
    int32_t n;
} mg_words;

/* Per-call cache of what the matchers need for each distinct word (stem
 * hash, synset ids, paraphrase vocabulary id): computed once per word, not
 * once per word per segment. Pure memoisation: same results. */
typedef struct mg_word_cache {
    mg_intern ids;
    mg_ivec stem, para, syn_offsets, syn_items; /* a word's synsets: sorted */
    uint64_t *syn_sig;                          /* by id: bit (synset % 64) set per synset */
    size_t sig_capacity;
    struct sb_stemmer *stemmer;
} mg_word_cache;

static void mg_word_cache_free(mg_word_cache *c) {
    if (c->ids.slots) mg_intern_free(&c->ids);
    mg_ivec_free(&c->stem), mg_ivec_free(&c->para), mg_ivec_free(&c->syn_offsets), mg_ivec_free(&c->syn_items);
    free(c->syn_sig);
}

static int mg_i32_cmp(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static void mg_path_free(mg_path *p) {
    if (!p) return;
    free(p->matches), free(p->used1), free(p->used2), free(p);
}

static mg_path *mg_path_new(int32_t n1, int32_t n2) {
    mg_path *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->matches = calloc((size_t)n2 + 1, sizeof *p->matches);
    p->used1 = calloc((size_t)n1 + 1, 1);
    p->used2 = calloc((size_t)n2 + 1, 1);
    if (!p->matches || !p->used1 || !p->used2) {
        mg_path_free(p);
        return NULL;
    }
    p->last_match_end = -1;
    return p;
}

static mg_path *mg_path_copy(const mg_path *src, int32_t n1, int32_t n2) {
    mg_path *p = mg_path_new(n1, n2);
    if (!p) return NULL;
    const mg_match **matches = p->matches;
    uint8_t *u1 = p->used1, *u2 = p->used2;
    *p = *src;
    p->matches = matches, p->used1 = u1, p->used2 = u2;
    memcpy(p->matches, src->matches, (size_t)n2 * sizeof *p->matches);
    memcpy(p->used1, src->used1, (size_t)n1);
    memcpy(p->used2, src->used2, (size_t)n2);
    return p;
}

/* Constants.PARTIAL_COMPARE_TOTAL */
static int mg_path_compare(const mg_path *x, const mg_path *y) {
    int diff = (y->matches1 + y->matches2) - (x->matches1 + x->matches2);
    if (diff > 0) return 1;
    if (diff < 0) return -1;
    if (x->chunks != y->chunks) return x->chunks - y->chunks;
    return x->distance - y->distance;
}

/* Stable merge sort (Collections.sort). */
static void mg_sort_paths(mg_path **a, mg_path **tmp, int32_t n) {
    if (n < 2) return;
    int32_t h = n / 2;
    mg_sort_paths(a, tmp, h);
    mg_sort_paths(a + h, tmp, n - h);
    int32_t i = 0, j = h, k = 0;
    while (i < h && j < n) tmp[k++] = mg_path_compare(a[j], a[i]) < 0 ? a[j++] : a[i++];
    while (i < h) tmp[k++] = a[i++];
    while (j < n) tmp[k++] = a[j++];
    memcpy(a, tmp, (size_t)n * sizeof *a);
}

typedef struct mg_path_list {
    mg_path **items;
    int32_t n, capacity;
} mg_path_list;

static mg_status mg_path_push(mg_path_list *l, mg_path *p) {
    if (l->n == l->capacity) {
        int32_t capacity = l->capacity ? l->capacity * 2 : 64;
        mg_path **items = realloc(l->items, (size_t)capacity * sizeof *items);
        if (!items) return mg_error(MG_ERR_NO_MEMORY, "meteor: out of memory for the beam");
        l->items = items;
        l->capacity = capacity;
    }
    l->items[l->n++] = p;
    return MG_OK;
}

static bool mg_path_is_used(const mg_path *p, const mg_match *m) {
    for (int32_t i = 0; i < m->length; i++)
        if (p->used2[m->start + i]) return true;
    for (int32_t i = 0; i < m->match_length; i++)
        if (p->used1[m->match_start + i]) return true;
    return false;
}

static void mg_path_set_used(mg_path *p, const mg_match *m) {
    for (int32_t i = 0; i < m->length; i++) p->used2[m->start + i] = 1;
    for (int32_t i = 0; i < m->match_length; i++) p->used1[m->match_start + i] = 1;
}

typedef struct mg_stage {
    mg_match_list *matches; /* by line2 index */
    int32_t *coverage1, *coverage2;
} mg_stage;

static mg_status mg_stage_add(mg_stage *s, mg_match m) {
    MG_TRY(mg_match_add(&s->matches[m.start], m));
    for (int32_t k = 0; k < m.match_length; k++) s->coverage1[m.match_start + k]++;
    for (int32_t k = 0; k < m.length; k++) s->coverage2[m.start + k]++;
    return MG_OK;
}

/* Synsets of a word (getSynSets) appended to out. */
static mg_status mg_synsets_of(const mg_meteor *m, const char *word, mg_ivec *out) {
    int32_t id = mg_intern_find(&m->syn_words, word, strlen(word));
    if (id < 0) return MG_OK;
    for (int32_t j = m->syn_offsets[id]; j < m->syn_offsets[id + 1]; j++) MG_TRY(mg_ivec_push(out, m->syn_ids[j]));
    return MG_OK;
}

static const char *const MORPH_SUFFIX[20] = {"s", "ses", "xes", "zes", "ches", "shes", "men", "ies", "s", "ies",
                                              "es", "es", "ed", "ed", "ing", "ing", "er", "est", "er", "est"};
static const char *const MORPH_ENDING[20] = {"", "s", "x", "z", "ch", "sh", "man", "y", "", "y",
                                             "e", "", "e", "", "e", "", "", "", "e", "e"};

static bool mg_ends_with(const char *s, size_t n, const char *suffix) {
    size_t k = strlen(suffix);
    return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

/* SynonymDictionary.getSynSets(word) + getStemSynSets(word). */
static mg_status mg_word_synsets(const mg_meteor *m, const char *word, mg_ivec *out) {
    out->length = 0;
    MG_TRY(mg_synsets_of(m, word, out));
    size_t n = strlen(word);
    int32_t form = mg_intern_find(&m->exc_forms, word, n);
    if (form >= 0) {
        for (int32_t j = m->exc_offsets[form]; j < m->exc_offsets[form + 1]; j++) MG_TRY(mg_synsets_of(m, m->exc_bases[j], out));
        return MG_OK;
    }
    /* morph(): WordNet's suffix rules, first candidate present wins */
    if (mg_ends_with(word, n, "ss") || mg_java_length(word) <= 2) return mg_synsets_of(m, word, out);
    char buf[512];
    for (int i = 0; i < 20; i++) {
        if (!mg_ends_with(word, n, MORPH_SUFFIX[i])) continue;
        size_t stem_n = n - strlen(MORPH_SUFFIX[i]);
        size_t end_n = strlen(MORPH_ENDING[i]);
        if (stem_n + end_n >= sizeof buf) continue;
        memcpy(buf, word, stem_n);
        memcpy(buf + stem_n, MORPH_ENDING[i], end_n);
        buf[stem_n + end_n] = '\0';
        if (mg_intern_find(&m->syn_words, buf, stem_n + end_n) >= 0) return mg_synsets_of(m, buf, out);
    }
    return mg_synsets_of(m, "", out);
}

/* For SPICE (spice.c): the synonym module's tables, read through the same
 * lookups METEOR uses. */
bool mg_meteor_has_synonyms(const mg_meteor *m) { return m && m->has_synonyms; }

mg_status mg_meteor_word_synsets(const mg_meteor *m, const char *word, mg_ivec *out) {
    if (!mg_meteor_has_synonyms(m)) {
        out->length = 0;
        return mg_error(MG_ERR_INVALID_ARGUMENT, "meteor: no synonym tables loaded (english.synsets/exceptions)");
    }
    return mg_word_synsets(m, word, out);
}

/* ParaphraseTransducer.getPaths: (length, paraphrase index) pairs of the
 * reference phrases starting at words[start], shortest first. */
static mg_status mg_para_paths(const mg_meteor *m, const int32_t *words, int32_t n, int32_t start, mg_ivec *out) {
    out->length = 0;
    mg_ivec tmp = {0};
    mg_strbuf key = {0};
    mg_status st = MG_OK;
    for (int32_t len = 1; start + len <= n && len <= m->max_phrase_words && !st; len++) {
        if (words[start + len - 1] < 0) break; /* word not in the table: the trie walk stops */
        tmp.data = (int32_t *)words;
        tmp.length = (size_t)n;
        if ((st = mg_phrase_key(&tmp, (size_t)start, (size_t)len, &key))) break;
        int32_t phrase = mg_intern_find(&m->para_phrases, key.data, key.length);
        if (phrase < 0) continue;
        for (int32_t j = m->para_offsets[phrase]; j < m->para_offsets[phrase + 1] && !st; j++) {
            if (!(st = mg_ivec_push(out, len))) st = mg_ivec_push(out, m->para_list[j]);
        }
    }
    mg_strbuf_free(&key);
    return st;
}

typedef struct mg_alignment {
    int32_t content1[N_MODULES], content2[N_MODULES], function1[N_MODULES], function2[N_MODULES];
    int32_t n_function1, n_function2;
    int32_t matches1, matches2, chunks;
} mg_alignment;

static mg_status mg_align(const mg_meteor *m, const mg_word_cache *cache, const mg_words *w1, const mg_words *w2,
                          const int *modules, int n_modules, mg_alignment *a) {
    memset(a, 0, sizeof *a);
    int32_t n1 = w1->n, n2 = w2->n;
    mg_status st = MG_OK;
    mg_stage s = {0};
    mg_path_list paths = {0}, next = {0};
    mg_path **tmp = NULL;
    int32_t *par1 = NULL, *par2 = NULL;
    mg_ivec pars = {0};
    s.matches = calloc((size_t)n2 + 1, sizeof *s.matches);
    s.coverage1 = calloc((size_t)n1 + 1, sizeof *s.coverage1);
    s.coverage2 = calloc((size_t)n2 + 1, sizeof *s.coverage2);
    if (!s.matches || !s.coverage1 || !s.coverage2) {
        st = mg_error(MG_ERR_NO_MEMORY, "meteor: out of memory aligning");
        goto done;
    }
    /* identical sentences: exact only (prevents beam search errors) */
    int mods_used = n_modules;
    if (n1 == n2 && memcmp(w1->keys, w2->keys, (size_t)n1 * sizeof *w1->keys) == 0) mods_used = 1;
    for (int mod = 0; mod < mods_used && !st; mod++) {
        int kind = modules[mod];
        if (kind == MOD_EXACT) {
            for (int32_t j = 0; j < n2 && !st; j++)
                for (int32_t i = 0; i < n1 && !st; i++)
                    if (w1->keys[i] == w2->keys[j]) st = mg_stage_add(&s, (mg_match){j, 1, i, 1, mod});
        } else if (kind == MOD_STEM) {
            const int32_t *stem = cache->stem.data;
            for (int32_t j = 0; j < n2 && !st; j++)
                for (int32_t i = 0; i < n1 && !st; i++)
                    if (stem[w1->ids[i]] == stem[w2->ids[j]] && w1->keys[i] != w2->keys[j])
                        st = mg_stage_add(&s, (mg_match){j, 1, i, 1, mod});
        } else if (kind == MOD_SYNONYM) {
            const int32_t *off = cache->syn_offsets.data, *items = cache->syn_items.data;
            for (int32_t j = 0; j < n2 && !st; j++) {
                int32_t b0 = off[w2->ids[j]], b1 = off[w2->ids[j] + 1];
                uint64_t sig2 = cache->syn_sig[w2->ids[j]];
                for (int32_t i = 0; i < n1 && !st; i++) {
                    if (!(cache->syn_sig[w1->ids[i]] & sig2) || w1->keys[i] == w2->keys[j]) continue;
                    /* sorted synset lists: merge */
                    int32_t x = off[w1->ids[i]], a1 = off[w1->ids[i] + 1], y = b0;
                    bool hit = false;
                    while (x < a1 && y < b1 && !hit) {
                        if (items[x] == items[y]) hit = true;
                        else if (items[x] < items[y]) x++;
                        else y++;
                    }
                    if (hit) st = mg_stage_add(&s, (mg_match){j, 1, i, 1, mod});
                }
            }
        } else if (kind == MOD_PARAPHRASE) {
            par1 = malloc(((size_t)n1 + 1) * sizeof *par1);
            par2 = malloc(((size_t)n2 + 1) * sizeof *par2);
            if (!par1 || !par2) {
                st = mg_error(MG_ERR_NO_MEMORY, "meteor: out of memory for paraphrases");
                break;
            }
            for (int32_t i = 0; i < n1; i++) par1[i] = cache->para.data[w1->ids[i]];
            for (int32_t j = 0; j < n2; j++) par2[j] = cache->para.data[w2->ids[j]];
            /* paraphrases in line1 of line2 phrases, then line2 of line1 */
            for (int dir = 0; dir < 2 && !st; dir++) {
                const int32_t *from = dir ? par1 : par2, *to = dir ? par2 : par1;
                int32_t n_from = dir ? n1 : n2, n_to = dir ? n2 : n1;
                for (int32_t a0 = 0; a0 < n_from && !st; a0++) {
                    if ((st = mg_para_paths(m, from, n_from, a0, &pars))) break;
                    for (size_t q = 0; q < pars.length && !st; q += 2) {
                        int32_t len = pars.data[q], index = pars.data[q + 1];
                        const int32_t *words = m->par_words + m->par_offsets[index];
                        int32_t n_words = m->par_offsets[index + 1] - m->par_offsets[index];
                        for (int32_t b0 = 0; b0 < n_to && !st; b0++) {
                            bool match = true;
                            for (int32_t k = 0; k < n_words; k++)
                                if (b0 + k == n_to || to[b0 + k] != words[k]) {
                                    match = false;
                                    break;
                                }
                            if (!match) continue;
                            mg_match mm = dir ? (mg_match){b0, n_words, a0, len, mod} : (mg_match){a0, len, b0, n_words, mod};
                            st = mg_stage_add(&s, mm);
                        }
                    }
                }
            }
        }
    }
    if (st) goto done;

    /* one-to-one matches covered by nothing else are fixed */
    mg_path *start = mg_path_new(n1, n2);
    if (!start || (st = mg_path_push(&next, start))) {
        mg_path_free(start);
        if (!st) st = mg_error(MG_ERR_NO_MEMORY, "meteor: out of memory for the beam");
        goto done;
    }
    for (int32_t i = 0; i < n2; i++) {
        if (s.matches[i].n != 1) continue;
        const mg_match *mm = &s.matches[i].items[0];
        bool overlap = false;
        for (int32_t j = 0; j < mm->length; j++) overlap |= s.coverage2[i + j] != 1;
        for (int32_t j = 0; j < mm->match_length; j++) overlap |= s.coverage1[mm->match_start + j] != 1;
        if (!overlap) {
            start->matches[i] = mm;
            mg_path_set_used(start, mm);
        }
    }

    /* beam search left to right over reference positions */
    for (int32_t current = 0; current <= n2 && !st; current++) {
        mg_path_list swap = paths;
        paths = next;
        next = swap;
        next.n = 0;
        free(tmp);
        tmp = malloc(((size_t)paths.n + 1) * sizeof *tmp);
        if (!tmp) {
            st = mg_error(MG_ERR_NO_MEMORY, "meteor: out of memory for the beam");
            break;
        }
        mg_sort_paths(paths.items, tmp, paths.n);
        for (int32_t rank = 0; rank < paths.n && !st; rank++) {
            mg_path *path = paths.items[rank];
            paths.items[rank] = NULL;
            if (rank >= BEAM_SIZE) {
                mg_path_free(path);
                continue;
            }
            if (current == n2) {
                if (path->last_match_end != -1) path->chunks++;
                st = mg_path_push(&next, path);
                continue;
            }
            if (path->used2[current]) {
                if (current < path->idx) {
                    st = mg_path_push(&next, path);
                } else if (path->matches[path->idx] != NULL) {
                    const mg_match *mm = path->matches[path->idx];
                    double w = ALIGN_WEIGHTS[modules[mm->module]];
                    path->match_count++;
                    path->matches1 = (int32_t)(path->matches1 + mm->match_length * w);
                    path->matches2 = (int32_t)(path->matches2 + mm->length * w);
                    path->all1 += mm->match_length;
                    path->all2 += mm->length;
                    if (path->last_match_end != -1 && mm->match_start != path->last_match_end) path->chunks++;
                    path->idx = mm->start + mm->length;
                    path->last_match_end = mm->match_start + mm->match_length;
                    path->distance += abs(mm->start - mm->match_start);
                    st = mg_path_push(&next, path);
                } else {
                    mg_path_free(path); /* dropped, as the reference */
                }
                continue;
            }
            const mg_match_list *list = &s.matches[current];
            for (int32_t i = 0; i < list->n && !st; i++) {
                const mg_match *mm = &list->items[i];
                if (mg_path_is_used(path, mm)) continue;
                mg_path *np = mg_path_copy(path, n1, n2);
                if (!np) {
                    st = mg_error(MG_ERR_NO_MEMORY, "meteor: out of memory for the beam");
                    break;
                }
                mg_path_set_used(np, mm);
                np->matches[current] = mm;
                double w = ALIGN_WEIGHTS[modules[mm->module]];
                np->match_count++;
                np->matches1 = (int32_t)(np->matches1 + mm->match_length * w);
                np->matches2 = (int32_t)(np->matches2 + mm->length * w);
                np->all1 += mm->match_length;
                np->all2 += mm->length;
                if (np->last_match_end != -1 && mm->match_start != np->last_match_end) np->chunks++;
                np->idx = mm->start + mm->length;
                np->last_match_end = mm->match_start + mm->match_length;
                path->distance += abs(mm->start - mm->match_start); /* sic: the parent */
                if ((st = mg_path_push(&next, np))) mg_path_free(np);
            }
            if (st) {
                mg_path_free(path);
                break;
            }
            if (path->last_match_end != -1) {
                path->chunks++;
                path->last_match_end = -1;
            }
            path->idx++;
            st = mg_path_push(&next, path);
        }
        if (!st && next.n == 0) {
            /* "unexpected conditions": cannot happen (the skip path is always
             * kept); keep the search alive like the reference would */
            st = mg_error(MG_ERR_INTERNAL, "meteor: beam search emptied at word %d", current);
        }
    }
    if (st) goto done;
    free(tmp);
    tmp = malloc(((size_t)next.n + 1) * sizeof *tmp);
    if (!tmp) {
        st = mg_error(MG_ERR_NO_MEMORY, "meteor: out of memory");
        goto done;
    }
    mg_sort_paths(next.items, tmp, next.n);
    const mg_path *best = next.items[0];

    /* totals by module and word type */
    uint8_t *fw1 = calloc((size_t)n1 + 1, 1), *fw2 = calloc((size_t)n2 + 1, 1);
    if (!fw1 || !fw2) {
        free(fw1), free(fw2);
        st = mg_error(MG_ERR_NO_MEMORY, "meteor: out of memory");
        goto done;
    }
    for (int side = 0; side < 2; side++) {
        const mg_words *w = side ? w2 : w1;
        uint8_t *fw = side ? fw2 : fw1;
        for (int32_t i = 0; i < w->n; i++) {
            /* functionWords.contains(word.toLowerCase()); words are lower-case already */
            if (mg_intern_find(&m->function_words, w->w[i], strlen(w->w[i])) >= 0) {
                fw[i] = 1;
                if (side) a->n_function2++;
                else a->n_function1++;
            }
        }
    }
    for (int32_t i = 0; i < n2; i++) {
        const mg_match *mm = best->matches[i];
        if (!mm) continue;
        for (int32_t j = 0; j < mm->match_length; j++) {
            if (fw1[mm->match_start + j]) a->function1[mm->module]++;
            else a->content1[mm->module]++;
        }
        for (int32_t j = 0; j < mm->length; j++) {
            if (fw2[mm->start + j]) a->function2[mm->module]++;
            else a->content2[mm->module]++;
        }
    }
    free(fw1), free(fw2);
    /* getCountAndChunks */
    {
        int32_t idx = 0, last = -1;
        while (idx < n2) {
            const mg_match *mm = best->matches[idx];
            if (!mm) {
                if (last != -1) a->chunks++, last = -1;
                idx++;
            } else {
                a->matches1 += mm->match_length;
                a->matches2 += mm->length;
                if (last != -1 && mm->match_start != last) a->chunks++;
                idx = mm->start + mm->length;
                last = mm->match_start + mm->match_length;
            }
        }
        if (last != -1) a->chunks++;
    }
done:
    for (int32_t i = 0; i < paths.n; i++) mg_path_free(paths.items[i]);
    for (int32_t i = 0; i < next.n; i++) mg_path_free(next.items[i]);
    free(paths.items), free(next.items), free(tmp);
    if (s.matches)
        for (int32_t i = 0; i < n2; i++) free(s.matches[i].items);
    free(s.matches), free(s.coverage1), free(s.coverage2);
    free(par1), free(par2);
    mg_ivec_free(&pars);
    return st;
}

/* ---- statistics and scores (MeteorStats / computeMetrics) --------------- */

typedef struct mg_stats {
    double test_length, ref_length, test_function, ref_function;
    double test_total, ref_total;
    double tc[N_MODULES], rc[N_MODULES], tf[N_MODULES], rf[N_MODULES];
    double chunks, test_word_matches, ref_word_matches;
    double score;
} mg_stats;

static double mg_compute_score(const mg_stats *s, const int *modules, int n_modules) {
    const double delta = METEOR_DELTA, alpha = METEOR_ALPHA;
    double tw = 0, rw = 0;
    double tl = (delta * (s->test_length - s->test_function)) + ((1.0 - delta) * (s->test_function));
    double rl = (delta * (s->ref_length - s->ref_function)) + ((1.0 - delta) * (s->ref_function));
    for (int i = 0; i < n_modules; i++) tw += s->tc[i] * METEOR_WEIGHTS[modules[i]] * delta;
    for (int i = 0; i < n_modules; i++) rw += s->rc[i] * METEOR_WEIGHTS[modules[i]] * delta;
    for (int i = 0; i < n_modules; i++) tw += s->tf[i] * METEOR_WEIGHTS[modules[i]] * (1.0 - delta);
    for (int i = 0; i < n_modules; i++) rw += s->rf[i] * METEOR_WEIGHTS[modules[i]] * (1.0 - delta);
    double precision = tw / tl, recall = rw / rl;
    double fmean = 1.0 / (((1.0 - alpha) / precision) + (alpha / recall));
    double frag;
    if (s->test_total == s->test_length && s->ref_total == s->ref_length && s->chunks == 1) frag = 0;
    else frag = s->chunks / ((s->test_word_matches + s->ref_word_matches) / 2);
    double penalty = METEOR_GAMMA * pow(frag, METEOR_BETA);
    double score = fmean * (1.0 - penalty);
    if (isnan(score)) return 0;
    return score > 0.0 ? score : 0.0;
}

static mg_status mg_words_make(const char *line, mg_words *w) {
    memset(w, 0, sizeof *w);
    size_t capacity = 0;
    for (size_t i = 0; line[i];) {
        while (line[i] == ' ' || line[i] == '\t' || line[i] == '\n' || line[i] == '\r' || line[i] == '\f') i++;
        if (!line[i]) break;
        size_t s0 = i;
        while (line[i] && !(line[i] == ' ' || line[i] == '\t' || line[i] == '\n' || line[i] == '\r' || line[i] == '\f')) i++;
        if ((size_t)w->n == capacity) {
            capacity = capacity ? capacity * 2 : 16;
            char **words = realloc(w->w, capacity * sizeof *words);
            int32_t *keys = realloc(w->keys, capacity * sizeof *keys);
            if (words) w->w = words;
            if (keys) w->keys = keys;
            if (!words || !keys) return mg_error(MG_ERR_NO_MEMORY, "meteor: out of memory for words");
        }
        w->w[w->n] = mg_eval_strndup(line + s0, i - s0);
        if (!w->w[w->n]) return mg_error(MG_ERR_NO_MEMORY, "meteor: out of memory for words");
        w->keys[w->n] = mg_java_hash(line + s0, i - s0);
        w->n++;
    }
    return MG_OK;
}

/* Cache ids of w's words, computing stem / synsets / paraphrase id of new ones. */
static mg_status mg_words_bind(const mg_meteor *m, mg_word_cache *c, mg_words *w) {
    w->ids = malloc(((size_t)w->n + 1) * sizeof *w->ids);
    if (!w->ids) return mg_error(MG_ERR_NO_MEMORY, "meteor: out of memory for words");
    for (int32_t i = 0; i < w->n; i++) {
        size_t n = strlen(w->w[i]);
        int32_t before = c->ids.count, id;
        MG_TRY(mg_intern_add(&c->ids, w->w[i], n, &id));
        w->ids[i] = id;
        if (id < before) continue;
        int32_t stem = 0;
        if (c->stemmer) {
            const sb_symbol *s = sb_stemmer_stem(c->stemmer, (const sb_symbol *)w->w[i], (int)n);
            if (!s) return mg_error(MG_ERR_NO_MEMORY, "meteor: the stemmer ran out of memory");
            stem = mg_java_hash((const char *)s, (size_t)sb_stemmer_length(c->stemmer));
        }
        MG_TRY(mg_ivec_push(&c->stem, stem));
        MG_TRY(mg_ivec_push(&c->para, m->has_paraphrases ? mg_intern_find(&m->para_vocab, w->w[i], n) : -1));
        if (c->syn_offsets.length == 0) MG_TRY(mg_ivec_push(&c->syn_offsets, 0));
        uint64_t sig = 0;
        if (m->has_synonyms) {
            mg_ivec syn = {0};
            mg_status st = mg_word_synsets(m, w->w[i], &syn);
            if (!st && syn.length > 1) qsort(syn.data, syn.length, sizeof *syn.data, mg_i32_cmp);
            for (size_t k = 0; k < syn.length && !st; k++) {
                st = mg_ivec_push(&c->syn_items, syn.data[k]);
                sig |= 1ull << ((uint32_t)syn.data[k] & 63);
            }
            mg_ivec_free(&syn);
            MG_TRY(st);
        }
        MG_TRY(mg_ivec_push(&c->syn_offsets, (int32_t)c->syn_items.length));
        if ((size_t)id >= c->sig_capacity) {
            size_t capacity = c->sig_capacity ? c->sig_capacity * 2 : 1024;
            uint64_t *grown = realloc(c->syn_sig, capacity * sizeof *grown);
            if (!grown) return mg_error(MG_ERR_NO_MEMORY, "meteor: out of memory for words");
            c->syn_sig = grown;
            c->sig_capacity = capacity;
        }
        c->syn_sig[id] = sig;
    }
    return MG_OK;
}

static void mg_words_free(mg_words *w) {
    for (int32_t i = 0; i < w->n; i++) free(w->w[i]);
    free(w->w), free(w->keys), free(w->ids);
    memset(w, 0, sizeof *w);
}

static void mg_stats_from_alignment(const mg_words *w1, const mg_words *w2, const mg_alignment *a, int n_modules, mg_stats *s) {
    memset(s, 0, sizeof *s);
    s->test_length = w1->n;
    s->ref_length = w2->n;
    s->test_function = a->n_function1;
    s->ref_function = a->n_function2;
    for (int i = 0; i < n_modules; i++) {
        s->tc[i] = a->content1[i], s->rc[i] = a->content2[i];
        s->tf[i] = a->function1[i], s->rf[i] = a->function2[i];
        s->test_total += s->tc[i] + s->tf[i];
        s->ref_total += s->rc[i] + s->rf[i];
        s->test_word_matches += a->content1[i] + a->function1[i];
        s->ref_word_matches += a->content2[i] + a->function2[i];
    }
    s->chunks = a->chunks;
}

mg_status mg_meteor_score(const mg_meteor *m, const char *const *hyps, const char *const *refs,
                          const int64_t *ref_offsets, int64_t n_images, double *corpus, double *per_image,
                          double *stats_out) {
    if (!m || !hyps || !refs || !ref_offsets || !corpus) return mg_error(MG_ERR_INVALID_ARGUMENT, "meteor_score: NULL argument");
    if (n_images <= 0) return mg_error(MG_ERR_INVALID_ARGUMENT, "meteor_score: no images to score");
    if (ref_offsets[0] != 0) return mg_error(MG_ERR_INVALID_ARGUMENT, "meteor_score: ref_offsets[0] must be 0");
    for (int64_t i = 0; i < n_images; i++) {
        if (!hyps[i]) return mg_error(MG_ERR_INVALID_ARGUMENT, "meteor_score: image %lld has no hypothesis", (long long)i);
        if (ref_offsets[i + 1] <= ref_offsets[i])
            return mg_error(MG_ERR_INVALID_ARGUMENT, "meteor_score: image %lld has no reference", (long long)i);
    }
    int modules[N_MODULES], n_modules = 0;
    modules[n_modules++] = MOD_EXACT;
    if (m->stem) modules[n_modules++] = MOD_STEM;
    if (m->has_synonyms) modules[n_modules++] = MOD_SYNONYM;
    if (m->has_paraphrases) modules[n_modules++] = MOD_PARAPHRASE;
    mg_word_cache cache = {0};
    if (m->stem && !(cache.stemmer = sb_stemmer_new("english", "UTF_8")))
        return mg_error(MG_ERR_UNSUPPORTED, "meteor: libstemmer has no English stemmer");
    mg_stats total = {0};
    mg_status st = mg_intern_init(&cache.ids, 4096);
    for (int64_t i = 0; i < n_images && !st; i++) {
        /* pycocoevalcap: hyp.replace('|||','').replace('  ',' '); the jar
         * trims each field after splitting the line on "|||" */
        char *h0 = mg_str_replace(hyps[i], "|||", "", &st);
        char *h1 = mg_str_replace(h0 ? h0 : "", "  ", " ", &st);
        free(h0);
        char *test = st ? NULL : mg_meteor_normalize_line(m, h1, &st);
        free(h1);
        mg_words w1 = {0};
        if (!st) st = mg_words_make(test, &w1);
        if (!st) st = mg_words_bind(m, &cache, &w1);
        free(test);
        mg_stats best = {0};
        best.score = -1;
        for (int64_t r = ref_offsets[i]; r < ref_offsets[i + 1] && !st; r++) {
            if (!refs[r]) {
                st = mg_error(MG_ERR_INVALID_ARGUMENT, "meteor_score: image %lld has a NULL reference", (long long)i);
                break;
            }
            char *ref = mg_meteor_normalize_line(m, refs[r], &st);
            mg_words w2 = {0};
            mg_alignment a;
            if (!st) st = mg_words_make(ref, &w2);
            if (!st) st = mg_words_bind(m, &cache, &w2);
            free(ref);
            if (!st) st = mg_align(m, &cache, &w1, &w2, modules, n_modules, &a);
            if (!st) {
                mg_stats cur;
                mg_stats_from_alignment(&w1, &w2, &a, n_modules, &cur);
                cur.score = mg_compute_score(&cur, modules, n_modules);
                if (cur.score > best.score) best = cur;
            }
            mg_words_free(&w2);
        }
        mg_words_free(&w1);
        if (st) break;
        if (per_image) per_image[i] = best.score;
        if (stats_out) {
            /* MeteorStats.toString order; module slots by module kind */
            double *o = stats_out + i * MG_METEOR_STATS;
            memset(o, 0, MG_METEOR_STATS * sizeof *o);
            o[0] = best.test_length, o[1] = best.ref_length, o[2] = best.test_function, o[3] = best.ref_function;
            for (int k = 0; k < n_modules; k++) {
                o[4 + 4 * k] = best.tc[k], o[5 + 4 * k] = best.rc[k], o[6 + 4 * k] = best.tf[k], o[7 + 4 * k] = best.rf[k];
            }
            o[20] = best.chunks, o[21] = best.test_word_matches, o[22] = best.ref_word_matches;
        }
        /* MeteorStats.addStats */
        total.test_length += best.test_length;
        total.ref_length += best.ref_length;
        total.test_function += best.test_function;
        total.ref_function += best.ref_function;
        total.test_total += best.test_total;
        total.ref_total += best.ref_total;
        for (int k = 0; k < n_modules; k++) {
            total.tc[k] += best.tc[k], total.rc[k] += best.rc[k], total.tf[k] += best.tf[k], total.rf[k] += best.rf[k];
        }
        if (!(best.test_total == best.test_length && best.ref_total == best.ref_length && best.chunks == 1.0))
            total.chunks += best.chunks;
        total.test_word_matches += best.test_word_matches;
        total.ref_word_matches += best.ref_word_matches;
    }
    if (cache.stemmer) sb_stemmer_delete(cache.stemmer);
    mg_word_cache_free(&cache);
    if (st) return st;
    *corpus = mg_compute_score(&total, modules, n_modules);
    return MG_OK;
}

/* pycocoevalcap's caption tokenisation: Stanford CoreNLP 3.4.1
 * `PTBTokenizer -preserveLines -lowerCase` followed by pycocoevalcap's
 * removal of punctuation tokens.
 *
 * A hand-written port of the PTBLexer (JFlex) rules that occur in caption
 * and answer text. JFlex semantics are kept: at every position each rule
 * proposes a match (trailing context included in its length), the longest
 * wins and ties go to the rule listed first; the token text is the match
 * without its trailing context. pycocoevalcap hands the jar one call's
 * captions joined by '\n', so trailing contexts see the start of the next
 * caption (mg_eval_ptb_tokenize_lines); tokens never cross captions.
 * Behaviour of the 3.4.1 jar was checked against the jar itself
 * (tests/test_eval_caption.py; 12,398 of 12,399 real English lines of
 * package descriptions agree): no Americanize, no escaping of '/' and '*',
 * '[' ']' become -LSB- -RSB-, '<' '>' '|' '\' stay, "gonna" -> "gon na",
 * "'tis" -> "'t is", a single letter's period splits off before a
 * capitalised sentence-start word.
 * Not ported: SGML entities other than &amp; &lt; &gt; &quot; &apos; &mdash;
 * &ndash; &#NN;, non-ASCII digits, Indic combining marks (the jar drops
 * some, e.g. the Kannada virama), Unicode letter classes beyond the ranges
 * in ptb_is_letter. A '\r' or other line separator inside a caption is a
 * space here (the jar would start a new output line, shifting
 * pycocoevalcap's line pairing). */
#include "eval/eval_internal.h"

#include <stdio.h>

typedef uint32_t cp_t;

/* ---- character classes ------------------------------------------------ */

static bool ptb_is_digit(cp_t c) { return c >= '0' && c <= '9'; }
static bool ptb_is_ascii_letter(cp_t c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static bool ptb_is_ascii_alnum(cp_t c) { return ptb_is_ascii_letter(c) || ptb_is_digit(c); }

/* Java Character.isLetter, approximated by blocks. */
static bool ptb_is_letter(cp_t c) {
    if (c < 0x80) return ptb_is_ascii_letter(c);
    if (c == 0xAA || c == 0xB5 || c == 0xBA) return true;
    if (c >= 0xC0 && c <= 0x24F) return c != 0xD7 && c != 0xF7;
    if (c >= 0x250 && c <= 0x2AF) return true;          /* IPA */
    if (c >= 0x370 && c <= 0x3FF) return c != 0x37E && c != 0x387 && c != 0x375 && c != 0x384 && c != 0x385;
    if (c >= 0x400 && c <= 0x52F) return !(c >= 0x482 && c <= 0x489);
    if (c >= 0x531 && c <= 0x587) return !(c >= 0x55A && c <= 0x560);
    if (c >= 0x5D0 && c <= 0x5F2) return true;          /* Hebrew letters */
    if ((c >= 0x620 && c <= 0x65E) || c == 0x670 || (c >= 0x671 && c <= 0x6D3) || (c >= 0x6FA && c <= 0x6FF))
        return true;                                     /* Arabic letters and marks */
    if (c >= 0x900 && c <= 0xDFF) return true;          /* Indic (approx.) */
    if (c >= 0xE01 && c <= 0xE30) return true;          /* Thai */
    if (c >= 0x1E00 && c <= 0x1FFF) return true;        /* Latin/Greek extended */
    if (c >= 0x3041 && c <= 0x30FF) return c != 0x30FB; /* kana */
    if (c >= 0x3400 && c <= 0x9FFF) return true;        /* CJK */
    if (c >= 0xAC00 && c <= 0xD7A3) return true;        /* Hangul */
    return false;
}

static bool ptb_is_letter_or_digit(cp_t c) { return ptb_is_letter(c) || ptb_is_digit(c); }
/* WORD's letters: [:letter:], soft hyphen and combining marks. */
static bool ptb_is_word_char(cp_t c) {
    return ptb_is_letter(c) || c == 0xAD || (c >= 0x300 && c <= 0x36F);
}
static bool ptb_is_space(cp_t c) {
    return c == ' ' || c == '\t' || c == 0xA0 || (c >= 0x2000 && c <= 0x200A) || c == 0x3000;
}
static bool ptb_is_newline(cp_t c) {
    return c == '\n' || c == '\r' || c == 0x2028 || c == 0x2029 || c == 0x0B || c == 0x0C || c == 0x85;
}
static bool ptb_is_spacenl(cp_t c) { return ptb_is_space(c) || ptb_is_newline(c); }
static bool ptb_is_apos(cp_t c) { return c == '\'' || c == 0x92 || c == 0x2019; }
static bool ptb_is_apos_etc(cp_t c) { return ptb_is_apos(c) || c == 0x91 || c == 0x2018 || c == 0x201B; }
static bool ptb_is_hyphen(cp_t c) { return c == '-' || c == '_' || c == 0x58A || c == 0x2010 || c == 0x2011; }
static bool ptb_is_vowel(cp_t c) {
    switch (c) {
    case 'a': case 'e': case 'i': case 'o': case 'u': case 'y':
    case 'A': case 'E': case 'I': case 'O': case 'U': case 'Y': return true;
    default: return false;
    }
}
static bool ptb_is_dol(cp_t c) { return c == 'd' || c == 'D' || c == 'o' || c == 'O' || c == 'l' || c == 'L'; }
static bool ptb_is_handle_char(cp_t c) { return ptb_is_ascii_alnum(c) || c == '_'; }
static bool ptb_is_insentp(cp_t c) { return c == ',' || c == ';' || c == ':'; }

static bool ptb_is_misc_symbol(cp_t c) {
    return (c >= 0xA6 && c <= 0xA9) || c == 0xAC || c == 0xAE || c == 0xAF || (c >= 0xB0 && c <= 0xBA) || c == 0xD7 ||
           c == 0xF7 || c == 0x387 || (c >= 0x2020 && c <= 0x2023) || (c >= 0x2032 && c <= 0x2038) || c == 0x2044 ||
           (c >= 0x207A && c <= 0x207F) || (c >= 0x208A && c <= 0x208E) || (c >= 0x2100 && c <= 0x214F) ||
           (c >= 0x2190 && c <= 0x2BFF) || c == 0x3012 || c == 0x30FB ||
           (c >= 0xFF01 && c <= 0xFF0F) || (c >= 0xFF1A && c <= 0xFF20) || (c >= 0xFF3B && c <= 0xFF40) ||
           (c >= 0xFF5B && c <= 0xFF65);
}

static cp_t ptb_lower(cp_t c) {
    if (c >= 'A' && c <= 'Z') return c + 32;
    if (c >= 0xC0 && c <= 0xDE && c != 0xD7) return c + 32;
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

/* ---- the text being scanned ------------------------------------------- */

typedef struct ptb_text {
    const cp_t *c; /* the caption's code points */
    size_t n;
    /* What the jar sees after the caption: "\n" + the start of the next
     * caption of the same tokenize call (trailing contexts look into it;
     * tokens never cross it), or nothing (end of input) for the last one. */
    const cp_t *tail;
    size_t tail_n;
} ptb_text;

static cp_t at(const ptb_text *t, size_t i) {
    if (i < t->n) return t->c[i];
    i -= t->n;
    return i < t->tail_n ? t->tail[i] : 0;
}

/* Caseless match of an ASCII literal at i; returns its length or 0. */
static size_t lit(const ptb_text *t, size_t i, const char *s) {
    size_t k = 0;
    for (; s[k]; k++) {
        cp_t c = at(t, i + k);
        if (c >= 0x80 || ptb_lower(c) != (cp_t)(unsigned char)s[k]) return 0;
    }
    return k;
}

/* Longest of a '|'-separated caseless literal list at i. An entry starting
 * with '^' requires an upper-case first letter (JFlex class [A]). */
static size_t lit_list(const ptb_text *t, size_t i, const char *list) {
    size_t best = 0;
    for (const char *p = list; *p;) {
        bool upper_first = *p == '^';
        if (upper_first) p++;
        size_t k = 0;
        bool ok = true;
        for (; *p && *p != '|'; p++, k++) {
            if (!ok) continue;
            cp_t c = at(t, i + k);
            if (c >= 0x80 || ptb_lower(c) != (cp_t)(unsigned char)*p) ok = false;
        }
        if (ok && upper_first && !(at(t, i) >= 'A' && at(t, i) <= 'Z')) ok = false;
        if (ok && k > best) best = k;
        if (*p == '|') p++;
    }
    return best;
}

static size_t run(const ptb_text *t, size_t i, bool (*cls)(cp_t)) {
    size_t k = i;
    while (cls(at(t, k))) k++;
    return k - i;
}

/* ---- rules ------------------------------------------------------------ */

/* WORD = {LETTER}({LETTER}|{DIGIT})*([.!?]{LETTER}({LETTER}|{DIGIT})*)*
 * (LETTER: [:letter:], soft hyphen, combining marks) */
static bool ptb_is_word_char_or_digit(cp_t c) { return ptb_is_word_char(c) || ptb_is_digit(c); }
static size_t m_word(const ptb_text *t, size_t i) {
    if (!ptb_is_word_char(at(t, i))) return 0;
    size_t k = i + 1 + run(t, i + 1, ptb_is_word_char_or_digit);
    while ((at(t, k) == '.' || at(t, k) == '!' || at(t, k) == '?') && ptb_is_word_char(at(t, k + 1)))
        k += 2 + run(t, k + 2, ptb_is_word_char_or_digit);
    return k - i;
}

/* SGML, as 3.4.1 recognises tags: <name( attr| attr=value)* /?>, </name>,
 * <!...> (a bare "<https://..>" is not a tag). */
static bool sgml_name_char(cp_t c) { return ptb_is_ascii_alnum(c) || c == '_' || c == ':' || c == '.' || c == '-'; }
static bool sgml_value_char(cp_t c) { return sgml_name_char(c) || c == '/'; }
static size_t m_sgml(const ptb_text *t, size_t i) {
    if (at(t, i) != '<') return 0;
    size_t k = i + 1;
    cp_t c = at(t, k);
    if (c == '!' || c == '?') {
        if (!(ptb_is_ascii_letter(at(t, k + 1)) || at(t, k + 1) == '-')) return 0;
        size_t e = k + 2;
        while (e < t->n && at(t, e) != '>') e++;
        return e < t->n ? e + 1 - i : 0;
    }
    if (c == '/') {
        if (!ptb_is_ascii_letter(at(t, k + 1))) return 0;
        k += 2 + run(t, k + 2, sgml_name_char);
    } else {
        if (!ptb_is_ascii_letter(c)) return 0;
        k += 1 + run(t, k + 1, sgml_name_char);
        for (;;) {
            size_t sp = 0;
            while (at(t, k + sp) == ' ') sp++;
            if (!sp || !ptb_is_ascii_letter(at(t, k + sp))) break;
            size_t a = k + sp + 1 + run(t, k + sp + 1, sgml_name_char);
            size_t e = a;
            while (at(t, e) == ' ') e++;
            if (at(t, e) == '=') {
                e++;
                while (at(t, e) == ' ') e++;
                cp_t q = at(t, e);
                if (q == '\'' || q == '"') {
                    size_t f = e + 1;
                    while (f < t->n && at(t, f) != q) f++;
                    if (f >= t->n) break;
                    a = f + 1;
                } else if (ptb_is_ascii_letter(q)) {
                    a = e + 1 + run(t, e + 1, sgml_value_char);
                }
            }
            k = a;
        }
        while (at(t, k) == ' ') k++;
        if (at(t, k) == '/') k++;
    }
    while (at(t, k) == ' ') k++;
    return at(t, k) == '>' ? k + 1 - i : 0;
}

/* SMILEY = [<>]?[:;=][\-o\*']?[\(\)DPdpO\\{@\|\[\]], not followed by a letter or digit */
static size_t m_smiley(const ptb_text *t, size_t i) {
    size_t k = i;
    if (at(t, k) == '<' || at(t, k) == '>') k++;
    if (at(t, k) != ':' && at(t, k) != ';' && at(t, k) != '=') return 0;
    k++;
    if (at(t, k) == '-' || at(t, k) == 'o' || at(t, k) == '*' || at(t, k) == '\'') {
        cp_t e = at(t, k + 1);
        if (e && e < 0x80 && strchr("()DPdpO\\{@|[]", (int)e)) k++;
    }
    cp_t e = at(t, k);
    if (!(e && e < 0x80 && strchr("()DPdpO\\{@|[]", (int)e))) return 0;
    k++;
    return ptb_is_ascii_alnum(at(t, k)) || at(t, k) == 0 ? 0 : k - i;
}

/* REDAUX = {APOS}([msdMSD]|re|ve|ll) */
static size_t m_redaux(const ptb_text *t, size_t i) {
    if (!ptb_is_apos(at(t, i))) return 0;
    size_t two = lit(t, i + 1, "re");
    if (!two) two = lit(t, i + 1, "ve");
    if (!two) two = lit(t, i + 1, "ll");
    if (two) return 3;
    cp_t c = ptb_lower(at(t, i + 1));
    return (c == 'm' || c == 's' || c == 'd') ? 2 : 0;
}

/* SREDAUX = n{APOSETCETERA}t */
static size_t m_sredaux(const ptb_text *t, size_t i) {
    return (ptb_lower(at(t, i)) == 'n' && ptb_is_apos_etc(at(t, i + 1)) && ptb_lower(at(t, i + 2)) == 't') ? 3 : 0;
}

/* SWORD = [A-Za-z\u00AD]*[A-MO-Za-mo-z](\u00AD)* followed by SREDAUX:
 * returns the SWORD length (0 when none) for the longest total. */
static size_t m_sword_sredaux(const ptb_text *t, size_t i, size_t *total) {
    size_t best = 0;
    *total = 0;
    for (size_t k = i; ptb_is_ascii_letter(at(t, k)) || at(t, k) == 0xAD; k++) {
        cp_t c = at(t, k);
        if (c == 0xAD || ptb_lower(c) == 'n') continue;
        size_t e = k + 1;
        while (at(t, e) == 0xAD) e++;
        for (size_t e2 = k + 1; e2 <= e; e2++)
            if (m_sredaux(t, e2) && e2 + 3 - i > *total) *total = e2 + 3 - i, best = e2 - i;
    }
    return best;
}

static size_t m_apoword(const ptb_text *t, size_t i) {
    size_t best = 0, m;
    cp_t c0 = at(t, i);
    if (ptb_is_apos(c0)) {
        /* {APOS}n{APOS}? | {APOS}em | {APOS}[2-9]0s | {APOS}till? | {APOS}cause */
        if (ptb_lower(at(t, i + 1)) == 'n') best = ptb_is_apos(at(t, i + 2)) ? 3 : 2;
        if ((m = lit(t, i + 1, "em")) && 1 + m > best) best = 1 + m;
        if (at(t, i + 1) >= '2' && at(t, i + 1) <= '9' && at(t, i + 2) == '0' && ptb_lower(at(t, i + 3)) == 's' && best < 4) best = 4;
        if ((m = lit(t, i + 1, "til"))) {
            m = ptb_lower(at(t, i + 4)) == 'l' ? 4 : 3;
            if (1 + m > best) best = 1 + m;
        }
        if ((m = lit(t, i + 1, "cause")) && 1 + m > best) best = 1 + m;
    }
    /* [lLdDjJ]{APOS} */
    if (strchr("lLdDjJ", (int)(c0 < 0x80 ? c0 : 1)) && c0 && ptb_is_apos(at(t, i + 1)) && best < 2) best = 2;
    /* Dunkin{APOS} | somethin{APOS} | ol{APOS} */
    static const char *const with_apos[] = {"dunkin", "somethin", "ol"};
    for (int k = 0; k < 3; k++)
        if ((m = lit(t, i, with_apos[k])) && ptb_is_apos(at(t, i + m)) && m + 1 > best) best = m + 1;
    /* [A-HJ-XZn]{APOSETCETERA}[:letter:]{2}[:letter:]* */
    if (((c0 >= 'A' && c0 <= 'H') || (c0 >= 'J' && c0 <= 'X') || c0 == 'Z' || c0 == 'n') && ptb_is_apos_etc(at(t, i + 1)) &&
        ptb_is_letter(at(t, i + 2)) && ptb_is_letter(at(t, i + 3))) {
        m = 2 + run(t, i + 2, ptb_is_letter);
        if (m > best) best = m;
    }
    /* [:letter:][:letter:]*[aeiouyAEIOUY]{APOSETCETERA}[aeiouA-Z][:letter:]* */
    size_t letters = run(t, i, ptb_is_letter);
    /* the apostrophe must follow the vowel, so the vowel ends the letter run */
    for (size_t k = letters >= 2 ? letters - 1 : letters; k < letters; k++) {
        cp_t v = at(t, i + k);
        cp_t after = at(t, i + k + 2);
        if (ptb_is_vowel(v) && ptb_is_apos_etc(at(t, i + k + 1)) &&
            (after < 0x80 && after && (strchr("aeiou", (int)after) || (after >= 'A' && after <= 'Z')))) {
            m = k + 3 + run(t, i + k + 3, ptb_is_letter);
            if (m > best) best = m;
        }
    }
    /* cont'd\.? | 'twas (split below) | nor'easter | c'mon | e'er | s'mores | ev'ry | li'l | nat'l */
    static const char *const fixed[] = {"nor'easter", "c'mon", "e'er", "s'mores", "ev'ry", "li'l", "nat'l"};
    for (int k = 0; k < 7; k++)
        if ((m = lit(t, i, fixed[k])) > best) best = m;
    if ((m = lit(t, i, "cont'd"))) {
        if (at(t, i + m) == '.') m++;
        if (m > best) best = m;
    }
    return best;
}

/* NUM = {DIGIT}+|{DIGIT}*([.:,\u00AD]{DIGIT}+)+ ; NUMBER = [-+]?{NUM} */
static size_t m_num(const ptb_text *t, size_t i) {
    size_t k = i + run(t, i, ptb_is_digit);
    size_t best = k - i;
    for (;;) {
        cp_t s = at(t, k);
        if ((s == '.' || s == ':' || s == ',' || s == 0xAD) && ptb_is_digit(at(t, k + 1))) {
            k += 1 + run(t, k + 1, ptb_is_digit);
            best = k - i;
        } else {
            break;
        }
    }
    return best;
}

static size_t m_number(const ptb_text *t, size_t i) {
    size_t sign = (at(t, i) == '-' || at(t, i) == '+') ? 1 : 0;
    size_t n = m_num(t, i + sign);
    return n ? sign + n : 0;
}

static size_t digits_between(const ptb_text *t, size_t i, size_t lo, size_t hi) {
    size_t n = run(t, i, ptb_is_digit);
    return (n >= lo && n <= hi) ? n : 0;
}

/* DATE = {DIGIT}{1,2}[\-\/]{DIGIT}{1,2}[\-\/]{DIGIT}{2,4} */
static size_t m_date(const ptb_text *t, size_t i) {
    size_t a = digits_between(t, i, 1, 2);
    if (!a || (at(t, i + a) != '-' && at(t, i + a) != '/')) return 0;
    size_t b = digits_between(t, i + a + 1, 1, 2);
    if (!b || (at(t, i + a + 1 + b) != '-' && at(t, i + a + 1 + b) != '/')) return 0;
    size_t c = digits_between(t, i + a + b + 2, 2, 4);
    return c ? a + b + c + 2 : 0;
}

/* FRAC = ({DIGIT}{1,4}[- \u00A0])?{DIGIT}{1,4}(\\?\/|\u2044){DIGIT}{1,4} */
static size_t m_frac_core(const ptb_text *t, size_t i) {
    size_t a = digits_between(t, i, 1, 4);
    if (!a) return 0;
    size_t k = i + a;
    if (at(t, k) == '\\' && at(t, k + 1) == '/') k += 2;
    else if (at(t, k) == '/' || at(t, k) == 0x2044) k += 1;
    else return 0;
    size_t b = digits_between(t, k, 1, 4);
    return b ? k + b - i : 0;
}

static size_t m_frac(const ptb_text *t, size_t i) {
    size_t best = m_frac_core(t, i);
    size_t a = digits_between(t, i, 1, 4);
    if (a) {
        cp_t s = at(t, i + a);
        if (s == '-' || s == ' ' || s == 0xA0) {
            size_t rest = m_frac_core(t, i + a + 1);
            if (rest && a + 1 + rest > best) best = a + 1 + rest;
        }
    }
    return best;
}

/* (-[A-Za-z]+){0,2} then continuation; returns the longest end or 0. */
static size_t thing3_tail(const ptb_text *t, size_t k, int slashes_done);

static size_t thing3_hyphens(const ptb_text *t, size_t k, int hyphens_left, int slashes_done) {
    size_t best = slashes_done >= 1 ? k : 0;
    size_t e = thing3_tail(t, k, slashes_done);
    if (e > best) best = e;
    if (hyphens_left > 0 && at(t, k) == '-') {
        size_t n = run(t, k + 1, ptb_is_ascii_letter);
        if (n) {
            e = thing3_hyphens(t, k + 1 + n, hyphens_left - 1, slashes_done);
            if (e > best) best = e;
        }
    }
    return best;
}

static size_t thing3_tail(const ptb_text *t, size_t k, int slashes_done) {
    if (slashes_done >= 2) return 0;
    size_t s = 0;
    if (at(t, k) == '\\' && at(t, k + 1) == '/') s = 2;
    else if (at(t, k) == '/') s = 1;
    else return 0;
    size_t n = run(t, k + s, ptb_is_ascii_alnum);
    if (!n) return 0;
    return thing3_hyphens(t, k + s + n, 2, slashes_done + 1);
}

/* THING3 = [A-Za-z0-9]+(-[A-Za-z]+){0,2}(\\?\/[A-Za-z0-9]+(-[A-Za-z]+){0,2}){1,2} */
static size_t m_thing3(const ptb_text *t, size_t i) {
    size_t n = run(t, i, ptb_is_ascii_alnum);
    if (!n) return 0;
    size_t e = thing3_hyphens(t, i + n, 2, 0);
    return e ? e - i : 0;
}

/* ACRO = [A-Za-z](\.[A-Za-z])+ */
static size_t m_acro(const ptb_text *t, size_t i) {
    if (!ptb_is_ascii_letter(at(t, i))) return 0;
    size_t k = i + 1;
    while (at(t, k) == '.' && ptb_is_ascii_letter(at(t, k + 1))) k += 2;
    return k - i >= 3 ? k - i : 0;
}


/* The abbreviation lists without dots, merged: kinds bit 1 = ABBREV1
 * (months, days, states, companies, ABNUM, ABPTIT, etc|al|seq|bldg), 2 =
 * ABBREV2 (titles, ABBREV4 words), 4 = ABBREV3 (before a number);
 * upper_only: the kinds where the jar's class requires a capital first
 * letter. Sorted for binary search. */
static const struct ptb_abbrev { const char *word; uint8_t kinds, upper_only; } PTB_ABBREVS[] = {
    {"adm", 2, 0}, {"al", 1, 0}, {"ala", 1, 0}, {"alex", 2, 0}, {"apr", 1, 0}, {"ariz", 1, 0}, {"ark", 1, 1},
    {"art", 4, 0}, {"assn", 1, 0}, {"atty", 2, 0}, {"attys", 2, 0}, {"aug", 1, 0}, {"ave", 2, 0}, {"bancorp", 1, 0},
    {"bhd", 1, 0}, {"bldg", 5, 0}, {"blvd", 1, 0}, {"brig", 2, 0}, {"bros", 1, 0}, {"ca", 4, 0}, {"calif", 1, 0},
    {"capt", 2, 0}, {"cf", 2, 0}, {"cie", 2, 0}, {"cmdr", 2, 0}, {"co", 1, 0}, {"col", 2, 0}, {"colo", 1, 0},
    {"comdr", 2, 0}, {"conn", 1, 0}, {"corp", 1, 0}, {"cos", 1, 0}, {"cpl", 2, 0}, {"ct", 1, 0}, {"dak", 1, 0},
    {"dec", 1, 0}, {"del", 1, 1}, {"dept", 1, 0}, {"det", 2, 0}, {"dr", 2, 0}, {"drs", 2, 0}, {"elec", 2, 0},
    {"esq", 1, 0}, {"est", 1, 0}, {"etc", 1, 0}, {"ext", 1, 0}, {"feb", 1, 0}, {"fig", 4, 0}, {"figs", 4, 0},
    {"fla", 1, 0}, {"fri", 1, 0}, {"ft", 1, 0}, {"ga", 1, 0}, {"gen", 2, 0}, {"gov", 2, 0}, {"govs", 2, 0},
    {"hon", 2, 0}, {"ill", 1, 1}, {"inc", 1, 0}, {"ind", 1, 0}, {"intl", 1, 0}, {"invt", 2, 0}, {"jan", 1, 0},
    {"jos", 2, 0}, {"jr", 1, 0}, {"jul", 1, 0}, {"jun", 1, 0}, {"kan", 1, 0}, {"kans", 1, 0}, {"ky", 1, 0},
    {"la", 1, 1}, {"lieut", 2, 0}, {"lt", 2, 0}, {"ltd", 1, 0}, {"maj", 2, 0}, {"mar", 1, 0}, {"mass", 1, 1},
    {"md", 1, 0}, {"messrs", 2, 0}, {"mfg", 2, 0}, {"mich", 1, 0}, {"minn", 1, 0}, {"miss", 3, 3}, {"mo", 1, 0},
    {"mon", 1, 0}, {"mont", 1, 0}, {"mr", 2, 0}, {"mrs", 2, 0}, {"ms", 2, 0}, {"mt", 2, 0}, {"mtg", 2, 0},
    {"natl", 2, 0}, {"neb", 1, 0}, {"nev", 1, 0}, {"no", 4, 0}, {"nos", 4, 0}, {"nov", 1, 0}, {"oct", 1, 0},
    {"okla", 1, 0}, {"op", 4, 0}, {"ore", 1, 1}, {"pa", 1, 1}, {"penn", 1, 0}, {"pfc", 2, 0}, {"ph", 1, 0},
    {"plc", 1, 0}, {"pp", 4, 0}, {"ppty", 1, 0}, {"pptys", 1, 0}, {"pres", 2, 0}, {"prof", 2, 0}, {"profs", 2, 0},
    {"prop", 4, 0}, {"pty", 1, 0}, {"ptys", 1, 0}, {"pvt", 2, 0}, {"rd", 1, 0}, {"rep", 2, 0}, {"reps", 2, 0},
    {"rev", 2, 0}, {"sen", 2, 0}, {"sens", 2, 0}, {"sep", 1, 0}, {"sept", 1, 0}, {"seq", 1, 0}, {"sgt", 2, 0},
    {"spc", 2, 0}, {"sq", 1, 0}, {"sr", 1, 0}, {"st", 2, 0}, {"ste", 2, 0}, {"supt", 2, 0}, {"supts", 2, 0},
    {"sys", 1, 0}, {"tel", 1, 0}, {"tenn", 1, 0}, {"tex", 1, 1}, {"thu", 1, 0}, {"thurs", 1, 0}, {"treas", 2, 0},
    {"tue", 1, 0}, {"tues", 1, 0}, {"univ", 1, 0}, {"va", 1, 0}, {"vs", 2, 0}, {"vt", 1, 0}, {"wash", 1, 1},
    {"wed", 1, 0}, {"wis", 1, 0}, {"wisc", 1, 0}, {"wm", 2, 0}, {"wyo", 1, 0},
};

/* Kinds of the n-letter ASCII word at i (0 when not an abbreviation). */
static int ptb_abbrev_kinds(const ptb_text *t, size_t i, size_t n) {
    char w[16];
    if (n == 0 || n >= sizeof w) return 0;
    for (size_t k = 0; k < n; k++) w[k] = (char)ptb_lower(at(t, i + k));
    w[n] = '\0';
    size_t lo = 0, hi = sizeof PTB_ABBREVS / sizeof *PTB_ABBREVS;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(PTB_ABBREVS[mid].word, w);
        if (c == 0) {
            int kinds = PTB_ABBREVS[mid].kinds;
            if (!(at(t, i) >= 'A' && at(t, i) <= 'Z')) kinds &= ~PTB_ABBREVS[mid].upper_only;
            return kinds;
        }
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return 0;
}

/* HTHING = [A-Za-z0-9][A-Za-z0-9.,\u00AD]*(-([A-Za-z0-9\u00AD]+|{ACRO}\.))+ */
static bool hthing_body(cp_t c) { return ptb_is_ascii_alnum(c) || c == '.' || c == ',' || c == 0xAD; }
static bool hthing_seg(cp_t c) { return ptb_is_ascii_alnum(c) || c == 0xAD; }

static size_t hthing_segments(const ptb_text *t, size_t k) {
    /* at k: '-' starts a segment; returns the longest end (0: none) */
    if (at(t, k) != '-') return 0;
    size_t best = 0;
    size_t a = run(t, k + 1, hthing_seg);
    if (a) {
        size_t e = k + 1 + a;
        size_t more = hthing_segments(t, e);
        if (more > e) e = more;
        if (e > best) best = e;
    }
    size_t acro = m_acro(t, k + 1);
    if (acro && at(t, k + 1 + acro) == '.') {
        size_t e = k + 2 + acro;
        size_t more = hthing_segments(t, e);
        if (more > e) e = more;
        if (e > best) best = e;
    }
    return best;
}

static size_t m_hthing(const ptb_text *t, size_t i) {
    if (!ptb_is_ascii_alnum(at(t, i))) return 0;
    size_t k = i + 1 + run(t, i + 1, hthing_body);
    /* the body class excludes '-': a shorter body can only end before a
     * '-' inside it, which cannot exist, so k is the only candidate */
    size_t e = hthing_segments(t, k);
    return e ? e - i : 0;
}

/* THING = ([dDoOlL]{APOSETCETERA}([:letter:]|[:digit:]))?([:letter:]|[:digit:])+
 *         ({HYPHEN}([dDoOlL]{APOSETCETERA}([:letter:]|[:digit:]))?([:letter:]|[:digit:])+)* */
static size_t thing_part(const ptb_text *t, size_t k) {
    size_t best = 0;
    size_t n = run(t, k, ptb_is_letter_or_digit);
    if (n) best = n;
    cp_t c = at(t, k);
    if (ptb_is_dol(c) && ptb_is_apos_etc(at(t, k + 1)) && ptb_is_letter_or_digit(at(t, k + 2))) {
        size_t m = run(t, k + 3, ptb_is_letter_or_digit);
        if (m && 3 + m > best) best = 3 + m;
    }
    return best;
}

static size_t m_thing(const ptb_text *t, size_t i) {
    size_t n = thing_part(t, i);
    if (!n) return 0;
    size_t k = i + n;
    while (ptb_is_hyphen(at(t, k))) {
        size_t m = thing_part(t, k + 1);
        if (!m) break;
        k += 1 + m;
    }
    return k - i;
}

/* FILENAME = ({LETTER}|{DIGIT})+([.]({LETTER}|{DIGIT})+)*([.]{FILENAME_EXT}) */
static const char *const FILENAME_EXT[] = {
    "3gp", "avi", "bat", "bmp", "bz2", "c", "class", "com", "cpp", "css", "csv", "dat", "db", "doc", "docx", "dot",
    "dtd", "exe", "gif", "gz", "h", "htm", "html", "ico", "iso", "jar", "java", "jpeg", "jpg", "js", "mkv", "mov",
    "mp3", "mp4", "mpeg", "mpg", "o", "ogg", "pdf", "php", "pl", "png", "ppt", "pptx", "ps", "py", "rar", "rtf",
    "sql", "tar", "tex", "tgz", "tif", "tiff", "ttf", "txt", "wav", "wmv", "xls", "xlsx", "xml", "zip"};

static size_t m_filename(const ptb_text *t, size_t i) {
    size_t k = i + run(t, i, ptb_is_letter_or_digit);
    if (k == i) return 0;
    size_t best = 0;
    while (at(t, k) == '.') {
        size_t seg = run(t, k + 1, ptb_is_letter_or_digit);
        if (!seg) break;
        /* caseless: the last segment must be one of the extensions */
        for (size_t e = 0; e < sizeof FILENAME_EXT / sizeof *FILENAME_EXT; e++)
            if (strlen(FILENAME_EXT[e]) == seg && lit(t, k + 1, FILENAME_EXT[e])) {
                best = k + 1 + seg - i;
                break;
            }
        k += 1 + seg;
    }
    return best;
}

/* THINGA = [A-Z]+(([+&]|&amp;)[A-Z]+)+ */
static bool ptb_is_upper(cp_t c) { return c >= 'A' && c <= 'Z'; }
static size_t m_thinga(const ptb_text *t, size_t i) {
    size_t k = i + run(t, i, ptb_is_upper);
    if (k == i) return 0;
    size_t best = 0;
    for (;;) {
        size_t s = (at(t, k) == '+' || at(t, k) == '&') ? 1 : lit(t, k, "&amp;") ? 5 : 0;
        if (!s) break;
        size_t n = run(t, k + s, ptb_is_upper);
        if (!n) break;
        k += s + n;
        best = k - i;
    }
    return best;
}

/* PHONE = (\([0-9]{3}\)[ \u00A0]?|[0-9]{3}[\- \u00A0.])[0-9]{3}[\- \u00A0.][0-9]{4} */
static bool phone_sep(cp_t c) { return c == '-' || c == ' ' || c == 0xA0 || c == '.'; }
static size_t m_phone(const ptb_text *t, size_t i) {
    size_t k = i;
    if (at(t, k) == '(') {
        if (run(t, k + 1, ptb_is_digit) < 3 || at(t, k + 4) != ')') return 0;
        k += 5;
        if (at(t, k) == ' ' || at(t, k) == 0xA0) {
            /* optional space: try with it first, then without */
            size_t with = k + 1;
            if (run(t, with, ptb_is_digit) >= 3 && phone_sep(at(t, with + 3)) && run(t, with + 4, ptb_is_digit) >= 4)
                return with + 8 - i;
        }
    } else {
        if (run(t, k, ptb_is_digit) < 3 || !phone_sep(at(t, k + 3))) return 0;
        k += 4;
    }
    if (run(t, k, ptb_is_digit) < 3 || !phone_sep(at(t, k + 3)) || run(t, k + 4, ptb_is_digit) < 4) return 0;
    return k + 8 - i;
}

/* FULLURL = https?:\/\/[^ \t\n\f\r\"<>|()]+[^ \t\n\f\r\"<>|.!?(){},-] */
static bool url_char(cp_t c) { return c && !ptb_is_spacenl(c) && !strchr("\"<>|(){}", (int)(c < 0x80 ? c : 1)); }
static bool url_end_char(cp_t c) { return url_char(c) && !(c < 0x80 && strchr(".!?(){},-", (int)c)); }
static size_t m_fullurl(const ptb_text *t, size_t i) {
    size_t p = lit(t, i, "https://");
    if (!p) p = lit(t, i, "http://");
    if (!p) return 0;
    size_t n = run(t, i + p, url_char);
    while (n >= 2 && !url_end_char(at(t, i + p + n - 1))) n--;
    return (n >= 2 && url_end_char(at(t, i + p + n - 1))) ? p + n : 0;
}

/* LIKELYURL, simplified: www.(x.)+[a-z]{2,4} or (x.)+(com|net|org|edu),
 * optionally followed by /path. */
static bool likely_char(cp_t c) {
    return c && !ptb_is_spacenl(c) && !(c < 0x80 && strchr("\"`'<>|.!?(){}[],-_$@", (int)c));
}
static bool www_char(cp_t c) { return c && !ptb_is_spacenl(c) && !(c < 0x80 && strchr("\"<>|.!?(){},", (int)c)); }
static size_t m_likelyurl(const ptb_text *t, size_t i) {
    size_t end = 0;
    if (lit(t, i, "www.")) {
        size_t k = i + 4;
        size_t last_label_end = 0;
        for (;;) {
            size_t n = run(t, k, www_char);
            if (!n) break;
            if (at(t, k + n) == '.') {
                k += n + 1;
                last_label_end = k;
                continue;
            }
            /* final label must be [a-zA-Z]{2,4} */
            size_t letters = run(t, k, ptb_is_ascii_letter);
            if (last_label_end && letters >= 2 && letters <= 4) end = k + letters;
            break;
        }
    }
    if (!end) {
        size_t k = i;
        for (;;) {
            size_t n = run(t, k, likely_char);
            if (!n || at(t, k + n) != '.') break;
            k += n + 1;
            size_t tld = lit_list(t, k, "com|net|org|edu");
            if (tld) end = k + tld;
        }
    }
    if (!end) return 0;
    if (at(t, end) == '/') {
        size_t n = run(t, end + 1, url_char);
        while (n >= 1 && !url_end_char(at(t, end + n))) n--;
        if (n >= 1) end += 1 + n;
    }
    return end - i;
}

/* EMAIL = [a-zA-Z0-9][^ \t\n\f\r\"<>|()\u00A0]*@([^ \t\n\f\r\"<>|().\u00A0]+\.)+[a-zA-Z]{2,4} */
static bool email_char(cp_t c) { return c && !ptb_is_spacenl(c) && !(c < 0x80 && strchr("\"<>|()", (int)c)); }
static bool email_domain_char(cp_t c) { return email_char(c) && c != '.'; }
static size_t m_email_core(const ptb_text *t, size_t i);

/* EMAIL = (&lt;|<)?{core}(&gt;|>)? */
static size_t m_email(const ptb_text *t, size_t i) {
    size_t open = at(t, i) == '<' ? 1 : lit(t, i, "&lt;") ? 4 : 0;
    size_t core = m_email_core(t, i + open);
    if (!core) return 0;
    size_t k = i + open + core;
    size_t close = at(t, k) == '>' ? 1 : lit(t, k, "&gt;") ? 4 : 0;
    return open + core + close;
}

static size_t m_email_core(const ptb_text *t, size_t i) {
    if (!ptb_is_ascii_alnum(at(t, i))) return 0;
    size_t n = run(t, i, email_char);
    size_t best = 0;
    /* try every '@' inside the run (the local part may contain '@') */
    for (size_t a = i + 1; a < i + n; a++) {
        if (at(t, a) != '@') continue;
        /* 3.4.1 also keeps "a@b": domain labels separated by '.', the
         * match ends after the last whole label */
        size_t k = a + 1;
        for (;;) {
            size_t d = run(t, k, email_domain_char);
            if (!d) break;
            if (k + d - i > best) best = k + d - i;
            if (at(t, k + d) != '.') break;
            k += d + 1;
        }
    }
    return best;
}

/* LDOTS = \.{3,5}|(\.[ \u00A0]){2,4}\.|[\u0085\u2026] */
static size_t m_ldots(const ptb_text *t, size_t i) {
    cp_t c = at(t, i);
    if (c == 0x2026 || c == 0x85) return 1;
    if (c != '.') return 0;
    size_t n = 0;
    while (at(t, i + n) == '.') n++;
    size_t best = n >= 3 ? (n > 5 ? 5 : n) : 0;
    size_t pairs = 0;
    while (pairs < 4 && at(t, i + 2 * pairs) == '.' && (at(t, i + 2 * pairs + 1) == ' ' || at(t, i + 2 * pairs + 1) == 0xA0)) pairs++;
    for (size_t p = pairs; p >= 2; p--)
        if (at(t, i + 2 * p) == '.') {
            if (2 * p + 1 > best) best = 2 * p + 1;
            break;
        }
    return best;
}

/* QUOTES = {APOS}|''|[`\u2018\u2019\u201A\u201B\u201C\u201D\u0091-\u0094\u201E\u201F\u2039\u203A\u00AB\u00BB]{1,2} */
static bool quote_char(cp_t c) {
    return c == '`' || c == 0x2018 || c == 0x2019 || c == 0x201A || c == 0x201B || c == 0x201C || c == 0x201D ||
           (c >= 0x91 && c <= 0x94) || c == 0x201E || c == 0x201F || c == 0x2039 || c == 0x203A || c == 0xAB || c == 0xBB;
}
static size_t m_quotes(const ptb_text *t, size_t i) {
    size_t best = ptb_is_apos(at(t, i)) ? 1 : 0;
    if (at(t, i) == '\'' && at(t, i + 1) == '\'') best = 2;
    if (quote_char(at(t, i))) {
        size_t n = quote_char(at(t, i + 1)) ? 2 : 1;
        if (n > best) best = n;
    }
    return best;
}

/* ---- the scanner ------------------------------------------------------ */

typedef enum {
    OUT_TEXT,       /* the matched text (soft hyphens removed) */
    OUT_TEXT_NBSP,  /* ... with spaces turned into U+00A0 */
    OUT_PHONE,      /* ... and ( ) as -LRB- -RRB- */
    OUT_FIXED,      /* a fixed string */
    OUT_QUOTE_LEFT, /* latexQuotes(probablyLeft = true) */
    OUT_QUOTE_RIGHT,
    OUT_FRAC2,
    OUT_CURRENCY,
    OUT_AMP,        /* &amp; -> & */
    OUT_EMAIL,      /* &lt; &gt; around an address -> < > */
    OUT_NONE        /* skipped (spaces, untokenizable) */
} ptb_out;

typedef struct ptb_match {
    size_t total;   /* length compared (with trailing context) */
    size_t token;   /* length consumed */
    ptb_out out;
    const char *fixed;
} ptb_match;

static void consider(ptb_match *best, size_t total, size_t token, ptb_out out, const char *fixed) {
    if (total > best->total) {
        best->total = total;
        best->token = token;
        best->out = out;
        best->fixed = fixed;
    }
}

static ptb_match ptb_scan(const ptb_text *t, size_t i) {
    ptb_match b = {0, 0, OUT_NONE, NULL};
    size_t m, total;
    cp_t c = at(t, i);
    /* Fast paths (same result as the full rule set): a space is never part
     * of a token that starts at it; a run of [A-Za-z] followed by a space or
     * the end is a WORD unless it is an assimilation ("cannot", "gonna"...,
     * which split). */
    if (c == ' ' || c == '\t') {
        b.total = b.token = 1;
        return b;
    }
    if (ptb_is_ascii_letter(c)) {
        size_t n = run(t, i, ptb_is_ascii_letter);
        cp_t next = at(t, i + n);
        if ((next == ' ' || next == '\n' || next == 0) && !((n == 5 || n == 6) && (lit(t, i, "cannot") || lit(t, i, "gonna") ||
                                                              lit(t, i, "gotta") || lit(t, i, "wanna") ||
                                                              lit(t, i, "lemme") || lit(t, i, "gimme")))) {
            b.total = b.token = n;
            b.out = OUT_TEXT;
            return b;
        }
    }
    /* Guards for the slow path (rules below only match when these hold). */
    size_t letters = run(t, i, ptb_is_ascii_letter);
    bool span_dot = false, span_at = false, span_slash = false, span_hyphen = false;
    for (size_t k = i; k < t->n && !ptb_is_spacenl(t->c[k]); k++) {
        if (k - i >= 256) { /* long runs: no guard (keeps the scan linear) */
            span_dot = span_at = span_slash = span_hyphen = true;
            break;
        }
        cp_t d = t->c[k];
        span_dot |= d == '.';
        span_at |= d == '@';
        span_slash |= d == '/' || d == 0x2044;
        span_hyphen |= d == '-';
    }
    bool digit = ptb_is_digit(c);
    /* assimilations: cannot gonna gotta wanna lemme gimme; 'tis 'twas */
    if (letters >= 5) {
        if ((m = lit(t, i, "cannot"))) consider(&b, m, 3, OUT_TEXT, NULL);
        static const char *const assim[] = {"gonna", "gotta", "wanna", "lemme", "gimme"};
        for (int k = 0; k < 5; k++)
            if ((m = lit(t, i, assim[k]))) consider(&b, m, 3, OUT_TEXT, NULL);
    }
    if (ptb_is_apos(c) && ((m = lit(t, i + 1, "tis")) || (m = lit(t, i + 1, "twas")))) consider(&b, m + 1, 2, OUT_TEXT, NULL);
    if (c == '<' && (m = m_sgml(t, i))) consider(&b, m, m, OUT_TEXT_NBSP, NULL);
    if ((m = m_smiley(t, i))) consider(&b, m + 1, m, OUT_PHONE, NULL);
    /* SPMDASH */
    if (c == 0x96 || c == 0x97 || c == 0x2013 || c == 0x2014 || c == 0x2015) consider(&b, 1, 1, OUT_FIXED, "--");
    if (c == '&') {
        /* SPPUNC = &(HT|TL|UR|LR|QC|QL|QR|odq|cdq|#[0-9]+); kept as written */
        if (at(t, i + 1) == '#' && (m = run(t, i + 2, ptb_is_digit)) && at(t, i + 2 + m) == ';')
            consider(&b, m + 3, m + 3, OUT_TEXT, NULL);
        static const char *const sppunc[] = {"&ht;", "&tl;", "&ur;", "&lr;", "&qc;", "&ql;", "&qr;", "&odq;", "&cdq;"};
        for (int k = 0; k < 9; k++)
            if ((m = lit(t, i, sppunc[k]))) consider(&b, m, m, OUT_TEXT, NULL);
        if ((m = lit(t, i, "&mdash;")) || (m = lit(t, i, "&ndash;")) || (m = lit(t, i, "&md;"))) consider(&b, m, m, OUT_FIXED, "--");
        /* SPAMP and the entities the jar maps */
        if ((m = lit(t, i, "&amp;"))) consider(&b, m, m, OUT_FIXED, "&");
        if ((m = lit(t, i, "&lt;"))) consider(&b, m, m, OUT_FIXED, "<");
        if ((m = lit(t, i, "&gt;"))) consider(&b, m, m, OUT_FIXED, ">");
        if ((m = lit(t, i, "&apos;"))) consider(&b, m, m, OUT_FIXED, "'");
    }
    /* the jar keeps C++ C# F# whole, and @user / #tag (letters) handles */
    if (letters == 1 && (at(t, i + 1) == '+' || at(t, i + 1) == '#')) {
        static const char *const prog[] = {"c++", "c#", "f#"};
        for (int k = 0; k < 3; k++)
            if ((m = lit(t, i, prog[k]))) consider(&b, m, m, OUT_TEXT, NULL);
    }
    if (c == '@' && (m = run(t, i + 1, ptb_is_handle_char))) consider(&b, m + 1, m + 1, OUT_TEXT, NULL);
    if (c == '#' && (m = run(t, i + 1, ptb_is_ascii_letter))) consider(&b, m + 1, m + 1, OUT_TEXT, NULL);
    /* WORD/REDAUX, SWORD/SREDAUX, WORD */
    size_t word = m_word(t, i);
    if (word && (m = m_redaux(t, i + word))) consider(&b, word + m, word, OUT_TEXT, NULL);
    size_t sword = m_sword_sredaux(t, i, &total);
    if (sword) consider(&b, total, sword, OUT_TEXT, NULL);
    if (word) consider(&b, word, word, OUT_TEXT, NULL);
    if ((m = m_apoword(t, i))) consider(&b, m, m, OUT_TEXT, NULL);
    /* APOWORD2/[:letter:] = y{APOS} */
    if (ptb_lower(c) == 'y' && ptb_is_apos(at(t, i + 1)) && ptb_is_letter(at(t, i + 2))) consider(&b, 3, 2, OUT_TEXT, NULL);
    if (span_dot || span_slash) {
        if ((m = m_fullurl(t, i))) consider(&b, m, m, OUT_TEXT, NULL);
        if (span_dot && (m = m_likelyurl(t, i))) consider(&b, m, m, OUT_TEXT, NULL);
    }
    if (span_at && (m = m_email(t, i))) consider(&b, m, m, OUT_EMAIL, NULL);
    /* REDAUX/[^A-Za-z], SREDAUX */
    if ((m = m_redaux(t, i)) && at(t, i + m) && !ptb_is_ascii_letter(at(t, i + m))) consider(&b, m + 1, m, OUT_QUOTE_RIGHT, NULL);
    if ((m = m_sredaux(t, i))) consider(&b, m, m, OUT_QUOTE_RIGHT, NULL);
    if (digit && (m = m_date(t, i))) consider(&b, m, m, OUT_TEXT, NULL);
    if ((m = m_number(t, i))) {
        consider(&b, m, m, OUT_TEXT, NULL);
        /* version numbers "3.x", "0.12.x" (the jar splits "4.x)" and "3.xy") */
        cp_t after = at(t, i + m + 2);
        if (digit && at(t, i + m) == '.' && ptb_lower(at(t, i + m + 1)) == 'x' && after && !ptb_is_letter_or_digit(after) &&
            after != ')')
            consider(&b, m + 3, m + 2, OUT_TEXT, NULL);
    }
    /* SUBSUPNUM */
    {
        size_t k = i;
        if (at(t, k) == 0x207A || at(t, k) == 0x207B || at(t, k) == 0x208A || at(t, k) == 0x208B) k++;
        size_t s = k;
        while (at(t, s) == 0x2070 || at(t, s) == 0xB9 || at(t, s) == 0xB2 || at(t, s) == 0xB3 || (at(t, s) >= 0x2074 && at(t, s) <= 0x2079)) s++;
        if (s == k)
            while (at(t, s) >= 0x2080 && at(t, s) <= 0x2089) s++;
        if (s > k) consider(&b, s - i, s - i, OUT_TEXT, NULL);
    }
    if (digit && (m = m_frac(t, i))) consider(&b, m, m, OUT_TEXT_NBSP, NULL);
    if (c == 0xBC || c == 0xBD || c == 0xBE || (c >= 0x2153 && c <= 0x215E)) consider(&b, 1, 1, OUT_FRAC2, NULL);
    /* TBSPEC = -(RRB|LRB|RCB|LCB|RSB|LSB)-|C\.D\.s|pro-|anti-|S(&|&amp;)P-500|S(&|&amp;)Ls|Cap{APOS}n|c{APOS}est */
    if (c == '-' || (c < 0x80 && c && strchr("cCpPaAsS", (int)c))) {
        static const char *const spec[] = {"-rrb-", "-lrb-", "-rcb-", "-lcb-", "-rsb-", "-lsb-", "c.d.s", "pro-", "anti-",
                                           "s&p-500", "s&amp;p-500", "s&ls", "s&amp;ls"};
        for (int k = 0; k < 13; k++)
            if ((m = lit(t, i, spec[k]))) consider(&b, m, m, k == 10 || k == 12 ? OUT_AMP : OUT_TEXT, NULL);
        if (lit(t, i, "cap") && ptb_is_apos(at(t, i + 3)) && ptb_lower(at(t, i + 4)) == 'n') consider(&b, 5, 5, OUT_TEXT, NULL);
        if (ptb_lower(c) == 'c' && ptb_is_apos(at(t, i + 1)) && lit(t, i + 2, "est")) consider(&b, 5, 5, OUT_TEXT, NULL);
    }
    if (span_slash && (m = m_thing3(t, i))) consider(&b, m, m, OUT_TEXT, NULL);
    /* DOLSIGN = ([A-Z]*\$|#) */
    {
        size_t k = i + run(t, i, ptb_is_upper);
        if (at(t, k) == '$') consider(&b, k + 1 - i, k + 1 - i, OUT_TEXT, NULL);
        if (c == '#') consider(&b, 1, 1, OUT_TEXT, NULL);
    }
    if (c == 0xA2 || c == 0xA3 || c == 0xA4 || c == 0xA5 || c == 0x80 || c == 0x20A0 || c == 0x20AC || c == 0x60B ||
        c == 0xE3F || c == 0x20A4 || c == 0xFFE0 || c == 0xFFE1 || c == 0xFFE5 || c == 0xFFE6)
        consider(&b, 1, 1, OUT_CURRENCY, NULL);
    /* {ACRONYM}/({SPACENL}+)(About|According|...|You){SPACE}: before one of
     * these capitalised words a single letter's period is a sentence end,
     * split off ("w." -> "w" "."); for longer acronyms ("U.S.") and the
     * ABBREV1 words only a '.' token is added, which is removed later. */
    if (letters == 1 && at(t, i + 1) == '.' && ptb_is_spacenl(at(t, i + 2))) {
        size_t k = i + 2;
        while (ptb_is_spacenl(at(t, k))) k++;
        static const char *const words[] = {
            "about", "according", "additionally", "after", "an", "a", "as", "at", "but", "earlier", "he", "her", "here",
            "however", "if", "in", "it", "last", "many", "more", "mr.", "ms.", "now", "once", "one", "other", "our",
            "she", "since", "so", "some", "such", "that", "the", "then", "there", "these", "they", "this", "we", "when",
            "while", "what", "yet", "you"};
        cp_t first = at(t, k);
        if (first >= 'A' && first <= 'Z')
            for (size_t w = 0; w < sizeof words / sizeof *words; w++) {
                size_t wn = lit(t, k, words[w]);
                if (wn && ptb_is_spacenl(at(t, k + wn))) {
                    consider(&b, k + wn + 1 - i, 1, OUT_TEXT, NULL);
                    break;
                }
            }
    }
    /* ABBREV1 (a following sentence end only adds a '.' token, removed later) */
    if (letters && at(t, i + letters) == '.') {
        int kinds = ptb_abbrev_kinds(t, i, letters);
        size_t dotted = 0; /* ed.d ph.d (ABPTIT, kind 1) and a.k.a (ABBREV4, kind 2) */
        if ((m = lit(t, i, "ed.d")) || (m = lit(t, i, "ph.d"))) {
            if (at(t, i + m) == '.') consider(&b, m + 1, m + 1, OUT_TEXT, NULL);
        } else if ((m = lit(t, i, "a.k.a")) && at(t, i + m) == '.') {
            dotted = m + 1;
            consider(&b, dotted, dotted, OUT_TEXT, NULL);
        }
        m = letters + 1;
        if (kinds & 1) consider(&b, m, m, OUT_TEXT, NULL);
        /* ABBREV3/{SPACE}?{DIGIT} */
        if (kinds & 4) {
            size_t k = i + m;
            if (ptb_is_spacenl(at(t, k)) && ptb_is_digit(at(t, k + 1))) consider(&b, m + 2, m, OUT_TEXT, NULL);
            else if (ptb_is_digit(at(t, k))) consider(&b, m + 1, m, OUT_TEXT, NULL);
        }
        /* ABBREV2 = {ABBREV4}\. with ABBREV4 = [A-Za-z]|{ABTITLE}|vs|...|{ACRO}|{ABCOMP2} */
        if (kinds & 2) consider(&b, m, m, OUT_TEXT, NULL);
        if (ptb_is_ascii_letter(c) && at(t, i + 1) == '.') consider(&b, 2, 2, OUT_TEXT, NULL);
        size_t acro = m_acro(t, i);
        if (acro && at(t, i + acro) == '.') consider(&b, acro + 1, acro + 1, OUT_TEXT, NULL);
        if (acro) consider(&b, acro, acro, OUT_TEXT, NULL);
    }
    /* TBSPEC2/{SPACENL} = {APOS}[0-9][0-9] */
    if (ptb_is_apos(c) && ptb_is_digit(at(t, i + 1)) && ptb_is_digit(at(t, i + 2)) && ptb_is_spacenl(at(t, i + 3)))
        consider(&b, 4, 3, OUT_TEXT, NULL);
    /* {WORD}\./{INSENTP} */
    if (word && at(t, i + word) == '.' && ptb_is_insentp(at(t, i + word + 1))) consider(&b, word + 2, word + 1, OUT_TEXT, NULL);
    if ((digit || c == '(') && (m = m_phone(t, i))) consider(&b, m, m, OUT_PHONE, NULL);
    /* DBLQUOT */
    {
        size_t q = c == '"' ? 1 : lit(t, i, "&quot;");
        if (q) {
            cp_t n = at(t, i + q);
            if (ptb_is_ascii_alnum(n) || n == '$') consider(&b, q + 1, q, OUT_QUOTE_LEFT, NULL);
            consider(&b, q, q, OUT_QUOTE_RIGHT, NULL);
        }
    }
    if (c == '+' || c == '%' || c == '&' || c == 0x2030 || c == 0x2031 || c == '~' || c == '^' || c == '|' || c == '\\')
        consider(&b, 1, 1, OUT_TEXT, NULL);
    if (c == '[') consider(&b, 1, 1, OUT_FIXED, "-LSB-");
    if (c == ']') consider(&b, 1, 1, OUT_FIXED, "-RSB-");
    if (c == '<' || c == '>') consider(&b, at(t, i + 1) == c ? 2 : 1, at(t, i + 1) == c ? 2 : 1, OUT_TEXT, NULL);
    if (c == '{') consider(&b, 1, 1, OUT_FIXED, "-LCB-");
    if (c == '}') consider(&b, 1, 1, OUT_FIXED, "-RCB-");
    if (c == '(') consider(&b, 1, 1, OUT_FIXED, "-LRB-");
    if (c == ')') consider(&b, 1, 1, OUT_FIXED, "-RRB-");
    /* HYPHENS: 3 or 4 -> "--" */
    if (c == '-') {
        size_t n = 0;
        while (at(t, i + n) == '-') n++;
        consider(&b, n, n, (n == 3 || n == 4) ? OUT_FIXED : OUT_TEXT, "--");
    }
    if ((m = m_ldots(t, i))) consider(&b, m, m, OUT_FIXED, "...");
    /* FNMARKS = @+|#+|_+ ; ASTS = \*+|(\\\*){1,3} */
    if (c == '@' || c == '#' || c == '_' || c == '*') {
        size_t n = 0;
        while (at(t, i + n) == c) n++;
        consider(&b, n, n, OUT_TEXT, NULL);
    }
    if (c == '\\' && at(t, i + 1) == '*') {
        size_t n = 0;
        while (n < 3 && at(t, i + 2 * n) == '\\' && at(t, i + 2 * n + 1) == '*') n++;
        consider(&b, 2 * n, 2 * n, OUT_TEXT, NULL);
    }
    if (ptb_is_insentp(c) || c == 0x3001) consider(&b, 1, 1, OUT_TEXT, NULL);
    if (c == '?' || c == '!') {
        size_t n = 0;
        while (at(t, i + n) == '?' || at(t, i + n) == '!') n++;
        consider(&b, n, n, OUT_TEXT, NULL);
    }
    if (c == '.' || c == 0x3002 || c == 0xA1 || c == 0xBF || c == 0x37E || c == 0x589 || c == 0x61F || c == 0x6D4 || (c >= 0x700 && c <= 0x702) ||
        c == 0x7FA || c == '=' || c == '/')
        consider(&b, 1, 1, OUT_TEXT, NULL);
    /* HTHING\./{INSENTP}, HTHING, THING\./{INSENTP}, THING, THINGA\./.., THINGA */
    size_t lens[3] = {span_hyphen ? m_hthing(t, i) : 0, m_thing(t, i), m_thinga(t, i)};
    for (int k = 0; k < 3; k++) {
        if (!lens[k]) continue;
        if (at(t, i + lens[k]) == '.' && ptb_is_insentp(at(t, i + lens[k] + 1)))
            consider(&b, lens[k] + 2, lens[k] + 1, k == 2 ? OUT_AMP : OUT_TEXT, NULL);
        consider(&b, lens[k], lens[k], k == 2 ? OUT_AMP : OUT_TEXT, NULL);
    }
    /* FILENAME/{SPACENL} (the jar splits "1.txt\"") */
    if (span_dot && (m = m_filename(t, i)) && ptb_is_spacenl(at(t, i + m))) consider(&b, m + 1, m, OUT_TEXT, NULL);
    /* '/[A-Za-z][^ \t\n\r\u00A0] */
    if (c == '\'' && ptb_is_ascii_letter(at(t, i + 1))) {
        cp_t n2 = at(t, i + 2);
        if (n2 && n2 != ' ' && n2 != '\t' && n2 != '\n' && n2 != '\r' && n2 != 0xA0) consider(&b, 3, 1, OUT_QUOTE_LEFT, NULL);
    }
    if ((m = m_redaux(t, i))) consider(&b, m, m, OUT_QUOTE_RIGHT, NULL);
    if ((m = m_quotes(t, i))) consider(&b, m, m, OUT_QUOTE_RIGHT, NULL);
    if (ptb_is_misc_symbol(c)) consider(&b, 1, 1, OUT_TEXT, NULL);
    /* spaces, newlines, zero-width characters, and untokenizable
     * characters (untokenizable=firstDelete): no token */
    if (b.total == 0) consider(&b, 1, 1, OUT_NONE, NULL);
    return b;
}

/* ---- output ----------------------------------------------------------- */

static void put_cp(mg_strbuf *b, cp_t c, mg_status *st) {
    char u[4];
    int n = mg_utf8_encode((uint32_t)c, u);
    if (!*st) *st = mg_strbuf_append(b, u, (size_t)n);
}

static void put_str_lower(mg_strbuf *b, const char *s, mg_status *st) {
    for (; *s; s++) put_cp(b, ptb_lower((unsigned char)*s), st);
}

/* latexQuotes: returns the replacement of one quote character. */
static const char *latex_quote(cp_t c, bool left) {
    if (c == '\'') return left ? "`" : "'";
    if (c == '"') return left ? "``" : "''";
    if (c == 0x91 || c == 0x2018 || c == 0x201B || c == 0x2039) return "`";
    if (c == 0x92 || c == 0x2019 || c == 0x203A) return "'";
    if (c == 0x93 || c == 0x201C || c == 0xAB) return "``";
    if (c == 0x94 || c == 0x201D || c == 0xBB) return "''";
    return NULL;
}

/* pycocoevalcap tokenizer/ptbtokenizer.py PUNCTUATIONS */
static bool ptb_removed(const char *tok, size_t n) {
    static const char *const removed[] = {"''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":",
                                          "-", "--", "...", ";"};
    if (n == 0) return true;
    for (size_t k = 0; k < sizeof removed / sizeof *removed; k++)
        if (strlen(removed[k]) == n && memcmp(removed[k], tok, n) == 0) return true;
    return false;
}

static void emit(const ptb_text *t, size_t i, const ptb_match *m, mg_strbuf *out, mg_strbuf *tok, mg_status *st) {
    tok->length = 0;
    if (tok->data) tok->data[0] = '\0';
    switch (m->out) {
    case OUT_NONE:
        return;
    case OUT_FIXED:
        put_str_lower(tok, m->fixed, st);
        break;
    case OUT_FRAC2: {
        cp_t c = t->c[i];
        const char *s = c == 0xBC ? "1/4" : c == 0xBD ? "1/2" : c == 0xBE ? "3/4" : c == 0x2153 ? "1/3" : c == 0x2154 ? "2/3" : NULL;
        if (s) put_str_lower(tok, s, st);
        else put_cp(tok, c, st);
        break;
    }
    case OUT_CURRENCY: {
        cp_t c = t->c[i];
        if (c == 0xA2) put_str_lower(tok, "cents", st);
        else if (c == 0xA3) put_str_lower(tok, "#", st);
        else if (c == 0x80 || c == 0xA4 || c == 0x20A0 || c == 0x20AC) put_str_lower(tok, "$", st);
        else put_cp(tok, ptb_lower(c), st);
        break;
    }
    case OUT_QUOTE_LEFT:
    case OUT_QUOTE_RIGHT:
        if (m->token >= 6 && lit(t, i, "&quot;")) {
            put_str_lower(tok, m->out == OUT_QUOTE_LEFT ? "``" : "''", st);
            break;
        }
        for (size_t k = 0; k < m->token; k++) {
            const char *q = latex_quote(t->c[i + k], m->out == OUT_QUOTE_LEFT);
            if (q) put_str_lower(tok, q, st);
            else put_cp(tok, ptb_lower(t->c[i + k]), st);
        }
        break;
    case OUT_EMAIL:
        for (size_t k = 0; k < m->token; k++) {
            if (t->c[i + k] == '&' && lit(t, i + k, "&lt;")) put_cp(tok, '<', st), k += 3;
            else if (t->c[i + k] == '&' && lit(t, i + k, "&gt;")) put_cp(tok, '>', st), k += 3;
            else put_cp(tok, ptb_lower(t->c[i + k]), st);
        }
        break;
    case OUT_AMP:
        for (size_t k = 0; k < m->token; k++) {
            put_cp(tok, ptb_lower(t->c[i + k]), st);
            if (t->c[i + k] == '&' && lit(t, i + k, "&amp;")) k += 4;
        }
        break;
    case OUT_TEXT:
    case OUT_TEXT_NBSP:
    case OUT_PHONE:
        for (size_t k = 0; k < m->token; k++) {
            cp_t c = t->c[i + k];
            if (c == 0xAD && m->out == OUT_TEXT) continue;
            if (m->out != OUT_TEXT && c == ' ') c = 0xA0;
            if (m->out == OUT_PHONE && c == '(') put_str_lower(tok, "-LRB-", st);
            else if (m->out == OUT_PHONE && c == ')') put_str_lower(tok, "-RRB-", st);
            else put_cp(tok, ptb_lower(c), st);
        }
        break;
    }
    if (*st || ptb_removed(tok->data ? tok->data : "", tok->length)) return;
    if (out->length) put_cp(out, ' ', st);
    if (!*st) *st = mg_strbuf_append(out, tok->data, tok->length);
}

/* Decodes UTF-8 (invalid bytes become U+FFFD, which is untokenizable). */
static mg_status ptb_decode(const char *s, cp_t **out, size_t *n) {
    size_t len = strlen(s);
    cp_t *c = malloc((len + 1) * sizeof *c);
    if (!c) return mg_error(MG_ERR_NO_MEMORY, "ptb_tokenize: out of memory for %zu bytes", len);
    size_t k = 0;
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        cp_t v = p[0];
        int extra = v < 0x80 ? 0 : v < 0xC0 ? -1 : v < 0xE0 ? 1 : v < 0xF0 ? 2 : v < 0xF8 ? 3 : -1;
        if (extra < 0) {
            c[k++] = 0xFFFD;
            p++;
            continue;
        }
        if (extra) v &= (0x3F >> extra);
        int j = 1;
        for (; j <= extra; j++) {
            if ((p[j] & 0xC0) != 0x80) break;
            v = (v << 6) | (p[j] & 0x3F);
        }
        if (j <= extra) {
            c[k++] = 0xFFFD;
            p += j;
            continue;
        }
        p += 1 + extra;
        /* pycocoevalcap replaces '\n' by ' '; other line breaks and NUL are spaces here */
        if (ptb_is_newline(v) || v == 0) v = ' ';
        c[k++] = v;
    }
    *out = c;
    *n = k;
    return MG_OK;
}

static mg_status ptb_tokenize_one(const cp_t *c, size_t n, const cp_t *tail, size_t tail_n, char **out) {
    ptb_text t = {c, n, tail, tail_n};
    mg_strbuf result = {0}, tok = {0};
    mg_status st = MG_OK;
    for (size_t i = 0; i < n && !st;) {
        ptb_match m = ptb_scan(&t, i);
        if (m.token == 0) m.token = 1;
        if (i + m.token > n) m.token = n - i;
        emit(&t, i, &m, &result, &tok, &st);
        i += m.token;
    }
    mg_strbuf_free(&tok);
    if (st) {
        mg_strbuf_free(&result);
        return st;
    }
    *out = mg_strbuf_take(&result);
    return MG_OK;
}

mg_status mg_eval_ptb_tokenize(const char *text, char **out) {
    if (!text || !out) return mg_error(MG_ERR_INVALID_ARGUMENT, "ptb_tokenize: NULL argument");
    *out = NULL;
    cp_t *c = NULL;
    size_t n = 0;
    MG_TRY(ptb_decode(text, &c, &n));
    mg_status st = ptb_tokenize_one(c, n, NULL, 0, out);
    free(c);
    return st;
}

/* Context the jar sees after a caption: '\n' + the next caption's first
 * code points (the longest trailing context, the sentence-end word list,
 * needs well under 64). */
#define PTB_TAIL 64

mg_status mg_eval_ptb_tokenize_lines(const char *const *texts, int64_t n, char **out) {
    if (n < 0 || (n > 0 && (!texts || !out))) return mg_error(MG_ERR_INVALID_ARGUMENT, "ptb_tokenize_lines: NULL argument");
    for (int64_t i = 0; i < n; i++) {
        out[i] = NULL;
        if (!texts[i]) return mg_error(MG_ERR_INVALID_ARGUMENT, "ptb_tokenize_lines: caption %lld is NULL", (long long)i);
    }
    mg_status st = MG_OK;
    cp_t *cur = NULL, *next = NULL;
    size_t cur_n = 0, next_n = 0;
    cp_t tail[PTB_TAIL + 1];
    if (n > 0) st = ptb_decode(texts[0], &cur, &cur_n);
    for (int64_t i = 0; i < n && !st; i++) {
        size_t tail_n = 0;
        if (i + 1 < n) {
            if ((st = ptb_decode(texts[i + 1], &next, &next_n))) break;
            tail[tail_n++] = '\n';
            for (size_t k = 0; k < next_n && tail_n < PTB_TAIL; k++) tail[tail_n++] = next[k];
            /* a short next caption is followed by the newline before the one after it */
            if (next_n < PTB_TAIL - 1 && i + 2 < n) tail[tail_n++] = '\n';
        }
        st = ptb_tokenize_one(cur, cur_n, tail, tail_n, &out[i]);
        if (st) st = mg_error_prefix(st, "caption %lld", (long long)i);
        free(cur);
        cur = next, cur_n = next_n;
        next = NULL, next_n = 0;
    }
    free(cur);
    free(next);
    if (st)
        for (int64_t i = 0; i < n; i++) {
            free(out[i]);
            out[i] = NULL;
        }
    return st;
}

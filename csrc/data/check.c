/* Dataset checker: streams Med-GRIT (BiRD) and LLaVA/MeCoVQA (MedPLIB)
 * records, reports each problem with file, line, record index/id, a stable
 * code, a severity and a message, and gathers statistics.
 *
 * Record formats (architecture.md §1.11, §2.14; metrics.md §6):
 *  - Med-GRIT: {"id": stem, "conversations": [[user, assistant], ...]},
 *    image = id + ".png" unless an "image" field names it; the first user
 *    text carries <img>...</img>; boxes are <box>(x1,y1),(x2,y2)</box> on
 *    the 0..1000 grid, phrases in <ref>...</ref> (§1.7.4).
 *  - LLaVA/MeCoVQA: {"image": path, "conversations": [{"from": "human",
 *    "value": "<image>\n..."}, {"from": "gpt", "value": ...}]}; grounding
 *    answers carry <mask>path</mask>, region questions <region>path</region>.
 *
 * Images are only stat'ed (mg_image_info); mask pixels are decoded only for
 * the box-vs-mask IoU check and cached per mask file. */
#include "data/data.h"
#include "data/strmap.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_TURNS_HISTOGRAM 32
#define N_AREA_BINS 8
#define MAX_LABELS_FOR_EDIT_DISTANCE 4000

/* Where a record is: used by findings and by cross-record checks. */
typedef struct record_ref {
    int file;       /* index into checker->files */
    int64_t line;
    int64_t index;
    char *id;       /* owned */
} record_ref;

typedef struct image_entry {
    int state; /* 0 ok, 1 missing, 2 unreadable */
    int width, height;
    int64_t file_size;
    char *message; /* why it is unreadable */
    record_ref first;
    char *name;    /* path as written in the record */
} image_entry;

typedef struct mask_entry {
    int state; /* 0 ok, 1 missing, 2 unreadable */
    int width, height;
    bool empty;
    int32_t pixel_box[4];
    char *message;
} mask_entry;

typedef struct label_entry {
    int64_t count;
    record_ref first;
} label_entry;

typedef struct case_entry {
    /* first record of this case in each split (splits are few) */
    int n_splits;
    int splits[8];
    record_ref first[8];
} case_entry;

typedef struct dup_entry {
    record_ref first;
} dup_entry;

typedef struct stored_finding {
    int file;
    int64_t line, index;
    char *record_id;
    const char *code;
    mg_data_severity severity;
    char *message;
} stored_finding;

struct mg_data_checker {
    mg_data_check_options options;
    char *images_dir, *masks_dir;
    char **files;
    int n_files;
    char **splits; /* split names, interned */
    int n_splits;

    stored_finding *findings;
    int64_t n_findings, findings_capacity;
    int64_t counts[3];
    int64_t n_records;
    bool finished;

    mg_strmap images;      /* resolved path -> image_entry */
    mg_strmap masks;       /* resolved path -> mask_entry  */
    mg_strmap labels;      /* label as written -> label_entry */
    mg_strmap cases;       /* case id -> case_entry */
    mg_strmap duplicates;  /* content hash (hex) -> dup_entry */
    mg_strmap task_counts; /* "modality\ttask" -> (intptr) count */

    int64_t turn_histogram[MAX_TURNS_HISTOGRAM + 1];
    int64_t area_histogram[N_AREA_BINS];
    int64_t n_boxes, n_boxes_checked_against_masks;
    double box_width_sum, box_height_sum;
};

/* Upper edges of the box-area bins, as fractions of the image. */
static const double area_bin_edges[N_AREA_BINS] = {0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.01};

/* --------------------------------------------------------------- helpers */

static char *copy_string(const char *s) {
    if (!s) s = "";
    size_t n = strlen(s);
    char *c = malloc(n + 1);
    if (c) memcpy(c, s, n + 1);
    return c;
}

static void ref_free(record_ref *ref) {
    free(ref->id);
    ref->id = NULL;
}

static mg_status ref_copy(record_ref *dst, const record_ref *src) {
    *dst = *src;
    dst->id = copy_string(src->id);
    if (!dst->id) return mg_error(MG_ERR_NO_MEMORY, "data check: out of memory");
    return MG_OK;
}

static mg_status add_finding(mg_data_checker *ck, const record_ref *where, const char *code,
                             mg_data_severity severity, const char *fmt, ...) MG_PRINTF(5, 6);

static mg_status add_finding(mg_data_checker *ck, const record_ref *where, const char *code,
                             mg_data_severity severity, const char *fmt, ...) {
    if (ck->n_findings == ck->findings_capacity) {
        int64_t capacity = ck->findings_capacity ? ck->findings_capacity * 2 : 64;
        stored_finding *grown = realloc(ck->findings, (size_t)capacity * sizeof *grown);
        if (!grown) return mg_error(MG_ERR_NO_MEMORY, "data check: cannot store findings");
        ck->findings = grown;
        ck->findings_capacity = capacity;
    }
    char message[1024];
    va_list args;
    va_start(args, fmt);
    vsnprintf(message, sizeof message, fmt, args);
    va_end(args);
    stored_finding *f = &ck->findings[ck->n_findings];
    f->file = where->file;
    f->line = where->line;
    f->index = where->index;
    f->code = code;
    f->severity = severity;
    f->record_id = copy_string(where->id);
    f->message = copy_string(message);
    if (!f->record_id || !f->message) {
        free(f->record_id);
        free(f->message);
        return mg_error(MG_ERR_NO_MEMORY, "data check: cannot store a finding");
    }
    ck->n_findings++;
    ck->counts[severity]++;
    return MG_OK;
}

/* Shortens s for messages ("…" after 60 bytes). */
static const char *excerpt(const char *s, size_t n, char *buf, size_t size) {
    size_t limit = size - 4 < 60 ? size - 4 : 60;
    if (n <= limit) {
        memcpy(buf, s, n);
        buf[n] = '\0';
    } else {
        memcpy(buf, s, limit);
        memcpy(buf + limit, "...", 4);
    }
    for (char *p = buf; *p; p++)
        if (*p == '\n' || *p == '\r' || *p == '\t') *p = ' ';
    return buf;
}

static void join_path(char *out, size_t size, const char *dir, const char *name) {
    if (!dir || !*dir || name[0] == '/') snprintf(out, size, "%s", name);
    else snprintf(out, size, "%s/%s", dir, name);
}

static const char *base_name(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* File name without directory and extension. Only a real extension goes:
 * 1-5 letters/digits with at least one letter after the last '.', so that
 * DICOM-UID case names such as "ct_00--CTSpine1K_Full--1.3.6.1.4.1.9328.50.4.0115--x_0352"
 * (SA-Med2D, dots inside) keep their tail. */
static void stem_of(const char *path, char *out, size_t size) {
    snprintf(out, size, "%s", base_name(path));
    char *dot = strrchr(out, '.');
    if (!dot || dot == out) return;
    size_t n = strlen(dot + 1);
    bool letter = false, ok = n >= 1 && n <= 5;
    for (const char *p = dot + 1; ok && *p; p++) {
        if (!isalnum((unsigned char)*p)) ok = false;
        if (isalpha((unsigned char)*p)) letter = true;
    }
    if (ok && letter) *dot = '\0';
}

/* --------------------------------------------------- names -> case, modality */

mg_status mg_data_case_id(const char *image_name, char *out, size_t size) {
    if (!image_name || !out || size == 0)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_data_case_id: NULL argument");
    char stem[1024];
    stem_of(image_name, stem, sizeof stem);
    const char *first = strstr(stem, "--");
    if (first) {
        /* SA-Med2D: modality--dataset--case--slice (architecture.md §1.10) */
        const char *dataset = first + 2;
        const char *second = strstr(dataset, "--");
        if (second) {
            const char *third = strstr(second + 2, "--");
            size_t n = third ? (size_t)(third - dataset) : strlen(dataset);
            if (n >= size) n = size - 1;
            memcpy(out, dataset, n);
            out[n] = '\0';
            return MG_OK;
        }
    }
    /* SA-Med2D demo / TotalSegmentator / AMOS style "<case>_<slice>": drop a
     * trailing "_<digits>" slice number. */
    size_t n = strlen(stem);
    size_t end = n;
    while (end > 0 && isdigit((unsigned char)stem[end - 1])) end--;
    if (end < n && end > 1 && stem[end - 1] == '_') n = end - 1;
    if (n >= size) n = size - 1;
    memcpy(out, stem, n);
    out[n] = '\0';
    return MG_OK;
}

mg_status mg_data_modality(const char *image_name, char *out, size_t size) {
    if (!image_name || !out || size == 0)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_data_modality: NULL argument");
    const char *name = base_name(image_name);
    const char *underscore = strchr(name, '_');
    /* BiRD's eval scripts: modality = image.split("_")[0], so "x_ray--..."
     * counts as "x" and "ct_00--..." as "ct" (architecture.md §1.10). */
    size_t n = underscore ? (size_t)(underscore - name) : 0;
    if (n >= size) n = size - 1;
    for (size_t i = 0; i < n; i++) out[i] = (char)tolower((unsigned char)name[i]);
    out[n] = '\0';
    return MG_OK;
}

/* ------------------------------------------------------------ tag parsing */

typedef struct parsed_box {
    int64_t coords[4];
    char label[128]; /* ref phrase the box belongs to, "" when none */
    int turn;
} parsed_box;

typedef struct parsed_path {
    char path[512];
    const char *tag; /* "mask" or "region" */
} parsed_path;

typedef struct record_scan {
    parsed_box *boxes;
    int n_boxes, boxes_capacity;
    parsed_path paths[8];
    int n_paths;
    bool has_image_tag;
    bool has_box_in_user, has_box_in_assistant, has_mask, has_region, has_ref_in_assistant;
} record_scan;

static const char *const known_tags[] = {"ref", "box", "quad", "img", "mask", "region"};

/* Matches "<name>" or "</name>" for a known name at s; returns its length. */
static size_t match_tag(const char *s, size_t n, int *tag, bool *closing) {
    size_t i = 1;
    *closing = false;
    if (i < n && s[i] == '/') {
        *closing = true;
        i++;
    }
    for (int t = 0; t < (int)(sizeof known_tags / sizeof *known_tags); t++) {
        size_t len = strlen(known_tags[t]);
        if (i + len < n && memcmp(s + i, known_tags[t], len) == 0 && s[i + len] == '>') {
            *tag = t;
            return i + len + 1;
        }
    }
    return 0;
}

static const char *skip_spaces(const char *p, const char *end) {
    while (p < end && (*p == ' ' || *p == '\t')) p++;
    return p;
}

static bool parse_int(const char **pp, const char *end, int64_t *out) {
    const char *p = skip_spaces(*pp, end);
    bool negative = false;
    if (p < end && (*p == '-' || *p == '+')) negative = *p++ == '-';
    if (p >= end || !isdigit((unsigned char)*p)) return false;
    int64_t v = 0;
    while (p < end && isdigit((unsigned char)*p)) {
        if (v > 100000000) return false; /* absurdly long: a syntax error */
        v = v * 10 + (*p++ - '0');
    }
    *out = negative ? -v : v;
    *pp = skip_spaces(p, end);
    return true;
}

static bool expect_char(const char **pp, const char *end, char c) {
    const char *p = skip_spaces(*pp, end);
    if (p >= end || *p != c) return false;
    *pp = skip_spaces(p + 1, end);
    return true;
}

/* "(x1,y1),(x2,y2)" with optional spaces, integers only. */
static bool parse_box_text(const char *p, const char *end, int64_t c[4]) {
    return expect_char(&p, end, '(') && parse_int(&p, end, &c[0]) && expect_char(&p, end, ',') &&
           parse_int(&p, end, &c[1]) && expect_char(&p, end, ')') && expect_char(&p, end, ',') &&
           expect_char(&p, end, '(') && parse_int(&p, end, &c[2]) && expect_char(&p, end, ',') &&
           parse_int(&p, end, &c[3]) && expect_char(&p, end, ')') && skip_spaces(p, end) == end;
}

static mg_status scan_push_box(record_scan *scan, const parsed_box *box) {
    if (scan->n_boxes == scan->boxes_capacity) {
        int capacity = scan->boxes_capacity ? scan->boxes_capacity * 2 : 8;
        parsed_box *grown = realloc(scan->boxes, (size_t)capacity * sizeof *grown);
        if (!grown) return mg_error(MG_ERR_NO_MEMORY, "data check: cannot store boxes");
        scan->boxes = grown;
        scan->boxes_capacity = capacity;
    }
    scan->boxes[scan->n_boxes++] = *box;
    return MG_OK;
}

/* Scans one turn's text for tags. Syntax problems become findings. */
static mg_status scan_text(mg_data_checker *ck, const record_ref *where, const char *text,
                           int turn, bool user, record_scan *scan) {
    size_t n = strlen(text);
    int open_tag = -1;
    size_t open_at = 0, content_start = 0;
    char last_label[128] = "";
    bool box_may_follow_ref = false; /* only spaces/boxes since the last </ref> */
    char buf[96];
    const char *role = user ? "user" : "assistant";
    for (size_t i = 0; i < n; i++) {
        if (text[i] != '<') {
            if (open_tag < 0 && box_may_follow_ref && !isspace((unsigned char)text[i]))
                box_may_follow_ref = false;
            continue;
        }
        int tag;
        bool closing;
        size_t len = match_tag(text + i, n - i, &tag, &closing);
        if (!len) {
            if (open_tag < 0) box_may_follow_ref = false;
            continue;
        }
        if (!closing) {
            if (open_tag >= 0)
                return add_finding(ck, where, "tag_unbalanced", MG_DATA_ERROR,
                                   "turn %d (%s): <%s> at character %zu opens inside <%s> "
                                   "opened at character %zu",
                                   turn, role, known_tags[tag], i, known_tags[open_tag], open_at);
            open_tag = tag;
            open_at = i;
            content_start = i + len;
            i += len - 1;
            continue;
        }
        if (open_tag != tag)
            return add_finding(ck, where, "tag_unbalanced", MG_DATA_ERROR,
                               open_tag < 0
                                   ? "turn %d (%s): </%s> at character %zu closes nothing%s"
                                   : "turn %d (%s): </%s> at character %zu does not close <%s>",
                               turn, role, known_tags[tag], i,
                               open_tag < 0 ? "" : known_tags[open_tag]);
        const char *content = text + content_start;
        size_t content_len = i - content_start;
        const char *name = known_tags[tag];
        if (strcmp(name, "ref") == 0) {
            size_t a = 0, b = content_len;
            while (a < b && isspace((unsigned char)content[a])) a++;
            while (b > a && isspace((unsigned char)content[b - 1])) b--;
            if (a == b) {
                MG_TRY(add_finding(ck, where, "ref_empty", MG_DATA_ERROR,
                                   "turn %d (%s): empty <ref></ref> at character %zu", turn, role,
                                   open_at));
                last_label[0] = '\0';
            } else {
                size_t m = b - a < sizeof last_label - 1 ? b - a : sizeof last_label - 1;
                memcpy(last_label, content + a, m);
                last_label[m] = '\0';
                bool inserted;
                label_entry **slot = (label_entry **)mg_strmap_slot(&ck->labels, last_label,
                                                                    &inserted);
                if (!slot) return MG_ERR_NO_MEMORY;
                if (inserted) {
                    *slot = calloc(1, sizeof **slot);
                    if (!*slot) return mg_error(MG_ERR_NO_MEMORY, "data check: out of memory");
                    MG_TRY(ref_copy(&(*slot)->first, where));
                }
                (*slot)->count++;
                if (!user) scan->has_ref_in_assistant = true;
            }
            box_may_follow_ref = true;
        } else if (strcmp(name, "box") == 0) {
            parsed_box box = {.turn = turn};
            if (!parse_box_text(content, content + content_len, box.coords)) {
                MG_TRY(add_finding(ck, where, "box_syntax", MG_DATA_ERROR,
                                   "turn %d (%s): <box>%s</box> is not (x1,y1),(x2,y2) with "
                                   "integers",
                                   turn, role, excerpt(content, content_len, buf, sizeof buf)));
            } else {
                if (box_may_follow_ref) snprintf(box.label, sizeof box.label, "%s", last_label);
                MG_TRY(scan_push_box(scan, &box));
                if (user) scan->has_box_in_user = true;
                else scan->has_box_in_assistant = true;
            }
        } else if (strcmp(name, "img") == 0) {
            if (turn == 0 && user) scan->has_image_tag = true;
        } else if (strcmp(name, "mask") == 0 || strcmp(name, "region") == 0) {
            if (name[0] == 'm') scan->has_mask = true;
            else scan->has_region = true;
            if (scan->n_paths < (int)(sizeof scan->paths / sizeof *scan->paths)) {
                parsed_path *pp = &scan->paths[scan->n_paths++];
                size_t m = content_len < sizeof pp->path - 1 ? content_len : sizeof pp->path - 1;
                memcpy(pp->path, content, m);
                pp->path[m] = '\0';
                pp->tag = name;
            }
        }
        if (strcmp(name, "ref") != 0 && strcmp(name, "box") != 0) box_may_follow_ref = false;
        open_tag = -1;
        i += len - 1;
    }
    if (open_tag >= 0)
        return add_finding(ck, where, "tag_unbalanced", MG_DATA_ERROR,
                           "turn %d (%s): <%s> at character %zu is never closed", turn, role,
                           known_tags[open_tag], open_at);
    return MG_OK;
}

/* ------------------------------------------------------------ box checks */

static mg_status check_box_values(mg_data_checker *ck, const record_ref *where,
                                  const parsed_box *box) {
    const int64_t *c = box->coords;
    char text[96];
    snprintf(text, sizeof text, "(%lld,%lld),(%lld,%lld)", (long long)c[0], (long long)c[1],
             (long long)c[2], (long long)c[3]);
    for (int k = 0; k < 4; k++) {
        if (c[k] < 0 || c[k] > 1000)
            return add_finding(ck, where, "box_out_of_range", MG_DATA_ERROR,
                               "turn %d: box %s has %s = %lld outside 0..1000", box->turn, text,
                               (const char *[]){"x1", "y1", "x2", "y2"}[k], (long long)c[k]);
    }
    if (c[0] > c[2] || c[1] > c[3])
        return add_finding(ck, where, "box_inverted", MG_DATA_ERROR,
                           "turn %d: box %s has %s", box->turn, text,
                           c[0] > c[2] ? "x1 > x2" : "y1 > y2");
    if (c[0] == c[2] || c[1] == c[3])
        return add_finding(ck, where, "box_zero_area", MG_DATA_ERROR,
                           "turn %d: box %s has zero %s", box->turn, text,
                           c[0] == c[2] ? "width" : "height");
    ck->n_boxes++;
    double area = (double)(c[2] - c[0]) * (double)(c[3] - c[1]) / 1e6;
    int bin = 0;
    while (bin < N_AREA_BINS - 1 && area >= area_bin_edges[bin]) bin++;
    ck->area_histogram[bin]++;
    ck->box_width_sum += (double)(c[2] - c[0]);
    ck->box_height_sum += (double)(c[3] - c[1]);
    return MG_OK;
}

/* IoU as BiRD's VG eval computes it: plain (x2-x1)(y2-y1) areas. */
static double box_iou(const int64_t a[4], const int32_t b[4]) {
    double ix = fmin((double)a[2], b[2]) - fmax((double)a[0], b[0]);
    double iy = fmin((double)a[3], b[3]) - fmax((double)a[1], b[1]);
    if (ix <= 0 || iy <= 0) return 0;
    double inter = ix * iy;
    double area_a = (double)(a[2] - a[0]) * (double)(a[3] - a[1]);
    double area_b = (double)(b[2] - b[0]) * (double)(b[3] - b[1]);
    return inter / (area_a + area_b - inter);
}

/* ---------------------------------------------------------- images, masks */

static bool file_exists(const char *path, int64_t *size) {
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return false;
    if (size) *size = st.st_size;
    return true;
}

static mg_status lookup_image(mg_data_checker *ck, const char *name, const record_ref *where,
                              image_entry **out) {
    char path[2048];
    join_path(path, sizeof path, ck->images_dir, name);
    bool inserted;
    image_entry **slot = (image_entry **)mg_strmap_slot(&ck->images, path, &inserted);
    if (!slot) return MG_ERR_NO_MEMORY;
    if (inserted) {
        image_entry *e = calloc(1, sizeof *e);
        if (!e) return mg_error(MG_ERR_NO_MEMORY, "data check: out of memory");
        *slot = e;
        e->name = copy_string(name);
        if (!e->name) return mg_error(MG_ERR_NO_MEMORY, "data check: out of memory");
        MG_TRY(ref_copy(&e->first, where));
        if (!file_exists(path, &e->file_size)) {
            e->state = 1;
        } else {
            int channels;
            if (mg_image_info(path, &e->width, &e->height, &channels) != MG_OK) {
                e->state = 2;
                e->message = copy_string(mg_last_error());
            }
        }
    }
    *out = *slot;
    return MG_OK;
}

static mask_entry *lookup_mask(mg_data_checker *ck, const char *path) {
    bool inserted;
    mask_entry **slot = (mask_entry **)mg_strmap_slot(&ck->masks, path, &inserted);
    if (!slot) return NULL;
    if (inserted) {
        mask_entry *e = calloc(1, sizeof *e);
        if (!e) {
            mg_error(MG_ERR_NO_MEMORY, "data check: out of memory");
            return NULL;
        }
        *slot = e;
        if (!file_exists(path, NULL)) {
            e->state = 1;
            return e;
        }
        int32_t *labels;
        if (mg_data_load_mask_labels(path, true, &labels, &e->width, &e->height) != MG_OK) {
            e->state = 2;
            e->message = copy_string(mg_last_error());
            return e;
        }
        int32_t x0 = INT32_MAX, y0 = INT32_MAX, x1 = -1, y1 = -1;
        for (int y = 0; y < e->height; y++) {
            const int32_t *row = labels + (int64_t)y * e->width;
            for (int x = 0; x < e->width; x++) {
                if (!row[x]) continue;
                if (x < x0) x0 = x;
                if (x > x1) x1 = x;
                if (y < y0) y0 = y;
                y1 = y;
            }
        }
        free(labels);
        e->empty = x1 < 0;
        if (!e->empty) {
            e->pixel_box[0] = x0;
            e->pixel_box[1] = y0;
            e->pixel_box[2] = x1;
            e->pixel_box[3] = y1;
        }
    }
    return *slot;
}

/* Mask files for (image, label) by the two naming schemes in shared data:
 * biomedparse "<stem>_<label with + for spaces>.png" and SA-Med2D
 * "<stem>_<label with _ for spaces>_<instance:03d>.png". */
static int find_label_masks(mg_data_checker *ck, const char *image_name, const char *label,
                            mask_entry **found, char names[][1024], int max_found) {
    char stem[512], plus[256], underscore[256];
    stem_of(image_name, stem, sizeof stem);
    snprintf(plus, sizeof plus, "%s", label);
    snprintf(underscore, sizeof underscore, "%s", label);
    for (char *p = plus; *p; p++)
        if (*p == ' ') *p = '+';
    for (char *p = underscore; *p; p++)
        if (*p == ' ') *p = '_';
    int n = 0;
    char path[1024];
    snprintf(names[n], 1024, "%s_%s.png", stem, plus);
    join_path(path, sizeof path, ck->masks_dir, names[n]);
    mask_entry *e = lookup_mask(ck, path);
    if (e && e->state != 1) found[n++] = e;
    for (int instance = 0; instance < 1000 && n < max_found; instance++) {
        snprintf(names[n], 1024, "%s_%s_%03d.png", stem, underscore, instance);
        join_path(path, sizeof path, ck->masks_dir, names[n]);
        e = lookup_mask(ck, path);
        if (!e || e->state == 1) break;
        found[n++] = e;
    }
    return n;
}

static mg_status check_box_against_masks(mg_data_checker *ck, const record_ref *where,
                                         const char *image_name, const image_entry *image,
                                         const parsed_box *box) {
    enum { MAX_INSTANCES = 32 };
    mask_entry *masks[MAX_INSTANCES];
    static _Thread_local char names[MAX_INSTANCES][1024];
    int n = find_label_masks(ck, image_name, box->label, masks, names, MAX_INSTANCES);
    if (n == 0) return MG_OK; /* nothing to compare with */
    double best = -1;
    int best_index = -1;
    int32_t union_box[4] = {INT32_MAX, INT32_MAX, -1, -1}, union_grid[4];
    int width = 0, height = 0;
    for (int i = 0; i < n; i++) {
        mask_entry *m = masks[i];
        if (m->state == 2)
            return add_finding(ck, where, "mask_unreadable", MG_DATA_ERROR,
                               "mask %s for '%s' cannot be decoded: %s", names[i], box->label,
                               m->message ? m->message : "");
        if (image && image->state == 0 && (m->width != image->width || m->height != image->height))
            return add_finding(ck, where, "image_size_mismatch", MG_DATA_ERROR,
                               "mask %s is %dx%d but image %s is %dx%d", names[i], m->width,
                               m->height, image_name, image->width, image->height);
        if (m->empty) continue;
        int32_t grid[4];
        MG_TRY(mg_box_to_grid(m->pixel_box, m->width, m->height, grid));
        double iou = box_iou(box->coords, grid);
        if (iou > best) {
            best = iou;
            best_index = i;
        }
        for (int k = 0; k < 2; k++) {
            if (m->pixel_box[k] < union_box[k]) union_box[k] = m->pixel_box[k];
            if (m->pixel_box[k + 2] > union_box[k + 2]) union_box[k + 2] = m->pixel_box[k + 2];
        }
        width = m->width;
        height = m->height;
    }
    if (best_index < 0) return MG_OK; /* only empty masks */
    /* One box may also stand for all instances of the label together. */
    MG_TRY(mg_box_to_grid(union_box, width, height, union_grid));
    double iou_union = box_iou(box->coords, union_grid);
    if (iou_union > best) best = iou_union;
    ck->n_boxes_checked_against_masks++;
    double threshold = ck->options.min_box_mask_iou > 0 ? ck->options.min_box_mask_iou : 0.5;
    if (best < threshold) {
        int32_t g[4];
        MG_TRY(mg_box_to_grid(masks[best_index]->pixel_box, masks[best_index]->width,
                              masks[best_index]->height, g));
        return add_finding(ck, where, "box_mask_mismatch", MG_DATA_ERROR,
                           "turn %d: box (%lld,%lld),(%lld,%lld) for '%s' has IoU %.3f < %.2f "
                           "with mask %s (box (%d,%d),(%d,%d))",
                           box->turn, (long long)box->coords[0], (long long)box->coords[1],
                           (long long)box->coords[2], (long long)box->coords[3], box->label,
                           best, threshold, names[best_index], g[0], g[1], g[2], g[3]);
    }
    return MG_OK;
}

/* ------------------------------------------------------------- one record */

static const char *json_string(const cJSON *object, const char *key) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);
    return cJSON_IsString(item) ? item->valuestring : NULL;
}

/* Task of a record: its "task" field, else from the tags it carries. */
static const char *infer_task(const cJSON *record, const record_scan *scan) {
    const char *task = json_string(record, "task");
    if (task) return task;
    if (scan->has_mask) return "SEG"; /* the task names of medground.data.build */
    if (scan->has_region) return "region_vqa";
    if (scan->has_box_in_user) return "ROC";
    if (scan->has_box_in_assistant) return "VG";
    return "VQA";
}

static mg_status count_task(mg_data_checker *ck, const char *modality, const char *task) {
    char key[256];
    snprintf(key, sizeof key, "%s\t%s", modality[0] ? modality : "unknown", task);
    bool inserted;
    void **slot = mg_strmap_slot(&ck->task_counts, key, &inserted);
    if (!slot) return MG_ERR_NO_MEMORY;
    *slot = (void *)((intptr_t)*slot + 1);
    return MG_OK;
}

static int split_index(mg_data_checker *ck, const char *split) {
    if (!split || !*split) return -1;
    for (int i = 0; i < ck->n_splits; i++)
        if (strcmp(ck->splits[i], split) == 0) return i;
    if (ck->n_splits == 8) return -1;
    char *copy = copy_string(split);
    if (!copy) return -1;
    ck->splits[ck->n_splits] = copy;
    return ck->n_splits++;
}

static mg_status note_case(mg_data_checker *ck, const char *image_name, int split,
                           const record_ref *where) {
    if (split < 0) return MG_OK;
    char case_id[512];
    MG_TRY(mg_data_case_id(image_name, case_id, sizeof case_id));
    bool inserted;
    case_entry **slot = (case_entry **)mg_strmap_slot(&ck->cases, case_id, &inserted);
    if (!slot) return MG_ERR_NO_MEMORY;
    if (inserted) {
        *slot = calloc(1, sizeof **slot);
        if (!*slot) return mg_error(MG_ERR_NO_MEMORY, "data check: out of memory");
    }
    case_entry *e = *slot;
    for (int i = 0; i < e->n_splits; i++)
        if (e->splits[i] == split) return MG_OK;
    if (e->n_splits == 8) return MG_OK;
    e->splits[e->n_splits] = split;
    MG_TRY(ref_copy(&e->first[e->n_splits], where));
    e->n_splits++;
    return MG_OK;
}

/* Referring classification (ROC) puts the box in the question and the class
 * as the whole answer ("aorta"): such a box has no <ref> but its answer names
 * the object it came from. A "bare label" answer is short, one line, without
 * tags; a final '.' is dropped. */
static bool bare_label(const char *text, char *out, size_t size) {
    size_t a = 0, b = strlen(text);
    while (a < b && isspace((unsigned char)text[a])) a++;
    while (b > a && (isspace((unsigned char)text[b - 1]) || text[b - 1] == '.')) b--;
    if (a == b || b - a >= size || b - a > 64) return false;
    for (size_t i = a; i < b; i++)
        if (text[i] == '<' || text[i] == '>' || text[i] == '\n') return false;
    memcpy(out, text + a, b - a);
    out[b - a] = '\0';
    return true;
}

/* Gives the unlabelled boxes scan->boxes[first..] (from a question) the
 * answer's bare label, for the box-vs-mask check only. */
static void label_question_boxes(record_scan *scan, int first, const char *answer) {
    char label[128];
    bool have = false;
    for (int i = first; i < scan->n_boxes; i++) {
        if (scan->boxes[i].label[0]) continue;
        if (!have && !(have = bare_label(answer, label, sizeof label))) return;
        snprintf(scan->boxes[i].label, sizeof scan->boxes[i].label, "%s", label);
    }
}

/* Inside check_record: fail through the cleanup at `done`. */
#define TRY_DONE(expr)                  \
    do {                                \
        status = (expr);                \
        if (status != MG_OK) goto done; \
    } while (0)

static mg_status check_record(mg_data_checker *ck, const cJSON *record, record_ref *where,
                              const char *file_split) {
    char id_buf[256] = "";
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(record, "id");
    if (cJSON_IsString(id)) snprintf(id_buf, sizeof id_buf, "%s", id->valuestring);
    else if (cJSON_IsNumber(id)) snprintf(id_buf, sizeof id_buf, "%.17g", id->valuedouble);
    where->id = id_buf;
    ck->n_records++;

    if (!cJSON_IsObject(record))
        return add_finding(ck, where, "schema", MG_DATA_ERROR, "record is not a JSON object");
    const cJSON *conversations = cJSON_GetObjectItemCaseSensitive(record, "conversations");
    if (!cJSON_IsArray(conversations) || cJSON_GetArraySize(conversations) == 0)
        return add_finding(ck, where, "schema", MG_DATA_ERROR,
                           "\"conversations\" is missing or not a non-empty list");

    record_scan scan = {0};
    mg_status status = MG_OK;
    uint64_t content_hash = 0x12345;
    int n_user_turns = 0;
    bool pairs = cJSON_IsArray(conversations->child);
    bool bad = false;
    int position = 0;
    bool expect_user = true;
    int question_box = -1; /* LLaVA: first box of the last human turn */
    for (const cJSON *turn = conversations->child; turn && status == MG_OK && !bad;
         turn = turn->next, position++) {
        if (pairs) {
            /* Med-GRIT: [user, assistant] */
            if (!cJSON_IsArray(turn) || cJSON_GetArraySize(turn) != 2 ||
                !cJSON_IsString(turn->child) || !cJSON_IsString(turn->child->next)) {
                status = add_finding(ck, where, "schema", MG_DATA_ERROR,
                                     "conversations[%d] is not a [user, assistant] pair of strings",
                                     position);
                bad = true;
                break;
            }
            const char *u = turn->child->valuestring, *a = turn->child->next->valuestring;
            content_hash = mg_hash_bytes(u, strlen(u) + 1, content_hash);
            content_hash = mg_hash_bytes(a, strlen(a) + 1, content_hash);
            int first_box = scan.n_boxes;
            status = scan_text(ck, where, u, position, true, &scan);
            int first_answer_box = scan.n_boxes;
            if (status == MG_OK) status = scan_text(ck, where, a, position, false, &scan);
            /* an answer without boxes of its own may name the question's box */
            if (status == MG_OK && first_answer_box == scan.n_boxes)
                label_question_boxes(&scan, first_box, a);
            n_user_turns++;
        } else {
            /* LLaVA: {"from": role, "value": text} alternating human/gpt */
            const char *from = json_string(turn, "from");
            const char *value = json_string(turn, "value");
            if (!cJSON_IsObject(turn) || !from || !value) {
                status = add_finding(ck, where, "schema", MG_DATA_ERROR,
                                     "conversations[%d] is not {\"from\": ..., \"value\": ...} "
                                     "with strings",
                                     position);
                bad = true;
                break;
            }
            bool is_user = strcmp(from, "human") == 0 || strcmp(from, "user") == 0;
            bool is_assistant = strcmp(from, "gpt") == 0 || strcmp(from, "assistant") == 0;
            if (!is_user && !is_assistant) {
                char buf[96];
                status = add_finding(ck, where, "unknown_role", MG_DATA_ERROR,
                                     "conversations[%d].from = \"%s\" is not a known role (human, "
                                     "gpt)",
                                     position, excerpt(from, strlen(from), buf, sizeof buf));
                bad = true;
                break;
            }
            if (is_user != expect_user) {
                status = add_finding(ck, where, "turn_order", MG_DATA_ERROR,
                                     "conversations[%d] is from \"%s\" but a %s turn was expected",
                                     position, from, expect_user ? "human" : "gpt");
                bad = true;
                break;
            }
            expect_user = !expect_user;
            content_hash = mg_hash_bytes(from, strlen(from) + 1, content_hash);
            content_hash = mg_hash_bytes(value, strlen(value) + 1, content_hash);
            if (is_user && position == 0 && strstr(value, "<image>")) scan.has_image_tag = true;
            int first_box = scan.n_boxes;
            status = scan_text(ck, where, value, position / 2, is_user, &scan);
            if (is_user) {
                n_user_turns++;
                question_box = first_box;
            } else if (status == MG_OK && first_box == scan.n_boxes && question_box >= 0) {
                label_question_boxes(&scan, question_box, value);
                question_box = -1;
            }
        }
    }
    if (status == MG_OK && !bad && !pairs && !expect_user)
        status = add_finding(ck, where, "turn_order", MG_DATA_ERROR,
                             "the last turn is from the human: the question has no answer");
    if (status != MG_OK || bad) goto done;

    if (!scan.has_image_tag)
        TRY_DONE(add_finding(ck, where, "image_tag_missing", MG_DATA_ERROR,
                           pairs ? "the first user text has no <img>...</img>"
                                 : "the first human value has no <image> placeholder"));
    for (int i = 0; i < scan.n_boxes && status == MG_OK; i++)
        status = check_box_values(ck, where, &scan.boxes[i]);
    if (status != MG_OK) goto done;

    /* image: "image" field, else Med-GRIT's id + ".png" */
    char image_name[1024] = "";
    const char *image_field = json_string(record, "image");
    if (image_field) snprintf(image_name, sizeof image_name, "%s", image_field);
    else if (id_buf[0]) snprintf(image_name, sizeof image_name, "%s.png", id_buf);
    if (!image_name[0]) {
        status = add_finding(ck, where, "schema", MG_DATA_ERROR,
                             "record has neither \"image\" nor \"id\" to name its image");
        goto done;
    }
    content_hash = mg_hash_bytes(image_name, strlen(image_name) + 1, content_hash);

    char modality[64];
    const char *modality_field = json_string(record, "modality");
    if (modality_field) snprintf(modality, sizeof modality, "%s", modality_field);
    else TRY_DONE(mg_data_modality(image_name, modality, sizeof modality));
    TRY_DONE(count_task(ck, modality, infer_task(record, &scan)));
    ck->turn_histogram[n_user_turns < MAX_TURNS_HISTOGRAM ? n_user_turns : MAX_TURNS_HISTOGRAM]++;

    const char *split_field = json_string(record, "split");
    int split = split_index(ck, split_field ? split_field : file_split);
    TRY_DONE(note_case(ck, image_name, split, where));

    if (ck->options.check_duplicates) {
        char key[32];
        snprintf(key, sizeof key, "%016llx", (unsigned long long)content_hash);
        bool inserted;
        dup_entry **slot = (dup_entry **)mg_strmap_slot(&ck->duplicates, key, &inserted);
        if (!slot) TRY_DONE(MG_ERR_NO_MEMORY);
        if (inserted) {
            *slot = calloc(1, sizeof **slot);
            if (!*slot) TRY_DONE(mg_error(MG_ERR_NO_MEMORY, "data check: out of memory"));
            TRY_DONE(ref_copy(&(*slot)->first, where));
        } else {
            const record_ref *f = &(*slot)->first;
            TRY_DONE(add_finding(ck, where, "duplicate_record", MG_DATA_WARNING,
                               "same image and conversation as record %lld (id \"%s\", %s line "
                               "%lld)",
                               (long long)f->index, f->id, base_name(ck->files[f->file]),
                               (long long)f->line));
        }
    }

    image_entry *image = NULL;
    if (ck->images_dir) {
        TRY_DONE(lookup_image(ck, image_name, where, &image));
        if (image->state == 1)
            TRY_DONE(add_finding(ck, where, "image_missing", MG_DATA_ERROR, "image %s does not exist",
                               image_name));
        else if (image->state == 2)
            TRY_DONE(add_finding(ck, where, "image_unreadable", MG_DATA_ERROR,
                               "image %s cannot be read: %s", image_name,
                               image->message ? image->message : ""));
        else {
            const cJSON *w = cJSON_GetObjectItemCaseSensitive(record, "width");
            const cJSON *h = cJSON_GetObjectItemCaseSensitive(record, "height");
            if (cJSON_IsNumber(w) && cJSON_IsNumber(h) &&
                (w->valuedouble != image->width || h->valuedouble != image->height))
                TRY_DONE(add_finding(ck, where, "image_size_mismatch", MG_DATA_ERROR,
                                   "record says %gx%g but image %s is %dx%d", w->valuedouble,
                                   h->valuedouble, image_name, image->width, image->height));
        }
    }
    /* <mask>/<region> files: relative to --masks, else to --images */
    const char *mask_root = ck->masks_dir ? ck->masks_dir : ck->images_dir;
    for (int i = 0; mask_root && i < scan.n_paths; i++) {
        char path[2048];
        join_path(path, sizeof path, mask_root, scan.paths[i].path);
        if (ck->masks_dir && ck->images_dir && !file_exists(path, NULL))
            join_path(path, sizeof path, ck->images_dir, scan.paths[i].path);
        mask_entry *m = lookup_mask(ck, path);
        if (!m) TRY_DONE(MG_ERR_NO_MEMORY);
        if (m->state == 1)
            TRY_DONE(add_finding(ck, where, "mask_missing", MG_DATA_ERROR,
                               "<%s> file %s does not exist", scan.paths[i].tag,
                               scan.paths[i].path));
        else if (m->state == 2)
            TRY_DONE(add_finding(ck, where, "mask_unreadable", MG_DATA_ERROR,
                               "<%s> file %s cannot be decoded: %s", scan.paths[i].tag,
                               scan.paths[i].path, m->message ? m->message : ""));
        else if (image && image->state == 0 &&
                 (m->width != image->width || m->height != image->height))
            TRY_DONE(add_finding(ck, where, "image_size_mismatch", MG_DATA_ERROR,
                               "mask %s is %dx%d but image %s is %dx%d", scan.paths[i].path,
                               m->width, m->height, image_name, image->width, image->height));
        else if (m->empty)
            /* a grounding target / region without a single foreground pixel */
            TRY_DONE(add_finding(ck, where, "mask_empty", MG_DATA_ERROR,
                               "<%s> file %s has no foreground pixel", scan.paths[i].tag,
                               scan.paths[i].path));
    }
    if (ck->masks_dir) {
        for (int i = 0; i < scan.n_boxes && status == MG_OK; i++) {
            const parsed_box *b = &scan.boxes[i];
            const int64_t *c = b->coords;
            bool valid = c[0] >= 0 && c[1] >= 0 && c[2] <= 1000 && c[3] <= 1000 && c[0] < c[2] &&
                         c[1] < c[3];
            if (b->label[0] && valid)
                status = check_box_against_masks(ck, where, image_name, image, b);
        }
    }
done:
    free(scan.boxes);
    return status;
}

/* ------------------------------------------------------- record streaming */

typedef struct stream {
    mg_data_checker *ck;
    int file;
    const char *split;
    const char *bytes;
    size_t n;
    size_t pos;
    int64_t line;     /* line of bytes[pos] */
    size_t reported;  /* progress: last reported position */
} stream;

static void advance(stream *s, size_t to) {
    for (const char *p = s->bytes + s->pos, *end = s->bytes + to;
         (p = memchr(p, '\n', (size_t)(end - p))) != NULL; p++)
        s->line++;
    s->pos = to;
    if (s->ck->options.progress && s->pos - s->reported >= (1u << 20)) {
        s->reported = s->pos;
        s->ck->options.progress((int64_t)s->pos, (int64_t)s->n, s->ck->options.progress_user_data);
    }
}

static void skip_whitespace(stream *s) {
    size_t p = s->pos;
    while (p < s->n && (s->bytes[p] == ' ' || s->bytes[p] == '\t' || s->bytes[p] == '\n' ||
                        s->bytes[p] == '\r'))
        p++;
    advance(s, p);
}

/* Line of a pointer inside the record that starts at s->pos. */
static int64_t line_at(const stream *s, const char *where) {
    int64_t line = s->line;
    for (const char *p = s->bytes + s->pos; p < where && p < s->bytes + s->n; p++)
        if (*p == '\n') line++;
    return line;
}

static mg_status parse_and_check(stream *s, size_t start, size_t end, int64_t index) {
    record_ref where = {.file = s->file, .line = s->line, .index = index, .id = ""};
    const char *parse_end = NULL;
    cJSON *record = cJSON_ParseWithLengthOpts(s->bytes + start, end - start, &parse_end, false);
    mg_status status;
    if (!record) {
        const char *at = parse_end ? parse_end : s->bytes + start;
        char buf[96];
        size_t left = (size_t)(s->bytes + end - at);
        s->ck->n_records++;
        return add_finding(s->ck, &where, "json_syntax", MG_DATA_ERROR,
                           "line %lld: malformed JSON near \"%s\"", (long long)line_at(s, at),
                           excerpt(at, left < 40 ? left : 40, buf, sizeof buf));
    }
    const char *rest = parse_end;
    while (rest < s->bytes + end && isspace((unsigned char)*rest)) rest++;
    if (rest < s->bytes + end) {
        cJSON_Delete(record);
        char buf[96];
        s->ck->n_records++;
        return add_finding(s->ck, &where, "json_syntax", MG_DATA_ERROR,
                           "line %lld: unexpected text after the record: \"%s\"",
                           (long long)line_at(s, rest),
                           excerpt(rest, (size_t)(s->bytes + end - rest), buf, sizeof buf));
    }
    status = check_record(s->ck, record, &where, s->split);
    cJSON_Delete(record);
    return status;
}

/* End of the JSON value starting at s->pos: matching bracket, or the next
 * ',' / ']' at depth 0. false when the input ends first. */
static bool value_extent(const stream *s, size_t *end) {
    int depth = 0;
    bool in_string = false;
    for (size_t p = s->pos; p < s->n; p++) {
        char c = s->bytes[p];
        if (in_string) {
            if (c == '\\') p++;
            else if (c == '"') in_string = false;
            continue;
        }
        if (c == '"') in_string = true;
        else if (c == '{' || c == '[') depth++;
        else if (c == '}' || c == ']') {
            if (depth == 0) {
                *end = p;
                return true;
            }
            if (--depth == 0) {
                *end = p + 1;
                return true;
            }
        } else if (c == ',' && depth == 0) {
            *end = p;
            return true;
        }
    }
    return false;
}

static mg_status stream_json_list(stream *s) {
    mg_data_checker *ck = s->ck;
    advance(s, s->pos + 1); /* '[' */
    int64_t index = 0;
    for (;;) {
        skip_whitespace(s);
        if (s->pos >= s->n) {
            record_ref where = {.file = s->file, .line = s->line, .index = -1, .id = ""};
            return add_finding(ck, &where, "json_syntax", MG_DATA_ERROR,
                               "line %lld: the JSON list is not closed with ']'",
                               (long long)s->line);
        }
        if (s->bytes[s->pos] == ']' && index == 0) break;
        size_t end;
        if (!value_extent(s, &end)) {
            record_ref where = {.file = s->file, .line = s->line, .index = index, .id = ""};
            ck->n_records++;
            return add_finding(ck, &where, "json_syntax", MG_DATA_ERROR,
                               "line %lld: record %lld is not terminated before the end of the "
                               "file",
                               (long long)s->line, (long long)index);
        }
        if (end == s->pos && s->bytes[s->pos] != ',' && s->bytes[s->pos] != ']') {
            /* a stray closing '}' (value_extent stops at a closing bracket at
             * depth 0): report it and step over it, or the loop would not
             * advance */
            record_ref where = {.file = s->file, .line = s->line, .index = index, .id = ""};
            MG_TRY(add_finding(ck, &where, "json_syntax", MG_DATA_ERROR,
                               "line %lld: unexpected '%c' in the JSON list", (long long)s->line,
                               s->bytes[s->pos]));
            advance(s, s->pos + 1);
            continue;
        }
        if (end == s->pos) {
            record_ref where = {.file = s->file, .line = s->line, .index = index, .id = ""};
            ck->n_records++;
            MG_TRY(add_finding(ck, &where, "json_syntax", MG_DATA_ERROR,
                               "line %lld: empty element in the JSON list", (long long)s->line));
        } else {
            MG_TRY(parse_and_check(s, s->pos, end, index));
        }
        index++;
        advance(s, end);
        skip_whitespace(s);
        if (s->pos >= s->n) continue; /* reported at the top of the loop */
        char c = s->bytes[s->pos];
        if (c == ',') {
            advance(s, s->pos + 1);
            continue;
        }
        if (c == ']') break;
        /* e.g. a missing comma or a stray '}': report once and resynchronise
         * on the next value (a stray bracket and its ',' are stepped over) */
        record_ref where = {.file = s->file, .line = s->line, .index = index, .id = ""};
        MG_TRY(add_finding(ck, &where, "json_syntax", MG_DATA_ERROR,
                           "line %lld: expected ',' or ']' after record %lld, found '%c'",
                           (long long)s->line, (long long)(index - 1), c));
        if (c == '}') {
            advance(s, s->pos + 1);
            skip_whitespace(s);
            if (s->pos < s->n && s->bytes[s->pos] == ',') advance(s, s->pos + 1);
        }
    }
    advance(s, s->pos + 1); /* ']' */
    skip_whitespace(s);
    if (s->pos < s->n) {
        record_ref where = {.file = s->file, .line = s->line, .index = -1, .id = ""};
        return add_finding(ck, &where, "json_syntax", MG_DATA_ERROR,
                           "line %lld: text after the closing ']'", (long long)s->line);
    }
    return MG_OK;
}

static mg_status stream_jsonl(stream *s) {
    int64_t index = 0;
    while (s->pos < s->n) {
        const char *newline = memchr(s->bytes + s->pos, '\n', s->n - s->pos);
        size_t end = newline ? (size_t)(newline - s->bytes) : s->n;
        size_t p = s->pos;
        while (p < end && isspace((unsigned char)s->bytes[p])) p++;
        if (p < end) {
            MG_TRY(parse_and_check(s, s->pos, end, index));
            index++;
        }
        advance(s, newline ? end + 1 : end);
    }
    return MG_OK;
}

static mg_status add_bytes(mg_data_checker *ck, const char *name, const char *bytes, size_t n,
                           const char *split) {
    if (ck->finished)
        return mg_error(MG_ERR_INVALID_ARGUMENT,
                        "data check: %s added after mg_data_checker_finish", name);
    char **files = realloc(ck->files, (size_t)(ck->n_files + 1) * sizeof *files);
    if (!files) return mg_error(MG_ERR_NO_MEMORY, "data check: out of memory");
    ck->files = files;
    ck->files[ck->n_files] = copy_string(name);
    if (!ck->files[ck->n_files]) return mg_error(MG_ERR_NO_MEMORY, "data check: out of memory");
    stream s = {.ck = ck, .file = ck->n_files++, .split = split, .bytes = bytes, .n = n,
                .line = 1};
    if (n >= 3 && memcmp(bytes, "\xEF\xBB\xBF", 3) == 0) s.pos = 3; /* UTF-8 BOM */
    skip_whitespace(&s);
    mg_status status;
    if (s.pos < n && bytes[s.pos] == '[') status = stream_json_list(&s);
    else status = stream_jsonl(&s);
    if (ck->options.progress) ck->options.progress((int64_t)n, (int64_t)n, ck->options.progress_user_data);
    return status;
}

mg_status mg_data_checker_add_buffer(mg_data_checker *checker, const char *name,
                                     const char *bytes, size_t n_bytes, const char *split) {
    if (!checker || (!bytes && n_bytes))
        return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_data_checker_add_buffer: NULL argument");
    return add_bytes(checker, name ? name : "<buffer>", bytes ? bytes : "", n_bytes, split);
}

mg_status mg_data_checker_add_file(mg_data_checker *checker, const char *path,
                                   const char *split) {
    if (!checker || !path)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_data_checker_add_file: NULL argument");
    int fd = open(path, O_RDONLY);
    if (fd < 0) return mg_error(MG_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return mg_error(MG_ERR_IO, "%s: not a regular file", path);
    }
    size_t n = (size_t)st.st_size;
    if (n == 0) {
        close(fd);
        return add_bytes(checker, path, "", 0, split);
    }
    /* mmap: the OS pages the file in as the stream advances, so a 300k-record
     * file is never copied into memory as a whole. */
    void *map = mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return mg_error(MG_ERR_IO, "%s: cannot map: %s", path, strerror(errno));
    madvise(map, n, MADV_SEQUENTIAL);
    mg_status status = add_bytes(checker, path, map, n, split);
    munmap(map, n);
    return status;
}

/* ------------------------------------------------------ cross-record checks */

static void label_key(const char *label, char *out, size_t size) {
    /* lower case, '_' '-' and runs of spaces -> one space, plural folded */
    size_t n = 0;
    bool space = false;
    for (const char *p = label; *p && n + 1 < size; p++) {
        char c = (char)tolower((unsigned char)*p);
        if (c == '_' || c == '-' || isspace((unsigned char)c)) {
            space = n > 0;
            continue;
        }
        if (space && n + 2 < size) out[n++] = ' ';
        space = false;
        out[n++] = c;
    }
    out[n] = '\0';
    /* English plurals of anatomy words: -ies -> -y, -ses/-xes/-ches/-shes
     * drop "es", otherwise a final "s" (not "ss", "us", "is") goes. */
    if (n > 4 && strcmp(out + n - 3, "ies") == 0) {
        out[n - 3] = 'y';
        out[n - 2] = '\0';
    } else if (n > 4 && (strcmp(out + n - 3, "ses") == 0 || strcmp(out + n - 3, "xes") == 0 ||
                         strcmp(out + n - 4, "ches") == 0 || strcmp(out + n - 4, "shes") == 0)) {
        out[n - 2] = '\0';
    } else if (n > 3 && out[n - 1] == 's' && out[n - 2] != 's' && out[n - 2] != 'u' &&
               out[n - 2] != 'i') {
        out[n - 1] = '\0';
    }
}

/* Optimal-string-alignment distance, capped: returns > cap early. */
static int edit_distance(const char *a, const char *b, int cap) {
    int la = (int)strlen(a), lb = (int)strlen(b);
    if (abs(la - lb) > cap) return cap + 1;
    if (la > 126 || lb > 126) return cap + 1;
    int d[128][128];
    for (int i = 0; i <= la; i++) d[i][0] = i;
    for (int j = 0; j <= lb; j++) d[0][j] = j;
    for (int i = 1; i <= la; i++) {
        int row_min = INT32_MAX;
        for (int j = 1; j <= lb; j++) {
            int cost = a[i - 1] != b[j - 1];
            int v = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < v) v = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + cost < v) v = d[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < v)
                v = d[i - 2][j - 2] + 1;
            d[i][j] = v;
            if (v < row_min) row_min = v;
        }
        if (row_min > cap) return cap + 1;
    }
    return d[la][lb];
}

/* Tokens with digits are codes in anatomy labels (vertebrae C1 / T1 / L1,
 * rib 9, segment S4): two labels whose coded tokens differ at all name
 * different structures, not typos. Keys are space-separated (label_key). */
static bool same_coded_tokens(const char *a, const char *b) {
    for (;;) {
        /* next token containing a digit in each */
        const char *ta = NULL, *tb = NULL;
        size_t la = 0, lb = 0;
        while (*a && !ta) {
            size_t n = strcspn(a, " ");
            for (size_t i = 0; i < n; i++)
                if (isdigit((unsigned char)a[i])) ta = a, la = n;
            a += n;
            while (*a == ' ') a++;
        }
        while (*b && !tb) {
            size_t n = strcspn(b, " ");
            for (size_t i = 0; i < n; i++)
                if (isdigit((unsigned char)b[i])) tb = b, lb = n;
            b += n;
            while (*b == ' ') b++;
        }
        if (!ta || !tb) return !ta && !tb;
        if (la != lb || memcmp(ta, tb, la) != 0) return false;
    }
}

/* Different structures one letter apart (never reported as variants). */
static const char *const distinct_pairs[][2] = {
    {"ileum", "ilium"}, /* small intestine / pelvic bone */
};

static bool known_distinct(const char *a, const char *b) {
    for (size_t i = 0; i < sizeof distinct_pairs / sizeof *distinct_pairs; i++) {
        const char *x = distinct_pairs[i][0], *y = distinct_pairs[i][1];
        if ((strstr(a, x) && strstr(b, y)) || (strstr(a, y) && strstr(b, x))) return true;
    }
    return false;
}

typedef struct label_item {
    const char *label;
    char key[128];
    label_entry *entry;
    int64_t group; /* union-find parent (index into the sorted items) */
} label_item;

static int compare_label_keys(const void *pa, const void *pb) {
    const label_item *a = pa, *b = pb;
    int c = strcmp(a->key, b->key);
    return c ? c : strcmp(a->label, b->label);
}

static int64_t group_find(label_item *items, int64_t i) {
    while (items[i].group != i) {
        items[i].group = items[items[i].group].group;
        i = items[i].group;
    }
    return i;
}

static void group_union(label_item *items, int64_t a, int64_t b) {
    a = group_find(items, a);
    b = group_find(items, b);
    if (a < b) items[b].group = a;
    else if (b < a) items[a].group = b;
}

/* Why b looks like a variant of a, or NULL. */
static const char *variant_reason(const label_item *a, const label_item *b, bool edit) {
    if (strcmp(a->key, b->key) == 0)
        return strcasecmp(a->label, b->label) == 0 ? "case" : "spelling/plural";
    if (edit && strlen(a->key) >= 5 && strlen(b->key) >= 5 &&
        same_coded_tokens(a->key, b->key) && !known_distinct(a->key, b->key) &&
        edit_distance(a->key, b->key, 1) <= 1)
        return "one-edit spelling";
    return NULL;
}

/* More uses wins; ties: the spelling met first in the data. */
static bool more_canonical(const label_item *a, const label_item *b) {
    if (a->entry->count != b->entry->count) return a->entry->count > b->entry->count;
    if (a->entry->first.file != b->entry->first.file)
        return a->entry->first.file < b->entry->first.file;
    if (a->entry->first.index != b->entry->first.index)
        return a->entry->first.index < b->entry->first.index;
    return strcmp(a->label, b->label) < 0;
}

/* Labels are grouped (same normalised key, or one edit apart when there are
 * few enough labels for the pairwise pass); each group's most used spelling
 * is canonical and every other spelling is reported once, on the first
 * record that used it. */
static mg_status check_label_variants(mg_data_checker *ck) {
    int64_t n = ck->labels.count;
    if (n < 2) return MG_OK;
    label_item *items = calloc((size_t)n, sizeof *items);
    int64_t *canonical = malloc((size_t)n * sizeof *canonical);
    if (!items || !canonical) {
        free(items);
        free(canonical);
        return mg_error(MG_ERR_NO_MEMORY, "data check: out of memory");
    }
    int64_t k = 0;
    for (int64_t i = 0; i < ck->labels.capacity; i++) {
        if (!ck->labels.keys[i]) continue;
        items[k].label = ck->labels.keys[i];
        items[k].entry = ck->labels.values[i];
        label_key(items[k].label, items[k].key, sizeof items[k].key);
        k++;
    }
    /* sorted by key: equal keys are neighbours (O(n log n) for any n) */
    qsort(items, (size_t)n, sizeof *items, compare_label_keys);
    for (int64_t i = 0; i < n; i++) items[i].group = i;
    for (int64_t i = 1; i < n; i++)
        if (strcmp(items[i].key, items[i - 1].key) == 0) group_union(items, i, i - 1);
    bool edit = n <= MAX_LABELS_FOR_EDIT_DISTANCE;
    for (int64_t i = 0; edit && i < n; i++)
        for (int64_t j = i + 1; j < n; j++)
            if (strcmp(items[i].key, items[j].key) != 0 && variant_reason(&items[i], &items[j], true))
                group_union(items, i, j);
    for (int64_t i = 0; i < n; i++) canonical[i] = -1;
    for (int64_t i = 0; i < n; i++) {
        int64_t g = group_find(items, i);
        if (canonical[g] < 0 || more_canonical(&items[i], &items[canonical[g]])) canonical[g] = i;
    }
    mg_status status = MG_OK;
    for (int64_t i = 0; i < n && status == MG_OK; i++) {
        const label_item *common = &items[canonical[group_find(items, i)]];
        if (common == &items[i]) continue;
        const label_item *rare = &items[i];
        const char *why = variant_reason(common, rare, edit);
        status = add_finding(ck, &rare->entry->first, "label_variant", MG_DATA_WARNING,
                             "label \"%s\" (%lld use%s) looks like a %s variant of \"%s\" (%lld "
                             "use%s)",
                             rare->label, (long long)rare->entry->count,
                             rare->entry->count == 1 ? "" : "s", why ? why : "spelling",
                             common->label, (long long)common->entry->count,
                             common->entry->count == 1 ? "" : "s");
    }
    free(items);
    free(canonical);
    return status;
}

static mg_status check_leakage(mg_data_checker *ck) {
    for (int64_t i = 0; i < ck->cases.capacity; i++) {
        if (!ck->cases.keys[i]) continue;
        case_entry *e = ck->cases.values[i];
        for (int s = 1; s < e->n_splits; s++) {
            const record_ref *first = &e->first[0];
            MG_TRY(add_finding(ck, &e->first[s], "case_leakage", MG_DATA_ERROR,
                               "case \"%s\" is in split \"%s\" and in split \"%s\" (record %lld, "
                               "id \"%s\", %s)",
                               ck->cases.keys[i], ck->splits[e->splits[s]],
                               ck->splits[e->splits[0]], (long long)first->index, first->id,
                               base_name(ck->files[first->file])));
        }
    }
    return MG_OK;
}

static mg_status file_hash(const char *path, uint64_t *out) {
    FILE *f = fopen(path, "rb");
    if (!f) return mg_error(MG_ERR_IO, "%s: cannot open", path);
    uint64_t h = 0;
    char buf[1 << 16];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0) h = mg_hash_bytes(buf, got, h);
    fclose(f);
    *out = h;
    return MG_OK;
}

typedef struct sized_image {
    int64_t size;
    const char *path;
    image_entry *entry;
    uint64_t hash;
} sized_image;

static int compare_sized(const void *pa, const void *pb) {
    const sized_image *a = pa, *b = pb;
    if (a->size != b->size) return a->size < b->size ? -1 : 1;
    if (a->hash != b->hash) return a->hash < b->hash ? -1 : 1;
    if (a->entry->first.file != b->entry->first.file)
        return a->entry->first.file < b->entry->first.file ? -1 : 1;
    return a->entry->first.index < b->entry->first.index ? -1 : (a->entry->first.index > b->entry->first.index);
}

/* Two different image paths with byte-identical files: only files whose
 * sizes collide are read and hashed. */
static mg_status check_duplicate_images(mg_data_checker *ck) {
    int64_t n = 0;
    sized_image *items = calloc((size_t)(ck->images.count ? ck->images.count : 1), sizeof *items);
    if (!items) return mg_error(MG_ERR_NO_MEMORY, "data check: out of memory");
    for (int64_t i = 0; i < ck->images.capacity; i++) {
        image_entry *e = ck->images.values[i];
        if (!ck->images.keys[i] || e->state != 0) continue;
        items[n++] = (sized_image){.size = e->file_size, .path = ck->images.keys[i], .entry = e};
    }
    qsort(items, (size_t)n, sizeof *items, compare_sized);
    mg_status status = MG_OK;
    for (int64_t i = 0; i < n; i++) {
        bool collides = (i > 0 && items[i - 1].size == items[i].size) ||
                        (i + 1 < n && items[i + 1].size == items[i].size);
        if (collides && file_hash(items[i].path, &items[i].hash) != MG_OK) items[i].hash = i;
    }
    qsort(items, (size_t)n, sizeof *items, compare_sized);
    for (int64_t i = 1; i < n && status == MG_OK; i++) {
        if (items[i].size != items[i - 1].size || items[i].hash != items[i - 1].hash ||
            !items[i].hash)
            continue;
        /* the group's first member is the original */
        int64_t g = i - 1;
        while (g > 0 && items[g - 1].size == items[i].size && items[g - 1].hash == items[i].hash)
            g--;
        status = add_finding(ck, &items[i].entry->first, "duplicate_image", MG_DATA_WARNING,
                             "image %s has the same bytes as image %s (first used by record "
                             "%lld, id \"%s\")",
                             items[i].entry->name, items[g].entry->name,
                             (long long)items[g].entry->first.index, items[g].entry->first.id);
    }
    free(items);
    return status;
}

mg_status mg_data_checker_finish(mg_data_checker *checker) {
    if (!checker) return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_data_checker_finish: NULL");
    if (checker->finished) return MG_OK;
    checker->finished = true;
    MG_TRY(check_leakage(checker));
    if (checker->options.check_label_variants) MG_TRY(check_label_variants(checker));
    if (checker->options.check_duplicates && checker->images_dir)
        MG_TRY(check_duplicate_images(checker));
    return MG_OK;
}

/* ------------------------------------------------------------- lifecycle */

void mg_data_check_options_default(mg_data_check_options *options) {
    if (!options) return;
    memset(options, 0, sizeof *options);
    options->min_box_mask_iou = 0.5;
    options->check_label_variants = true;
    options->check_duplicates = true;
}

mg_status mg_data_checker_create(const mg_data_check_options *options, mg_data_checker **out) {
    if (!out) return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_data_checker_create: NULL output");
    *out = NULL;
    mg_data_checker *ck = calloc(1, sizeof *ck);
    if (!ck) return mg_error(MG_ERR_NO_MEMORY, "data check: out of memory");
    if (options) ck->options = *options;
    else mg_data_check_options_default(&ck->options);
    if (ck->options.min_box_mask_iou > 1) {
        double iou = ck->options.min_box_mask_iou;
        free(ck);
        return mg_error(MG_ERR_INVALID_ARGUMENT, "data check: min_box_mask_iou %g is above 1", iou);
    }
    ck->splits = calloc(8, sizeof *ck->splits);
    if (options && options->images_dir) ck->images_dir = copy_string(options->images_dir);
    if (options && options->masks_dir) ck->masks_dir = copy_string(options->masks_dir);
    if (!ck->splits || (options && options->images_dir && !ck->images_dir) ||
        (options && options->masks_dir && !ck->masks_dir)) {
        mg_data_checker_destroy(ck);
        return mg_error(MG_ERR_NO_MEMORY, "data check: out of memory");
    }
    ck->options.images_dir = ck->images_dir;
    ck->options.masks_dir = ck->masks_dir;
    *out = ck;
    return MG_OK;
}

void mg_data_checker_destroy(mg_data_checker *ck) {
    if (!ck) return;
    for (int64_t i = 0; i < ck->n_findings; i++) {
        free(ck->findings[i].record_id);
        free(ck->findings[i].message);
    }
    free(ck->findings);
    for (int64_t i = 0; i < ck->images.capacity; i++) {
        image_entry *e = ck->images.values[i];
        if (!ck->images.keys[i] || !e) continue;
        free(e->message);
        free(e->name);
        ref_free(&e->first);
        free(e);
    }
    for (int64_t i = 0; i < ck->masks.capacity; i++) {
        mask_entry *e = ck->masks.values[i];
        if (!ck->masks.keys[i] || !e) continue;
        free(e->message);
        free(e);
    }
    for (int64_t i = 0; i < ck->labels.capacity; i++) {
        label_entry *e = ck->labels.values[i];
        if (!ck->labels.keys[i] || !e) continue;
        ref_free(&e->first);
        free(e);
    }
    for (int64_t i = 0; i < ck->cases.capacity; i++) {
        case_entry *e = ck->cases.values[i];
        if (!ck->cases.keys[i] || !e) continue;
        for (int s = 0; s < e->n_splits; s++) ref_free(&e->first[s]);
        free(e);
    }
    for (int64_t i = 0; i < ck->duplicates.capacity; i++) {
        dup_entry *e = ck->duplicates.values[i];
        if (!ck->duplicates.keys[i] || !e) continue;
        ref_free(&e->first);
        free(e);
    }
    mg_strmap_free(&ck->images);
    mg_strmap_free(&ck->masks);
    mg_strmap_free(&ck->labels);
    mg_strmap_free(&ck->cases);
    mg_strmap_free(&ck->duplicates);
    mg_strmap_free(&ck->task_counts);
    for (int i = 0; i < ck->n_files; i++) free(ck->files[i]);
    free(ck->files);
    for (int i = 0; ck->splits && i < ck->n_splits; i++) free(ck->splits[i]);
    free(ck->splits);
    free(ck->images_dir);
    free(ck->masks_dir);
    free(ck);
}

/* ---------------------------------------------------------------- results */

int64_t mg_data_checker_n_findings(const mg_data_checker *ck) { return ck ? ck->n_findings : 0; }
int64_t mg_data_checker_n_records(const mg_data_checker *ck) { return ck ? ck->n_records : 0; }

int64_t mg_data_checker_count(const mg_data_checker *ck, mg_data_severity severity) {
    if (!ck || severity < MG_DATA_INFO || severity > MG_DATA_ERROR) return 0;
    return ck->counts[severity];
}

mg_status mg_data_checker_finding(const mg_data_checker *ck, int64_t index, mg_data_finding *out) {
    if (!ck || !out) return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_data_checker_finding: NULL");
    if (index < 0 || index >= ck->n_findings)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "finding %lld out of range (%lld findings)",
                        (long long)index, (long long)ck->n_findings);
    const stored_finding *f = &ck->findings[index];
    out->file = f->file >= 0 && f->file < ck->n_files ? ck->files[f->file] : "";
    out->line = f->line;
    out->index = f->index;
    out->record_id = f->record_id;
    out->code = f->code;
    out->severity = f->severity;
    out->message = f->message;
    return MG_OK;
}

/* Length of the well-formed UTF-8 sequence at p (RFC 3629: no overlongs,
 * no surrogates, <= U+10FFFF), 0 when it is not one. */
static int utf8_sequence(const unsigned char *p) {
    unsigned char c = p[0];
    if (c < 0x80) return 1;
    int n;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        return 0;
    }
    if (p[1] < lo || p[1] > hi) return 0;
    for (int i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xBF) return 0; /* also stops at the NUL */
    return n;
}

static void utf8_sanitize(char *text) {
    unsigned char *p = (unsigned char *)text;
    while (*p) {
        int n = utf8_sequence(p);
        if (n == 0) {
            *p++ = '?';
        } else {
            p += n;
        }
    }
}

static const char *severity_name(mg_data_severity s) {
    return s == MG_DATA_ERROR ? "error" : s == MG_DATA_WARNING ? "warning" : "info";
}

static int compare_findings(const void *pa, const void *pb) {
    const stored_finding *a = *(const stored_finding *const *)pa;
    const stored_finding *b = *(const stored_finding *const *)pb;
    if (a->file != b->file) return a->file < b->file ? -1 : 1;
    if (a->index != b->index) return a->index < b->index ? -1 : 1;
    return a < b ? -1 : (a > b);
}

mg_status mg_data_checker_report_json(const mg_data_checker *ck, char **json) {
    if (!ck || !json) return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_data_checker_report_json: NULL");
    *json = NULL;
    cJSON *root = cJSON_CreateObject();
    if (!root) return mg_error(MG_ERR_NO_MEMORY, "data check: out of memory");
    cJSON *files = cJSON_AddArrayToObject(root, "files");
    for (int i = 0; files && i < ck->n_files; i++)
        cJSON_AddItemToArray(files, cJSON_CreateString(ck->files[i]));
    cJSON_AddNumberToObject(root, "n_records", (double)ck->n_records);
    cJSON *counts = cJSON_AddObjectToObject(root, "counts");
    if (counts) {
        cJSON_AddNumberToObject(counts, "error", (double)ck->counts[MG_DATA_ERROR]);
        cJSON_AddNumberToObject(counts, "warning", (double)ck->counts[MG_DATA_WARNING]);
        cJSON_AddNumberToObject(counts, "info", (double)ck->counts[MG_DATA_INFO]);
    }
    /* findings in file/record order (cross-record checks are found last) */
    const stored_finding **order = malloc((size_t)(ck->n_findings ? ck->n_findings : 1) *
                                          sizeof *order);
    cJSON *findings = cJSON_AddArrayToObject(root, "findings");
    if (!order || !findings) {
        free(order);
        cJSON_Delete(root);
        return mg_error(MG_ERR_NO_MEMORY, "data check: out of memory");
    }
    for (int64_t i = 0; i < ck->n_findings; i++) order[i] = &ck->findings[i];
    qsort(order, (size_t)ck->n_findings, sizeof *order, compare_findings);
    for (int64_t i = 0; i < ck->n_findings; i++) {
        const stored_finding *f = order[i];
        cJSON *item = cJSON_CreateObject();
        if (!item) break;
        cJSON_AddStringToObject(item, "file", f->file >= 0 && f->file < ck->n_files ? ck->files[f->file] : "");
        cJSON_AddNumberToObject(item, "line", (double)f->line);
        cJSON_AddNumberToObject(item, "index", (double)f->index);
        cJSON_AddStringToObject(item, "id", f->record_id);
        cJSON_AddStringToObject(item, "code", f->code);
        cJSON_AddStringToObject(item, "severity", severity_name(f->severity));
        cJSON_AddStringToObject(item, "message", f->message);
        cJSON_AddItemToArray(findings, item);
    }
    free(order);
    cJSON *stats = cJSON_AddObjectToObject(root, "stats");
    if (stats) {
        cJSON *mt = cJSON_AddObjectToObject(stats, "modality_task");
        for (int64_t i = 0; mt && i < ck->task_counts.capacity; i++) {
            const char *key = ck->task_counts.keys[i];
            if (!key) continue;
            const char *tab = strchr(key, '\t');
            char modality[128];
            size_t m = (size_t)(tab - key) < sizeof modality - 1 ? (size_t)(tab - key) : sizeof modality - 1;
            memcpy(modality, key, m);
            modality[m] = '\0';
            cJSON *per = cJSON_GetObjectItemCaseSensitive(mt, modality);
            if (!per) per = cJSON_AddObjectToObject(mt, modality);
            if (per) cJSON_AddNumberToObject(per, tab + 1, (double)(intptr_t)ck->task_counts.values[i]);
        }
        cJSON *turns = cJSON_AddObjectToObject(stats, "turns");
        for (int t = 0; turns && t <= MAX_TURNS_HISTOGRAM; t++) {
            if (!ck->turn_histogram[t]) continue;
            char key[16];
            snprintf(key, sizeof key, t == MAX_TURNS_HISTOGRAM ? "%d+" : "%d", t);
            cJSON_AddNumberToObject(turns, key, (double)ck->turn_histogram[t]);
        }
        cJSON *boxes = cJSON_AddObjectToObject(stats, "boxes");
        if (boxes) {
            cJSON_AddNumberToObject(boxes, "count", (double)ck->n_boxes);
            cJSON_AddNumberToObject(boxes, "checked_against_masks",
                                    (double)ck->n_boxes_checked_against_masks);
            cJSON_AddNumberToObject(boxes, "mean_width",
                                    ck->n_boxes ? ck->box_width_sum / (double)ck->n_boxes : 0);
            cJSON_AddNumberToObject(boxes, "mean_height",
                                    ck->n_boxes ? ck->box_height_sum / (double)ck->n_boxes : 0);
            cJSON *edges = cJSON_AddArrayToObject(boxes, "area_fraction_upper_edges");
            cJSON *hist = cJSON_AddArrayToObject(boxes, "area_fraction_counts");
            for (int b = 0; edges && hist && b < N_AREA_BINS; b++) {
                cJSON_AddItemToArray(edges, cJSON_CreateNumber(b == N_AREA_BINS - 1 ? 1.0 : area_bin_edges[b]));
                cJSON_AddItemToArray(hist, cJSON_CreateNumber((double)ck->area_histogram[b]));
            }
        }
        cJSON *labels = cJSON_AddObjectToObject(stats, "labels");
        for (int64_t i = 0; labels && i < ck->labels.capacity; i++) {
            if (!ck->labels.keys[i]) continue;
            const label_entry *e = ck->labels.values[i];
            cJSON_AddNumberToObject(labels, ck->labels.keys[i], (double)e->count);
        }
        cJSON *images = cJSON_AddObjectToObject(stats, "images");
        if (images) {
            int64_t missing = 0, unreadable = 0;
            for (int64_t i = 0; i < ck->images.capacity; i++) {
                const image_entry *e = ck->images.values[i];
                if (!ck->images.keys[i]) continue;
                missing += e->state == 1;
                unreadable += e->state == 2;
            }
            cJSON_AddNumberToObject(images, "distinct", (double)ck->images.count);
            cJSON_AddNumberToObject(images, "missing", (double)missing);
            cJSON_AddNumberToObject(images, "unreadable", (double)unreadable);
            cJSON_AddNumberToObject(images, "masks_read", (double)ck->masks.count);
        }
    }
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!text) return mg_error(MG_ERR_NO_MEMORY, "data check: cannot print the report");
    /* Messages, ids and labels quote the input, which need not be UTF-8;
     * cJSON copies such bytes as they are. The report must be valid UTF-8
     * JSON, so every byte outside a well-formed sequence becomes '?'. */
    utf8_sanitize(text);
    /* cJSON allocates with malloc by default, so the caller's free() matches */
    *json = text;
    return MG_OK;
}

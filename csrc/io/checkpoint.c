/* mg_weights_open: one entry point for every checkpoint layout a user
 * downloads — a .safetensors file, a Hugging Face folder (sharded through
 * model.safetensors.index.json, or plain *.safetensors), a .gguf file — plus
 * config.json next to a HF checkpoint, flattened into metadata so models
 * read hyper-parameters from the table instead of hard-coding them.
 * Pickle checkpoints (.bin/.pth/.pdparams) are never executed here: the
 * message points at `medground convert`, whose reader is restricted. */
#include "io/io.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------ file mapping */

/* Weight files are mapped at a 2 MB boundary and advised as huge pages, so
 * the kernel can map the page cache's 2 MB folios with one page-table entry
 * each and, when the file is not cached yet, reads it in as such folios
 * (MADV_HUGEPAGE makes its fault-time readahead 2 MB at a time). The
 * streaming weight reads of decode then walk 2 MB pages instead of 4 KB
 * ones: at full BiRD q4_0 size on Zen 4, 2 threads, decode read 7.2-8.8
 * tok/s from a PMD-mapped file and 5.3-7.5 from the same file cached in
 * 4 KB folios, faster in each of 10 alternating pairs. Kernels or
 * filesystems without this ignore the advice. */
#define MG_MAP_ALIGN ((size_t)2 << 20)

static void *mg_map_aligned(int fd, size_t size) {
    const long page_size = sysconf(_SC_PAGESIZE);
    const size_t page = page_size > 0 ? (size_t)page_size : 4096;
    if (size < 2 * MG_MAP_ALIGN || MG_MAP_ALIGN % page != 0)
        return mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0); /* small files: no 2 MB page to gain */
    /* reserve 2 MB more address space than the file needs, place the file
     * at the reservation's first 2 MB boundary, release the rest */
    const size_t mapped = (size + page - 1) / page * page, reserved = mapped + MG_MAP_ALIGN;
    uint8_t *span = mmap(NULL, reserved, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (span == MAP_FAILED) return mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    uint8_t *at = (uint8_t *)(((uintptr_t)span + MG_MAP_ALIGN - 1) & ~(uintptr_t)(MG_MAP_ALIGN - 1));
    void *data = mmap(at, size, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0);
    if (data == MAP_FAILED) {
        const int saved = errno;
        munmap(span, reserved);
        errno = saved;
        return MAP_FAILED;
    }
    if (at > span) munmap(span, (size_t)(at - span));
    if (span + reserved > at + mapped) munmap(at + mapped, (size_t)(span + reserved - (at + mapped)));
#ifdef MADV_HUGEPAGE
    (void)madvise(data, size, MADV_HUGEPAGE);
#endif
    return data;
}

mg_status mg_mapped_file_open(const char *path, mg_mapped_file **out) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return mg_error(errno == ENOENT ? MG_ERR_NOT_FOUND : MG_ERR_IO, "%s: cannot open: %s", path,
                        strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return mg_error(MG_ERR_IO, "%s: not a regular file", path);
    }
    if (st.st_size == 0) {
        close(fd);
        return mg_error(MG_ERR_FORMAT, "%s: the file is empty", path);
    }
    void *data = mg_map_aligned(fd, (size_t)st.st_size);
    int mmap_errno = errno;
    close(fd); /* the mapping keeps the file alive */
    if (data == MAP_FAILED) return mg_error(MG_ERR_IO, "%s: mmap failed: %s", path, strerror(mmap_errno));
    mg_mapped_file *file = calloc(1, sizeof *file);
    size_t n = strlen(path);
    char *copy = malloc(n + 1);
    if (!file || !copy) {
        munmap(data, (size_t)st.st_size);
        free(file);
        free(copy);
        return mg_error(MG_ERR_NO_MEMORY, "%s: out of memory", path);
    }
    memcpy(copy, path, n + 1);
    file->data = data;
    file->size = (size_t)st.st_size;
    file->path = copy;
    *out = file;
    return MG_OK;
}

void mg_mapped_file_release(void *mapped_file) {
    mg_mapped_file *file = mapped_file;
    if (!file) return;
    munmap((void *)file->data, file->size);
    free(file->path);
    free(file);
}

/* Reads a whole (small) text file: caller frees *out. */
static mg_status mg_read_text(const char *path, size_t limit, char **out, size_t *length) {
    mg_mapped_file *file;
    MG_TRY(mg_mapped_file_open(path, &file));
    mg_status status = MG_OK;
    if (file->size > limit) {
        status = mg_error(MG_ERR_FORMAT, "%s: %zu bytes is too large for a JSON file (limit %zu)", path,
                          file->size, limit);
    } else {
        *out = malloc(file->size + 1);
        if (!*out) status = mg_error(MG_ERR_NO_MEMORY, "%s: out of memory", path);
        else {
            memcpy(*out, file->data, file->size);
            (*out)[file->size] = '\0';
            *length = file->size;
        }
    }
    mg_mapped_file_release(file);
    return status;
}

/* ------------------------------------------------------------ config.json */

static mg_status mg_config_array(const char *label, const char *key, const cJSON *array, mg_weights *weights) {
    int n = cJSON_GetArraySize(array);
    bool all_numbers = true, all_integers = true, all_strings = true;
    for (const cJSON *item = array->child; item; item = item->next) {
        if (cJSON_IsNumber(item)) {
            all_strings = false;
            double v = item->valuedouble;
            if (!(isfinite(v) && v == floor(v) && fabs(v) < 9007199254740992.0)) all_integers = false;
        } else if (cJSON_IsBool(item)) {
            all_strings = false;
        } else if (cJSON_IsString(item)) {
            all_numbers = false;
        } else {
            return MG_OK; /* nested objects/arrays/nulls: not a hyper-parameter a model reads */
        }
    }
    if (n == 0) return mg_weights_set_array(weights, key, MG_VALUE_I64, 0, NULL);
    if (all_strings) {
        const char **strings = malloc((size_t)n * sizeof *strings);
        if (!strings) return mg_error(MG_ERR_NO_MEMORY, "%s: %s: out of memory", label, key);
        int i = 0;
        for (const cJSON *item = array->child; item; item = item->next) strings[i++] = item->valuestring;
        mg_status status = mg_weights_set_string_array(weights, key, n, strings, NULL);
        free(strings);
        return status;
    }
    /* strings mixed with numbers: not a hyper-parameter either (casting a
     * string's 0 or a huge double to int64 was undefined; found by fuzzing).
     * Bools among numbers count as 0/1 of whichever type the numbers need. */
    if (!all_numbers) return MG_OK;
    void *values = malloc((size_t)n * 8);
    if (!values) return mg_error(MG_ERR_NO_MEMORY, "%s: %s: out of memory", label, key);
    int i = 0;
    for (const cJSON *item = array->child; item; item = item->next, i++) {
        double v = cJSON_IsBool(item) ? (cJSON_IsTrue(item) ? 1.0 : 0.0) : item->valuedouble;
        if (all_integers) ((int64_t *)values)[i] = (int64_t)v;
        else ((double *)values)[i] = v;
    }
    mg_status status = mg_weights_set_array(weights, key, all_integers ? MG_VALUE_I64 : MG_VALUE_F64, n, values);
    free(values);
    return status;
}

static mg_status mg_config_flatten(const char *label, const char *prefix, const cJSON *object, int depth,
                                   mg_weights *weights) {
    if (depth > 16) return mg_error(MG_ERR_FORMAT, "%s: %s: objects nested deeper than 16 levels", label, prefix);
    for (const cJSON *item = object->child; item; item = item->next) {
        char key[1024];
        if ((size_t)snprintf(key, sizeof key, "%s.%s", prefix, item->string) >= sizeof key) continue;
        if (cJSON_IsObject(item)) {
            MG_TRY(mg_config_flatten(label, key, item, depth + 1, weights));
        } else if (cJSON_IsBool(item)) {
            MG_TRY(mg_weights_set_int_typed(weights, key, MG_VALUE_BOOL, cJSON_IsTrue(item)));
        } else if (cJSON_IsNumber(item)) {
            /* cJSON keeps only a double; integral values within 2^53 are ints
             * (get_float accepts them too, so 1e4 written as 10000.0 still reads). */
            double v = item->valuedouble;
            if (isfinite(v) && v == floor(v) && fabs(v) < 9007199254740992.0)
                MG_TRY(mg_weights_set_int(weights, key, (int64_t)v));
            else MG_TRY(mg_weights_set_float(weights, key, v));
        } else if (cJSON_IsString(item)) {
            MG_TRY(mg_weights_set_string(weights, key, item->valuestring));
        } else if (cJSON_IsArray(item)) {
            MG_TRY(mg_config_array(label, key, item, weights));
        }
    }
    return MG_OK;
}

mg_status mg_config_json_parse(const char *text, size_t length, const char *label, const char *prefix,
                               mg_weights *weights) {
    cJSON *root = cJSON_ParseWithLength(text, length);
    if (!root) return mg_error(MG_ERR_FORMAT, "%s: not valid JSON", label);
    mg_status status = cJSON_IsObject(root) ? mg_config_flatten(label, prefix, root, 0, weights)
                                            : mg_error(MG_ERR_FORMAT, "%s: not a JSON object", label);
    cJSON_Delete(root);
    return status;
}

static mg_status mg_config_load_if_present(const char *folder, mg_weights *weights) {
    char path[PATH_MAX];
    if ((size_t)snprintf(path, sizeof path, "%s/config.json", folder) >= sizeof path) return MG_OK;
    if (access(path, F_OK) != 0) return MG_OK;
    char *text;
    size_t length;
    MG_TRY(mg_read_text(path, 16u << 20, &text, &length));
    mg_status status = mg_config_json_parse(text, length, path, "config", weights);
    free(text);
    return status;
}

/* ------------------------------------------------------------- folders */

static bool mg_has_suffix(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static bool mg_is_directory(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static mg_status mg_join(char *out, size_t size, const char *folder, const char *name) {
    if ((size_t)snprintf(out, size, "%s/%s", folder, name) >= size)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "%s/%s: path too long", folder, name);
    return MG_OK;
}

/* A shard name from an index must stay inside the checkpoint folder. */
static bool mg_safe_shard_name(const char *name) {
    if (!*name || name[0] == '/') return false;
    for (const char *p = name; *p;) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        if ((n == 2 && p[0] == '.' && p[1] == '.') || n == 0) return false;
        p += n + (slash ? 1 : 0);
    }
    return true;
}

static mg_status mg_open_index(const char *index_path, const char *folder, mg_weights *weights) {
    char *text;
    size_t length;
    MG_TRY(mg_read_text(index_path, 64u << 20, &text, &length));
    cJSON *root = cJSON_ParseWithLength(text, length);
    free(text);
    if (!root) return mg_error(MG_ERR_FORMAT, "%s: not valid JSON", index_path);
    mg_status status = MG_OK;
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    const char **shards = NULL;
    int n_shards = 0;
    if (!cJSON_IsObject(map)) {
        status = mg_error(MG_ERR_FORMAT, "%s: no \"weight_map\" object", index_path);
        goto done;
    }
    int n_names = cJSON_GetArraySize(map);
    shards = malloc(((size_t)n_names + 1) * sizeof *shards);
    if (!shards) {
        status = mg_error(MG_ERR_NO_MEMORY, "%s: out of memory", index_path);
        goto done;
    }
    for (const cJSON *item = map->child; item; item = item->next) {
        if (!cJSON_IsString(item)) {
            status = mg_error(MG_ERR_FORMAT, "%s: weight_map entry for %s is not a file name", index_path,
                              item->string);
            goto done;
        }
        if (!mg_safe_shard_name(item->valuestring)) {
            status = mg_error(MG_ERR_FORMAT, "%s: shard name \"%s\" (for tensor %s) leaves the folder", index_path,
                              item->valuestring, item->string);
            goto done;
        }
        bool seen = false;
        for (int i = n_shards - 1; i >= 0 && !seen; i--) seen = strcmp(shards[i], item->valuestring) == 0;
        if (!seen) shards[n_shards++] = item->valuestring;
    }
    /* every shard must exist before anything is mapped: name the missing one */
    for (int i = 0; i < n_shards; i++) {
        char path[PATH_MAX];
        status = mg_join(path, sizeof path, folder, shards[i]);
        if (status != MG_OK) goto done;
        if (access(path, F_OK) != 0) {
            const char *example = "";
            for (const cJSON *item = map->child; item; item = item->next)
                if (strcmp(item->valuestring, shards[i]) == 0) {
                    example = item->string;
                    break;
                }
            status = mg_error(MG_ERR_NOT_FOUND, "%s: shard %s (holding %s, ...) is missing from %s", index_path,
                              shards[i], example, folder);
            goto done;
        }
    }
    for (int i = 0; i < n_shards && status == MG_OK; i++) {
        char path[PATH_MAX];
        status = mg_join(path, sizeof path, folder, shards[i]);
        if (status == MG_OK) status = mg_safetensors_load(path, weights);
    }
    for (const cJSON *item = map->child; item && status == MG_OK; item = item->next)
        if (!mg_weights_has(weights, item->string))
            status = mg_error(MG_ERR_FORMAT, "%s: tensor %s is listed for shard %s but that shard lacks it",
                              index_path, item->string, item->valuestring);
    const cJSON *metadata = cJSON_GetObjectItemCaseSensitive(root, "metadata");
    const cJSON *total = cJSON_IsObject(metadata) ? cJSON_GetObjectItemCaseSensitive(metadata, "total_size") : NULL;
    if (status == MG_OK && cJSON_IsNumber(total))
        status = mg_weights_set_int(weights, "safetensors.total_size", (int64_t)total->valuedouble);
done:
    free(shards);
    cJSON_Delete(root);
    return status;
}

static int mg_compare_strings(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static mg_status mg_open_folder(const char *folder, mg_weights *weights) {
    char path[PATH_MAX];
    MG_TRY(mg_join(path, sizeof path, folder, "model.safetensors.index.json"));
    if (access(path, F_OK) == 0) return mg_open_index(path, folder, weights);

    DIR *dir = opendir(folder);
    if (!dir) return mg_error(MG_ERR_IO, "%s: cannot list the folder: %s", folder, strerror(errno));
    char **safetensors = NULL, *gguf = NULL, *pickle = NULL;
    size_t n_safetensors = 0, capacity = 0;
    int n_gguf = 0;
    mg_status status = MG_OK;
    for (struct dirent *entry; (entry = readdir(dir)) != NULL && status == MG_OK;) {
        const char *name = entry->d_name;
        if (mg_has_suffix(name, ".safetensors")) {
            if (n_safetensors == capacity) {
                capacity = capacity ? capacity * 2 : 8;
                char **grown = realloc(safetensors, capacity * sizeof *grown);
                if (!grown) {
                    status = mg_error(MG_ERR_NO_MEMORY, "%s: out of memory", folder);
                    break;
                }
                safetensors = grown;
            }
            safetensors[n_safetensors] = strdup(name);
            if (!safetensors[n_safetensors]) status = mg_error(MG_ERR_NO_MEMORY, "%s: out of memory", folder);
            else n_safetensors++;
        } else if (mg_has_suffix(name, ".gguf")) {
            n_gguf++;
            free(gguf);
            gguf = strdup(name);
        } else if (!pickle && (mg_has_suffix(name, ".bin") || mg_has_suffix(name, ".pth") ||
                               mg_has_suffix(name, ".pt") || mg_has_suffix(name, ".pdparams"))) {
            pickle = strdup(name);
        }
    }
    closedir(dir);
    if (status != MG_OK) goto done;
    if (n_safetensors > 0) {
        /* no index: every file is part of the checkpoint, in name order (HF's
         * shard names sort in shard order) */
        qsort(safetensors, n_safetensors, sizeof *safetensors, mg_compare_strings);
        for (size_t i = 0; i < n_safetensors && status == MG_OK; i++) {
            status = mg_join(path, sizeof path, folder, safetensors[i]);
            if (status == MG_OK) status = mg_safetensors_load(path, weights);
        }
    } else if (n_gguf == 1) {
        status = mg_join(path, sizeof path, folder, gguf);
        if (status == MG_OK) status = mg_gguf_load(path, weights);
    } else if (n_gguf > 1) {
        status = mg_error(MG_ERR_INVALID_ARGUMENT, "%s: %d .gguf files; pass the one to open", folder, n_gguf);
    } else if (pickle) {
        status = mg_error(MG_ERR_UNSUPPORTED,
                          "%s: holds a pickle checkpoint (%s); pickles are not loaded directly — run "
                          "`medground convert %s OUT.gguf` (safe reader) and open the GGUF",
                          folder, pickle, folder);
    } else {
        status = mg_error(MG_ERR_NOT_FOUND, "%s: no checkpoint (.safetensors, .gguf) in the folder", folder);
    }
done:
    for (size_t i = 0; i < n_safetensors; i++) free(safetensors[i]);
    free(safetensors);
    free(gguf);
    free(pickle);
    return status;
}

/* ------------------------------------------------------------- dispatch */

static mg_status mg_open_file(const char *path, mg_weights *weights, bool *is_gguf) {
    if (mg_has_suffix(path, ".index.json")) {
        if (mg_has_suffix(path, ".bin.index.json") || mg_has_suffix(path, ".pdparams.index.json"))
            return mg_error(MG_ERR_UNSUPPORTED,
                            "%s: indexes pickle shards; run `medground convert` on the folder and open the GGUF",
                            path);
        char folder[PATH_MAX];
        snprintf(folder, sizeof folder, "%s", path);
        char *slash = strrchr(folder, '/');
        if (slash) *slash = '\0';
        else snprintf(folder, sizeof folder, ".");
        return mg_open_index(path, folder, weights);
    }
    /* decide by content, not by name: the first bytes tell GGUF, zip and
     * pickle apart; everything else must be safetensors. A safetensors file
     * starts with its 8-byte header length, whose low byte can be anything
     * (0x80, 'P'), so a '{' at byte 8 settles it first. */
    uint8_t head[9] = {0};
    FILE *file = fopen(path, "rb");
    if (!file) return mg_error(MG_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t n = fread(head, 1, sizeof head, file);
    fclose(file);
    bool safetensors_like = n == 9 && head[8] == '{';
    if ((n >= 4 && memcmp(head, "GGUF", 4) == 0) || (!safetensors_like && mg_has_suffix(path, ".gguf"))) {
        *is_gguf = true; /* self-contained: its own metadata holds the config */
        return mg_gguf_load(path, weights);
    }
    bool zip = n >= 4 && memcmp(head, "PK\x03\x04", 4) == 0;
    bool pickle = n >= 2 && head[0] == 0x80 && head[1] >= 2 && head[1] <= 5;
    if (!safetensors_like && (zip || pickle))
        return mg_error(MG_ERR_UNSUPPORTED,
                        "%s: a PyTorch/Paddle pickle checkpoint; it is not loaded directly — run `medground "
                        "convert %s OUT.gguf` (safe reader) and open the GGUF",
                        path, path);
    return mg_safetensors_load(path, weights);
}

mg_status mg_weights_open(const char *path, mg_weights **out) {
    if (!out) return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_weights_open: out is NULL");
    *out = NULL;
    if (!path || !*path) return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_weights_open: empty path");
    struct stat st;
    if (stat(path, &st) != 0)
        return mg_error(errno == ENOENT ? MG_ERR_NOT_FOUND : MG_ERR_IO, "%s: %s", path, strerror(errno));
    mg_weights *weights;
    MG_TRY(mg_weights_create(&weights));
    mg_status status;
    if (S_ISDIR(st.st_mode)) {
        status = mg_open_folder(path, weights);
        if (status == MG_OK) status = mg_config_load_if_present(path, weights);
    } else {
        bool is_gguf = false;
        status = mg_open_file(path, weights, &is_gguf);
        if (status == MG_OK && !is_gguf) {
            char folder[PATH_MAX];
            snprintf(folder, sizeof folder, "%s", path);
            char *slash = strrchr(folder, '/');
            if (slash) *slash = '\0';
            else snprintf(folder, sizeof folder, ".");
            if (mg_is_directory(folder)) status = mg_config_load_if_present(folder, weights);
        }
    }
    if (status != MG_OK) {
        mg_weights_destroy(weights);
        return status;
    }
    *out = weights;
    return MG_OK;
}

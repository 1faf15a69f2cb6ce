/* Checkpoint I/O: safetensors and GGUF parsing of hand-built byte images
 * (laid out from the format specifications, not by our writer), the GGUF
 * writer read back, folders with an index, and every corruption we promise
 * to name. Cross-checks against the PyPI `safetensors` and `gguf` packages
 * live in tests/test_checkpoint*.py. */
#include <math.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/io.h"
#include "mg_test.h"

static char tmp_dir[256];

/* safetensors image: 8-byte LE header length, the header, then data. */
static size_t make_safetensors(uint8_t *out, const char *header, const void *data, size_t data_size) {
    uint64_t n = strlen(header);
    for (int i = 0; i < 8; i++) out[i] = (uint8_t)(n >> (8 * i));
    memcpy(out + 8, header, n);
    memcpy(out + 8 + n, data, data_size);
    return 8 + n + data_size;
}

static mg_status parse_st(const char *header, const void *data, size_t data_size, mg_weights **out) {
    static uint8_t image[1 << 14];
    size_t size = make_safetensors(image, header, data, data_size);
    MG_TRY(mg_weights_create(out));
    return mg_safetensors_parse(image, size, "mem.safetensors", *out);
}

static void test_safetensors_valid(void) {
    /* two f32 and a bf16 tensor; header padded with spaces as the reference
     * writer does (so the data starts 8-byte aligned) */
    float a[6] = {1, 2, 3, 4, 5, 6};
    uint16_t b[2] = {0x3f80, 0xc000}; /* bf16 1.0, -2.0 */
    uint8_t data[32];
    memcpy(data, a, 24);
    memcpy(data + 24, b, 4);
    static uint8_t image[1024];
    const char *header = "{\"__metadata__\":{\"format\":\"pt\"},"
                         "\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
                         "\"b\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[24,28]},"
                         "\"s\":{\"dtype\":\"BF16\",\"shape\":[],\"data_offsets\":[28,30]}}";
    char padded[512];
    size_t n = strlen(header);
    memcpy(padded, header, n);
    while ((8 + n) % 8) padded[n++] = ' ';
    padded[n] = '\0';
    size_t size = make_safetensors(image, padded, data, 32);
    mg_weights *w;
    CHECK_OK(mg_weights_create(&w));
    CHECK_OK(mg_safetensors_parse(image, size, "mem", w));
    CHECK(mg_weights_count(w) == 3);
    CHECK(strcmp(mg_weights_name(w, 0), "w") == 0);
    mg_tensor t;
    CHECK_OK(mg_weights_get(w, "w", &t));
    CHECK(t.dtype == MG_F32 && t.n_dims == 2 && t.shape[0] == 2 && t.shape[1] == 3);
    CHECK(((float *)t.data)[5] == 6.0f);
    CHECK((uint8_t *)t.data == image + 8 + n); /* zero copy */
    CHECK_OK(mg_weights_get(w, "b", &t));
    CHECK(t.dtype == MG_BF16 && mg_bf16_to_f32(((uint16_t *)t.data)[1]) == -2.0f);
    CHECK_OK(mg_weights_get(w, "s", &t));
    CHECK(t.n_dims == 0);
    const char *format;
    CHECK_OK(mg_weights_get_string(w, "safetensors.format", &format));
    CHECK(strcmp(format, "pt") == 0);
    mg_weights_destroy(w);

    /* a misaligned f32 tensor gets an aligned private copy */
    uint8_t odd[12] = {0xAA};
    float v = 2.5f;
    memcpy(odd + 1, &v, 4);
    CHECK_OK(parse_st("{\"p\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                      "\"q\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[1,5]}}",
                      odd, 5, &w));
    CHECK_OK(mg_weights_get(w, "q", &t));
    CHECK((uintptr_t)t.data % 4 == 0 && ((float *)t.data)[0] == 2.5f);
    mg_weights_destroy(w);
}

static void expect_st_error(const char *header, size_t data_size, mg_status status, const char *fragment) {
    static const uint8_t zeros[256];
    mg_weights *w;
    CHECK_STATUS(parse_st(header, zeros, data_size, &w), status);
    CHECK_MESSAGE(fragment);
    CHECK_MESSAGE("mem.safetensors");
    mg_weights_destroy(w);
}

static void test_safetensors_corrupt(void) {
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                    12, MG_ERR_FORMAT, "overlap");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, MG_ERR_FORMAT,
                    "outside the data buffer");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, MG_ERR_FORMAT,
                    "needs 12");
    expect_st_error("{\"a\":{\"dtype\":\"F33\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, MG_ERR_DTYPE,
                    "\"F33\"");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, MG_ERR_FORMAT,
                    "non-negative integer");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,8]}}", 8, MG_ERR_FORMAT,
                    "tensor a");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                    "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
                    16, MG_ERR_FORMAT, "appears twice");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, MG_ERR_FORMAT, "data_offsets");
    expect_st_error("[1, 2]", 0, MG_ERR_FORMAT, "not a JSON object");
    expect_st_error("{\"a\":", 0, MG_ERR_FORMAT, "not valid JSON");
    expect_st_error("{\"__metadata__\":{\"k\":3}}", 0, MG_ERR_FORMAT, "__metadata__");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,1,1,1,1,3],\"data_offsets\":[0,24]}}", 24,
                    MG_ERR_UNSUPPORTED, "6 dimensions");

    /* header length beyond the file; too short to hold the length */
    uint8_t image[16] = {0xff, 0xff, 0, 0, 0, 0, 0, 0, '{', '}'};
    mg_weights *w;
    CHECK_OK(mg_weights_create(&w));
    CHECK_STATUS(mg_safetensors_parse(image, 10, "cut.safetensors", w), MG_ERR_FORMAT);
    CHECK_MESSAGE("cut.safetensors");
    CHECK_MESSAGE("past the end");
    CHECK_STATUS(mg_safetensors_parse(image, 5, "cut.safetensors", w), MG_ERR_FORMAT);
    mg_weights_destroy(w);

    /* leading size-1 dims beyond 4 are dropped, zero-size tensors skipped */
    float six[6] = {0};
    CHECK_OK(parse_st("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,2,3],\"data_offsets\":[0,24]},"
                      "\"z\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[24,24]}}",
                      six, 24, &w));
    mg_tensor t;
    CHECK_OK(mg_weights_get(w, "a", &t));
    CHECK(t.n_dims == 4 && t.shape[2] == 2 && t.shape[3] == 3);
    CHECK(!mg_weights_has(w, "z"));
    mg_weights_destroy(w);
}

/* ---------------------------------------------------------------- GGUF */

/* Hand-assembled GGUF v3 image (ggml docs/gguf.md), independent of the writer. */
typedef struct {
    uint8_t bytes[4096];
    size_t n;
} buffer;
static void put(buffer *b, const void *p, size_t n) {
    memcpy(b->bytes + b->n, p, n);
    b->n += n;
}
static void put_u32(buffer *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(buffer *b, uint64_t v) { put(b, &v, 8); }
static void put_str(buffer *b, const char *s) {
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}

static size_t make_gguf(buffer *b, uint64_t tensor_offset, uint32_t alignment_override) {
    b->n = 0;
    put_u32(b, 0x46554747u);
    put_u32(b, 3);
    put_u64(b, 1);                            /* tensors */
    put_u64(b, alignment_override ? 5 : 4);   /* key/values */
    put_str(b, "general.architecture");
    put_u32(b, MG_VALUE_STRING);
    put_str(b, "bird");
    put_str(b, "bird.hidden_size");
    put_u32(b, MG_VALUE_U32);
    put_u32(b, 4096);
    put_str(b, "bird.eps");
    put_u32(b, MG_VALUE_F32);
    float eps = 1e-6f;
    put(b, &eps, 4);
    put_str(b, "tok.vocab");
    put_u32(b, MG_VALUE_ARRAY);
    put_u32(b, MG_VALUE_STRING);
    put_u64(b, 3);
    put_str(b, "a");
    put_u64(b, 2);
    put(b, "\0b", 2); /* a NUL inside a token */
    put_str(b, "");
    if (alignment_override) {
        put_str(b, "general.alignment");
        put_u32(b, MG_VALUE_U32);
        put_u32(b, alignment_override);
    }
    put_str(b, "w");
    put_u32(b, 2);
    put_u64(b, 3); /* innermost first: shape [2, 3] */
    put_u64(b, 2);
    put_u32(b, MG_F32);
    put_u64(b, tensor_offset);
    uint32_t alignment = alignment_override ? alignment_override : 32;
    while (b->n % alignment) b->bytes[b->n++] = 0;
    for (int i = 0; i < 6; i++) {
        float v = (float)i + 0.5f;
        put(b, &v, 4);
    }
    return b->n;
}

static void test_gguf_hand_built(void) {
    static buffer b;
    size_t size = make_gguf(&b, 0, 0);
    mg_weights *w;
    CHECK_OK(mg_weights_create(&w));
    CHECK_OK(mg_gguf_parse(b.bytes, size, "hand.gguf", w));
    mg_tensor t;
    CHECK_OK(mg_weights_get(w, "w", &t));
    CHECK(t.n_dims == 2 && t.shape[0] == 2 && t.shape[1] == 3 && ((float *)t.data)[4] == 4.5f);
    int64_t hidden;
    CHECK_OK(mg_weights_get_int(w, "bird.hidden_size", &hidden));
    CHECK(hidden == 4096);
    CHECK_OK(mg_weights_get_int(w, "config.hidden_size", &hidden)); /* architecture alias */
    CHECK(hidden == 4096);
    double eps;
    CHECK_OK(mg_weights_get_float(w, "config.eps", &eps));
    CHECK(fabs(eps - 1e-6) < 1e-12);
    mg_value_type type, element;
    CHECK_OK(mg_weights_meta_type(w, "bird.hidden_size", &type, NULL));
    CHECK(type == MG_VALUE_U32);
    int64_t length;
    const void *data;
    CHECK_OK(mg_weights_get_array(w, "tok.vocab", &element, &length, &data));
    CHECK(element == MG_VALUE_STRING && length == 3 && data == NULL);
    const char *s;
    size_t s_length;
    CHECK_OK(mg_weights_get_array_string(w, "tok.vocab", 1, &s, &s_length));
    CHECK(s_length == 2 && s[0] == '\0' && s[1] == 'b');
    CHECK_STATUS(mg_weights_get_array_string(w, "tok.vocab", 3, &s, &s_length), MG_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mg_weights_get_int(w, "general.architecture", &hidden), MG_ERR_DTYPE);
    mg_weights_destroy(w);

    /* alignment 64 */
    size = make_gguf(&b, 0, 64);
    CHECK_OK(mg_weights_create(&w));
    CHECK_OK(mg_gguf_parse(b.bytes, size, "hand.gguf", w));
    CHECK_OK(mg_weights_get(w, "w", &t));
    CHECK((size_t)((uint8_t *)t.data - b.bytes) % 64 == 0);
    mg_weights_destroy(w);

    /* corruptions: every truncation point fails cleanly and names the file */
    size = make_gguf(&b, 0, 0);
    for (size_t cut = 0; cut < size; cut++) {
        CHECK_OK(mg_weights_create(&w));
        mg_status status = mg_gguf_parse(b.bytes, cut, "cut.gguf", w);
        CHECK(status != MG_OK);
        CHECK_MESSAGE("cut.gguf");
        mg_weights_destroy(w);
    }
    struct {
        uint64_t offset;
        uint32_t alignment;
        const char *fragment;
    } cases[] = {{4, 0, "not a multiple of the alignment"}, {32, 0, "past the end"}, {0, 48, "power of two"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size = make_gguf(&b, cases[i].offset, cases[i].alignment == 48 ? 0 : cases[i].alignment);
        if (cases[i].alignment == 48) { /* patch the alignment value in place */
            size = make_gguf(&b, 0, 64);
            for (size_t p = 0; p + 4 < size; p++) {
                uint32_t v;
                memcpy(&v, b.bytes + p, 4);
                if (v == 64 && p > 200) {
                    uint32_t bad = 48;
                    memcpy(b.bytes + p, &bad, 4);
                    break;
                }
            }
        }
        CHECK_OK(mg_weights_create(&w));
        CHECK_STATUS(mg_gguf_parse(b.bytes, size, "bad.gguf", w), MG_ERR_FORMAT);
        CHECK_MESSAGE(cases[i].fragment);
        mg_weights_destroy(w);
    }
    /* a huge string length */
    size = make_gguf(&b, 0, 0);
    uint64_t huge = (uint64_t)1 << 62;
    memcpy(b.bytes + 24, &huge, 8); /* length of the first key */
    CHECK_OK(mg_weights_create(&w));
    CHECK_STATUS(mg_gguf_parse(b.bytes, size, "bad.gguf", w), MG_ERR_FORMAT);
    CHECK_MESSAGE("metadata key #0");
    mg_weights_destroy(w);
    /* an unsupported ggml type (Q4_1 = 3) */
    size = make_gguf(&b, 0, 0);
    for (size_t p = 0; p + 12 < size; p++) {
        uint32_t v;
        uint64_t off;
        memcpy(&v, b.bytes + p, 4);
        memcpy(&off, b.bytes + p + 4, 8);
        if (v == MG_F32 && off == 0 && p > 150 && b.bytes[p - 8] == 2) {
            uint32_t q41 = 3;
            memcpy(b.bytes + p, &q41, 4);
            break;
        }
    }
    CHECK_OK(mg_weights_create(&w));
    CHECK_STATUS(mg_gguf_parse(b.bytes, size, "bad.gguf", w), MG_ERR_UNSUPPORTED);
    CHECK_MESSAGE("tensor w: ggml type 3");
    mg_weights_destroy(w);
}

static void test_gguf_writer_round_trip(void) {
    char path[300];
    snprintf(path, sizeof path, "%s/out.gguf", tmp_dir);
    float weight[4][64];
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 64; c++) weight[r][c] = sinf((float)(r * 64 + c) * 0.1f);
    int64_t ids[3] = {-1, 1LL << 40, 7};
    mg_tensor w_t, ids_t, transposed;
    CHECK_OK(mg_tensor_init(&w_t, weight, MG_F32, 2, (int64_t[]){4, 64}));
    CHECK_OK(mg_tensor_init(&ids_t, ids, MG_I64, 1, (int64_t[]){3}));
    CHECK_OK(mg_tensor_permute(&w_t, (int[]){1, 0}, &transposed));

    mg_gguf_writer *writer;
    CHECK_OK(mg_gguf_writer_open(path, &writer));
    CHECK_OK(mg_gguf_writer_add_string(writer, "general.architecture", "medplib", 7));
    CHECK_OK(mg_gguf_writer_add_int(writer, "general.alignment", MG_VALUE_U32, 64));
    CHECK_OK(mg_gguf_writer_add_int(writer, "medplib.flag", MG_VALUE_BOOL, 1));
    CHECK_OK(mg_gguf_writer_add_float(writer, "medplib.theta", MG_VALUE_F64, 10000.5));
    CHECK_OK(mg_gguf_writer_add_array(writer, "medplib.experts", MG_VALUE_I32, 3, (int32_t[]){2, 2, 3}));
    CHECK_OK(mg_gguf_writer_add_string_array(writer, "tok", 2, (const char *[]){"x", "yz"}, NULL));
    CHECK_STATUS(mg_gguf_writer_add_int(writer, "tok", MG_VALUE_I32, 1), MG_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("added twice");
    CHECK_OK(mg_gguf_writer_add_tensor_info(writer, "q8", MG_Q8_0, 2, (int64_t[]){4, 64}));
    CHECK_OK(mg_gguf_writer_add_tensor_info(writer, "q4", MG_Q4_0, 2, (int64_t[]){4, 64}));
    CHECK_OK(mg_gguf_writer_add_tensor_info(writer, "t16", MG_F16, 2, (int64_t[]){64, 4}));
    CHECK_OK(mg_gguf_writer_add_tensor_info(writer, "ids", MG_I64, 1, (int64_t[]){3}));
    CHECK_STATUS(mg_gguf_writer_add_tensor_info(writer, "bad", MG_Q8_0, 1, (int64_t[]){33}), MG_ERR_SHAPE);
    CHECK_MESSAGE("tensor bad");
    CHECK_STATUS(mg_gguf_writer_write_tensor(writer, "q4", &w_t), MG_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("out of order");
    CHECK_OK(mg_gguf_writer_write_tensor(writer, "q8", &w_t));
    CHECK_OK(mg_gguf_writer_write_tensor(writer, "q4", &w_t));
    CHECK_OK(mg_gguf_writer_write_tensor(writer, "t16", &transposed));
    CHECK_STATUS(mg_gguf_writer_finish(writer), MG_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("next missing: ids");
    CHECK_OK(mg_gguf_writer_write_tensor(writer, "ids", &ids_t));
    CHECK_OK(mg_gguf_writer_finish(writer));
    mg_gguf_writer_destroy(writer);

    mg_weights *w;
    CHECK_OK(mg_weights_open(path, &w));
    mg_tensor t;
    CHECK_OK(mg_weights_get(w, "q8", &t));
    CHECK(t.dtype == MG_Q8_0 && t.shape[0] == 4 && t.shape[1] == 64);
    CHECK((uintptr_t)t.data % 64 == 0);
    mg_block_q8_0 expected[8];
    CHECK_OK(mg_quantize_row(MG_Q8_0, &weight[0][0], expected, 256));
    CHECK(memcmp(t.data, expected, sizeof expected) == 0);
    CHECK_OK(mg_weights_get(w, "t16", &t));
    CHECK(t.dtype == MG_F16 && t.shape[0] == 64 && t.shape[1] == 4);
    CHECK(mg_f16_to_f32(((uint16_t *)t.data)[1 * 4 + 2]) == mg_f16_to_f32(mg_f32_to_f16(weight[2][1])));
    CHECK_OK(mg_weights_get(w, "ids", &t));
    CHECK(((int64_t *)t.data)[1] == (1LL << 40) && ((int64_t *)t.data)[0] == -1);
    int64_t flag;
    CHECK_OK(mg_weights_get_int(w, "config.flag", &flag));
    CHECK(flag == 1);
    double theta;
    CHECK_OK(mg_weights_get_float(w, "medplib.theta", &theta));
    CHECK(theta == 10000.5);
    mg_value_type element;
    int64_t length;
    const void *data;
    CHECK_OK(mg_weights_get_array(w, "medplib.experts", &element, &length, &data));
    CHECK(element == MG_VALUE_I32 && length == 3 && ((const int32_t *)data)[2] == 3);

    /* GGUF -> GGUF copy keeps metadata types */
    char copy_path[300];
    snprintf(copy_path, sizeof copy_path, "%s/copy.gguf", tmp_dir);
    CHECK_OK(mg_gguf_writer_open(copy_path, &writer));
    CHECK_OK(mg_gguf_writer_add_metadata_from(writer, w));
    CHECK_OK(mg_gguf_writer_finish(writer));
    mg_gguf_writer_destroy(writer);
    mg_weights *copy;
    CHECK_OK(mg_weights_open(copy_path, &copy));
    mg_value_type type;
    CHECK_OK(mg_weights_meta_type(copy, "medplib.flag", &type, NULL));
    CHECK(type == MG_VALUE_BOOL);
    const char *s;
    CHECK_OK(mg_weights_get_array_string(copy, "tok", 1, &s, NULL));
    CHECK(strcmp(s, "yz") == 0);
    mg_weights_destroy(copy);
    mg_weights_destroy(w);

    /* an abandoned writer removes its partial file */
    CHECK_OK(mg_gguf_writer_open(copy_path, &writer));
    CHECK_OK(mg_gguf_writer_add_tensor_info(writer, "x", MG_F32, 1, (int64_t[]){3}));
    mg_gguf_writer_destroy(writer);
    CHECK(access(copy_path, F_OK) != 0);
}

static void write_file(const char *path, const void *bytes, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    fwrite(bytes, 1, n, f);
    fclose(f);
}

static void test_folder(void) {
    char folder[300], path[400];
    snprintf(folder, sizeof folder, "%s/hf", tmp_dir);
    mkdir(folder, 0700);
    static uint8_t image[512];
    float v[2] = {1, 2};
    size_t n = make_safetensors(image, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", v, 8);
    snprintf(path, sizeof path, "%s/model-00001-of-00002.safetensors", folder);
    write_file(path, image, n);
    n = make_safetensors(image, "{\"b\":{\"dtype\":\"F32\",\"shape\":[1,2],\"data_offsets\":[0,8]}}", v, 8);
    snprintf(path, sizeof path, "%s/model-00002-of-00002.safetensors", folder);
    write_file(path, image, n);
    const char *index = "{\"metadata\":{\"total_size\":16},\"weight_map\":{"
                        "\"a\":\"model-00001-of-00002.safetensors\",\"b\":\"model-00002-of-00002.safetensors\"}}";
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", folder);
    write_file(path, index, strlen(index));
    const char *config = "{\"hidden_size\":4096,\"layer_norm_epsilon\":1e-06,\"use_cache\":true,"
                         "\"architectures\":[\"QWenLMHeadModel\"],\"visual\":{\"width\":1664,\"mlp_ratio\":4.9231},"
                         "\"num_experts\":[2,2],\"nothing\":null}";
    snprintf(path, sizeof path, "%s/config.json", folder);
    write_file(path, config, strlen(config));

    mg_weights *w;
    CHECK_OK(mg_weights_open(folder, &w));
    CHECK(mg_weights_count(w) == 2 && mg_weights_has(w, "a") && mg_weights_has(w, "b"));
    int64_t i;
    double f;
    CHECK_OK(mg_weights_get_int(w, "config.hidden_size", &i));
    CHECK(i == 4096);
    CHECK_OK(mg_weights_get_int(w, "config.visual.width", &i));
    CHECK(i == 1664);
    CHECK_OK(mg_weights_get_float(w, "config.visual.mlp_ratio", &f));
    CHECK(f == 4.9231);
    CHECK_OK(mg_weights_get_float(w, "config.layer_norm_epsilon", &f));
    CHECK(f == 1e-6);
    CHECK_OK(mg_weights_get_int(w, "config.use_cache", &i));
    CHECK(i == 1);
    const char *s;
    CHECK_OK(mg_weights_get_array_string(w, "config.architectures", 0, &s, NULL));
    CHECK(strcmp(s, "QWenLMHeadModel") == 0);
    CHECK_STATUS(mg_weights_get_int(w, "config.nothing", &i), MG_ERR_NOT_FOUND);
    mg_weights_destroy(w);

    /* index naming a tensor its shard lacks */
    const char *wrong = "{\"weight_map\":{\"a\":\"model-00001-of-00002.safetensors\","
                        "\"c\":\"model-00002-of-00002.safetensors\"}}";
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", folder);
    write_file(path, wrong, strlen(wrong));
    CHECK_STATUS(mg_weights_open(folder, &w), MG_ERR_FORMAT);
    CHECK_MESSAGE("tensor c is listed for shard model-00002-of-00002.safetensors");
    CHECK(w == NULL);
    /* missing shard */
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", folder);
    write_file(path, index, strlen(index));
    snprintf(path, sizeof path, "%s/model-00002-of-00002.safetensors", folder);
    unlink(path);
    CHECK_STATUS(mg_weights_open(folder, &w), MG_ERR_NOT_FOUND);
    CHECK_MESSAGE("shard model-00002-of-00002.safetensors");
    /* path traversal in a shard name */
    const char *evil = "{\"weight_map\":{\"a\":\"../../etc/passwd\"}}";
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", folder);
    write_file(path, evil, strlen(evil));
    CHECK_STATUS(mg_weights_open(folder, &w), MG_ERR_FORMAT);
    CHECK_MESSAGE("leaves the folder");
    /* a pickle is refused with a pointer to convert */
    snprintf(path, sizeof path, "%s/model.pth", tmp_dir);
    write_file(path, "\x80\x02}q\x00.", 6);
    CHECK_STATUS(mg_weights_open(path, &w), MG_ERR_UNSUPPORTED);
    CHECK_MESSAGE("medground convert");
    CHECK_STATUS(mg_weights_open("/nonexistent/model.safetensors", &w), MG_ERR_NOT_FOUND);
    CHECK_MESSAGE("/nonexistent/model.safetensors");
}

/* Regressions: a safetensors header length whose low byte is 0x80 (pickle
 * PROTO) or "PK" (zip) was taken for a pickle; writer int metadata out of
 * the type's range was silently truncated. */
static void test_sniffing_and_metadata_ranges(void) {
    char path[400];
    static uint8_t image[1 << 16];
    static char header[1 << 15];
    float v[2] = {1.5f, -2.0f};
    const size_t lengths[2] = {0x80, 0x4B50};
    for (int k = 0; k < 2; k++) {
        const char *json = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
        size_t n = strlen(json);
        memcpy(header, json, n);
        memset(header + n, ' ', lengths[k] - n); /* trailing spaces are allowed in the header */
        header[lengths[k]] = '\0';
        size_t size = make_safetensors(image, header, v, sizeof v);
        CHECK(image[0] == 0x80 || (image[0] == 'P' && image[1] == 'K'));
        snprintf(path, sizeof path, "%s/sniff%d.safetensors", tmp_dir, k);
        write_file(path, image, size);
        mg_weights *w = NULL;
        CHECK_OK(mg_weights_open(path, &w));
        mg_tensor t;
        if (w) {
            CHECK_OK(mg_weights_get(w, "a", &t));
            CHECK(((const float *)t.data)[1] == -2.0f);
            mg_weights_destroy(w);
        }
    }
    /* a .gguf with a bad magic reports the magic, not a safetensors error */
    snprintf(path, sizeof path, "%s/bad.gguf", tmp_dir);
    write_file(path, "GGUX\3\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 24);
    mg_weights *w = NULL;
    CHECK_STATUS(mg_weights_open(path, &w), MG_ERR_FORMAT);
    CHECK_MESSAGE("bad magic");

    snprintf(path, sizeof path, "%s/ranges.gguf", tmp_dir);
    mg_gguf_writer *writer;
    CHECK_OK(mg_gguf_writer_open(path, &writer));
    CHECK_STATUS(mg_gguf_writer_add_int(writer, "k.u8", MG_VALUE_U8, 256), MG_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("256 does not fit in u8");
    CHECK_STATUS(mg_gguf_writer_add_int(writer, "k.i8", MG_VALUE_I8, -129), MG_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mg_gguf_writer_add_int(writer, "k.u32", MG_VALUE_U32, -1), MG_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mg_gguf_writer_add_int(writer, "k.i32", MG_VALUE_I32, (int64_t)1 << 31), MG_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mg_gguf_writer_add_int(writer, "k.bool", MG_VALUE_BOOL, 2), MG_ERR_INVALID_ARGUMENT);
    CHECK_OK(mg_gguf_writer_add_int(writer, "k.u8", MG_VALUE_U8, 255));
    CHECK_OK(mg_gguf_writer_add_int(writer, "k.i16", MG_VALUE_I16, -32768));
    CHECK_OK(mg_gguf_writer_add_int(writer, "k.u64", MG_VALUE_U64, -1)); /* = 2^64 - 1 */
    CHECK_OK(mg_gguf_writer_finish(writer));
    mg_gguf_writer_destroy(writer);
    CHECK_OK(mg_weights_open(path, &w));
    int64_t value = 0;
    CHECK_OK(mg_weights_get_int(w, "k.u8", &value));
    CHECK(value == 255);
    CHECK_OK(mg_weights_get_int(w, "k.u64", &value));
    CHECK((uint64_t)value == UINT64_MAX);
    mg_weights_destroy(w);
}

/* config.json arrays: mixed strings/numbers are skipped (they were cast to
 * int64, undefined for huge doubles: found by the fuzzer), bools count 0/1. */
static void test_config_arrays(void) {
    const char *json = "{\"m\":[1,\"a\"],\"b\":[true,2],\"f\":[true,1.5],\"big\":[6.6e50,1],\"s\":[\"x\"]}";
    mg_weights *w;
    CHECK_OK(mg_weights_create(&w));
    CHECK_OK(mg_config_json_parse(json, strlen(json), "config.json", "config", w));
    mg_value_type type, element;
    CHECK_STATUS(mg_weights_meta_type(w, "config.m", &type, &element), MG_ERR_NOT_FOUND);
    int64_t length;
    const void *data;
    CHECK_OK(mg_weights_get_array(w, "config.b", &element, &length, &data));
    CHECK(element == MG_VALUE_I64 && length == 2 && ((const int64_t *)data)[0] == 1 && ((const int64_t *)data)[1] == 2);
    CHECK_OK(mg_weights_get_array(w, "config.f", &element, &length, &data));
    CHECK(element == MG_VALUE_F64 && ((const double *)data)[0] == 1.0 && ((const double *)data)[1] == 1.5);
    CHECK_OK(mg_weights_get_array(w, "config.big", &element, &length, &data));
    CHECK(element == MG_VALUE_F64 && ((const double *)data)[0] == 6.6e50);
    CHECK_OK(mg_weights_get_array(w, "config.s", &element, &length, &data));
    CHECK(element == MG_VALUE_STRING && length == 1);
    mg_weights_destroy(w);
    mg_clear_error();
}

/* The writer's chunked f32/f16/bf16 conversions agree with mg_tensor_convert
 * (the reference kernels) on > 1 M elements, across a chunk boundary. */
static void test_writer_chunked_conversions(void) {
    const int64_t n = (1 << 20) + 37;
    float *x = malloc((size_t)n * sizeof *x);
    uint32_t state = 12345;
    for (int64_t i = 0; i < n; i++) {
        state = state * 1664525u + 1013904223u;
        x[i] = ((float)(state >> 8) / 16777216.0f - 0.5f) * (i % 7 == 0 ? 1e5f : 3.0f);
    }
    x[0] = 65520.0f; x[1] = 5.9604645e-08f; x[2] = -0.0f; x[3] = INFINITY; x[4] = 1.0f + 1.0f / 2048.0f;
    static const mg_dtype pairs[][2] = {{MG_F32, MG_F16}, {MG_F32, MG_BF16}, {MG_F16, MG_F32},
                                        {MG_BF16, MG_F32}, {MG_F16, MG_BF16}, {MG_BF16, MG_F16}};
    const int n_pairs = (int)(sizeof pairs / sizeof pairs[0]);
    char path[400];
    snprintf(path, sizeof path, "%s/chunked.gguf", tmp_dir);
    mg_gguf_writer *writer;
    CHECK_OK(mg_gguf_writer_open(path, &writer));
    char names[6][16];
    for (int k = 0; k < n_pairs; k++) {
        snprintf(names[k], sizeof names[k], "t%d", k);
        CHECK_OK(mg_gguf_writer_add_tensor_info(writer, names[k], pairs[k][1], 1, &n));
    }
    mg_tensor source_f32, sources[6], expected[6];
    CHECK_OK(mg_tensor_init(&source_f32, x, MG_F32, 1, &n));
    for (int k = 0; k < n_pairs; k++) {
        CHECK_OK(mg_tensor_alloc(&sources[k], pairs[k][0], 1, &n));
        CHECK_OK(mg_tensor_convert(&source_f32, &sources[k]));
        CHECK_OK(mg_tensor_alloc(&expected[k], pairs[k][1], 1, &n));
        CHECK_OK(mg_tensor_convert(&sources[k], &expected[k]));
        CHECK_OK(mg_gguf_writer_write_tensor(writer, names[k], &sources[k]));
    }
    CHECK_OK(mg_gguf_writer_finish(writer));
    mg_gguf_writer_destroy(writer);
    mg_weights *w = NULL;
    CHECK_OK(mg_weights_open(path, &w));
    for (int k = 0; w && k < n_pairs; k++) {
        mg_tensor t;
        CHECK_OK(mg_weights_get(w, names[k], &t));
        CHECK(t.dtype == pairs[k][1]);
        CHECK(memcmp(t.data, expected[k].data, mg_tensor_nbytes(&t)) == 0);
    }
    mg_weights_destroy(w);
    for (int k = 0; k < n_pairs; k++) {
        mg_tensor_free_data(&sources[k]);
        mg_tensor_free_data(&expected[k]);
    }
    free(x);
}

/* Lines of /proc/self/maps: a mapping left behind by open/release shows as a new line. */
static int count_mappings(void) {
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return -1;
    int lines = 0, c;
    while ((c = fgetc(f)) != EOF) lines += c == '\n';
    fclose(f);
    return lines;
}

/* Files of 4 MB and more are mapped at a 2 MB boundary (so the page cache's
 * 2 MB folios can be mapped whole) with every byte readable, and neither
 * the reservation around the mapping nor the mapping outlives release. */
static void test_mapped_file_alignment(void) {
    static const size_t sizes[] = {1, 4095, 4096, (4u << 20) - 1, 4u << 20, (4u << 20) + 4097,
                                   (6u << 20) + 1};
    char path[400];
    snprintf(path, sizeof path, "%s/mapped.bin", tmp_dir);
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        const size_t n = sizes[k];
        uint8_t *bytes = malloc(n);
        for (size_t i = 0; i < n; i++) bytes[i] = (uint8_t)(i * 131u + (i >> 12) + k);
        FILE *f = fopen(path, "wb");
        CHECK(f && fwrite(bytes, 1, n, f) == n);
        if (f) fclose(f);
        const int before = count_mappings();
        for (int round = 0; round < 3; round++) {
            mg_mapped_file *file = NULL;
            CHECK_OK(mg_mapped_file_open(path, &file));
            if (!file) continue;
            CHECK(file->size == n);
            CHECK(memcmp(file->data, bytes, n) == 0);
            if (n >= (4u << 20)) CHECK(((uintptr_t)file->data & ((2u << 20) - 1)) == 0);
            mg_mapped_file_release(file);
        }
        CHECK(count_mappings() == before);
        free(bytes);
    }
}

int main(void) {
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/mg_test_io_%d", (int)getpid());
    mkdir(tmp_dir, 0700);
    test_safetensors_valid();
    test_safetensors_corrupt();
    test_gguf_hand_built();
    test_gguf_writer_round_trip();
    test_folder();
    test_sniffing_and_metadata_ranges();
    test_writer_chunked_conversions();
    test_config_arrays();
    test_mapped_file_alignment();
    char command[400];
    snprintf(command, sizeof command, "rm -rf %s", tmp_dir);
    if (system(command) != 0) fprintf(stderr, "could not remove %s\n", tmp_dir);
    return mg_test_finish("test_io");
}

/* BiRD (Qwen-VL) in C on a tiny random in-memory model: load, encode, the
 * generation loop against plain decoder steps, session prefix reuse (incl. a
 * changed image behind identical ids), bad prompts/tensors, GPTQ dequant on a
 * hand-computed example. Numerical parity with PyTorch lives in
 * tests/test_bird.py; this file is for the C paths under ASan/UBSan. */
#include "mg_test.h"
#include "models/models.h" /* mg_gptq_dequantize (internal) */

#include <math.h>

#define N_NAMES 128
#define IMG 290
#define END_IMG 291
#define IMGPAD 292
#define NQ 16 /* resampler queries: a 4x4 grid here (256 = 16x16 in Qwen-VL) */

static float *g_blocks[N_NAMES];
static int g_n_blocks;
static uint64_t g_rng = 12345;

static float mg_test_rand(void) {
    g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((g_rng >> 40) & 0xFFFFFF) / (float)0x1000000 - 0.5f;
}

static void add(mg_weights *w, const char *name, int n_dims, int64_t d0, int64_t d1, int64_t d2, int64_t d3,
                float scale, float offset) {
    int64_t shape[4] = {d0, d1, d2, d3};
    int64_t n = 1;
    for (int i = 0; i < n_dims; i++) n *= shape[i];
    float *data = malloc((size_t)n * sizeof *data);
    for (int64_t i = 0; i < n; i++) data[i] = offset + scale * mg_test_rand();
    g_blocks[g_n_blocks++] = data;
    mg_tensor t;
    CHECK_OK(mg_tensor_init(&t, data, MG_F32, n_dims, shape));
    CHECK_OK(mg_weights_add(w, name, &t, false));
}

/* ViT width 32 (2 heads), 1 block, MLP 64, 28 px (2x2 patches of 14);
 * resampler 128 wide (1 head); LM 128 wide, 2 heads x 64, 1 block, SwiGLU
 * 128, vocabulary 300. */
static mg_weights *tiny_model(const char *skip) {
    mg_weights *w = NULL;
    CHECK_OK(mg_weights_create(&w));
    char name[160];
    const char *v = "transformer.visual.";
#define ADD(n_dims, d0, d1, d2, d3, scale, offset, ...)                         \
    do {                                                                        \
        snprintf(name, sizeof name, __VA_ARGS__);                               \
        if (!skip || strcmp(skip, name)) add(w, name, n_dims, d0, d1, d2, d3, scale, offset); \
    } while (0)
    ADD(4, 32, 3, 14, 14, 0.2f, 0, "%sconv1.weight", v);
    ADD(2, 256, 32, 1, 1, 1.0f, 0, "%spositional_embedding", v);
    ADD(1, 32, 1, 1, 1, 0.2f, 1, "%sln_pre.weight", v);
    ADD(1, 32, 1, 1, 1, 0.2f, 0, "%sln_pre.bias", v);
    const char *b = "transformer.visual.transformer.resblocks.0.";
    ADD(1, 32, 1, 1, 1, 0.2f, 1, "%sln_1.weight", b);
    ADD(1, 32, 1, 1, 1, 0.2f, 0, "%sln_1.bias", b);
    ADD(1, 32, 1, 1, 1, 0.2f, 1, "%sln_2.weight", b);
    ADD(1, 32, 1, 1, 1, 0.2f, 0, "%sln_2.bias", b);
    ADD(2, 96, 32, 1, 1, 0.3f, 0, "%sattn.in_proj.weight", b);
    ADD(1, 96, 1, 1, 1, 0.1f, 0, "%sattn.in_proj.bias", b);
    ADD(2, 32, 32, 1, 1, 0.3f, 0, "%sattn.out_proj.weight", b);
    ADD(1, 32, 1, 1, 1, 0.1f, 0, "%sattn.out_proj.bias", b);
    ADD(2, 64, 32, 1, 1, 0.3f, 0, "%smlp.c_fc.weight", b);
    ADD(1, 64, 1, 1, 1, 0.1f, 0, "%smlp.c_fc.bias", b);
    ADD(2, 32, 64, 1, 1, 0.3f, 0, "%smlp.c_proj.weight", b);
    ADD(1, 32, 1, 1, 1, 0.1f, 0, "%smlp.c_proj.bias", b);
    const char *a = "transformer.visual.attn_pool.";
    ADD(2, NQ, 128, 1, 1, 1.0f, 0, "%squery", a);
    ADD(2, NQ, 128, 1, 1, 1.0f, 0, "%spos_embed", a);
    ADD(2, 128, 32, 1, 1, 0.3f, 0, "%skv_proj.weight", a);
    ADD(2, 384, 128, 1, 1, 0.2f, 0, "%sattn.in_proj_weight", a);
    ADD(1, 384, 1, 1, 1, 0.1f, 0, "%sattn.in_proj_bias", a);
    ADD(2, 128, 128, 1, 1, 0.2f, 0, "%sattn.out_proj.weight", a);
    ADD(1, 128, 1, 1, 1, 0.1f, 0, "%sattn.out_proj.bias", a);
    ADD(1, 128, 1, 1, 1, 0.2f, 1, "%sln_q.weight", a);
    ADD(1, 128, 1, 1, 1, 0.2f, 0, "%sln_q.bias", a);
    ADD(1, 128, 1, 1, 1, 0.2f, 1, "%sln_kv.weight", a);
    ADD(1, 128, 1, 1, 1, 0.2f, 0, "%sln_kv.bias", a);
    ADD(1, 128, 1, 1, 1, 0.2f, 1, "%sln_post.weight", v);
    ADD(1, 128, 1, 1, 1, 0.2f, 0, "%sln_post.bias", v);
    ADD(2, 128, 128, 1, 1, 0.2f, 0, "%sproj", v);
    ADD(2, 300, 128, 1, 1, 1.0f, 0, "transformer.wte.weight");
    const char *h = "transformer.h.0.";
    ADD(1, 128, 1, 1, 1, 0.2f, 1, "%sln_1.weight", h);
    ADD(1, 128, 1, 1, 1, 0.2f, 1, "%sln_2.weight", h);
    ADD(2, 384, 128, 1, 1, 0.2f, 0, "%sattn.c_attn.weight", h);
    ADD(1, 384, 1, 1, 1, 0.1f, 0, "%sattn.c_attn.bias", h);
    ADD(2, 128, 128, 1, 1, 0.2f, 0, "%sattn.c_proj.weight", h);
    ADD(2, 128, 128, 1, 1, 0.2f, 0, "%smlp.w1.weight", h);
    ADD(2, 128, 128, 1, 1, 0.2f, 0, "%smlp.w2.weight", h);
    ADD(2, 128, 128, 1, 1, 0.2f, 0, "%smlp.c_proj.weight", h);
    ADD(1, 128, 1, 1, 1, 0.2f, 1, "transformer.ln_f.weight");
    ADD(2, 300, 128, 1, 1, 0.5f, 0, "lm_head.weight");
#undef ADD
    const char *ints[][2] = {{"config.visual.image_size", "28"}, {"config.visual.patch_size", "14"},
                             {"config.visual.width", "32"}, {"config.visual.layers", "1"},
                             {"config.visual.heads", "2"}, {"config.visual.output_dim", "128"},
                             {"config.visual.image_start_id", "290"}, {"config.hidden_size", "128"},
                             {"config.num_hidden_layers", "1"}, {"config.num_attention_heads", "2"},
                             {"config.kv_channels", "64"}, {"config.intermediate_size", "256"},
                             {"config.vocab_size", "300"}, {"config.rotary_emb_base", "10000"},
                             {"config.seq_length", "2048"}, {"config.use_dynamic_ntk", "1"},
                             {"config.use_logn_attn", "1"}};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        CHECK_OK(mg_weights_set_int(w, ints[i][0], atoll(ints[i][1])));
    CHECK_OK(mg_weights_set_float(w, "config.visual.mlp_ratio", 2.0));
    CHECK_OK(mg_weights_set_float(w, "config.layer_norm_epsilon", 1e-6));
    CHECK_OK(mg_weights_set_float(w, "config.rotary_pct", 1.0));
    return w;
}

static void free_blocks(void) {
    for (int i = 0; i < g_n_blocks; i++) free(g_blocks[i]);
    g_n_blocks = 0;
}

static int prompt(int32_t *ids, const int32_t *extra, int n_extra) {
    int n = 0;
    ids[n++] = 1;
    ids[n++] = 2;
    ids[n++] = IMG;
    for (int i = 0; i < NQ; i++) ids[n++] = IMGPAD;
    ids[n++] = END_IMG;
    ids[n++] = 5;
    ids[n++] = 6;
    for (int i = 0; i < n_extra; i++) ids[n++] = extra[i];
    return n;
}

static int32_t argmax(const float *x, int n) {
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

static void test_model(void) {
    mg_weights *w = tiny_model(NULL);
    mg_model_weights_options strict = {false, MG_F32, true};
    mg_bird *bird = NULL;
    CHECK_OK(mg_bird_load(w, &strict, &bird));
    if (!bird) return;
    CHECK(mg_bird_image_tokens(bird) == NQ);
    mg_context *ctx = NULL;
    CHECK_OK(mg_context_create(NULL, &ctx));

    mg_tensor pixels, emb, emb2;
    int64_t ps[3] = {3, 28, 28}, es[2] = {NQ, 128};
    CHECK_OK(mg_tensor_alloc(&pixels, MG_F32, 3, ps));
    CHECK_OK(mg_tensor_alloc(&emb, MG_F32, 2, es));
    CHECK_OK(mg_tensor_alloc(&emb2, MG_F32, 2, es));
    float *p = pixels.data;
    for (int i = 0; i < 3 * 28 * 28; i++) p[i] = 2.0f * mg_test_rand();
    CHECK_OK(mg_bird_encode_image(ctx, bird, &pixels, &emb, NULL));
    for (int i = 0; i < 3 * 28 * 28; i++) p[i] = -p[i];
    CHECK_OK(mg_bird_encode_image(ctx, bird, &pixels, &emb2, NULL));

    int32_t ids[64], out[16], again[16], manual[16];
    int n = prompt(ids, NULL, 0), n_out = 0, n_again = 0;
    mg_generate_options greedy = {.max_new_tokens = 8};
    mg_bird_session *s = NULL;
    CHECK_OK(mg_bird_session_create(bird, 64, &s));
    CHECK_OK(mg_bird_generate(ctx, bird, s, ids, n, &emb, &greedy, out, 16, &n_out));
    CHECK(n_out == 8);
    CHECK(mg_kv_cache_length(mg_bird_session_cache(s)) == n + 7);

    /* the same tokens by plain decoder steps with argmax */
    mg_kv_cache *cache = NULL;
    CHECK_OK(mg_kv_cache_create(mg_bird_decoder(bird), 64, &cache));
    int32_t rows[NQ];
    int n_rows = 0;
    CHECK_OK(mg_bird_image_rows(bird, ids, n, rows, NQ, &n_rows));
    CHECK(n_rows == NQ && rows[0] == 3);
    mg_tensor logits;
    int64_t ls[2] = {1, 300};
    CHECK_OK(mg_tensor_alloc(&logits, MG_F32, 2, ls));
    mg_decoder_input in = {ids, n, &emb, rows, n_rows};
    CHECK_OK(mg_decoder_forward(ctx, mg_bird_decoder(bird), cache, &in, &logits, NULL, NULL));
    for (int i = 0; i < 8; i++) {
        manual[i] = argmax(logits.data, 300);
        mg_decoder_input step = {&manual[i], 1, NULL, NULL, 0};
        if (i < 7) CHECK_OK(mg_decoder_forward(ctx, mg_bird_decoder(bird), cache, &step, &logits, NULL, NULL));
    }
    CHECK(memcmp(manual, out, 8 * sizeof *out) == 0);

    /* turn 2 reuses the prefix and equals a fresh session */
    int32_t tail[10];
    memcpy(tail, out, 7 * sizeof *out);
    tail[7] = 8, tail[8] = 9;
    int32_t ids2[64];
    int n2 = prompt(ids2, tail, 9);
    CHECK_OK(mg_bird_generate(ctx, bird, s, ids2, n2, &emb, &greedy, out, 16, &n_out));
    mg_bird_session *fresh = NULL;
    CHECK_OK(mg_bird_session_create(bird, 64, &fresh));
    CHECK_OK(mg_bird_generate(ctx, bird, fresh, ids2, n2, &emb, &greedy, again, 16, &n_again));
    CHECK(n_out == n_again && memcmp(out, again, (size_t)n_out * sizeof *out) == 0);
    /* images in the cached prefix may be omitted */
    CHECK_OK(mg_bird_generate(ctx, bird, s, ids2, n2, NULL, &greedy, out, 16, &n_out));
    CHECK(n_out == n_again && memcmp(out, again, (size_t)n_out * sizeof *out) == 0);
    /* another image behind the same ids: not the cached K/V */
    CHECK_OK(mg_bird_generate(ctx, bird, s, ids2, n2, &emb2, &greedy, out, 16, &n_out));
    mg_bird_session_free(fresh);
    CHECK_OK(mg_bird_session_create(bird, 64, &fresh));
    CHECK_OK(mg_bird_generate(ctx, bird, fresh, ids2, n2, &emb2, &greedy, again, 16, &n_again));
    CHECK(n_out == n_again && memcmp(out, again, (size_t)n_out * sizeof *out) == 0);

    /* stop token and streaming callback limits */
    mg_generate_options stop = greedy;
    stop.stop_tokens = &manual[2];
    stop.n_stop_tokens = 1;
    mg_bird_session *s3 = NULL;
    CHECK_OK(mg_bird_session_create(bird, 64, &s3));
    CHECK_OK(mg_bird_generate(ctx, bird, s3, ids, n, &emb, &stop, out, 16, &n_out));
    CHECK(n_out >= 1 && n_out <= 3 && out[n_out - 1] == manual[2]);

    /* bad prompts leave the session usable */
    int32_t bad[8] = {1, IMG, IMGPAD, END_IMG};
    CHECK_STATUS(mg_bird_generate(ctx, bird, s3, bad, 4, &emb, &greedy, out, 16, &n_out), MG_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("encloses 1 positions");
    CHECK_STATUS(mg_bird_generate(ctx, bird, s3, ids, n, NULL, &greedy, out, 16, &n_out), MG_ERR_SHAPE);
    CHECK_STATUS(mg_bird_generate(ctx, bird, s3, ids, n, &emb, &greedy, out, 16, &n_out), MG_OK);
    int32_t long_prompt[80] = {0};
    CHECK_STATUS(mg_bird_generate(ctx, bird, s3, long_prompt, 80, NULL, &greedy, out, 16, &n_out),
                 MG_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("capacity");

    mg_bird_session_free(s3);
    mg_bird_session_free(fresh);
    mg_bird_session_free(s);
    mg_kv_cache_free(cache);
    mg_tensor_free_data(&logits);
    mg_tensor_free_data(&pixels);
    mg_tensor_free_data(&emb);
    mg_tensor_free_data(&emb2);
    mg_context_destroy(ctx);
    mg_bird_free(bird);
    mg_weights_destroy(w);
    free_blocks();
}

static void test_bad_checkpoints(void) {
    const char *names[] = {"transformer.h.0.mlp.w2.weight", "transformer.visual.attn_pool.pos_embed",
                           "transformer.visual.proj", "lm_head.weight"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        mg_weights *w = tiny_model(names[i]);
        mg_bird *bird = NULL;
        CHECK_STATUS(mg_bird_load(w, NULL, &bird), MG_ERR_NOT_FOUND);
        CHECK_MESSAGE(names[i]);
        CHECK(bird == NULL);
        mg_weights_destroy(w);
        free_blocks();
    }
    mg_weights *w = tiny_model(NULL);
    float extra[4] = {0};
    mg_tensor t;
    int64_t shape[1] = {4};
    CHECK_OK(mg_tensor_init(&t, extra, MG_F32, 1, shape));
    CHECK_OK(mg_weights_add(w, "transformer.extra", &t, false));
    mg_model_weights_options strict = {false, MG_F32, true};
    mg_bird *bird = NULL;
    CHECK_STATUS(mg_bird_load(w, &strict, &bird), MG_ERR_FORMAT);
    CHECK_MESSAGE("transformer.extra");
    CHECK_OK(mg_weights_set_int(w, "config.vocab_size", 301));
    CHECK_STATUS(mg_bird_load(w, NULL, &bird), MG_ERR_SHAPE);
    CHECK_MESSAGE("transformer.wte.weight");
    mg_weights_destroy(w);
    free_blocks();
}

/* GPTQ: in = out = 8, one group. Input row i, output o: q = (i + o) % 16,
 * stored zero 7 (real 8), scale 0.5 for every output:
 * W[o][i] = 0.5 * (((i + o) % 16) - 8). */
static void test_gptq(void) {
    mg_weights *w = NULL;
    CHECK_OK(mg_weights_create(&w));
    uint32_t qweight[8] = {0}, qzeros[1] = {0};
    for (int o = 0; o < 8; o++)
        for (int i = 0; i < 8; i++) qweight[o] |= (uint32_t)((i + o) % 16) << (4 * i);
    for (int o = 0; o < 8; o++) qzeros[0] |= 7u << (4 * o);
    uint16_t scales[8];
    for (int o = 0; o < 8; o++) scales[o] = 0x3800; /* 0.5 in IEEE half */
    int32_t g_idx[8] = {0};
    mg_tensor t;
    int64_t s_qw[2] = {1, 8}, s_qz[2] = {1, 1}, s_sc[2] = {1, 8}, s_g[1] = {8};
    CHECK_OK(mg_tensor_init(&t, qweight, MG_I32, 2, s_qw));
    CHECK_OK(mg_weights_add(w, "l.qweight", &t, false));
    CHECK_OK(mg_tensor_init(&t, qzeros, MG_I32, 2, s_qz));
    CHECK_OK(mg_weights_add(w, "l.qzeros", &t, false));
    CHECK_OK(mg_tensor_init(&t, scales, MG_F16, 2, s_sc));
    CHECK_OK(mg_weights_add(w, "l.scales", &t, false));
    CHECK_OK(mg_tensor_init(&t, g_idx, MG_I32, 1, s_g));
    CHECK_OK(mg_weights_add(w, "l.g_idx", &t, false));
    float deq[64];
    CHECK_OK(mg_gptq_dequantize(w, "l", 8, 8, deq));
    int wrong = 0;
    for (int o = 0; o < 8; o++)
        for (int i = 0; i < 8; i++) wrong += deq[o * 8 + i] != 0.5f * (float)(((i + o) % 16) - 8);
    CHECK(wrong == 0);
    g_idx[3] = 1; /* group 1 does not exist */
    CHECK_STATUS(mg_gptq_dequantize(w, "l", 8, 8, deq), MG_ERR_FORMAT);
    CHECK_MESSAGE("l.g_idx[3]");
    CHECK_STATUS(mg_gptq_dequantize(w, "l", 16, 8, deq), MG_ERR_SHAPE);
    CHECK_MESSAGE("l.qweight");
    mg_weights_destroy(w);
}

static void test_parse_boxes(void) {
    const char *text = "<ref> liver </ref><box>(100,200),(500,750)</box><box>(1200,5),(3,4)</box> <box>(1,x)</box>"
                       "<box>(1,2";
    mg_bird_box boxes[8];
    int64_t n = 0;
    CHECK_OK(mg_bird_parse_boxes(text, strlen(text), 640, 480, 1000, boxes, 8, &n));
    CHECK(n == 4);
    /* (100,200),(500,750) on 640 x 480: 64, 96, 320, 360 */
    CHECK(boxes[0].valid && boxes[0].issues == 0 && boxes[0].x1 == 64 && boxes[0].y1 == 96 && boxes[0].x2 == 320 &&
          boxes[0].y2 == 360);
    CHECK(boxes[0].label_length == 5 && memcmp(text + boxes[0].label_start, "liver", 5) == 0);
    /* 1200 clamped to 1000, then corners swapped: (3,4),(1000,5) */
    CHECK(boxes[1].valid && (boxes[1].issues & MG_BOX_CLAMPED) && (boxes[1].issues & MG_BOX_SWAPPED));
    CHECK(boxes[1].grid_x1 == 3 && boxes[1].grid_y1 == 4 && boxes[1].grid_x2 == 1000 && boxes[1].grid_y2 == 5);
    CHECK(!boxes[2].valid && boxes[2].issues == MG_BOX_MALFORMED);
    CHECK(!boxes[3].valid && boxes[3].issues == MG_BOX_UNTERMINATED && boxes[3].span_length == 9);
    /* room for fewer: the count still says how many */
    CHECK_OK(mg_bird_parse_boxes(text, strlen(text), 640, 480, 1000, boxes, 1, &n));
    CHECK(n == 4);
    const char *fallback = "at (12,34),(56,78).";
    CHECK_OK(mg_bird_parse_boxes(fallback, strlen(fallback), 0, 0, 1000, boxes, 8, &n));
    CHECK(n == 1 && boxes[0].valid && boxes[0].x2 == 56 && boxes[0].label_start == -1);
    CHECK_STATUS(mg_bird_parse_boxes(text, 3, -1, 5, 1000, boxes, 8, &n), MG_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mg_bird_parse_boxes(NULL, 0, 0, 0, 1000, boxes, 8, &n), MG_ERR_INVALID_ARGUMENT);
    /* every prefix of the answer (a stream cut anywhere) parses without error */
    for (size_t k = 0; k <= strlen(text); k++) CHECK_OK(mg_bird_parse_boxes(text, k, 10, 10, 1000, boxes, 8, &n));
}

/* A byte-level tiktoken vocabulary: rank b = the single byte b. */
static mg_tokenizer *byte_tokenizer(void) {
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *ranks = malloc(256 * 16), *p = ranks;
    for (int b = 0; b < 256; b++)
        p += sprintf(p, "%c%c== %d\n", b64[b >> 2], b64[(b & 3) << 4], b);
    mg_tokenizer *tok = NULL;
    CHECK_OK(mg_tokenizer_load_tiktoken_memory(ranks, (size_t)(p - ranks), NULL, "bytes", &tok));
    free(ranks);
    return tok;
}

static void test_build_prompt(void) {
    mg_weights *w = tiny_model(NULL);
    mg_bird *bird = NULL;
    CHECK_OK(mg_bird_load(w, NULL, &bird));
    mg_tokenizer *tok = byte_tokenizer();
    if (!bird || !tok) return;
    const char *messages[3] = {"Where is <ref>it</ref>?", "<box>(1,2),(3,4)</box>", "ok"};
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK_OK(mg_bird_build_prompt(bird, tok, NULL, messages, 3, true, &ids, &n));
    /* specials: base = 290 - 214 = 76; <|im_start|> 77, <|im_end|> 78, <ref> 284, <box> 286, <imgpad> 292 */
    int pads = 0, refs = 0, boxes = 0, starts = 0;
    for (size_t i = 0; i < n; i++) {
        pads += ids[i] == IMGPAD;
        refs += ids[i] == 284;
        boxes += ids[i] == 286;
        starts += ids[i] == 77;
    }
    CHECK(ids[0] == 77 && pads == NQ && refs == 1 && boxes == 1);
    CHECK(n > 10 && memcmp(ids + n - 10, (int32_t[]){'a', 's', 's', 'i', 's', 't', 'a', 'n', 't', '\n'}, 40) == 0);
    free(ids);
    CHECK_STATUS(mg_bird_build_prompt(bird, tok, NULL, messages, 2, true, &ids, &n), MG_ERR_INVALID_ARGUMENT);
    CHECK_MESSAGE("odd");
    mg_tokenizer_destroy(tok);
    mg_bird_free(bird);
    mg_weights_destroy(w);
    free_blocks();
    (void)starts;
}

int main(void) {
    test_parse_boxes();
    test_build_prompt();
    test_model();
    test_bad_checkpoints();
    test_gptq();
    return mg_test_finish("test_bird");
}

/* MedPLIB (LLaVA-1.5 + MoE LLaMA + SAM-Med2D), architecture.md §2:
 *   CLIP ViT-L/14-336 (hidden_states[select_layer], class row dropped)
 *     -> mm_projector (Linear, exact GELU, Linear) -> 576 image rows;
 *   region: region_fea_adapter(mean of bilinear samples of the raw CLIP
 *     features inside the region) -> one row per <region></region> pair;
 *   LLaMA decoder, FFN = MoE (moe.c) through the decoder's FFN hook, or dense;
 *   <SEG>: the final-normed hidden state at the position whose logits gave
 *     <SEG> -> text_hidden_fcs (Linear, ReLU, Linear) -> one sparse SAM token
 *     -> SAM-Med2D mask decoder (no-mask dense embedding), mask token 0.
 * Prompt ids carry placeholders: MG_MEDPLIB_IMAGE_TOKEN (-200) stands for the
 * 576 image rows, MG_MEDPLIB_REGION_TOKEN (-300) for one region row.
 * The region sampler is linear in its input and the adapter is affine, so the
 * adapter runs once on the mean of the raw samples (equal in exact arithmetic
 * to sampling the adapted map as the reference does: the bilinear weights of
 * each point sum to 1 inside the grid). */
#include "models.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MG_MEDPLIB_CLIP "model.vision_tower.vision_tower.vision_model."

struct mg_medplib {
    mg_vit *vit;
    mg_decoder *decoder;
    mg_moe *moe; /* NULL: dense FFN */
    mg_sam *sam; /* NULL when the checkpoint has none or it was not asked for */
    mg_tensor proj0_w, proj0_b, proj2_w, proj2_b; /* mlp2x_gelu; proj2_w.data NULL = linear */
    mg_tensor region_w, region_b;                 /* region_fea_adapter (optional)          */
    mg_tensor seg0_w, seg0_b, seg2_w, seg2_b;     /* text_hidden_fcs.0.{0,2} (optional)      */
    mg_medplib_info info;
    mg_weights *overlay; /* merged LoRA / renamed peft tensors, else NULL */
    mg_owned owned;
};

/* ------------------------------------------------------------------ config */

static bool mg_meta_num(const mg_weights *w, const char *key, double *out) {
    int64_t i;
    if (mg_weights_get_float(w, key, out) == MG_OK) return true;
    if (mg_weights_get_int(w, key, &i) == MG_OK) {
        *out = (double)i;
        return true;
    }
    return false;
}

static mg_status mg_meta_need(const mg_weights *w, const char *key, double *out) {
    if (mg_meta_num(w, key, out)) return MG_OK;
    return mg_error(MG_ERR_NOT_FOUND, "MedPLIB config: metadata %s is missing or not a number (config.json next to the weights)",
                    key);
}

static double mg_meta_or(const mg_weights *w, const char *key, double fallback) {
    double v;
    return mg_meta_num(w, key, &v) ? v : fallback;
}

static mg_status mg_medplib_decoder_config(const mg_weights *w, mg_decoder_config *c) {
    memset(c, 0, sizeof *c);
    double hidden, layers, heads, ffn, vocab;
    MG_TRY(mg_meta_need(w, "config.hidden_size", &hidden));
    MG_TRY(mg_meta_need(w, "config.num_hidden_layers", &layers));
    MG_TRY(mg_meta_need(w, "config.num_attention_heads", &heads));
    MG_TRY(mg_meta_need(w, "config.intermediate_size", &ffn));
    MG_TRY(mg_meta_need(w, "config.vocab_size", &vocab));
    c->naming = MG_DECODER_NAMING_LLAMA;
    c->hidden_size = (int)hidden;
    c->n_layers = (int)layers;
    c->n_heads = (int)heads;
    c->n_kv_heads = (int)mg_meta_or(w, "config.num_key_value_heads", heads);
    c->head_dim = c->n_heads > 0 ? c->hidden_size / c->n_heads : 0;
    c->ffn_dim = (int)ffn;
    c->vocab_size = (int)vocab;
    c->norm_eps = (float)mg_meta_or(w, "config.rms_norm_eps", 1e-6);
    c->rope_base = (float)mg_meta_or(w, "config.rope_theta", 10000.0);
    c->rotary_dim = c->head_dim;
    c->seq_length = (int)mg_meta_or(w, "config.max_position_embeddings", 4096);
    return MG_OK;
}

static mg_status mg_medplib_vit_config(const mg_weights *w, mg_vit_config *c) {
    memset(c, 0, sizeof *c);
    mg_tensor t;
    char name[MG_NAME_MAX];
    MG_TRY(mg_name(name, sizeof name, "%sembeddings.patch_embedding.weight", MG_MEDPLIB_CLIP));
    if (mg_weights_get(w, name, &t) != MG_OK)
        return mg_error(MG_ERR_NOT_FOUND, "MedPLIB: checkpoint has no tensor %s (CLIP vision tower)", name);
    if (t.n_dims != 4 || t.shape[1] != 3 || t.shape[2] != t.shape[3])
        return mg_error(MG_ERR_SHAPE, "tensor %s: expected [width, 3, P, P]", name);
    c->width = (int)t.shape[0];
    c->patch_size = (int)t.shape[2];
    MG_TRY(mg_name(name, sizeof name, "%sembeddings.position_embedding.weight", MG_MEDPLIB_CLIP));
    if (mg_weights_get(w, name, &t) != MG_OK) return mg_error(MG_ERR_NOT_FOUND, "MedPLIB: checkpoint has no tensor %s", name);
    int64_t side = t.n_dims == 2 && t.shape[0] > 1 ? (int64_t)llround(sqrt((double)(t.shape[0] - 1))) : 0;
    if (side <= 0 || side * side + 1 != t.shape[0])
        return mg_error(MG_ERR_SHAPE, "tensor %s: expected [1 + g*g, width] rows", name);
    c->image_size = (int)(side * c->patch_size);
    int layers = 0;
    for (;; layers++) {
        MG_TRY(mg_name(name, sizeof name, "%sencoder.layers.%d.layer_norm1.weight", MG_MEDPLIB_CLIP, layers));
        if (!mg_weights_has(w, name)) break;
    }
    if (layers == 0) return mg_error(MG_ERR_NOT_FOUND, "MedPLIB: checkpoint has no tensor %s", name);
    c->n_layers = layers;
    MG_TRY(mg_name(name, sizeof name, "%sencoder.layers.0.mlp.fc1.weight", MG_MEDPLIB_CLIP));
    if (mg_weights_get(w, name, &t) != MG_OK || t.n_dims != 2)
        return mg_error(MG_ERR_NOT_FOUND, "MedPLIB: checkpoint has no 2-D tensor %s", name);
    c->mlp_dim = (int)t.shape[0];
    /* Heads are not recoverable from shapes: CLIP ViT-L uses 64-wide heads. */
    c->n_heads = (int)mg_meta_or(w, "config.vision_config.num_attention_heads", c->width / 64 > 0 ? c->width / 64 : 1);
    c->naming = MG_VIT_NAMING_HF_CLIP;
    c->qkv_layout = MG_QKV_SEPARATE;
    c->norm_eps = (float)mg_meta_or(w, "config.vision_config.layer_norm_eps", 1e-5);
    c->activation = MG_ACT_QUICK_GELU;
    c->class_token = true;
    /* LLaVA: image_forward_outs.hidden_states[select_layer]; hidden_states[k]
     * is the output after k blocks (0 = embeddings after pre_layrnorm). */
    int select = (int)mg_meta_or(w, "config.mm_vision_select_layer", -2);
    int k = select < 0 ? layers + 1 + select : select;
    if (k < 1 || k > layers)
        return mg_error(MG_ERR_UNSUPPORTED, "MedPLIB config: mm_vision_select_layer %d selects hidden state %d of a %d-layer tower",
                        select, k, layers);
    c->n_layers_run = k;
    const char *feature = NULL;
    c->drop_class_token = true;
    if (mg_weights_get_string(w, "config.mm_vision_select_feature", &feature) == MG_OK) {
        if (!strcmp(feature, "cls_patch")) c->drop_class_token = false;
        else if (strcmp(feature, "patch"))
            return mg_error(MG_ERR_UNSUPPORTED, "MedPLIB config: mm_vision_select_feature '%s' (expected patch or cls_patch)",
                            feature);
    }
    return MG_OK;
}

/* -------------------------------------------------------------------- load */

static mg_status mg_medplib_linear(const mg_weights *w, mg_owned *owned, const char *base, int64_t out_f, int64_t in_f,
                                   const mg_model_weights_options *policy, mg_tensor *weight, mg_tensor *bias) {
    MG_TRY(mg_model_get_linear(w, owned, base, out_f, in_f, true, policy, weight, bias));
    return MG_OK;
}

static mg_status mg_medplib_load_all(mg_medplib *m, const mg_weights *w, const mg_medplib_options *o) {
    mg_medplib_info *info = &m->info;
    mg_vit_config vc;
    MG_TRY(mg_medplib_vit_config(w, &vc));
    vc.weights = o->weights;
    MG_TRY(mg_vit_load(w, MG_MEDPLIB_CLIP, &vc, &m->vit));
    /* Loaded by vit but never used by LLaVA (no post-norm on hidden states). */
    mg_model_note(MG_MEDPLIB_CLIP "post_layernorm.weight");
    mg_model_note(MG_MEDPLIB_CLIP "post_layernorm.bias");
    mg_model_note(MG_MEDPLIB_CLIP "embeddings.position_ids");

    mg_decoder_config dc;
    MG_TRY(mg_medplib_decoder_config(w, &dc));
    dc.weights = o->weights;
    bool moe = mg_weights_has(w, "model.layers.0.mlp.deepspeed_moe.gate.wg.weight");
    dc.external_ffn = moe;
    MG_TRY(mg_decoder_load(w, &dc, &m->decoder));
    for (int l = 0; l < dc.n_layers; l++) {
        char name[MG_NAME_MAX];
        MG_TRY(mg_name(name, sizeof name, "model.layers.%d.self_attn.rotary_emb.inv_freq", l));
        mg_model_note(name);
    }
    if (moe) {
        mg_tensor wg;
        MG_TRY(mg_weights_get(w, "model.layers.0.mlp.deepspeed_moe.gate.wg.weight", &wg));
        mg_moe_config mc;
        memset(&mc, 0, sizeof mc);
        mc.n_layers = dc.n_layers;
        mc.hidden_size = dc.hidden_size;
        mc.ffn_dim = dc.ffn_dim;
        mc.n_experts = wg.n_dims == 2 ? (int)wg.shape[0] : 0;
        mc.top_k = (int)mg_meta_or(w, "config.moe.top_k_experts", 1);
        mc.capacity_factor = o->capacity_factor != 0 ? o->capacity_factor
                                                     : (float)mg_meta_or(w, "config.moe.eval_capacity_factor", 2.0);
        mc.min_capacity = (int)mg_meta_or(w, "config.moe.min_capacity", 0);
        mc.weights = o->weights;
        MG_TRY(mg_moe_load(w, "model.layers.", &mc, &m->moe));
        mg_decoder_set_ffn_hook(m->decoder, mg_moe_ffn, m->moe);
        info->n_experts = mc.n_experts;
        info->capacity_factor = mc.capacity_factor;
    }

    int64_t W = vc.width, D = dc.hidden_size;
    const mg_model_weights_options *policy = &o->weights;
    if (mg_weights_has(w, "model.mm_projector.0.weight")) {
        MG_TRY(mg_medplib_linear(w, &m->owned, "model.mm_projector.0", D, W, policy, &m->proj0_w, &m->proj0_b));
        MG_TRY(mg_medplib_linear(w, &m->owned, "model.mm_projector.2", D, D, policy, &m->proj2_w, &m->proj2_b));
    } else if (mg_weights_has(w, "model.mm_projector.weight")) {
        MG_TRY(mg_medplib_linear(w, &m->owned, "model.mm_projector", D, W, policy, &m->proj0_w, &m->proj0_b));
    } else {
        return mg_error(MG_ERR_NOT_FOUND, "MedPLIB: checkpoint has no tensor model.mm_projector.0.weight (mlp2x_gelu projector)");
    }
    if (mg_weights_has(w, "model.region_fea_adapter.weight"))
        MG_TRY(mg_medplib_linear(w, &m->owned, "model.region_fea_adapter", D, W, policy, &m->region_w, &m->region_b));
    info->has_region_adapter = m->region_w.data != NULL;
    if (mg_weights_has(w, "model.text_hidden_fcs.0.0.weight")) {
        mg_tensor t;
        MG_TRY(mg_weights_get(w, "model.text_hidden_fcs.0.2.weight", &t));
        if (t.n_dims != 2) return mg_error(MG_ERR_SHAPE, "tensor model.text_hidden_fcs.0.2.weight: expected 2-D");
        MG_TRY(mg_medplib_linear(w, &m->owned, "model.text_hidden_fcs.0.0", D, D, policy, &m->seg0_w, &m->seg0_b));
        MG_TRY(mg_medplib_linear(w, &m->owned, "model.text_hidden_fcs.0.2", t.shape[0], D, policy, &m->seg2_w, &m->seg2_b));
        info->seg_dim = (int)t.shape[0];
    }
    if (o->load_sam && mg_weights_has(w, "model.visual_model.image_encoder.pos_embed")) {
        MG_TRY(mg_sam_create(w, "model.visual_model.", 0, &m->sam));
        mg_sam_info si;
        MG_TRY(mg_sam_get_info(m->sam, &si));
        info->sam_image_size = si.image_size;
        info->sam_low_res = si.low_res_size;
        if (info->seg_dim && info->seg_dim != si.prompt_dim)
            return mg_error(MG_ERR_SHAPE, "MedPLIB: text_hidden_fcs gives %d features but SAM's prompt width is %d", info->seg_dim,
                            si.prompt_dim);
    }
    if (!o->load_sam || m->sam) {
        /* SAM-Med2D's loader checks its own tensors (missing / mis-shaped ones
         * are errors) but does not record lookups; and when it is not loaded
         * on purpose its tensors are not "unused" either. */
        int64_t n = mg_weights_count(w);
        for (int64_t i = 0; i < n; i++) {
            const char *name = mg_weights_name(w, i);
            if (!strncmp(name, "model.visual_model.", 19)) mg_model_note(name);
        }
    }
    info->clip_image_size = vc.image_size;
    info->clip_patch_size = vc.patch_size;
    info->clip_grid = vc.image_size / vc.patch_size;
    info->clip_width = vc.width;
    info->clip_layers_run = vc.n_layers_run;
    info->image_tokens = (int)mg_vit_n_tokens(m->vit);
    info->hidden_size = dc.hidden_size;
    info->n_layers = dc.n_layers;
    info->vocab_size = dc.vocab_size;
    return MG_OK;
}

/* ------------------------------------------------------- unmerged LoRA */

/* peft checkpoints (stage II-IV before merge_and_unload): names may carry
 * "base_model.model.", a LoRA'd Linear keeps W0 as <base>.base_layer.weight
 * (or <base>.weight) beside <base>.lora_A[.default].weight [r, in] and
 * <base>.lora_B[.default].weight [out, r]. The overlay table holds every
 * other tensor as a borrowed view under its plain name and each LoRA'd
 * weight merged, W0 + scale · B · A in f32 (peft's merge). */
static bool mg_medplib_needs_overlay(const mg_weights *w) {
    int64_t n = mg_weights_count(w);
    for (int64_t i = 0; i < n; i++) {
        const char *name = mg_weights_name(w, i);
        if (!strncmp(name, "base_model.model.", 17) || strstr(name, ".lora_A.") || strstr(name, ".base_layer."))
            return true;
    }
    return false;
}

/* name without "base_model.model." and with ".base_layer" dropped, into buf. */
static mg_status mg_medplib_plain_name(const char *name, char *buf, size_t size) {
    if (!strncmp(name, "base_model.model.", 17)) name += 17;
    const char *cut = strstr(name, ".base_layer.");
    if (!cut) return mg_name(buf, size, "%s", name);
    return mg_name(buf, size, "%.*s%s", (int)(cut - name), name, cut + 11);
}

/* The LoRA tensor of kind "lora_A"/"lora_B" for the Linear whose plain base
 * name is `base` (with or without ".default", with or without the peft
 * prefix). */
static bool mg_medplib_find_lora(const mg_weights *w, const char *base, const char *kind, mg_tensor *out, char *name,
                                 size_t size) {
    static const char *const prefixes[] = {"", "base_model.model."};
    static const char *const tails[] = {".weight", ".default.weight"};
    for (int p = 0; p < 2; p++)
        for (int t = 0; t < 2; t++)
            if (mg_name(name, size, "%s%s.%s%s", prefixes[p], base, kind, tails[t]) == MG_OK &&
                mg_weights_get(w, name, out) == MG_OK)
                return true;
    return false;
}

static mg_status mg_medplib_copy_metadata(const mg_weights *from, mg_weights *to) {
    int64_t n = mg_weights_meta_count(from);
    for (int64_t i = 0; i < n; i++) {
        const char *key = mg_weights_meta_key(from, i);
        mg_value_type type;
        if (!key || mg_weights_meta_type(from, key, &type, NULL) != MG_OK) continue;
        int64_t iv;
        double fv;
        const char *sv;
        size_t length;
        if (type == MG_VALUE_STRING && mg_weights_get_string_bytes(from, key, &sv, &length) == MG_OK)
            MG_TRY(mg_weights_set_string_bytes(to, key, sv, length));
        else if ((type == MG_VALUE_F32 || type == MG_VALUE_F64) && mg_weights_get_float(from, key, &fv) == MG_OK)
            MG_TRY(mg_weights_set_float(to, key, fv));
        else if (type != MG_VALUE_ARRAY && type != MG_VALUE_STRING && mg_weights_get_int(from, key, &iv) == MG_OK)
            MG_TRY(mg_weights_set_int(to, key, iv));
    }
    return MG_OK;
}

static mg_status mg_medplib_build_overlay(mg_medplib *m, const mg_weights *w, float scale, mg_weights **out) {
    MG_TRY(mg_weights_create(out));
    mg_weights *ov = *out;
    MG_TRY(mg_medplib_copy_metadata(w, ov));
    int64_t n = mg_weights_count(w);
    char plain[MG_NAME_MAX], a_name[MG_NAME_MAX], b_name[MG_NAME_MAX], base[MG_NAME_MAX];
    for (int64_t i = 0; i < n; i++) {
        const char *name = mg_weights_name(w, i);
        if (strstr(name, ".lora_A.") || strstr(name, ".lora_B.")) continue; /* merged below */
        MG_TRY(mg_medplib_plain_name(name, plain, sizeof plain));
        mg_tensor t;
        MG_TRY(mg_weights_get(w, name, &t));
        size_t len = strlen(plain);
        mg_tensor a, b;
        bool lora = false;
        if (len > 7 && !strcmp(plain + len - 7, ".weight")) {
            MG_TRY(mg_name(base, sizeof base, "%.*s", (int)(len - 7), plain));
            bool has_a = mg_medplib_find_lora(w, base, "lora_A", &a, a_name, sizeof a_name);
            bool has_b = mg_medplib_find_lora(w, base, "lora_B", &b, b_name, sizeof b_name);
            if (has_a != has_b)
                return mg_error(MG_ERR_NOT_FOUND, "LoRA: %s has %s but no %s", base, has_a ? a_name : b_name,
                                has_a ? "lora_B" : "lora_A");
            lora = has_a;
        }
        if (!lora) {
            mg_status status = mg_weights_add(ov, plain, &t, false);
            if (status != MG_OK) return mg_error_prefix(status, "LoRA overlay: tensor %s (from %s)", plain, name);
            continue;
        }
        if (!(scale > 0))
            return mg_error(MG_ERR_INVALID_ARGUMENT,
                            "LoRA: %s is unmerged (lora_A/lora_B) but lora_scale (alpha / r) is %g: set config lora_alpha and lora_r, or the lora_scale option",
                            base, (double)scale);
        if (t.n_dims != 2 || a.n_dims != 2 || b.n_dims != 2 || a.shape[1] != t.shape[1] || b.shape[0] != t.shape[0] ||
            b.shape[1] != a.shape[0])
            return mg_error(MG_ERR_SHAPE, "LoRA: %s: W0 [out, in], lora_A [r, in], lora_B [out, r] do not fit", base);
        int64_t O = t.shape[0], I = t.shape[1], R = a.shape[0];
        mg_tensor w0, af, bf, merged;
        int64_t ws[2] = {O, I}, as[2] = {R, I}, bs[2] = {O, R};
        MG_TRY(mg_owned_tensor(&m->owned, &merged, MG_F32, 2, ws));
        MG_TRY(mg_tensor_alloc(&w0, MG_F32, 2, ws));
        mg_status status = mg_tensor_convert(&t, &w0);
        if (status == MG_OK) status = mg_tensor_alloc(&af, MG_F32, 2, as);
        if (status == MG_OK) {
            status = mg_tensor_convert(&a, &af);
            if (status == MG_OK) status = mg_tensor_alloc(&bf, MG_F32, 2, bs);
            if (status == MG_OK) {
                status = mg_tensor_convert(&b, &bf);
                const float *pw = w0.data, *pa = af.data, *pb = bf.data;
                float *pm = merged.data;
                for (int64_t o = 0; status == MG_OK && o < O; o++)
                    for (int64_t k = 0; k < I; k++) {
                        double acc = 0;
                        for (int64_t r = 0; r < R; r++) acc += (double)pb[o * R + r] * (double)pa[r * I + k];
                        pm[o * I + k] = (float)((double)pw[o * I + k] + (double)scale * acc);
                    }
                mg_tensor_free_data(&bf);
            }
            mg_tensor_free_data(&af);
        }
        mg_tensor_free_data(&w0);
        if (status == MG_OK) status = mg_weights_add(ov, plain, &merged, false);
        if (status != MG_OK) return mg_error_prefix(status, "LoRA overlay: tensor %s", plain);
    }
    return MG_OK;
}

mg_status mg_medplib_load(const mg_weights *weights, const mg_medplib_options *options, mg_medplib **out) {
    if (!out) return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_medplib_load: out is NULL");
    *out = NULL;
    if (!weights) return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_medplib_load: weights is NULL");
    mg_medplib_options defaults;
    memset(&defaults, 0, sizeof defaults);
    defaults.load_sam = true;
    const mg_medplib_options *o = options ? options : &defaults;
    mg_medplib *m = calloc(1, sizeof *m);
    if (!m) return mg_error(MG_ERR_NO_MEMORY, "medplib: out of memory");
    mg_status status = MG_OK;
    const mg_weights *table = weights;
    if (mg_medplib_needs_overlay(weights)) {
        double alpha = mg_meta_or(weights, "config.lora_alpha", 0), r = mg_meta_or(weights, "config.lora_r", 0);
        float scale = o->lora_scale > 0 ? o->lora_scale : (r > 0 ? (float)(alpha / r) : 0.0f);
        status = mg_medplib_build_overlay(m, weights, scale, &m->overlay);
        table = m->overlay;
    }
    mg_model_track_begin();
    if (status == MG_OK) status = mg_medplib_load_all(m, table, o);
    mg_status unused = mg_model_track_end(table, status == MG_OK && o->weights.strict);
    if (status == MG_OK) status = unused;
    if (status != MG_OK) {
        mg_medplib_free(m);
        return mg_error_prefix(status, "MedPLIB load");
    }
    *out = m;
    return MG_OK;
}

void mg_medplib_free(mg_medplib *m) {
    if (!m) return;
    mg_vit_free(m->vit);
    mg_decoder_free(m->decoder);
    mg_moe_free(m->moe);
    mg_sam_destroy(m->sam);
    mg_weights_destroy(m->overlay);
    mg_owned_free(&m->owned);
    free(m);
}

mg_status mg_medplib_get_info(const mg_medplib *m, mg_medplib_info *info) {
    if (!m || !info) return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_medplib_get_info: NULL argument");
    *info = m->info;
    return MG_OK;
}

mg_vit *mg_medplib_vit(mg_medplib *m) { return m->vit; }
mg_decoder *mg_medplib_decoder(mg_medplib *m) { return m->decoder; }
mg_moe *mg_medplib_moe(mg_medplib *m) { return m->moe; }
mg_sam *mg_medplib_sam(mg_medplib *m) { return m->sam; }

/* ----------------------------------------------------------------- vision */

static mg_status mg_check_f32_2d(const char *what, const mg_tensor *t, int64_t rows, int64_t cols) {
    if (t->dtype == MG_F32 && t->n_dims == 2 && t->shape[0] == rows && t->shape[1] == cols && mg_tensor_is_contiguous(t))
        return MG_OK;
    char got[64];
    return mg_error(MG_ERR_SHAPE, "MedPLIB: %s must be contiguous f32 [%lld, %lld], got %s", what, (long long)rows,
                    (long long)cols, mg_tensor_describe(t, got, sizeof got));
}

mg_status mg_medplib_encode_image(mg_context *ctx, mg_medplib *m, const mg_tensor *pixels, mg_tensor *embeddings,
                                  mg_tensor *clip_features) {
    if (!ctx || !m || !pixels || !embeddings) return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_medplib_encode_image: NULL argument");
    int64_t N = m->info.image_tokens, W = m->info.clip_width, D = m->info.hidden_size;
    MG_TRY(mg_check_f32_2d("image embeddings", embeddings, N, D));
    if (clip_features) MG_TRY(mg_check_f32_2d("CLIP features", clip_features, N, W));
    mg_tensor feats, mid;
    int64_t nw[2] = {N, W}, nd[2] = {N, D};
    if (clip_features) feats = *clip_features;
    else MG_TRY(mg_tensor_alloc(&feats, MG_F32, 2, nw));
    mg_status status = mg_vit_forward(ctx, m->vit, pixels, &feats);
    if (status == MG_OK && m->proj2_w.data) {
        status = mg_tensor_alloc(&mid, MG_F32, 2, nd);
        if (status == MG_OK) {
            status = mg_linear(ctx, &feats, &m->proj0_w, m->proj0_b.data ? &m->proj0_b : NULL, &mid);
            if (status == MG_OK) status = mg_activate(ctx, &mid, MG_ACT_GELU_ERF, &mid);
            if (status == MG_OK) status = mg_linear(ctx, &mid, &m->proj2_w, m->proj2_b.data ? &m->proj2_b : NULL, embeddings);
            mg_tensor_free_data(&mid);
        }
    } else if (status == MG_OK) {
        status = mg_linear(ctx, &feats, &m->proj0_w, m->proj0_b.data ? &m->proj0_b : NULL, embeddings);
    }
    if (!clip_features) mg_tensor_free_data(&feats);
    return status;
}

mg_status mg_medplib_region_feature(mg_context *ctx, mg_medplib *m, const mg_tensor *clip_features,
                                    const uint8_t *grid_mask, int max_points, float *out, int *n_points) {
    if (!ctx || !m || !clip_features || !grid_mask || !out)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_medplib_region_feature: NULL argument");
    if (!m->region_w.data)
        return mg_error(MG_ERR_NOT_FOUND, "MedPLIB: the checkpoint has no model.region_fea_adapter.* (no region prompts)");
    if (!m->info.clip_grid || m->info.image_tokens != m->info.clip_grid * m->info.clip_grid)
        return mg_error(MG_ERR_UNSUPPORTED, "MedPLIB: region prompts need the patch features without the class row");
    int64_t W = m->info.clip_width, D = m->info.hidden_size;
    MG_TRY(mg_check_f32_2d("CLIP features", clip_features, m->info.image_tokens, W));
    mg_tensor mean, y;
    int64_t w1[2] = {1, W};
    MG_TRY(mg_tensor_alloc(&mean, MG_F32, 2, w1));
    mg_status status = mg_region_sample(clip_features, m->info.clip_grid, grid_mask, max_points > 0 ? max_points : 512,
                                        mean.data, n_points);
    if (status == MG_OK) {
        int64_t d1[2] = {1, D};
        status = mg_tensor_init(&y, out, MG_F32, 2, d1);
        if (status == MG_OK) status = mg_linear(ctx, &mean, &m->region_w, m->region_b.data ? &m->region_b : NULL, &y);
    }
    mg_tensor_free_data(&mean);
    return status;
}

/* --------------------------------------------------------------- language */

/* Expands placeholders: -200 -> image_tokens rows, -300 -> one region row.
 * ids[] gets 0 at overridden rows; rows/emb list the overrides in order. */
typedef struct mg_medplib_prompt {
    int32_t *ids;
    int n;
    int32_t *rows;
    int n_rows;
    mg_tensor emb;
} mg_medplib_prompt;

static void mg_medplib_prompt_free(mg_medplib_prompt *p) {
    free(p->ids);
    free(p->rows);
    mg_tensor_free_data(&p->emb);
    memset(p, 0, sizeof *p);
}

static mg_status mg_medplib_expand(const mg_medplib *m, const int32_t *tokens, int n_tokens, const mg_tensor *image,
                                   const mg_tensor *regions, mg_medplib_prompt *p) {
    memset(p, 0, sizeof *p);
    int64_t N = m->info.image_tokens, D = m->info.hidden_size;
    int n_image = 0, n_region = 0;
    for (int i = 0; i < n_tokens; i++) {
        if (tokens[i] == MG_MEDPLIB_IMAGE_TOKEN) n_image++;
        else if (tokens[i] == MG_MEDPLIB_REGION_TOKEN) n_region++;
        else if (tokens[i] < 0 || tokens[i] >= m->info.vocab_size)
            return mg_error(MG_ERR_INVALID_ARGUMENT, "MedPLIB prompt: token %d at position %d is outside the vocabulary [0, %d)",
                            tokens[i], i, m->info.vocab_size);
    }
    if (n_image > 1)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "MedPLIB prompt: %d image placeholders (-200); one image per prompt", n_image);
    if (n_image && (!image || mg_check_f32_2d("image embeddings", image, N, D) != MG_OK))
        return mg_error(MG_ERR_SHAPE, "MedPLIB prompt: the image placeholder needs image embeddings f32 [%lld, %lld]",
                        (long long)N, (long long)D);
    if (n_region && (!regions || regions->dtype != MG_F32 || regions->n_dims != 2 || regions->shape[0] != n_region ||
                     regions->shape[1] != D || !mg_tensor_is_contiguous(regions)))
        return mg_error(MG_ERR_SHAPE, "MedPLIB prompt: %d region placeholders (-300) need region embeddings f32 [%d, %lld]",
                        n_region, n_region, (long long)D);
    int64_t total = (int64_t)n_tokens - n_image + n_image * N;
    int n_rows = (int)(n_image * N + n_region);
    p->ids = malloc((size_t)total * sizeof *p->ids);
    p->rows = malloc((size_t)(n_rows > 0 ? n_rows : 1) * sizeof *p->rows);
    if (!p->ids || !p->rows) {
        mg_medplib_prompt_free(p);
        return mg_error(MG_ERR_NO_MEMORY, "medplib: out of memory");
    }
    if (n_rows > 0) {
        int64_t shape[2] = {n_rows, D};
        mg_status status = mg_tensor_alloc(&p->emb, MG_F32, 2, shape);
        if (status != MG_OK) {
            mg_medplib_prompt_free(p);
            return status;
        }
    }
    float *dst = p->emb.data;
    int pos = 0, region = 0;
    for (int i = 0; i < n_tokens; i++) {
        if (tokens[i] == MG_MEDPLIB_IMAGE_TOKEN) {
            for (int64_t r = 0; r < N; r++) {
                p->rows[p->n_rows] = pos;
                memcpy(dst + (int64_t)p->n_rows * D, (const float *)image->data + r * D, (size_t)D * 4);
                p->n_rows++;
                p->ids[pos++] = 0;
            }
        } else if (tokens[i] == MG_MEDPLIB_REGION_TOKEN) {
            p->rows[p->n_rows] = pos;
            memcpy(dst + (int64_t)p->n_rows * D, (const float *)regions->data + (int64_t)region * D, (size_t)D * 4);
            p->n_rows++;
            region++;
            p->ids[pos++] = 0;
        } else {
            p->ids[pos++] = tokens[i];
        }
    }
    p->n = pos;
    return MG_OK;
}

mg_status mg_medplib_expanded_length(const mg_medplib *m, const int32_t *tokens, int n_tokens, int *out) {
    if (!m || !tokens || !out) return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_medplib_expanded_length: NULL argument");
    int64_t n = 0;
    for (int i = 0; i < n_tokens; i++) n += tokens[i] == MG_MEDPLIB_IMAGE_TOKEN ? m->info.image_tokens : 1;
    *out = (int)n;
    return MG_OK;
}

mg_status mg_medplib_forward(mg_context *ctx, mg_medplib *m, mg_kv_cache *cache, const int32_t *tokens, int n_tokens,
                             const mg_tensor *image_embeddings, const mg_tensor *region_embeddings, mg_tensor *logits,
                             mg_tensor *hidden) {
    if (!ctx || !m || !cache || !tokens || n_tokens <= 0)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_medplib_forward: NULL argument or empty prompt");
    mg_medplib_prompt p;
    MG_TRY(mg_medplib_expand(m, tokens, n_tokens, image_embeddings, region_embeddings, &p));
    mg_decoder_input in = {p.ids, p.n, p.n_rows ? &p.emb : NULL, p.rows, p.n_rows};
    mg_status status = mg_decoder_forward(ctx, m->decoder, cache, &in, logits, hidden, NULL);
    mg_medplib_prompt_free(&p);
    return status;
}

static bool mg_medplib_is_stop(const mg_generate_options *o, int32_t token) {
    for (int i = 0; i < o->n_stop_tokens; i++)
        if (o->stop_tokens[i] == token) return true;
    return false;
}

mg_status mg_medplib_generate(mg_context *ctx, mg_medplib *m, const int32_t *tokens, int n_tokens,
                              const mg_tensor *image_embeddings, const mg_tensor *region_embeddings,
                              const mg_generate_options *options, int32_t seg_token, int32_t *out_tokens, int max_out,
                              int *n_out, float *seg_hidden, int *seg_index) {
    if (!ctx || !m || !tokens || !options || !n_out || (max_out > 0 && !out_tokens))
        return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_medplib_generate: NULL argument");
    *n_out = 0;
    if (seg_index) *seg_index = -1;
    if (n_tokens <= 0) return mg_error(MG_ERR_INVALID_ARGUMENT, "MedPLIB: the prompt is empty");
    if (options->max_new_tokens < 0)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "MedPLIB: max_new_tokens %d must be >= 0", options->max_new_tokens);
    mg_medplib_prompt p;
    MG_TRY(mg_medplib_expand(m, tokens, n_tokens, image_embeddings, region_embeddings, &p));
    int limit = options->max_new_tokens < max_out ? options->max_new_tokens : max_out;
    int64_t D = m->info.hidden_size, V = m->info.vocab_size;
    mg_kv_cache *cache = NULL;
    mg_tensor logits, hid;
    memset(&logits, 0, sizeof logits);
    memset(&hid, 0, sizeof hid);
    int64_t lv[2] = {1, V}, hd[2] = {p.n, D};
    mg_status status = mg_kv_cache_create(m->decoder, p.n + (limit > 0 ? limit : 1), &cache);
    if (status == MG_OK) status = mg_tensor_alloc(&logits, MG_F32, 2, lv);
    if (status == MG_OK) status = mg_tensor_alloc(&hid, MG_F32, 2, hd);
    if (status == MG_OK) {
        mg_decoder_input in = {p.ids, p.n, p.n_rows ? &p.emb : NULL, p.rows, p.n_rows};
        status = mg_decoder_forward(ctx, m->decoder, cache, &in, &logits, &hid, NULL);
    }
    /* `last` = final-normed hidden state of the position whose logits are in `logits`. */
    const float *last = (const float *)hid.data + (p.n - 1) * D;
    uint64_t rng = options->seed;
    bool found = false;
    for (int i = 0; status == MG_OK && i < limit; i++) {
        int32_t token;
        status = mg_sample_token(logits.data, (int)V, options, &rng, &token);
        if (status != MG_OK) break;
        out_tokens[(*n_out)++] = token;
        if (!found && token == seg_token && seg_token >= 0) {
            found = true;
            if (seg_hidden) memcpy(seg_hidden, last, (size_t)D * 4);
            if (seg_index) *seg_index = i;
        }
        bool go_on = options->on_token ? options->on_token(options->user_data, token) : true;
        if (!go_on || mg_medplib_is_stop(options, token) || i + 1 == limit) break;
        mg_decoder_input step = {&token, 1, NULL, NULL, 0};
        mg_tensor h1 = mg_view2_f32(hid.data, 1, D);
        status = mg_decoder_forward(ctx, m->decoder, cache, &step, &logits, &h1, NULL);
        last = hid.data;
    }
    mg_kv_cache_free(cache);
    mg_tensor_free_data(&logits);
    mg_tensor_free_data(&hid);
    mg_medplib_prompt_free(&p);
    return status;
}

/* ------------------------------------------------------------------- mask */

mg_status mg_medplib_seg_prompt(mg_context *ctx, mg_medplib *m, const float *seg_hidden, float *out) {
    if (!ctx || !m || !seg_hidden || !out) return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_medplib_seg_prompt: NULL argument");
    if (!m->seg0_w.data)
        return mg_error(MG_ERR_NOT_FOUND, "MedPLIB: the checkpoint has no model.text_hidden_fcs.* (no <SEG> projector)");
    int64_t D = m->info.hidden_size, C = m->info.seg_dim;
    mg_tensor x, mid, y;
    int64_t d1[2] = {1, D}, c1[2] = {1, C};
    MG_TRY(mg_tensor_init(&x, (void *)seg_hidden, MG_F32, 2, d1));
    MG_TRY(mg_tensor_init(&y, out, MG_F32, 2, c1));
    MG_TRY(mg_tensor_alloc(&mid, MG_F32, 2, d1));
    mg_status status = mg_linear(ctx, &x, &m->seg0_w, m->seg0_b.data ? &m->seg0_b : NULL, &mid);
    if (status == MG_OK) status = mg_activate(ctx, &mid, MG_ACT_RELU, &mid);
    if (status == MG_OK) status = mg_linear(ctx, &mid, &m->seg2_w, m->seg2_b.data ? &m->seg2_b : NULL, &y);
    mg_tensor_free_data(&mid);
    return status;
}

mg_status mg_medplib_decode_mask(mg_context *ctx, mg_medplib *m, const mg_tensor *sam_embedding, const float *seg_prompt,
                                 mg_tensor *low_res, float *score) {
    if (!ctx || !m || !sam_embedding || !seg_prompt || !low_res)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_medplib_decode_mask: NULL argument");
    if (!m->sam) return mg_error(MG_ERR_NOT_FOUND, "MedPLIB: no SAM-Med2D model (model.visual_model.*) was loaded");
    mg_sam_info si;
    MG_TRY(mg_sam_get_info(m->sam, &si));
    mg_tensor dense, sparse, iou;
    int64_t dshape[3] = {si.prompt_dim, si.grid, si.grid}, sshape[2] = {1, si.prompt_dim}, ishape[1] = {1};
    float iou_value = 0;
    MG_TRY(mg_tensor_init(&sparse, (void *)seg_prompt, MG_F32, 2, sshape));
    MG_TRY(mg_tensor_init(&iou, &iou_value, MG_F32, 1, ishape));
    MG_TRY(mg_tensor_alloc(&dense, MG_F32, 3, dshape));
    mg_status status = mg_sam_encode_prompt(ctx, m->sam, NULL, NULL, 0, NULL, NULL, NULL, &dense);
    if (status == MG_OK) status = mg_sam_decode(ctx, m->sam, sam_embedding, &sparse, &dense, false, low_res, &iou);
    mg_tensor_free_data(&dense);
    if (status == MG_OK && score) *score = iou_value;
    return status;
}

/* Python slice [start, start + length) on a side of n (negative start wraps
 * once, then clamps), as MedPLIB's postprocess_masks indexes. */
static void mg_py_slice(int64_t start, int64_t length, int64_t n, int64_t *lo, int64_t *hi) {
    int64_t stop = start + length;
    if (start < 0) start += n;
    if (start < 0) start = 0;
    if (start > n) start = n;
    if (stop < 0) stop += n;
    if (stop < 0) stop = 0;
    if (stop > n) stop = n;
    *lo = start;
    *hi = stop;
}

mg_status mg_medplib_postprocess(mg_context *ctx, const mg_tensor *low_res, int sam_size, int resized_height,
                                 int resized_width, bool reference_crop, float threshold, mg_tensor *mask,
                                 mg_tensor *probs) {
    if (!ctx || !low_res || !mask) return mg_error(MG_ERR_INVALID_ARGUMENT, "mg_medplib_postprocess: NULL argument");
    char got[64];
    if (low_res->dtype != MG_F32 || low_res->n_dims != 2 || !mg_tensor_is_contiguous(low_res))
        return mg_error(MG_ERR_SHAPE, "MedPLIB postprocess: low_res must be contiguous f32 [h, w], got %s",
                        mg_tensor_describe(low_res, got, sizeof got));
    if (mask->dtype != MG_U8 || mask->n_dims != 2 || !mg_tensor_is_contiguous(mask))
        return mg_error(MG_ERR_SHAPE, "MedPLIB postprocess: mask must be contiguous u8 [H, W], got %s",
                        mg_tensor_describe(mask, got, sizeof got));
    int64_t H = mask->shape[0], W = mask->shape[1], lh = low_res->shape[0], lw = low_res->shape[1];
    if (probs && (probs->dtype != MG_F32 || probs->n_dims != 2 || probs->shape[0] != H || probs->shape[1] != W ||
                  !mg_tensor_is_contiguous(probs)))
        return mg_error(MG_ERR_SHAPE, "MedPLIB postprocess: probs must be contiguous f32 [%lld, %lld]", (long long)H,
                        (long long)W);
    if (sam_size <= 0 || resized_height <= 0 || resized_width <= 0 || resized_height > sam_size || resized_width > sam_size)
        return mg_error(MG_ERR_INVALID_ARGUMENT, "MedPLIB postprocess: resized size %dx%d must lie in the %d-px SAM input",
                        resized_width, resized_height, sam_size);
    mg_tensor src3 = *low_res, square, crop, logit;
    int64_t s3[3] = {1, lh, lw};
    MG_TRY(mg_tensor_reshape(low_res, 3, s3, &src3));
    int64_t hw3[3] = {1, H, W};
    MG_TRY(mg_tensor_alloc(&logit, MG_F32, 3, hw3));
    memset(&square, 0, sizeof square);
    mg_status status = MG_OK;
    if (reference_crop) {
        /* postprocess_masks: pad = 64 - h' (it assumes a 256 grid), top = pad // 2
         * (floor), crop [top, top + h') with Python slice semantics. */
        int64_t pad_h = lh - resized_height, pad_w = lw - resized_width;
        int64_t top = pad_h >= 0 ? pad_h / 2 : -((-pad_h + 1) / 2), left = pad_w >= 0 ? pad_w / 2 : -((-pad_w + 1) / 2);
        int64_t r0, r1, c0, c1;
        mg_py_slice(top, resized_height, lh, &r0, &r1);
        mg_py_slice(left, resized_width, lw, &c0, &c1);
        if (r1 <= r0 || c1 <= c0)
            status = mg_error(MG_ERR_INVALID_ARGUMENT,
                              "MedPLIB postprocess (reference crop): the crop of a %lldx%lld map for a %dx%d resize is empty; use the default crop",
                              (long long)lw, (long long)lh, resized_width, resized_height);
        if (status == MG_OK) status = mg_tensor_slice(&src3, 1, r0, r1, &crop);
        if (status == MG_OK) status = mg_tensor_slice(&crop, 2, c0, c1, &crop);
    } else {
        /* SAM-Med2D's: upsample to the S x S input, crop the centered
         * resized region (where the image lies after center padding). */
        int64_t sq[3] = {1, sam_size, sam_size};
        status = mg_tensor_alloc(&square, MG_F32, 3, sq);
        if (status == MG_OK) status = mg_interpolate_bilinear(ctx, &src3, false, &square);
        int64_t top = (sam_size - resized_height) / 2, left = (sam_size - resized_width) / 2;
        if (status == MG_OK) status = mg_tensor_slice(&square, 1, top, top + resized_height, &crop);
        if (status == MG_OK) status = mg_tensor_slice(&crop, 2, left, left + resized_width, &crop);
    }
    if (status == MG_OK) status = mg_interpolate_bilinear(ctx, &crop, false, &logit);
    if (status == MG_OK) {
        const float *l = logit.data;
        uint8_t *mk = mask->data;
        float *pr = probs ? probs->data : NULL;
        for (int64_t i = 0; i < H * W; i++) {
            float p = 1.0f / (1.0f + expf(-l[i]));
            mk[i] = p > threshold ? 1 : 0;
            if (pr) pr[i] = p;
        }
    }
    mg_tensor_free_data(&logit);
    mg_tensor_free_data(&square);
    return status;
}

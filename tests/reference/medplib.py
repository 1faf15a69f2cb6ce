"""PyTorch reference for MedPLIB (LLaVA-1.5 + MoE LLaMA + SAM-Med2D), small random sizes.

Library pieces: transformers' ``CLIPVisionModel`` (vision tower), ``LlamaForCausalLM``
(language model) and ``LlamaMLP`` (each expert), Meta's segment-anything via
``reference/sam_med2d.py`` (SAM-Med2D). Written here from the published architecture
(docs/architecture.md §2), because no library has them:

* the DeepSpeed-0.13 top-1 MoE block at inference (``TopKGate`` in fp32, softmax,
  argmax, capacity ceil(T / E * cf) with overflow tokens dropped — we keep the earliest,
  DeepSpeed a random subset — and the output scaled by the router probability);
* LoRA experts W0 + (alpha / r) B A;
* the region "vision sampler" (mask resize/pad/nearest/largest component and
  ``F.grid_sample`` mean, §2.4);
* the <SEG> path (text_hidden_fcs, the SAM mask decoder with the projected state as the
  one sparse token) and MedPLIB's ``postprocess_masks`` (§2.12) and SAM-Med2D's crop.

Parameter names are the release's (``model.vision_tower.vision_tower.vision_model.*``,
``model.layers.N.mlp.deepspeed_moe.*``, ``model.mm_projector.{0,2}``,
``model.region_fea_adapter``, ``model.text_hidden_fcs.0.{0,2}``, ``model.visual_model.*``).
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F
from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM
from transformers.models.llama.modeling_llama import LlamaMLP

from . import sam_med2d as sam_ref

CLIP_PREFIX = "model.vision_tower.vision_tower.vision_model."
IMAGE_TOKEN = -200
REGION_TOKEN = -300


# --------------------------------------------------------------------------- MoE
class TopKGate(nn.Module):
    def __init__(self, hidden: int, n_experts: int):
        super().__init__()
        self.wg = nn.Linear(hidden, n_experts, bias=False)


class Experts(nn.Module):
    def __init__(self, config: LlamaConfig, n_experts: int):
        super().__init__()
        self.deepspeed_experts = nn.ModuleList(LlamaMLP(config) for _ in range(n_experts))


class DeepSpeedMoE(nn.Module):
    def __init__(self, config: LlamaConfig, n_experts: int):
        super().__init__()
        self.gate = TopKGate(config.hidden_size, n_experts)
        self.experts = Experts(config, n_experts)


class MoEBlock(nn.Module):
    """``mlp`` of a MedPLIB decoder layer (state-dict names mlp.deepspeed_moe.*)."""

    def __init__(self, config: LlamaConfig, n_experts: int, capacity_factor: float = 2.0, min_capacity: int = 0):
        super().__init__()
        self.deepspeed_moe = DeepSpeedMoE(config, n_experts)
        self.capacity_factor = capacity_factor
        self.min_capacity = min_capacity
        self.last_choice: torch.Tensor | None = None
        self.routed = torch.zeros(n_experts, dtype=torch.int64)

    def route(self, x: torch.Tensor):
        """x [T, H] -> (softmax probs [T, E] fp32, chosen expert [T])."""
        logits = x.float() @ self.deepspeed_moe.gate.wg.weight.float().t()
        probs = torch.softmax(logits, dim=-1)
        return probs, torch.argmax(probs, dim=-1)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        shape = hidden.shape
        x = hidden.reshape(-1, shape[-1])
        T = x.shape[0]
        E = len(self.deepspeed_moe.experts.deepspeed_experts)
        probs, choice = self.route(x)
        self.last_choice = choice.clone()
        self.routed += torch.bincount(choice, minlength=E)
        capacity = T if self.capacity_factor <= 0 else max(math.ceil(T / E * self.capacity_factor), self.min_capacity)
        out = torch.zeros_like(x)
        for e, expert in enumerate(self.deepspeed_moe.experts.deepspeed_experts):
            rows = torch.nonzero(choice == e).flatten()[:capacity]
            if rows.numel() == 0:
                continue
            out[rows] = probs[rows, e : e + 1].to(x.dtype) * expert(x[rows])
        return out.reshape(shape)


# ----------------------------------------------------------------------- model
class TinyMedPLIB(nn.Module):
    def __init__(self, *, vocab_size=32267, hidden=64, ffn=128, layers=2, heads=4, clip_width=32, clip_layers=3,
                 clip_heads=4, clip_mlp=64, image_size=336, patch=14, n_experts=2, sam_kwargs=None, seed=0,
                 capacity_factor=2.0):
        super().__init__()
        torch.manual_seed(seed)
        self.llama_config = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=ffn,
                                        num_hidden_layers=layers, num_attention_heads=heads,
                                        num_key_value_heads=heads, rms_norm_eps=1e-5, max_position_embeddings=4096,
                                        rope_theta=10000.0, tie_word_embeddings=False)
        self.llama_config._attn_implementation = "eager"
        self.lm = LlamaForCausalLM(self.llama_config)
        self.n_experts = n_experts
        if n_experts:
            for layer in self.lm.model.layers:
                layer.mlp = MoEBlock(self.llama_config, n_experts, capacity_factor)
        self.clip_config = CLIPVisionConfig(hidden_size=clip_width, intermediate_size=clip_mlp,
                                            num_hidden_layers=clip_layers, num_attention_heads=clip_heads,
                                            image_size=image_size, patch_size=patch, hidden_act="quick_gelu",
                                            layer_norm_eps=1e-5)
        self.clip_config._attn_implementation = "eager"
        self.clip = CLIPVisionModel(self.clip_config)
        self.mm_projector = nn.Sequential(nn.Linear(clip_width, hidden), nn.GELU(), nn.Linear(hidden, hidden))
        self.region_fea_adapter = nn.Linear(clip_width, hidden)
        sam_kwargs = dict(sam_kwargs or {})
        self.sam = sam_ref.build_sam_med2d(**sam_kwargs, seed=seed + 1)
        seg_dim = self.sam.prompt_encoder.embed_dim
        self.text_hidden_fcs = nn.ModuleList([nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
                                                            nn.Linear(hidden, seg_dim), nn.Dropout(0.0))])
        torch.manual_seed(seed + 2)
        with torch.no_grad():  # every parameter away from its init so nothing is trivially 0/1
            for name, p in self.named_parameters():
                if name.startswith("sam."):
                    continue
                if p.dim() >= 2:
                    p.copy_(torch.randn_like(p) / math.sqrt(p.shape[-1] if p.dim() == 2 else p[0].numel()))
                elif "norm" in name or "layrnorm" in name:
                    p.copy_(1.0 + 0.1 * torch.randn_like(p))
                else:
                    p.copy_(0.1 * torch.randn_like(p))
            self.lm.model.embed_tokens.weight.mul_(0.5 * math.sqrt(hidden))
            self.lm.lm_head.weight.mul_(3.0)
        self.requires_grad_(False)
        self.eval()

    # ---------------------------------------------------------------- naming
    def state_dict_release(self) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for k, v in self.lm.state_dict().items():
            if "rotary_emb" in k:
                continue
            out[k] = v
        for k, v in self.clip.state_dict().items():
            if k.endswith("position_ids"):
                continue
            key = k if k.startswith("vision_model.") else "vision_model." + k
            out["model.vision_tower.vision_tower." + key] = v
        for k, v in self.mm_projector.state_dict().items():
            out["model.mm_projector." + k] = v
        for k, v in self.region_fea_adapter.state_dict().items():
            out["model.region_fea_adapter." + k] = v
        for k, v in self.text_hidden_fcs.state_dict().items():
            out["model.text_hidden_fcs." + k] = v
        for k, v in self.sam.state_dict().items():
            if not k.startswith("pixel_"):
                out["model.visual_model." + k] = v
        return {k: v.detach().contiguous().clone() for k, v in out.items()}

    def config_json(self) -> dict:
        c = self.llama_config
        return {
            "architectures": ["MedPLIBMoeLlamaForCausalLM"], "model_type": "medplib_moe_llama",
            "hidden_size": c.hidden_size, "intermediate_size": c.intermediate_size,
            "num_hidden_layers": c.num_hidden_layers, "num_attention_heads": c.num_attention_heads,
            "num_key_value_heads": c.num_key_value_heads, "rms_norm_eps": c.rms_norm_eps,
            "max_position_embeddings": c.max_position_embeddings, "rope_theta": 10000.0,
            "vocab_size": c.vocab_size, "mm_hidden_size": self.clip_config.hidden_size,
            "mm_projector_type": "mlp2x_gelu", "mm_vision_select_layer": -2, "mm_vision_select_feature": "patch",
            "mm_use_im_start_end": True, "vision_config": {"num_attention_heads": self.clip_config.num_attention_heads},
            "moe": {"moe_enable": bool(self.n_experts), "num_experts": [self.n_experts] * c.num_hidden_layers,
                    "top_k_experts": 1, "capacity_factor": 1.5, "eval_capacity_factor": 2, "min_capacity": 0},
        }

    def save(self, folder: str, dtype: torch.dtype = torch.float32) -> str:
        from safetensors.torch import save_file

        os.makedirs(folder, exist_ok=True)
        tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in self.state_dict_release().items()}
        save_file(tensors, os.path.join(folder, "model.safetensors"))
        with open(os.path.join(folder, "config.json"), "w") as f:
            json.dump(self.config_json(), f)
        return folder

    # ---------------------------------------------------------------- vision
    @torch.no_grad()
    def clip_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels [3, S, S] -> LLaVA's feature: hidden_states[-2] without the class row."""
        out = self.clip(pixel_values=pixels[None], output_hidden_states=True)
        return out.hidden_states[-2][0, 1:]

    @torch.no_grad()
    def encode_image(self, pixels: torch.Tensor):
        feats = self.clip_features(pixels)
        return self.mm_projector(feats), feats

    @torch.no_grad()
    def region_feature(self, clip_feats: torch.Tensor, grid_mask: np.ndarray) -> torch.Tensor:
        """extract_region_feature: adapter on the map, grid_sample at the on-cells, mean."""
        g = grid_mask.shape[0]
        fmap = self.region_fea_adapter(clip_feats).t().reshape(1, -1, g, g)
        return sample_region(fmap, grid_mask)

    # -------------------------------------------------------------- language
    def embed(self, ids: list[int], image: torch.Tensor | None, regions: torch.Tensor | None) -> torch.Tensor:
        rows = []
        region = 0
        table = self.lm.model.embed_tokens.weight
        for t in ids:
            if t == IMAGE_TOKEN:
                rows.append(image)
            elif t == REGION_TOKEN:
                rows.append(regions[region : region + 1])
                region += 1
            else:
                rows.append(table[t : t + 1])
        return torch.cat(rows, 0)[None]

    @torch.no_grad()
    def greedy(self, ids, image=None, regions=None, max_new_tokens=20, stop=(2,)):
        """Greedy decoding with a KV cache; returns (tokens, per-step logits, the final-normed
        hidden state of the position that produced each token)."""
        embeds = self.embed(ids, image, regions)
        out = self.lm(inputs_embeds=embeds, use_cache=True, output_hidden_states=True)
        cache = out.past_key_values
        logits = [out.logits[0, -1]]
        hidden = [out.hidden_states[-1][0, -1]]
        tokens = []
        for i in range(max_new_tokens):
            token = int(torch.argmax(logits[-1]))
            tokens.append(token)
            if token in stop or i + 1 == max_new_tokens:
                break
            step = self.lm.model.embed_tokens.weight[token][None, None]
            out = self.lm(inputs_embeds=step, cache=cache, use_cache=True, output_hidden_states=True)
            cache = out.past_key_values
            logits.append(out.logits[0, -1])
            hidden.append(out.hidden_states[-1][0, -1])
        return tokens, torch.stack(logits), torch.stack(hidden[: len(tokens)])

    # ------------------------------------------------------------------ mask
    @torch.no_grad()
    def seg_prompt(self, seg_hidden: torch.Tensor) -> torch.Tensor:
        return self.text_hidden_fcs[0](seg_hidden[None])[0]

    @torch.no_grad()
    def decode_mask(self, sam_pixels: torch.Tensor, seg_prompt: torch.Tensor):
        emb = self.sam.image_encoder(sam_pixels[None])
        _, dense = self.sam.prompt_encoder(points=None, boxes=None, masks=None)
        low_res, iou = self.sam.mask_decoder(image_embeddings=emb, image_pe=self.sam.prompt_encoder.get_dense_pe(),
                                             sparse_prompt_embeddings=seg_prompt[None, None],
                                             dense_prompt_embeddings=dense, multimask_output=False)
        return low_res[0, 0], float(iou[0, 0])


# ---------------------------------------------------------------- region sampler
def grid_mask_from_mask(mask: np.ndarray, image_size: int = 336, patch: int = 14, largest: bool = True) -> np.ndarray:
    """LazySupervisedDataset: >=1 -> 1, PIL BILINEAR resize-longest, center pad 0,
    cv2 INTER_NEAREST by 1/patch (pixel patch*r, patch*c), largest 8-connected component."""
    from skimage.measure import label

    binary = (mask >= 1).astype(np.uint8)
    h, w = binary.shape
    s = image_size / max(h, w)
    nh, nw = int(h * s + 0.5), int(w * s + 0.5)
    resized = np.asarray(Image.fromarray(binary).resize((nw, nh), Image.BILINEAR))
    canvas = np.zeros((image_size, image_size), np.uint8)
    top, left = (image_size - nh) // 2, (image_size - nw) // 2
    canvas[top : top + nh, left : left + nw] = resized
    grid = (canvas[::patch, ::patch] > 0).astype(np.uint8)
    if largest and grid.any():
        labels = label(grid, connectivity=2)
        areas = np.bincount(labels.ravel())[1:]
        grid = (labels == 1 + int(np.argmax(areas))).astype(np.uint8)
    return grid


def sample_region(fmap: torch.Tensor, grid_mask: np.ndarray) -> torch.Tensor:
    """fmap [1, C, g, g]; points (r/g, c/g) flipped to (x, y), grid_sample at 2p-1."""
    g = grid_mask.shape[0]
    rc = torch.nonzero(torch.from_numpy(grid_mask.astype(np.int64)) > 0).float() / g
    xy = rc.flip(-1)
    grid = (2 * xy - 1)[None, None]  # [1, 1, N, 2]
    sampled = F.grid_sample(fmap.float(), grid.float(), mode="bilinear", padding_mode="zeros", align_corners=True)
    return sampled[0, :, 0].mean(-1)


# ---------------------------------------------------------------- postprocess
def postprocess_reference(low_res: torch.Tensor, resized: tuple[int, int], original: tuple[int, int]) -> torch.Tensor:
    """MedPLIB postprocess_masks on the 64x64 map (it pads as if it were 256)."""
    h, w = resized
    m = low_res[None, None].float()
    pad_h, pad_w = m.shape[-2] - h, m.shape[-1] - w
    top, left = pad_h // 2, pad_w // 2
    m = m[..., top : top + h, left : left + w]
    return F.interpolate(m, original, mode="bilinear", align_corners=False)[0, 0]


def postprocess_correct(low_res: torch.Tensor, resized: tuple[int, int], original: tuple[int, int],
                        size: int = 256) -> torch.Tensor:
    """SAM-Med2D's: upsample to the SxS input, crop the centered resized image, resize to HxW."""
    h, w = resized
    m = F.interpolate(low_res[None, None].float(), (size, size), mode="bilinear", align_corners=False)
    top, left = (size - h) // 2, (size - w) // 2
    m = m[..., top : top + h, left : left + w]
    return F.interpolate(m, original, mode="bilinear", align_corners=False)[0, 0]


def lora_merge(w0: torch.Tensor, a: torch.Tensor, b: torch.Tensor, alpha: float, r: int) -> torch.Tensor:
    """peft LoraLayer merge: W0 + (alpha / r) * B @ A."""
    return w0 + (alpha / r) * (b @ a)

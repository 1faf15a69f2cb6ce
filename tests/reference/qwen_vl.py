"""PyTorch reference of the Qwen-VL-Chat architecture (BiRD's base model).

Written for medground's tests from the published description (see
docs/architecture.md §1.2–1.4), with module and parameter names chosen so a
Hugging Face Qwen-VL state dict loads into it verbatim. It is deliberately
plain eager PyTorch in float32: torch's own Conv2d, LayerNorm,
F.interpolate(bicubic), nn.MultiheadAttention and GELU serve as the
independent implementations the C library is compared with.

Also here: ``tiny_config`` / ``random_state_dict`` / ``save_checkpoint`` to
build small random checkpoints with the real tensor names and layouts
(widths and depths shrunk), and ``hf_tensor_shapes`` which lists every tensor
of a full-size config (plain or GPTQ int4) for the name-coverage test.
"""

from __future__ import annotations

import json
import math
import pathlib

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# ----------------------------------------------------------------- configs


def tiny_config(vocab_size: int = 512, image_start_id: int = 500) -> dict:
    """A config.json of the real schema with widths/depths shrunk. The
    resampler width must equal hidden_size and be a multiple of 128 (its
    head count is width // 128): 256 gives 2 resampler heads. Qwen's special
    tokens keep their relative layout (<|endoftext|> = image_start_id - 214),
    so vocab_size 512 with image_start_id 500 holds them all (286..502)."""
    return {
        "architectures": ["QWenLMHeadModel"],
        "model_type": "qwen",
        "hidden_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "kv_channels": 64,
        "intermediate_size": 512,  # two SwiGLU branches of 256
        "layer_norm_epsilon": 1e-6,
        "vocab_size": vocab_size,
        "rotary_emb_base": 10000,
        "rotary_pct": 1.0,
        "seq_length": 2048,
        "max_position_embeddings": 8192,
        "use_dynamic_ntk": True,
        "use_logn_attn": True,
        "no_bias": True,
        "tie_word_embeddings": False,
        "visual": {
            "heads": 4,
            "image_size": 112,  # 8 x 8 patches: the 16x16 position table is resized
            "image_start_id": image_start_id,
            "layers": 2,
            "mlp_ratio": 2.0,
            "output_dim": 256,  # resampler width = hidden_size (2 heads of 128)
            "patch_size": 14,
            "width": 64,
        },
    }


# --------------------------------------------------------- 2-D sin-cos table


def sincos_2d(dim: int, grid: int) -> np.ndarray:
    """MAE 2-D sin-cos table [grid*grid, dim]: first half encodes the column."""
    omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim / 4.0))
    rows, cols = np.meshgrid(np.arange(grid, dtype=np.float64), np.arange(grid, dtype=np.float64), indexing="ij")
    def half(pos):
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)
    return np.concatenate([half(cols), half(rows)], axis=1).astype(np.float32)


def resize_abs_pos(table: torch.Tensor, tokens: int) -> torch.Tensor:
    """Qwen-VL get_abs_pos: [g*g, C] -> [t*t, C], bicubic, align_corners=False."""
    src = int(math.sqrt(table.shape[0]))
    dst = int(math.sqrt(tokens))
    if src == dst:
        return table
    grid = table.float().reshape(1, src, src, -1).permute(0, 3, 1, 2)
    out = F.interpolate(grid, size=(dst, dst), mode="bicubic", align_corners=False)
    return out.permute(0, 2, 3, 1).flatten(0, 2).to(table.dtype)  # computed in f32, as Qwen-VL does


# ----------------------------------------------------------------- vision


class VisualAttention(nn.Module):
    """Self-attention with a head-interleaved in_proj: per head [q | k | v]."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.in_proj = nn.Linear(width, 3 * width)
        self.out_proj = nn.Linear(width, width)

    def forward(self, x):  # x [T, W]
        T, W = x.shape
        d = W // self.heads
        mixed = self.in_proj(x).view(T, self.heads, 3 * d)
        q, k, v = mixed.split(d, dim=-1)  # each [T, H, d]
        scores = torch.einsum("thd,shd->hts", q, k) / math.sqrt(d)
        probs = scores.softmax(dim=-1)
        out = torch.einsum("hts,shd->thd", probs, v).reshape(T, W)
        return self.out_proj(out)


class VisualMLP(nn.Module):
    def __init__(self, width: int, mlp_width: int):
        super().__init__()
        self.c_fc = nn.Linear(width, mlp_width)
        self.c_proj = nn.Linear(mlp_width, width)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x)))  # exact erf GELU


class VisualBlock(nn.Module):
    def __init__(self, width: int, heads: int, mlp_width: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width, eps=1e-6)
        self.attn = VisualAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width, eps=1e-6)
        self.mlp = VisualMLP(width, mlp_width)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class VisualTransformer(nn.Module):
    def __init__(self, width, layers, heads, mlp_width):
        super().__init__()
        self.resblocks = nn.ModuleList([VisualBlock(width, heads, mlp_width) for _ in range(layers)])


class Resampler(nn.Module):
    """256 learned queries cross-attend to the ViT tokens (torch's MHA)."""

    def __init__(self, n_queries: int, dim: int, kv_dim: int):
        super().__init__()
        self.query = nn.Parameter(torch.zeros(n_queries, dim))
        self.pos_embed = nn.Parameter(torch.zeros(n_queries, dim))
        self.kv_proj = nn.Linear(kv_dim, dim, bias=False)
        self.attn = nn.MultiheadAttention(dim, dim // 128)
        self.ln_q = nn.LayerNorm(dim, eps=1e-6)
        self.ln_kv = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x):  # x [T, kv_dim]
        pos = resize_abs_pos(self.pos_embed, x.shape[0])
        kv = self.ln_kv(self.kv_proj(x))
        q = self.ln_q(self.query)
        out, _ = self.attn((q + self.pos_embed)[:, None], (kv + pos)[:, None], kv[:, None], need_weights=False)
        return out[:, 0]


class Visual(nn.Module):
    def __init__(self, v: dict):
        super().__init__()
        width = v["width"]
        self.patch = v["patch_size"]
        self.conv1 = nn.Conv2d(3, width, kernel_size=self.patch, stride=self.patch, bias=False)
        self.positional_embedding = nn.Parameter(torch.zeros(256, width))
        self.ln_pre = nn.LayerNorm(width, eps=1e-6)
        self.transformer = VisualTransformer(width, v["layers"], v["heads"], int(width * v["mlp_ratio"]))
        self.attn_pool = Resampler(256, v["output_dim"], width)
        self.ln_post = nn.LayerNorm(v["output_dim"], eps=1e-6)
        self.proj = nn.Parameter(torch.zeros(v["output_dim"], v["output_dim"]))

    def vit(self, image):  # image [3, S, S] -> [T, W]
        x = self.conv1(image[None])[0]  # [W, g, g]
        x = x.flatten(1).T  # [g*g, W], row-major over the grid
        x = x + resize_abs_pos(self.positional_embedding, x.shape[0])
        x = self.ln_pre(x)
        for block in self.transformer.resblocks:
            x = block(x)
        return x

    def forward(self, image):
        features = self.vit(image)
        pooled = self.ln_post(self.attn_pool(features))
        return features, pooled @ self.proj


# --------------------------------------------------------------- language


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


def rotate_half(x):
    a, b = x.chunk(2, dim=-1)
    return torch.cat([-b, a], dim=-1)


class QwenAttention(nn.Module):
    def __init__(self, c: dict):
        super().__init__()
        self.heads = c["num_attention_heads"]
        self.head_dim = c["kv_channels"]
        hidden = c["hidden_size"]
        self.c_attn = nn.Linear(hidden, 3 * self.heads * self.head_dim, bias=True)
        self.c_proj = nn.Linear(self.heads * self.head_dim, hidden, bias=False)

    def forward(self, x, cos, sin, past, logn):  # x [T, hidden]
        T = x.shape[0]
        q, k, v = self.c_attn(x).split(self.heads * self.head_dim, dim=-1)
        q, k, v = (t.view(T, self.heads, self.head_dim) for t in (q, k, v))
        rot = cos.shape[-1]
        def rope(t):  # in f32 and back to the layer's dtype, as modeling_qwen.py's apply_rotary_pos_emb
            t_rot, t_pass = t[..., :rot].float(), t[..., rot:]
            return torch.cat([(t_rot * cos[:, None] + rotate_half(t_rot) * sin[:, None]).type_as(t), t_pass], dim=-1)
        q, k = rope(q), rope(k)
        if past is not None:
            k = torch.cat([past[0], k], dim=0)
            v = torch.cat([past[1], v], dim=0)
        q = q * logn[:, None, None].to(q.dtype)
        S = k.shape[0]
        scores = torch.einsum("thd,shd->hts", q, k) / math.sqrt(self.head_dim)
        offset = S - T
        mask = torch.arange(S)[None, :] > (torch.arange(T)[:, None] + offset)
        scores = scores.masked_fill(mask[None], torch.finfo(scores.dtype).min)
        probs = scores.softmax(dim=-1)
        out = torch.einsum("hts,shd->thd", probs, v).reshape(T, -1)
        return self.c_proj(out), (k, v)


class QwenMLP(nn.Module):
    def __init__(self, c: dict):
        super().__init__()
        ff = c["intermediate_size"] // 2
        self.w1 = nn.Linear(c["hidden_size"], ff, bias=False)
        self.w2 = nn.Linear(c["hidden_size"], ff, bias=False)
        self.c_proj = nn.Linear(ff, c["hidden_size"], bias=False)

    def forward(self, x):
        return self.c_proj(self.w1(x) * F.silu(self.w2(x)))  # SiLU on w2


class QwenBlock(nn.Module):
    def __init__(self, c: dict):
        super().__init__()
        self.ln_1 = RMSNorm(c["hidden_size"], c["layer_norm_epsilon"])
        self.attn = QwenAttention(c)
        self.ln_2 = RMSNorm(c["hidden_size"], c["layer_norm_epsilon"])
        self.mlp = QwenMLP(c)

    def forward(self, x, cos, sin, past, logn):
        a, present = self.attn(self.ln_1(x), cos, sin, past, logn)
        h = x + a
        return h + self.mlp(self.ln_2(h)), present


class QwenTransformer(nn.Module):
    def __init__(self, c: dict):
        super().__init__()
        self.wte = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.h = nn.ModuleList([QwenBlock(c) for _ in range(c["num_hidden_layers"])])
        self.ln_f = RMSNorm(c["hidden_size"], c["layer_norm_epsilon"])
        self.visual = Visual(c["visual"])


class QwenVL(nn.Module):
    """transformer.{wte, h, ln_f, visual} + lm_head, as in the HF checkpoint."""

    def __init__(self, config: dict):
        super().__init__()
        self.config = config
        self.transformer = QwenTransformer(config)
        self.lm_head = nn.Linear(config["hidden_size"], config["vocab_size"], bias=False)

    # -- image
    @torch.no_grad()
    def encode_image(self, image):
        """image [3, S, S] f32 -> (vit features [T, W], embeddings [256, hidden])."""
        return self.transformer.visual(torch.as_tensor(image).to(self.transformer.visual.conv1.weight.dtype))

    # -- rotary tables (modeling_qwen.py RotaryEmbedding with dynamic NTK)
    def _rotary(self, positions, alpha):
        c = self.config
        dim = int(c["kv_channels"] * c["rotary_pct"])
        base = c["rotary_emb_base"] * alpha ** (dim / (dim - 2))
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim))
        freqs = torch.outer(positions.float(), inv_freq)
        emb = torch.cat([freqs, freqs], dim=-1)
        return emb.cos(), emb.sin()

    @staticmethod
    def ntk_alpha(length: int, seq_length: int) -> float:
        context = math.log(length / seq_length, 2) + 1
        return max(2 ** math.ceil(context) - 1, 1)

    @torch.no_grad()
    def forward(self, ids, past=None, image_embeds=None):
        """ids [T] (new tokens). past: None or dict(kv=[(k, v)...], alpha).
        image_embeds [n*256, hidden]: written over the rows between each
        <img>/</img> pair (new tokens only). Returns logits [T, vocab],
        hidden states (embeddings, each block's input, final-normed output)
        and the new past."""
        c = self.config
        ids = torch.as_tensor(ids, dtype=torch.long)
        T = ids.shape[0]
        P = 0 if past is None else past["kv"][0][0].shape[0]
        x = self.transformer.wte(ids)
        if image_embeds is not None:
            start = c["visual"]["image_start_id"]
            opens = (ids == start).nonzero().flatten().tolist()
            closes = (ids == start + 1).nonzero().flatten().tolist()
            emb = torch.as_tensor(image_embeds).to(x.dtype).reshape(len(opens), -1, x.shape[1])
            for i, (a, b) in enumerate(zip(opens, closes)):
                x[a + 1 : b] = emb[i]
        if past is None:
            alpha = self.ntk_alpha(T, c["seq_length"]) if c["use_dynamic_ntk"] else 1.0
        else:
            alpha = past["alpha"]
        positions = torch.arange(P, P + T)
        cos, sin = self._rotary(positions, alpha)
        L = c["seq_length"]
        logn = torch.tensor(
            [math.log(p + 1, L) if (c["use_logn_attn"] and p + 1 > L) else 1.0 for p in range(P, P + T)]
        )
        hidden = []
        presents = []
        for i, block in enumerate(self.transformer.h):
            hidden.append(x)
            x, present = block(x, cos, sin, None if past is None else past["kv"][i], logn)
            presents.append(present)
        x = self.transformer.ln_f(x)
        hidden.append(x)
        return self.lm_head(x), torch.stack(hidden), {"kv": presents, "alpha": alpha}

    @torch.no_grad()
    def greedy(self, ids, image_embeds=None, max_new_tokens=20, stop=()):
        """Greedy decoding with a KV cache: (tokens, per-step logits)."""
        logits, _, past = self.forward(ids, None, image_embeds)
        out, steps = [], [logits[-1]]
        for i in range(max_new_tokens):
            token = int(torch.argmax(steps[-1]))
            out.append(token)
            if token in stop or i + 1 == max_new_tokens:
                break
            logits, _, past = self.forward([token], past)
            steps.append(logits[-1])
        return out, torch.stack(steps)


# ------------------------------------------------------ random checkpoints


def random_state_dict(config: dict, seed: int = 0, scale: float = 0.1) -> dict[str, torch.Tensor]:
    """Random weights for QwenVL(config) with realistic magnitudes: norms
    near 1, pos_embed the real 2-D sin-cos table. scale 0.1 makes the tiny
    model's greedy continuations vary from step to step (0.05 repeats one
    token, which would hide cache/position bugs)."""
    torch.manual_seed(seed)
    model = QwenVL(config)
    state = {}
    for name, p in model.state_dict().items():
        if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight", "ln_pre.weight", "ln_post.weight",
                          "ln_q.weight", "ln_kv.weight")):
            t = 1.0 + 0.1 * torch.randn(p.shape)
        elif name.endswith("attn_pool.pos_embed"):
            grid = int(math.sqrt(p.shape[0]))
            t = torch.from_numpy(sincos_2d(p.shape[1], grid))
        elif name.endswith("wte.weight") or name.endswith("query") or name.endswith("positional_embedding"):
            t = torch.randn(p.shape) * 0.5
        else:
            t = torch.randn(p.shape) * scale
        state[name] = t.float().contiguous()
    return state


def load_model(config: dict, state: dict[str, torch.Tensor]) -> QwenVL:
    model = QwenVL(config)
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return model.eval()


def save_checkpoint(folder: pathlib.Path, config: dict, state: dict[str, torch.Tensor]) -> pathlib.Path:
    """A Hugging Face folder: model.safetensors + config.json."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def save_bin(folder: pathlib.Path, config: dict, state: dict[str, torch.Tensor],
             dtype: torch.dtype = torch.float32, shards: int = 1) -> pathlib.Path:
    """A Hugging Face folder of torch.save pickles (pytorch_model*.bin, with
    pytorch_model.bin.index.json when sharded) + config.json, as Qwen-VL-Chat
    ships (bf16 there)."""
    folder.mkdir(parents=True, exist_ok=True)
    names = list(state)
    if shards == 1:
        torch.save({k: state[k].to(dtype).contiguous() for k in names}, folder / "pytorch_model.bin")
    else:
        weight_map = {}
        for i in range(shards):
            part = names[i::shards]
            file = f"pytorch_model-{i + 1:05d}-of-{shards:05d}.bin"
            torch.save({k: state[k].to(dtype).contiguous() for k in part}, folder / file)
            weight_map.update({k: file for k in part})
        (folder / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def gguf_state_dict(path) -> dict[str, torch.Tensor]:
    """Every tensor of a GGUF file as exact f32 values, read and dequantised
    by the `gguf` package (independent of medground's reader)."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    reader = GGUFReader(str(path))
    out = {}
    for t in reader.tensors:
        values = dequantize(t.data, t.tensor_type)
        shape = tuple(int(d) for d in reversed(t.shape))  # GGUF lists dims fastest first
        out[t.name] = torch.from_numpy(np.array(values, dtype=np.float32).reshape(shape))
    return out


# ------------------------------------------------------------ GPTQ (int4)


def gptq_pack(weight: torch.Tensor, group_size: int = 128, seed: int = 0):
    """Quantise a torch-layout weight [out, in] the way AutoGPTQ stores it
    (4-bit sym, desc_act False, "v1" zero offset). Returns the tensors and
    the exact dequantised weight they represent."""
    out_f, in_f = weight.shape
    groups = in_f // group_size
    w = weight.float().T.contiguous()  # [in, out]
    wg = w.view(groups, group_size, out_f)
    scales = (wg.abs().amax(dim=1) / 7.0).clamp(min=1e-8).half()  # [groups, out]
    zero = 8
    q = torch.clamp(torch.round(wg / scales.float()[:, None, :]) + zero, 0, 15).to(torch.int64).view(in_f, out_f)
    shifts = torch.arange(8) * 4
    def as_int32(words):  # uint32 bit patterns viewed as int32, as AutoGPTQ stores them
        return torch.from_numpy(words.numpy().astype(np.uint32).view(np.int32))

    qweight = as_int32((q.view(in_f // 8, 8, out_f) << shifts[None, :, None]).sum(dim=1))
    zeros = torch.full((groups, out_f), zero - 1, dtype=torch.int64)  # stored minus one
    qzeros = as_int32((zeros.view(groups, out_f // 8, 8) << shifts[None, None, :]).sum(dim=2))
    g_idx = torch.arange(in_f, dtype=torch.int32) // group_size
    dequant = (scales.float()[g_idx.long()] * (q.float() - zero)).T.contiguous()  # [out, in]
    return {"qweight": qweight, "qzeros": qzeros, "scales": scales, "g_idx": g_idx}, dequant


# ------------------------------------------------- full-size tensor listing


def hf_tensor_shapes(config: dict, gptq: bool = False) -> dict[str, tuple[int, ...]]:
    """Every tensor of a Qwen-VL HF checkpoint for `config` with its shape,
    derived from the architecture. gptq: the LLM's block linears become
    AutoGPTQ's qweight/qzeros/scales/g_idx/bias (group size from
    config['quantization_config'])."""
    c, v = config, config["visual"]
    hidden, heads, d = c["hidden_size"], c["num_attention_heads"], c["kv_channels"]
    ff = c["intermediate_size"] // 2
    width, mlp = v["width"], int(v["width"] * v["mlp_ratio"])
    out = v["output_dim"]
    shapes: dict[str, tuple[int, ...]] = {
        "transformer.wte.weight": (c["vocab_size"], hidden),
        "transformer.ln_f.weight": (hidden,),
        "lm_head.weight": (c["vocab_size"], hidden),
    }
    group = c.get("quantization_config", {}).get("group_size", 128)

    def linear(name, o, i, bias):
        if gptq:
            shapes[f"{name}.qweight"] = (i // 8, o)
            shapes[f"{name}.qzeros"] = (i // group, o // 8)
            shapes[f"{name}.scales"] = (i // group, o)
            shapes[f"{name}.g_idx"] = (i,)
            shapes[f"{name}.bias"] = (o,)
        else:
            shapes[f"{name}.weight"] = (o, i)
            if bias:
                shapes[f"{name}.bias"] = (o,)

    for n in range(c["num_hidden_layers"]):
        p = f"transformer.h.{n}."
        shapes[p + "ln_1.weight"] = (hidden,)
        shapes[p + "ln_2.weight"] = (hidden,)
        linear(p + "attn.c_attn", 3 * heads * d, hidden, True)
        linear(p + "attn.c_proj", hidden, heads * d, False)
        linear(p + "mlp.w1", ff, hidden, False)
        linear(p + "mlp.w2", ff, hidden, False)
        linear(p + "mlp.c_proj", hidden, ff, False)
    p = "transformer.visual."
    shapes[p + "conv1.weight"] = (width, 3, v["patch_size"], v["patch_size"])
    shapes[p + "positional_embedding"] = (256, width)
    for part in ("ln_pre",):
        shapes[p + part + ".weight"] = (width,)
        shapes[p + part + ".bias"] = (width,)
    for n in range(v["layers"]):
        b = f"{p}transformer.resblocks.{n}."
        for part in ("ln_1", "ln_2"):
            shapes[b + part + ".weight"] = (width,)
            shapes[b + part + ".bias"] = (width,)
        shapes[b + "attn.in_proj.weight"] = (3 * width, width)
        shapes[b + "attn.in_proj.bias"] = (3 * width,)
        shapes[b + "attn.out_proj.weight"] = (width, width)
        shapes[b + "attn.out_proj.bias"] = (width,)
        shapes[b + "mlp.c_fc.weight"] = (mlp, width)
        shapes[b + "mlp.c_fc.bias"] = (mlp,)
        shapes[b + "mlp.c_proj.weight"] = (width, mlp)
        shapes[b + "mlp.c_proj.bias"] = (width,)
    a = p + "attn_pool."
    shapes[a + "query"] = (256, out)
    shapes[a + "pos_embed"] = (256, out)
    shapes[a + "kv_proj.weight"] = (out, width)
    shapes[a + "attn.in_proj_weight"] = (3 * out, out)
    shapes[a + "attn.in_proj_bias"] = (3 * out,)
    shapes[a + "attn.out_proj.weight"] = (out, out)
    shapes[a + "attn.out_proj.bias"] = (out,)
    for part in ("ln_q", "ln_kv"):
        shapes[a + part + ".weight"] = (out,)
        shapes[a + part + ".bias"] = (out,)
    shapes[p + "ln_post.weight"] = (out,)
    shapes[p + "ln_post.bias"] = (out,)
    shapes[p + "proj"] = (out, out)
    return shapes

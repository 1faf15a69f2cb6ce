"""A small Qwen-VL-shaped language model trained for a few seconds, for the
quantization-quality tests.

Random tiny weights are no use there: their logits are nearly tied, so any
perturbation (even q8_0 rounding) changes the argmax and greedy agreement
says nothing. This module trains the LM part of ``qwen_vl.QwenVL`` (real
tensor names; the vision tower keeps random weights and is not used) on a
deterministic synthetic corpus with learnable structure, so the model's
next-token predictions are confident where the corpus is predictable and
spread out where it is not.

The corpus ("mode chains"): each sequence starts with one of ``N_MODES``
mode tokens, then walks a chain over ``N_CONTENT`` content tokens:
``x[i+1] = PERMS[mode][x[i]]`` with probability ``1 - NOISE``, otherwise a
uniformly random content token. Predicting the next token needs the current
token (a bigram) and the mode token at position 0 (attention back to the
start), so both the MLPs and the attention of the trained model matter.

Training is plain eager PyTorch (AdamW, fixed seeds, one thread) with a
batched forward written here from the same parameters; the reference's own
unbatched ``QwenVL.forward`` (what the tests compare with) is the judge of
the result, so a slip in this training forward could only make the model
train worse, never make a test pass wrongly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import qwen_vl as ref

N_CONTENT = 64  # content tokens 0..63
N_MODES = 4  # mode tokens 64..67
MODE0 = N_CONTENT
NOISE = 0.1
SEQ = 33  # mode token + 32 content tokens


def config() -> dict:
    """tiny_config with widths multiples of 32 (so every LM matrix has whole
    q4_0/q8_0 blocks): hidden 128, 4 heads of 32, SwiGLU branches of 256,
    2 layers, vocab 512 (Qwen's special-token layout kept). The resampler
    width must equal hidden_size and be a multiple of 128: one head."""
    c = ref.tiny_config()
    c.update(hidden_size=128, num_attention_heads=4, kv_channels=32, intermediate_size=512, num_hidden_layers=2)
    c["visual"] = dict(c["visual"], output_dim=128)
    return c


def perms(seed: int = 0) -> torch.Tensor:
    """The corpus's successor tables [N_MODES, N_CONTENT] (a fixed grammar)."""
    g = torch.Generator().manual_seed(1000 + seed)
    return torch.stack([torch.randperm(N_CONTENT, generator=g) for _ in range(N_MODES)])


def sample(n: int, length: int, generator: torch.Generator, table: torch.Tensor) -> torch.Tensor:
    """n sequences [n, length] of the corpus: mode token, then the noisy chain."""
    modes = torch.randint(0, N_MODES, (n,), generator=generator)
    out = torch.empty(n, length, dtype=torch.long)
    out[:, 0] = MODE0 + modes
    x = torch.randint(0, N_CONTENT, (n,), generator=generator)
    out[:, 1] = x
    for i in range(2, length):
        follow = torch.rand(n, generator=generator) >= NOISE
        rand = torch.randint(0, N_CONTENT, (n,), generator=generator)
        x = torch.where(follow, table[modes, x], rand)
        out[:, i] = x
    return out


def train_forward(model: ref.QwenVL, ids: torch.Tensor) -> torch.Tensor:
    """Batched causal forward [B, T] -> logits [B, T, vocab] with gradients
    (positions from 0, NTK alpha 1 and logn 1: T is far below seq_length)."""
    t = model.transformer
    B, T = ids.shape
    cos, sin = model._rotary(torch.arange(T), 1.0)  # [T, head_dim]
    cos, sin = cos[None, :, None], sin[None, :, None]
    x = t.wte(ids)
    for block in t.h:
        attn = block.attn
        H, d = attn.heads, attn.head_dim
        q, k, v = attn.c_attn(block.ln_1(x)).split(H * d, dim=-1)
        q, k, v = (z.view(B, T, H, d) for z in (q, k, v))
        q = q * cos + ref.rotate_half(q) * sin
        k = k * cos + ref.rotate_half(k) * sin
        o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True)
        x = x + attn.c_proj(o.transpose(1, 2).reshape(B, T, H * d))
        x = x + block.mlp(block.ln_2(x))
    return model.lm_head(t.ln_f(x))


def train(seed: int = 0, steps: int = 300, batch: int = 32, lr: float = 3e-3):
    """Train the LM of QwenVL(config()) from random_state_dict(seed).
    Returns (config, state dict of every tensor, final training loss)."""
    torch.manual_seed(seed)
    cfg = config()
    model = ref.load_model(cfg, ref.random_state_dict(cfg, seed=seed, scale=0.05))
    model.train()
    lm = [p for n, p in model.named_parameters() if not n.startswith("transformer.visual.")]
    for n, p in model.named_parameters():
        p.requires_grad_(not n.startswith("transformer.visual."))
    opt = torch.optim.AdamW(lm, lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    g = torch.Generator().manual_seed(seed)
    table = perms()
    loss = None
    for _ in range(steps):
        ids = sample(batch, SEQ, g, table)
        logits = train_forward(model, ids[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    state = {k: v.detach().float().contiguous().clone() for k, v in model.state_dict().items()}
    return cfg, state, float(loss.detach())

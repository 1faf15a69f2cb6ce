"""PyTorch reference for SAM-Med2D, built from Meta's `segment-anything` package.

Meta's package supplies the ViT attention (windowed, decomposed relative position
bias), the MLP blocks, the neck, the prompt encoder, the two-way transformer and
the mask decoder. Only SAM-Med2D's additions are written here, from the published
architecture (OpenGVLab/SAM-Med2D, `Adapter_Layer` in image_encoder.py, as summarised
in docs/architecture.md §2.7):

* each encoder block carries an adapter applied to the norm2 output:
  channel gate (avg-pool, Linear D->D/4, ReLU, Linear D/4->D, Sigmoid),
  spatial branch (Conv 3x3/s2/p1, ReLU, ConvTranspose 4x4/s2/p1, ReLU) on the gated
  map, output LayerNorm(eps 1e-5)(x + spatial);  block: x += mlp(n) + adapter(n);
* the predictor (SammedPredictor) normalises, resizes straight to SxS with cv2
  INTER_NEAREST, scales prompts per axis and upsamples logits SxS -> HxW.

Parameter names equal SAM-Med2D's checkpoint keys (``image_encoder.blocks.0.Adapter.
channel.0.weight`` ...), so ``{"model": sam.state_dict()}`` is a SAM-Med2D-style file.
"""

from __future__ import annotations

import math
import sys
import types
from functools import partial

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


_STUBS = ("torchvision", "torchvision.ops", "torchvision.ops.boxes", "torchvision.transforms",
          "torchvision.transforms.functional")


def remove_torchvision_stub() -> None:
    """Takes the stub out of sys.modules again once segment_anything holds its
    names, so other libraries' find_spec('torchvision') sees no torchvision
    (transformers raises on a module without __spec__)."""
    for name in _STUBS:
        module = sys.modules.get(name)
        if module is not None and getattr(module, "__medground_stub__", False):
            del sys.modules[name]


def install_torchvision_stub() -> None:
    """segment_anything/__init__.py imports modules that import torchvision, which
    does not import beside this torch build. The model code never calls it."""
    if "torchvision" in sys.modules:
        return
    try:  # a working torchvision is fine too
        import torchvision  # noqa: F401

        return
    except Exception:
        sys.modules.pop("torchvision", None)

    def unavailable(*args, **kwargs):
        raise RuntimeError("torchvision stub: not available in this test environment")

    root = types.ModuleType("torchvision")
    ops = types.ModuleType("torchvision.ops")
    boxes = types.ModuleType("torchvision.ops.boxes")
    boxes.batched_nms = unavailable
    boxes.box_area = unavailable
    ops.boxes = boxes
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")
    functional.resize = unavailable
    functional.to_pil_image = unavailable
    transforms.functional = functional
    root.ops = ops
    root.transforms = transforms
    for name, module in {
        "torchvision": root,
        "torchvision.ops": ops,
        "torchvision.ops.boxes": boxes,
        "torchvision.transforms": transforms,
        "torchvision.transforms.functional": functional,
    }.items():
        module.__medground_stub__ = True
        sys.modules[name] = module


install_torchvision_stub()

from segment_anything.modeling import (  # noqa: E402
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)
from segment_anything.modeling.common import MLPBlock  # noqa: E402
from segment_anything.modeling.image_encoder import (  # noqa: E402
    Attention,
    window_partition,
    window_unpartition,
)

remove_torchvision_stub()

PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


class Adapter(nn.Module):
    """SAM-Med2D adapter on an NHWC map (written from the architecture)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        hidden = int(dim * 0.25)
        self.norm = nn.LayerNorm(dim)  # default eps 1e-5
        self.channel = nn.Sequential(
            nn.Linear(dim, hidden, bias=False), nn.ReLU(), nn.Linear(hidden, dim, bias=False), nn.Sigmoid()
        )
        self.spatial = nn.Sequential(
            nn.Conv2d(dim, dim, 3, stride=2, padding=1, bias=False),
            nn.ReLU(),
            nn.ConvTranspose2d(dim, dim, 4, stride=2, padding=1, bias=False),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nchw = x.permute(0, 3, 1, 2)
        gate = self.channel(nchw.mean(dim=(2, 3)))[:, :, None, None]
        spatial = self.spatial(gate * nchw)
        return self.norm((nchw + spatial).permute(0, 2, 3, 1))


class AdapterBlock(nn.Module):
    """ViT block with SAM-Med2D's adapter; attention/MLP are Meta's modules."""

    def __init__(self, dim, num_heads, mlp_ratio, window_size, input_size, adapter=True):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(
            dim,
            num_heads=num_heads,
            qkv_bias=True,
            use_rel_pos=True,
            rel_pos_zero_init=True,
            input_size=input_size if window_size == 0 else (window_size, window_size),
        )
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(embedding_dim=dim, mlp_dim=int(dim * mlp_ratio), act=nn.GELU)
        self.window_size = window_size
        if adapter:
            self.Adapter = Adapter(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.window_size > 0:
            height, width = x.shape[1], x.shape[2]
            x, pad_hw = window_partition(x, self.window_size)
        x = self.attn(x)
        if self.window_size > 0:
            x = window_unpartition(x, self.window_size, pad_hw, (height, width))
        x = shortcut + x
        n = self.norm2(x)
        out = x + self.mlp(n)
        if hasattr(self, "Adapter"):
            out = out + self.Adapter(n)
        return out


def build_sam_med2d(
    *,
    image_size: int = 256,
    patch_size: int = 16,
    embed_dim: int = 768,
    depth: int = 12,
    num_heads: int = 12,
    global_attn_indexes=(2, 5, 8, 11),
    window_size: int = 14,
    out_chans: int = 256,
    mask_in_chans: int = 16,
    decoder_depth: int = 2,
    decoder_heads: int = 8,
    decoder_mlp_dim: int = 2048,
    iou_head_hidden: int = 256,
    adapter: bool = True,
    seed: int = 0,
) -> Sam:
    """A SAM-Med2D model (build_sam_vit_b layout) with random weights; every
    parameter and buffer drawn so no part of the network is trivially zero."""
    torch.manual_seed(seed)
    grid = image_size // patch_size
    encoder = ImageEncoderViT(
        img_size=image_size,
        patch_size=patch_size,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads,
        mlp_ratio=4,
        out_chans=out_chans,
        qkv_bias=True,
        norm_layer=partial(nn.LayerNorm, eps=1e-6),
        use_abs_pos=True,
        use_rel_pos=True,
        window_size=window_size,
        global_attn_indexes=tuple(global_attn_indexes),
    )
    encoder.blocks = nn.ModuleList(
        AdapterBlock(
            embed_dim,
            num_heads,
            4,
            0 if i in global_attn_indexes else window_size,
            (grid, grid),
            adapter=adapter,
        )
        for i in range(depth)
    )
    prompt = PromptEncoder(
        embed_dim=out_chans,
        image_embedding_size=(grid, grid),
        input_image_size=(image_size, image_size),
        mask_in_chans=mask_in_chans,
    )
    decoder = MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(
            depth=decoder_depth, embedding_dim=out_chans, mlp_dim=decoder_mlp_dim, num_heads=decoder_heads
        ),
        transformer_dim=out_chans,
        iou_head_depth=3,
        iou_head_hidden_dim=iou_head_hidden,
    )
    sam = Sam(encoder, prompt, decoder, pixel_mean=list(PIXEL_MEAN), pixel_std=list(PIXEL_STD))
    with torch.no_grad():
        for name, tensor in sam.state_dict().items():
            if name.startswith("pixel_"):
                continue
            if name.endswith("weight") and "norm" in name or name.endswith(".1.weight") and "upscaling" in name:
                tensor.copy_(1.0 + 0.1 * torch.randn_like(tensor))
            elif tensor.dim() >= 2:
                fan_in = tensor[0].numel()
                tensor.copy_(torch.randn_like(tensor) / math.sqrt(fan_in))
            else:
                tensor.copy_(0.05 * torch.randn_like(tensor))
        encoder.pos_embed.mul_(0.5)
        prompt.pe_layer.positional_encoding_gaussian_matrix.copy_(torch.randn(2, out_chans // 2))
    sam.requires_grad_(False)
    return sam.eval()


def state_dict_numpy(sam: Sam, prefix: str = "") -> dict[str, np.ndarray]:
    """The checkpoint dict as NumPy (what a SAM-Med2D .pth's ``model`` entry holds)."""
    return {prefix + k: v.detach().cpu().numpy().copy() for k, v in sam.state_dict().items()
            if not k.startswith("pixel_")}


def preprocess_nearest(image: np.ndarray, size: int) -> torch.Tensor:
    """SammedPredictor.set_image: normalise, cv2.resize(size, INTER_NEAREST).

    OpenCV's resizeNN takes src = min(floor(dst * (1 / (dsize / ssize))), ssize - 1)
    in double precision; written out here because cv2 is not installed."""
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    height, width = image.shape[:2]
    normalised = (image.astype(np.float64) - np.array(PIXEL_MEAN)) / np.array(PIXEL_STD)
    ifx = 1.0 / (size / width)
    ify = 1.0 / (size / height)
    xs = np.minimum(np.floor(np.arange(size) * ifx).astype(np.int64), width - 1)
    ys = np.minimum(np.floor(np.arange(size) * ify).astype(np.int64), height - 1)
    resized = normalised[ys][:, xs]
    return torch.from_numpy(resized.astype(np.float32)).permute(2, 0, 1).contiguous()


@torch.no_grad()
def predict(
    sam: Sam,
    image: np.ndarray,
    points=None,
    labels=None,
    box=None,
    multimask: bool = False,
):
    """SammedPredictor.predict with logits: returns (logits [n, H, W], iou [n], low_res [n, 4G, 4G])."""
    size = sam.image_encoder.img_size
    height, width = image.shape[:2]
    features = sam.image_encoder(preprocess_nearest(image, size)[None])
    scale = np.array([size / width, size / height])
    pts = None
    if points is not None:
        coords = torch.as_tensor(np.asarray(points, dtype=np.float64) * scale, dtype=torch.float)[None]
        pts = (coords, torch.as_tensor(np.asarray(labels), dtype=torch.int)[None])
    boxes = None
    if box is not None:
        boxes = torch.as_tensor((np.asarray(box, dtype=np.float64).reshape(2, 2) * scale).reshape(1, 4),
                                dtype=torch.float)
    sparse, dense = sam.prompt_encoder(points=pts, boxes=boxes, masks=None)
    low_res, iou = sam.mask_decoder(
        image_embeddings=features,
        image_pe=sam.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=multimask,
    )
    masks = F.interpolate(low_res, (size, size), mode="bilinear", align_corners=False)
    masks = F.interpolate(masks, (height, width), mode="bilinear", align_corners=False)
    return masks[0].numpy(), iou[0].numpy(), low_res[0].numpy()

"""SAM-Med2D in C against Meta's segment-anything (+ our adapter reference).

Small random models keep SAM-Med2D's real geometry (256 px input, 16 px patches,
16x16 grid, 14x14 windows padded to 28x28, global blocks, 64x64 low-res logits)
and its checkpoint key names; only widths and depth are reduced. One test runs the
decoder at its real width (256, 8 heads, MLP 2048).
"""

from __future__ import annotations

import glob
import os
import sys

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
from conftest import shared_path  # noqa: E402
from reference import sam_med2d as ref  # noqa: E402

import medground  # noqa: E402
from medground import _C  # noqa: E402
from medground.models.sam_med2d import SamMed2D  # noqa: E402

SMALL = dict(embed_dim=64, depth=4, num_heads=4, global_attn_indexes=(1, 3), out_chans=32,
             mask_in_chans=8, decoder_mlp_dim=64, iou_head_hidden=32)


def rel_err(ours: np.ndarray, theirs: np.ndarray) -> float:
    return float(np.abs(ours - theirs).max() / max(np.abs(theirs).max(), 1e-12))


@pytest.fixture(scope="module")
def torch_sam():
    torch.set_num_threads(1)
    return ref.build_sam_med2d(**SMALL, seed=1)


@pytest.fixture(scope="module")
def weights(torch_sam):
    return ref.state_dict_numpy(torch_sam)


@pytest.fixture(scope="module")
def handle(weights):
    return _C.sam_create(weights)


@pytest.fixture(scope="module")
def image_pair(torch_sam, handle):
    """A random normalised input, its reference and C embeddings."""
    image = torch.randn(3, 256, 256, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        theirs = torch_sam.image_encoder(image[None])[0].numpy()
    ours = _C.sam_encode_image(handle, image.numpy())
    return image, theirs, ours


def test_hyper_parameters_come_from_shapes(handle):
    info = _C.sam_info(handle)
    assert info["image_size"] == 256 and info["grid"] == 16 and info["patch_size"] == 16
    assert info["embed_dim"] == 64 and info["depth"] == 4 and info["n_heads"] == 4
    assert info["window_size"] == 14 and info["global_blocks"] == (1, 3)
    assert info["adapters"] is True and info["prompt_dim"] == 32 and info["low_res_size"] == 64


def test_image_encoder_matches_reference(image_pair):
    _, theirs, ours = image_pair
    assert ours.shape == (32, 16, 16)
    assert rel_err(ours, theirs) <= 1e-4


def test_adapter_changes_the_features(torch_sam, weights):
    """The adapters are live: a model without them gives other features, and the
    reference without adapters matches C on the same weights minus the adapter keys."""
    plain = {k: v for k, v in weights.items() if ".Adapter." not in k}
    handle = _C.sam_create(plain)
    assert _C.sam_info(handle)["adapters"] is False
    image = torch.randn(3, 256, 256, generator=torch.Generator().manual_seed(9))
    ours = _C.sam_encode_image(handle, image.numpy())
    for block in torch_sam.image_encoder.blocks:
        adapter = block.Adapter
        del block.Adapter
        block._saved = adapter
    try:
        with torch.no_grad():
            theirs = torch_sam.image_encoder(image[None])[0].numpy()
    finally:
        for block in torch_sam.image_encoder.blocks:
            block.Adapter = block._saved
            del block._saved
    assert rel_err(ours, theirs) <= 1e-4
    with_adapter = _C.sam_encode_image(_C.sam_create(weights), image.numpy())
    assert rel_err(with_adapter, ours) > 1e-2


def test_dense_positional_encoding(torch_sam, handle):
    theirs = torch_sam.prompt_encoder.get_dense_pe()[0].detach().numpy()
    assert np.abs(_C.sam_dense_pe(handle) - theirs).max() <= 1e-5


PROMPTS = {
    "points": (np.array([[10.0, 20.0], [100.5, 200.25], [250.0, 3.0]], np.float32), np.array([1, 0, 1], np.int32), None),
    "box": (None, None, np.array([5.0, 6.0, 150.0, 170.0], np.float32)),
    "points+box": (np.array([[40.0, 60.0]], np.float32), np.array([1], np.int32),
                   np.array([12.0, 30.0, 220.0, 240.0], np.float32)),
    "padding-label": (np.array([[40.0, 60.0], [0.0, 0.0]], np.float32), np.array([1, -1], np.int32), None),
}


def _reference_prompt(torch_sam, points, labels, box, mask=None):
    with torch.no_grad():
        return torch_sam.prompt_encoder(
            points=None if points is None else (torch.tensor(points)[None], torch.tensor(labels)[None]),
            boxes=None if box is None else torch.tensor(box)[None],
            masks=None if mask is None else torch.tensor(mask)[None, None],
        )


@pytest.mark.parametrize("kind", sorted(PROMPTS))
def test_prompt_encoder_matches(torch_sam, handle, kind):
    points, labels, box = PROMPTS[kind]
    sparse, dense = _C.sam_encode_prompt(handle, points, labels, box, None)
    sparse_ref, dense_ref = _reference_prompt(torch_sam, points, labels, box)
    assert sparse.shape == tuple(sparse_ref.shape[1:])
    assert np.abs(sparse - sparse_ref[0].numpy()).max() <= 1e-5
    assert np.abs(dense - dense_ref[0].numpy()).max() == 0.0


def test_mask_prompt_matches(torch_sam, handle, rng):
    mask = (rng.standard_normal((64, 64)) * 3).astype(np.float32)
    sparse, dense = _C.sam_encode_prompt(handle, None, None, None, mask)
    _, dense_ref = _reference_prompt(torch_sam, None, None, None, mask)
    assert sparse.shape == (0, 32)
    assert rel_err(dense, dense_ref[0].numpy()) <= 1e-5


@pytest.mark.parametrize("kind", ["points", "box", "points+box"])
@pytest.mark.parametrize("multimask", [False, True])
def test_mask_decoder_matches(torch_sam, handle, image_pair, kind, multimask):
    _, theirs, ours = image_pair
    points, labels, box = PROMPTS[kind]
    sparse, dense = _C.sam_encode_prompt(handle, points, labels, box, None)
    low_res, iou = _C.sam_decode(handle, ours, sparse, dense, multimask)
    sparse_ref, dense_ref = _reference_prompt(torch_sam, points, labels, box)
    with torch.no_grad():
        low_ref, iou_ref = torch_sam.mask_decoder(
            image_embeddings=torch.tensor(theirs)[None], image_pe=torch_sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse_ref, dense_prompt_embeddings=dense_ref, multimask_output=multimask)
    assert low_res.shape == (3 if multimask else 1, 64, 64)
    assert rel_err(low_res, low_ref[0].numpy()) <= 1e-4
    assert np.abs(iou - iou_ref[0].numpy()).max() <= 1e-4 * max(1.0, np.abs(iou_ref.numpy()).max())


def test_decoder_with_external_sparse_token(torch_sam, handle, image_pair, rng):
    """MedPLIB's SEG path: one projected hidden state as the only sparse token,
    the no-mask dense embedding, single-mask output (token 0)."""
    _, theirs, ours = image_pair
    token = rng.standard_normal((1, 32)).astype(np.float32)
    _, dense = _C.sam_encode_prompt(handle, None, None, None, None)
    low_res, iou = _C.sam_decode(handle, ours, token, dense, False)
    with torch.no_grad():
        _, dense_ref = torch_sam.prompt_encoder(points=None, boxes=None, masks=None)
        low_ref, iou_ref = torch_sam.mask_decoder(
            image_embeddings=torch.tensor(theirs)[None], image_pe=torch_sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=torch.tensor(token)[None], dense_prompt_embeddings=dense_ref,
            multimask_output=False)
    assert rel_err(low_res, low_ref[0].numpy()) <= 1e-4
    assert abs(float(iou[0]) - float(iou_ref[0, 0])) <= 1e-4


def test_decoder_at_real_width():
    """SAM-Med2D's decoder dimensions: width 256, 8 heads, MLP 2048, IoU head 256."""
    sam = ref.build_sam_med2d(embed_dim=32, depth=2, num_heads=2, global_attn_indexes=(1,), out_chans=256,
                              mask_in_chans=16, decoder_mlp_dim=2048, iou_head_hidden=256, seed=3)
    handle = _C.sam_create(ref.state_dict_numpy(sam))
    embedding = np.random.default_rng(2).standard_normal((256, 16, 16)).astype(np.float32)
    points, labels, box = PROMPTS["points+box"]
    sparse, dense = _C.sam_encode_prompt(handle, points, labels, box, None)
    low_res, iou = _C.sam_decode(handle, embedding, sparse, dense, True)
    sparse_ref, dense_ref = _reference_prompt(sam, points, labels, box)
    with torch.no_grad():
        low_ref, iou_ref = sam.mask_decoder(
            image_embeddings=torch.tensor(embedding)[None], image_pe=sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse_ref, dense_prompt_embeddings=dense_ref, multimask_output=True)
    assert rel_err(low_res, low_ref[0].numpy()) <= 1e-4
    assert rel_err(iou, iou_ref[0].numpy()) <= 1e-4


def _demo_images():
    folder = shared_path("images", "sam-med2d-demo", "images")
    return sorted(glob.glob(str(folder / "*.png")))


def _load_rgb(path):
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


def test_preprocess_matches_opencv_nearest(weights):
    model = SamMed2D(weights)
    for path in _demo_images():
        image = _load_rgb(path)  # includes non-square 258x181, 225x155, 320x290
        ours = model.preprocess(image)
        theirs = ref.preprocess_nearest(image, 256).numpy()
        assert np.abs(ours - theirs).max() <= 1e-6, path


def _mask_box(mask_path):
    from PIL import Image

    mask = np.asarray(Image.open(mask_path)) > 0
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], np.float64), mask


def test_predictor_on_real_images(torch_sam, weights):
    """Whole SammedPredictor flow on real CT/MR slices with box prompts taken from
    their organ masks: masks agree (Dice >= 0.999), logits/scores to 1e-4."""
    model = medground.SamMed2D(weights)
    folder = shared_path("images", "sam-med2d-demo")
    checked = 0
    for image_path in _demo_images():
        stem = os.path.basename(image_path)[:-4]
        masks = sorted(glob.glob(str(folder / "masks" / f"{stem}_*.png")))
        if not masks:
            continue
        image = _load_rgb(image_path)
        model.set_image(image)
        box, gt = _mask_box(masks[0])
        centre = np.argwhere(gt)[len(np.argwhere(gt)) // 2][::-1].astype(np.float64)
        for kwargs in (dict(box=box), dict(points=[centre], labels=[1]),
                       dict(points=[centre], labels=[1], box=box, multimask=True)):
            masks_c, scores_c, low_c = model.predict(**kwargs)
            logits_c, _, _ = model.predict(**kwargs, return_logits=True)
            logits_r, scores_r, low_r = ref.predict(torch_sam, image, **kwargs)
            assert masks_c.shape == logits_r.shape == (len(scores_r), *image.shape[:2])
            assert rel_err(low_c, low_r) <= 1e-4
            assert np.abs(scores_c - scores_r).max() <= 1e-4 * max(1.0, np.abs(scores_r).max())
            assert rel_err(logits_c, logits_r) <= 1e-4
            ref_masks = logits_r > 0
            for a, b in zip(masks_c, ref_masks):
                total = a.sum() + b.sum()
                dice = 1.0 if total == 0 else 2.0 * np.logical_and(a, b).sum() / total
                assert dice >= 0.999
        checked += 1
    assert checked >= 3


def test_pth_checkpoint_round_trip(torch_sam, weights, image_pair, tmp_path):
    """A SAM-Med2D-style file ({"model": state_dict} via torch.save) read by
    medground's restricted unpickler gives the same model."""
    path = tmp_path / "sam-med2d_tiny.pth"
    torch.save({"model": torch_sam.state_dict(), "epoch": 7}, path)
    model = SamMed2D(str(path))
    image, theirs, _ = image_pair
    ours = _C.sam_encode_image(model._handle, image.numpy())
    assert rel_err(ours, theirs) <= 1e-4


def test_safetensors_bf16_checkpoint(torch_sam, tmp_path):
    """bf16 weights (MedPLIB ships bf16) under the MedPLIB prefix, opened by the C
    reader: matches the reference evaluated with the same bf16-rounded weights."""
    from safetensors.torch import save_file

    state = {f"model.visual_model.{k}": v.detach().to(torch.bfloat16).contiguous()
             for k, v in torch_sam.state_dict().items() if not k.startswith("pixel_")}
    path = tmp_path / "medplib_sam.safetensors"
    save_file(state, str(path))
    model = SamMed2D(str(path), prefix="model.visual_model.")
    rounded = ref.build_sam_med2d(**SMALL, seed=1)
    rounded.load_state_dict({k[len("model.visual_model."):]: v.float() for k, v in state.items()}, strict=False)
    image = torch.randn(3, 256, 256, generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        theirs = rounded.image_encoder(image[None])[0].numpy()
    ours = _C.sam_encode_image(model._handle, image.numpy())
    # With AVX-512 BF16 the linears run as bf16 GEMMs: activations are rounded
    # to bf16 (relative step 2^-8, so up to 2^-9 = 2e-3 per element, as
    # PyTorch's bf16 nn.Linear does) while the reference keeps them in f32;
    # two blocks of that give a few 1e-3. Without native bf16 the weights
    # are widened to f32 and only summation order differs.
    native_bf16 = bool(_C.op_kernel_info()["native_bf16_gemm"])
    assert rel_err(ours, theirs) <= (1e-2 if native_bf16 else 1e-4)


# ------------------------------------------------------------------ bad input

def test_missing_tensor_is_named(weights):
    broken = dict(weights)
    del broken["mask_decoder.iou_token.weight"]
    with pytest.raises(medground.NotFoundError, match="mask_decoder.iou_token.weight"):
        _C.sam_create(broken)


def test_wrong_shape_is_named(weights):
    broken = dict(weights)
    broken["image_encoder.blocks.2.attn.proj.weight"] = np.zeros((64, 63), np.float32)
    with pytest.raises(medground.ShapeError, match=r"blocks\.2\.attn\.proj\.weight.*\[64, 64\]"):
        _C.sam_create(broken)


def test_corrupt_checkpoint_file(tmp_path):
    path = tmp_path / "broken.pth"
    path.write_bytes(b"PK\x03\x04 this is not a torch zip" + bytes(64))
    with pytest.raises(medground.MedgroundError):
        SamMed2D(str(path))
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes((10**6).to_bytes(8, "little") + b"{}")
    with pytest.raises(medground.MedgroundError):
        SamMed2D(str(truncated))


def test_bad_prompts(weights):
    model = SamMed2D(weights)
    with pytest.raises(medground.InvalidArgumentError, match="set_image"):
        model.predict(box=[1, 2, 3, 4])
    model.set_image(np.full((40, 60, 3), 100, np.uint8))
    with pytest.raises(medground.InvalidArgumentError, match="together"):
        model.predict(points=[[3, 4]])
    with pytest.raises(medground.InvalidArgumentError, match="outside"):
        model.predict(points=[[70, 4]], labels=[1])
    with pytest.raises(medground.InvalidArgumentError, match="empty"):
        model.predict(box=[10, 10, 5, 20])
    with pytest.raises(medground.InvalidArgumentError, match="outside"):
        model.predict(box=[-5, 0, 20, 20])
    with pytest.raises(medground.ShapeError):
        model.predict(points=[[1, 2], [3, 4]], labels=[1])
    with pytest.raises(medground.InvalidArgumentError, match="label 5"):
        model.predict(points=[[1, 2]], labels=[5])
    with pytest.raises(medground.ShapeError, match="mask_input"):
        model.predict(box=[1, 1, 9, 9], mask_input=np.zeros((32, 32), np.float32))
    with pytest.raises(medground.InvalidArgumentError, match="uint8"):
        model.set_image(np.zeros((8, 8, 3), np.float32))
    # C-level checks that do not depend on the Python wrapper
    handle = model._handle
    with pytest.raises(medground.ShapeError, match=r"\[3, 256, 256\]"):
        _C.sam_encode_image(handle, np.zeros((3, 128, 128), np.float32))
    with pytest.raises(medground.InvalidArgumentError, match="without labels"):
        _C.sam_encode_prompt(handle, np.zeros((1, 2), np.float32), None, None, None)
    with pytest.raises(medground.InvalidArgumentError, match="x2 < x1"):
        _C.sam_encode_prompt(handle, None, None, np.array([5, 5, 1, 9], np.float32), None)

"""medground.models.medplib.MedPLIB end to end (chat / refer / segment) against the PyTorch
reference of tests/reference/medplib.py (transformers CLIP + LLaMA, segment-anything SAM-Med2D),
with the real LLaMA tokenizer.model plus MedPLIB's 267 added tokens; and bad input."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
from conftest import shared_path  # noqa: E402
from reference import medplib as ref  # noqa: E402

from medground import errors  # noqa: E402
from medground.image import preprocess_clip336, preprocess_sam  # noqa: E402
from medground.models.medplib import MedPLIB, Region  # noqa: E402
from medground.tokenizer import Tokenizer  # noqa: E402

SAM_SMALL = dict(embed_dim=64, depth=2, num_heads=4, global_attn_indexes=(1,), out_chans=32, mask_in_chans=8,
                 decoder_mlp_dim=64, iou_head_hidden=32)
SEG = 32000


def dice(a, b) -> float:
    a, b = a.astype(bool), b.astype(bool)
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else 2.0 * (a & b).sum() / total


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.from_pretrained(shared_path("tokenizers", "llama.tokenizer.model"), medplib=True)


@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(1)
    return ref.TinyMedPLIB(sam_kwargs=SAM_SMALL, seed=4)


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(3)
    base = rng.integers(0, 255, (120, 200, 3), dtype=np.uint8)
    base[30:90, 60:150] = 200  # some structure
    return base


@pytest.fixture(scope="module")
def model(tiny, tokenizer, tmp_path_factory):
    return MedPLIB(tiny.save(str(tmp_path_factory.mktemp("mp"))), tokenizer)


def _ref_image(tiny, image):
    pixels, _ = preprocess_clip336(image)
    return tiny.encode_image(torch.from_numpy(pixels))


def test_prompt_ids(model, tokenizer):
    ids = model.prompt_ids("Is there a lesion in <region></region>?")
    assert ids[0] == 1 and ids.count(-200) == 1 and ids.count(-300) == 1
    i = ids.index(-200)
    assert ids[i - 1] == tokenizer.token_to_id("<im_start>") and ids[i + 1] == tokenizer.token_to_id("<im_end>")
    j = ids.index(-300)
    assert ids[j - 1] == tokenizer.token_to_id("<region>") and ids[j + 1] == tokenizer.token_to_id("</region>")
    # architecture.md §2.10: "ASSISTANT:" = 319 1799 9047 13566 29901; whitespace next to an
    # added token is stripped ("USER: <im_start>" -> ':' then <im_start>; the newline after
    # <im_end> disappears); the chunk after </region> is encoded with the dummy prefix ("▁?").
    assert ids[-5:] == [319, 1799, 9047, 13566, 29901]
    assert ids[i - 2] == 29901 and ids[i + 2] != 13
    assert ids[j + 2] == 1577


def test_chat_matches_reference_greedy(model, tiny, tokenizer, image):
    emb, _ = _ref_image(tiny, image)
    ids = model.prompt_ids("What modality is this?")
    tokens, _, _ = tiny.greedy(ids, image=emb, max_new_tokens=6)
    model.reset_expert_load()
    pieces = []
    answer = model.chat(image, "What modality is this?", max_new_tokens=6, stream=pieces.append)
    expected = tokenizer.decode([t for t in tokens if t != 2], skip_special_tokens=True).strip()
    assert answer == expected and "".join(pieces).strip() == expected
    load = model.expert_load()
    n_positions = len(ids) - 1 + 576 + len(tokens) - 1
    assert load.shape == (2, 2) and load.sum(axis=1).tolist() == [n_positions] * 2
    assert model.dropped_tokens().tolist() == [0, 0]


def test_refer_with_box_points_and_mask(model, tiny, tokenizer, image):
    emb, feats = _ref_image(tiny, image)
    box = (50, 20, 160, 100)
    ys, xs = np.mgrid[:120, :200] + 0.5
    box_mask = ((xs >= 50) & (xs <= 160) & (ys >= 20) & (ys <= 100)).astype(np.uint8)
    grid = ref.grid_mask_from_mask(box_mask, largest=False)
    theirs = tiny.region_feature(feats, grid)
    ours = model.region_embedding(image, box)
    assert np.abs(ours - theirs.numpy()).max() <= 1e-4 * np.abs(theirs.numpy()).max()
    question = "What is in <region></region>?"
    ids = model.prompt_ids(question)
    tokens, _, _ = tiny.greedy(ids, image=emb, regions=theirs[None], max_new_tokens=5)
    expected = tokenizer.decode([t for t in tokens if t != 2], skip_special_tokens=True).strip()
    assert model.refer(image, Region(box=box), question, max_new_tokens=5) == expected
    # a free-shape mask: the dataset's preparation (largest component)
    blob = np.zeros((120, 200), np.uint8)
    blob[40:80, 30:90] = 1
    blob[5:9, 190:196] = 1
    assert np.allclose(model.region_embedding(image, blob),
                       tiny.region_feature(feats, ref.grid_mask_from_mask(blob)).numpy(), atol=1e-5, rtol=1e-4)
    # points: the grid cells they fall in. Scale 336 / 200 = 1.68, resized height
    # int(120 * 1.68 + 0.5) = 202, top padding (336 - 202) // 2 = 67:
    # (10, 10) -> (16.8, 83.8) -> cell (5, 1); (199, 119) -> (334.32, 266.92) -> cell (19, 23).
    geometry = model.encode_image(image).geometry
    assert geometry.pad_top == 67 and geometry.pad_left == 0
    grid_points = model.region_grid(Region(points=[(10, 10), (199, 119)]), geometry)
    assert grid_points.sum() == 2 and grid_points[5, 1] == 1 and grid_points[19, 23] == 1


def _seg_model(tiny, tokenizer, image, folder):
    """The tiny model with lm_head[<SEG>] steered to win the first step of the segment prompt."""
    emb, _ = _ref_image(tiny, image)
    probe = MedPLIB(tiny.save(folder), tokenizer, load_sam=False)
    ids = probe.prompt_ids("Please segment the liver in this image.")
    tokens, logits, _ = tiny.greedy(ids, image=emb, max_new_tokens=1)
    assert logits[0, tokens[0]] > 0
    with torch.no_grad():
        tiny.lm.lm_head.weight[SEG] = 2.0 * tiny.lm.lm_head.weight[tokens[0]]
    return ids, emb


@pytest.fixture(scope="module")
def seg_setup(tokenizer, image, tmp_path_factory):
    tiny = ref.TinyMedPLIB(sam_kwargs=SAM_SMALL, seed=4)
    ids, emb = _seg_model(tiny, tokenizer, image, str(tmp_path_factory.mktemp("probe")))
    model = MedPLIB(tiny.save(str(tmp_path_factory.mktemp("seg"))), tokenizer)
    return tiny, model, ids, emb


@pytest.mark.parametrize("reference_crop", [False, True])
def test_segment_matches_reference(seg_setup, image, reference_crop):
    tiny, model, ids, emb = seg_setup
    tokens, _, hidden = tiny.greedy(ids, image=emb, max_new_tokens=4)
    k = tokens.index(SEG)
    prompt = tiny.seg_prompt(hidden[k])
    sam_pixels, g = preprocess_sam(image)
    low_res, iou = tiny.decode_mask(torch.from_numpy(sam_pixels), prompt)
    post = ref.postprocess_reference if reference_crop else ref.postprocess_correct
    probs = torch.sigmoid(post(low_res, (g.resized_height, g.resized_width), (120, 200))).numpy()
    expected = (probs > 0.1).astype(np.uint8)
    mask = model.segment(image, "liver", max_new_tokens=4, reference_crop=reference_crop)
    assert mask.found and "<SEG>" in mask.text
    from medground.data import rle_decode

    record = json.loads(json.dumps(mask.to_dict()))
    assert np.array_equal(rle_decode(record["pred_mask"]), mask.array) and record["found"] is True
    import medground

    record.update(id="ct_00--x", image="ct_00--x.png", gt_mask=expected.tolist())
    scores = medground.evaluate([record], task="seg").to_dict()
    assert scores["n_records"] == 1 and scores["rows"]["all"]["dice"] >= 0.999  # what predict + evaluate see
    assert mask.array.shape == (120, 200) and mask.array.dtype == np.uint8
    assert dice(mask.array, expected) >= 0.999
    assert abs(mask.score - iou) <= 1e-4 * max(1.0, abs(iou))
    assert np.abs(mask.probs - probs).max() <= 1e-4
    # Random weights saturate sigmoid > 0.1; a threshold at the median gives a non-trivial mask.
    median = float(np.median(probs))
    expected = (probs > median).astype(np.uint8)
    assert 0.3 < expected.mean() < 0.7
    mask = model.segment(image, "liver", max_new_tokens=4, reference_crop=reference_crop, threshold=median)
    assert dice(mask.array, expected) >= 0.999


def test_reference_crop_differs_on_non_square_images(seg_setup, image):
    _, model, _, _ = seg_setup
    state = model.encode_image(image)  # encoded once, SAM embedding kept after the first call
    a = model.segment(state, "liver", max_new_tokens=2)
    assert state.sam is not None
    b = model.segment(state, "liver", max_new_tokens=2, reference_crop=True)
    assert np.array_equal(model.segment(image, "liver", max_new_tokens=2).probs, a.probs)
    # 120x200 -> 154x256 in SAM's input: the reference crops rows [19, 64) of the 64x64
    # map (pad 64 - 154 = -90, top -45 -> 19) and stretches them; the correct crop takes the
    # centered 154 rows of the 256-px upsampling.
    assert np.abs(a.probs - b.probs).max() > 1e-2


def test_missing_seg_gives_empty_mask_with_flag(model, tiny, image):
    emb, _ = _ref_image(tiny, image)
    tokens, _, _ = tiny.greedy(model.prompt_ids("Please segment the liver in this image."), image=emb,
                               max_new_tokens=3)
    assert SEG not in tokens
    mask = model.segment(image, "liver", max_new_tokens=3)
    assert not mask.found and mask.array.shape == (120, 200) and mask.array.sum() == 0 and mask.score == 0.0
    fallback = model.segment(image, "liver", max_new_tokens=3, fallback=True)
    assert not fallback.found and fallback.probs is not None
    # the reference's fallback: the second-to-last hidden state of prompt + answer (the last
    # generated token has none)
    seq = model.prompt_ids("Please segment the liver in this image.") + tokens[:-1]
    with torch.no_grad():
        hidden = tiny.lm.model(inputs_embeds=tiny.embed(seq, emb, None)).last_hidden_state[0, -2]
    sam_pixels, g = preprocess_sam(image)
    low_res, _ = tiny.decode_mask(torch.from_numpy(sam_pixels), tiny.seg_prompt(hidden))
    probs = torch.sigmoid(ref.postprocess_correct(low_res, (g.resized_height, g.resized_width), (120, 200)))
    assert np.abs(fallback.probs - probs.numpy()).max() <= 1e-4


# ------------------------------------------------------------------------ bad input
def test_bad_regions(model, image):
    with pytest.raises(errors.InvalidArgumentError, match="empty"):
        model.refer(image, np.zeros((120, 200), np.uint8))
    with pytest.raises(errors.InvalidArgumentError, match="outside"):
        model.refer(image, (10, 10, 250, 50))
    with pytest.raises(errors.InvalidArgumentError, match="empty"):
        model.refer(image, (50, 50, 40, 60))
    with pytest.raises(errors.InvalidArgumentError, match="outside"):
        model.refer(image, Region(points=[(5, 5), (300, 5)]))
    with pytest.raises(errors.InvalidArgumentError, match="points= is empty"):
        model.refer(image, Region(points=[]))
    with pytest.raises(errors.InvalidArgumentError, match="exactly one"):
        model.refer(image, Region(box=(1, 1, 5, 5), points=[(2, 2)]))
    with pytest.raises(errors.InvalidArgumentError, match="exactly one"):
        model.refer(image, Region())
    with pytest.raises(errors.ShapeError, match="image is 200x120"):
        model.refer(image, np.ones((50, 50), np.uint8))
    tiny = np.zeros((120, 200), np.uint8)
    tiny[0, 0] = 1  # one pixel: nothing left on the 24x24 grid after the bilinear resize
    with pytest.raises(errors.InvalidArgumentError, match="patch-grid cell"):
        model.refer(image, tiny)
    with pytest.raises(errors.InvalidArgumentError, match="refer"):
        model.chat(image, "What is in <region></region>?")
    with pytest.raises(errors.InvalidArgumentError, match="task"):
        model.refer(image, (10, 10, 50, 50), task="ground")
    assert isinstance(model.refer(image, (10, 10, 50, 50), task="caption", max_new_tokens=2), str)


def test_corrupt_and_mismatched_checkpoints(tiny, tokenizer, tmp_path):
    folder = tiny.save(str(tmp_path / "ok"))
    data = open(os.path.join(folder, "model.safetensors"), "rb").read()
    bad = tmp_path / "truncated"
    bad.mkdir()
    (bad / "model.safetensors").write_bytes(data[: len(data) // 3])
    (bad / "config.json").write_text(open(os.path.join(folder, "config.json")).read())
    with pytest.raises(errors.MedgroundError, match="model.safetensors"):
        MedPLIB(str(bad), tokenizer)
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "model.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(errors.FormatError):
        MedPLIB(str(garbage), tokenizer)
    from safetensors.torch import save_file

    tensors = tiny.state_dict_release()
    del tensors["model.mm_projector.2.weight"]
    missing = tmp_path / "missing"
    missing.mkdir()
    save_file(tensors, str(missing / "model.safetensors"))
    (missing / "config.json").write_text(open(os.path.join(folder, "config.json")).read())
    with pytest.raises(errors.NotFoundError, match="model.mm_projector.2.weight"):
        MedPLIB(str(missing), tokenizer)
    config = json.loads(open(os.path.join(folder, "config.json")).read())
    del config["hidden_size"]
    (missing / "config.json").write_text(json.dumps(config))
    save_file(tiny.state_dict_release(), str(missing / "model.safetensors"))
    with pytest.raises(errors.NotFoundError, match="config.hidden_size"):
        MedPLIB(str(missing), tokenizer)
    strict_extra = tiny.state_dict_release()
    strict_extra["model.unexpected.weight"] = torch.zeros(2)
    save_file(strict_extra, str(tmp_path / "ok" / "model.safetensors"))
    MedPLIB(folder, tokenizer)  # extra tensors are ignored by default ...
    with pytest.raises(errors.FormatError, match="model.unexpected.weight"):
        MedPLIB(folder, tokenizer, strict=True)  # ... and named when strict
    with pytest.raises(errors.NotFoundError):
        MedPLIB(str(tmp_path / "nowhere"), tokenizer)


def test_gguf_from_medground_convert(tiny, tokenizer, image, tmp_path):
    """`medground convert` output (config flattened as medplib.*, tokenizer.model embedded)."""
    import shutil

    import medground

    folder = tiny.save(str(tmp_path / "st"))
    shutil.copy(shared_path("tokenizers", "llama.tokenizer.model"), os.path.join(folder, "tokenizer.model"))
    added = ["<SEG>", "<ref>", "</ref>", "<region>", "</region>", "<sr>", "</sr>", "<mask>", "</mask>"] + \
        [f"<gen_{i}>" for i in range(1, 257)] + ["<im_start>", "<im_end>"]
    (tmp_path / "st" / "added_tokens.json").write_text(json.dumps({t: 32000 + i for i, t in enumerate(added)}))
    out = tmp_path / "medplib.gguf"
    medground.convert(folder, str(out), type="f32", progress=False)
    m = MedPLIB(str(out))
    assert isinstance(medground.load(folder), MedPLIB)  # family detection + tokenizer.model beside it
    assert m.info["n_experts"] == 2 and m.info["clip_layers_run"] == 2 and len(m.tokenizer) == 32267
    emb, _ = _ref_image(tiny, image)
    tokens, _, _ = tiny.greedy(m.prompt_ids("What modality is this?"), image=emb, max_new_tokens=4)
    expected = tokenizer.decode([t for t in tokens if t != 2], skip_special_tokens=True).strip()
    assert m.chat(image, "What modality is this?", max_new_tokens=4) == expected


def test_one_call_at_a_time_per_model(model, image):
    """A streaming callback that calls the same model again gets a clear error, not shared scratch state."""
    import medground

    calls = []

    def reenter(text):
        try:
            model.chat(image, "again", max_new_tokens=1)
        except medground.InvalidArgumentError as error:
            calls.append(str(error))

    model.chat(image, "What is shown?", max_new_tokens=2, stream=reenter)
    assert calls and "already running a call" in calls[0]

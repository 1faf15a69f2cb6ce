"""medground.models.bird: answer parsing, box/grid mapping, Qwen-VL-Chat prompts
(checked against tiktoken over the real qwen.tiktoken), and the BiRD front end
(ground / refer / chat, streaming, sampling, KV reuse across turns) on the tiny
random model against the PyTorch reference."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
from conftest import shared_path  # noqa: E402
from reference import qwen_vl as ref  # noqa: E402

import medground  # noqa: E402
from medground import _C  # noqa: E402
from medground.image import preprocess_qwen  # noqa: E402
from medground.models.bird import (QWEN_SPECIALS, BiRD, Box, box_to_grid, chatml_segments, clean_answer,  # noqa: E402
                                   encode_segments, flatten_config, format_box, parse_boxes)

# ------------------------------------------------------------ box parsing


def test_parse_single_and_pixels():
    # (100,200),(500,750) on a 640 x 480 image: x * 640/1000, y * 480/1000
    got = parse_boxes("<ref>liver</ref><box>(100,200),(500,750)</box>", 640, 480)
    assert got.boxes == [Box(64.0, 96.0, 320.0, 360.0, "liver")] and got.problems == []
    assert got.boxes[0].to_dict() == {"x1": 64.0, "y1": 96.0, "x2": 320.0, "y2": 360.0, "label": "liver"}
    assert got.grid_boxes == [(100.0, 200.0, 500.0, 750.0)]


def test_parse_multiple_boxes_and_refs():
    text = ("<ref>kidney</ref><box>(10,20),(30,40)</box><box>(50, 60), (70, 80)</box> and "
            "<ref>spleen</ref><box>(0,0),(1000,1000)</box> plus <box>(1,2),(3,4)</box>")
    got = parse_boxes(text)
    assert [(b.x1, b.y1, b.x2, b.y2, b.label) for b in got.boxes] == [
        (10, 20, 30, 40, "kidney"), (50, 60, 70, 80, "kidney"), (0, 0, 1000, 1000, "spleen"), (1, 2, 3, 4, "spleen")]
    assert got.problems == []
    assert parse_boxes("<box>(1,2),(3,4)</box>").boxes[0].label is None


@pytest.mark.parametrize("text, n_boxes, problem", [
    ("<ref>liver</ref><box>(100,200),(500</box>", 0, "malformed"),
    ("<ref>liver</ref><box>(a,b),(c,d)</box>", 0, "malformed"),
    ("<ref>liver</ref><box>(100,200),(500,750),(1,2)</box>", 0, "malformed"),
    ("<ref>liver</ref><box>(100,200),(50", 0, "unterminated"),
    ("<ref>liver</ref><box>(100,200),(500,750)</box><box>(1,", 1, "unterminated"),
    ("<ref>liver</ref><box>(-5,200),(1200,750)</box>", 1, "outside"),
    ("<ref>liver</ref><box>(500,750),(100,200)</box>", 1, "swapped"),
    ("<ref>liver</ref><box>(100,200),(100,750)</box>", 1, "empty"),
    ("<ref>liver</ref> is not visible", 0, "without any box"),
    ("", 0, None),
    ("<box></box><ref></ref></box><box>", 0, "malformed"),
])
def test_parse_bad_model_output_never_raises(text, n_boxes, problem):
    got = parse_boxes(text, 100, 100)
    assert len(got.boxes) == n_boxes
    if problem is None:
        assert got.problems == []
    else:
        assert any(problem in p for p in got.problems), got.problems


def test_parse_clamps_and_reorders():
    got = parse_boxes("<box>(-5,200),(1200,750)</box><box>(500,750),(100,200)</box>", 1000, 1000)
    assert [(b.x1, b.y1, b.x2, b.y2) for b in got.boxes] == [(0, 200, 1000, 750), (100, 200, 500, 750)]


def test_parse_fallback_without_tags():
    # BiRD's fallback regex when the answer has no <box>
    got = parse_boxes("the lesion is at (120,340),(560,780).", 200, 100)
    assert [(b.x1, b.y1, b.x2, b.y2) for b in got.boxes] == [(24.0, 34.0, 112.0, 78.0)]


def test_parse_rejects_bad_arguments():
    with pytest.raises(medground.InvalidArgumentError):
        parse_boxes(None)
    with pytest.raises(medground.InvalidArgumentError):
        parse_boxes("x", 100, None)
    with pytest.raises(medground.InvalidArgumentError):
        parse_boxes("x", 0, 100)


def test_box_to_grid():
    # floor(v / size * 1000), clamped to 0..999
    assert box_to_grid((64, 96, 320, 360), 640, 480) == (100, 200, 500, 750)
    assert box_to_grid((0, 0, 640, 480), 640, 480) == (0, 0, 999, 999)
    assert box_to_grid((-3, 1, 700, 2), 640, 480) == (0, 2, 999, 4)
    assert format_box((100, 200, 500, 750)) == "(100,200),(500,750)"
    for bad in [(1, 2, 3), (5, 5, 1, 9), (0, float("nan"), 1, 1)]:
        with pytest.raises(medground.InvalidArgumentError):
            box_to_grid(bad, 10, 10)


def test_clean_answer_matches_the_eval_module():
    samples = ["The liver.<|im_end|>\n<|endoftext|>", "a<|im_end|>\nb", "x\nkeep this\ny", "  plain  ",
               "kidney<|endoftext|>"]
    expected = ["The liver.", "ab", "keep this", "plain", "kidney"]  # by hand, regularization.py's 5 steps
    assert [clean_answer(s) for s in samples] == expected
    assert _C.eval_bird_clean(samples) == expected


# ----------------------------------------------------------------- prompts


@pytest.mark.parametrize("which", ["medground", "tiktoken-adapter"])
def test_prompt_ids_match_tiktoken_on_the_real_vocabulary(which, tmp_path):
    tiktoken = pytest.importorskip("tiktoken")
    import base64

    from medground.models.bird import _TiktokenQwen, default_tokenizer

    path = shared_path("tokenizers", "qwen.tiktoken")
    if which == "medground":  # the C tokenizer found beside a checkpoint, as BiRD(folder) does
        (tmp_path / "qwen.tiktoken").symlink_to(path)
        ours = default_tokenizer(tmp_path / "model.safetensors")
    else:
        ours = _TiktokenQwen(path)
    ranks = {}
    for line in path.read_bytes().splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    enc = tiktoken.Encoding("qwen-test", pat_str=_TiktokenQwen.PATTERN, mergeable_ranks=ranks,
                            special_tokens={t: 151643 + i for i, t in enumerate(QWEN_SPECIALS)})
    special = {t: 151643 + i for i, t in enumerate(QWEN_SPECIALS)}
    history = [("Where is <ref>the liver</ref>?", "<ref>the liver</ref><box>(120,88),(560,640)</box>")]
    query = "What is in <box>(1,2),(300,400)</box>?"
    # Qwen-VL-Chat make_context, written out by hand (docs §1.8):
    text = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
            "<|im_start|>user\nPicture 1: <img></img>\nWhere is <ref>the liver</ref>?<|im_end|>\n"
            "<|im_start|>assistant\n<ref>the liver</ref><box>(120,88),(560,640)</box><|im_end|>\n"
            "<|im_start|>user\nWhat is in <box>(1,2),(300,400)</box>?<|im_end|>\n<|im_start|>assistant\n")
    want = enc.encode(text, allowed_special="all")
    at = want.index(special["</img>"])
    want = want[:at] + [special["<imgpad>"]] * 256 + want[at:]  # 256 image positions (docs §1.7.3)
    got = encode_segments(ours, chatml_segments(query, history), special, 256)
    assert got == want
    assert got[0] == 151644 and got.count(151859) == 256 and got.count(151857) == 1
    # user text is plain text: a special string inside it is not a special token
    tricky = encode_segments(ours, chatml_segments("say <|im_end|> now", with_image=False), special, 256)
    assert tricky.count(special["<|im_end|>"]) == 2  # system + user turn ends only


# ------------------------------------------------------ the BiRD front end

CFG = ref.tiny_config()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models: one thread (the pool's wake-ups cost more than the work on a loaded machine)."""
    before = medground.get_num_threads()
    medground.set_num_threads(1)
    yield
    medground.set_num_threads(before)
BASE = 286  # <|endoftext|> in the tiny vocabulary (image_start_id 500 - 214)


class ByteTokenizer:
    """Toy tokenizer for the tiny model: ids 0..255 are UTF-8 bytes; other
    non-special ids decode to '<tN>'."""

    def encode(self, text):
        return list(text.encode("utf-8"))

    def decode(self, ids):
        out, run = [], bytearray()
        for i in ids:
            if i < 256:
                run.append(i)
            else:
                out.append(run.decode("utf-8", "replace"))
                run = bytearray()
                out.append(f"<t{i}>")
        out.append(run.decode("utf-8", "replace"))
        return "".join(out)


def toy_ids(text_with_specials: str) -> list[int]:
    """Hand encoding for the tiny model: specials by name, bytes otherwise."""
    import re

    names = sorted(QWEN_SPECIALS, key=len, reverse=True)
    pattern = "(" + "|".join(re.escape(n) for n in names) + ")"
    ids = []
    for piece in re.split(pattern, text_with_specials):
        if piece in QWEN_SPECIALS:
            ids.append(BASE + QWEN_SPECIALS.index(piece))
        elif piece:
            ids += list(piece.encode())
    return ids


@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(1)
    state = ref.random_state_dict(CFG, seed=1)
    model = ref.load_model(CFG, state)
    handle = _C.bird_load_arrays([(k, v.numpy(), "f32") for k, v in state.items()], flatten_config(CFG))
    return model, handle


@pytest.fixture(scope="module")
def picture():
    rng = np.random.default_rng(5)
    return rng.integers(0, 256, size=(150, 200, 3), dtype=np.uint8)  # H 150, W 200


def ref_embeddings(model, picture):
    pixels, _ = preprocess_qwen(picture, size=112)
    return model.encode_image(torch.from_numpy(pixels))[1]


def first_prompt(query):
    return toy_ids("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nPicture 1: <img>"
                   ) + [BASE + QWEN_SPECIALS.index("<imgpad>")] * 256 + toy_ids(
        f"</img>\n{query}<|im_end|>\n<|im_start|>assistant\n")


def test_chat_matches_reference_and_reuses_the_cache(tiny, picture):
    model, handle = tiny
    bird = BiRD(handle, tokenizer=ByteTokenizer(), context=1024)
    tok = ByteTokenizer()
    emb = ref_embeddings(model, picture)
    stops = {BASE, BASE + 1, BASE + 2}
    q1 = "What modality is this?"
    ids1 = first_prompt(q1)
    assert bird.build_prompt(q1) == ids1
    want1, _ = model.greedy(ids1, emb, max_new_tokens=12, stop=stops)
    a1 = bird.chat(picture, q1, max_new_tokens=12)
    body1 = want1[:-1] if want1[-1] in stops else want1
    assert a1 == bird._decode(body1).strip()
    assert bird.cached_tokens == len(ids1) + len(want1) - 1

    q2 = "And the <ref>liver</ref>?"
    ids2 = (ids1 + body1 + toy_ids("<|im_end|>\n<|im_start|>user\n") + tok.encode("And the ")
            + toy_ids("<ref>liver</ref>") + tok.encode("?") + toy_ids("<|im_end|>\n<|im_start|>assistant\n"))
    assert bird.build_prompt(q2, [(q1, a1)]) == ids2  # the generated ids of turn 1 are reused verbatim
    want2, _ = model.greedy(ids2, emb, max_new_tokens=10, stop=stops)
    before = bird.cached_tokens
    a2 = bird.chat(picture, q2, history=[(q1, a1)], max_new_tokens=10)
    body2 = want2[:-1] if want2[-1] in stops else want2
    assert a2 == bird._decode(body2).strip()
    assert before > len(ids1)  # the first turn stayed cached and the second extended it
    assert bird.cached_tokens == len(ids2) + len(want2) - 1


def test_streaming_sampling_and_limits(tiny, picture):
    model, handle = tiny
    bird = BiRD(handle, tokenizer=ByteTokenizer())
    pieces = []
    answer = bird.chat(picture, "Describe.", max_new_tokens=15, stream=pieces.append)
    assert "".join(pieces).strip() == answer
    assert len(pieces) >= 2
    stopped = []
    bird.chat(picture, "Describe.", max_new_tokens=15, stream=lambda p: stopped.append(p) or len(stopped) < 2)
    assert len(stopped) == 2
    a = bird.chat(picture, "Describe.", max_new_tokens=8, do_sample=True, temperature=0.8, top_p=0.9, seed=3)
    b = bird.chat(picture, "Describe.", max_new_tokens=8, do_sample=True, temperature=0.8, top_p=0.9, seed=3)
    assert a == b
    out = bird.generate(bird.build_prompt("Describe."), max_new_tokens=4, stop=[])
    assert len(out) == 4
    with pytest.raises(medground.InvalidArgumentError, match="stop token"):
        bird.generate([1, 2], stop=["<nope>"])


def test_ground_maps_answer_boxes_to_pixels(tiny, picture, monkeypatch):
    model, handle = tiny
    bird = BiRD(handle, tokenizer=ByteTokenizer())
    seen = {}
    answer = toy_ids("<ref>liver</ref><box>(100,200),(500,750)</box><box>(0,0),(1200,10)</box><|im_end|>")

    def fake_generate(ids, **options):
        seen["ids"] = list(ids)
        return answer

    monkeypatch.setattr(bird, "generate", fake_generate)
    boxes = bird.ground(picture, "liver")
    # W 200, H 150: x * 0.2, y * 0.15; the second box is clamped to 1000
    assert boxes == [Box(20.0, 30.0, 100.0, 112.5, "liver"), Box(0.0, 0.0, 200.0, 1.5, "liver")]
    assert any("outside" in p for p in bird.last_problems)
    assert seen["ids"] == first_prompt("Please output the bounding box of <ref>liver</ref> in the image.")
    # refer: the pixel box goes into the prompt on the grid
    bird.refer(picture, (20, 30, 100, 112.5))
    text = bird._decode(seen["ids"])
    assert "What is the object in <box>(100,200),(500,750)</box>?" in text
    bird.refer(picture, (20, 30, 100, 112.5), task="caption")
    assert "describe the region <box>(100,200),(500,750)</box>" in bird._decode(seen["ids"])
    with pytest.raises(medground.InvalidArgumentError):
        bird.refer(picture, (20, 30, 100), task="refer")
    with pytest.raises(medground.InvalidArgumentError):
        bird.ground(picture, "  ")


def test_ground_end_to_end_matches_reference(tiny, picture):
    model, handle = tiny
    bird = BiRD(handle, tokenizer=ByteTokenizer())
    query = "Please output the bounding box of <ref>liver</ref> in the image."
    want, _ = model.greedy(first_prompt(query), ref_embeddings(model, picture), max_new_tokens=20,
                           stop={BASE, BASE + 1, BASE + 2})
    body = want[:-1] if want[-1] in {BASE, BASE + 1, BASE + 2} else want
    boxes = bird.ground(picture, "liver", max_new_tokens=20)
    assert bird.last_raw.startswith(bird._decode(body))
    assert boxes == parse_boxes(bird._decode(body), 200, 150).boxes


def test_model_special_layout_checked(tiny):
    _, handle = tiny
    with pytest.raises(medground.InvalidArgumentError, match="tokenizer"):
        BiRD(handle)
    with pytest.raises(medground.InvalidArgumentError, match="encode"):
        BiRD(handle, tokenizer=object())


def test_image_inputs_and_memo(tiny, picture, tmp_path):
    from PIL import Image

    model, handle = tiny
    bird = BiRD(handle, tokenizer=ByteTokenizer())
    first = bird.encode_image(picture)
    assert bird.encode_image(picture.copy()) is first  # same pixels: memoised
    changed = picture.copy()
    changed[:40] = 255 - changed[:40]
    other = bird.encode_image(changed)
    assert other is not first and np.abs(other - first).max() > 1e-3
    np.testing.assert_allclose(bird.encode_image(changed), ref_embeddings(model, changed).numpy(), rtol=0, atol=1e-4)
    path = tmp_path / "scan.png"
    Image.fromarray(picture).save(path)
    np.testing.assert_array_equal(bird.encode_image(str(path)), first)  # PNG is lossless
    np.testing.assert_array_equal(bird.encode_image(Image.fromarray(picture)), first)
    gray = bird.encode_image(Image.fromarray(picture[:, :, 0]))  # any mode: gray replicated to RGB
    np.testing.assert_array_equal(gray, bird.encode_image(np.repeat(picture[:, :, :1], 3, axis=2)))
    assert bird._image_size == (200, 150)


def test_checkpoint_folder_and_tokenizer_mismatch(tmp_path):
    state = ref.random_state_dict(CFG, seed=1)
    folder = ref.save_bin(tmp_path / "bin", CFG, state, dtype=torch.bfloat16)
    bird = BiRD(folder, tokenizer=ByteTokenizer())  # HF .bin folder through the restricted unpickler
    assert bird.info["vocab_size"] == 512
    # the real Qwen tokenizer beside a checkpoint with a 512-row vocabulary: refused, naming both sides
    (folder / "qwen.tiktoken").symlink_to(shared_path("tokenizers", "qwen.tiktoken"))
    with pytest.raises(medground.FormatError, match=r"151860 ids.*transformer\.wte\.weight.*512"):
        BiRD(folder)
    with pytest.raises(medground.NotFoundError):
        BiRD(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(medground.NotFoundError, match="no safetensors"):
        BiRD(tmp_path / "empty", tokenizer=ByteTokenizer())
    (tmp_path / "model.txt").write_text("x")
    with pytest.raises(medground.FormatError, match="unknown checkpoint type"):
        BiRD(tmp_path / "model.txt", tokenizer=ByteTokenizer())


def test_text_only_chat_and_precomputed_embeddings(tiny, picture):
    model, handle = tiny
    bird = BiRD(handle, tokenizer=ByteTokenizer())
    ids = toy_ids("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello"
                  "<|im_end|>\n<|im_start|>assistant\n")
    assert bird.build_prompt("Hello", with_image=False) == ids
    want, _ = model.greedy(ids, None, max_new_tokens=6, stop={BASE, BASE + 1, BASE + 2})
    body = want[:-1] if want[-1] in {BASE, BASE + 1, BASE + 2} else want
    assert bird.chat(None, "Hello", max_new_tokens=6) == bird._decode(body).strip()
    emb = ref_embeddings(model, picture).numpy()
    bird.set_image_embeddings(emb, 200, 150)
    out = bird.generate(bird.build_prompt("Hi"), max_new_tokens=5)
    want, _ = model.greedy(bird.build_prompt("Hi"), torch.from_numpy(emb), max_new_tokens=5,
                           stop={BASE, BASE + 1, BASE + 2})
    assert out == want
    with pytest.raises(medground.ShapeError):
        bird.set_image_embeddings(emb[:5], 200, 150)


def test_long_history_drops_the_oldest_turns(tiny, picture):
    _, handle = tiny
    bird = BiRD(handle, tokenizer=ByteTokenizer(), context=420)
    history = [(f"question {i} " + "x" * 20, f"answer {i}") for i in range(4)]
    full = len(bird.build_prompt("last?", history))
    assert full + 10 > 420  # the whole history does not fit
    seen = {}
    real = bird.generate
    bird.generate = lambda ids, **o: seen.setdefault("ids", list(ids)) and real(ids, **o)
    bird.chat(picture, "last?", history=history, max_new_tokens=10)
    kept = [h for h in history if bird._decode(seen["ids"]).find(h[0]) >= 0]
    assert kept and kept == history[len(history) - len(kept):]  # the newest turns survive
    assert len(seen["ids"]) + 10 <= 420 and seen["ids"].count(IMG_TINY) == 1
    with pytest.raises(medground.InvalidArgumentError, match="context"):
        bird.chat(picture, "y" * 200, max_new_tokens=10)


IMG_TINY = 500


# ----------------------------- parser vs an independent regex reference
import re as _re  # noqa: E402

_R_NUM = r"[ \t\n\r\f\v]*(-?\d+(?:\.\d+)?)[ \t\n\r\f\v]*"
_R_PAIR = rf"\({_R_NUM},{_R_NUM}\)"
_R_BODY = _re.compile(rf"[ \t\n\r\f\v]*{_R_PAIR}[ \t\n\r\f\v]*,?[ \t\n\r\f\v]*{_R_PAIR}[ \t\n\r\f\v]*\Z", _re.ASCII)
_R_FALLBACK = _re.compile(r"\((\d+),(\d+)\),\((\d+),(\d+)\)", _re.ASCII)
_R_TOKEN = _re.compile(r"<ref>(.*?)(?:</ref>|(?=<box>)|\Z)|<box>(.*?)(</box>|\Z)", _re.DOTALL)


def reference_parse(text, width, height, grid=1000):
    """The documented rules with Python regexes: [(x1, y1, x2, y2, label)] and issue kinds."""
    raw, kinds, label = [], set(), None
    if "<box>" in text:
        for m in _R_TOKEN.finditer(text):
            if m.group(1) is not None:
                label = m.group(1).strip(" \t\n\r\f\v") or None
            elif not m.group(3):
                kinds.add("unterminated")
            elif (body := _R_BODY.match(m.group(2))):
                raw.append(([float(v) for v in body.groups()], label))
            else:
                kinds.add("malformed")
    else:
        raw = [([float(v) for v in m.groups()], None) for m in _R_FALLBACK.finditer(text)]
        if not raw and "<ref>" in text:
            kinds.add("without any box")
    out = []
    for values, lab in raw:
        v = [min(max(x, 0.0), float(grid)) for x in values]
        if v != values:
            kinds.add("outside")
        if v[0] > v[2] or v[1] > v[3]:
            kinds.add("swapped")
            v = [min(v[0], v[2]), min(v[1], v[3]), max(v[0], v[2]), max(v[1], v[3])]
        if v[0] == v[2] or v[1] == v[3]:
            kinds.add("empty")
        sx, sy = width / grid, height / grid
        out.append((v[0] * sx, v[1] * sy, v[2] * sx, v[3] * sy, lab))
    return out, kinds


def test_parser_agrees_with_reference_on_random_answers():
    rng = np.random.default_rng(42)
    pieces = ["<ref>", "</ref>", "<box>", "</box>", "(", ")", ",", " ", "-", "12", "1000", "999", "3.5", "0",
              "1200", "7.", ".5", "liver", "左肾", "\n", "<|im_end|>", "(1,2),(3,4)", "(10,20),(30,40)",
              "<box>(100,200),(500,750)</box>", "<ref>kidney</ref>", "\t", "abc", "<box>(1200,-5),(3,4)</box>",
              "<box>(500,750),(100,200)</box>", "<box>( 5 , 5 ),( 5 ,9)</box>", "(2000,1),(3,3)",
              "<box>(1.25,2)(3,4.75)</box>"]
    for case in range(3000):
        text = "".join(rng.choice(pieces, size=int(rng.integers(0, 25))))
        got = parse_boxes(text, 640, 480)
        want, kinds = reference_parse(text, 640, 480)
        assert [(b.x1, b.y1, b.x2, b.y2, b.label) for b in got.boxes] == want, text
        got_kinds = {k for k in ("unterminated", "malformed", "without any box", "outside", "swapped", "empty")
                     if any(k in p for p in got.problems)}
        assert got_kinds == kinds, text


def test_real_vocabulary_end_to_end(tmp_path, picture):
    """The whole path with Qwen's real vocabulary: a folder with qwen.tiktoken
    beside the weights (medground's C tokenizer by default), the real special
    ids (<img> 151857 ...), against the reference fed ids that tiktoken made
    from the hand-written ChatML text, and its answer decoded by tiktoken."""
    tiktoken = pytest.importorskip("tiktoken")
    from tiktoken.load import load_tiktoken_bpe

    from medground.models.bird import _TiktokenQwen

    vocab_file = shared_path("tokenizers", "qwen.tiktoken")
    cfg = ref.tiny_config(vocab_size=151936, image_start_id=151857)
    cfg.update(hidden_size=128, num_hidden_layers=1, num_attention_heads=2, kv_channels=64, intermediate_size=256)
    cfg["visual"].update(output_dim=128, layers=1)
    state = ref.random_state_dict(cfg, seed=7)
    folder = ref.save_checkpoint(tmp_path / "qwen", cfg, state)
    (folder / "qwen.tiktoken").symlink_to(vocab_file)
    enc = tiktoken.Encoding("qwen-e2e", pat_str=_TiktokenQwen.PATTERN, mergeable_ranks=load_tiktoken_bpe(str(vocab_file)),
                            special_tokens={t: 151643 + i for i, t in enumerate(QWEN_SPECIALS)})
    query = "Where is <ref>the liver</ref>?"
    text = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nPicture 1: <img></img>\n"
            f"{query}<|im_end|>\n<|im_start|>assistant\n")
    ids = enc.encode(text, allowed_special="all")
    at = ids.index(151858)
    ids = ids[:at] + [151859] * 256 + ids[at:]

    bird = BiRD(folder)
    assert bird.build_prompt(query) == ids
    model = ref.load_model(cfg, state)
    stops = {151643, 151644, 151645}
    want, _ = model.greedy(ids, ref_embeddings(model, picture), max_new_tokens=12, stop=stops)
    body = want[:-1] if want[-1] in stops else want
    assert bird.chat(picture, query, max_new_tokens=12) == enc.decode(body, errors="replace").strip()


def test_c_prompt_builder_matches_python_segments(tmp_path):
    """mg_bird_build_prompt (the C API's ChatML) gives the ids of the Python
    builder, which test_prompt_ids_match_tiktoken_on_the_real_vocabulary
    checks against tiktoken."""
    from medground.models.bird import _TiktokenQwen

    vocab_file = shared_path("tokenizers", "qwen.tiktoken")
    cfg = ref.tiny_config(vocab_size=151936, image_start_id=151857)
    cfg.update(hidden_size=128, num_hidden_layers=1, num_attention_heads=2, kv_channels=64, intermediate_size=256)
    cfg["visual"].update(output_dim=128, layers=1)
    state = ref.random_state_dict(cfg, seed=7)
    handle = _C.bird_load_arrays([(k, v.numpy(), "f32") for k, v in state.items()], flatten_config(cfg))
    special = {t: 151643 + i for i, t in enumerate(QWEN_SPECIALS)}
    tok = _TiktokenQwen(vocab_file)
    cases = [
        (["Where is <ref>the liver</ref>?"], None, True),
        (["Hi", "Hello <box>(1,2),(3,4)</box>!", "  \n\nsay <|im_end|> now 你好"], None, True),
        (["no image here"], "Be brief.", False),
        (["<ref></ref><box></box>", "", "x"], "", True),
    ]
    for messages, system, with_image in cases:
        history = list(zip(messages[:-1:2], messages[1::2]))
        want = encode_segments(tok, chatml_segments(messages[-1], history, system if system is not None else
                                                    "You are a helpful assistant.", with_image), special, 256)
        got = _C.bird_build_prompt(handle, str(vocab_file), messages, system=system, with_image=with_image)
        assert got == want, messages
    with pytest.raises(medground.InvalidArgumentError, match="odd"):
        _C.bird_build_prompt(handle, str(vocab_file), ["a", "b"])

"""Image input and preprocessing against independent references.

Decoding is compared with PIL on the real medical images in ../shared/data
(lossless formats: exactly; JPEG: within IDCT rounding), the resize with PIL
``Image.resize`` itself (target: max abs difference 0), the model pipelines
with PIL + NumPy/torch written here from the documented rules (architecture
§1.6, §2.9), and DICOM windowing with the PS3.3 C.11.2.1.2 formula in NumPy.
"""

from __future__ import annotations

import io
import os
import pathlib
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

import medground
from medground import image as mi
from medground.errors import DTypeError, FormatError, InvalidArgumentError, NotFoundError, ShapeError

from conftest import REPO, shared_path

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SAM_MEAN = (123.675, 116.28, 103.53)
SAM_STD = (58.395, 57.12, 57.375)


# ----------------------------------------------------------------- inputs
def _png(arr: np.ndarray, color_type: int, bit_depth: int) -> bytes:
    """A minimal PNG written by hand (PIL cannot write 16-bit colour PNGs)."""
    h, w = arr.shape[:2]
    dtype = ">u2" if bit_depth == 16 else "u1"
    raw = b"".join(b"\x00" + np.ascontiguousarray(arr[y]).astype(dtype).tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def _real_images() -> list[pathlib.Path]:
    root = shared_path("images")
    paths = sorted((root / "medplib-demo").glob("*.png"))
    paths += sorted((root / "sam-med2d-demo" / "images").glob("*.png"))
    paths += sorted((root / "biomedparse-demo" / "demo").glob("*.png"))[::3]
    # The shared data holds one empty (0-byte) PNG; test_empty_real_file covers it.
    paths = [p for p in paths if p.stat().st_size > 0]
    assert len(paths) >= 10, paths
    return paths


def test_empty_real_file_is_a_format_error():
    empty = [p for p in shared_path("images").rglob("*.png") if p.stat().st_size == 0]
    if not empty:
        pytest.skip("no empty file in the shared data")
    with pytest.raises(FormatError, match="empty"):
        mi.load(empty[0])
    with pytest.raises(FormatError, match="empty"):
        mi.info(empty[0])


def _skimage_file(name: str) -> str:
    skimage = pytest.importorskip("skimage")
    path = os.path.join(os.path.dirname(skimage.__file__), "data", name)
    if not os.path.exists(path):
        pytest.skip(f"scikit-image sample {name} is not installed")
    return path


# --------------------------------------------------------------- decoding
def test_decode_real_pngs_equal_pil():
    for path in _real_images():
        ours = mi.load(path, raw=True)
        ref = np.asarray(Image.open(path))
        if ref.ndim == 2:
            ref = ref[:, :, None]
        assert ours.dtype == ref.dtype and ours.shape == ref.shape, path
        np.testing.assert_array_equal(ours, ref, err_msg=str(path))
        w, h, c = mi.info(path)
        assert (w, h, c) == (ref.shape[1], ref.shape[0], ref.shape[2])
        # The RGB front door equals PIL's convert('RGB') (gray replicated, alpha dropped).
        np.testing.assert_array_equal(mi.load(path), np.asarray(Image.open(path).convert("RGB")))


def test_decode_jpeg_fundus_close_to_libjpeg():
    # stb_image and libjpeg-turbo use different IDCT/upsampling roundings; the
    # decoded pixels agree to a few levels, not bit for bit.
    path = _skimage_file("retina.jpg")
    ours = mi.load(path)
    ref = np.asarray(Image.open(path).convert("RGB"))
    diff = np.abs(ours.astype(int) - ref)
    assert ours.shape == ref.shape
    assert diff.max() <= 4 and diff.mean() < 0.1, (diff.max(), diff.mean())


@pytest.mark.parametrize("fmt,mode", [("BMP", "RGB"), ("BMP", "L"), ("PPM", "RGB"), ("PPM", "L"), ("PNG", "LA"),
                                      ("PNG", "RGBA"), ("PNG", "P")])
def test_decode_formats_written_by_pil(fmt, mode, rng):
    pixels = rng.integers(0, 256, (23, 37, 3), dtype=np.uint8)
    im = Image.fromarray(pixels).convert(mode)
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    data = buf.getvalue()
    ref = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    np.testing.assert_array_equal(mi.load(data), ref)
    raw = mi.load(data, raw=True)
    assert raw.shape[:2] == (23, 37)
    assert mi.info(data)[:2] == (37, 23)


def test_decode_16bit_png_follows_pil():
    rng = np.random.default_rng(7)
    gray = rng.integers(0, 65536, (9, 11), dtype=np.uint16)
    gray[0, :4] = [0, 255, 256, 65535]
    im = Image.fromarray(gray)  # mode I;16
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    raw = mi.load(buf.getvalue(), raw=True)
    assert raw.dtype == np.uint16
    np.testing.assert_array_equal(raw[:, :, 0], gray)
    pil = Image.open(io.BytesIO(buf.getvalue()))
    assert pil.mode == "I;16"
    np.testing.assert_array_equal(mi.load(buf.getvalue()), np.asarray(pil.convert("RGB")))
    # 16-bit colour PNGs: PIL keeps the high byte.
    for color_type, channels in ((2, 3), (6, 4), (4, 2)):
        arr = rng.integers(0, 65536, (5, 7, channels), dtype=np.uint16)
        data = _png(arr, color_type, 16)
        raw = mi.load(data, raw=True)
        np.testing.assert_array_equal(raw, arr)
        np.testing.assert_array_equal(mi.load(data), np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
    # 16-bit PGM (maxval 65535).
    pgm = b"P5 11 9 65535\n" + gray.astype(">u2").tobytes()
    np.testing.assert_array_equal(mi.load(pgm, raw=True)[:, :, 0], gray)


def test_load_pil_and_array_sources(rng):
    path = _real_images()[0]
    pil = Image.open(path)
    ref = np.asarray(pil.convert("RGB"))
    np.testing.assert_array_equal(mi.load(pil), ref)
    np.testing.assert_array_equal(mi.load(str(path)), ref)
    np.testing.assert_array_equal(mi.load(pathlib.Path(path)), ref)
    # Strided views (no copy on the Python side) are read correctly.
    rgb = rng.integers(0, 256, (31, 17, 4), dtype=np.uint8)
    np.testing.assert_array_equal(mi.load(rgb[:, ::-1]), np.asarray(Image.fromarray(rgb[:, ::-1].copy()).convert("RGB")))
    np.testing.assert_array_equal(mi.load(rgb[::2, :, 0]), np.repeat(rgb[::2, :, :1], 3, axis=2))


# ----------------------------------------------------------------- resize
SIZES = [(448, 448), (336, 211), (257, 256), (1, 1), (1, 97), (97, 1), (3, 2), (1023, 5), (5, 1023),
         (2048, 1536), (1500, 40)]


def test_resize_u8_equals_pil_on_real_images():
    worst = 0
    for path in _real_images()[::2]:
        for mode in ("L", "RGB"):
            pil = Image.open(path).convert(mode)
            arr = np.asarray(pil)
            for size in SIZES:
                for method, flt in (("bicubic", Image.BICUBIC), ("bilinear", Image.BILINEAR)):
                    ours = mi.resize(arr, size, method)
                    ref = np.asarray(pil.resize(size, flt))
                    assert ours.shape == ref.shape
                    worst = max(worst, int(np.abs(ours.astype(int) - ref).max()))
    print(f"max abs difference vs PIL (uint8): {worst}")
    assert worst == 0


def test_resize_equals_pil_on_skimage_and_dicom():
    skdata = pytest.importorskip("skimage.data")
    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    arrays = [skdata.retina(), skdata.camera(), skdata.immunohistochemistry(), skdata.cell()]
    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm")).pixel_array.astype(np.float32)
    for arr in arrays:
        for size in ((448, 448), (131, 77), (2000, 9)):
            for method, flt in (("bicubic", Image.BICUBIC), ("bilinear", Image.BILINEAR)):
                np.testing.assert_array_equal(mi.resize(arr, size, method),
                                              np.asarray(Image.fromarray(arr).resize(size, flt)))
    # float32 matches PIL mode "F" (double accumulation, float per pass).
    for size in ((448, 448), (50, 300), (1, 1), (127, 129)):
        for method, flt in (("bicubic", Image.BICUBIC), ("bilinear", Image.BILINEAR)):
            ref = np.asarray(Image.fromarray(ct, mode="F").resize(size, flt))
            np.testing.assert_array_equal(mi.resize(ct, size, method), ref)


def test_resize_random_shapes_u8_and_float(rng):
    for _ in range(150):
        h0, w0, h, w = (int(v) for v in rng.integers(1, 70, 4))
        channels = int(rng.choice([1, 3]))
        shape = (h0, w0, 3) if channels == 3 else (h0, w0)
        arr = rng.integers(0, 256, shape, dtype=np.uint8)
        for method, flt in (("bicubic", Image.BICUBIC), ("bilinear", Image.BILINEAR)):
            np.testing.assert_array_equal(mi.resize(arr, (w, h), method),
                                          np.asarray(Image.fromarray(arr).resize((w, h), flt)))
            f = (rng.standard_normal((h0, w0)) * 300).astype(np.float32)
            np.testing.assert_array_equal(mi.resize(f, (w, h), method),
                                          np.asarray(Image.fromarray(f, mode="F").resize((w, h), flt)))


def test_resize_threads_do_not_change_pixels():
    arr = np.asarray(Image.open(_real_images()[0]).convert("RGB"))
    ref = np.asarray(Image.fromarray(arr).resize((448, 448), Image.BICUBIC))
    before = medground.get_num_threads()
    try:
        for n in (1, 2, 3):
            medground.set_num_threads(n)
            np.testing.assert_array_equal(mi.resize(arr, (448, 448)), ref)
    finally:
        medground.set_num_threads(before)


# ---------------------------------------------------- crop, pad, normalise
def test_center_crop_pad_normalize(rng):
    arr = rng.integers(0, 256, (21, 30, 3), dtype=np.uint8)
    # HF image_transforms.center_crop: top = (H - h) // 2, left = (W - w) // 2.
    np.testing.assert_array_equal(mi.center_crop(arr, (13, 8)), arr[6:14, 8:21])
    padded = mi.pad(arr, (35, 26), (122, 116, 104))
    ref = np.empty((26, 35, 3), np.uint8)
    ref[:] = (122, 116, 104)
    ref[2:23, 2:32] = arr
    np.testing.assert_array_equal(padded, ref)
    top_left = mi.pad(arr[:, :, 0], (31, 22), 7, centered=False)
    assert (top_left[:21, :30] == arr[:, :, 0]).all() and (top_left[21:] == 7).all() and (top_left[:, 30:] == 7).all()
    torch = pytest.importorskip("torch")
    # torchvision ToTensor + Normalize, in torch itself.
    ref = torch.from_numpy(arr).permute(2, 0, 1).float().div(255)
    ref = ref.sub_(torch.tensor(CLIP_MEAN).view(3, 1, 1)).div_(torch.tensor(CLIP_STD).view(3, 1, 1))
    np.testing.assert_array_equal(mi.normalize(arr, CLIP_MEAN, CLIP_STD), ref.numpy())


# -------------------------------------------------------------- pipelines
def _clip_normalize_hf(rgb: np.ndarray) -> np.ndarray:
    """HF CLIPImageProcessor's rescale (float64 * 1/255 -> float32) and normalize (float32)."""
    x = (rgb.astype(np.float64) * (1 / 255)).astype(np.float32)
    x = (x - np.array(CLIP_MEAN, np.float32)) / np.array(CLIP_STD, np.float32)
    return x.transpose(2, 0, 1)


def _longest_side(h: int, w: int, target: int) -> tuple[int, int]:
    # segment_anything ResizeLongestSide.get_preprocess_shape
    scale = target * 1.0 / max(h, w)
    return int(h * scale + 0.5), int(w * scale + 0.5)


def _pipeline_inputs() -> list[np.ndarray]:
    images = [np.asarray(Image.open(p).convert("RGB")) for p in _real_images()[::4]]
    rng = np.random.default_rng(3)
    images.append(rng.integers(0, 256, (300, 97, 3), dtype=np.uint8))  # tall
    images.append(rng.integers(0, 256, (41, 500, 3), dtype=np.uint8))  # wide, SAM side < 64
    images.append(rng.integers(0, 256, (7, 5, 3), dtype=np.uint8))  # upscale
    return images


def test_preprocess_qwen_matches_pil_torch():
    torch = pytest.importorskip("torch")
    for rgb in _pipeline_inputs():
        out, geometry = mi.preprocess_qwen(rgb)
        resized = np.asarray(Image.fromarray(rgb).resize((448, 448), Image.BICUBIC))
        ref = torch.from_numpy(resized).permute(2, 0, 1).float().div(255)
        ref = ref.sub_(torch.tensor(CLIP_MEAN).view(3, 1, 1)).div_(torch.tensor(CLIP_STD).view(3, 1, 1))
        assert out.shape == (3, 448, 448) and out.dtype == np.float32
        np.testing.assert_array_equal(out, ref.numpy())
        assert (geometry.original_width, geometry.original_height) == (rgb.shape[1], rgb.shape[0])
        assert geometry.pad_left == geometry.pad_top == 0


def test_preprocess_clip336_matches_pil_numpy():
    for rgb in _pipeline_inputs():
        out, geometry = mi.preprocess_clip336(rgb)
        h, w = _longest_side(rgb.shape[0], rgb.shape[1], 336)
        resized = Image.fromarray(rgb).resize((w, h), Image.BILINEAR)
        canvas = Image.new("RGB", (336, 336), (122, 116, 104))
        canvas.paste(resized, ((336 - w) // 2, (336 - h) // 2))
        ref = _clip_normalize_hf(np.asarray(canvas))
        np.testing.assert_allclose(out, ref, rtol=0, atol=1e-6)
        assert (geometry.resized_width, geometry.resized_height) == (w, h)
        assert (geometry.pad_left, geometry.pad_top) == ((336 - w) // 2, (336 - h) // 2)


def test_preprocess_sam_matches_pil_numpy():
    for rgb in _pipeline_inputs():
        out, geometry = mi.preprocess_sam(rgb)
        h, w = _longest_side(rgb.shape[0], rgb.shape[1], 256)
        resized = np.asarray(Image.fromarray(rgb).resize((w, h), Image.BILINEAR)).astype(np.float32)
        normed = (resized - np.array(SAM_MEAN, np.float32)) / np.array(SAM_STD, np.float32)
        ref = np.zeros((3, 256, 256), np.float32)
        top, left = (256 - h) // 2, (256 - w) // 2
        ref[:, top:top + h, left:left + w] = normed.transpose(2, 0, 1)
        np.testing.assert_array_equal(out, ref)
        # Geometry maps an original corner onto the resized region's corner.
        x, y = geometry.to_model(rgb.shape[1], rgb.shape[0])
        assert abs(x - (left + w)) < 1e-6 and abs(y - (top + h)) < 1e-6
        ox, oy = geometry.to_original(left, top)
        assert abs(ox) < 1e-9 and abs(oy) < 1e-9


def test_preprocess_gray_and_rgba_inputs_convert_like_pil():
    path = _real_images()[0]  # an X-ray stored as 8-bit gray
    gray = np.asarray(Image.open(path))
    rgb = np.asarray(Image.open(path).convert("RGB"))
    np.testing.assert_array_equal(mi.preprocess_sam(gray)[0], mi.preprocess_sam(rgb)[0])
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 9, np.uint8)])
    np.testing.assert_array_equal(mi.preprocess_qwen(rgba)[0], mi.preprocess_qwen(rgb)[0])


# ------------------------------------------------------------------ DICOM
def _dicom_window_reference(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1 linear VOI LUT to 0..255, rounded half up."""
    c, w = center, width
    y = ((values - (c - 0.5)) / (w - 1) + 0.5) * 255.0
    y = np.where(values <= c - 0.5 - (w - 1) / 2, 0.0, np.where(values > c - 0.5 + (w - 1) / 2, 255.0, y))
    return np.floor(y + 0.5).clip(0, 255).astype(np.uint8)


@pytest.mark.parametrize("window", ["lung", "abdomen", "brain", "bone", "mediastinum", (40, 400), "dicom", None])
def test_dicom_windowing(window):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    for name in ("CT_small.dcm", "MR_small.dcm"):
        path = get_testdata_file(name)
        ds = pydicom.dcmread(path)
        if window == "dicom" and "WindowCenter" not in ds:
            with pytest.raises(InvalidArgumentError):
                mi.load(path, window=window)
            continue
        values = ds.pixel_array.astype(np.float64) * float(ds.get("RescaleSlope", 1) or 1) + float(
            ds.get("RescaleIntercept", 0) or 0)
        if window is None:
            lo, hi = values.min(), values.max()
            ref = np.floor((values - lo) / (hi - lo) * 255.0 + 0.5).clip(0, 255).astype(np.uint8)
        else:
            if window == "dicom":
                center, width = float(ds.WindowCenter), float(ds.WindowWidth)
            elif isinstance(window, str):
                center, width = mi.WINDOW_PRESETS[window]
            else:
                center, width = window
            ref = _dicom_window_reference(values, center, width)
        out = mi.load(path, window=window)
        assert out.shape == values.shape + (3,) and out.dtype == np.uint8
        np.testing.assert_array_equal(out[:, :, 0], ref)
        np.testing.assert_array_equal(out[:, :, 2], ref)


def test_dicom_raw_and_arrays_with_windows():
    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    path = get_testdata_file("CT_small.dcm")
    raw = mi.load(path, raw=True)
    np.testing.assert_array_equal(raw, pydicom.dcmread(path).pixel_array)
    hu = raw.astype(np.float32) - 1024  # CT_small: slope 1, intercept -1024
    np.testing.assert_array_equal(mi.load(hu, window="lung")[:, :, 1],
                                  _dicom_window_reference(hu.astype(np.float64), -600, 1500))
    np.testing.assert_array_equal(mi.load(raw.astype(np.int16), window=(1064, 400))[:, :, 0],
                                  _dicom_window_reference(raw.astype(np.float64), 1064, 400))


# -------------------------------------------------------------- bad input
def test_bad_files_give_typed_errors(tmp_path):
    path = _real_images()[0]
    data = path.read_bytes()
    for cut in (len(data) // 2, 100, 40, 8, 3):
        with pytest.raises(FormatError):
            mi.load(data[:cut])
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(data[: len(data) // 3])
    with pytest.raises(FormatError, match="truncated.png"):
        mi.load(truncated)
    # A valid-looking header claiming 100000 x 100000 pixels (a bomb).
    bomb = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
    bomb += struct.pack(">I", zlib.crc32(bomb[12:29]) & 0xFFFFFFFF)
    for source in (bomb, bomb + b"\x00" * 64):
        with pytest.raises(FormatError, match="100000x100000"):
            mi.load(source)
        with pytest.raises(FormatError, match="100000x100000"):
            mi.info(source)
    bomb_file = tmp_path / "bomb.png"
    bomb_file.write_bytes(bomb)
    with pytest.raises(FormatError, match="bomb.png"):
        mi.info(bomb_file)
    with pytest.raises(FormatError, match="not a PNG"):
        mi.load(b"GIF89a......")
    with pytest.raises(FormatError, match="empty"):
        mi.load(b"")
    with pytest.raises(NotFoundError, match="missing.png"):
        mi.load(tmp_path / "missing.png")
    bad_dicom = tmp_path / "bad.dcm"
    bad_dicom.write_bytes(b"\x00" * 128 + b"DICM" + b"\x01\x02")
    with pytest.raises(FormatError, match="bad.dcm"):
        mi.load(bad_dicom)


def test_bad_arrays_give_typed_errors():
    with pytest.raises(ShapeError):
        mi.load(np.zeros((0, 5), np.uint8))
    with pytest.raises(ShapeError):
        mi.resize(np.zeros((4, 0, 3), np.uint8), (2, 2))
    with pytest.raises(ShapeError, match="5 dimensions"):
        mi.load(np.zeros((2, 2, 2, 2, 2), np.uint8))
    with pytest.raises(ShapeError, match="channels"):
        mi.resize(np.zeros((4, 4, 7), np.uint8), (2, 2))
    with pytest.raises(DTypeError, match="object"):
        mi.load(np.array([[object(), 1]], dtype=object))
    with pytest.raises(DTypeError, match="complex"):
        mi.resize(np.zeros((3, 3), np.complex64), (2, 2))
    with pytest.raises(DTypeError):
        mi.resize(np.zeros((3, 3), np.uint16), (2, 2))
    with pytest.raises(InvalidArgumentError):
        mi.resize(np.zeros((3, 3), np.uint8), (0, 2))
    with pytest.raises(InvalidArgumentError):
        mi.resize(np.zeros((3, 3), np.uint8), (2, 2), method="lanczos")
    with pytest.raises(InvalidArgumentError, match="window"):
        mi.load(np.zeros((3, 3), np.int16), window="liver-ish")
    with pytest.raises(InvalidArgumentError):
        mi.center_crop(np.zeros((3, 3), np.uint8), (4, 1))
    with pytest.raises(DTypeError):
        mi.load(12345)


# ------------------------------------------------------------ fuzz seeds
def test_write_fuzz_seed_corpus():
    """Tiny valid files of each format as seeds for fuzz/targets/fuzz_image.c."""
    corpus = REPO / "fuzz" / "corpus" / "image"
    corpus.mkdir(parents=True, exist_ok=True)
    base = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3) * 4
    seeds = {}
    for name, mode, fmt, kwargs in (("rgb.png", "RGB", "PNG", {}), ("gray.png", "L", "PNG", {}),
                                    ("rgba.png", "RGBA", "PNG", {}), ("rgb.jpg", "RGB", "JPEG", {"quality": 90}),
                                    ("gray.jpg", "L", "JPEG", {}), ("rgb.bmp", "RGB", "BMP", {}),
                                    ("gray.pgm", "L", "PPM", {}), ("rgb.ppm", "RGB", "PPM", {})):
        buf = io.BytesIO()
        Image.fromarray(base).convert(mode).save(buf, format=fmt, **kwargs)
        seeds[name] = buf.getvalue()
    seeds["gray16.png"] = _png(np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000, 0, 16)
    for name, data in seeds.items():
        target = corpus / name
        if not target.exists() or target.read_bytes() != data:
            target.write_bytes(data)
        assert len(data) < 1024
        decoded = mi.load(data, raw=True)
        assert decoded.shape[:2] in ((4, 5), (3, 4))

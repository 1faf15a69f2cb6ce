"""Masks -> objects, the 0..1000 box grid and COCO RLE, against independent references.

* objects (area, box, centroid, connected components): ``skimage.measure.label`` +
  ``regionprops`` and plain NumPy;
* RLE: ``pycocotools.mask`` (encode -> byte-identical compressed strings, decode,
  area, toBbox, frPyObjects for uncompressed counts);
* grid boxes: exact rational arithmetic (``fractions``) of the rule stated in
  ``csrc/data/mask.c`` (floor of 1000*x_min/W, ceil of 1000*(x_max+1)/W), plus
  hand-worked examples;
* DICOM SEG: a Segmentation object written here with pydicom by the standard's
  rules (1-bit frames, per-frame ReferencedSegmentNumber), decoded by pydicom.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image

from medground import data as md
from medground.errors import DTypeError, FormatError, InvalidArgumentError, ShapeError, UnsupportedError

from conftest import shared_path

pm = pytest.importorskip("pycocotools.mask")
skm = pytest.importorskip("skimage.measure")


def _random_mask(rng, h, w, density=0.3, blobs=True):
    """Random binary mask; ``blobs`` makes connected regions (a smoothed field)."""
    if not blobs:
        return (rng.random((h, w)) < density).astype(np.uint8)
    field = rng.random((h + 4, w + 4))
    smooth = sum(field[dy:dy + h, dx:dx + w] for dy in range(5) for dx in range(5)) / 25
    return (smooth > np.quantile(smooth, 1 - density)).astype(np.uint8)


def _skimage_objects(mask, connectivity):
    """(value, area, (x0, y0, x1, y1), (cx, cy)) per connected component of equal value."""
    comps = skm.label(mask, connectivity=1 if connectivity == 4 else 2, background=0)
    out = []
    for region in skm.regionprops(comps):
        r0, c0, r1, c1 = region.bbox
        value = int(mask[tuple(region.coords[0])])
        cy, cx = region.centroid
        first = int(min(r * mask.shape[1] + c for r, c in region.coords))
        out.append((value, first, int(region.area), (c0, r0, c1 - 1, r1 - 1), (cx, cy)))
    out.sort()
    return [(v, a, b, c) for v, _, a, b, c in out]


def _numpy_objects(mask):
    """One object per distinct non-zero value (label mode), sorted by value."""
    out = []
    for value in np.unique(mask):
        if value == 0:
            continue
        ys, xs = np.nonzero(mask == value)
        out.append((int(value), len(xs), (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())),
                    (float(xs.mean()), float(ys.mean()))))
    return out


def _ours(objects):
    return [(o.label, o.area, o.box, o.centroid) for o in objects]


def _assert_same(ours, ref):
    assert len(ours) == len(ref)
    for a, b in zip(ours, ref):
        assert a[:3] == b[:3]
        assert a[3] == pytest.approx(b[3], abs=1e-9)


# ---------------------------------------------------------------- objects

@pytest.mark.parametrize("connectivity", [4, 8])
@pytest.mark.parametrize("shape,density,blobs", [((37, 53), 0.3, True), ((64, 64), 0.5, False),
                                                 ((1, 40), 0.5, False), ((40, 1), 0.5, False),
                                                 ((90, 70), 0.1, True)])
def test_components_match_skimage(rng, connectivity, shape, density, blobs):
    mask = _random_mask(rng, *shape, density=density, blobs=blobs)
    ours = md.mask_objects(mask, connectivity=connectivity)
    ref = _skimage_objects(mask, connectivity)
    assert len(ref) > 0
    _assert_same(_ours(ours), ref)
    # the order is by first pixel in raster order (scipy.ndimage.label / skimage numbering)
    comps = skm.label(mask, connectivity=1 if connectivity == 4 else 2)
    for index, obj in enumerate(ours, start=1):
        ys, xs = np.nonzero(comps == index)
        assert obj.area == len(xs) and obj.box == (xs.min(), ys.min(), xs.max(), ys.max())


@pytest.mark.parametrize("connectivity", [0, 4, 8])
def test_label_masks(rng, connectivity):
    mask = rng.integers(0, 5, size=(48, 31)).astype(np.uint16)
    mask[rng.random(mask.shape) < 0.4] = 0
    mask[10:20, 5:15] = 700  # a label above 255
    ours = _ours(md.mask_objects(mask, binary=False, connectivity=connectivity))
    ref = _numpy_objects(mask) if connectivity == 0 else _skimage_objects(mask, connectivity)
    _assert_same(ours, ref)
    # binary mode: all non-zero values are one object
    (whole,) = md.mask_objects(mask)
    ys, xs = np.nonzero(mask)
    assert whole.label == 1 and whole.area == len(xs)
    assert whole.box == (xs.min(), ys.min(), xs.max(), ys.max())


def test_dtypes_and_layouts(rng):
    base = rng.integers(0, 3, size=(40, 30))
    base[rng.random(base.shape) < 0.5] = 0
    ref = _numpy_objects(base)
    for array in (base.astype(np.uint8), base.astype(np.uint16), base.astype(np.int32),
                  base.astype(np.int64), base.astype(np.int8), base.astype(np.uint32),
                  np.asfortranarray(base.astype(np.uint8)), base.astype(np.uint8)[:, :, None],
                  np.stack([base.astype(np.uint8)] * 3, -1), np.stack([base.astype(np.uint8), base * 0], -1)):
        _assert_same(_ours(md.mask_objects(array, binary=False)), ref)
    # strided and reversed views are read in place
    big = np.zeros((80, 90), np.uint8)
    big[::2, ::3] = base
    _assert_same(_ours(md.mask_objects(big[::2, ::3], binary=False)), ref)
    # row-strided u8 views (rows read in place) and reversed rows / columns
    wide = np.zeros((70, 90), np.uint8)
    wide[11:51, 17:47] = base
    _assert_same(_ours(md.mask_objects(wide[11:51, 17:47], binary=False)), ref)
    _assert_same(_ours(md.mask_objects(wide[11:51, 17:47][::-1][::-1], binary=False)), ref)
    up = np.ascontiguousarray(base[::-1]).astype(np.uint8)
    _assert_same(_ours(md.mask_objects(up[::-1], binary=False)), ref)
    for conn in (4, 8):
        _assert_same(_ours(md.mask_objects(up[::-1], binary=False, connectivity=conn)),
                     _skimage_objects(base, conn))
    flipped = base[::-1, ::-1].astype(np.int32)
    _assert_same(_ours(md.mask_objects(flipped[::-1, ::-1], binary=False)), ref)
    (obj,) = md.mask_objects(base.astype(bool))
    assert obj.area == int((base != 0).sum())


def test_colour_array_masks():
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[1, 2] = (0, 9, 0)
    rgb[3, 4] = (7, 7, 7)
    with pytest.raises(UnsupportedError, match=r"colour-coded pixel \(x=2, y=1\)"):
        md.mask_objects(rgb, binary=False)
    (obj,) = md.mask_objects(rgb)  # binary: any colour is foreground, as for mask files
    assert obj.area == 2 and obj.box == (2, 1, 4, 3)


def test_bad_masks_raise_typed_errors():
    with pytest.raises(InvalidArgumentError, match="negative label -1"):
        md.mask_objects(np.array([[0, -1]], np.int32), binary=False)
    with pytest.raises(InvalidArgumentError, match="negative label"):
        md.mask_objects(np.array([[0, -5]], np.int64), binary=False)
    with pytest.raises(InvalidArgumentError, match="out of range"):
        md.mask_objects(np.array([[0, 2**40]], np.int64), binary=False)
    with pytest.raises(DTypeError, match="float"):
        md.mask_objects(np.array([[0.0, 0.7]]))
    with pytest.raises(ShapeError):
        md.mask_objects(np.zeros((2, 3, 4, 5), np.uint8))
    with pytest.raises(ShapeError):
        md.mask_objects(np.zeros((0, 5), np.uint8))
    with pytest.raises(ValueError, match="connectivity"):
        md.mask_objects(np.zeros((3, 3), np.uint8), connectivity=6)
    assert md.mask_objects(np.zeros((3, 3), np.uint8)) == []


def test_min_area_and_centroid_by_hand():
    mask = np.zeros((6, 8), np.uint8)
    mask[1, 1] = 1              # 1 pixel at (x=1, y=1)
    mask[2:5, 4:7] = 1          # 3x3 square, centre (5, 3)
    mask[5, 0:3] = 1            # a 3-pixel row, centroid (1, 5)
    objects = md.mask_objects(mask, connectivity=4)
    assert [(o.area, o.box, o.centroid) for o in objects] == [
        (1, (1, 1, 1, 1), (1.0, 1.0)), (9, (4, 2, 6, 4), (5.0, 3.0)), (3, (0, 5, 2, 5), (1.0, 5.0))]
    assert [o.area for o in md.mask_objects(mask, connectivity=4, min_area=3)] == [9, 3]
    # 8-connectivity joins nothing here; 4 vs 8 on a diagonal pair:
    diag = np.eye(3, dtype=np.uint8)
    assert len(md.mask_objects(diag, connectivity=4)) == 3
    assert len(md.mask_objects(diag, connectivity=8)) == 1
    (obj,) = md.mask_objects(mask, connectivity=0)
    assert obj.xywh == (0, 1, 7, 5) and obj.area == 13
    assert obj.normalized == (0.0, 1 / 6, 7 / 8, 1.0)


def test_mask_to_boxes_formats(rng):
    mask = _random_mask(rng, 50, 70, density=0.2)
    pixel = md.mask_to_boxes(mask, connectivity=8)
    xywh = md.mask_to_boxes(mask, connectivity=8, format="xywh")
    norm = md.mask_to_boxes(mask, connectivity=8, format="normalized")
    grid = md.mask_to_boxes(mask, connectivity=8, format="grid")
    comps = skm.label(mask, connectivity=2)
    for i in range(len(pixel)):
        component = np.asfortranarray((comps == i + 1).astype(np.uint8))
        # pycocotools toBbox is the independent reference of the xywh form
        assert tuple(xywh[i]) == tuple(pm.toBbox(pm.encode(component)).astype(int))
        x0, y0, x1, y1 = pixel[i]
        assert tuple(norm[i]) == pytest.approx((x0 / 70, y0 / 50, (x1 + 1) / 70, (y1 + 1) / 50))
        assert tuple(grid[i]) == md.box_to_grid(pixel[i], 70, 50)
    with pytest.raises(ValueError, match="format"):
        md.mask_to_boxes(mask, format="yolo")
    assert md.mask_to_boxes(np.zeros((4, 4), np.uint8)).shape == (0, 4)


# ---------------------------------------------------------------- files

def test_real_png_masks_match_pil():
    root = shared_path("images", "sam-med2d-demo", "masks")
    names = sorted(p.name for p in root.glob("*.png"))
    assert len(names) == 30
    for name in names[:: 3]:
        pixels = np.asarray(Image.open(root / name))
        gray = pixels if pixels.ndim == 2 else pixels[..., 0]
        ours = md.mask_objects(root / name)
        _assert_same(_ours(ours), _numpy_objects((gray > 0).astype(np.uint8)))
        ys, xs = np.nonzero(gray)
        (obj,) = ours
        assert (obj.width, obj.height) == (gray.shape[1], gray.shape[0])
        assert obj.box == (xs.min(), ys.min(), xs.max(), ys.max()) and obj.area == len(xs)
        comps = _skimage_objects((gray > 0).astype(np.uint8), 8)
        _assert_same(_ours(md.mask_objects(root / name, connectivity=8)), comps)
    # hip_left has two instances, one file each
    assert md.mask_objects(root / "s0619_32_hip_left_001.png")[0].area > 0


def test_png_label_and_colour_masks(tmp_path, rng):
    labels = np.zeros((20, 30), np.uint16)
    labels[2:5, 3:9] = 300
    labels[10:18, 20:25] = 7
    Image.fromarray(labels.astype(np.int32), mode="I").convert("I;16").save(tmp_path / "l16.png")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "l16.png")), labels)
    _assert_same(_ours(md.mask_objects(tmp_path / "l16.png", binary=False)), _numpy_objects(labels))
    gray = (labels > 0).astype(np.uint8) * 255
    Image.fromarray(np.stack([gray] * 3, -1)).save(tmp_path / "rgb.png")
    (obj,) = md.mask_objects(tmp_path / "rgb.png")
    assert obj.area == int((labels > 0).sum())
    colour = np.zeros((4, 4, 3), np.uint8)
    colour[1, 2] = (255, 0, 0)
    Image.fromarray(colour).save(tmp_path / "colour.png")
    with pytest.raises(UnsupportedError, match=r"colour-coded pixel \(x=2, y=1\)"):
        md.mask_objects(tmp_path / "colour.png", binary=False)
    (obj,) = md.mask_objects(tmp_path / "colour.png")  # binary: any colour is foreground
    assert obj.box == (2, 1, 2, 1)
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage")
    with pytest.raises(Exception, match="bad.png"):
        md.mask_objects(tmp_path / "bad.png")


# ---------------------------------------------------------------- grid

def _grid_reference(box, width, height):
    """The rule of mask.c in exact rationals: floor the top-left edge, ceil the
    exclusive bottom-right edge (x_max + 1), both scaled by 1000 / size."""
    x0, y0, x1, y1 = box
    return (math.floor(Fraction(1000 * x0, width)), math.floor(Fraction(1000 * y0, height)),
            math.ceil(Fraction(1000 * (x1 + 1), width)), math.ceil(Fraction(1000 * (y1 + 1), height)))


def test_box_to_grid_by_hand():
    # 512 x 512 CT slice, object in columns 289..316, rows 203..230:
    # 1000*289/512 = 564.45 -> 564; 1000*317/512 = 619.14 -> 620; 1000*203/512 = 396.48 -> 396;
    # 1000*231/512 = 451.17 -> 452
    assert md.box_to_grid((289, 203, 316, 230), 512, 512) == (564, 396, 620, 452)
    # the whole image is (0,0),(1000,1000); a single pixel never collapses
    assert md.box_to_grid((0, 0, 1023, 767), 1024, 768) == (0, 0, 1000, 1000)
    assert md.box_to_grid((5, 5, 5, 5), 4000, 4000) == (1, 1, 2, 2)  # 1.25 -> 1, 1.5 -> 2
    assert md.box_to_grid((999, 0, 999, 0), 1000, 1000) == (999, 0, 1000, 1)
    with pytest.raises(InvalidArgumentError, match="not inside"):
        md.box_to_grid((0, 0, 512, 10), 512, 512)
    with pytest.raises(InvalidArgumentError, match="not inside"):
        md.box_to_grid((5, 0, 4, 10), 512, 512)
    with pytest.raises(InvalidArgumentError, match="image size"):
        md.box_to_grid((0, 0, 0, 0), 0, 10)


def test_box_to_grid_matches_exact_rule(rng):
    for _ in range(3000):
        width, height = (int(v) for v in rng.integers(1, 5000, size=2))
        x0, x1 = sorted(int(v) for v in rng.integers(0, width, size=2))
        y0, y1 = sorted(int(v) for v in rng.integers(0, height, size=2))
        grid = md.box_to_grid((x0, y0, x1, y1), width, height)
        assert grid == _grid_reference((x0, y0, x1, y1), width, height)
        assert 0 <= grid[0] < grid[2] <= 1000 and 0 <= grid[1] < grid[3] <= 1000
        # mapped back as Qwen-VL does (g / 1000 * size), the grid box covers the pixels
        px0, py0, px1, py1 = md.grid_to_pixels(grid, width, height)
        assert px0 <= x0 + 1e-9 and py0 <= y0 + 1e-9
        assert px1 >= x1 + 1 - 1e-9 and py1 >= y1 + 1 - 1e-9


# ---------------------------------------------------------------- RLE

def _coco(mask):
    return pm.encode(np.asfortranarray(mask.astype(np.uint8)))


@pytest.mark.parametrize("shape", [(1, 1), (1, 17), (23, 1), (37, 53), (128, 96), (300, 7)])
@pytest.mark.parametrize("density", [0.0, 0.05, 0.5, 1.0])
def test_rle_matches_pycocotools(rng, shape, density):
    mask = _random_mask(rng, *shape, density=density, blobs=False)
    ref = _coco(mask)
    ours = md.rle_encode(mask)
    assert ours["size"] == list(ref["size"])
    assert ours["counts"] == ref["counts"]
    # decoding pycocotools' string (bytes and str)
    assert np.array_equal(md.rle_decode(ref), pm.decode(ref))
    assert np.array_equal(md.rle_decode({"size": ref["size"], "counts": ref["counts"].decode()}),
                          mask)
    assert md.rle_area(ref) == int(pm.area(ref))
    assert md.rle_to_bbox(ref) == tuple(float(v) for v in pm.toBbox(ref))
    # uncompressed counts (COCO iscrowd JSON): pycocotools frPyObjects is the reference
    plain = md.rle_encode(mask, compressed=False)
    assert all(isinstance(c, int) for c in plain["counts"])
    assert pm.frPyObjects(plain, *shape)["counts"] == ref["counts"]
    assert np.array_equal(md.rle_decode(plain), mask)
    # a stack [H, W, N] -> a list, as pycocotools encodes it
    stack = np.stack([mask, 1 - mask], axis=2)
    assert [r["counts"] for r in md.rle_encode(stack)] == [r["counts"] for r in pm.encode(np.asfortranarray(stack))]
    # Fortran-ordered, bool and non-0/1 inputs encode the same
    assert md.rle_encode(np.asfortranarray(mask))["counts"] == ref["counts"]
    assert md.rle_encode(mask.astype(bool))["counts"] == ref["counts"]
    assert md.rle_encode(mask.astype(np.int32) * 200)["counts"] == ref["counts"]


def test_rle_long_runs_and_structured_masks(rng):
    # long runs need multi-group codes and negative deltas
    mask = np.zeros((1000, 1000), np.uint8)
    mask[100:900, 300:301] = 1
    mask[0:3, 999] = 1
    mask[500:, 600:900] = 1
    for m in (mask, mask.T.copy(), np.ones((700, 900), np.uint8), np.zeros((700, 900), np.uint8)):
        ref = _coco(m)
        assert md.rle_encode(m)["counts"] == ref["counts"]
        assert np.array_equal(md.rle_decode(ref), m)
        assert md.rle_to_bbox(ref) == tuple(float(v) for v in pm.toBbox(ref))
    # pycocotools' own strings for runs wrapping through column ends
    wrap = np.zeros((5, 4), np.uint8)
    wrap[3:, 1] = 1
    wrap[:2, 2] = 1
    ref = _coco(wrap)
    assert md.rle_to_bbox(ref) == tuple(float(v) for v in pm.toBbox(ref)) == (1.0, 0.0, 2.0, 5.0)


def test_rle_real_masks():
    root = shared_path("images", "biomedparse-demo", "demo_mask")
    names = sorted(p.name for p in root.glob("*.png"))
    assert len(names) == 71
    for name in names[::5]:
        pixels = np.asarray(Image.open(root / name))
        gray = (pixels if pixels.ndim == 2 else pixels[..., 0]) > 0
        ref = _coco(gray)
        assert md.rle_encode(md.load_mask(root / name))["counts"] == ref["counts"]
        assert np.array_equal(md.rle_decode(ref), gray)
        assert md.rle_area(ref) == int(pm.area(ref))
        assert md.rle_to_bbox(ref) == tuple(float(v) for v in pm.toBbox(ref))


def test_rle_bad_input():
    with pytest.raises(FormatError, match="sum"):
        md.rle_decode({"size": [3, 3], "counts": [4, 4]})
    with pytest.raises(FormatError, match="sum"):
        md.rle_decode({"size": [3, 3], "counts": b"5"})
    with pytest.raises(FormatError, match="invalid character"):
        md.rle_decode({"size": [3, 3], "counts": b"9 "})
    with pytest.raises(FormatError, match="truncated"):
        md.rle_decode({"size": [3, 3], "counts": b"h"})  # 'h' = 56 + 48: continuation bit, then end
    with pytest.raises(InvalidArgumentError, match="uint32"):
        md.rle_decode({"size": [3, 3], "counts": [-1, 10]})
    with pytest.raises(ValueError, match="RLE must be"):
        md.rle_decode({"counts": b"9"})
    with pytest.raises(FormatError, match="NUL"):
        md.rle_decode({"size": [3, 3], "counts": b"9\x00"})


# ---------------------------------------------------------------- DICOM SEG

def _write_seg(path, frames, segment_of_frame, labels):
    """A minimal DICOM Segmentation (binary, 1 bit per pixel, little-endian bit
    order within each byte as PS3.5 8.1.1 prescribes), one segment per frame."""
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.66.4"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "SEG"
    ds.SegmentationType = "BINARY"
    ds.Rows, ds.Columns = frames.shape[1:]
    ds.NumberOfFrames = frames.shape[0]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 1
    ds.HighBit = 0
    ds.PixelRepresentation = 0
    segments = []
    for number, label in labels.items():
        item = Dataset()
        item.SegmentNumber = number
        item.SegmentLabel = label
        segments.append(item)
    ds.SegmentSequence = Sequence(segments)
    per_frame = []
    for number in segment_of_frame:
        ident = Dataset()
        ident.ReferencedSegmentNumber = number
        group = Dataset()
        group.SegmentIdentificationSequence = Sequence([ident])
        per_frame.append(group)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    packed = np.packbits(frames.astype(np.uint8).ravel(), bitorder="little").tobytes()
    ds.PixelData = packed + (b"\x00" if len(packed) % 2 else b"")
    ds.save_as(path, enforce_file_format=True)


def test_dicom_seg(tmp_path, rng):
    frames = (rng.random((3, 10, 12)) < 0.3).astype(np.uint8)
    _write_seg(tmp_path / "seg.dcm", frames, [1, 2, 1], {1: "liver", 2: "spleen"})
    masks = md.dicom_seg_masks(tmp_path / "seg.dcm")
    assert sorted(masks) == ["liver", "spleen"]
    assert np.array_equal(masks["liver"], frames[[0, 2]].astype(bool))
    assert np.array_equal(masks["spleen"], frames[[1]].astype(bool))
    # objects of a segment frame, as for any array mask
    (obj,) = md.mask_objects(masks["spleen"][0])
    assert obj.area == int(frames[1].sum())
    ct = pytest.importorskip("pydicom.data").get_testdata_file("CT_small.dcm")
    with pytest.raises(ValueError, match="not a DICOM Segmentation"):
        md.dicom_seg_masks(ct)


def test_binary_fast_path_wide_rows(rng):
    """Binary one-object masks take a block-wise vectorised path (blocks of
    4096 columns, 8-byte background skipping): blocks and word edges must not
    lose or shift pixels."""
    mask = np.zeros((5, 9001), np.uint8)
    for x in (0, 7, 8, 4095, 4096, 4097, 8191, 8192, 9000):
        mask[x % 5, x] = 200
    mask[3, 100:5000] = 1
    for m in (mask, mask[:, 1:], mask[::-1], (rng.random((17, 4103)) < 0.5).astype(np.uint8)):
        (obj,) = md.mask_objects(m)
        _assert_same([(obj.label, obj.area, obj.box, obj.centroid)], _numpy_objects((m > 0).astype(np.uint8)))
    assert md.mask_objects(mask, min_area=int((mask > 0).sum()) + 1) == []


@pytest.mark.parametrize("connectivity", [4, 8])
def test_component_runs_across_64_pixel_words(rng, connectivity):
    """Binary runs are found 64 pixels at a time: runs that end on, start on,
    or span whole 64-pixel words, and rows whose width is not a multiple of 64."""
    mask = np.zeros((6, 300), np.uint8)
    mask[0, 0:64] = 1        # one whole word
    mask[1, 63:65] = 1       # across a word edge
    mask[2, 64:256] = 9      # three whole words, carried open
    mask[3, 255:300] = 1     # to the row end, in a partial word
    mask[4, 127] = 1
    mask[4, 128] = 1
    mask[5, ::2] = 1
    for m in (mask, (rng.random((9, 333)) < 0.5).astype(np.uint8), _random_mask(rng, 20, 257, 0.4)):
        _assert_same(_ours(md.mask_objects(m, connectivity=connectivity)),
                     _skimage_objects((m > 0).astype(np.uint8), connectivity))


def test_rle_non_canonical_counts():
    """Counts with empty runs (valid COCO JSON, not what encode writes): same
    mask, area and box as pycocotools, except that an all-background RLE with
    a trailing empty run has box (0, 0, 0, 0) here, where pycocotools' toBbox
    wraps around uint32 (2, 3, 4294967296, 4294967295 for a 3x2 mask)."""
    for counts in ([2, 0, 3, 1], [1, 2, 0, 1, 2], [0, 3, 3]):
        ref = pm.frPyObjects({"size": [3, 2], "counts": counts}, 3, 2)
        ours = {"size": [3, 2], "counts": counts}
        assert np.array_equal(md.rle_decode(ours), pm.decode(ref))
        assert md.rle_area(ours) == int(pm.area(ref))
        assert md.rle_to_bbox(ours) == tuple(float(v) for v in pm.toBbox(ref))
    for counts in ([6, 0], [0, 0, 6]):
        assert md.rle_to_bbox({"size": [3, 2], "counts": counts}) == (0.0, 0.0, 0.0, 0.0)
        assert md.rle_area({"size": [3, 2], "counts": counts}) == 0

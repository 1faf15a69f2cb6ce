"""Dataset tools for refer-and-ground data (Med-GRIT-270k / BiRD, MeCoVQA / MedPLIB).

* masks -> objects and boxes, COCO RLE (pycocotools-compatible), DICOM SEG:
  :func:`mask_objects`, :func:`mask_to_boxes`, :func:`rle_encode`, ...
* building records from images + masks with editable templates: :mod:`.build`
* checking record files (streamed, in C) with a JSON report: :func:`check`
* statistics and overlays: :func:`stats`, :class:`Overlay`, :func:`draw_record`

Command line: ``medground data check|build|stats|draw``.
"""

from __future__ import annotations

from .build import (ImageMeta, ObjectMeta, build_records, parse_name, scan_biomedparse,
                    scan_sam_med2d, write_records)
from .check import CheckReport, Finding, check, check_records, format_stats, stats
from .draw import Overlay, draw_record
from .masks import (MaskObject, box_to_grid, dicom_seg_masks, grid_to_pixels, load_mask,
                    mask_objects, mask_to_boxes, rle_area, rle_decode, rle_encode, rle_to_bbox)

__all__ = [
    "CheckReport", "Finding", "ImageMeta", "MaskObject", "ObjectMeta", "Overlay",
    "box_to_grid", "build_records", "check", "check_records", "dicom_seg_masks", "draw_record",
    "format_stats", "grid_to_pixels", "load_mask", "mask_objects", "mask_to_boxes",
    "parse_name", "rle_area", "rle_decode", "rle_encode", "rle_to_bbox", "scan_biomedparse",
    "scan_sam_med2d", "stats", "write_records",
]

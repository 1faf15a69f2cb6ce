"""Build refer-and-ground records from images + masks.

Step (i) of the papers' construction: meta information per image (modality,
scanned region, orientation, objects with boxes) from file names, a mapping
table (``templates/datasets.json``) or arguments. Step (ii): records from
editable templates (``templates/*.json``) with a seeded RNG:

* ``VG``  (grounding, phrase -> box), Med-GRIT conversation pairs
  ``[[user, assistant]]`` with ``<ref>label</ref><box>(x1,y1),(x2,y2)</box>``;
* ``ROC`` (referring classification, box -> class), Med-GRIT pairs;
* ``SEG`` (MeCoVQA-G pixel grounding, phrase -> mask), LLaVA dicts with
  ``<SEG>`` and ``<mask>path</mask>``.

Any text generator can rewrite the templated text through ``text_generator``.
Mask pixels are read in C (``mg_mask_objects_file``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import random
import re
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

from .. import _C
from .masks import box_to_grid, mask_objects

TEMPLATE_DIR = pathlib.Path(__file__).resolve().parent / "templates"
TASKS = ("VG", "ROC", "SEG")


@dataclasses.dataclass
class ObjectMeta:
    """One annotated object: a label with one or more instance masks."""

    label: str
    masks: list[str]  # mask paths relative to the data root, one per instance
    pixel_boxes: list[tuple[int, int, int, int]]  # inclusive, one per instance
    grid_boxes: list[tuple[int, int, int, int]]
    areas: list[int]


@dataclasses.dataclass
class ImageMeta:
    """Meta information of one image (the papers' step (i))."""

    image: str  # path relative to the data root
    stem: str
    width: int
    height: int
    modality: str = ""
    dataset: str = ""
    region: str = ""
    orientation: str = ""  # SA-Med2D slice axis "x"/"y"/"z", or "2d"
    case: str = ""
    split: Optional[str] = None
    objects: list[ObjectMeta] = dataclasses.field(default_factory=list)


def load_json_template(name: str, directory: Optional[os.PathLike] = None) -> dict[str, Any]:
    """A template/table file from ``templates/`` (or ``directory``)."""
    path = pathlib.Path(directory or TEMPLATE_DIR) / name
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    return data


# --------------------------------------------------------------- names -> meta

_EXTENSION = re.compile(r"\.(?=[A-Za-z0-9]{0,4}[A-Za-z])[A-Za-z0-9]{1,5}$")


def image_stem(name: str) -> str:
    """File name without folder and extension. Only a real extension (1-5
    letters/digits, at least one letter) is dropped: SA-Med2D case names hold
    DICOM UIDs with dots (``ct_00--CTSpine1K_Full--1.3.6.1.4.1.9328.50.4.0115--x_0352``)."""
    base = pathlib.PurePath(name).name
    return _EXTENSION.sub("", base) if not base.startswith(".") else base


def parse_name(image_name: str, table: Optional[dict[str, Any]] = None) -> dict[str, str]:
    """Meta fields derivable from an image file name.

    SA-Med2D: ``<modality>_<nn>--<dataset>--<case>--<axis>_<slice>`` (e.g.
    ``ct_00--AbdomenCT1K--Case_00220--x_0359``; ``x_ray--...`` is X-ray, ``2d_none``
    a 2-D image; the region comes from the table's ``dataset_regions``).
    biomedparse: ``<nn>_<modality>_<region>``. Otherwise the ``datasets``
    patterns of the table decide. Unknown fields stay "".
    """
    table = table or load_json_template("datasets.json")
    modalities = {k.lower(): v for k, v in table.get("modalities", {}).items()}
    stem = image_stem(image_name)
    meta = {"modality": "", "dataset": "", "region": "", "orientation": "",
            "case": _C.data_case_id(pathlib.PurePath(image_name).name)}
    parts = stem.split("--")
    if len(parts) >= 4:
        raw = "x_ray" if parts[0].startswith("x_ray") else parts[0].rsplit("_", 1)[0]
        meta["modality"] = modalities.get(raw.lower(), _C.data_modality(stem))
        meta["dataset"] = parts[1]
        meta["region"] = table.get("dataset_regions", {}).get(parts[1], "")
        axis = parts[3].split("_", 1)[0]
        meta["orientation"] = "2d" if axis == "2d" else axis
        return meta
    match = re.fullmatch(r"\d+_([^_]+)_(.+)", stem)
    if match and match.group(1).lower() in modalities:
        meta["modality"] = modalities[match.group(1).lower()]
        meta["region"] = match.group(2).replace("_", " ")
        meta["dataset"] = "BiomedParse"
        meta["orientation"] = "2d"
        return meta
    for entry in table.get("datasets", []):
        if re.search(entry["pattern"], stem):
            for key in ("modality", "dataset", "region", "orientation"):
                if key in entry:
                    meta[key] = entry[key]
            break
    return meta


def _object_from_masks(root: pathlib.Path, label: str, mask_paths: Sequence[str],
                       width: int, height: int) -> Optional[ObjectMeta]:
    pixel_boxes, grid_boxes, areas, kept = [], [], [], []
    for rel in sorted(mask_paths):
        objects = mask_objects(root / rel)  # binary: one object per mask file
        if not objects:
            continue  # empty mask: nothing to ground
        (obj,) = objects
        if (obj.width, obj.height) != (width, height):
            raise ValueError(f"mask {rel} is {obj.width}x{obj.height} but its image is "
                             f"{width}x{height}")
        kept.append(rel)
        pixel_boxes.append(obj.box)
        grid_boxes.append(obj.grid)
        areas.append(obj.area)
    if not kept:
        return None
    return ObjectMeta(label, kept, pixel_boxes, grid_boxes, areas)


def _image_size(path: pathlib.Path) -> tuple[int, int]:
    info = _C.image_info(os.fspath(path))
    return int(info[0]), int(info[1])


def scan_sam_med2d(root: os.PathLike, *, table: Optional[dict[str, Any]] = None,
                   meta_overrides: Optional[dict[str, str]] = None) -> list[ImageMeta]:
    """Images and objects of an SA-Med2D folder: ``images/``, ``masks/`` named
    ``<image>_<label>_<instance:03d>.png``, and the ``image2label_train.json``
    (image -> masks, split "train") / ``label2image_test.json`` (mask -> image,
    split "test") tables. Paths inside the tables may carry a leading folder
    (``data_demo/``); they are taken relative to ``root`` by their last two parts."""
    root = pathlib.Path(root)
    # (image, split) -> masks: an image listed in both tables yields one meta
    # per split, so that the records show (and the checker reports) the leak
    groups: dict[tuple[str, str], list[str]] = {}

    def local(path: str) -> str:
        return "/".join(pathlib.PurePosixPath(path).parts[-2:])

    train = root / "image2label_train.json"
    if train.exists():
        for image, masks in json.loads(train.read_text()).items():
            groups.setdefault((local(image), "train"), []).extend(local(m) for m in masks)
    test = root / "label2image_test.json"
    if test.exists():
        for mask, image in json.loads(test.read_text()).items():
            groups.setdefault((local(image), "test"), []).append(local(mask))
    if not groups:  # no tables: pair masks with images by name
        masks = sorted(p.name for p in (root / "masks").glob("*.png"))
        for image in sorted((root / "images").glob("*.png")):
            mine = [f"masks/{m}" for m in masks
                    if re.fullmatch(re.escape(image.stem) + r"_.+_\d{3}\.png", m)]
            groups[(f"images/{image.name}", "")] = mine
    metas = []
    for image_rel, split_name in sorted(groups):
        mask_rels = groups[(image_rel, split_name)]
        split = split_name or None
        if not (root / image_rel).exists():
            raise FileNotFoundError(f"{root / image_rel}: image listed in the SA-Med2D tables "
                                    "does not exist")
        width, height = _image_size(root / image_rel)
        stem = image_stem(image_rel)
        meta = ImageMeta(image_rel, stem, width, height, split=split,
                         **parse_name(stem, table))
        by_label: dict[str, list[str]] = {}
        for rel in mask_rels:
            name = image_stem(rel)
            match = re.fullmatch(re.escape(stem) + r"_(.+)_(\d{3})", name)
            if not match:
                raise ValueError(f"mask {rel} is not named {stem}_<label>_<instance>.png")
            by_label.setdefault(match.group(1).replace("_", " "), []).append(rel)
        for label in sorted(by_label):
            obj = _object_from_masks(root, label, by_label[label], width, height)
            if obj:
                meta.objects.append(obj)
        for key, value in (meta_overrides or {}).items():
            setattr(meta, key, value)
        metas.append(meta)
    return metas


def scan_biomedparse(root: os.PathLike, *, images: str = "demo", masks: str = "demo_mask",
                     table: Optional[dict[str, Any]] = None,
                     meta_overrides: Optional[dict[str, str]] = None) -> list[ImageMeta]:
    """Images and objects of a BiomedParse-style folder: ``<images>/<stem>.png``
    and ``<masks>/<stem>_<target with + for spaces>.png``."""
    root = pathlib.Path(root)
    image_paths = sorted((root / images).glob("*.png"))
    stems = [p.stem for p in image_paths]
    owned: dict[str, list[tuple[str, str]]] = {}
    for mask in sorted((root / masks).glob("*.png")):
        # the longest image stem that prefixes the mask name owns it
        owners = [s for s in stems if mask.name.startswith(s + "_")]
        if not owners:
            continue
        stem = max(owners, key=len)
        label = mask.stem[len(stem) + 1:].replace("+", " ")
        owned.setdefault(stem, []).append((label, f"{masks}/{mask.name}"))
    metas = []
    for image in image_paths:
        width, height = _image_size(image)
        meta = ImageMeta(f"{images}/{image.name}", image.stem, width, height,
                         **parse_name(image.stem, table))
        for label, rel in owned.get(image.stem, []):
            obj = _object_from_masks(root, label, [rel], width, height)
            if obj:
                meta.objects.append(obj)
        for key, value in (meta_overrides or {}).items():
            setattr(meta, key, value)
        metas.append(meta)
    return metas


# --------------------------------------------------------------- records

TextGenerator = Callable[[str, ImageMeta, ObjectMeta, str, str], Optional[tuple[str, str]]]


def _box_text(box: Sequence[int]) -> str:
    return "<box>({},{}),({},{})</box>".format(*box)


def build_records(metas: Iterable[ImageMeta], *, tasks: Sequence[str] = TASKS, seed: int = 0,
                  template_dir: Optional[os.PathLike] = None,
                  text_generator: Optional[TextGenerator] = None,
                  image_prefix: str = "") -> Iterator[dict[str, Any]]:
    """Records for every (image, object, task). Deterministic for a given seed
    and input order. ``text_generator(task, image, object, question, answer)``
    may return a replacement ``(question, answer)`` (or None to keep); a
    generator that drops the required tags produces records the checker flags.
    ``image_prefix`` is prepended to image paths inside ``<img>`` tags."""
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; choose from {list(TASKS)}")
    templates = {
        "VG": load_json_template("grounding.json", template_dir),
        "ROC": load_json_template("referring.json", template_dir),
        "SEG": load_json_template("segmentation.json", template_dir),
    }
    for name, template in templates.items():
        if not template.get("questions") or not template.get("answers"):
            raise ValueError(f"template for {name} needs non-empty 'questions' and 'answers'")
    rng = random.Random(seed)
    for meta in metas:
        base = {"modality": meta.modality, "split": meta.split} if meta.split else {
            "modality": meta.modality}
        for obj in meta.objects:
            for task in tasks:
                template = templates[task]
                question = rng.choice(template["questions"])
                answer = rng.choice(template["answers"])
                instances = range(len(obj.grid_boxes)) if task == "ROC" else [None]
                for instance in instances:
                    if task == "VG":
                        span = f"<ref>{obj.label}</ref>" + "".join(_box_text(b) for b in obj.grid_boxes)
                        q = question.format(label=obj.label)
                        a = answer.format(label=obj.label, answer=span)
                    elif task == "ROC":
                        q = question.format(box=_box_text(obj.grid_boxes[instance]))
                        a = answer.format(label=obj.label)
                    else:
                        q = question.format(label=obj.label)
                        a = answer.format(label=obj.label, mask=obj.masks[0])
                    if text_generator is not None:
                        replaced = text_generator(task, meta, obj, q, a)
                        if replaced is not None:
                            q, a = replaced
                    if task == "SEG":
                        record = {"id": f"{meta.stem}--{obj.label}--seg", "image": meta.image,
                                  "conversations": [{"from": "human", "value": "<image>\n" + q},
                                                    {"from": "gpt", "value": a}]}
                    else:
                        img = f"Picture 1:<img>{image_prefix}{meta.image}</img>\n"
                        record = {"id": meta.stem, "image": meta.image,
                                  "conversations": [[img + q, a]]}
                    record.update(task=task, width=meta.width, height=meta.height, **base)
                    yield record


def write_records(records: Iterable[dict[str, Any]], path: os.PathLike) -> int:
    """Writes a JSON list (``.json``) or JSON Lines (``.jsonl``); returns the count."""
    path = pathlib.Path(path)
    count = 0
    with open(path, "w", encoding="utf-8") as handle:
        if path.suffix == ".jsonl":
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                count += 1
        else:
            handle.write("[\n")
            for record in records:
                handle.write((",\n" if count else "") + json.dumps(record, ensure_ascii=False))
                count += 1
            handle.write("\n]\n")
    return count

"""Options and output shared by the model commands."""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any, Sequence


def add_model_arguments(parser: argparse.ArgumentParser, image: bool = True) -> None:
    parser.add_argument("--model", required=True, help="checkpoint folder, file or GGUF (any family)")
    if image:
        parser.add_argument("image", help="image file (PNG/JPEG/BMP/PGM/PPM or DICOM)")
    parser.add_argument("--window", help="DICOM/16-bit window: lung, abdomen, brain, bone, mediastinum, "
                                         "dicom, minmax or CENTER,WIDTH")
    parser.add_argument("--dtype", help="re-encode weights at load: f32, bf16, f16, q8_0, q4_0")
    parser.add_argument("--threads", type=int, help="CPU threads (default: all cores)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--max-new-tokens", type=int, default=None, help="generation length limit")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def numbers(text: str, count: int, what: str) -> list[float]:
    """'x1,y1,x2,y2' -> floats, with a usage error naming the option."""
    try:
        values = [float(v) for v in text.replace(" ", "").split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what} {text!r}: expected {count} comma-separated numbers") from None
    if len(values) != count:
        raise argparse.ArgumentTypeError(f"{what} {text!r}: expected {count} numbers, got {len(values)}")
    return values


def box_argument(text: str) -> list[float]:
    return numbers(text, 4, "box")


def point_argument(text: str) -> list[float]:
    return numbers(text, 2, "point")


def window_value(text: str | None) -> Any:
    if text is None or "," not in text:
        return text
    return tuple(numbers(text, 2, "window"))


def open_model(args: argparse.Namespace) -> Any:
    from ..api import load

    return load(args.model, device=args.device, dtype=args.dtype, threads=args.threads)


def load_image(args: argparse.Namespace) -> Any:
    from ..image import load

    return load(args.image, window_value(args.window))


def generation(args: argparse.Namespace) -> dict:
    return {} if args.max_new_tokens is None else {"max_new_tokens": args.max_new_tokens}


def jsonable(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def emit(args: argparse.Namespace, result: Any, lines: Sequence[str]) -> None:
    if args.json:
        print(json.dumps(jsonable(result), ensure_ascii=False))
    else:
        for line in lines:
            print(line)

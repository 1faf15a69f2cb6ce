"""``medground segment --model M IMAGE (PHRASE | --box ... | --point ...) -o MASK.png``.

MedPLIB segments a phrase; SAM-Med2D segments a box and/or points."""

from __future__ import annotations

import argparse

import numpy as np

from ._common import add_model_arguments, box_argument, emit, generation, load_image, open_model, point_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("phrase", nargs="?", help="what to segment (MedPLIB)")
    parser.add_argument("--box", type=box_argument, help="x1,y1,x2,y2 prompt in image pixels (SAM-Med2D)")
    parser.add_argument("--point", type=point_argument, action="append", default=[],
                        help="x,y foreground point (SAM-Med2D; repeat for more)")
    parser.add_argument("-o", "--output", help="write the mask as a 0/255 PNG here")


def run(args: argparse.Namespace) -> int:
    from PIL import Image

    from ..errors import InvalidArgumentError, UnsupportedError

    model = open_model(args)
    image = load_image(args)
    if hasattr(model, "segment"):
        if not args.phrase:
            raise InvalidArgumentError("segment with this model needs a PHRASE")
        result = model.segment(image, args.phrase, **generation(args))
        mask, score = np.asarray(result.array if hasattr(result, "array") else result[0]), \
            float(getattr(result, "score", 0.0))
    elif hasattr(model, "set_image") and hasattr(model, "predict"):
        if args.box is None and not args.point:
            raise InvalidArgumentError("SAM-Med2D needs --box and/or --point prompts")
        model.set_image(image)
        points = np.array(args.point, dtype=np.float64) if args.point else None
        labels = np.ones(len(args.point), dtype=np.int32) if args.point else None
        masks, scores, _ = model.predict(points=points, labels=labels, box=args.box)
        mask, score = masks[0], float(scores[0])
    else:
        raise UnsupportedError(f"{args.model}: a {type(model).__name__} model does not segment")
    mask = (np.asarray(mask) > 0).astype(np.uint8) * 255
    if args.output:
        Image.fromarray(mask).save(args.output)
    area = int((mask > 0).sum())
    summary = {"score": score, "area": area, "height": int(mask.shape[0]), "width": int(mask.shape[1]),
               "output": args.output}
    emit(args, summary, [f"mask {mask.shape[1]}x{mask.shape[0]}: {area} pixels, score {score:.3f}"
                         + (f" -> {args.output}" if args.output else "")])
    return 0

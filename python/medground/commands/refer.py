"""``medground refer --model M IMAGE --box x1,y1,x2,y2``: what is in a region."""

from __future__ import annotations

import argparse

from ._common import add_model_arguments, box_argument, emit, generation, load_image, open_model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--box", type=box_argument, required=True, help="x1,y1,x2,y2 in image pixels")
    parser.add_argument("--caption", action="store_true",
                        help="a sentence about the region (referring captioning) instead of its class")


def run(args: argparse.Namespace) -> int:
    from ..errors import UnsupportedError

    model = open_model(args)
    if not hasattr(model, "refer"):
        raise UnsupportedError(f"{args.model}: a {type(model).__name__} model does not answer about regions")
    options = generation(args)
    if args.caption:
        options["task"] = "caption"
    answer = model.refer(load_image(args), args.box, **options)
    emit(args, {"box": args.box, "answer": answer}, [answer])
    return 0

"""``medground ground --model M IMAGE PHRASE``: boxes (image pixels) for a phrase (BiRD)."""

from __future__ import annotations

import argparse

from ._common import add_model_arguments, emit, generation, load_image, open_model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("phrase", help="what to find, e.g. 'the liver'")


def run(args: argparse.Namespace) -> int:
    from ..errors import UnsupportedError

    model = open_model(args)
    if not hasattr(model, "ground"):
        raise UnsupportedError(f"{args.model}: a {type(model).__name__} model does not ground phrases to boxes "
                               "(use segment)")
    boxes = model.ground(load_image(args), args.phrase, **generation(args))
    lines = [f"{b.label or args.phrase}: ({b.x1:.1f}, {b.y1:.1f}), ({b.x2:.1f}, {b.y2:.1f})" for b in boxes]
    emit(args, boxes, lines or [f"no box for {args.phrase!r} in the answer"])
    return 0

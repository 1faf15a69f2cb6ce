"""``medground chat --model M IMAGE TEXT``: a free-form answer about an image."""

from __future__ import annotations

import argparse

from ._common import add_model_arguments, emit, generation, load_image, open_model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("text", help="the question")


def run(args: argparse.Namespace) -> int:
    from ..errors import UnsupportedError

    model = open_model(args)
    if not hasattr(model, "chat"):
        raise UnsupportedError(f"{args.model}: a {type(model).__name__} model does not chat")
    answer = model.chat(load_image(args), args.text, **generation(args))
    emit(args, {"question": args.text, "answer": answer}, [answer])
    return 0

"""The ``medground`` command line.

Each sub-command lives in the module that implements it and registers itself
here through ``COMMANDS``: name -> (module, help). A module provides
``add_arguments(parser)`` and ``run(args) -> int``. Errors print as one line
(no traceback unless --debug) and map to exit codes:

    0 success, 1 the job found problems (e.g. data check errors),
    2 usage error, 3 input error (bad file / format), 4 internal error.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from . import __version__
from .errors import InternalError, MedgroundError

# name -> (module path, one-line help). Modules are imported only when used.
COMMANDS: dict[str, tuple[str, str]] = {
    "predict": ("medground.predict", "run a model over test records (one process, workers, or Dask)"),
    "convert": ("medground.checkpoint.commands.convert", "convert a checkpoint (safetensors, .bin, .pth, .pdparams, GGUF) to one GGUF"),
    "inspect": ("medground.checkpoint.commands.inspect", "list a checkpoint's tensors, dtypes, shapes and metadata"),
    "data": ("medground.data.cli", "dataset tools: check, build, stats and draw refer-and-ground records"),
    "evaluate": ("medground.eval.cli", "score a prediction file as the papers do (VG, ROC, captioning, VQA, masks)"),
    "demo": ("medground.demo", "the main job end to end on real images: build, check, draw, evaluate"),
    "ground": ("medground.commands.ground", "boxes for a phrase in an image (BiRD)"),
    "refer": ("medground.commands.refer", "what is in a box of an image (BiRD; --caption for a sentence)"),
    "segment": ("medground.commands.segment", "a mask for a phrase (MedPLIB) or a box/points (SAM-Med2D)"),
    "chat": ("medground.commands.chat", "a free-form answer about an image"),
    "bench": ("medground.commands.bench", "this machine's bandwidth and compute, and medground's kernels against them"),
}

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_INPUT = 3
EXIT_INTERNAL = 4


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medground",
        description="Biomedical refer-and-ground models (BiRD, MedPLIB): run, evaluate, check data.",
    )
    parser.add_argument("--version", action="version", version=f"medground {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_path, help_text) in COMMANDS.items():
        module = importlib.import_module(module_path)
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        command_parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
        module.add_arguments(command_parser)
        command_parser.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args._module.run(args) or 0)
    except KeyboardInterrupt:
        print("medground: interrupted", file=sys.stderr)
        return 130
    except (InternalError,) as error:
        if args.debug:
            traceback.print_exc()
        print(f"medground {args.command}: internal error: {error}", file=sys.stderr)
        return EXIT_INTERNAL
    except (MedgroundError, OSError, ValueError, KeyError) as error:
        if args.debug:
            traceback.print_exc()
        print(f"medground {args.command}: error: {error}", file=sys.stderr)
        return EXIT_INPUT
    except Exception as error:  # noqa: BLE001 - last resort: one line, then exit code 4
        if args.debug:
            traceback.print_exc()
        print(f"medground {args.command}: internal error: {type(error).__name__}: {error}",
              file=sys.stderr)
        return EXIT_INTERNAL

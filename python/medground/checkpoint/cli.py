"""`medground convert` and `medground inspect` (registered in medground.cli)."""

from __future__ import annotations

import argparse
import json
import sys

from .convert import TARGET_TYPES


class _Convert:
    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("src", help="checkpoint: HF folder, .safetensors, .bin/.pth, .pdparams, or .gguf")
        parser.add_argument("out", help="output .gguf file")
        parser.add_argument("--type", default="f16", choices=TARGET_TYPES,
                            help="storage type of the weight matrices (default f16); norms, biases and "
                                 "small tensors stay f32/f16")
        parser.add_argument("--arch", choices=("bird", "medplib", "sam_med2d", "generic"), default=None,
                            help="architecture written to general.architecture (default: detected)")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from .convert import convert

        summary = convert(args.src, args.out, type=args.type, arch=args.arch,
                          progress=False if args.no_progress else "always")
        print(summary)
        return 0


class _Inspect:
    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("path", help="checkpoint: HF folder, .safetensors, .bin/.pth, .pdparams, or .gguf")
        parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
        parser.add_argument("--all", action="store_true", help="list every tensor (default: first 50)")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from .inspect import inspect

        info = inspect(args.path)
        if args.json:
            json.dump(info.to_dict(), sys.stdout, indent=1)
            sys.stdout.write("\n")
        else:
            print(info.format_table(None if args.all else 50))
        return 0

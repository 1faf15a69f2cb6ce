"""Shared by tests/test_predict.py and its worker processes (imported by
module path, so Dask / process-pool workers can unpickle what lives here)."""

from __future__ import annotations

import base64
import os
import pathlib

MERGES = [b"th", b"he", b"in", b"er", b"an", b"re", b"on", b"at", b"en", b"nd", b"ti", b"es", b"or",
          b"te", b"of", b"ed", b"is", b"it", b"al", b"ar", b"st", b"to", b"nt", b"ng", b"se", b"ha",
          b"as", b"ou", b"io", b"le"]


def write_tiny_tiktoken(path: pathlib.Path) -> None:
    """A qwen.tiktoken of 286 ranks (256 bytes + 30 merges): Qwen-VL's special
    tokens then start at 286, where the tiny test checkpoint has them."""
    lines = [base64.b64encode(bytes([b])).decode() + f" {b}" for b in range(256)]
    lines += [base64.b64encode(m).decode() + f" {256 + i}" for i, m in enumerate(MERGES)]
    path.write_text("\n".join(lines) + "\n")


class DieOnce:
    """A model whose process exits (as a killed worker would) the first time
    it sees an image named ``die*``; ``marker`` records that it happened."""

    def __init__(self, path: str, marker: str):
        import medground

        self.model = medground.load(path, threads=1)
        self.marker = marker

    def chat(self, image, question, **generation):
        if os.path.basename(str(image)).startswith("die") and not os.path.exists(self.marker):
            pathlib.Path(self.marker).write_text(str(os.getpid()))
            os._exit(17)
        return self.model.chat(image, question, **generation)


def die_once_factory(path: str, marker: str):
    return DieOnce(path, marker)

"""`medground convert SRC OUT.gguf [--type q8_0]`."""

from ..cli import _Convert

add_arguments = _Convert.add_arguments
run = _Convert.run

"""`medground inspect PATH [--json]`."""

from ..cli import _Inspect

add_arguments = _Inspect.add_arguments
run = _Inspect.run

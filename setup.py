"""Build of medground's C extension for `pip install .`.

Developers use `make build` (incremental, in place); this file compiles the
same sources into `medground._C` for wheels. The C libraries come from Debian:
libdnnl-dev libopenblas-dev libcjson-dev libstb-dev libpcre2-dev libstemmer-dev.
"""

import glob
import os
import re

import numpy
from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def read_version() -> str:
    text = open(os.path.join(HERE, "python", "medground", "_version.py"), encoding="utf-8").read()
    return re.search(r'__version__ = "([^"]+)"', text).group(1)


sources = sorted(
    os.path.relpath(path, HERE)
    for path in glob.glob(os.path.join(HERE, "csrc", "**", "*.c"), recursive=True)
)

extension = Extension(
    "medground._C",
    sources=sources,
    include_dirs=["include", "csrc", "/usr/include/stb", numpy.get_include()],
    libraries=["dnnl", "openblas", "cjson", "pcre2-8", "stemmer", "stb", "m", "pthread"],
    define_macros=[("_GNU_SOURCE", None)],
    extra_compile_args=["-std=c11", "-O3", "-pthread", "-Wno-unused-parameter"],
)

setup(
    version=read_version(),
    ext_modules=[extension],
)

"""Docs cannot rot: the C API reference matches the header, and every public C function is in it."""

from __future__ import annotations

import importlib.util
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _generator():
    spec = importlib.util.spec_from_file_location("gen_c_api", ROOT / "docs" / "gen_c_api.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_c_api_reference_is_current():
    generated = _generator().generate()
    committed = (ROOT / "docs" / "c_api.md").read_text(encoding="utf-8")
    assert generated == committed, "docs/c_api.md is stale: run .venv/bin/python docs/gen_c_api.py"


def test_every_public_function_is_documented():
    header = (ROOT / "include" / "medground.h").read_text(encoding="utf-8")
    names = set(re.findall(r"\b(mg_\w+)\s*\(", header))
    reference = (ROOT / "docs" / "c_api.md").read_text(encoding="utf-8")
    missing = sorted(n for n in names if n not in reference)
    assert not missing, f"not in docs/c_api.md: {missing}"
    assert len(names) > 30


def _python_generator():
    spec = importlib.util.spec_from_file_location("gen_python_api", ROOT / "docs" / "gen_python_api.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_python_api_reference_is_current():
    generated = _python_generator().generate()
    committed = (ROOT / "docs" / "python_api.md").read_text(encoding="utf-8")
    assert generated == committed, "docs/python_api.md is stale: run PYTHONPATH=python .venv/bin/python docs/gen_python_api.py"


def test_every_public_python_name_has_a_docstring():
    undocumented = [f"{module}.{name}" for module, name, obj in _python_generator().public_items()
                    if callable(obj) and not (obj.__doc__ or "").strip()]
    assert not undocumented, f"public names without a docstring: {undocumented}"


def test_type_stub_of_the_extension_is_current():
    from medground import gen_stub

    assert gen_stub.STUB.read_text(encoding="utf-8") == gen_stub.generate(), \
        "python/medground/_C.pyi is stale: run PYTHONPATH=python .venv/bin/python -m medground.gen_stub"

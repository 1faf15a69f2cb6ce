"""Generate docs/python_api.md from the docstrings and signatures of the public
Python API (``medground.__all__`` and the documented submodules).

Run: PYTHONPATH=python .venv/bin/python docs/gen_python_api.py  (tests/test_docs.py
checks the committed file is current and that every public name has a docstring).
"""

from __future__ import annotations

import importlib
import inspect
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "docs" / "python_api.md"
SUBMODULES = ["medground.image", "medground.data", "medground.eval"]


def _signature(obj) -> str:
    try:
        return str(inspect.signature(obj))
    except (TypeError, ValueError):
        return "(...)"


def _doc(obj) -> str:
    return inspect.cleandoc(obj.__doc__ or "").strip()


def _entry(name: str, obj) -> list[str]:
    out: list[str] = []
    if inspect.isclass(obj):
        if issubclass(obj, BaseException):
            out += [f"### exception `{name}`", "", _doc(obj) or "(no docstring)", ""]
            return out
        out += [f"### class `{name}{_signature(obj)}`", "", _doc(obj) or "(no docstring)", ""]
        for member_name, member in sorted(vars(obj).items()):
            if member_name.startswith("_"):
                continue
            if isinstance(member, property):
                doc = _doc(member)
                out += [f"- `{name}.{member_name}` (property){': ' + doc.splitlines()[0] if doc else ''}"]
            elif inspect.isfunction(member):
                doc = _doc(member)
                first = doc.split("\n\n")[0].replace("\n", " ") if doc else ""
                out += [f"- `{name}.{member_name}{_signature(member)}`{': ' + first if first else ''}"]
        out.append("")
        return out
    if callable(obj):
        out += [f"### `{name}{_signature(obj)}`", "", _doc(obj) or "(no docstring)", ""]
    return out


def public_items():
    medground = importlib.import_module("medground")
    items = [("medground", name, getattr(medground, name)) for name in medground.__all__
             if not name.startswith("__")]
    for module_name in SUBMODULES:
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", []):
            items.append((module_name, name, getattr(module, name)))
    return items


def generate() -> str:
    out = ["# Python API reference", "",
           "Generated from the docstrings by `docs/gen_python_api.py`; the code is the source of truth.",
           "Errors are `medground.MedgroundError` subclasses carrying the C library's message.", ""]
    current = None
    for module_name, name, obj in public_items():
        if module_name != current:
            current = module_name
            out += [f"## `{module_name}`", ""]
            module = importlib.import_module(module_name)
            if module_name != "medground" and _doc(module):
                out += [_doc(module), ""]
        out += _entry(f"{module_name}.{name}" if module_name != "medground" else f"medground.{name}", obj)
    return "\n".join(out).rstrip() + "\n"


def main() -> int:
    OUTPUT.write_text(generate(), encoding="utf-8")
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "python"))
    sys.exit(main())

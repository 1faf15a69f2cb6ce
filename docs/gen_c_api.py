"""Generate docs/c_api.md from the comments of include/medground.h.

Run: .venv/bin/python docs/gen_c_api.py  (tests/test_docs.py checks the
committed file is current, so the reference cannot drift from the header).
"""

from __future__ import annotations

import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
HEADER = ROOT / "include" / "medground.h"
OUTPUT = ROOT / "docs" / "c_api.md"

SECTION = re.compile(r"/\* == (.+?)\s*== \*/")
DECL = re.compile(r"^(?:typedef\s+)?[A-Za-z_][\w\s\*]*?\b(mg_\w+)\s*\(", re.M)


def generate() -> str:
    text = HEADER.read_text(encoding="utf-8")
    lines = text.splitlines()
    out = ["# C API reference", "",
           "Generated from `include/medground.h` by `docs/gen_c_api.py`; the header is the source of truth.",
           "Every fallible function returns `mg_status` (`MG_OK` = 0); `mg_last_error()` gives the",
           "calling thread's message. Ownership is stated per function.", ""]
    comment: list[str] = []
    in_comment = False
    pending_decl: list[str] = []
    for raw in lines:
        line = raw.rstrip()
        section = SECTION.search(line)
        if section:
            out += ["", f"## {section.group(1).strip()}", ""]
            comment = []
            continue
        if line.startswith("/* ===") or line.startswith("/* ====="):
            continue
        stripped = line.strip()
        if stripped.startswith("/*") and not in_comment:
            in_comment = not stripped.endswith("*/")
            body = stripped[2:].rstrip("*/").strip()
            comment = [body] if body else []
            continue
        if in_comment:
            if stripped.endswith("*/"):
                in_comment = False
                stripped = stripped[:-2]
            comment.append(stripped.lstrip("*").strip())
            continue
        if not stripped or stripped.startswith("#"):
            if not stripped:
                comment = comment if pending_decl else comment
            continue
        pending_decl.append(stripped)
        joined = " ".join(pending_decl)
        if joined.endswith(";") or joined.endswith("{"):
            match = DECL.search(joined)
            if match or joined.startswith("typedef") or joined.startswith("struct"):
                out.append("```c")
                out.append(joined.rstrip("{").strip() if joined.endswith("{") else joined)
                out.append("```")
                if comment:
                    out.append(" ".join(c for c in comment if c))
                out.append("")
            comment = []
            pending_decl = []
    return "\n".join(out).rstrip() + "\n"


def main() -> int:
    OUTPUT.write_text(generate(), encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

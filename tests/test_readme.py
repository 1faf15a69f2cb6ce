"""The README cannot rot: its ```sh and ```python blocks run verbatim (after the
demo they build on), except blocks marked ``<!-- readme-test: skip (reason) -->``."""

from __future__ import annotations

import os
import pathlib
import re
import shlex
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"(<!-- readme-test: skip \((?P<why>[^)]*)\) -->\s*)?```(?P<lang>sh|python)\n(?P<body>.*?)```", re.S)


def _blocks():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return [(m.group("lang"), m.group("body"), m.group("why")) for m in BLOCK.finditer(text)]


def test_readme_has_runnable_blocks():
    blocks = _blocks()
    assert any(lang == "python" and why is None for lang, _, why in blocks)
    assert any(lang == "sh" and why is None for lang, _, why in blocks)
    assert all(why for lang, body, why in blocks if "make test" in body), "make test cannot run inside itself"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    if not pathlib.Path("/usr/share/mricron/templates/ch2.nii.gz").exists():
        pytest.skip("mricron-data is missing (make deps installs it): the README builds on the demo")
    work = tmp_path_factory.mktemp("readme")
    env = dict(os.environ, PYTHONPATH=str(REPO / "python"))
    done = subprocess.run([sys.executable, "-m", "medground", "demo"], cwd=work, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return work, env


@pytest.mark.parametrize("index", range(len(_blocks())))
def test_readme_block_runs(index, workdir):
    lang, body, why = _blocks()[index]
    if why:
        pytest.skip(f"README block {index}: {why}")
    work, env = workdir
    if lang == "python":
        done = subprocess.run([sys.executable, "-c", body], cwd=work, env=env, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return
    for line in (l.strip() for l in body.splitlines()):
        if not line or line.startswith("#"):
            continue
        words = shlex.split(line)
        assert words[0] == "medground", f"README sh line not a medground command: {line}"
        done = subprocess.run([sys.executable, "-m", "medground", *words[1:]], cwd=work, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{line}\n{done.stdout[-2000:]}{done.stderr[-2000:]}"

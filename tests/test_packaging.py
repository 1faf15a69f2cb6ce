"""`pip install .` ships the library, the `medground` command, the type stub and the data files."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys
import zipfile

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    # A fresh copy of the sources, so setuptools cannot reuse objects of an
    # older header from the checkout's build/ folder.
    source = tmp_path_factory.mktemp("source") / "medground"
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.so", "*.o", "*.egg-info")
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    for name in ("csrc", "include", "python"):
        shutil.copytree(REPO / name, source / name, ignore=ignore)
    # Offline: the build uses this venv's setuptools/numpy (no build isolation, no dependencies).
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(out), str(source)], capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    wheels = list(out.glob("medground-*.whl"))
    assert len(wheels) == 1
    return wheels[0]


def test_wheel_contents(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith("medground/_C.") and n.endswith(".so") for n in names)
    for required in ("medground/__init__.py", "medground/_C.pyi", "medground/py.typed", "medground/cli.py",
                     "medground/data/templates/grounding.json", "medground/data/templates/datasets.json"):
        assert required in names, required
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "medground = medground.cli:main" in text
    from medground import __version__

    assert f"medground-{__version__}-" in wheel.name  # the version comes from one place
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    required = {line.split(":", 1)[1].strip().split(">")[0].split("=")[0].split(";")[0].strip().lower()
                for line in metadata.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line}
    # what `import medground` and evaluate's tables need in a plain `pip install .`
    assert {"numpy", "tqdm", "pillow", "pandas"} <= required, required


def test_installed_wheel_imports_and_runs(wheel, tmp_path):
    target = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                           str(wheel)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    code = ("import medground, sys; assert medground.__file__.startswith(sys.argv[1]), medground.__file__; "
            "from medground.cli import main; sys.exit(main(['--version']))")
    done = subprocess.run([sys.executable, "-c", code, str(target)], env={"PYTHONPATH": str(target),
                          "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("medground ")

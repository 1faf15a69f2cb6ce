"""Finding the reference tools and data the metrics need.

METEOR 1.5 reads its function words, non-breaking prefixes and WordNet
synonym tables from inside ``meteor-1.5.jar`` and its paraphrase table from
``data/paraphrase-en.gz`` beside the jar (pycocoevalcap's wheel ships both).
We read the same files at run time (never copied into this project); the
synonym tables can also come from a directory holding Meteor's
``english.*`` files (``MEDGROUND_METEOR_DATA``).
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import mmap
import os
import pathlib
import shutil
import zipfile
from dataclasses import dataclass


def pycocoevalcap_dir() -> pathlib.Path | None:
    spec = importlib.util.find_spec("pycocoevalcap")
    if spec is None or not spec.submodule_search_locations:
        return None
    return pathlib.Path(list(spec.submodule_search_locations)[0])


def meteor_jar() -> pathlib.Path | None:
    env = os.environ.get("MEDGROUND_METEOR_JAR")
    if env:
        return pathlib.Path(env)
    base = pycocoevalcap_dir()
    if base is None:
        return None
    jar = base / "meteor" / "meteor-1.5.jar"
    return jar if jar.exists() else None


def ptb_jar() -> pathlib.Path | None:
    base = pycocoevalcap_dir()
    if base is None:
        return None
    jar = base / "tokenizer" / "stanford-corenlp-3.4.1.jar"
    return jar if jar.exists() else None


def spice_jar() -> pathlib.Path | None:
    env = os.environ.get("MEDGROUND_SPICE_JAR")
    if env:
        return pathlib.Path(env)
    base = pycocoevalcap_dir()
    if base is None:
        return None
    jar = base / "spice" / "spice-1.0.jar"
    return jar if jar.exists() else None


def java() -> str | None:
    return shutil.which("java")


def spice_java() -> str | None:
    """The java SPICE runs with: $MEDGROUND_SPICE_JAVA, else java() (the
    jar needs Java 8-14, see metrics.spice_status)."""
    return os.environ.get("MEDGROUND_SPICE_JAVA") or java()


@functools.lru_cache(maxsize=8)
def java_major_version(java_path: str) -> int | None:
    """Major version of a java binary ("1.8.0_101" -> 8, "17.0.15" -> 17),
    None when it cannot be run or read."""
    import re
    import subprocess
    try:
        proc = subprocess.run([java_path, "-version"], capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r'version "(\d+)(?:\.(\d+))?', proc.stderr.decode("utf-8", "replace") +
                  proc.stdout.decode("utf-8", "replace"))
    if not m:
        return None
    major = int(m.group(1))
    return int(m.group(2) or 0) if major == 1 else major


@dataclass(frozen=True)
class MeteorData:
    function_words: str
    prefixes: str
    synsets: str | None
    exceptions: str | None
    paraphrase_path: pathlib.Path | None
    source: str


def _read_text(zf: zipfile.ZipFile, name: str) -> str | None:
    try:
        return zf.read(name).decode("utf-8")
    except KeyError:
        return None


@functools.lru_cache(maxsize=4)
def meteor_data(data_dir: str | None = None) -> MeteorData:
    """Meteor's English resources: from data_dir (Meteor's ``english.*``
    files), else the jar pycocoevalcap ships, else MEDGROUND_METEOR_DATA."""
    directory = data_dir or os.environ.get("MEDGROUND_METEOR_DATA")
    jar = meteor_jar()
    if directory is None and jar is not None:
        with zipfile.ZipFile(jar) as zf:
            words = _read_text(zf, "function/english.words")
            prefixes = _read_text(zf, "nonbreaking/english.prefixes")
            synsets = _read_text(zf, "synonym/english.synsets")
            exceptions = _read_text(zf, "synonym/english.exceptions")
            inside = [n for n in zf.namelist() if n.endswith("paraphrase-en.gz")]
        if words is None or prefixes is None:
            raise FileNotFoundError(f"{jar}: no function/english.words or nonbreaking/english.prefixes inside")
        paraphrase = jar.parent / "data" / "paraphrase-en.gz"
        if inside:
            paraphrase = jar  # read from inside the jar at load time
        return MeteorData(words, prefixes, synsets, exceptions,
                          paraphrase if paraphrase.exists() else None, f"jar {jar}")
    if directory is None:
        raise FileNotFoundError(
            "METEOR resources not found: install pycocoevalcap (ships meteor-1.5.jar) or set "
            "MEDGROUND_METEOR_DATA to a folder with Meteor's english.words/prefixes/synsets/exceptions")
    d = pathlib.Path(directory)

    def read(name: str) -> str | None:
        p = d / name
        return p.read_text(encoding="utf-8") if p.exists() else None

    words, prefixes = read("english.words"), read("english.prefixes")
    if words is None or prefixes is None:
        raise FileNotFoundError(f"{d}: english.words and english.prefixes are required for METEOR")
    para = d / "paraphrase-en.gz"
    if not para.exists() and jar is not None and (jar.parent / "data" / "paraphrase-en.gz").exists():
        para = jar.parent / "data" / "paraphrase-en.gz"
    return MeteorData(words, prefixes, read("english.synsets"), read("english.exceptions"),
                      para if para.exists() else None, f"folder {d}")


def cache_dir() -> pathlib.Path | None:
    """medground's cache folder ($MEDGROUND_CACHE_DIR, else $XDG_CACHE_HOME or
    ~/.cache, + /medground); None when MEDGROUND_CACHE=0."""
    if os.environ.get("MEDGROUND_CACHE", "1") == "0":
        return None
    explicit = os.environ.get("MEDGROUND_CACHE_DIR")
    if explicit:
        return pathlib.Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "medground"


def _decompress(path: pathlib.Path) -> bytes:
    if path.suffix == ".jar":
        with zipfile.ZipFile(path) as zf:
            name = next(n for n in zf.namelist() if n.endswith("paraphrase-en.gz"))
            return gzip.decompress(zf.read(name))
    with gzip.open(path, "rb") as f:
        return f.read()


def read_paraphrases(path: pathlib.Path):
    """The uncompressed paraphrase table (from the .gz file or inside a jar),
    as bytes or a read-only memory map. Decompressing the 270 MB table takes
    seconds, so the first call keeps an uncompressed copy in cache_dir()
    (keyed by the source's size and mtime; MEDGROUND_CACHE=0 disables it)
    and later calls map that copy."""
    path = pathlib.Path(path)
    cache = cache_dir()
    target = None
    if cache is not None:
        info = path.stat()
        target = cache / f"meteor-{path.stem}-{info.st_size}-{int(info.st_mtime)}.txt"
        if target.exists():
            try:
                with open(target, "rb") as f:
                    return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            except (OSError, ValueError):
                pass
    data = _decompress(path)
    if target is not None:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, target)
        except OSError:
            pass  # a cache is an optimisation only
    return data

"""Tokenizers of the two model families, id-for-id identical to their references.

* Qwen-VL (BiRD): byte-level BPE over ``qwen.tiktoken`` with Qwen's regex and
  the 217 Qwen-VL special tokens (``<|endoftext|>`` 151643 ... ``<imgpad>``
  151859). Reference: ``tiktoken.Encoding`` built from the same ranks (which
  *is* Qwen-VL's tokenizer), after Qwen's NFC normalisation.
* LLaMA (MedPLIB): SentencePiece BPE from ``tokenizer.model`` with byte
  fallback, plus MedPLIB's 267 added tokens (``<SEG>`` 32000 ...
  ``<im_end>`` 32266) split out of the text with transformers 4.31's slow
  tokenizer rule (whitespace around an added token is dropped, each chunk
  gets its own dummy prefix).
* Any Hugging Face ``tokenizer.json`` holding a byte-level BPE.

The work happens in C (``medground._C.Tokenizer``); this layer only picks the
loader, applies NFC where the reference does, and maps tiktoken-style
``allowed_special`` / ``disallowed_special`` arguments onto the C options.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import unicodedata
from typing import Iterable, Sequence

from . import _C
from .errors import FormatError, InvalidArgumentError, NotFoundError, UnsupportedError

__all__ = ["Tokenizer", "TokenStream"]

_SPECIAL_ALL, _SPECIAL_NONE, _SPECIAL_LIST = 0, 1, 2

# GGUF metadata keys written by `medground convert` (checkpoint/convert.py).
_GGUF_QWEN = "medground.tokenizer.qwen_tiktoken"
_GGUF_SPM = "medground.tokenizer.sentencepiece_model"
_GGUF_JSON = "medground.tokenizer.tokenizer_json"
_GGUF_ADDED = "medground.tokenizer.added_tokens_json"
_MEDPLIB_MARKERS = ("<SEG>", "<region>", "<im_start>")


def _looks_medplib(folder: pathlib.Path | None, extra: str | None = None) -> bool:
    """A LLaMA tokenizer.model next to MedPLIB's added tokens (added_tokens.json
    or tokenizer_config.json naming <SEG>) gets MedPLIB's 267 tokens."""
    texts = [extra] if extra else []
    if folder is not None:
        for name in ("added_tokens.json", "tokenizer_config.json", "special_tokens_map.json"):
            path = folder / name
            if path.is_file():
                try:
                    texts.append(path.read_text(encoding="utf-8", errors="replace"))
                except OSError:
                    pass
    return any(marker in text for text in texts for marker in _MEDPLIB_MARKERS)


class Tokenizer:
    """Text <-> ids for Qwen-VL, LLaMA/MedPLIB and byte-level BPE tokenizer.json.

    Build with :meth:`from_pretrained`. Encoding and decoding are thread-safe.
    """

    def __init__(self, native: _C.Tokenizer, *, family: str, source: str = ""):
        self._native = native
        self.family = family  # "qwen", "llama", "medplib", "tiktoken" or "hf_json"
        self.source = source
        self._disallowed_cache: dict[frozenset, re.Pattern] = {}

    # ------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, *, medplib: bool | None = None) -> "Tokenizer":
        """Load from a folder, a vocabulary file or a medground GGUF.

        * folder: ``qwen.tiktoken``, else ``tokenizer.model``, else ``tokenizer.json``;
        * ``*.tiktoken`` (Qwen-VL with its special tokens), ``tokenizer.model``
          (LLaMA SentencePiece), ``tokenizer.json``; the format is detected by content;
        * ``*.gguf`` written by ``medground convert`` (vocabulary embedded as metadata).

        SentencePiece models get their added tokens from an ``added_tokens.json``
        beside them (or embedded in the GGUF): ids must continue the model's pieces;
        they are added in id order with transformers 4.31's ``add_tokens(str)`` rule
        (whitespace around them stripped). Without that file, ``medplib=True`` adds
        MedPLIB's 267 tokens (architecture.md §2.10); ``None`` (default) does so when a
        ``tokenizer_config.json`` / ``special_tokens_map.json`` there names ``<SEG>``
        or the GGUF's architecture is ``medplib``. ``medplib=False``: the bare model.
        """
        p = pathlib.Path(os.fspath(path))
        if not p.exists():
            raise NotFoundError(f"{p}: no such file or folder")
        if p.is_file():
            with open(p, "rb") as f:  # a GGUF may be many GB: read the magic only
                is_gguf = f.read(4) == b"GGUF"
            if is_gguf:
                return cls._from_gguf(p, medplib)
        folder = p if p.is_dir() else p.parent
        native = _C.Tokenizer(str(p), "auto")
        kind = native.kind
        if kind == "sentencepiece":
            added_file = folder / "added_tokens.json"
            added = added_file.read_text(encoding="utf-8") if added_file.is_file() and medplib is not False else None
            return cls._sentencepiece(native, lambda kind: _C.Tokenizer(
                str(p / "tokenizer.model" if p.is_dir() else p), kind), added, medplib,
                _looks_medplib(folder), str(p))
        if medplib:
            raise InvalidArgumentError(f"{p}: medplib=True needs a SentencePiece tokenizer.model, found {kind}")
        return cls(native, family="qwen" if kind == "tiktoken" else "hf_json", source=str(p))

    @classmethod
    def _from_gguf(cls, path: pathlib.Path, medplib: bool | None) -> "Tokenizer":
        weights = _C.Weights(str(path))
        meta = weights.metadata()
        name = path.name
        if _GGUF_QWEN in meta:
            data = meta[_GGUF_QWEN]
            data = data.encode("utf-8") if isinstance(data, str) else bytes(data)
            return cls(_C.Tokenizer.from_bytes(data, "qwen", name), family="qwen", source=str(path))
        if _GGUF_SPM in meta:
            data = bytes(memoryview(meta[_GGUF_SPM]).cast("B"))
            added = meta.get(_GGUF_ADDED)
            added = added if isinstance(added, str) and medplib is not False else None
            looks = _looks_medplib(None, added) or str(meta.get("general.architecture", "")).lower() == "medplib"
            return cls._sentencepiece(_C.Tokenizer.from_bytes(data, "sentencepiece", name),
                                      lambda kind: _C.Tokenizer.from_bytes(data, kind, name), added, medplib, looks,
                                      str(path))
        if _GGUF_JSON in meta:
            data = meta[_GGUF_JSON]
            data = data.encode("utf-8") if isinstance(data, str) else bytes(data)
            return cls(_C.Tokenizer.from_bytes(data, "hf_json", name), family="hf_json", source=str(path))
        raise NotFoundError(f"{path}: GGUF has no embedded tokenizer (metadata {_GGUF_QWEN}, {_GGUF_SPM} "
                            f"or {_GGUF_JSON}); convert the checkpoint folder with its tokenizer files")

    @classmethod
    def _sentencepiece(cls, native, reload, added_json: str | None, medplib: bool | None, looks_medplib: bool,
                       source: str) -> "Tokenizer":
        """A LLaMA model plus its added tokens: from added_tokens.json when there is one (ids must
        continue the model's pieces, added in id order with transformers 4.31's add_tokens(str)
        rule), else MedPLIB's built-in list when asked for or detected."""
        if added_json is not None:
            try:
                table = json.loads(added_json)
            except ValueError as error:
                raise FormatError(f"{source}: added_tokens.json is not JSON: {error}") from None
            if not isinstance(table, dict) or not all(isinstance(k, str) and isinstance(v, int)
                                                      for k, v in table.items()):
                raise FormatError(f"{source}: added_tokens.json must map token strings to integer ids")
            items = sorted(table.items(), key=lambda kv: kv[1])
            base = native.vocab_size
            for offset, (token, token_id) in enumerate(items):
                if token_id != base + offset:
                    raise FormatError(f"{source}: added_tokens.json gives {token!r} id {token_id}; ids must "
                                      f"continue the model's {base} pieces without gaps (expected {base + offset})")
            tokens = [token for token, _ in items]
            if tokens:
                native.add_tokens(tokens, special=False, strip_whitespace=True)
            family = "medplib" if "<SEG>" in table else "llama"
            return cls(native, family=family, source=source)
        use_medplib = looks_medplib if medplib is None else medplib
        if use_medplib:
            return cls(reload("medplib"), family="medplib", source=source)
        return cls(native, family="llama", source=source)

    @classmethod
    def from_tiktoken_bytes(cls, ranks: bytes, pattern: str | None = None, *, name: str = "ranks",
                            special_tokens: Sequence[str] = ()) -> "Tokenizer":
        """A tiktoken ranks file in memory with a pre-tokenisation regex (None:
        Qwen's) and special tokens numbered after the ranks, in order."""
        native = _C.Tokenizer.from_bytes(bytes(ranks), "tiktoken", name, pattern)
        if special_tokens:
            native.add_tokens(list(special_tokens), special=True)
        return cls(native, family="tiktoken", source=name)

    # ------------------------------------------------------------ queries
    @property
    def vocab_size(self) -> int:
        """Number of ids (base vocabulary + special/added tokens)."""
        return self._native.vocab_size

    def __len__(self) -> int:
        return self._native.vocab_size

    @property
    def bos_id(self) -> int | None:
        return self._native.bos_id

    @property
    def eos_id(self) -> int | None:
        return self._native.eos_id

    @property
    def kind(self) -> str:
        """The C model: ``tiktoken``, ``hf_byte_bpe`` or ``sentencepiece``."""
        return self._native.kind

    def token_to_id(self, token: str | bytes) -> int:
        """Exact token -> id (raw bytes for byte-level BPE, pieces with U+2581 for
        SentencePiece, special/added tokens as text). NotFoundError when absent."""
        return self._native.token_to_id(token)

    def id_to_token(self, token_id: int) -> bytes:
        """id -> the token's bytes (raw bytes for byte-level BPE)."""
        return self._native.id_to_token(int(token_id))[0]

    def is_special(self, token_id: int) -> bool:
        """Special, control or added token."""
        return self._native.id_to_token(int(token_id))[1]

    # ------------------------------------------------------------ encode
    def _special_args(self, allowed_special, disallowed_special):
        if allowed_special == "all":
            return _SPECIAL_ALL, None, allowed_special
        if allowed_special is None or allowed_special == "none" or allowed_special == ():
            return _SPECIAL_NONE, None, allowed_special
        if isinstance(allowed_special, str):
            raise InvalidArgumentError(
                f"allowed_special={allowed_special!r}: expected 'all', 'none', None or a set of token strings")
        allowed = sorted(set(allowed_special))
        if not allowed:
            return _SPECIAL_NONE, None, allowed_special
        return _SPECIAL_LIST, allowed, allowed_special

    def _check_disallowed(self, text: str, allowed_special, disallowed_special) -> None:
        """tiktoken's rule: a disallowed special token in the text is an error."""
        if not disallowed_special or allowed_special == "all":
            return
        if disallowed_special == "all":
            disallowed = set(self._governed_specials())
            if allowed_special not in (None, "none", ()):
                disallowed -= set(allowed_special)
        else:
            disallowed = set(disallowed_special)
        if not disallowed:
            return
        key = frozenset(disallowed)
        pattern = self._disallowed_cache.get(key)
        if pattern is None:
            pattern = re.compile("|".join(re.escape(t) for t in sorted(disallowed, key=len, reverse=True)))
            self._disallowed_cache[key] = pattern
        match = pattern.search(text)
        if match:
            raise InvalidArgumentError(
                f"text contains the disallowed special token {match.group()!r} at character {match.start()}; "
                "pass allowed_special to allow it or disallowed_special=() to encode it as plain text")

    def _governed_specials(self) -> list[str]:
        """Special tokens that allowed_special switches (added tokens that are always matched,
        such as MedPLIB's, are not): those whose text is not their own id with specials off."""
        cached = getattr(self, "_governed", None)
        if cached is None:
            cached = [t for t in self.special_tokens()
                      if self._native.encode(t, _SPECIAL_NONE) != [self._native.token_to_id(t)]]
            self._governed = cached
        return cached

    def special_tokens(self) -> list[str]:
        """Every special/added token string (recognised in text when allowed)."""
        out = []
        n = self.vocab_size
        first = self._first_special()
        for i in range(first, n):
            token, special = self._native.id_to_token(i)
            if special:
                out.append(token.decode("utf-8", "replace"))
        if self._native.kind == "sentencepiece":
            for i in range(min(3, n)):
                token, special = self._native.id_to_token(i)
                if special:
                    out.append(token.decode("utf-8", "replace"))
        return out

    def _first_special(self) -> int:
        if self.family == "qwen":
            return 151643 if self.vocab_size > 151643 else 0
        if self.family in ("llama", "medplib"):
            return 32000 if self.vocab_size > 32000 else 0
        return 0

    def _prepare(self, text, normalize: bool):
        if isinstance(text, str):
            if normalize and self._native.wants_nfc:
                text = unicodedata.normalize("NFC", text)
            return text
        if isinstance(text, (bytes, bytearray, memoryview)):
            return text
        raise InvalidArgumentError(f"text is {type(text).__name__}, not str or bytes")

    def encode(self, text: str | bytes, *, allowed_special="all", disallowed_special=(),
               add_bos: bool | None = None, add_eos: bool = False, expand_images: bool | None = None,
               normalize: bool = True) -> list[int]:
        """Text -> ids.

        allowed_special: ``"all"`` (default, as Qwen's ``tokenize`` and
        transformers), ``None``/``"none"`` (special strings are plain text) or a
        set of token strings (an unknown one is NotFoundError).
        disallowed_special: ``()`` (default: not-allowed specials are plain text)
        or ``"all"`` / a set: raise InvalidArgumentError if one occurs (tiktoken).
        add_bos: prepend BOS (default: True for LLaMA/MedPLIB as
        ``tokenizer(text)`` does, False otherwise). expand_images (Qwen-VL,
        default True): ``<img>path</img>`` -> ``<img>`` + 256 ids + ``</img>``.
        normalize: NFC first where the reference does (Qwen). bytes input is
        used as is (invalid UTF-8 is InvalidArgumentError).
        """
        text = self._prepare(text, normalize)
        if disallowed_special and isinstance(text, str):
            self._check_disallowed(text, allowed_special, disallowed_special)
        special, allowed, _ = self._special_args(allowed_special, disallowed_special)
        if add_bos is None:
            add_bos = self.family in ("llama", "medplib")
        if expand_images is None:
            expand_images = self.family == "qwen"
        return self._native.encode(text, special, allowed, bool(add_bos), bool(add_eos), bool(expand_images))

    def encode_batch(self, texts: Iterable[str | bytes], *, allowed_special="all", disallowed_special=(),
                     add_bos: bool | None = None, add_eos: bool = False, expand_images: bool | None = None,
                     normalize: bool = True, n_threads: int = 0) -> list[list[int]]:
        """encode() over many texts on C threads (n_threads <= 0: medground's count)."""
        prepared = [self._prepare(t, normalize) for t in texts]
        if disallowed_special:
            for t in prepared:
                if isinstance(t, str):
                    self._check_disallowed(t, allowed_special, disallowed_special)
        special, allowed, _ = self._special_args(allowed_special, disallowed_special)
        if add_bos is None:
            add_bos = self.family in ("llama", "medplib")
        if expand_images is None:
            expand_images = self.family == "qwen"
        return self._native.encode_batch(prepared, special, allowed, bool(add_bos), bool(add_eos),
                                         bool(expand_images), int(n_threads))

    # ------------------------------------------------------------ decode
    def decode(self, ids: Iterable[int], *, skip_special_tokens: bool = False) -> str:
        """ids -> text. Invalid UTF-8 becomes U+FFFD as the reference decoders do.
        Qwen: skip_special_tokens drops every id >= 151643 (also <ref>/<box>);
        LLaMA/MedPLIB: drops <s> </s> <unk> and keeps added tokens."""
        return self._native.decode(list(ids) if not isinstance(ids, (list, tuple)) else ids,
                                   bool(skip_special_tokens))

    def stream(self, *, skip_special_tokens: bool = False) -> "TokenStream":
        """An incremental decoder for generation (see TokenStream)."""
        return TokenStream(self, skip_special_tokens=skip_special_tokens)

    def __repr__(self) -> str:
        return f"Tokenizer(family={self.family!r}, vocab_size={self.vocab_size}, source={self.source!r})"


class TokenStream:
    """Push ids one at a time; each push returns the text completed so far.

    A character split across tokens is held back until complete, so the
    concatenated outputs (plus :meth:`flush`) equal ``decode`` of all ids
    (no ``<img>`` span rewriting in streams). SentencePiece streams must skip
    special tokens (transformers places them by looking back).
    """

    def __init__(self, tokenizer: Tokenizer, *, skip_special_tokens: bool = False):
        if tokenizer.kind == "sentencepiece" and not skip_special_tokens:
            raise UnsupportedError("a SentencePiece stream must use skip_special_tokens=True")
        self._native = _C.TokenStream(tokenizer._native, bool(skip_special_tokens))

    def push(self, token_id: int) -> str:
        return self._native.push(int(token_id))

    def flush(self) -> str:
        return self._native.flush()

"""Tokenizers vs independent references, id for id, on a >= 1 MB corpus.

References (none written here):
* Qwen-VL: PyPI ``tiktoken.Encoding`` built from ../shared/data/tokenizers/qwen.tiktoken with Qwen's
  ``PAT_STR`` and Qwen-VL's special tokens. That object *is* Qwen-VL's tokenizer
  (tokenization_qwen.py wraps it); its ``tokenize`` NFC-normalises first, which our default
  ``normalize=True`` reproduces. The ``<img>path</img>`` rule is re-implemented below from
  architecture.md §1.7.3 on top of tiktoken's output.
  Also Qwen-VL's own tokenization_qwen.py (run in a separate venv, see QWEN_SCRIPT): saved output in
  tests/golden/tokenizer_qwen_vl.json (97 texts incl. <img> rule, ChatML and the inputs it rejects), and an
  opt-in live run over the whole sprinkled corpus — identical ids, decode and skip-special decode.
* LLaMA: PyPI ``sentencepiece`` on ../shared/data/tokenizers/llama.tokenizer.model.
* MedPLIB added tokens: MedPLIB pins transformers 4.31; the installed transformers is 5.x.
  - What 5.x checks: 5.x's slow ``SentencePieceBackend`` (legacy=True) keeps 4.31's split/strip
    loop (PreTrainedTokenizer.tokenize: trie split, then ``right.lstrip()`` / ``left.rstrip()``
    next to an added token whose AddedToken has rstrip/lstrip). 5.x's ``add_tokens("<SEG>")``
    makes AddedToken(lstrip=False, rstrip=False), i.e. NO stripping — 5.x differs from 4.31 here.
    4.31's ``tokenize`` stripped both sides of any no-split token that is not an AddedToken
    (plain ``add_tokens(str)``, what MedPLIB's training code does). So the 5.x reference is built
    with ``AddedToken(t, lstrip=True, rstrip=True)``, which runs exactly 4.31's strip lines.
    test_medplib_5x_plain_add_tokens_differs pins the 5.x difference so nobody "fixes" us to 5.x.
  - Reproduced from the doc (architecture.md §2.10) and 4.31's code, with hand-written golden
    cases: the whitespace rule above (test_medplib_golden_4_31) and 4.31's decode joining
    (PreTrainedTokenizer._decode joins sub-texts with " "; LlamaTokenizer.convert_tokens_to_string
    writes " " + previous text + control token) — 5.x decodes differently.
  - And checked against the real transformers 4.31.0 (installed in a separate venv, not in .venv):
    tests/golden/tokenizer_transformers_4_31.json holds its ids/decodes for 101 texts (written by
    TF431_SCRIPT below); with MEDGROUND_TF431_PYTHON set, test_medplib_vs_transformers_4_31_live runs
    it over the whole sprinkled corpus (all 567 documents identical: ids, decode, skip-special decode).
* tokenizer.json: PyPI ``tokenizers`` loading the same file, built at test time (a ByteLevel
  BPE trained on part of the corpus, and Qwen's ranks converted to HF merges with
  Split+ByteLevel+NFC as Qwen2 files are laid out).
"""

from __future__ import annotations

import ast
import json
import pathlib
import random
import time
import unicodedata

import pytest

from conftest import shared_path

tiktoken = pytest.importorskip("tiktoken")
spm = pytest.importorskip("sentencepiece")
hf_tokenizers = pytest.importorskip("tokenizers")

import medground  # noqa: E402
from medground import errors  # noqa: E402
from medground.tokenizer import Tokenizer  # noqa: E402

QWEN_PATTERN = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
                r"""\s*[\r\n]+|\s+(?!\S)|\s+""")
# architecture.md §1.7.2: ids = 151643 + index in this order.
QWEN_SPECIALS = (["<|endoftext|>", "<|im_start|>", "<|im_end|>"] + [f"<|extra_{i}|>" for i in range(205)]
                 + ["<ref>", "</ref>", "<box>", "</box>", "<quad>", "</quad>", "<img>", "</img>", "<imgpad>"])
# architecture.md §2.10, train-code order, ids 32000.. (vocab 32267).
MEDPLIB_ADDED = (["<SEG>", "<ref>", "</ref>", "<region>", "</region>", "<sr>", "</sr>", "<mask>", "</mask>"]
                 + [f"<gen_{i}>" for i in range(1, 257)] + ["<im_start>", "<im_end>"])

MEDICAL = [
    "Please output the bounding box of the liver in this CT image.",
    "<ref>the left kidney</ref><box>(123,456),(789,999)</box>",
    "<ref>lesion</ref><box>(0,0),(999,999)</box><box>(12,34),(56,78)</box>",
    "Picture 1:<img>/data/ct/amos_0001.png</img>\nWhere is the spleen?",
    "Dose: 2.5 mg/kg q8h IV; BP 120/80 mmHg; HR 72 bpm; SpO₂ 98%; T 37.2 °C; 5×10⁹/L; 3 µm; 10 mSv",
    "肝脏占位性病变，大小约 3.2 cm × 2.8 cm，边界清楚。右肺上叶见结节影（直径 8 mm）。",
    "腹部CT平扫：胰腺形态、大小未见异常。脾脏未见增大。",
    "Ｆｕｌｌｗｉｄｔｈ ＣＴ　ｓｃａｎ　１２３",
    "Emoji: 🩻🫁🫀🧠 💉💊 👩🏽‍⚕️ 🏳️‍🌈 😀😀😀",
    "MRI T2-FLAIR hyperintensity in the periventricular white matter (≈ 4–6 lesions, ≥3 mm).",
    "tab\tseparated\tvalues\t\t\tand  double  spaces   and    four",
    "lines\n\n\n\nwith blank\r\n\r\nCRLF\n \n  \n   trailing   \n",
    "     leading spaces and trailing spaces     ",
    "Ångström, café, naïve, résumé, Zürich, São Paulo, Ελληνικά, русский, עברית, العربية, हिन्दी, 한국어, 日本語",
    "e\u0301 (combining acute, NFC composes it) vs é; ﬁ ligature; Ⅻ roman; ½ ¼",
    "don't I'M You'RE they'll we'd it's She'S HE'VE",
    "1234567890 3.14159 -0.001 1e-9 0x1F 10,000,000 2024-12-01T08:00:00Z",
    "!!!??? ... --- *** ### @@@ $$$ %%% ^^^ &&& ((( ))) [[[ ]]] {{{ }}} <<< >>> ||| ~~~",
    "USER: <im_start><image><im_end>\nWhat is shown in <region>mask</region>? ASSISTANT: It is <SEG>.",
    "A chat between a curious user and an artificial intelligence assistant. USER: Segment the tumour. ASSISTANT:",
    "zero\u200bwidth\u200cjoiners\u200d and NBSP\u00a0here and NEL\u0085there and LS\u2028PS\u2029end",
    "\u3000ideographic\u3000space\u3000",
]


def _docstrings(path: pathlib.Path) -> str:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
    except (SyntaxError, ValueError):
        return ""
    parts = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                parts.append(doc)
    return "\n\n".join(parts)


def _build_corpus() -> list[str]:
    """>= 1 MB of real text from installed packages (package metadata/READMEs, licences,
    docstrings), plus medical phrases with random whitespace runs. Deterministic."""
    site = pathlib.Path(tiktoken.__file__).resolve().parent.parent
    docs: list[str] = []
    size = 0

    def add(text: str, limit: int) -> bool:
        nonlocal size
        if text.strip():
            docs.append(text)
            size += len(text.encode("utf-8"))
        return size >= limit

    for path in sorted(site.glob("*.dist-info/METADATA")):
        if add(path.read_text(encoding="utf-8", errors="replace"), 600_000):
            break
    licences = sorted(site.glob("*.dist-info/licenses/*")) + sorted(site.glob("*.dist-info/LICENSE*"))
    for path in licences:
        if path.is_file() and add(path.read_text(encoding="utf-8", errors="replace"), 850_000):
            break
    sources = []
    for package in ("tiktoken", "tokenizers", "sentencepiece", "numpy", "transformers"):
        root = site / package
        if root.is_dir():
            sources += sorted(p for p in root.rglob("*.py") if p.stat().st_size < 150_000)
    for path in sources:
        if add(_docstrings(path), 1_150_000):
            break
    rng = random.Random(4)
    for i in range(400):
        phrase = MEDICAL[i % len(MEDICAL)]
        words = phrase.split(" ")
        glue = [rng.choice([" ", " ", "  ", "\n", "\n\n", "\t", "   ", " \n "]) for _ in words]
        docs.append("".join(w + g for w, g in zip(words, glue)).rstrip(" ") if i % 3 else phrase)
    assert size >= 1_000_000, f"corpus only {size} bytes; installed packages changed?"
    return docs


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return _build_corpus()


def _first_mismatch(ours: list[list[int]], ref: list[list[int]], docs) -> str | None:
    assert len(ours) == len(ref)
    for d, (a, b) in enumerate(zip(ours, ref)):
        if a != b:
            k = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            doc = docs[d] if docs is not None else ""
            return (f"doc {d} ({len(doc)} chars) differs at token {k}: ours {a[max(0, k - 3):k + 5]} "
                    f"ref {b[max(0, k - 3):k + 5]}; doc starts {doc[:80]!r}")
    return None


def _sprinkle(docs: list[str], tokens: list[str], seed: int, every: int = 40) -> list[str]:
    """Insert tokens between words with varied whitespace (deterministic)."""
    rng = random.Random(seed)
    out = []
    for doc in docs:
        words = doc.split(" ")
        for _ in range(max(1, len(words) // every)):
            at = rng.randrange(len(words))
            words[at] = words[at] + rng.choice(["", " ", "  ", "\n", " \n\t"]) + rng.choice(tokens) + \
                rng.choice(["", " ", "\n", "  "])
        out.append(" ".join(words))
    return out


# ============================================================== Qwen-VL

@pytest.fixture(scope="module")
def qwen_path() -> pathlib.Path:
    return shared_path("tokenizers", "qwen.tiktoken")


@pytest.fixture(scope="module")
def qwen_ref(qwen_path):
    from tiktoken.load import load_tiktoken_bpe

    ranks = load_tiktoken_bpe(str(qwen_path))
    return tiktoken.Encoding("qwen", pat_str=QWEN_PATTERN, mergeable_ranks=ranks,
                             special_tokens={t: 151643 + i for i, t in enumerate(QWEN_SPECIALS)})


@pytest.fixture(scope="module")
def qwen(qwen_path) -> Tokenizer:
    return Tokenizer.from_pretrained(qwen_path)


def test_public_export():
    assert medground.Tokenizer is Tokenizer


def test_qwen_special_ids(qwen, qwen_ref):
    assert qwen.vocab_size == 151860 == qwen_ref.n_vocab
    assert qwen.eos_id == 151643 and qwen.bos_id is None
    expected = {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645, "<|extra_0|>": 151646,
                "<|extra_204|>": 151850, "<ref>": 151851, "</ref>": 151852, "<box>": 151853, "</box>": 151854,
                "<quad>": 151855, "</quad>": 151856, "<img>": 151857, "</img>": 151858, "<imgpad>": 151859}
    for token, token_id in expected.items():
        assert qwen.token_to_id(token) == token_id
        assert qwen.id_to_token(token_id) == token.encode()
        assert qwen.is_special(token_id)
        assert qwen.encode(token, expand_images=False) == [token_id] == qwen_ref.encode(token, allowed_special="all")
    # architecture.md §1.7.1: GPT-2 byte order for ranks 0..255
    assert qwen.token_to_id(b"!") == 0 and qwen.token_to_id(b"\n") == 198 and qwen.token_to_id(b" ") == 220
    assert not qwen.is_special(220)
    with pytest.raises(errors.NotFoundError):
        qwen.token_to_id("<|extra_205|>")
    assert sorted(qwen.special_tokens()) == sorted(QWEN_SPECIALS)


def test_qwen_corpus_ordinary(qwen, qwen_ref, corpus):
    """Specials off, no NFC: tiktoken's encode_ordinary, per document and as one 1 MB string."""
    started = time.perf_counter()
    ours = qwen.encode_batch(corpus, allowed_special=None, normalize=False)
    ref = qwen_ref.encode_ordinary_batch(corpus, num_threads=1)
    assert _first_mismatch(ours, ref, corpus) is None
    joined = "".join(corpus)
    assert qwen.encode(joined, allowed_special=None, normalize=False) == qwen_ref.encode_ordinary(joined)
    assert sum(map(len, ours)) > 200_000
    assert time.perf_counter() - started < 30


def test_qwen_corpus_specials_nfc(qwen, qwen_ref, corpus):
    """Qwen's tokenize(): NFC, then every special allowed. <img> is tested on its own below."""
    tags = [t for t in QWEN_SPECIALS if t not in ("<img>", "</img>")]
    docs = _sprinkle(corpus, tags, seed=7)
    ours = qwen.encode_batch(docs, expand_images=False)
    ref = [qwen_ref.encode(unicodedata.normalize("NFC", d), allowed_special="all") for d in docs]
    assert _first_mismatch(ours, ref, docs) is None
    assert sum(x >= 151643 for ids in ours for x in ids) > 1000
    # NFC really happens: "e" + U+0301 composes to "é"
    assert qwen.encode("e\u0301") == qwen_ref.encode("\u00e9") != qwen_ref.encode("e\u0301")
    assert qwen.encode("e\u0301", normalize=False) == qwen_ref.encode("e\u0301")


def test_qwen_allowed_and_disallowed_special(qwen, qwen_ref):
    text = "User <box>(1,2),(3,4)</box> wrote <|im_start|> and <|endoftext|> and <ref>x</ref>"
    for allowed in ({"<box>"}, {"<box>", "</box>", "<|endoftext|>"}, set()):
        ours = qwen.encode(text, allowed_special=allowed or None)
        assert ours == qwen_ref.encode(text, allowed_special=allowed, disallowed_special=())
    assert qwen.encode(text, allowed_special=None) == qwen_ref.encode_ordinary(text)
    assert qwen.encode(text, allowed_special="all") == qwen_ref.encode(text, allowed_special="all")
    # tiktoken's default: a disallowed special in text is an error
    with pytest.raises(errors.InvalidArgumentError, match="disallowed special token"):
        qwen.encode(text, allowed_special={"<box>", "</box>"}, disallowed_special="all")
    with pytest.raises(ValueError):
        qwen_ref.encode(text, allowed_special={"<box>", "</box>"})
    assert qwen.encode("plain text", allowed_special=None, disallowed_special="all") == \
        qwen_ref.encode("plain text")
    with pytest.raises(errors.NotFoundError, match="<nope>"):
        qwen.encode(text, allowed_special={"<nope>"})
    with pytest.raises(errors.InvalidArgumentError):
        qwen.encode(text, allowed_special="some")


def _qwen_img_reference(qwen_ref, text: str) -> list[int]:
    """architecture.md §1.7.3 over tiktoken's ids: the tokens between <img> and </img> are joined back
    into the path's bytes, byte b becomes id b, padded with <imgpad> to 256."""
    ids = qwen_ref.encode(unicodedata.normalize("NFC", text), allowed_special="all")
    out, i = [], 0
    while i < len(ids):
        if ids[i] != 151857:
            out.append(ids[i])
            i += 1
            continue
        j = ids.index(151858, i)
        path = b"".join(qwen_ref.decode_single_token_bytes(t) for t in ids[i + 1:j])
        assert len(path) <= 256
        out += [151857] + list(path) + [151859] * (256 - len(path)) + [151858]
        i = j + 1
    return out


def test_qwen_image_rule(qwen, qwen_ref):
    texts = ["Picture 1:<img>/data/ct/amos_0001.png</img>\nWhere is the liver?",
             "<img>a</img><img>图像/肝脏 😀.png</img> two images <ref>x</ref><box>(1,2),(3,4)</box>",
             "<img></img>", "no image </img> stray close", "<img>" + "p" * 256 + "</img>"]
    for text in texts:
        ours = qwen.encode(text)
        assert ours == _qwen_img_reference(qwen_ref, text), text
    ids = qwen.encode(texts[0])
    assert ids.count(151859) == 256 - len(b"/data/ct/amos_0001.png")
    assert ids[ids.index(151857):ids.index(151858) + 1].__len__() == 258
    assert qwen.decode(ids) == texts[0]  # decode writes the path back
    assert qwen.decode(qwen.encode(texts[1])) == texts[1]
    # skip_special drops every id >= 151643, the path bytes (ids 0..255) stay
    assert qwen.decode(ids, skip_special_tokens=True) == "Picture 1:/data/ct/amos_0001.png\nWhere is the liver?"
    with pytest.raises(errors.InvalidArgumentError, match="at most 256"):
        qwen.encode("<img>" + "p" * 257 + "</img>")
    with pytest.raises(errors.InvalidArgumentError, match="not closed"):
        qwen.encode("<img>/no/close.png")
    # not allowed -> plain text, no rule (Qwen's rule runs on special-token ids only)
    assert qwen.encode("<img>x</img>", allowed_special=None) == qwen_ref.encode_ordinary("<img>x</img>")
    assert qwen.encode("<img>x</img>", expand_images=False) == qwen_ref.encode("<img>x</img>", allowed_special="all")


def test_qwen_decode(qwen, qwen_ref, corpus):
    ids = qwen.encode_batch(corpus, allowed_special=None, normalize=False)
    for doc, seq in zip(corpus, ids):
        assert qwen.decode(seq) == doc
    # byte-level ids whose bytes are not UTF-8 decode as Python's errors="replace"
    broken = [qwen.token_to_id(b"\xe8"), qwen.token_to_id(b"a"), qwen.token_to_id(b"\xff")]
    assert qwen.decode(broken) == qwen_ref.decode(broken) == b"\xe8a\xff".decode("utf-8", "replace")
    assert qwen.decode([151644, 872, 151645], skip_special_tokens=True) == qwen_ref.decode([872])
    assert qwen.decode([151644, 872, 151645]) == qwen_ref.decode([151644, 872, 151645])
    with pytest.raises(errors.InvalidArgumentError, match="position 1"):
        qwen.decode([1, 151860])
    with pytest.raises(errors.InvalidArgumentError):
        qwen.decode([-1])
    with pytest.raises(errors.InvalidArgumentError):
        qwen.decode(["a"])
    with pytest.raises(errors.InvalidArgumentError, match="no </img>"):
        qwen.decode([151857, 1, 2])


def test_qwen_stream_partial_utf8(qwen, qwen_ref):
    text = "肝脏 😀🩻 résumé 日本語テキスト 👩🏽‍⚕️ end"
    ids = qwen.encode(text)
    # the emoji are split into several byte tokens, so some pushes must hold bytes back
    assert any(len(qwen.id_to_token(i).decode("utf-8", "ignore")) == 0 for i in ids)
    stream = qwen.stream()
    pieces = [stream.push(i) for i in ids]
    assert "".join(pieces) + stream.flush() == text == qwen_ref.decode(ids)
    assert "" in pieces and all("\ufffd" not in p for p in pieces)
    # an unfinished character at the end is held, then flushed as one U+FFFD (Python's rule)
    stream = qwen.stream()
    first = qwen.token_to_id(b"\xf0\x9f")
    assert stream.push(first) == ""
    assert stream.flush() == b"\xf0\x9f".decode("utf-8", "replace") == "\ufffd"
    # skip_special in the stream matches decode(skip_special_tokens=True)
    ids = qwen.encode("<|im_start|>user\n肝<|im_end|>")
    stream = qwen.stream(skip_special_tokens=True)
    assert "".join(stream.push(i) for i in ids) + stream.flush() == qwen.decode(ids, skip_special_tokens=True)


def test_qwen_long_piece_matches_tiktoken(qwen, qwen_ref):
    rng = random.Random(11)
    word = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(20_000))  # one regex piece
    assert qwen.encode(word) == qwen_ref.encode_ordinary(word)
    digits_and_punct = "".join(rng.choice("0123456789.,;:!?-()[]") for _ in range(20_000))
    assert qwen.encode(digits_and_punct) == qwen_ref.encode_ordinary(digits_and_punct)


def _all_code_points() -> str:
    return "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000)


def test_regex_classes_match_rust(qwen_path):
    """\\p{L}, \\p{N}, \\s, \\S mean to our PCRE2 pattern what they mean to tiktoken's Rust regex, over
    every code point: a pattern matching one class, over a bytes-only vocabulary, returns exactly the
    bytes of the characters in that class (tiktoken drops unmatched text; so do we)."""
    import base64

    ranks = {bytes([b]): b for b in range(256)}
    raw = b"".join(base64.b64encode(bytes([b])) + b" %d\n" % b for b in range(256))
    text = _all_code_points()
    for pattern in (r"\p{L}", r"\p{N}", r"\s", r"\S", r"[^\r\n\p{L}\p{N}]", r"[^\s\p{L}\p{N}]"):
        ref = tiktoken.Encoding("probe", pat_str=pattern, mergeable_ranks=ranks, special_tokens={})
        want = bytes(ref.encode_ordinary(text)).decode()
        got = bytes(Tokenizer.from_tiktoken_bytes(raw, pattern=pattern).encode(text)).decode()
        assert got == want, (pattern, sorted(set(got) ^ set(want))[:10])
    case = "".join("'" + c for c in text[::7])  # (?i:'s|...) under Unicode case folding
    pattern = "(?i:'s|'t|'re|'ve|'m|'ll|'d)"
    ref = tiktoken.Encoding("probe", pat_str=pattern, mergeable_ranks=ranks, special_tokens={})
    assert Tokenizer.from_tiktoken_bytes(raw, pattern=pattern).encode(case) == ref.encode_ordinary(case)


def test_qwen_every_code_point_in_context(qwen, qwen_ref):
    """Qwen's full pattern and merges around every 5th code point (all of them: run with step 1)."""
    text = _all_code_points()[::5]
    docs = ["".join(f"a{c}{c}b {c}1'{c}\n{c} {c}'s {c}'S{c}\t" for c in text[i:i + 2000])
            for i in range(0, len(text), 2000)]
    ours = qwen.encode_batch(docs, allowed_special=None, normalize=False)
    ref = qwen_ref.encode_ordinary_batch(docs, num_threads=1)
    assert _first_mismatch(ours, ref, docs) is None


# ================================================================ LLaMA

@pytest.fixture(scope="module")
def llama_path() -> pathlib.Path:
    return shared_path("tokenizers", "llama.tokenizer.model")


@pytest.fixture(scope="module")
def sp_ref(llama_path):
    return spm.SentencePieceProcessor(model_file=str(llama_path))


@pytest.fixture(scope="module")
def llama(llama_path) -> Tokenizer:
    return Tokenizer.from_pretrained(llama_path, medplib=False)


@pytest.fixture(scope="module")
def medplib(llama_path) -> Tokenizer:
    return Tokenizer.from_pretrained(llama_path, medplib=True)


def test_llama_basics(llama, medplib, sp_ref):
    assert llama.vocab_size == 32000 == sp_ref.get_piece_size()
    assert (llama.bos_id, llama.eos_id) == (1, 2) == (sp_ref.bos_id(), sp_ref.eos_id())
    # architecture.md §2.10 facts
    assert llama.token_to_id(":") == 29901 and llama.token_to_id("\u2581") == 29871
    assert llama.encode("\n", add_bos=False) == sp_ref.encode("\n") == [29871, 13]
    assert llama.encode("ASSISTANT:", add_bos=False) == [319, 1799, 9047, 13566, 29901]
    assert llama.encode("hello") == [1] + sp_ref.encode("hello")  # BOS by default, as tokenizer(text)
    assert llama.encode("hello", add_eos=True, add_bos=False) == sp_ref.encode("hello") + [2]
    assert medplib.vocab_size == 32267
    for i, token in enumerate(MEDPLIB_ADDED):
        assert medplib.token_to_id(token) == 32000 + i
    assert medplib.token_to_id("<SEG>") == 32000 and medplib.token_to_id("<im_end>") == 32266


def test_llama_corpus_vs_sentencepiece(llama, sp_ref, corpus):
    ours = llama.encode_batch(corpus, allowed_special=None, add_bos=False)
    ref = sp_ref.encode(corpus)
    assert _first_mismatch(ours, ref, corpus) is None
    joined = "".join(corpus)
    assert llama.encode(joined, allowed_special=None, add_bos=False) == sp_ref.encode(joined)
    for seq in ours:
        assert llama.decode(seq) == sp_ref.decode(seq)
    # control pieces: decode drops them when skipping, as sp does
    ids = [1] + ours[0][:50] + [2]
    assert llama.decode(ids, skip_special_tokens=True) == sp_ref.decode(ids)
    # byte pieces that are not UTF-8: sentencepiece's one U+FFFD per byte
    assert llama.decode([235, 133]) == sp_ref.decode([235, 133])
    assert llama.decode([243, 162, 155, 131, 3 + 0x41]) == sp_ref.decode([243, 162, 155, 131, 3 + 0x41])


@pytest.fixture(scope="module")
def medplib_ref(llama_path):
    """transformers 5.x slow SentencePiece tokenizer running 4.31's strip lines (module docstring)."""
    backend = pytest.importorskip("transformers.tokenization_utils_sentencepiece")
    from transformers import AddedToken

    ref = backend.SentencePieceBackend(vocab_file=str(llama_path), legacy=True, bos_token="<s>",
                                       eos_token="</s>", unk_token="<unk>")
    ref.add_tokens([AddedToken(t, lstrip=True, rstrip=True, normalized=False, special=False)
                    for t in MEDPLIB_ADDED])
    assert len(ref) == 32267
    return ref


def test_medplib_corpus_vs_transformers(medplib, medplib_ref, corpus):
    docs = _sprinkle(corpus, MEDPLIB_ADDED[:12] + ["<gen_256>", "<im_start>", "<im_end>", "<s>", "</s>"], seed=9)
    ours = medplib.encode_batch(docs, add_bos=False)
    ref = [medplib_ref.encode(d, add_special_tokens=False) for d in docs]
    assert _first_mismatch(ours, ref, docs) is None
    assert sum(x >= 32000 for ids in ours for x in ids) > 1000


def test_medplib_5x_plain_add_tokens_differs(llama_path, medplib):
    """5.x add_tokens(str) does not strip whitespace (4.31 did): we follow 4.31, on purpose."""
    backend = pytest.importorskip("transformers.tokenization_utils_sentencepiece")
    ref = backend.SentencePieceBackend(vocab_file=str(llama_path), legacy=True, bos_token="<s>",
                                       eos_token="</s>", unk_token="<unk>")
    ref.add_tokens(MEDPLIB_ADDED)
    text = "USER: <im_start><image><im_end>\nWhat"
    assert ref.encode(text, add_special_tokens=False) != medplib.encode(text, add_bos=False)


def test_medplib_golden_4_31(medplib, sp_ref):
    """Hand-written expectations of transformers 4.31's slow LlamaTokenizer (legacy=True) with MedPLIB's
    tokens added by add_tokens(str): split on added tokens (longest first), strip Python whitespace on
    both sides of each, SentencePiece-encode every remaining chunk on its own (own dummy prefix)."""
    sp = sp_ref.encode
    # architecture.md §2.10 examples: "USER: <im_start>" -> "USER:" + <im_start>
    assert medplib.encode("USER: <im_start>", add_bos=False) == sp("USER:") + [32265]
    # "<im_end>\nWhat": the newline after the image disappears
    assert medplib.encode("<im_end>\nWhat", add_bos=False) == [32266] + sp("What")
    # a chunk "?" after </region> becomes "▁?" (fresh dummy prefix)
    assert medplib.encode("</region>?", add_bos=False) == [32004] + sp("?")
    assert sp("?") == [medplib.token_to_id("\u2581?")]
    # the full MedPLIB prompt (llava_v1 template), BOS first
    prompt = ("A chat between a curious user and an artificial intelligence assistant. USER: "
              "<im_start><image><im_end>\nSegment the <ref>liver</ref> in <region>mask</region> ASSISTANT:")
    expected = ([1] + sp("A chat between a curious user and an artificial intelligence assistant. USER:")
                + [32265] + sp("<image>") + [32266] + sp("Segment the") + [32001] + sp("liver") + [32002]
                + sp("in") + [32003] + sp("mask") + [32004] + sp("ASSISTANT:"))
    assert medplib.encode(prompt) == expected
    # longest match: <gen_25> is not <gen_2> + "5>"
    assert medplib.encode("<gen_25>", add_bos=False) == [32009 + 24]
    # control pieces are no-split AddedToken(lstrip=False, rstrip=False): spaces kept
    assert medplib.encode("a <s> b", add_bos=False) == sp("a ") + [1] + sp(" b")
    # Python's str.strip whitespace (U+3000 too), all of it
    assert medplib.encode("x \u3000\t\n<SEG>\n\n y", add_bos=False) == sp("x") + [32000] + sp("y")
    # only whitespace between two tokens: the chunk vanishes
    assert medplib.encode("<SEG>   <SEG>", add_bos=False) == [32000, 32000]
    # special tokens off: the added tokens are still matched (they are not special), <s> is text
    assert medplib.encode("<SEG> <s>", add_bos=False, allowed_special=None) == [32000] + sp("<s>")
    # disallowed_special="all" governs only the control pieces, not the always-split added tokens
    assert medplib.encode("a <SEG> b", add_bos=False, allowed_special=None, disallowed_special="all") == \
        sp("a") + [32000] + sp("b")
    with pytest.raises(errors.InvalidArgumentError, match="'<s>'"):
        medplib.encode("a <s> b", allowed_special=None, disallowed_special="all")


def test_medplib_decode_golden_4_31(medplib):
    """4.31 _decode: added tokens and runs of pieces become sub-texts joined by " ";
    LlamaTokenizer.convert_tokens_to_string writes control tokens verbatim, prefixed by " " unless
    first or after another control token, *before* the decoded text that preceded them."""
    ids = medplib.encode("It is <SEG>.", add_bos=False)  # ▁It ▁is <SEG> ▁.
    assert medplib.decode(ids) == "It is <SEG> ."
    ids = medplib.encode("a <s> b", add_bos=False)  # ▁a ▁ <s> ▁ ▁b -> " " + "a " + "<s>" + " b"
    assert ids == [263, 29871, 1, 29871, 289]
    assert medplib.decode(ids) == " a <s> b"
    assert medplib.decode(ids, skip_special_tokens=True) == "a   b"
    ids = medplib.encode("<im_start><image><im_end>\nWhat", add_bos=True)
    assert medplib.decode(ids, skip_special_tokens=True) == "<im_start> <image> <im_end> What"
    # MedPLIB's output path: skip_special_tokens=True keeps <SEG>
    ids = medplib.encode("Sure, it is <SEG>.</s>", add_bos=True)
    assert ids[-1] == 2
    assert medplib.decode(ids, skip_special_tokens=True) == "Sure, it is <SEG> ."


def test_llama_stream(llama, medplib, sp_ref):
    text = "肝脏 😀 🩻 résumé end"
    ids = llama.encode(text, add_bos=False)
    assert 243 in ids  # the emoji goes through byte fallback pieces
    stream = llama.stream(skip_special_tokens=True)
    pieces = [stream.push(i) for i in ids]
    assert "".join(pieces) + stream.flush() == sp_ref.decode(ids) == text
    assert "" in pieces and all("\ufffd" not in p for p in pieces)
    ids = medplib.encode("Sure, it is <SEG>. 肝", add_bos=True)
    stream = medplib.stream(skip_special_tokens=True)
    assert "".join(stream.push(i) for i in ids) + stream.flush() == medplib.decode(ids, skip_special_tokens=True)
    with pytest.raises(errors.UnsupportedError):
        llama.stream(skip_special_tokens=False)


# ========================================================= tokenizer.json

@pytest.fixture(scope="module")
def hf_trained(tmp_path_factory, corpus):
    """A ByteLevel BPE trained by PyPI tokenizers on part of the corpus, with special and added tokens."""
    from tokenizers import AddedToken, decoders, models, pre_tokenizers, trainers

    tok = hf_tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=2000, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(corpus[:60], trainer=trainer)
    tok.add_special_tokens(["<|endoftext|>", "<ref>", "</ref>"])
    tok.add_tokens([AddedToken("<mask>", lstrip=True, rstrip=False)])
    path = tmp_path_factory.mktemp("hf") / "tokenizer.json"
    tok.save(str(path))
    return path, tok


def test_hf_json_trained_bpe(hf_trained, corpus):
    path, ref = hf_trained
    ours = Tokenizer.from_pretrained(path)
    assert ours.kind == "hf_byte_bpe" and ours.vocab_size == ref.get_vocab_size()
    docs = _sprinkle(corpus, ["<|endoftext|>", "<ref>", "</ref>", "<mask>"], seed=5, every=80)
    got = ours.encode_batch(docs)
    want = [e.ids for e in ref.encode_batch(docs, add_special_tokens=False)]
    assert _first_mismatch(got, want, docs) is None
    for seq, doc in zip(got[:200], docs[:200]):
        assert ours.decode(seq) == ref.decode(seq, skip_special_tokens=False)
    assert ours.token_to_id("<ref>") == ref.token_to_id("<ref>")
    # long pieces take the heap merge path (> 96 bytes)
    rng = random.Random(3)
    for alphabet in ("abcdefghijklmnopqrstuvwxyz", "etaoin", "!?.,;:-"):
        word = "".join(rng.choice(alphabet) for _ in range(5000))
        assert ours.encode(word) == ref.encode(word, add_special_tokens=False).ids
    # folder loading finds tokenizer.json
    assert Tokenizer.from_pretrained(path.parent).encode("hello <ref>") == ref.encode("hello <ref>").ids


def _bytes_to_unicode() -> dict[int, str]:
    # GPT-2's printable stand-ins for bytes (the ByteLevel alphabet), written from its definition
    keep = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def test_hf_json_qwen_layout(tmp_path, qwen_path, corpus):
    """Qwen's ranks as an HF file laid out like Qwen2's: NFC normalizer, Split(Qwen regex, Isolated),
    ByteLevel(use_regex=false); merges = every split of every token into two tokens, by merged rank."""
    from tiktoken.load import load_tiktoken_bpe

    # the first 30,000 ranks are a complete BPE vocabulary of their own (every token's halves rank lower)
    ranks = {t: r for t, r in load_tiktoken_bpe(str(qwen_path)).items() if r < 30_000}
    b2u = _bytes_to_unicode()
    enc = {token: "".join(b2u[b] for b in token) for token in ranks}
    merges = []
    for token, rank in ranks.items():
        for k in range(1, len(token)):
            left, right = token[:k], token[k:]
            if left in ranks and right in ranks:
                merges.append((rank, ranks[left], ranks[right], enc[left], enc[right]))
    merges.sort()
    doc = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": 151643 + i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True} for i, t in enumerate(QWEN_SPECIALS[:3])],
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN_PATTERN}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": {enc[t]: r for t, r in ranks.items()},
                  "merges": [[a, b] for _, _, _, a, b in merges]},
    }
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    ref = hf_tokenizers.Tokenizer.from_file(str(path))
    ours = Tokenizer.from_pretrained(path)
    # the file says 151643.. for the added tokens; tokenizers renumbers them after the 30,000 ranks
    assert ours.vocab_size == ref.get_vocab_size() == 30_003
    assert ours.token_to_id("<|im_start|>") == ref.token_to_id("<|im_start|>") == 30_001
    sample = corpus[::3] + _sprinkle(MEDICAL, ["<|endoftext|>", "<|im_start|>"], seed=3, every=3)
    got = ours.encode_batch(sample)
    want = [e.ids for e in ref.encode_batch(sample, add_special_tokens=False)]
    assert _first_mismatch(got, want, sample) is None


# ============================================================= bad input

def _mini_ranks(extra: bytes = b"") -> bytes:
    import base64

    lines = [base64.b64encode(bytes([b])) + b" " + str(b).encode() for b in range(256)]
    lines.append(base64.b64encode(b"ab") + b" 256")
    return b"\n".join(lines) + b"\n" + extra


def test_bad_vocab_files(tmp_path):
    ok = Tokenizer.from_tiktoken_bytes(_mini_ranks(), special_tokens=["<|end|>"])
    assert ok.vocab_size == 258
    assert ok.encode("abab<|end|>") == [256, 256, 257]
    with pytest.raises(errors.FormatError, match="line 258"):
        Tokenizer.from_tiktoken_bytes(_mini_ranks(b"not-base64! 257\n"))
    with pytest.raises(errors.FormatError, match="line 258"):
        Tokenizer.from_tiktoken_bytes(_mini_ranks(b"YWJj\n"))  # no rank
    with pytest.raises(errors.FormatError, match="line 258"):
        Tokenizer.from_tiktoken_bytes(_mini_ranks(b"YWJj -1\n"))
    with pytest.raises(errors.FormatError, match="rank 256 already given on line 257"):
        Tokenizer.from_tiktoken_bytes(_mini_ranks(b"YWJj 256\n"))  # duplicate rank
    with pytest.raises(errors.FormatError, match="repeats the token"):
        Tokenizer.from_tiktoken_bytes(_mini_ranks(b"YWI= 257\n"))  # duplicate token "ab"
    with pytest.raises(errors.FormatError, match="rank 257 is missing"):
        Tokenizer.from_tiktoken_bytes(_mini_ranks(b"YWJj 258\n\n"))  # gap in ranks (258 lines + 1 blank)
    # a rank no file of this length can hold: refused before it sizes an allocation (the fuzzer found a
    # 20-byte file that made the loader allocate and touch 2.4 GB)
    started = time.perf_counter()
    with pytest.raises(errors.FormatError, match="impossible in a file of 1 lines"):
        Tokenizer.from_tiktoken_bytes(b"IQ== 99999999\n")
    assert time.perf_counter() - started < 1
    with pytest.raises(errors.FormatError, match="byte 0x"):
        Tokenizer.from_tiktoken_bytes(b"YQ== 0\n")  # bytes without a token
    with pytest.raises(errors.FormatError):
        Tokenizer.from_tiktoken_bytes(b"")
    with pytest.raises(errors.FormatError, match="regex"):
        Tokenizer.from_tiktoken_bytes(_mini_ranks(), pattern="(unclosed")
    with pytest.raises(errors.InvalidArgumentError, match="already in the vocabulary"):
        Tokenizer.from_tiktoken_bytes(_mini_ranks(), special_tokens=["ab"])
    # files on disk: bad ranks, empty, garbage SentencePiece, broken / unsupported JSON, missing
    bad = tmp_path / "qwen.tiktoken"
    bad.write_bytes(_mini_ranks(b"@@@@ 257\n"))
    with pytest.raises(errors.FormatError, match="qwen.tiktoken: line 258"):
        Tokenizer.from_pretrained(bad)
    empty = tmp_path / "empty.model"
    empty.write_bytes(b"")
    with pytest.raises(errors.FormatError):
        Tokenizer.from_pretrained(empty)
    garbage = tmp_path / "tokenizer.model"
    garbage.write_bytes(b"\x0a\xff\xff\xff\xff\x0f" + b"x" * 20)
    with pytest.raises(errors.FormatError):
        Tokenizer.from_pretrained(garbage)
    broken = tmp_path / "broken.json"
    broken.write_text('{"model": {"type": "BPE", "vocab": {"a": 0}')
    with pytest.raises(errors.FormatError, match="JSON"):
        Tokenizer.from_pretrained(broken)
    wordpiece = tmp_path / "wp.json"
    wordpiece.write_text(json.dumps({"model": {"type": "WordPiece", "vocab": {"a": 0}}}))
    with pytest.raises(errors.UnsupportedError, match="WordPiece"):
        Tokenizer.from_pretrained(wordpiece)
    with pytest.raises(errors.NotFoundError):
        Tokenizer.from_pretrained(tmp_path / "missing")
    (tmp_path / "no_vocab").mkdir()
    with pytest.raises(errors.NotFoundError, match="holds none"):
        Tokenizer.from_pretrained(tmp_path / "no_vocab")


def test_truncated_real_vocabularies(qwen_path, llama_path):
    data = qwen_path.read_bytes()
    cut = data[:data.index(b"\n", len(data) // 2) + 5]  # ends inside a line (4 base64 chars, no rank)
    assert not cut.endswith(b"\n")
    with pytest.raises(errors.FormatError, match="line"):
        Tokenizer.from_tiktoken_bytes(cut)
    model = llama_path.read_bytes()
    for n in (1, 100, len(model) // 2, len(model) - 3):
        with pytest.raises(errors.FormatError):
            medground._C.Tokenizer.from_bytes(model[:n], "sentencepiece")


def test_bad_text_everywhere(qwen, llama, medplib, hf_trained):
    hf = Tokenizer.from_pretrained(hf_trained[0])
    for tok in (qwen, llama, medplib, hf):
        assert tok.encode("", add_bos=False) == []
        assert tok.encode(b"", add_bos=False) == []
        assert tok.decode([]) == ""
        with pytest.raises(errors.InvalidArgumentError, match="byte 3"):
            tok.encode(b"abc\xff", add_bos=False)
        with pytest.raises(errors.InvalidArgumentError, match="byte 1"):
            tok.encode(b"a\xe2\x82", add_bos=False)  # truncated character
        with pytest.raises(errors.InvalidArgumentError, match="byte 0"):
            tok.encode(b"\xed\xa0\x80", add_bos=False)  # UTF-8-encoded surrogate
        with pytest.raises(errors.InvalidArgumentError, match="surrogate"):
            tok.encode("a\ud800b", add_bos=False)
        with pytest.raises(errors.InvalidArgumentError, match="text 1 of the batch"):
            tok.encode_batch(["ok", b"\xff"], add_bos=False)
        with pytest.raises(errors.InvalidArgumentError):
            tok.encode(12, add_bos=False)
        assert tok.encode("a\x00b", add_bos=False) == tok.encode(b"a\x00b", add_bos=False) != []
    assert llama.encode("") == [1]
    with pytest.raises(errors.InvalidArgumentError, match="BOS"):
        qwen.encode("x", add_bos=True)


def test_50mb_text_is_time_bounded(qwen, llama, corpus):
    text = "".join(corpus)
    big = text * (50_000_000 // len(text.encode("utf-8")) + 1)
    assert len(big.encode("utf-8")) >= 50_000_000
    started = time.perf_counter()
    ids = qwen.encode(big, allowed_special=None, normalize=False)
    qwen_seconds = time.perf_counter() - started
    unit = qwen.encode(text, allowed_special=None, normalize=False)
    assert ids[:len(unit)] == unit and len(ids) >= 40 * len(unit)
    del ids
    # SentencePiece on a fifth of it (the same code path per word; keeps the test short)
    started = time.perf_counter()
    ids = llama.encode(big[:len(big) // 5], allowed_special=None, add_bos=False)
    llama_seconds = time.perf_counter() - started
    assert len(ids) > 2_000_000
    # generous bounds (a shared 2-core machine): quadratic behaviour would take hours, not seconds
    assert qwen_seconds < 90 and llama_seconds < 60, (qwen_seconds, llama_seconds)
    # one 1 MB regex piece (no tiktoken reference: its merge loop is quadratic): completes, round-trips
    word = "a" * 1_000_000
    started = time.perf_counter()
    ids = qwen.encode(word)
    assert time.perf_counter() - started < 30
    assert qwen.decode(ids) == word


def test_gguf_embedded_vocabularies(tmp_path, qwen_path, llama_path, qwen, medplib, llama):
    """`medground convert` embeds the files as GGUF metadata; written here by the PyPI gguf package."""
    gguf = pytest.importorskip("gguf")

    def write(name, arch, key, value, vtype, sub=None):
        path = tmp_path / name
        writer = gguf.GGUFWriter(str(path), arch)
        writer.add_key_value(key, value, vtype, sub)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        return path

    text = "Picture 1:<img>a.png</img> the <ref>liver</ref> USER: <im_start> <SEG> 肝 😀"
    path = write("q.gguf", "bird", "medground.tokenizer.qwen_tiktoken", qwen_path.read_text(encoding="utf-8"),
                 gguf.GGUFValueType.STRING)
    assert Tokenizer.from_pretrained(path).encode(text) == qwen.encode(text)
    model = list(llama_path.read_bytes())
    path = write("m.gguf", "medplib", "medground.tokenizer.sentencepiece_model", model,
                 gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.UINT8)
    loaded = Tokenizer.from_pretrained(path)
    assert loaded.family == "medplib" and loaded.encode(text) == medplib.encode(text)
    path = write("l.gguf", "llama", "medground.tokenizer.sentencepiece_model", model,
                 gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.UINT8)
    loaded = Tokenizer.from_pretrained(path)
    assert loaded.family == "llama" and loaded.encode(text) == llama.encode(text)
    path = write("none.gguf", "bird", "general.name", "no tokenizer", gguf.GGUFValueType.STRING)
    with pytest.raises(errors.NotFoundError, match="no embedded tokenizer"):
        Tokenizer.from_pretrained(path)


@pytest.mark.parametrize("add_prefix_space", [False, True])
def test_hf_json_added_token_rules(tmp_path, corpus, add_prefix_space):
    """tokenizers' own numbering of added tokens (file ids are ignored on load), a token added twice,
    an empty one, lstrip/rstrip, ByteLevel add_prefix_space per chunk, skip_special_tokens decode."""
    from tokenizers import AddedToken, decoders, models, pre_tokenizers, trainers

    tok = hf_tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1000, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(corpus[:40], trainer=trainer)
    tok.add_tokens(["the", "<x>", AddedToken("<y>", rstrip=True), AddedToken("<z>", lstrip=True, rstrip=True)])
    tok.add_special_tokens(["<|end|>", "<x>"])
    doc = json.loads(tok.to_str())
    for i, added in enumerate(doc["added_tokens"]):
        added["id"] = 5000 + 3 * i  # wrong on purpose: tokenizers renumbers (with a warning)
    doc["added_tokens"].append({"id": 1, "content": "", "special": False, "lstrip": False, "rstrip": False,
                                "normalized": False, "single_word": False})
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(doc))
    ref = hf_tokenizers.Tokenizer.from_file(str(path))
    ours = Tokenizer.from_pretrained(path)
    assert ours.vocab_size == ref.get_vocab_size()
    for token in ("the", "<x>", "<y>", "<z>", "<|end|>"):
        assert ours.token_to_id(token) == ref.token_to_id(token)
    sample = _sprinkle(corpus[::4], ["the", "<x>", "<y>", "<z>", "<|end|>", " <y> ", "x<z>y"], seed=1, every=10)
    got = ours.encode_batch(sample)
    want = [e.ids for e in ref.encode_batch(sample, add_special_tokens=False)]
    assert _first_mismatch(got, want, sample) is None
    for seq in got[:60]:
        assert ours.decode(seq) == ref.decode(seq, skip_special_tokens=False)
        assert ours.decode(seq, skip_special_tokens=True) == ref.decode(seq, skip_special_tokens=True)


def test_random_strings_and_ids(qwen, qwen_ref, llama, sp_ref, medplib, medplib_ref):
    """Differential test on random strings over an adversarial alphabet (control and odd whitespace,
    U+2581 itself, combining marks, emoji parts, special and added token texts) and random id lists
    (byte pieces up to <0xFF>, split UTF-8). Found the <0xFF> decode bug (byte value + 1 overflowed)."""
    alphabet = list(" \t\n\r\x0b\x0c\x00\x1c\x85\xa0\u2581\u3000\u2028 aAbBeEtT'sSlLdD0123456789.,!?<>|/_-()"
                    "éÉñ肝脏😀🩻\u0301\u200d\ufeff\U0001F3FD") + [
        "<SEG>", "<s>", "</s>", "<unk>", "<ref>", "</ref>", "<|endoftext|>", "<|im_start|>", "<box>", "<im_end>",
        "<gen_1>", "<gen_12>", "'s", "'LL", "  ", "\n\n", "\r\n"]
    rng = random.Random(2024)
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) for _ in range(3000)]
    assert _first_mismatch(qwen.encode_batch(texts, allowed_special=None, normalize=False),
                           qwen_ref.encode_ordinary_batch(texts, num_threads=1), texts) is None
    assert _first_mismatch(qwen.encode_batch(texts, expand_images=False),
                           [qwen_ref.encode(unicodedata.normalize("NFC", t), allowed_special="all") for t in texts],
                           texts) is None
    assert _first_mismatch(llama.encode_batch(texts, allowed_special=None, add_bos=False), sp_ref.encode(texts),
                           texts) is None
    assert _first_mismatch(medplib.encode_batch(texts, add_bos=False),
                           [medplib_ref.encode(t, add_special_tokens=False) for t in texts], texts) is None
    assert llama.decode([258, 3, 13]) == sp_ref.decode([258, 3, 13]) == "\ufffd\x00\n"
    for _ in range(3000):
        n = rng.randint(0, 12)
        ids = [rng.choice([rng.randrange(256), rng.randrange(151643), rng.randrange(151643, 151857)]) for _ in range(n)]
        assert qwen.decode(ids) == qwen_ref.decode(ids)
        stream = qwen.stream()
        assert "".join(stream.push(i) for i in ids) + stream.flush() == qwen.decode(ids)
        ids = [rng.choice([rng.randrange(3, 259), rng.randrange(3, 32000), 29871, 13]) for _ in range(n)]
        assert llama.decode(ids) == llama.decode(ids, skip_special_tokens=True) == sp_ref.decode(ids)
        stream = llama.stream(skip_special_tokens=True)
        assert "".join(stream.push(i) for i in ids) + stream.flush() == sp_ref.decode(ids)


# ------------------------------------------- synthetic SentencePiece models

def _pb_varint(v: int) -> bytes:
    out = b""
    while True:
        c, v = v & 0x7F, v >> 7
        if v:
            out += bytes([c | 0x80])
        else:
            return out + bytes([c])


def _pb_bytes(number: int, payload: bytes) -> bytes:
    return _pb_varint(number << 3 | 2) + _pb_varint(len(payload)) + payload


def _pb_int(number: int, value: int) -> bytes:
    return _pb_varint(number << 3) + _pb_varint(value)


def _sp_model(byte_fallback=True, remove_extra_whitespaces=False, add_dummy_prefix=True, cross_space=False,
              user_defined=False) -> bytes:
    """A tiny BPE ModelProto written from sentencepiece_model.proto's field numbers."""
    import struct

    def piece(text, score, kind):
        return _pb_bytes(1, _pb_bytes(1, text.encode()) + _pb_varint(2 << 3 | 5) + struct.pack("<f", score)
                         + _pb_int(3, kind))

    model = piece("<unk>", 0, 2) + piece("<s>", 0, 3) + piece("</s>", 0, 3)
    if byte_fallback:
        model += b"".join(piece(f"<0x{v:02X}>", 0, 6) for v in range(256))
    normal = ["▁t", "he", "▁the", "▁a", "an", "▁an", "in", "ing", "▁▁", "▁▁▁▁", "er", "肝", "▁", "t", "h", "e", "a",
              "n", "i", "g", "r", "1", "2", ".", "th", "▁th", "ng"]
    if cross_space:
        normal += ["e▁t", "n▁▁"]  # pieces joining a character to a following U+2581
    for i, text in enumerate(normal):
        model += piece(text, -1.0 - 0.5 * i, 1)
    if user_defined:
        model += piece("<u>", 0, 4) + piece("ab", 0, 4)
    trainer = _pb_int(3, 2) + _pb_int(35, int(byte_fallback)) + _pb_int(40, 0) + _pb_int(41, 1) + _pb_int(42, 2)
    normalizer = (_pb_bytes(1, b"identity") + _pb_int(3, int(add_dummy_prefix))
                  + _pb_int(4, int(remove_extra_whitespaces)) + _pb_int(5, 1))
    return model + _pb_bytes(2, trainer) + _pb_bytes(3, normalizer)


@pytest.mark.parametrize("options", [
    {}, {"remove_extra_whitespaces": True}, {"add_dummy_prefix": False}, {"cross_space": True},
    {"user_defined": True}, {"byte_fallback": False},
    {"byte_fallback": False, "remove_extra_whitespaces": True, "cross_space": True, "user_defined": True},
], ids=lambda o: ",".join(o) or "plain")
def test_sentencepiece_synthetic_models(options):
    """Options LLaMA's model does not use, vs sentencepiece itself. Found two bugs: a piece like "n▁▁"
    (U+2581 after a 1-byte character) was missed by the word-split safety check, and trailing U+2581
    from the input survived remove_extra_whitespaces."""
    data = _sp_model(**options)
    ref = spm.SentencePieceProcessor(model_proto=data)
    ours = medground._C.Tokenizer.from_bytes(data, "sentencepiece")
    alphabet = list(" \t\nabcehginrt12.肝😀▁x") + ["<u>", "ab", "the", "  ", "   "]
    rng = random.Random(len(data))
    for _ in range(1500):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        ids = ref.encode(text)
        assert ours.encode(text, 1) == ids, text
        if 0 not in ids:
            assert ours.decode(ids, True) == ref.decode(ids), ids


def test_llama_folder_with_added_tokens_json(tmp_path, llama_path, medplib, llama):
    """A MedPLIB-style folder: tokenizer.model + added_tokens.json (ids 32000..32266)."""
    folder = tmp_path / "medplib"
    folder.mkdir()
    (folder / "tokenizer.model").symlink_to(llama_path)
    (folder / "added_tokens.json").write_text(json.dumps({t: 32000 + i for i, t in enumerate(MEDPLIB_ADDED)}))
    text = "USER: <im_start><image><im_end>\nWhat is <region>mask</region>? ASSISTANT: <SEG> . <gen_7>"
    loaded = Tokenizer.from_pretrained(folder)
    assert loaded.family == "medplib" and loaded.vocab_size == 32267
    assert loaded.encode(text) == medplib.encode(text)
    assert Tokenizer.from_pretrained(folder, medplib=False).encode(text) == llama.encode(text)
    # a gap in the ids is refused, naming the token
    (folder / "added_tokens.json").write_text(json.dumps({"<SEG>": 32000, "<ref>": 32002}))
    with pytest.raises(errors.FormatError, match="<ref>"):
        Tokenizer.from_pretrained(folder)
    (folder / "added_tokens.json").write_text("{not json")
    with pytest.raises(errors.FormatError, match="not JSON"):
        Tokenizer.from_pretrained(folder)
    # no added_tokens.json, but a tokenizer_config.json naming <SEG>: the built-in MedPLIB list
    (folder / "added_tokens.json").unlink()
    (folder / "tokenizer_config.json").write_text(json.dumps({"additional_special_tokens": ["<SEG>"]}))
    assert Tokenizer.from_pretrained(folder).encode(text) == medplib.encode(text)
    # a Qwen folder
    qwen_folder = tmp_path / "qwen"
    qwen_folder.mkdir()
    (qwen_folder / "qwen.tiktoken").symlink_to(shared_path("tokenizers", "qwen.tiktoken"))
    assert Tokenizer.from_pretrained(qwen_folder).family == "qwen"


def test_qwen_ascii_fast_path(qwen, qwen_ref):
    """The hand-written ASCII shortcut for Qwen's pattern (bpe.c qwen_fast_piece) next to every ASCII
    byte and a few non-ASCII letters/marks/numbers that can continue or break a run; per text and as one
    long text (the piece cache on)."""
    alphabet = [chr(c) for c in range(128)] + ["é", "ж", "肝", "\u00a0", "\u0301", "ǅ", "Ⅻ", "٣"]
    rng = random.Random(77)
    for size in (5, 40, 300):
        texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, size))) for _ in range(4000)]
        assert _first_mismatch(qwen.encode_batch(texts, allowed_special=None, normalize=False),
                               qwen_ref.encode_ordinary_batch(texts, num_threads=1), texts) is None
        joined = "".join(texts)
        assert qwen.encode(joined, allowed_special=None, normalize=False) == qwen_ref.encode_ordinary(joined)


# ------------------------------------------------ real transformers 4.31

# Runs under a Python with transformers==4.31.0 (MedPLIB's pin) + sentencepiece:
#   python -c "$TF431_SCRIPT" <llama tokenizer.model> <texts.json> <out.json>
# It builds the slow LlamaTokenizer as MedPLIB does (from_pretrained of a folder holding tokenizer.model and
# LLaVA/Vicuna's tokenizer_config.json, use_fast=False -> legacy=True, then add_tokens of the 267 tokens) and
# writes ids of tokenizer(text), decode and decode(skip_special_tokens=True).
# tests/golden/tokenizer_transformers_4_31.json was written by it (transformers 4.31.0, sentencepiece 0.2.x).
TF431_SCRIPT = r'''
import json, os, sys, tempfile
import transformers
assert transformers.__version__ == "4.31.0", transformers.__version__
model, texts_path, out_path = sys.argv[1:4]
folder = tempfile.mkdtemp()
os.symlink(os.path.abspath(model), os.path.join(folder, "tokenizer.model"))
added = lambda c: {"__type": "AddedToken", "content": c, "lstrip": False, "normalized": True, "rstrip": False,
                   "single_word": False}
json.dump({"add_bos_token": True, "add_eos_token": False, "bos_token": added("<s>"), "eos_token": added("</s>"),
           "unk_token": added("<unk>"), "clean_up_tokenization_spaces": False, "model_max_length": 2048,
           "pad_token": None, "sp_model_kwargs": {}, "tokenizer_class": "LlamaTokenizer"},
          open(os.path.join(folder, "tokenizer_config.json"), "w"))
tok = transformers.AutoTokenizer.from_pretrained(folder, use_fast=False, padding_side="right", model_max_length=2048)
tok.pad_token = tok.unk_token
names = (["<SEG>", "<ref>", "</ref>", "<region>", "</region>", "<sr>", "</sr>", "<mask>", "</mask>"]
         + [f"<gen_{i}>" for i in range(1, 257)] + ["<im_start>", "<im_end>"])
assert tok.add_tokens(names) == 267 and len(tok) == 32267
out = []
for text in json.load(open(texts_path)):
    ids = tok(text).input_ids
    out.append({"text": text, "ids": ids, "decode": tok.decode(ids),
                "decode_skip": tok.decode(ids, skip_special_tokens=True)})
json.dump(out, open(out_path, "w"), ensure_ascii=False)
'''


def _check_4_31_rows(medplib, rows):
    for row in rows:
        assert medplib.encode(row["text"]) == row["ids"], row["text"]
        assert medplib.decode(row["ids"]) == row["decode"], row["text"]
        assert medplib.decode(row["ids"], skip_special_tokens=True) == row["decode_skip"], row["text"]


def test_medplib_vs_transformers_4_31_golden(medplib):
    """ids, decode and decode(skip_special_tokens=True) saved from the real transformers 4.31.0 slow
    tokenizer (see TF431_SCRIPT): the medical phrases, the whitespace/decoding edge cases of §2.10 and 60
    fragments of the sprinkled corpus."""
    golden = json.loads((pathlib.Path(__file__).parent / "golden" / "tokenizer_transformers_4_31.json")
                        .read_text(encoding="utf-8"))
    assert "4.31.0" in golden["generator"] and len(golden["cases"]) >= 90
    _check_4_31_rows(medplib, golden["cases"])


def test_medplib_vs_transformers_4_31_live(tmp_path, llama_path, medplib, corpus):
    """The whole sprinkled corpus through a real transformers 4.31.0 (set MEDGROUND_TF431_PYTHON to a
    Python that has it, e.g. a venv with transformers==4.31.0 tokenizers==0.13.3 sentencepiece numpy<2)."""
    import os
    import subprocess

    python = os.environ.get("MEDGROUND_TF431_PYTHON")
    if not python:
        pytest.skip("MEDGROUND_TF431_PYTHON (a Python with transformers==4.31.0) is not set")
    docs = _sprinkle(corpus, MEDPLIB_ADDED[:12] + ["<gen_256>", "<im_start>", "<im_end>", "<s>", "</s>", "<unk>"],
                     seed=9)
    texts = tmp_path / "texts.json"
    texts.write_text(json.dumps(docs + MEDICAL, ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "out.json"
    subprocess.run([python, "-c", TF431_SCRIPT, str(llama_path), str(texts), str(out)], check=True,
                   capture_output=True, timeout=600)
    rows = json.loads(out.read_text(encoding="utf-8"))
    assert len(rows) == len(docs) + len(MEDICAL)
    _check_4_31_rows(medplib, rows)


# ------------------------------------------------ real Qwen-VL tokenization_qwen.py

# Runs Qwen-VL's own tokenizer (tokenization_qwen.py of the Qwen-VL-Chat model repo; a copy is in GitHub
# x1ngzai/Qwen-VL-Chat-Int4) under a Python with transformers 4.31 + tiktoken (+ pillow, matplotlib, which
# it imports; the trailing visualiser that needs torch is not executed):
#   python -c "$QWEN_SCRIPT" <tokenization_qwen.py> <qwen.tiktoken> <texts.json> <out.json>
# Per text: ids of tokenizer(text) (NFC, all specials, the <img> rule), decode and skip-special decode, or
# the error it raised. tests/golden/tokenizer_qwen_vl.json was written by it.
QWEN_SCRIPT = r'''
import json, sys, types
source_path, vocab, texts_path, out_path = sys.argv[1:5]
source = open(source_path).read()
source = source[:source.index("\nimport colorsys")]
module = types.ModuleType("tokenization_qwen")
exec(compile(source, "tokenization_qwen.py", "exec"), module.__dict__)
tok = module.QWenTokenizer(vocab)
assert len(tok) == 151860
out = []
for text in json.load(open(texts_path)):
    row = {"text": text}
    try:
        row["ids"] = tok(text).input_ids
        row["decode"] = tok.decode(row["ids"])
        row["decode_skip"] = tok.decode(row["ids"], skip_special_tokens=True)
    except Exception as error:
        row["error"] = type(error).__name__ + ": " + str(error)
    out.append(row)
json.dump(out, open(out_path, "w"), ensure_ascii=False)
'''


def _check_qwen_rows(qwen, rows):
    for row in rows:
        text = row["text"]
        if "ids" not in row:  # Qwen raised while encoding: we refuse too, with a typed error
            with pytest.raises(errors.InvalidArgumentError):
                qwen.encode(text)
            continue
        assert qwen.encode(text) == row["ids"], text
        if "decode" in row:
            assert qwen.decode(row["ids"]) == row["decode"], text
            assert qwen.decode(row["ids"], skip_special_tokens=True) == row["decode_skip"], text
        else:
            # Qwen's _decode fails on a path of exactly 256 bytes (no <imgpad> to find): we decode it
            assert "is not in list" in row["error"] and qwen.decode(row["ids"]) == unicodedata.normalize("NFC", text)


def _qwen_script_texts(corpus):
    tags = [t for t in QWEN_SPECIALS if t not in ("<img>", "</img>")]
    edge = ["Picture 1:<img>/data/ct/amos_0001.png</img>\nWhere is the liver?",
            "<img>a</img><img>图像/肝脏 😀.png</img> two images <ref>x</ref><box>(1,2),(3,4)</box>",
            "<img></img>", "no image </img> stray close", "<img>" + "p" * 255 + "</img>",
            "<img>" + "p" * 256 + "</img>", "<img>" + "p" * 257 + "</img>", "<img>/no/close.png", "e\u0301 café",
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nPicture 1:<img>x.png</img>"
            "\n<ref>the liver</ref><|im_end|>\n<|im_start|>assistant\n", "<img>e\u0301</img>", "", "<|endoftext|>",
            "<|extra_204|><|extra_0|>", "<img><ref>x</ref></img>"]
    return MEDICAL + edge, _sprinkle(corpus, tags, seed=7)


def test_qwen_vs_tokenization_qwen_golden(qwen):
    """Saved output of Qwen-VL's own tokenizer (QWEN_SCRIPT): medical phrases, <img>/<ref>/<box>/ChatML
    edge cases (including the ones it rejects) and 60 fragments of the sprinkled corpus."""
    golden = json.loads((pathlib.Path(__file__).parent / "golden" / "tokenizer_qwen_vl.json").read_text(encoding="utf-8"))
    assert len(golden["cases"]) >= 90 and sum("error" in r for r in golden["cases"]) >= 3
    _check_qwen_rows(qwen, golden["cases"])


def test_qwen_vs_tokenization_qwen_live(tmp_path, qwen_path, qwen, corpus):
    """The whole sprinkled corpus through Qwen-VL's tokenization_qwen.py: set MEDGROUND_TF431_PYTHON and
    MEDGROUND_QWEN_TOKENIZATION_PY (the file's path)."""
    import os
    import subprocess

    python, source = os.environ.get("MEDGROUND_TF431_PYTHON"), os.environ.get("MEDGROUND_QWEN_TOKENIZATION_PY")
    if not python or not source:
        pytest.skip("MEDGROUND_TF431_PYTHON / MEDGROUND_QWEN_TOKENIZATION_PY are not set")
    edge, docs = _qwen_script_texts(corpus)
    texts = tmp_path / "texts.json"
    texts.write_text(json.dumps(edge + docs, ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "out.json"
    subprocess.run([python, "-c", QWEN_SCRIPT, source, str(qwen_path), str(texts), str(out)], check=True,
                   capture_output=True, timeout=600)
    rows = json.loads(out.read_text(encoding="utf-8"))
    assert len(rows) == len(edge) + len(docs)
    _check_qwen_rows(qwen, rows)

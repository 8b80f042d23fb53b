"""Accuracy of the real default models against transformers (docs/accuracy.md).

The references in tests/golden/default_model/<name>.json were computed by
scripts/ref_default_model.py: Hugging Face transformers running the same GGUF file
(dequantized by transformers, float32, eager attention, CPU) over a fixed slice of
war-and-peace.txt whose ids our tokenizer and HF's tokenizer agree on. Both sides are fed
the same committed ids, so these tests compare the forward pass only.

For each model and three configurations, each naming its KV cache (`--kv-type`):
  - exact (`--exact --kv-type f32`: float activations, F32 cache, transformers up to float
    rounding): top-1 next-token agreement with transformers' top-1 >= 99% and
    |ppl - ref| / ref <= 1% (the issue's bars);
  - q16 (`--act-type q16 --kv-type f16`: 16-bit activations, i.e. 8-bit blocks plus their
    8-bit residual, with the default F16 cache; the accurate mode users pick): the issue's
    bars again, top-1 >= 99%, and perplexity within 0.1%;
  - fast (`--kv-type f16`, i.e. the defaults: 8-bit activations and integer dots as in
    llama.cpp, F16 cache): the bounds measured and documented in docs/accuracy.md
    (top-1 >= 93%, >= 97% where the reference margin is >= 0.1, perplexity within 1.5%).
Checks, per configuration:
  - `lctl eval --ids-file` over the first N + 1 ids (N = 512; 1024 for Gemma): top-1
    agreement and perplexity against the bars above;
  - the top-5 ids/logits at a few positions (close logits, same top-1);
  - `lctl run --temp 0` on a fixed prompt reproduces transformers' greedy tokens (up to the
    first step whose reference top-1/top-2 margin is below the configuration's tie, where
    either is right).

No torch here. Skips loudly when the model file is absent (scripts/fetch_models.sh).
TM_ACCURACY_POSITIONS overrides N (at most the reference's n_pos).
"""
import json
import os
import pathlib

import pytest

from conftest import ROOT, run

GOLDEN = ROOT / "tests" / "golden" / "default_model"
NAMES = sorted(p.stem for p in GOLDEN.glob("*.json"))
# Scored positions per model in CI: 512 (the figure); Gemma all 1024 committed ones,
# so that its 512-token sliding window is crossed. TM_ACCURACY_POSITIONS overrides (<= the
# reference's n_pos).
CI_POSITIONS = {"gemma-3-270m": 1024}
N_POS_ENV = os.environ.get("TM_ACCURACY_POSITIONS")
# Configurations: lctl flags (the KV cache always named) and bars, measured values in
# docs/accuracy.md (2 threads, AVX-512 machine), Qwen / Gemma:
#   exact:     the requirement. Measured top-1 100% / 100%, perplexity -2e-7 / -3e-7,
#              top-5 logits within 6e-5.
#   q16:       16-bit activations with the F16 cache. Measured top-1 99.8% (one flip, at a
#              reference margin of 0.003, as the float path with the F16 cache) / 99.9%,
#              perplexity -2.1e-4 / -2e-6; the float path with the F16 cache alone (before
#              q16 existed): top-1 99.8% / 100%, top-5 logits within 0.012, greedy margins
#              moved by at most 0.011 (tie 0.05 is safe).
#   fast:      what 8-bit activations cost (with the F16 cache, as shipped). Measured top-1
#              98.0% / 95.0% (99.8% / 97.9% where the margin is >= 0.1), perplexity +0.04% /
#              +0.82%, top-5 logits within 0.20 / 0.41. 8-bit activations move the greedy
#              steps' margins by up to 0.26 with either cache (decoded one token at a time:
#              Qwen step 10, reference 0.17 -> 0.003 with F16; Gemma step 5, 0.256 -> 0.014
#              with F16 and 0.048 with F32; step 6, 0.278 -> 0.035 with F32), so the fast greedy
#              run is compared up to the first reference margin below 0.3 (Qwen 9 tokens, Gemma
#              4); below that, which token wins depends on 8-bit rounding, not on correctness.
# tie: a greedy step whose reference top-1/top-2 logits differ by less is a tie.
# top5: the largest |logit - ref| allowed over the top-5 samples (a wrong kernel moves them
# by much more than any of these).
CONFIGS = {
    "exact": dict(flags=["--exact", "--kv-type", "f32"], agree=0.99, agree_clear=0.99,
                  ppl=0.01, top5=1e-3, tie=1e-3),
    "q16": dict(flags=["--act-type", "q16", "--kv-type", "f16"], agree=0.99, agree_clear=0.99,
                ppl=1e-3, top5=0.05, tie=0.05),
    "fast": dict(flags=["--kv-type", "f16"], agree=0.93, agree_clear=0.97, ppl=0.015,
                 top5=1.0, tie=0.3),
}
MODES = sorted(CONFIGS)
NEAR_TIE = 0.1  # agreement is also counted over positions whose reference margin is >= this
TOP5_TOP1_MARGIN = 0.5  # top-1 must be equal where the reference margin is at least this


def _ref(name):
    return json.loads((GOLDEN / f"{name}.json").read_text())


def _model_path(models_dir, ref):
    p = models_dir / ref["model"]
    if not p.exists():
        pytest.skip(f"SKIPPED: model file {p} is absent (scripts/fetch_models.sh fetches it)")
    return p


@pytest.fixture(scope="module", params=[(n, m) for n in NAMES for m in MODES],
                ids=[f"{n}-{m}" for n in NAMES for m in MODES])
def evaluated(request, lctl, models_dir, tmp_path_factory):
    """Runs `lctl eval` once per model and mode; the tests below read its outputs."""
    name, mode = request.param
    ref = _ref(name)
    model = _model_path(models_dir, ref)
    n_pos = min(int(N_POS_ENV) if N_POS_ENV else CI_POSITIONS.get(name, 512), ref["n_pos"])
    d = tmp_path_factory.mktemp(name)
    ids_file = d / "ids.txt"
    ids_file.write_text(" ".join(map(str, ref["ids"][: n_pos + 1])) + "\n")
    r = run([lctl, "eval", model, "--ids-file", ids_file, "--top1-out", d / "top1.txt",
             "--logits-out", d / "logits.tsv", "--top-k", 5] + CONFIGS[mode]["flags"])
    assert r.returncode == 0, r.stderr.decode()
    out = dict(line.split(": ", 1) for line in r.stdout.decode().splitlines() if ": " in line)
    print(f"\n{name} {mode}: {r.stdout.decode().strip()} | {r.stderr.decode().strip()}")
    rows = [line.split("\t") for line in (d / "logits.tsv").read_text().splitlines()]
    top5 = {int(row[0]): [(int(a), float(b)) for a, b in (c.split(":") for c in row[4:])]
            for row in rows}
    return dict(name=name, mode=mode, bars=CONFIGS[mode], ref=ref, model=model, n_pos=n_pos,
                out=out, top5=top5,
                top1=[int(x) for x in (d / "top1.txt").read_text().split()])


def test_top1_agreement(evaluated):
    ref, n = evaluated["ref"], evaluated["n_pos"]
    got, want = evaluated["top1"], ref["top1"][:n]
    assert len(got) == n
    diff = [i for i in range(n) if got[i] != want[i]]
    agree = 1 - len(diff) / n
    clear = [i for i in range(n) if ref["margin"][i] >= NEAR_TIE]
    agree_clear = sum(got[i] == want[i] for i in clear) / len(clear)
    print(f"{evaluated['name']}: top-1 agreement {agree:.4f} over {n} positions "
          f"({agree_clear:.4f} over the {len(clear)} with a reference margin >= {NEAR_TIE}); "
          f"differ at {[(i, got[i], want[i], ref['margin'][i]) for i in diff]} "
          "(pos, ours, ref, ref top-1/top-2 margin)")
    bars = evaluated["bars"]
    assert agree >= bars["agree"], (f"{evaluated['mode']}: top-1 agreement {agree:.4f} < "
                                    f"{bars['agree']} (differ at {diff}); see docs/accuracy.md")
    assert agree_clear >= bars["agree_clear"]


def test_perplexity(evaluated):
    ref, n = evaluated["ref"], evaluated["n_pos"]
    assert int(evaluated["out"]["positions"]) == n
    ppl = float(evaluated["out"]["perplexity"])
    if str(n) in ref["ppl"]:
        want = ref["ppl"][str(n)]
    else:  # a prefix the reference did not summarize: from its per-token log-probs
        import math
        want = math.exp(-sum(ref["logp"][:n]) / n)
    rel = abs(ppl - want) / want
    print(f"{evaluated['name']}: perplexity {ppl:.4f} vs transformers {want:.4f} "
          f"(rel. diff {rel:.2e}) over {n} positions")
    assert rel <= evaluated["bars"]["ppl"], (
        f"{evaluated['mode']}: perplexity {ppl} vs reference {want}: rel. diff {rel:.3%}; "
        "see docs/accuracy.md")


def test_top5_logits(evaluated):
    ref = evaluated["ref"]
    worst = 0.0
    for t in ref["top5"]:
        p = t["pos"]
        if p >= evaluated["n_pos"]:
            continue
        got = evaluated["top5"][p]
        got_map = dict(got)
        if ref["margin"][p] >= TOP5_TOP1_MARGIN:
            assert got[0][0] == t["ids"][0], f"pos {p}: top-1 {got[0][0]} != ref {t['ids'][0]}"
        assert t["ids"][0] in [i for i, _ in got[:3]], f"pos {p}: ref {t['ids']} vs ours {got}"
        for i, lg in zip(t["ids"], t["logits"]):
            if i in got_map:
                worst = max(worst, abs(got_map[i] - lg))
    print(f"{evaluated['name']} {evaluated['mode']}: max |logit - ref| over the top-5 samples "
          f"{worst:.4g}")
    assert worst <= evaluated["bars"]["top5"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", NAMES)
def test_greedy(lctl, models_dir, name, mode):
    ref = _ref(name)
    model = _model_path(models_dir, ref)
    g = ref["greedy"]
    want = g["tokens"]
    # compare up to and including the first near-tie (either token is right there; later
    # tokens would continue a different text)
    tie = CONFIGS[mode]["tie"]
    n_cmp = next((k + 1 for k, m in enumerate(g["margin"]) if m < tie), len(want))
    r = run([lctl, "run", model, "--ids", ",".join(map(str, g["prompt_ids"])), "-n", n_cmp,
             "--temp", 0, "--print-ids", "--ignore-eos"] + CONFIGS[mode]["flags"])
    assert r.returncode == 0, r.stderr.decode()
    got = [int(x) for x in r.stdout.split()]
    print(f"{name} {mode}: greedy {got} | {r.stderr.decode().strip()}")
    if n_cmp < len(want):
        assert got[: n_cmp - 1] == want[: n_cmp - 1]
    else:
        assert got == want, f"greedy {got} != transformers {want}"

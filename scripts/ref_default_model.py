#!/usr/bin/env python3
"""ref_default_model.py - transformers reference numbers for the real default models.

Computes, with Hugging Face transformers running the *same GGUF file* (dequantized by
transformers / the `gguf` package, then run in float32 with eager attention on the CPU),
the numbers that tests/py/test_default_model.py compares `lctl eval` against:

  - the token ids of a fixed slice of war-and-peace.txt, tokenized by OUR tokenizer
    (`lctl tokenize`) and checked equal to the ids of HF's tokenizer built from the same
    GGUF (the script stops if they differ: both sides must see the same ids);
  - per position: the top-1 next-token id, the top-1/top-2 logit margin (to spot ties)
    and the log-probability of the true next token;
  - perplexity over the first 256, 512 and all N_POS positions;
  - the top-5 ids and logits at a few positions;
  - a greedy continuation of a fixed prompt, with the top-1/top-2 margin at every step.

Output: tests/golden/default_model/<name>.json (small; no logit matrices).

Needs torch + transformers + gguf (a throwaway venv; never CI):
    /work/venv-torch/bin/python scripts/ref_default_model.py \
        --lctl build/parity/lctl [--only qwen2.5-coder-0.5b]

Cost on 2 cores: a few minutes per model (one forward pass over N_POS + 1 tokens, plus
the greedy steps).
"""
import argparse
import json
import math
import os
import pathlib
import platform
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("TM_SHARED_DATA", ROOT.parent / "shared" / "data"))
OUT = ROOT / "tests" / "golden" / "default_model"

# Fixed slice: the first SLICE_BYTES bytes of war-and-peace.txt (the file starts at
# "CHAPTER I"), cut back to the last newline so no word is split; its ids are then cut
# to N_POS + 1 tokens (N_POS predictions). Tokenizing the slice and truncating ids is the
# same on both sides because both sides get the same id list.
SLICE_BYTES = 6000
TOP5_POSITIONS = [0, 1, 2, 3, 10, 50, 100, 200, 255, 300, 400, 511]

MODELS = {
    "qwen2.5-coder-0.5b": dict(
        gguf="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        n_pos=1024,
        bos=False,  # Qwen2 adds no BOS
        greedy_prompt="def fibonacci(n):\n",
        n_greedy=24,
    ),
    "gemma-3-270m": dict(
        gguf="gemma-3-270m-q4_k_m.gguf",
        n_pos=1024,  # > its 512-token sliding window, so the window masking is exercised
        bos=True,  # Gemma is trained with <bos> first
        greedy_prompt="The capital of France is",
        n_greedy=16,
    ),
}


def text_slice() -> bytes:
    raw = (SHARED / "war-and-peace.txt").read_bytes()[:SLICE_BYTES]
    return raw[: raw.rfind(b"\n") + 1]


def our_ids(lctl, gguf_path, text_bytes, tmp):
    tmp.write_bytes(text_bytes)
    r = subprocess.run([str(lctl), "tokenize", str(gguf_path), "--no-special", "--file", str(tmp)],
                       capture_output=True, check=True)
    return [int(x) for x in r.stdout.split()]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lctl", default=str(ROOT / "build" / "parity" / "lctl"))
    ap.add_argument("--models", default=str(ROOT / "models"))
    ap.add_argument("--only", default=None)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()

    import numpy as np
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = False
    OUT.mkdir(parents=True, exist_ok=True)
    text = text_slice()

    for name, m in MODELS.items():
        if args.only and args.only != name:
            continue
        gguf_path = pathlib.Path(args.models) / m["gguf"]
        print(f"== {name}: {gguf_path}", flush=True)
        t0 = time.time()
        tok = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
        hf_ids = tok(text.decode("utf-8"), add_special_tokens=False)["input_ids"]
        ours = our_ids(args.lctl, gguf_path, text, OUT / f".{name}.slice.txt")
        (OUT / f".{name}.slice.txt").unlink()
        if hf_ids != ours:
            k = next(i for i in range(min(len(hf_ids), len(ours))) if hf_ids[i] != ours[i])
            sys.exit(f"{name}: tokenizers differ at {k}: HF {hf_ids[k:k+8]} ours {ours[k:k+8]}")
        print(f"   slice: {len(text)} bytes, {len(ours)} tokens, HF ids == ours", flush=True)
        ids = ([tok.bos_token_id] if m["bos"] else []) + ours
        n_pos = m["n_pos"]
        assert len(ids) >= n_pos + 1, f"slice too short: {len(ids)} tokens"
        ids = ids[: n_pos + 1]

        model = AutoModelForCausalLM.from_pretrained(
            str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32,
            attn_implementation="eager")
        model.eval()
        print(f"   loaded in {time.time() - t0:.1f} s", flush=True)
        t0 = time.time()
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0].double()  # [n_pos + 1, vocab]
        print(f"   forward over {len(ids)} tokens in {time.time() - t0:.1f} s", flush=True)
        logits = logits[:n_pos]
        logp = torch.log_softmax(logits, dim=-1)
        tgt = torch.tensor(ids[1:])
        tok_logp = logp[torch.arange(n_pos), tgt]
        top2 = torch.topk(logits, 2, dim=-1)
        top1 = top2.indices[:, 0].tolist()
        margin = (top2.values[:, 0] - top2.values[:, 1]).tolist()

        def ppl(n):
            return math.exp(-float(tok_logp[:n].mean()))

        top5 = []
        for p in TOP5_POSITIONS:
            if p < n_pos:
                t5 = torch.topk(logits[p], 5)
                top5.append(dict(pos=p, ids=t5.indices.tolist(),
                                 logits=[round(float(x), 5) for x in t5.values]))

        # greedy continuation of a fixed prompt (no chat template), full re-forward per
        # step (no cache subtleties), recording the top-1/top-2 margin of each step
        g_prompt = ([tok.bos_token_id] if m["bos"] else []) + tok(
            m["greedy_prompt"], add_special_tokens=False)["input_ids"]
        g_ours = our_ids(args.lctl, gguf_path, m["greedy_prompt"].encode(),
                         OUT / f".{name}.prompt.txt")
        (OUT / f".{name}.prompt.txt").unlink()
        assert g_prompt[int(m["bos"]):] == g_ours, (g_prompt, g_ours)
        seq = list(g_prompt)
        g_out, g_margin = [], []
        with torch.no_grad():
            for _ in range(m["n_greedy"]):
                lg = model(torch.tensor([seq])).logits[0, -1].double()
                v = torch.topk(lg, 2)
                nxt = int(v.indices[0])
                g_out.append(nxt)
                g_margin.append(round(float(v.values[0] - v.values[1]), 5))
                seq.append(nxt)

        res = dict(
            model=m["gguf"],
            reference=dict(
                what="transformers on the same GGUF (dequantized by transformers/gguf), float32, "
                     "eager attention, CPU",
                transformers=transformers.__version__, torch=torch.__version__,
                machine=f"{platform.machine()} {platform.processor() or ''}".strip(),
                threads=torch.get_num_threads()),
            text=dict(file="war-and-peace.txt", first_bytes=SLICE_BYTES,
                      cut="back to the last newline", n_bytes=len(text),
                      n_tokens_slice=len(ours), bos=m["bos"]),
            n_pos=n_pos,
            ids=ids,
            top1=top1,
            margin=[round(x, 4) for x in margin],
            logp=[round(float(x), 5) for x in tok_logp],
            ppl={str(n): ppl(n) for n in (128, 256, 512, n_pos) if n <= n_pos},
            top5=top5,
            greedy=dict(prompt=m["greedy_prompt"], prompt_ids=g_prompt, tokens=g_out,
                        margin=g_margin, text=tok.decode(g_out)),
        )
        (OUT / f"{name}.json").write_text(json.dumps(res, separators=(",", ":")) + "\n")
        print(f"   ppl {res['ppl']}  min margin {min(margin):.4g}  greedy {res['greedy']['text']!r}",
              flush=True)
        del model


if __name__ == "__main__":
    main()

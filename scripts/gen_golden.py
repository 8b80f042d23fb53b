#!/usr/bin/env python3
"""gen_golden.py - golden fixtures for the CPU inference path, from Hugging Face transformers.

Two stages, because the oracle (torch + transformers) and the GGUF writer (the `gguf` package)
live on different machines here:

  stage "hf"   (needs torch + transformers; run on the NVIDIA test machine, on its CPU so that
               no TF32 or GPU reduction order leaks into the reference):
      builds one tiny model per family with the real config class (fixed seed), trains it
      for a few hundred steps on a synthetic language (train_on_chain: peaked next-token
      distributions like a trained model's, which the quantized goldens need), runs it in
      float32 with eager attention and stores, per family, one .npz holding the
      weights (HF names), the config (JSON), the prompts, the logits at every position of
      every prompt and a 16-token greedy continuation of each prompt.

  stage "gguf" (needs numpy + gguf):
      converts each .npz into tests/golden/models/<family>.gguf the way llama.cpp's
      convert_hf_to_gguf.py does (names, [out,in] -> ne = {in,out}, Llama q/k rows permuted
      for the interleaved "normal" RoPE, Gemma RMSNorm weights stored as 1 + w), and writes
      <family>.logits.f32 (raw little-endian float32, [prompt][pos][vocab]) and
      <family>.json (prompts, greedy tokens, shapes, tolerances).

    python scripts/gen_golden.py hf   --out /tmp/golden_npz
    python scripts/gen_golden.py gguf --npz /tmp/golden_npz --out tests/golden/models
    (--only llama256 in both stages: just that family, e.g. with a newer transformers
    that would otherwise rewrite every fixture)
    python scripts/gen_golden.py embed --model models/all-MiniLM-L6-v2 \
        --out tests/golden/minilm_embeddings.json    (MiniLM sentence embeddings)

  With --hf-dir tests/golden/models, stage "hf" also saves each model with save_pretrained
  as <family>-hf/ (float32) and a few half-precision variants (see HF_VARIANTS): the same
  weights loaded from the HF folder must give the same logits.

  stage "gguf-hf" (needs numpy + safetensors + gguf; no torch):
      converts the committed HF folders of the families that stage "hf" fixtures from their
      folders only (mistral, phi3, gpt2, bert) into tests/golden/models/<family>.gguf, laid
      out as llama.cpp's convert_hf_to_gguf.py lays them out (see GGUF_FROM_HF). Deterministic:
      tests/py/test_golden.py regenerates them and compares the bytes.

    python scripts/gen_golden.py gguf-hf --out tests/golden/models
"""
import argparse
import json
import os
import sys

import numpy as np

SEED = 1234
VOCAB = 256
HIDDEN = 64
N_LAYER = 2
N_HEAD = 4
N_HEAD_KV = 2
FFN = 128
N_GREEDY = 16
PROMPTS = [
    [1, 17, 42, 99, 3, 250, 8],
    [1, 5, 5, 5, 200, 201, 202, 7, 63, 128, 64, 9],
    [1] + [(i * 37 + 11) % VOCAB for i in range(19)],
]

# Families fixtured from their HF folder (no .npz): stage hf writes <family>-hf/,
# <family>.json and <family>.logits.f32 straight into --hf-dir; stage gguf-hf then writes
# <family>.gguf from the folder.
HF_ONLY_FAMILIES = {
    "mistral": ("MistralConfig", {"rope_theta": 10000.0, "sliding_window": 4}),
    "phi3": ("Phi3Config", {"rope_theta": 10000.0, "sliding_window": 6}),
    "gpt2": ("GPT2Config", {"rope_theta": 10000.0, "n_inner": FFN,
                            "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5}),
}

# family -> (config class name, extra config kwargs)
FAMILIES = {
    "llama": ("LlamaConfig", {"rope_theta": 10000.0}),
    "llama3": ("LlamaConfig", {
        "rope_theta": 500000.0,
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
    }),
    "qwen2": ("Qwen2Config", {"rope_theta": 1000000.0}),
    # rows of 256 so that Q4_K and the other K formats quantize every matrix
    # (tests/py/test_quant_golden.py); one layer keeps the file at 2 MB
    "llama256": ("LlamaConfig", {"rope_theta": 10000.0, "hidden_size": 256,
                                 "intermediate_size": 256, "num_hidden_layers": 1}),
    "qwen3": ("Qwen3Config", {"rope_theta": 1000000.0, "head_dim": 32}),
    "gemma3": ("Gemma3TextConfig", {
        "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0, "head_dim": 32,
        "query_pre_attn_scalar": 32, "sliding_window": 4,
        "layer_types": ["sliding_attention", "full_attention"],
        "hidden_activation": "gelu_pytorch_tanh",
    }),
}


# ---------------------------------------------------------------------------------------------
# stage hf
# ---------------------------------------------------------------------------------------------
def make_config(transformers, family):
    cls_name, extra = {**FAMILIES, **HF_ONLY_FAMILIES}[family]
    cls = getattr(transformers, cls_name)
    kw = dict(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=FFN,
              num_hidden_layers=N_LAYER, num_attention_heads=N_HEAD,
              num_key_value_heads=N_HEAD_KV, max_position_embeddings=128,
              rms_norm_eps=1e-5, tie_word_embeddings=(family in ("qwen3", "gemma3", "gpt2")),
              bos_token_id=1, eos_token_id=2, pad_token_id=0)
    if family == "qwen2":
        kw["use_sliding_window"] = False
    if family == "gpt2":  # GPT2Config has no GQA, RMSNorm or intermediate_size (n_inner)
        for k in ("num_key_value_heads", "rms_norm_eps", "intermediate_size"):
            kw.pop(k)
    kw.update(extra)
    # transformers 5 moved RoPE settings into rope_parameters; older versions take
    # rope_theta / rope_scaling directly. Try the new form first.
    rope = {"rope_type": "default", "rope_theta": kw["rope_theta"]}
    if "rope_scaling" in kw:
        rope = dict(kw["rope_scaling"], rope_theta=kw["rope_theta"])
    if family == "gemma3":
        rope = {"full_attention": {"rope_type": "default", "rope_theta": kw["rope_theta"]},
                "sliding_attention": {"rope_type": "default",
                                      "rope_theta": kw["rope_local_base_freq"]}}
    try:
        kw2 = {k: v for k, v in kw.items()
               if k not in ("rope_theta", "rope_scaling", "rope_local_base_freq")}
        cfg = cls(rope_parameters=rope, **kw2)
        if getattr(cfg, "rope_parameters", None) is None:
            raise TypeError("no rope_parameters")
    except Exception as e:  # noqa: BLE001 - fall back to the transformers 4 spelling
        print(f"{family}: rope_parameters not accepted ({e}); using v4 kwargs", file=sys.stderr)
        cfg = cls(**kw)
    return cfg


# HF folders (config.json + safetensors) saved beside the GGUF fixtures: <family>-hf in
# float32 for every family, plus half-precision copies of two families, one of them sharded,
# so the loader's F16/BF16 and index.json paths meet real save_pretrained output.
HF_VARIANTS = {"llama": ("f16", "float16", "150KB"), "qwen2": ("bf16", "bfloat16", None)}


def save_hf_folders(model, family, hf_dir):
    import copy

    import torch

    model.save_pretrained(os.path.join(hf_dir, f"{family}-hf"))
    if family in HF_VARIANTS:
        tag, dt, shard = HF_VARIANTS[family]
        m2 = copy.deepcopy(model).to(getattr(torch, dt))
        kw = {"max_shard_size": shard} if shard else {}
        d = os.path.join(hf_dir, f"{family}-hf-{tag}")
        m2.save_pretrained(d, **kw)
        # Reference for exactly these weights: rounded to half precision, run in float32
        # (what the CPU path does), so the loader is checked at 1e-4, not at bf16 noise.
        # Only the parameters are rounded: .to(half) would also round buffers such as
        # the rotary inv_freq, which the loader derives from config.json in full precision.
        m3 = copy.deepcopy(model).eval()
        with torch.no_grad():
            for p in m3.parameters():
                p.copy_(p.to(getattr(torch, dt)).float())
        with torch.no_grad(), open(os.path.join(d, "reference.logits.f32"), "wb") as f:
            for ids in PROMPTS:
                lg = m3(input_ids=torch.tensor([ids]), use_cache=False).logits[0]
                f.write(lg.float().numpy().astype("<f4").tobytes())


def write_reference(out_dir, family, meta, logits):
    """<family>.logits.f32 and <family>.json as stage gguf writes them (no .gguf)."""
    with open(os.path.join(out_dir, f"{family}.logits.f32"), "wb") as f:
        for lg in logits:
            f.write(np.ascontiguousarray(lg, dtype="<f4").tobytes())
    info = {"family": family, "arch": family, "hf": f"{family}-hf",
            "gguf": f"{family}.gguf",  # written by stage gguf-hf from the folder
            "logits": f"{family}.logits.f32", "n_vocab": VOCAB,
            "prompts": meta["prompts"], "greedy": meta["greedy"],
            "min_top2_margin": meta["min_top2_margin"], "rel_tol": 1e-4,
            "oracle": f"transformers {meta['transformers']}, torch {meta['torch']}, "
                      "float32 eager, CPU", "seed": meta["seed"]}
    with open(os.path.join(out_dir, f"{family}.json"), "w") as f:
        json.dump(info, f, indent=1)


def stage_hf_bert(hf_dir):
    """Tiny random BertModel (real BertConfig): <hf_dir>/bert-hf and bert.embed.json, the
    sentence-transformers style embedding (mean over tokens, L2-normalized) per prompt."""
    import torch
    import transformers

    torch.manual_seed(SEED)
    cfg = transformers.BertConfig(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=N_LAYER,
                                  num_attention_heads=N_HEAD, intermediate_size=FFN,
                                  max_position_embeddings=128, hidden_act="gelu",
                                  layer_norm_eps=1e-12, pad_token_id=0)
    model = transformers.BertModel(cfg, add_pooling_layer=False).float().eval()
    g = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name and name.endswith(".weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.15 * torch.randn(p.shape, generator=g))
    model.save_pretrained(os.path.join(hf_dir, "bert-hf"))
    out = []
    with torch.no_grad():
        for ids in PROMPTS:
            h = model(input_ids=torch.tensor([ids])).last_hidden_state[0]
            v = torch.nn.functional.normalize(h.mean(0), dim=0)
            out.append([float(x) for x in v])
    info = {"family": "bert", "hf": "bert-hf", "prompts": PROMPTS, "embeddings": out,
            "tol": 1e-4, "oracle": f"transformers {transformers.__version__}, "
                                   f"torch {torch.__version__}, float32, CPU"}
    with open(os.path.join(hf_dir, "bert.embed.json"), "w") as f:
        json.dump(info, f)
    print("bert ok")


# A synthetic language to train the fixtures on. Random weights alone give a logit vector
# that is a Gaussian sample over the vocabulary: its top-1/top-2 gap is ~0.3 of the logit
# spread and the rest of the vocabulary sits right below, so a weight or activation error of
# half a percent (Q8_0) flips the argmax at several positions in a hundred. A trained model puts
# a few candidates far above the bulk (docs/accuracy.md, "Quantized goldens"). TRAIN_STEPS
# AdamW steps on this source make the fixtures small trained models: every token, BOS
# included, has CHAIN_K successors whose odds depend on the token before it too (so attention
# has to look back one position); with probability CHAIN_NOISE the next token is any token
# instead, so every embedding row is trained and the prompts' odd pairs are not unseen.
CHAIN_K = 4
CHAIN_NOISE = 0.05
TRAIN_STEPS = 400


def chain_source(rs):
    """(successors [V, K], odds from the last token [V, K], odds from the one before [V, K])."""
    succ = np.stack([rs.choice(np.arange(3, VOCAB), CHAIN_K, replace=False) for _ in range(VOCAB)])
    return succ, 2.0 * rs.randn(VOCAB, CHAIN_K), 2.0 * rs.randn(VOCAB, CHAIN_K)


def chain_sample(src, rs, n_seq, n_tok):
    """n_seq sequences of n_tok tokens: BOS (1), then the chain (the token before BOS is 0)."""
    succ, base, mod = src
    out = np.zeros((n_seq, n_tok + 1), dtype=np.int64)  # column 0: the 0 before BOS
    out[:, 1] = 1
    for t in range(2, n_tok + 1):
        a, b = out[:, t - 1], out[:, t - 2]
        lg = base[a] + mod[b]
        p = np.exp(lg - lg.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        nxt = succ[a, (rs.rand(n_seq, 1) < p.cumsum(1)).argmax(1)]
        noise = rs.rand(n_seq) < CHAIN_NOISE
        out[:, t] = np.where(noise, rs.randint(3, VOCAB, n_seq), nxt)
    return out[:, 1:]


def train_on_chain(model, family):
    import torch

    rs = np.random.RandomState(SEED)
    src = chain_source(rs)
    torch.manual_seed(SEED)
    model.train()  # GPT-2's dropout is on while training
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    # cosine decay to zero, as LMs are trained: without it the rarer contexts (the one after
    # BOS is 1 in 48 tokens) keep noisy odds, e.g. near ties the source does not have
    decay = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1.0 + np.cos(np.pi * s / TRAIN_STEPS)))
    for _ in range(TRAIN_STEPS):
        x = torch.from_numpy(chain_sample(src, rs, 32, 48))
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        decay.step()
    model.eval()
    print(f"{family}: trained {TRAIN_STEPS} steps, loss {loss.item():.3f}", file=sys.stderr)


def stage_hf(out_dir, hf_dir=None, only=None):
    import torch
    import transformers

    torch.set_num_threads(4)
    os.makedirs(out_dir, exist_ok=True)
    for family in list(FAMILIES) + (list(HF_ONLY_FAMILIES) if hf_dir else []):
        if only and family not in only:
            continue
        torch.manual_seed(SEED)
        cfg = make_config(transformers, family)
        cfg._attn_implementation = "eager"
        model = transformers.AutoModelForCausalLM.from_config(cfg, attn_implementation="eager")
        model = model.float().eval()
        # Random init with std 0.02 gives near-zero logits and greedy ties; use larger weights
        # and non-trivial norms/biases so every term of the forward pass matters. GPT-2's
        # LayerNorms are ln_1 / ln_2 / ln_f.
        g = torch.Generator().manual_seed(SEED)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "norm" in name or (family == "gpt2" and ".ln_" in name and "weight" in name):
                    base = 0.0 if family == "gemma3" else 1.0
                    p.copy_(base + 0.1 * torch.randn(p.shape, generator=g))
                elif name.endswith(".bias"):
                    p.copy_(0.1 * torch.randn(p.shape, generator=g))
                else:
                    p.copy_(0.15 * torch.randn(p.shape, generator=g))
        train_on_chain(model, family)
        sd = {k: v.detach().float().cpu().numpy() for k, v in model.state_dict().items()}
        if hf_dir is not None:
            save_hf_folders(model, family, hf_dir)
        logits, greedy, margins = [], [], []
        with torch.no_grad():
            for ids in PROMPTS:
                x = torch.tensor([ids])
                out = model(input_ids=x, use_cache=False).logits[0].float().numpy()
                logits.append(out.astype(np.float32))
                seq = list(ids)
                gen = []
                for _ in range(N_GREEDY):
                    lg = model(input_ids=torch.tensor([seq]), use_cache=False).logits[0, -1]
                    top = torch.topk(lg.float(), 2)
                    margins.append(float(top.values[0] - top.values[1]))
                    nxt = int(top.indices[0])
                    gen.append(nxt)
                    seq.append(nxt)
                greedy.append(gen)
        meta = {
            "family": family,
            "config": json.loads(cfg.to_json_string()),
            "prompts": PROMPTS,
            "greedy": greedy,
            "min_top2_margin": min(margins),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "seed": SEED,
        }
        if family in HF_ONLY_FAMILIES:
            write_reference(hf_dir, family, meta, logits)
            continue
        arrays = {"w." + k: v for k, v in sd.items()}
        for i, lg in enumerate(logits):
            arrays[f"logits.{i}"] = lg
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        np.savez(os.path.join(out_dir, f"{family}.npz"), **arrays)
        print(family, "ok; min top-2 margin", meta["min_top2_margin"], "greedy", greedy[0])
    if hf_dir is not None and not only:
        stage_hf_bert(hf_dir)


# ---------------------------------------------------------------------------------------------
# stage gguf
# ---------------------------------------------------------------------------------------------
def llama_permute(w, n_head):
    # convert_hf_to_gguf.py LlamaModel.permute: HF stores q/k rows as [first half | second half]
    # of each head (rotate_half, "NEOX" pairing); GGUF llama expects adjacent pairs (i, i+1).
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
             .swapaxes(1, 2).reshape(w.shape))


def cfg_rope(cfg, key="full_attention"):
    """(theta, scaling dict or None) from a config dict of either transformers generation."""
    rp = cfg.get("rope_parameters")
    if isinstance(rp, dict) and key in rp:
        rp = rp[key]
    if isinstance(rp, dict) and "rope_theta" in rp:
        return float(rp["rope_theta"]), (rp if rp.get("rope_type", "default") != "default"
                                         else None)
    theta = cfg.get("rope_theta", 10000.0)
    if key == "sliding_attention":
        theta = cfg.get("rope_local_base_freq", theta)
    return float(theta), cfg.get("rope_scaling")


def llama3_freq_factors(theta, head_dim, sc):
    # transformers _compute_llama3_parameters, expressed as the divisor llama.cpp stores in
    # rope_freqs.weight (freq_used = freq_base / factor).
    factor = sc["factor"]
    lo, hi = sc["low_freq_factor"], sc["high_freq_factor"]
    old = sc["original_max_position_embeddings"]
    lo_wl, hi_wl = old / lo, old / hi
    out = []
    for i in range(0, head_dim, 2):
        freq = 1.0 / (theta ** (i / head_dim))
        wl = 2 * np.pi / freq
        if wl < hi_wl:
            out.append(1.0)
        elif wl > lo_wl:
            out.append(factor)
        else:
            smooth = (old / wl - lo) / (hi - lo)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def stage_gguf(npz_dir, out_dir, only=None):
    import gguf

    os.makedirs(out_dir, exist_ok=True)
    for family in FAMILIES:
        if only and family not in only:
            continue
        path = os.path.join(npz_dir, f"{family}.npz")
        if not os.path.exists(path):
            print(f"{family}: {path} missing, skipped", file=sys.stderr)
            continue
        z = np.load(path)
        meta = json.loads(bytes(z["meta"]).decode())
        cfg = meta["config"]
        arch = {"llama3": "llama", "llama256": "llama"}.get(family, family)
        n_head, n_kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
        head_dim = cfg.get("head_dim") or cfg["hidden_size"] // n_head
        w = gguf.GGUFWriter(os.path.join(out_dir, f"{family}.gguf"), arch)
        w.add_name(f"tm-golden-{family}")
        w.add_block_count(cfg["num_hidden_layers"])
        w.add_context_length(cfg["max_position_embeddings"])
        w.add_embedding_length(cfg["hidden_size"])
        w.add_feed_forward_length(cfg["intermediate_size"])
        w.add_head_count(n_head)
        w.add_head_count_kv(n_kv)
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
        w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
        theta, scaling = cfg_rope(cfg)
        w.add_rope_freq_base(theta)
        w.add_rope_dimension_count(head_dim)
        w.add_vocab_size(cfg["vocab_size"])
        if family == "gemma3":
            w.add_sliding_window(cfg["sliding_window"])
            # llama.cpp hard-codes the 5-local/1-global pattern for gemma3; we store the
            # per-layer pattern explicitly (1 = sliding) so any layout round-trips.
            pat = [1 if t == "sliding_attention" else 0 for t in cfg["layer_types"]]
            w.add_array(f"{arch}.attention.sliding_window_pattern", pat)
            local_theta, _ = cfg_rope(cfg, "sliding_attention")
            w.add_float32(f"{arch}.rope.local_freq_base", local_theta)
        # minimal tokenizer metadata: ids only (the fixtures are driven by token ids)
        w.add_bos_token_id(cfg.get("bos_token_id") or 1)
        w.add_eos_token_id(2)

        def put(name, arr):
            w.add_tensor(name, np.ascontiguousarray(arr, dtype=np.float32))

        wt = {k[2:]: z[k] for k in z.files if k.startswith("w.")}
        put("token_embd.weight", wt["model.embed_tokens.weight"])
        put("output_norm.weight", norm_w(family, wt["model.norm.weight"]))
        if "lm_head.weight" in wt and not cfg.get("tie_word_embeddings", False):
            put("output.weight", wt["lm_head.weight"])
        if scaling and scaling.get("rope_type") == "llama3":
            put("rope_freqs.weight", llama3_freq_factors(theta, head_dim, scaling))
        for i in range(cfg["num_hidden_layers"]):
            p = f"model.layers.{i}."
            b = f"blk.{i}."
            q = wt[p + "self_attn.q_proj.weight"]
            k = wt[p + "self_attn.k_proj.weight"]
            if arch == "llama":
                q, k = llama_permute(q, n_head), llama_permute(k, n_kv)
            put(b + "attn_q.weight", q)
            put(b + "attn_k.weight", k)
            put(b + "attn_v.weight", wt[p + "self_attn.v_proj.weight"])
            put(b + "attn_output.weight", wt[p + "self_attn.o_proj.weight"])
            for hf, gg in (("q_proj", "attn_q"), ("k_proj", "attn_k"), ("v_proj", "attn_v")):
                if p + f"self_attn.{hf}.bias" in wt:
                    put(b + gg + ".bias", wt[p + f"self_attn.{hf}.bias"])
            if p + "self_attn.q_norm.weight" in wt:
                put(b + "attn_q_norm.weight", norm_w(family, wt[p + "self_attn.q_norm.weight"]))
                put(b + "attn_k_norm.weight", norm_w(family, wt[p + "self_attn.k_norm.weight"]))
            put(b + "attn_norm.weight", norm_w(family, wt[p + "input_layernorm.weight"]))
            if family == "gemma3":
                put(b + "post_attention_norm.weight",
                    norm_w(family, wt[p + "post_attention_layernorm.weight"]))
                put(b + "ffn_norm.weight",
                    norm_w(family, wt[p + "pre_feedforward_layernorm.weight"]))
                put(b + "post_ffw_norm.weight",
                    norm_w(family, wt[p + "post_feedforward_layernorm.weight"]))
            else:
                put(b + "ffn_norm.weight", norm_w(family, wt[p + "post_attention_layernorm.weight"]))
            put(b + "ffn_gate.weight", wt[p + "mlp.gate_proj.weight"])
            put(b + "ffn_up.weight", wt[p + "mlp.up_proj.weight"])
            put(b + "ffn_down.weight", wt[p + "mlp.down_proj.weight"])
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()

        logits = [z[f"logits.{i}"] for i in range(len(meta["prompts"]))]
        with open(os.path.join(out_dir, f"{family}.logits.f32"), "wb") as f:
            for lg in logits:
                f.write(np.ascontiguousarray(lg, dtype="<f4").tobytes())
        info = {
            "family": family, "arch": arch, "gguf": f"{family}.gguf",
            "logits": f"{family}.logits.f32", "n_vocab": cfg["vocab_size"],
            "prompts": meta["prompts"], "greedy": meta["greedy"],
            "min_top2_margin": meta["min_top2_margin"],
            "rel_tol": 1e-4, "oracle": f"transformers {meta['transformers']}, "
                                     f"torch {meta['torch']}, float32 eager, CPU",
            "seed": meta["seed"],
        }
        with open(os.path.join(out_dir, f"{family}.json"), "w") as f:
            json.dump(info, f, indent=1)
        print(family, "written")


def norm_w(family, w):
    # Gemma's RMSNorm multiplies by (1 + w); llama.cpp's converter folds the 1 in.
    return w + 1.0 if family == "gemma3" else w


# ---------------------------------------------------------------------------------------------
# stage gguf-hf: GGUF files from the committed HF folders (numpy + safetensors + gguf, no torch)
# ---------------------------------------------------------------------------------------------
# The families fixtured from their HF folders (HF_ONLY_FAMILIES and bert), written the way
# llama.cpp's convert_hf_to_gguf.py writes them (f32 outtype): tensor names from the gguf
# package's own HF -> GGUF table (gguf.get_tensor_name_map), [out, in] matrices as ne = {in, out},
# the metadata keys of the converter's class for the family, and the special token ids that
# gguf.SpecialVocab takes from config.json. Mistral q/k rows are permuted as for llama, GPT-2's
# Conv1D matrices transposed, and GPT-2's tied head written out as output.weight, as there.
# Departures, each where llama.cpp's file would not describe the fixture:
#  - mistral: llama.cpp converts MistralForCausalLM as arch "llama" and drops sliding_window
#    (llama.cpp has no window for llama, ggml-org/llama.cpp#3371); the reference runs with a
#    window of 4, so the file says arch "mistral" (our recipe) with mistral.attention.
#    sliding_window. tests/unit/test_model.c also loads it respelled as llama.cpp's file.
#  - gpt2: llama.cpp writes feed_forward_length = 4 * n_embd; this fixture has n_inner = 2 * n_embd.
#  - bert: the folder has no sentence-transformers modules.json, from which llama.cpp takes
#    pooling_type; the reference embeddings are mean-pooled, so pooling_type MEAN is written.
#  - no vocabulary (tokenizer.ggml.model / tokens): the HF folders have none, the fixtures are
#    driven by token ids (llama.cpp's converter refuses a folder without a tokenizer).
# Deterministic: tests/py/test_golden.py regenerates the files and compares the bytes.
GGUF_FROM_HF = {
    # family: (general.architecture, gguf.MODEL_ARCH whose tensor name table applies)
    "mistral": ("mistral", "LLAMA"),  # llama.cpp: LlamaModel handles MistralForCausalLM
    "phi3": ("phi3", "PHI3"),
    "gpt2": ("gpt2", "GPT2"),
    "bert": ("bert", "BERT"),
}


def gguf_hf_metadata(w, family, cfg):
    """Hyperparameter keys as the converter class of the family writes them."""
    import gguf

    f32 = gguf.LlamaFileType.ALL_F32
    if family == "gpt2":  # GPT2Model
        w.add_block_count(cfg["n_layer"])
        w.add_context_length(cfg["n_positions"])
        w.add_embedding_length(cfg["n_embd"])
        w.add_feed_forward_length(cfg["n_inner"])  # llama.cpp: 4 * n_embd (see above)
        w.add_head_count(cfg["n_head"])
        w.add_layer_norm_eps(cfg["layer_norm_epsilon"])
        w.add_file_type(f32)
        return
    n_head, n_embd = cfg["num_attention_heads"], cfg["hidden_size"]
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(n_embd)
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(n_head)
    if family == "bert":  # BertModel: encoder, pooled
        w.add_layer_norm_eps(cfg["layer_norm_eps"])
        w.add_file_type(f32)
        w.add_causal_attention(False)
        w.add_pooling_type(gguf.PoolingType.MEAN)  # see above
        w.add_token_type_count(cfg["type_vocab_size"])
        return
    w.add_head_count_kv(cfg["num_key_value_heads"])
    w.add_rope_freq_base(cfg_rope(cfg)[0])
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    if family == "mistral":  # LlamaModel
        if cfg.get("head_dim"):
            w.add_key_length(cfg["head_dim"])
            w.add_value_length(cfg["head_dim"])
        w.add_file_type(f32)
        w.add_vocab_size(cfg["vocab_size"])
        w.add_rope_dimension_count(cfg.get("head_dim") or n_embd // n_head)
    else:  # Phi3MiniModel
        w.add_rope_scaling_orig_ctx_len(cfg["original_max_position_embeddings"])
        w.add_rope_dimension_count(n_embd // n_head)
        w.add_file_type(f32)
    w.add_sliding_window(cfg.get("sliding_window") or 0)


def stage_gguf_hf(models_dir, out_dir, only=None):
    import gguf
    from safetensors.numpy import load_file

    os.makedirs(out_dir, exist_ok=True)
    for family, (arch, table) in GGUF_FROM_HF.items():
        if only and family not in only:
            continue
        hf_dir = os.path.join(models_dir, f"{family}-hf")
        with open(os.path.join(hf_dir, "config.json")) as f:
            cfg = json.load(f)
        wt = load_file(os.path.join(hf_dir, "model.safetensors"))
        n_layer = cfg.get("num_hidden_layers", cfg.get("n_layer"))
        names = gguf.get_tensor_name_map(getattr(gguf.MODEL_ARCH, table), n_layer)
        w = gguf.GGUFWriter(os.path.join(out_dir, f"{family}.gguf"), arch)
        w.add_name(f"tm-golden-{family}")
        gguf_hf_metadata(w, family, cfg)
        for kind in ("bos", "eos", "pad"):
            if cfg.get(f"{kind}_token_id") is not None:
                getattr(w, f"add_{kind}_token_id")(cfg[f"{kind}_token_id"])
        for hf_name, t in wt.items():
            name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
            if name is None:
                raise SystemExit(f"{family}: the gguf package maps no GGUF name to {hf_name}")
            t = t.astype(np.float32)
            if family == "mistral" and name.endswith(".attn_q.weight"):
                t = llama_permute(t, cfg["num_attention_heads"])
            elif family == "mistral" and name.endswith(".attn_k.weight"):
                t = llama_permute(t, cfg["num_key_value_heads"])
            elif family == "gpt2" and name.startswith("blk.") and t.ndim == 2:
                t = t.T  # Conv1D stores [in, out]
            w.add_tensor(name, np.ascontiguousarray(t))
            if family == "gpt2" and name == "token_embd.weight":
                w.add_tensor("output.weight", np.ascontiguousarray(t))  # the tied head, written
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        print(family, "written from", hf_dir)


# ---------------------------------------------------------------------------------------------
# stage embed: sentence embeddings of the real all-MiniLM-L6-v2 (BERT recipe, mean pooling)
# ---------------------------------------------------------------------------------------------
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "TensorMesh runs transformer models on the CPU.",
    "A sentence embedding maps text to a vector.",
    "Hello, world!",
]


def stage_embed(model_dir, out_path):
    import torch
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(model_dir)
    model = transformers.AutoModel.from_pretrained(model_dir, attn_implementation="eager").eval()
    cases = []
    with torch.no_grad():
        for text in SENTENCES:
            enc = tok(text, return_tensors="pt")
            h = model(**enc).last_hidden_state[0]  # [T, 384]
            # sentence-transformers Pooling(mean) + Normalize, one unpadded sentence
            v = torch.nn.functional.normalize(h.mean(0), dim=0)
            cases.append({"text": text, "ids": enc["input_ids"][0].tolist(),
                          "embedding": [round(float(x), 7) for x in v]})
    info = {"model": "sentence-transformers/all-MiniLM-L6-v2", "pooling": "mean, L2-normalized",
            "oracle": f"transformers {transformers.__version__}, torch {torch.__version__}, "
                      "float32 eager, CPU",
            "tol": 1e-4, "cases": cases}
    with open(out_path, "w") as f:
        json.dump(info, f, indent=0)
    print("wrote", out_path, len(cases), "sentences")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("stage", choices=["hf", "gguf", "gguf-hf", "embed"])
    ap.add_argument("--model", default="models/all-MiniLM-L6-v2", help="stage embed")
    ap.add_argument("--out", required=True)
    ap.add_argument("--npz", default=None)
    ap.add_argument("--models", default="tests/golden/models", help="stage gguf-hf: HF folders")
    ap.add_argument("--hf-dir", default=None, help="stage hf: also save HF folders here")
    ap.add_argument("--only", default=None, help="comma-separated families (default: all)")
    a = ap.parse_args()
    only = set(a.only.split(",")) if a.only else None
    if a.stage == "embed":
        stage_embed(a.model, a.out)
    elif a.stage == "hf":
        stage_hf(a.out, a.hf_dir, only)
    elif a.stage == "gguf-hf":
        stage_gguf_hf(a.models, a.out, only)
    else:
        stage_gguf(a.npz, a.out, only)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Generates the small Hugging Face folder fixtures under tests/golden/hf/.

tiny_sharded/: two safetensors shards written by the `safetensors` package (the
reference writer) plus model.safetensors.index.json, config.json,
generation_config.json, tokenizer_config.json (chat_template as a named list)
and expected.json, which records every tensor's dtype, shape and values so the
C tests and the oracle test can check them without numpy.

Deterministic values (fixed seed); the Rust writer may order __metadata__ keys
differently from run to run, so shard bytes can differ while their content does not.
Usage: python scripts/gen_hf_fixtures.py [OUT_DIR]   (default tests/golden/hf)
"""
import json
import pathlib
import sys

import numpy as np
from safetensors import TensorSpec, serialize_file
from safetensors.numpy import save_file

ROOT = pathlib.Path(__file__).resolve().parents[1]


def f32_to_bf16_bits(a: np.ndarray) -> np.ndarray:
    """Round-to-nearest-even float32 -> bfloat16 bit patterns (numpy has no bf16)."""
    u = a.astype(np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype(np.uint16)


def bf16_bits_to_f32(b: np.ndarray) -> np.ndarray:
    return (b.astype(np.uint32) << 16).view(np.float32)


def write_sharded(out: pathlib.Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1234)
    shard1 = {
        "model.embed.weight": rng.standard_normal((6, 4)).astype(np.float32),
        "model.layers.0.attn.q.weight": rng.standard_normal((4, 4)).astype(np.float16),
        "model.layers.0.ids": rng.integers(-1000, 1000, size=(5,), dtype=np.int32),
    }
    shard2 = {
        "model.layers.1.attn.q.weight": rng.standard_normal((4, 4)).astype(np.float32),
        "model.positions": np.arange(8, dtype=np.int64).reshape(2, 4) - 3,
        "model.scalar": np.array(2.5, dtype=np.float32),
    }
    bf16_vals = rng.standard_normal((2, 3, 2)).astype(np.float32)
    bf16_bits = f32_to_bf16_bits(bf16_vals)

    n1 = "model-00001-of-00002.safetensors"
    n2 = "model-00002-of-00002.safetensors"
    save_file(shard1, str(out / n1), metadata={"format": "pt", "shard": "1"})
    # BF16 goes through the package's low-level writer: numpy has no bfloat16.
    specs = {
        k: TensorSpec(dtype=v.dtype.name, shape=list(v.shape), data_ptr=v.ctypes.data,
                      data_len=v.nbytes)
        for k, v in shard2.items()
    }
    specs["model.norm.weight"] = TensorSpec(dtype="bfloat16", shape=list(bf16_bits.shape),
                                            data_ptr=bf16_bits.ctypes.data,
                                            data_len=bf16_bits.nbytes)
    serialize_file(specs, str(out / n2), metadata={"format": "pt", "shard": "2"})

    weight_map = {k: n1 for k in shard1}
    weight_map.update({k: n2 for k in shard2})
    weight_map["model.norm.weight"] = n2
    total = sum(v.nbytes for v in shard1.values()) + sum(v.nbytes for v in shard2.values())
    total += bf16_bits.nbytes
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")

    expected = {}
    for k, v in list(shard1.items()) + list(shard2.items()):
        expected[k] = {"dtype": {"float32": "F32", "float16": "F16", "int32": "I32",
                                 "int64": "I64"}[v.dtype.name],
                       "shape": list(v.shape),
                       "values": [float(x) if v.dtype.kind == "f" else int(x)
                                  for x in v.astype(np.float64 if v.dtype.kind == "f"
                                                    else np.int64).ravel()]}
    expected["model.norm.weight"] = {
        "dtype": "BF16", "shape": list(bf16_bits.shape),
        "values": [float(x) for x in bf16_bits_to_f32(bf16_bits).ravel()]}
    (out / "expected.json").write_text(json.dumps(dict(sorted(expected.items())), indent=1) + "\n")

    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 4,
        "intermediate_size": 16,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "vocab_size": 6,
        "max_position_embeddings": 128,
        "rms_norm_eps": 1e-06,
        "rope_theta": 500000.0,
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "bos_token_id": 1,
        "eos_token_id": 2,
        "text_config": {"hidden_size": 8},
    }
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    gen = {"bos_token_id": 1, "eos_token_id": [2, 5], "pad_token_id": 0, "do_sample": True,
           "temperature": 0.6, "top_p": 0.9, "top_k": 20, "repetition_penalty": 1.05,
           "max_new_tokens": 64}
    (out / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
    tok = {
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": False,
                      "normalized": False, "rstrip": False, "single_word": False},
        "eos_token": "</s>",
        "unk_token": None,
        "pad_token": "<pad>",
        "model_max_length": 1000000000000000019884624838656,
        "chat_template": [
            {"name": "default", "template": "{% for m in messages %}{{ m['content'] }}{% endfor %}"},
            {"name": "tool_use", "template": "{{ tools | length }}"},
        ],
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    (out / "tokenizer_config.json").write_text(json.dumps(tok, indent=2) + "\n")
    for p in out.iterdir():
        p.chmod(0o644)  # the Rust writer creates 0600 files


def main() -> None:
    out = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "tests" / "golden" / "hf"
    write_sharded(out / "tiny_sharded")


if __name__ == "__main__":
    main()

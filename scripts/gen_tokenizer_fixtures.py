#!/usr/bin/env python3
"""Builds the small tokenizer.json fixtures under tests/golden/tokenizers/ with the
Hugging Face `tokenizers` library itself (the oracle), trained on a slice of
../shared/data/war-and-peace.txt:

  gpt2-bpe/tokenizer.json      GPT-2 style: ByteLevel pre-tokenizer + BPE, <|endoftext|>
  spm-llama2/tokenizer.json    Llama-2 style (transformers' legacy LlamaConverter layout):
                               Prepend("▁") + Replace(" ", "▁"), BPE with byte_fallback
                               and fuse_unk, <0x00>..<0xFF>, TemplateProcessing "<s> $A",
                               decoder Replace/ByteFallback/Fuse/Strip
  spm-metaspace/tokenizer.json the newer layout: Metaspace(prepend_scheme="first",
                               split=false) pre-tokenizer, same model and decoder

and tests/golden/tokenizers/cases.json: texts and the oracle's ids for the C unit test.

Run: /work/venv-probe/bin/python scripts/gen_tokenizer_fixtures.py [--shared ../shared/data]
"""
import argparse
import json
import pathlib

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from tokenizers.trainers import BpeTrainer

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "golden" / "tokenizers"

CASES = [
    "",
    "Hello world",
    "Hello, world! How are you?",
    "  leading and trailing spaces  ",
    "\n\n\t  \n",
    "1234567890 3.14159 1,000,000",
    "héllo café naïve",
    "😀 日本語 مرحبا",
    "<|endoftext|> and <s> are special",
    "Prince Andrew said: \"Well, mon cher...\"\n",
]


def train_text(shared: pathlib.Path) -> list:
    text = (shared / "war-and-peace.txt").read_text(encoding="utf-8")
    return text[:400_000].splitlines()


def gpt2(lines) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = BpeTrainer(vocab_size=1500, special_tokens=["<|endoftext|>"],
                         initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(lines, trainer)
    return tok


def spm(lines, metaspace: bool) -> Tokenizer:
    # Train merges on "▁"-joined words, then lay the vocabulary out like a converted
    # SentencePiece model: <unk> <s> </s>, 256 byte tokens, then the learned pieces.
    base = Tokenizer(models.BPE())
    base.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = BpeTrainer(vocab_size=1200, limit_alphabet=80, show_progress=False)
    base.train_from_iterator(lines, trainer)
    learned = json.loads(base.to_str())["model"]
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for piece, _ in sorted(learned["vocab"].items(), key=lambda kv: kv[1]):
        if piece not in vocab:
            vocab[piece] = len(vocab)
    merges = learned["merges"]
    model = models.BPE(vocab=vocab, merges=[tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in merges],
                       unk_token="<unk>", fuse_unk=True, byte_fallback=True)
    tok = Tokenizer(model)
    tok.add_special_tokens(["<unk>", "<s>", "</s>"])
    if metaspace:
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    else:
        tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", 1)])
    return tok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=str(ROOT.parent / "shared" / "data"))
    args = ap.parse_args()
    lines = train_text(pathlib.Path(args.shared))
    made = {"gpt2-bpe": gpt2(lines), "spm-llama2": spm(lines, False), "spm-metaspace": spm(lines, True)}
    cases = []
    for name, tok in made.items():
        d = OUT / name
        d.mkdir(parents=True, exist_ok=True)
        tok.save(str(d / "tokenizer.json"))
        tok = Tokenizer.from_file(str(d / "tokenizer.json"))  # what the C side loads
        for text in CASES:
            for special in (True, False):
                tok.encode_special_tokens = not special
                ids = tok.encode(text, add_special_tokens=special).ids
                cases.append({"tokenizer": name, "text": text, "special": special, "ids": ids})
        tok.encode_special_tokens = False
    (OUT / "cases.json").write_text(json.dumps(cases, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    print("wrote", OUT, len(cases), "cases")


if __name__ == "__main__":
    main()

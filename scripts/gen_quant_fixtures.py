#!/usr/bin/env python3
"""Writes the quantization fixtures that tests/unit/test_quant.c checks.

Run with the oracle's environment (the gguf package and numpy):

    /work/venv-probe/bin/python scripts/gen_quant_fixtures.py [--out DIR] [--seed N]

Default output: tests/golden/quant/, one <type>.bin per dtype (lower-case
TensorMesh name: f32.bin, q4_k.bin, ...). The reference is the gguf package
(gguf.quants); nothing here is TensorMesh code.

File format (all integers little-endian):

    header   magic "TMQF", u32 version (1), u32 dtype (GGUF ggml_type value),
             u32 n_cases
    case     u32 kind, u32 reserved (0), u64 n_elements, then two payloads:
               kind 1 (dequantize): row bytes (n_elements / blck * type_size),
                                    then gguf's float32 output (n_elements * 4)
               kind 2 (quantize):   float32 input (n_elements * 4),
                                    then gguf's row bytes

Dequantize cases hold random raw blocks: random bytes, except that every f16
scale field (and every element of F32/F16/BF16) is a random finite value, so no
NaN/Inf reaches a product. Quantize cases exist for the types gguf can quantize
(found by asking it) and hold Gaussian rows at several magnitudes plus edge rows:
all zeros, all -0.0, constants, a huge outlier, small integers (rounding ties).
"""
import argparse
import pathlib
import struct
import sys
import warnings

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants
from gguf.constants import GGML_QUANT_SIZES

ROOT = pathlib.Path(__file__).resolve().parents[1]
MAGIC = b"TMQF"
VERSION = 1
KIND_DEQUANT = 1
KIND_QUANT = 2

# The types TensorMesh implements (quant.c, quant_k.c) and the byte ranges of
# their f16 fields inside one block (which must hold finite halves).
TYPES = {
    T.F32: [],
    T.F16: [],
    T.BF16: [],
    T.Q4_0: [(0, 2)],
    T.Q4_1: [(0, 2), (2, 4)],
    T.Q5_0: [(0, 2)],
    T.Q5_1: [(0, 2), (2, 4)],
    T.Q8_0: [(0, 2)],
    T.Q2_K: [(80, 82), (82, 84)],
    T.Q3_K: [(108, 110)],
    T.Q4_K: [(0, 2), (2, 4)],
    T.Q5_K: [(0, 2), (2, 4)],
    T.Q6_K: [(208, 210)],
}


def file_name(t: T) -> str:
    return t.name.lower() + ".bin"


def finite_halves(rng: np.random.Generator, n: int) -> np.ndarray:
    """Random f16 bit patterns over the whole finite range (subnormals included)."""
    h = rng.integers(0, 1 << 16, size=n, dtype=np.uint32).astype(np.uint16)
    inf_nan = (h & 0x7C00) == 0x7C00
    h[inf_nan] &= np.uint16(0xBFFF)  # clear the top exponent bit: finite
    return h


def random_raw(rng: np.random.Generator, t: T, n_blocks: int) -> bytes:
    blck, tsize = GGML_QUANT_SIZES[t]
    if t == T.F32:
        u = rng.integers(0, 1 << 32, size=n_blocks, dtype=np.uint64).astype(np.uint32)
        inf_nan = (u & 0x7F800000) == 0x7F800000
        u[inf_nan] &= np.uint32(0xBFFFFFFF)
        return u.astype("<u4").tobytes()
    if t == T.F16:
        return finite_halves(rng, n_blocks).astype("<u2").tobytes()
    if t == T.BF16:
        u = rng.integers(0, 1 << 16, size=n_blocks, dtype=np.uint32).astype(np.uint16)
        inf_nan = (u & 0x7F80) == 0x7F80
        u[inf_nan] &= np.uint16(0xBFFF)
        return u.astype("<u2").tobytes()
    raw = rng.integers(0, 256, size=(n_blocks, tsize), dtype=np.uint16).astype(np.uint8)
    for lo, hi in TYPES[t]:
        assert hi - lo == 2
        raw[:, lo:hi] = finite_halves(rng, n_blocks).astype("<u2").view(np.uint8).reshape(-1, 2)
    return raw.tobytes()


def quant_rows(rng: np.random.Generator, blck: int) -> np.ndarray:
    """Gaussian rows at several magnitudes, then edge rows; length a multiple of 256."""
    parts = []
    for scale in (1.0, 1e-3, 37.0, 1e-6):
        parts.append(rng.standard_normal(512).astype(np.float32) * np.float32(scale))
    outlier = rng.standard_normal(256).astype(np.float32)
    outlier[rng.integers(0, 256)] = np.float32(1e4)
    parts.append(outlier)
    parts.append(np.zeros(256, np.float32))
    parts.append(np.full(256, -0.0, np.float32))
    parts.append(np.full(128, 0.7, np.float32))
    parts.append(np.full(128, -3.25, np.float32))
    parts.append(rng.integers(-8, 8, size=256).astype(np.float32))  # exact rounding ties
    parts.append(rng.uniform(-1, 1, size=256).astype(np.float32))
    x = np.concatenate(parts)
    assert x.size % 256 == 0 and x.size % blck == 0
    return x


def plain_edge_values() -> np.ndarray:
    """Extra inputs for F32/F16/BF16: overflow, subnormals, NaN, signed zeros."""
    v = [1e5, -1e5, 65504.0, 65520.0, 6e-8, 3e-8, 1e-40, np.nan, -0.0, 0.0, np.inf, -np.inf]
    v += [1.0 + 2.0**-11, 1.0 + 3 * 2.0**-11, 1.0 + 2.0**-8, 1.0 + 3 * 2.0**-8]  # ties
    x = np.array(v, dtype=np.float32)
    return np.concatenate([x, np.zeros(256 - x.size, np.float32)])


def gguf_can_quantize(t: T) -> bool:
    try:
        quants.quantize(np.zeros((1, GGML_QUANT_SIZES[t][0]), np.float32), t)
        return True
    except NotImplementedError:
        return False


def make_cases(t: T, rng: np.random.Generator) -> list[tuple[int, int, bytes, bytes]]:
    blck, tsize = GGML_QUANT_SIZES[t]
    cases = []
    n_blocks = 1024 if blck == 1 else (32 if blck == 32 else 8)
    raw = random_raw(rng, t, n_blocks)
    deq = quants.dequantize(np.frombuffer(raw, np.uint8).copy(), t).astype(np.float32)
    assert deq.size == n_blocks * blck
    cases.append((KIND_DEQUANT, deq.size, raw, deq.astype("<f4").tobytes()))
    if gguf_can_quantize(t):
        x = quant_rows(rng, blck)
        if blck == 1:
            x = np.concatenate([x, plain_edge_values()])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # f16 overflow to inf is intended
            q = quants.quantize(x.reshape(-1, 256), t)
        qb = np.ascontiguousarray(q).view(np.uint8).tobytes()
        assert len(qb) == x.size // blck * tsize
        cases.append((KIND_QUANT, x.size, x.astype("<f4").tobytes(), qb))
    return cases


def write_fixture(path: pathlib.Path, t: T, cases) -> None:
    with open(path, "wb") as f:
        f.write(MAGIC + struct.pack("<III", VERSION, int(t), len(cases)))
        for kind, n, a, b in cases:
            f.write(struct.pack("<IIQ", kind, 0, n))
            f.write(a)
            f.write(b)


def generate(out: pathlib.Path, seed: int) -> list[pathlib.Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for i, t in enumerate(TYPES):
        rng = np.random.default_rng([seed, i])
        p = out / file_name(t)
        write_fixture(p, t, make_cases(t, rng))
        written.append(p)
    return written


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=pathlib.Path, default=ROOT / "tests" / "golden" / "quant")
    ap.add_argument("--seed", type=int, default=20240611)
    args = ap.parse_args()
    files = generate(args.out, args.seed)
    total = sum(p.stat().st_size for p in files)
    for p in files:
        print(f"{p.name:10s} {p.stat().st_size:7d} bytes")
    print(f"total {total} bytes in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Reference quantization against the gguf package, on fresh random data.

tests/unit/test_quant checks committed fixtures; this file regenerates them
with a new seed each run (scripts/gen_quant_fixtures.py) and runs the C check
on those, then uses gguf as a decode oracle for every TensorMesh quantizer:
blocks that test_quant --quantize writes must dequantize in gguf to exactly the
floats test_quant --dequantize gives, within the round-trip error bounds that
docs/quant.md states. For the types gguf can quantize, the bytes must also
equal gguf's.

Needs the built test_quant (TM_BUILD_DIR, see conftest.py) and the gguf package.
"""
import importlib.util
import os
import secrets

import pytest

from conftest import ROOT, build_dir, run

np = pytest.importorskip("numpy")
gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType as T  # noqa: E402
from gguf import quants  # noqa: E402


def _load_generator():
    spec = importlib.util.spec_from_file_location(
        "gen_quant_fixtures", ROOT / "scripts" / "gen_quant_fixtures.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


gen = _load_generator()

# Relative RMSE bounds for N(0,1) rows; keep in step with rt_bound() in
# tests/unit/test_quant.c and the table in docs/quant.md.
BOUNDS = {
    T.F32: 0.0, T.F16: 0.0005, T.BF16: 0.004, T.Q8_0: 0.006, T.Q6_K: 0.02,
    T.Q5_0: 0.05, T.Q5_1: 0.045, T.Q5_K: 0.045, T.Q4_K: 0.08, T.Q4_1: 0.09,
    T.Q4_0: 0.10, T.Q3_K: 0.18, T.Q2_K: 0.35,
}


@pytest.fixture(scope="session")
def test_quant():
    p = build_dir() / "test_quant"
    if not p.exists():
        pytest.fail(f"{p} not built: run the build first (scripts/test.sh does)")
    return p


def test_fresh_fixtures(test_quant, tmp_path):
    seed = int(os.environ.get("TM_QUANT_SEED", secrets.randbits(31)))
    print(f"seed {seed} (set TM_QUANT_SEED to replay)")
    gen.generate(tmp_path, seed)
    r = run([test_quant, "--fixtures", tmp_path])
    out = r.stdout.decode() + r.stderr.decode()
    assert r.returncode == 0, f"seed {seed}:\n{out}"
    assert out.strip().splitlines()[-1].endswith(" 0 failed"), out


@pytest.mark.parametrize("qtype", list(BOUNDS), ids=lambda t: t.name)
def test_quantize_decodes_in_gguf(test_quant, tmp_path, qtype):
    seed = secrets.randbits(31)
    rng = np.random.default_rng(seed)
    gauss = rng.standard_normal(32 * 256).astype(np.float32)
    x = np.concatenate([gauss, gen.quant_rows(rng, 256)])

    src, qfile, dfile = tmp_path / "x.f32", tmp_path / "q.bin", tmp_path / "y.f32"
    src.write_bytes(x.astype("<f4").tobytes())
    name = qtype.name.lower()
    r = run([test_quant, "--quantize", name, src, qfile])
    assert r.returncode == 0, r.stderr.decode()
    r = run([test_quant, "--dequantize", name, qfile, dfile])
    assert r.returncode == 0, r.stderr.decode()

    qbytes = np.frombuffer(qfile.read_bytes(), np.uint8)
    ours = np.frombuffer(dfile.read_bytes(), "<f4")
    ref = quants.dequantize(qbytes.copy(), qtype).astype(np.float32).reshape(-1)
    assert ours.size == x.size
    # Decode oracle: our blocks mean the same floats to gguf as to us.
    mismatch = np.flatnonzero(ours.view(np.uint32) != ref.view(np.uint32))
    assert mismatch.size == 0, f"seed {seed}: first differing element {mismatch[:5]}"

    if gen.gguf_can_quantize(qtype):
        want = np.ascontiguousarray(quants.quantize(x.reshape(-1, 256), qtype)).view(np.uint8)
        diff = np.flatnonzero(qbytes != want.reshape(-1))
        assert diff.size == 0, f"seed {seed}: first differing byte {diff[:5]}"

    g = ours[: gauss.size].astype(np.float64) - gauss
    rel = float(np.sqrt(np.sum(g * g) / np.sum(gauss.astype(np.float64) ** 2)))
    print(f"{qtype.name}: rel rmse {rel:.5f} (bound {BOUNDS[qtype]})")
    assert rel <= BOUNDS[qtype], f"seed {seed}"

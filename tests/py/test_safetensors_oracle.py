"""The safetensors reader against the reference `safetensors` package.

Random tensors of every numpy-representable safetensors dtype are written with
safetensors.numpy.save_file (single files and a 2-shard folder with an index);
`test_safetensors --dump PATH` (tests/unit/test_safetensors.c) prints what
TensorMesh reads: name, dtype, shape, FNV-1a 64 of the raw bytes and the values.
Everything must equal numpy's view of the same file.

Needs the unit tests built in TM_BUILD_DIR (default build/release).
"""
import json
import pathlib
import subprocess

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from conftest import ROOT, build_dir

DTYPE_NAMES = {
    np.dtype(np.float64): "F64", np.dtype(np.float32): "F32", np.dtype(np.float16): "F16",
    np.dtype(np.int64): "I64", np.dtype(np.int32): "I32", np.dtype(np.int16): "I16",
    np.dtype(np.int8): "I8", np.dtype(np.uint8): "U8", np.dtype(np.bool_): "BOOL",
    np.dtype(np.uint16): "U16", np.dtype(np.uint32): "U32", np.dtype(np.uint64): "U64",
}


@pytest.fixture(scope="session")
def dumper() -> pathlib.Path:
    p = build_dir() / "test_safetensors"
    if not p.exists():
        pytest.fail(f"{p} not built: build the unit tests first (TM_BUILD_DIR selects the folder)")
    return p


def fnv1a64(b: bytes) -> int:
    h = 0xCBF29CE484222325
    for x in b:
        h = ((h ^ x) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def dump(dumper, path) -> dict:
    r = subprocess.run([str(dumper), "--dump", str(path)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    out = {}
    for line in r.stdout.splitlines():
        name, dtype, shape, h, values = line.split("\t")
        out[name] = {
            "dtype": dtype,
            "shape": tuple(int(x) for x in shape.split(",")) if shape else (),
            "hash": int(h, 16),
            "values": values.split(" ") if values else [],
        }
    return out


def random_tensor(rng, dtype, shape):
    dt = np.dtype(dtype)
    if dt.kind == "f":
        a = np.asarray(rng.standard_normal(shape) * 100)
        if shape and np.prod(shape) > 2:
            a.flat[0], a.flat[1] = np.inf, -0.0
        return a.astype(dt)
    if dt.kind == "b":
        return np.asarray(rng.integers(0, 2, size=shape)).astype(dt)
    info = np.iinfo(dt)
    return np.asarray(rng.integers(info.min, info.max, size=shape, dtype=dt, endpoint=True))


def check_same(ours: dict, ref: dict):
    assert sorted(ours) == sorted(ref)
    for name, arr in ref.items():
        t = ours[name]
        assert t["dtype"] == DTYPE_NAMES[arr.dtype], name
        assert t["shape"] == arr.shape, name
        raw = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes()
        assert t["hash"] == fnv1a64(raw), name
        flat = arr.ravel()
        assert len(t["values"]) == flat.size, name
        if arr.dtype.kind == "f":
            # F32/F16 print as %.9g of the float32 value, F64 as %.17g: both round-trip.
            got = np.array([float(v) for v in t["values"]], dtype=np.float64).astype(arr.dtype)
            want = flat
            assert np.array_equal(got, want, equal_nan=True), name
            assert np.array_equal(np.signbit(got), np.signbit(want)), name
        else:
            got = [int(v) for v in t["values"]]
            assert got == [int(v) for v in flat], name


SHAPES = [(), (0,), (1,), (7,), (3, 5), (2, 0, 4), (2, 3, 1, 2), (1, 1, 1, 1, 1, 2, 1, 3)]


@pytest.mark.parametrize("dtype", list(DTYPE_NAMES))
def test_single_file_every_dtype(tmp_path, dumper, dtype):
    rng = np.random.default_rng(abs(hash(str(dtype))) % 2**32)
    tensors = {f"t{i}.{'x' * i}": random_tensor(rng, dtype, s) for i, s in enumerate(SHAPES)}
    path = tmp_path / "model.safetensors"
    save_file(tensors, str(path), metadata={"format": "np"})
    check_same(dump(dumper, path), load_file(str(path)))


def test_mixed_dtypes_folder_and_shards(tmp_path, dumper):
    rng = np.random.default_rng(7)
    dtypes = list(DTYPE_NAMES)
    tensors = {f"layer.{i}.w": random_tensor(rng, dtypes[i % len(dtypes)],
                                              tuple(rng.integers(1, 6, size=i % 4)))
               for i in range(40)}
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[:17],
              "model-00002-of-00002.safetensors": names[17:]}
    weight_map = {}
    for fname, keys in shards.items():
        save_file({k: tensors[k] for k in keys}, str(tmp_path / fname))
        weight_map.update({k: fname for k in keys})
    (tmp_path / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map}))
    ref = {}
    for fname in shards:
        ref.update(load_file(str(tmp_path / fname)))
    check_same(dump(dumper, tmp_path), ref)
    check_same(dump(dumper, tmp_path / "model.safetensors.index.json"), ref)


def test_committed_fixture_matches_expected(dumper):
    d = ROOT / "tests" / "golden" / "hf" / "tiny_sharded"
    ours = dump(dumper, d)
    expected = json.loads((d / "expected.json").read_text())
    assert sorted(ours) == sorted(expected)
    for name, e in expected.items():
        assert ours[name]["dtype"] == e["dtype"]
        assert list(ours[name]["shape"]) == e["shape"]
        got = np.array([float(v) for v in ours[name]["values"]], dtype=np.float64)
        want = np.array(e["values"], dtype=np.float64)
        if e["dtype"] in ("F32", "F16", "BF16"):  # printed as float32; all exact in float32
            got, want = got.astype(np.float32), want.astype(np.float32)
        assert np.array_equal(got, want), name


def test_corrupt_file_is_refused(tmp_path, dumper):
    path = tmp_path / "bad.safetensors"
    save_file({"a": np.zeros(4, np.float32)}, str(path))
    raw = bytearray(path.read_bytes())
    path.write_bytes(bytes(raw[:-1]))  # data section one byte short
    r = subprocess.run([str(dumper), "--dump", str(path)], capture_output=True, text=True)
    assert r.returncode != 0
    assert "past the data section" in r.stderr

"""GGUF reader/writer against the gguf python package (the oracle).

(a) gguf.GGUFWriter writes a file with every value type, nested arrays and
    several tensor dtypes; `test_gguf --dump` (our reader) must report the same
    values, tensor shapes, offsets and data.
(b) `test_gguf --write-sample` (our writer) writes a file that gguf.GGUFReader
    must read back with the values the sample was built from.
(c) the shared tiny llama file reads identically in both.

The binary is build_dir()/test_gguf (set TM_BUILD_DIR to your build folder).
"""
import json
import math

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")

from conftest import build_dir, run  # noqa: E402

VT = gguf.GGUFValueType


def fnv1a(b: bytes) -> str:
    h = 1469598103934665603
    for x in b:
        h = ((h ^ x) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


@pytest.fixture(scope="session")
def tool():
    p = build_dir() / "test_gguf"
    if not p.exists():
        pytest.fail(f"{p} not built: build the unit tests first")
    return p


def dump(tool, path) -> dict:
    r = run([tool, "--dump", path])
    assert r.returncode == 0, r.stderr.decode()
    return json.loads(r.stdout.decode("utf-8"))


def same_number(ours, theirs, vtype) -> bool:
    if vtype == VT.STRING:
        return ours == theirs
    if isinstance(ours, str):  # "nan", "inf", "-inf"
        ours = float(ours)
    if vtype == VT.FLOAT32:
        a, b = np.float32(ours), np.float32(theirs)
        return (math.isnan(a) and math.isnan(b)) or a == b
    if vtype == VT.FLOAT64:
        return (math.isnan(ours) and math.isnan(theirs)) or float(ours) == float(theirs)
    return ours == theirs


def flatten(items: dict) -> list:
    """Our nested array object as GGUFReader's flattened leaf list."""
    out = []
    for it in items["items"]:
        out.extend(flatten(it) if items["elem"] == "array" else [it])
    return out


def leaf_type(items: dict) -> str:
    while items["elem"] == "array":
        if not items["items"]:
            return None
        items = items["items"][0]
    return items["elem"]


def compare_with_reader(ours: dict, path) -> None:
    """Every kv and tensor of our dump equals what gguf.GGUFReader reads."""
    r = gguf.GGUFReader(path)
    fields = [(k, f) for k, f in r.fields.items() if not k.startswith("GGUF.")]
    assert [kv["key"] for kv in ours["kv"]] == [k for k, _ in fields]
    for kv, (key, f) in zip(ours["kv"], fields):
        assert kv["type"] == f.types[0].name.lower(), key
        if f.types[0] == VT.ARRAY:
            leaves, theirs = flatten(kv["value"]), f.contents()
            assert len(leaves) == len(theirs), key
            lt = f.types[-1]
            if leaves:
                assert leaf_type(kv["value"]) == lt.name.lower(), key
            for a, b in zip(leaves, theirs):
                assert same_number(a, b, lt), (key, a, b)
        elif f.types[0] == VT.STRING:
            assert kv["value"] == f.contents(), key
        else:
            assert same_number(kv["value"], f.contents(), f.types[0]), key
    assert ours["alignment"] == r.alignment
    assert ours["data_offset"] == r.data_offset
    assert len(ours["tensors"]) == len(r.tensors)
    for t, rt in zip(ours["tensors"], r.tensors):
        assert t["name"] == rt.name
        assert t["dtype"] == int(rt.tensor_type)
        assert t["ne"] == [int(x) for x in rt.shape]
        assert ours["data_offset"] + t["offset"] == rt.data_offset
        assert t["n_bytes"] == rt.n_bytes
        assert t["fnv1a"] == fnv1a(rt.data.tobytes())


# ---- (a) python writer -> our reader ---------------------------------------------

SCALARS = [
    ("s.u8", VT.UINT8, 255),
    ("s.i8", VT.INT8, -128),
    ("s.u16", VT.UINT16, 65535),
    ("s.i16", VT.INT16, -32768),
    ("s.u32", VT.UINT32, 4294967295),
    ("s.i32", VT.INT32, -2147483648),
    ("s.u64", VT.UINT64, 18446744073709551615),
    ("s.i64", VT.INT64, -9223372036854775808),
    ("s.f32", VT.FLOAT32, 1.1),
    ("s.f64", VT.FLOAT64, 2.0 ** -1074),
    ("s.bool", VT.BOOL, True),
    ("s.str", VT.STRING, "tab\t \"quote\" back\\slash \u00e9\u4e2d"),
]

ARRAYS = [
    ("a.u8", VT.UINT8, [0, 1, 255]),
    ("a.i8", VT.INT8, [-128, 127]),
    ("a.u16", VT.UINT16, [1, 65535]),
    ("a.i16", VT.INT16, [-2, 3]),
    ("a.u32", VT.UINT32, [4294967295, 0]),
    ("a.i32", VT.INT32, [-5, 6, 7]),
    ("a.u64", VT.UINT64, [2 ** 64 - 1]),
    ("a.i64", VT.INT64, [-(2 ** 63), 2 ** 63 - 1]),
    ("a.f32", VT.FLOAT32, [0.1, -2.5e-38, 3e38]),
    ("a.f64", VT.FLOAT64, [1e-300, -0.0]),
    ("a.bool", VT.BOOL, [False, True, True]),
    ("a.str", VT.STRING, ["", "x", "\u00fc\u00f1\u00ee"]),
]

# Inner types are inferred by GGUFWriter: int -> int32, float -> float32, str -> string.
NESTED = [
    ("n.int", [[1, 2], [3]]),
    ("n.str", [["ab", "c"], ["d"]]),
    ("n.float", [[0.5], [1.5, 2.5]]),
    ("n.deep", [[[1, 2]], [[3], [4, 5]]]),
]


def expect_nested(v):
    if isinstance(v, list):
        elem = "array" if isinstance(v[0], list) else {int: "int32", float: "float32", str: "string"}[type(v[0])]
        return {"elem": elem, "items": [expect_nested(x) for x in v]}
    return v


def write_python_file(path, alignment=None):
    w = gguf.GGUFWriter(str(path), "testarch")
    if alignment is not None:
        w.add_custom_alignment(alignment)
    for k, t, v in SCALARS:
        w.add_key_value(k, v, t)
    for k, t, v in ARRAYS:
        w.add_key_value(k, v, VT.ARRAY, sub_type=t)
    for k, v in NESTED:
        w.add_key_value(k, v, VT.ARRAY)
    rng = np.random.default_rng(1)
    tensors = {
        "t.f32": rng.standard_normal((3, 5)).astype(np.float32),
        "t.f16": rng.standard_normal((7,)).astype(np.float16),
        "t.i32": np.arange(-4, 4, dtype=np.int32).reshape(2, 2, 2),
        "t.f32.4d": rng.standard_normal((2, 1, 3, 2)).astype(np.float32),
    }
    for name, a in tensors.items():
        w.add_tensor(name, a)
    q8 = rng.integers(0, 256, size=(2, 34 * 2), dtype=np.uint8)  # q8_0 [64, 2]
    w.add_tensor("t.q8_0", q8, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    q4k = rng.integers(0, 256, size=(1, 144), dtype=np.uint8)  # q4_K [256]
    w.add_tensor("t.q4_K", q4k, raw_dtype=gguf.GGMLQuantizationType.Q4_K)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    tensors["t.q8_0"] = q8
    tensors["t.q4_K"] = q4k
    return tensors


@pytest.mark.parametrize("alignment", [None, 64, 4096])
def test_python_writer_our_reader(tool, tmp_path, alignment):
    path = tmp_path / "py.gguf"
    tensors = write_python_file(path, alignment)
    ours = dump(tool, path)
    assert ours["version"] == 3
    assert ours["alignment"] == (alignment or 32)
    kv = {x["key"]: x for x in ours["kv"]}
    assert kv["general.architecture"]["value"] == "testarch"
    for k, t, v in SCALARS:
        assert kv[k]["type"] == t.name.lower(), k
        if t == VT.STRING:
            assert kv[k]["value"] == v
        else:
            assert same_number(kv[k]["value"], v, t), (k, kv[k]["value"], v)
    for k, t, v in ARRAYS:
        assert kv[k]["type"] == "array"
        assert kv[k]["value"]["elem"] == t.name.lower(), k
        got = kv[k]["value"]["items"]
        assert len(got) == len(v)
        for a, b in zip(got, v):
            assert a == b if t == VT.STRING else same_number(a, b, t), (k, a, b)
    for k, v in NESTED:
        want = expect_nested(v)
        got = kv[k]["value"]
        if k == "n.float":  # compare leaves as float32
            assert [len(x["items"]) for x in got["items"]] == [len(x) for x in v]
            for ga, wa in zip(got["items"], v):
                assert ga["elem"] == "float32"
                assert all(same_number(a, b, VT.FLOAT32) for a, b in zip(ga["items"], wa))
        else:
            assert got == want, k
    by_name = {t["name"]: t for t in ours["tensors"]}
    for name, a in tensors.items():
        t = by_name[name]
        assert t["offset"] % ours["alignment"] == 0
        assert t["fnv1a"] == fnv1a(a.tobytes()), name
    assert by_name["t.f32.4d"]["ne"] == [2, 3, 1, 2]
    assert by_name["t.q8_0"]["ne"] == [64, 2]
    assert by_name["t.q4_K"]["ne"] == [256, 1]
    compare_with_reader(ours, path)


# ---- (b) our writer -> python reader -----------------------------------------------

SAMPLE = {
    "general.architecture": "llama",
    "general.alignment": 64,
    "v.u8": 200, "v.i8": -100, "v.u16": 60000, "v.i16": -30000,
    "v.u32": 4000000000, "v.i32": -2000000000,
    "v.u64": 18000000000000000000, "v.i64": -9000000000000000000,
    "v.f32": 3.25, "v.f64": -1.0e300, "v.true": True, "v.false": False,
    "v.str": "hello, w\u00f6rld", "v.empty": "", "v.replaced": 42,
    "a.u8": [1, 2, 255], "a.i8": [-1, 5], "a.u16": [0, 65535], "a.i16": [-32768, 32767],
    "a.u32": [7, 4294967295], "a.i32": [-1, 2, -3], "a.u64": [18446744073709551615],
    "a.i64": [-(2 ** 63), 1], "a.f32": [0.5, -1.5, float(np.float32(1e30))],
    "a.f64": [3.141592653589793], "a.bool": [True, False, True], "a.str": ["a", "", "\u03b6"],
    "a.empty": [],
    "nested.int": [1, 2, 3],  # GGUFReader flattens nested arrays
    "nested.str": ["x", "yz"],
    "nested.deep": [7, 8],
}


def test_our_writer_python_reader(tool, tmp_path):
    path = tmp_path / "ours.gguf"
    r = run([tool, "--write-sample", path])
    assert r.returncode == 0, r.stderr.decode()
    rd = gguf.GGUFReader(str(path))
    fields = {k: f for k, f in rd.fields.items() if not k.startswith("GGUF.")}
    assert list(fields) == list(SAMPLE)
    for k, v in SAMPLE.items():
        assert fields[k].contents() == v, k
    assert [t.name for t in fields["nested.deep"].types] == ["ARRAY", "ARRAY", "ARRAY", "UINT16"]
    assert fields["v.u64"].types == [VT.UINT64]
    assert fields["a.empty"].types[0] == VT.ARRAY
    assert rd.alignment == 64
    t = {x.name: x for x in rd.tensors}
    assert t["t.f32"].data.tobytes() == (np.arange(12, dtype=np.float32) * 0.5 - 2).tobytes()
    assert t["t.f16"].data.tobytes() == (np.arange(8) - 3.5).astype(np.float16).tobytes()
    assert t["t.q8_0"].data.tobytes() == bytes((i * 13 + 5) & 0xFF for i in range(136))
    assert t["t.i32"].data.tobytes() == np.array([-1000 * i + 7 for i in range(5)], np.int32).tobytes()
    assert [int(x) for x in t["t.q8_0"].shape] == [64, 2]
    for x in rd.tensors:
        assert x.data_offset % 64 == 0
    compare_with_reader(dump(tool, path), path)


# ---- (c) the shared tiny llama ---------------------------------------------------------

def test_shared_tiny_llama(tool, shared_data):
    path = shared_data / "llama-2-tiny-random.gguf"
    if not path.exists():
        pytest.skip(f"SKIPPED: {path} absent")
    ours = dump(tool, path)
    compare_with_reader(ours, path)
    kv = {x["key"]: x for x in ours["kv"]}
    assert len(kv["tokenizer.ggml.tokens"]["value"]["items"]) == 32000

"""The KV cache options of every command that creates a context (lctl run, eval, chat, bench,
embed and tensor-mesh-api): `--kv-type f16|f32` (any case) with the aliases `--kv-f16` and
`--kv-f32`, DEFAULT below when none is given (docs/decisions.md); any other value is a usage error
(exit code 2) that names the value. The last KV option given wins.

The caches are told apart by `lctl eval --logits-out` on a tiny golden fixture: logits
printed to 6 significant digits differ between an F16 and an F32 cache (~1e-3 relative)."""
import pytest

from conftest import ROOT, build_dir, run

MODEL = ROOT / "tests" / "golden" / "models" / "llama.gguf"
IDS = [1, 17, 42, 99, 3, 250, 8, 5, 77, 120]
COMMANDS = ["run", "eval", "chat", "bench", "embed"]
DEFAULT = "f16"  # the cache of tm_ctx_params_default()


def eval_logits(lctl, tmp_path, *flags):
    ids, out = tmp_path / "ids.txt", tmp_path / "logits.tsv"
    ids.write_text(" ".join(map(str, IDS)))
    r = run([lctl, "eval", MODEL, "--ids-file", ids, "--logits-out", out, "--top-k", 8,
             "-t", 2, *flags])
    assert r.returncode == 0, r.stderr.decode()
    return out.read_text()


def test_default_and_the_aliases_agree(lctl, tmp_path):
    f16 = eval_logits(lctl, tmp_path, "--kv-type", "f16")
    f32 = eval_logits(lctl, tmp_path, "--kv-type", "f32")
    assert f16 != f32  # the checks below can tell the caches apart
    assert eval_logits(lctl, tmp_path) == {"f16": f16, "f32": f32}[DEFAULT]
    assert eval_logits(lctl, tmp_path, "--kv-f16") == f16
    assert eval_logits(lctl, tmp_path, "--kv-f32") == f32
    assert eval_logits(lctl, tmp_path, "--kv-type", "F32") == f32
    assert eval_logits(lctl, tmp_path, "--kv-f32", "--kv-type", "f16") == f16


def test_bench_prints_the_cache(lctl):
    cases = (([], f"kv cache: {DEFAULT}"), (["--kv-type", "f32"], "kv cache: f32"),
             (["--kv-f16"], "kv cache: f16"))
    for flags, want in cases:
        r = run([lctl, "bench", MODEL, "-p", 4, "-n", 2, "-r", 1, "-t", 1, *flags])
        assert r.returncode == 0, r.stderr.decode()
        assert want.encode() in r.stdout


@pytest.mark.parametrize("cmd", COMMANDS)
def test_bad_kv_type_is_a_usage_error(lctl, cmd):
    for bad in ("q8_0", "bf16", "f64", "16", ""):
        r = run([lctl, cmd, MODEL, "--kv-type", bad], input=b"")
        assert r.returncode == 2, (bad, r.stderr)
        assert f"--kv-type needs f16 or f32, got '{bad}'".encode() in r.stderr
    r = run([lctl, cmd, MODEL, "--kv-type"], input=b"")
    assert r.returncode == 2 and b"--kv-type needs a value" in r.stderr


@pytest.mark.parametrize("cmd", COMMANDS)
def test_help_names_the_options(lctl, cmd):
    r = run([lctl, cmd, "--help"])
    assert r.returncode == 0
    assert b"--kv-type f16|f32" in r.stdout and b"--kv-f16" in r.stdout
    assert b"--kv-f32" in r.stdout and f"default {DEFAULT}".encode() in r.stdout


def test_api_kv_type():
    exe = build_dir() / "tensor-mesh-api"
    if not exe.exists():
        pytest.fail(f"{exe} not built")
    r = run([exe, "--help"])
    assert r.returncode == 0 and b"--kv-type f16|f32" in r.stdout and b"--kv-f32" in r.stdout
    assert f"default {DEFAULT}".encode() in r.stdout
    r = run([exe, "--model", MODEL, "--kv-type", "q4_0"])
    assert r.returncode == 2 and b"--kv-type needs f16 or f32, got 'q4_0'" in r.stderr
    r = run([exe, "--model", MODEL, "--kv-type"])
    assert r.returncode == 2 and b"--kv-type" in r.stderr

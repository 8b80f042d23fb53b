"""The matmul activation option of every command that creates a context (lctl run, eval, chat,
bench, embed and tensor-mesh-api): `--act-type q8|q16|f32` (any case; lctl also takes
`--exact`, an alias of `--act-type f32`), DEFAULT below when none is given
(tm_ctx_params_default, TM_ACT_DEFAULT); any other value is a usage error (exit code 2) that
names the value.

The three precisions are told apart by `lctl eval` on the llama golden fixture requantized to
Q8_0 (float weights ignore the option): q16 must be a path of its own (logits differ from both
q8 and f32 at 6 significant digits) whose mean NLL is far closer to f32's than q8's is.
Measured (2 threads, AVX-512 build): |q8 - f32| 9.1e-3 nats, |q16 - f32| 3e-6 nats."""
import json

import pytest

from conftest import ROOT, build_dir, run

MODEL = ROOT / "tests" / "golden" / "models" / "llama.gguf"
COMMANDS = ["run", "eval", "chat", "bench", "embed"]
DEFAULT = "q8"  # the activations of tm_ctx_params_default()


@pytest.fixture(scope="module")
def model_q8_0(lctl, tmp_path_factory):
    dst = tmp_path_factory.mktemp("act_cli") / "llama-q8_0.gguf"
    r = run([lctl, "quantize", MODEL, dst, "q8_0"])
    assert r.returncode == 0, r.stderr.decode()
    return dst


def eval_nll(lctl, model, tmp_path, *flags):
    """(mean NLL, --logits-out text) of the fixture's three prompts run as one sequence."""
    meta = json.loads((ROOT / "tests" / "golden" / "models" / "llama.json").read_text())
    ids, out = tmp_path / "ids.txt", tmp_path / "logits.tsv"
    ids.write_text(" ".join(str(t) for p in meta["prompts"] for t in p))
    r = run([lctl, "eval", model, "--ids-file", ids, "--logits-out", out, "--top-k", 8,
             "-t", 2, *flags])
    assert r.returncode == 0, r.stderr.decode()
    nll = [ln for ln in r.stdout.decode().splitlines() if ln.startswith("nll: ")]
    assert len(nll) == 1, r.stdout.decode()
    return float(nll[0].split()[1]), out.read_text()


def test_q16_is_near_f32_and_q8_is_not(lctl, model_q8_0, tmp_path):
    got = {a: eval_nll(lctl, model_q8_0, tmp_path, "--act-type", a) for a in ("q8", "q16", "f32")}
    # three distinct paths: the option reaches every matmul
    assert got["q8"][1] != got["q16"][1] and got["q16"][1] != got["f32"][1]
    q8, q16, f32 = (got[a][0] for a in ("q8", "q16", "f32"))
    assert abs(q16 - f32) <= 1e-4 * abs(f32), (q8, q16, f32)
    assert abs(q16 - f32) * 50 < abs(q8 - f32), (q8, q16, f32)
    # the default, the alias and another case select the same paths
    assert eval_nll(lctl, model_q8_0, tmp_path)[1] == got[DEFAULT][1]
    assert eval_nll(lctl, model_q8_0, tmp_path, "--exact")[1] == got["f32"][1]
    assert eval_nll(lctl, model_q8_0, tmp_path, "--act-type", "Q16")[1] == got["q16"][1]
    assert eval_nll(lctl, model_q8_0, tmp_path, "--exact", "--act-type", "q8")[1] == got["q8"][1]


def test_bench_prints_the_activations(lctl):
    cases = (([], f"activations: {DEFAULT}"), (["--act-type", "q16"], "activations: q16"),
             (["--exact"], "activations: f32"))
    for flags, want in cases:
        r = run([lctl, "bench", MODEL, "-p", 4, "-n", 2, "-r", 1, "-t", 1, *flags])
        assert r.returncode == 0, r.stderr.decode()
        assert want.encode() in r.stdout


@pytest.mark.parametrize("cmd", COMMANDS)
def test_bad_act_type_is_a_usage_error(lctl, cmd):
    for bad in ("bogus", "q4", "f16", "q8_0", ""):
        r = run([lctl, cmd, MODEL, "--act-type", bad], input=b"")
        assert r.returncode == 2, (bad, r.stderr)
        assert f"{cmd}: --act-type needs q8, q16 or f32, got '{bad}'".encode() in r.stderr
    r = run([lctl, cmd, MODEL, "--act-type"], input=b"")
    assert r.returncode == 2 and b"--act-type needs a value" in r.stderr


@pytest.mark.parametrize("cmd", COMMANDS)
def test_help_names_the_option(lctl, cmd):
    r = run([lctl, cmd, "--help"])
    assert r.returncode == 0
    assert b"--act-type q8|q16|f32" in r.stdout and b"--exact" in r.stdout
    assert f"default {DEFAULT}".encode() in r.stdout


def test_api_act_type():
    exe = build_dir() / "tensor-mesh-api"
    if not exe.exists():
        pytest.fail(f"{exe} not built")
    r = run([exe, "--help"])
    assert r.returncode == 0 and b"--act-type q8|q16|f32" in r.stdout
    assert f"default {DEFAULT}".encode() in r.stdout
    r = run([exe, "--model", MODEL, "--act-type", "bogus"])
    assert r.returncode == 2
    assert b"tensor-mesh-api: --act-type needs q8, q16 or f32, got 'bogus'" in r.stderr
    r = run([exe, "--model", MODEL, "--act-type"])
    assert r.returncode == 2 and b"--act-type" in r.stderr

"""Chat templates: lctl template render against jinja2 configured as Hugging Face does.

The oracle reproduces transformers' chat template environment
(chat_template_utils._compile_jinja_template): an ImmutableSandboxedEnvironment
with trim_blocks, lstrip_blocks and loopcontrols; tojson overridden with
json.dumps(x, ensure_ascii=False, indent=indent, separators=separators,
sort_keys=sort_keys); raise_exception and strftime_now as globals; the
{% generation %} tag (AssistantTracker) rendering its body. Render variables
follow apply_chat_template: messages, tools (None when absent), documents=None,
add_generation_prompt, and the special tokens.

Every gathered template (tests/golden/templates/*.jinja, plus the llama3 and
qwen3 tokenizer_config.json templates from ../shared/data, read in place) is
rendered with every conversation (tests/golden/templates/conversations/*.json),
with add_generation_prompt off and on, and must match byte for byte. Where
jinja2 raises (e.g. a template refusing a system role), lctl must fail with
exit code 1 and, for raise_exception, carry the message.
"""
import datetime
import json
import pathlib
import subprocess

import pytest

jinja2 = pytest.importorskip("jinja2")
import jinja2.ext  # noqa: E402
import jinja2.sandbox  # noqa: E402

from conftest import ROOT  # noqa: E402

GOLDEN = ROOT / "tests" / "golden" / "templates"
CONVS = sorted((GOLDEN / "conversations").glob("*.json"))

# bos/eos of the model each fixture template comes from.
FIXTURE_TOKENS = {
    "chatml": (None, "<|im_end|>"),
    "llama2": ("<s>", "</s>"),
    "mistral": ("<s>", "</s>"),
    "gemma": ("<bos>", "<eos>"),
    "phi3": ("<s>", "<|endoftext|>"),
    "zephyr": ("<s>", "</s>"),
    "deepseek": ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
    "llama31_tools": ("<|begin_of_text|>", "<|eot_id|>"),
    "features": ("<s>", "</s>"),
}
SHARED_MODELS = ["llama3", "qwen3"]


class GenerationTag(jinja2.ext.Extension):
    """transformers' AssistantTracker, minus the index bookkeeping: the body renders as is."""

    tags = {"generation"}

    def parse(self, parser):
        next(parser.stream)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


def hf_environment():
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[GenerationTag, jinja2.ext.loopcontrols]
    )

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def strftime_now(fmt):
        return datetime.datetime.now().strftime(fmt)

    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def config_token(cfg, key):
    v = cfg.get(key)
    if isinstance(v, dict):
        v = v.get("content")
    return v if isinstance(v, str) else None


def shared_config(shared_data, name):
    p = shared_data / "tokenizers" / name / "tokenizer_config.json"
    if not p.exists():
        pytest.skip(f"SKIPPED LOUDLY: {p} is absent; the {name} template is not tested")
    return p


def oracle(text, conv, agp, bos, eos):
    env = hf_environment()
    kw = dict(messages=conv["messages"], tools=conv.get("tools"), documents=None,
              add_generation_prompt=agp)
    if bos is not None:
        kw["bos_token"] = bos
    if eos is not None:
        kw["eos_token"] = eos
    try:
        return env.from_string(text).render(**kw), None
    except jinja2.exceptions.TemplateError as e:
        return None, e
    except (TypeError, ValueError, KeyError, IndexError, AttributeError) as e:
        return None, e


def run_lctl(lctl, source_args, conv, agp, bos, eos, tmp_path):
    msgs = tmp_path / "messages.json"
    msgs.write_text(json.dumps(conv["messages"], ensure_ascii=False), encoding="utf-8")
    args = [str(lctl), "template", "render", *source_args, "--messages", str(msgs)]
    if conv.get("tools") is not None:
        tools = tmp_path / "tools.json"
        tools.write_text(json.dumps(conv["tools"], ensure_ascii=False), encoding="utf-8")
        args += ["--tools", str(tools)]
    if agp:
        args.append("--add-generation-prompt")
    if bos is not None:
        args += ["--bos-token", bos]
    if eos is not None:
        args += ["--eos-token", eos]
    return subprocess.run(args, capture_output=True, timeout=60)


def check(proc, expected, err):
    if err is not None:
        assert proc.returncode == 1, f"jinja2 raised {err!r} but lctl exited {proc.returncode}"
        if isinstance(err, jinja2.exceptions.TemplateError) and str(err):
            assert str(err).encode() in proc.stderr, proc.stderr
        return
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    got = proc.stdout
    want = expected.encode("utf-8")
    if got != want:
        # Show where they first differ: byte-exactness is the contract.
        i = next((k for k in range(min(len(got), len(want))) if got[k] != want[k]),
                 min(len(got), len(want)))
        pytest.fail(f"first difference at byte {i}:\n  lctl:   {got[max(0, i - 60):i + 60]!r}\n"
                    f"  jinja2: {want[max(0, i - 60):i + 60]!r}")


FIXTURES = sorted(p.stem for p in GOLDEN.glob("*.jinja"))


@pytest.mark.parametrize("agp", [False, True], ids=["nogen", "gen"])
@pytest.mark.parametrize("conv_path", CONVS, ids=[p.stem for p in CONVS])
@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_template(lctl, tmp_path, name, conv_path, agp):
    text = (GOLDEN / f"{name}.jinja").read_text(encoding="utf-8")
    conv = json.loads(conv_path.read_text(encoding="utf-8"))
    bos, eos = FIXTURE_TOKENS.get(name, (None, None))
    expected, err = oracle(text, conv, agp, bos, eos)
    proc = run_lctl(lctl, ["--template", str(GOLDEN / f"{name}.jinja")], conv, agp, bos, eos,
                    tmp_path)
    check(proc, expected, err)


@pytest.mark.parametrize("agp", [False, True], ids=["nogen", "gen"])
@pytest.mark.parametrize("conv_path", CONVS, ids=[p.stem for p in CONVS])
@pytest.mark.parametrize("model", SHARED_MODELS)
def test_shared_model_template(lctl, shared_data, tmp_path, model, conv_path, agp):
    cfg_path = shared_config(shared_data, model)
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    text = cfg["chat_template"]
    if isinstance(text, list):
        conv0 = json.loads(conv_path.read_text(encoding="utf-8"))
        by_name = {t["name"]: t["template"] for t in text}
        text = by_name.get("tool_use") if conv0.get("tools") and "tool_use" in by_name \
            else by_name["default"]
    conv = json.loads(conv_path.read_text(encoding="utf-8"))
    bos, eos = config_token(cfg, "bos_token"), config_token(cfg, "eos_token")
    expected, err = oracle(text, conv, agp, bos, eos)
    # MODEL form: the template and special tokens come from the config itself.
    proc = run_lctl(lctl, [str(cfg_path)], conv, agp, None, None, tmp_path)
    check(proc, expected, err)


def test_shared_model_folder(lctl, shared_data, tmp_path):
    cfg_path = shared_config(shared_data, "qwen3")
    conv = json.loads((GOLDEN / "conversations" / "tools.json").read_text(encoding="utf-8"))
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    expected, err = oracle(cfg["chat_template"], conv, True, config_token(cfg, "bos_token"),
                           config_token(cfg, "eos_token"))
    proc = run_lctl(lctl, [str(cfg_path.parent)], conv, True, None, None, tmp_path)
    check(proc, expected, err)


def test_builtin_chatml_matches_fixture(lctl, tmp_path):
    conv = json.loads((GOLDEN / "conversations" / "system_multiturn.json").read_text("utf-8"))
    text = (GOLDEN / "chatml.jinja").read_text(encoding="utf-8")
    expected, _ = oracle(text, conv, True, None, None)
    proc = run_lctl(lctl, ["--builtin", "chatml"], conv, True, None, None, tmp_path)
    check(proc, expected, None)


def test_errors_go_to_stderr(lctl, tmp_path):
    bad = tmp_path / "bad.jinja"
    bad.write_text("line one\n{% if x %}\n{{ 1 + }}\n{% endif %}")
    msgs = tmp_path / "m.json"
    msgs.write_text("[]")
    proc = subprocess.run([str(lctl), "template", "render", "--template", str(bad), "--messages",
                           str(msgs)], capture_output=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stdout == b""
    assert b"bad.jinja:3:" in proc.stderr
    proc = subprocess.run([str(lctl), "template", "--help"], capture_output=True, timeout=60)
    assert proc.returncode == 0 and b"usage: lctl template render" in proc.stdout


DEFAULT_GGUF = ROOT / "models" / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"


@pytest.fixture(scope="module")
def default_gguf_template():
    """(template, bos, eos) of the default model, read once with the gguf package."""
    gguf = pytest.importorskip("gguf")
    if not DEFAULT_GGUF.exists():
        pytest.skip(f"SKIPPED: {DEFAULT_GGUF} absent (scripts/fetch_models.sh default)")
    r = gguf.GGUFReader(str(DEFAULT_GGUF))

    def field_str(k):
        f = r.fields[k]
        return bytes(f.parts[f.data[0]]).decode("utf-8")

    def token(k):
        f = r.fields[k]
        i = int(f.parts[f.data[0]][0])
        t = r.fields["tokenizer.ggml.tokens"]
        return bytes(t.parts[t.data[i]]).decode("utf-8")

    return (field_str("tokenizer.chat_template"), token("tokenizer.ggml.bos_token_id"),
            token("tokenizer.ggml.eos_token_id"))


@pytest.mark.parametrize("agp", [False, True], ids=["nogen", "gen"])
@pytest.mark.parametrize("conv_path", CONVS, ids=[p.stem for p in CONVS])
def test_default_model_gguf_template(lctl, tmp_path, default_gguf_template, conv_path, agp):
    """The real default model's own template, read from its GGUF (tokenizer.chat_template),
    with bos/eos looked up through its token ids, against jinja2."""
    text, bos, eos = default_gguf_template
    conv = json.loads(conv_path.read_text(encoding="utf-8"))
    expected, err = oracle(text, conv, agp, bos, eos)
    proc = run_lctl(lctl, [str(DEFAULT_GGUF)], conv, agp, None, None, tmp_path)
    check(proc, expected, err)

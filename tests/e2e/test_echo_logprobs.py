"""Legacy completions with echo: the prompt text before the answer, and with logprobs the
prompt tokens' log-probabilities (OpenAI's legacy shape, as vLLM serves it), including the
"score this text" call (echo, logprobs, max_tokens 0).

Oracle: `lctl eval --logits-out --kv-type f16` (the server's default KV cache)
teacher-forces the same token ids through a one-sequence context with logits for every
position (tm_ctx_params.logits_all) and writes each position's target logit,
log-probability (log-softmax in double) and top-k logits; the server computes them in its
scheduler in chunks of at most 64 rows per step, mixed with other requests.
Tolerance: 1e-4 absolute per logprob (lctl prints 6 significant digits; measured: at most
5e-6 over a 262-token prompt), 1e-3 on the sum over a prompt (measured 4e-5).
"""
import concurrent.futures
import http.client
import json
import math
import os
import pathlib
import subprocess

import pytest

openai = pytest.importorskip("openai")

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROMPT = "Once upon a time"
TOL = 1e-4


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base + "/v1", api_key="none", max_retries=0, timeout=60)


def raw(server, path, body):
    c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    c.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, json.loads(data)


def tokenize(server, text):
    return raw(server, "/tokenize", {"prompt": text})[1]["tokens"]


def detokenize(server, ids):
    """The text of ids as one text (BOS dropped: /detokenize spells llama2.c's as "<s>")."""
    bos = tokenize(server, "")[:1]
    ids = ids[1:] if bos and ids[:1] == bos else ids
    return raw(server, "/detokenize", {"tokens": ids})[1]["prompt"].lstrip(" ")


def lctl_eval(server, ids, tmp_path, k=5):
    """[(target id, target logprob, [(id, logprob)...])] for positions 0 .. len(ids) - 2."""
    build = pathlib.Path(os.environ.get("TM_BUILD_DIR", ROOT / "build" / "release"))
    f, g = tmp_path / "ids.txt", tmp_path / "logits.tsv"
    f.write_text(" ".join(map(str, ids)))
    subprocess.run([str(build / "lctl"), "eval", str(server.model), "--tokenizer",
                    str(server.tokenizer), "--ids-file", str(f), "--logits-out", str(g),
                    "--top-k", str(k), "--kv-type", "f16"], check=True, capture_output=True)
    rows = []
    for line in g.read_text().splitlines():
        cols = line.split("\t")
        tid, tlogit, tlp = int(cols[1]), float(cols[2]), float(cols[3])
        lse = tlogit - tlp
        top = [(int(p.split(":")[0]), float(p.split(":")[1]) - lse) for p in cols[4:] if p]
        rows.append((tid, tlp, top))
    return rows


def greedy_ids(server, ids, n, tmp_path):
    """The n greedy continuation ids of ids, each from lctl eval's own argmax."""
    gen = []
    for _ in range(n):
        gen.append(lctl_eval(server, ids + gen + [0], tmp_path, k=1)[-1][2][0][0])
    return gen


def check_prompt_part(lp, ids, rows, n_top):
    """lp (a Logprobs object) starts with the prompt ids: null first, the rest = oracle rows."""
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    for j in range(1, len(ids)):
        tid, tlp, top = rows[j - 1]
        assert tid == ids[j]
        assert abs(lp.token_logprobs[j] - tlp) < TOL, (j, lp.token_logprobs[j], tlp)
        d = lp.top_logprobs[j]
        # the n_top alternatives, plus the prompt token itself when it is not one of them
        assert n_top <= len(d) <= n_top + 1
        assert lp.tokens[j] in d and abs(d[lp.tokens[j]] - lp.token_logprobs[j]) < 1e-9
        mine = sorted(d.values(), reverse=True)[:n_top]
        assert mine == pytest.approx([x for _, x in top[:n_top]], abs=TOL)
    s = sum(lp.token_logprobs[1:len(ids)])
    assert abs(s - sum(r[1] for r in rows[:len(ids) - 1])) < 1e-3
    return s


def check_offsets(lp, text):
    """Each token starts at its text_offset in text (byte offsets, as the server counts)."""
    b = text.encode()
    for tok, off in zip(lp.tokens, lp.text_offset):
        assert b[off:].startswith(tok.encode()), (tok, off, text)
    assert lp.text_offset == sorted(lp.text_offset)


def test_echo_without_logprobs_continues_the_prompt(server, client, tmp_path):
    """The answer's text continues the prompt's: "Once upon" + " a time", as decoding the
    prompt and the greedy ids together gives (the ids from lctl eval's argmax)."""
    prompt = "Once upon"
    ids = tokenize(server, prompt)
    r = client.completions.create(model=server.model_id, prompt=prompt, max_tokens=5,
                                  temperature=0, echo=True)
    gen = greedy_ids(server, ids, 5, tmp_path)
    assert r.choices[0].text == detokenize(server, ids + gen)
    assert r.choices[0].text.startswith(prompt + " ")
    assert r.choices[0].logprobs is None
    # max_tokens 0: the prompt alone
    r = client.completions.create(model=server.model_id, prompt=prompt, max_tokens=0, echo=True)
    assert r.choices[0].text == prompt and r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 0 and r.usage.prompt_tokens == len(ids)
    # streaming: the prompt is the first chunk, then the answer
    chunks = list(client.completions.create(model=server.model_id, prompt=prompt, max_tokens=5,
                                            temperature=0, echo=True, stream=True))
    texts = [c.choices[0].text for c in chunks if c.choices]
    assert texts[0] == prompt and "".join(texts) == detokenize(server, ids + gen)


def test_score_prompt_max_tokens_0(server, client, tmp_path):
    ids = tokenize(server, PROMPT)
    r = client.completions.create(model=server.model_id, prompt=PROMPT, max_tokens=0, echo=True,
                                  logprobs=5)
    c = r.choices[0]
    assert c.text == PROMPT and c.finish_reason == "length"
    assert r.usage.completion_tokens == 0 and r.usage.prompt_tokens == len(ids)
    lp = c.logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(ids)
    assert len(lp.text_offset) == len(ids)
    assert "".join(lp.tokens) == PROMPT
    assert lp.tokens[0] == ""  # BOS: the echoed text does not spell it
    check_offsets(lp, c.text)
    s = check_prompt_part(lp, ids, lctl_eval(server, ids, tmp_path), 5)
    print(f"sum of {len(ids) - 1} prompt logprobs: {s:.6f}")
    # the same through token ids, and logprobs 0: only the token itself in each dict
    r = client.completions.create(model=server.model_id, prompt=ids, max_tokens=0, echo=True,
                                  logprobs=0)
    lp0 = r.choices[0].logprobs
    assert lp0.token_logprobs == pytest.approx(lp.token_logprobs, abs=0)
    assert all(len(d) == 1 for d in lp0.top_logprobs[1:])
    # vLLM's bound (20) is accepted
    r = client.completions.create(model=server.model_id, prompt=PROMPT, max_tokens=0, echo=True,
                                  logprobs=20)
    assert all(20 <= len(d) <= 21 for d in r.choices[0].logprobs.top_logprobs[1:])


def test_echo_logprobs_then_generate(server, client, tmp_path):
    ids = tokenize(server, PROMPT)
    plain = client.completions.create(model=server.model_id, prompt=PROMPT, max_tokens=6,
                                      temperature=0, logprobs=3)
    r = client.completions.create(model=server.model_id, prompt=PROMPT, max_tokens=6,
                                  temperature=0, logprobs=3, echo=True)
    c, lp = r.choices[0], r.choices[0].logprobs
    assert c.text.startswith(PROMPT) and r.usage.completion_tokens == 6
    n = len(ids)
    assert len(lp.tokens) == n + 6
    check_prompt_part(lp, ids, lctl_eval(server, ids, tmp_path), 3)
    # the generated part: as without echo (tokens' text continues the prompt)
    assert lp.token_logprobs[n:] == pytest.approx(plain.choices[0].logprobs.token_logprobs,
                                                  abs=1e-6)
    assert [t.strip() for t in lp.tokens[n:]] == \
        [t.strip() for t in plain.choices[0].logprobs.tokens]
    assert lp.text_offset[n] == len(PROMPT.encode())
    assert "".join(lp.tokens) == c.text
    check_offsets(lp, c.text)
    # streaming: the first chunk is the prompt with its logprobs; then the same tokens
    chunks = list(client.completions.create(model=server.model_id, prompt=PROMPT, max_tokens=6,
                                            temperature=0, logprobs=3, echo=True, stream=True))
    first = chunks[0].choices[0]
    assert first.text == PROMPT and len(first.logprobs.tokens) == n
    assert first.logprobs.token_logprobs[0] is None
    toks, vals, offs = [], [], []
    for ch in chunks:
        if ch.choices and ch.choices[0].logprobs:
            toks += ch.choices[0].logprobs.tokens
            vals += ch.choices[0].logprobs.token_logprobs
            offs += ch.choices[0].logprobs.text_offset
    assert toks == lp.tokens and offs == lp.text_offset
    assert vals[0] is None and vals[1:] == pytest.approx(lp.token_logprobs[1:], abs=0)
    assert "".join(ch.choices[0].text for ch in chunks if ch.choices) == c.text


def test_long_prompt_mixed_with_other_requests(server, client, tmp_path):
    """A prompt of ~200 tokens (several steps of prompt-logprob rows), scored while other
    requests generate, and after the same prompt filled the prefix cache: every position
    is computed (no cached tokens) and equals the oracle."""
    text = ("Lily and Ben went to the park. They saw a big red ball and a small dog. "
            "The dog wanted to play with the ball, so Lily threw it far away. ") * 5
    ids = tokenize(server, text)
    assert 150 < len(ids) < 400
    warm = client.completions.create(model=server.model_id, prompt=text, max_tokens=1)
    assert warm.usage.prompt_tokens == len(ids)

    def other(k):
        return client.completions.create(model=server.model_id, prompt=PROMPT, max_tokens=40,
                                         temperature=0.8, seed=k).usage.completion_tokens

    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        others = [ex.submit(other, k) for k in range(3)]
        r = client.completions.create(model=server.model_id, prompt=text, max_tokens=0,
                                      echo=True, logprobs=2)
        assert all(f.result() == 40 for f in others)
    assert r.usage.prompt_tokens_details.cached_tokens == 0
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(ids)
    check_prompt_part(lp, ids, lctl_eval(server, ids, tmp_path), 2)
    check_offsets(lp, r.choices[0].text)
    # a plain request for the same prompt still reuses the cache
    again = client.completions.create(model=server.model_id, prompt=text, max_tokens=1)
    assert again.usage.prompt_tokens_details.cached_tokens > 0


def test_n_choices_share_the_prompt_part(server, client):
    r = client.completions.create(model=server.model_id, prompt=PROMPT, max_tokens=3, n=2,
                                  temperature=1.0, seed=3, echo=True, logprobs=1)
    n = len(tokenize(server, PROMPT))
    a, b = (c.logprobs for c in r.choices)
    assert a.tokens[:n] == b.tokens[:n] and a.token_logprobs[:n] == b.token_logprobs[:n]
    assert r.usage.prompt_tokens == n and r.usage.completion_tokens == 6


def test_echo_logprobs_errors(server):
    cases = [({"logprobs": 21, "echo": True}, "logprobs"),
             ({"logprobs": -1, "echo": True}, "logprobs"),
             ({"logprobs": "2", "echo": True}, "logprobs"),
             ({"logprobs": 2.5, "echo": True}, "logprobs"),
             ({"logprobs": True, "echo": True}, "logprobs"),
             ({"max_tokens": 0}, "max_tokens"),
             ({"max_tokens": 0, "logprobs": 2}, "max_tokens"),
             ({"max_tokens": -1, "echo": True}, "max_tokens"),
             ({"echo": "yes"}, "echo")]
    for extra, param in cases:
        body = {"model": server.model_id, "prompt": PROMPT, **extra}
        status, err = raw(server, "/v1/completions", body)
        assert status == 400, (extra, err)
        e = err["error"]
        assert set(e) == {"message", "type", "param", "code"}
        assert e["type"] == "invalid_request_error" and e["param"] == param, (extra, e)
    # chat: echo is not a chat parameter, max_tokens 0 is not allowed there
    for extra, param in [({"echo": True}, "echo"), ({"max_tokens": 0}, "max_tokens")]:
        body = {"model": server.model_id, "messages": [{"role": "user", "content": "x"}], **extra}
        status, err = raw(server, "/v1/chat/completions", body)
        assert status == 400 and err["error"]["param"] == param, (extra, err)
    # the server is fine afterwards
    status, ok = raw(server, "/v1/completions", {"model": server.model_id, "prompt": PROMPT,
                                                 "max_tokens": 0, "echo": True, "logprobs": 1})
    assert status == 200 and math.isfinite(ok["choices"][0]["logprobs"]["token_logprobs"][-1])

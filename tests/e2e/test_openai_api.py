"""tensor-mesh-api against the official openai client and raw HTTP (see conftest.py)."""
import concurrent.futures
import http.client
import json
import re
import socket
import subprocess
import time
import os
import pathlib
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def build_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("TM_BUILD_DIR", ROOT / "build" / "release"))


openai = pytest.importorskip("openai")

PROMPT = "Once upon a time"


def raw(server, method, path, body=None, headers=None, timeout=30):
    c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, dict((k.lower(), v) for k, v in r.getheaders()), data


def assert_error_shape(data, status_type="invalid_request_error"):
    err = json.loads(data)["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert isinstance(err["message"], str) and err["message"]
    assert err["type"] == status_type
    return err


def metrics(server):
    with urllib.request.urlopen(server.base + "/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return text, out


# ---- basic endpoints ------------------------------------------------------------------

def test_health_and_models(server, client):
    status, _, data = raw(server, "GET", "/health")
    assert status == 200 and json.loads(data) == {"status": "ok"}
    models = client.models.list()
    assert [m.id for m in models.data] == [server.model_id]
    assert models.data[0].object == "model"


def test_chat_non_streaming(server, client):
    r = client.chat.completions.create(model=server.model_id, max_tokens=12, temperature=0,
                                       messages=[{"role": "user", "content": "Tell a story"}])
    assert r.object == "chat.completion"
    assert r.choices[0].message.role == "assistant"
    assert isinstance(r.choices[0].message.content, str)
    assert r.choices[0].finish_reason in ("stop", "length")
    u = r.usage
    assert u.completion_tokens <= 12 and u.prompt_tokens > 0
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens
    # prompt_tokens counts what the model ingested after the chat template
    status, _, data = raw(server, "POST", "/tokenize", json.dumps(
        {"messages": [{"role": "user", "content": "Tell a story"}]}))
    assert status == 200 and json.loads(data)["count"] == u.prompt_tokens


def test_chat_streaming_matches_non_streaming(server, client):
    kw = dict(model=server.model_id, max_tokens=20, temperature=0,
              messages=[{"role": "user", "content": "Once"}])
    full = client.chat.completions.create(**kw)
    chunks = list(client.chat.completions.create(stream=True,
                                                 stream_options={"include_usage": True}, **kw))
    assert chunks[0].choices[0].delta.role == "assistant"
    ids = {c.id for c in chunks}
    assert len(ids) == 1
    choice_chunks = [c for c in chunks if c.choices]
    assert all(c.choices[0].finish_reason is None for c in choice_chunks[:-1])
    assert choice_chunks[-1].choices[0].finish_reason == full.choices[0].finish_reason
    assert all(c.usage is None for c in choice_chunks)
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.model_dump() == full.usage.model_dump() | {
        k: v for k, v in last.usage.model_dump().items() if k not in
        ("prompt_tokens", "completion_tokens", "total_tokens")}
    text = "".join(c.choices[0].delta.content or "" for c in choice_chunks)
    assert text == full.choices[0].message.content


def test_stream_without_include_usage_has_no_usage_chunk(server, client):
    chunks = list(client.chat.completions.create(
        model=server.model_id, max_tokens=5, stream=True,
        messages=[{"role": "user", "content": "Hi"}]))
    assert all(c.choices for c in chunks)


def test_completions(server, client):
    r = client.completions.create(model=server.model_id, prompt=PROMPT, max_tokens=10,
                                  temperature=0)
    assert r.object == "text_completion"
    assert r.usage.completion_tokens == 10 and r.choices[0].finish_reason == "length"
    s = client.completions.create(model=server.model_id, prompt=PROMPT, max_tokens=10,
                                  temperature=0, stream=True,
                                  stream_options={"include_usage": True})
    chunks = list(s)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == r.choices[0].text
    assert chunks[-1].usage.total_tokens == r.usage.total_tokens
    # token-array prompt gives the same result as the text it encodes
    _, _, tok = raw(server, "POST", "/tokenize", json.dumps({"prompt": PROMPT}))
    ids = json.loads(tok)["tokens"]
    r2 = client.completions.create(model=server.model_id, prompt=ids, max_tokens=10,
                                   temperature=0)
    assert r2.choices[0].text == r.choices[0].text
    assert r2.usage.prompt_tokens == len(ids) == r.usage.prompt_tokens


def test_max_tokens_and_max_completion_tokens(server, client):
    r = client.chat.completions.create(model=server.model_id, max_completion_tokens=3,
                                       messages=[{"role": "user", "content": "Hi"}], seed=1,
                                       extra_body={"ignore_eos": True})
    assert r.usage.completion_tokens == 3 and r.choices[0].finish_reason == "length"


def test_stop_strings(server, client):
    base = client.completions.create(model=server.model_id, prompt=PROMPT, max_tokens=30,
                                     temperature=0).choices[0].text
    word = base.split()[3]  # a word from the middle of the greedy continuation
    cut = base.index(word)
    r = client.completions.create(model=server.model_id, prompt=PROMPT, max_tokens=30,
                                  temperature=0, stop=[word, "zzzz"])
    assert r.choices[0].text == base[:cut]
    assert r.choices[0].finish_reason == "stop"
    chunks = list(client.completions.create(model=server.model_id, prompt=PROMPT, max_tokens=30,
                                            temperature=0, stop=word, stream=True))
    assert "".join(c.choices[0].text for c in chunks) == base[:cut]
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_seed_reproducible(server, client):
    kw = dict(model=server.model_id, prompt=PROMPT, max_tokens=24, temperature=1.0, top_p=0.95,
              seed=1234)
    a = client.completions.create(**kw).choices[0].text
    b = client.completions.create(**kw).choices[0].text
    assert a == b


def test_n_choices(server, client):
    r = client.completions.create(model=server.model_id, prompt=PROMPT, max_tokens=8, n=3,
                                  seed=7, temperature=1.0, extra_body={"ignore_eos": True})
    assert [c.index for c in r.choices] == [0, 1, 2]
    # the prompt is counted once, completion tokens are summed over the choices
    assert r.usage.completion_tokens == 24 and r.usage.prompt_tokens == 5
    chunks = list(client.completions.create(model=server.model_id, prompt=PROMPT, max_tokens=8,
                                            n=2, seed=7, temperature=1.0, stream=True))
    assert {c.choices[0].index for c in chunks} == {0, 1}


def test_sampling_params_accepted(server, client):
    r = client.chat.completions.create(
        model=server.model_id, max_tokens=6, temperature=0.7, top_p=0.9, presence_penalty=0.5,
        frequency_penalty=0.5, seed=3, messages=[{"role": "system", "content": "Be brief."},
                                                 {"role": "user", "content": [
                                                     {"type": "text", "text": "Hi"}]}],
        extra_body={"top_k": 20, "min_p": 0.05, "repetition_penalty": 1.1})
    assert r.usage.completion_tokens <= 6


def test_greedy_equals_lctl_run(server, client):
    lctl = build_dir() / "lctl"
    if not lctl.exists():
        pytest.fail(f"{lctl} not built")
    # --kv-type f16: the server fixture runs with the default (F16) cache
    out = subprocess.run([str(lctl), "run", str(server.model), "--tokenizer",
                          str(server.tokenizer), "-p", PROMPT, "--temp", "0", "-n", "40",
                          "--kv-type", "f16"],
                         capture_output=True, timeout=60, check=True).stdout.decode()
    r = client.completions.create(model=server.model_id, prompt=PROMPT, max_tokens=40,
                                  temperature=0)
    assert out.endswith("\n")
    assert r.choices[0].text == out[:-1]


# ---- errors -----------------------------------------------------------------------------

def test_errors_raised_by_client(server, client, keyed_server):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=server.model_id, temperature=5,
                                       messages=[{"role": "user", "content": "Hi"}])
    assert e.value.body["param"] == "temperature"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=server.model_id, messages=[])
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="no-such-model",
                                       messages=[{"role": "user", "content": "Hi"}])
    assert e.value.body["code"] == "model_not_found"
    bad = openai.OpenAI(base_url=keyed_server.base + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    good = openai.OpenAI(base_url=keyed_server.base + "/v1", api_key="sekrit", max_retries=0)
    assert good.models.list().data[0].id == keyed_server.model_id
    status, _, data = raw(keyed_server, "POST", "/v1/completions",
                          json.dumps({"model": "x", "prompt": "a"}))
    assert status == 401
    assert_error_shape(data)
    assert raw(keyed_server, "GET", "/health")[0] == 200  # health needs no key


def test_raw_malformed_requests(server):
    status, hdr, data = raw(server, "POST", "/v1/chat/completions", b"{not json")
    assert status == 400 and hdr["content-type"].startswith("application/json")
    assert_error_shape(data)
    body = b'{"model":"stories260K","messages":[{"role":"user","content":"\xff\xfe bad"}]}'
    status, _, data = raw(server, "POST", "/v1/chat/completions", body)
    assert status == 400
    assert_error_shape(data)
    status, _, data = raw(server, "POST", "/v1/chat/completions",
                          json.dumps({"model": server.model_id}))
    assert status == 400 and json.loads(data)["error"]["param"] == "messages"
    status, _, data = raw(server, "POST", "/v1/completions",
                          json.dumps({"model": server.model_id, "prompt": 5}))
    assert status == 400
    status, _, data = raw(server, "POST", "/v1/completions",
                          json.dumps({"model": server.model_id, "prompt": "a",
                                      "max_tokens": "ten"}))
    assert status == 400 and json.loads(data)["error"]["param"] == "max_tokens"
    status, _, data = raw(server, "GET", "/v1/nope")
    assert status == 404
    assert_error_shape(data)
    status, _, _ = raw(server, "GET", "/v1/chat/completions")
    assert status == 405


def test_prompt_too_long(server):
    status, _, data = raw(server, "POST", "/v1/completions",
                          json.dumps({"model": server.model_id, "prompt": [100] * 595}))
    assert status == 400
    err = assert_error_shape(data)
    assert err["code"] == "context_length_exceeded"
    assert "512" in err["message"] and "595" in err["message"]
    # a streaming request is validated before any 200 is sent
    status, _, data = raw(server, "POST", "/v1/completions",
                          json.dumps({"model": server.model_id, "stream": True,
                                      "prompt": [100] * 595}))
    assert status == 400


def test_oversized_body_413(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/json\r\nContent-Length: 9000000\r\n\r\n" +
                  b"{" * 1000)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 413")


def test_client_vanishing_mid_stream(slow_server):
    """A client that disconnects mid-stream is cancelled within a step: its request stops
    generating and the next request is served. Uses the default model so the request is
    certainly still running when the client goes (the tiny model finishes in milliseconds)."""
    srv = slow_server
    name = f'model_name="{srv.model_id}"'
    before = metrics(srv)[1]
    body = json.dumps({"model": srv.model_id, "stream": True, "max_tokens": 400,
                       "ignore_eos": True, "temperature": 0,
                       "messages": [{"role": "user", "content": "Count from 1 to 500."}]}).encode()
    with socket.create_connection(("127.0.0.1", srv.port), timeout=60) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                  b"application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
                  + body)
        got = b""
        while b"data: " not in got:  # headers and the first chunk: generation is running
            chunk = s.recv(4096)
            assert chunk, "server closed the stream"
            got += chunk
        assert got.startswith(b"HTTP/1.1 200")
    deadline = time.time() + 60
    while time.time() < deadline:
        m = metrics(srv)[1]
        if m[f"tensormesh_num_requests_running{{{name}}}"] == 0:
            break
        time.sleep(0.1)
    m = metrics(srv)[1]
    key = f"tensormesh_requests_cancelled_total{{{name}}}"
    assert m[f"tensormesh_num_requests_running{{{name}}}"] == 0
    assert m[key] == before.get(key, 0) + 1
    gen = f"tensormesh_generation_tokens_total{{{name}}}"
    assert m[gen] - before.get(gen, 0) < 400
    r = urllib.request.urlopen(urllib.request.Request(
        srv.base + "/v1/completions", method="POST",
        headers={"Content-Type": "application/json"},
        data=json.dumps({"model": srv.model_id, "prompt": "def f():", "max_tokens": 3}).encode()),
        timeout=120)
    assert json.loads(r.read())["usage"]["completion_tokens"] <= 3


def test_twenty_concurrent_requests(server, client):
    def one(i):
        if i % 2:
            r = client.chat.completions.create(model=server.model_id, max_tokens=16, seed=i,
                                               messages=[{"role": "user", "content": f"n{i}"}])
            return r.usage.completion_tokens
        chunks = list(client.completions.create(model=server.model_id, prompt=PROMPT,
                                                max_tokens=16, seed=i, stream=True,
                                                stream_options={"include_usage": True}))
        return chunks[-1].usage.completion_tokens

    with concurrent.futures.ThreadPoolExecutor(20) as ex:
        results = list(ex.map(one, range(20), timeout=120))
    assert len(results) == 20 and all(1 <= n <= 16 for n in results)
    r = client.completions.create(model=server.model_id, prompt=PROMPT, max_tokens=4,
                                  temperature=0)
    assert r.usage.completion_tokens == 4


def test_metrics_names(server):
    text, m = metrics(server)
    for name in ("tensormesh_http_requests_total", "tensormesh_num_requests_waiting",
                 "tensormesh_generation_tokens_total", "tensormesh_time_to_first_token_seconds",
                 "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc"):
        assert name in text
    assert re.search(r'tensormesh_http_requests_total\{route="/v1/completions",status="200"\} '
                     r'[1-9]', text)


def test_tokenize_detokenize(server):
    status, _, data = raw(server, "POST", "/tokenize", json.dumps({"prompt": PROMPT}))
    ids = json.loads(data)["tokens"]
    status, _, data = raw(server, "POST", "/detokenize",
                          json.dumps({"tokens": ids[1:]}))  # without BOS
    assert status == 200 and json.loads(data)["prompt"].strip() == PROMPT


def test_completions_echo(server, client):
    plain = client.completions.create(model=server.model_id, prompt=PROMPT, max_tokens=6,
                                      temperature=0)
    r = client.completions.create(model=server.model_id, prompt=PROMPT, max_tokens=6,
                                  temperature=0, echo=True)
    assert r.choices[0].text == PROMPT + plain.choices[0].text
    chunks = list(client.completions.create(model=server.model_id, prompt=PROMPT, max_tokens=6,
                                            temperature=0, echo=True, stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == r.choices[0].text
    assert chunks[0].choices[0].text == PROMPT
    ids = json.loads(raw(server, "POST", "/tokenize", json.dumps({"prompt": PROMPT}))[2])["tokens"]
    r = client.completions.create(model=server.model_id, prompt=ids, max_tokens=6,
                                  temperature=0, echo=True)
    assert r.choices[0].text.lstrip().startswith(PROMPT)

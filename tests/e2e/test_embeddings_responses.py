"""/v1/embeddings, /v1/responses (HTTP + SSE) and its WebSocket mode, driven by
the official openai client, raw HTTP and the `websockets` package (conftest.py
starts the servers)."""
import asyncio
import base64
import http.client
import json
import math
import pathlib
import struct

import pytest

from .conftest import ROOT, Server

openai = pytest.importorskip("openai")

MINILM = ROOT / "models" / "all-MiniLM-L6-v2"
GOLDEN = ROOT / "tests" / "golden" / "minilm_embeddings.json"


@pytest.fixture(scope="module")
def emb_server():
    if not (MINILM / "model.safetensors").exists():
        pytest.skip(f"SKIPPED: {MINILM} is absent (scripts/fetch_models.sh)")
    # --kv-type f32: the golden check below holds transformers' float32 vectors to 1e-4
    # (measured 1.4e-7 with F32; the F16 default is bounded in tests/py/test_embed_cli.py)
    s = Server("--parallel", "2", "--embedding-model", str(MINILM), "--kv-type", "f32")
    yield s
    s.stop()
    assert s.proc.returncode == 0


@pytest.fixture(scope="module")
def eclient(emb_server):
    return openai.OpenAI(base_url=emb_server.base + "/v1", api_key="unused", max_retries=0,
                         timeout=60)


def raw(server, method, path, body=None, timeout=30):
    c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    c.request(method, path, body=body, headers={"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def close(a, b, tol):
    return len(a) == len(b) and max(abs(x - y) for x, y in zip(a, b)) <= tol


# ---- embeddings ------------------------------------------------------------------------

def test_embeddings_match_golden(emb_server, eclient):
    g = json.loads(GOLDEN.read_text())
    texts = [c["text"] for c in g["cases"]]
    models = [m.id for m in eclient.models.list().data]
    assert models == [emb_server.model_id, "all-MiniLM-L6-v2"]
    for fmt in ("float", "base64"):
        r = eclient.embeddings.create(model="all-MiniLM-L6-v2", input=texts, encoding_format=fmt)
        assert r.object == "list" and r.model == "all-MiniLM-L6-v2"
        assert [d.index for d in r.data] == list(range(len(texts)))
        for d, c in zip(r.data, g["cases"]):
            v = d.embedding
            if isinstance(v, str):  # the client hands base64 back undecoded when asked for it
                raw_b = base64.b64decode(v)
                v = list(struct.unpack(f"<{len(raw_b) // 4}f", raw_b))
            assert close(v, c["embedding"], g["tol"]), c["text"]
        assert r.usage.prompt_tokens == sum(len(c["ids"]) for c in g["cases"])
        assert r.usage.total_tokens == r.usage.prompt_tokens
    # default (the client asks for base64 and decodes it), one string
    r = eclient.embeddings.create(model="all-MiniLM-L6-v2", input=texts[0])
    assert close(r.data[0].embedding, g["cases"][0]["embedding"], g["tol"])
    assert abs(math.sqrt(sum(x * x for x in r.data[0].embedding)) - 1) < 1e-4
    # token ids: one array and an array of arrays
    r = eclient.embeddings.create(model="all-MiniLM-L6-v2", input=g["cases"][1]["ids"],
                                  encoding_format="float")
    assert close(r.data[0].embedding, g["cases"][1]["embedding"], g["tol"])
    r = eclient.embeddings.create(model="all-MiniLM-L6-v2",
                                  input=[c["ids"] for c in g["cases"][:2]],
                                  encoding_format="float")
    assert len(r.data) == 2 and close(r.data[1].embedding, g["cases"][1]["embedding"], g["tol"])


def test_embeddings_errors(emb_server, eclient):
    with pytest.raises(openai.BadRequestError) as e:
        eclient.embeddings.create(model=emb_server.model_id, input="hello")
    assert "embedding" in str(e.value) and e.value.body["code"] == "model_not_supported"
    with pytest.raises(openai.NotFoundError):
        eclient.embeddings.create(model="nope", input="hello")
    for body, param in [({"model": "all-MiniLM-L6-v2"}, "input"),
                        ({"model": "all-MiniLM-L6-v2", "input": ""}, "input"),
                        ({"model": "all-MiniLM-L6-v2", "input": [1, -4]}, "input"),
                        ({"model": "all-MiniLM-L6-v2", "input": [[]]}, "input"),
                        ({"model": "all-MiniLM-L6-v2", "input": "x", "encoding_format": "hex"},
                         "encoding_format"),
                        ({"model": "all-MiniLM-L6-v2", "input": "x", "dimensions": 12},
                         "dimensions"),
                        ({"model": "all-MiniLM-L6-v2", "input": "word " * 600}, "input")]:
        status, data = raw(emb_server, "POST", "/v1/embeddings", json.dumps(body))
        assert status == 400, body
        assert json.loads(data)["error"]["param"] == param
    # the generative model refuses embeddings; the embedding model refuses chat
    with pytest.raises(openai.BadRequestError):
        eclient.chat.completions.create(model="all-MiniLM-L6-v2",
                                        messages=[{"role": "user", "content": "hi"}])


def test_embeddings_without_embedding_model(server, client):
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model=server.model_id, input="hello")
    assert "--embedding-model" in str(e.value)


# ---- responses over HTTP ------------------------------------------------------------------

def test_responses_non_streaming(server, client):
    r = client.responses.create(model=server.model_id, input="Once upon a time",
                                instructions="Tell a story.", max_output_tokens=8,
                                temperature=0)
    assert r.object == "response" and r.id.startswith("resp_")
    assert r.status in ("completed", "incomplete")
    assert r.output[0].type == "message" and r.output[0].role == "assistant"
    assert isinstance(r.output_text, str) and r.output_text
    assert r.usage.output_tokens <= 8 and r.usage.input_tokens > 0
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    assert r.instructions == "Tell a story." and r.max_output_tokens == 8
    if r.status == "incomplete":
        assert r.incomplete_details.reason == "max_output_tokens"
    # greedy: the same text as chat completions with the same messages
    c = client.chat.completions.create(model=server.model_id, max_tokens=8, temperature=0,
                                       messages=[{"role": "system", "content": "Tell a story."},
                                                 {"role": "user", "content": "Once upon a time"}])
    assert c.choices[0].message.content == r.output_text
    # GET /v1/responses/{id}
    g = client.responses.retrieve(r.id)
    assert g.id == r.id and g.output_text == r.output_text
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve("resp_doesnotexist")


def test_responses_streaming_events(server, client):
    events = list(client.responses.create(model=server.model_id, input="Once upon a time",
                                          max_output_tokens=6, temperature=0, stream=True))
    types = [e.type for e in events]
    assert types[:4] == ["response.created", "response.in_progress",
                         "response.output_item.added", "response.content_part.added"]
    assert types[-4:-1] == ["response.output_text.done", "response.content_part.done",
                            "response.output_item.done"]
    assert types[-1] in ("response.completed", "response.incomplete")
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == events[-4].text == events[-1].response.output_text
    r = client.responses.create(model=server.model_id, input="Once upon a time",
                                max_output_tokens=6, temperature=0)
    assert r.output_text == deltas


def test_responses_previous_response_id(server, client):
    r1 = client.responses.create(model=server.model_id, input="Lily had a cat.",
                                 max_output_tokens=5, temperature=0)
    r2 = client.responses.create(model=server.model_id, input="What next?",
                                 previous_response_id=r1.id, max_output_tokens=5,
                                 temperature=0)
    assert r2.previous_response_id == r1.id
    # the same as sending the whole conversation explicitly
    r3 = client.responses.create(model=server.model_id, max_output_tokens=5, temperature=0,
                                 input=[{"role": "user", "content": "Lily had a cat."},
                                        {"role": "assistant", "content": r1.output_text},
                                        {"role": "user", "content": "What next?"}])
    assert r2.output_text == r3.output_text
    assert r2.usage.input_tokens == r3.usage.input_tokens > r1.usage.input_tokens
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model=server.model_id, input="x",
                                previous_response_id="resp_missing")


def test_responses_errors(server):
    for body, param in [({"input": "x"}, "model"),
                        ({"model": server.model_id}, "input"),
                        ({"model": server.model_id, "input": 3}, "input"),
                        ({"model": server.model_id, "input": "x", "max_output_tokens": 0},
                         "max_output_tokens"),
                        ({"model": server.model_id, "input": "x", "temperature": 9},
                         "temperature"),
                        ({"model": server.model_id, "input": "x",
                          "tools": [{"type": "function", "name": "f"}]}, "tools"),
                        ({"model": server.model_id,
                          "input": [{"role": "user", "content": [{"type": "input_image"}]}]},
                         "input")]:
        status, data = raw(server, "POST", "/v1/responses", json.dumps(body))
        assert status == 400, (body, data)
        assert json.loads(data)["error"]["param"] == param, data


# ---- responses over a WebSocket --------------------------------------------------------------

websockets = pytest.importorskip("websockets")


async def ws_collect(ws, until=("response.completed", "response.incomplete",
                                "response.cancelled", "response.failed", "error")):
    out = []
    while True:
        ev = json.loads(await asyncio.wait_for(ws.recv(), 30))
        out.append(ev)
        if ev["type"] in until:
            return out


def test_ws_create_stream_and_cancel(server):
    from websockets.asyncio.client import connect

    async def run():
        async with connect(f"ws://127.0.0.1:{server.port}/v1/responses") as ws:
            await ws.send(json.dumps({"type": "response.create", "model": server.model_id,
                                      "input": "Once upon a time", "max_output_tokens": 6,
                                      "temperature": 0}))
            evs = await ws_collect(ws)
            types = [e["type"] for e in evs]
            assert types[0] == "response.created" and types[-1] in ("response.completed",
                                                                    "response.incomplete")
            assert "response.output_text.delta" in types
            text = "".join(e["delta"] for e in evs if e["type"] == "response.output_text.delta")
            assert evs[-1]["response"]["output"][0]["content"][0]["text"] == text
            first_id = evs[-1]["response"]["id"]
            # a second response on the same connection, chained to the first
            await ws.send(json.dumps({"type": "response.create",
                                      "response": {"model": server.model_id, "input": "More.",
                                                   "previous_response_id": first_id,
                                                   "max_output_tokens": 4}}))
            evs2 = await ws_collect(ws)
            assert evs2[-1]["response"]["previous_response_id"] == first_id
            # cancel: a long response, cancelled after its first delta
            await ws.send(json.dumps({"type": "response.create", "model": server.model_id,
                                      "input": "Once upon a time", "max_output_tokens": 400,
                                      "ignore_eos": True}))
            got = await ws_collect(ws, until=("response.output_text.delta",))
            await ws.send(json.dumps({"type": "response.cancel"}))
            rest = await ws_collect(ws)
            assert rest[-1]["type"] == "response.cancelled"
            assert rest[-1]["response"]["status"] == "cancelled"
            assert rest[-1]["response"]["usage"]["output_tokens"] < 400
            assert got
            # errors are events; the connection stays usable
            await ws.send("not json")
            assert (await ws_collect(ws))[-1]["type"] == "error"
            await ws.send(json.dumps({"type": "response.create", "model": "nope", "input": "x"}))
            err = (await ws_collect(ws))[-1]
            assert err["type"] == "error" and err["status"] == 404
            await ws.send(json.dumps({"type": "response.cancel"}))
            assert (await ws_collect(ws))[-1]["type"] == "error"
            await ws.send(json.dumps({"type": "response.create", "model": server.model_id,
                                      "input": "Hi", "max_output_tokens": 2}))
            assert (await ws_collect(ws))[-1]["type"] in ("response.completed",
                                                          "response.incomplete")

    asyncio.run(run())


def test_ws_only_at_responses_and_with_key(server, keyed_server):
    from websockets.asyncio.client import connect

    async def refused(url, **kw):
        try:
            async with connect(url, **kw):
                return False
        except Exception:
            return True

    async def run():
        assert await refused(f"ws://127.0.0.1:{server.port}/v1/chat/completions")
        assert await refused(f"ws://127.0.0.1:{keyed_server.port}/v1/responses")
        async with connect(f"ws://127.0.0.1:{keyed_server.port}/v1/responses",
                           additional_headers={"Authorization": "Bearer sekrit"}) as ws:
            await ws.send(json.dumps({"type": "response.create",
                                      "model": keyed_server.model_id, "input": "Hi",
                                      "max_output_tokens": 2}))
            assert (await ws_collect(ws))[-1]["type"] in ("response.completed",
                                                          "response.incomplete")

    asyncio.run(run())

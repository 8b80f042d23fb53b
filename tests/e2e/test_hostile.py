"""Hostile traffic against tensor-mesh-api: a slow-loris body, a 100 MB body and
200 simultaneous requests. The server must stay responsive and alive, refuse
with the documented status codes, and serve a normal request afterwards.
Uses the tiny model (conftest.py) so the whole file takes seconds."""
import concurrent.futures
import http.client
import json
import socket
import threading
import time

import pytest

from .conftest import Server


def post(port, path, body, timeout=60):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.request("POST", path, body=body, headers={"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    headers = {k.lower(): v for k, v in r.getheaders()}
    c.close()
    return r.status, headers, data


def completion(server, max_tokens=4):
    return json.dumps({"model": server.model_id, "prompt": "Once upon a time",
                       "max_tokens": max_tokens, "temperature": 0})


def test_slow_client_does_not_block_others(server):
    """A client dribbling its body one byte per 50 ms must not delay anyone else."""
    body = completion(server).encode()
    done = threading.Event()
    result = {}

    def slow():
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
            s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                      b"application/json\r\nContent-Length: " + str(len(body)).encode()
                      + b"\r\n\r\n")
            for i in range(len(body)):
                s.sendall(body[i:i + 1])
                time.sleep(0.05)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            result["slow"] = data
        done.set()

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.3)  # the slow body is now trickling in
    latencies = []
    for _ in range(5):
        t0 = time.time()
        status, _, data = post(server.port, "/v1/completions", completion(server))
        latencies.append(time.time() - t0)
        assert status == 200, data
    assert not done.is_set(), "the slow client finished too early to prove anything"
    assert max(latencies) < 2.0, latencies
    t.join(timeout=60)
    assert result["slow"].startswith(b"HTTP/1.1 200")


def test_100mb_body_refused_without_reading_it(server):
    # Declared length: 413 after the headers; we never send the 100 MB.
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                  b"application/json\r\nContent-Length: 104857600\r\n\r\n" + b"{" * 65536)
        t0 = time.time()
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        assert data.startswith(b"HTTP/1.1 413"), data[:200]
        assert time.time() - t0 < 5
    # Chunked, no length: refused once the cap (8 MiB) is crossed, long before 100 MB.
    sent = 0
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                  b"application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        piece = b"%x\r\n" % (1 << 20) + b" " * (1 << 20) + b"\r\n"
        try:
            while sent < 100 << 20:
                s.sendall(piece)
                sent += 1 << 20
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            data = s.recv(4096)
        except ConnectionResetError:
            data = b""
    assert sent < 100 << 20, "the server read the whole 100 MB body"
    if data:
        assert data.startswith(b"HTTP/1.1 413"), data[:200]
    status, _, _ = post(server.port, "/v1/completions", completion(server))
    assert status == 200


@pytest.fixture(scope="module")
def small_queue_server():
    s = Server("--parallel", "2", "--max-queue", "16")
    yield s
    s.stop()
    assert s.proc.returncode == 0


def test_200_requests_at_once(small_queue_server):
    srv = small_queue_server
    barrier = threading.Barrier(200)

    def one(i):
        body = completion(srv, max_tokens=16)
        c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=120)
        c.connect()
        barrier.wait(timeout=60)
        try:
            c.request("POST", "/v1/completions", body=body,
                      headers={"Content-Type": "application/json"})
            r = c.getresponse()
            data = r.read()
            return r.status, r.getheader("Retry-After"), data
        except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected) as e:
            return 0, None, repr(e).encode()
        finally:
            c.close()

    with concurrent.futures.ThreadPoolExecutor(200) as ex:
        results = list(ex.map(one, range(200), timeout=180))
    codes = [r[0] for r in results]
    assert all(c in (200, 429, 503) for c in codes), sorted(set(codes))
    assert codes.count(200) >= 16
    for status, retry, data in results:
        if status in (429, 503):
            assert retry is not None and int(retry) >= 1
            assert json.loads(data)["error"]["code"] in ("queue_full", None)
        else:
            assert json.loads(data)["usage"]["completion_tokens"] <= 16
    assert srv.proc.poll() is None, "the server died"
    status, _, data = post(srv.port, "/v1/completions", completion(srv))
    assert status == 200 and json.loads(data)["usage"]["completion_tokens"] == 4

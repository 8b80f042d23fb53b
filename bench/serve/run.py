#!/usr/bin/env python3
"""Serving benchmark: tensor-mesh-api and (optionally) llama.cpp's llama-server,
same model, same load, loopback only.

For each server and each concurrency level C (default 1, 8, 32), C clients loop
over streaming /v1/completions requests (fixed prompt, max_tokens, ignore_eos so
every request generates exactly max_tokens) for --duration seconds. Reported:
output tokens/s over the whole level, requests completed, time to first token
(p50/p95, from sending the request to the first non-empty text chunk) and
inter-token latency (p50/p95, the gaps between text chunks divided by the tokens
they carried). Stdlib only; writes a markdown table (and --json).

    bench/serve/run.py --ours build/api2-rel/tensor-mesh-api \
        --model models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf \
        [--llama-server /path/to/llama-server] [--duration 20] [--max-tokens 32]
"""
import argparse
import http.client
import json
import os
import pathlib
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROMPT = "Write a short story about a robot who learns to paint."


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd, port, log, timeout=300):
    p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if p.poll() is not None:
            raise SystemExit(f"server exited ({p.returncode}): {' '.join(cmd)}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return p
        except Exception:
            pass
        time.sleep(0.2)
    p.kill()
    raise SystemExit("server did not become healthy")


def model_id(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=10) as r:
        return json.loads(r.read())["data"][0]["id"]


def one_request(port, model, max_tokens, rec):
    body = json.dumps({"model": model, "prompt": PROMPT, "max_tokens": max_tokens,
                       "temperature": 0, "stream": True, "ignore_eos": True,
                       "stream_options": {"include_usage": True}})
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    t0 = time.perf_counter()
    c.request("POST", "/v1/completions", body=body,
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        r.read()
        c.close()
        rec["errors"] += 1
        return
    first, last, chunks, usage = None, None, 0, None
    gaps = []
    for raw in r:
        line = raw.decode("utf-8", "replace").strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        j = json.loads(line[6:])
        if j.get("usage"):
            usage = j["usage"]["completion_tokens"]
        ch = j.get("choices") or []
        if ch and ch[0].get("text"):
            now = time.perf_counter()
            if first is None:
                first = now
            else:
                gaps.append(now - last)
            last = now
            chunks += 1
    c.close()
    if first is None:
        rec["errors"] += 1
        return
    n = usage if usage is not None else chunks
    with rec["lock"]:
        rec["ttft"].append(first - t0)
        # a chunk may carry several tokens (UTF-8 boundaries): spread its gap over them
        per = (n - 1) / max(len(gaps), 1) if n > 1 else 1
        rec["itl"].extend(g / per for g in gaps)
        rec["tokens"] += n
        rec["done"] += 1


def run_level(port, model, conc, duration, max_tokens):
    rec = {"lock": threading.Lock(), "ttft": [], "itl": [], "tokens": 0, "done": 0, "errors": 0}
    stop_at = time.perf_counter() + duration

    def client():
        while time.perf_counter() < stop_at:
            one_request(port, model, max_tokens, rec)

    t0 = time.perf_counter()
    ths = [threading.Thread(target=client) for _ in range(conc)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    elapsed = time.perf_counter() - t0  # includes draining the last requests

    def pct(xs, q):
        if not xs:
            return float("nan")
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(q * len(xs)))]

    return {"concurrency": conc, "elapsed_s": elapsed, "requests": rec["done"],
            "errors": rec["errors"], "tokens": rec["tokens"],
            "tok_per_s": rec["tokens"] / elapsed,
            "ttft_p50_ms": 1e3 * pct(rec["ttft"], 0.5), "ttft_p95_ms": 1e3 * pct(rec["ttft"], 0.95),
            "itl_p50_ms": 1e3 * pct(rec["itl"], 0.5), "itl_p95_ms": 1e3 * pct(rec["itl"], 0.95)}


def bench_server(name, cmd, port, levels, duration, max_tokens, logdir):
    log = open(logdir / f"bench-serve-{name}.log", "wb")
    p = start(cmd, port, log)
    try:
        mid = model_id(port)
        one_request(port, mid, 4, {"lock": threading.Lock(), "ttft": [], "itl": [], "tokens": 0,
                                   "done": 0, "errors": 0})  # warm-up
        out = []
        for c in levels:
            r = run_level(port, mid, c, duration, max_tokens)
            r["server"] = name
            print(f"{name:>14} C={c:<3} {r['tok_per_s']:8.1f} tok/s  {r['requests']:4d} req  "
                  f"TTFT p50 {r['ttft_p50_ms']:8.1f} ms p95 {r['ttft_p95_ms']:8.1f} ms  "
                  f"ITL p50 {r['itl_p50_ms']:7.1f} ms p95 {r['itl_p95_ms']:7.1f} ms  "
                  f"errors {r['errors']}", flush=True)
            out.append(r)
        return out
    finally:
        p.terminate()
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
        log.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ours", default=str(ROOT / "build" / "release" / "tensor-mesh-api"))
    ap.add_argument("--llama-server", help="llama.cpp's llama-server binary (optional)")
    ap.add_argument("--model", default=str(ROOT / "models" /
                                           "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"))
    ap.add_argument("--tokenizer", help="for llama2.c checkpoints (ours only)")
    ap.add_argument("--levels", default="1,8,32")
    ap.add_argument("--duration", type=float, default=20, help="seconds per level")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args()
    levels = [int(x) for x in a.levels.split(",")]
    par = max(levels)
    logdir = ROOT / "build"
    logdir.mkdir(exist_ok=True)
    results = []
    port = free_port()
    tok = ["--tokenizer", a.tokenizer] if a.tokenizer else []
    results += bench_server("tensor-mesh-api",
                            [a.ours, "--model", a.model, *tok, "--port", str(port), "--quiet",
                             "--parallel", str(par), "--max-queue", "256", "--ctx-size", "512",
                             "--threads", str(a.threads)],
                            port, levels, a.duration, a.max_tokens, logdir)
    if a.llama_server:
        port = free_port()
        # -np slots share -c positions in llama-server: give each slot 512 like ours.
        results += bench_server("llama-server",
                                [a.llama_server, "-m", a.model, "--port", str(port),
                                 "-np", str(par), "-c", str(512 * par), "-t", str(a.threads),
                                 "--log-disable"],
                                port, levels, a.duration, a.max_tokens, logdir)
    cpu = platform.processor() or "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    print(f"\nmachine: {cpu}, {os.cpu_count()} cores; model {pathlib.Path(a.model).name}; "
          f"prompt {len(PROMPT)} chars, {a.max_tokens} output tokens per request, "
          f"{a.duration:g} s per level\n")
    print("| server | clients | output tok/s | requests | TTFT p50 / p95 (ms) | "
          "ITL p50 / p95 (ms) | errors |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['server']} | {r['concurrency']} | {r['tok_per_s']:.1f} | {r['requests']} | "
              f"{r['ttft_p50_ms']:.0f} / {r['ttft_p95_ms']:.0f} | "
              f"{r['itl_p50_ms']:.1f} / {r['itl_p95_ms']:.1f} | {r['errors']} |")
    if a.json:
        pathlib.Path(a.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    sys.exit(main())

"""Fixtures for the API end-to-end tests: a real tensor-mesh-api process on
127.0.0.1 and a free port, driven by the official openai client and raw HTTP.

The server serves the tiny llama2.c model ../shared/data/stories260K.bin (with
tok512.bin), which runs at hundreds of tokens per second, so every test is
bounded to seconds. TM_BUILD_DIR names the build (default build/release).
"""
import os
import pathlib
import socket
import subprocess
import time
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def build_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("TM_BUILD_DIR", ROOT / "build" / "release"))


def shared_data() -> pathlib.Path:
    return pathlib.Path(os.environ.get("TM_SHARED_DATA", ROOT.parent / "shared" / "data"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, *extra, model=None):
        exe = build_dir() / "tensor-mesh-api"
        if not exe.exists():
            pytest.fail(f"{exe} not built: run the build first (scripts/test.sh does)")
        data = shared_data()
        self.model = model or data / "stories260K.bin"
        self.tokenizer = None if model else data / "tok512.bin"
        if not self.model.exists():
            pytest.skip(f"SKIPPED: {self.model} is absent")
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.model_id = self.model.stem
        tok = ["--tokenizer", str(self.tokenizer)] if self.tokenizer else []
        self.args = [str(exe), "--model", str(self.model), *tok,
                     "--host", "127.0.0.1", "--port", str(self.port), "--quiet", *extra]
        self.log = open(ROOT / "build" / f"e2e-server-{self.port}.log", "wb")
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"server exited with {self.proc.returncode}: "
                            + pathlib.Path(self.log.name).read_text())
            try:
                with urllib.request.urlopen(self.base + "/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except Exception:
                pass
            time.sleep(0.05)
        self.stop()
        pytest.fail("server did not become healthy within 30 s")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def server():
    s = Server("--parallel", "4")
    yield s
    s.stop()
    assert s.proc.returncode == 0, "server did not exit cleanly on SIGTERM"


@pytest.fixture(scope="module")
def slow_server():
    """The real default model (a few tokens/s here): long enough generations that a
    client can vanish while its request is certainly still running."""
    s = Server("--parallel", "1", model=ROOT / "models" / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def keyed_server():
    s = Server("--api-key", "sekrit")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def client(server):
    openai = pytest.importorskip("openai")
    return openai.OpenAI(base_url=server.base + "/v1", api_key="unused", max_retries=0,
                         timeout=60)

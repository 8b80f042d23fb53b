"""The chat page at GET /: served byte for byte from web/chat.html (via
src/server/page.c), and driven in headless Chromium over the DevTools protocol:
pick a model, send a message, and see the streamed reply in the DOM.

Skips loudly when chromium is absent (apt-get install chromium; scripts/deps.sh).
TM_UPDATE_SCREENSHOT=1 also refreshes docs/chat-page.png. After editing
web/chat.html, regenerate src/server/page.c with
`python3 tests/e2e/test_chat_page.py --regen`.
"""
import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
import base64

import pytest

try:
    from .conftest import ROOT, free_port
except ImportError:  # run as a script (--regen)
    import pathlib
    ROOT = pathlib.Path(__file__).resolve().parents[2]

websockets = pytest.importorskip("websockets")


def test_page_is_web_chat_html(server):
    with urllib.request.urlopen(server.base + "/", timeout=10) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/html")
        body = r.read()
    assert body == (ROOT / "web" / "chat.html").read_bytes(), \
        "src/server/page.c is stale: regenerate it from web/chat.html"
    assert b"http://" not in body and b"https://" not in body  # no external assets


def chromium_path():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


class CDP:
    """A minimal DevTools protocol client over one page target."""

    def __init__(self, ws):
        self.ws, self.next_id = ws, 0

    async def call(self, method, **params):
        self.next_id += 1
        mid = self.next_id
        await self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        while True:
            msg = json.loads(await asyncio.wait_for(self.ws.recv(), 30))
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    async def js(self, expr):
        r = await self.call("Runtime.evaluate", expression=expr, returnByValue=True,
                            awaitPromise=True)
        return r["result"].get("value")


def test_chat_page_in_headless_chromium(server):
    exe = chromium_path()
    if exe is None:
        pytest.skip("SKIPPED LOUDLY: chromium is not installed (apt-get install -y chromium); "
                    "the chat page was not exercised in a browser")
    port = free_port()
    profile = tempfile.mkdtemp(prefix="tm-chromium-")
    proc = subprocess.Popen([exe, "--headless", "--disable-gpu", "--no-sandbox",
                             "--no-first-run", "--disable-extensions", f"--user-data-dir={profile}",
                             f"--remote-debugging-port={port}", "--window-size=900,640",
                             "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, targets = time.time() + 30, None
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as r:
                    targets = [t for t in json.loads(r.read()) if t["type"] == "page"]
                if targets:
                    break
            except Exception:
                pass
            time.sleep(0.2)
        assert targets, "chromium did not open its DevTools port"

        async def run():
            from websockets.asyncio.client import connect
            async with connect(targets[0]["webSocketDebuggerUrl"], max_size=None) as ws:
                cdp = CDP(ws)
                await cdp.call("Page.enable")
                await cdp.call("Page.navigate", url=server.base + "/")
                for _ in range(100):  # the model picker fills from /v1/models
                    if await cdp.js("document.getElementById('model').options.length") == 1:
                        break
                    await asyncio.sleep(0.1)
                assert await cdp.js("document.getElementById('model').value") == server.model_id
                await cdp.js("document.getElementById('max').value = '24'")
                await cdp.js("document.getElementById('input').value = 'Tell me a story about "
                             "a cat.'; document.getElementById('form').requestSubmit(); true")
                state = None
                for _ in range(300):
                    state = await cdp.js("(document.querySelector('.assistant') || {dataset:{}})"
                                         ".dataset.state")
                    if state in ("done", "error"):
                        break
                    await asyncio.sleep(0.1)
                assert state == "done", await cdp.js("document.getElementById('log').innerText")
                reply = await cdp.js("document.querySelector('.assistant').textContent")
                user = await cdp.js("document.querySelector('.user').textContent")
                assert user == "Tell me a story about a cat."
                assert reply.strip(), "the streamed reply did not reach the DOM"
                assert "tokens in" in await cdp.js("document.querySelector('.meta').textContent")
                shot = await cdp.call("Page.captureScreenshot", format="png")
                out = ROOT / "build" / "chat-page.png"
                out.write_bytes(base64.b64decode(shot["data"]))
                if os.environ.get("TM_UPDATE_SCREENSHOT") == "1":
                    (ROOT / "docs" / "chat-page.png").write_bytes(out.read_bytes())
                return reply

        asyncio.run(run())
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(profile, ignore_errors=True)


def regen_page_c():
    """Writes src/server/page.c from web/chat.html: one C string literal per line."""
    html = (ROOT / "web" / "chat.html").read_text()
    lines = html.split("\n")
    esc = lambda l: l.replace("\\", "\\\\").replace('"', '\\"')
    body = "".join('    "%s\\n"\n' % esc(l) for l in lines[:-1])
    if lines[-1]:
        body += '    "%s"\n' % esc(lines[-1])
    head = (ROOT / "src" / "server" / "page.c").read_text().split("const char tm__chat_page_html")[0]
    (ROOT / "src" / "server" / "page.c").write_text(
        head + "const char tm__chat_page_html[] =\n" + body
        + ";\nconst size_t tm__chat_page_len = sizeof tm__chat_page_html - 1;\n")
    if shutil.which("clang-format"):  # the checked-in style; splitting literals keeps the bytes
        subprocess.run(["clang-format", "-i", str(ROOT / "src" / "server" / "page.c")], check=True)


if __name__ == "__main__":
    import sys
    if sys.argv[1:] == ["--regen"]:
        regen_page_c()

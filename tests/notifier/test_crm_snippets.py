"""The verification snippets of services/notifier/README.md run against real signed deliveries.

The code is taken from the README's code blocks (so the documentation cannot drift from what works):

- Python (``standardwebhooks`` from PyPI, a dev dependency): the snippet's handler serves on a
  loopback port; a real notifier (real NATS, real webhook integration) delivers an alert to it.
- Node (``standardwebhooks`` from npm, installed in a temporary directory): the snippet runs under
  ``node``; ``veille test-send`` delivers to it through the real webhook integration. Skipped, with
  the reason, when node, npm or the package cannot be had.

Both must accept the genuine delivery once, and refuse a changed body, a wrong secret and a
timestamp older than the 5-minute tolerance the README states.
"""

from __future__ import annotations

import asyncio
import io
import os
import queue
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from nats.js import JetStreamContext

from services.notifier import test_send as test_send_module
from services.notifier.signing import decode_secret, sign
from tests.notifier.conftest import SECRET, AppFactory, flush, make_alert, publish_alert, webhook_config

README = Path(__file__).resolve().parents[2] / "services" / "notifier" / "README.md"
OTHER_SECRET = "whsec_b3RoZXItc2VjcmV0LW5vdC10aGUtcmlnaHQtb25l"


def snippet(name: str) -> str:
    """The code block that follows ``<!-- snippet: NAME -->`` in the notifier README."""
    found = re.search(rf"<!-- snippet: {name} -->\s*```\w+\n(.*?)\n```", README.read_text(encoding="utf-8"), re.S)
    assert found is not None, f"no snippet {name!r} in {README}"
    return found.group(1)


def _signed_headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(decode_secret(secret), msg_id, timestamp, body),
    }


def _forgeries(url: str, body: bytes, msg_id: str) -> list[int]:
    """Statuses the receiver answers to: a body changed by one space, a wrong secret, a timestamp 6 minutes old."""
    now = int(time.time())
    tampered = body.replace(b"{", b"{ ", 1)  # the same JSON, other bytes: the signature covers the bytes
    attempts = [
        (tampered, _signed_headers(SECRET, msg_id + "0", now, body)),
        (body, _signed_headers(OTHER_SECRET, msg_id + "1", now, body)),
        (body, _signed_headers(SECRET, msg_id + "2", now - 360, body)),
    ]
    return [httpx.post(url, content=content, headers=headers, timeout=10).status_code for content, headers in attempts]


@dataclass
class PythonReceiver:
    """The README's Python snippet serving on 127.0.0.1, with what it got and what it handled."""

    url: str
    namespace: dict[str, Any]
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    processed: list[Any] = field(default_factory=list)


@pytest.fixture
def python_receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[PythonReceiver]:
    """Run the snippet's ``Handler``; its ``process`` is replaced by a recorder, every request is kept."""
    monkeypatch.setenv("VEILLE_WEBHOOK_SECRET", SECRET)
    namespace: dict[str, Any] = {"__name__": "veille_readme_receiver"}
    exec(compile(snippet("python-receiver"), str(README), "exec"), namespace)  # the README's own code
    receiver = PythonReceiver("", namespace)
    namespace["process"] = receiver.processed.append

    snippet_handler: type[BaseHTTPRequestHandler] = namespace["Handler"]

    def do_post(self: BaseHTTPRequestHandler) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        receiver.requests.append((dict(self.headers), body))
        self.rfile = io.BytesIO(body)
        snippet_handler.do_POST(self)  # type: ignore[attr-defined]

    def quiet(self: BaseHTTPRequestHandler, format: str, *args: Any) -> None:
        return

    recording = type("Recording", (snippet_handler,), {"do_POST": do_post, "log_message": quiet})
    server = ThreadingHTTPServer(("127.0.0.1", 0), recording)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/veille"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


async def test_python_snippet_verifies_a_real_delivery_and_refuses_forgeries(
    python_receiver: PythonReceiver, notifier_factory: AppFactory, js: JetStreamContext
) -> None:
    receiver = python_receiver
    app = await notifier_factory(webhook_config(receiver.url))
    await publish_alert(js, make_alert("alert-crm-1"))
    await flush(app, js)

    [(headers, body)] = receiver.requests
    assert len(receiver.processed) == 1, "the genuine delivery was verified and handled"
    payload = receiver.processed[0]
    assert payload["data"]["alerts"][0]["id"] == "alert-crm-1"
    msg_id = headers["webhook-id"]
    assert receiver.namespace["seen_ids"] == {msg_id} and msg_id == payload["data"]["notification_id"]

    # the same notification again, signed anew as a retry or a replay is: accepted, not handled twice
    again = await asyncio.to_thread(
        httpx.post, receiver.url, content=body, headers=_signed_headers(SECRET, msg_id, int(time.time()), body)
    )
    assert again.status_code == 204
    assert len(receiver.processed) == 1

    statuses = await asyncio.to_thread(_forgeries, receiver.url, body, msg_id)
    assert statuses == [401, 401, 401]
    assert len(receiver.processed) == 1


# ---------------------------------------------------------------- Node


@pytest.fixture(scope="module")
def node_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with the npm package ``standardwebhooks`` installed, or skip with the reason."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node or npm is not installed: the README's Node snippet is not run")
    where = tmp_path_factory.mktemp("node-receiver")
    try:
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--no-save", "--prefix", str(where), "standardwebhooks@^1.1"],
            check=True,
            capture_output=True,
            text=True,
            timeout=180,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        output = getattr(exc, "stderr", "") or ""
        pytest.skip(f"npm could not install standardwebhooks (no registry?): {output.strip()[-300:]}")
    return where


@pytest.fixture
def node_receiver(node_package: Path) -> Iterator[tuple[str, queue.Queue[str]]]:
    """The README's Node snippet running under node on a free loopback port; its output lines in a queue."""
    script = node_package / "receiver.js"
    script.write_text(snippet("node-receiver"), encoding="utf-8")
    env = os.environ | {"VEILLE_WEBHOOK_SECRET": SECRET, "PORT": "0"}
    process = subprocess.Popen(
        ["node", str(script)], cwd=node_package, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    try:
        first = lines.get(timeout=30)
        found = re.fullmatch(r"listening on (\d+)", first)
        assert found is not None, f"node said: {first}"
        yield f"http://127.0.0.1:{found.group(1)}/veille", lines
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_node_snippet_verifies_a_test_send_and_refuses_forgeries(
    node_receiver: tuple[str, queue.Queue[str]], tmp_path: Path
) -> None:
    url, lines = node_receiver
    config = tmp_path / "veille.yaml"
    config.write_text(
        f"version: 1\nwatches: [{{name: acme, query: acme}}]\n"
        f"receivers:\n  - name: crm\n    webhook: [{{url: '{url}', secret: '{SECRET}'}}]\nroute: {{receiver: crm}}\n"
    )
    result = CliRunner().invoke(test_send_module.test_send, ["crm", "--config", str(config), "--lang", "fr"])

    assert result.exit_code == 0, result.output
    assert "crm.webhook.0: sent — HTTP 204" in result.output
    msg_id = re.search(r"\(id (msg_[0-9a-f]+),", result.output).group(1)  # type: ignore[union-attr]
    line = lines.get(timeout=10)
    assert line.startswith(f"{msg_id} test-") and "firing" in line and "[TEST]" in line

    body = b'{"type":"veille.alerts.firing","version":"1","data":{"alerts":[]}}'
    assert _forgeries(url, body, "msg_0123") == [401, 401, 401]
    genuine = httpx.post(url, content=body, headers=_signed_headers(SECRET, "msg_4567", int(time.time()), body))
    assert genuine.status_code == 204, "the forgeries were refused for what they changed, not for the body"
    assert lines.empty(), "nothing handled but the genuine delivery"

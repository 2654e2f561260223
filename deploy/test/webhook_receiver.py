"""A webhook receiver for deploy/compose.test.yml: answers 200 to every POST and writes it down.

Each request becomes one JSON line in $OUT_DIR/webhook.jsonl (path, headers, base64 body), flushed
and fsynced before the answer, so that what the test reads on the host is what the notifier sent. It
checks nothing itself: the test verifies the Standard Webhooks signature with the shared secret.
GET /healthz answers 200 (the container's health check).
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

OUT = Path(os.environ.get("OUT_DIR", "/out")) / "webhook.jsonl"
_lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    """Record POSTs, answer health checks."""

    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        record = {
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": base64.b64encode(body).decode(),
            "received": time.time(),
        }
        with _lock, OUT.open("a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")
            out.flush()
            os.fsync(out.fileno())
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        print(f"{self.address_string()} {format % args}", flush=True)


if __name__ == "__main__":
    OUT.parent.mkdir(parents=True, exist_ok=True)
    ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("PORT", "8000"))), Handler).serve_forever()  # noqa: S104

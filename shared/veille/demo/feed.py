"""The demo's feed server: RSS on 127.0.0.1 whose entries appear as the script's time passes."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape

from veille.demo.script import SCRIPT, ScriptedItem

__all__ = ["DemoFeedServer"]


class DemoFeedServer:
    """Serves ``/feed.xml``: the script's entries whose time has come, counted from the first request.

    Entry ids carry a token drawn per run, so a second demo in the same data directory is news again.
    """

    def __init__(self, script: Sequence[ScriptedItem] = SCRIPT, host: str = "127.0.0.1", port: int = 0) -> None:
        """Prepare the server (``port=0`` picks a free port); :meth:`start` listens."""
        self.script = sorted(script, key=lambda item: item.at)
        self.run = secrets.token_hex(4)
        self._started: float | None = None
        self._started_at: datetime | None = None
        self._lock = threading.Lock()
        demo = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] not in ("/", "/feed.xml"):
                    self.send_error(404)
                    return
                body = demo.render().encode("utf-8")
                self.send_response(200)
                self.send_header("Content-Type", "application/rss+xml; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        self._host = host
        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The feed's URL."""
        return f"http://{self._host}:{self._server.server_port}/feed.xml"

    def elapsed(self) -> float:
        """Seconds since the feed was first read (0 before)."""
        with self._lock:
            if self._started is None:
                self._started = time.monotonic()
                self._started_at = datetime.now(UTC)
            return time.monotonic() - self._started

    def render(self) -> str:
        """The RSS document as of now: the entries due, newest first."""
        elapsed = self.elapsed()
        assert self._started_at is not None
        base = self.url.rsplit("/", 1)[0]
        entries = []
        for item in reversed(self.script):
            if item.at > elapsed:
                continue
            when = format_datetime(self._started_at + timedelta(seconds=item.at))
            link = f"https://{item.site}/{self.run}/{item.slug}"
            entries.append(
                "  <item>\n"
                f"    <title>{escape(item.title)}</title>\n"
                f"    <link>{escape(link)}</link>\n"
                f'    <guid isPermaLink="false">veille-demo:{self.run}:{item.slug}</guid>\n'
                f"    <pubDate>{when}</pubDate>\n"
                f"    <description>{escape(item.summary)}</description>\n"
                "  </item>\n"
            )
        return (
            '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0">\n<channel>\n'
            f"  <title>Demo press review</title>\n  <link>{escape(base)}/</link>\n"
            "  <description>A scripted crisis about Brasserie Lumen, a fictional brewery</description>\n"
            + "".join(entries)
            + "</channel>\n</rss>\n"
        )

    def start(self) -> None:
        """Listen in a daemon thread."""
        self._thread = threading.Thread(target=self._server.serve_forever, name="veille-demo-feed", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop listening."""
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

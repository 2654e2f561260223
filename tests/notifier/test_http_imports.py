"""Sending a webhook must not try (and fail) to import a module on every request.

httpcore 1.0 asks ``sniffio`` which event loop runs each time it builds a lock
(``httpcore/_synchronization.py: current_async_library``: ``try: import sniffio / except ImportError``).
Without sniffio installed, that failed import (a full search of ``sys.path``) ran about ten times per
POST, about 5 % of the notifier's CPU. The test runs real POSTs to a loopback HTTP server in a fresh
interpreter and counts, with an import hook, how often a module is searched for and not found.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import asyncio, importlib.abc, json, sys
    from aiohttp import web

    missing = {}

    class Counter(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            for finder in sys.meta_path:
                if finder is self:
                    continue
                spec = finder.find_spec(name, path, target) if hasattr(finder, "find_spec") else None
                if spec is not None:
                    return None  # found: let the normal machinery import it
            missing[name] = missing.get(name, 0) + 1
            return None

    async def main():
        from services.notifier.delivery import post
        from veille.httpclient import make_http_client

        async def ok(request):
            await request.read()
            return web.Response(status=204)

        app = web.Application()
        app.router.add_post("/hook", ok)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        client = make_http_client(user_agent="veille-test", timeout=10.0, follow_redirects=False)
        url = f"http://127.0.0.1:{port}/hook"
        await post(client, url, content=b"{}", headers={}, timeout=10, what="warm-up")
        sys.meta_path.insert(0, Counter())
        for i in range(20):
            await post(client, url, content=b'{"n": %d}' % i, headers={"content-type": "application/json"},
                       timeout=10, what="webhook")
        await client.aclose()
        await runner.cleanup()
        print(json.dumps(missing))

    asyncio.run(main())
    """
)


def test_twenty_webhook_posts_search_for_no_missing_module() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    missing = __import__("json").loads(done.stdout.strip().splitlines()[-1])
    # Before sniffio was a dependency: {"sniffio": ...} (about ten failed imports per POST).
    assert missing == {}, f"modules searched for and not found while posting: {missing}"

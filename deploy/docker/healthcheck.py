"""Container health check: GET /readyz (or the path given) on the service's own HTTP port.

Used by the image's HEALTHCHECK and by docker-compose.yml; slim images have no curl, so it is
plain Python. Exit 0 when the service answers 200, 1 otherwise (and say why on stderr).
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def main(argv: list[str]) -> int:
    """Probe ``/readyz`` (or ``argv[1]``) on ``$VEILLE_HTTP_HOST:$VEILLE_HTTP_PORT``; return the exit code."""
    path = argv[1] if len(argv) > 1 else "/readyz"
    port = int(os.environ.get("VEILLE_HTTP_PORT") or "8080")
    host = os.environ.get("VEILLE_HTTP_HOST") or "127.0.0.1"
    if host in ("0.0.0.0", "::"):  # noqa: S104 - listening everywhere: probe through loopback
        host = "127.0.0.1"
    url = f"http://{host}:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return 0 if response.status == 200 else 1
    except urllib.error.HTTPError as exc:
        print(f"{url}: HTTP {exc.code} {exc.read(2000).decode('utf-8', 'replace')}", file=sys.stderr)
    except (OSError, ValueError) as exc:
        print(f"{url}: {exc}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""Health check of the stand-in containers: exit 0 when GET <url> answers 200 (no wget or curl in the base)."""

from __future__ import annotations

import sys
import urllib.request


def main(url: str) -> int:
    """Probe ``url``; 0 on HTTP 200, 1 otherwise (the reason on stderr)."""
    try:
        with urllib.request.urlopen(url, timeout=4) as response:  # noqa: S310 - http URLs from the compose file
            return 0 if response.status == 200 else 1
    except Exception as exc:
        print(f"{url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

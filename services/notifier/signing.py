"""Standard Webhooks signatures (https://www.standardwebhooks.com), in a dozen lines.

Written here rather than taken from the ``standardwebhooks`` package: the scheme is one HMAC, the
package brings its own HTTP client and date libraries we do not need, and owning these lines lets
the tests check them against the specification's published example.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from veille.config import webhook_secret_key

__all__ = ["decode_secret", "sign", "verify"]


def decode_secret(secret: str) -> bytes:
    """The key bytes of a ``whsec_<base64>`` secret (the prefix is optional), as check-config reads them."""
    return webhook_secret_key(secret)


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value: ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def verify(key: bytes, msg_id: str, timestamp: int, body: bytes, header: str) -> bool:
    """Whether any ``v1`` signature in a (space-separated) ``webhook-signature`` header is valid."""
    expected = sign(key, msg_id, timestamp, body)
    return any(hmac.compare_digest(candidate, expected) for candidate in header.split())

"""URL helpers: canonical form for stable ids, unwrapping Google redirect links."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["canonical_url", "host_of", "is_http_url", "unwrap_redirect"]

_TRACKING_PREFIXES = ("utm_", "mc_", "pk_", "hsa_")
_TRACKING_PARAMS = frozenset(
    {"fbclid", "gclid", "dclid", "msclkid", "yclid", "igshid", "ref_src", "ref_url", "_hsenc", "_hsmi", "oly_enc_id"}
)
_REDIRECT_HOSTS = frozenset({"google.com", "www.google.com", "news.google.com"})


def is_http_url(value: object) -> bool:
    """Whether ``value`` is an absolute http(s) URL with a host (False for anything not a string)."""
    if not value or not isinstance(value, str):
        return False
    try:
        parts = urlsplit(value.strip())
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def host_of(url: str | None) -> str | None:
    """The host of ``url`` without ``www.``, or None."""
    if not url:
        return None
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    if not host:
        return None
    return host.removeprefix("www.")


def unwrap_redirect(url: str) -> str:
    """The real target of a ``google.com/url?url=...`` (or ``q=``) redirect, else ``url`` unchanged."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return url
    if (parts.hostname or "").lower() in _REDIRECT_HOSTS and parts.path == "/url":
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        target = params.get("url") or params.get("q")
        if target and is_http_url(target):
            return target
    return url


def canonical_url(url: str) -> str:
    """Normalise a URL so the same page gives the same id.

    Lower-cased scheme and host, no default port, no fragment, no tracking parameters
    (``utm_*``, ``fbclid``, ...), remaining parameters sorted, no trailing slash on paths.
    """
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return url.strip()
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    if port and (scheme, port) in (("http", 80), ("https", 443)):
        port = None
    netloc = f"{host}:{port}" if port else host
    query = [
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if not k.lower().startswith(_TRACKING_PREFIXES) and k.lower() not in _TRACKING_PARAMS
    ]
    path = parts.path or "/"
    if len(path) > 1:
        path = path.rstrip("/") or "/"
    return urlunsplit((scheme, netloc, path, urlencode(sorted(query)), ""))

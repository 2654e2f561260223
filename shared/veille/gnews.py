"""Google News editions: which ``ceid`` a Google News RSS search needs for its ``gl`` and ``hl``.

A Google News RSS URL names its edition three times: ``hl`` (interface language), ``gl``
(country) and ``ceid`` (``COUNTRY:language``). The edition's language is not always ``hl``'s
first part: Brazil is ``BR:pt-419``, Portugal ``PT:pt-150``, Latin American Spanish
``MX:es-419``, China ``CN:zh-Hans``, Taiwan and Hong Kong ``zh-Hant``. A wrong ``ceid`` does not
fail: Google serves another edition (or the US one), and the watch silently reads the wrong
country's news. :data:`EDITIONS` is the list of editions Google News offers (as listed by
SearXNG's google_news engine, ``engines.google_news.ceid_list``, docs.searxng.org); a search
whose ``gl``/``hl`` match none of them must say its ``ceid``.
"""

from __future__ import annotations

__all__ = ["EDITIONS", "edition_for"]

EDITIONS: tuple[str, ...] = (
    "AE:ar", "AR:es-419", "AT:de", "AU:en", "BD:bn", "BE:fr", "BE:nl", "BG:bg", "BR:pt-419", "BW:en",
    "CA:en", "CA:fr", "CH:de", "CH:fr", "CL:es-419", "CN:zh-Hans", "CO:es-419", "CU:es-419", "CZ:cs",
    "DE:de", "EG:ar", "ES:es", "ET:en", "FR:fr", "GB:en", "GH:en", "GR:el", "HK:zh-Hant", "HU:hu",
    "ID:en", "ID:id", "IE:en", "IL:en", "IL:he", "IN:bn", "IN:en", "IN:hi", "IN:ml", "IN:mr", "IN:ta",
    "IN:te", "IT:it", "JP:ja", "KE:en", "KR:ko", "LB:ar", "LT:lt", "LV:en", "LV:lv", "MA:fr",
    "MX:es-419", "MY:en", "NA:en", "NG:en", "NL:nl", "NO:no", "NZ:en", "PE:es-419", "PH:en", "PK:en",
    "PL:pl", "PT:pt-150", "RO:ro", "RS:sr", "RU:ru", "SA:ar", "SE:sv", "SG:en", "SI:sl", "SK:sk",
    "SN:fr", "TH:th", "TR:tr", "TW:zh-Hant", "TZ:en", "UA:ru", "UA:uk", "UG:en", "US:en", "US:es-419",
    "VE:es-419", "VN:vi", "ZA:en", "ZW:en",
)  # fmt: skip
"""Every Google News edition, as ``COUNTRY:language``."""


def edition_for(gl: str, hl: str) -> str | None:
    """The edition (``ceid``) of country ``gl`` in ``hl``'s language, or None when Google News has none.

    ``hl`` is matched on its language (``pt-BR`` is Portuguese, so Brazil's ``BR:pt-419``); an
    exact match of the whole tag wins (``es-419`` in the US is ``US:es-419``).
    """
    country = gl.strip().upper()
    tag = hl.strip().lower()
    language = tag.split("-")[0].split("_")[0]
    candidates = [e for e in EDITIONS if e.split(":", 1)[0] == country]
    for edition in candidates:
        if edition.split(":", 1)[1].lower() == tag:
            return edition
    matching = [e for e in candidates if e.split(":", 1)[1].split("-")[0].lower() == language]
    return matching[0] if len(matching) == 1 else None

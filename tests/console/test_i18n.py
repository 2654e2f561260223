"""Every word the console shows exists in English and French, and the browser's language is honoured."""

from __future__ import annotations

import re
from pathlib import Path

from services.console.i18n import MESSAGES, pick_lang, translate

TEMPLATES = Path(__file__).resolve().parents[2] / "services" / "console" / "templates"
KEY = re.compile(r"""_\(\s*["']([a-z_.]+)["']\s*\)""")
PREFIXED = re.compile(r"""_\(\s*["']([a-z_.]+\.)["']\s*~""")


def test_every_key_a_template_uses_is_translated_both_ways() -> None:
    used = {key for path in TEMPLATES.glob("*.html") for key in KEY.findall(path.read_text())}
    assert used, "the templates use translated words"
    missing = sorted(key for key in used if key not in MESSAGES)
    assert missing == []
    prefixes = {p for path in TEMPLATES.glob("*.html") for p in PREFIXED.findall(path.read_text())}
    assert prefixes >= {
        "state.",
        "kind.",
        "action.",
        "sentiment.",
        "silence.",
        "role.",
        "users.source.",
        "users.action.",
    }
    for prefix, values in {
        "state.": ("open", "acknowledged", "resolved"),
        "kind.": ("negative_mention", "volume_spike", "negative_spike"),
        "action.": ("acknowledge", "assign", "comment", "resolve", "silence"),
        "sentiment.": ("negative", "neutral", "positive"),
        "silence.": ("active", "pending", "expired"),
        "role.": ("viewer", "responder", "admin"),
        "users.source.": ("local", "sso"),
        "users.action.": ("add", "update", "role", "disable", "enable", "password"),
    }.items():
        for value in values:
            assert prefix + value in MESSAGES, prefix + value
    for key, (english, french) in MESSAGES.items():
        assert english.strip() and french.strip(), key
    assert translate("fr", "nav.alerts") == "Alertes" and translate("en", "nav.alerts") == "Alerts"


def test_language_from_cookie_then_accept_language() -> None:
    assert pick_lang(None, "fr-FR,fr;q=0.9,en;q=0.8") == "fr"
    assert pick_lang(None, "de-DE,en;q=0.5,fr;q=0.7") == "fr"
    assert pick_lang(None, "de-DE") == "en"
    assert pick_lang(None, "fr;q=0, en") == "en"
    assert pick_lang("en", "fr-FR") == "en"
    assert pick_lang("xx", "fr") == "fr"

"""Text helpers shared by the human-facing integrations (email, Slack, Teams): titles, facts, escaping."""

from __future__ import annotations

import re
import unicodedata

from services.notifier.model import Notification
from veille.models import AlertRaised

__all__ = [
    "OPEN_VEILLE",
    "alert_facts",
    "header_hazards",
    "header_text",
    "linkable_url",
    "more_line",
    "one_line",
    "slack_escape",
    "slack_fit",
    "teams_escape",
    "title_of",
    "veille_url",
]

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\u0085]+")
_HEADER_UNSAFE = re.compile(r"[\x80-\x9f\ud800-\udfff]")  # C1 controls; lone surrogates (undecodable bytes to email)
_LINE_BREAKING = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
ENCODED_WORD_OPENER = "=?"
MAX_URL = 2000
"""Longest URL made into a link (browsers and chat apps handle about this much; longer ones are shown as text)."""
_URL_UNSAFE = re.compile(r'[\x00-\x20\x7f-\x9f<>|"`{}\\^\u2028\u2029]')


def one_line(text: str, limit: int = 200) -> str:
    """Collapse line breaks and control characters into spaces and cut to ``limit`` characters."""
    text = unicodedata.normalize("NFC", text)
    text = _CONTROL.sub(" ", text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def header_text(text: str, limit: int = 200) -> str:
    """Text that is safe as an email header value on any Python: one line, no RFC 2047 encoded word.

    :func:`one_line` removes CR, LF, the other control characters and the Unicode line separators;
    C1 controls and lone surrogates become spaces too. Then every ``=?`` becomes ``= ?``: the email
    package *decodes* an encoded word (``=?utf-8?q?x=0D=0AReply-To:...?=``) found in a value it is
    given, and a Python without the fix of CVE-2024-6923 writes the decoded CR/LF into the header
    block as they are (a forged ``Reply-To``, a replaced body). With no ``=?`` left no encoded word
    is recognised, so the header holds exactly the text shown, on every interpreter.
    """
    text = one_line(_HEADER_UNSAFE.sub(" ", text), limit)
    while ENCODED_WORD_OPENER in text:  # one pass suffices ("= ?" holds no opener); the loop is a guard
        text = text.replace(ENCODED_WORD_OPENER, "= ?")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def header_hazards(text: str) -> list[str]:
    """What in ``text`` could break out of an email header: ``encoded_word``, ``line_break`` (for logs)."""
    hazards = []
    if ENCODED_WORD_OPENER in text:
        hazards.append("encoded_word")
    if _LINE_BREAKING.search(text):
        hazards.append("line_break")
    return hazards


def title_of(notification: Notification) -> str:
    """A one-line title: status, watch(es), the first alert's summary and how many more there are."""
    watches = sorted({a.watch for a in notification.alerts}) or [notification.group_labels.get("watch", "")]
    status = "RESOLVED" if notification.status == "resolved" else "FIRING"
    count = notification.alert_count
    first = notification.alerts[0].summary if notification.alerts else f"{count:,} alert(s), not listed"
    more = f" (+{count - 1:,} more)" if count > 1 and notification.alerts else ""
    return one_line(f"[veille] {status}: {', '.join(watches)} — {first}{more}", 200)


def more_line(hidden: int) -> str:
    """The line closing a list that leaves ``hidden`` alerts out (empty when none are)."""
    return f"…and {hidden:,} more alert(s)" if hidden > 0 else ""


OPEN_VEILLE = "Open in veille"
"""The text of the link to the configuration's ``external_url`` in email, Slack and Teams."""


def veille_url(external_url: str) -> str:
    """The configuration's ``external_url`` when it may be linked (:func:`linkable_url`), else ``""``."""
    return external_url if linkable_url(external_url) else ""


def alert_facts(alert: AlertRaised) -> list[tuple[str, str]]:
    """Label/value pairs explaining why an alert fired."""
    facts = [("Watch", alert.watch), ("Kind", alert.kind.replace("_", " ")), ("Severity", alert.severity)]
    if alert.observed is not None:
        facts.append(("Observed", f"{alert.observed:g}"))
    if alert.expected is not None:
        facts.append(("Expected", f"{alert.expected:g}"))
    if alert.negative_share is not None:
        facts.append(("Negative share", f"{alert.negative_share:.0%}"))
    if alert.mention_count:
        facts.append(("Mentions", str(alert.mention_count)))
    if alert.top_terms:
        facts.append(("Top terms", ", ".join(alert.top_terms[:8])))
    if alert.top_sources:
        facts.append(("Top sources", ", ".join(alert.top_sources[:5])))
    if alert.lang:
        facts.append(("Language", alert.lang))
    return facts


def slack_escape(text: str) -> str:
    """Escape text for Slack mrkdwn: ``&``, ``<`` and ``>`` (links and mentions cannot be forged)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_TEAMS_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~])")


def teams_escape(text: str) -> str:
    """Escape Markdown in text shown by an Adaptive Card TextBlock."""
    return _TEAMS_SPECIAL.sub(r"\\\1", text)


def linkable_url(url: str | None) -> bool:
    """Whether ``url`` may become a link in any integration: http(s), at most :data:`MAX_URL` characters,
    and no character that ends or splits a link in one of them (space, control, ``<``, ``>``, ``|``,
    quotes, backslash, braces). One rule for email, Slack and Teams: a URL is linked everywhere or nowhere.
    """
    if not url or len(url) > MAX_URL or not url.lower().startswith(("http://", "https://")):
        return False
    return _URL_UNSAFE.search(url) is None


def slack_fit(text: str, limit: int) -> str:
    """``text`` escaped for Slack and cut *before* escaping so that it holds at most ``limit`` characters.

    Cutting escaped text can split an entity (``&am``) or a ``<url|title>`` link; cutting the raw text
    then escaping cannot.
    """
    escaped = slack_escape(text)
    if len(escaped) <= limit:
        return escaped
    out, used = [], 1  # room for the ellipsis
    for ch in text:
        piece = slack_escape(ch)
        if used + len(piece) > limit:
            break
        out.append(piece)
        used += len(piece)
    return "".join(out) + "…"

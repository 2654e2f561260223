"""Parse Lucene-style watch queries (with luqum) into the query tree of :mod:`veille.query.nodes`.

Syntax (what users write in a watch's ``query``):

* ``acme outage`` — bare words are combined with **AND** (the default operator, as in Google and
  most monitoring tools). ``OR`` binds tighter than juxtaposition: ``acme panne OR outage``
  means ``acme AND (panne OR outage)``; explicit ``AND`` binds tighter than ``OR``
  (``a AND b OR c`` is ``(a AND b) OR c``). Use parentheses when in doubt.
* ``AND``, ``OR``, ``NOT`` (upper case), ``+word`` (required, same as the default), ``-word``
  (same as ``NOT word``).
* ``"acme corp"`` — a phrase: consecutive words. ``"acme corp"~3`` is ``acme NEAR/3 corp``.
* ``acme NEAR/5 outage`` — at most 5 words between them, either order; ``NEAR/5f`` requires
  ``acme`` first. ``NEAR/n`` binds tighter than every other operator and applies to the word,
  phrase, wildcard or parenthesised group immediately on each side
  (``a OR b NEAR/3 c`` is ``a OR (b NEAR/3 c)``; ``(a OR b) NEAR/3 c`` groups explicitly).
* ``acme*``, ``te?t`` — wildcards within one word.
* ``title:``, ``text:``, ``url:``, ``author:`` — search one text field; ``lang:``, ``source:``,
  ``site:`` — metadata filters (``site:lemonde.fr`` also matches ``www.lemonde.fr``).
  A field applies to the word, phrase or parenthesised group after it: ``lang:(fr OR en)``.
* Case, accents and punctuation do not matter; words are whole words. A word holding
  punctuation is a phrase of its parts: ``l'entreprise`` is ``"l entreprise"``, ``covid-19`` is
  ``"covid 19"``.

Not supported (a :class:`QuerySyntaxError` says so): fuzzy ``word~2``, boosts ``^``, ranges
``[a TO b]``, regular expressions ``/.../``, and ``&&``/``||``/``!`` (use ``AND``/``OR``/``NOT``).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any, Final, cast

from luqum import tree
from luqum.exceptions import IllegalCharacterError, ParseError
from luqum.parser import lexer as _luqum_lexer
from luqum.thread import parse as _luqum_parse

from veille.query.nodes import (
    FILTER_FIELDS,
    MAX_NEAR_DISTANCE,
    TEXT_FIELDS,
    And,
    Field,
    Filter,
    FilterField,
    Near,
    Not,
    Or,
    Phrase,
    Query,
    Term,
    TextField,
    Wildcard,
    is_pattern,
)
from veille.text import fold, tokenize

__all__ = ["MAX_QUERY_LENGTH", "QuerySyntaxError", "parse_query"]

MAX_QUERY_LENGTH: Final = 10_000
"""Longest query accepted, in characters."""
MAX_DEPTH: Final = 50
"""Deepest nesting of parentheses accepted."""

_NEAR_RE = re.compile(r"near/(\d+)(f?)", re.IGNORECASE)
_POSITION_RE = re.compile(r"at position (\d+)")
_ESCAPE_RE = re.compile(r"\\(.)", re.DOTALL)


class QuerySyntaxError(ValueError):
    """A query that cannot be parsed, with the 0-based character ``position`` of the mistake.

    ``str(error)`` reads ``"<message> (at character N)"``; :meth:`pointer` draws the query with a
    caret under the mistake, for ``veille check-config`` and similar reports.
    """

    def __init__(self, message: str, position: int, query: str = "") -> None:
        super().__init__(message, position)
        self.message = message
        self.position = position
        self.query = query

    def __str__(self) -> str:
        return f"{self.message} (at character {self.position + 1})"

    def pointer(self) -> str:
        """Return the query on one line and a caret under the mistake on the next."""
        line = self.query.replace("\n", " ").replace("\t", " ")
        return f"{line}\n{' ' * min(self.position, len(line))}^"


def _error(message: str, position: int) -> QuerySyntaxError:
    return QuerySyntaxError(message, position)


# -- lexing and the NEAR/n rewrite -------------------------------------------------------------

_lexers = threading.local()


def _tokens(query: str) -> list[Any]:
    """Lex with luqum's own lexer (a per-thread clone), turning lexer errors into ours."""
    lexer = getattr(_lexers, "lexer", None)
    if lexer is None:
        lexer = _lexers.lexer = _luqum_lexer.clone()
    lexer.input(query)
    try:
        return list(iter(lexer.token, None))
    except IllegalCharacterError as exc:
        found = _POSITION_RE.search(str(exc))
        pos = int(found.group(1)) if found else 0
        char = query[pos : pos + 1]
        if char == '"':
            raise _error("unterminated phrase: missing closing double quote", pos) from None
        if char == "/":
            raise _error("regular expressions (/.../) are not supported; use wildcards * and ?", pos) from None
        if char == "'":
            raise _error('unexpected "\'"; phrases use double quotes', pos) from None
        raise _error(f"unexpected character {char!r}", pos) from None


def _end(tok: Any) -> int:
    """Character offset just after a token."""
    value = tok.value
    size = getattr(value, "size", None)
    return int(tok.lexpos) + (int(size) if size is not None else len(str(value)))


def _check_parentheses(query: str, toks: list[Any]) -> None:
    stack: list[int] = []
    for tok in toks:
        if tok.type == "LPAREN":
            stack.append(tok.lexpos)
            if len(stack) > MAX_DEPTH:
                raise _error(f"parentheses nested more than {MAX_DEPTH} deep", tok.lexpos)
        elif tok.type == "RPAREN":
            if not stack:
                raise _error("unmatched closing parenthesis", tok.lexpos)
            stack.pop()
        elif tok.type in ("LBRACKET", "RBRACKET", "LESSTHAN", "GREATERTHAN"):
            raise _error("ranges ([a TO b], <, >) are not supported", tok.lexpos)
    if stack:
        raise _error("unclosed parenthesis", stack[-1])


def _check_modifiers(toks: list[Any]) -> None:
    """Reject boosts and fuzzy terms, and check proximity numbers, before luqum builds them."""
    for i, tok in enumerate(toks):
        if tok.type == "BOOST":
            raise _error("boosts (^) are not supported in watch queries", tok.lexpos)
        if tok.type == "APPROX":
            if i == 0 or toks[i - 1].type != "PHRASE":
                raise _error("fuzzy search (~) is not supported; use a wildcard such as acme*", tok.lexpos)
            degree = tok.value.value
            if degree is not None and not degree.isdigit():
                raise _error('give a whole number of words after ~, e.g. "acme outage"~5', tok.lexpos)


def _near_of(tok: Any) -> re.Match[str] | None:
    if tok.type != "TERM":
        return None
    return _NEAR_RE.fullmatch(tok.value.value)


def _matching(toks: list[Any], i: int, step: int) -> int:
    """Index of the parenthesis matching the one at ``i`` (searching forwards or backwards)."""
    depth = 0
    opening, closing = ("LPAREN", "RPAREN") if step > 0 else ("RPAREN", "LPAREN")
    while 0 <= i < len(toks):
        if toks[i].type == opening:
            depth += 1
        elif toks[i].type == closing:
            depth -= 1
            if depth == 0:
                return i
        i += step
    raise AssertionError("parentheses were checked")  # pragma: no cover


def _rewrite_near(query: str, toks: list[Any]) -> tuple[str, Callable[[int], int]]:
    """Wrap every ``x NEAR/n y`` in parentheses so that NEAR binds tightest.

    luqum reads ``NEAR/5`` as a plain word joined by the implicit operator, which has the lowest
    precedence; the parentheses make ``a OR b NEAR/5 c`` mean ``a OR (b NEAR/5 c)``. Returns the
    rewritten query and a function mapping its offsets back to the original query.
    """
    wraps: list[tuple[int, int]] = []  # token index ranges (inclusive) to parenthesise
    for i, tok in enumerate(toks):
        if tok.type == "TERM" and tok.value.value == "NEAR":
            raise _error("write NEAR/n with a distance, e.g. acme NEAR/5 outage", tok.lexpos)
        if _near_of(tok) is None:
            continue
        name = tok.value.value
        # left operand: the atom ending just before the NEAR (or a NEAR group already wrapped)
        j = i - 1
        if j < 0 or toks[j].type not in ("TERM", "PHRASE", "RPAREN", "APPROX", "BOOST") or _near_of(toks[j]):
            raise _error(f"{name} needs a word, phrase or parenthesised group on its left", tok.lexpos)
        if toks[j].type in ("APPROX", "BOOST"):
            j -= 1
        if toks[j].type == "RPAREN":
            j = _matching(toks, j, -1)
        if j >= 2 and toks[j - 1].type == "COLUMN" and toks[j - 2].type == "TERM":
            j -= 2
        j = min([start for start, end in wraps if end == i - 1] + [j])
        # right operand: the atom starting just after the NEAR
        k = i + 1
        if k >= len(toks) or toks[k].type not in ("TERM", "PHRASE", "LPAREN") or _near_of(toks[k]):
            raise _error(f"{name} needs a word, phrase or parenthesised group on its right", tok.lexpos)
        if toks[k].type == "TERM" and k + 2 < len(toks) and toks[k + 1].type == "COLUMN":
            k += 2
        if toks[k].type == "LPAREN":
            k = _matching(toks, k, 1)
        elif toks[k].type not in ("TERM", "PHRASE"):
            raise _error(f"{name} needs a word, phrase or parenthesised group on its right", tok.lexpos)
        if k + 1 < len(toks) and toks[k + 1].type in ("APPROX", "BOOST"):
            k += 1
        wraps.append((j, k))
    if not wraps:
        return query, lambda pos: pos
    opens: dict[int, int] = {}
    closes: dict[int, int] = {}
    for j, k in wraps:
        opens[toks[j].lexpos] = opens.get(toks[j].lexpos, 0) + 1
        end = _end(toks[k])
        closes[end] = closes.get(end, 0) + 1
    out: list[str] = []
    original: list[int] = []  # original offset of each rewritten character
    for pos in range(len(query) + 1):
        for _ in range(closes.get(pos, 0)):
            out.append(")")
            original.append(pos)
        for _ in range(opens.get(pos, 0)):
            out.append("(")
            original.append(pos)
        if pos < len(query):
            out.append(query[pos])
            original.append(pos)
    original.append(len(query))
    return "".join(out), lambda pos: original[min(max(pos, 0), len(original) - 1)]


# -- luqum tree to our tree --------------------------------------------------------------------


class _Converter:
    def __init__(self, to_original: Callable[[int], int]) -> None:
        self.to_original = to_original

    def pos(self, item: tree.Item) -> int:
        return self.to_original(item.pos or 0)

    def fail(self, message: str, item: tree.Item) -> QuerySyntaxError:
        return _error(message, self.pos(item))

    def convert(self, item: tree.Item, field: TextField | None) -> Query:
        if isinstance(item, tree.Phrase):
            return self.words(item, _unescape(item.value[1:-1]), phrase=True)
        if isinstance(item, tree.Word):
            return self.word(item)
        if isinstance(item, tree.Group | tree.FieldGroup):
            return self.convert(item.expr, field)
        if isinstance(item, tree.OrOperation):
            return _flat(Or, [self.convert(c, field) for c in item.children])
        if isinstance(item, tree.UnknownOperation) and any(
            isinstance(c, tree.Word) and _NEAR_RE.fullmatch(c.value) for c in item.children
        ):
            return self.near(item, field)
        if isinstance(item, tree.AndOperation | tree.UnknownOperation):
            return _flat(And, [self.convert(c, field) for c in item.children])
        if isinstance(item, tree.Not | tree.Prohibit):
            return Not(self.convert(item.a, field))
        if isinstance(item, tree.Plus):
            return self.convert(item.a, field)
        if isinstance(item, tree.SearchField):
            return self.search_field(item, field)
        if isinstance(item, tree.Proximity):
            return self.proximity(item)
        if isinstance(item, tree.Fuzzy):
            return self._unsupported_fuzzy(item)
        if isinstance(item, tree.Boost):
            raise self.fail("boosts (^) are not supported in watch queries", item)
        if isinstance(item, tree.Regex):
            raise self.fail("regular expressions (/.../) are not supported; use wildcards * and ?", item)
        if isinstance(item, tree.Range | tree.From | tree.To):
            raise self.fail("ranges are not supported", item)
        raise self.fail(f"unsupported query syntax: {item}", item)  # pragma: no cover

    def _unsupported_fuzzy(self, item: tree.Fuzzy) -> Query:
        raise self.fail("fuzzy search (~) is not supported; use a wildcard such as acme*", item)

    def word(self, item: tree.Word) -> Query:
        value: str = item.value
        if value in ("&&", "||") or value.startswith("!"):
            raise self.fail(f"{value[:2]!r} is not an operator here; use AND, OR or NOT", item)
        if _NEAR_RE.fullmatch(value):
            raise self.fail(f"{value} needs a word, phrase or parenthesised group on each side", item)
        return self.words(item, _unescape(value), phrase=False)

    def words(self, item: tree.Item, text: str, *, phrase: bool) -> Query:
        words = tokenize(fold(text), wildcards=True)
        if not words:
            what = "phrase" if phrase else repr(text)
            raise self.fail(f"{what} has no letters or digits to search for", item)
        if len(words) == 1:
            word = words[0]
            return Wildcard(word, raw=text) if is_pattern(word) else Term(word, raw=text)
        return Phrase(tuple(words), raw=text)

    def near(self, item: tree.UnknownOperation, field: TextField | None) -> Query:
        children = list(item.children)
        if len(children) % 2 == 0:
            raise self.fail("NEAR/n needs a word, phrase or parenthesised group on each side", item)
        result = self.near_operand(children[0], field)
        for op, right in zip(children[1::2], children[2::2], strict=True):
            found = _NEAR_RE.fullmatch(op.value) if isinstance(op, tree.Word) else None
            if found is None:
                raise self.fail("expected NEAR/n between NEAR operands", op)
            distance = int(found.group(1))
            if distance > MAX_NEAR_DISTANCE:
                raise self.fail(f"NEAR distance must be at most {MAX_NEAR_DISTANCE}", op)
            result = Near(result, self.near_operand(right, field), distance, ordered=bool(found.group(2)))
        return result

    def near_operand(self, item: tree.Item, field: TextField | None) -> Query:
        operand = self.convert(item, field)
        if not operand._positional():
            hint = ""
            if isinstance(operand, Field | Filter):
                hint = "; to search one field, put the whole NEAR in it: title:(a NEAR/5 b)"
            raise self.fail("NEAR operands must be words, phrases, wildcards or OR groups of them" + hint, item)
        return operand

    def proximity(self, item: tree.Proximity) -> Query:
        degree = item.degree
        if degree is None or not str(degree).isdigit():
            raise self.fail('give a whole number of words after ~, e.g. "acme outage"~5', item)
        distance = int(degree)
        if distance > MAX_NEAR_DISTANCE:
            raise self.fail(f"proximity must be at most {MAX_NEAR_DISTANCE}", item)
        phrase = item.term
        words = tokenize(fold(_unescape(phrase.value[1:-1])), wildcards=True)
        if not words:
            raise self.fail("phrase has no letters or digits to search for", item)
        leaves: list[Query] = [Wildcard(w) if is_pattern(w) else Term(w) for w in words]
        result = leaves[0]
        for leaf in leaves[1:]:
            result = Near(result, leaf, distance)
        return result

    def search_field(self, item: tree.SearchField, field: TextField | None) -> Query:
        name = str(item.name).lower()
        if field is not None:
            raise self.fail(f"field {name}: inside field {field}: is not supported", item)
        if name in TEXT_FIELDS:
            text_field = cast(TextField, name)
            return Field(text_field, self.convert(item.expr, text_field))
        if name in FILTER_FIELDS:
            return self.filter(cast(FilterField, name), item.expr)
        hint = ""
        if name in ("http", "https"):
            hint = '; to search a URL, quote it: url:"https://…"'
        known = ", ".join(sorted(TEXT_FIELDS | FILTER_FIELDS))
        raise self.fail(f"unknown field {name!r} (known fields: {known}){hint}", item)

    def filter(self, name: FilterField, item: tree.Item) -> Query:
        if isinstance(item, tree.Group | tree.FieldGroup):
            return self.filter(name, item.expr)
        if isinstance(item, tree.OrOperation):
            return _flat(Or, [self.filter(name, c) for c in item.children])
        if isinstance(item, tree.AndOperation | tree.UnknownOperation):
            return _flat(And, [self.filter(name, c) for c in item.children])
        if isinstance(item, tree.Not | tree.Prohibit):
            return Not(self.filter(name, item.a))
        if isinstance(item, tree.Plus):
            return self.filter(name, item.a)
        if isinstance(item, tree.Phrase):
            raw = _unescape(item.value[1:-1])
        elif isinstance(item, tree.Word):
            raw = _unescape(item.value)
        elif isinstance(item, tree.SearchField) and str(item.name).lower() in ("http", "https"):
            raise self.fail(f'quote URLs: {name}:"https://…"', item)
        else:
            raise self.fail(f"{name}: takes a value, a quoted value or a parenthesised group of values", item)
        try:
            return Filter.make(name, raw)
        except ValueError:
            raise self.fail(f"{name}: needs a value", item) from None


def _unescape(text: str) -> str:
    return _ESCAPE_RE.sub(r"\1", text)


def _flat(kind: type[And] | type[Or], operands: list[Query]) -> Query:
    """Build an n-ary AND/OR, merging nested nodes of the same kind."""
    flat: list[Query] = []
    for operand in operands:
        if isinstance(operand, kind):
            flat.extend(operand.operands)
        else:
            flat.append(operand)
    return flat[0] if len(flat) == 1 else kind(tuple(flat))


def parse_query(query: str) -> Query:
    """Parse a watch query into a :class:`~veille.query.Query`.

    See this module's documentation for the syntax. Raises :class:`QuerySyntaxError` (and only
    that) for any query it cannot honour, naming the character where the problem is.
    """
    try:
        return _parse(query)
    except QuerySyntaxError as exc:
        exc.query = query
        raise


def _parse(query: str) -> Query:
    if len(query) > MAX_QUERY_LENGTH:
        raise _error(f"query longer than {MAX_QUERY_LENGTH} characters", MAX_QUERY_LENGTH)
    if not query.strip():
        raise _error("empty query", 0)
    toks = _tokens(query)
    _check_parentheses(query, toks)
    _check_modifiers(toks)
    rewritten, to_original = _rewrite_near(query, toks)
    try:
        parsed = _luqum_parse(rewritten)
    except ParseError as exc:
        raise _from_luqum(str(exc), rewritten, to_original, len(query)) from None
    except (ValueError, ArithmeticError):  # pragma: no cover - a luqum edge case the checks above missed
        raise _error("could not parse this query", 0) from None
    try:
        return _Converter(to_original).convert(parsed, None)
    except RecursionError:
        raise _error("query nested too deeply", 0) from None


def _from_luqum(message: str, rewritten: str, to_original: Callable[[int], int], end: int) -> QuerySyntaxError:
    found = _POSITION_RE.search(message)
    if found is None:
        return _error("query ends too early (an operator or a field is missing what follows it)", end)
    pos = int(found.group(1))
    token = re.match(r"\S+", rewritten[pos:])
    shown = token.group(0) if token else rewritten[pos : pos + 1]
    if shown in ("AND", "OR", "NOT"):
        return _error(f"unexpected {shown}: it needs a word, phrase or group on each side", to_original(pos))
    return _error(f"unexpected {shown!r}", to_original(pos))

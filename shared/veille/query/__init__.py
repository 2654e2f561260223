"""The watch query language: parse Lucene-style queries and match them against mentions.

>>> q = parse_query('acme NOT recette')
>>> q.matches(Document(text="Acme a déçu"))
True

* :func:`parse_query` turns query text into a :class:`Query` (raising :class:`QuerySyntaxError`).
* :meth:`Query.matches` checks one :class:`Document`; :class:`WatchIndex` checks one document
  against many watches at once, looking only at the watches that could match it.

The syntax is documented in :mod:`veille.query.parser`, the matching rules in
:mod:`veille.query.nodes`.
"""

from veille.query.document import Document, PreparedDocument, prepare
from veille.query.index import WatchIndex
from veille.query.nodes import (
    MAX_NEAR_DISTANCE,
    And,
    Field,
    Filter,
    Near,
    Not,
    Or,
    Phrase,
    Query,
    Term,
    Wildcard,
)
from veille.query.parser import QuerySyntaxError, parse_query

__all__ = [
    "MAX_NEAR_DISTANCE",
    "And",
    "Document",
    "Field",
    "Filter",
    "Near",
    "Not",
    "Or",
    "Phrase",
    "PreparedDocument",
    "Query",
    "QuerySyntaxError",
    "Term",
    "WatchIndex",
    "Wildcard",
    "parse_query",
    "prepare",
]

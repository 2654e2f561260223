"""Just enough PromQL reading to list the metric names an expression selects."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

__all__ = ["dashboard_expressions", "grafana_to_promql", "metric_names", "rule_expressions"]

KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
    "atan2",
    "start",
    "end",
}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_BRACES = re.compile(r"\{[^{}]*\}")
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENT = re.compile(r"(?<![\w:.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")
GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
    "$watch": ".*",
    "$source": ".*",
    "${datasource}": "prometheus",
}


def grafana_to_promql(expr: str) -> str:
    """Replace Grafana's variables with values Prometheus accepts."""
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    return expr


def metric_names(expr: str) -> set[str]:
    """The metric names ``expr`` selects (not functions, keywords, labels or durations)."""
    text = _STRING.sub('""', grafana_to_promql(expr))
    text = _BRACES.sub(" ", text)
    text = _BRACKETS.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for match in _IDENT.finditer(text):
        word, call = match.group(1), match.group(2)
        if call or word.lower() in KEYWORDS or re.fullmatch(r"\d.*", word):
            continue
        names.add(word)
    return names


def rule_expressions(path: Path) -> Iterator[tuple[str, str]]:
    """(alert or record name, expression) of every rule in a Prometheus rules file."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    for group in data["groups"]:
        for rule in group["rules"]:
            yield rule.get("alert") or rule["record"], rule["expr"]


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def dashboard_expressions(path: Path) -> Iterator[tuple[str, str]]:
    """(panel or variable title, expression) of every query of a Grafana dashboard."""
    data = json.loads(path.read_text(encoding="utf-8"))
    for panel in _panels(data["panels"]):
        for target in panel.get("targets", []):
            if target.get("expr"):
                yield panel["title"], target["expr"]
    for variable in data.get("templating", {}).get("list", []):
        query = variable.get("query")
        text = query.get("query") if isinstance(query, dict) else None
        if variable.get("type") == "query" and text:
            inner = re.fullmatch(r"label_values\((.+),\s*\w+\)", text.strip())
            yield f"variable {variable['name']}", inner.group(1) if inner else text

"""The committed AsyncAPI document is the one the code generates."""

from __future__ import annotations

from pathlib import Path

import yaml

from veille.asyncapi import render_yaml

REPO = Path(__file__).resolve().parents[2]


def test_committed_spec_matches_the_code() -> None:
    """docs/asyncapi.yaml equals what `veille asyncapi` generates; regenerate it when models change."""
    committed = (REPO / "docs" / "asyncapi.yaml").read_text(encoding="utf-8")
    assert committed == render_yaml(), "run: veille asyncapi -o docs/asyncapi.yaml"


def test_spec_documents_every_message_model() -> None:
    """Every message kind on the bus has its JSON schema in the document."""
    spec = yaml.safe_load(render_yaml())
    schemas = spec["components"]["schemas"]
    for model in ("MentionIngested", "MentionClassified", "AlertRaised", "DeadLettered"):
        assert model in schemas
    assert "schema_version" in schemas["AlertRaised"]["properties"]

"""The archive's HTTP JSON API on a real server (aiohttp on 127.0.0.1) over both databases: bearer
token, loopback-only without one, answers from the hand-counted set (dataset.py), errors in words,
the committed OpenAPI document up to date."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from nats.js import JetStreamContext
from structlog.testing import capture_logs

from services.archive.api import ENDPOINTS, ApiSettings, ArchiveApi, openapi, openapi_text
from tests.archive.conftest import make_archive, wait_for
from tests.archive.dataset import H0, load

TOKEN = "s3cret-token"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def api(db_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The API with a token over the dataset; a client that sends the token."""
    engine = await load(db_url)
    server = ArchiveApi(engine, token=TOKEN)
    port = await server.start("127.0.0.1", 0)
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {TOKEN}"}
        ) as client:
            yield client
    finally:
        await server.stop()
        await engine.dispose()


def _iso(moment: object) -> str:
    return moment.isoformat()  # type: ignore[attr-defined]


async def test_token_is_required(api: httpx.AsyncClient) -> None:
    bare = httpx.AsyncClient(base_url=api.base_url)
    async with bare:
        response = await bare.get("/api/v1/mentions")
        assert response.status_code == 401
        assert "bearer token is required" in response.json()["error"]
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        wrong = await bare.get("/api/v1/alerts", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "not the right one" in wrong.json()["error"]
        # the API's description is public
        assert (await bare.get("/api/v1/openapi.json")).json() == openapi()
    assert (await api.get("/api/v1/alerts")).status_code == 200


async def test_mentions_search_filters_and_cursor(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/v1/mentions", params={"q": "rappel", "watch": "dupre"})
    assert response.status_code == 200
    body = response.json()
    assert sorted(m["text"] for m in body["mentions"]) == [
        "Brasserie Dupré, encore un rappel de bière",
        "Rappel: la brasserie Dupré retire sa bière",
    ]
    assert body["next_cursor"] is None
    params = {"q": "brasserie", "sentiment": ["positive", "neutral"], "source": "rss", "limit": "2"}
    first = (await api.get("/api/v1/mentions", params=params)).json()
    assert len(first["mentions"]) == 2 and first["next_cursor"]
    second = (await api.get("/api/v1/mentions", params={**params, "cursor": first["next_cursor"]})).json()
    ids = [m["id"] for m in first["mentions"] + second["mentions"]]
    assert len(ids) == len(set(ids)) == 4  # two neutral and two positive rss mentions
    # relevance: the mention saying "bière" and "rappel" twice over comes before time order would put it
    ranked = (await api.get("/api/v1/mentions", params={"q": "rappel OR biere", "sort": "relevance"})).json()
    assert len(ranked["mentions"]) == 3


async def test_aggregations_and_alerts(api: httpx.AsyncClient) -> None:
    params = {
        "watch": "dupre",
        "since": _iso(H0 - timedelta(hours=1)),
        "until": _iso(H0 + timedelta(hours=4)),
        "bucket": "1h",
    }
    body = (await api.get("/api/v1/aggregations", params=params)).json()
    assert [b["total"] for b in body["buckets"]] == [0, 6, 0, 2, 0]
    assert body["buckets"][1]["share"]["negative"] == 0.5
    assert body["buckets"][2]["expected"] > 0
    assert [(a["status"], a["observed"], a["expected"]) for a in body["alerts"]] == [
        ("resolved", 2, 1.4),
        ("firing", 6, 1.5),
    ]
    assert body["top"]["sources"] == [
        {"key": "rss", "count": 6, "example": body["top"]["sources"][0]["example"]},
        {"key": "bluesky", "count": 2, "example": body["top"]["sources"][1]["example"]},
    ]
    assert [e["key"] for e in body["top"]["stories"]] == ["s1", "s2"]
    plain = (await api.get("/api/v1/aggregations", params={**params, "baseline": "false"})).json()
    assert [b["expected"] for b in plain["buckets"]] == [None] * 5
    assert [b["total"] for b in plain["buckets"]] == [0, 6, 0, 2, 0]
    alerts = (await api.get("/api/v1/alerts", params={"status": "firing"})).json()["alerts"]
    assert [(a["id"], a["watch"]) for a in alerts] == [("dupre-volume-1", "dupre"), ("acme-neg-1", "acme")]
    only = (await api.get("/api/v1/alerts", params={"watch": "acme"})).json()["alerts"]
    assert [a["kind"] for a in only] == ["negative_mention"]


@pytest.mark.parametrize(
    ("path", "params", "words"),
    [
        ("/api/v1/mentions", {"q": '"unbalanced quote'}, "the query is not valid"),
        ("/api/v1/mentions", {"q": " OR ".join(f"t{i}" for i in range(2_000))}, "query longer than 10000 characters"),
        ("/api/v1/mentions", {"since": "2999-01-01T00:00:00Z"}, "in the future"),
        ("/api/v1/mentions", {"since": "last tuesday"}, "neither a duration"),
        ("/api/v1/mentions", {"limit": "0"}, "limit must be between"),
        ("/api/v1/mentions", {"limit": "ten"}, "not a whole number"),
        ("/api/v1/mentions", {"sentiment": "angry"}, "not one of negative, neutral, positive"),
        ("/api/v1/mentions", {"cursor": "garbage"}, "cursor"),
        ("/api/v1/mentions", {"qq": "acme"}, "unknown parameter 'qq'"),
        ("/api/v1/aggregations", {}, "watch is required"),
        ("/api/v1/aggregations", {"watch": "dupre", "bucket": "7m"}, "multiple of the detector's bucket"),
        ("/api/v1/aggregations", {"watch": "dupre", "bucket": "soon"}, "not a duration"),
        ("/api/v1/alerts", {"status": "open"}, "not one of firing, resolved"),
    ],
)
async def test_bad_requests_are_400_in_words(
    api: httpx.AsyncClient, path: str, params: dict[str, str], words: str
) -> None:
    response = await api.get(path, params=params)
    assert response.status_code == 400
    assert words in response.json()["error"]
    assert "Traceback" not in response.text


async def test_not_found_and_post_are_json(api: httpx.AsyncClient) -> None:
    missing = await api.get("/api/v1/nothing")
    assert missing.status_code == 404 and missing.json()["error"]
    post = await api.post("/api/v1/mentions", json={})
    assert post.status_code == 405 and post.json()["error"]


def test_openapi_document_is_committed_up_to_date() -> None:
    """docs/archive-openapi.json is what `python -m services.archive.api` prints today."""
    committed = (ROOT / "docs" / "archive-openapi.json").read_text()
    assert committed == openapi_text(), "regenerate: python -m services.archive.api > docs/archive-openapi.json"
    assert set(json.loads(committed)["paths"]) == set(ENDPOINTS)


async def test_without_a_token_it_listens_on_loopback_only_and_says_so(tmp_path: Path) -> None:
    from sqlalchemy.engine import make_url

    from services.archive.db import make_engine

    engine = make_engine(make_url(f"sqlite+aiosqlite:///{tmp_path / 'a.sqlite3'}"), write=False)
    server = ArchiveApi(engine, token=None)
    with capture_logs() as logs:
        port = await server.start("0.0.0.0", 0)
    try:
        assert server.host == "127.0.0.1"
        started = [e for e in logs if e["event"] == "archive.api_started"]
        assert started and "loopback only" in started[0]["auth"] and started[0]["log_level"] == "warning"
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{port}/api/v1/alerts")
            assert response.status_code != 401  # no token asked on loopback
    finally:
        await server.stop()
        await engine.dispose()


async def test_the_archive_service_serves_the_api(
    nats_server: object, js: JetStreamContext, db_url: str, tmp_path: Path
) -> None:
    app = make_archive(nats_server.url, db_url, tmp_path, api=ApiSettings(archive_api_token=TOKEN, archive_api_port=0))  # type: ignore[attr-defined]
    await app.start()
    try:
        assert app.api.port
        async with httpx.AsyncClient(base_url=f"http://0.0.0.0:{app.api.port}") as client:
            assert (await client.get("/api/v1/alerts")).status_code == 401
            answers: list[httpx.Response] = []

            async def answered() -> bool:
                answers.append(await client.get("/api/v1/alerts", headers={"Authorization": f"Bearer {TOKEN}"}))
                return answers[-1].status_code == 200

            await wait_for(answered, "the API answering once the schema is ready")
            # while the schema was migrating: a 503 in words, never a 500
            assert all(a.status_code == 503 and "not ready" in a.json()["error"] for a in answers[:-1])
            assert answers[-1].json() == {"alerts": []}
    finally:
        await app.stop()


def test_token_from_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """VEILLE_ARCHIVE_API_TOKEN_FILE (a Docker or Kubernetes secret) gives the token, stripped."""
    secret = tmp_path / "token"
    secret.write_text(f"{TOKEN}\n")
    monkeypatch.delenv("VEILLE_ARCHIVE_API_TOKEN", raising=False)
    monkeypatch.setenv("VEILLE_ARCHIVE_API_TOKEN_FILE", str(secret))
    token = ApiSettings().archive_api_token
    assert token is not None and token.get_secret_value() == TOKEN

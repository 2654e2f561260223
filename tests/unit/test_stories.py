"""Tests of near-duplicate story clustering."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from veille.stories import StoryIndex, new_story_id, sketch, story_text

WIRE = (
    "PARIS (AFP) - Le groupe Acme a annoncé mardi la suppression de 1 200 postes en France, dans le cadre "
    "d'un plan de restructuration destiné à redresser sa rentabilité, a-t-on appris auprès de la direction. "
    "Les syndicats ont dénoncé une décision « brutale » et appellent à la grève jeudi dans les principaux "
    "sites du groupe, notamment à Lyon, Lille et Toulouse. La direction assure que les départs se feront "
    "sur la base du volontariat et que des reclassements seront proposés à tous les salariés concernés. "
    "L'action Acme a gagné 3 % à la Bourse de Paris après l'annonce."
)
OTHER_ACME_STORY = (
    "Acme lance un nouveau produit destiné aux PME, a annoncé mardi la direction du groupe à Paris lors "
    "d'une conférence de presse. Le logiciel, vendu sur abonnement, doit concurrencer les offres de Globex "
    "et Initech sur le marché européen. Le groupe espère conquérir 10 000 clients d'ici à la fin de l'année, "
    "selon son directeur commercial, qui mise sur les distributeurs régionaux."
)
THIRD_STORY = (
    "Acme outage: thousands of customers could not log in on Monday morning after a failed software update, "
    "the company said in a statement. Service was restored by noon and Acme promised refunds to business "
    "customers affected by the disruption, which lasted nearly four hours across Europe."
)
POST = "Acme just cancelled my order for the third time this month and support hung up on me. Never again."

T0 = datetime(2024, 3, 12, 10, 0, tzinfo=UTC)


def _assign_all(texts: list[str], index: StoryIndex | None = None) -> list[str]:
    index = index or StoryIndex()
    return [index.assign(f"m{i}", text, T0 + timedelta(minutes=i)) for i, text in enumerate(texts)]


def test_syndicated_copies_with_site_boilerplate_are_one_story() -> None:
    """The same wire story framed by different sites' headers and footers gets one story id."""
    copies = [
        WIRE,
        "Publié le 12 mars 2024 à 10h12, mis à jour à 11h02. " + WIRE + " Lire aussi : nos articles. © Le Monde",
        "Par Ouest-France avec AFP. " + WIRE + " Abonnez-vous pour lire la suite de nos articles.",
        "<b>Économie</b> | " + WIRE + " Partager sur Facebook Partager sur X",
    ]
    ids = _assign_all(copies)
    assert len(set(ids)) == 1
    assert ids[0] == new_story_id("m0")


def test_copy_with_a_changed_word_is_the_same_story() -> None:
    """Small edits (a changed word, different punctuation and case) keep the story id."""
    edited = WIRE.replace("mardi", "lundi").replace("brutale", "inacceptable").upper()
    assert len(set(_assign_all([WIRE, edited]))) == 1


def test_truncated_copy_is_the_same_story_in_either_order() -> None:
    """A feed summary holding only the first third of the story joins it, before or after the full text."""
    summary = WIRE[: len(WIRE) // 3] + " […]"
    assert len(set(_assign_all([WIRE, summary]))) == 1
    assert len(set(_assign_all([summary, WIRE]))) == 1


def test_different_stories_about_the_same_company_stay_apart() -> None:
    """Three different stories mentioning Acme get three different ids."""
    ids = _assign_all([WIRE, OTHER_ACME_STORY, THIRD_STORY, POST])
    assert len(set(ids)) == 4


def test_retweets_and_quotes_of_a_post_are_one_story() -> None:
    """RT prefixes, quote comments, trailing 'via @x' and URLs do not split a quoted post's story."""
    copies = [
        POST,
        "RT @angry_customer: " + POST,
        "RT @someone: RT @angry_customer: " + POST + " https://t.co/abc123",
        POST + " via @angry_customer",
        "Same experience here, unbelievable. " + POST,
    ]
    ids = _assign_all(copies)
    assert len(set(ids)) == 1


def test_short_different_posts_are_not_merged() -> None:
    """Short posts that differ in their meaningful word are different stories."""
    ids = _assign_all(["Acme is down again", "Acme is up again", "Globex is down again"])
    assert len(set(ids)) == 3


def test_identical_short_posts_are_one_story() -> None:
    """The same short post repeated is one story."""
    ids = _assign_all(["Acme is down again"] * 3)
    assert len(set(ids)) == 1


def test_text_without_words_is_a_story_of_its_own() -> None:
    """A mention with no words (only emoji or a URL) gets a story id derived from its own id."""
    index = StoryIndex()
    assert index.assign("m1", "🔥🔥🔥", T0) == new_story_id("m1")
    assert index.assign("m2", "https://example.com/x", T0) == new_story_id("m2")
    assert len(index) == 0


def test_redelivered_mention_gets_the_same_story() -> None:
    """Assigning the same mention twice returns the same story id."""
    index = StoryIndex()
    first = index.assign("m1", WIRE, T0)
    index.assign("m2", OTHER_ACME_STORY, T0)
    assert index.assign("m1", WIRE, T0) == first


def test_replicas_replaying_the_same_sequence_agree() -> None:
    """Two indexes fed the same mentions in the same order produce the same story ids."""
    texts = [WIRE, POST, "RT @x: " + POST, OTHER_ACME_STORY, WIRE[:300], THIRD_STORY]
    assert _assign_all(texts) == _assign_all(texts)


def test_sketches_do_not_depend_on_the_process_hash_seed() -> None:
    """Sketches are identical across processes with different PYTHONHASHSEED values."""
    code = f"from veille.stories import sketch, story_text; print(sketch(story_text({WIRE!r})).hashes)"
    shared = str(Path(__file__).resolve().parents[2] / "shared")
    outputs = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": shared}
        result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        outputs.add(result.stdout)
    assert outputs == {str(sketch(story_text(WIRE)).hashes) + "\n"}


def test_stories_expire_after_the_ttl_in_mention_time() -> None:
    """A story not seen for longer than the ttl is forgotten; a repeat within the ttl keeps it alive."""
    index = StoryIndex(ttl=timedelta(hours=1))
    first = index.assign("m1", POST, T0)
    assert index.assign("m2", POST, T0 + timedelta(minutes=50)) == first
    assert index.assign("m3", POST, T0 + timedelta(minutes=100)) == first  # 50 min after m2
    assert index.assign("m4", POST, T0 + timedelta(hours=5)) == new_story_id("m4")


def test_memory_is_bounded_by_max_entries() -> None:
    """However many distinct stories arrive, at most max_entries sketches are kept."""
    index = StoryIndex(max_entries=50)
    for i in range(500):
        index.assign(f"m{i}", f"story number {i} about topic {i * 7} in city {i * 13} today", float(i))
    assert len(index) == 50
    stats = index.stats()
    assert (stats.assigned, stats.new_stories, stats.evicted) == (500, 500, 450)


def test_near_identical_copies_do_not_add_sketches() -> None:
    """500 retweets of one post keep a single sketch."""
    index = StoryIndex()
    for i in range(500):
        index.assign(f"m{i}", f"RT @user{i}: {POST}", float(i))
    assert len(index) == 1


def test_sketch_comparison_estimates_similarity_and_containment() -> None:
    """Identical texts compare as (1, 1), unrelated ones as (0, 0), a prefix as fully contained."""
    full = sketch(story_text(WIRE))
    assert full.compare(full) == (1.0, 1.0)
    assert sketch(story_text(THIRD_STORY)).compare(full) == (0.0, 0.0)
    jaccard, containment = sketch(story_text(WIRE[:250])).compare(full)
    assert jaccard < 0.5
    assert containment == 1.0

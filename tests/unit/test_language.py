"""Language detection: declared tags win, ordinary text is detected offline, noise gives None."""

from __future__ import annotations

import pytest

from veille.language import detect_language, detect_languages, normalise_language_tag


@pytest.mark.parametrize(
    ("declared", "expected"),
    [("fr-FR", "fr"), ("FR", "fr"), ("en_GB", "en"), ("fra", "fr"), ("de", "de"), ("", None), ("und", None)],
)
def test_declared_tags_are_normalised_to_iso_639_1(declared: str, expected: str | None) -> None:
    """A source's language tag becomes its two-letter code; an invalid tag is dropped."""
    assert normalise_language_tag(declared) == expected


def test_a_valid_declared_language_is_kept_even_if_the_text_disagrees() -> None:
    """What the source declares wins over what the text looks like."""
    assert detect_language("This is clearly an English sentence.", declared="fr-FR") == "fr"


def test_an_invalid_declared_tag_falls_back_to_detection() -> None:
    """A meaningless declared tag does not stop detection."""
    assert detect_language("Je suis très déçu par ce service, vraiment nul.", declared="xx") == "fr"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I am really disappointed with the new update, it keeps crashing.", "en"),
        ("Je suis très déçu par la nouvelle mise à jour, elle plante sans arrêt.", "fr"),
        ("La grève continue", "fr"),
        ("What a disaster", "en"),
        ("Der Hund ist nicht hier und die Katze auch nicht.", "de"),
        ("Hola, ¿cómo estás? Muy bien, gracias por todo.", "es"),
        ("Привет, как дела?", "ru"),
    ],
)
def test_ordinary_sentences_are_detected(text: str, expected: str) -> None:
    """Plain sentences in common languages get their ISO 639-1 code."""
    assert detect_language(text) == expected


def test_handles_links_and_hashtag_signs_do_not_sway_detection() -> None:
    """@handles, URLs and # are ignored; the words decide."""
    assert detect_language("@acme_support #Panne depuis ce matin https://t.co/xyz, c'est une honte") == "fr"


@pytest.mark.parametrize("text", ["", "ok", "😂😂😂", "lol", "12345 !!!", "http://example.com"])
def test_too_short_or_ambiguous_text_gives_none(text: str) -> None:
    """Text with too few letters or no clear language is not guessed."""
    assert detect_language(text) is None


def test_detect_languages_pairs_texts_with_their_declared_tags() -> None:
    """The batch helper keeps order and uses each text's own declared tag."""
    assert detect_languages(["Bonjour à tous, merci pour votre aide", "hello"], ["", "en-US"]) == ["fr", "en"]
    with pytest.raises(ValueError, match="declared"):
        detect_languages(["a", "b"], ["en"])


def test_fast_path_lets_a_dominant_language_win_over_one_stray_marker() -> None:
    """Several French markers and one word that looks Italian or Spanish stay French, without lingua."""
    from veille.language import _fast_path, _marker_hits

    hits = _marker_hits(["l'écologie", "c'est", "pas", "son", "truc", "il", "préfère", "ses", "amis"])
    assert hits["fr"] >= 3 * max(count for lang, count in hits.items() if lang != "fr")
    assert _fast_path(hits) == "fr"
    assert _fast_path({"fr": 1, "it": 1, "en": 0}) is None  # a tie is for the detector
    assert _fast_path({"fr": 2, "it": 1, "en": 0}) is None


def test_french_word_shapes_count_as_french_markers() -> None:
    """'l'écologie' (elided article before é) and participles in -ée are French evidence."""
    from veille.language import _marker_hits

    assert _marker_hits(["l'écologie"])["fr"] == 1
    assert _marker_hits(["menacée"])["fr"] == 1
    assert _marker_hits(["l'ho"])["fr"] == 0  # Italian elision


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Oh non ! J'ai brisé l'équilibre écologique !", "fr"),
        ("Non è vero, sono qui per te e anche per lei", "it"),
        ("Vou à praia com muito sol, não sei quando volto", "pt"),
        ("Ik weet niet of het een goed idee is", "nl"),
    ],
)
def test_neighbouring_languages_are_not_taken_for_french_or_english(text: str, expected: str) -> None:
    """Shared words ('non', 'à', 'of') do not pull Italian, Portuguese or Dutch into French or English."""
    assert detect_language(text) == expected

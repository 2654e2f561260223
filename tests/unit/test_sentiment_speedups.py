"""The linear scorer's compiled inner loops (``_speedups.c``): built by the install, used by default,
equal to the pure-Python scorer to the bit, refused when stale or disabled, and safe on bad input."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import math
import random
import shlex
import shutil
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.helpers.shared_data import requires_shared_data, shared_data
from veille.sentiment import linear as linear_module
from veille.sentiment import speedups
from veille.sentiment.evaluation import load_labelled
from veille.sentiment.linear import LinearBackend, LinearModels
from veille.sentiment.memo import Memo
from veille.sentiment.text import Token

ROOT = Path(__file__).resolve().parents[2]
MODEL_FILE = ROOT / "shared" / "veille" / "sentiment" / "model" / "linear.json"
CC = shlex.split(sysconfig.get_config_var("CC") or "cc")[0]
HAS_COMPILER = shutil.which(CC) is not None and Path(sysconfig.get_paths()["include"], "Python.h").is_file()
needs_compiler = pytest.mark.skipif(
    not HAS_COMPILER, reason=f"no C compiler ({CC}) or Python headers here: the pure-Python scorer runs instead"
)

TEXTS = [
    ("Sooo HAPPY with #GreatService!!! 😍 @user http://t.co/x", "en"),
    ("I don't like it, but the staff were nice :)", "en"),
    ("not _ good :-) <3 143 #NotGood sooo baaad", "en"),
    ("so _ _ happy :D XD", "en"),
    ("_", "en"),
    ("", "en"),
    ("never ever again. Worst. Airline. Ever!!! not good, not bad", "en"),
    ("Acme's new phone is not bad at all, I'm not disappointed", "en"),
    ("x" * 400 + " terrible", "en"),  # a chunk longer than the memos keep
    ("Je n'aime pas l'écologie punitive... #nucléaire", "fr"),
    ("pas _ terrible :( l'écologie n'est PAS géniale #FauxProgrès", "fr"),
    ("Merci beaucoup, c'est génial ! Ce n'est pas du tout décevant", "fr"),
    ("ÇA SUFFIT, service client nul, jamais plus", "fr"),
]


def _fresh_backend(compiled: bool = True) -> LinearBackend:
    """A backend with its own models (its own memos), read from the shipped file, with the compiled
    loops (when built) or this module's own code."""
    data = json.loads(MODEL_FILE.read_text(encoding="utf-8"))
    return LinearBackend(LinearModels.from_json(data, compiled=compiled))


def _logits(texts: list[tuple[str, str]], compiled: bool) -> list[tuple[float, float]]:
    """The logits of each text, cold then warm then with tiny memos, with or without the compiled loops."""
    backend = _fresh_backend(compiled)
    assert all((model.fast is not None) == compiled for model in backend.models.models.values())
    out = [backend.logits(text, lang) for _ in range(2) for text, lang in texts]
    for model in backend.models.models.values():
        model.clear_memos()
        model.chunks = Memo(model.chunks.compute, 7)
        model.pieces = Memo(model.pieces.compute, 5)
        model.tokens = Memo(model.tokens.compute, 3)
    out += [backend.logits(text, lang) for text, lang in texts]
    return out


def assert_same_scores(with_c: list[tuple[float, float]], with_python: list[tuple[float, float]]) -> None:
    """Equal to the bit on Python 3.11 (veille's, and CI's): the same additions in the same order. From
    3.12 on, ``sum()`` of floats compensates its rounding (the pure-Python path sums with it), so the
    two differ in the last bits there."""
    if sys.version_info < (3, 12):
        assert with_c == with_python
    else:
        assert with_c == pytest.approx(with_python, rel=1e-12, abs=1e-12)


@pytest.fixture
def compiled() -> Iterator[ModuleType]:
    if speedups.MODULE is None:
        pytest.skip(f"the compiled module is not in use here: {speedups.STATUS}")
    yield speedups.MODULE


@needs_compiler
def test_an_install_with_a_compiler_runs_the_compiled_scorer() -> None:
    """`make install` on a machine with a C compiler builds the module, and the scorer uses it."""
    assert speedups.MODULE is not None, speedups.STATUS
    assert speedups.STATUS == "compiled (C inner loops)"
    assert linear_module._fast is speedups.MODULE


def test_compiled_and_pure_python_scores_are_equal_to_the_bit(compiled: ModuleType) -> None:
    """Negation scopes, emoticons, empty chunks, hashtags, accents and a chunk too long to remember:
    the same floats from both scorers, cold, warm and with memos that drop entries between texts."""
    assert_same_scores(_logits(TEXTS, True), _logits(TEXTS, False))


@requires_shared_data("sentiment", "en_tweets_train.csv")
@pytest.mark.parametrize(("lang", "name", "step"), [("en", "en_tweets_train.csv", 24), ("fr", "fr_tweets_dev.csv", 1)])
def test_compiled_and_pure_python_agree_on_real_tweets(compiled: ModuleType, lang: str, name: str, step: int) -> None:
    texts = [(text, lang) for text, _ in load_labelled(shared_data("sentiment", name))][::step][:2_200]
    assert_same_scores(_logits(texts, True), _logits(texts, False))


def test_character_ngram_sums_are_the_same(compiled: ModuleType) -> None:
    """A new word's character n-gram weights (on the dict and through the C table): short words,
    accents, emoji, words the model never saw."""
    model = _fresh_backend().models.models["fr"]
    python_model = _fresh_backend(compiled=False).models.models["fr"]
    rng = random.Random(7)
    alphabet = "abcdeéèçàùxyz'-😍"
    words = ["a", "ab", "nul", "génial", "décevant", "😍😍", "zzzzzzzzzzzz"]
    words += ["".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 14))) for _ in range(300)]
    with_c = [model.char_weights(word) for word in words]
    assert with_c == [python_model.char_weights(word) for word in words]
    assert [compiled.table_char_weights(model.char_table, word) for word in words] == [w[:2] for w in with_c]


def test_malformed_entries_raise_instead_of_crashing(compiled: ModuleType) -> None:
    """The C loops check what they read: a wrong entry is a Python exception, never a crash."""
    good = (0.1, 0.2, 0.3, 0.4, 5, 1, "good", 0, None)
    follow: list[dict[str, tuple[float, float]]] = [{}]

    def memo_of(entry: object) -> Memo[str, object]:
        return Memo(lambda unit: entry, 10)

    assert compiled.chunk_sums(["good"], memo_of(good), follow) is not None
    assert compiled.chunk_sums(["_"], memo_of((0.0, 0.0, 0.0, 0.0, 0, 0, "", 0, None)), follow) is None
    bad_entries = [
        (0.1, 0.2),  # too short
        ("0.1", 0.2, 0.3, 0.4, 5, 1, "good", 0, None),  # not a float
        (0.1, 0.2, 0.3, 0.4, 5, 1, "good", 0, ("x",)),  # word-list evidence of the wrong shape
        (0.1, 0.2, 0.3, 0.4, 5, 1, "good", -1, None),  # a negative bigram index
        None,  # nothing at all
    ]
    for bad in bad_entries:
        with pytest.raises((TypeError, IndexError)):
            compiled.chunk_sums(["a", "b"], memo_of(bad), follow)
    with pytest.raises(IndexError):  # a bigram index past the list
        compiled.chunk_sums(["a", "b"], memo_of((0.1, 0.2, 0.3, 0.4, 5, 1, "a", 9, None)), follow)

    def failing(unit: str) -> tuple[float, ...]:
        raise RuntimeError("compute failed")

    with pytest.raises(RuntimeError, match="compute failed"):
        compiled.chunk_sums(["new"], Memo(failing, 10), follow)
    with pytest.raises(TypeError):
        compiled.char_weights(" word ", {"wo": (1.0,)}, 2, 5)
    with pytest.raises(ValueError, match="low"):
        compiled.char_weights(" word ", {}, 0, 5)
    with pytest.raises(TypeError):
        compiled.join([(0.1,)], follow, 4)
    with pytest.raises(IndexError):  # more valences than the word-list sums hold
        compiled.join([(0.1, 0.2, 0.3, 0.4, 5, 1, "a", 0, (False, (), ((0, 0, (1.0, 2.0)),)))], follow, 4)


def test_word_list_sums_are_squashed_and_weighted_as_in_python(compiled: ModuleType) -> None:
    """``lex_logits`` and ``negated_logits`` (the end of the compiled logits) against the Python code:
    valences in and out of a negator's scope, a clause break, zero columns; malformed input raises."""
    rng = random.Random(4)
    width = 8
    lexicon = tuple((rng.uniform(-2, 2), rng.uniform(-2, 2)) for _ in range(width + 3))

    def python_tail(z0: float, z2: float, sums: list[float]) -> tuple[float, float]:
        for w, x in zip(lexicon, sums, strict=False):
            if x:
                x = x / math.sqrt(x * x + linear_module.SQUASH_ALPHA)
                z0 += w[0] * x
                z2 += w[1] * x
        return z0, z2

    for _ in range(2_000):
        starts, lexes, at = [], [], 0
        for _ in range(rng.randint(1, 6)):
            events = []
            for position in range(rng.randint(1, 3)):
                role = rng.choice((0, 0, 0, linear_module._NEGATOR, 2))
                values = tuple(rng.choice((0.0, rng.uniform(-3, 3))) for _ in range(width // 4))
                events.append((position, role, values if not role else ()))
            sums = tuple(rng.choice((0.0, rng.uniform(-3, 3))) for _ in range(width))
            starts.append(at)
            lexes.append((False, sums, tuple(events)))
            at += rng.randint(1, 4)
        z0, z2 = rng.uniform(-1, 1), rng.uniform(-1, 1)
        plain = list(map(sum, zip(*(lex[1] for lex in lexes), strict=True)))
        negated = linear_module._negated_sums_at(starts, lexes, width)
        found = [
            compiled.lex_logits(z0, z2, lexes, lexicon, linear_module.SQUASH_ALPHA),
            compiled.negated_logits(
                z0, z2, starts, lexes, lexicon, width, linear_module.NEGATION_SCOPE, linear_module.SQUASH_ALPHA
            ),
        ]
        assert_same_scores(found, [python_tail(z0, z2, plain), python_tail(z0, z2, negated)])
    short = lexicon[:3]  # fewer pairs than columns: the columns past them are left out, as zip() does
    lexes = [(False, (1.0, 2.0, -1.0, 0.5, 3.0), ((0, 0, (1.5, -2.0)),))]
    assert compiled.lex_logits(0.1, 0.2, lexes, short, 15.0) == python_tail(0.1, 0.2, [1.0, 2.0, -1.0])
    # whole-number valences (the word lists hold floats, but the Python code takes ints too)
    with_ints = [(False, (), ((0, 0, (2, -1)), (1, linear_module._NEGATOR, ()), (2, 0, (1, 3))))]
    assert compiled.negated_logits(0.1, 0.2, [0], with_ints, lexicon, 8, 3, 15.0) == python_tail(
        0.1, 0.2, linear_module._negated_sums_at([0], with_ints, 8)
    )

    # and any int or float, a bool or a float subclass included (Python's `value > 0` takes them)
    class Valence(float):
        pass

    odd = [(False, (), ((0, 0, (True, Valence(-0.5))), (1, linear_module._NEGATOR, ()), (2, 0, (Valence(2.0), False))))]
    assert compiled.negated_logits(0.1, 0.2, [0], odd, lexicon, 8, 3, 15.0) == python_tail(
        0.1, 0.2, linear_module._negated_sums_at([0], odd, 8)
    )
    follow = [{}]
    events = ((0, 0, (True, Valence(-0.5))),)
    joined = compiled.join([(0.1, 0.2, 0.3, 0.4, 5, 1, "a", 0, (False, (), events))], follow, 8)
    assert joined[8][1] == linear_module._lex(events, 8)[1]
    with pytest.raises(TypeError):
        compiled.lex_logits(0.0, 0.0, [(False, (1,), ())], lexicon, 15.0)  # an int valence sum
    with pytest.raises(ValueError, match="width"):
        compiled.lex_logits(0.0, 0.0, [(False, (1.0,), ()), (False, (1.0, 2.0), ())], lexicon, 15.0)
    with pytest.raises(TypeError):
        compiled.negated_logits(0.0, 0.0, [0], [(False, (), ((0, 0, ("1",)),))], lexicon, 4, 3, 15.0)
    with pytest.raises(IndexError):  # more valences than the width holds
        compiled.negated_logits(0.0, 0.0, [0], [(False, (), ((0, 0, (1.0, 2.0)),))], lexicon, 4, 3, 15.0)
    with pytest.raises(ValueError, match="one start per lex"):
        compiled.negated_logits(0.0, 0.0, [], [(False, (), ())], lexicon, 4, 3, 15.0)


def test_a_module_that_rounds_otherwise_is_refused(compiled: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """A compiler that fuses multiply-adds (aarch64's default) rounds products and sums once, Python twice:
    the import checks the module's arithmetic on values where that shows, and refuses it."""
    assert linear_module._same_arithmetic(compiled)

    class Fused:
        def lex_logits(self, z0: float, z2: float, lexes: object, lexicon: object, alpha: float) -> tuple[float, float]:
            found = compiled.lex_logits(z0, z2, lexes, lexicon, alpha)
            return math.nextafter(found[0], math.inf), found[1]  # one unit in the last place

        def negated_logits(self, *args: object) -> tuple[float, float]:
            return compiled.negated_logits(*args)  # type: ignore[no-any-return]

    assert not linear_module._same_arithmetic(Fused())  # type: ignore[arg-type]
    monkeypatch.setattr(speedups, "MODULE", compiled)
    monkeypatch.setattr(speedups, "STATUS", "compiled (C inner loops)")
    speedups.refuse("rounds otherwise")
    assert speedups.MODULE is None
    assert speedups.STATUS == "pure Python (rounds otherwise)"


def test_python_code_run_by_a_memo_cannot_pull_objects_from_under_the_c_loops(compiled: ModuleType) -> None:
    """A memo's compute runs Python code, which may change the caller's lists: the C loops work on
    their own copies (found by review: clearing the list freed the chunk being looked up)."""
    units = ["".join(["u", str(i)]) for i in range(50)]
    entry = (0.1, 0.2, 0.3, 0.4, 5, 1, "u", 0, None)

    def clearing(unit: str) -> tuple[object, ...]:
        units.clear()
        return entry

    got = compiled.chunk_sums(units, Memo(clearing, 100), [{}])
    assert got is not None and got[5] == 50  # all 50 units, from the copy
    tokens = [Token(f"w{i}", f"w{i}", "word") for i in range(20)]
    model = _fresh_backend().models.models["en"]

    def clearing_token(key: str) -> tuple[object, ...]:
        tokens.clear()
        return (0.0, 0.0, 0.0, 0.0, 0, 0, (), 0)

    model.tokens = Memo(clearing_token, 100)
    assert compiled.tokens_entry(model, tokens)[5] == 20
    with pytest.raises(TypeError, match="str"):
        compiled.chunk_sums([1, 2], Memo(lambda unit: entry, 10), [{}])
    with pytest.raises(TypeError, match="str"):  # a first key that is not a str could run Python code when hashed
        compiled.join([(0.1, 0.2, 0.3, 0.4, 5, 1, 7, 0, None)], [{}], 4)


def test_a_module_written_for_other_constants_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """The C file hard-codes a few constants of the Python scorer (n-gram lengths, the negator's role
    and ending, look-ups kept, a token's fields): if they no longer match, the module is refused."""
    if speedups.MODULE is None:
        pytest.skip(f"the compiled module is not in use here: {speedups.STATUS}")
    assumed = dict(speedups.MODULE.ASSUMED)
    assert speedups.accept(assumed) is speedups.MODULE
    monkeypatch.setattr(speedups, "MODULE", speedups.MODULE)
    monkeypatch.setattr(speedups, "STATUS", speedups.STATUS)
    assert speedups.accept(assumed | {"CHAR_RANGE": (2, 6)}) is None
    assert speedups.MODULE is None and "assumes" in speedups.STATUS


def test_the_compiled_memo_keeps_what_the_python_memo_keeps(compiled: ModuleType) -> None:
    """memo_miss is Memo.miss: the same values, the same two generations after every step (a full
    young generation becomes the old one; a hit in the old one is promoted; a key longer than
    max_key is computed and never held)."""
    rng = random.Random(11)
    keys = [rng.choice("abcdefghij") * rng.randrange(1, 5) for _ in range(400)] + ["k" * 40, "k" * 40]
    python_memo: Memo[str, str] = Memo(str.upper, 6, max_key=30)
    c_memo: Memo[str, str] = Memo(str.upper, 6, max_key=30)
    for key in keys:
        if key in python_memo.young:
            continue  # a hit in young never reaches miss
        assert compiled.memo_miss(c_memo, key) == python_memo.miss(key) == key.upper()
        assert (c_memo.young, c_memo.old) == (python_memo.young, python_memo.old)
    assert "k" * 40 not in c_memo.young and "k" * 40 not in c_memo.old


def test_the_compiled_memo_measures_a_tuple_key_as_the_python_memo_does(compiled: ModuleType) -> None:
    """The tokens memo's (kind, text) keys: held when short, computed and never held when their strings are
    longer than max_key together (a run of thousands of '!'), in both memos."""
    keys = [("bang", "!" * n) for n in (1, 2, 3, 26, 27, 40, 2, 27)] + [(1, 2), ("stop", 7)]
    python_memo: Memo[object, int] = Memo(len, 6, max_key=30)
    c_memo: Memo[object, int] = Memo(len, 6, max_key=30)
    for key in keys:
        if key in python_memo.young:
            continue
        assert compiled.memo_miss(c_memo, key) == python_memo.miss(key)
        assert (c_memo.young, c_memo.old) == (python_memo.young, python_memo.old)
    assert ("bang", "!" * 26) in c_memo.young and ("bang", "!" * 27) not in c_memo.young
    for key in ["", (), ("",), 5, (1, 2)]:  # zero characters, still compared: max_key -1 holds nothing
        python_none: Memo[object, int] = Memo(len_or_zero, 4, max_key=-1)
        c_none: Memo[object, int] = Memo(len_or_zero, 4, max_key=-1)
        assert compiled.memo_miss(c_none, key) == python_none.miss(key)
        assert c_none.young == python_none.young == {}


def len_or_zero(key: object) -> int:
    return len(key) if isinstance(key, str | tuple) else 0


def test_word_list_lookups_are_the_profiles_own(compiled: ModuleType) -> None:
    """lookup: a listed word, an inflected one found by its stem (French ``-es``, ``-s``, ``-x``,
    ``-e``, 4 letters left), a word of the further lists (English AFINN) and an unknown one."""
    from veille.sentiment.lexicon import load_profile

    words = ["good", "bad", "awful", "hate", "unknownword", "nul", "nulles", "décevantes", "horribles", "genial", "xyz"]
    for lang in ("en", "fr"):
        profile = load_profile(lang)
        for word in words:
            profile._lookups.clear()
            with_c = compiled.lookup(profile, word)
            assert profile._lookups[word] == with_c  # remembered, as the method does
            profile._lookups.clear()
            assert with_c == profile.lookup(word), (lang, word)


def test_new_chunks_pieces_and_words_get_the_python_entries(compiled: ModuleType) -> None:
    """Every chunk of the test texts, split into pieces and words, gets from the compiled memos the
    entry the Python methods compute: the same floats, counts, keys and word-list evidence."""
    compiled_backend = _fresh_backend()
    python_backend = _fresh_backend(compiled=False)
    extra = ["(génial!)", "l'écologie,", "NUL!!!", "#JeSuisDéçu", "don't", "baaad", ":-)", "<3", "_", "a-b-c", "😍x"]
    for text, lang in [*TEXTS, *[(chunk, lang) for chunk in extra for lang in ("en", "fr")]]:
        with_c, with_python = compiled_backend.models.models[lang], python_backend.models.models[lang]
        for chunk in text.split():
            assert with_c.chunks.get(chunk) == with_python.chunks.get(chunk), chunk


def test_disabled_or_stale_modules_are_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """VEILLE_PURE_PYTHON=1 turns the module off; a module built from another _speedups.c (an
    install older than the source tree) is refused rather than trusted; each says why."""
    monkeypatch.setenv("VEILLE_PURE_PYTHON", "1")
    assert speedups.load() == (None, "pure Python (VEILLE_PURE_PYTHON is set)")
    monkeypatch.delenv("VEILLE_PURE_PYTHON")
    if speedups.MODULE is None:
        pytest.skip(f"the compiled module is not in use here: {speedups.STATUS}")
    monkeypatch.setattr(speedups, "_source_hash", lambda: "0" * 64)
    module, status = speedups.load()
    assert module is None and "stale" in status


@needs_compiler
def test_the_build_hook_compiles_a_module_that_knows_its_source(tmp_path: Path) -> None:
    """hatch_build.compile_speedups (what pip runs) makes an importable module carrying the sha256 of
    the C file it was built from, the check that keeps a stale build out."""
    spec = importlib.util.spec_from_file_location("hatch_build_under_test", ROOT / "hatch_build.py")
    assert spec is not None and spec.loader is not None
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    built = hook.compile_speedups(ROOT, tmp_path)
    module_spec = importlib.util.spec_from_file_location("_speedups", built)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    source = ROOT / "shared" / "veille" / "sentiment" / "_speedups.c"
    assert hashlib.sha256(source.read_bytes()).hexdigest() == module.SOURCE_HASH
    assert module.char_weights(" ab ", {" a": (1.0, 2.0), "ab": (0.5, 0.5)}, 2, 5) == (1.5, 2.5)


def _wheel(path: Path, files: dict[str, bytes], inputs: str = "") -> Path:
    """A wheel holding ``files``, the build inputs' record (``inputs``) and a RECORD of their sha256,
    as the build hook and pip write them."""
    rows = []
    if inputs:
        files = files | {"veille-0.1.0.dist-info/extra_metadata/build-inputs.sha256": inputs.encode()}
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            rows.append(f"{name},sha256={digest},{len(data)}")
        rows.append("veille-0.1.0.dist-info/RECORD,,")
        archive.writestr("veille-0.1.0.dist-info/RECORD", "\n".join(rows) + "\n")
    return path


def test_the_image_installs_a_host_built_wheel_only_if_it_matches_the_sources(tmp_path: Path) -> None:
    """deploy/docker/wheel_matches.py: a wheel from these sources passes; one from an older checkout
    (a file changed, added or removed since) fails, naming the files."""
    spec = importlib.util.spec_from_file_location("wheel_matches", ROOT / "deploy" / "docker" / "wheel_matches.py")
    assert spec is not None and spec.loader is not None
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    src = tmp_path / "src"
    for rel, data in {"shared/veille/a.py": b"A = 1\n", "services/b.py": b"B = 2\n", "veille_cli/c.py": b""}.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    (src / "shared" / "veille" / "_speedups.cpython-311-x86_64-linux-gnu.so").write_bytes(b"\x7fELF")
    (src / "pyproject.toml").write_text("[project]\nname = 'veille'\n")
    (src / "hatch_build.py").write_text("# hook\n")
    files = {"veille/a.py": b"A = 1\n", "services/b.py": b"B = 2\n", "veille_cli/c.py": b"", "veille/_x.so": b"\x7fELF"}
    inputs = "".join(
        f"{hashlib.sha256((src / name).read_bytes()).hexdigest()}  {name}\n"
        for name in ("pyproject.toml", "hatch_build.py")
    )
    wheel = _wheel(tmp_path / "veille-0.1.0-cp311-cp311-linux_x86_64.whl", files, inputs)
    assert check.mismatches(wheel, src) == []
    assert check.main(["wheel_matches.py", str(wheel), str(src)]) == 0
    no_record = _wheel(tmp_path / "old" / "veille-0.1.0-cp311-cp311-linux_x86_64.whl", files)
    assert check.mismatches(no_record, src) == ["no record of its build inputs"]
    (src / "pyproject.toml").write_text("[project]\nname = 'veille'\ndependencies = ['new']\n")
    assert check.mismatches(wheel, src) == ["built from another pyproject.toml or hatch_build.py"]
    (src / "pyproject.toml").write_text("[project]\nname = 'veille'\n")
    (src / "services" / "b.py").write_bytes(b"B = 3\n")
    (src / "services" / "new.py").write_bytes(b"")
    (src / "veille_cli" / "c.py").unlink()
    assert check.mismatches(wheel, src) == [
        "not in the wheel: services/new.py",
        "not in the sources: veille_cli/c.py",
        "differs: services/b.py",
    ]
    assert check.main(["wheel_matches.py", str(wheel), str(src)]) == 1

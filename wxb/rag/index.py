"""An index of chunks: their embeddings in a faiss ``IndexFlatIP`` (exact inner-product search,
the cosine similarity for a normalising embedder such as all-MiniLM-L6-v2), the chunks
themselves, and the identity of the embedder that made the vectors.

A saved index is a folder, written whole and atomically (``wxb.io.atomic_dir``)::

    index.json      {"format": "wxb-rag-index", "version": 1, "embedder": {name, sha256, dim,
                     max_length, pooling, normalize}, "embedder_path", "chunks", "documents",
                     "chunking": {by, size, overlap}, "truncated_chunks"}
    vectors.faiss   faiss.write_index of the IndexFlatIP, row i = chunk i
    chunks.jsonl    one chunk a line: {id, document_id, start, end, text}

Searching with another embedder than the one recorded (another ``sha256``) is refused, naming
both. BM25 needs no file: it is built from the chunks' text when first used.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from wxb.errors import CheckpointError, ConfigError, DataError
from wxb.io import atomic_dir, read_json_object
from wxb.rag import require_module
from wxb.rag.bm25 import BM25
from wxb.rag.chunk import Chunk
from wxb.rag.embed import Embedder

if TYPE_CHECKING:
    from wxb.rag.retrieve import Fusion

FORMAT = "wxb-rag-index"
VERSION = 1
INDEX_FILE, VECTORS_FILE, CHUNKS_FILE = "index.json", "vectors.faiss", "chunks.jsonl"
EMBED_BLOCK = 256  # chunks embedded between two progress lines


def describe(identity: dict[str, Any]) -> str:
    """An embedder's identity as a reader sees it: ``name (sha256 1a2b3c4d5e6f)``."""
    return f"{identity.get('name')} (sha256 {str(identity.get('sha256'))[:12]})"


class Index:
    """Chunks with their vectors (``vectors``: a faiss IndexFlatIP, one row per chunk)."""

    def __init__(self, chunks: Sequence[Chunk], vectors: Any, embedder: dict[str, Any],
                 info: dict[str, Any] | None = None) -> None:
        self.chunks = list(chunks)
        self.vectors = vectors
        self.embedder = embedder
        self.info = dict(info or {})
        self._bm25: BM25 | None = None

    def __len__(self) -> int:
        return len(self.chunks)

    @classmethod
    def build(cls, chunks: Sequence[Chunk], embedder: Embedder,
              info: dict[str, Any] | None = None,
              log: Callable[[str], None] | None = None) -> Index:
        """Embed every chunk with ``embedder``; ``info`` (chunking settings, ...) is saved with
        the index; ``log`` gets a progress line every few hundred chunks."""
        if not chunks:
            raise DataError("no chunk to index: the documents hold no text")
        faiss = require_module("faiss", "faiss-cpu")
        vectors = faiss.IndexFlatIP(embedder.dim)
        truncated = 0
        for start in range(0, len(chunks), EMBED_BLOCK):
            out = embedder([c.text for c in chunks[start:start + EMBED_BLOCK]])
            vectors.add(out.vectors)
            truncated += sum(out.truncated)
            if log is not None:
                log(f"embedded {min(start + EMBED_BLOCK, len(chunks))}/{len(chunks)} chunks")
        info = {**(info or {}), "embedder_path": str(embedder.folder.resolve()),
                "chunks": len(chunks), "documents": len({c.document_id for c in chunks}),
                "truncated_chunks": truncated}
        return cls(chunks, vectors, embedder.identity, info)

    @property
    def bm25(self) -> BM25:
        """BM25 over the chunks' text (built on first use)."""
        if self._bm25 is None:
            self._bm25 = BM25([c.text for c in self.chunks])
        return self._bm25

    def check_embedder(self, embedder: Embedder) -> None:
        """Refuse an embedder other than the one that made the vectors."""
        if embedder.identity.get("sha256") != self.embedder.get("sha256"):
            raise ConfigError(f"this index was built with the embedder {describe(self.embedder)}"
                              f"; {embedder.folder} is {describe(embedder.identity)}: search it "
                              "with the same embedder, or rebuild the index with wxb rag index")

    def search(self, queries: np.ndarray, depth: int) -> list[list[tuple[int, float]]]:
        """The ``depth`` chunks of highest inner product with each query vector, best first:
        ``[(chunk index, score), ...]`` per row of ``queries`` (n, dim)."""
        depth = min(depth, len(self))
        scores, ids = self.vectors.search(np.ascontiguousarray(queries, dtype=np.float32), depth)
        return [[(int(i), float(s)) for i, s in zip(row_ids, row_scores, strict=True) if i >= 0]
                for row_ids, row_scores in zip(ids, scores, strict=True)]

    def save(self, folder: str | Path) -> Path:
        """Write the index folder (atomically: a crash leaves any older index as it was)."""
        faiss = require_module("faiss", "faiss-cpu")
        folder = check_destination(folder)
        with atomic_dir(folder) as tmp:
            faiss.write_index(self.vectors, str(tmp / VECTORS_FILE))
            with open(tmp / CHUNKS_FILE, "w", encoding="utf-8") as f:
                for chunk in self.chunks:
                    f.write(json.dumps(chunk.to_dict(), ensure_ascii=False) + "\n")
            header = {"format": FORMAT, "version": VERSION, "embedder": self.embedder,
                      **self.info}
            (tmp / INDEX_FILE).write_text(json.dumps(header, indent=2, ensure_ascii=False) + "\n",
                                          encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> Index:
        """Read an index folder; anything that is not one is refused with one line."""
        folder = Path(folder)
        header_path = folder / INDEX_FILE
        if not header_path.is_file():
            what = "does not exist" if not folder.exists() else f"has no {INDEX_FILE}"
            raise CheckpointError(f"{folder} is not a wxb rag index ({what}); build one with "
                                  f"wxb rag index DOCS --embedder DIR --out {folder}")
        header = read_json_object(header_path, CheckpointError)
        if header.get("format") != FORMAT:
            raise CheckpointError(f"{header_path} is not a wxb rag index (format "
                                  f"{header.get('format')!r}, expected {FORMAT!r})")
        if not isinstance(header.get("version"), int) or header["version"] > VERSION:
            raise CheckpointError(f"{header_path} has index version {header.get('version')!r}; "
                                  f"this wxb reads version {VERSION} (upgrade wxb)")
        embedder = header.get("embedder")
        if not isinstance(embedder, dict) or "sha256" not in embedder:
            raise CheckpointError(f"{header_path} does not record its embedder")
        chunks = _read_chunks(folder / CHUNKS_FILE)
        faiss = require_module("faiss", "faiss-cpu")
        vectors_path = folder / VECTORS_FILE
        if not vectors_path.is_file():
            raise CheckpointError(f"{folder} is not a complete wxb rag index: {VECTORS_FILE} is "
                                  "missing")
        try:
            vectors = faiss.read_index(str(vectors_path))
        except RuntimeError:
            raise CheckpointError(f"{vectors_path} is not a faiss index") from None
        if vectors.ntotal != len(chunks) or vectors.d != embedder.get("dim"):
            raise CheckpointError(f"{folder}: {vectors_path.name} holds {vectors.ntotal} vectors "
                                  f"of size {vectors.d}, {CHUNKS_FILE} {len(chunks)} chunks and "
                                  f"the embedder makes size {embedder.get('dim')}; rebuild it")
        info = {k: v for k, v in header.items() if k not in ("format", "version", "embedder")}
        return cls(chunks, vectors, embedder, info)


def check_destination(folder: str | Path) -> Path:
    """The folder an index may be saved to: a new or empty one, or an index (replaced whole)."""
    folder = Path(folder)
    if folder.exists() and not (folder.is_dir() and ((folder / INDEX_FILE).is_file()
                                                     or not any(folder.iterdir()))):
        raise ConfigError(f"{folder} exists and is not a wxb rag index; choose a new --out "
                          "folder (an index already there is replaced, nothing else)")
    return folder


def _read_chunks(path: Path) -> list[Chunk]:
    if not path.is_file():
        raise CheckpointError(f"{path.parent} is not a complete wxb rag index: {path.name} is "
                              "missing")
    chunks = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            try:
                values = json.loads(line)
                chunks.append(Chunk(str(values["id"]), str(values["document_id"]),
                                    int(values["start"]), int(values["end"]), str(values["text"])))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
                raise CheckpointError(f"{path}, line {number}: not a chunk ({err}); rebuild the "
                                      "index") from None
    return chunks


def index_files(paths: Sequence[str | Path], embedder: Embedder | str | Path, out: str | Path, *,
                column: str = "text", template: str | None = None, id_column: str = "id",
                chunk_by: str = "tokens", chunk_size: int | None = None,
                overlap: int | None = None, fusion: Fusion | None = None,
                log: Callable[[str], None] | None = None) -> Index:
    """Read documents (``wxb.rag.documents``), chunk them (``wxb.rag.chunk``; by tokens of the
    embedder's tokenizer), embed and save the index to ``out``, with the ``fusion`` its hybrid
    searches use (absent: plain RRF); returns it."""
    from wxb.rag.chunk import chunk_documents, chunk_settings
    from wxb.rag.documents import read_documents

    # Bad flags and a bad destination fail before anything is loaded.
    size, overlap = chunk_settings(chunk_by, chunk_size, overlap)
    check_destination(out)
    documents = read_documents(paths, column=column, template=template, id_column=id_column)
    embedder = embedder if isinstance(embedder, Embedder) else Embedder(embedder)
    chunks = chunk_documents(documents, chunk_by, size, overlap, tokenizer=embedder.tokenizer)
    if log is not None:
        log(f"{len(documents)} documents -> {len(chunks)} chunks ({chunk_by}, size {size}, "
            f"overlap {overlap})")
    info: dict[str, Any] = {"chunking": {"by": chunk_by, "size": size, "overlap": overlap}}
    if fusion is not None:
        info["fusion"] = fusion.to_dict()
    index = Index.build(chunks, embedder, info, log=log)
    index.save(out)
    return index

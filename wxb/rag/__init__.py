"""Retrieval-augmented generation: documents -> chunks -> an index -> passages -> a prompt.

    from wxb.rag.documents import read_documents  # txt/md files, table rows (column/template)
    from wxb.rag.chunk import chunk_documents     # by tokens, sentences or paragraphs
    from wxb.rag.embed import Embedder            # a BERT folder, pooled as sentence-transformers
    from wxb.rag.index import Index               # faiss inner product, saved as a folder
    from wxb.rag.retrieve import Retriever        # dense, BM25 or hybrid (RRF or convex fusion)
    from wxb.rag.prompt import build_prompt       # passages numbered [1]..[k], with their sources
    from wxb.rag.evaluate import evaluate         # hit rate, recall, MRR, nDCG per method
    from wxb.rag.assistant import Assistant       # a chat model answering each turn from them

    docs = read_documents(["faq.csv"], template="question:{q} answer:{a}")
    embedder = Embedder("path/to/all-MiniLM-L6-v2")
    index = Index.build(chunk_documents(docs, tokenizer=embedder.tokenizer), embedder)
    index.save("faq-index")
    hits = Retriever(Index.load("faq-index"), embedder).search("how do I ...", k=5).hits
    prompt = build_prompt("how do I ...", hits)       # prompt.text, prompt.sources
    assistant = Assistant(Retriever(index, embedder), model, tokenizer, "From: {passages}")
    turn = assistant.reply([], "how do I ...")        # turn.text, turn.sources, turn.history

``faiss-cpu`` and ``bm25s`` come with ``pip install 'wxb[rag]'``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from wxb.errors import ConfigError


def require_module(name: str, package: str) -> ModuleType:
    """Import an optional dependency of retrieval, or say how to install it."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise ConfigError(f"retrieval needs the {package} package: pip install 'wxb[rag]' "
                          f"(or pip install {package})") from None

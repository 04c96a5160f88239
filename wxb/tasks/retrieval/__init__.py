"""The runs of retrieval, as recipes run them: ``retrieval-eval`` (dense, BM25 and hybrid side
by side on several sets, ``evaluation.py``) and ``rag-assistant`` (a chat model answering from
retrieved passages, ``assistant.py``).

These are the one task package built on ``wxb.rag`` (which itself builds on the embed and
causal-LM pipelines): the pieces live there, these modules only read a config, run them and
write ``result.json`` through ``wxb.tasks.run``.
"""

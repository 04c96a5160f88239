"""Sentence embeddings (task ``embed``): the ``pipeline`` pools an encoder as
sentence-transformers does."""

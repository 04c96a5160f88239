"""Sequence tagging, named entities (task ``token-classify``): ``train`` and the ``pipeline``."""

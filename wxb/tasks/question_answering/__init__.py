"""Extractive question answering (task ``question-answering``): windows over long contexts
(``features``), answers from start / end scores (``decode``), ``train`` and the ``pipeline``."""

"""Summarization: an encoder-decoder trained on documents and summaries, scored by ROUGE."""

"""Word vectors: Word2Vec and fastText (skipgram.py), GloVe (cooccurrence.py, glove.py)."""

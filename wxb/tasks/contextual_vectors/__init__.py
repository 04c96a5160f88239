"""Task contextual-vectors: one word in several senses through each layer of a pretrained biLM
(separation of the senses, nearest-neighbour sense accuracy, a PCA map per layer)."""

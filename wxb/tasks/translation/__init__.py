"""Translation with Seq2Seq or the Transformer (task ``translation``): ``train``, the model
folder in ``model``, batched decoding in ``decode``, the ``pipeline``."""

"""Translation with Seq2Seq or the Transformer (task ``translation``): ``train``, the
``pipeline``, attention heatmaps in ``attention``; the model, its folder and batched decoding
are ``wxb.tasks.encoder_decoder``'s, shared with summarization."""

"""Supervised fine-tuning of a causal LM on chat data (task ``sft``, ``train``)."""

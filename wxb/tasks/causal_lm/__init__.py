"""Causal language models (task ``causal-lm``): pretraining in ``train``, completion and chat in
``pipeline``."""

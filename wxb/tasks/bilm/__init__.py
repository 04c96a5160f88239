"""ELMo's bidirectional language model (task ``bilm``): pretraining in ``train``; the model and
its layers for downstream use are ``wxb.models.elmo``."""

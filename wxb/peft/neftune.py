"""NEFTune's noisy embeddings, for existing imports: the mechanism is a training-time
regulariser and lives with the Trainer's callbacks, in ``wxb.train.callbacks`` (the Trainer
applies it itself when ``neftune_noise_alpha`` is set)."""

from wxb.train.callbacks import NEFTune, add_noise, input_embeddings, neftune

__all__ = ["NEFTune", "add_noise", "input_embeddings", "neftune"]
